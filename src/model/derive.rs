//! Entities computed from several GX values.

use super::eval::{ActiveAlarm, Context, Eval, Location, Problem, State};
use super::gx_state::{Device, GxState};
use super::spec::{Derived, Role, ServiceKind};
use crate::gx::payload::GxValue;

pub fn evaluate(derived: Derived, gx: &GxState, ctx: &Context<'_>, problems: &mut Vec<Problem>) -> Eval {
    match derived {
        Derived::ShoreConnected => shore_connected(gx, ctx, problems),
        Derived::GeneratorRunning => generator_running(gx, ctx, problems),
        Derived::LowBattery => low_battery(gx),
        Derived::SystemAlarm => system_alarm(gx),
        Derived::GpsPosition => gps_position(gx),
        // Set by the engine from the link state, not from GX values.
        Derived::BridgeStatus | Derived::GxConnected => Eval::Hold,
    }
}

/// Shore power: an AC input is connected and its configured type is shore (3) or grid
/// (1), since installers often leave a van's shore input typed "grid". Generator (2), not
/// connected (240) and not available (0) are off.
fn shore_connected(gx: &GxState, ctx: &Context<'_>, problems: &mut Vec<Problem>) -> Eval {
    let source = gx.system().and_then(|s| s.value("Ac/ActiveIn/Source"));
    match source {
        None => Eval::Unavailable,
        Some(GxValue::Null) if ctx.ever_valued => Eval::Value(State::Unknown),
        Some(GxValue::Null) => Eval::Unavailable,
        Some(value) => match value.as_i64() {
            Some(1 | 3) => Eval::Value(State::Bool(true)),
            Some(0 | 2 | 240) => Eval::Value(State::Bool(false)),
            _ => {
                problems.push(Problem {
                    key: format!("enum:{}:{value}", ctx.key),
                    message: format!("{}: unknown AC input source {value}; publishing unknown", ctx.key),
                });
                Eval::Value(State::Unknown)
            }
        },
    }
}

/// Reads the generator start/stop service when there is one: states 1 running, 2 warm-up
/// and 3 cool-down are on, 0 stopped, 4 stopping and 10 error are off. A null `State` is
/// unknown once the entity has had a value and unavailable before that. Without the
/// service, the entity is on while power is drawn from a generator input, and off once one
/// was seen.
fn generator_running(gx: &GxState, ctx: &Context<'_>, problems: &mut Vec<Problem>) -> Eval {
    if let Some(generator) = gx.of_kind(ServiceKind::Generator).next() {
        return match generator.value("State") {
            None => Eval::Unavailable,
            Some(GxValue::Null) if ctx.ever_valued => Eval::Value(State::Unknown),
            Some(GxValue::Null) => Eval::Unavailable,
            Some(value) => match value.as_i64() {
                Some(1..=3) => Eval::Value(State::Bool(true)),
                Some(0 | 4 | 10) => Eval::Value(State::Bool(false)),
                _ => {
                    problems.push(Problem {
                        key: format!("enum:{}:{value}", ctx.key),
                        message: format!("{}: unknown generator state {value}; publishing unknown", ctx.key),
                    });
                    Eval::Value(State::Unknown)
                }
            },
        };
    }

    let Some(system) = gx.system() else {
        return Eval::Unavailable;
    };
    let drawing = ["Ac/Genset/L1/Power", "Ac/Genset/L2/Power", "Ac/Genset/L3/Power"]
        .iter()
        .any(|path| system.number(path).is_some());
    if drawing {
        Eval::Value(State::Bool(true))
    } else if ctx.ever_valued {
        Eval::Value(State::Bool(false))
    } else {
        Eval::Unavailable
    }
}

/// Low battery: a low-SOC or low-voltage alarm or warning on the main battery monitor, or
/// a low-battery alarm on the inverter/charger.
fn low_battery(gx: &GxState) -> Eval {
    let mut levels = Vec::new();
    if let Some(battery) = gx.role(Role::MainBattery) {
        levels.extend(alarm_levels(battery, &["Alarms/LowSoc", "Alarms/LowVoltage"]));
    }
    if let Some(inverter) = gx.role(Role::Inverter) {
        levels.extend(alarm_levels(
            inverter,
            &["Alarms/LowBattery", "Alarms/L1/LowBattery", "Alarms/L2/LowBattery", "Alarms/L3/LowBattery"],
        ));
    }
    if levels.is_empty() {
        return Eval::Unavailable;
    }
    Eval::Value(State::Bool(levels.iter().any(|level| *level >= 1)))
}

fn alarm_levels(device: &Device, paths: &[&str]) -> Vec<i64> {
    paths.iter().filter_map(|p| device.alarms.get(*p).copied()).collect()
}

/// Any alarm or warning on any device; the active ones become attributes.
fn system_alarm(gx: &GxState) -> Eval {
    let mut any_alarm_path = false;
    let mut active = Vec::new();
    for device in gx.present_devices() {
        for (path, level) in &device.alarms {
            any_alarm_path = true;
            let level = match level {
                1 => "warning",
                2 => "alarm",
                _ => continue,
            };
            active.push(ActiveAlarm {
                device: device.display_name().unwrap_or("").to_string(),
                service: device.id.label(),
                alarm: path.trim_start_matches("Alarms/").to_string(),
                level,
            });
        }
    }
    if !any_alarm_path {
        return Eval::Unavailable;
    }
    Eval::Value(State::Alarms(active))
}

/// Returns the position of the GPS the GX uses. Without a fix (or before the first one) the
/// tracker is unavailable rather than showing a stale position or 0,0.
fn gps_position(gx: &GxState) -> Eval {
    let Some(gps) = gx.role(Role::Gps) else {
        return Eval::Unavailable;
    };
    let fix = gps.number("Fix") == Some(1.0);
    let (Some(latitude), Some(longitude)) =
        (gps.number("Position/Latitude"), gps.number("Position/Longitude"))
    else {
        return Eval::Unavailable;
    };
    let plausible = latitude.abs() <= 90.0 && longitude.abs() <= 180.0;
    let null_island = latitude == 0.0 && longitude == 0.0;
    if !fix || !plausible || null_island {
        return Eval::Unavailable;
    }
    Eval::Value(State::Location(Location {
        latitude,
        longitude,
        altitude: gps.number("Altitude"),
        course: gps.number("Course"),
        speed: gps.number("Speed"),
        satellites: gps.number("NrOfSatellites"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gx_state::DeviceId;
    use crate::model::paths::PathTable;

    fn generator_with_state(value: GxValue) -> GxState {
        let state_path = PathTable::get().id(ServiceKind::Generator, "State").unwrap();
        let mut gx = GxState::default();
        gx.store(&DeviceId::new(ServiceKind::Generator, "0"), state_path, value);
        gx
    }

    fn evaluate_generator(gx: &GxState, ever_valued: bool) -> Eval {
        let ctx = Context { device: None, ever_valued, key: "generator_running" };
        generator_running(gx, &ctx, &mut Vec::new())
    }

    #[test]
    fn generator_null_state_before_value() {
        let gx = generator_with_state(GxValue::Null);
        assert_eq!(evaluate_generator(&gx, false), Eval::Unavailable);
    }

    #[test]
    fn generator_null_state_after_value() {
        let gx = generator_with_state(GxValue::Null);
        assert_eq!(evaluate_generator(&gx, true), Eval::Value(State::Unknown));
    }

    #[test]
    fn generator_states_map_to_running() {
        let cases = [(0.0, false), (1.0, true), (2.0, true), (3.0, true), (4.0, false), (10.0, false)];
        for (value, running) in cases {
            let gx = generator_with_state(GxValue::Number(value));
            assert_eq!(
                evaluate_generator(&gx, false),
                Eval::Value(State::Bool(running)),
                "generator State {value}"
            );
        }
    }
}
