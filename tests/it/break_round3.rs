//! Third round of hard cases, found by replaying real captures the project does not ship
//! and by a first-time user. Each test drives the real bridge with the simulated GX and
//! real Mosquitto brokers on 127.0.0.1 and pins a case that once gave wrong output.

use std::time::{Duration, Instant};

use roamcore_victron::sim::Mode;

use crate::support::rig::{Rig, RigOptions, BASE};

/// Returns every number published on `key`'s state topic at or after `since`, in order.
fn numbers_since(rig: &Rig, key: &str, since: Instant) -> Vec<f64> {
    let topic = format!("{BASE}/{key}/state");
    let seen = rig.observer.seen.lock().unwrap();
    seen.log
        .iter()
        .filter(|(at, t, _)| *at >= since && *t == topic)
        .filter_map(|(_, _, p)| p.parse::<f64>().ok())
        .collect()
}

/// Returns the sum of L1..L3 of a path pattern (`{}` = phase) in the simulated GX's values.
async fn phase_sum(rig: &Rig, pattern: &str) -> f64 {
    let truth = rig.sim.values().await;
    ["L1", "L2", "L3"]
        .iter()
        .filter_map(|l| truth.get(&pattern.replace("{}", l)).and_then(|v| v.as_f64()))
        .sum()
}

#[tokio::test(flavor = "current_thread")]
async fn phase_sum_never_partial() {
    // gui-demo is a three-phase Quattro: during the first full publish, L1 arrives a few
    // milliseconds before L2 and L3. The first state must already be the whole sum.
    let options = RigOptions { capture: "gui-demo", throttle: true, ..RigOptions::default() };
    let started = Instant::now();
    let rig = Rig::start(options).await;
    let input = phase_sum(&rig, "system/0/Ac/ActiveIn/{}/Power").await;
    let output = phase_sum(&rig, "system/0/Ac/ConsumptionOnOutput/{}/Power").await;
    assert!(input > 0.0, "gui-demo has AC input power");
    assert!(output > 0.0, "gui-demo has AC output power");

    for (key, want) in [("ac_in_power", input), ("ac_out_power", output)] {
        let arrived = rig
            .observer
            .wait_until(Duration::from_secs(20), |seen| seen.latest.contains_key(&format!("{BASE}/{key}/state")))
            .await;
        assert!(arrived, "{key} never published\n{}", rig.log());
        let published = numbers_since(&rig, key, started);
        assert!(
            published.iter().all(|v| (v - want).abs() < 1.0),
            "{key}: published {published:?}, the three phases sum to {want}\n{}",
            rig.log()
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn gx_model_with_gx_host() {
    // With --gx there is no LAN discovery to name the model; the GX publishes it on
    // platform/0/Device/Model ("Ekrano GX" in the boat capture).
    let rig = Rig::start(RigOptions::default()).await;
    let topic = format!("{BASE}/bridge_status/attributes");
    let model_seen = rig
        .observer
        .wait_until(Duration::from_secs(20), |seen| {
            seen.latest.get(&topic).and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok()).is_some_and(|a| a["model"] == "Ekrano GX")
        })
        .await;
    assert!(model_seen, "attributes {:?}\n{}", rig.observer.latest(&topic), rig.log());
}

#[tokio::test(flavor = "current_thread")]
async fn device_leaves_and_returns_once() {
    // With live values the simulated GX once kept moving a departed battery monitor's
    // voltage, which brought back a ghost device and logged its departure twice.
    let options = RigOptions { live_values: true, mode: Mode::DbusMqtt, ..RigOptions::default() };
    let rig = Rig::start(options).await;
    assert!(rig.wait_log("status=connected", 0, Duration::from_secs(20)).await.is_some(), "{}", rig.log());

    let mark = rig.log_mark();
    rig.sim.remove_device("battery", "275").await;
    assert!(rig.wait_log("device left the GX", mark, Duration::from_secs(5)).await.is_some(), "{}", rig.log());
    // Several seconds of random walk while the device is away.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let away = rig.daemon().lines()[mark..].iter().filter(|l| l.contains("device appeared on the GX")).count();
    assert_eq!(away, 0, "the departed device came back by itself\n{}", rig.log());
    let restored = rig.log_mark();
    rig.sim.restore_device("battery", "275").await;
    assert!(rig.wait_log("device appeared on the GX", restored, Duration::from_secs(5)).await.is_some(), "{}", rig.log());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let lines = rig.daemon().lines();
    let count = |needle: &str| lines.iter().skip(mark).filter(|l| l.contains(needle) && l.contains("battery/275")).count();
    assert_eq!(count("device left the GX"), 1, "{}", rig.log());
    assert_eq!(count("device appeared on the GX"), 1, "{}", rig.log());
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_fluid_type_kept() {
    // A tank sender reporting a fluid code Venus OS does not list once vanished without a
    // log line. It is now kept as tank_other, and the log gives the reason.
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    let mark = rig.log_mark();
    rig.sim.set_value("tank/20/FluidType", serde_json::json!(42)).await;
    let level = rig.sim.values().await.get("tank/20/Level").and_then(|v| v.as_f64()).expect("tank 20 has a level");
    let topic = format!("{BASE}/tank_other_level/state");
    let published = rig
        .observer
        .wait_until(Duration::from_secs(10), |seen| {
            seen.latest.get(&topic).and_then(|p| p.parse::<f64>().ok()).is_some_and(|v| (v - level).abs() < 0.5)
        })
        .await;
    assert!(published, "tank_other_level: {:?}, tank level {level}\n{}", rig.observer.latest(&topic), rig.log());
    let discovered = rig
        .observer
        .wait_until(Duration::from_secs(5), |seen| {
            seen.latest.get("homeassistant/device/roamcore_victron/config").is_some_and(|c| c.contains("\"tank_other_level\""))
        })
        .await;
    assert!(discovered, "tank_other_level missing from discovery\n{}", rig.log());
    assert!(rig.wait_log("unknown fluid type code 42", mark, Duration::from_secs(5)).await.is_some(), "{}", rig.log());
}

#[tokio::test(flavor = "current_thread")]
async fn yield_total_null_is_unknown() {
    // A charger's Yield/User flickering between null and a number once toggled the
    // entity's availability with every message; null now means unknown, as elsewhere.
    let started = Instant::now();
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let availability = format!("{BASE}/solar_yield_total/availability");
    let before = rig.count_since(&availability, started);

    let path = "solarcharger/288/Yield/User";
    let total = rig.sim.values().await.get(path).cloned().expect("the boat's MPPT has a total yield");
    for _ in 0..3 {
        rig.sim.set_value(path, serde_json::Value::Null).await;
        assert!(rig.wait_payload(&format!("{BASE}/solar_yield_total/state"), "None", Duration::from_secs(5)).await.is_some(), "{}", rig.log());
        rig.sim.set_value(path, total.clone()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let after = rig.count_since(&availability, started);
    assert_eq!(after, before, "availability republished during the flicker\n{}", rig.log());
    assert_eq!(rig.observer.latest(&availability).as_deref(), Some("online"));
}

#[tokio::test(flavor = "current_thread")]
async fn lost_data_dir_leftovers_unavailable() {
    // After the data directory is lost, Home Assistant still has the entities of the
    // earlier discovery message, with their retained availability `online`. Once the GX's
    // full publish is complete, the bridge marks those it does not publish offline.
    let mut rig = Rig::start_without_bridge(RigOptions::default()).await;
    let leftover = format!("{BASE}/tank_fresh_water_16_level/availability");
    let known = format!("{BASE}/battery_soc/availability");
    for topic in [&leftover, &known] {
        rig.observer.client.publish(topic.as_str(), rumqttc::QoS::AtLeastOnce, true, "online").await.unwrap();
    }
    assert!(rig.wait_payload(&leftover, "online", Duration::from_secs(5)).await.is_some());

    rig.start_bridge();
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    assert!(
        rig.wait_payload(&leftover, "offline", Duration::from_secs(10)).await.is_some(),
        "leftover availability {:?}\n{}",
        rig.observer.latest(&leftover),
        rig.log()
    );
    assert_eq!(rig.observer.latest(&known).as_deref(), Some("online"), "an entity the GX has stays online");
    assert!(rig.log().contains("entities from an earlier data directory"), "{}", rig.log());
}

#[tokio::test(flavor = "current_thread")]
async fn same_custom_name_numbered() {
    // Two temperature sensors of one type given the same custom name once appeared in
    // Home Assistant as two entities of one name.
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    for instance in ["100", "101"] {
        rig.sim.set_value(&format!("temperature/{instance}/CustomName"), serde_json::json!("Cabin")).await;
    }
    let names = |seen: &crate::support::observer::Seen| -> Vec<String> {
        let Some(config) = seen.latest.get("homeassistant/device/roamcore_victron/config") else {
            return Vec::new();
        };
        let config: serde_json::Value = serde_json::from_str(config).unwrap_or_default();
        config["components"]
            .as_object()
            .map(|c| c.values().filter_map(|e| e["name"].as_str().map(str::to_string)).filter(|n| n.starts_with("Cabin")).collect())
            .unwrap_or_default()
    };
    let numbered = rig
        .observer
        .wait_until(Duration::from_secs(10), |seen| {
            let found = names(seen);
            found.len() == 2 && found[0] != found[1]
        })
        .await;
    let found = names(&rig.observer.seen.lock().unwrap());
    assert!(numbered, "entity names {found:?}\n{}", rig.log());
}

#[tokio::test(flavor = "current_thread")]
async fn main_battery_kept_across_restart() {
    // The GX names the starter monitor (289) as main, so the house monitor (275) is
    // battery 2. The bridge then restarts while ActiveBatteryService is null (the GX and the
    // bridge's host power up together). The monitor named before the restart stays main;
    // taking the first by number (275) would put the starter's values into battery 2.
    let mut rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let active = "system/0/ActiveBatteryService";
    rig.sim.set_value(active, serde_json::json!("com.victronenergy.battery/289")).await;
    let house = rig.sim.values().await.get("battery/275/Dc/0/Voltage").and_then(|v| v.as_f64()).expect("house voltage");
    let house = format!("{}", (house * 100.0).round() / 100.0);
    let topic = format!("{BASE}/battery_2_voltage/state");
    assert!(rig.wait_payload(&topic, &house, Duration::from_secs(10)).await.is_some(), "house monitor as battery 2\n{}", rig.log());
    // Saved within 5 s of the change, and at the latest on SIGTERM.
    let (status, _) = rig.daemon_mut().sigterm();
    assert!(status.success(), "{}", rig.log());

    rig.sim.set_value(active, serde_json::Value::Null).await;
    let started = Instant::now();
    rig.start_bridge();
    assert!(rig.wait_log("status=connected", 0, Duration::from_secs(20)).await.is_some(), "{}", rig.log());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let published: Vec<String> = {
        let seen = rig.observer.seen.lock().unwrap();
        seen.log.iter().filter(|(at, t, _)| *at >= started && *t == topic).map(|(_, _, p)| p.clone()).collect()
    };
    assert!(!published.is_empty(), "battery_2_voltage not published after the restart\n{}", rig.log());
    assert!(published.iter().all(|p| *p == house), "battery_2_voltage was {house}, then {published:?}\n{}", rig.log());
}
