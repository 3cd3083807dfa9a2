//! A router reboot: both links go silent (packets dropped, nothing refused or reset) for
//! minutes, through proxies that stop forwarding without closing.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::rig::{Rig, RigOptions, BRIDGE_TOPIC};

/// How long the router stays down; long enough for the reconnect backoff to reach its cap.
const OUTAGE: Duration = Duration::from_secs(180);
/// Largest reconnect delay on a dead route: 30 s with +20 % jitter.
const BACKOFF_CAP: Duration = Duration::from_secs(36);
/// TCP connect plus CONNACK timeout of one attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "current_thread")]
async fn router_reboot_half_open_then_recovers() {
    let options = RigOptions { gx_proxy: true, ha_proxy: true, ..RigOptions::default() };
    let rig = Rig::start(options).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let gx_proxy = rig.gx_proxy.as_ref().unwrap();
    let ha_proxy = rig.ha_proxy.as_ref().unwrap();
    let discovery_before = rig.discovery_ids();

    let mark = rig.log_mark();
    let frozen = Instant::now();
    gx_proxy.freeze();
    ha_proxy.freeze();

    // Both ends notice the silence: the bridge by its unanswered pings, Home Assistant's
    // broker by the bridge's missing packets (it then publishes the last will).
    let gx_lost = rig.wait_log("lost the GX", mark, Duration::from_secs(60)).await;
    let gx_lost = gx_lost.unwrap_or_else(|| panic!("half-open GX link never detected\n{}", rig.log()));
    rig.check_bound("router_reboot.gx_half_open_detected", gx_lost - frozen, Duration::from_secs(45));
    let ha_lost = rig.wait_log("lost Home Assistant's broker", mark, Duration::from_secs(60)).await;
    let ha_lost = ha_lost.unwrap_or_else(|| panic!("half-open link to Home Assistant never detected\n{}", rig.log()));
    rig.check_bound("router_reboot.ha_half_open_detected", ha_lost - frozen, Duration::from_secs(45));
    let will = rig.wait_since(BRIDGE_TOPIC, "offline", frozen, Duration::from_secs(60)).await;
    let will = will.unwrap_or_else(|| panic!("Home Assistant never saw the bridge offline\n{}", rig.log()));
    rig.check_bound("router_reboot.entities_unavailable", will - frozen, Duration::from_secs(45));

    rig.sim.set_value("system/0/Dc/Battery/Soc", json!(33.5)).await;
    let remaining = rig.scaled(OUTAGE).saturating_sub(frozen.elapsed());
    tokio::time::sleep(remaining).await;

    // Retries go on for the whole outage, each at most one connect timeout plus one
    // capped backoff after the previous, and the backoff does reach its cap.
    let thawed = Instant::now();
    for (name, proxy) in [("gx", gx_proxy), ("ha", ha_proxy)] {
        let attempts: Vec<Instant> = proxy.accepted().into_iter().filter(|at| *at > frozen).collect();
        assert!(attempts.len() >= 4, "{name}: only {} connection attempts during the outage", attempts.len());
        let gaps: Vec<Duration> = attempts.windows(2).map(|pair| pair[1] - pair[0]).collect();
        let largest = gaps.iter().max().copied().unwrap();
        let since_last = thawed - *attempts.last().unwrap();
        rig.check_bound(&format!("router_reboot.{name}_retry_interval_max"), largest, CONNECT_TIMEOUT + BACKOFF_CAP);
        assert!(
            since_last <= rig.limit(CONNECT_TIMEOUT + BACKOFF_CAP),
            "{name}: no attempt in the last {since_last:?} of the outage: the bridge gave up\n{}",
            rig.log()
        );
        let floor = rig.scaled(CONNECT_TIMEOUT + Duration::from_secs(24));
        assert!(largest >= floor, "{name}: the backoff never reached its cap: gaps {gaps:?}");
    }

    gx_proxy.thaw();
    ha_proxy.thaw();
    let recovered = rig.wait_consistent(Duration::from_secs(60)).await;
    let recovered = recovered.unwrap_or_else(|m| panic!("after the router reboot: {m:#?}\n{}", rig.log()));
    // One capped backoff, plus a few seconds for the GX's full publish.
    rig.check_bound("router_reboot.entities_back_after_router", recovered - thawed, BACKOFF_CAP + Duration::from_secs(4));
    assert_eq!(rig.observer.state("battery_soc").as_deref(), Some("33.5"));
    assert_eq!(rig.discovery_ids(), discovery_before, "entities changed across the router reboot");
    assert!(!rig.log().contains("panicked"), "{}", rig.log());
}
