//! The daemon keeps the GX through a router reboot: the GX at a new address, and a link
//! outage, both without a daemon restart.

use std::time::{Duration, Instant};

use crate::daemon::{Site, GX, STATUS};
use crate::gx::{self, GX_A};

/// Time scale 1, so the 2-minute bound is real time. The GX gets a new address from
/// DHCP: its old one goes silent (packets to it are dropped, as after a router reboot),
/// and its services announce the new one.
#[test]
fn daemon_follows_gx_to_new_address() {
    skip_unless_lan!();
    const TIME_SCALE: f64 = 1.0;
    let mut site = Site::new(85);
    let mut gx_host = site.lan.host("gx", 20);
    let dir = site.dir.path().to_path_buf();
    let presence = gx::live_gx(
        &mut site.lan,
        &gx_host,
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
        .wait(daemon.started, Duration::from_secs(20), GX, |p| {
            p == "online"
        });
    assert!(
        online.is_some(),
        "{}\n{}",
        site.watcher.dump(),
        daemon.log_tail()
    );
    site.watcher.collect(Duration::from_secs(2));
    let old = gx_host.addr;

    site.lan.move_host(&mut gx_host, 45);
    site.lan.stop(presence);
    gx::sim_lan(&mut site.lan, &gx_host, GX_A, &["--web", "off"]);
    let moved = Instant::now();

    let offline = site
        .watcher
        .wait(moved, Duration::from_secs(60), GX, |p| p == "offline");
    let Some(offline) = offline else {
        panic!(
            "the GX link never went offline:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let new_host = format!("{}:1883", gx_host.addr);
    let online = site
        .watcher
        .wait(offline.at, Duration::from_secs(120), GX, |p| p == "online");
    let Some(online) = online else {
        panic!(
            "not back at {new_host}:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let entities_back = online.at.duration_since(moved);
    assert!(
        entities_back < Duration::from_secs(120),
        "entities back {entities_back:?} after the move"
    );
    site.watcher.collect(Duration::from_secs(1));
    let attributes = site.watcher.attributes();
    assert_eq!(attributes["gx_host"], new_host);
    assert_eq!(attributes["link"], "connected");
    let value = site.wait_value(online.at, Duration::from_secs(30));
    assert!(
        value.is_some(),
        "no value from the new address:\n{}",
        site.watcher.dump()
    );
    assert!(
        site.lan.is_running(daemon.index),
        "the daemon exited:\n{}",
        daemon.log_tail()
    );
    let stored = std::fs::read_to_string(site.data().join("discovery.json")).unwrap();
    assert!(stored.contains(&gx_host.addr.to_string()), "{stored}");
    assert!(!stored.contains(&old.to_string()), "{stored}");

    let peak = site.assert_scan_limits();
    eprintln!(
        "daemon moved: offline {:.1} s after the move, entities back {:.1} s after it \
         (no restart), scan peak {peak} packets/s",
        offline.at.duration_since(moved).as_secs_f64(),
        entities_back.as_secs_f64()
    );
}

/// Time scale 4: a 30 s outage stands for 2 minutes (every daemon and simulator timer is
/// divided by 4). The GX's switch port goes down, so packets are dropped silently both
/// ways, then comes back.
#[test]
fn daemon_outage_then_back() {
    skip_unless_lan!();
    const TIME_SCALE: f64 = 4.0;
    const OUTAGE: Duration = Duration::from_secs(30);
    let mut site = Site::new(86);
    let gx_host = site.lan.host("gx", 20);
    let dir = site.dir.path().to_path_buf();
    gx::live_gx(
        &mut site.lan,
        &gx_host,
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
        .wait(daemon.started, Duration::from_secs(20), GX, |p| {
            p == "online"
        });
    assert!(
        online.is_some(),
        "{}\n{}",
        site.watcher.dump(),
        daemon.log_tail()
    );
    site.watcher.collect(Duration::from_secs(2));

    site.lan.set_link(&gx_host, false);
    let down = Instant::now();
    let offline = site.watcher.wait(down, OUTAGE, GX, |p| p == "offline");
    let Some(offline) = offline else {
        panic!(
            "entities stayed available in the outage:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let rest = OUTAGE.saturating_sub(down.elapsed());
    site.watcher.collect(rest);
    site.lan.set_link(&gx_host, true);
    let up = Instant::now();

    // During the outage the GX link stays offline and the status is never connected.
    let during = site.watcher.between(GX, offline.at, up);
    assert!(
        during.iter().all(|m| m.payload == "offline"),
        "{}",
        site.watcher.dump()
    );
    let statuses = site.watcher.between(STATUS, offline.at, up);
    assert!(
        statuses.iter().all(|m| m.payload != "connected"),
        "{}",
        site.watcher.dump()
    );

    let online = site
        .watcher
        .wait(up, Duration::from_secs(60), GX, |p| p == "online");
    let Some(online) = online else {
        panic!(
            "the GX link did not come back:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let back = online.at.duration_since(up);
    assert!(
        back < Duration::from_secs(30),
        "entities back {back:?} after the link came up"
    );
    let value = site.wait_value(online.at, Duration::from_secs(10));
    assert!(
        value.is_some(),
        "no value after the outage:\n{}",
        site.watcher.dump()
    );
    assert!(
        site.lan.is_running(daemon.index),
        "the daemon exited:\n{}",
        daemon.log_tail()
    );

    let peak = site.assert_scan_limits();
    eprintln!(
        "daemon outage (time scale {TIME_SCALE}): unavailable {:.1} s after the link went down, \
         entities back {:.1} s after it came up, scan peak {peak} packets/s",
        offline.at.duration_since(down).as_secs_f64(),
        back.as_secs_f64()
    );
}
