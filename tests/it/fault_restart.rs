//! The bridge restarts (SIGTERM, then a new process) and the host reboots (the bridge is
//! killed and Home Assistant's broker comes back empty). Entities keep their ids, and the
//! discovery message is back at once from the stored capabilities, before the GX is.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::rig::{Rig, RigOptions, BRIDGE_TOPIC, CONFIG_TOPIC, GX_TOPIC};

/// "At once": the new process starts, connects and publishes within this.
const DISCOVERY_AT_START: Duration = Duration::from_secs(2);

/// Returns the discovery message's entity configurations, as Home Assistant received them.
fn components(rig: &Rig) -> Value {
    rig.observer.discovery().map(|config| config["components"].clone()).unwrap_or(Value::Null)
}

/// Returns the config topics under the discovery prefix: a second one would be a
/// duplicate device.
fn config_topics(rig: &Rig) -> Vec<String> {
    let seen = rig.observer.seen.lock().unwrap();
    seen.latest.keys().filter(|topic| topic.starts_with("homeassistant/") && topic.ends_with("/config")).cloned().collect()
}

/// Starts the bridge again with the GX away and checks that the full discovery message
/// arrives at once, unchanged. Then brings the GX back and checks every entity.
async fn restart_without_gx(rig: &mut Rig, before: &Value, figure: &str, model: Option<&str>) {
    let started = Instant::now();
    rig.start_bridge();
    let config = rig.observer.wait_until(Duration::from_secs(10), |seen| {
        seen.log.iter().any(|(at, topic, _)| *at >= started && topic == CONFIG_TOPIC)
    });
    assert!(config.await, "no discovery message after the restart\n{}", rig.log());
    let arrived = rig.first_config_since(started).unwrap();
    rig.check_bound(figure, arrived - started, DISCOVERY_AT_START);

    assert_eq!(&components(rig), before, "entity configurations changed across the restart");
    assert_eq!(config_topics(rig), vec![CONFIG_TOPIC.to_string()], "one discovery message, no duplicates");
    let removals: Vec<String> = before
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, component)| component.get("unique_id").is_none())
        .map(|(key, _)| key.clone())
        .collect();
    assert!(removals.is_empty(), "removal entries published: {removals:?}");
    assert!(rig.wait_payload(BRIDGE_TOPIC, "online", Duration::from_secs(5)).await.is_some(), "{}", rig.log());
    assert_eq!(rig.observer.latest(GX_TOPIC).as_deref(), Some("offline"), "entities must stay unavailable without the GX");
    // The capabilities seen before the restart are shown while the GX is away.
    let attributes: Vec<Value> = {
        let seen = rig.observer.seen.lock().unwrap();
        seen.log
            .iter()
            .filter(|(at, topic, _)| *at >= started && topic.ends_with("/bridge_status/attributes"))
            .filter_map(|(_, _, payload)| serde_json::from_str(payload).ok())
            .collect()
    };
    assert!(!attributes.is_empty(), "no status attributes after the restart");
    for published in &attributes {
        let capabilities = published["capabilities"].as_array().map(Vec::len).unwrap_or(0);
        assert!(capabilities > 3, "capabilities lost across the restart: {published}");
        if let Some(model) = model {
            assert_eq!(published["model"], model, "model lost across the restart: {published}");
        }
    }

    rig.gx.restart();
    let consistent = rig.wait_consistent(Duration::from_secs(30)).await;
    consistent.unwrap_or_else(|m| panic!("after the GX came back: {m:#?}\n{}", rig.log()));
    assert_eq!(&components(rig), before, "entity configurations changed once the GX was back");
}

#[tokio::test(flavor = "current_thread")]
async fn bridge_restart_keeps_entities() {
    let mut rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let before = components(&rig);
    assert!(before.as_object().is_some_and(|c| c.len() > 20), "too few entities: {before}");

    let (status, took) = rig.daemon_mut().sigterm();
    assert!(status.success(), "exit status {status:?}\n{}", rig.log());
    assert!(took <= Duration::from_secs(5), "SIGTERM took {took:?}");
    assert!(rig.wait_payload(BRIDGE_TOPIC, "offline", Duration::from_secs(5)).await.is_some());

    // The GX is away while the bridge starts, so whatever is published comes from the
    // data directory.
    rig.gx.stop();
    // SIGTERM saves the data directory, model included ("Ekrano GX" in the boat capture).
    restart_without_gx(&mut rig, &before, "bridge_restart.discovery_in_place", Some("Ekrano GX")).await;
}

#[tokio::test(flavor = "current_thread")]
async fn host_reboot_keeps_entities() {
    let mut rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let before = components(&rig);

    // Power cut: no clean shutdown, Home Assistant's broker loses its retained messages,
    // and the GX boots more slowly than the host.
    rig.daemon_mut().kill();
    rig.gx.stop();
    rig.ha.restart();
    rig.observer.seen.lock().unwrap().latest.clear();
    restart_without_gx(&mut rig, &before, "host_reboot.discovery_in_place", None).await;
}
