//! Signal K venus-plugin test logs: one JSON object per line with `message.topic`
//! (`N/<portal>/<type>/<instance>/<path>`), `message.value` (the parsed payload value) and
//! `message.senderName` (the D-Bus service). Raw payload bytes, retain flags and the `min`
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

use super::{service_type_of, Capture, CaptureKind, Service, Setup};

/// Parses an MQTT log. `portal_id` overrides the id found in the topics.
pub fn load(name: &str, bytes: &[u8], portal_id: Option<&str>) -> anyhow::Result<Capture> {
    let text = std::str::from_utf8(bytes).context("MQTT log is not UTF-8")?;
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
        let Some(topic) = message.get("topic").and_then(Value::as_str) else {
            continue;
        };
        let value = message.get("value").cloned().unwrap_or(Value::Null);

        // N/<portal>/<type>/<instance>/<path>; shorter topics (heartbeat,
        // full_publish_completed) are broker messages, not D-Bus values.
        let parts: Vec<&str> = topic.splitn(5, '/').collect();
        if parts.len() < 5 || parts[0] != "N" {
            continue;
        }
        found_portal.get_or_insert_with(|| parts[1].to_string());
        let (service_type, instance, path) = (parts[2], parts[3], parts[4]);

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

    let portal_id = portal_id
        .map(str::to_string)
        .or(found_portal)
        .context("MQTT log has no N/<portal>/... topic")?;
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
}
