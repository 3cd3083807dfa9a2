//! The acceptance scenarios of zero-configuration discovery.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::capture::{max_in_window, Capture, Frame};
use crate::gx::{self, is_event, is_status, Discover};
use crate::net::{skip_reason, Lan};

const GX_A: &str = "c0619ab0d0e1";
const GX_B: &str = "c0619ab88ee0";

macro_rules! skip_unless_lan {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

fn is_use_of(json: &serde_json::Value, portal: &str) -> bool {
    is_event(json, "use") && json["portal_id"] == portal
}

/// The method of the first candidate line for `host`.
fn first_method(discover: &Discover, host: Ipv4Addr) -> Option<String> {
    discover
        .seen
        .iter()
        .find(|l| is_event(&l.json, "candidate") && l.json["host"] == host.to_string())
        .map(|l| l.json["method"].as_str().unwrap_or("").to_string())
}

/// Asserts the scan-rate and scope rules on what the daemon's namespace sent.
fn check_traffic(frames: &[Frame], subnet: [u8; 3]) -> (usize, f64) {
    let peak = max_in_window(frames, Duration::from_secs(1));
    if peak > 20 {
        let t0 = frames[0].at;
        for f in frames {
            eprintln!("{:8.3} type {:04x} dst {:?} proto {} port {} flags {:02x}",
                f.at.duration_since(t0).as_secs_f64(), f.ethertype, f.dst, f.protocol, f.dst_port, f.tcp_flags);
        }
    }
    assert!(peak <= 20, "{peak} packets within one second");
    for frame in frames {
        let Some(dst) = frame.dst else { continue };
        if dst.is_multicast() || dst.is_broadcast() {
            continue;
        }
        let o = dst.octets();
        assert_eq!([o[0], o[1], o[2]], subnet, "unicast to {dst} outside the attached /24");
    }
    let seconds = match (frames.first(), frames.last()) {
        (Some(a), Some(b)) => b.at.duration_since(a.at).as_secs_f64().max(1.0),
        _ => 1.0,
    };
    (peak, frames.len() as f64 / seconds)
}

#[test]
fn found_by_ssdp_alone() {
    skip_unless_lan!();
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(61);
    let daemon = lan.host("d", 10);
    let gx_host = lan.host("gx", 20);
    let decoy = lan.host("decoy", 30);
    gx::full_gx(&mut lan, &gx_host, dir.path(), GX_A, &["--web", "off"]);
    gx::broker(&mut lan, &decoy, dir.path(), None);

    let capture = Capture::start(&daemon.ns, "eth0");
    let data = dir.path().join("data");
    let mut discover = Discover::start(&mut lan, &daemon, &data, &["--duration", "40"]);
    let used = discover.wait_for(Duration::from_secs(35), |j| is_event(j, "use"));
    let used = used.unwrap_or_else(|| panic!("no GX used:\n{}", discover.dump()));
    let elapsed = used.at.duration_since(discover.started);
    eprintln!("ssdp: GX used after {:.1} s", elapsed.as_secs_f64());

    assert_eq!(used.json["portal_id"], GX_A);
    assert_eq!(used.json["host"], gx_host.addr.to_string());
    assert_eq!(used.json["model"], "Cerbo GX");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert_eq!(first_method(&discover, gx_host.addr).as_deref(), Some("ssdp"));
    assert!(!discover.seen.iter().any(|l| is_event(&l.json, "sweep_started")), "{}", discover.dump());

    let stored = std::fs::read_to_string(data.join("discovery.json")).unwrap();
    assert!(stored.contains(GX_A), "{stored}");
    let (peak, average) = check_traffic(&capture.frames(), lan.subnet);
    eprintln!("ssdp: peak {peak} packets/s, average {average:.1} packets/s");
}

#[test]
fn found_by_mdns_alone() {
    skip_unless_lan!();
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(62);
    let daemon = lan.host("d", 10);
    let gx_host = lan.host("gx", 20);
    let decoy = lan.host("decoy", 30);
    gx::full_gx(&mut lan, &gx_host, dir.path(), GX_A, &["--ssdp", "false", "--mdns", "--web", "off"]);
    gx::broker(&mut lan, &decoy, dir.path(), None);

    let capture = Capture::start(&daemon.ns, "eth0");
    let mut discover = Discover::start(&mut lan, &daemon, &dir.path().join("data"), &["--duration", "40"]);
    let used = discover.wait_for(Duration::from_secs(35), |j| is_event(j, "use"));
    let used = used.unwrap_or_else(|| panic!("no GX used:\n{}", discover.dump()));
    let elapsed = used.at.duration_since(discover.started);
    eprintln!("mdns: GX used after {:.1} s", elapsed.as_secs_f64());

    assert_eq!(used.json["portal_id"], GX_A);
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert_eq!(first_method(&discover, gx_host.addr).as_deref(), Some("mdns"));
    let (peak, average) = check_traffic(&capture.frames(), lan.subnet);
    eprintln!("mdns: peak {peak} packets/s, average {average:.1} packets/s");
}
