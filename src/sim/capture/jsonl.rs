//! Signal K venus-plugin test logs: one JSON object per line with `message.topic`
//! (`N/<portal>/<type>/<instance>/<path>`), `message.value` (the parsed payload value) and
//! `message.senderName` (the D-Bus service). The plugin's D-Bus logs name the item by
//! `message.path`, `message.senderName` and `message.instanceName` instead; both forms load. Raw payload bytes, retain flags and the `min`
//! and `max` keys of settings are not kept in this format.
//!
//! The Signal K plugin read a tank's `/FluidType` and a temperature sensor's
//! `/TemperatureType` from the GX but logged them only as `fluidType`/`temperatureType`
//! fields beside other messages, never as topics of their own. A real GX publishes both
//! paths, and the bridge needs them to name tanks and sensors, so the loader turns those
//! fields back into the paths.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::Value;

use super::recorder::DEFAULT_PORTAL_ID;
use super::{service_type_of, Capture, CaptureKind, Service, Setup};

/// Parses an MQTT log. `portal_id` overrides the id found in the topics.
pub fn load(name: &str, bytes: &[u8], portal_id: Option<&str>) -> anyhow::Result<Capture> {
    let text = std::str::from_utf8(bytes).context("MQTT log is not UTF-8")?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut found_portal: Option<String> = None;
    let mut services: BTreeMap<(String, String), Service> = BTreeMap::new();

    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let record: Value = serde_json::from_str(line)
            .with_context(|| format!("line {}: invalid JSON", index + 1))?;
        let message = record.get("message").unwrap_or(&record);
        let Some(item) = mqtt_item(message).or_else(|| dbus_item(message)) else {
            continue;
        };
        if let Some(portal) = item.portal {
            found_portal.get_or_insert(portal);
        }
        let (service_type, instance, path, value) = (item.service_type, item.instance.as_str(), item.path, item.value);

        let service = services
            .entry((service_type.to_string(), instance.to_string()))
            .or_insert_with(|| {
                let sender = message
                    .get("senderName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let name = if service_type_of(sender) == Some(service_type) {
                    sender.to_string()
                } else {
                    format!("com.victronenergy.{service_type}.sim{instance}")
                };
                Service {
                    name,
                    service_type: service_type.to_string(),
                    instance: instance.to_string(),
                    values: BTreeMap::new(),
                }
            });
        service.values.insert(path.to_string(), value);

        for (field, type_path) in [("fluidType", "FluidType"), ("temperatureType", "TemperatureType")] {
            let expected_service = if type_path == "FluidType" { "tank" } else { "temperature" };
            if service_type != expected_service {
                continue;
            }
            if let Some(code) = message.get(field).filter(|v| v.is_number()) {
                service.values.entry(type_path.to_string()).or_insert_with(|| code.clone());
            }
        }
    }

    anyhow::ensure!(!services.is_empty(), "log has no N/<portal>/... topic and no com.victronenergy item");
    // A D-Bus log without the system service's /Serial gets the recordings' fictional id.
    let portal_id = portal_id
        .map(str::to_string)
        .or(found_portal)
        .unwrap_or_else(|| DEFAULT_PORTAL_ID.to_string());
    Ok(Capture {
        name: name.to_string(),
        description: String::new(),
        kind: CaptureKind::MqttLog,
        portal_id,
        services: services.into_values().collect(),
        events: Vec::new(),
        setup: Setup::default(),
    })
}

/// One D-Bus item named by a log line.
struct Item<'a> {
    /// The portal id, when the line shows it.
    portal: Option<String>,
    service_type: &'a str,
    instance: String,
    path: &'a str,
    value: Value,
}

/// Reads an MQTT-form line: `topic` is `N/<portal>/<type>/<instance>/<path>`. Shorter
/// topics (heartbeat, full_publish_completed) are broker messages, not D-Bus values.
fn mqtt_item(message: &Value) -> Option<Item<'_>> {
    let topic = message.get("topic")?.as_str()?;
    let parts: Vec<&str> = topic.splitn(5, '/').collect();
    if parts.len() < 5 || parts[0] != "N" {
        return None;
    }
    Some(Item {
        portal: Some(parts[1].to_string()),
        service_type: parts[2],
        instance: parts[3].to_string(),
        path: parts[4],
        value: message.get("value").cloned().unwrap_or(Value::Null),
    })
}

/// Reads a D-Bus-form line, as in the plugin's `dbus-test.log`: `path` (`/Dc/0/Voltage`),
/// `senderName` (the service), `instanceName` (its device instance) and the value, where a
/// D-Bus invalid shows as `[]` and becomes `null` as dbus-flashmq publishes it. Services
/// without an instance are skipped, except `system` and `settings`, which are instance 0
/// on MQTT. The system service's `/Serial` is the portal id.
fn dbus_item(message: &Value) -> Option<Item<'_>> {
    let path = message.get("path")?.as_str()?.strip_prefix('/')?;
    let service_type = service_type_of(message.get("senderName")?.as_str()?)?;
    let instance = match message.get("instanceName") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ if matches!(service_type, "system" | "settings") => "0".to_string(),
        _ => return None,
    };
    let value = match message.get("value") {
        Some(Value::Array(list)) if list.is_empty() => Value::Null,
        Some(value) => value.clone(),
        None => Value::Null,
    };
    let portal = (service_type == "system" && path == "Serial")
        .then(|| value.as_str().map(str::to_string))
        .flatten();
    Some(Item { portal, service_type, instance, path, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_topics_and_skips_broker_messages() {
        let log = br#"{"message":{"topic":"N/abc/system/0/Serial","value":"abc","senderName":"com.victronenergy.system"}}
{"message":{"topic":"N/abc/vecan/vecan0/Link/X","value":null,"senderName":"x"}}
{"message":{"topic":"N/abc/heartbeat","value":1}}
{"message":{"topic":"N/abc/battery/275/Dc/0/Voltage","value":13.7,"senderName":"com.victronenergy.battery.ttyUSB0"}}
"#;
        let capture = load("t", log, None).unwrap();
        assert_eq!(capture.portal_id, "abc");
        assert_eq!(capture.services.len(), 3);
        let battery = capture.service("battery", "275").unwrap();
        assert_eq!(battery.name, "com.victronenergy.battery.ttyUSB0");
        assert_eq!(battery.values["Dc/0/Voltage"], serde_json::json!(13.7));
        let vecan = capture.service("vecan", "vecan0").unwrap();
        let log = br#"{"message":{"topic":"N/abc/tank/20/Level","value":51,"fluidType":1}}"#;
        let tank = load("t", log, None).unwrap();
        assert_eq!(tank.service("tank", "20").unwrap().values["FluidType"], serde_json::json!(1));
        assert_eq!(vecan.values["Link/X"], Value::Null);
        assert_eq!(vecan.name, "com.victronenergy.vecan.simvecan0");
    }

    #[test]
    fn parses_dbus_form_lines() {
        // The shape of the plugin's test/dbus-test.log.
        let log = br#"{"message":{"path":"/Serial","senderName":"com.victronenergy.system","value":"c0847dba509e","instanceName":0}}
{"message":{"path":"/Dc/Battery/Soc","senderName":"com.victronenergy.system","value":58.2,"instanceName":0}}
{"message":{"path":"/Level","senderName":"com.victronenergy.tank.adc_builtin0_4","value":[],"instanceName":20,"fluidType":0}}
{"message":{"path":"/Dc/0/Voltage","senderName":"com.victronenergy.battery.ttyO0","value":12.1,"instanceName":256}}
{"message":{"path":"/Dc/0/Voltage","senderName":"com.victronenergy.battery.ttyO0","value":12.2,"instanceName":256}}
{"message":{"path":"/Enabled","senderName":"com.victronenergy.logger","value":1}}
"#;
        let capture = load("t", log, None).unwrap();
        assert_eq!(capture.portal_id, "c0847dba509e");
        assert_eq!(capture.service("system", "0").unwrap().values["Dc/Battery/Soc"], serde_json::json!(58.2));
        let tank = capture.service("tank", "20").unwrap();
        assert_eq!(tank.name, "com.victronenergy.tank.adc_builtin0_4");
        assert_eq!(tank.values["Level"], Value::Null);
        assert_eq!(tank.values["FluidType"], serde_json::json!(0));
        assert_eq!(capture.service("battery", "256").unwrap().values["Dc/0/Voltage"], serde_json::json!(12.2));
        assert_eq!(capture.services.len(), 3, "the logger has no instance and is skipped");

        let without_serial = br#"{"message":{"path":"/Soc","senderName":"com.victronenergy.battery.ttyO0","value":80,"instanceName":256}}"#;
        assert_eq!(load("t", without_serial, None).unwrap().portal_id, DEFAULT_PORTAL_ID);
        assert!(load("t", b"{\"message\":{\"path\":\"/X\"}}", None).is_err());
    }
}
