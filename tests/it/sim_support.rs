//! A rumqttc test client for the simulator and broker tests: it records every message it
//! receives, with its retain flag and arrival time.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// One message as the test client received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub qos: QoS,
    pub at: Instant,
}

impl Received {
    /// Parses the payload as JSON; `None` for an empty or non-JSON payload.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.payload).ok()
    }

    /// Returns the `value` key of a `{"value": ...}` payload.
    pub fn value(&self) -> Option<serde_json::Value> {
        self.json().and_then(|json| json.get("value").cloned())
    }
}

/// Options of a test client.
#[derive(Default, Clone)]
pub struct ClientOptions {
    pub credentials: Option<(String, String)>,
    pub last_will: Option<LastWill>,
}

pub struct TestClient {
    pub client: AsyncClient,
    messages: mpsc::UnboundedReceiver<Received>,
    pub_acks: mpsc::UnboundedReceiver<u16>,
    task: tokio::task::JoinHandle<()>,
}

static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl TestClient {
    pub async fn connect(addr: SocketAddr) -> TestClient {
        TestClient::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects and waits for the CONNACK (panics after 5 s).
    pub async fn connect_with(addr: SocketAddr, options: ClientOptions) -> TestClient {
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut mqtt = MqttOptions::new(
            format!("test-{}-{id}", std::process::id()),
            addr.ip().to_string(),
            addr.port(),
        );
        mqtt.set_keep_alive(Duration::from_secs(5));
        mqtt.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        if let Some((user, password)) = options.credentials {
            mqtt.set_credentials(user, password);
        }
        if let Some(will) = options.last_will {
            mqtt.set_last_will(will);
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, 10_000);
        let (message_tx, messages) = mpsc::unbounded_channel();
        let (ack_tx, pub_acks) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut connected_tx = Some(connected_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let _ = message_tx.send(Received {
                            topic: publish.topic.clone(),
                            payload: publish.payload.to_vec(),
                            retain: publish.retain,
                            qos: publish.qos,
                            at: Instant::now(),
                        });
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let _ = ack_tx.send(ack.pkid);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), connected_rx)
            .await
            .expect("test client: no CONNACK within 5 s")
            .expect("test client: connection failed");
        TestClient {
            client,
            messages,
            pub_acks,
            task,
        }
    }

    /// Subscribes and waits a moment for the SUBACK to be processed by the broker.
    pub async fn subscribe(&self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.expect("subscribe");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client
            .publish(topic, QoS::AtMostOnce, retain, payload.into())
            .await
            .expect("publish");
    }

    /// Collects every message received within `window`.
    pub async fn collect_for(&mut self, window: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, self.messages.recv()).await
        {
            out.push(message);
        }
        out
    }

    /// Waits for the first message that satisfies `predicate`; the messages before it are
    /// returned too, in order, the match last. `None` on timeout.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        predicate: impl Fn(&Received) -> bool,
    ) -> Option<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(message)) => {
                    let matched = predicate(&message);
                    seen.push(message);
                    if matched {
                        return Some(seen);
                    }
                }
                _ => return None,
            }
        }
    }

    /// Waits for a PUBACK.
    pub async fn wait_puback(&mut self, timeout: Duration) -> Option<u16> {
        tokio::time::timeout(timeout, self.pub_acks.recv())
            .await
            .ok()
            .flatten()
    }

    /// Drops the TCP connection without a DISCONNECT packet, so the broker sends the will.
    pub fn kill(self) {
        self.task.abort();
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Time scale of the simulator tests: Venus timers run 20 times faster (heartbeat 150 ms,
/// alive 3 s, dbus-mqtt expiry 3 to 3.5 s).
pub const TIME_SCALE: f64 = 20.0;

/// Builds a simulator config for tests: fast timers and reconnects, and values held still
/// unless the test turns variation on.
pub fn sim_config(
    broker: &crate::support::mosquitto::Mosquitto,
    capture: &str,
    mode: roamcore_victron::sim::Mode,
) -> roamcore_victron::sim::SimConfig {
    let capture = roamcore_victron::sim::capture::Capture::load(capture).expect("capture loads");
    let mut config = roamcore_victron::sim::SimConfig::new(broker.host_port(), capture);
    config.mode = mode;
    config.time_scale = TIME_SCALE;
    config.vary = false;
    config.reconnect_delay = Duration::from_millis(100);
    config
}

/// Messages whose payload is a JSON object with this `full-publish-completed-echo`.
pub fn is_completion(message: &Received, token: &str) -> bool {
    message.topic.ends_with("/full_publish_completed")
        && message
            .json()
            .and_then(|j| j.get("full-publish-completed-echo").cloned())
            == Some(serde_json::Value::String(token.to_string()))
}

/// Waits for the simulator's first connection and for its start-up messages (keepalive,
/// Serial) to pass the broker, so a client subscribing afterwards gets them only as
/// retained messages.
pub async fn wait_ready(sim: &roamcore_victron::sim::SimHandle) {
    assert!(
        sim.wait_connected(Duration::from_secs(5)).await,
        "simulator connects within 5 s"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
}
