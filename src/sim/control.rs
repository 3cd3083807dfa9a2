//! Control lines: the text form of the scenario commands, read from standard input by
//! `simulate` and given with `--at SECONDS:LINE`.
//!
//! ```text
//! set SUFFIX JSON         set an item, e.g. `set battery/275/Soc 55.5`
//! null SUFFIX             make an item invalid ({"value": null})
//! remove TYPE/INSTANCE    the device leaves (zero-byte payloads)
//! restore TYPE/INSTANCE   the device returns with its values
//! expire                  end the keepalive session now
//! freeze | thaw           stop or resume all output (TCP stays up)
//! reboot [SECONDS]        drop the connection and state, reconnect after SECONDS (10)
//! status                  print the counters
//! quit                    stop the simulator
//! ```

use std::time::Duration;

use serde_json::Value;

use super::capture::Capture;
use super::handle::Command;

/// A parsed control line.
#[derive(Debug)]
pub enum Control {
    Command(Command),
    Status,
    Quit,
}

/// Parses one control line; the error names the problem and the expected form.
pub fn parse_line(line: &str) -> Result<Control, String> {
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let control = match word {
        "set" => {
            let (suffix, json) = rest
                .split_once(char::is_whitespace)
                .ok_or("expected: set TYPE/INSTANCE/PATH JSON")?;
            let value: Value = serde_json::from_str(json.trim())
                .map_err(|err| format!("invalid JSON value {json:?}: {err}"))?;
            Control::Command(Command::Set {
                suffix: checked_suffix(suffix)?,
                value,
            })
        }
        "null" => Control::Command(Command::Set {
            suffix: checked_suffix(rest)?,
            value: Value::Null,
        }),
        "remove" | "restore" => {
            let (service_type, instance) = rest
                .split_once('/')
                .filter(|(t, i)| !t.is_empty() && !i.is_empty() && !i.contains('/'))
                .ok_or_else(|| format!("expected: {word} TYPE/INSTANCE, e.g. battery/275"))?;
            let (service_type, instance) = (service_type.to_string(), instance.to_string());
            if word == "remove" {
                Control::Command(Command::RemoveDevice {
                    service_type,
                    instance,
                })
            } else {
                Control::Command(Command::RestoreDevice {
                    service_type,
                    instance,
                })
            }
        }
        "expire" => Control::Command(Command::ExpireKeepalive),
        "freeze" => Control::Command(Command::Freeze),
        "thaw" => Control::Command(Command::Thaw),
        "reboot" => {
            let seconds = if rest.is_empty() {
                10.0
            } else {
                rest.parse::<f64>()
                    .ok()
                    .filter(|s| *s >= 0.0 && s.is_finite())
                    .ok_or_else(|| format!("invalid reboot time {rest:?}: expected seconds"))?
            };
            Control::Command(Command::Reboot {
                down: Duration::from_secs_f64(seconds),
            })
        }
        "status" => Control::Status,
        "quit" | "exit" => Control::Quit,
        _ => {
            return Err(format!(
                "unknown control line {line:?}: expected set, null, remove, restore, expire, \
                 freeze, thaw, reboot, status or quit"
            ))
        }
    };
    Ok(control)
}

fn checked_suffix(suffix: &str) -> Result<String, String> {
    let suffix = suffix.trim();
    if suffix
        .splitn(3, '/')
        .filter(|part| !part.is_empty())
        .count()
        < 3
    {
        return Err(format!(
            "invalid item {suffix:?}: expected TYPE/INSTANCE/PATH"
        ));
    }
    Ok(suffix.to_string())
}

/// Parses `SECONDS:LINE` of `--at`.
pub fn parse_at(text: &str) -> Result<(Duration, String), String> {
    let (seconds, line) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid --at {text:?}: expected SECONDS:LINE"))?;
    let seconds: f64 = seconds
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| *s >= 0.0 && s.is_finite())
        .ok_or_else(|| format!("invalid --at time {seconds:?}: expected seconds"))?;
    parse_line(line)?;
    Ok((Duration::from_secs_f64(seconds), line.trim().to_string()))
}

/// Returns the timed control lines of a `--scenario` preset for this capture.
pub fn preset(name: &str, capture: &Capture) -> Result<Vec<(Duration, String)>, String> {
    let at = |secs: u64, line: String| (Duration::from_secs(secs), line);
    let lines = match name {
        "device-leaves" => {
            let battery = capture
                .services
                .iter()
                .find(|s| s.service_type == "battery")
                .ok_or_else(|| {
                    format!("capture {} has no battery monitor to remove", capture.name)
                })?;
            let device = format!("{}/{}", battery.service_type, battery.instance);
            vec![
                at(20, format!("remove {device}")),
                at(40, format!("restore {device}")),
            ]
        }
        "null-soc" => vec![at(20, "null system/0/Dc/Battery/Soc".into())],
        "reboot" => vec![at(20, "reboot 10".into())],
        "expire" => vec![at(20, "expire".into())],
        "freeze" => vec![at(20, "freeze".into()), at(50, "thaw".into())],
        _ => {
            return Err(format!(
            "unknown scenario {name:?}: expected device-leaves, null-soc, reboot, expire or freeze"
        ))
        }
    };
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines() {
        assert!(matches!(
            parse_line("set battery/275/Soc 55.5"),
            Ok(Control::Command(Command::Set { ref suffix, ref value })) if suffix == "battery/275/Soc" && *value == serde_json::json!(55.5)
        ));
        assert!(matches!(
            parse_line("null system/0/Dc/Battery/Soc"),
            Ok(Control::Command(Command::Set {
                value: Value::Null,
                ..
            }))
        ));
        assert!(matches!(
            parse_line("remove battery/275"),
            Ok(Control::Command(Command::RemoveDevice { .. }))
        ));
        assert!(
            matches!(parse_line("reboot 2.5"), Ok(Control::Command(Command::Reboot { down })) if down == Duration::from_millis(2500))
        );
        assert!(matches!(parse_line("status"), Ok(Control::Status)));
        assert!(parse_line("remove battery").is_err());
        assert!(parse_line("set battery/275 1").is_err());
        assert!(parse_line("set battery/275/Soc {").is_err());
        assert!(parse_line("dance").is_err());
    }

    #[test]
    fn at_and_presets() {
        let (time, line) = parse_at("30:remove battery/275").unwrap();
        assert_eq!(time, Duration::from_secs(30));
        assert_eq!(line, "remove battery/275");
        assert!(parse_at("x:expire").is_err());
        let capture = Capture::load("boat").unwrap();
        let lines = preset("device-leaves", &capture).unwrap();
        assert_eq!(lines[0].1, "remove battery/275");
        assert!(preset("nope", &capture).is_err());
    }
}
