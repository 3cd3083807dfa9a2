//! Captures: what a simulated GX publishes, loaded from real recordings.
//!
//! Two kinds exist. MQTT logs ([`jsonl`]) were taken from a real GX's broker and already
//! contain the `system/0` aggregates. D-Bus recordings ([`recorder`]) hold one service per
//! file, so the simulator computes `system/0` itself ([`crate::sim::systemcalc`]).

pub mod catalogue;
pub mod jsonl;
pub mod recorder;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

pub use catalogue::{named_capture, NAMED_CAPTURES};

/// One D-Bus service of the simulated GX, e.g. `com.victronenergy.battery.ttyO0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Full D-Bus name.
    pub name: String,
    /// Third part of the D-Bus name (`battery`), the second topic level after the portal.
    pub service_type: String,
    /// `/DeviceInstance` as a string; dbus-flashmq falls back to `/Identifier` (e.g.
    /// `vecan0`), so it is not always numeric.
    pub instance: String,
    /// D-Bus path without the leading slash (`Dc/0/Voltage`) to value; `null` is invalid.
    pub values: BTreeMap<String, Value>,
}

/// A value change recorded at `at` after the start of the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub at: Duration,
    /// Index into [`Capture::services`].
    pub service: usize,
    pub path: String,
    pub value: Value,
}

/// Settings a venus-docker simulation writes before playback (its `setup` file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Setup {
    /// `/Settings/SystemSetup/AcInput1` and `AcInput2`: 0 not used, 1 grid, 2 generator,
    /// 3 shore.
    pub ac_input: [Option<i64>; 2],
    /// `/Settings/SystemSetup/HasDcSystem`.
    pub has_dc_system: Option<i64>,
    /// `/Settings/SystemSetup/BatteryService`: `default`, `nobattery` or `battery/256`.
    pub battery_service: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureKind {
    /// Taken from a GX's MQTT broker; contains `system/0`.
    MqttLog,
    /// D-Bus recordings; `system/0` is computed.
    Recorder,
}

/// Everything a simulated GX needs to start: devices, their values, and changes over time.
#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub description: String,
    pub kind: CaptureKind,
    pub portal_id: String,
    pub services: Vec<Service>,
    /// Sorted by time; empty for a static snapshot.
    pub events: Vec<ChangeEvent>,
    pub setup: Setup,
}

impl Capture {
    /// Loads a named capture (see [`NAMED_CAPTURES`]) or, when `name_or_path` is not a
    /// name, a file or folder: `*.log`/`*.jsonl` MQTT logs, one recorder `*.csv`, or a
    /// folder of recorder files with optional `setup` and `description`.
    pub fn load(name_or_path: &str) -> anyhow::Result<Capture> {
        if let Some(named) = named_capture(name_or_path) {
            return named.load();
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = NAMED_CAPTURES.iter().map(|c| c.name).collect();
            anyhow::bail!(
                "capture {name_or_path:?} is neither a named capture ({}) nor an existing path",
                names.join(", ")
            );
        }
        load_path(path).with_context(|| format!("failed to load capture {}", path.display()))
    }

    /// Returns the service with this type and instance.
    pub fn service(&self, service_type: &str, instance: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.service_type == service_type && s.instance == instance)
    }

    /// Returns whether the capture brings its own `system/0` (MQTT logs do).
    pub fn has_system(&self) -> bool {
        self.service("system", "0").is_some()
    }

    /// Number of topics a full publish sends (every path of every service).
    pub fn topic_count(&self) -> usize {
        self.services.iter().map(|s| s.values.len()).sum()
    }
}

fn load_path(path: &Path) -> anyhow::Result<Capture> {
    let name = path.display().to_string();
    if path.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            files.push((file_name, std::fs::read(entry.path())?));
        }
        files.sort();
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        return recorder::load_set(&name, &files, None);
    }

    let bytes = std::fs::read(path)?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension {
        "log" | "jsonl" | "json" => jsonl::load(&name, &bytes, None),
        "csv" => {
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("capture.csv");
            recorder::load_set(&name, &[(file_name, &bytes)], None)
        }
        _ => anyhow::bail!("unknown capture format (expected .log, .jsonl, .csv or a folder)"),
    }
}

/// Returns the instance segment a topic uses for a D-Bus service: `/DeviceInstance`, else
/// the text of `/Identifier`, else `0` (dbus-flashmq `get_instance_from_items`).
pub fn instance_of(values: &BTreeMap<String, Value>) -> String {
    match values.get("DeviceInstance") {
        Some(Value::Number(n)) => return n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => return s.clone(),
        _ => {}
    }
    match values.get("Identifier") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => "0".to_string(),
    }
}

/// `battery` from `com.victronenergy.battery.ttyO0`.
pub fn service_type_of(service_name: &str) -> Option<&str> {
    let mut parts = service_name.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("com"), Some("victronenergy"), Some(service_type)) if !service_type.is_empty() => {
            Some(service_type)
        }
        _ => None,
    }
}
