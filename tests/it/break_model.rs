//! Hard GX cases against the bridge's model: energy counters, roles, slots, alarms and
//! `forget`. All but one drive the real daemon with the simulated GX (`boat` capture) and
//! real Mosquitto brokers. `forget_keeps_constant_values` drives the model directly, with
//! the time as input. The tests marked `#[ignore]` fail on the current code, and their
//! reason names the wrong output.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::rig::{Rig, RigOptions, BASE, CONFIG_TOPIC, GX_TOPIC};

/// `c0619ab0d0e1`, the portal id of the `boat` capture.
const BOAT: &str = "c0619ab0d0e1";

/// Returns the state topic of entity `key`.
fn state_topic(key: &str) -> String {
    format!("{BASE}/{key}/state")
}

/// Returns every payload published on `key`'s state topic at or after `since`, in order.
fn states_since(rig: &Rig, key: &str, since: Instant) -> Vec<String> {
    let topic = state_topic(key);
    let seen = rig.observer.seen.lock().unwrap();
    seen.log
        .iter()
        .filter(|(at, t, _)| *at >= since && *t == topic)
        .map(|(_, _, p)| p.clone())
        .collect()
}

/// Returns the numbers published on `key`'s state topic at or after `since`.
fn numbers_since(rig: &Rig, key: &str, since: Instant) -> Vec<f64> {
    states_since(rig, key, since)
        .iter()
        .filter_map(|p| p.parse::<f64>().ok())
        .collect()
}

/// Waits until `key`'s latest state is `value`, and panics with the bridge's log otherwise.
async fn expect_state(rig: &Rig, key: &str, value: &str, timeout: Duration) {
    let seen = rig.wait_payload(&state_topic(key), value, timeout).await;
    assert!(
        seen.is_some(),
        "{key}: expected state {value}, latest {:?}\n{}",
        rig.observer.state(key),
        rig.log()
    );
}

/// Starts the rig with the throttle on, as in production, and waits for the GX link.
async fn start_throttled(scale: f64) -> Rig {
    let options = RigOptions {
        throttle: true,
        scale,
        scale_fixed: true,
        ..RigOptions::default()
    };
    let rig = Rig::start(options).await;
    let online = rig
        .wait_payload(GX_TOPIC, "online", Duration::from_secs(20))
        .await;
    assert!(
        online.is_some(),
        "the GX link never came online\n{}",
        rig.log()
    );
    rig
}

/// Adds a second solar charger to the simulated GX.
async fn add_charger(rig: &Rig, instance: &str, yield_total: f64, yield_today: f64) {
    let items = [
        ("ProductName", json!("SmartSolar Charger MPPT 150/35")),
        ("History/Daily/0/Yield", json!(yield_today)),
        ("Pv/V", json!(40.5)),
        ("State", json!(3)),
        ("Yield/User", json!(yield_total)),
    ];
    for (path, value) in items {
        rig.sim
            .set_value(&format!("solarcharger/{instance}/{path}"), value)
            .await;
    }
}

/// A battery monitor that goes null and then reports a placeholder 0 must not publish
/// the 0, also not after the null went out as `None`.
#[tokio::test(flavor = "current_thread")]
async fn counter_zero_after_null_is_held() {
    let rig = start_throttled(10.0).await;
    let key = "battery_charged_energy";
    let source = "battery/275/History/ChargedEnergy";
    expect_state(&rig, key, "226.57", Duration::from_secs(20)).await;

    rig.sim.set_null(source).await;
    expect_state(&rig, key, "None", rig.scaled(Duration::from_secs(120))).await;

    let since = Instant::now();
    rig.sim.set_value(source, json!(0.0)).await;
    // 90 s of production time: well inside the 5 minutes a drop must last to count as
    // a reset, so the 0 must not go out.
    tokio::time::sleep(rig.scaled(Duration::from_secs(90))).await;
    let published = numbers_since(&rig, key, since);
    assert!(
        published.iter().all(|v| *v >= 226.57),
        "{key}: published {published:?} after the null; a placeholder 0 after 226.57 is a false meter reset"
    );
}

/// A placeholder 0 that the throttle held while the link was up must still be held
/// after the GX link recovers (here from frozen data).
#[tokio::test(flavor = "current_thread")]
async fn counter_guard_survives_recovery() {
    let rig = start_throttled(10.0).await;
    let key = "battery_charged_energy";
    expect_state(&rig, key, "226.57", Duration::from_secs(20)).await;

    let since = Instant::now();
    rig.sim
        .set_value("battery/275/History/ChargedEnergy", json!(0.0))
        .await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(20))).await;
    assert_eq!(
        numbers_since(&rig, key, since),
        Vec::<f64>::new(),
        "the 0 is held while the link is up"
    );

    rig.sim.freeze().await;
    let offline = rig
        .wait_since(GX_TOPIC, "offline", since, Duration::from_secs(10))
        .await;
    assert!(offline.is_some(), "frozen GX not detected\n{}", rig.log());
    rig.sim.thaw().await;
    let online = rig
        .wait_since(
            GX_TOPIC,
            "online",
            offline.unwrap(),
            Duration::from_secs(20),
        )
        .await;
    assert!(online.is_some(), "GX link did not recover\n{}", rig.log());
    tokio::time::sleep(rig.scaled(Duration::from_secs(20))).await;

    let published = numbers_since(&rig, key, since);
    assert!(
        published.iter().all(|v| *v >= 226.57),
        "{key}: published {published:?} after the link recovered; the held placeholder 0 went out"
    );
}

/// With two solar chargers, the yield totals must never be published as the sum of the
/// first charger alone, also not while the bridge reads the GX's first full publish.
#[tokio::test(flavor = "current_thread")]
async fn solar_total_never_partial_at_start() {
    let options = RigOptions {
        throttle: true,
        scale: 10.0,
        scale_fixed: true,
        ..RigOptions::default()
    };
    let mut rig = Rig::start_without_bridge(options).await;
    add_charger(&rig, "289", 1000.0, 2.0).await;
    let since = Instant::now();
    rig.start_bridge();

    expect_state(&rig, "solar_yield_total", "2922.4", Duration::from_secs(20)).await;
    expect_state(&rig, "solar_yield_today", "2.11", Duration::from_secs(20)).await;
    for (key, full) in [("solar_yield_total", 2922.4), ("solar_yield_today", 2.11)] {
        let published = numbers_since(&rig, key, since);
        assert!(
            published.iter().all(|v| *v >= full - 0.001),
            "{key}: published {published:?}, full sum {full}; a partial sum reaches Home Assistant"
        );
    }
}

/// The GX uses the second battery monitor (the starter BMV) as its main one. In the first
/// full publish the house SmartShunt arrives before `system/0/ActiveBatteryService`, and
/// its lifetime counters must not be published as the main monitor's.
#[tokio::test(flavor = "current_thread")]
async fn main_battery_counter_at_start() {
    let options = RigOptions {
        throttle: true,
        scale: 10.0,
        scale_fixed: true,
        ..RigOptions::default()
    };
    let mut rig = Rig::start_without_bridge(options).await;
    rig.sim
        .set_value(
            "system/0/ActiveBatteryService",
            json!("com.victronenergy.battery/289"),
        )
        .await;
    let since = Instant::now();
    rig.start_bridge();

    expect_state(
        &rig,
        "battery_charged_energy",
        "1.23",
        Duration::from_secs(20),
    )
    .await;
    let published = states_since(&rig, "battery_charged_energy", since);
    assert_eq!(
        published,
        ["1.23"],
        "battery_charged_energy: the house SmartShunt's 226.57 kWh went out as the main monitor's"
    );
}

/// A charger that leaves (zero-byte payloads) must hold the totals, also for longer
/// than the 5 minutes after which a drop counts as a reset, and its return must not
/// add its whole lifetime yield as new energy.
#[tokio::test(flavor = "current_thread")]
async fn solar_total_holds_while_charger_gone() {
    let options = RigOptions {
        throttle: true,
        scale: 30.0,
        scale_fixed: true,
        ..RigOptions::default()
    };
    let mut rig = Rig::start_without_bridge(options).await;
    add_charger(&rig, "289", 20000.0, 5.0).await;
    rig.start_bridge();
    expect_state(
        &rig,
        "solar_yield_total",
        "21922.4",
        Duration::from_secs(20),
    )
    .await;
    expect_state(&rig, "solar_yield_today", "5.11", Duration::from_secs(20)).await;

    let since = Instant::now();
    rig.sim.remove_device("solarcharger", "289").await;
    // The remaining charger keeps producing for ten minutes of production time, twice
    // the 5 minutes after which a drop counts as a reset.
    for minute in 1..=10 {
        tokio::time::sleep(rig.scaled(Duration::from_secs(60))).await;
        let step = f64::from(minute) * 0.01;
        rig.sim
            .set_value("solarcharger/288/Yield/User", json!(1922.4 + step))
            .await;
        rig.sim
            .set_value("solarcharger/288/History/Daily/0/Yield", json!(0.11 + step))
            .await;
    }
    rig.sim.restore_device("solarcharger", "289").await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    for (key, full) in [("solar_yield_total", 21922.4), ("solar_yield_today", 5.11)] {
        let published = numbers_since(&rig, key, since);
        assert!(
            published.iter().all(|v| *v >= full - 0.001),
            "{key}: published {published:?} while a charger was away, full sum {full}"
        );
    }
}

/// A replaced solar charger whose lifetime yield is below the old one's, but above
/// 10 % of it, must not freeze the total: its production has to reach Home Assistant.
#[tokio::test(flavor = "current_thread")]
async fn replaced_charger_total_moves() {
    let rig = start_throttled(30.0).await;
    expect_state(&rig, "solar_yield_total", "1922.4", Duration::from_secs(20)).await;

    rig.sim.remove_device("solarcharger", "288").await;
    add_charger(&rig, "290", 500.0, 0.5).await;
    // The new charger produces for ten minutes of production time.
    for minute in 1..=10 {
        tokio::time::sleep(rig.scaled(Duration::from_secs(60))).await;
        rig.sim
            .set_value(
                "solarcharger/290/Yield/User",
                json!(500.0 + f64::from(minute) * 0.1),
            )
            .await;
    }
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let latest = rig.observer.state("solar_yield_total");
    assert_ne!(
        latest.as_deref(),
        Some("1922.4"),
        "solar_yield_total still shows the removed charger's total after ten minutes of the new charger's production"
    );
}

/// Returns the keys in the discovery message.
fn discovered(rig: &Rig) -> Vec<String> {
    rig.discovery_ids().into_keys().collect()
}


/// The GX switches its main battery monitor to the starter BMV and back, as it does
/// when a BMS drops out for a while. Afterwards the house SmartShunt is the main monitor
/// again and must not also remain in discovery as a third, unavailable battery.
#[tokio::test(flavor = "current_thread")]
async fn battery_switch_leaves_no_ghost() {
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    assert!(
        discovered(&rig).contains(&"battery_2_voltage".to_string()),
        "the starter BMV is battery 2"
    );

    let active = "system/0/ActiveBatteryService";
    rig.sim
        .set_value(active, json!("com.victronenergy.battery/289"))
        .await;
    // The house SmartShunt is now an extra battery; it takes slot 2, which the starter BMV
    // (now the main monitor) freed.
    let switched = rig
        .wait_payload(&state_topic("battery_2_voltage"), "13.7", Duration::from_secs(10))
        .await;
    assert!(
        switched.is_some(),
        "the house SmartShunt as battery 2: {:?}\n{}",
        rig.observer.state("battery_2_voltage"),
        rig.log()
    );
    rig.sim
        .set_value(active, json!("com.victronenergy.battery/275"))
        .await;
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("after the switch back: {m:#?}\n{}", rig.log()));

    let ghosts: Vec<String> = discovered(&rig)
        .into_iter()
        .filter(|k| k.starts_with("battery_3_"))
        .collect();
    let availability = rig
        .observer
        .latest(&format!("{BASE}/battery_3_voltage/availability"));
    assert!(
        ghosts.is_empty(),
        "the main battery monitor is also in discovery as {ghosts:?} (availability {availability:?})"
    );
}

/// While the GX uses the starter BMV as its main monitor for ten minutes, the lifetime
/// counters bound to the main monitor follow that device. Whatever they show, the switch
/// back must not count the difference between the two devices' lifetimes as energy.
#[tokio::test(flavor = "current_thread")]
async fn battery_switch_adds_no_energy() {
    let rig = start_throttled(30.0).await;
    let key = "battery_charged_energy";
    expect_state(&rig, key, "226.57", Duration::from_secs(20)).await;

    let since = Instant::now();
    let active = "system/0/ActiveBatteryService";
    rig.sim
        .set_value(active, json!("com.victronenergy.battery/289"))
        .await;
    for minute in 1..=10 {
        tokio::time::sleep(rig.scaled(Duration::from_secs(60))).await;
        let charged = 0.01 * f64::from(minute);
        rig.sim
            .set_value("battery/289/History/ChargedEnergy", json!(1.23 + charged))
            .await;
        rig.sim
            .set_value("battery/275/History/ChargedEnergy", json!(226.57 + charged))
            .await;
    }
    rig.sim
        .set_value(active, json!("com.victronenergy.battery/275"))
        .await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let published = numbers_since(&rig, key, since);
    let steps: Vec<f64> = published.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|step| *step <= 1.0),
        "{key}: published {published:?}; both monitors charged 0.1 kWh, a larger step up is energy that was never charged"
    );
}

/// Publishes `messages` on the GX broker, then a SOC of `marker` on the same connection
/// (so the broker delivers it after them), and returns how long the SOC took to reach
/// Home Assistant.
async fn flood_time(
    rig: &Rig,
    messages: Vec<(String, &'static [u8])>,
    marker: u32,
) -> Option<Duration> {
    let flood = crate::sim_support::TestClient::connect(rig.gx.addr()).await;
    let sent = Instant::now();
    for (topic, payload) in messages {
        flood
            .client
            .publish(topic, rumqttc::QoS::AtMostOnce, false, payload.to_vec())
            .await
            .unwrap();
    }
    let soc = format!("N/{BOAT}/system/0/Dc/Battery/Soc");
    let payload = format!(r#"{{"value":{marker}}}"#);
    flood
        .client
        .publish(soc, rumqttc::QoS::AtMostOnce, false, payload.into_bytes())
        .await
        .unwrap();
    let arrived = rig
        .wait_payload(
            &state_topic("battery_soc"),
            &marker.to_string(),
            Duration::from_secs(60),
        )
        .await;
    arrived.map(|at| at.saturating_duration_since(sent))
}

/// Distinct alarm names under a subscribed service, as a broken or hostile publisher on
/// an old (Mosquitto) GX could send them. Every name is stored, and every message makes
/// the system alarm walk all stored names again, so the work grows with the square of
/// the number of names. Production timers (time scale 1), so the MQTT keepalive is 15 s.
#[tokio::test(flavor = "current_thread")]
async fn alarm_flood_keeps_values_flowing() {
    const MESSAGES: usize = 20_000;
    let options = RigOptions {
        scale: 1.0,
        scale_fixed: true,
        ..RigOptions::default()
    };
    let rig = Rig::start(options).await;
    rig.wait_consistent(Duration::from_secs(30))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    // The same number of alarm messages on one path: the map of alarms stays small.
    let repeats = (0..MESSAGES)
        .map(|i| {
            (
                format!("N/{BOAT}/battery/275/Alarms/Flood"),
                if i % 2 == 0 {
                    &b"{\"value\":3}"[..]
                } else {
                    &b"{\"value\":0}"[..]
                },
            )
        })
        .collect();
    let rss_before = rig.daemon().rss_kib().expect("RSS");
    let baseline = flood_time(&rig, repeats, 41).await;

    let distinct = (0..MESSAGES)
        .map(|i| {
            (
                format!("N/{BOAT}/battery/275/Alarms/Flood{i}"),
                &b"{\"value\":0}"[..],
            )
        })
        .collect();
    let took = flood_time(&rig, distinct, 42).await;
    let rss_after = rig.daemon().rss_kib().expect("RSS");
    eprintln!("{MESSAGES} alarm messages: one name {baseline:?}, distinct names {took:?}; RSS {rss_before} KiB -> {rss_after} KiB");

    let baseline = baseline.expect("the SOC behind repeated alarm messages never arrived");
    assert!(
        took.is_some_and(|took| took <= baseline * 3 + Duration::from_secs(1)),
        "a SOC change behind {MESSAGES} distinct alarm names took {took:?}, behind {MESSAGES} repeats of one name {baseline:?}\n{}",
        rig.log()
    );
}

/// Returns the `alarms` list of the system alarm's attributes.
fn active_alarms(rig: &Rig) -> Vec<Value> {
    let text = rig
        .observer
        .latest(&format!("{BASE}/system_alarm/attributes"))
        .unwrap_or_default();
    let attributes: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    attributes["alarms"].as_array().cloned().unwrap_or_default()
}

/// The inverter/charger leaves and returns while it raises an alarm. The system alarm's
/// attributes must name it, as they do before it leaves.
#[tokio::test(flavor = "current_thread")]
async fn returning_device_alarm_has_name() {
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    rig.sim
        .set_value("vebus/274/Alarms/HighTemperature", json!(2))
        .await;
    expect_state(&rig, "system_alarm", "ON", Duration::from_secs(10)).await;
    let before = active_alarms(&rig);
    assert_eq!(before.len(), 1, "one active alarm: {before:?}");
    assert_eq!(
        before[0]["device"], "House",
        "the vebus's custom name: {before:?}"
    );

    rig.sim.remove_device("vebus", "274").await;
    expect_state(&rig, "system_alarm", "OFF", Duration::from_secs(10)).await;
    rig.sim.restore_device("vebus", "274").await;
    expect_state(&rig, "system_alarm", "ON", Duration::from_secs(10)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(10))).await;

    let after = active_alarms(&rig);
    assert_eq!(after.len(), 1, "one active alarm: {after:?}");
    assert_eq!(
        after[0]["device"], "House",
        "the returning vebus's alarm: {after:?}"
    );
}

/// A tank sender is reconfigured from fresh water to waste water, and a new fresh-water
/// sender is added. The new sender must take over the fresh-water slot, which no
/// fresh-water tank uses any more, instead of leaving `tank_fresh_water_level` a ghost.
#[tokio::test(flavor = "current_thread")]
async fn fluid_change_frees_slot() {
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    expect_state(&rig, "tank_fresh_water_level", "55", Duration::from_secs(5)).await;

    rig.sim.set_value("tank/21/FluidType", json!(2)).await;
    expect_state(
        &rig,
        "tank_waste_water_level",
        "55",
        Duration::from_secs(10),
    )
    .await;
    for (path, value) in [
        ("CustomName", json!("New fresh")),
        ("FluidType", json!(1)),
        ("Level", json!(40)),
        ("Remaining", json!(0.04)),
    ] {
        rig.sim.set_value(&format!("tank/30/{path}"), value).await;
    }
    let bound = rig
        .wait_payload(
            &state_topic("tank_fresh_water_level"),
            "40",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        bound.is_some(),
        "the new fresh-water sender did not take tank_fresh_water_level; discovery has {:?}",
        discovered(&rig)
            .into_iter()
            .filter(|k| k.starts_with("tank_"))
            .collect::<Vec<_>>()
    );
}

/// Returns the keys of removal entries (a component with only a platform) in the
/// discovery messages published at or after `since`.
fn removals_since(rig: &Rig, since: Instant) -> Vec<String> {
    let seen = rig.observer.seen.lock().unwrap();
    let mut removed = Vec::new();
    for (_, _, payload) in seen
        .log
        .iter()
        .filter(|(at, t, _)| *at >= since && t == CONFIG_TOPIC)
    {
        let config: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        for (key, component) in config["components"].as_object().into_iter().flatten() {
            if component.get("unique_id").is_none() && !removed.contains(key) {
                removed.push(key.clone());
            }
        }
    }
    removed
}

/// The van was stored for 40 days with everything off. At the next start with
/// `forget_after_days` 30, the GX is back with every device it had. No entity whose source
/// the GX still has may be removed from Home Assistant, because a removal deletes the
/// entity's registry entry with the owner's names, areas and settings.
#[tokio::test(flavor = "current_thread")]
async fn forget_after_storage_keeps_present() {
    let mut rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let (status, _) = rig.daemon_mut().sigterm();
    assert!(status.success(), "exit status {status:?}");

    // Forty days of storage, as the stored times see it.
    let path = rig.data.path().join("entities.json");
    let mut stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let forty_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 40 * 86_400;
    for entity in stored["entities"].as_object_mut().unwrap().values_mut() {
        entity["last_seen"] = json!(forty_days_ago);
    }
    for seen in stored["capabilities"].as_object_mut().unwrap().values_mut() {
        *seen = json!(forty_days_ago);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&stored).unwrap()).unwrap();

    let since = Instant::now();
    let mut args = rig.bridge_args();
    args.extend(["--forget-after-days".to_string(), "30".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rig.daemon = Some(crate::support::daemon::Daemon::start(&args, &[]));
    let offline = rig
        .wait_since(GX_TOPIC, "offline", since, Duration::from_secs(10))
        .await;
    assert!(
        offline.is_some(),
        "the restarted bridge did not start\n{}",
        rig.log()
    );
    let online = rig
        .wait_since(
            GX_TOPIC,
            "online",
            offline.unwrap(),
            Duration::from_secs(20),
        )
        .await;
    assert!(
        online.is_some(),
        "the GX link did not come up\n{}",
        rig.log()
    );
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("after the restart: {m:#?}\n{}", rig.log()));

    let removed = removals_since(&rig, since);
    assert!(
        removed.is_empty(),
        "removed from Home Assistant although the GX has them: {removed:?}"
    );
}

/// Feeds one value to the model as a GX message at unix time `now`.
fn feed(
    model: &mut roamcore_victron::model::normalise::Normaliser,
    suffix: &str,
    value: Value,
    now: u64,
) {
    let mut parts = suffix.splitn(3, '/');
    let (service, instance, path) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let bytes = serde_json::to_vec(&json!({ "value": value })).unwrap();
    model.ingest(
        service,
        instance,
        path,
        roamcore_victron::gx::payload::parse(&bytes),
        now,
    );
}

/// The bridge runs for ten days without a reconnect. The inverter's mode stays `on` all
/// that time while the SOC changes daily. A restart with `forget_after_days` 7 must not
/// forget the inverter mode: its source was there every day. The model takes the time as
/// input, so ten days take no time here.
#[test]
fn forget_keeps_constant_values() {
    use roamcore_victron::model::normalise::Normaliser;
    use roamcore_victron::model::registry::Registry;

    const DAY: u64 = 86_400;
    let dir = tempfile::tempdir().unwrap();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 10 * DAY;
    let mut model = Normaliser::new(Registry::open(Some(dir.path())));
    model.begin_snapshot();
    feed(&mut model, "system/0/Serial", json!(BOAT), start);
    feed(&mut model, "system/0/VebusInstance", json!(274), start);
    feed(&mut model, "system/0/Dc/Battery/Soc", json!(90), start);
    feed(&mut model, "vebus/274/Mode", json!(3), start);
    model.end_snapshot(start);
    let mode = model
        .registry
        .by_key("inverter_mode")
        .expect("inverter_mode");
    assert!(
        model.registry.get(mode).in_discovery(),
        "inverter_mode is in discovery"
    );

    for day in 1..=10 {
        feed(
            &mut model,
            "system/0/Dc/Battery/Soc",
            json!(90 - day),
            start + day * DAY,
        );
        model.registry.save();
    }

    // The daemon stops on day 10, and the next start drops what was unseen for 7 days.
    let mut reopened = Registry::open(Some(dir.path()));
    let forgotten = reopened.forget_before(start + 10 * DAY - 7 * DAY);
    assert!(
        !forgotten.contains(&"battery_soc".to_string()),
        "battery_soc is always present"
    );
    assert!(
        !forgotten.contains(&"inverter_mode".to_string()),
        "inverter_mode was forgotten although the GX reported it all ten days: {forgotten:?}"
    );
}

/// Distinct instances under a subscribed service type, each with one path the bridge does
/// not store. Each new instance is a new device, and each new device re-evaluates every
/// entity over every device, so the work grows with the square of the instances.
#[tokio::test(flavor = "current_thread")]
async fn instance_flood_keeps_values_flowing() {
    const MESSAGES: usize = 2_000;
    let options = RigOptions {
        scale: 1.0,
        scale_fixed: true,
        ..RigOptions::default()
    };
    let rig = Rig::start(options).await;
    rig.wait_consistent(Duration::from_secs(30))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    let repeats = (0..MESSAGES)
        .map(|i| {
            (
                format!("N/{BOAT}/temperature/100/Pressure"),
                if i % 2 == 0 {
                    &b"{\"value\":3}"[..]
                } else {
                    &b"{\"value\":0}"[..]
                },
            )
        })
        .collect();
    let rss_before = rig.daemon().rss_kib().expect("RSS");
    let baseline = flood_time(&rig, repeats, 41).await;

    let distinct = (0..MESSAGES)
        .map(|i| {
            (
                format!("N/{BOAT}/temperature/{}/Pressure", 1000 + i),
                &b"{\"value\":0}"[..],
            )
        })
        .collect();
    let took = flood_time(&rig, distinct, 42).await;
    let rss_after = rig.daemon().rss_kib().expect("RSS");
    eprintln!("{MESSAGES} messages: one instance {baseline:?}, distinct instances {took:?}; RSS {rss_before} KiB -> {rss_after} KiB");

    let baseline = baseline.expect("the SOC behind repeated messages never arrived");
    assert!(
        took.is_some_and(|took| took <= baseline * 3 + Duration::from_secs(1)),
        "a SOC change behind {MESSAGES} new instances took {took:?}, behind {MESSAGES} repeats on one instance {baseline:?}\n{}",
        rig.log()
    );
}

/// At midnight the daily yield drops to 0 and stays there until sunrise. Once it has
/// stayed low for 5 minutes the drop is a real reset and must be published, not held
/// until the first watt-hour of the morning.
#[tokio::test(flavor = "current_thread")]
async fn daily_yield_reset_published_at_night() {
    let rig = start_throttled(30.0).await;
    expect_state(&rig, "solar_yield_today", "0.11", Duration::from_secs(20)).await;

    rig.sim
        .set_value("solarcharger/288/History/Daily/0/Yield", json!(0.0))
        .await;
    // Ten minutes of production time without sun: twice the reset hold.
    tokio::time::sleep(rig.scaled(Duration::from_secs(600))).await;
    assert_eq!(
        rig.observer.state("solar_yield_today").as_deref(),
        Some("0"),
        "solar_yield_today ten minutes after the midnight reset"
    );
}

// The cases below hold on the current code, and these tests keep it that way.

/// dbus-mqtt (Venus OS before 3.20) clears every retained topic with a zero-length
/// payload when its keepalive expires. Every entity goes unavailable at once, and the
/// bridge's next keepalive brings all of them back with the same ids.
#[tokio::test(flavor = "current_thread")]
async fn dbus_mqtt_expiry_recovers() {
    let options = RigOptions {
        mode: roamcore_victron::sim::Mode::DbusMqtt,
        ..RigOptions::default()
    };
    let rig = Rig::start(options).await;
    rig.wait_consistent(Duration::from_secs(30))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let before = discovered(&rig);

    let since = Instant::now();
    rig.sim.expire_keepalive().await;
    for key in ["battery_soc", "tank_fresh_water_level", "gps"] {
        let topic = format!("{BASE}/{key}/availability");
        let offline = rig
            .wait_since(&topic, "offline", since, Duration::from_secs(5))
            .await;
        assert!(
            offline.is_some(),
            "{key} stayed available after the GX cleared its values\n{}",
            rig.log()
        );
    }

    // The keepalive is due within 30 s of production time.
    let back = rig
        .wait_consistent(rig.limit(Duration::from_secs(30)))
        .await;
    back.unwrap_or_else(|m| panic!("after the expiry: {m:#?}\n{}", rig.log()));
    assert_eq!(
        discovered(&rig),
        before,
        "entity ids changed across the expiry"
    );
}

/// A replacement GX (another portal id, adopted with `--portal-id`) on the same broker
/// as the old one, whose fresh-water sender has another instance: every entity id stays,
/// and the new sender takes the fresh-water slot.
#[tokio::test(flavor = "current_thread")]
async fn second_gx_keeps_entity_ids() {
    use roamcore_victron::sim::{capture::Capture, SimConfig, Simulator};

    let mut rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(30))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let before = discovered(&rig);
    let (status, _) = rig.daemon_mut().sigterm();
    assert!(status.success(), "exit status {status:?}");

    let mut capture = Capture::load("boat").expect("capture loads");
    capture.events.clear();
    let mut config = SimConfig::new(rig.gx.host_port(), capture);
    config.portal_id = Some("c0619ab0aaaa".into());
    config.time_scale = rig.scale;
    config.vary = false;
    let replacement = Simulator::spawn(config);
    assert!(
        replacement.wait_connected(Duration::from_secs(5)).await,
        "the replacement GX connects"
    );
    replacement.remove_device("tank", "21").await;
    for (path, value) in [
        ("CustomName", json!("Fresh B")),
        ("FluidType", json!(1)),
        ("Level", json!(77)),
        ("Remaining", json!(0.07)),
    ] {
        replacement
            .set_value(&format!("tank/31/{path}"), value)
            .await;
    }
    replacement
        .set_value("system/0/Dc/Battery/Soc", json!(66))
        .await;

    let since = Instant::now();
    let mut args = rig.bridge_args();
    args.extend(["--portal-id".to_string(), "c0619ab0aaaa".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rig.daemon = Some(crate::support::daemon::Daemon::start(&args, &[]));
    let offline = rig
        .wait_since(GX_TOPIC, "offline", since, Duration::from_secs(10))
        .await;
    assert!(offline.is_some(), "the bridge did not start\n{}", rig.log());
    let online = rig
        .wait_since(
            GX_TOPIC,
            "online",
            offline.unwrap(),
            Duration::from_secs(20),
        )
        .await;
    assert!(
        online.is_some(),
        "the replacement GX never came online\n{}",
        rig.log()
    );

    expect_state(&rig, "battery_soc", "66", Duration::from_secs(10)).await;
    expect_state(
        &rig,
        "tank_fresh_water_level",
        "77",
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(10))).await;
    assert_eq!(
        discovered(&rig),
        before,
        "entity ids changed with the replacement GX"
    );
    let config = rig.observer.discovery().expect("discovery");
    assert_eq!(
        config["components"]["tank_fresh_water_level"]["name"],
        "Fresh B level"
    );
}

/// Time to go is unknown at the GX's 864000 s cap and while charging. Per-phase sums add
/// the non-null phases and are unknown only when all three are null.
#[tokio::test(flavor = "current_thread")]
async fn time_to_go_and_phase_sums() {
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(30))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let ttg = "system/0/Dc/Battery/TimeToGo";

    expect_state(&rig, "battery_time_to_go", "None", Duration::from_secs(5)).await;
    rig.sim.set_value(ttg, json!(3600)).await;
    expect_state(&rig, "battery_time_to_go", "3600", Duration::from_secs(5)).await;
    rig.sim.set_value(ttg, json!(864000)).await;
    expect_state(&rig, "battery_time_to_go", "None", Duration::from_secs(5)).await;
    rig.sim.set_value(ttg, json!(3600)).await;
    expect_state(&rig, "battery_time_to_go", "3600", Duration::from_secs(5)).await;
    rig.sim
        .set_value("system/0/Dc/Battery/State", json!(1))
        .await;
    expect_state(&rig, "battery_time_to_go", "None", Duration::from_secs(5)).await;

    expect_state(&rig, "ac_in_power", "4", Duration::from_secs(5)).await;
    rig.sim
        .set_value("system/0/Ac/ActiveIn/L2/Power", json!(100))
        .await;
    expect_state(&rig, "ac_in_power", "104", Duration::from_secs(5)).await;
    rig.sim.set_null("system/0/Ac/ActiveIn/L1/Power").await;
    expect_state(&rig, "ac_in_power", "100", Duration::from_secs(5)).await;
    rig.sim.set_null("system/0/Ac/ActiveIn/L2/Power").await;
    expect_state(&rig, "ac_in_power", "None", Duration::from_secs(5)).await;
    let availability = rig
        .observer
        .latest(&format!("{BASE}/ac_in_power/availability"));
    assert_eq!(
        availability.as_deref(),
        Some("online"),
        "all phases null is unknown, not unavailable"
    );
}

/// A shore-power flicker shorter than the 10 s debounce publishes nothing. A generator on
/// the AC input turns shore power off and the generator on.
#[tokio::test(flavor = "current_thread")]
async fn shore_flicker_and_generator() {
    let rig = start_throttled(10.0).await;
    expect_state(&rig, "shore_connected", "ON", Duration::from_secs(10)).await;
    let source = "system/0/Ac/ActiveIn/Source";

    let since = Instant::now();
    rig.sim.set_value(source, json!(240)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(3))).await;
    rig.sim.set_value(source, json!(1)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(20))).await;
    assert_eq!(
        states_since(&rig, "shore_connected", since),
        Vec::<String>::new(),
        "a 3 s flicker was published"
    );

    rig.sim.set_value(source, json!(2)).await;
    rig.sim
        .set_value("system/0/Ac/Genset/L1/Power", json!(1500))
        .await;
    expect_state(
        &rig,
        "shore_connected",
        "OFF",
        rig.limit(Duration::from_secs(15)),
    )
    .await;
    expect_state(
        &rig,
        "generator_running",
        "ON",
        rig.limit(Duration::from_secs(10)),
    )
    .await;
    expect_state(
        &rig,
        "ac_in_source",
        "generator",
        rig.limit(Duration::from_secs(10)),
    )
    .await;
}

/// The GPS tracker is unavailable without a fix, at 0,0 and out of range, and comes back
/// with a valid fix. Each case is set up with the fix off, so no step passes through a
/// valid position.
#[tokio::test(flavor = "current_thread")]
async fn gps_without_valid_fix() {
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(30))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let availability = format!("{BASE}/gps/availability");

    for (case, latitude, longitude) in [
        ("no fix", 46.5, -1.78),
        ("0,0", 0.0, 0.0),
        ("latitude 91", 91.0, 5.0),
    ] {
        rig.sim.set_value("gps/93/Fix", json!(0)).await;
        rig.sim
            .set_value("gps/93/Position/Latitude", json!(latitude))
            .await;
        rig.sim
            .set_value("gps/93/Position/Longitude", json!(longitude))
            .await;
        let offline = rig
            .wait_payload(&availability, "offline", Duration::from_secs(5))
            .await;
        assert!(offline.is_some(), "{case}: the tracker stayed available");
        if case != "no fix" {
            let since = Instant::now();
            rig.sim.set_value("gps/93/Fix", json!(1)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                rig.first_since(&availability, "online", since),
                None,
                "{case}: the tracker came online"
            );
        }
    }

    rig.sim.set_value("gps/93/Fix", json!(0)).await;
    rig.sim
        .set_value("gps/93/Position/Latitude", json!(46.6))
        .await;
    rig.sim
        .set_value("gps/93/Position/Longitude", json!(-1.7))
        .await;
    rig.sim.set_value("gps/93/Fix", json!(1)).await;
    let online = rig
        .wait_payload(&availability, "online", Duration::from_secs(5))
        .await;
    assert!(
        online.is_some(),
        "a valid fix did not bring the tracker back"
    );
}

/// Two fresh-water tanks, then the first sender is replaced by a new one (another
/// instance) while the bridge runs: the new sender takes the first tank's ids, and the
/// second tank keeps its own.
#[tokio::test(flavor = "current_thread")]
async fn replaced_tank_sender_keeps_ids() {
    let rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(30))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    let add_tank = |instance: &'static str, level: u32| {
        let sim = &rig.sim;
        async move {
            for (path, value) in [
                ("FluidType", json!(1)),
                ("Level", json!(level)),
                ("Remaining", json!(0.05)),
            ] {
                sim.set_value(&format!("tank/{instance}/{path}"), value)
                    .await;
            }
        }
    };
    add_tank("23", 30).await;
    expect_state(
        &rig,
        "tank_fresh_water_2_level",
        "30",
        Duration::from_secs(10),
    )
    .await;

    rig.sim.remove_device("tank", "21").await;
    let offline = rig
        .wait_payload(
            &format!("{BASE}/tank_fresh_water_level/availability"),
            "offline",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        offline.is_some(),
        "the removed sender's entities stayed available"
    );
    add_tank("24", 80).await;
    expect_state(
        &rig,
        "tank_fresh_water_level",
        "80",
        Duration::from_secs(10),
    )
    .await;
    let back = rig
        .wait_payload(
            &format!("{BASE}/tank_fresh_water_level/availability"),
            "online",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        back.is_some(),
        "the new sender's entities are not available"
    );
    rig.wait_consistent(Duration::from_secs(10))
        .await
        .unwrap_or_else(|m| panic!("after the replacement: {m:#?}\n{}", rig.log()));

    let tanks: Vec<String> = discovered(&rig)
        .into_iter()
        .filter(|k| k.starts_with("tank_fresh_water"))
        .collect();
    assert_eq!(
        tanks,
        [
            "tank_fresh_water_2_level",
            "tank_fresh_water_2_remaining",
            "tank_fresh_water_level",
            "tank_fresh_water_remaining"
        ],
        "no third fresh-water tank"
    );
    assert_eq!(
        rig.observer.state("tank_fresh_water_2_level").as_deref(),
        Some("30"),
        "the second tank kept its ids"
    );
}
