//! The simulated GX in dbus-mqtt mode (Venus OS before 3.20) against a real Mosquitto:
//! retained values, list keepalives, the object-payload trap and expiry clearing, from
//! dbus-mqtt v1.36. Timers run 20 times faster ([`TIME_SCALE`]): expiry after 60 to 70 s
//! becomes 3 to 3.5 s.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use roamcore_victron::sim::{Mode, SimHandle, Simulator};
use rumqttc::QoS;

use crate::sim_support::{sim_config, wait_ready, Received, TestClient, TIME_SCALE};
use crate::support::mosquitto::Mosquitto;

const BOAT: &str = "c0619ab0d0e1";

fn scaled(secs: f64) -> Duration {
    Duration::from_secs_f64(secs / TIME_SCALE)
}

/// Returns the retained topics a new subscriber receives.
async fn retained_topics(broker: &Mosquitto) -> BTreeSet<String> {
    let mut late = TestClient::connect(broker.addr()).await;
    late.subscribe("N/#", QoS::AtMostOnce).await;
    let got = late.collect_for(Duration::from_millis(700)).await;
    got.into_iter()
        .filter(|m| m.retain)
        .map(|m| m.topic)
        .collect()
}

async fn start(broker: &Mosquitto) -> SimHandle {
    let sim = Simulator::spawn(sim_config(broker, "boat", Mode::DbusMqtt));
    wait_ready(&sim).await;
    sim
}

fn filter_matches(filter: &str, suffix: &str) -> bool {
    let filter: Vec<&str> = filter.split('/').collect();
    let topic: Vec<&str> = suffix.split('/').collect();
    for index in 0..filter.len().max(topic.len()) {
        match (filter.get(index), topic.get(index)) {
            (Some(&"+"), Some(_)) => continue,
            (Some(&"#"), Some(_)) => return true,
            (Some(f), Some(t)) if f == t => continue,
            _ => return false,
        }
    }
    true
}

#[tokio::test(flavor = "current_thread")]
async fn dbus_mqtt_retains_every_value() {
    let broker = Mosquitto::start();
    let sim = start(&broker).await;
    let before = retained_topics(&broker).await;
    let expected_start: BTreeSet<String> = [
        format!("N/{BOAT}/keepalive"),
        format!("N/{BOAT}/system/0/Serial"),
    ]
    .into();
    assert_eq!(
        before, expected_start,
        "only keepalive and Serial before a keepalive"
    );

    let client = TestClient::connect(broker.addr()).await;
    client
        .publish(&format!("R/{BOAT}/keepalive"), "", false)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut late = TestClient::connect(broker.addr()).await;
    late.subscribe("N/#", QoS::AtMostOnce).await;
    let got: Vec<Received> = late.collect_for(Duration::from_millis(800)).await;
    let truth = sim.values().await;
    assert_eq!(
        got.len(),
        truth.len() + 1,
        "every item plus keepalive, all retained"
    );
    assert!(got.iter().all(|m| m.retain));
    let keepalive = got
        .iter()
        .find(|m| m.topic == format!("N/{BOAT}/keepalive"))
        .unwrap();
    assert_eq!(keepalive.payload, b"{\"value\": 1}");
    for message in &got {
        let suffix = &message.topic[BOAT.len() + 3..];
        if suffix == "keepalive" {
            continue;
        }
        assert!(
            message.payload.starts_with(b"{\"value\": "),
            "Python json.dumps style"
        );
        assert_eq!(message.value().as_ref(), truth.get(suffix), "{suffix}");
    }
    assert!(sim.stats().await.protocol.full_publishes >= 1);
}

#[tokio::test(flavor = "current_thread")]
async fn dbus_mqtt_selective_keepalive() {
    let broker = Mosquitto::start();
    let sim = start(&broker).await;
    let client = TestClient::connect(broker.addr()).await;
    let filters = ["battery/+/Soc", "tank/#"];
    let payload = serde_json::to_string(&filters).unwrap();
    client
        .publish(&format!("R/{BOAT}/keepalive"), payload, false)
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    let mut expected: BTreeSet<String> = sim
        .values()
        .await
        .keys()
        .filter(|suffix| filters.iter().any(|f| filter_matches(f, suffix)))
        .map(|suffix| format!("N/{BOAT}/{suffix}"))
        .collect();
    assert!(
        expected.len() > 10,
        "the filters match battery SOCs and every tank path"
    );
    expected.insert(format!("N/{BOAT}/keepalive"));
    expected.insert(format!("N/{BOAT}/system/0/Serial"));
    assert_eq!(retained_topics(&broker).await, expected);
}

#[tokio::test(flavor = "current_thread")]
async fn dbus_mqtt_object_payload_trap() {
    let broker = Mosquitto::start();
    let sim = start(&broker).await;
    let client = TestClient::connect(broker.addr()).await;
    let keepalive = format!("R/{BOAT}/keepalive");
    client.publish(&keepalive, "", false).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        retained_topics(&broker).await.len() > 2000,
        "all values retained"
    );

    // A bridge that believes it keeps the session alive with flashmq-style options.
    let options = r#"{"keepalive-options": ["suppress-republish"]}"#;
    let started = Instant::now();
    while started.elapsed() < scaled(85.0) {
        client.publish(&keepalive, options, false).await;
        tokio::time::sleep(scaled(20.0)).await;
    }
    let left = retained_topics(&broker).await;
    let expected: BTreeSet<String> = [
        format!("N/{BOAT}/keepalive"),
        format!("N/{BOAT}/system/0/Serial"),
    ]
    .into();
    assert_eq!(
        left, expected,
        "values cleared despite keepalives every 20 s"
    );
    assert!(
        sim.stats().await.alive,
        "the filter 'keepalive-options' is still live"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn dbus_mqtt_expiry_clears_values() {
    let broker = Mosquitto::start();
    let sim = start(&broker).await;
    let mut watcher = TestClient::connect(broker.addr()).await;
    watcher
        .subscribe(&format!("N/{BOAT}/#"), QoS::AtMostOnce)
        .await;
    let client = TestClient::connect(broker.addr()).await;
    client
        .publish(&format!("R/{BOAT}/keepalive"), "", false)
        .await;
    let sent = Instant::now();

    let got = watcher.collect_for(scaled(75.0)).await;
    let clears: Vec<&Received> = got.iter().filter(|m| m.payload.is_empty()).collect();
    let items = sim.values().await.len();
    assert_eq!(clears.len(), items - 1, "every item but the Serial cleared");
    let first = clears.first().unwrap().at - sent;
    assert!(
        first >= scaled(60.0),
        "cleared {first:?} after the keepalive, before 60 s"
    );
    assert!(
        first <= scaled(73.0),
        "cleared {first:?} after the keepalive, after 70 s plus one queue run"
    );
    assert!(clears
        .iter()
        .all(|m| !m.topic.ends_with("/system/0/Serial")));

    let left = retained_topics(&broker).await;
    assert_eq!(
        left.len(),
        2,
        "keepalive and Serial stay retained: {left:?}"
    );
    assert!(!sim.stats().await.alive);
}

#[tokio::test(flavor = "current_thread")]
async fn dbus_mqtt_read_not_retained() {
    let broker = Mosquitto::start();
    let sim = start(&broker).await;
    let mut client = TestClient::connect(broker.addr()).await;
    client
        .subscribe(&format!("N/{BOAT}/battery/#"), QoS::AtMostOnce)
        .await;
    client
        .publish(&format!("R/{BOAT}/battery/275/Soc"), "", false)
        .await;
    let got = client.collect_for(Duration::from_millis(400)).await;
    assert_eq!(got.len(), 1);
    assert!(!got[0].retain);
    assert_eq!(got[0].value(), sim.value("battery/275/Soc").await);
    assert_eq!(
        retained_topics(&broker).await.len(),
        2,
        "a read keeps nothing alive"
    );
}
