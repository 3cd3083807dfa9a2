//! The DC side of `system/0`: battery service selection, battery values without a
//! monitor, the `Batteries` list and the DC system power.

use serde_json::{json, Value};

use super::{battery_state, instance_value, Bus, Solar, Values};
use crate::sim::capture::Service;

/// Selects the battery service as systemcalc does: the BatteryService setting, or for
/// `default` its `_autoselect_battery_service` rules.
pub(super) fn select_battery_service<'a>(
    bus: &Bus<'a>,
    has_dc_system: bool,
    dcsystems: &[&'a Service],
) -> Option<&'a Service> {
    let setting = bus
        .setting("BatteryService")
        .and_then(Value::as_str)
        .unwrap_or("default");
    match setting {
        "default" => {}
        "nobattery" => return None,
        chosen => {
            let (class, instance) = chosen.split_once('/')?;
            let service_type = class.rsplit('.').next()?;
            return bus
                .list(service_type)
                .into_iter()
                .find(|s| s.instance == instance);
        }
    }

    // Battery monitors first: BMSes (they publish /Info/MaxChargeVoltage), then Lynx
    // parallel totals, then the lowest instance.
    let mut batteries = bus.connected("battery");
    batteries.sort_by_key(|s| {
        (
            !bus.seen(s, "Info/MaxChargeVoltage"),
            !s.name.starts_with("com.victronenergy.battery.lynxparallel"),
            s.instance.parse::<u64>().unwrap_or(u64::MAX),
        )
    });
    if let Some(first) = batteries.first() {
        return Some(first);
    }
    if !bus.connected("charger").is_empty() {
        return None;
    }

    let Some(vebus) = bus.connected("vebus").into_iter().next() else {
        for service_type in ["acsystem", "multi", "inverter"] {
            if let Some(inverter) = bus.connected(service_type).into_iter().next() {
                if bus.num(inverter, "Soc").is_some() {
                    return Some(inverter);
                }
            }
        }
        return None;
    };
    if bus.num(vebus, "ExtraBatteryCurrent").is_some() && dcsystems.is_empty() && !has_dc_system {
        return Some(vebus);
    }
    if !bus.connected("solarcharger").is_empty() {
        return None;
    }
    Some(vebus)
}

/// Battery voltage, current and power estimated without a battery monitor.
#[allow(clippy::too_many_arguments)]
pub(super) fn battery_without_monitor(
    bus: &Bus<'_>,
    out: &mut Values,
    solar: &Solar,
    charger_power: f64,
    vebus_power: f64,
    dcsystems: &[&Service],
    has_dc_system: bool,
    inverters: &[&Service],
) {
    for path in [
        "TimeToGo",
        "ConsumedAmphours",
        "ProductId",
        "Soc",
        "Temperature",
    ] {
        out.put(&format!("Dc/Battery/{path}"), Value::Null);
    }

    let mut voltage: Option<(f64, String)> = None;
    for vebus in bus.list("vebus") {
        let state = bus.num(vebus, "State");
        if let (Some(v), Some(s)) = (bus.num(vebus, "Dc/0/Voltage"), state) {
            if s != 0.0 {
                voltage = Some((v, vebus.name.clone()));
                break;
            }
        }
    }
    if voltage.is_none() {
        voltage = inverters
            .first()
            .and_then(|i| Some((bus.num(i, "Dc/0/Voltage")?, i.name.clone())))
            .or_else(|| solar.battery_voltage.clone())
            .or_else(|| {
                let meter = dcsystems.first()?;
                Some((bus.num(meter, "Dc/0/Voltage")?, meter.name.clone()))
            });
    }

    out.put("Dc/Battery/Voltage", Value::Null);
    out.put("Dc/Battery/Current", Value::Null);
    out.put("Dc/Battery/Power", Value::Null);
    out.put("Dc/Battery/VoltageService", Value::Null);
    let Some((volts, service)) = voltage else {
        return;
    };
    out.put("Dc/Battery/Voltage", Value::from(volts));
    out.put("Dc/Battery/VoltageService", json!(service));
    if !dcsystems.is_empty() || !has_dc_system {
        let dc_system_power: f64 = dcsystems
            .iter()
            .filter_map(|s| bus.num(s, "Dc/0/Power"))
            .sum();
        let power = solar.charge_power + charger_power + vebus_power - dc_system_power;
        let current = (volts > 0.0).then(|| power / volts);
        out.put_f64("Dc/Battery/Current", current);
        out.put("Dc/Battery/Power", Value::from(power));
    }
}

/// `Dc/System/Power`: measured by dcsystem meters, else estimated when HasDcSystem is on.
#[allow(clippy::too_many_arguments)]
pub(super) fn dc_system(
    bus: &Bus<'_>,
    out: &mut Values,
    dcsystems: &[&Service],
    has_dc_system: bool,
    battery_type: Option<&str>,
    solar: &Solar,
    charger_power: f64,
    vebus_power: f64,
    inverters: &[&Service],
) {
    out.put("Dc/System/Power", Value::Null);
    out.put("Dc/System/MeasurementType", Value::Null);
    if !dcsystems.is_empty() {
        let power = dcsystems
            .iter()
            .filter_map(|s| bus.num(s, "Dc/0/Power"))
            .sum::<f64>();
        out.put("Dc/System/Power", Value::from(power));
        out.put("Dc/System/MeasurementType", json!(1));
    } else if has_dc_system && battery_type == Some("battery") {
        let Some(battery_power) = out.num("Dc/Battery/Power") else {
            return;
        };
        let alternator_power = out.num("Dc/Alternator/Power").unwrap_or(0.0);
        let mut inverter_power = 0.0;
        for inverter in inverters {
            match bus.num(inverter, "Dc/0/Current") {
                Some(current) => {
                    inverter_power += bus.num(inverter, "Dc/0/Voltage").unwrap_or(0.0) * current
                }
                None => {
                    inverter_power -= bus.num(inverter, "Ac/Out/L1/V").unwrap_or(0.0)
                        * bus.num(inverter, "Ac/Out/L1/I").unwrap_or(0.0)
                }
            }
        }
        let power =
            solar.total_power + charger_power + alternator_power + vebus_power + inverter_power
                - battery_power;
        out.put("Dc/System/Power", Value::from(power));
        out.put("Dc/System/MeasurementType", json!(0));
    } else if has_dc_system {
        if let Some(power) = solar.load_output_power {
            out.put("Dc/System/Power", Value::from(power));
            out.put("Dc/System/MeasurementType", json!(0));
        }
    }
}

/// `Batteries`: every battery monitor with a valid voltage, plus the active battery service
/// whatever its type, each as systemcalc's batterydata delegate lists it.
pub(super) fn batteries(bus: &Bus<'_>, active: Option<&Service>) -> Value {
    let is_active = |s: &Service| active.is_some_and(|a| a.name == s.name);
    let mut list = Vec::new();
    for service in bus.services.values() {
        let tracked = match service.service_type.as_str() {
            "battery" => bus.num(service, "Dc/0/Voltage").is_some() || is_active(service),
            "vebus" | "multi" | "inverter" => is_active(service),
            _ => false,
        };
        if !tracked {
            continue;
        }
        let voltage = bus.num(service, "Dc/0/Voltage");
        let current = bus.num(service, "Dc/0/Current");
        let power = bus.num(service, "Dc/0/Power");
        let calculated = voltage.zip(current).map(|(v, i)| v * i);
        let name = bus
            .value(service, "CustomName")
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or_else(|| {
                bus.value(service, "ProductName")
                    .as_str()
                    .map(str::to_string)
            });

        let mut entry = serde_json::Map::new();
        let mut put = |key: &str, value: Value| {
            if !value.is_null() {
                entry.insert(key.to_string(), value);
            }
        };
        put("id", json!(service.name));
        put("instance", instance_value(service));
        put("voltage", bus.value(service, "Dc/0/Voltage"));
        put("current", bus.value(service, "Dc/0/Current"));
        let effective_power = power.filter(|p| *p != 0.0).or(calculated).or(power);
        put("power", effective_power.map_or(Value::Null, Value::from));
        put("temperature", bus.value(service, "Dc/0/Temperature"));
        put("soc", bus.value(service, "Soc"));
        if service.service_type == "battery" {
            put("timetogo", bus.value(service, "TimeToGo"));
            put("bmsstate", bus.value(service, "State"));
        }
        put("name", name.map_or(Value::Null, Value::from));
        put(
            "state",
            power.map_or(Value::Null, |p| json!(battery_state(p))),
        );
        put("active_battery_service", json!(is_active(service)));
        list.push(Value::Object(entry));
    }
    Value::Array(list)
}
