//! Fault scenarios of the simulated GX: reboot, frozen data, forced keepalive expiry, a
//! password-protected broker, null values, writes and two GX devices on one broker.

use std::time::Duration;

use roamcore_victron::sim::{Mode, Simulator};
use rumqttc::QoS;
use serde_json::json;

use crate::sim_support::{is_completion, sim_config, wait_ready, Received, TestClient};
use crate::support::mosquitto::{BrokerConfig, Mosquitto};

const BOAT: &str = "c0619ab0d0e1";
const SUPPRESS: &str = r#"{"keepalive-options":["suppress-republish"]}"#;

fn live(messages: Vec<Received>) -> Vec<Received> {
    messages.into_iter().filter(|m| !m.retain).collect()
}

fn keepalive_with(token: &str) -> String {
    format!(r#"{{"keepalive-options":[{{"full-publish-completed-echo":"{token}"}}]}}"#)
}

#[tokio::test(flavor = "current_thread")]
async fn reboot_returns_with_only_serial() {
    let mut broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    wait_ready(&sim).await;
    let client = TestClient::connect(broker.addr()).await;
    client
        .publish(&format!("R/{BOAT}/keepalive"), "", false)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.stats().await.alive);
    drop(client);

    // The GX's broker restarts empty; the simulator reconnects as a rebooted GX.
    broker.restart();
    assert!(
        sim.wait_connects(2, Duration::from_secs(5)).await,
        "reconnected"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge.subscribe("N/#", QoS::AtMostOnce).await;
    let got = bridge.collect_for(Duration::from_millis(700)).await;
    let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics,
        [format!("N/{BOAT}/system/0/Serial")],
        "only the retained Serial"
    );
    assert!(got[0].retain);
    assert!(
        !sim.stats().await.alive,
        "the keepalive session did not survive the reboot"
    );

    bridge
        .publish(
            &format!("R/{BOAT}/keepalive"),
            keepalive_with("after"),
            false,
        )
        .await;
    let full = bridge
        .wait_for(Duration::from_secs(5), |m| is_completion(m, "after"))
        .await;
    assert!(
        full.is_some_and(|messages| messages.len() > 2600),
        "full publish after keepalive"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn reboot_command_reconnects_later() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "bmv", Mode::Flashmq));
    wait_ready(&sim).await;
    let portal = sim.portal_id().to_string();
    let mut watcher = TestClient::connect(broker.addr()).await;
    watcher
        .subscribe(&format!("N/{portal}/keepalive"), QoS::AtMostOnce)
        .await;

    sim.reboot(Duration::from_millis(600)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!sim.stats().await.connected, "down during the reboot");
    assert!(sim.wait_connects(2, Duration::from_secs(3)).await);
    let got = watcher.collect_for(Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1, "the plugin start message again");
    assert_eq!(got[0].payload, b"1");
}

#[tokio::test(flavor = "current_thread")]
async fn frozen_gx_ignores_keepalives() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    wait_ready(&sim).await;
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/#"), QoS::AtMostOnce)
        .await;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), keepalive_with("a"), false)
        .await;
    bridge
        .wait_for(Duration::from_secs(5), |m| is_completion(m, "a"))
        .await
        .expect("full publish");

    sim.freeze().await;
    // Messages sent before the freeze may still be on their way.
    bridge.collect_for(Duration::from_millis(100)).await;
    sim.set_value("battery/275/Soc", json!(42.5)).await;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), keepalive_with("b"), false)
        .await;
    let got = live(bridge.collect_for(Duration::from_millis(700)).await);
    assert!(
        got.is_empty(),
        "no heartbeat, no values, no answer: {:?}",
        got.first().map(|m| &m.topic)
    );
    assert!(sim.stats().await.frozen);
    assert_eq!(
        sim.value("battery/275/Soc").await,
        Some(json!(42.5)),
        "values change underneath"
    );

    sim.thaw().await;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), keepalive_with("c"), false)
        .await;
    let full = bridge
        .wait_for(Duration::from_secs(5), |m| is_completion(m, "c"))
        .await
        .expect("full publish after thaw");
    let soc = full
        .iter()
        .find(|m| m.topic == format!("N/{BOAT}/battery/275/Soc"));
    assert_eq!(soc.and_then(|m| m.value()), Some(json!(42.5)));
}

#[tokio::test(flavor = "current_thread")]
async fn expired_session_suppress_gives_nothing() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    wait_ready(&sim).await;
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/#"), QoS::AtMostOnce)
        .await;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), keepalive_with("a"), false)
        .await;
    bridge
        .wait_for(Duration::from_secs(5), |m| is_completion(m, "a"))
        .await
        .expect("full publish");

    sim.expire_keepalive().await;
    sim.set_value("battery/275/Soc", json!(33)).await;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), SUPPRESS, false)
        .await;
    let got = live(bridge.collect_for(Duration::from_millis(600)).await);
    assert!(
        got.iter().all(|m| m.topic.ends_with("/heartbeat")),
        "no values after the revival"
    );
    assert!(!got.is_empty(), "the session is alive again: heartbeats");
    assert_eq!(
        sim.value("battery/275/Soc").await,
        Some(json!(33)),
        "the GX has the new value"
    );
    assert_eq!(sim.stats().await.protocol.expiries, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn password_broker_needs_login() {
    let credentials = Some(("gx".to_string(), "s3cret".to_string()));
    let broker = Mosquitto::start_with(BrokerConfig {
        credentials: credentials.clone(),
        ..Default::default()
    });

    let mut good = sim_config(&broker, "bmv", Mode::Flashmq);
    good.credentials = credentials;
    good.client_id = Some("good".into());
    let good = Simulator::spawn(good);
    assert!(good.wait_connected(Duration::from_secs(5)).await);

    let mut bad = sim_config(&broker, "bmv", Mode::Flashmq);
    bad.credentials = Some(("gx".into(), "wrong".into()));
    bad.client_id = Some("bad".into());
    let bad = Simulator::spawn(bad);
    assert!(
        !bad.wait_connected(Duration::from_millis(1500)).await,
        "wrong password rejected"
    );

    let mut anonymous = sim_config(&broker, "bmv", Mode::Flashmq);
    anonymous.client_id = Some("anonymous".into());
    let anonymous = Simulator::spawn(anonymous);
    assert!(
        !anonymous.wait_connected(Duration::from_millis(1000)).await,
        "anonymous rejected"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn null_value_and_write() {
    let broker = Mosquitto::start();
    let sim = Simulator::spawn(sim_config(&broker, "boat", Mode::Flashmq));
    wait_ready(&sim).await;
    let mut bridge = TestClient::connect(broker.addr()).await;
    bridge
        .subscribe(&format!("N/{BOAT}/battery/275/#"), QoS::AtMostOnce)
        .await;
    bridge
        .publish(&format!("R/{BOAT}/keepalive"), SUPPRESS, false)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    sim.set_null("battery/275/Soc").await;
    let got = bridge
        .wait_for(Duration::from_secs(2), |m| m.topic.ends_with("/Soc"))
        .await
        .unwrap();
    assert_eq!(got.last().unwrap().payload, b"{\"value\":null}");

    bridge
        .publish(
            &format!("W/{BOAT}/battery/275/Soc"),
            r#"{"value": 77}"#,
            false,
        )
        .await;
    let got = bridge
        .wait_for(Duration::from_secs(2), |m| m.topic.ends_with("/Soc"))
        .await
        .unwrap();
    assert_eq!(got.last().unwrap().value(), Some(json!(77)));
    assert_eq!(sim.value("battery/275/Soc").await, Some(json!(77)));

    bridge
        .publish(&format!("W/{BOAT}/battery/275/Soc"), "77", false)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sim.value("battery/275/Soc").await,
        Some(json!(77)),
        "a write without value key is ignored"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn two_gx_own_portal_ids() {
    let broker = Mosquitto::start();
    let mut first = sim_config(&broker, "boat", Mode::Flashmq);
    first.portal_id = Some("aaaaaaaaaaaa".into());
    let mut second = sim_config(&broker, "boat", Mode::Flashmq);
    second.portal_id = Some("bbbbbbbbbbbb".into());
    let first = Simulator::spawn(first);
    let second = Simulator::spawn(second);
    wait_ready(&first).await;
    wait_ready(&second).await;

    let mut client = TestClient::connect(broker.addr()).await;
    client
        .subscribe("N/+/system/0/Serial", QoS::AtMostOnce)
        .await;
    let mut got: Vec<(String, serde_json::Value)> = client
        .collect_for(Duration::from_millis(400))
        .await
        .into_iter()
        .map(|m| (m.topic.clone(), m.value().unwrap()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                "N/aaaaaaaaaaaa/system/0/Serial".to_string(),
                json!("aaaaaaaaaaaa")
            ),
            (
                "N/bbbbbbbbbbbb/system/0/Serial".to_string(),
                json!("bbbbbbbbbbbb")
            ),
        ]
    );

    client
        .publish("R/aaaaaaaaaaaa/keepalive", SUPPRESS, false)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(first.stats().await.alive);
    assert!(
        !second.stats().await.alive,
        "a keepalive for one portal id leaves the other alone"
    );
}
