//! `slow_disk` mode `fio`: a background fio load (large writes, each followed by fsync) on the
//! filesystem of `path`.

use std::time::Duration;

use super::*;

/// fio's report file: `<pid file without .pid>.out`.
pub(super) fn fio_output(pid_file: &str) -> String {
    format!("{}.out", pid_file.strip_suffix(".pid").unwrap_or(pid_file))
}

/// Bytes of a fio size (`32M`, `1m`, `4k`, `512`; powers of 1024).
pub fn fio_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                _ => return None,
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.parse::<u64>().ok().filter(|n| *n > 0).map(|n| n * mult)
}

/// The fio job file.
pub fn fio_job(dir: &str, jobs: u32, block_size: &str, size: &str, runtime: Duration) -> String {
    format!(
        "# breakfix slow_disk fault: competing writes, each followed by fsync\n\
         [global]\n\
         ioengine=psync\n\
         rw=write\n\
         bs={block_size}\n\
         size={size}\n\
         fsync=1\n\
         time_based=1\n\
         runtime={}\n\
         thread=1\n\
         directory={dir}\n\
         group_reporting=1\n\
         \n\
         [breakfix-slow-disk]\n\
         numjobs={jobs}\n",
        runtime.as_secs().max(1)
    )
}

impl SlowDiskAction {
    pub(super) async fn apply_fio(&self, ctx: &ActionCtx<'_>, label: &str) -> Result<()> {
        let s = ctx.session;
        let path = self.path();
        let jobs = self.jobs.unwrap_or(DEFAULT_FIO_JOBS);
        let bs = self.block_size.as_deref().unwrap_or(DEFAULT_FIO_BLOCK_SIZE);
        let size = self.size.as_deref().unwrap_or(DEFAULT_FIO_SIZE);
        let runtime: Duration = self.runtime.map(Into::into).unwrap_or(DEFAULT_FIO_RUNTIME);
        if jobs == 0 {
            return Err(self.err(ctx, label, "`jobs` must be at least 1".into()));
        }
        if fio_bytes(bs).is_none() {
            return Err(self.err(
                ctx,
                label,
                format!("`block_size: {bs}` is not a size such as `4k` or `1M`"),
            ));
        }
        let Some(size_bytes) = fio_bytes(size) else {
            return Err(self.err(
                ctx,
                label,
                format!("`size: {size}` is not a size such as `32M` or `1G`"),
            ));
        };
        let check = s
            .exec(&program(&["check-fio", path]), ctx.timeout)
            .await?;
        if check.stdout.contains("NO_FIO") {
            return Err(self.err(ctx, label, "fio is not installed on the node; `mode: fio` needs it (or use `mode: fsync_delay`)".into()));
        }
        if check.stdout.contains("NO_SETSID") {
            return Err(self.err(
                ctx,
                label,
                "setsid (util-linux) is not installed on the node".into(),
            ));
        }
        let field = |k: &str| {
            check
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let mnt = field("MNT ");
        if mnt.is_empty() {
            return Err(self.err(
                ctx,
                label,
                format!("{path} does not exist (findmnt found no filesystem for it)"),
            ));
        }
        let need = size_bytes.saturating_mul(jobs as u64);
        if let Ok(avail_k) = field("AVAIL ").parse::<u64>() {
            if avail_k.saturating_mul(1024) < need.saturating_add(need / 10) {
                return Err(self.err(
                    ctx,
                    label,
                    format!("{mnt} has {} MiB free; fio needs {} MiB ({jobs} jobs x {size}) plus 10%: lower `jobs` or `size`", avail_k / 1024, need >> 20),
                ));
            }
        }
        let id = new_id();
        let dir = match &self.dir {
            Some(d) => d.clone(),
            None => format!("{}/.breakfix-fio-{id}", mnt.trim_end_matches('/')),
        };
        // The undo removes the directory: it must be fio's own, so it must not exist yet.
        let exists = s
            .exec(
                &format!("[ -e {} ] && echo EXISTS; true", shell_quote(&dir)),
                ctx.timeout,
            )
            .await?;
        if exists.stdout.contains("EXISTS") || !dir.starts_with('/') {
            return Err(self.err(
                ctx,
                label,
                format!("fio's directory {dir} must be an absolute path that does not exist yet (the undo removes it)"),
            ));
        }
        let pid_file = format!("{RUN_DIR}/slow-disk-fio-{id}.pid");
        let job_file = format!("{RUN_DIR}/slow-disk-fio-{id}.fio");
        let undo = SlowDiskUndo::Fio {
            pid_file: pid_file.clone(),
            marker: id.clone(),
            job_file: job_file.clone(),
            dir: dir.clone(),
        };
        if let Some(journal) = ctx.journal {
            journal
                .record(s, ctx.scenario, label, Undo::SlowDisk(undo.clone()))
                .await?;
        }
        let result = async {
            s.run_ok(&format!("mkdir -p {RUN_DIR} {}", shell_quote(&dir)), ctx.timeout).await?;
            s.transport.write_file(&job_file, fio_job(&dir, jobs, bs, size, runtime).as_bytes(), Some(0o600), ctx.timeout).await?;
            let output = format!("--output={}", fio_output(&pid_file));
            s.run_ok(&detached(&pid_file, &id, &["fio", &output, &job_file]), ctx.timeout)
                .await?;
            crate::failpoint::hit("slow_disk: fio started");
            // Running after 2 s: fio has laid out its files and started writing.
            let verify = program(&["wait-running", &pid_file, &err_log(&pid_file)]);
            let out = s.exec(&verify, Duration::from_secs(30)).await?;
            if out.success() {
                Ok(())
            } else {
                Err(Error::other(out.stdout.trim().to_string()))
            }
        }
        .await;
        if let Err(e) = result {
            let cleanup = undo.revert(s).await;
            let mut msg = format!("could not start fio: {e}");
            if let Err(c) = cleanup {
                msg.push_str(&format!("; cleaning up failed too: {c}"));
            }
            return Err(self.err(ctx, label, msg));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_sizes() {
        assert_eq!(fio_bytes("32M"), Some(32 << 20));
        assert_eq!(fio_bytes("4k"), Some(4096));
        assert_eq!(fio_bytes("512"), Some(512));
        assert_eq!(fio_bytes("1x"), None);
        assert_eq!(fio_bytes("M"), None);
        let job = fio_job(
            "/var/lib/etcd/.breakfix-fio-1",
            8,
            "1M",
            "32M",
            Duration::from_secs(60),
        );
        assert!(
            job.contains("fsync=1\n")
                && job.contains("numjobs=8\n")
                && job.contains("thread=1\n")
                && job.contains("runtime=60\n"),
            "{job}"
        );
    }
}
