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

mod ac;
mod battery;

use ac::{ac_flows, ac_in_source, pv_inverters};
use battery::{batteries, battery_without_monitor, dc_system, select_battery_service};

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
