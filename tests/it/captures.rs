//! Every real capture, replayed by the simulated GX, gives the entities and values the
//! capture implies.
//!
//! `tests/golden/coverage.json` is the committed table of entity x capture: for each
//! capture, the entities it covers. Each cell is checked both ways: a covered entity is in
//! the discovery message, available, with the value computed here from the capture (an
//! implementation of the documented transforms that does not share code with the
//! bridge); an uncovered one is absent from discovery or unavailable. The discovery
//! message of each capture is compared with `tests/golden/discovery/<capture>.json`, so an
//! id, unit or class can never change by accident. `UPDATE_GOLDEN=1` rewrites both files
//! from the current behaviour, for review in the diff.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use roamcore_victron::sim::capture::Capture;
use roamcore_victron::sim::{SimConfig, Simulator};

use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::observer::Observer;

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

type Truth = BTreeMap<String, Value>;

fn number(truth: &Truth, key: &str) -> Option<f64> {
    truth.get(key).and_then(Value::as_f64)
}

fn text<'a>(truth: &'a Truth, key: &str) -> Option<&'a str> {
    truth.get(key).and_then(Value::as_str)
}

/// Instances of a service type present in the truth, numerically sorted.
fn instances(truth: &Truth, service: &str) -> Vec<String> {
    let mut found: Vec<String> = truth
        .keys()
        .filter_map(|k| {
            let mut parts = k.splitn(3, '/');
            (parts.next()? == service).then(|| parts.next().map(str::to_string))?
        })
        .collect();
    found.sort_by_key(|i| (i.parse::<u64>().unwrap_or(u64::MAX), i.clone()));
    found.dedup();
    found
}

fn sum_phases(truth: &Truth, prefix: &str, suffix: &str) -> Option<f64> {
    let values: Vec<f64> = ["L1", "L2", "L3"].iter().filter_map(|l| number(truth, &format!("{prefix}/{l}/{suffix}"))).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn main_battery(truth: &Truth) -> Option<String> {
    match text(truth, "system/0/ActiveBatteryService") {
        Some(service) => {
            let (name, instance) = service.rsplit_once('/')?;
            name.ends_with(".battery").then(|| instance.to_string())
        }
        None => instances(truth, "battery").into_iter().next(),
    }
}

fn inverter(truth: &Truth) -> Option<(String, String)> {
    if let Some(instance) = number(truth, "system/0/VebusInstance") {
        let instance = format!("{}", instance as i64);
        if !instances(truth, "vebus").contains(&instance) {
            return None;
        }
        return Some(("vebus".into(), instance));
    }
    ["vebus", "multi", "inverter", "acsystem"]
        .iter()
        .find_map(|service| instances(truth, service).into_iter().next().map(|i| (service.to_string(), i)))
}

fn code(value: Option<f64>, table: &[(i64, &str)]) -> Option<Value> {
    let value = value?;
    Some(table.iter().find(|(c, _)| *c as f64 == value).map(|(_, s)| json!(s)).unwrap_or(json!("None")))
}

/// The expected published value of every entity the capture covers, from the truth.
fn expected(truth: &Truth) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.to_string(), value);
        }
    };
    let sys = |path: &str| number(truth, &format!("system/0/{path}")).map(|v| json!(v));

    put("battery_soc", sys("Dc/Battery/Soc"));
    put("battery_voltage", sys("Dc/Battery/Voltage"));
    put("battery_current", sys("Dc/Battery/Current"));
    put("battery_power", sys("Dc/Battery/Power"));
    put("solar_power", sys("Dc/Pv/Power"));
    put("ac_in_power", sum_phases(truth, "system/0/Ac/ActiveIn", "Power").map(|v| json!(v)));
    put("ac_out_power", sum_phases(truth, "system/0/Ac/ConsumptionOnOutput", "Power").map(|v| json!(v)));
    put("dc_load_power", sys("Dc/System/Power"));
    put(
        "shore_connected",
        number(truth, "system/0/Ac/ActiveIn/Source").map(|s| json!(if s == 1.0 || s == 3.0 { "ON" } else { "OFF" })),
    );
    put("battery_temperature", sys("Dc/Battery/Temperature"));
    let discharging = number(truth, "system/0/Dc/Battery/State") == Some(2.0);
    put(
        "battery_time_to_go",
        number(truth, "system/0/Dc/Battery/TimeToGo")
            .map(|t| if discharging && t < 863_999.0 { json!(t) } else { json!("None") }),
    );
    put("battery_consumed_ah", sys("Dc/Battery/ConsumedAmphours"));
    put("battery_state", code(number(truth, "system/0/Dc/Battery/State"), &[(0, "idle"), (1, "charging"), (2, "discharging")]));
    if let Some(battery) = main_battery(truth) {
        let b = |path: &str| number(truth, &format!("battery/{battery}/{path}")).map(|v| json!(v));
        put("battery_charged_energy", b("History/ChargedEnergy"));
        put("battery_discharged_energy", b("History/DischargedEnergy"));
        put("starter_battery_voltage", b("Dc/1/Voltage"));
    }

    let chargers = instances(truth, "solarcharger");
    // Solar yield: every solar charger and Multi RS Solar that reports a number.
    let mppts: Vec<String> = ["solarcharger", "multi"]
        .iter()
        .flat_map(|service| instances(truth, service).into_iter().map(move |i| format!("{service}/{i}")))
        .collect();
    let sum = |path: &str| -> Option<Value> {
        let values: Vec<f64> = mppts.iter().filter_map(|m| number(truth, &format!("{m}/{path}"))).collect();
        (!values.is_empty()).then(|| json!(values.iter().sum::<f64>()))
    };
    put("solar_yield_today", sum("History/Daily/0/Yield"));
    put("solar_yield_total", sum("Yield/User"));
    if let Some(first) = chargers.first() {
        let pv = number(truth, &format!("solarcharger/{first}/Pv/V")).or_else(|| number(truth, &format!("solarcharger/{first}/Pv/0/V")));
        put("solar_voltage", pv.map(|v| json!(v)));
        let states = [
            (0, "off"), (1, "low_power"), (2, "fault"), (3, "bulk"), (4, "absorption"), (5, "float"), (6, "storage"),
            (7, "equalize"), (11, "power_supply"), (245, "starting"), (246, "repeated_absorption"),
            (247, "auto_equalize"), (248, "battery_safe"), (252, "external_control"),
        ];
        put("solar_charge_state", code(number(truth, &format!("solarcharger/{first}/State")), &states));
    }

    if let Some((service, instance)) = inverter(truth) {
        let p = |path: &str| number(truth, &format!("{service}/{instance}/{path}"));
        put("ac_in_voltage", p("Ac/ActiveIn/L1/V").map(|v| json!(v)));
        put("ac_in_current", sum_phases(truth, &format!("{service}/{instance}/Ac/ActiveIn"), "I").map(|v| json!(v)));
        put("ac_in_frequency", p("Ac/ActiveIn/L1/F").map(|v| json!(v)));
        put("ac_in_current_limit", p("Ac/ActiveIn/CurrentLimit").map(|v| json!(v)));
        put("ac_out_voltage", p("Ac/Out/L1/V").map(|v| json!(v)));
        put("ac_out_current", sum_phases(truth, &format!("{service}/{instance}/Ac/Out"), "I").map(|v| json!(v)));
        put("ac_out_frequency", p("Ac/Out/L1/F").map(|v| json!(v)));
        let states = [
            (0, "off"), (1, "low_power"), (2, "fault"), (3, "bulk"), (4, "absorption"), (5, "float"), (6, "storage"),
            (7, "equalize"), (8, "passthru"), (9, "inverting"), (10, "power_assist"), (11, "power_supply"),
            (244, "sustain"), (245, "starting"), (252, "external_control"),
        ];
        put("inverter_state", code(p("State"), &states));
        put("inverter_mode", code(p("Mode"), &[(1, "charger_only"), (2, "inverter_only"), (3, "on"), (4, "off"), (5, "eco")]));
    }
    put("ac_in_source", code(number(truth, "system/0/Ac/ActiveIn/Source"), &[(1, "grid"), (2, "generator"), (3, "shore"), (240, "not_connected")]));
    put("alternator_power", sys("Dc/Alternator/Power"));

    if let Some(gps) = instances(truth, "gps").into_iter().next() {
        let g = |path: &str| number(truth, &format!("gps/{gps}/{path}")).map(|v| json!(v));
        put("gps_speed", g("Speed"));
        put("gps_satellites", g("NrOfSatellites"));
    }

    // Per-device entities: extra battery monitors, tanks by fluid, temperatures by type.
    let main = main_battery(truth);
    for (slot, battery) in instances(truth, "battery").into_iter().filter(|b| Some(b) != main.as_ref()).enumerate() {
        let n = slot + 2;
        let b = |path: &str| number(truth, &format!("battery/{battery}/{path}")).map(|v| json!(v));
        put(&format!("battery_{n}_soc"), b("Soc"));
        put(&format!("battery_{n}_voltage"), b("Dc/0/Voltage"));
        put(&format!("battery_{n}_current"), b("Dc/0/Current"));
    }
    let fluids = [
        "fuel", "fresh_water", "waste_water", "live_well", "oil", "black_water", "gasoline", "diesel", "lpg", "lng",
        "hydraulic_oil", "raw_water",
    ];
    let mut per_group: BTreeMap<String, u32> = BTreeMap::new();
    for tank in instances(truth, "tank") {
        let Some(fluid) = number(truth, &format!("tank/{tank}/FluidType")).and_then(|f| fluids.get(f as usize)) else { continue };
        let slot = per_group.entry(format!("tank:{fluid}")).or_insert(0);
        *slot += 1;
        let suffix = if *slot == 1 { String::new() } else { format!("_{slot}") };
        put(&format!("tank_{fluid}{suffix}_level"), number(truth, &format!("tank/{tank}/Level")).map(|v| json!(v)));
        put(&format!("tank_{fluid}{suffix}_remaining"), number(truth, &format!("tank/{tank}/Remaining")).map(|v| json!(v * 1000.0)));
    }
    let types = ["battery", "fridge", "generic", "room", "outdoor", "water_heater", "freezer"];
    for sensor in instances(truth, "temperature") {
        let Some(kind) = number(truth, &format!("temperature/{sensor}/TemperatureType")).and_then(|t| types.get(t as usize)) else { continue };
        let slot = per_group.entry(format!("temperature:{kind}")).or_insert(0);
        *slot += 1;
        let suffix = if *slot == 1 { String::new() } else { format!("_{slot}") };
        put(&format!("temperature_{kind}{suffix}"), number(truth, &format!("temperature/{sensor}/Temperature")).map(|v| json!(v)));
        put(&format!("humidity_{kind}{suffix}"), number(truth, &format!("temperature/{sensor}/Humidity")).map(|v| json!(v)));
    }
    out
}

/// True when a published payload matches the expected value, allowing for the bridge's
/// rounding to one decimal more than the display precision.
fn matches(published: &str, expected: &Value, precision: Option<u64>) -> bool {
    match expected {
        Value::Number(n) => {
            let Ok(got) = published.parse::<f64>() else { return false };
            let decimals = precision.map(|p| p as i32 + 1).unwrap_or(3);
            (got - n.as_f64().unwrap()).abs() <= 0.5 * 10f64.powi(-decimals) + 1e-9
        }
        Value::String(s) => published == s,
        _ => false,
    }
}

/// The discovery message with only what must never change by accident.
fn discovery_summary(discovery: &Value) -> Value {
    let mut components = serde_json::Map::new();
    for (key, component) in discovery["components"].as_object().unwrap() {
        let mut summary = serde_json::Map::new();
        for field in [
            "platform", "unique_id", "default_entity_id", "device_class", "unit_of_measurement", "state_class",
            "suggested_display_precision", "options", "entity_category", "state_topic", "json_attributes_topic",
            "availability",
        ] {
            if let Some(value) = component.get(field) {
                summary.insert(field.to_string(), value.clone());
            }
        }
        components.insert(key.clone(), Value::Object(summary));
    }
    json!({ "device": discovery["device"]["identifiers"], "device_name": discovery["device"]["name"], "components": components })
}

async fn check_capture(name: &str) {
    let gx_broker = Mosquitto::start();
    let ha_broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let observer = Observer::connect(ha_broker.port, &[]).await;

    let capture = Capture::load(name).unwrap();
    let mut config = SimConfig::new(gx_broker.host_port(), capture);
    config.vary = false;
    config.speed = 0.001;
    let sim = Simulator::spawn(config);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);

    let daemon = Daemon::start(
        &[
            "run", "--gx", &gx_broker.host_port(), "--ha-broker", &ha_broker.host_port(),
            "--data-dir", data.path().to_str().unwrap(), "--no-throttle",
        ],
        &[],
    );
    assert!(
        observer.wait_for("roamcore/victron/bridge_status/state", "connected", Duration::from_secs(20)).await,
        "{name}: bridge never connected\n{}",
        daemon.log_text()
    );

    let truth = sim.values().await;
    let expected = expected(&truth);

    // Wait until every expected state is there (the discovery settles within a second).
    let settled = observer
        .wait_until(Duration::from_secs(15), |seen| {
            expected.keys().all(|key| seen.latest.contains_key(&format!("roamcore/victron/{key}/state")))
                && seen.latest.contains_key("homeassistant/device/roamcore_victron/config")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let discovery = observer.discovery().expect("discovery message");
    let components = discovery["components"].as_object().unwrap().clone();

    let covered: Vec<String> = expected.keys().cloned().collect();
    let mut failures = Vec::new();
    if !settled {
        failures.push("not every expected state arrived within 15 s".to_string());
    }
    for (key, want) in &expected {
        let Some(component) = components.get(key) else {
            failures.push(format!("{key}: covered by the capture but missing from discovery"));
            continue;
        };
        let precision = component.get("suggested_display_precision").and_then(Value::as_u64);
        let got = observer.state(key).unwrap_or_default();
        if !matches(&got, want, precision) {
            failures.push(format!("{key}: published {got:?}, capture gives {want}"));
        }
        let availability = observer.latest(&format!("roamcore/victron/{key}/availability"));
        if availability.as_deref() != Some("online") {
            failures.push(format!("{key}: availability {availability:?}"));
        }
    }
    for key in components.keys() {
        let diagnostic = components[key].get("entity_category").is_some();
        let special = ["gps", "low_battery", "system_alarm", "generator_running"].contains(&key.as_str());
        if expected.contains_key(key) || diagnostic || special {
            continue;
        }
        let availability = observer.latest(&format!("roamcore/victron/{key}/availability"));
        if availability.as_deref() == Some("online") {
            failures.push(format!("{key}: not covered by the capture but available, state {:?}", observer.state(key)));
        }
    }

    // The committed coverage table and discovery golden file.
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let coverage_path = format!("{GOLDEN_DIR}/coverage.json");
    let mut coverage: BTreeMap<String, Vec<String>> =
        std::fs::read_to_string(&coverage_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let golden_path = format!("{GOLDEN_DIR}/discovery/{name}.json");
    let summary = discovery_summary(&discovery);
    if update {
        coverage.insert(name.to_string(), covered.clone());
        std::fs::create_dir_all(format!("{GOLDEN_DIR}/discovery")).unwrap();
        std::fs::write(&golden_path, serde_json::to_string_pretty(&summary).unwrap() + "\n").unwrap();
        write_coverage(&coverage_path, name, &covered);
    } else {
        let table = coverage.get(name).cloned().unwrap_or_default();
        if table != covered {
            failures.push(format!(
                "coverage table differs for {name}:\n  table:   {table:?}\n  capture: {covered:?}\n(rerun with UPDATE_GOLDEN=1 and review the diff)"
            ));
        }
        let golden: Value = std::fs::read_to_string(&golden_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        if golden != summary {
            failures.push(format!("discovery of {name} differs from {golden_path} (rerun with UPDATE_GOLDEN=1 and review the diff)"));
        }
    }

    assert!(failures.is_empty(), "capture {name}:\n  {}\n--- bridge log ---\n{}", failures.join("\n  "), daemon.log_text());
    sim.stop();
}

/// Updates one capture's row of the coverage table; tests run in parallel, so the file is
/// locked while it is rewritten.
fn write_coverage(path: &str, name: &str, covered: &[String]) {
    use std::sync::Mutex;
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let mut table: BTreeMap<String, Vec<String>> =
        std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    table.insert(name.to_string(), covered.to_vec());
    std::fs::write(path, serde_json::to_string_pretty(&table).unwrap() + "\n").unwrap();
}

macro_rules! capture_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "current_thread")]
            async fn $test() {
                check_capture($name).await;
            }
        )*
    };
}

capture_tests! {
    capture_boat => "boat",
    capture_demo1 => "demo1",
    capture_ess => "ess",
    capture_boat_recorder => "boat-recorder",
    capture_bmv => "bmv",
    capture_yacht35 => "yacht35",
    capture_simple_boat => "simple-boat",
    capture_multirs => "multirs",
    capture_gui_demo => "gui-demo",
    capture_demo1_dbus => "demo1-dbus",
}
