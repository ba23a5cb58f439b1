//! Host address: the IPv4 address a node running breakfix itself (`transport: local`) has on
//! the cluster's network, for an inventory's `address: auto`.
//!
//! The choice follows kubeadm's default advertise address (k8s.io/apimachinery
//! `net.ChooseHostInterface`): the global IPv4 address of the interface that carries the
//! default route (`/proc/net/route`, destination `00000000`); on a host without a default
//! route, the first global IPv4 address of any interface, in the kernel's interface order.
//! A global address is one that is not loopback (127/8), link-local (169.254/16) or
//! unspecified.
//!
//! Guarantees: reads only `/proc/net/route` and the interface list (`getifaddrs(3)`); sends
//! nothing. Caveats: on a host without a default route and with several networks (a CNI
//! bridge beside the node's own interface) the first one in interface order wins; write the
//! address into the inventory there instead of `auto`.

use std::net::Ipv4Addr;

/// The value of an inventory node's `address` that asks for [`host_ipv4`].
pub const AUTO: &str = "auto";

/// The name of the interface that carries the IPv4 default route, read from the text of
/// `/proc/net/route` (a header line, then `Iface Destination Gateway Flags ...` per route,
/// destinations in hex). `None` without a default route. The route must be up (flag 0x1).
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (iface, dest, flags) = (cols.first()?, cols.get(1)?, cols.get(3)?);
        let up = u16::from_str_radix(flags, 16).is_ok_and(|f| f & 0x1 != 0);
        (*dest == "00000000" && up).then(|| iface.to_string())
    })
}

/// Is `ip` an address other hosts can reach this one on (not loopback, link-local or
/// unspecified)?
pub fn is_global(ip: Ipv4Addr) -> bool {
    !(ip.is_loopback() || ip.is_link_local() || ip.is_unspecified())
}

/// Picks from `(interface, address)` pairs in interface order: the first global address of
/// `default_iface` if given and it has one, else the first global address of any interface.
pub fn choose(addrs: &[(String, Ipv4Addr)], default_iface: Option<&str>) -> Option<Ipv4Addr> {
    let global = || addrs.iter().filter(|(_, ip)| is_global(*ip));
    default_iface
        .and_then(|d| global().find(|(i, _)| i == d).map(|(_, ip)| *ip))
        .or_else(|| global().map(|(_, ip)| *ip).next())
}

/// This host's address on its network (see the module docs for the rule).
///
/// Errors: the interface list cannot be read, or no interface has a global IPv4 address;
/// the message says which.
pub fn host_ipv4() -> Result<Ipv4Addr, String> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default_iface = default_route_interface(&routes);
    let addrs: Vec<(String, Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("cannot list this host's network interfaces: {e}"))?
        .filter_map(|a| {
            let ip = a.address?.as_sockaddr_in()?.ip();
            Some((a.interface_name, ip))
        })
        .collect();
    choose(&addrs, default_iface.as_deref()).ok_or_else(|| {
        "no interface of this host has an IPv4 address other than loopback or link-local"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES_WITH_DEFAULT: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        cni0\t0001F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        enp1s0\t00000000\t01011EAC\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        enp1s0\t00011EAC\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";

    /// A sandbox node's table (observed): no default route, a pod network route via a peer.
    const ROUTES_SANDBOX: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        host0\t0001F40A\tAC0012C6\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        host0\tA00012C6\t00000000\t0001\t0\t0\t0\tE0FFFFFF\t0\t0\t0\n";

    fn addrs() -> Vec<(String, Ipv4Addr)> {
        vec![
            ("lo".into(), Ipv4Addr::new(127, 0, 0, 1)),
            ("cni0".into(), Ipv4Addr::new(10, 244, 1, 1)),
            ("enp1s0".into(), Ipv4Addr::new(169, 254, 3, 3)),
            ("enp1s0".into(), Ipv4Addr::new(172, 30, 1, 2)),
        ]
    }

    #[test]
    fn the_default_route_names_the_interface() {
        assert_eq!(
            default_route_interface(ROUTES_WITH_DEFAULT).as_deref(),
            Some("enp1s0")
        );
        assert_eq!(default_route_interface(ROUTES_SANDBOX), None);
        assert_eq!(default_route_interface(""), None);
        // A default route that is not up does not count.
        let down =
            ROUTES_WITH_DEFAULT.replace("00000000\t01011EAC\t0003", "00000000\t01011EAC\t0002");
        assert_eq!(default_route_interface(&down), None);
    }

    #[test]
    fn the_default_route_interface_wins_over_interface_order() {
        assert_eq!(
            choose(&addrs(), Some("enp1s0")),
            Some(Ipv4Addr::new(172, 30, 1, 2)),
            "its global address, not its link-local one, and not cni0's"
        );
    }

    #[test]
    fn without_a_default_route_the_first_global_address_is_taken() {
        assert_eq!(choose(&addrs(), None), Some(Ipv4Addr::new(10, 244, 1, 1)));
        let sandbox = vec![
            ("lo".into(), Ipv4Addr::new(127, 0, 0, 1)),
            ("host0".into(), Ipv4Addr::new(198, 18, 0, 171)),
        ];
        assert_eq!(
            choose(&sandbox, default_route_interface(ROUTES_SANDBOX).as_deref()),
            Some(Ipv4Addr::new(198, 18, 0, 171))
        );
    }

    #[test]
    fn loopback_and_link_local_only_is_none() {
        let only = vec![
            ("lo".into(), Ipv4Addr::new(127, 0, 0, 1)),
            ("eth0".into(), Ipv4Addr::new(169, 254, 1, 1)),
        ];
        assert_eq!(choose(&only, Some("eth0")), None);
    }

    /// On this machine the rule finds some global address or says why not; never loopback.
    #[test]
    fn host_ipv4_is_never_loopback() {
        match host_ipv4() {
            Ok(ip) => assert!(is_global(ip), "{ip}"),
            Err(e) => assert!(e.contains("IPv4"), "{e}"),
        }
    }
}
