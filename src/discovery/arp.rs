//! The host's ARP table (`/proc/net/arp`): neighbours already known, so checking them
//! costs no ARP broadcast. Entries in Victron's MAC block come first.
//!
//! Victron Energy B.V. holds the IEEE MA-M block `C0:61:9A:B` (28 bits); the rest of
//! `C0:61:9A` belongs to other vendors. Older GX devices, and Cerbos whose portal id
//! comes from a Wi-Fi module, have MACs of other vendors. So the block only raises the
//! priority of an entry and proves nothing.

use std::net::Ipv4Addr;

/// One complete entry of the neighbour table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub interface: String,
}

impl Neighbour {
    /// True when the MAC is in Victron's MA-M block `C0:61:9A:B`.
    pub fn is_victron(&self) -> bool {
        self.mac[0] == 0xC0 && self.mac[1] == 0x61 && self.mac[2] == 0x9A && self.mac[3] >> 4 == 0xB
    }
}

/// ATF_COM: the entry is complete because the neighbour replied.
const FLAG_COMPLETE: u32 = 0x2;

/// Parses the text of `/proc/net/arp`, keeping complete entries only, Victron's block
/// first.
pub fn parse(text: &str) -> Vec<Neighbour> {
    let mut out: Vec<Neighbour> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 6 {
                return None;
            }
            let ip: Ipv4Addr = fields[0].parse().ok()?;
            let flags = u32::from_str_radix(fields[2].trim_start_matches("0x"), 16).ok()?;
            if flags & FLAG_COMPLETE == 0 {
                return None;
            }
            let mac = parse_mac(fields[3])?;
            if mac == [0; 6] {
                return None;
            }
            Some(Neighbour { ip, mac, interface: fields[5].to_string() })
        })
        .collect();
    out.sort_by_key(|n| !n.is_victron());
    out
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Reads the neighbour table. An unreadable file (no procfs) gives an empty table.
pub fn read() -> Vec<Neighbour> {
    match std::fs::read_to_string("/proc/net/arp") {
        Ok(text) => parse(&text),
        Err(err) => {
            tracing::debug!(error = %err, "cannot read /proc/net/arp");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.1      0x1         0x2         11:22:33:44:55:66     *        eth0
192.168.1.30     0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.1.20     0x1         0x2         c0:61:9a:b0:d0:e1     *        eth0
192.168.1.21     0x1         0x2         c0:61:9a:d0:00:01     *        eth0
garbage line
";

    #[test]
    fn parses_complete_entries_victron_first() {
        let table = parse(TABLE);
        assert_eq!(table.len(), 3, "{table:?}");
        assert_eq!(table[0].ip, Ipv4Addr::new(192, 168, 1, 20));
        assert!(table[0].is_victron());
        assert_eq!(table[0].interface, "eth0");
        assert!(table.iter().all(|n| n.ip != Ipv4Addr::new(192, 168, 1, 30)));
    }

    #[test]
    fn victron_block_is_28_bits() {
        let neighbour = |mac| Neighbour { ip: Ipv4Addr::LOCALHOST, mac, interface: "eth0".into() };
        assert!(neighbour([0xC0, 0x61, 0x9A, 0xB0, 0, 0]).is_victron());
        assert!(neighbour([0xC0, 0x61, 0x9A, 0xBF, 0xFF, 0xFF]).is_victron());
        assert!(!neighbour([0xC0, 0x61, 0x9A, 0xC0, 0, 0]).is_victron());
        assert!(!neighbour([0xC0, 0x61, 0x9A, 0xD0, 0, 0]).is_victron());
        assert!(!neighbour([0x48, 0xE7, 0xDA, 0xB0, 0, 0]).is_victron());
    }
}
