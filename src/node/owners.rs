//! Owner names for the `file` probe's `owner` fact (`user:group`, as `stat -c %U:%G` prints
//! them): from the node's /etc/passwd and /etc/group, read through the transport (SFTP or
//! std::fs, no process) and cached per node session.
//!
//! The files are read again when an id is not listed and the last read is older than a
//! second (a user created by a fault), and in any case after ten seconds. An id
//! listed in neither file (an NSS source such as LDAP) is resolved by `stat -L -c %U:%G` on
//! the node, which also gives GNU stat's `UNKNOWN` for ids nobody knows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::transport::{shell_quote, Transport};

/// A miss re-reads the files at most this often.
const REREAD_ON_MISS: Duration = Duration::from_secs(1);
/// Names are read again after this long, found or not.
const MAX_AGE: Duration = Duration::from_secs(10);

/// Per node session: the id -> name tables and when they were read.
#[derive(Default)]
pub struct Owners {
    tables: tokio::sync::Mutex<Option<Tables>>,
}

struct Tables {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
    read_at: Instant,
}

impl Tables {
    fn owner(&self, uid: u32, gid: u32) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.users.get(&uid)?,
            self.groups.get(&gid)?
        ))
    }
}

impl Owners {
    /// `user:group` of the file at `path`, owned by `uid`:`gid`.
    pub async fn owner(
        &self,
        t: &Transport,
        path: &str,
        uid: u32,
        gid: u32,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        {
            let mut tables = self.tables.lock().await;
            let stale = match tables.as_ref() {
                None => true,
                Some(tb) => {
                    let age = tb.read_at.elapsed();
                    age >= MAX_AGE || (tb.owner(uid, gid).is_none() && age >= REREAD_ON_MISS)
                }
            };
            if stale {
                *tables = Some(read_tables(t, timeout).await?);
            }
            if let Some(o) = tables.as_ref().and_then(|tb| tb.owner(uid, gid)) {
                return Ok(o);
            }
        }
        let cmd = format!("LC_ALL=C stat -L -c %U:%G -- {}", shell_quote(path));
        let left = deadline.saturating_duration_since(Instant::now());
        let out = t.exec(&cmd, left).await?;
        if !out.success() {
            return Err(Error::Command {
                host: t.host().to_string(),
                command: cmd,
                exit: out.exit.unwrap_or(-1),
                stderr: out.stderr.trim().to_string(),
            });
        }
        Ok(out.stdout.trim().to_string())
    }
}

/// Reads /etc/passwd and /etc/group (a missing file is an empty table).
async fn read_tables(t: &Transport, timeout: Duration) -> Result<Tables> {
    let (users, groups) = futures::future::try_join(
        t.read_file("/etc/passwd", timeout),
        t.read_file("/etc/group", timeout),
    )
    .await?;
    let text = |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
    Ok(Tables {
        users: names(&text(users)),
        groups: names(&text(groups)),
        read_at: Instant::now(),
    })
}

/// id -> name from a passwd or group file (`name:password:id:...`); the first entry of an id
/// wins, as with getpwuid(3) on the files backend.
fn names(table: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in table.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if name.is_empty() || name.starts_with(['#', '+', '-']) {
            continue;
        }
        if let Ok(id) = id.trim().parse::<u32>() {
            out.entry(id).or_insert_with(|| name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn passwd_and_group_lines() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                      # comment\n\
                      toor:x:0:0::/root:/bin/sh\n\
                      etcd:x:998:997::/var/lib/etcd:/usr/sbin/nologin\n\
                      +nis\n\
                      broken\n";
        let u = names(passwd);
        assert_eq!(u[&0], "root", "first entry of an id wins");
        assert_eq!(u[&998], "etcd");
        assert_eq!(u.len(), 3);
        let g = names("root:x:0:\netcd:x:997:alice,bob\n");
        assert_eq!(g[&997], "etcd");
    }
}
