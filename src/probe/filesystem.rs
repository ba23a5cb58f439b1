//! `filesystem` probe: the filesystem holding a path, as GNU `df` reports it; facts `exists`
//! (the path), `free_bytes` (size - used: free even for root, the same count `disk_fill`'s
//! `free:` uses), `available_bytes` (df's Avail: what non-root processes may still use),
//! `size_bytes`, `use_percent` (df's Use%, a number), `free_inodes`, `source` (the mounted
//! device), `fs_type`, `mount_point`.

use super::{Facts, ProbeCtx, ProbeKind};
use crate::error::{Error, Result};
use crate::template::Renderer;
use crate::transport::shell_quote;

crate::probe_spec! {
    /// ```yaml
    /// - kind: filesystem
    ///   name: etcd-disk-has-room
    ///   path: /var/lib/etcd
    ///   expect: { free_bytes: { gt: 104857600 }, free_inodes: { gt: 1000 } }
    /// ```
    pub struct FilesystemProbe {
        /// A path on the node; the probe looks at the filesystem holding it.
        pub path: String,
        /// Expectations.
        pub expect: FilesystemExpect,
    }
}

crate::expect_block! {
    /// Facts of a `filesystem` probe.
    pub struct FilesystemExpect {
        exists, free_bytes, available_bytes, size_bytes, use_percent, free_inodes, source,
        fs_type, mount_point,
    }
}

/// df's columns, in the order the probe asks for them.
const COLUMNS: &str = "source,fstype,size,used,avail,pcent,iavail,target";

/// Facts from df's data line (`source fstype size used avail pcent iavail target`); `None`
/// when it is not one. A `-` (a filesystem without inodes or without a percentage) is null.
pub fn parse_df(line: &str) -> Option<Facts> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.len() < 8 {
        return None;
    }
    let num = |s: &str| -> Option<serde_json::Value> {
        if s == "-" {
            return Some(serde_json::Value::Null);
        }
        s.trim_end_matches('%').parse::<u64>().ok().map(Into::into)
    };
    let size: u64 = cols[2].parse().ok()?;
    let used: u64 = cols[3].parse().ok()?;
    let mut f = Facts::default();
    f.set("exists", true);
    f.set("source", cols[0]);
    f.set("fs_type", cols[1]);
    f.set("size_bytes", size);
    f.set("free_bytes", size.saturating_sub(used));
    f.set("available_bytes", num(cols[4])?);
    f.set("use_percent", num(cols[5])?);
    f.set("free_inodes", num(cols[6])?);
    // A mount point may hold spaces: the rest of the line.
    f.set("mount_point", cols[7..].join(" "));
    Some(f)
}

impl ProbeKind for FilesystemProbe {
    type Expect = FilesystemExpect;

    fn expect(&self) -> &FilesystemExpect {
        &self.expect
    }

    fn plan_target(&self) -> (&'static str, String) {
        ("filesystem of", self.path.clone())
    }

    fn render(&self, r: &Renderer) -> Result<Self> {
        let mut p = self.clone();
        p.expect = self.expect.render(r)?;
        p.path = r.text(&self.path)?;
        Ok(p)
    }

    /// One `df` run; a path that does not exist is the fact `exists: false`.
    async fn gather(&self, ctx: &ProbeCtx<'_>, _wanted: &[&str]) -> Result<Facts> {
        let q = shell_quote(&self.path);
        let cmd = format!(
            "if [ ! -e {q} ]; then echo MISSING; exit 0; fi; df -B1 --output={COLUMNS} -- {q} | tail -n 1"
        );
        let out = ctx.session.transport.exec(&cmd, ctx.timeout).await?;
        let line = out.stdout.trim();
        if out.success() && line == "MISSING" {
            let mut f = Facts::default();
            f.set("exists", false);
            return Ok(f);
        }
        match (out.success(), parse_df(line)) {
            (true, Some(f)) => Ok(f),
            _ => Err(Error::other(format!(
                "`df` on {} for {} failed: {}{}",
                ctx.session.node.name,
                self.path,
                out.stderr.trim(),
                line
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_line_becomes_facts() {
        let f = parse_df("/dev/loop3 ext4 1020702720 104857600 863252480 11% 65000 /var/lib/etcd")
            .unwrap();
        let v = |k: &str| f.values[k].clone();
        assert_eq!(v("free_bytes"), 915845120u64);
        assert_eq!(v("available_bytes"), 863252480u64);
        assert_eq!(v("use_percent"), 11u64);
        assert_eq!(v("free_inodes"), 65000u64);
        assert_eq!(v("source"), "/dev/loop3");
        assert_eq!(v("fs_type"), "ext4");
        assert_eq!(v("mount_point"), "/var/lib/etcd");
    }

    #[test]
    fn dashes_are_null_and_spaces_stay_in_the_mount_point() {
        let f = parse_df("overlay overlay 100 40 60 - - /mnt/a b").unwrap();
        assert_eq!(f.values["use_percent"], serde_json::Value::Null);
        assert_eq!(f.values["free_inodes"], serde_json::Value::Null);
        assert_eq!(f.values["mount_point"], "/mnt/a b");
        assert!(parse_df("Filesystem Type 1B-blocks Used Avail Use% IFree Mounted").is_none());
        assert!(parse_df("").is_none());
    }

    #[test]
    fn real_df_output_parses() {
        let out = std::process::Command::new("df")
            .args(["-B1", &format!("--output={COLUMNS}"), "--", "/"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let f = parse_df(text.lines().last().unwrap()).unwrap();
        assert_eq!(f.values["mount_point"], "/");
        assert!(f.values["size_bytes"].as_u64().unwrap() > 0);
    }
}
