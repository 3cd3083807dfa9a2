//! The AC side of `system/0`: active input source, grid and genset flows, loads on the
//! output and AC-coupled PV.

use serde_json::Value;

use super::{safe_add, Bus, Values};
use crate::sim::capture::Service;

pub(super) fn pv_inverters(bus: &Bus<'_>, out: &mut Values) {
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

/// `Ac/ActiveIn/Source`: the configured type of the active input, 240 when inverting.
pub(super) fn ac_in_source(
    bus: &Bus<'_>,
    multi: Option<&Service>,
    inverters: &[&Service],
) -> Option<i64> {
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
pub(super) fn ac_flows(
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
pub(super) fn number_of_phases(out: &mut Values, prefix: &str) {
    let phases = (1..=3)
        .filter(|p| out.num(&format!("{prefix}/L{p}/Power")).is_some())
        .max();
    out.put(
        &format!("{prefix}/NumberOfPhases"),
        phases.map_or(Value::Null, Value::from),
    );
}
