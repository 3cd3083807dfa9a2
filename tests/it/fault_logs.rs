//! Log volume during a long GX outage: lifecycle lines at info, each distinct problem
//! warned once and then summarised with a count every 10 minutes. An hour of outage, in
//! accelerated time, must produce at most 30 lines, and the recovery at most 10 more.

use std::time::{Duration, Instant};

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
    let lines = &all[..back_mark - mark];
    let recovery = &all[back_mark - mark..];
    record_value(&format!("log_lines.{outage:?}_gx_outage_hour").to_lowercase(), lines.len() as f64, MAX_LINES as f64, "lines");
    assert!(lines.len() <= MAX_LINES, "{outage:?}: {} lines for an hour of outage:\n{}", lines.len(), lines.join("\n"));
    assert!(recovery.len() <= MAX_RECOVERY_LINES, "{outage:?}: {} lines for the recovery:\n{}", recovery.len(), recovery.join("\n"));
    let summaries = lines.iter().filter(|line| line.contains("(repeated)")).count();
    match outage {
        // Failed attempts go on all hour, so their warning repeats with a count.
        Outage::Refused | Outage::Blackholed => {
            assert!(summaries >= 4, "{outage:?}: no periodic count of the failures:\n{}", lines.join("\n"))
        }
        Outage::Frozen => {}
    }
    assert!(lines.iter().all(|line| !line.contains("DEBUG")), "debug lines at the default level");
    rig.daemon_mut().sigterm();
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
