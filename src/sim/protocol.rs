//! The messages a GX publishes after connects, requests, value changes and timers: the part
//! common to the two Venus OS MQTT bridges, dbus-flashmq ([`flashmq`]) and the older
//! dbus-mqtt ([`dbus_mqtt`]). Both are state machines without I/O: they take the time
//! as input and return the messages to publish.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::dbus_mqtt::DbusMqtt;
use super::flashmq::FlashMq;
use super::gx::{Change, Gx};

/// One MQTT message to send (QoS 0, as both Venus bridges publish).
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// Venus OS MQTT bridge to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// dbus-flashmq, Venus OS 3.20 and later.
    Flashmq,
    /// dbus-mqtt with Mosquitto, Venus OS before 3.20.
    DbusMqtt,
}

/// The bridge timers, divided by the time scale for fast tests.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// dbus-flashmq: `heartbeat` interval (3 s).
    pub heartbeat: Duration,
    /// dbus-flashmq: alive time after the last keepalive (60 s).
    pub alive: Duration,
    /// dbus-flashmq: refill period of the 3 full-republish tokens (1 s).
    pub token_refill: Duration,
    /// dbus-mqtt: queue timer period (1 s).
    pub queue_tick: Duration,
    /// dbus-mqtt: minimum time between two queue runs (1.5 s).
    pub queue_gap: Duration,
    /// dbus-mqtt: expiry check period (10 s).
    pub expiry_check: Duration,
    /// dbus-mqtt: keepalive lifetime of a topic filter (60 s, its `-k` option).
    pub max_topic_age: Duration,
}

impl Timers {
    /// Returns the timers of Venus OS divided by `time_scale` (values below 1 count as 1).
    pub fn scaled(time_scale: f64) -> Timers {
        let factor = time_scale.max(1.0);
        let s = |secs: f64| Duration::from_secs_f64(secs / factor);
        Timers {
            heartbeat: s(3.0),
            alive: s(60.0),
            token_refill: s(1.0),
            queue_tick: s(1.0),
            queue_gap: s(1.5),
            expiry_check: s(10.0),
            max_topic_age: s(60.0),
        }
    }
}

/// The clock a state machine reads: a monotonic instant for timers and the Unix time that
/// `heartbeat` and `full_publish_completed` carry.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix_secs: i64,
}

impl Now {
    pub fn system() -> Now {
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Now {
            instant: Instant::now(),
            unix_secs,
        }
    }
}

/// Counters of what the bridge did, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub keepalives: u64,
    pub full_publishes: u64,
    /// Keepalives that asked for a full publish but found no token left.
    pub rate_limited: u64,
    pub reads: u64,
    pub expiries: u64,
}

/// The imitated bridge.
#[derive(Debug)]
pub enum Protocol {
    FlashMq(FlashMq),
    DbusMqtt(DbusMqtt),
}

impl Protocol {
    pub fn new(mode: Mode, portal_id: &str, timers: Timers, paced: bool, now: Instant) -> Protocol {
        match mode {
            Mode::Flashmq => Protocol::FlashMq(FlashMq::new(portal_id, timers, now)),
            Mode::DbusMqtt => Protocol::DbusMqtt(DbusMqtt::new(portal_id, timers, paced, now)),
        }
    }

    /// Forgets every keepalive and queued message, as a restarted GX would, and returns
    /// what the bridge publishes when it (re)connects to the broker.
    pub fn on_connect(&mut self, gx: &Gx, now: Now) -> Vec<Publish> {
        match self {
            Protocol::FlashMq(p) => p.on_connect(gx, now),
            Protocol::DbusMqtt(p) => p.on_connect(gx, now),
        }
    }

    /// Handles a message on `R/<portal>/<rest>`.
    pub fn on_request(&mut self, gx: &Gx, now: Now, rest: &str, payload: &[u8]) -> Vec<Publish> {
        match self {
            Protocol::FlashMq(p) => p.on_request(gx, now, rest, payload),
            Protocol::DbusMqtt(p) => p.on_request(gx, now, rest, payload),
        }
    }

    /// Publishes value changes (and zero-byte payloads for departed devices).
    pub fn on_changes(&mut self, gx: &Gx, now: Now, changes: &[Change]) -> Vec<Publish> {
        match self {
            Protocol::FlashMq(p) => p.on_changes(changes),
            Protocol::DbusMqtt(p) => p.on_changes(gx, now, changes),
        }
    }

    /// Runs the timers that are due.
    pub fn on_tick(&mut self, gx: &Gx, now: Now) -> Vec<Publish> {
        match self {
            Protocol::FlashMq(p) => p.on_tick(now),
            Protocol::DbusMqtt(p) => p.on_tick(gx, now),
        }
    }

    /// Returns the next instant at which `on_tick` has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self {
            Protocol::FlashMq(p) => p.next_deadline(),
            Protocol::DbusMqtt(p) => p.next_deadline(),
        }
    }

    /// Ends every keepalive now, as if the last one were 60 s old.
    pub fn expire_now(&mut self, gx: &Gx, now: Now) -> Vec<Publish> {
        match self {
            Protocol::FlashMq(p) => {
                p.expire_now();
                Vec::new()
            }
            Protocol::DbusMqtt(p) => p.expire_now(gx, now),
        }
    }

    /// Returns whether value changes are published now: dbus-flashmq is alive, or
    /// dbus-mqtt has at least one live keepalive filter.
    pub fn is_alive(&self, now: Instant) -> bool {
        match self {
            Protocol::FlashMq(p) => p.is_alive(now),
            Protocol::DbusMqtt(p) => p.is_alive(),
        }
    }

    pub fn counters(&self) -> Counters {
        match self {
            Protocol::FlashMq(p) => p.counters,
            Protocol::DbusMqtt(p) => p.counters,
        }
    }
}

/// dbus-flashmq's payload: compact JSON with sorted keys, e.g. `{"value":13.7}`.
pub fn compact_value(value: &Value) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    object.insert("value".into(), value.clone());
    serde_json::to_vec(&Value::Object(object)).expect("JSON values always serialise")
}

/// dbus-mqtt's payload: Python `json.dumps`, e.g. `{"value": 13.7}`, with `", "` and
/// `": "` separators and non-ASCII characters escaped.
///
/// NOTE: floats use Rust's shortest form, which differs from Python's `repr` for
/// exponents (`1e16` here, `1e+16` in Python).
pub fn python_value(value: &Value) -> Vec<u8> {
    let mut out = String::from("{\"value\": ");
    write_python(value, &mut out);
    out.push('}');
    out.into_bytes()
}

fn write_python(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_python(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_python_string(key, out);
                out.push_str(": ");
                write_python(item, out);
            }
            out.push('}');
        }
        Value::String(text) => write_python_string(text, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_python_string(text: &str, out: &mut String) {
    let escaped = Value::String(text.to_string()).to_string();
    for c in escaped.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_styles() {
        let value = json!([{"b": 1, "a": "é"}, 13.7, null]);
        assert_eq!(
            String::from_utf8(compact_value(&value)).unwrap(),
            r#"{"value":[{"a":"é","b":1},13.7,null]}"#
        );
        assert_eq!(
            String::from_utf8(python_value(&value)).unwrap(),
            r#"{"value": [{"a": "\u00e9", "b": 1}, 13.7, null]}"#
        );
    }
}
