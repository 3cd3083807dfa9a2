//! The embedded demo broker against rumqttc clients: retained messages, last will, QoS 1
//! and wildcard subscriptions.

use std::time::Duration;

use roamcore_victron::sim::broker::start_broker;
use rumqttc::{LastWill, QoS};

use crate::sim_support::{ClientOptions, TestClient};

fn local() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn broker_keeps_retained_for_wildcards() {
    let broker = start_broker(local()).await.expect("start broker");
    let publisher = TestClient::connect(broker.addr()).await;
    for i in 0..500 {
        publisher
            .publish(
                &format!("N/portal/battery/{i}/Soc"),
                format!("{{\"value\":{i}}}"),
                true,
            )
            .await;
    }
    publisher.publish("N/portal/other", "x", false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut plus = TestClient::connect(broker.addr()).await;
    plus.subscribe("N/+/battery/+/Soc", QoS::AtMostOnce).await;
    let got = plus.collect_for(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 500, "every retained message matching + once");
    assert!(
        got.iter().all(|m| m.retain),
        "retained flag set on delivery after subscribe"
    );

    let mut hash = TestClient::connect(broker.addr()).await;
    hash.subscribe("N/portal/#", QoS::AtLeastOnce).await;
    let got = hash.collect_for(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 500, "the non-retained message is not replayed");
}

#[tokio::test(flavor = "current_thread")]
async fn broker_clears_retained_on_empty_payload() {
    let broker = start_broker(local()).await.expect("start broker");
    let publisher = TestClient::connect(broker.addr()).await;
    publisher.publish("a/b", "1", true).await;
    publisher.publish("a/c", "2", true).await;
    publisher.publish("a/b", Vec::new(), true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut late = TestClient::connect(broker.addr()).await;
    late.subscribe("a/#", QoS::AtMostOnce).await;
    let got = late.collect_for(Duration::from_millis(300)).await;
    let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(topics, vec!["a/c"]);
}

#[tokio::test(flavor = "current_thread")]
async fn broker_live_messages_match_wildcards() {
    let broker = start_broker(local()).await.expect("start broker");
    let mut subscriber = TestClient::connect(broker.addr()).await;
    subscriber.subscribe("x/+/z", QoS::AtMostOnce).await;
    subscriber.subscribe("y/#", QoS::AtMostOnce).await;
    let publisher = TestClient::connect(broker.addr()).await;
    for topic in ["x/1/z", "x/1/2/z", "x/z", "y", "y/1", "y/1/2", "w/1"] {
        publisher.publish(topic, "p", false).await;
    }
    let got = subscriber.collect_for(Duration::from_millis(400)).await;
    let mut topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    topics.sort();
    assert_eq!(topics, vec!["x/1/z", "y", "y/1", "y/1/2"]);
    assert!(
        got.iter().all(|m| !m.retain),
        "live messages carry no retain flag"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn broker_acknowledges_qos1() {
    let broker = start_broker(local()).await.expect("start broker");
    let mut subscriber = TestClient::connect(broker.addr()).await;
    subscriber.subscribe("q/#", QoS::AtLeastOnce).await;
    let mut publisher = TestClient::connect(broker.addr()).await;
    publisher
        .client
        .publish("q/1", QoS::AtLeastOnce, false, "one")
        .await
        .unwrap();
    assert!(
        publisher
            .wait_puback(Duration::from_secs(2))
            .await
            .is_some(),
        "PUBACK"
    );
    let got = subscriber
        .wait_for(Duration::from_secs(2), |m| m.topic == "q/1")
        .await
        .expect("QoS 1 message delivered");
    assert_eq!(got.last().unwrap().qos, QoS::AtLeastOnce);
}

#[tokio::test(flavor = "current_thread")]
async fn broker_sends_retained_last_will() {
    let broker = start_broker(local()).await.expect("start broker");
    let mut watcher = TestClient::connect(broker.addr()).await;
    watcher.subscribe("bridge/status", QoS::AtLeastOnce).await;
    let options = ClientOptions {
        last_will: Some(LastWill::new(
            "bridge/status",
            "offline",
            QoS::AtLeastOnce,
            true,
        )),
        ..Default::default()
    };
    let doomed = TestClient::connect_with(broker.addr(), options).await;
    doomed.publish("bridge/status", "online", true).await;
    watcher
        .wait_for(Duration::from_secs(2), |m| m.payload == b"online")
        .await
        .expect("online seen");

    doomed.kill();
    watcher
        .wait_for(Duration::from_secs(5), |m| m.payload == b"offline")
        .await
        .expect("will published after the connection dropped");

    let mut late = TestClient::connect(broker.addr()).await;
    late.subscribe("bridge/#", QoS::AtMostOnce).await;
    let got = late.collect_for(Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].payload, b"offline",
        "the will replaced the retained online"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn broker_no_will_after_disconnect() {
    let broker = start_broker(local()).await.expect("start broker");
    let mut watcher = TestClient::connect(broker.addr()).await;
    watcher.subscribe("w", QoS::AtMostOnce).await;
    let options = ClientOptions {
        last_will: Some(LastWill::new("w", "gone", QoS::AtMostOnce, false)),
        ..Default::default()
    };
    let polite = TestClient::connect_with(broker.addr(), options).await;
    polite.disconnect().await;
    let got = watcher.collect_for(Duration::from_millis(500)).await;
    assert!(
        got.is_empty(),
        "a clean DISCONNECT discards the will: {got:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn broker_checks_credentials() {
    use roamcore_victron::sim::broker::{start_broker_with, BrokerOptions};
    use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet};

    let options = BrokerOptions {
        credentials: Some(("user".into(), "secret".into())),
    };
    let broker = start_broker_with(local(), options)
        .await
        .expect("start broker");
    let port = broker.addr().port();
    let attempt = |password: &'static str| async move {
        let mut mqtt = MqttOptions::new("cred-test", "127.0.0.1", port);
        mqtt.set_credentials("user", password);
        let (_client, mut eventloop) = AsyncClient::new(mqtt, 10);
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => Some(ack.code),
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => Some(code),
            _ => None,
        }
    };
    assert_eq!(attempt("secret").await, Some(ConnectReturnCode::Success));
    assert_eq!(
        attempt("wrong").await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
}
