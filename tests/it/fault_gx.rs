//! Faults on the GX side: the GX reboots (its broker refuses connections, then returns
//! with only the Serial retained), and the GX freezes (TCP up, no heartbeats or values).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::observer::Observer;
use crate::support::rig::{Rig, RigOptions, GX_TOPIC, STATUS_TOPIC};

/// How long the rebooting GX's broker refuses connections in the test.
const GX_REBOOT_DOWN: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "current_thread")]
async fn gx_reboot_recovers_every_value() {
    let mut rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let discovery_before = rig.discovery_ids();
    let full_publishes_before = rig.sim.stats().await.protocol.full_publishes;

    // The GX's broker dies with the GX; nothing listens until it is back.
    let stopped = Instant::now();
    rig.gx.stop();
    let offline = rig.wait_since(GX_TOPIC, "offline", stopped, Duration::from_secs(10)).await;
    assert!(offline.is_some(), "GX link never went offline\n{}", rig.log());

    // Values change while the GX is away; the bridge must not keep the old ones.
    rig.sim.set_value("system/0/Dc/Battery/Soc", json!(42.5)).await;
    rig.sim.set_value("system/0/Dc/Battery/Voltage", json!(12.31)).await;
    tokio::time::sleep(rig.scaled(GX_REBOOT_DOWN)).await;
    let status = rig.observer.latest(STATUS_TOPIC);
    assert_eq!(status.as_deref(), Some("connecting"), "status while the GX reboots\n{}", rig.log());

    let back = Instant::now();
    rig.gx.restart();
    let consistent = rig.wait_consistent(Duration::from_secs(30)).await;
    let recovered = consistent.unwrap_or_else(|m| panic!("after the GX reboot: {m:#?}\n{}", rig.log()));
    rig.check_bound("gx_reboot.entities_back_after_broker", recovered - back, Duration::from_secs(10));

    let stats = rig.sim.stats().await;
    assert!(stats.protocol.full_publishes > full_publishes_before, "no full publish after the reboot: {stats:?}");
    assert_eq!(rig.discovery_ids(), discovery_before, "the entity set changed across the GX reboot");
    assert_eq!(rig.observer.state("battery_soc").as_deref(), Some("42.5"));
    assert_eq!(rig.observer.latest(STATUS_TOPIC).as_deref(), Some("connected"));
    assert!(!rig.log().contains("panicked"), "{}", rig.log());
}

#[tokio::test(flavor = "current_thread")]
async fn frozen_gx_goes_unavailable_then_resyncs() {
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let requests = Observer::connect(rig.gx.port, &["R/#"]).await;

    let frozen = Instant::now();
    rig.sim.freeze().await;
    let offline = rig.wait_since(GX_TOPIC, "offline", frozen, Duration::from_secs(30)).await;
    let offline = offline.unwrap_or_else(|| panic!("entities never became unavailable\n{}", rig.log()));
    rig.check_bound("frozen_gx.unavailable_after_freeze", offline - frozen, Duration::from_secs(15));
    assert!(rig.wait_since(STATUS_TOPIC, "stale", frozen, Duration::from_secs(5)).await.is_some(), "{}", rig.log());

    // The values move on underneath; the frozen GX publishes none of it.
    rig.sim.set_value("system/0/Dc/Battery/Soc", json!(61.5)).await;
    rig.sim.set_value("system/0/Dc/Pv/Power", json!(123)).await;
    rig.sim.set_value("system/0/Ac/ActiveIn/Source", json!(240)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(40))).await;
    let keepalives: Vec<String> = {
        let seen = requests.seen.lock().unwrap();
        seen.log.iter().filter(|(at, topic, _)| *at >= offline && topic.ends_with("/keepalive")).map(|(_, _, p)| p.clone()).collect()
    };
    assert!(!keepalives.is_empty(), "no keepalive while stale\n{}", rig.log());
    for keepalive in &keepalives {
        assert!(keepalive.contains("full-publish-completed-echo"), "a keepalive while stale was not a full one: {keepalive}");
        assert!(!keepalive.contains("suppress-republish"), "{keepalive}");
    }

    let thawed = Instant::now();
    rig.sim.thaw().await;
    let recovered = rig.wait_consistent(Duration::from_secs(60)).await;
    let recovered = recovered.unwrap_or_else(|m| panic!("after the thaw: {m:#?}\n{}", rig.log()));
    // The GX's first heartbeat (every 3 s) makes the bridge ask for a full publish at once.
    rig.check_bound("frozen_gx.entities_back_after_thaw", recovered - thawed, Duration::from_secs(10));
    assert_eq!(rig.observer.state("battery_soc").as_deref(), Some("61.5"));
    assert_eq!(rig.observer.state("solar_power").as_deref(), Some("123"));
    // Ending the snapshot without a republish would have marked every device as gone.
    assert!(!rig.log().contains("device missing from the GX's full publish"), "{}", rig.log());
}
