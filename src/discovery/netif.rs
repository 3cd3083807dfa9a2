//! The host's own IPv4 interfaces, polled so that a changed address or an interface that
//! went down and up can rebuild the SSDP and mDNS sockets without a restart.

use std::net::Ipv4Addr;

use crate::config::Ipv4Net;

/// One IPv4 address of an interface that is up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostAddr {
    pub interface: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl HostAddr {
    pub fn net(&self) -> Ipv4Net {
        Ipv4Net { addr: self.addr, prefix: self.prefix }
    }
}

/// The IPv4 addresses of all interfaces that are up, loopback excluded, sorted so that
/// two snapshots compare equal when nothing changed.
pub fn snapshot() -> std::io::Result<Vec<HostAddr>> {
    let mut out: Vec<HostAddr> = if_addrs::get_if_addrs()?
        .into_iter()
        .filter(|interface| !interface.is_loopback() && interface.is_oper_up())
        .filter_map(|interface| match interface.addr {
            if_addrs::IfAddr::V4(v4) => {
                Some(HostAddr { interface: interface.name, addr: v4.ip, prefix: v4.prefixlen })
            }
            if_addrs::IfAddr::V6(_) => None,
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The interfaces whose multicast traffic we take part in: every interface that is up,
/// except container bridges and veths.
pub fn lan_addrs(all: &[HostAddr]) -> Vec<HostAddr> {
    all.iter().filter(|a| !super::policy::is_container_interface(&a.interface)).cloned().collect()
}

/// True when `ip` is in a subnet the host is directly attached to.
pub fn is_attached(all: &[HostAddr], ip: Ipv4Addr) -> bool {
    all.iter().any(|a| a.net().contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_addrs_skip_bridges() {
        let addr = |name: &str, last: u8| HostAddr {
            interface: name.into(),
            addr: Ipv4Addr::new(192, 168, 1, last),
            prefix: 24,
        };
        let all = vec![addr("eth0", 2), addr("docker0", 3), addr("veth12", 4), addr("hassio", 5)];
        let lan = lan_addrs(&all);
        assert_eq!(lan.len(), 1);
        assert_eq!(lan[0].interface, "eth0");
        assert!(is_attached(&all, Ipv4Addr::new(192, 168, 1, 200)));
        assert!(!is_attached(&all, Ipv4Addr::new(192, 168, 2, 1)));
    }
}
