//! The canonical entity catalogue: every entity the bridge can publish, as one table.
//!
//! The keys are the product's public interface (automations and dashboards use the entity
//! ids `<component>.vt_<key>`) and must never change. Values follow Victron's signs:
//! battery current and power are positive while charging, DC system power is positive
//! while consuming, AC input power is positive when drawn from the input.
//!
//! `docs/ENTITIES.md` is generated from this table (`roamcore-victron entities`), and a
//! test fails when it is out of date.

use super::enums::{
    AC_SOURCE, BATTERY_STATE, CHARGER_STATE, INVERTER_MODE, INVERTER_STATE,
};
use super::spec::{
    Component, Derived, EntityDef, Family, Presence, Role, ServiceKind, Source, StateClass,
    ThrottleClass as T, Transform,
};

/// Services with an MPPT of their own whose PV yield counts as solar: solar chargers, and
/// Multi RS Solar units (`multi`), which publish `Yield/User` and `History/Daily/0/Yield`
/// like a charger (venus-docker `multirs` simulation).
const SOLAR_YIELD: &[ServiceKind] = &[ServiceKind::SolarCharger, ServiceKind::Multi];

const fn entity(key: &'static str, component: Component, name: &'static str, source: Source) -> EntityDef {
    EntityDef {
        key,
        component,
        name,
        source,
        transform: Transform::Number,
        unit: None,
        device_class: None,
        state_class: None,
        precision: None,
        throttle: T::Immediate,
        presence: Presence::WhenSeen,
        family: None,
        icon: None,
        note: "",
    }
}

const fn sensor(key: &'static str, name: &'static str, source: Source) -> EntityDef {
    entity(key, Component::Sensor, name, source)
}

/// Builds a measurement sensor with unit, device class, precision and throttle class.
const fn measured(
    key: &'static str,
    name: &'static str,
    source: Source,
    unit: &'static str,
    device_class: Option<&'static str>,
    precision: u8,
    throttle: T,
) -> EntityDef {
    let mut def = sensor(key, name, source);
    def.unit = Some(unit);
    def.device_class = device_class;
    def.state_class = Some(StateClass::Measurement);
    def.precision = Some(precision);
    def.throttle = throttle;
    def
}

/// Builds an energy counter for the Energy dashboard: kWh, `total_increasing`.
const fn energy(key: &'static str, name: &'static str, source: Source) -> EntityDef {
    let mut def = sensor(key, name, source);
    def.unit = Some("kWh");
    def.device_class = Some("energy");
    def.state_class = Some(StateClass::TotalIncreasing);
    def.precision = Some(2);
    def.throttle = T::Energy;
    def
}

const fn enumerated(
    key: &'static str,
    name: &'static str,
    source: Source,
    table: &'static super::spec::EnumTable,
) -> EntityDef {
    let mut def = sensor(key, name, source);
    def.transform = Transform::Enum(table);
    def.device_class = Some("enum");
    def.throttle = T::State;
    def
}

const fn binary(key: &'static str, name: &'static str, derived: Derived, device_class: &'static str) -> EntityDef {
    let mut def = entity(key, Component::BinarySensor, name, Source::Derived(derived));
    def.transform = Transform::Derived;
    def.device_class = Some(device_class);
    def.throttle = T::Binary;
    def
}

const fn always(mut def: EntityDef) -> EntityDef {
    def.presence = Presence::Always;
    def
}

const fn note(mut def: EntityDef, note: &'static str) -> EntityDef {
    def.note = note;
    def
}

const fn icon(mut def: EntityDef, icon: &'static str) -> EntityDef {
    def.icon = Some(icon);
    def
}

const fn per_device(mut def: EntityDef, family: Family) -> EntityDef {
    def.family = Some(family);
    def
}

const fn throttled(mut def: EntityDef, throttle: T) -> EntityDef {
    def.throttle = throttle;
    def
}

use Source::{Role as R, System as S};

pub static CATALOGUE: &[EntityDef] = &[
    // Always published: the numbers every van dashboard shows.
    always(measured("battery_soc", "Battery state of charge", S("Dc/Battery/Soc"), "%", Some("battery"), 0, T::Soc)),
    always(measured("battery_voltage", "Battery voltage", S("Dc/Battery/Voltage"), "V", Some("voltage"), 2, T::Voltage)),
    always(note(
        measured("battery_current", "Battery current", S("Dc/Battery/Current"), "A", Some("current"), 1, T::Current),
        "Positive while charging, negative while discharging.",
    )),
    always(note(
        measured("battery_power", "Battery power", S("Dc/Battery/Power"), "W", Some("power"), 0, T::Power),
        "Positive while charging, negative while discharging.",
    )),
    always(note(
        measured("solar_power", "Solar power", S("Dc/Pv/Power"), "W", Some("power"), 0, T::Power),
        "Sum of all solar chargers.",
    )),
    always(note(
        measured("ac_in_power", "AC input power", Source::SystemPhases("Ac/ActiveIn/{}/Power"), "W", Some("power"), 0, T::Power),
        "Power drawn from the active AC input (shore, grid or generator), summed over the phases.",
    )),
    always(note(
        measured("ac_out_power", "AC loads power", Source::SystemPhases("Ac/ConsumptionOnOutput/{}/Power"), "W", Some("power"), 0, T::Power),
        "Loads on the inverter's AC output, summed over the phases.",
    )),
    always(note(
        measured("dc_load_power", "DC loads power", S("Dc/System/Power"), "W", Some("power"), 0, T::Power),
        "Positive while consuming. Present only when the GX has \"Has DC system\" switched on or a DC meter. Without a DC meter the GX estimates it from the other meters (solar, chargers, inverter, battery), and the estimate can go negative when those disagree; the bridge passes it on as the GX computes it.",
    )),
    always(note(
        throttled(binary("shore_connected", "Shore power", Derived::ShoreConnected, "power"), T::ShorePower),
        "On when an AC input is connected and its configured type is shore or grid (installers often leave a van's shore input typed \"grid\"); off on generator or when inverting.",
    )),
    // Battery.
    measured("battery_temperature", "Battery temperature", S("Dc/Battery/Temperature"), "°C", Some("temperature"), 1, T::Temperature),
    note(
        {
            let mut def = measured("battery_time_to_go", "Battery time to go", S("Dc/Battery/TimeToGo"), "s", Some("duration"), 0, T::Duration);
            def.transform = Transform::TimeToGo;
            def
        },
        "Unknown while the battery is not discharging, and at the GX's 864000 s (240 h) cap.",
    ),
    note(
        icon(measured("battery_consumed_ah", "Battery consumed charge", S("Dc/Battery/ConsumedAmphours"), "Ah", None, 1, T::Charge), "mdi:battery-minus"),
        "Negative: amp hours taken out since the last full charge.",
    ),
    enumerated("battery_state", "Battery state", S("Dc/Battery/State"), &BATTERY_STATE),
    note(
        energy("battery_charged_energy", "Battery charged energy", R(Role::MainBattery, "History/ChargedEnergy")),
        "Lifetime counter of the main battery monitor.",
    ),
    note(
        energy("battery_discharged_energy", "Battery discharged energy", R(Role::MainBattery, "History/DischargedEnergy")),
        "Lifetime counter of the main battery monitor.",
    ),
    note(
        measured("starter_battery_voltage", "Starter battery voltage", R(Role::MainBattery, "Dc/1/Voltage"), "V", Some("voltage"), 2, T::Voltage),
        "The main battery monitor's second (starter) input.",
    ),
    per_device(measured("battery_{slot}_soc", "{name} state of charge", Source::Device("Soc"), "%", Some("battery"), 0, T::Soc), Family::ExtraBattery),
    per_device(measured("battery_{slot}_voltage", "{name} voltage", Source::Device("Dc/0/Voltage"), "V", Some("voltage"), 2, T::Voltage), Family::ExtraBattery),
    per_device(measured("battery_{slot}_current", "{name} current", Source::Device("Dc/0/Current"), "A", Some("current"), 1, T::Current), Family::ExtraBattery),
    // Solar.
    note(
        energy("solar_yield_today", "Solar yield today", Source::SumAll(SOLAR_YIELD, "History/Daily/0/Yield")),
        "Sum over all solar chargers and Multi RS Solar units; starts again each day.",
    ),
    note(
        energy("solar_yield_total", "Solar yield total", Source::SumAll(SOLAR_YIELD, "Yield/User")),
        "Sum over all solar chargers and Multi RS Solar units.",
    ),
    measured("solar_voltage", "Solar panel voltage", Source::RoleFirst(Role::MainSolar, &["Pv/V", "Pv/0/V"]), "V", Some("voltage"), 1, T::Voltage),
    enumerated("solar_charge_state", "Solar charge state", R(Role::MainSolar, "State"), &CHARGER_STATE),
    // AC.
    measured("ac_in_voltage", "AC input voltage", R(Role::Inverter, "Ac/ActiveIn/L1/V"), "V", Some("voltage"), 0, T::Voltage),
    measured("ac_in_current", "AC input current", Source::RolePhases(Role::Inverter, "Ac/ActiveIn/{}/I"), "A", Some("current"), 1, T::Current),
    measured("ac_in_frequency", "AC input frequency", R(Role::Inverter, "Ac/ActiveIn/L1/F"), "Hz", Some("frequency"), 1, T::Frequency),
    note(
        measured("ac_in_current_limit", "AC input current limit", R(Role::Inverter, "Ac/ActiveIn/CurrentLimit"), "A", Some("current"), 1, T::Current),
        "The shore current limit set on the inverter/charger.",
    ),
    enumerated("ac_in_source", "AC input source", S("Ac/ActiveIn/Source"), &AC_SOURCE),
    measured("ac_out_voltage", "AC output voltage", R(Role::Inverter, "Ac/Out/L1/V"), "V", Some("voltage"), 0, T::Voltage),
    measured("ac_out_current", "AC output current", Source::RolePhases(Role::Inverter, "Ac/Out/{}/I"), "A", Some("current"), 1, T::Current),
    measured("ac_out_frequency", "AC output frequency", R(Role::Inverter, "Ac/Out/L1/F"), "Hz", Some("frequency"), 1, T::Frequency),
    // Inverter/charger.
    enumerated("inverter_state", "Inverter state", R(Role::Inverter, "State"), &INVERTER_STATE),
    enumerated("inverter_mode", "Inverter mode", R(Role::Inverter, "Mode"), &INVERTER_MODE),
    // DC sources.
    note(
        measured("alternator_power", "Alternator power", S("Dc/Alternator/Power"), "W", Some("power"), 0, T::Power),
        "Sum of alternators and DC generators.",
    ),
    // Tanks.
    per_device(
        icon(measured("tank_{fluid}{slot}_level", "{name} level", Source::Device("Level"), "%", None, 0, T::TankLevel), "mdi:storage-tank"),
        Family::Tank,
    ),
    per_device(
        note(
            {
                let mut def = measured("tank_{fluid}{slot}_remaining", "{name} remaining", Source::Device("Remaining"), "L", Some("volume_storage"), 0, T::TankVolume);
                def.transform = Transform::Scale(1000.0);
                def
            },
            "Converted from the GX's m³.",
        ),
        Family::Tank,
    ),
    // Temperatures.
    per_device(measured("temperature_{type}{slot}", "{name} temperature", Source::Device("Temperature"), "°C", Some("temperature"), 1, T::Temperature), Family::Temperature),
    per_device(measured("humidity_{type}{slot}", "{name} humidity", Source::Device("Humidity"), "%", Some("humidity"), 0, T::Humidity), Family::Temperature),
    // GPS.
    note(
        {
            let mut def = entity("gps", Component::DeviceTracker, "GPS", Source::Derived(Derived::GpsPosition));
            def.transform = Transform::Derived;
            def.throttle = T::Location;
            def
        },
        "Position as latitude/longitude attributes; a move of 25 m or more is published at most every 30 s, once both coordinates have arrived. Without a fix the tracker is unavailable: Home Assistant 2026.11 has no warning-free way to clear a tracker's position, and an old position must not look current.",
    ),
    measured("gps_speed", "GPS speed", R(Role::Gps, "Speed"), "m/s", Some("speed"), 1, T::Speed),
    throttled(
        icon(
            {
                let mut def = sensor("gps_satellites", "GPS satellites", R(Role::Gps, "NrOfSatellites"));
                def.state_class = Some(StateClass::Measurement);
                def.precision = Some(0);
                def
            },
            "mdi:satellite-variant",
        ),
        T::Count,
    ),
    // Binary sensors.
    note(
        binary("generator_running", "Generator running", Derived::GeneratorRunning, "running"),
        "From the GX's generator start/stop service (running, warm-up or cool-down), else from power drawn from a generator input.",
    ),
    note(
        binary("low_battery", "Low battery", Derived::LowBattery, "battery"),
        "On while the main battery monitor or the inverter/charger raises a low state-of-charge or low-voltage alarm or warning.",
    ),
    note(
        binary("system_alarm", "System alarm", Derived::SystemAlarm, "problem"),
        "On while any device reports an alarm or warning; the attributes list them.",
    ),
    // Diagnostics: available whenever the bridge runs.
    note(
        {
            let mut def = sensor("bridge_status", "Bridge status", Source::Derived(Derived::BridgeStatus));
            def.transform = Transform::Derived;
            def.device_class = Some("enum");
            def.presence = Presence::Diagnostic;
            def.icon = Some("mdi:bridge");
            def
        },
        "What the bridge is doing; the attributes carry the GX host, portal id, model, firmware, capabilities and other GX devices seen.",
    ),
    {
        let mut def = binary("gx_connected", "GX connected", Derived::GxConnected, "connectivity");
        def.presence = Presence::Diagnostic;
        def.throttle = T::Immediate;
        def
    },
];

/// Looks up a fixed (not per-device) row by key.
pub fn by_key(key: &str) -> Option<&'static EntityDef> {
    CATALOGUE.iter().find(|d| d.key == key && d.family.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_unique_and_lowercase() {
        let mut seen = HashSet::new();
        for def in CATALOGUE {
            assert!(seen.insert(def.key), "duplicate key {}", def.key);
            let plain = def.key.replace("{slot}", "").replace("{fluid}", "x").replace("{type}", "x");
            assert!(
                plain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "key {} is not [a-z0-9_]",
                def.key
            );
        }
    }

    #[test]
    fn per_device_rows_have_placeholders() {
        for def in CATALOGUE {
            let has_placeholder = def.key.contains("{slot}");
            assert_eq!(has_placeholder, def.family.is_some(), "{}", def.key);
            assert_eq!(matches!(def.source, Source::Device(_)), def.family.is_some(), "{}", def.key);
        }
    }

    #[test]
    fn always_published_set_is_the_documented_one() {
        let always: Vec<&str> = CATALOGUE
            .iter()
            .filter(|d| d.presence == Presence::Always)
            .map(|d| d.key)
            .collect();
        assert_eq!(
            always,
            [
                "battery_soc",
                "battery_voltage",
                "battery_current",
                "battery_power",
                "solar_power",
                "ac_in_power",
                "ac_out_power",
                "dc_load_power",
                "shore_connected"
            ]
        );
    }
}
