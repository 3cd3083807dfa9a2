//! Entity states as Home Assistant reads them from MQTT.
//!
//! Numeric sensors get a number or the literal `None` (shown as unknown), never text:
//! Home Assistant rejects a non-numeric state on a sensor with a unit or device class.
//! Binary sensors get `ON`/`OFF`, enum sensors one of their `options`.

use serde_json::json;

use crate::model::eval::State;
use crate::model::registry::Entity;

/// The payloads for one entity: state topic and attributes topic (either may be absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payloads {
    pub state: Option<String>,
    pub attributes: Option<String>,
}

pub fn payloads(entity: &Entity, state: &State) -> Payloads {
    let precision = entity.def.precision;
    match state {
        State::Unknown => Payloads { state: Some("None".into()), attributes: None },
        State::Number(value) => Payloads { state: Some(format_number(*value, precision)), attributes: None },
        State::Bool(on) => Payloads { state: Some(if *on { "ON" } else { "OFF" }.into()), attributes: None },
        State::Option(option) => Payloads { state: Some((*option).to_string()), attributes: None },
        State::Location(location) => {
            let mut attributes = serde_json::to_value(location).unwrap_or_default();
            if let Some(map) = attributes.as_object_mut() {
                map.insert("gps_accuracy".into(), json!(0));
            }
            Payloads { state: None, attributes: Some(attributes.to_string()) }
        }
        State::Alarms(alarms) => Payloads {
            state: Some(if alarms.is_empty() { "OFF" } else { "ON" }.into()),
            attributes: Some(json!({ "alarms": alarms, "count": alarms.len() }).to_string()),
        },
    }
}

/// Rounds to one decimal more than the display precision (statistics keep that detail),
/// and drops trailing zeros: 13.699999809265137 with precision 2 gives `13.7`.
pub fn format_number(value: f64, precision: Option<u8>) -> String {
    if !value.is_finite() {
        return "None".into();
    }
    let decimals = precision.map(|p| p as usize + 1).unwrap_or(3).min(6);
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    if text == "-0" {
        text = "0".into();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        assert_eq!(format_number(13.699999809265137, Some(2)), "13.7");
        assert_eq!(format_number(100.0, Some(0)), "100");
        assert_eq!(format_number(-64.38999938964844, Some(0)), "-64.4");
        assert_eq!(format_number(-0.01, Some(0)), "0");
        assert_eq!(format_number(0.10999999940395357, Some(2)), "0.11");
        assert_eq!(format_number(f64::NAN, Some(0)), "None");
        assert_eq!(format_number(52.9, None), "52.9");
    }
}
