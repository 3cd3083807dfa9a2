//! A test client on Home Assistant's broker that records what the bridge publishes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Default)]
pub struct Seen {
    /// Latest payload per topic (retained or not).
    pub latest: BTreeMap<String, String>,
    /// Number of messages per topic.
    pub counts: HashMap<String, usize>,
    /// Every message with its arrival time.
    pub log: Vec<(Instant, String, String)>,
}

pub struct Observer {
    pub seen: Arc<Mutex<Seen>>,
    pub client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Connects to 127.0.0.1:`port` and subscribes to `filters` (default `#`).
    pub async fn connect(port: u16, filters: &[&str]) -> Observer {
        let id = format!("observer-{}", rand::random::<u32>());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(16 * 1024 * 1024, 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let filters: Vec<String> = if filters.is_empty() { vec!["#".into()] } else { filters.iter().map(|s| s.to_string()).collect() };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen_task = seen.clone();
        let subscriber = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for filter in &filters {
                            let _ = subscriber.subscribe(filter.clone(), QoS::AtMostOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload = String::from_utf8_lossy(&p.payload).to_string();
                        let mut seen = seen_task.lock().unwrap();
                        *seen.counts.entry(p.topic.clone()).or_default() += 1;
                        seen.log.push((Instant::now(), p.topic.clone(), payload.clone()));
                        seen.latest.insert(p.topic.clone(), payload);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Observer { seen, client, task }
    }

    pub fn latest(&self, topic: &str) -> Option<String> {
        self.seen.lock().unwrap().latest.get(topic).cloned()
    }

    /// The latest state of entity `key` (`roamcore/victron/<key>/state`).
    pub fn state(&self, key: &str) -> Option<String> {
        self.latest(&format!("roamcore/victron/{key}/state"))
    }

    pub fn count(&self, topic: &str) -> usize {
        self.seen.lock().unwrap().counts.get(topic).copied().unwrap_or(0)
    }

    /// Messages whose topic starts with `prefix`.
    pub fn count_prefix(&self, prefix: &str) -> usize {
        self.seen.lock().unwrap().counts.iter().filter(|(t, _)| t.starts_with(prefix)).map(|(_, n)| *n).sum()
    }

    /// The parsed discovery message, if one arrived.
    pub fn discovery(&self) -> Option<serde_json::Value> {
        let text = self.latest("homeassistant/device/roamcore_victron/config")?;
        serde_json::from_str(&text).ok()
    }

    /// Waits until `check` holds on what was seen.
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&Seen) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.seen.lock().unwrap()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `topic`'s latest payload equals `value`.
    pub async fn wait_for(&self, topic: &str, value: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, |seen| seen.latest.get(topic).map(String::as_str) == Some(value)).await
    }

    pub fn clear_log(&self) {
        let mut seen = self.seen.lock().unwrap();
        seen.log.clear();
        seen.counts.clear();
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
