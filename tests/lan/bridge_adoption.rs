//! Which GX the daemon adopts: a second GX that appears after the adoption is reported
//! and never used, and with two GX devices at first start nothing is adopted until the
//! portal id option names one.

use std::time::{Duration, Instant};

use crate::daemon::{Site, ATTRIBUTES, GX, STATUS};
use crate::gx::{self, GX_A};
use crate::traffic::probes;

const GX_B: &str = "c0619ab88ee0";

/// Time scale 1. GX A is adopted by SSDP; GX B then starts announcing itself every 3 s.
#[test]
fn daemon_reports_second_gx_never_uses_it() {
    skip_unless_lan!();
    const TIME_SCALE: f64 = 1.0;
    let mut site = Site::new(83);
    let gx_a = site.lan.host("gxa", 20);
    let gx_b = site.lan.host("gxb", 21);
    let dir = site.dir.path().to_path_buf();
    gx::live_gx(
        &mut site.lan,
        &gx_a,
        &dir,
        GX_A,
        None,
        TIME_SCALE,
        &["--web", "off"],
    );

    let daemon = site.start_daemon(TIME_SCALE, &[], &[]);
    let soc = site.wait_soc(daemon.started, Duration::from_secs(30));
    assert!(
        soc.is_some(),
        "{}\n{}",
        site.watcher.dump(),
        daemon.log_tail()
    );
    let online = site
        .watcher
        .wait(daemon.started, Duration::from_secs(5), GX, |p| {
            p == "online"
        });
    let online_at = online.expect("GX link online").at;

    gx::broker(&mut site.lan, &gx_b, &dir, None);
    gx::simulator(&mut site.lan, &gx_b, &dir, GX_B, None, TIME_SCALE);
    let appeared = Instant::now();
    let flags = [
        "--web",
        "off",
        "--notify-interval",
        "3",
        "--model",
        "Ekrano GX",
    ];
    gx::sim_lan(&mut site.lan, &gx_b, GX_B, &flags);
    let reported = site
        .watcher
        .wait(appeared, Duration::from_secs(20), ATTRIBUTES, |p| {
            p.contains(GX_B)
        });
    let Some(reported) = reported else {
        panic!(
            "GX B not reported:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let after = reported.at.duration_since(appeared);
    let attributes: serde_json::Value = serde_json::from_str(&reported.payload).unwrap();
    let others = attributes["other_gx"]
        .as_array()
        .expect("other_gx is a list");
    assert_eq!(others.len(), 1, "{attributes}");
    assert_eq!(others[0]["portal_id"], GX_B);
    assert_eq!(others[0]["host"], gx_b.addr.to_string());
    assert_eq!(attributes["portal_id"], GX_A, "still bridging GX A");

    // Another 15 s: GX B keeps announcing itself and is still not used.
    site.watcher.collect(Duration::from_secs(15));
    let attributes = site.watcher.attributes();
    assert_eq!(attributes["portal_id"], GX_A);
    assert_eq!(attributes["gx_host"], format!("{}:1883", gx_a.addr));
    let link_states = site.watcher.between(GX, online_at, Instant::now());
    assert!(
        link_states.iter().all(|m| m.payload == "online"),
        "{}",
        site.watcher.dump()
    );
    let clients = gx::broker_clients(&gx::log_path(&dir, &gx_b));
    let from_daemon: Vec<_> = clients
        .iter()
        .filter(|(addr, _)| *addr == site.host.addr.to_string())
        .collect();
    assert!(
        from_daemon.is_empty(),
        "the daemon connected to GX B: {from_daemon:?}"
    );
    let log = daemon.log();
    let logged = log.matches("another GX is on the network").count();
    assert_eq!(logged, 1, "logged once:\n{}", daemon.log_tail());

    // Nothing but the GX link leaves the daemon's host while connected.
    site.assert_scan_limits();
    let sent = probes(
        &site.frames(),
        gx_a.addr,
        online_at + Duration::from_secs(1),
        Instant::now(),
    );
    assert!(
        sent.is_empty(),
        "{} packets besides the GX link while connected: {sent:?}",
        sent.len()
    );
    eprintln!(
        "daemon other_gx: second GX reported {:.1} s after it started announcing itself, \
         {:.0} s connected without a probe",
        after.as_secs_f64(),
        Instant::now().duration_since(online_at).as_secs_f64()
    );
}

/// Time scale 1. Two GX devices at first start: `multiple_gx`, and nothing adopted.
/// After a restart with `ROAMCORE_PORTAL_ID` naming GX B, GX B is bridged and GX A never.
#[test]
fn daemon_two_gx_wait_for_portal_id() {
    skip_unless_lan!();
    const TIME_SCALE: f64 = 1.0;
    let mut site = Site::new(84);
    let gx_a = site.lan.host("gxa", 20);
    let gx_b = site.lan.host("gxb", 21);
    let dir = site.dir.path().to_path_buf();
    gx::live_gx(
        &mut site.lan,
        &gx_a,
        &dir,
        GX_A,
        None,
        TIME_SCALE,
        &["--web", "off"],
    );
    let flags = ["--web", "off", "--model", "Ekrano GX"];
    gx::live_gx(&mut site.lan, &gx_b, &dir, GX_B, None, TIME_SCALE, &flags);

    let daemon = site.start_daemon(TIME_SCALE, &[], &[]);
    let status = site
        .watcher
        .wait(daemon.started, Duration::from_secs(30), STATUS, |p| {
            p == "multiple_gx"
        });
    let Some(status) = status else {
        panic!(
            "no multiple_gx:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let after = status.at.duration_since(daemon.started);
    site.watcher.collect(Duration::from_secs(1));
    let attributes = site.watcher.attributes();
    let detail = attributes["detail"].as_str().unwrap();
    assert!(detail.contains(GX_A), "{detail}");
    assert!(detail.contains(GX_B), "{detail}");
    assert!(detail.contains("portal_id"), "{detail}");

    // Ten more seconds: still nothing adopted, nothing bridged.
    site.watcher.collect(Duration::from_secs(10));
    let now = Instant::now();
    assert!(site
        .watcher
        .between(crate::daemon::SOC, daemon.started, now)
        .is_empty());
    let online = site.watcher.between(GX, daemon.started, now);
    assert!(
        online.iter().all(|m| m.payload != "online"),
        "{}",
        site.watcher.dump()
    );
    let statuses = site.watcher.between(STATUS, status.at, now);
    assert!(
        statuses.iter().all(|m| m.payload == "multiple_gx"),
        "{}",
        site.watcher.dump()
    );
    assert!(
        !site.data().join("discovery.json").exists(),
        "nothing adopted"
    );
    gx::assert_not_bridged(&gx::log_path(&dir, &gx_a));
    gx::assert_not_bridged(&gx::log_path(&dir, &gx_b));
    site.lan.terminate(daemon.index);

    // The add-on option portal_id arrives as ROAMCORE_PORTAL_ID after a restart.
    let picked = site.start_daemon(TIME_SCALE, &[], &[("ROAMCORE_PORTAL_ID", GX_B)]);
    let soc = site.wait_soc(picked.started, Duration::from_secs(30));
    let Some(soc) = soc else {
        panic!(
            "GX B not bridged:\n{}\n{}",
            site.watcher.dump(),
            picked.log_tail()
        );
    };
    let picked_after = soc.at.duration_since(picked.started);
    site.watcher.collect(Duration::from_secs(2));
    let attributes = site.watcher.attributes();
    assert_eq!(attributes["portal_id"], GX_B);
    assert_eq!(attributes["gx_host"], format!("{}:1883", gx_b.addr));
    gx::assert_not_bridged(&gx::log_path(&dir, &gx_a));
    let stored = std::fs::read_to_string(site.data().join("discovery.json")).unwrap();
    assert!(stored.contains(GX_B), "{stored}");
    assert!(!stored.contains(GX_A), "{stored}");
    eprintln!(
        "daemon multiple_gx: status after {:.1} s; with the portal id, first entity after {:.1} s",
        after.as_secs_f64(),
        picked_after.as_secs_f64()
    );
}
