//! Victron dbus-recorder files (also used by venus-docker simulations).
//!
//! Format: line 1 is the D-Bus service name. Then `path TAB TYPE TAB value TAB text` lines
//! give the initial state, up to a blank line. Change events `time TAB path TAB TYPE TAB
//! value TAB text` follow, with the time in seconds from the start. `ARRAY []` is an invalid value
//! (`null` on MQTT). venus-docker files use CRLF line ends.
//!
//! A venus-docker simulation folder adds `setup` (lines `com.victronenergy.settings
//! /Settings/SystemSetup/<name> <value>`) and `description` (one title line).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::{instance_of, service_type_of, Capture, CaptureKind, ChangeEvent, Service, Setup};

/// One parsed recorder file.
#[derive(Debug, Clone)]
pub struct Recording {
    pub service: Service,
    pub events: Vec<(Duration, String, Value)>,
}

/// Parses one recorder file.
pub fn parse(bytes: &[u8]) -> anyhow::Result<Recording> {
    let text = std::str::from_utf8(bytes).context("recording is not UTF-8")?;
    // A file saved by a Windows editor may start with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().map(|line| line.trim_end_matches('\r'));

    let name = lines.next().unwrap_or("").trim().to_string();
    let service_type = service_type_of(&name)
        .with_context(|| format!("line 1: {name:?} is not a Victron D-Bus service"))?;
    let service_type = service_type.to_string();

    let mut values = BTreeMap::new();
    let mut events = Vec::new();
    let mut in_events = false;
    for (index, line) in lines.enumerate() {
        let line_number = index + 2;
        if line.trim().is_empty() {
            in_events = true;
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if in_events {
            anyhow::ensure!(
                fields.len() >= 4,
                "line {line_number}: change event needs 4 fields"
            );
            let seconds: f64 = fields[0]
                .trim()
                .parse()
                .with_context(|| format!("line {line_number}: invalid time {:?}", fields[0]))?;
            anyhow::ensure!(seconds >= 0.0, "line {line_number}: negative time");
            let value = parse_value(fields[2], fields[3]);
            events.push((Duration::from_secs_f64(seconds), strip(fields[1]), value));
        } else {
            anyhow::ensure!(
                fields.len() >= 3,
                "line {line_number}: initial value needs 3 fields"
            );
            values.insert(strip(fields[0]), parse_value(fields[1], fields[2]));
        }
    }

    let instance = instance_of(&values);
    Ok(Recording {
        service: Service {
            name,
            service_type,
            instance,
            values,
        },
        events,
    })
}

fn strip(path: &str) -> String {
    path.trim().trim_start_matches('/').to_string()
}

/// Converts a recorded D-Bus value to its JSON form: typed integers stay integers, DOUBLE
/// becomes a float, `ARRAY []` becomes `null`.
pub fn parse_value(dbus_type: &str, text: &str) -> Value {
    let text = text.trim();
    match dbus_type.trim() {
        "DOUBLE" => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        "BYTE" | "INT16" | "UINT16" | "INT32" | "UINT32" | "INT64" | "UINT64" | "BOOLEAN" => {
            if let Ok(n) = text.parse::<i64>() {
                Value::from(n)
            } else if let Ok(n) = text.parse::<u64>() {
                Value::from(n)
            } else {
                Value::Null
            }
        }
        "STRING" => Value::String(text.to_string()),
        kind if kind.starts_with("ARRAY") => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) if items.is_empty() => Value::Null,
            Ok(value) => value,
            Err(_) => Value::Null,
        },
        _ => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())),
    }
}

/// Parses a `setup` file.
pub fn parse_setup(bytes: &[u8]) -> Setup {
    let mut setup = Setup::default();
    for line in String::from_utf8_lossy(bytes).lines() {
        let fields: Vec<&str> = line.trim_start_matches('\u{feff}').split_whitespace().collect();
        if fields.len() < 3 || fields[0] != "com.victronenergy.settings" {
            continue;
        }
        let value = fields[2];
        match fields[1] {
            "/Settings/SystemSetup/AcInput1" => setup.ac_input[0] = value.parse().ok(),
            "/Settings/SystemSetup/AcInput2" => setup.ac_input[1] = value.parse().ok(),
            "/Settings/SystemSetup/HasDcSystem" => setup.has_dc_system = value.parse().ok(),
            "/Settings/SystemSetup/BatteryService" => {
                setup.battery_service = Some(value.to_string())
            }
            _ => {}
        }
    }
    setup
}

/// Builds a capture from recorder files. Every `*.csv` is one service, and files whose
/// names end in `setup` and `description` add the settings and the title.
pub fn load_set(
    name: &str,
    files: &[(&str, &[u8])],
    portal_id: Option<&str>,
) -> anyhow::Result<Capture> {
    let mut capture = Capture {
        name: name.to_string(),
        description: String::new(),
        kind: CaptureKind::Recorder,
        portal_id: portal_id.unwrap_or(DEFAULT_PORTAL_ID).to_string(),
        services: Vec::new(),
        events: Vec::new(),
        setup: Setup::default(),
    };

    let csv_count = files.iter().filter(|(file_name, _)| file_name.ends_with(".csv")).count();
    for (file_name, bytes) in files {
        if file_name.ends_with("setup") {
            capture.setup = parse_setup(bytes);
        } else if file_name.ends_with("description") {
            capture.description = String::from_utf8_lossy(bytes).trim_start_matches('\u{feff}').trim().to_string();
        } else if file_name.ends_with(".csv") {
            // In a folder, a file that is not a recording (notes, an export of something
            // else) is skipped. A capture of one file must be valid.
            let recording = match parse(bytes).with_context(|| format!("in {file_name}")) {
                Ok(recording) => recording,
                Err(error) if csv_count > 1 => {
                    tracing::warn!(file = file_name, "skipping a file that is not a D-Bus recording: {error:#}");
                    continue;
                }
                Err(error) => return Err(error),
            };
            let index = capture.services.len();
            for (at, path, value) in recording.events {
                capture.events.push(ChangeEvent {
                    at,
                    service: index,
                    path,
                    value,
                });
            }
            capture.services.push(recording.service);
        }
    }
    anyhow::ensure!(!capture.services.is_empty(), "no valid recorder .csv file found");

    // A stable sort keeps the file order of events recorded in the same second.
    capture.events.sort_by_key(|event| event.at);
    Ok(capture)
}

/// Portal id for recordings loaded from a path: fictional, in Victron's MAC block shape.
pub const DEFAULT_PORTAL_ID: &str = "c0619ab0f11e";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_initial_state_and_events() {
        let file = b"com.victronenergy.tank.adc_builtin0_3\r\n/DeviceInstance\tUINT32\t22\t22\r\n/Level\tDOUBLE\t17.5\t17.5%\r\n/Serial\tARRAY\t[]\t\r\n/CustomName\tSTRING\tBlack water\tBlack water\r\n\r\n2\t/Level\tINT32\t18\t18%\r\n0.5\t/Serial\tARRAY[BYTE]\t[1, 2]\tbuffer\r\n";
        let recording = parse(file).unwrap();
        assert_eq!(recording.service.service_type, "tank");
        assert_eq!(recording.service.instance, "22");
        assert_eq!(recording.service.values["Level"], json!(17.5));
        assert_eq!(recording.service.values["Serial"], Value::Null);
        assert_eq!(recording.service.values["CustomName"], json!("Black water"));
        assert_eq!(recording.events.len(), 2);
        assert_eq!(
            recording.events[0],
            (Duration::from_secs(2), "Level".into(), json!(18))
        );
        assert_eq!(recording.events[1].2, json!([1, 2]));
    }

    #[test]
    fn parses_setup() {
        let setup = parse_setup(
            b"com.victronenergy.settings /Settings/SystemSetup/BatteryService default\n\
              com.victronenergy.settings /Settings/SystemSetup/HasDcSystem 1\n\
              com.victronenergy.settings /Settings/SystemSetup/AcInput1 3\n",
        );
        assert_eq!(setup.ac_input, [Some(3), None]);
        assert_eq!(setup.has_dc_system, Some(1));
        assert_eq!(setup.battery_service.as_deref(), Some("default"));
    }

    #[test]
    fn rejects_a_file_without_service_name() {
        assert!(parse(b"/Level\tDOUBLE\t1\t1\n").is_err());
    }

    #[test]
    fn byte_order_mark_and_stray_file() {
        let tank = "\u{feff}com.victronenergy.tank.adc0\r\n/DeviceInstance\tINT32\t20\t20\r\n/Level\tDOUBLE\t51\t51%\r\n";
        let notes = "my notes about this boat\n";
        let set = load_set("t", &[("notes.csv", notes.as_bytes()), ("tank.csv", tank.as_bytes())], None).unwrap();
        assert_eq!(set.services.len(), 1, "the notes file is skipped");
        assert_eq!(set.services[0].values["Level"], json!(51.0));
        // A capture of that one file alone is an error, not an empty GX.
        assert!(load_set("t", &[("notes.csv", notes.as_bytes())], None).is_err());
    }
}
