//! `slow_disk` mode `fsync_delay`: a detached `strace` that delays every fdatasync/fsync of
//! the process.

use std::time::Duration;

use super::*;

/// `strace` arguments that delay every fdatasync/fsync of `pid` by `delay`.
pub fn strace_args(pid: u32, delay: Duration) -> String {
    let usec = delay.as_micros().max(1);
    format!("strace -f -qq -o /dev/null -e trace=fdatasync,fsync -e inject=fdatasync,fsync:delay_enter={usec} -p {pid}")
}

impl SlowDiskAction {
    pub(super) async fn apply_fsync_delay(&self, ctx: &ActionCtx<'_>, label: &str, pid: u32) -> Result<()> {
        let s = ctx.session;
        let delay: Duration = self.delay.map(Into::into).unwrap_or(DEFAULT_DELAY);
        if delay.is_zero() {
            return Err(self.err(ctx, label, "`delay` must be more than 0".into()));
        }
        let check = s
            .exec(&program(&["check-fsync", &pid.to_string()]), ctx.timeout)
            .await?;
        let o = check.stdout.trim();
        if o.contains("NO_STRACE") {
            return Err(self.err(ctx, label, "strace is not installed on the node; `mode: fsync_delay` needs it (or use `mode: throttle` / `mode: fio`)".into()));
        }
        if o.contains("NO_SETSID") {
            return Err(self.err(
                ctx,
                label,
                "setsid (util-linux) is not installed on the node".into(),
            ));
        }
        match o.strip_prefix("TRACER ").map(str::trim) {
            Some("0") => {}
            Some(t) => {
                return Err(self.err(
                    ctx,
                    label,
                    format!("`{}` (PID {pid}) is already traced by PID {t} (another fsync_delay fault, or a debugger); a process has one tracer at most", self.process()),
                ))
            }
            None => return Err(self.err(ctx, label, format!("cannot read /proc/{pid}/status: {}", check.stderr.trim()))),
        }
        let id = new_id();
        let pid_file = format!("{RUN_DIR}/slow-disk-{id}.pid");
        let undo = SlowDiskUndo::FsyncDelay {
            pid_file: pid_file.clone(),
            marker: id.clone(),
            target_pid: pid,
        };
        if let Some(journal) = ctx.journal {
            journal
                .record(s, ctx.scenario, label, Undo::SlowDisk(undo.clone()))
                .await?;
        }
        let usec = delay.as_micros().max(1).to_string();
        let strace = strace_args(pid, delay);
        // With `reattach`, the detached process is slow_disk.sh's `watch` loop, which runs the
        // same strace against the newest `process` again whenever it ends.
        let command: Vec<&str> = if self.reattach {
            vec!["sh", "-c", PROGRAM, "slow_disk", "watch", self.process(), &usec]
        } else {
            strace.split_whitespace().collect()
        };
        s.run_ok(&detached(&pid_file, &id, &command), ctx.timeout)
            .await?;
        crate::failpoint::hit("slow_disk: fsync tracer started");
        // Attached when the target's TracerPid is the strace (the watcher's child: a process
        // carrying the fault's marker).
        let marker = format!("{MARKER_VAR}={id}");
        let verify = if self.reattach {
            program(&["wait-traced-marked", &pid.to_string(), &marker, &pid_file, &err_log(&pid_file)])
        } else {
            program(&["wait-traced", &pid.to_string(), &pid_file, &err_log(&pid_file)])
        };
        let out = s.exec(&verify, Duration::from_secs(30)).await?;
        if out.success() {
            return Ok(());
        }
        // Leave nothing behind on failure.
        let cleanup = undo.revert(s).await;
        let mut msg = format!(
            "could not attach strace to `{}` (PID {pid}): {}",
            self.process(),
            out.stdout.trim()
        );
        if let Err(e) = cleanup {
            msg.push_str(&format!("; cleaning up failed too: {e}"));
        }
        Err(self.err(ctx, label, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_command_delays_both_sync_calls_in_microseconds() {
        assert_eq!(
            strace_args(241, Duration::from_millis(200)),
            "strace -f -qq -o /dev/null -e trace=fdatasync,fsync -e inject=fdatasync,fsync:delay_enter=200000 -p 241"
        );
    }
}
