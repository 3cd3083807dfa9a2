//! Faults on Home Assistant's side: its broker restarts and loses every retained message,
//! and Home Assistant itself restarts (birth message `offline`, then `online`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rumqttc::QoS;

use crate::support::rig::{Rig, RigOptions, BASE, BRIDGE_TOPIC, CONFIG_TOPIC};

/// Returns the topics the bridge keeps retained on Home Assistant's broker, as the
/// observer last saw them. The liveness heartbeat is not retained and left out.
fn retained_topics(rig: &Rig) -> BTreeSet<String> {
    let seen = rig.observer.seen.lock().unwrap();
    seen.latest
        .keys()
        .filter(|topic| (topic.starts_with(BASE) && !topic.ends_with("/heartbeat")) || topic.starts_with("homeassistant/"))
        .filter(|topic| topic.as_str() != "homeassistant/status")
        .cloned()
        .collect()
}

/// Returns the topics in `topics` that have had no message since `since`.
fn missing_since(rig: &Rig, topics: &BTreeSet<String>, since: Instant) -> Vec<String> {
    let seen = rig.observer.seen.lock().unwrap();
    let fresh: BTreeSet<&String> = seen.log.iter().filter(|(at, _, _)| *at >= since).map(|(_, topic, _)| topic).collect();
    topics.iter().filter(|topic| !fresh.contains(topic)).cloned().collect()
}

async fn wait_republished(rig: &Rig, topics: &BTreeSet<String>, since: Instant, timeout: Duration) -> Result<Instant, Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let missing = missing_since(rig, topics, since);
        if missing.is_empty() {
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            return Err(missing);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Returns every config topic under the discovery prefix, so a second one (a duplicate
/// device or a per-entity config) would show.
fn config_topics(rig: &Rig) -> Vec<String> {
    let seen = rig.observer.seen.lock().unwrap();
    seen.latest.keys().filter(|topic| topic.starts_with("homeassistant/") && topic.ends_with("/config")).cloned().collect()
}

#[tokio::test(flavor = "current_thread")]
async fn ha_broker_restart_republishes_everything() {
    let mut rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let topics = retained_topics(&rig);
    let discovery_before = rig.discovery_ids();
    assert!(topics.len() > 50, "too few retained topics to be a real test: {topics:?}");

    // SIGKILL, 20 s down, and a fresh start on the same port: every retained message is
    // gone. The bound counts from the moment the broker listens again.
    rig.ha.stop();
    rig.observer.seen.lock().unwrap().latest.clear();
    tokio::time::sleep(rig.scaled(Duration::from_secs(20))).await;
    rig.ha.restart();
    let restarted = Instant::now();

    let republished = wait_republished(&rig, &topics, restarted, Duration::from_secs(30)).await;
    let republished = republished.unwrap_or_else(|missing| panic!("never republished: {missing:#?}\n{}", rig.log()));
    rig.check_bound("ha_broker_restart.everything_republished", republished - restarted, Duration::from_secs(10));

    let consistent = rig.wait_consistent(Duration::from_secs(10)).await;
    consistent.unwrap_or_else(|m| panic!("after the broker restart: {m:#?}\n{}", rig.log()));
    assert_eq!(rig.observer.latest(BRIDGE_TOPIC).as_deref(), Some("online"));
    assert_eq!(rig.discovery_ids(), discovery_before, "entities changed across the broker restart");
    assert_eq!(config_topics(&rig), vec![CONFIG_TOPIC.to_string()], "one discovery message, no duplicates");
    assert_eq!(retained_topics(&rig), topics, "the set of retained topics changed");
}

#[tokio::test(flavor = "current_thread")]
async fn ha_restart_birth_republishes_everything() {
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let topics = retained_topics(&rig);
    let discovery_before = rig.discovery_ids();

    // Home Assistant's last will, then its birth message when it is back (QoS 0, not
    // retained: Home Assistant's defaults).
    let client = &rig.observer.client;
    client.publish("homeassistant/status", QoS::AtMostOnce, false, "offline").await.unwrap();
    tokio::time::sleep(rig.scaled(Duration::from_secs(20))).await;
    let birth = Instant::now();
    client.publish("homeassistant/status", QoS::AtMostOnce, false, "online").await.unwrap();

    let republished = wait_republished(&rig, &topics, birth, Duration::from_secs(30)).await;
    let republished = republished.unwrap_or_else(|missing| panic!("never republished: {missing:#?}\n{}", rig.log()));
    rig.check_bound("ha_restart.everything_republished", republished - birth, Duration::from_secs(10));
    // The delay is random (0.5 to 3 s) so that many integrations do not all republish at
    // once.
    assert!(republished - birth >= rig.scaled(Duration::from_millis(500)), "republished without the birth delay");

    let consistent = rig.wait_consistent(Duration::from_secs(10)).await;
    consistent.unwrap_or_else(|m| panic!("after the birth message: {m:#?}\n{}", rig.log()));
    assert_eq!(rig.discovery_ids(), discovery_before, "entities changed across the Home Assistant restart");
    assert_eq!(config_topics(&rig), vec![CONFIG_TOPIC.to_string()], "one discovery message, no duplicates");
    assert_eq!(rig.count_since(CONFIG_TOPIC, birth), 1, "discovery republished once per birth");
}
