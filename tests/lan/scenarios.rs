//! The acceptance scenarios of zero-configuration discovery.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::capture::{max_in_window, Capture, Frame};
use crate::gx::{self, is_event, is_status, Discover};
use crate::net::Lan;
use crate::traffic::dump_peak;

const GX_A: &str = "c0619ab0d0e1";
const GX_B: &str = "c0619ab88ee0";

fn is_use_of(json: &serde_json::Value, portal: &str) -> bool {
    is_event(json, "use") && json["portal_id"] == portal
}

/// Returns the method of the first candidate line for `host`.
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
    if peak > 20 || std::env::var_os("ROAMCORE_TEST_DUMP").is_some() {
        dump_peak(frames);
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
    assert!(
        !discover.seen.iter().any(|l| is_event(&l.json, "sweep_started")),
        "{}",
        discover.dump()
    );

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
    gx::full_gx(
        &mut lan,
        &gx_host,
        dir.path(),
        GX_A,
        &["--ssdp", "false", "--mdns", "--web", "off"],
    );
    gx::broker(&mut lan, &decoy, dir.path(), None);

    let capture = Capture::start(&daemon.ns, "eth0");
    let mut discover =
        Discover::start(&mut lan, &daemon, &dir.path().join("data"), &["--duration", "40"]);
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

#[test]
fn found_by_sweep_alone_on_a_24() {
    skip_unless_lan!();
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(63);
    let daemon = lan.host("d", 10);
    let gx_host = lan.host("gx", 200);
    let decoy = lan.host("decoy", 30);
    // A /16 behind a second interface: too large, never swept.
    let far = lan.far_network(&daemon, "10.99.0.10/16", "far", "10.99.0.20/16");
    gx::full_gx(&mut lan, &gx_host, dir.path(), GX_A, &["--ssdp", "false", "--web", "gui"]);
    gx::broker(&mut lan, &decoy, dir.path(), None);
    gx::broker(&mut lan, &far, dir.path(), None);

    let capture = Capture::start(&daemon.ns, "eth0");
    let far_capture = Capture::start(&daemon.ns, "eth1");
    let mut discover =
        Discover::start(&mut lan, &daemon, &dir.path().join("data"), &["--duration", "190"]);
    let used = discover.wait_for(Duration::from_secs(185), |j| is_event(j, "use"));
    let used = used.unwrap_or_else(|| panic!("no GX used:\n{}", discover.dump()));
    let elapsed = used.at.duration_since(discover.started);
    eprintln!("sweep: GX used after {:.1} s", elapsed.as_secs_f64());

    assert_eq!(used.json["portal_id"], GX_A);
    assert_eq!(used.json["host"], gx_host.addr.to_string());
    assert!(elapsed < Duration::from_secs(180), "took {elapsed:?}");
    let method = first_method(&discover, gx_host.addr);
    assert!(matches!(method.as_deref(), Some("sweep") | Some("arp")), "{method:?}");
    let decoy_outcome = discover
        .seen
        .iter()
        .find(|l| is_event(&l.json, "outcome") && l.json["host"] == decoy.addr.to_string());
    if let Some(line) = decoy_outcome {
        assert_eq!(line.json["outcome"], "not_gx", "the decoy broker is not a GX");
    }
    assert!(
        discover
            .seen
            .iter()
            .any(|l| is_event(&l.json, "sweep_skipped") && l.json["subnet"] == "10.99.0.0/16"),
        "{}",
        discover.dump()
    );

    let (peak, average) = check_traffic(&capture.frames(), lan.subnet);
    eprintln!(
        "sweep: peak {peak} packets/s, average {average:.1} packets/s, {} frames",
        capture.frames().len()
    );
    let far_unicast: Vec<Frame> = far_capture
        .frames()
        .into_iter()
        .filter(|f| f.ethertype == 0x0806 || f.dst.is_some_and(|d| !d.is_multicast()))
        .collect();
    assert!(far_unicast.is_empty(), "{} unicast or ARP frames into the /16", far_unicast.len());
}

#[test]
fn two_gx_at_first_start_then_option() {
    skip_unless_lan!();
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(64);
    let daemon = lan.host("d", 10);
    let gx_a = lan.host("gxa", 20);
    let gx_b = lan.host("gxb", 21);
    gx::full_gx(&mut lan, &gx_a, dir.path(), GX_A, &["--web", "off"]);
    gx::full_gx(&mut lan, &gx_b, dir.path(), GX_B, &["--web", "off", "--model", "Ekrano GX"]);

    let data = dir.path().join("data");
    let mut discover = Discover::start(&mut lan, &daemon, &data, &["--duration", "40"]);
    let status = discover.wait_for(Duration::from_secs(35), |j| is_status(j, "multiple_gx"));
    let status = status.unwrap_or_else(|| panic!("no multiple_gx:\n{}", discover.dump()));
    let detail = status.json["detail"].as_str().unwrap();
    assert!(detail.contains(GX_A), "{detail}");
    assert!(detail.contains(GX_B), "{detail}");
    assert!(!discover.seen.iter().any(|l| is_event(&l.json, "use")));
    discover.drain(Duration::from_secs(3));
    assert!(!discover.seen.iter().any(|l| is_event(&l.json, "use")), "{}", discover.dump());
    assert!(!data.join("discovery.json").exists(), "nothing adopted");

    let mut picked =
        Discover::start(&mut lan, &daemon, &data, &["--duration", "40", "--portal-id", GX_B]);
    let used = picked.wait_for(Duration::from_secs(35), |j| is_event(j, "use"));
    let used = used.unwrap_or_else(|| panic!("no GX used:\n{}", picked.dump()));
    assert_eq!(used.json["portal_id"], GX_B);
    assert_eq!(used.json["host"], gx_b.addr.to_string());
    let stored = std::fs::read_to_string(data.join("discovery.json")).unwrap();
    assert!(stored.contains(GX_B), "{stored}");
    assert!(!stored.contains(GX_A), "{stored}");
}

#[test]
fn second_gx_reported_and_quiet_while_connected() {
    skip_unless_lan!();
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(65);
    let daemon = lan.host("d", 10);
    let gx_a = lan.host("gxa", 20);
    let gx_b = lan.host("gxb", 21);
    let decoy = lan.host("decoy", 30);
    gx::full_gx(&mut lan, &gx_a, dir.path(), GX_A, &["--web", "off"]);
    gx::broker(&mut lan, &decoy, dir.path(), None);

    let data = dir.path().join("data");
    let mut first = Discover::start(&mut lan, &daemon, &data, &["--duration", "30"]);
    assert!(
        first.wait_for(Duration::from_secs(25), |j| is_use_of(j, GX_A)).is_some(),
        "{}",
        first.dump()
    );

    // A second GX appears after the adoption.
    gx::full_gx(&mut lan, &gx_b, dir.path(), GX_B, &["--web", "off", "--notify-interval", "3"]);
    let capture = Capture::start(&daemon.ns, "eth0");
    let mut watch = Discover::start(
        &mut lan,
        &daemon,
        &data,
        &["--watch", "--duration", "40", "--act-connected"],
    );
    let used = watch.wait_for(Duration::from_secs(10), |j| is_event(j, "use"));
    let used =
        used.unwrap_or_else(|| panic!("the adopted GX was not used at once:\n{}", watch.dump()));
    assert_eq!(used.json["portal_id"], GX_A);
    let connected_at = used.at;
    let others = watch.wait_for(Duration::from_secs(20), |j| is_event(j, "others_seen"));
    let others =
        others.unwrap_or_else(|| panic!("the second GX was not reported:\n{}", watch.dump()));
    assert_eq!(others.json["others"][0]["portal_id"], GX_B);
    assert_eq!(others.json["others"][0]["host"], gx_b.addr.to_string());
    watch.drain(Duration::from_secs(15));
    assert!(!watch.seen.iter().any(|l| is_use_of(&l.json, GX_B)), "{}", watch.dump());
    let reports = watch.seen.iter().filter(|l| is_event(&l.json, "others_seen")).count();
    assert_eq!(reports, 1, "reported once:\n{}", watch.dump());

    // Nothing at all leaves the daemon's namespace while connected (after a second for
    // the last validation's closing segments).
    let quiet_from = connected_at + Duration::from_secs(1);
    let sent: Vec<Frame> = capture.frames().into_iter().filter(|f| f.at >= quiet_from).collect();
    let probes: Vec<&Frame> =
        sent.iter().filter(|f| f.ethertype == 0x0800 && f.protocol != 2).collect();
    assert!(probes.is_empty(), "{} packets while connected: {probes:?}", probes.len());
}

#[test]
fn mqtt_disabled_says_how_to_fix() {
    skip_unless_lan!();
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(66);
    let daemon = lan.host("d", 10);
    let gx_host = lan.host("gx", 20);
    // MQTT access off: no broker at all, and SSDP announces X_MqttOnLan=0.
    gx::sim_lan(&mut lan, &gx_host, GX_A, &["--mqtt-on-lan", "0", "--web", "login"]);

    let mut discover =
        Discover::start(&mut lan, &daemon, &dir.path().join("data"), &["--duration", "40"]);
    let status = discover.wait_for(Duration::from_secs(35), |j| is_status(j, "mqtt_disabled"));
    let status = status.unwrap_or_else(|| panic!("no mqtt_disabled:\n{}", discover.dump()));
    let elapsed = status.at.duration_since(discover.started);
    eprintln!("mqtt_disabled after {:.1} s", elapsed.as_secs_f64());
    assert!(elapsed < Duration::from_secs(30));
    let detail = status.json["detail"].as_str().unwrap();
    assert!(detail.contains(&gx_host.addr.to_string()), "{detail}");
    assert!(detail.contains("Settings -> Integrations"), "{detail}");
    assert!(detail.contains("MQTT Access"), "{detail}");
}

#[test]
fn auth_required_one_login_per_minute() {
    skip_unless_lan!();
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(67);
    let daemon = lan.host("d", 10);
    let gx_host = lan.host("gx", 20);
    gx::broker(&mut lan, &gx_host, dir.path(), Some("secret"));
    gx::publish_serial(&lan, &gx_host, GX_A, Some("secret"));
    gx::sim_lan(&mut lan, &gx_host, GX_A, &["--web", "login", "--notify-interval", "5"]);

    let data = dir.path().join("data");
    let started = Instant::now();
    let mut discover = Discover::start(&mut lan, &daemon, &data, &["--watch", "--duration", "135"]);
    let status = discover.wait_for(Duration::from_secs(35), |j| is_status(j, "auth_required"));
    let status = status.unwrap_or_else(|| panic!("no auth_required:\n{}", discover.dump()));
    assert!(status.at.duration_since(started) < Duration::from_secs(30));
    assert!(status.json["detail"].as_str().unwrap().contains("password"));
    discover.drain(Duration::from_secs(140));

    // Mosquitto logs each rejected CONNECT as "Sending CONNACK to <client> (0, 5)".
    let log = std::fs::read_to_string(gx::log_path(dir.path(), &gx_host)).unwrap();
    let rejected: Vec<u64> = log
        .lines()
        .filter(|l| {
            l.contains("Sending CONNACK") && (l.ends_with("(0, 5)") || l.ends_with("(0, 4)"))
        })
        .map(|l| l.split(':').next().unwrap().trim().parse().unwrap())
        .collect();
    eprintln!("auth: rejected logins at {rejected:?}");
    assert!(!rejected.is_empty(), "no login attempt seen:\n{log}");
    assert!(rejected.len() <= 3, "{} logins in 135 s", rejected.len());
    for pair in rejected.windows(2) {
        assert!(pair[1] - pair[0] >= 59, "logins {} s apart", pair[1] - pair[0]);
    }

    // With the password the same GX is used.
    let mut with_password =
        Discover::start(&mut lan, &daemon, &data, &["--duration", "30", "--gx-password", "secret"]);
    let used = with_password.wait_for(Duration::from_secs(25), |j| is_use_of(j, GX_A));
    assert!(used.is_some(), "{}", with_password.dump());
}

/// Starts discover with the daemon's LAN interface down, brings it up, and checks that
/// the GX is then found by `method` (the rebuilt SSDP or mDNS sockets).
fn found_after_interface_up(third: u8, gx_flags: &[&str], method: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(third);
    let daemon = lan.host("d", 10);
    // At the end of the /24, so a sweep would take over a minute to reach it.
    let gx_host = lan.host("gx", 250);
    gx::full_gx(&mut lan, &gx_host, dir.path(), GX_A, gx_flags);

    let down = lan.exec(&daemon, "ip", &["link", "set", "eth0", "down"]);
    assert!(down.status.success());
    let mut discover =
        Discover::start(&mut lan, &daemon, &dir.path().join("data"), &["--duration", "60"]);
    discover.drain(Duration::from_secs(4));
    assert!(!discover.seen.iter().any(|l| is_event(&l.json, "use")));
    let up_at = Instant::now();
    let up = lan.exec(&daemon, "ip", &["link", "set", "eth0", "up"]);
    assert!(up.status.success());
    lan.exec(&daemon, "ip", &["route", "replace", "224.0.0.0/4", "dev", "eth0"]);

    let used = discover.wait_for(Duration::from_secs(40), |j| is_event(j, "use"));
    let used = used
        .unwrap_or_else(|| panic!("no GX used after the interface came up:\n{}", discover.dump()));
    let elapsed = used.at.duration_since(up_at);
    eprintln!(
        "flap ({method}): GX used {:.1} s after the interface came up",
        elapsed.as_secs_f64()
    );
    assert_eq!(first_method(&discover, gx_host.addr).as_deref(), Some(method));
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

#[test]
fn interface_up_later_rebuilds_mdns() {
    skip_unless_lan!();
    found_after_interface_up(68, &["--ssdp", "false", "--mdns", "--web", "off"], "mdns");
}

#[test]
fn interface_up_later_rebuilds_ssdp() {
    skip_unless_lan!();
    found_after_interface_up(69, &["--web", "off", "--notify-interval", "600"], "ssdp");
}

#[test]
fn adopted_gx_found_at_new_address() {
    skip_unless_lan!();
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(70);
    let daemon = lan.host("d", 10);
    let gx_host = lan.host("gx", 25);
    // The GX's old address now belongs to a device without MQTT.
    let _stranger = lan.host("other", 20);
    gx::full_gx(&mut lan, &gx_host, dir.path(), GX_A, &["--web", "off"]);

    // Adopted at .20 before the router handed out new addresses.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let old = format!(
        "{{\"portal_id\":\"{GX_A}\",\"host\":\"{}.{}.{}.20\",\"port\":1883,\"tls\":false}}",
        lan.subnet[0], lan.subnet[1], lan.subnet[2]
    );
    std::fs::write(data.join("discovery.json"), old).unwrap();

    let mut discover = Discover::start(&mut lan, &daemon, &data, &["--duration", "40"]);
    let used = discover.wait_for(Duration::from_secs(35), |j| is_event(j, "use"));
    let used = used.unwrap_or_else(|| panic!("no GX used:\n{}", discover.dump()));
    eprintln!("moved: GX used after {:.1} s", used.at.duration_since(discover.started).as_secs_f64());
    assert_eq!(used.json["portal_id"], GX_A);
    assert_eq!(used.json["host"], gx_host.addr.to_string());
    assert!(!discover.seen.iter().any(|l| is_status(&l.json, "mqtt_disabled")), "{}", discover.dump());
    let stored = std::fs::read_to_string(data.join("discovery.json")).unwrap();
    assert!(stored.contains(&gx_host.addr.to_string()), "{stored}");
}

#[test]
fn secured_gx_tls_pinned_then_untrusted() {
    skip_unless_lan!();
    if !std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(71);
    let daemon = lan.host("d", 10);
    let gx_host = lan.host("gx", 20);
    let (cert, key) = gx::gx_certificate(dir.path(), "first");
    let broker = gx::tls_broker(&mut lan, &gx_host, dir.path(), &cert, &key, "secret");
    gx::publish_serial_tls(&lan, &gx_host, GX_A, &cert, "secret");
    gx::sim_lan(&mut lan, &gx_host, GX_A, &["--web", "secured", "--https"]);
    let data = dir.path().join("data");

    // Without the password: 1883 is closed, 8883 rejects the login.
    let mut first = Discover::start(&mut lan, &daemon, &data, &["--duration", "30"]);
    let status = first.wait_for(Duration::from_secs(25), |j| is_status(j, "auth_required"));
    assert!(status.is_some(), "{}", first.dump());

    // With the password: used over TLS, and the certificate is pinned.
    let mut second = Discover::start(&mut lan, &daemon, &data, &["--duration", "30", "--gx-password", "secret"]);
    let used = second.wait_for(Duration::from_secs(25), |j| is_event(j, "use"));
    let used = used.unwrap_or_else(|| panic!("no GX used:\n{}", second.dump()));
    assert_eq!(used.json["portal_id"], GX_A);
    assert_eq!(used.json["port"], 8883);
    assert_eq!(used.json["tls"], true);
    let pins = std::fs::read_to_string(data.join("tls_pins.json")).unwrap();
    assert!(pins.contains(GX_A), "{pins}");

    // The GX comes back with another certificate (a factory reset, or an impostor).
    lan.stop(broker);
    let (cert2, key2) = gx::gx_certificate(dir.path(), "second");
    gx::tls_broker(&mut lan, &gx_host, dir.path(), &cert2, &key2, "secret");
    gx::publish_serial_tls(&lan, &gx_host, GX_A, &cert2, "secret");
    let mut third = Discover::start(&mut lan, &daemon, &data, &["--duration", "30", "--gx-password", "secret"]);
    let status = third.wait_for(Duration::from_secs(25), |j| is_status(j, "tls_untrusted"));
    let status = status.unwrap_or_else(|| panic!("no tls_untrusted:\n{}", third.dump()));
    assert!(status.json["detail"].as_str().unwrap().contains("--repin"));
    assert!(!third.seen.iter().any(|l| is_event(&l.json, "use")), "{}", third.dump());
}

#[test]
fn sweep_and_probes_explain_rejected_login() {
    skip_unless_lan!();
    let dir = tempfile::tempdir().unwrap();
    let mut lan = Lan::new(72);
    let daemon = lan.host("d", 10);
    // Early in the sweep order, with no SSDP and no mDNS: only the sweep finds it, and
    // only the web page, certificate and Modbus probes show it is a GX.
    let gx_host = lan.host("gx", 3);
    gx::broker(&mut lan, &gx_host, dir.path(), Some("secret"));
    gx::publish_serial(&lan, &gx_host, GX_A, Some("secret"));
    gx::sim_lan(&mut lan, &gx_host, GX_A, &["--ssdp", "false", "--web", "login", "--https", "--modbus"]);

    let mut discover = Discover::start(&mut lan, &daemon, &dir.path().join("data"), &["--duration", "60"]);
    let status = discover.wait_for(Duration::from_secs(55), |j| is_status(j, "auth_required"));
    let status = status.unwrap_or_else(|| panic!("no auth_required:\n{}", discover.dump()));
    let detail = status.json["detail"].as_str().unwrap();
    assert!(detail.contains(&gx_host.addr.to_string()), "{detail}");
    assert!(detail.contains(GX_A), "the Modbus portal id is in the message: {detail}");
    // The outcome line may follow the status: they travel on separate channels.
    let host = gx_host.addr.to_string();
    let outcome = discover.wait_for(Duration::from_secs(5), |j| is_event(j, "outcome") && j["host"] == host);
    let outcome = outcome.unwrap_or_else(|| panic!("no outcome for {host}:\n{}", discover.dump()));
    let evidence = outcome.json["evidence"].as_str().unwrap_or("");
    assert!(evidence.contains("login page"), "{evidence}");
    assert!(evidence.contains("certificate"), "{evidence}");
    assert!(evidence.contains("Modbus"), "{evidence}");
}
