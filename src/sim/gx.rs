//! The simulated GX's D-Bus: its services and their current values, the truth that tests
//! compare the bridge's output with.
//!
//! Topic suffixes (`battery/275/Dc/0/Voltage`) are the keys: what follows `N/<portal>/`.
//! When the capture has no `system/0` (D-Bus recordings), `system/0` and a minimal
//! `settings/0` are derived here and `system/0` is recomputed after every change.

use std::collections::BTreeMap;

use serde_json::Value;

use super::capture::{Capture, Service, Setup};
use super::systemcalc;

/// One topic's new value after a change; `None` means the device left (zero-byte payload).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub suffix: String,
    pub value: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Gx {
    portal_id: String,
    /// Keyed by (service type, instance).
    services: BTreeMap<(String, String), Service>,
    /// Services taken away by a scenario, kept to bring them back.
    departed: BTreeMap<(String, String), Service>,
    computes_system: bool,
}

impl Gx {
    /// Builds the D-Bus of a GX from a capture. `portal_id` replaces the capture's id.
    pub fn from_capture(capture: &Capture, portal_id: &str) -> Gx {
        let mut services = BTreeMap::new();
        for service in &capture.services {
            let key = (service.service_type.clone(), service.instance.clone());
            services.insert(key, service.clone());
        }
        let computes_system = !capture.has_system();
        let mut gx = Gx {
            portal_id: portal_id.to_string(),
            services,
            departed: BTreeMap::new(),
            computes_system,
        };

        if computes_system {
            let settings = settings_service(&capture.setup);
            gx.services
                .entry(("settings".into(), "0".into()))
                .or_insert(settings);
            gx.services
                .insert(("system".into(), "0".into()), system_service());
            gx.recompute_system();
        }
        if let Some(system) = gx.services.get_mut(&("system".into(), "0".into())) {
            system
                .values
                .insert("Serial".into(), Value::String(portal_id.to_string()));
        }
        gx
    }

    pub fn portal_id(&self) -> &str {
        &self.portal_id
    }

    /// Returns whether the simulator derives `system/0` rather than taking it from the
    /// capture.
    pub fn computes_system(&self) -> bool {
        self.computes_system
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    pub fn service(&self, service_type: &str, instance: &str) -> Option<&Service> {
        self.services
            .get(&(service_type.to_string(), instance.to_string()))
    }

    /// Returns the current value of a topic suffix, or `None` when no such item exists.
    pub fn get(&self, suffix: &str) -> Option<&Value> {
        let (key, path) = split_suffix(suffix)?;
        self.services.get(&key)?.values.get(path)
    }

    /// Returns every item as suffix to value, in suffix order.
    pub fn values(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for service in self.services.values() {
            for (path, value) in &service.values {
                out.insert(suffix_of(service, path), value.clone());
            }
        }
        out
    }

    /// Number of items, i.e. messages in a full publish before `full_publish_completed`.
    pub fn item_count(&self) -> usize {
        self.services.values().map(|s| s.values.len()).sum()
    }

    /// Returns the item at `suffix`, or every item below it (a sub-tree read).
    pub fn subtree(&self, suffix: &str) -> Vec<(String, Value)> {
        let Some((key, path)) = split_suffix(suffix) else {
            return Vec::new();
        };
        let Some(service) = self.services.get(&key) else {
            return Vec::new();
        };
        let below = format!("{path}/");
        service
            .values
            .iter()
            .filter(|(p, _)| p.as_str() == path || p.starts_with(&below))
            .map(|(p, v)| (suffix_of(service, p), v.clone()))
            .collect()
    }

    /// Sets one item (adding it, or its service, when new) and returns every item that
    /// changed, including recomputed `system/0` items. Setting the same value is no change.
    pub fn set(&mut self, suffix: &str, value: Value) -> Vec<Change> {
        let Some(((service_type, instance), path)) = split_suffix(suffix) else {
            return Vec::new();
        };
        if service_type == "system" && path == "Serial" {
            return Vec::new();
        }
        let service = self
            .services
            .entry((service_type.clone(), instance.clone()))
            .or_insert_with(|| Service {
                name: format!("com.victronenergy.{service_type}.sim{instance}"),
                service_type: service_type.clone(),
                instance: instance.clone(),
                values: BTreeMap::new(),
            });
        if service.values.get(path) == Some(&value) {
            return Vec::new();
        }
        service.values.insert(path.to_string(), value.clone());

        let mut changes = vec![Change {
            suffix: suffix.to_string(),
            value: Some(value),
        }];
        if service_type != "system" {
            changes.extend(self.recompute_system());
        }
        changes
    }

    /// Applies several changes and recomputes `system/0` once.
    /// Sets a value from the recording or the random walk. A device off the D-Bus
    /// publishes nothing: its value is kept for its return. [`Gx::set`] instead puts a
    /// device there, as a test does to plug in a new one.
    pub fn set_recorded(&mut self, suffix: &str, value: Value) -> Vec<Change> {
        if let Some(((service_type, instance), path)) = split_suffix(suffix) {
            if let Some(departed) = self.departed.get_mut(&(service_type, instance)) {
                departed.values.insert(path.to_string(), value);
                return Vec::new();
            }
        }
        self.set(suffix, value)
    }

    pub fn set_many(&mut self, items: impl IntoIterator<Item = (String, Value)>) -> Vec<Change> {
        let computes = self.computes_system;
        self.computes_system = false;
        let mut changes = Vec::new();
        for (suffix, value) in items {
            changes.extend(self.set_recorded(&suffix, value));
        }
        self.computes_system = computes;
        changes.extend(self.recompute_system());
        changes
    }

    /// Takes a device off the D-Bus. Returns its topics (each published once with a
    /// zero-byte payload by the caller) and the recomputed `system/0` changes.
    pub fn remove_service(&mut self, service_type: &str, instance: &str) -> Vec<Change> {
        let key = (service_type.to_string(), instance.to_string());
        let Some(service) = self.services.remove(&key) else {
            return Vec::new();
        };
        let mut changes: Vec<Change> = service
            .values
            .keys()
            .map(|path| Change {
                suffix: suffix_of(&service, path),
                value: None,
            })
            .collect();
        self.departed.insert(key, service);
        changes.extend(self.recompute_system());
        changes
    }

    /// Brings back a device removed by [`Gx::remove_service`] with the values it had.
    pub fn restore_service(&mut self, service_type: &str, instance: &str) -> Vec<Change> {
        let key = (service_type.to_string(), instance.to_string());
        let Some(service) = self.departed.remove(&key) else {
            return Vec::new();
        };
        let mut changes: Vec<Change> = service
            .values
            .iter()
            .map(|(path, value)| Change {
                suffix: suffix_of(&service, path),
                value: Some(value.clone()),
            })
            .collect();
        self.services.insert(key, service);
        changes.extend(self.recompute_system());
        changes
    }

    /// Recomputes `system/0` when the simulator owns it; returns the items that changed.
    fn recompute_system(&mut self) -> Vec<Change> {
        if !self.computes_system {
            return Vec::new();
        }
        let computed = systemcalc::compute(&self.services, &self.portal_id);
        let key = ("system".to_string(), "0".to_string());
        let system = self.services.entry(key).or_insert_with(system_service);
        let mut changes = Vec::new();
        for (path, value) in computed {
            if system.values.get(&path) != Some(&value) {
                changes.push(Change {
                    suffix: format!("system/0/{path}"),
                    value: Some(value.clone()),
                });
                system.values.insert(path, value);
            }
        }
        changes
    }
}

/// `((type, instance), path)` from `battery/275/Dc/0/Voltage`.
pub fn split_suffix(suffix: &str) -> Option<((String, String), &str)> {
    let mut parts = suffix.splitn(3, '/');
    let service_type = parts.next().filter(|s| !s.is_empty())?;
    let instance = parts.next().filter(|s| !s.is_empty())?;
    let path = parts.next().filter(|s| !s.is_empty())?;
    Some(((service_type.to_string(), instance.to_string()), path))
}

fn suffix_of(service: &Service, path: &str) -> String {
    format!("{}/{}/{}", service.service_type, service.instance, path)
}

fn system_service() -> Service {
    Service {
        name: "com.victronenergy.system".into(),
        service_type: "system".into(),
        instance: "0".into(),
        values: BTreeMap::new(),
    }
}

/// Builds the `settings/0` service systemcalc reads from a venus-docker `setup` file. Absent settings get
/// AcInput1 = 1 (grid), AcInput2 = 0 (not used), HasDcSystem = 0 and BatteryService =
/// `default`, the values dbus-systemcalc-py's own tests start from.
fn settings_service(setup: &Setup) -> Service {
    let mut values = BTreeMap::new();
    let mut put = |path: &str, value: Value| {
        values.insert(format!("Settings/SystemSetup/{path}"), value);
    };
    put("AcInput1", Value::from(setup.ac_input[0].unwrap_or(1)));
    put("AcInput2", Value::from(setup.ac_input[1].unwrap_or(0)));
    put("HasDcSystem", Value::from(setup.has_dc_system.unwrap_or(0)));
    put(
        "BatteryService",
        Value::from(
            setup
                .battery_service
                .clone()
                .unwrap_or_else(|| "default".into()),
        ),
    );
    Service {
        name: "com.victronenergy.settings".into(),
        service_type: "settings".into(),
        instance: "0".into(),
        values,
    }
}
