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
