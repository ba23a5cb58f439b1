//! TCP listeners from the kernel's /proc/net/tcp and /proc/net/tcp6 tables, written the way
//! `ss -Htln` writes local addresses (`127.0.0.1:2379`, `[::1]:2379`, `[::ffff:10.0.0.1]:80`).
//!
//! The tables print each address as the hex of the in-memory words of the socket address,
//! i.e. in the node's byte order; nodes are assumed little-endian (x86-64, arm64).
//! One difference from `ss`: a dual-stack IPv6 wildcard listener (not `IPV6_V6ONLY`) is
//! `[::]:port` here where `ss` prints `*:port` (the tables do not say which it is).
//!
//! Cost: no process, but the kernel walks its whole TCP hash table on every read(2) of these
//! files (about 2.5 ms per read on the benchmark machine; two reads per small table, one more
//! per 4 KiB of output), where `ss` asks for listening sockets only over netlink.

use std::net::{Ipv4Addr, Ipv6Addr};

/// `st` of a socket in LISTEN state.
const LISTEN: &str = "0A";

/// Local addresses (`ip:port`) of the sockets in LISTEN state in a /proc/net/tcp or
/// /proc/net/tcp6 table, in table order. Lines that do not parse are skipped.
pub fn listening(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _slot = fields.next()?;
            let local = fields.next()?;
            let _remote = fields.next()?;
            if fields.next()? != LISTEN {
                return None;
            }
            address(local)
        })
        .collect()
}

/// `HEXADDR:HEXPORT` as `ip:port` (IPv6 in brackets).
fn address(hex: &str) -> Option<String> {
    let (addr, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    match addr.len() {
        8 => {
            let ip = Ipv4Addr::from(word(addr)?);
            Some(format!("{ip}:{port}"))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            Some(format!("[{}]:{port}", Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// One 32-bit word as printed by the kernel (`%08X` of the stored value) back to the bytes
/// it holds in memory (little-endian node).
fn word(hex: &str) -> Option<[u8; 4]> {
    Some(u32::from_str_radix(hex, 16).ok()?.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::listening;

    /// Lines from a sandbox control plane's /proc/net/tcp (etcd and sshd listening, plus
    /// established connections, which must not count).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0B0012C6:094C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1299274 1 00000000571e9682 100 0 0 10 0
   1: 0B0012C6:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1299277 1 000000000c082c76 100 0 0 10 0
   2: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1299276 1 00000000132f23ac 100 0 0 10 0
   3: 0100007F:094D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1299278 1 00000000ce3aafc1 100 0 0 10 0
   4: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1285244 1 0000000040416a44 100 0 0 10 0
   5: 0B0012C6:0016 010012C6:8782 01 00000144:00000000 01:00000014 00000000     0        0 1301843 4 00000000694a4333 20 4 15 21 -1
   6: 0B0012C6:B814 0B0012C6:094B 01 00000000:00000000 02:0000032B 00000000     0        0 1300161 2 00000000989e5afd 20 4 31 15 -1
";

    /// /proc/net/tcp6 with listeners on `::` (port 52265), `::1` (39365) and the IPv4-mapped
    /// `::ffff:127.0.0.1` (36009), and an established connection on `::1`.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:CC29 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1307424 1 00000000f2e5ddfe 100 0 0 10 0
   1: 00000000000000000000000001000000:99C5 00000000000000000000000000000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 1307421 2 000000000aa73c6b 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:8CA9 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1307422 1 0000000067dbe2b7 100 0 0 10 0
   3: 00000000000000000000000001000000:CD4E 00000000000000000000000001000000:99C5 01 00000000:00000000 00:00000000 00000000     0        0 1307425 2 00000000c5126349 20 0 0 10 -1
";

    #[test]
    fn ipv4_listeners_in_table_order_without_established_sockets() {
        assert_eq!(
            listening(TCP),
            vec![
                "198.18.0.11:2380",
                "198.18.0.11:2379",
                "127.0.0.1:2379",
                "127.0.0.1:2381",
                "0.0.0.0:22",
            ]
        );
    }

    #[test]
    fn ipv6_wildcard_loopback_and_ipv4_mapped() {
        assert_eq!(
            listening(TCP6),
            vec!["[::]:52265", "[::1]:39365", "[::ffff:127.0.0.1]:36009"]
        );
    }

    #[test]
    fn garbage_and_headers_are_skipped() {
        assert!(listening("").is_empty());
        assert!(listening("  sl  local_address rem_address   st\n").is_empty());
        assert!(listening("   0: XYZ:0016 00000000:0000 0A\n").is_empty());
        assert!(listening("   0: 0100007F 00000000:0000 0A\n").is_empty());
        assert!(listening("   0: 0100:0016 00000000:0000 0A\n").is_empty());
    }
}
