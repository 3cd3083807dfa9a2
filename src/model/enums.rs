//! Venus OS enum codes and the option strings we publish for them.
//!
//! Codes come from Victron's dbus_modbustcp `attributes.csv`, gui-v2 `enums.h` and
//! dbus-systemcalc-py; the option strings are ours (stable snake_case, part of the public
//! interface). A code missing here publishes `None` and is logged once.

use super::spec::EnumTable;

/// `system/0/Dc/Battery/State`.
pub static BATTERY_STATE: EnumTable = EnumTable {
    name: "battery state",
    codes: &[(0, "idle"), (1, "charging"), (2, "discharging")],
};

/// `solarcharger/*/State` (MPPT charge state). 1 (low power) and 11 (power supply) are not
/// documented for MPPTs but occur on other chargers that share the enum.
pub static CHARGER_STATE: EnumTable = EnumTable {
    name: "charger state",
    codes: &[
        (0, "off"),
        (1, "low_power"),
        (2, "fault"),
        (3, "bulk"),
        (4, "absorption"),
        (5, "float"),
        (6, "storage"),
        (7, "equalize"),
        (11, "power_supply"),
        (245, "starting"),
        (246, "repeated_absorption"),
        (247, "auto_equalize"),
        (248, "battery_safe"),
        (252, "external_control"),
    ],
};

/// `system/0/Ac/ActiveIn/Source`: the configured type of the active AC input, or 240 when
/// no input is connected. 0 (not available) publishes `None`.
pub static AC_SOURCE: EnumTable = EnumTable {
    name: "AC input source",
    codes: &[(1, "grid"), (2, "generator"), (3, "shore"), (240, "not_connected")],
};

/// `vebus/*/State` (also multi, inverter).
pub static INVERTER_STATE: EnumTable = EnumTable {
    name: "inverter state",
    codes: &[
        (0, "off"),
        (1, "low_power"),
        (2, "fault"),
        (3, "bulk"),
        (4, "absorption"),
        (5, "float"),
        (6, "storage"),
        (7, "equalize"),
        (8, "passthru"),
        (9, "inverting"),
        (10, "power_assist"),
        (11, "power_supply"),
        (244, "sustain"),
        (245, "starting"),
        (252, "external_control"),
    ],
};

/// `vebus/*/Mode` (1-4) and `inverter/*/Mode` (2 on, 4 off, 5 eco).
pub static INVERTER_MODE: EnumTable = EnumTable {
    name: "inverter mode",
    codes: &[(1, "charger_only"), (2, "inverter_only"), (3, "on"), (4, "off"), (5, "eco")],
};

/// `tank/*/FluidType`, as the slug used in entity ids.
pub static FLUID_TYPE: EnumTable = EnumTable {
    name: "tank fluid type",
    codes: &[
        (0, "fuel"),
        (1, "fresh_water"),
        (2, "waste_water"),
        (3, "live_well"),
        (4, "oil"),
        (5, "black_water"),
        (6, "gasoline"),
        (7, "diesel"),
        (8, "lpg"),
        (9, "lng"),
        (10, "hydraulic_oil"),
        (11, "raw_water"),
    ],
};

/// `temperature/*/TemperatureType`, as the slug used in entity ids.
pub static TEMPERATURE_TYPE: EnumTable = EnumTable {
    name: "temperature type",
    codes: &[
        (0, "battery"),
        (1, "fridge"),
        (2, "generic"),
        (3, "room"),
        (4, "outdoor"),
        (5, "water_heater"),
        (6, "freezer"),
    ],
};

/// Human words for a fluid or temperature slug, for entity names.
pub fn slug_words(slug: &str) -> String {
    let words = match slug {
        "lpg" => "LPG",
        "lng" => "LNG",
        other => return capitalise(&other.replace('_', " ")),
    };
    words.to_string()
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_options() {
        assert_eq!(CHARGER_STATE.lookup(5), Some("float"));
        assert_eq!(CHARGER_STATE.lookup(99), None);
        assert_eq!(AC_SOURCE.options(), vec!["grid", "generator", "shore", "not_connected"]);
        assert_eq!(slug_words("fresh_water"), "Fresh water");
        assert_eq!(slug_words("lpg"), "LPG");
    }

    #[test]
    fn option_strings_are_valid_slugs() {
        for table in [
            &BATTERY_STATE,
            &CHARGER_STATE,
            &AC_SOURCE,
            &INVERTER_STATE,
            &INVERTER_MODE,
            &FLUID_TYPE,
            &TEMPERATURE_TYPE,
        ] {
            for option in table.options() {
                assert!(
                    option.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{}: {option}",
                    table.name
                );
            }
        }
    }
}
