//! The device-based MQTT Discovery message and the topics it points at.
//!
//! One retained message on `<prefix>/device/roamcore_victron/config` describes the device
//! "RoamCore Victron System" and all its entities (Home Assistant 2024.11 and later fan it
//! out per component). Entity ids come from `default_entity_id` (`object_id` is ignored
//! since Home Assistant 2026.4); unique ids are fixed strings that depend on neither the
//! portal id nor D-Bus instance numbers, so a replaced GX keeps every entity.
//!
//! Availability of a GX entity needs all of: the bridge is running (retained, last will
//! `offline`), the GX link is live, and the entity's own capability is present.
//! Diagnostic entities depend on the bridge topic only, so they can say what is wrong
//! while the GX is away.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::registry::Entity;
use crate::model::spec::{Component, Derived, Presence, Source};

/// Root of every topic we own on Home Assistant's broker.
pub const BASE: &str = "roamcore/victron";
pub const DEVICE_ID: &str = "roamcore_victron";
pub const DEVICE_NAME: &str = "RoamCore Victron System";

pub fn bridge_topic() -> String {
    format!("{BASE}/bridge")
}

pub fn gx_topic() -> String {
    format!("{BASE}/gx")
}

pub fn state_topic(key: &str) -> String {
    format!("{BASE}/{key}/state")
}

pub fn availability_topic(key: &str) -> String {
    format!("{BASE}/{key}/availability")
}

pub fn attributes_topic(key: &str) -> String {
    format!("{BASE}/{key}/attributes")
}

pub fn config_topic(prefix: &str) -> String {
    format!("{prefix}/device/{DEVICE_ID}/config")
}

#[derive(Debug, Serialize)]
pub struct DeviceConfig<'a> {
    pub device: DeviceInfo,
    pub origin: Origin,
    pub availability: Vec<Availability>,
    pub availability_mode: &'static str,
    pub qos: u8,
    pub components: BTreeMap<String, ComponentConfig<'a>>,
}

#[derive(Debug, Serialize)]
pub struct DeviceInfo {
    pub identifiers: Vec<&'static str>,
    pub name: &'static str,
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub sw_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hw_version: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Origin {
    pub name: &'static str,
    pub sw_version: &'static str,
    pub support_url: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    pub topic: String,
}

/// One entity in the `components` map. `Removal` is the form that deletes it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ComponentConfig<'a> {
    Entity(Box<EntityConfig<'a>>),
    Removal { platform: &'static str },
}

#[derive(Debug, Serialize)]
pub struct EntityConfig<'a> {
    pub platform: &'static str,
    pub unique_id: String,
    pub default_entity_id: String,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_attributes_topic: Option<String>,
    pub availability: Vec<Availability>,
    pub availability_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_of_measurement: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_display_precision: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_category: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_type: Option<&'static str>,
}

/// True for entities whose state carries attributes on a separate topic.
pub fn has_attributes(entity: &Entity) -> bool {
    matches!(
        entity.def.source,
        Source::Derived(Derived::SystemAlarm | Derived::BridgeStatus | Derived::GpsPosition)
    )
}

/// Builds the discovery configuration of one entity.
pub fn entity_config(entity: &Entity) -> EntityConfig<'_> {
    let def = entity.def;
    let diagnostic = def.presence == Presence::Diagnostic;

    let mut availability = vec![Availability { topic: bridge_topic() }];
    if !diagnostic {
        availability.push(Availability { topic: gx_topic() });
        availability.push(Availability { topic: availability_topic(&entity.key) });
    }

    let tracker = def.component == Component::DeviceTracker;
    EntityConfig {
        platform: def.component.as_str(),
        unique_id: entity.unique_id(),
        default_entity_id: entity.entity_id(),
        name: &entity.name,
        // Home Assistant 2026.x deprecates `state_topic` for MQTT device trackers: the
        // position travels as attributes.
        state_topic: (!tracker).then(|| state_topic(&entity.key)),
        json_attributes_topic: has_attributes(entity).then(|| attributes_topic(&entity.key)),
        availability,
        availability_mode: "all",
        device_class: def.device_class,
        unit_of_measurement: def.unit,
        state_class: def.state_class.map(|s| s.as_str()),
        suggested_display_precision: def.precision,
        options: def.options(),
        entity_category: diagnostic.then_some("diagnostic"),
        icon: def.icon,
        source_type: tracker.then_some("gps"),
    }
}

/// Builds the whole device message from the entities in discovery, plus removal entries
/// for `removed` (key, component) pairs.
pub fn device_config<'a>(
    entities: impl Iterator<Item = &'a Entity>,
    removed: &[(String, String)],
    gx_model: Option<String>,
) -> DeviceConfig<'a> {
    let mut components = BTreeMap::new();
    for entity in entities {
        components.insert(entity.key.clone(), ComponentConfig::Entity(Box::new(entity_config(entity))));
    }
    for (key, component) in removed {
        let platform = match component.as_str() {
            "binary_sensor" => "binary_sensor",
            "device_tracker" => "device_tracker",
            _ => "sensor",
        };
        components.entry(key.clone()).or_insert(ComponentConfig::Removal { platform });
    }

    DeviceConfig {
        device: DeviceInfo {
            identifiers: vec!["roamcore_victron_system"],
            name: DEVICE_NAME,
            manufacturer: "RoamCore",
            model: "Victron bridge",
            sw_version: env!("CARGO_PKG_VERSION"),
            hw_version: gx_model,
        },
        origin: Origin {
            name: "roamcore-victron",
            sw_version: env!("CARGO_PKG_VERSION"),
            support_url: "https://github.com/roamcore/roamcore-victron",
        },
        availability: vec![Availability { topic: bridge_topic() }],
        availability_mode: "all",
        qos: 1,
        components,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::catalogue::CATALOGUE;
    use crate::model::eval::Eval;
    use crate::model::registry::{expand_key, Binding};
    use crate::model::spec::Family;

    /// Allowed units and state classes per sensor device class, from Home Assistant's
    /// `sensor/const.py` (`DEVICE_CLASS_UNITS`, `DEVICE_CLASS_STATE_CLASSES`).
    fn sensor_rules(device_class: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
        const MEASUREMENT: &[&str] = &["measurement"];
        let rules: (&[&str], &[&str]) = match device_class {
            "battery" | "humidity" => (&["%"], MEASUREMENT),
            "voltage" => (&["V", "mV", "µV", "kV", "MV"], MEASUREMENT),
            "current" => (&["A", "mA", "µA"], MEASUREMENT),
            "power" => (&["mW", "W", "kW", "MW", "GW", "TW"], MEASUREMENT),
            "energy" => (
                &["J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal"],
                &["total", "total_increasing"],
            ),
            "duration" => (&["d", "h", "min", "s", "ms", "µs"], &["measurement", "total", "total_increasing"]),
            "temperature" => (&["°C", "°F", "K"], MEASUREMENT),
            "volume_storage" => (&["L", "mL", "gal", "fl. oz.", "m³", "ft³", "CCF", "MCF"], MEASUREMENT),
            "frequency" => (&["mHz", "Hz", "kHz", "MHz", "GHz"], MEASUREMENT),
            "speed" => (&["ft/s", "in/d", "in/h", "in/s", "km/h", "kn", "m/s", "mph", "mm/d", "mm/s"], MEASUREMENT),
            _ => return None,
        };
        Some(rules)
    }

    const BINARY_CLASSES: &[&str] = &["battery", "plug", "power", "problem", "connectivity", "running"];

    fn sample_entities() -> Vec<Entity> {
        CATALOGUE
            .iter()
            .map(|def| {
                let key = match def.family {
                    Some(Family::Tank) => expand_key(def, "fresh_water", 2),
                    Some(Family::Temperature) => expand_key(def, "fridge", 1),
                    Some(Family::ExtraBattery) => expand_key(def, "", 2),
                    None => def.key.to_string(),
                };
                Entity {
                    key,
                    def,
                    name: def.name.replace("{name}", "Sample"),
                    binding: Binding::Fixed,
                    ever_valued: true,
                    eval: Eval::Unavailable,
                    last_seen: 0,
                    counter: None,
                }
            })
            .collect()
    }

    fn is_slug(text: &str) -> bool {
        !text.is_empty() && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }

    #[test]
    fn every_entity_config_follows_home_assistant_rules() {
        for entity in sample_entities() {
            let config = entity_config(&entity);
            let id = &entity.key;

            assert!(is_slug(&config.unique_id), "{id}: unique_id {}", config.unique_id);
            let (domain, object) = config.default_entity_id.split_once('.').expect("domain.object");
            assert_eq!(domain, config.platform, "{id}: default_entity_id domain");
            assert!(is_slug(object), "{id}: default_entity_id {}", config.default_entity_id);
            assert!(!config.name.contains('{'), "{id}: unexpanded name {}", config.name);

            match config.platform {
                "sensor" => match config.device_class {
                    Some("enum") => {
                        let options = config.options.as_ref().expect("enum needs options");
                        assert!(!options.is_empty(), "{id}: empty options");
                        assert!(config.unit_of_measurement.is_none(), "{id}: enum with unit");
                        assert!(config.state_class.is_none(), "{id}: enum with state class");
                    }
                    Some(class) => {
                        let (units, state_classes) = sensor_rules(class).unwrap_or_else(|| panic!("{id}: unknown class {class}"));
                        let unit = config.unit_of_measurement.unwrap_or_else(|| panic!("{id}: {class} needs a unit"));
                        assert!(units.contains(&unit), "{id}: unit {unit} not allowed for {class}");
                        if let Some(state_class) = config.state_class {
                            assert!(state_classes.contains(&state_class), "{id}: {state_class} not allowed for {class}");
                        }
                    }
                    None => assert!(config.options.is_none(), "{id}: options without enum class"),
                },
                "binary_sensor" => {
                    let class = config.device_class.expect("binary sensors here all have a class");
                    assert!(BINARY_CLASSES.contains(&class), "{id}: binary class {class}");
                    assert!(config.unit_of_measurement.is_none() && config.state_class.is_none(), "{id}");
                }
                "device_tracker" => {
                    assert!(config.state_topic.is_none(), "{id}: tracker state_topic is deprecated");
                    assert!(config.json_attributes_topic.is_some(), "{id}: tracker needs attributes");
                }
                other => panic!("{id}: unexpected platform {other}"),
            }

            let diagnostic = config.entity_category == Some("diagnostic");
            assert_eq!(config.availability.len(), if diagnostic { 1 } else { 3 }, "{id}: availability topics");
            assert_eq!(config.availability_mode, "all");
        }
    }

    #[test]
    fn removal_entry_is_platform_only() {
        let removed = vec![("tank_fuel_level".to_string(), "sensor".to_string())];
        let config = device_config(std::iter::empty(), &removed, None);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["components"]["tank_fuel_level"], serde_json::json!({"platform": "sensor"}));
        assert_eq!(json["device"]["name"], "RoamCore Victron System");
        assert!(json.get("object_id").is_none());
    }
}
