//! The simulated GX in dbus-flashmq mode against a real Mosquitto, checked against the
//! Venus OS facts: only the Serial is retained, no values before a keepalive, full
//! republish ended by `full_publish_completed`, heartbeat every 3 s, 60 s alive time.
//! Timers run 20 times faster ([`TIME_SCALE`]).

use std::collections::BTreeMap;
use std::time::Duration;

use roamcore_victron::sim::{Mode, Simulator};
use rumqttc::QoS;
use serde_json::json;

use crate::sim_support::{is_completion, sim_config, wait_ready, Received, TestClient, TIME_SCALE};
use crate::support::mosquitto::Mosquitto;

const BOAT: &str = "c0619ab0d0e1";

/// Drops the retained deliveries made at subscribe time.
fn live(messages: Vec<Received>) -> Vec<Received> {
    messages.into_iter().filter(|m| !m.retain).collect()
}

fn scaled(secs: f64) -> Duration {
    Duration::from_secs_f64(secs / TIME_SCALE)
}

#[tokio::test(flavor = "current_thread")]
async fn flashmq_retains_only_serial() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    assert!(sim.wait_connected(Duration::from_secs(5)).await);

    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/#"), QoS::AtMostOnce)
        .await;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), "", false)
        .await;
    bridge
        .wait_for(Duration::from_secs(5), |m| {
            m.topic.ends_with("/full_publish_completed")
        })
        .await
        .expect("full publish");

    let mut late = TestClient::connect(broker.addr()).await;
    late.subscribe("N/#", QoS::AtMostOnce).await;
    let got = late.collect_for(Duration::from_millis(300)).await;
    let retained: Vec<_> = got.iter().filter(|m| m.retain).collect();
    assert_eq!(
        retained.len(),
        1,
        "one retained topic: {:?}",
        retained.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    assert_eq!(retained[0].topic, format!("N/{BOAT}/system/0/Serial"));
    assert_eq!(retained[0].value(), Some(json!(BOAT)));
}

#[tokio::test(flavor = "current_thread")]
async fn flashmq_no_values_before_keepalive() {
    let broker = Mosquitto::start();
    let mut watcher = TestClient::connect(broker.addr()).await;
    watcher.subscribe("N/#", QoS::AtMostOnce).await;

    let mut config = sim_config(&broker, "boat", Mode::Flashmq);
    config.vary = true;
    config.speed = 20.0;
    let sim = Simulator::spawn(config);
    assert!(sim.wait_connected(Duration::from_secs(5)).await);
    let got = watcher.collect_for(Duration::from_millis(1500)).await;

    let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            format!("N/{BOAT}/keepalive"),
            format!("N/{BOAT}/system/0/Serial")
        ]
    );
    assert_eq!(got[0].payload, b"1", "raw non-JSON keepalive payload");
    assert!(!got[0].retain);
    let stats = sim.stats().await;
    assert!(!stats.alive);
    assert_eq!(
        stats.change_messages, 0,
        "values changed but none were published"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn flashmq_full_publish_with_echo() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    wait_ready(&sim).await;
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/#"), QoS::AtMostOnce)
        .await;

    let keepalive = r#"{"keepalive-options": [{"full-publish-completed-echo": "t0k3n"}]}"#;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), keepalive, false)
        .await;
    let got = bridge
        .wait_for(Duration::from_secs(5), |m| is_completion(m, "t0k3n"))
        .await
        .expect("full_publish_completed with the echo token");

    let truth = sim.values().await;
    let mut published = BTreeMap::new();
    for message in &got[..got.len() - 1] {
        let suffix = message.topic.strip_prefix(&format!("N/{BOAT}/")).unwrap();
        if suffix == "heartbeat" || suffix == "keepalive" {
            continue;
        }
        assert!(
            message.payload.starts_with(b"{\"value\":"),
            "compact JSON: {:?}",
            message.topic
        );
        published.insert(suffix.to_string(), message.value().expect("value key"));
    }
    assert_eq!(published.len(), truth.len(), "every item once");
    assert_eq!(
        published, truth,
        "the full publish equals the GX's value table"
    );
    assert_eq!(truth.len(), 2616, "items of the boat capture, with the restored fluid and temperature types");

    let completion = got.last().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stamp = completion
        .value()
        .and_then(|v| v.as_i64())
        .expect("unix time");
    assert!((stamp - now).abs() <= 5, "completion carries the Unix time");
    assert!(!completion.retain);
}

#[tokio::test(flavor = "current_thread")]
async fn flashmq_suppress_republish_no_values() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    wait_ready(&sim).await;
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/#"), QoS::AtMostOnce)
        .await;

    let suppress = r#"{ "keepalive-options" : ["suppress-republish"] }"#;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), suppress, false)
        .await;
    let got = live(bridge.collect_for(Duration::from_millis(600)).await);
    assert!(!got.is_empty(), "heartbeats start");
    for message in &got {
        assert_eq!(
            message.topic,
            format!("N/{BOAT}/heartbeat"),
            "only heartbeats, no republish"
        );
    }
    assert!(sim.stats().await.alive);
    assert_eq!(sim.stats().await.protocol.full_publishes, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn flashmq_heartbeat_every_three_seconds() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    wait_ready(&sim).await;
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/heartbeat"), QoS::AtMostOnce)
        .await;
    let suppress = r#"{"keepalive-options":["suppress-republish"]}"#;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), suppress, false)
        .await;

    let beats = bridge.collect_for(scaled(30.0)).await;
    assert!(
        (9..=12).contains(&beats.len()),
        "about 10 heartbeats in 30 s: {}",
        beats.len()
    );
    let gaps: Vec<Duration> = beats
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .collect();
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(
        mean >= scaled(2.7) && mean <= scaled(3.3),
        "mean heartbeat gap {mean:?}, expected 3 s scaled"
    );
    for gap in &gaps {
        assert!(
            *gap >= scaled(1.0) && *gap <= scaled(6.0),
            "heartbeat gap {gap:?}"
        );
    }
    assert!(beats
        .iter()
        .all(|b| b.value().and_then(|v| v.as_i64()).is_some()));
}

#[tokio::test(flavor = "current_thread")]
async fn flashmq_silent_after_alive_timeout() {
    let broker = Mosquitto::start();
    let mut config = sim_config(&broker, "boat", Mode::Flashmq);
    config.vary = true;
    config.speed = TIME_SCALE;
    let sim = Simulator::spawn(config);
    wait_ready(&sim).await;
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/#"), QoS::AtMostOnce)
        .await;

    let sent = std::time::Instant::now();
    let suppress = r#"{"keepalive-options":["suppress-republish"]}"#;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), suppress, false)
        .await;
    let got = bridge.collect_for(scaled(80.0)).await;

    let changes = got
        .iter()
        .filter(|m| !m.topic.ends_with("/heartbeat"))
        .count();
    assert!(changes > 0, "value changes flow while alive");
    let last = got.last().expect("messages while alive").at;
    assert!(
        last - sent <= scaled(63.0),
        "last message {:?} after the keepalive",
        last - sent
    );
    assert!(
        last - sent >= scaled(54.0),
        "messages kept flowing until near the end: {:?}",
        last - sent
    );
    assert!(!sim.stats().await.alive);
}

#[tokio::test(flavor = "current_thread")]
async fn flashmq_departed_device_zero_bytes() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    wait_ready(&sim).await;
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/#"), QoS::AtMostOnce)
        .await;
    let items = sim
        .values()
        .await
        .keys()
        .filter(|k| k.starts_with("battery/289/"))
        .count();
    assert!(items > 10);

    sim.remove_device("battery", "289").await;
    let got = live(bridge.collect_for(Duration::from_millis(500)).await);
    let topics: Vec<&str> = got
        .iter()
        .map(|m| m.topic.as_str())
        .filter(|t| !t.contains("/battery/289/"))
        .collect();
    assert_eq!(
        got.len(),
        items,
        "each topic once, even though no keepalive was sent: {topics:?}"
    );
    for message in &got {
        assert!(message.topic.starts_with(&format!("N/{BOAT}/battery/289/")));
        assert!(
            message.payload.is_empty(),
            "zero-byte payload on {}",
            message.topic
        );
        assert!(!message.retain);
    }
    assert!(
        sim.value("battery/289/Soc").await.is_none(),
        "gone from the value table"
    );

    sim.restore_device("battery", "289").await;
    let got = live(bridge.collect_for(Duration::from_millis(300)).await);
    assert!(got.is_empty(), "not alive: silent");
    assert!(sim.value("battery/289/Dc/0/Voltage").await.is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn flashmq_reads_answered_when_not_alive() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    wait_ready(&sim).await;
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/#"), QoS::AtMostOnce)
        .await;

    bridge
        .publish(&format!("R/{BOAT}/battery/275/Soc"), "", false)
        .await;
    let got = live(bridge.collect_for(Duration::from_millis(400)).await);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic, format!("N/{BOAT}/battery/275/Soc"));
    assert_eq!(got[0].value(), sim.value("battery/275/Soc").await);
    assert!(!got[0].retain);
    assert!(!sim.stats().await.alive, "a read is no keepalive");
}

#[tokio::test(flavor = "current_thread")]
async fn flashmq_three_full_publishes_per_second() {
    let broker = Mosquitto::start();
    let mut config = sim_config(&broker, "bmv", Mode::Flashmq);
    // Real time: the token bucket refills once a second.
    config.time_scale = 1.0;
    let sim = Simulator::spawn(config);
    assert!(sim.wait_connected(Duration::from_secs(5)).await);
    let portal = sim.portal_id().to_string();
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(
            &format!("N/{portal}/full_publish_completed"),
            QoS::AtMostOnce,
        )
        .await;
    // Past the first refill, so the burst below falls inside one refill period.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    for _ in 0..6 {
        bridge
            .publish(&format!("R/{portal}/keepalive"), "", false)
            .await;
    }
    let got = bridge.collect_for(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 3, "completions of a burst of 6 keepalives");
    let stats = sim.stats().await;
    assert_eq!(stats.protocol.full_publishes, 3);
    assert_eq!(stats.protocol.rate_limited, 3);
    assert!(
        stats.alive,
        "rate-limited keepalives still keep the session alive"
    );
}
