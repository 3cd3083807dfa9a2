//! Evaluates one catalogue row against the GX state.
//!
//! The availability rule: a capability the GX does not have (service absent, or a path it
//! never published with a value) makes the entity unavailable; a capability it has, with a
//! `null` value now, makes the state unknown while the entity stays available. Whether
//! the path was ever published with a value is remembered per entity (`ever_valued`), also
//! across restarts.

use serde::Serialize;

use super::derive;
use super::gx_state::{Device, GxState};
use super::paths::phase_paths;
use super::spec::{EntityDef, ServiceKind, Source, Transform};
use crate::gx::payload::GxValue;

/// The GX's reported cap for time to go: 864000 s (240 h); systemcalc publishes
/// 863999.94 for "practically infinite" on a lightly loaded battery.
const TIME_TO_GO_CAP_S: f64 = 863_999.0;

/// A GPS position with the extras Home Assistant shows as attributes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub satellites: Option<f64>,
}

/// A published state.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Published as `None`: Home Assistant shows "unknown".
    Unknown,
    Number(f64),
    Bool(bool),
    Option(&'static str),
    Location(Location),
    /// The system alarm: on/off plus the active alarms as attributes.
    Alarms(Vec<ActiveAlarm>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveAlarm {
    pub device: String,
    pub service: String,
    pub alarm: String,
    pub level: &'static str,
}

/// The outcome of evaluating an entity.
#[derive(Debug, Clone, PartialEq)]
pub enum Eval {
    /// The capability is missing: the entity is unavailable.
    Unavailable,
    /// Keep whatever was published before (bad input, or a sum that is incomplete).
    Hold,
    Value(State),
}

/// A problem found while evaluating, for the rate-limited log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Distinct problems have distinct keys; repeats share one.
    pub key: String,
    pub message: String,
}

/// Inputs of one evaluation besides the GX state.
pub struct Context<'a> {
    /// The device a per-device entity is bound to.
    pub device: Option<&'a Device>,
    /// The entity has had a value before, so `null` means unknown, not absent.
    pub ever_valued: bool,
    /// The entity key, for problem messages.
    pub key: &'a str,
}

/// A raw input after lookup.
enum Raw<'a> {
    Missing,
    Null,
    Value(&'a GxValue),
    Sum(f64),
}

pub fn evaluate(def: &EntityDef, gx: &GxState, ctx: &Context<'_>, problems: &mut Vec<Problem>) -> Eval {
    if let Source::Derived(derived) = def.source {
        return derive::evaluate(derived, gx, ctx, problems);
    }

    let raw = match fetch(&def.source, gx, ctx) {
        Some(raw) => raw,
        None => return Eval::Hold,
    };

    let value = match raw {
        Raw::Missing => return Eval::Unavailable,
        Raw::Null if ctx.ever_valued => return Eval::Value(State::Unknown),
        Raw::Null => return Eval::Unavailable,
        Raw::Sum(sum) => sum,
        Raw::Value(value) => match value.as_f64() {
            Some(number) => number,
            None => {
                problems.push(Problem {
                    key: format!("type:{}:{}", ctx.key, value.kind()),
                    message: format!(
                        "{}: expected a number, got {}; keeping the last value",
                        ctx.key,
                        value.kind()
                    ),
                });
                return Eval::Hold;
            }
        },
    };

    Eval::Value(apply(def.transform, value, gx, ctx, problems))
}

fn apply(transform: Transform, value: f64, gx: &GxState, ctx: &Context<'_>, problems: &mut Vec<Problem>) -> State {
    match transform {
        Transform::Number | Transform::Derived => State::Number(value),
        Transform::Scale(factor) => State::Number(value * factor),
        Transform::Enum(table) => {
            let code = (value.fract() == 0.0).then_some(value as i64);
            match code.and_then(|c| table.lookup(c)) {
                Some(option) => State::Option(option),
                None => {
                    problems.push(Problem {
                        key: format!("enum:{}:{value}", ctx.key),
                        message: format!(
                            "{}: unknown {} code {value}; publishing unknown",
                            ctx.key, table.name
                        ),
                    });
                    State::Unknown
                }
            }
        }
        Transform::TimeToGo => {
            let discharging = gx
                .system()
                .and_then(|s| s.number("Dc/Battery/State"))
                .map(|state| state == 2.0)
                .unwrap_or(true);
            if !discharging || !(0.0..TIME_TO_GO_CAP_S).contains(&value) {
                State::Unknown
            } else {
                State::Number(value)
            }
        }
    }
}

/// Looks up the raw input of a source. `None` means "hold": a sum with a missing part.
fn fetch<'a>(source: &Source, gx: &'a GxState, ctx: &Context<'a>) -> Option<Raw<'a>> {
    let raw = match *source {
        Source::System(path) => path_of(gx.system(), path),
        Source::SystemPhases(pattern) => phases(gx.system(), pattern),
        Source::Role(role, path) => path_of(gx.role(role), path),
        Source::RoleFirst(role, paths) => {
            let device = gx.role(role);
            let mut raw = Raw::Missing;
            for path in paths {
                raw = path_of(device, path);
                if !matches!(raw, Raw::Missing) {
                    break;
                }
            }
            raw
        }
        Source::RolePhases(role, pattern) => phases(gx.role(role), pattern),
        Source::SumAll(kinds, path) => {
            // A device that has no number (not reported yet, or null) is left out of the
            // sum rather than freezing it. The counter guard detects the change in the set
            // of devices and keeps the total continuous.
            let mut sum = 0.0;
            let mut any = false;
            for device in sum_parts(gx, kinds, path) {
                if let Some(GxValue::Number(n)) = device.value(path) {
                    sum += n;
                    any = true;
                }
            }
            // Devices that publish the path, all null just now: unknown, not unavailable.
            let published = || kinds.iter().flat_map(|kind| gx.of_kind(*kind)).any(|d| d.value(path).is_some());
            if any {
                Raw::Sum(sum)
            } else if published() {
                Raw::Null
            } else {
                Raw::Missing
            }
        }
        Source::Device(path) => path_of(ctx.device, path),
        Source::Derived(_) => Raw::Missing,
    };
    Some(raw)
}

/// The devices of `kinds` whose `path` contains a number: the parts of a sum.
pub fn sum_parts<'a>(gx: &'a GxState, kinds: &'a [ServiceKind], path: &'a str) -> impl Iterator<Item = &'a Device> + 'a {
    kinds
        .iter()
        .flat_map(move |kind| gx.of_kind(*kind))
        .filter(move |device| matches!(device.value(path), Some(GxValue::Number(_))))
}

fn path_of<'a>(device: Option<&'a Device>, path: &str) -> Raw<'a> {
    match device.and_then(|d| d.value(path)) {
        None => Raw::Missing,
        Some(GxValue::Null) => Raw::Null,
        Some(value) => Raw::Value(value),
    }
}

/// Sums the non-null L1..L3 values (L2/L3 are null on single phase); null only when all
/// three are null, missing when none was ever published.
fn phases<'a>(device: Option<&'a Device>, pattern: &'static str) -> Raw<'a> {
    let Some(device) = device else {
        return Raw::Missing;
    };
    let mut sum = 0.0;
    let mut numbers = 0;
    let mut seen = 0;
    for path in phase_paths(pattern) {
        match device.value(path) {
            None => {}
            Some(GxValue::Null) => seen += 1,
            Some(value) => {
                seen += 1;
                if let Some(n) = value.as_f64() {
                    sum += n;
                    numbers += 1;
                } else {
                    return Raw::Value(value);
                }
            }
        }
    }
    match (seen, numbers) {
        (0, _) => Raw::Missing,
        (_, 0) => Raw::Null,
        _ => Raw::Sum(sum),
    }
}
