//! The scan rules, checked on the frames the daemon's host sent: at most 20 packets per
//! second besides the GX link, no unicast outside the attached subnet, and nothing but
//! the GX link while connected.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::capture::{max_in_window, Frame};

/// The scan limit: packets within any one second.
pub const MAX_PACKETS_PER_SECOND: usize = 20;

/// Asserts at most 20 packets within any second, and returns that peak. The GX link's
/// own connections (an MQTT stream of tens of messages per second) are not scan traffic
/// and are not counted. They are the TCP connections to port 1883 that sent packets both
/// before and after a moment in `online`, when Home Assistant's broker got
/// `roamcore/victron/gx` `online`. A validation ends before the GX it finds is used.
pub fn assert_scan_rate(frames: &[Frame], online: &[Instant]) -> usize {
    let links = link_connections(frames, online);
    let counted: Vec<Frame> = frames
        .iter()
        .filter(|f| !(f.protocol == 6 && links.contains(&(f.dst, f.src_port))))
        .copied()
        .collect();
    let peak = max_in_window(&counted, Duration::from_secs(1));
    if peak > MAX_PACKETS_PER_SECOND {
        dump_peak(&counted);
    }
    assert!(
        peak <= MAX_PACKETS_PER_SECOND,
        "{peak} scan packets within one second"
    );
    peak
}

/// Returns the (destination, source port) of each TCP connection to port 1883 that sent
/// packets both before and after a moment in `online`.
fn link_connections(frames: &[Frame], online: &[Instant]) -> Vec<(Option<Ipv4Addr>, u16)> {
    let mut spans: HashMap<(Option<Ipv4Addr>, u16), (Instant, Instant)> = HashMap::new();
    for frame in frames
        .iter()
        .filter(|f| f.protocol == 6 && f.dst_port == 1883)
    {
        let span = spans
            .entry((frame.dst, frame.src_port))
            .or_insert((frame.at, frame.at));
        span.1 = frame.at;
    }
    spans
        .into_iter()
        .filter(|(_, (first, last))| online.iter().any(|at| first < at && last > at))
        .map(|(key, _)| key)
        .collect()
}

/// Asserts that every unicast IPv4 packet and every ARP frame is for an address in the
/// attached /24 `subnet`.
pub fn assert_in_subnet(frames: &[Frame], subnet: [u8; 3]) {
    for frame in frames {
        let Some(dst) = frame.dst else { continue };
        if frame.ethertype == 0x0800 && (dst.is_multicast() || dst.is_broadcast()) {
            continue;
        }
        let o = dst.octets();
        assert_eq!(
            [o[0], o[1], o[2]],
            subnet,
            "a frame for {dst}, outside the attached /24"
        );
    }
}

/// Returns the frames within `[from, to)` that are not part of the GX link to `gx`:
/// anything but TCP to the GX's port 1883, ARP about the GX, and IGMP (the kernel's
/// multicast membership reports for the passive SSDP socket).
pub fn probes(frames: &[Frame], gx: Ipv4Addr, from: Instant, to: Instant) -> Vec<Frame> {
    frames
        .iter()
        .filter(|f| f.at >= from && f.at < to)
        .filter(|f| {
            let link =
                f.ethertype == 0x0800 && f.protocol == 6 && f.dst == Some(gx) && f.dst_port == 1883;
            let arp = f.ethertype == 0x0806 && f.dst == Some(gx);
            let igmp = f.ethertype == 0x0800 && f.protocol == 2;
            !(link || arp || igmp)
        })
        .copied()
        .collect()
}

/// Prints the frames of the fullest one-second window, to see what a peak is made of.
pub fn dump_peak(frames: &[Frame]) {
    let window = Duration::from_secs(1);
    let (mut best, mut best_start, mut start) = (0, 0, 0);
    for end in 0..frames.len() {
        while frames[end].at.duration_since(frames[start].at) >= window {
            start += 1;
        }
        if end - start + 1 > best {
            best = end - start + 1;
            best_start = start;
        }
    }
    let t0 = frames[0].at;
    for f in &frames[best_start..best_start + best] {
        eprintln!(
            "{:8.3} type {:04x} dst {:?} proto {} port {} flags {:02x}",
            f.at.duration_since(t0).as_secs_f64(),
            f.ethertype,
            f.dst,
            f.protocol,
            f.dst_port,
            f.tcp_flags
        );
    }
}
