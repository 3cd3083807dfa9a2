//! Every named capture loads, and the `system/0` aggregates computed for a D-Bus
//! recording match values worked out by hand from the recording and systemcalc's rules.

use roamcore_victron::sim::capture::{Capture, CaptureKind, NAMED_CAPTURES};
use roamcore_victron::sim::gx::Gx;
use serde_json::{json, Value};

#[test]
fn every_named_capture_loads() {
    let mut portal_ids = std::collections::BTreeSet::new();
    for named in NAMED_CAPTURES {
        let capture = Capture::load(named.name).unwrap_or_else(|e| panic!("{}: {e:#}", named.name));
        assert!(!capture.services.is_empty(), "{}: services", named.name);
        assert_eq!(capture.portal_id, named.portal_id, "{}", named.name);
        assert!(
            portal_ids.insert(capture.portal_id.clone()),
            "{}: unique portal id",
            named.name
        );

        let gx = Gx::from_capture(&capture, &capture.portal_id);
        let serial = gx.get("system/0/Serial");
        assert_eq!(
            serial,
            Some(&json!(named.portal_id)),
            "{}: Serial",
            named.name
        );
        assert_eq!(
            gx.computes_system(),
            capture.kind == CaptureKind::Recorder,
            "{}",
            named.name
        );
        if gx.computes_system() {
            assert!(
                gx.get("system/0/Dc/Battery/Voltage").is_some(),
                "{}: aggregates",
                named.name
            );
        }
    }
}

#[test]
fn capture_sizes() {
    let boat = Capture::load("boat").unwrap();
    assert_eq!(boat.portal_id, "c0619ab0d0e1");
    // 2,609 logged topics plus the 3 FluidType and 4 TemperatureType paths the loader
    // restores from the log's side fields.
    assert_eq!(boat.topic_count(), 2616);
    assert!(boat.events.is_empty(), "a snapshot");
    assert!(
        boat.service("vecan", "vecan0").is_some(),
        "non-numeric instance kept"
    );

    let ess = Capture::load("ess").unwrap();
    assert_eq!(ess.services.len(), 5);
    assert!(ess.events.len() > 1000, "change events");
    assert!(
        ess.events.windows(2).all(|pair| pair[0].at <= pair[1].at),
        "sorted by time"
    );

    let yacht = Capture::load("yacht35").unwrap();
    assert_eq!(yacht.setup.ac_input, [Some(3), Some(0)]);
    assert_eq!(yacht.setup.has_dc_system, Some(1));
    assert_eq!(yacht.description, "35ft yacht - 12V MultiPlus 12/1600");
}

#[test]
fn capture_from_path_and_unknown_name() {
    let folder = tempfile::tempdir().unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/captures/");
    for name in [
        "victronenergy__venus-docker__simulations_nt_setup",
        "victronenergy__venus-docker__simulations_nt_battery.csv",
    ] {
        std::fs::copy(format!("{source}{name}"), folder.path().join(name)).unwrap();
    }
    let capture = Capture::load(folder.path().to_str().unwrap()).unwrap();
    assert_eq!(capture.services.len(), 1);
    assert_eq!(capture.setup.has_dc_system, Some(1));

    let error = Capture::load("no-such-capture").unwrap_err().to_string();
    assert!(error.contains("boat"), "the error lists the names: {error}");
}

fn system(gx: &Gx, path: &str) -> Value {
    gx.get(&format!("system/0/{path}"))
        .cloned()
        .unwrap_or_else(|| panic!("system/0/{path} missing"))
}

fn approx(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

/// yacht35 (venus-docker `r`): SmartShunt battery/288, BMV-712 dcsystem/40, MPPT
/// solarcharger/256 without a load output, MultiPlus vebus/257 inverting; setup
/// AcInput1 = 3 (shore), HasDcSystem = 1.
#[test]
fn yacht35_aggregates_by_hand() {
    let capture = Capture::load("yacht35").unwrap();
    let mut gx = Gx::from_capture(&capture, &capture.portal_id);

    // The only battery monitor is selected; its values are copied.
    assert_eq!(
        system(&gx, "ActiveBatteryService"),
        json!("com.victronenergy.battery/288")
    );
    assert_eq!(
        system(&gx, "Dc/Battery/BatteryService"),
        json!("com.victronenergy.battery.ttyUSB0")
    );
    assert_eq!(system(&gx, "Dc/Battery/Voltage"), json!(13.390000343322754));
    assert_eq!(
        system(&gx, "Dc/Battery/Current"),
        json!(-1.7000000476837158)
    );
    assert_eq!(system(&gx, "Dc/Battery/Power"), json!(-22.76300048828125));
    assert_eq!(system(&gx, "Dc/Battery/Soc"), json!(99.80000305175781));
    assert_eq!(system(&gx, "Dc/Battery/TimeToGo"), json!(308399.96875));
    assert_eq!(system(&gx, "Dc/Battery/ConsumedAmphours"), json!(-0.5));
    assert_eq!(
        system(&gx, "Dc/Battery/Temperature"),
        Value::Null,
        "ARRAY [] in the recording"
    );
    // |-22.8 W| is inside the 30 W dead band.
    assert_eq!(system(&gx, "Dc/Battery/State"), json!(0));

    // PV: one charger, 13.41 V x 8.8 A, no /Load/I.
    assert!(approx(
        &system(&gx, "Dc/Pv/Power"),
        13.40999984741211 * 8.800000190734863
    ));
    assert!(approx(&system(&gx, "Dc/Pv/Current"), 8.800000190734863));

    // A dcsystem meter measures the DC loads.
    assert!(approx(&system(&gx, "Dc/System/Power"), 14.0));
    assert_eq!(system(&gx, "Dc/System/MeasurementType"), json!(1));

    // The MultiPlus is inverting (ActiveInput 240): no active input.
    assert_eq!(system(&gx, "Ac/ActiveIn/Source"), json!(240));
    assert_eq!(system(&gx, "Ac/ActiveIn/L1/Power"), Value::Null);
    assert_eq!(system(&gx, "Ac/ConsumptionOnOutput/L1/Power"), json!(104.0));
    assert_eq!(
        system(&gx, "Ac/ConsumptionOnOutput/NumberOfPhases"),
        json!(1)
    );
    assert_eq!(
        system(&gx, "VebusService"),
        json!("com.victronenergy.vebus.ttyO1")
    );
    assert_eq!(system(&gx, "VebusInstance"), json!(257));
    assert_eq!(system(&gx, "SystemState/State"), json!(9));
    assert_eq!(system(&gx, "GpsService"), Value::Null);

    let batteries = system(&gx, "Batteries");
    assert_eq!(batteries.as_array().map(Vec::len), Some(1));
    assert_eq!(
        batteries[0]["name"],
        json!("SmartShunt 500A/50mV"),
        "empty CustomName"
    );
    assert_eq!(batteries[0]["active_battery_service"], json!(true));
    assert_eq!(batteries[0]["instance"], json!(288));

    // Shore power connects on AC-in 1, typed 3 (shore) by the setup file.
    let changes = gx.set_many([
        ("vebus/257/Ac/ActiveIn/ActiveInput".to_string(), json!(0)),
        ("vebus/257/Ac/ActiveIn/L1/P".to_string(), json!(850)),
    ]);
    assert!(changes
        .iter()
        .any(|c| c.suffix == "system/0/Ac/ActiveIn/Source"));
    assert_eq!(system(&gx, "Ac/ActiveIn/Source"), json!(3));
    assert!(approx(&system(&gx, "Ac/ActiveIn/L1/Power"), 850.0));
    assert!(
        approx(&system(&gx, "Ac/Grid/L1/Power"), 850.0),
        "shore counts as grid"
    );
    assert_eq!(system(&gx, "Ac/ActiveIn/NumberOfPhases"), json!(1));

    // Charging at 450 W.
    gx.set("battery/288/Dc/0/Power", json!(450.0));
    assert_eq!(system(&gx, "Dc/Battery/State"), json!(1));

    // Without the meter, HasDcSystem = 1 estimates the DC loads:
    // solar + VE.Bus DC power - battery power.
    let changes = gx.remove_service("dcsystem", "40");
    assert!(changes
        .iter()
        .any(|c| c.suffix == "system/0/Dc/System/Power"));
    let solar = 13.40999984741211 * 8.800000190734863;
    let vebus = 13.399999618530273 * -8.5;
    assert!(approx(
        &system(&gx, "Dc/System/Power"),
        solar + vebus - 450.0
    ));
    assert_eq!(system(&gx, "Dc/System/MeasurementType"), json!(0));

    // A departed device publishes nothing, whatever its recording does; it returns with
    // the value its recording reached meanwhile.
    assert!(gx.set_recorded("dcsystem/40/Dc/0/Power", json!(77.0)).is_empty());
    assert!(gx.get("dcsystem/40/Dc/0/Power").is_none());
    let back = gx.restore_service("dcsystem", "40");
    assert!(back.iter().any(|c| c.suffix == "dcsystem/40/Dc/0/Power" && c.value == Some(json!(77.0))));
}

/// bmv: a BMV-702 alone. No inverter, no charger: AC paths invalid, system state 0.
#[test]
fn bmv_alone_aggregates() {
    let capture = Capture::load("bmv").unwrap();
    let gx = Gx::from_capture(&capture, &capture.portal_id);
    assert_eq!(
        system(&gx, "ActiveBatteryService"),
        json!("com.victronenergy.battery/256")
    );
    assert_eq!(system(&gx, "Dc/Battery/Voltage"), json!(56.9799995422));
    assert_eq!(system(&gx, "Dc/Battery/Temperature"), json!(30.0));
    assert_eq!(system(&gx, "Dc/Battery/State"), json!(1), "472 W charging");
    assert_eq!(system(&gx, "Dc/Pv/Power"), Value::Null);
    assert_eq!(
        system(&gx, "Dc/System/Power"),
        Value::Null,
        "HasDcSystem off, no meter"
    );
    assert_eq!(system(&gx, "Ac/ActiveIn/Source"), Value::Null);
    assert_eq!(system(&gx, "VebusService"), Value::Null);
    assert_eq!(system(&gx, "SystemState/State"), json!(0));
    assert_eq!(
        gx.get("settings/0/Settings/SystemSetup/AcInput1"),
        Some(&json!(1))
    );
}
