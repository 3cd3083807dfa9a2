//! From Venus OS messages to entity states: the model's entry point.
//!
//! `Normaliser::ingest` takes one parsed GX message, stores what the catalogue needs and
//! re-evaluates only the entities that depend on it. Structural events (a device appears
//! or leaves, the GX selects another battery monitor, a tank's fluid type arrives) are
//! rare and re-evaluate everything.

use std::collections::{HashMap, HashSet};

use super::capabilities;
use super::catalogue::CATALOGUE;
use super::enums::{slug_words, FLUID_TYPE, TEMPERATURE_TYPE};
use super::eval::{self, Context, Eval, Problem, State};
use super::gx_state::{is_alarm_path, Device, DeviceId, GxState, Stored};
use super::paths::{source_paths, PathId, PathTable};
use super::registry::{expand_key, Binding, EntityId, Registry};
use super::spec::{Derived, EntityDef, Family, Role, ServiceKind, Source, StateClass, Transform};
use crate::gx::payload::{GxValue, Payload};

/// Paths whose change can move a role or a device's entities to another device.
const STRUCTURAL_PATHS: &[(ServiceKind, &str)] = &[
    (ServiceKind::System, "ActiveBatteryService"),
    (ServiceKind::System, "VebusInstance"),
    (ServiceKind::Gps, "Fix"),
    (ServiceKind::Tank, "FluidType"),
    (ServiceKind::Temperature, "TemperatureType"),
    (ServiceKind::Battery, "CustomName"),
    (ServiceKind::Battery, "ProductName"),
    (ServiceKind::Tank, "CustomName"),
    (ServiceKind::Temperature, "CustomName"),
];

/// Changes caused by one ingested message.
#[derive(Debug, Default)]
pub struct Changes {
    /// Entities whose evaluation changed.
    pub entities: Vec<EntityId>,
    /// The set of entities in discovery, or a name, changed.
    pub discovery: bool,
    /// The capability list changed.
    pub capabilities: bool,
    pub problems: Vec<Problem>,
}

/// Names a counter's device: service and instance, plus the serial number when the device
/// publishes one, so a unit swapped in on the same port counts as another source.
fn counter_label(device: &Device) -> String {
    match device.text("Serial").map(str::trim).filter(|s| !s.is_empty()) {
        Some(serial) => format!("{}#{serial}", device.id.label()),
        None => device.id.label(),
    }
}

impl Changes {
    fn merge(&mut self, other: Changes) {
        self.entities.extend(other.entities);
        self.discovery |= other.discovery;
        self.capabilities |= other.capabilities;
        self.problems.extend(other.problems);
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty() && !self.discovery && !self.capabilities && self.problems.is_empty()
    }
}

pub struct Normaliser {
    pub gx: GxState,
    pub registry: Registry,
    /// Fixed entities by the (kind, path) they read.
    index: HashMap<(ServiceKind, PathId), Vec<EntityId>>,
    structural: HashSet<(ServiceKind, PathId)>,
    /// Per-device entities by device.
    bound: HashMap<DeviceId, Vec<EntityId>>,
    alarm_entities: Vec<EntityId>,
    /// Devices confirmed during the current snapshot (full publish), while one runs.
    snapshot: Option<HashSet<DeviceId>>,
    /// Slots for new devices are handed out only after a complete snapshot, so a device
    /// that already has a slot is never beaten to it by a newcomer.
    snapshot_done: bool,
    capabilities: Vec<&'static str>,
    /// Seconds a counter drop must last to count as a reset.
    counter_hold: f64,
    /// Unix time (s) of the last refresh of every available entity's last-seen time.
    last_seen_refresh: u64,
}

impl Normaliser {
    pub fn new(registry: Registry) -> Normaliser {
        let table = PathTable::get();
        let mut index: HashMap<(ServiceKind, PathId), Vec<EntityId>> = HashMap::new();
        let mut alarm_entities = Vec::new();

        for (id, entity) in registry.iter() {
            if entity.binding != Binding::Fixed {
                continue;
            }
            for (kind, path) in dependencies(entity.def) {
                if let Some(path_id) = table.id(kind, path) {
                    index.entry((kind, path_id)).or_default().push(id);
                }
            }
            if matches!(entity.def.source, Source::Derived(Derived::LowBattery | Derived::SystemAlarm)) {
                alarm_entities.push(id);
            }
        }

        let structural = STRUCTURAL_PATHS
            .iter()
            .filter_map(|(kind, path)| table.id(*kind, path).map(|id| (*kind, id)))
            .collect();

        let capabilities = registry.stored.capabilities.keys().filter_map(|c| capabilities::intern(c)).collect();
        let mut gx = GxState::default();
        gx.set_last_main_battery(registry.stored.main_battery.as_deref());

        Normaliser {
            gx,
            registry,
            index,
            structural,
            bound: HashMap::new(),
            alarm_entities,
            snapshot: None,
            snapshot_done: false,
            capabilities,
            counter_hold: 300.0,
            last_seen_refresh: 0,
        }
    }

    /// Handles one `N/<portal>/<service>/<instance>/<path>` message.
    pub fn ingest(&mut self, service: &str, instance: &str, path: &str, payload: Payload, now: u64) -> Changes {
        let Some(kind) = ServiceKind::from_topic(service) else {
            return Changes::default();
        };
        let id = DeviceId::new(kind, instance);
        // Devices of the first full publish are not news; one that comes later is.
        if !self.snapshot_done {
            return self.ingest_value(&id, path, payload, now);
        }
        let before = self.gx.device(&id).is_some_and(|d| d.present);
        let changes = self.ingest_value(&id, path, payload, now);
        if !before && self.gx.device(&id).is_some_and(|d| d.present) {
            tracing::info!(device = %id.label(), "device appeared on the GX");
        }
        changes
    }

    fn ingest_value(&mut self, id: &DeviceId, path: &str, payload: Payload, now: u64) -> Changes {
        let (kind, instance) = (id.kind, &*id.instance);
        // An entity whose value never changes is evaluated only when something
        // structural happens; keep its "last seen" current for `forget` anyway.
        if now >= self.last_seen_refresh + 3600 {
            self.last_seen_refresh = now;
            self.refresh_last_seen(now);
        }
        if let Some(confirmed) = &mut self.snapshot {
            if !confirmed.contains(id) {
                confirmed.insert(id.clone());
            }
        }

        let value = match payload {
            Payload::Gone => {
                return match self.gx.gone(id) {
                    Stored::DeviceGone => self.device_left(id, now),
                    _ => Changes::default(),
                };
            }
            Payload::NotJson | Payload::NoValue => {
                let new_device = self.gx.touch(id);
                let mut changes = match new_device {
                    Some(true) => self.restructure(now),
                    Some(false) => Changes::default(),
                    None => return too_many(id),
                };
                changes.problems.push(Problem {
                    key: format!("payload:{}:{path}", kind.as_str()),
                    message: format!(
                        "{}/{instance}/{path}: payload is not JSON with a \"value\" key; ignored",
                        kind.as_str()
                    ),
                });
                return changes;
            }
            Payload::Value(value) => value,
        };

        if is_alarm_path(path) {
            return self.ingest_alarm(id, path, &value, now);
        }

        let table = PathTable::get();
        let Some(path_id) = table.id(kind, path) else {
            return match self.gx.touch(id) {
                Some(true) => self.restructure(now),
                Some(false) => Changes::default(),
                None => too_many(id),
            };
        };

        let stored = self.gx.store(id, path_id, value);
        if kind == ServiceKind::System && path == "ActiveBatteryService" {
            self.remember_main_battery();
        }
        match stored {
            Stored::Value { new_device: true, .. } => self.restructure(now),
            Stored::Value { changed: true, .. }
                if self.structural.contains(&(kind, path_id)) || path == "CustomName" || path == "ProductName" =>
            {
                self.restructure(now)
            }
            Stored::Value { changed: true, .. } => self.dependents_changed(id, path_id, now),
            Stored::TooMany => too_many(id),
            _ => Changes::default(),
        }
    }

    fn ingest_alarm(&mut self, id: &DeviceId, path: &str, value: &GxValue, now: u64) -> Changes {
        let level = match value {
            GxValue::Null => 0,
            other => match other.as_i64() {
                Some(level) => level,
                None => {
                    return Changes {
                        problems: vec![Problem {
                            key: format!("alarm:{}:{path}", id.kind.as_str()),
                            message: format!("{}/{path}: alarm level {other} is not a number; ignored", id.label()),
                        }],
                        ..Changes::default()
                    }
                }
            },
        };
        let new_device = self.gx.device(id).is_none();
        match self.gx.store_alarm(id, path, level) {
            Stored::Alarm if new_device => self.restructure(now),
            Stored::Alarm => {
                let ids = self.alarm_entities.clone();
                self.evaluate(&ids, now)
            }
            Stored::TooMany => Changes {
                problems: vec![Problem {
                    key: format!("too_many_alarms:{}", id.label()),
                    message: format!(
                        "{} publishes more than {} distinct alarm paths; ignoring the extra ones",
                        id.label(),
                        super::gx_state::MAX_ALARMS_PER_DEVICE
                    ),
                }],
                ..Changes::default()
            },
            _ => Changes::default(),
        }
    }

    fn dependents_changed(&mut self, id: &DeviceId, path_id: PathId, now: u64) -> Changes {
        let mut ids: Vec<EntityId> = self.index.get(&(id.kind, path_id)).cloned().unwrap_or_default();
        if let Some(bound) = self.bound.get(id) {
            ids.extend(bound.iter().copied());
        }
        self.evaluate(&ids, now)
    }

    fn device_left(&mut self, id: &DeviceId, now: u64) -> Changes {
        tracing::info!(device = %id.label(), "device left the GX");
        self.restructure(now)
    }

    /// Starts a snapshot: the GX is about to republish everything it has.
    pub fn begin_snapshot(&mut self) {
        self.snapshot = Some(HashSet::new());
    }

    /// Ends a snapshot: devices that did not appear in it are gone (their zero-byte
    /// payloads may have been lost while the link was down), and devices waiting for a
    /// slot get one.
    pub fn end_snapshot(&mut self, now: u64) -> Changes {
        let mut changes = Changes::default();
        if let Some(confirmed) = self.snapshot.take() {
            let stale: Vec<DeviceId> = self
                .gx
                .present_devices()
                .map(|d| d.id.clone())
                .filter(|id| !confirmed.contains(id))
                .collect();
            for id in stale {
                tracing::info!(device = %id.label(), "device missing from the GX's full publish; treating it as gone");
                self.gx.gone(&id);
            }
        }
        self.snapshot_done = true;
        changes.merge(self.restructure(now));
        changes
    }

    /// Saves the battery monitor the GX names as main, when it changed.
    fn remember_main_battery(&mut self) {
        let current = self.gx.last_main_battery().map(str::to_string);
        if self.registry.stored.main_battery != current {
            self.registry.stored.main_battery = current;
            self.registry.mark_dirty();
        }
    }

    /// Forgets the GX's devices (a different GX was adopted).
    pub fn clear_gx(&mut self, now: u64) -> Changes {
        self.gx.clear();
        self.remember_main_battery();
        self.snapshot_done = false;
        self.restructure(now)
    }

    /// Rebinds per-device entities and re-evaluates every entity.
    fn restructure(&mut self, now: u64) -> Changes {
        let mut changes = self.classify();
        let all: Vec<EntityId> = self.registry.iter().map(|(id, _)| id).collect();
        changes.merge(self.evaluate(&all, now));

        let capabilities = capabilities::derive(&self.gx);
        let mut merged: Vec<&'static str> = self.capabilities.clone();
        for capability in &capabilities {
            self.registry.capability_seen(capability, now);
            if !merged.contains(capability) {
                merged.push(capability);
            }
        }
        merged.sort_unstable();
        if merged != self.capabilities {
            self.capabilities = merged;
            changes.capabilities = true;
        }
        changes
    }

    /// True once a full publish of the GX has completed and no other is under way: the
    /// registry then has every entity the GX supports.
    pub fn snapshot_complete(&self) -> bool {
        self.snapshot_done && self.snapshot.is_none()
    }

    /// Capabilities seen on this GX, now or before a restart.
    pub fn capabilities(&self) -> &[&'static str] {
        &self.capabilities
    }

    /// Evaluates entities and records which changed.
    fn evaluate(&mut self, ids: &[EntityId], now: u64) -> Changes {
        let mut changes = Changes::default();
        let mut seen = HashSet::new();
        for &id in ids {
            if !seen.insert(id) {
                continue;
            }
            let entity = self.registry.get(id);
            let device_id = match &entity.binding {
                Binding::Device(device) => Some(device.clone()),
                Binding::Unbound => {
                    if entity.eval != Eval::Unavailable {
                        self.registry.get_mut(id).eval = Eval::Unavailable;
                        changes.entities.push(id);
                    }
                    continue;
                }
                Binding::Fixed => None,
            };
            let counter = entity.def.state_class == Some(StateClass::TotalIncreasing);
            // Both wait for the end of a full publish. A counter read in the middle of one may
            // lack a charger or take the wrong battery monitor. A per-phase sum may have L1
            // but not yet L2 and L3, a dip of two thirds on a three-phase system.
            let phase_sum = matches!(entity.def.source, Source::SystemPhases(_) | Source::RolePhases(..));
            if (counter || phase_sum) && self.snapshot.is_some() {
                continue;
            }
            let device = device_id.as_ref().and_then(|d| self.gx.device(d));
            let ctx = Context { device, ever_valued: entity.ever_valued, key: &entity.key };
            let result = eval::evaluate(entity.def, &self.gx, &ctx, &mut changes.problems);

            let result = match result {
                Eval::Hold => continue,
                Eval::Value(State::Number(raw)) if counter => {
                    let source = self.counter_source(entity.def, device_id.as_ref());
                    let daily = entity.def.key.ends_with("_today");
                    let hold = self.counter_hold;
                    let entity = self.registry.get_mut(id);
                    let guard = entity.counter.get_or_insert_with(Default::default);
                    let before = guard.clone();
                    let adjusted = guard.adjust(raw, &source, daily, now as f64, hold);
                    if guard.structure_differs(&before) {
                        self.registry.mark_dirty();
                    } else if *guard != before {
                        self.registry.mark_counter_moved();
                    }
                    match adjusted {
                        Some(value) => Eval::Value(State::Number(value)),
                        None => continue,
                    }
                }
                other => other,
            };
            if matches!(result, Eval::Value(_)) && self.registry.mark_valued(id, now) {
                changes.discovery = true;
            }
            let entity = self.registry.get_mut(id);
            if entity.eval != result {
                entity.eval = result;
                changes.entities.push(id);
            }
        }
        changes
    }

    /// Names what a counter's raw value comes from, so the guard notices when the device
    /// (or the set of summed devices) changes.
    fn counter_source(&self, def: &EntityDef, device: Option<&DeviceId>) -> String {
        match def.source {
            Source::SumAll(kinds, path) => eval::sum_parts(&self.gx, kinds, path)
                .map(counter_label)
                .collect::<Vec<_>>()
                .join("+"),
            Source::Role(role, _) | Source::RoleFirst(role, _) | Source::RolePhases(role, _) => {
                self.gx.role(role).map(counter_label).unwrap_or_default()
            }
            Source::Device(_) => device.and_then(|d| self.gx.device(d)).map(counter_label).unwrap_or_default(),
            _ => "system".to_string(),
        }
    }

    /// Marks every entity that currently has a value (or a known null) as seen at `now`.
    fn refresh_last_seen(&mut self, now: u64) {
        let valued: Vec<EntityId> = self
            .registry
            .iter()
            .filter(|(_, e)| e.ever_valued && matches!(e.eval, Eval::Value(_)))
            .map(|(id, _)| id)
            .collect();
        for id in valued {
            self.registry.mark_valued(id, now);
        }
    }

    /// Sets how long a counter drop must last to count as a reset (5 minutes, divided by
    /// the time scale in accelerated tests).
    pub fn set_time_scale(&mut self, throttle_scale: f64) {
        self.counter_hold = 300.0 * throttle_scale;
    }

    /// Re-evaluates counters whose drop waits for its hold: a GX sends nothing while a
    /// value stays the same, such as the daily yield after midnight.
    pub fn tick(&mut self, now: u64) -> Changes {
        let waiting: Vec<EntityId> = self
            .registry
            .iter()
            .filter(|(_, e)| e.counter.as_ref().is_some_and(|c| c.waiting()))
            .map(|(id, _)| id)
            .collect();
        if waiting.is_empty() {
            return Changes::default();
        }
        self.evaluate(&waiting, now)
    }

    /// Decides which device each per-device entity belongs to.
    fn classify(&mut self) -> Changes {
        let mut changes = Changes::default();
        let desired = self.desired_bindings(&mut changes.problems);
        let desired_keys: HashSet<&str> = desired.iter().map(|b| b.key.as_str()).collect();

        let stale: Vec<EntityId> = self
            .registry
            .iter()
            .filter(|(_, e)| matches!(e.binding, Binding::Device(_)) && !desired_keys.contains(e.key.as_str()))
            .map(|(id, _)| id)
            .collect();
        for id in stale {
            self.registry.get_mut(id).binding = Binding::Unbound;
        }

        self.bound.clear();
        for binding in desired {
            let before = self.registry.by_key(&binding.key).map(|id| self.registry.get(id).name.clone());
            let id = self.registry.bind(&binding.key, binding.row, &binding.name, &binding.device);
            if before.as_deref() != Some(binding.name.as_str()) && self.registry.get(id).in_discovery() {
                changes.discovery = true;
            }
            self.bound.entry(binding.device).or_default().push(id);
        }
        changes
    }

    fn desired_bindings(&mut self, problems: &mut Vec<Problem>) -> Vec<DesiredBinding> {
        let mut groups: Vec<(String, String, Family, DeviceId, String)> = Vec::new();

        let main_battery = self.gx.role(Role::MainBattery).map(|d| d.id.clone());
        for device in self.gx.of_kind(ServiceKind::Battery) {
            if Some(&device.id) != main_battery.as_ref() {
                let name = device.display_name().map(clean_name).unwrap_or_default();
                groups.push(("battery".into(), String::new(), Family::ExtraBattery, device.id.clone(), name));
            }
        }
        let snapshot_done = self.snapshot_done;
        for device in self.gx.of_kind(ServiceKind::Tank) {
            let Some(code) = device.value("FluidType").and_then(GxValue::as_i64) else {
                if snapshot_done {
                    problems.push(untyped(device, "FluidType"));
                }
                continue;
            };
            // NMEA 2000 senders and third-party drivers may report codes Venus OS does
            // not list; such a tank is kept, as `tank_other`.
            let fluid = FLUID_TYPE.lookup(code).unwrap_or_else(|| {
                problems.push(unknown_type(device, "fluid type", code, "tank_other"));
                "other"
            });
            let name = device.text("CustomName").map(clean_name).unwrap_or_default();
            groups.push((format!("tank:{fluid}"), fluid.to_string(), Family::Tank, device.id.clone(), name));
        }
        for device in self.gx.of_kind(ServiceKind::Temperature) {
            let Some(code) = device.value("TemperatureType").and_then(GxValue::as_i64) else {
                if snapshot_done {
                    problems.push(untyped(device, "TemperatureType"));
                }
                continue;
            };
            let kind = TEMPERATURE_TYPE.lookup(code).unwrap_or_else(|| {
                problems.push(unknown_type(device, "temperature type", code, "temperature_generic"));
                "generic"
            });
            let name = device.text("CustomName").map(clean_name).unwrap_or_default();
            groups.push((format!("temperature:{kind}"), kind.to_string(), Family::Temperature, device.id.clone(), name));
        }

        // A slot is taken while its device is in the same group now; a device that left,
        // or moved to another group (a tank whose fluid type changed, a battery monitor
        // that became the main one), frees it for a newcomer.
        let in_group: HashMap<String, String> =
            groups.iter().map(|(group, _, _, device, _)| (device.label(), group.clone())).collect();
        // Two sensors of one group with the same custom name get their slot number after
        // it, so Home Assistant does not show two entities of one name.
        let mut same_name: HashMap<(String, String), usize> = HashMap::new();
        for (group, _, _, _, name) in &groups {
            if !name.is_empty() {
                *same_name.entry((group.clone(), name.to_lowercase())).or_default() += 1;
            }
        }
        let mut desired = Vec::new();
        for (group, slug, family, device, custom_name) in groups {
            let is_present = |identity: &str| in_group.get(identity) == Some(&group);
            let identity = device.label();
            let known = self
                .registry
                .stored
                .slots
                .get(&group)
                .is_some_and(|entries| entries.iter().any(|e| e.identity == identity));
            if !known && !self.snapshot_done {
                continue;
            }
            let first = if family == Family::ExtraBattery { 2 } else { 1 };
            let slot = self.registry.slot(&group, &identity, &custom_name, first, &is_present, true);
            let shared = same_name.get(&(group.clone(), custom_name.to_lowercase())).is_some_and(|n| *n > 1);
            let device_name = if shared && !custom_name.is_empty() {
                format!("{custom_name} {slot}")
            } else {
                device_name(family, &slug, slot, &custom_name)
            };

            for row in CATALOGUE.iter().filter(|r| r.family == Some(family)) {
                desired.push(DesiredBinding {
                    key: expand_key(row, &slug, slot),
                    row,
                    name: entity_name(row.name, &device_name),
                    device: device.clone(),
                });
            }
        }
        desired
    }
}

/// Returns a custom name fit for an entity name: control characters (a newline typed
/// into the GX's name field) become spaces, zero-width characters go, runs of spaces
/// become one, and the ends are trimmed.
fn clean_name(name: &str) -> String {
    let spaced: String = name
        .chars()
        .filter(|c| !matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}'))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reports a tank or temperature sensor that has no entities because it never
/// published its type.
fn untyped(device: &Device, path: &str) -> Problem {
    Problem {
        key: format!("untyped:{}", device.id.label()),
        message: format!(
            "{} publishes no {path}, so it has no entities yet; set its type on the GX",
            device.id.label()
        ),
    }
}

/// Reports a type code outside Venus OS's list and the entities used instead.
fn unknown_type(device: &Device, what: &str, code: i64, used: &str) -> Problem {
    Problem {
        key: format!("unknown_type:{}", device.id.label()),
        message: format!("{}: unknown {what} code {code}; published as {used}", device.id.label()),
    }
}

/// Fills a per-device row's `{name} ...` template. A custom name that already ends with
/// the row's word ("Water tank temperature") does not get it twice.
fn entity_name(template: &str, device_name: &str) -> String {
    if let Some(word) = template.strip_prefix("{name} ") {
        let lower = device_name.to_lowercase();
        let last = lower.rsplit(' ').next().unwrap_or("").trim_end_matches('.');
        let same = last == word || (word == "temperature" && last == "temp");
        if same {
            return device_name.to_string();
        }
    }
    template.replace("{name}", device_name)
}

/// Reports a device dropped because its kind already has the most devices kept.
fn too_many(id: &DeviceId) -> Changes {
    Changes {
        problems: vec![Problem {
            key: format!("too_many_devices:{}", id.kind.as_str()),
            message: format!(
                "the GX reports more than {} {} devices; ignoring {} and any further ones",
                super::gx_state::MAX_DEVICES_PER_KIND,
                id.kind.as_str(),
                id.label()
            ),
        }],
        ..Changes::default()
    }
}

struct DesiredBinding {
    key: String,
    row: &'static EntityDef,
    name: String,
    device: DeviceId,
}

/// Returns the `{name}` of a per-device entity: the device's custom name, else a generic one.
fn device_name(family: Family, slug: &str, slot: u32, custom: &str) -> String {
    if !custom.is_empty() {
        return custom.to_string();
    }
    let number = if slot > 1 { format!(" {slot}") } else { String::new() };
    match family {
        Family::ExtraBattery => format!("Battery {slot}"),
        Family::Tank => format!("{} tank{number}", slug_words(slug)),
        Family::Temperature => format!("{}{number}", slug_words(slug)),
    }
}

/// Lists the (kind, path) pairs whose change re-evaluates a fixed entity.
fn dependencies(def: &EntityDef) -> Vec<(ServiceKind, &'static str)> {
    let mut deps = source_paths(&def.source);
    if def.transform == Transform::TimeToGo {
        deps.push((ServiceKind::System, "Dc/Battery/State"));
    }
    match def.source {
        Source::Derived(Derived::GeneratorRunning) => {
            deps.push((ServiceKind::Generator, "State"));
            deps.push((ServiceKind::System, "Ac/Genset/L1/Power"));
            deps.push((ServiceKind::System, "Ac/Genset/L2/Power"));
            deps.push((ServiceKind::System, "Ac/Genset/L3/Power"));
        }
        Source::Derived(Derived::GpsPosition) => {
            for path in ["Position/Latitude", "Position/Longitude", "Fix", "Altitude", "Course", "Speed", "NrOfSatellites"] {
                deps.push((ServiceKind::Gps, path));
            }
        }
        _ => {}
    }
    deps
}

#[cfg(test)]
mod tests {
    use super::{clean_name, entity_name, Normaliser};
    use crate::gx::payload::{GxValue, Payload};
    use crate::model::registry::Registry;
    use crate::model::spec::Role;

    #[test]
    fn main_battery_restored_after_restart() {
        // Before the restart the GX named battery 289 as main; after it, systemcalc is not
        // ready and ActiveBatteryService is null. Battery 275 comes first by number.
        let mut registry = Registry::open(None);
        registry.stored.main_battery = Some("289".into());
        let mut model = Normaliser::new(registry);
        for instance in ["275", "289"] {
            model.ingest("battery", instance, "Soc", Payload::Value(GxValue::Number(80.0)), 0);
        }
        model.ingest("system", "0", "ActiveBatteryService", Payload::Value(GxValue::Null), 0);
        assert_eq!(&*model.gx.role(Role::MainBattery).unwrap().id.instance, "289");

        // A named monitor is remembered for the next restart.
        let text = GxValue::Text("com.victronenergy.battery/275".into());
        model.ingest("system", "0", "ActiveBatteryService", Payload::Value(text), 0);
        assert_eq!(model.registry.stored.main_battery.as_deref(), Some("275"));
    }

    #[test]
    fn entity_name_repeated_word() {
        // venus-docker simulation `s` names a fridge-type sensor "Water tank temperature".
        assert_eq!(entity_name("{name} temperature", "Water tank temperature"), "Water tank temperature");
        assert_eq!(entity_name("{name} temperature", "Temperature"), "Temperature");
        assert_eq!(entity_name("{name} temperature", "Freezer"), "Freezer temperature");
        assert_eq!(entity_name("{name} humidity", "Water tank temperature"), "Water tank temperature humidity");
        // The boat capture names a sensor "Fridge Temp".
        assert_eq!(entity_name("{name} temperature", "Fridge Temp"), "Fridge Temp");
        assert_eq!(entity_name("{name} temperature", "Fridge temp."), "Fridge temp.");
        assert_eq!(clean_name("  Fresh\nwater\t bow "), "Fresh water bow");
        assert_eq!(clean_name("Sa\u{200b}lon"), "Salon");
        // Only a whole last word counts.
        assert_eq!(entity_name("{name} level", "Bilevel"), "Bilevel level");
    }
}
