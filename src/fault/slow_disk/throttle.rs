//! `slow_disk` mode `throttle`: a write IOPS/bytes limit in the process's cgroup (v2
//! `io.max`, v1 `blkio.throttle.write_*_device`) for the block device under `path`.


use super::*;

/// What the cgroup probe found for one candidate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupCandidate {
    /// `2` or `1`.
    pub version: u8,
    /// The file (v2: io.max; v1: blkio.throttle.write_iops_device).
    pub file: String,
    /// `ok`, `missing` or `read-only`.
    pub state: String,
}

/// Parses the probe script's `V2 <file> <state>` / `V1 <file> <state>` lines.
pub fn parse_candidates(out: &str) -> Vec<CgroupCandidate> {
    out.lines()
        .filter_map(|l| {
            let (v, rest) = l.split_once(' ')?;
            let version = match v {
                "V2" => 2,
                "V1" => 1,
                _ => return None,
            };
            let (file, state) = rest.rsplit_once(' ')?;
            Some(CgroupCandidate {
                version,
                file: file.to_string(),
                state: state.to_string(),
            })
        })
        .collect()
}

/// The limit line for `device` in a v2 `io.max`, as `key -> value`.
pub fn io_max_values(io_max: &str, device: &str) -> Vec<(String, String)> {
    io_max
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(device)).then(|| {
                it.filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The value for `device` in a v1 `blkio.throttle.*_device` file (`MAJ:MIN N` lines).
pub fn v1_value(contents: &str, device: &str) -> Option<String> {
    contents.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(device))
            .then(|| it.next().map(str::to_string))
            .flatten()
    })
}

/// Where a throttle goes.
pub(super) struct ThrottlePlan {
    /// `MAJ:MIN` of the whole disk.
    device: String,
    /// What findmnt reported (`/dev/loop0`).
    source: String,
    /// The writable limit file.
    pick: CgroupCandidate,
}

impl SlowDiskAction {
    /// Finds the device and a writable cgroup limit file. `Ok(Err(why))`: throttling is
    /// impossible here (why names the node, the process and every file tried).
    pub(super) async fn throttle_plan(
        &self,
        ctx: &ActionCtx<'_>,
        label: &str,
        pid: u32,
    ) -> Result<std::result::Result<ThrottlePlan, String>> {
        let s = ctx.session;
        let path = self.path();
        let node = &s.node.name;
        let q = shell_quote(path);
        let dev = s
            .exec(
                &format!("findmnt -n -o SOURCE,MAJ:MIN --target {q}"),
                ctx.timeout,
            )
            .await?;
        if !dev.success() {
            return Err(self.err(
                ctx,
                label,
                format!(
                    "`findmnt --target {path}` failed: {} {}",
                    dev.stdout.trim(),
                    dev.stderr.trim()
                ),
            ));
        }
        let mut parts = dev.stdout.split_whitespace();
        let (Some(source), Some(majmin)) = (parts.next(), parts.next()) else {
            return Err(self.err(
                ctx,
                label,
                format!("`findmnt --target {path}` printed `{}`", dev.stdout.trim()),
            ));
        };
        if majmin.starts_with("0:") {
            return Ok(Err(format!(
                "{path} on {node} is on {source} ({majmin}), which is not a block device, so there is nothing to throttle; use `mode: fsync_delay`"
            )));
        }
        // Throttling works on whole disks: a partition's limit goes on its disk.
        let disk = s
            .exec(
                &program(&["whole-disk", majmin]),
                ctx.timeout,
            )
            .await?;
        let device = disk.stdout.trim().to_string();
        let device = if device.contains(':') {
            device
        } else {
            majmin.to_string()
        };
        let script = program(&["throttle-candidates", &pid.to_string()]);
        let out = s.run_ok(&script, ctx.timeout).await?;
        let cands = parse_candidates(&out.stdout);
        let Some(pick) = cands.iter().find(|c| c.state == "ok").cloned() else {
            let tried: Vec<String> = cands
                .iter()
                .map(|c| {
                    let why = match (c.version, c.state.as_str()) {
                        (2, "missing") => {
                            "missing: the io controller is not enabled for this cgroup"
                        }
                        (_, "missing") => "missing",
                        (_, "read-only") => {
                            "read-only: the controller is not delegated to this node"
                        }
                        (_, other) => other,
                    };
                    format!("{} ({why})", c.file)
                })
                .collect();
            let tried = if tried.is_empty() {
                "none found (no cgroup2 or v1 blkio hierarchy is mounted)".to_string()
            } else {
                tried.join(", ")
            };
            return Ok(Err(format!(
                "cannot throttle block I/O on {node}: no writable cgroup limit file for `{}` (PID {pid}); tried: {tried}. \
                 A node whose cgroup controllers are not delegated to it (a container, such as the breakfix sandbox's nodes) \
                 cannot limit its own disk; use `mode: fsync_delay` instead",
                self.process()
            )));
        };
        Ok(Ok(ThrottlePlan {
            device,
            source: source.to_string(),
            pick,
        }))
    }

    pub(super) async fn apply_throttle(
        &self,
        ctx: &ActionCtx<'_>,
        label: &str,
        plan: ThrottlePlan,
    ) -> Result<()> {
        let s = ctx.session;
        let iops = match (self.write_iops, self.write_bps) {
            (None, None) => Some(DEFAULT_WRITE_IOPS),
            (i, _) => i,
        };
        if iops == Some(0) || self.write_bps == Some(0) {
            return Err(self.err(
                ctx,
                label,
                "`write_iops` and `write_bps` must be more than 0".into(),
            ));
        }
        let dev = &plan.device;
        // (file, new line, restore line)
        let mut changes: Vec<(String, String, String)> = Vec::new();
        if plan.pick.version == 2 {
            let cur = s
                .run_ok(
                    &format!("cat {}", shell_quote(&plan.pick.file)),
                    ctx.timeout,
                )
                .await?;
            let prev = io_max_values(&cur.stdout, dev);
            let get = |k: &str| {
                prev.iter()
                    .find(|(kk, _)| kk == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| "max".into())
            };
            let mut new = dev.clone();
            let mut restore = dev.clone();
            if let Some(n) = iops {
                new.push_str(&format!(" wiops={n}"));
                restore.push_str(&format!(" wiops={}", get("wiops")));
            }
            if let Some(n) = self.write_bps {
                new.push_str(&format!(" wbps={n}"));
                restore.push_str(&format!(" wbps={}", get("wbps")));
            }
            changes.push((plan.pick.file.clone(), new, restore));
        } else {
            let iops_file = plan.pick.file.clone();
            let bps_file = iops_file.replace("write_iops_device", "write_bps_device");
            for (n, file) in [(iops, iops_file), (self.write_bps, bps_file)] {
                let Some(n) = n else { continue };
                let cur = s
                    .run_ok(&format!("cat {}", shell_quote(&file)), ctx.timeout)
                    .await?;
                let prev = v1_value(&cur.stdout, dev).unwrap_or_else(|| "0".into());
                changes.push((file, format!("{dev} {n}"), format!("{dev} {prev}")));
            }
        }
        let undo = SlowDiskUndo::Throttle {
            device: dev.clone(),
            writes: changes
                .iter()
                .map(|(f, _, r)| CgroupWrite {
                    file: f.clone(),
                    restore: r.clone(),
                })
                .collect(),
        };
        if let Some(journal) = ctx.journal {
            journal
                .record(s, ctx.scenario, label, Undo::SlowDisk(undo))
                .await?;
        }
        for (file, line, _) in &changes {
            let out = s
                .exec(
                    &format!("echo {} > {}", shell_quote(line), shell_quote(file)),
                    ctx.timeout,
                )
                .await?;
            if !out.success() {
                return Err(self.err(
                    ctx,
                    label,
                    format!(
                        "writing `{line}` to {file} (device {} of {}) failed: {}",
                        plan.device,
                        plan.source,
                        out.stderr.trim()
                    ),
                ));
            }
            crate::failpoint::hit("slow_disk: throttle written");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_candidates() {
        let out = "V2 /sys/fs/cgroup/unified/system.slice/etcd.service/io.max missing\nV1 /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device read-only\n";
        let c = parse_candidates(out);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].version, 2);
        assert_eq!(c[0].state, "missing");
        assert_eq!(
            c[1].file,
            "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device"
        );
        assert_eq!(c[1].state, "read-only");
    }

    #[test]
    fn reads_previous_limits() {
        let io = "8:0 rbps=max wbps=max riops=max wiops=max\n7:0 rbps=max wbps=1048576 riops=max wiops=20\n";
        let v = io_max_values(io, "7:0");
        assert!(v.contains(&("wiops".into(), "20".into())));
        assert!(v.contains(&("wbps".into(), "1048576".into())));
        assert!(io_max_values(io, "7:1").is_empty());
        assert_eq!(v1_value("7:0 20\n8:0 5\n", "8:0").as_deref(), Some("5"));
        assert_eq!(v1_value("", "8:0"), None);
    }
}
