//! The vocabulary of the entity catalogue: what an entity is, where its value comes from
//! and how it is shown in Home Assistant.

use serde::Serialize;

/// Venus OS service types the bridge reads (the third part of the D-Bus service name).
/// Only these are subscribed; settings, platform and vecan trees are about half of a full
/// publish and carry nothing the catalogue uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    System,
    Battery,
    SolarCharger,
    Vebus,
    Multi,
    Inverter,
    AcSystem,
    Tank,
    Temperature,
    Gps,
    Generator,
    Alternator,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 12] = [
        ServiceKind::System,
        ServiceKind::Battery,
        ServiceKind::SolarCharger,
        ServiceKind::Vebus,
        ServiceKind::Multi,
        ServiceKind::Inverter,
        ServiceKind::AcSystem,
        ServiceKind::Tank,
        ServiceKind::Temperature,
        ServiceKind::Gps,
        ServiceKind::Generator,
        ServiceKind::Alternator,
    ];

    /// Returns the service type as it appears in topics.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::System => "system",
            ServiceKind::Battery => "battery",
            ServiceKind::SolarCharger => "solarcharger",
            ServiceKind::Vebus => "vebus",
            ServiceKind::Multi => "multi",
            ServiceKind::Inverter => "inverter",
            ServiceKind::AcSystem => "acsystem",
            ServiceKind::Tank => "tank",
            ServiceKind::Temperature => "temperature",
            ServiceKind::Gps => "gps",
            ServiceKind::Generator => "generator",
            ServiceKind::Alternator => "alternator",
        }
    }

    pub fn from_topic(service: &str) -> Option<ServiceKind> {
        ServiceKind::ALL.into_iter().find(|k| k.as_str() == service)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Inverter/charger services, in the order they are preferred for the inverter role.
    pub const INVERTERS: [ServiceKind; 4] =
        [ServiceKind::Vebus, ServiceKind::Multi, ServiceKind::Inverter, ServiceKind::AcSystem];
}

/// Home Assistant entity platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Sensor,
    BinarySensor,
    DeviceTracker,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Sensor => "sensor",
            Component::BinarySensor => "binary_sensor",
            Component::DeviceTracker => "device_tracker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateClass {
    Measurement,
    Total,
    TotalIncreasing,
}

impl StateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            StateClass::Measurement => "measurement",
            StateClass::Total => "total",
            StateClass::TotalIncreasing => "total_increasing",
        }
    }
}

/// A device the GX has picked, or we pick, for a canonical entity. Resolved at run time,
/// so entities never depend on D-Bus instance numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The battery monitor the GX uses for the system battery (`system/0/ActiveBatteryService`).
    MainBattery,
    /// The inverter/charger the GX uses (`system/0/VebusInstance`), else the first one.
    Inverter,
    /// The first solar charger seen.
    MainSolar,
    /// The GPS the GX uses, else the first one with a fix.
    Gps,
}

/// Per-device entity families: one set of entities per device of that kind, numbered by
/// slot (`_2`, `_3`, ...) when there is more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Battery monitors other than the main one: `battery_<n>_*`, n >= 2.
    ExtraBattery,
    /// Tanks, per fluid type: `tank_<fluid>[_<n>]_*`.
    Tank,
    /// Temperature sensors, per temperature type: `temperature_<type>[_<n>]`.
    Temperature,
}

/// Where an entity's raw value comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// A path of `system/0`.
    System(&'static str),
    /// The sum of the non-null `L1`..`L3` values of a `system/0` path pattern (`{}` = phase);
    /// unknown only when all three are null.
    SystemPhases(&'static str),
    /// A path of the device holding a role.
    Role(Role, &'static str),
    /// The first of these paths that the role's device publishes.
    RoleFirst(Role, &'static [&'static str]),
    /// Per-phase sum on the role's device.
    RolePhases(Role, &'static str),
    /// The sum of a path over every device of a kind. While any present device has no
    /// value, the sum is held (never a partial sum).
    SumAll(&'static [ServiceKind], &'static str),
    /// A path of the device a per-device entity is bound to.
    Device(&'static str),
    /// A computation that needs several inputs; see `model::derive`.
    Derived(Derived),
}

/// Entities computed from several inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Derived {
    ShoreConnected,
    GeneratorRunning,
    LowBattery,
    SystemAlarm,
    GpsPosition,
    BridgeStatus,
    GxConnected,
}

/// How a raw value becomes the published state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// The number as is.
    Number,
    /// The number times a factor (m³ to L: 1000).
    Scale(f64),
    /// An integer code mapped to an option string; unknown codes give `None`.
    Enum(&'static EnumTable),
    /// Battery time to go: unknown unless the battery is discharging, and unknown at the
    /// GX's cap of 864000 s (240 h) that it reports when the load is too small.
    TimeToGo,
    /// Produced by the derived computation itself.
    Derived,
}

/// An enum's codes and option strings. The options of the Home Assistant entity are the
/// distinct strings, in table order.
#[derive(Debug, PartialEq)]
pub struct EnumTable {
    pub name: &'static str,
    pub codes: &'static [(i64, &'static str)],
}

impl EnumTable {
    pub fn lookup(&self, code: i64) -> Option<&'static str> {
        self.codes.iter().find(|(c, _)| *c == code).map(|(_, s)| *s)
    }

    pub fn options(&self) -> Vec<&'static str> {
        let mut options: Vec<&'static str> = Vec::new();
        for (_, option) in self.codes {
            if !options.contains(option) {
                options.push(option);
            }
        }
        options
    }
}

/// When the entity is part of the discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Always, unavailable while its source is missing.
    Always,
    /// Once its source has been seen with a value; then kept across restarts.
    WhenSeen,
    /// Diagnostic: always, and available whenever the bridge runs.
    Diagnostic,
}

/// Throttle class: how often and by how much a value must change to be published. The
/// numbers live in `throttle::Policy::for_class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleClass {
    Power,
    Current,
    Voltage,
    Soc,
    Temperature,
    Humidity,
    Frequency,
    Energy,
    Charge,
    Duration,
    TankLevel,
    TankVolume,
    Speed,
    Count,
    Binary,
    ShorePower,
    State,
    Location,
    Immediate,
}

/// One row of the catalogue.
#[derive(Debug, Clone)]
pub struct EntityDef {
    /// Stable key: entity id `<component>.vt_<key>`, unique id `roamcore_victron_<key>`.
    /// Per-device rows use `{slot}` (and `{fluid}`/`{type}`) placeholders.
    pub key: &'static str,
    pub component: Component,
    pub name: &'static str,
    pub source: Source,
    pub transform: Transform,
    pub unit: Option<&'static str>,
    pub device_class: Option<&'static str>,
    pub state_class: Option<StateClass>,
    pub precision: Option<u8>,
    pub throttle: ThrottleClass,
    pub presence: Presence,
    pub family: Option<Family>,
    pub icon: Option<&'static str>,
    /// Extra words for the entity reference: sign convention, special cases.
    pub note: &'static str,
}

impl EntityDef {
    /// Option strings for enum sensors.
    pub fn options(&self) -> Option<Vec<&'static str>> {
        match self.transform {
            Transform::Enum(table) => Some(table.options()),
            _ => match self.source {
                Source::Derived(Derived::BridgeStatus) => Some(
                    crate::status::BridgeStatus::ALL.iter().map(|s| s.as_str()).collect(),
                ),
                _ => None,
            },
        }
    }

    pub fn is_diagnostic(&self) -> bool {
        self.presence == Presence::Diagnostic
    }
}
