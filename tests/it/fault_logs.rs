//! Log volume during a long GX outage: lifecycle lines at info, each distinct problem
//! warned once and then summarised with a count every 10 minutes. An hour of outage, in
//! accelerated time, must produce at most 30 lines, and the recovery at most 10 more.

use std::time::{Duration, Instant};

use roamcore_victron::sim::capture::Capture;
use roamcore_victron::sim::{SimConfig, Simulator};

use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::netns::TestNet;
use crate::support::observer::Observer;
use crate::support::rig::{record_value, Rig, RigOptions, GX_TOPIC};

const HOUR: Duration = Duration::from_secs(3600);
const MAX_LINES: usize = 30;
/// Reconnected, identified, connected, and a few status changes on the way.
const MAX_RECOVERY_LINES: usize = 10;
/// An hour takes 30 s. At this scale the keepalive is 250 ms and the heartbeat timeout
/// 83 ms, still well above the simulator's 25 ms heartbeat.
const SCALE: f64 = 120.0;

#[derive(Debug, Clone, Copy)]
enum Outage {
    /// The GX's broker is down: every attempt is refused.
    Refused,
    /// The route to the GX drops every packet: every attempt times out.
    Blackholed,
    /// The GX is connected but sends nothing.
    Frozen,
}

async fn outage_log_lines(outage: Outage) {
    let gx_proxy = matches!(outage, Outage::Blackholed);
    let options = RigOptions { scale: SCALE, scale_fixed: true, gx_proxy, ..RigOptions::default() };
    let mut rig = Rig::start(options).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    let mark = rig.log_mark();
    match outage {
        Outage::Refused => rig.gx.stop(),
        Outage::Blackholed => rig.gx_proxy.as_ref().unwrap().freeze(),
        Outage::Frozen => rig.sim.freeze().await,
    }
    tokio::time::sleep(rig.scaled(HOUR)).await;
    let back_mark = rig.log_mark();
    let back = Instant::now();
    match outage {
        Outage::Refused => rig.gx.restart(),
        Outage::Blackholed => rig.gx_proxy.as_ref().unwrap().thaw(),
        Outage::Frozen => rig.sim.thaw().await,
    }
    let online = rig.wait_since(GX_TOPIC, "online", back, Duration::from_secs(30)).await;
    assert!(online.is_some(), "{outage:?}: the GX never came back\n{}", rig.log());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let all: Vec<String> = rig.daemon().lines().into_iter().skip(mark).collect();
    check_lines(&format!("{outage:?}"), &all, back_mark - mark, !matches!(outage, Outage::Frozen));
    rig.daemon_mut().sigterm();
}

/// Checks the lines of an outage (`all[..back]`) and of its recovery (`all[back..]`).
/// `retries`: the bridge keeps failing to connect all hour, so the warning about it must
/// repeat with a count.
fn check_lines(outage: &str, all: &[String], back: usize, retries: bool) {
    let (lines, recovery) = all.split_at(back);
    record_value(&format!("log_lines.{outage}_gx_outage_hour").to_lowercase(), lines.len() as f64, MAX_LINES as f64, "lines");
    assert!(lines.len() <= MAX_LINES, "{outage}: {} lines for an hour of outage:\n{}", lines.len(), lines.join("\n"));
    assert!(recovery.len() <= MAX_RECOVERY_LINES, "{outage}: {} lines for the recovery:\n{}", recovery.len(), recovery.join("\n"));
    // A status change is one line; a failure that alternates between two errors must not
    // add one per attempt.
    let status_lines = lines.iter().filter(|line| line.contains(" status=")).count();
    assert!(status_lines <= 3, "{outage}: {status_lines} status lines:\n{}", lines.join("\n"));
    let summaries = lines.iter().filter(|line| line.contains("(repeated)")).count();
    if retries {
        assert!(summaries >= 4, "{outage}: no periodic count of the failures:\n{}", lines.join("\n"));
    }
    assert!(lines.iter().all(|line| !line.contains("DEBUG")), "debug lines at the default level");
}

#[tokio::test(flavor = "current_thread")]
async fn refused_gx_hour_log_lines() {
    outage_log_lines(Outage::Refused).await;
}

#[tokio::test(flavor = "current_thread")]
async fn blackholed_gx_hour_log_lines() {
    outage_log_lines(Outage::Blackholed).await;
}

#[tokio::test(flavor = "current_thread")]
async fn frozen_gx_hour_log_lines() {
    outage_log_lines(Outage::Frozen).await;
}

/// The GX's address stops answering at layer 2: connection attempts time out, then fail
/// with "no route to host" once ARP gives up, and the two errors alternate. Needs root for
/// the network namespace; skipped without it.
#[tokio::test(flavor = "current_thread")]
async fn unreachable_gx_hour_log_lines() {
    let Some(net) = TestNet::create() else {
        eprintln!("unreachable_gx_hour_log_lines: skipped, needs root and iproute2 to make a network namespace");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _gx = net.start_mosquitto(dir.path());
    let gx_address = format!("{}:1883", net.address);
    let ha = Mosquitto::start();
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;
    let mut config = SimConfig::new(gx_address.clone(), Capture::load("boat").unwrap());
    config.time_scale = SCALE;
    config.vary = false;
    let sim = Simulator::spawn(config);
    assert!(sim.wait_connected(Duration::from_secs(10)).await, "the simulated GX connects");

    let data = tempfile::tempdir().unwrap();
    let scale = SCALE.to_string();
    let args = ["run", "--gx", &gx_address, "--ha-broker", &ha.host_port(), "--data-dir", data.path().to_str().unwrap(), "--time-scale", &scale];
    let mut daemon = Daemon::start(&args, &[]);
    assert!(observer.wait_for(GX_TOPIC, "online", Duration::from_secs(20)).await, "{}", daemon.log_text());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mark = daemon.lines().len();
    net.blackhole();
    tokio::time::sleep(HOUR.div_f64(SCALE)).await;
    let back = daemon.lines().len();
    net.restore();
    let online = observer.wait_for(GX_TOPIC, "online", Duration::from_secs(30)).await;
    assert!(online, "the GX never came back\n{}", daemon.log_text());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let all: Vec<String> = daemon.lines().into_iter().skip(mark).collect();
    check_lines("unreachable", &all, back - mark, true);
    daemon.sigterm();
}
