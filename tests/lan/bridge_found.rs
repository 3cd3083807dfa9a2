//! The daemon with no GX host configured finds the GX by SSDP alone, by mDNS alone, and
//! by the ARP sweep and port probes alone, and delivers its first entity to Home
//! Assistant's broker. It never bridges the decoy broker, and its scan traffic stays
//! within the limits.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::capture::{Capture, Direction};
use crate::daemon::{Daemon, Site, GX, STATUS};
use crate::gx::{self, GX_A};
use crate::traffic::probes;

/// What a found-alone scenario measured.
struct Found {
    first_entity: Duration,
    online_at: Instant,
}

/// Waits for the first entity, then checks what Home Assistant's broker shows.
fn wait_first_entity(
    site: &mut Site,
    daemon: &Daemon,
    gx_host: Ipv4Addr,
    limit: Duration,
) -> Found {
    let soc = site.wait_soc(daemon.started, limit + Duration::from_secs(10));
    let Some(soc) = soc else {
        panic!(
            "no battery SOC state:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let first_entity = soc.at.duration_since(daemon.started);
    assert!(first_entity < limit, "first entity after {first_entity:?}");

    let online = site
        .watcher
        .wait(daemon.started, Duration::from_secs(5), GX, |p| {
            p == "online"
        });
    let online_at = online.expect("roamcore/victron/gx online").at;
    let status = site
        .watcher
        .wait(daemon.started, Duration::from_secs(5), STATUS, |p| {
            p == "connected"
        });
    assert!(status.is_some(), "{}", site.watcher.dump());
    let attributes = site.watcher.attributes();
    assert_eq!(attributes["portal_id"], GX_A);
    assert_eq!(attributes["gx_host"], format!("{gx_host}:1883"));
    Found {
        first_entity,
        online_at,
    }
}

/// Checks the scan limits, and that nothing but the GX link leaves the daemon's host for
/// `quiet` after the first second of the connection.
fn check_traffic(site: &mut Site, found: &Found, gx_host: Ipv4Addr, quiet: Duration) -> usize {
    site.watcher.collect(quiet + Duration::from_secs(1));
    let peak = site.assert_scan_limits();
    let from = found.online_at + Duration::from_secs(1);
    let sent = probes(&site.frames(), gx_host, from, Instant::now());
    assert!(
        sent.is_empty(),
        "{} packets besides the GX link while connected: {sent:?}",
        sent.len()
    );
    peak
}

/// SSDP alone (mDNS off, web page off, no sweep needed), at time scale 1.
#[test]
fn daemon_found_by_ssdp_alone() {
    skip_unless_lan!();
    const TIME_SCALE: f64 = 1.0;
    let mut site = Site::new(80);
    let gx_host = site.lan.host("gx", 20);
    let decoy = site.lan.host("decoy", 30);
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
    gx::broker(&mut site.lan, &decoy, &dir, None);

    let daemon = site.start_daemon(TIME_SCALE, &[], &[]);
    let found = wait_first_entity(&mut site, &daemon, gx_host.addr, Duration::from_secs(30));
    assert!(
        daemon.log().contains("Adopted the Victron GX at"),
        "{}",
        daemon.log_tail()
    );
    let peak = check_traffic(&mut site, &found, gx_host.addr, Duration::from_secs(10));
    let validations = gx::assert_not_bridged(&gx::log_path(&dir, &decoy));
    eprintln!(
        "daemon ssdp: first entity after {:.1} s, scan peak {peak} packets/s, \
         {validations} validations of the decoy",
        found.first_entity.as_secs_f64()
    );
    let stored = std::fs::read_to_string(site.data().join("discovery.json")).unwrap();
    assert!(stored.contains(GX_A), "{stored}");
}

/// mDNS alone (`venus.local`; SSDP off, web page off), at time scale 1.
#[test]
fn daemon_found_by_mdns_alone() {
    skip_unless_lan!();
    const TIME_SCALE: f64 = 1.0;
    let mut site = Site::new(81);
    let gx_host = site.lan.host("gx", 20);
    let decoy = site.lan.host("decoy", 30);
    let dir = site.dir.path().to_path_buf();
    let flags = ["--ssdp", "false", "--mdns", "--web", "off"];
    gx::live_gx(
        &mut site.lan,
        &gx_host,
        &dir,
        GX_A,
        None,
        TIME_SCALE,
        &flags,
    );
    gx::broker(&mut site.lan, &decoy, &dir, None);

    let daemon = site.start_daemon(TIME_SCALE, &[], &[]);
    let found = wait_first_entity(&mut site, &daemon, gx_host.addr, Duration::from_secs(30));
    let peak = check_traffic(&mut site, &found, gx_host.addr, Duration::from_secs(10));
    let validations = gx::assert_not_bridged(&gx::log_path(&dir, &decoy));
    eprintln!(
        "daemon mdns: first entity after {:.1} s, scan peak {peak} packets/s, \
         {validations} validations of the decoy",
        found.first_entity.as_secs_f64()
    );
}

/// The ARP sweep and port probes alone on a /24, at time scale 1 (the sweep's pace is
/// not scaled anyway). The GX sits at .254, the last address swept, and runs neither
/// SSDP nor mDNS. The decoy broker at .30 is swept first. A /16 behind a second
/// interface is too large to sweep and must see nothing.
#[test]
fn daemon_found_by_sweep_alone_on_a_24() {
    skip_unless_lan!();
    const TIME_SCALE: f64 = 1.0;
    let mut site = Site::new(82);
    let gx_host = site.lan.host("gx", 254);
    let decoy = site.lan.host("decoy", 30);
    let daemon_host = site.host.clone();
    let far = site
        .lan
        .far_network(&daemon_host, "10.98.0.10/16", "far", "10.98.0.20/16");
    let dir = site.dir.path().to_path_buf();
    let flags = ["--ssdp", "false", "--web", "gui"];
    gx::live_gx(
        &mut site.lan,
        &gx_host,
        &dir,
        GX_A,
        None,
        TIME_SCALE,
        &flags,
    );
    gx::broker(&mut site.lan, &decoy, &dir, None);
    gx::broker(&mut site.lan, &far, &dir, None);
    let far_received = Capture::start_direction(&far.ns, "eth0", Direction::Received);

    let daemon = site.start_daemon(TIME_SCALE, &[], &[]);
    let found = wait_first_entity(&mut site, &daemon, gx_host.addr, Duration::from_secs(180));
    let peak = check_traffic(&mut site, &found, gx_host.addr, Duration::from_secs(10));
    let validations = gx::assert_not_bridged(&gx::log_path(&dir, &decoy));
    assert!(
        validations <= 1,
        "the decoy was validated {validations} times"
    );
    let far_validations = gx::assert_not_bridged(&gx::log_path(&dir, &far));
    assert_eq!(far_validations, 0);
    let into_far: Vec<_> = far_received
        .frames()
        .into_iter()
        .filter(|f| f.ethertype == 0x0806 || f.dst.is_some_and(|d| !d.is_multicast()))
        .collect();
    assert!(
        into_far.is_empty(),
        "{} unicast or ARP frames into the /16",
        into_far.len()
    );

    let frames = site.frames();
    let searching: Vec<_> = frames.iter().filter(|f| f.at < found.online_at).collect();
    let seconds = found.online_at.duration_since(daemon.started).as_secs_f64();
    eprintln!(
        "daemon sweep: first entity after {:.1} s, scan peak {peak} packets/s, \
         {} frames while searching ({:.1}/s), {validations} validation of the decoy",
        found.first_entity.as_secs_f64(),
        searching.len(),
        searching.len() as f64 / seconds
    );
}
