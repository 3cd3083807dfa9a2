//! The `system/0` aggregates for captures recorded at D-Bus level, computed the way
//! Victron's dbus-systemcalc-py (v2.256) does for the paths the bridge reads.
//!
//! Simplifications, each a place where the simulator can differ from a real GX:
//! * the main VE.Bus device is the connected vebus service with the lowest instance (the
//!   GX prefers its built-in MK3 port);
//! * ESS states, DVCC, BatteryLife and the GPS speed average are not computed;
//! * the caller ([`crate::sim::gx::Gx`]) recomputes at every change, where systemcalc does
//!   it at most once a second and refreshes `Batteries` every 5 s.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::capture::Service;

type Services = BTreeMap<(String, String), Service>;

/// Computes the `system/0` items (path without leading slash to value). `null` marks an
/// item that exists but is invalid, as systemcalc publishes it.
pub fn compute(services: &Services, portal_id: &str) -> BTreeMap<String, Value> {
    let bus = Bus { services };
    let mut out = Values::default();
    out.put("Serial", json!(portal_id));

    let has_dc_system = bus.setting("HasDcSystem").and_then(Value::as_i64) == Some(1);
    let dcsystems = bus.list("dcsystem");
    let vebus_power: f64 = bus
        .list("vebus")
        .iter()
        .filter_map(|v| Some(bus.num(v, "Dc/0/Voltage")? * bus.num(v, "Dc/0/Current")?))
        .sum();

    pv_inverters(&bus, &mut out);
    let solar = solar_chargers(&bus, &mut out);
    alternators(&bus, &mut out);
    let charger_power = chargers(&bus, &mut out);

    let multi = main_multi(&bus);
    let inverters = other_inverters(&bus);
    for inverter in &inverters {
        if let Some(pv_yield) = bus.num(inverter, "Yield/Power") {
            out.add("Dc/Pv/Power", pv_yield);
            if let Some(voltage) = bus.num(inverter, "Dc/0/Voltage").filter(|v| *v != 0.0) {
                out.add("Dc/Pv/Current", pv_yield / voltage);
            }
        }
    }

    // ==== battery ====
    let battery_service = select_battery_service(&bus, has_dc_system, &dcsystems);
    let battery_type = battery_service.map(|s| s.service_type.as_str());
    match battery_service {
        Some(service) => {
            out.put("Dc/Battery/TimeToGo", bus.value(service, "TimeToGo"));
            out.put(
                "Dc/Battery/ConsumedAmphours",
                bus.value(service, "ConsumedAmphours"),
            );
            out.put("Dc/Battery/ProductId", bus.value(service, "ProductId"));
            if service.service_type == "vebus" {
                let voltage = bus.num(service, "Dc/0/Voltage");
                let current = bus.num(service, "Dc/0/Current");
                let power = voltage.zip(current).map(|(v, i)| v * i);
                out.put("Dc/Battery/Voltage", bus.value(service, "Dc/0/Voltage"));
                out.put("Dc/Battery/VoltageService", json!(service.name));
                if has_dc_system || !dcsystems.is_empty() {
                    out.put_f64("Dc/Battery/Current", current);
                    out.put_f64("Dc/Battery/Power", power);
                } else {
                    let battery_power = safe_add(&[Some(solar.charge_power), power]);
                    let current = voltage
                        .filter(|v| *v > 0.0)
                        .zip(battery_power)
                        .map(|(v, p)| p / v);
                    out.put_f64("Dc/Battery/Current", current);
                    out.put_f64("Dc/Battery/Power", battery_power);
                }
            } else {
                out.put("Dc/Battery/Voltage", bus.value(service, "Dc/0/Voltage"));
                out.put("Dc/Battery/Current", bus.value(service, "Dc/0/Current"));
                out.put("Dc/Battery/Power", bus.value(service, "Dc/0/Power"));
                out.put("Dc/Battery/VoltageService", json!(service.name));
            }
            if let Some(power) = out.num("Dc/Battery/Power") {
                out.put("Dc/Battery/State", json!(battery_state(power)));
            }
            out.put("Dc/Battery/Soc", bus.value(service, "Soc"));
            let temperature = bus.num(service, "Dc/0/Temperature");
            out.put_f64("Dc/Battery/Temperature", temperature);
            if temperature.is_some() {
                out.put("Dc/Battery/TemperatureService", json!(service.name));
            }
        }
        None => battery_without_monitor(
            &bus,
            &mut out,
            &solar,
            charger_power,
            vebus_power,
            &dcsystems,
            has_dc_system,
            &inverters,
        ),
    }
    out.put(
        "Dc/Battery/BatteryService",
        battery_service.map_or(Value::Null, |s| json!(s.name)),
    );
    out.put(
        "ActiveBatteryService",
        battery_service.map_or(Value::Null, |s| json!(active_id(s))),
    );
    out.put("Batteries", batteries(&bus, battery_service));

    dc_system(
        &bus,
        &mut out,
        &dcsystems,
        has_dc_system,
        battery_type,
        &solar,
        charger_power,
        vebus_power,
        &inverters,
    );
    let source = ac_in_source(&bus, multi, &inverters);
    out.put(
        "Ac/ActiveIn/Source",
        source.map_or(Value::Null, Value::from),
    );
    ac_flows(&bus, &mut out, multi, &inverters, source);

    out.put("VebusService", multi.map_or(Value::Null, |m| json!(m.name)));
    out.put("VebusInstance", multi.map_or(Value::Null, instance_value));
    out.put("SystemState/State", system_state(&bus, multi));
    out.put("GpsService", gps_service(&bus));

    out.0
}

/// Read access to the services, as systemcalc's dbusmonitor gives it.
struct Bus<'a> {
    services: &'a Services,
}

impl<'a> Bus<'a> {
    /// Services of one type, by ascending numeric instance.
    fn list(&self, service_type: &str) -> Vec<&'a Service> {
        let mut list: Vec<&Service> = self
            .services
            .values()
            .filter(|s| s.service_type == service_type)
            .collect();
        list.sort_by_key(|s| {
            (
                s.instance.parse::<u64>().unwrap_or(u64::MAX),
                s.instance.clone(),
            )
        });
        list
    }

    /// systemcalc's `_get_connected_service_list`: `/Connected` is 1 and `/ProductName`
    /// and `/Mgmt/Connection` are valid.
    fn connected(&self, service_type: &str) -> Vec<&'a Service> {
        self.list(service_type)
            .into_iter()
            .filter(|s| {
                self.value(s, "Connected").as_i64() == Some(1)
                    && !self.value(s, "ProductName").is_null()
                    && !self.value(s, "Mgmt/Connection").is_null()
            })
            .collect()
    }

    fn value(&self, service: &Service, path: &str) -> Value {
        service.values.get(path).cloned().unwrap_or(Value::Null)
    }

    fn num(&self, service: &Service, path: &str) -> Option<f64> {
        service.values.get(path).and_then(Value::as_f64)
    }

    fn seen(&self, service: &Service, path: &str) -> bool {
        service.values.contains_key(path)
    }

    fn setting(&self, name: &str) -> Option<&'a Value> {
        let settings = self
            .services
            .get(&("settings".to_string(), "0".to_string()))?;
        settings.values.get(&format!("Settings/SystemSetup/{name}"))
    }
}

#[derive(Default)]
struct Values(BTreeMap<String, Value>);

impl Values {
    fn put(&mut self, path: &str, value: Value) {
        self.0.insert(path.to_string(), value);
    }

    fn put_f64(&mut self, path: &str, value: Option<f64>) {
        self.put(path, value.map_or(Value::Null, Value::from));
    }

    fn num(&self, path: &str) -> Option<f64> {
        self.0.get(path).and_then(Value::as_f64)
    }

    /// Adds to a sum that starts as absent (`safeadd` in systemcalc).
    fn add(&mut self, path: &str, value: f64) {
        let sum = self.num(path).unwrap_or(0.0) + value;
        self.put(path, Value::from(sum));
    }
}

/// Sum of the present values; `None` when all are absent.
fn safe_add(values: &[Option<f64>]) -> Option<f64> {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    (!present.is_empty()).then(|| present.iter().sum())
}

/// 0 idle, 1 charging, 2 discharging, with systemcalc's 30 W dead band.
fn battery_state(power: f64) -> i64 {
    if power > 30.0 {
        1
    } else if power < -30.0 {
        2
    } else {
        0
    }
}

fn instance_value(service: &Service) -> Value {
    service
        .instance
        .parse::<i64>()
        .map_or_else(|_| json!(service.instance), Value::from)
}

/// `com.victronenergy.battery/275`, the form of `ActiveBatteryService`.
fn active_id(service: &Service) -> String {
    format!(
        "com.victronenergy.{}/{}",
        service.service_type, service.instance
    )
}

struct Solar {
    charge_power: f64,
    total_power: f64,
    load_output_power: Option<f64>,
    battery_voltage: Option<(f64, String)>,
}

fn solar_chargers(bus: &Bus<'_>, out: &mut Values) -> Solar {
    let mut solar = Solar {
        charge_power: 0.0,
        total_power: 0.0,
        load_output_power: None,
        battery_voltage: None,
    };
    for charger in bus.list("solarcharger") {
        let (Some(voltage), Some(current)) = (
            bus.num(charger, "Dc/0/Voltage"),
            bus.num(charger, "Dc/0/Current"),
        ) else {
            continue;
        };
        // A missing /Load/I counts as 0; a present but invalid one as absent.
        let load = if bus.seen(charger, "Load/I") {
            bus.num(charger, "Load/I")
        } else {
            Some(0.0)
        };
        if let Some(load) = load {
            solar.load_output_power = Some(solar.load_output_power.unwrap_or(0.0) + load * voltage);
        }
        let total_current = current + load.unwrap_or(0.0);
        solar.charge_power += voltage * current;
        solar.total_power += voltage * total_current;
        out.add("Dc/Pv/Power", voltage * total_current);
        out.add("Dc/Pv/Current", total_current);
        solar
            .battery_voltage
            .get_or_insert((voltage, charger.name.clone()));
    }
    if out.num("Dc/Pv/Power").is_none() {
        out.put("Dc/Pv/Power", Value::Null);
        out.put("Dc/Pv/Current", Value::Null);
    }
    solar
}

fn alternators(bus: &Bus<'_>, out: &mut Values) {
    out.put("Dc/Alternator/Power", Value::Null);
    for alternator in bus.list("alternator") {
        if let Some(power) = bus.num(alternator, "Dc/0/Power") {
            out.add("Dc/Alternator/Power", power);
        }
    }
    for genset in bus.list("dcgenset") {
        let power = bus
            .num(genset, "Dc/0/Power")
            .or_else(|| Some(bus.num(genset, "Dc/0/Voltage")? * bus.num(genset, "Dc/0/Current")?));
        if let Some(power) = power {
            out.add("Dc/Alternator/Power", power);
        }
    }
}

/// AC chargers (`charger` services): `Dc/Charger/Power`. Returns their power, 0 if none.
fn chargers(bus: &Bus<'_>, out: &mut Values) -> f64 {
    out.put("Dc/Charger/Power", Value::Null);
    for charger in bus.list("charger") {
        if let (Some(v), Some(i)) = (
            bus.num(charger, "Dc/0/Voltage"),
            bus.num(charger, "Dc/0/Current"),
        ) {
            out.add("Dc/Charger/Power", v * i);
        }
    }
    out.num("Dc/Charger/Power").unwrap_or(0.0)
}

fn pv_inverters(bus: &Bus<'_>, out: &mut Values) {
    for inverter in bus.list("pvinverter") {
        let position = match bus.num(inverter, "Position").map(|p| p as i64) {
            Some(1) => "Ac/PvOnOutput",
            Some(p @ (0 | 2)) => {
                let setting = if p == 0 { "AcInput1" } else { "AcInput2" };
                match bus.setting(setting).and_then(Value::as_i64) {
                    Some(1 | 3) => "Ac/PvOnGrid",
                    Some(2) => "Ac/PvOnGenset",
                    _ => continue,
                }
            }
            _ => continue,
        };
        for phase in 1..=3 {
            if let Some(power) = bus.num(inverter, &format!("Ac/L{phase}/Power")) {
                out.add(&format!("{position}/L{phase}/Power"), power);
            }
        }
    }
}

/// The main VE.Bus inverter/charger: the lowest-instance vebus service that is connected.
fn main_multi<'a>(bus: &Bus<'a>) -> Option<&'a Service> {
    bus.list("vebus")
        .into_iter()
        .find(|s| bus.value(s, "Connected").as_i64() == Some(1))
}

/// Inverter/chargers not on VE.Bus: `multi` (Multi RS) then `inverter`, by instance.
fn other_inverters<'a>(bus: &Bus<'a>) -> Vec<&'a Service> {
    let mut list = bus.list("multi");
    list.extend(bus.list("inverter"));
    list
}

/// systemcalc `_autoselect_battery_service` and the BatteryService setting.
fn select_battery_service<'a>(
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
fn battery_without_monitor(
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
fn dc_system(
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

/// `Ac/ActiveIn/Source`: the configured type of the active input, 240 when inverting.
fn ac_in_source(bus: &Bus<'_>, multi: Option<&Service>, inverters: &[&Service]) -> Option<i64> {
    if let Some(multi) = multi {
        return match bus.num(multi, "Ac/ActiveIn/ActiveInput").map(|v| v as i64) {
            Some(240) => Some(240),
            Some(input) => bus
                .setting(&format!("AcInput{}", input + 1))
                .and_then(Value::as_i64),
            None => None,
        };
    }
    let inverter = inverters.first()?;
    let input = bus
        .num(inverter, "Ac/ActiveIn/ActiveInput")
        .map(|v| v as i64);
    let source = match input {
        Some(n @ (0 | 1)) => bus
            .num(inverter, &format!("Ac/In/{}/Type", n + 1))
            .map(|v| v as i64),
        _ => None,
    };
    Some(source.unwrap_or(240))
}

/// `Ac/Grid`, `Ac/Genset`, `Ac/ActiveIn` and `Ac/ConsumptionOnOutput` per phase.
fn ac_flows(
    bus: &Bus<'_>,
    out: &mut Values,
    multi: Option<&Service>,
    inverters: &[&Service],
    source: Option<i64>,
) {
    let grid_meter = bus.list("grid").into_iter().next();
    let genset_meter = bus.list("genset").into_iter().next();
    let active_input = match multi {
        Some(m) => bus.num(m, "Ac/ActiveIn/ActiveInput").map(|v| v as i64),
        None => inverters
            .first()
            .and_then(|i| bus.num(i, "Ac/ActiveIn/ActiveInput"))
            .map(|v| v as i64),
    };
    let mut guess = source;
    if matches!(guess, None | Some(240)) {
        guess = match (grid_meter.is_some(), genset_meter.is_some()) {
            (true, false) => Some(1),
            (false, true) => Some(2),
            _ => guess,
        };
    }

    let mut consumption_on_input: [Option<f64>; 3] = [None; 3];
    for (kind, meter, types) in [
        ("Grid", grid_meter, &[1, 3][..]),
        ("Genset", genset_meter, &[2][..]),
    ] {
        let uses_active_input = source.is_some_and(|s| types.contains(&s));
        for phase in 1..=3 {
            let pv_power = out.num(&format!("Ac/PvOn{kind}/L{phase}/Power"));
            let multi_in = multi.and_then(|m| bus.num(m, &format!("Ac/ActiveIn/L{phase}/P")));
            let inverters_in = || {
                let n = active_input.filter(|n| *n == 0 || *n == 1)? + 1;
                safe_add(
                    &inverters
                        .iter()
                        .map(|i| bus.num(i, &format!("Ac/In/{n}/L{phase}/P")))
                        .collect::<Vec<_>>(),
                )
            };
            let power = match meter {
                Some(meter) => {
                    let metered = bus.num(meter, &format!("Ac/L{phase}/Power"));
                    let mut flow: Option<f64> = None;
                    if uses_active_input {
                        flow = safe_add(&[flow, multi_in.map(|p| -p), inverters_in().map(|p| -p)]);
                    }
                    let flow = safe_add(&[flow, metered, pv_power]);
                    let slot = &mut consumption_on_input[phase - 1];
                    *slot = safe_add(&[*slot, flow.map(|c| c.max(0.0))]);
                    metered
                }
                None => {
                    let mut power = None;
                    if uses_active_input {
                        power = safe_add(&[multi_in, inverters_in()]);
                    }
                    match (power, pv_power) {
                        (power, Some(pv)) => safe_add(&[power, Some(-pv)]),
                        (power, None) => power,
                    }
                }
            };
            out.put_f64(&format!("Ac/{kind}/L{phase}/Power"), power);
            if guess.is_some_and(|g| types.contains(&g)) {
                out.put_f64(&format!("Ac/ActiveIn/L{phase}/Power"), power);
            }
        }
        number_of_phases(out, &format!("Ac/{kind}"));
    }
    for phase in 1..=3 {
        let path = format!("Ac/ActiveIn/L{phase}/Power");
        if !out.0.contains_key(&path) {
            out.put(&path, Value::Null);
        }
    }
    number_of_phases(out, "Ac/ActiveIn");

    // Loads on AC-out: the inverter/charger outputs plus AC-coupled PV on the output
    // (HasAcOutSystem defaults to 1 in systemcalc).
    for phase in 1..=3 {
        let mut loads = out.num(&format!("Ac/PvOnOutput/L{phase}/Power"));
        if let Some(multi) = multi {
            loads = safe_add(&[loads, bus.num(multi, &format!("Ac/Out/L{phase}/P"))]);
        }
        for inverter in inverters {
            let output = bus
                .num(inverter, &format!("Ac/Out/L{phase}/P"))
                .or_else(|| bus.num(inverter, &format!("Ac/Out/L{phase}/S")))
                .or_else(|| {
                    Some(
                        bus.num(inverter, &format!("Ac/Out/L{phase}/V"))?
                            * bus.num(inverter, &format!("Ac/Out/L{phase}/I"))?,
                    )
                });
            loads = safe_add(&[loads, output]);
        }
        let loads = loads.map(|l| l.max(0.0));
        out.put_f64(&format!("Ac/ConsumptionOnOutput/L{phase}/Power"), loads);
        let total = safe_add(&[consumption_on_input[phase - 1], loads]);
        out.put_f64(&format!("Ac/Consumption/L{phase}/Power"), total);
    }
    number_of_phases(out, "Ac/ConsumptionOnOutput");
    number_of_phases(out, "Ac/Consumption");
}

/// `<prefix>/NumberOfPhases`: the highest phase with a valid power.
fn number_of_phases(out: &mut Values, prefix: &str) {
    let phases = (1..=3)
        .filter(|p| out.num(&format!("{prefix}/L{p}/Power")).is_some())
        .max();
    out.put(
        &format!("{prefix}/NumberOfPhases"),
        phases.map_or(Value::Null, Value::from),
    );
}

/// `SystemState/State` without ESS: the VE.Bus state, else the first acsystem or inverter
/// state (systemcalc does not look at `multi` services here), else 0.
fn system_state(bus: &Bus<'_>, multi: Option<&Service>) -> Value {
    if let Some(multi) = multi {
        return bus.value(multi, "State");
    }
    let mut candidates = bus.list("acsystem");
    candidates.extend(bus.list("inverter"));
    match candidates.first() {
        Some(inverter) => bus.value(inverter, "State"),
        None => json!(0),
    }
}

/// Returns the D-Bus name of the first GPS by instance that has a fix.
fn gps_service(bus: &Bus<'_>) -> Value {
    bus.list("gps")
        .into_iter()
        .find(|g| bus.num(g, "Fix").is_some_and(|f| f != 0.0))
        .map_or(Value::Null, |g| json!(g.name))
}

/// `Batteries`: every battery monitor with a valid voltage, plus the active battery service
/// whatever its type, each as systemcalc's batterydata delegate lists it.
fn batteries(bus: &Bus<'_>, active: Option<&Service>) -> Value {
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
