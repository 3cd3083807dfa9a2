//! dbus-mqtt (Venus OS before 3.20), as its v1.36 Python source behaves:
//!
//! * every notification is retained; at start it queues `N/<portal>/keepalive`
//!   `{"value": 1}` and the Serial; there is no heartbeat and no `full_publish_completed`;
//! * `R/<portal>/keepalive` with an empty payload keeps every topic alive (and publishes
//!   them all when that was not already so). Any other payload is read with Python's
//!   `json.loads` and iterated: a list yields topic filters (`+` and `#`), but an object
//!   yields its keys, so `{"keepalive-options": [...]}` keeps alive only a filter named
//!   `keepalive-options` that matches no topic;
//! * a filter expires 60 s after its last keepalive, checked every 10 s, so 60 to 70 s.
//!   Then every published topic that no live filter matches, except `system/0/Serial` and
//!   `keepalive`, is cleared with a zero-length retained message;
//! * publishes go through a queue where a newer value replaces an older one in place. A
//!   1 s timer starts a queue run when the last run is over 1.5 s old. A run sends 50
//!   messages and continues on idle until the queue is empty. `paced` mode stops each run
//!   after 50 messages instead, the stricter reading of "batches of at most 50, 1.5 s
//!   apart";
//! * reads get their reply at once, not retained.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use serde_json::Value;

use super::gx::{Change, Gx};
use super::protocol::{python_value, Counters, Now, Publish, Timers};

/// Messages per queue batch (`_service_queue`).
const BATCH: usize = 50;

/// A keepalive filter: `None` keeps every topic alive.
#[derive(Debug, Clone)]
struct Subscription {
    filter: Option<Vec<String>>,
    refreshed: Instant,
}

#[derive(Debug, Clone)]
enum Queued {
    Value(Value),
    Clear,
}

#[derive(Debug)]
pub struct DbusMqtt {
    portal_id: String,
    timers: Timers,
    paced: bool,
    subscriptions: Vec<Subscription>,
    /// Topic suffixes published since their filter last became live.
    published: BTreeSet<String>,
    queue_order: VecDeque<String>,
    queue: HashMap<String, Queued>,
    last_queue_run: Option<Instant>,
    next_queue_tick: Instant,
    next_expiry_check: Instant,
    pub counters: Counters,
}

impl DbusMqtt {
    pub fn new(portal_id: &str, timers: Timers, paced: bool, now: Instant) -> DbusMqtt {
        DbusMqtt {
            portal_id: portal_id.to_string(),
            timers,
            paced,
            subscriptions: Vec::new(),
            published: BTreeSet::new(),
            queue_order: VecDeque::new(),
            queue: HashMap::new(),
            last_queue_run: None,
            next_queue_tick: now + timers.queue_tick,
            next_expiry_check: now + timers.expiry_check,
            counters: Counters::default(),
        }
    }

    pub fn on_connect(&mut self, gx: &Gx, now: Now) -> Vec<Publish> {
        self.subscriptions.clear();
        self.published.clear();
        self.queue.clear();
        self.queue_order.clear();
        self.last_queue_run = None;
        self.next_queue_tick = now.instant + self.timers.queue_tick;
        self.next_expiry_check = now.instant + self.timers.expiry_check;

        self.enqueue("keepalive", Queued::Value(Value::from(1)));
        if let Some(serial) = gx.get("system/0/Serial") {
            self.enqueue("system/0/Serial", Queued::Value(serial.clone()));
        }
        Vec::new()
    }

    pub fn on_request(&mut self, gx: &Gx, now: Now, rest: &str, payload: &[u8]) -> Vec<Publish> {
        match rest {
            "system/0/Serial" => {
                // A Serial read counts as a keepalive for every topic.
                self.counters.keepalives += 1;
                if let Some(serial) = gx.get("system/0/Serial") {
                    self.enqueue("system/0/Serial", Queued::Value(serial.clone()));
                }
                if self.subscribe_all(now.instant) {
                    self.publish_all(gx);
                }
                Vec::new()
            }
            "keepalive" => {
                self.counters.keepalives += 1;
                self.keepalive(gx, now.instant, payload);
                Vec::new()
            }
            _ => {
                self.counters.reads += 1;
                match gx.get(rest) {
                    Some(value) => vec![Publish {
                        topic: format!("N/{}/{}", self.portal_id, rest),
                        payload: python_value(value),
                        retain: false,
                    }],
                    None => Vec::new(),
                }
            }
        }
    }

    fn keepalive(&mut self, gx: &Gx, now: Instant, payload: &[u8]) {
        if payload.is_empty() {
            if self.subscribe_all(now) {
                self.publish_all(gx);
            }
            return;
        }
        for filter in python_iteration(payload) {
            let Some(filter) = filter else { return };
            let levels: Vec<String> = filter.split('/').map(str::to_string).collect();
            if !self.subscribe(levels.clone(), now) {
                continue;
            }
            // Publish what the new filter matches and was not published yet.
            for (suffix, value) in gx.values() {
                if !self.published.contains(&suffix) && filter_matches(&levels, &suffix) {
                    self.published.insert(suffix.clone());
                    self.enqueue(&suffix, Queued::Value(value));
                }
            }
        }
    }

    /// Refreshes or adds the keep-everything filter; true when it was added.
    fn subscribe_all(&mut self, now: Instant) -> bool {
        let existing = self.subscriptions.iter().position(|s| s.filter.is_none());
        if let Some(index) = existing {
            self.subscriptions.remove(index);
        }
        self.subscriptions.insert(
            0,
            Subscription {
                filter: None,
                refreshed: now,
            },
        );
        existing.is_none()
    }

    /// Refreshes or adds a filter; true when it was added.
    fn subscribe(&mut self, levels: Vec<String>, now: Instant) -> bool {
        let existing = self
            .subscriptions
            .iter()
            .position(|s| s.filter.as_ref() == Some(&levels));
        if let Some(index) = existing {
            self.subscriptions.remove(index);
        }
        self.subscriptions.push(Subscription {
            filter: Some(levels),
            refreshed: now,
        });
        existing.is_none()
    }

    fn is_live(&self, suffix: &str) -> bool {
        self.subscriptions.iter().any(|s| match &s.filter {
            None => true,
            Some(levels) => filter_matches(levels, suffix),
        })
    }

    fn publish_all(&mut self, gx: &Gx) {
        self.counters.full_publishes += 1;
        for (suffix, value) in gx.values() {
            self.publish(&suffix, value);
        }
    }

    /// Queues a value when its topic is live (`publish` in dbus-mqtt).
    fn publish(&mut self, suffix: &str, value: Value) {
        if self.published.contains(suffix) {
            self.enqueue(suffix, Queued::Value(value));
        } else if self.is_live(suffix) {
            self.published.insert(suffix.to_string());
            self.enqueue(suffix, Queued::Value(value));
        }
    }

    fn unpublish(&mut self, suffix: &str) {
        self.published.remove(suffix);
        self.enqueue(suffix, Queued::Clear);
    }

    fn enqueue(&mut self, suffix: &str, item: Queued) {
        if self.queue.insert(suffix.to_string(), item).is_none() {
            self.queue_order.push_back(suffix.to_string());
        }
    }

    pub fn on_changes(&mut self, _gx: &Gx, _now: Now, changes: &[Change]) -> Vec<Publish> {
        for change in changes {
            match &change.value {
                Some(value) => self.publish(&change.suffix, value.clone()),
                // The Serial is left alone when its service disappears.
                None if change.suffix == "system/0/Serial" => {}
                None => self.unpublish(&change.suffix),
            }
        }
        Vec::new()
    }

    pub fn on_tick(&mut self, gx: &Gx, now: Now) -> Vec<Publish> {
        let _ = gx;
        if now.instant >= self.next_expiry_check {
            self.next_expiry_check = now.instant + self.timers.expiry_check;
            self.expire(now.instant);
        }

        let mut out = Vec::new();
        if now.instant >= self.next_queue_tick {
            self.next_queue_tick = now.instant + self.timers.queue_tick;
            let gap_passed = self
                .last_queue_run
                .is_none_or(|last| now.instant.duration_since(last) > self.timers.queue_gap);
            if !self.queue.is_empty() && gap_passed {
                self.last_queue_run = Some(now.instant);
                let limit = if self.paced { BATCH } else { usize::MAX };
                self.drain(limit, &mut out);
            }
        }
        out
    }

    fn drain(&mut self, limit: usize, out: &mut Vec<Publish>) {
        while out.len() < limit {
            let Some(suffix) = self.queue_order.pop_front() else {
                break;
            };
            let Some(item) = self.queue.remove(&suffix) else {
                continue;
            };
            let payload = match item {
                Queued::Value(value) => python_value(&value),
                Queued::Clear => Vec::new(),
            };
            out.push(Publish {
                topic: format!("N/{}/{}", self.portal_id, suffix),
                payload,
                retain: true,
            });
        }
    }

    /// Removes expired filters and clears what no live filter matches any more.
    fn expire(&mut self, now: Instant) {
        let max_age = self.timers.max_topic_age;
        let before = self.subscriptions.len();
        self.subscriptions
            .retain(|s| now.duration_since(s.refreshed) <= max_age);
        if self.subscriptions.len() == before {
            return;
        }
        self.counters.expiries += 1;
        self.clear_unmatched();
    }

    fn clear_unmatched(&mut self) {
        if self.subscriptions.iter().any(|s| s.filter.is_none()) {
            return;
        }
        let stale: Vec<String> = self
            .published
            .iter()
            .filter(|suffix| suffix.as_str() != "system/0/Serial" && !self.is_live(suffix))
            .cloned()
            .collect();
        for suffix in stale {
            self.unpublish(&suffix);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let queue = (!self.queue.is_empty()).then_some(self.next_queue_tick);
        let expiry = (!self.subscriptions.is_empty()).then_some(self.next_expiry_check);
        [queue, expiry].into_iter().flatten().min()
    }

    /// Drops every filter now; the clearing messages go out with the next queue run.
    pub fn expire_now(&mut self, _gx: &Gx, _now: Now) -> Vec<Publish> {
        if !self.subscriptions.is_empty() {
            self.subscriptions.clear();
            self.counters.expiries += 1;
            self.clear_unmatched();
        }
        Vec::new()
    }

    pub fn is_alive(&self) -> bool {
        !self.subscriptions.is_empty()
    }
}

/// Returns the items Python's `for topic in json.loads(payload)` yields, as filter strings.
/// A `None` entry is the exception that ends the loop (an element that is not a string).
/// A payload that is not JSON or not iterable yields nothing.
fn python_iteration(payload: &[u8]) -> Vec<Option<String>> {
    let Ok(json) = serde_json::from_slice::<Value>(payload) else {
        return Vec::new();
    };
    match json {
        Value::Array(items) => items
            .into_iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect(),
        Value::Object(map) => map.keys().map(|key| Some(key.clone())).collect(),
        Value::String(text) => text.chars().map(|c| Some(c.to_string())).collect(),
        _ => Vec::new(),
    }
}

/// dbus-mqtt's `Topic.match` (level by level with `zip_longest`); note that `a/#` does not
/// match `a` here, unlike MQTT.
fn filter_matches(filter: &[String], suffix: &str) -> bool {
    let topic: Vec<&str> = suffix.split('/').collect();
    let length = filter.len().max(topic.len());
    for index in 0..length {
        let (Some(f), Some(t)) = (filter.get(index), topic.get(index)) else {
            return false;
        };
        if f == "+" || *t == "+" {
            continue;
        }
        if f == "#" || *t == "#" {
            return true;
        }
        if f != t {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::capture::{Capture, CaptureKind, Service, Setup};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn gx() -> Gx {
        let service = |kind: &str, instance: &str, pairs: &[(&str, Value)]| Service {
            name: format!("com.victronenergy.{kind}.x"),
            service_type: kind.into(),
            instance: instance.into(),
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        };
        let capture = Capture {
            name: "t".into(),
            description: String::new(),
            kind: CaptureKind::MqttLog,
            portal_id: "abc".into(),
            services: vec![
                service(
                    "system",
                    "0",
                    &[("Serial", json!("abc")), ("Dc/Battery/Soc", json!(50))],
                ),
                service(
                    "battery",
                    "1",
                    &[("Soc", json!(50)), ("Dc/0/Voltage", json!(12.5))],
                ),
                service("tank", "20", &[("Level", json!(33))]),
            ],
            events: Vec::new(),
            setup: Setup::default(),
        };
        Gx::from_capture(&capture, "abc")
    }

    fn at(start: Instant, secs: f64) -> Now {
        Now {
            instant: start + Duration::from_secs_f64(secs),
            unix_secs: 0,
        }
    }

    /// Ticks every 0.25 s from `from` to `to` seconds and collects what is published.
    fn run(bridge: &mut DbusMqtt, gx: &Gx, start: Instant, from: f64, to: f64) -> Vec<Publish> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            out.extend(bridge.on_tick(gx, at(start, t)));
            t += 0.25;
        }
        out
    }

    #[test]
    fn filter_matching_follows_python() {
        let f = |s: &str| s.split('/').map(str::to_string).collect::<Vec<_>>();
        assert!(filter_matches(&f("battery/#"), "battery/1/Soc"));
        assert!(filter_matches(&f("battery/+/Soc"), "battery/1/Soc"));
        assert!(!filter_matches(&f("battery/+"), "battery/1/Soc"));
        assert!(!filter_matches(&f("battery/1/Soc/#"), "battery/1/Soc"));
        assert!(!filter_matches(&f("keepalive-options"), "battery/1/Soc"));
    }

    #[test]
    fn empty_keepalive_publishes_retained_everything() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = DbusMqtt::new("abc", Timers::scaled(1.0), false, start);
        bridge.on_connect(&gx, at(start, 0.0));
        bridge.on_request(&gx, at(start, 0.1), "keepalive", b"");
        let out = run(&mut bridge, &gx, start, 0.25, 3.0);
        assert_eq!(
            out.len(),
            1 + 5,
            "keepalive and the 5 items, the queued Serial sent once"
        );
        assert!(out.iter().all(|p| p.retain));
        assert_eq!(out[0].topic, "N/abc/keepalive");
        assert_eq!(out[0].payload, b"{\"value\": 1}");
    }

    #[test]
    fn selective_keepalive_and_object_trap() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = DbusMqtt::new("abc", Timers::scaled(1.0), false, start);
        bridge.on_connect(&gx, at(start, 0.0));
        bridge.on_request(
            &gx,
            at(start, 0.1),
            "keepalive",
            br#"["battery/+/Soc", "tank/#"]"#,
        );
        let out = run(&mut bridge, &gx, start, 0.25, 3.0);
        let topics: BTreeSet<&str> = out.iter().map(|p| p.topic.as_str()).collect();
        assert!(topics.contains("N/abc/battery/1/Soc"));
        assert!(topics.contains("N/abc/tank/20/Level"));
        assert!(!topics.contains("N/abc/battery/1/Dc/0/Voltage"));

        let mut trap = DbusMqtt::new("abc", Timers::scaled(1.0), false, start);
        trap.on_connect(&gx, at(start, 0.0));
        let payload = br#"{"keepalive-options": ["suppress-republish"]}"#;
        trap.on_request(&gx, at(start, 0.1), "keepalive", payload);
        let out = run(&mut trap, &gx, start, 0.25, 3.0);
        let topics: Vec<&str> = out.iter().map(|p| p.topic.as_str()).collect();
        assert_eq!(topics, ["N/abc/keepalive", "N/abc/system/0/Serial"]);
        assert!(trap.is_alive(), "a filter named keepalive-options is live");
    }

    #[test]
    fn expiry_clears_all_but_serial() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = DbusMqtt::new("abc", Timers::scaled(1.0), false, start);
        bridge.on_connect(&gx, at(start, 0.0));
        bridge.on_request(&gx, at(start, 0.1), "keepalive", b"");
        run(&mut bridge, &gx, start, 0.25, 59.0);
        let out = run(&mut bridge, &gx, start, 59.25, 75.0);
        let cleared: Vec<&str> = out
            .iter()
            .filter(|p| p.payload.is_empty())
            .map(|p| p.topic.as_str())
            .collect();
        assert_eq!(cleared.len(), 4, "{cleared:?}");
        assert!(!cleared.contains(&"N/abc/system/0/Serial"));
        assert!(out.iter().all(|p| p.retain));
        assert!(!bridge.is_alive());
    }

    #[test]
    fn paced_queue_sends_fifty_per_run() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = DbusMqtt::new("abc", Timers::scaled(1.0), true, start);
        bridge.on_connect(&gx, at(start, 0.0));
        for i in 0..120 {
            bridge.enqueue(&format!("x/0/{i}"), Queued::Value(json!(i)));
        }
        let first = run(&mut bridge, &gx, start, 1.0, 1.0);
        assert_eq!(first.len(), 50);
        let second = run(&mut bridge, &gx, start, 2.0, 2.0);
        assert!(
            second.is_empty(),
            "a run within 1.5 s of the last one waits"
        );
        let third = run(&mut bridge, &gx, start, 3.0, 3.0);
        assert_eq!(third.len(), 50);
    }

    #[test]
    fn python_payload_iteration() {
        assert_eq!(
            python_iteration(b"[\"a/#\", 3, \"b\"]"),
            vec![Some("a/#".into()), None, Some("b".into())]
        );
        assert_eq!(python_iteration(b"{\"k\": 1}"), vec![Some("k".into())]);
        assert_eq!(
            python_iteration(b"\"ab\""),
            vec![Some("a".into()), Some("b".into())]
        );
        assert!(python_iteration(b"42").is_empty());
        assert!(python_iteration(b"not json").is_empty());
    }
}
