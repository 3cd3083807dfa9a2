//! The capabilities model: what kind of system the GX runs, derived from what it
//! publishes. Capabilities are sticky (persisted with the time last seen) and shown as an
//! attribute of the bridge-status entity, so a dashboard can hide cards for things a van
//! does not have.

use super::gx_state::GxState;
use super::spec::{Role, ServiceKind};

pub const ALL: &[&str] = &[
    "has_battery",
    "has_pv",
    "has_ac_in",
    "has_ac_out",
    "has_inverter",
    "has_dc_system",
    "has_tanks",
    "has_temperatures",
    "has_gps",
    "has_generator",
    "has_alternator",
];

/// Returns the static name for a stored capability string.
pub fn intern(name: &str) -> Option<&'static str> {
    ALL.iter().copied().find(|c| *c == name)
}

/// Capabilities visible in the GX state right now.
pub fn derive(gx: &GxState) -> Vec<&'static str> {
    let system = gx.system();
    let system_has = |path: &str| system.and_then(|s| s.number(path)).is_some();
    let any = |kind: ServiceKind| gx.of_kind(kind).next().is_some();

    let mut caps = Vec::new();
    let mut add = |cond: bool, name: &'static str| {
        if cond {
            caps.push(name);
        }
    };

    add(any(ServiceKind::Battery) || system_has("Dc/Battery/Soc") || system_has("Dc/Battery/Voltage"), "has_battery");
    add(any(ServiceKind::SolarCharger) || system_has("Dc/Pv/Power"), "has_pv");
    let inverter = gx.role(Role::Inverter);
    let ac_in_source = system.and_then(|s| s.number("Ac/ActiveIn/Source")).is_some_and(|s| s != 0.0);
    let inverter_has_input = inverter.is_some_and(|d| d.number("Ac/ActiveIn/L1/V").is_some());
    add(ac_in_source || inverter_has_input, "has_ac_in");
    add(inverter.is_some_and(|d| d.number("Ac/Out/L1/V").is_some()) || system_has("Ac/ConsumptionOnOutput/L1/Power"), "has_ac_out");
    add(inverter.is_some(), "has_inverter");
    add(system_has("Dc/System/Power"), "has_dc_system");
    add(any(ServiceKind::Tank), "has_tanks");
    add(any(ServiceKind::Temperature), "has_temperatures");
    add(any(ServiceKind::Gps), "has_gps");
    let genset = ["Ac/Genset/L1/Power", "Ac/Genset/L2/Power", "Ac/Genset/L3/Power"].iter().any(|p| system_has(p));
    add(any(ServiceKind::Generator) || genset, "has_generator");
    add(any(ServiceKind::Alternator) || system_has("Dc/Alternator/Power"), "has_alternator");
    caps
}
