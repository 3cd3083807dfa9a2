//! dbus-flashmq (Venus OS 3.20 and later), as its v25 source behaves:
//!
//! * at start it publishes `N/<portal>/keepalive` with the raw payload `1`, not retained,
//!   and `N/<portal>/system/0/Serial`, the only retained topic;
//! * nothing else until a keepalive arrives on `R/<portal>/keepalive` (or the legacy
//!   `R/<portal>/system/0/Serial`). A payload containing `suppress-republish` only extends
//!   the alive time. Any other payload republishes every item, ended by
//!   `full_publish_completed` with the Unix time and the requested echo token, at most 3
//!   times per second;
//! * while alive: value changes as they happen and `heartbeat` every 3 s. The alive time
//!   ends 60 s after the last keepalive and nothing is un-published then;
//! * reads (`R/<portal>/<type>/<instance>/<path>`) get a reply even when not alive;
//! * a device that leaves publishes each of its topics once with a zero-byte payload.

use std::time::Instant;

use serde_json::{json, Value};

use super::gx::{Change, Gx};
use super::protocol::{compact_value, Counters, Now, Publish, Timers};

/// Full republishes allowed per token refill (`KEEPALIVE_TOKENS` in dbus-flashmq).
const KEEPALIVE_TOKENS: i32 = 3;

#[derive(Debug)]
pub struct FlashMq {
    portal_id: String,
    timers: Timers,
    alive_until: Option<Instant>,
    next_heartbeat: Option<Instant>,
    tokens: i32,
    next_refill: Instant,
    pub counters: Counters,
}

impl FlashMq {
    pub fn new(portal_id: &str, timers: Timers, now: Instant) -> FlashMq {
        FlashMq {
            portal_id: portal_id.to_string(),
            timers,
            alive_until: None,
            next_heartbeat: None,
            tokens: KEEPALIVE_TOKENS,
            next_refill: now + timers.token_refill,
            counters: Counters::default(),
        }
    }

    pub fn on_connect(&mut self, gx: &Gx, now: Now) -> Vec<Publish> {
        self.alive_until = None;
        self.next_heartbeat = None;
        self.tokens = KEEPALIVE_TOKENS;
        self.next_refill = now.instant + self.timers.token_refill;

        let mut out = vec![Publish {
            topic: format!("N/{}/keepalive", self.portal_id),
            payload: b"1".to_vec(),
            retain: false,
        }];
        if let Some(serial) = gx.get("system/0/Serial") {
            out.push(self.item("system/0/Serial", serial));
        }
        out
    }

    pub fn on_request(&mut self, gx: &Gx, now: Now, rest: &str, payload: &[u8]) -> Vec<Publish> {
        let mut out = Vec::new();
        if rest == "keepalive" || rest == "system/0/Serial" {
            self.keepalive(gx, now, payload, &mut out);
        }
        if rest != "keepalive" {
            self.counters.reads += 1;
            self.read(gx, rest, &mut out);
        }
        out
    }

    fn keepalive(&mut self, gx: &Gx, now: Now, payload: &[u8], out: &mut Vec<Publish>) {
        self.counters.keepalives += 1;
        if now.instant >= self.next_refill {
            self.tokens = KEEPALIVE_TOKENS;
            self.next_refill = now.instant + self.timers.token_refill;
        }

        // dbus-flashmq looks for the text itself rather than parsing the JSON.
        let text = String::from_utf8_lossy(payload);
        let suppress = text.contains("suppress-republish");
        if !suppress {
            let has_token = self.tokens > 0;
            self.tokens -= 1;
            if has_token {
                self.publish_all(gx, now, echo_token(&text), out);
            } else {
                self.counters.rate_limited += 1;
            }
        }

        self.alive_until = Some(now.instant + self.timers.alive);
        if self.next_heartbeat.is_none() {
            out.push(self.heartbeat(now));
            self.next_heartbeat = Some(now.instant + self.timers.heartbeat);
        }
    }

    fn publish_all(&mut self, gx: &Gx, now: Now, echo: Option<String>, out: &mut Vec<Publish>) {
        self.counters.full_publishes += 1;
        for (suffix, value) in gx.values() {
            out.push(self.item(&suffix, &value));
        }
        let mut done = serde_json::Map::new();
        done.insert("value".into(), json!(now.unix_secs));
        if let Some(token) = echo {
            done.insert("full-publish-completed-echo".into(), json!(token));
        }
        out.push(Publish {
            topic: format!("N/{}/full_publish_completed", self.portal_id),
            payload: serde_json::to_vec(&Value::Object(done)).expect("JSON serialises"),
            retain: false,
        });
    }

    /// Publishes the item a read names, or every item below a sub-tree path.
    fn read(&self, gx: &Gx, rest: &str, out: &mut Vec<Publish>) {
        for (suffix, value) in gx.subtree(rest) {
            out.push(self.item(&suffix, &value));
        }
    }

    pub fn on_changes(&mut self, changes: &[Change]) -> Vec<Publish> {
        let alive = self.alive_until.is_some();
        let mut out = Vec::new();
        for change in changes {
            match &change.value {
                Some(value) if alive => out.push(self.item(&change.suffix, value)),
                Some(_) => {}
                // The retained Serial is never un-published.
                None if change.suffix == "system/0/Serial" => {}
                None => out.push(Publish {
                    topic: format!("N/{}/{}", self.portal_id, change.suffix),
                    payload: Vec::new(),
                    retain: false,
                }),
            }
        }
        out
    }

    pub fn on_tick(&mut self, now: Now) -> Vec<Publish> {
        let mut out = Vec::new();
        if self.alive_until.is_some_and(|until| now.instant >= until) {
            self.alive_until = None;
            self.counters.expiries += 1;
        }
        if let Some(due) = self.next_heartbeat {
            if now.instant >= due {
                if self.alive_until.is_some() {
                    out.push(self.heartbeat(now));
                    self.next_heartbeat = Some(due + self.timers.heartbeat);
                } else {
                    self.next_heartbeat = None;
                }
            }
        }
        out
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [self.alive_until, self.next_heartbeat]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn expire_now(&mut self) {
        if self.alive_until.take().is_some() {
            self.counters.expiries += 1;
        }
    }

    pub fn is_alive(&self, now: Instant) -> bool {
        self.alive_until.is_some_and(|until| now < until)
    }

    fn heartbeat(&self, now: Now) -> Publish {
        Publish {
            topic: format!("N/{}/heartbeat", self.portal_id),
            payload: compact_value(&json!(now.unix_secs)),
            retain: false,
        }
    }

    fn item(&self, suffix: &str, value: &Value) -> Publish {
        Publish {
            topic: format!("N/{}/{}", self.portal_id, suffix),
            payload: compact_value(value),
            retain: suffix == "system/0/Serial",
        }
    }
}

/// Extracts the token of `{"keepalive-options": [{"full-publish-completed-echo": "<token>"}]}`.
/// Like dbus-flashmq, an option object without a string token ends the search.
fn echo_token(payload: &str) -> Option<String> {
    let json: Value = serde_json::from_str(payload).ok()?;
    let options = json.get("keepalive-options")?.as_array()?;
    let mut token = None;
    for option in options.iter().filter(|o| o.is_object()) {
        match option
            .get("full-publish-completed-echo")
            .and_then(Value::as_str)
        {
            Some(text) => token = Some(text.to_string()),
            None => break,
        }
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::capture::{Capture, CaptureKind, Service, Setup};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn gx() -> Gx {
        let mut values = BTreeMap::new();
        values.insert("Soc".to_string(), json!(80.5));
        values.insert("Dc/0/Voltage".to_string(), json!(13.2));
        let battery = Service {
            name: "com.victronenergy.battery.ttyS5".into(),
            service_type: "battery".into(),
            instance: "275".into(),
            values,
        };
        let mut system_values = BTreeMap::new();
        system_values.insert("Serial".to_string(), json!("abc"));
        let system = Service {
            name: "com.victronenergy.system".into(),
            service_type: "system".into(),
            instance: "0".into(),
            values: system_values,
        };
        let capture = Capture {
            name: "t".into(),
            description: String::new(),
            kind: CaptureKind::MqttLog,
            portal_id: "abc".into(),
            services: vec![battery, system],
            events: Vec::new(),
            setup: Setup::default(),
        };
        Gx::from_capture(&capture, "abc")
    }

    fn at(start: Instant, secs: f64) -> Now {
        Now {
            instant: start + Duration::from_secs_f64(secs),
            unix_secs: 1_700_000_000,
        }
    }

    fn topics(out: &[Publish]) -> Vec<&str> {
        out.iter().map(|p| p.topic.as_str()).collect()
    }

    #[test]
    fn connect_publishes_keepalive_and_serial() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = FlashMq::new("abc", Timers::scaled(1.0), start);
        let out = bridge.on_connect(&gx, at(start, 0.0));
        assert_eq!(topics(&out), ["N/abc/keepalive", "N/abc/system/0/Serial"]);
        assert_eq!(out[0].payload, b"1");
        assert!(!out[0].retain);
        assert!(out[1].retain);
        assert!(!bridge.is_alive(start));
    }

    #[test]
    fn keepalive_republishes_with_echo() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = FlashMq::new("abc", Timers::scaled(1.0), start);
        let payload = br#"{"keepalive-options": [{"full-publish-completed-echo": "tok1"}]}"#;
        let out = bridge.on_request(&gx, at(start, 1.0), "keepalive", payload);
        assert_eq!(out.len(), 3 + 1 + 1, "3 items, completion, first heartbeat");
        let done = &out[3];
        assert_eq!(done.topic, "N/abc/full_publish_completed");
        assert_eq!(
            String::from_utf8(done.payload.clone()).unwrap(),
            r#"{"full-publish-completed-echo":"tok1","value":1700000000}"#
        );
        assert_eq!(out[4].topic, "N/abc/heartbeat");
        assert!(out[..3]
            .iter()
            .filter(|p| p.retain)
            .all(|p| p.topic.ends_with("/Serial")));
    }

    #[test]
    fn suppress_republish_only_extends() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = FlashMq::new("abc", Timers::scaled(1.0), start);
        let payload = br#"{ "keepalive-options" : ["suppress-republish"] }"#;
        let out = bridge.on_request(&gx, at(start, 0.0), "keepalive", payload);
        assert_eq!(topics(&out), ["N/abc/heartbeat"]);
        assert!(bridge.is_alive(start + Duration::from_secs(59)));
        assert!(!bridge.is_alive(start + Duration::from_secs(60)));
    }

    #[test]
    fn full_publishes_limited_to_three() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = FlashMq::new("abc", Timers::scaled(1.0), start);
        let mut completions = 0;
        for i in 0..5 {
            let out =
                bridge.on_request(&gx, at(start, 0.1 + f64::from(i) * 0.01), "keepalive", b"");
            completions += out
                .iter()
                .filter(|p| p.topic.ends_with("full_publish_completed"))
                .count();
        }
        assert_eq!(completions, 3);
        assert_eq!(bridge.counters.rate_limited, 2);
        let out = bridge.on_request(&gx, at(start, 1.5), "keepalive", b"");
        assert!(
            out.iter()
                .any(|p| p.topic.ends_with("full_publish_completed")),
            "refilled"
        );
    }

    #[test]
    fn heartbeat_stops_after_expiry() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = FlashMq::new("abc", Timers::scaled(1.0), start);
        bridge.on_request(&gx, at(start, 0.0), "keepalive", b"");
        let mut beats = 0;
        let mut t = 0.0;
        while t < 80.0 {
            t += 0.5;
            beats += bridge.on_tick(at(start, t)).len();
        }
        // Heartbeats at 3, 6, ..., 57 s: the one due at 60 s finds the session expired.
        assert_eq!(beats, 19);
        assert_eq!(bridge.next_deadline(), None);
        assert!(bridge
            .on_changes(&[Change {
                suffix: "battery/275/Soc".into(),
                value: Some(json!(1))
            }])
            .is_empty());
    }

    #[test]
    fn departed_device_zero_bytes_when_not_alive() {
        let start = Instant::now();
        let mut gx = gx();
        let mut bridge = FlashMq::new("abc", Timers::scaled(1.0), start);
        let changes = gx.remove_service("battery", "275");
        let out = bridge.on_changes(&changes);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|p| p.payload.is_empty() && !p.retain));
    }

    #[test]
    fn reads_answered_when_not_alive() {
        let start = Instant::now();
        let gx = gx();
        let mut bridge = FlashMq::new("abc", Timers::scaled(1.0), start);
        let out = bridge.on_request(&gx, at(start, 0.0), "battery/275/Soc", b"");
        assert_eq!(topics(&out), ["N/abc/battery/275/Soc"]);
        let out = bridge.on_request(&gx, at(start, 0.0), "battery/275/Dc", b"");
        assert_eq!(topics(&out), ["N/abc/battery/275/Dc/0/Voltage"]);
        assert!(!bridge.is_alive(start));
    }

    #[test]
    fn echo_token_forms() {
        assert_eq!(
            echo_token(r#"{"keepalive-options":[{"full-publish-completed-echo":"x"}]}"#),
            Some("x".into())
        );
        assert_eq!(
            echo_token(r#"{"keepalive-options":["suppress-republish"]}"#),
            None
        );
        assert_eq!(echo_token("not json"), None);
        assert_eq!(echo_token(r#"["battery/#"]"#), None);
    }
}
