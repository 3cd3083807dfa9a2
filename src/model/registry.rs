//! The entities that exist right now, and what of them survives a restart.
//!
//! Fixed catalogue rows become one entity each. Per-device rows become one entity per
//! device, numbered by a slot that is assigned when the device is first seen and stored in
//! `entities.json`, so a second fresh-water tank is `tank_fresh_water_2_level` for good.
//! An entity seen once keeps its discovery config across restarts (unavailable until the
//! GX is back) until `forget` removes it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::catalogue::CATALOGUE;
use super::counter::CounterGuard;
use super::eval::{Eval, State};
use super::gx_state::DeviceId;
use super::spec::{EntityDef, Family, Presence};

/// Index into the registry's entity list; stable for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(pub usize);

/// Target of a per-device entity: a catalogue row, a device, or nothing yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// A fixed catalogue row.
    Fixed,
    /// A device of the current GX.
    Device(DeviceId),
    /// Restored from the data directory; its device has not appeared in this session.
    Unbound,
}

#[derive(Debug, Clone)]
pub struct Entity {
    pub key: String,
    pub def: &'static EntityDef,
    pub name: String,
    pub binding: Binding,
    /// The source has had a value at some time (this session or before a restart).
    pub ever_valued: bool,
    /// Last evaluation, as the normaliser saw it.
    pub eval: Eval,
    /// Unix time (s) of the last value.
    pub last_seen: u64,
    /// Continuity of an energy counter (`total_increasing` entities only).
    pub counter: Option<CounterGuard>,
}

impl Entity {
    /// True when the entity belongs in the discovery message.
    pub fn in_discovery(&self) -> bool {
        match self.def.presence {
            Presence::Always | Presence::Diagnostic => true,
            Presence::WhenSeen => self.ever_valued,
        }
    }

    /// Returns true when the entity's capability is present (it is not unavailable on its own account).
    pub fn available(&self) -> bool {
        match self.def.presence {
            Presence::Diagnostic => true,
            _ => !matches!(self.eval, Eval::Unavailable),
        }
    }

    pub fn state(&self) -> Option<&State> {
        match &self.eval {
            Eval::Value(state) => Some(state),
            _ => None,
        }
    }

    pub fn entity_id(&self) -> String {
        format!("{}.vt_{}", self.def.component.as_str(), self.key)
    }

    pub fn unique_id(&self) -> String {
        format!("roamcore_victron_{}", self.key)
    }
}

/// One device's slot within its group (`tank:fresh_water`, `battery`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotEntry {
    pub identity: String,
    pub slot: u32,
    /// The device's custom name when it last had the slot, empty without one. A new
    /// device with the same name takes this slot before any other free one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredEntity {
    /// Catalogue row key (with placeholders for per-device rows).
    pub row: String,
    pub name: String,
    pub ever_valued: bool,
    pub last_seen: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<CounterGuard>,
}

/// Contents of `entities.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredEntities {
    pub version: u32,
    #[serde(default)]
    pub entities: BTreeMap<String, StoredEntity>,
    #[serde(default)]
    pub slots: BTreeMap<String, Vec<SlotEntry>>,
    /// Capability name -> unix time last seen.
    #[serde(default)]
    pub capabilities: BTreeMap<String, u64>,
    /// Entities forgotten but whose removal has not been published yet:
    /// key -> component.
    #[serde(default)]
    pub removed: BTreeMap<String, String>,
    /// Counter guards of forgotten entities, by entity key. A counter the GX still has
    /// comes back under the same key and continues from its last published value instead
    /// of stepping down to the raw reading.
    /// NOTE: nothing removes the guard of a key that never returns (one small entry each).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, CounterGuard>,
    /// Instance of the battery monitor the GX last named as its main one, kept so that a
    /// restart while `ActiveBatteryService` is null moves no battery slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_battery: Option<String>,
    /// The GX's model name ("Cerbo GX"), shown before the GX is back after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gx_model: Option<String>,
}

pub const STORE_FILE: &str = "entities.json";

pub struct Registry {
    entities: Vec<Entity>,
    by_key: HashMap<String, EntityId>,
    pub stored: StoredEntities,
    path: Option<PathBuf>,
    dirty: bool,
    /// Only counters' latest readings changed: worth a save, but not at once.
    counters_moved: bool,
    save_failing: bool,
}

impl Registry {
    /// Builds the registry from the catalogue and, when given, the data directory.
    pub fn open(data_dir: Option<&Path>) -> Registry {
        let path = data_dir.map(|d| d.join(STORE_FILE));
        let stored: StoredEntities = path
            .as_deref()
            .and_then(|p| match crate::store::read_json(p) {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "cannot read stored entities; starting without them");
                    None
                }
            })
            .unwrap_or_default();

        let mut registry = Registry {
            entities: Vec::new(),
            by_key: HashMap::new(),
            stored,
            path,
            dirty: false,
            counters_moved: false,
            save_failing: false,
        };

        for def in CATALOGUE.iter().filter(|d| d.family.is_none()) {
            let ever = registry.stored.entities.get(def.key).map(|s| s.ever_valued).unwrap_or(false);
            let last_seen = registry.stored.entities.get(def.key).map(|s| s.last_seen).unwrap_or(0);
            registry.push(Entity {
                key: def.key.to_string(),
                def,
                name: def.name.to_string(),
                binding: Binding::Fixed,
                ever_valued: ever,
                eval: Eval::Unavailable,
                last_seen,
                counter: registry.stored_counter(def.key),
            });
        }

        let restored: Vec<(String, StoredEntity)> = registry
            .stored
            .entities
            .iter()
            .filter(|(key, _)| !registry.by_key.contains_key(*key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, stored) in restored {
            let Some(def) = CATALOGUE.iter().find(|d| d.family.is_some() && d.key == stored.row) else {
                tracing::warn!(entity = %key, row = %stored.row, "stored entity has no catalogue row any more; dropping it");
                registry.stored.entities.remove(&key);
                registry.dirty = true;
                continue;
            };
            registry.push(Entity {
                key,
                def,
                name: stored.name,
                binding: Binding::Unbound,
                ever_valued: stored.ever_valued,
                eval: Eval::Unavailable,
                last_seen: stored.last_seen,
                counter: stored.counter.clone().map(CounterGuard::restored),
            });
        }
        registry
    }

    /// Returns the stored counter guard of `key`, from its entity or, once forgotten, from
    /// the guards kept for forgotten entities.
    fn stored_counter(&self, key: &str) -> Option<CounterGuard> {
        let counter = match self.stored.entities.get(key).and_then(|s| s.counter.clone()) {
            Some(counter) => Some(counter),
            None => self.stored.counters.get(key).cloned(),
        };
        counter.map(CounterGuard::restored)
    }

    fn push(&mut self, entity: Entity) -> EntityId {
        let id = EntityId(self.entities.len());
        self.by_key.insert(entity.key.clone(), id);
        self.entities.push(entity);
        id
    }

    pub fn get(&self, id: EntityId) -> &Entity {
        &self.entities[id.0]
    }

    pub fn get_mut(&mut self, id: EntityId) -> &mut Entity {
        &mut self.entities[id.0]
    }

    pub fn by_key(&self, key: &str) -> Option<EntityId> {
        self.by_key.get(key).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (EntityId, &Entity)> {
        self.entities.iter().enumerate().map(|(i, e)| (EntityId(i), e))
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Finds or creates the per-device entity `key` from `row`, bound to `device`.
    pub fn bind(&mut self, key: &str, row: &'static EntityDef, name: &str, device: &DeviceId) -> EntityId {
        if let Some(id) = self.by_key(key) {
            let entity = &mut self.entities[id.0];
            entity.binding = Binding::Device(device.clone());
            if entity.name != name {
                entity.name = name.to_string();
                self.dirty = true;
            }
            return id;
        }
        self.dirty = true;
        let counter = self.stored.counters.get(key).cloned().map(CounterGuard::restored);
        self.push(Entity {
            key: key.to_string(),
            def: row,
            name: name.to_string(),
            binding: Binding::Device(device.clone()),
            ever_valued: false,
            eval: Eval::Unavailable,
            last_seen: 0,
            counter,
        })
    }

    /// Unbinds every per-device entity bound to `device` (it left), keeping the entities.
    pub fn unbind_device(&mut self, device: &DeviceId) -> Vec<EntityId> {
        let mut ids = Vec::new();
        for (i, entity) in self.entities.iter_mut().enumerate() {
            if entity.binding == Binding::Device(device.clone()) {
                entity.binding = Binding::Unbound;
                ids.push(EntityId(i));
            }
        }
        ids
    }

    /// Records that an entity had a value at `now` (unix seconds). Returns true when this
    /// is the first value ever, which adds the entity to the discovery message.
    pub fn mark_valued(&mut self, id: EntityId, now: u64) -> bool {
        let entity = &mut self.entities[id.0];
        let first = !entity.ever_valued;
        entity.ever_valued = true;
        // Persist last_seen at day granularity only: enough for "forget after N days"
        // without rewriting the file on every value.
        if first || now.saturating_sub(entity.last_seen) >= 86_400 {
            entity.last_seen = now;
            self.dirty = true;
        }
        if first {
            self.stored.removed.remove(&entity.key);
        }
        first
    }

    /// Returns the slot of `identity` in `group`, assigning one if needed, and records the
    /// device's custom `name` (empty without one) with it. `reuse` allows taking a slot
    /// whose device is not present, so a replaced tank sender keeps the entity ids. Among
    /// those free slots, one last held by a device of the same name comes first (a new GX
    /// may number the same senders in another order), then the lowest. Slots start at
    /// `first`.
    pub fn slot(
        &mut self,
        group: &str,
        identity: &str,
        name: &str,
        first: u32,
        present: &dyn Fn(&str) -> bool,
        reuse: bool,
    ) -> u32 {
        let entries = self.stored.slots.entry(group.to_string()).or_default();
        if let Some(entry) = entries.iter_mut().find(|e| e.identity == identity) {
            if !name.is_empty() && entry.name != name {
                entry.name = name.to_string();
                self.dirty = true;
            }
            return entry.slot;
        }

        let reusable = if reuse {
            let mut free: Vec<&mut SlotEntry> =
                entries.iter_mut().filter(|e| !present(&e.identity)).collect();
            free.sort_by_key(|e| (name.is_empty() || e.name != name, e.slot));
            free.into_iter().next()
        } else {
            None
        };
        let slot = match reusable {
            Some(entry) => {
                tracing::info!(group, slot = entry.slot, old = %entry.identity, new = identity, name, "device takes over the slot of a device that is gone");
                entry.identity = identity.to_string();
                entry.name = name.to_string();
                entry.slot
            }
            None => {
                let slot = entries.iter().map(|e| e.slot + 1).max().unwrap_or(first).max(first);
                entries.push(SlotEntry { identity: identity.to_string(), slot, name: name.to_string() });
                slot
            }
        };
        self.dirty = true;
        slot
    }

    /// Notes a capability as seen at `now`.
    pub fn capability_seen(&mut self, name: &str, now: u64) {
        let last = self.stored.capabilities.entry(name.to_string()).or_insert(0);
        if now.saturating_sub(*last) >= 86_400 {
            *last = now;
            self.dirty = true;
        }
    }

    /// Writes `entities.json` if anything changed since the last save.
    pub fn save(&mut self) {
        if let Err(e) = self.try_save() {
            // A read-only or full data directory fails every time: say so once, then
            // retry quietly (the next success is logged).
            if !self.save_failing {
                let file = self.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
                tracing::warn!(file = %file, error = %e, "cannot save entities; entities seen from now on are not remembered across restarts until this works");
            }
            self.save_failing = true;
        }
    }

    /// Writes `entities.json` if anything changed since the last save, returning the error.
    pub fn try_save(&mut self) -> std::io::Result<()> {
        if !self.dirty && !self.counters_moved {
            return Ok(());
        }
        for entity in &self.entities {
            if !entity.ever_valued {
                continue;
            }
            self.stored.entities.insert(
                entity.key.clone(),
                StoredEntity {
                    row: entity.def.key.to_string(),
                    name: entity.name.clone(),
                    ever_valued: entity.ever_valued,
                    last_seen: entity.last_seen,
                    counter: entity.counter.clone(),
                },
            );
            self.stored.counters.remove(&entity.key);
        }
        self.stored.version = 1;
        if let Some(path) = &self.path {
            crate::store::write_json_atomic(path, &self.stored)?;
            if self.save_failing {
                tracing::info!(file = %path.display(), "entities saved again");
                self.save_failing = false;
            }
            self.dirty = false;
            self.counters_moved = false;
            Ok(())
        } else {
            self.dirty = false;
            self.counters_moved = false;
            Ok(())
        }
    }

    /// Forgets entities whose source was last seen before `cutoff` (unix seconds): they
    /// leave the discovery message (a removal is published once) and the data directory,
    /// and come back only if their source reappears. Always-present and diagnostic
    /// entities stay. Entity ids stay valid (the entry remains, marked as never valued).
    /// A forgotten counter's guard is kept by key, so a counter that comes back continues
    /// from its last published value. Returns the forgotten keys.
    pub fn forget_before(&mut self, cutoff: u64) -> Vec<String> {
        let mut forgotten = Vec::new();
        for entity in &mut self.entities {
            let forgettable =
                entity.def.presence == Presence::WhenSeen && entity.ever_valued && entity.last_seen < cutoff;
            if !forgettable {
                continue;
            }
            entity.ever_valued = false;
            entity.last_seen = 0;
            entity.eval = Eval::Unavailable;
            self.stored.entities.remove(&entity.key);
            if let Some(counter) = &entity.counter {
                self.stored.counters.insert(entity.key.clone(), counter.clone());
            }
            self.stored.removed.insert(entity.key.clone(), entity.def.component.as_str().to_string());
            forgotten.push(entity.key.clone());
        }
        self.stored.capabilities.retain(|_, seen| *seen >= cutoff);
        if !forgotten.is_empty() {
            self.dirty = true;
        }
        forgotten
    }

    /// Entities whose removal must be published once.
    pub fn pending_removals(&self) -> Vec<(String, String)> {
        self.stored.removed.iter().map(|(k, c)| (k.clone(), c.clone())).collect()
    }

    /// Marks the pending removals as published.
    pub fn removals_published(&mut self) {
        if !self.stored.removed.is_empty() {
            self.stored.removed.clear();
            self.dirty = true;
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Notes that a counter's reading changed; saved with the next periodic save.
    pub fn mark_counter_moved(&mut self) {
        self.counters_moved = true;
    }
}

/// Expands a per-device row key for one slot: `tank_{fluid}{slot}_level` with fluid
/// `fresh_water` and slot 2 gives `tank_fresh_water_2_level`; slot 1 of tanks and
/// temperatures has no number. Extra batteries are numbered from 2.
pub fn expand_key(row: &EntityDef, group_slug: &str, slot: u32) -> String {
    let suffix = match row.family {
        Some(Family::ExtraBattery) => slot.to_string(),
        _ if slot <= 1 => String::new(),
        _ => format!("_{slot}"),
    };
    row.key
        .replace("{fluid}", group_slug)
        .replace("{type}", group_slug)
        .replace("{slot}", &suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str) -> &'static EntityDef {
        CATALOGUE.iter().find(|d| d.key == key).unwrap()
    }

    #[test]
    fn key_expansion() {
        assert_eq!(expand_key(row("tank_{fluid}{slot}_level"), "fresh_water", 1), "tank_fresh_water_level");
        assert_eq!(expand_key(row("tank_{fluid}{slot}_level"), "fresh_water", 2), "tank_fresh_water_2_level");
        assert_eq!(expand_key(row("temperature_{type}{slot}"), "fridge", 1), "temperature_fridge");
        assert_eq!(expand_key(row("battery_{slot}_soc"), "", 2), "battery_2_soc");
    }

    #[test]
    fn slots_are_stable_and_reused() {
        let mut registry = Registry::open(None);
        let none_present = |_: &str| false;
        let all_present = |_: &str| true;
        assert_eq!(registry.slot("tank:fresh_water", "tank/20", "", 1, &all_present, true), 1);
        assert_eq!(registry.slot("tank:fresh_water", "tank/21", "", 1, &all_present, true), 2);
        assert_eq!(registry.slot("tank:fresh_water", "tank/20", "", 1, &all_present, true), 1);
        // tank/20 is gone and a new sender appears: it takes slot 1.
        let only_21 = |identity: &str| identity == "tank/21";
        assert_eq!(registry.slot("tank:fresh_water", "tank/30", "", 1, &only_21, true), 1);
        // Without reuse, a new number.
        assert_eq!(registry.slot("tank:fresh_water", "tank/31", "", 1, &none_present, false), 3);
    }

    #[test]
    fn free_slot_with_same_name_first() {
        let mut registry = Registry::open(None);
        let group = "tank:fresh_water";
        let all_present = |_: &str| true;
        assert_eq!(registry.slot(group, "tank/20", "Fresh Bow", 1, &all_present, true), 1);
        assert_eq!(registry.slot(group, "tank/25", "Fresh Aft", 1, &all_present, true), 2);

        // A new GX numbers the senders the other way round: each keeps its slot by name.
        let new_gx = |identity: &str| identity == "tank/30" || identity == "tank/31";
        assert_eq!(registry.slot(group, "tank/30", "Fresh Aft", 1, &new_gx, true), 2);
        assert_eq!(registry.slot(group, "tank/31", "Fresh Bow", 1, &new_gx, true), 1);
    }

    #[test]
    fn unnamed_device_takes_lowest_free_slot() {
        let mut registry = Registry::open(None);
        let group = "tank:fresh_water";
        let all_present = |_: &str| true;
        assert_eq!(registry.slot(group, "tank/20", "Fresh Bow", 1, &all_present, true), 1);
        assert_eq!(registry.slot(group, "tank/25", "", 1, &all_present, true), 2);

        let new_gx = |identity: &str| identity == "tank/30" || identity == "tank/31";
        assert_eq!(registry.slot(group, "tank/30", "", 1, &new_gx, true), 1);
        assert_eq!(registry.slot(group, "tank/31", "Fresh Aft", 1, &new_gx, true), 2);
    }

    #[test]
    fn slot_name_follows_rename() {
        let mut registry = Registry::open(None);
        let group = "tank:fresh_water";
        let all_present = |_: &str| true;
        assert_eq!(registry.slot(group, "tank/20", "", 1, &all_present, true), 1);
        assert_eq!(registry.slot(group, "tank/21", "", 1, &all_present, true), 2);
        assert_eq!(registry.slot(group, "tank/21", "Fresh Aft", 1, &all_present, true), 2);

        let none_present = |_: &str| false;
        assert_eq!(registry.slot(group, "tank/30", "Fresh Aft", 1, &none_present, true), 2);
    }

    #[test]
    fn forgotten_counter_keeps_guard() {
        let dir = tempfile::tempdir().unwrap();
        let key = "battery_charged_energy";
        let guard = CounterGuard {
            published: Some(226.67),
            raw: 0.6,
            offset: 226.07,
            source: "battery/275".into(),
            drop_since: None,
            ..CounterGuard::default()
        };
        let mut registry = Registry::open(Some(dir.path()));
        let id = registry.by_key(key).unwrap();
        registry.mark_valued(id, 1_000_000);
        registry.get_mut(id).counter = Some(guard.clone());
        registry.save();

        let mut registry = Registry::open(Some(dir.path()));
        assert_eq!(registry.forget_before(2_000_000), vec![key.to_string()]);
        registry.try_save().unwrap();

        // Forgotten: out of discovery, but the guard is still there for the next value.
        let mut registry = Registry::open(Some(dir.path()));
        let id = registry.by_key(key).unwrap();
        assert!(!registry.get(id).in_discovery());
        assert_eq!(registry.get(id).counter.as_ref(), Some(&guard));
        assert_eq!(registry.stored.counters.get(key), Some(&guard));

        // Valued again: the guard moves back to the entity's own entry.
        registry.mark_valued(id, 3_000_000);
        registry.try_save().unwrap();
        assert!(registry.stored.counters.is_empty());
        let reopened = Registry::open(Some(dir.path()));
        let id = reopened.by_key(key).unwrap();
        assert!(reopened.get(id).in_discovery());
        assert_eq!(reopened.get(id).counter.as_ref(), Some(&guard));
    }

    #[test]
    fn forgotten_device_counter_returns_on_bind() {
        let mut registry = Registry::open(None);
        let key = "tank_fresh_water_level";
        let device = DeviceId::new(super::super::spec::ServiceKind::Tank, "21");
        let guard = CounterGuard { published: Some(5.0), raw: 5.0, ..CounterGuard::default() };
        registry.stored.counters.insert(key.to_string(), guard.clone());

        let id = registry.bind(key, row("tank_{fluid}{slot}_level"), "Fresh water level", &device);
        assert_eq!(registry.get(id).counter.as_ref(), Some(&guard));
        assert!(!registry.get(id).in_discovery());
    }

    #[test]
    fn persisted_entities_come_back_unbound() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::open(Some(dir.path()));
        let device = DeviceId::new(super::super::spec::ServiceKind::Tank, "21");
        let id = registry.bind("tank_fresh_water_level", row("tank_{fluid}{slot}_level"), "Fresh water level", &device);
        registry.mark_valued(id, 1_000_000);
        registry.save();

        let reopened = Registry::open(Some(dir.path()));
        let id = reopened.by_key("tank_fresh_water_level").expect("restored");
        let entity = reopened.get(id);
        assert_eq!(entity.binding, Binding::Unbound);
        assert!(entity.in_discovery());
        assert!(!entity.available());
        assert_eq!(entity.name, "Fresh water level");
    }
}
