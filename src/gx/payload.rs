//! Venus OS payloads.
//!
//! A value is a JSON object with a `value` key of any JSON type; dbus-flashmq adds `min`
//! and `max` on settings and `full-publish-completed-echo` on the completion marker, and
//! the old dbus-mqtt wrote `{"value": 1}` with a space where dbus-flashmq writes compact
//! JSON, so payloads are parsed, never string-matched. `{"value": null}` means the value
//! is invalid right now (a D-Bus empty array). A zero-length payload means the device left
//! D-Bus. `N/<portal>/keepalive` from dbus-flashmq is the bare, non-JSON `1`.

use serde_json::Value;

/// A GX value after parsing, reduced to what the model needs. Arrays and objects are kept
/// as JSON because a few system paths (`Batteries`) are lists.
#[derive(Debug, Clone, PartialEq)]
pub enum GxValue {
    Null,
    Number(f64),
    Text(Box<str>),
    Bool(bool),
    Json(Box<Value>),
}

impl GxValue {
    pub fn from_json(value: Value) -> GxValue {
        match value {
            Value::Null => GxValue::Null,
            Value::Bool(b) => GxValue::Bool(b),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => GxValue::Number(f),
                _ => GxValue::Json(Box::new(Value::Number(n))),
            },
            Value::String(s) => GxValue::Text(s.into_boxed_str()),
            other => GxValue::Json(Box::new(other)),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            GxValue::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            GxValue::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Some(*n as i64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GxValue::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, GxValue::Null)
    }

    /// Short description of the type, for log lines about unexpected values.
    pub fn kind(&self) -> &'static str {
        match self {
            GxValue::Null => "null",
            GxValue::Number(_) => "number",
            GxValue::Text(_) => "text",
            GxValue::Bool(_) => "boolean",
            GxValue::Json(v) if v.is_array() => "list",
            GxValue::Json(v) if v.is_object() => "object",
            GxValue::Json(_) => "out-of-range number",
        }
    }
}

impl std::fmt::Display for GxValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GxValue::Null => f.write_str("null"),
            GxValue::Number(n) => write!(f, "{n}"),
            GxValue::Text(s) => write!(f, "\"{}\"", s.chars().take(40).collect::<String>()),
            GxValue::Bool(b) => write!(f, "{b}"),
            GxValue::Json(v) => {
                let text = v.to_string();
                write!(f, "{}", text.chars().take(40).collect::<String>())
            }
        }
    }
}

/// A payload after parsing.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Zero bytes: the device left D-Bus.
    Gone,
    /// `{"value": x}`.
    Value(GxValue),
    /// Not JSON at all (invalid UTF-8, the bare `1` keepalive, `NaN`, truncated text).
    NotJson,
    /// JSON, but not an object with a `value` key.
    NoValue,
}

pub fn parse(bytes: &[u8]) -> Payload {
    if bytes.is_empty() {
        return Payload::Gone;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(mut map)) => match map.remove("value") {
            Some(value) => Payload::Value(GxValue::from_json(value)),
            None => Payload::NoValue,
        },
        Ok(_) => Payload::NoValue,
        Err(_) => Payload::NotJson,
    }
}

/// Reads the echo token of a `full_publish_completed` payload, if it carries one.
pub fn completion_echo(bytes: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(bytes).ok()? {
        Value::Object(map) => match map.get("full-publish-completed-echo")? {
            Value::String(token) => Some(token.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_forms() {
        assert_eq!(parse(br#"{"value":20.43000030517578}"#), Payload::Value(GxValue::Number(20.43000030517578)));
        assert_eq!(parse(br#"{"value": 1}"#), Payload::Value(GxValue::Number(1.0)));
        assert_eq!(parse(br#"{"max":1,"min":0,"value":1}"#), Payload::Value(GxValue::Number(1.0)));
        assert_eq!(parse(br#"{"value":null}"#), Payload::Value(GxValue::Null));
        assert_eq!(parse(br#"{"value":"House"}"#), Payload::Value(GxValue::Text("House".into())));
        assert_eq!(parse(br#"{"value":true}"#), Payload::Value(GxValue::Bool(true)));
        assert!(matches!(parse(br#"{"value":[]}"#), Payload::Value(GxValue::Json(_))));
    }

    #[test]
    fn odd_payloads() {
        assert_eq!(parse(b""), Payload::Gone);
        assert_eq!(parse(b"1"), Payload::NoValue);
        assert_eq!(parse(b"{\"value\": NaN}"), Payload::NotJson);
        assert_eq!(parse(b"\xff\xfe"), Payload::NotJson);
        assert_eq!(parse(b"[]"), Payload::NoValue);
        assert_eq!(parse(b"{}"), Payload::NoValue);
        assert_eq!(parse(b"{\"value\":"), Payload::NotJson);
        assert!(matches!(parse(b"{\"value\":1e999}"), Payload::NotJson | Payload::Value(GxValue::Json(_))));
    }

    #[test]
    fn completion_token() {
        let p = br#"{"full-publish-completed-echo":"abc","value":1752842421}"#;
        assert_eq!(completion_echo(p), Some("abc".into()));
        assert_eq!(completion_echo(br#"{"value":1752842421}"#), None);
        assert_eq!(completion_echo(b"junk"), None);
    }
}
