//! The D-Bus paths the bridge stores, per service kind, interned to small integers.
//!
//! A full publish of a real boat has about 2,600 topics, of which the catalogue needs a
//! few dozen. Only the paths listed here are kept; everything else is dropped after one
//! hash lookup, which keeps memory flat however much a GX publishes.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::catalogue::CATALOGUE;
use super::spec::{Derived, Role, ServiceKind, Source};

pub type PathId = u16;

/// Paths read for naming, classifying devices and resolving roles.
const METADATA: &[(ServiceKind, &str)] = &[
    (ServiceKind::System, "Serial"),
    // A device's serial number distinguishes a replacement on the same port (same instance),
    // so its lifetime counters are not added to the energy totals.
    (ServiceKind::Battery, "Serial"),
    (ServiceKind::SolarCharger, "Serial"),
    (ServiceKind::Multi, "Serial"),
    (ServiceKind::System, "ActiveBatteryService"),
    (ServiceKind::System, "VebusInstance"),
    (ServiceKind::System, "FirmwareVersion"),
    (ServiceKind::Tank, "FluidType"),
    (ServiceKind::Temperature, "TemperatureType"),
];

/// Paths read by the derived entities.
const DERIVED_INPUTS: &[(ServiceKind, &str)] = &[
    (ServiceKind::System, "Ac/ActiveIn/Source"),
    (ServiceKind::System, "Ac/Genset/L1/Power"),
    (ServiceKind::System, "Ac/Genset/L2/Power"),
    (ServiceKind::System, "Ac/Genset/L3/Power"),
    (ServiceKind::Generator, "State"),
    (ServiceKind::Gps, "Position/Latitude"),
    (ServiceKind::Gps, "Position/Longitude"),
    (ServiceKind::Gps, "Fix"),
    (ServiceKind::Gps, "Altitude"),
    (ServiceKind::Gps, "Course"),
    (ServiceKind::Gps, "Speed"),
    (ServiceKind::Gps, "NrOfSatellites"),
    (ServiceKind::Alternator, "Dc/0/Power"),
];

#[derive(Debug)]
pub struct PathTable {
    ids: Vec<HashMap<&'static str, PathId>>,
    names: Vec<Vec<&'static str>>,
}

impl PathTable {
    pub fn get() -> &'static PathTable {
        static TABLE: OnceLock<PathTable> = OnceLock::new();
        TABLE.get_or_init(PathTable::build)
    }

    fn build() -> PathTable {
        let mut table = PathTable {
            ids: vec![HashMap::new(); ServiceKind::ALL.len()],
            names: vec![Vec::new(); ServiceKind::ALL.len()],
        };

        for kind in ServiceKind::ALL {
            table.add(kind, "CustomName");
            table.add(kind, "ProductName");
        }
        for (kind, path) in METADATA.iter().chain(DERIVED_INPUTS) {
            table.add(*kind, path);
        }

        for def in CATALOGUE {
            for (kind, path) in source_paths(&def.source) {
                table.add(kind, path);
            }
        }
        table
    }

    fn add(&mut self, kind: ServiceKind, path: &'static str) {
        let ids = &mut self.ids[kind.index()];
        if !ids.contains_key(path) {
            let names = &mut self.names[kind.index()];
            ids.insert(path, names.len() as PathId);
            names.push(path);
        }
    }

    pub fn id(&self, kind: ServiceKind, path: &str) -> Option<PathId> {
        self.ids[kind.index()].get(path).copied()
    }

    pub fn name(&self, kind: ServiceKind, id: PathId) -> &'static str {
        self.names[kind.index()][id as usize]
    }

    pub fn count(&self, kind: ServiceKind) -> usize {
        self.names[kind.index()].len()
    }
}

/// Lists the (kind, path) pairs a source reads. Phase patterns expand to L1..L3 and role paths
/// to every kind that can hold the role.
pub fn source_paths(source: &Source) -> Vec<(ServiceKind, &'static str)> {
    match *source {
        Source::System(path) => vec![(ServiceKind::System, path)],
        Source::SystemPhases(pattern) => {
            phase_paths(pattern).into_iter().map(|p| (ServiceKind::System, p)).collect()
        }
        Source::Role(role, path) => role_kinds(role).iter().map(|k| (*k, path)).collect(),
        Source::RoleFirst(role, paths) => role_kinds(role)
            .iter()
            .flat_map(|k| paths.iter().map(move |p| (*k, *p)))
            .collect(),
        Source::RolePhases(role, pattern) => role_kinds(role)
            .iter()
            .flat_map(|k| phase_paths(pattern).into_iter().map(move |p| (*k, p)))
            .collect(),
        Source::SumAll(kinds, path) => kinds.iter().map(|kind| (*kind, path)).collect(),
        Source::Device(path) => vec![
            (ServiceKind::Battery, path),
            (ServiceKind::Tank, path),
            (ServiceKind::Temperature, path),
        ],
        Source::Derived(derived) => match derived {
            Derived::ShoreConnected => vec![(ServiceKind::System, "Ac/ActiveIn/Source")],
            _ => Vec::new(),
        },
    }
}

pub fn role_kinds(role: Role) -> &'static [ServiceKind] {
    match role {
        Role::MainBattery => &[ServiceKind::Battery],
        Role::Inverter => &ServiceKind::INVERTERS,
        Role::MainSolar => &[ServiceKind::SolarCharger],
        Role::Gps => &[ServiceKind::Gps],
    }
}

/// Expands `Ac/Out/{}/I` into the L1, L2 and L3 paths. The strings are leaked once per
/// pattern, at start-up, because the path table keeps `&'static str` keys.
pub fn phase_paths(pattern: &'static str) -> Vec<&'static str> {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<&'static str, Vec<&'static str>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(pattern)
        .or_insert_with(|| {
            ["L1", "L2", "L3"]
                .iter()
                .map(|phase| &*Box::leak(pattern.replace("{}", phase).into_boxed_str()))
                .collect()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_paths_are_interned() {
        let table = PathTable::get();
        assert!(table.id(ServiceKind::System, "Dc/Battery/Soc").is_some());
        assert!(table.id(ServiceKind::System, "Ac/ActiveIn/L3/Power").is_some());
        assert!(table.id(ServiceKind::Multi, "Ac/Out/L2/I").is_some());
        assert!(table.id(ServiceKind::Tank, "Level").is_some());
        assert!(table.id(ServiceKind::Tank, "FluidType").is_some());
        assert!(table.id(ServiceKind::Battery, "History/TotalAhDrawn").is_none());
        let id = table.id(ServiceKind::Battery, "Soc").unwrap();
        assert_eq!(table.name(ServiceKind::Battery, id), "Soc");
    }
}
