//! Network: the host bridge the nodes' `host0` interfaces hang off, one per sandbox instance
//! (instance k: bridge `bfbr<k>`, 198.18.0.`32k+1`/27; 198.18.0.0/24 is a range reserved for
//! network testing), created with iproute2 and checked for conflicts first. IPv6 is switched
//! off on it so nothing but 198.18.0.0/24 traffic appears.

use std::net::Ipv4Addr;
use std::path::Path;

use super::cmd;
use crate::error::{Error, Result};

/// True when a network interface called `name` exists on the host.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// IPv4 addresses on the host's interfaces: (interface, address, prefix length).
///
/// Errors: `ip -o -4 addr show` fails.
pub async fn host_addresses() -> Result<Vec<(String, Ipv4Addr, u8)>> {
    let out = cmd::run("ip", &["-o", "-4", "addr", "show"]).await?;
    Ok(parse_ip_addr(&out))
}

/// Parses `ip -o -4 addr show` lines (`2: eth0    inet 192.0.2.2/24 brd ... scope global eth0`).
pub fn parse_ip_addr(out: &str) -> Vec<(String, Ipv4Addr, u8)> {
    out.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "inet")?;
            let ifname = w
                .get(1)?
                .trim_end_matches(':')
                .split('@')
                .next()?
                .to_string();
            let (addr, len) = w.get(i + 1)?.split_once('/')?;
            Some((ifname, addr.parse().ok()?, len.parse().ok()?))
        })
        .collect()
}

/// True when `a` is in 198.18.0.0/24.
pub fn in_sandbox_net(a: Ipv4Addr) -> bool {
    let [x, y, z, _] = a.octets();
    (x, y, z) == (198, 18, 0)
}

/// True when `addr/len` on some interface overlaps instance `k`'s network
/// (198.18.0.`32k`/27): the address is inside it, or its network covers it.
pub fn overlaps_instance(k: u8, addr: Ipv4Addr, len: u8) -> bool {
    let net = super::network_of(k);
    covers(net, super::PREFIX_LEN, addr) || (len < super::PREFIX_LEN && covers(addr, len, net))
}

/// Checks that instance `k`'s network is free: no interface but its bridge holds an address
/// in (or a network around) 198.18.0.`32k`/27, and the bridge itself exists only if `ours`
/// (recorded in the sandbox state). Other instances' bridges hold other /27s.
///
/// Errors: the address or bridge is taken by something else (the message names it and says
/// how to free it).
pub async fn check_free(k: u8, ours: bool) -> Result<()> {
    let bridge = super::bridge_of(k);
    for (ifname, addr, len) in host_addresses().await? {
        if ifname != bridge && overlaps_instance(k, addr, len) {
            return Err(Error::other(format!(
                "the network of sandbox instance {k} ({}/{}) is already in use: interface `{ifname}` has {addr}/{len}. \
                 The sandbox needs {}/{} on its own bridge `{bridge}`; remove that address or interface first",
                super::network_of(k),
                super::PREFIX_LEN,
                super::host_addr_of(k),
                super::PREFIX_LEN
            )));
        }
    }
    if link_exists(&bridge) && !ours {
        return Err(Error::other(format!(
            "a network interface called `{bridge}` already exists but no sandbox state records it \
             (left over from another tool or a lost state?). Check it with `ip addr show {bridge}` \
             and remove it with `ip link del {bridge}` if it is not in use"
        )));
    }
    Ok(())
}

fn covers(net: Ipv4Addr, len: u8, a: Ipv4Addr) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - u32::from(len.min(32)));
    (u32::from(net) & mask) == (u32::from(a) & mask)
}

/// Creates instance `k`'s bridge with the host address, IPv6 off, and brings it up. An
/// existing bridge of that name (ours, from a half-finished `up`) is reused.
///
/// Errors: an `ip` command fails.
pub async fn create_bridge(k: u8) -> Result<()> {
    let bridge = super::bridge_of(k);
    let bridge = bridge.as_str();
    if !link_exists(bridge) {
        cmd::run("ip", &["link", "add", bridge, "type", "bridge"]).await?;
    }
    // No IPv6 link-local chatter on the sandbox network (best effort: IPv6 may be absent).
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6"),
        "1\n",
    );
    let cidr = format!("{}/{}", super::host_addr_of(k), super::PREFIX_LEN);
    cmd::run("ip", &["addr", "replace", &cidr, "dev", bridge]).await?;
    cmd::run("ip", &["link", "set", bridge, "up"]).await?;
    Ok(())
}

/// Deletes the bridge if it exists (the nodes' veth ends go with their containers).
///
/// Errors: `ip link del` fails.
pub async fn delete_bridge(bridge: &str) -> Result<()> {
    if link_exists(bridge) {
        cmd::run("ip", &["link", "del", bridge]).await?;
    }
    Ok(())
}

/// The host end of a node's veth pair as systemd-nspawn names it for `--network-bridge`:
/// `vb-` and the machine name (systemd-nspawn(1), `--network-veth`; our node names are short
/// enough not to be hashed).
pub fn node_veth(machine: &str) -> String {
    format!("vb-{machine}")
}

/// Deletes the host end of `machine`'s veth pair if it is still there, which takes its peer
/// (`host0`) with it.
///
/// Why: a node whose processes were all killed can leave its network namespace alive for
/// minutes (the kernel keeps it while an orphaned TCP socket in it retransmits), and with it
/// the pair; the next systemd-nspawn for that machine then fails with "Failed to add new veth
/// interfaces (vb-node01:host0): File exists".
///
/// Errors: `ip link del` fails.
pub async fn delete_node_veth(machine: &str) -> Result<()> {
    let name = node_veth(machine);
    if link_exists(&name) {
        // The kernel removes the pair on its own when the node's namespace finally goes, which
        // can happen between the check and the delete: only a link still there is an error.
        if let Err(e) = cmd::run("ip", &["link", "del", &name]).await {
            if link_exists(&name) {
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_output_and_spots_conflicts() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                   2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n\
                   5: bfbr0    inet 198.18.0.1/24 scope global bfbr0\n";
        let v = parse_ip_addr(out);
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[2],
            ("bfbr0".to_string(), Ipv4Addr::new(198, 18, 0, 1), 24)
        );
        assert!(in_sandbox_net(Ipv4Addr::new(198, 18, 0, 200)));
        assert!(!in_sandbox_net(Ipv4Addr::new(198, 18, 1, 1)));
        assert!(!covers(
            Ipv4Addr::new(198, 16, 0, 0),
            15,
            Ipv4Addr::new(198, 18, 0, 1)
        ));
        assert!(covers(
            Ipv4Addr::new(198, 18, 0, 0),
            15,
            Ipv4Addr::new(198, 18, 0, 1)
        ));
    }

    #[test]
    fn instances_conflict_only_with_what_overlaps_their_own_slice() {
        let a = |d: u8| Ipv4Addr::new(198, 18, 0, d);
        // Instance 1's bridge does not get in instance 0's way, and the other way round.
        assert!(!overlaps_instance(0, a(33), 27));
        assert!(!overlaps_instance(1, a(1), 27));
        assert!(overlaps_instance(1, a(40), 32));
        // An old-style /24 on some interface covers every instance.
        assert!(overlaps_instance(1, a(1), 24));
        assert!(overlaps_instance(7, Ipv4Addr::new(198, 16, 0, 1), 14));
        assert!(!overlaps_instance(0, Ipv4Addr::new(192, 0, 2, 2), 24));
    }
}
