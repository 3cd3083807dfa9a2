//! Second round of hard cases on the data Home Assistant ends up with: energy counters
//! across restarts, availability, the throttle, per-device entities and values at the
//! edges. Each test drives the real bridge with the simulated GX and real Mosquitto
//! brokers on 127.0.0.1. Each pins a case that once gave wrong output and keeps it fixed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::rig::{Rig, RigOptions, BASE, BRIDGE_TOPIC, GX_TOPIC};

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
    start_with(options).await
}

/// Starts the rig with `options` and waits for the GX link.
async fn start_with(options: RigOptions) -> Rig {
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

/// Stops the bridge with SIGTERM and waits for its offline message.
async fn stop_bridge(rig: &mut Rig) {
    let (status, _) = rig.daemon_mut().sigterm();
    assert!(status.success(), "exit status {status:?}\n{}", rig.log());
    let offline = rig
        .wait_payload(BRIDGE_TOPIC, "offline", Duration::from_secs(5))
        .await;
    assert!(offline.is_some(), "no offline message after SIGTERM");
}

/// Starts the bridge again and waits for the GX link.
async fn restart_bridge(rig: &mut Rig) -> Instant {
    let since = Instant::now();
    rig.start_bridge();
    let online = rig
        .wait_since(GX_TOPIC, "online", since, Duration::from_secs(20))
        .await;
    assert!(
        online.is_some(),
        "the GX link never came back\n{}",
        rig.log()
    );
    since
}

/// The bridge is off overnight (the host was shut down) and starts in the morning, when
/// the GX's daily yield has started again from 0 and already reached 0.05 kWh. The
/// daily yield must show today's 0.05, not yesterday's 0.11 plus today's production.
#[tokio::test(flavor = "current_thread")]
async fn daily_yield_after_overnight_restart() {
    let mut rig = start_throttled(30.0).await;
    let key = "solar_yield_today";
    let source = "solarcharger/288/History/Daily/0/Yield";
    expect_state(&rig, key, "0.11", Duration::from_secs(20)).await;
    stop_bridge(&mut rig).await;

    rig.sim.set_value(source, json!(0.05)).await;
    let since = restart_bridge(&mut rig).await;
    // Ten minutes of production time: twice the hold a counter drop waits for.
    tokio::time::sleep(rig.scaled(Duration::from_secs(600))).await;
    rig.sim.set_value(source, json!(0.06)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let published = states_since(&rig, key, since);
    assert_eq!(
        rig.observer.state(key).as_deref(),
        Some("0.06"),
        "{key} after the overnight restart: published {published:?}, the GX reports 0.06 kWh today\n{}",
        rig.log()
    );
}

/// The bridge publishes a lifetime counter's increase, is restarted, and meanwhile the
/// battery monitor's history was cleared. The counter must continue from the last value
/// Home Assistant received, because any step down is a meter reset or negative energy
/// in Home Assistant's statistics.
#[tokio::test(flavor = "current_thread")]
async fn counter_restart_continues_from_last_published() {
    let mut rig = start_throttled(30.0).await;
    let key = "battery_charged_energy";
    let source = "battery/275/History/ChargedEnergy";
    expect_state(&rig, key, "226.57", Duration::from_secs(20)).await;

    // 40 kWh charged over a few days, in steps: a single reading 18 % above the last is
    // held as a possible spike until it is confirmed.
    for step in [236.57, 246.57, 256.57, 266.57] {
        rig.sim.set_value(source, json!(step)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    expect_state(&rig, key, "266.57", rig.limit(Duration::from_secs(120))).await;
    // Longer than the bridge's periodic save (60 s).
    tokio::time::sleep(rig.scaled(Duration::from_secs(150))).await;
    stop_bridge(&mut rig).await;

    // The monitor's history is cleared while the bridge is stopped.
    rig.sim.set_value(source, json!(0.5)).await;
    let since = restart_bridge(&mut rig).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(600))).await;
    rig.sim.set_value(source, json!(0.6)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let published = numbers_since(&rig, key, since);
    assert!(
        !published.is_empty(),
        "{key}: nothing published after the restart\n{}",
        rig.log()
    );
    assert!(
        published.iter().all(|v| *v >= 266.57),
        "{key}: published {published:?} after the restart; Home Assistant last received 266.57"
    );
    let stored = std::fs::read_to_string(rig.data.path().join("entities.json")).unwrap();
    assert!(
        stored.contains("266.6"),
        "entities.json does not contain the last published value of {key}: {stored}"
    );
}

/// A second solar charger joins but reports its lifetime yield as `null` (a charger on
/// VE.Can that has not read its history, or a model without one). The first charger
/// keeps producing, and the summed totals must keep following it rather than freeze
/// until the second charger reports a number.
#[tokio::test(flavor = "current_thread")]
async fn solar_sum_with_null_charger() {
    let rig = start_throttled(30.0).await;
    let total_key = "solar_yield_total";
    let total_source = "solarcharger/288/Yield/User";
    let total = rig.sim.value(total_source).await.and_then(|v| v.as_f64());
    let total = total.expect("the boat capture's charger reports Yield/User");
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    let items = [
        ("ProductName", json!("SmartSolar Charger MPPT 150/35")),
        ("History/Daily/0/Yield", json!(null)),
        ("Pv/V", json!(0.0)),
        ("State", json!(0)),
        ("Yield/User", json!(null)),
    ];
    for (path, value) in items {
        rig.sim
            .set_value(&format!("solarcharger/290/{path}"), value)
            .await;
    }
    let since = Instant::now();
    // The first charger produces 1 kWh over ten minutes.
    for minute in 1..=10 {
        tokio::time::sleep(rig.scaled(Duration::from_secs(60))).await;
        let produced = 0.1 * f64::from(minute);
        rig.sim
            .set_value(total_source, json!(total + produced))
            .await;
    }
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let published = numbers_since(&rig, total_key, since);
    let latest = rig.observer.state(total_key);
    let latest_value = latest.as_deref().and_then(|s| s.parse::<f64>().ok());
    assert!(
        latest_value.is_some_and(|v| v >= total + 0.99),
        "{total_key}: latest {latest:?}, published {published:?}; the first charger went from {total} to {} kWh",
        total + 1.0
    );
}

/// The solar charger is swapped for another one (a used unit with a longer history) on
/// the same VE.Direct port, so the GX gives it the same service instance. Its lifetime
/// yield is 3,000 kWh above the old charger's. None of that was produced on this boat, so
/// the total Home Assistant receives must not step up by it.
#[tokio::test(flavor = "current_thread")]
async fn same_port_charger_swap_adds_nothing() {
    let rig = start_throttled(30.0).await;
    let key = "solar_yield_total";
    expect_state(&rig, key, "1922.4", Duration::from_secs(20)).await;
    let since = Instant::now();

    rig.sim.remove_device("solarcharger", "288").await;
    let offline = rig
        .wait_since(
            &format!("{BASE}/{key}/availability"),
            "offline",
            since,
            Duration::from_secs(10),
        )
        .await;
    assert!(
        offline.is_some(),
        "{key} stayed available without a charger\n{}",
        rig.log()
    );
    tokio::time::sleep(rig.scaled(Duration::from_secs(60))).await;

    let items = [
        ("ProductName", json!("SmartSolar Charger MPPT 100/50")),
        ("Serial", json!("HQ2149ABCDE")),
        ("History/Daily/0/Yield", json!(0.2)),
        ("Pv/V", json!(40.5)),
        ("State", json!(3)),
        ("Yield/User", json!(4922.4)),
    ];
    for (path, value) in items {
        rig.sim
            .set_value(&format!("solarcharger/288/{path}"), value)
            .await;
    }
    for minute in 1..=5 {
        tokio::time::sleep(rig.scaled(Duration::from_secs(60))).await;
        rig.sim
            .set_value(
                "solarcharger/288/Yield/User",
                json!(4922.4 + 0.1 * f64::from(minute)),
            )
            .await;
    }
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let published = numbers_since(&rig, key, since);
    assert!(
        !published.is_empty(),
        "{key}: nothing published after the swap\n{}",
        rig.log()
    );
    assert!(
        published.iter().all(|v| *v < 1930.0),
        "{key}: published {published:?}; the new charger produced 0.5 kWh on this boat"
    );
}

/// A generator start/stop service whose `State` is null from the start is a source the GX
/// has never published with a value. The documented rule makes such an entity
/// unavailable or keeps it out of discovery, so it must not appear in state unknown.
#[tokio::test(flavor = "current_thread")]
async fn generator_null_state_unavailable() {
    let rig = start_with(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let key = "generator_running";
    let availability = format!("{BASE}/{key}/availability");
    let before = rig.observer.latest(&availability);

    rig.sim
        .set_value("generator/0/ProductName", json!("Generator start/stop"))
        .await;
    rig.sim.set_value("generator/0/State", json!(null)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let discovered = rig.discovery_ids().contains_key(key);
    let latest = rig.observer.latest(&availability);
    let state = rig.observer.state(key);
    assert!(
        !discovered || latest.as_deref() == Some("offline"),
        "{key}: in discovery with availability {latest:?} (before: {before:?}) and state {state:?}"
    );
}

/// A Multi RS Solar has its own MPPT and publishes its lifetime and daily PV yield
/// (`multi/<n>/Yield/User` and `History/Daily/0/Yield`, 72.84 kWh in the `multirs`
/// capture). The solar power sensor includes it, so the solar energy counters must too,
/// or the Energy dashboard shows no solar on such a system.
#[tokio::test(flavor = "current_thread")]
async fn multi_rs_solar_yield_counted() {
    let options = RigOptions {
        capture: "multirs",
        ..RigOptions::default()
    };
    let rig = start_with(options).await;
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    let truth = rig.sim.values().await;
    let multi_yield: Vec<(&String, &serde_json::Value)> = truth
        .iter()
        .filter(|(k, _)| k.starts_with("multi/") && k.ends_with("/Yield/User"))
        .collect();
    assert!(
        !multi_yield.is_empty(),
        "the multirs capture has a Multi RS yield"
    );
    let discovered = rig.discovery_ids();
    let state = rig.observer.state("solar_yield_total");
    assert!(
        discovered.contains_key("solar_yield_total"),
        "solar_yield_total is not in discovery (state {state:?}); the GX reports {multi_yield:?}"
    );
    assert_eq!(state.as_deref(), Some("72.84"), "solar_yield_total");
}

/// The GX is switched off overnight while the bridge keeps running, and comes back in
/// the morning with the daily yield started again from 0 and already at 0.05 kWh. As
/// after a bridge restart, the daily yield must show today's value.
#[tokio::test(flavor = "current_thread")]
async fn daily_yield_after_overnight_outage() {
    let rig = start_throttled(30.0).await;
    let key = "solar_yield_today";
    let source = "solarcharger/288/History/Daily/0/Yield";
    expect_state(&rig, key, "0.11", Duration::from_secs(20)).await;

    let since = Instant::now();
    rig.sim.reboot(rig.scaled(Duration::from_secs(600))).await;
    let offline = rig
        .wait_since(GX_TOPIC, "offline", since, Duration::from_secs(10))
        .await;
    assert!(
        offline.is_some(),
        "the GX link never went offline\n{}",
        rig.log()
    );
    rig.sim.set_value(source, json!(0.05)).await;
    let online = rig
        .wait_since(GX_TOPIC, "online", since, Duration::from_secs(30))
        .await;
    assert!(
        online.is_some(),
        "the GX link never came back\n{}",
        rig.log()
    );

    // Ten minutes of production time: twice the hold a counter drop waits for.
    tokio::time::sleep(rig.scaled(Duration::from_secs(600))).await;
    rig.sim.set_value(source, json!(0.06)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let published = states_since(&rig, key, since);
    assert_eq!(
        rig.observer.state(key).as_deref(),
        Some("0.06"),
        "{key} after the overnight outage: published {published:?}, the GX reports 0.06 kWh today"
    );
}

/// Returns the topics whose availability went `offline` at or after `since`.
fn went_offline_since(rig: &Rig, since: Instant) -> Vec<String> {
    let seen = rig.observer.seen.lock().unwrap();
    let mut topics: Vec<String> = seen
        .log
        .iter()
        .filter(|(at, t, p)| *at >= since && t.ends_with("/availability") && p == "offline")
        .map(|(_, t, _)| t.clone())
        .collect();
    topics.dedup();
    topics
}

/// A GX on dbus-mqtt (Venus OS before 3.20) reboots: its broker comes back empty and
/// dbus-mqtt republishes every value through its queue. With `paced` set, the simulated
/// dbus-mqtt sends at most 50 messages every 1.5 s, so the boat's 2,600 topics take over
/// a minute. Once the bridge reports the GX link online again, no entity whose device is
/// on the GX may then go unavailable: the devices are all there, only late.
async fn dbus_mqtt_reboot(paced: bool) {
    use roamcore_victron::sim::{capture::Capture, Mode, SimConfig, Simulator};

    let options = RigOptions {
        mode: Mode::DbusMqtt,
        scale: 1.0,
        scale_fixed: true,
        ..RigOptions::default()
    };
    let mut rig = Rig::start_without_bridge(options).await;
    let mut capture = Capture::load("boat").expect("capture loads");
    capture.events.clear();
    let mut config = SimConfig::new(rig.gx.host_port(), capture);
    config.mode = Mode::DbusMqtt;
    config.vary = false;
    config.dbus_mqtt_paced = paced;
    config.reconnect_delay = Duration::from_millis(50);
    let sim = Simulator::spawn(config);
    std::mem::replace(&mut rig.sim, sim).stop();
    assert!(
        rig.sim.wait_connected(Duration::from_secs(10)).await,
        "the simulated GX connects"
    );
    rig.start_bridge();
    rig.wait_consistent(Duration::from_secs(120))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    let since = Instant::now();
    rig.stop_gx_broker();
    let offline = rig
        .wait_since(GX_TOPIC, "offline", since, Duration::from_secs(30))
        .await;
    assert!(
        offline.is_some(),
        "the GX link never went offline\n{}",
        rig.log()
    );
    rig.start_gx_broker().await;
    let online = rig
        .wait_since(GX_TOPIC, "online", since, Duration::from_secs(60))
        .await;
    let online = online.unwrap_or_else(|| panic!("the GX link never came back\n{}", rig.log()));

    let consistent = rig.wait_consistent(Duration::from_secs(150)).await;
    let dropped = went_offline_since(&rig, online);
    let gone_lines: Vec<String> = rig
        .log()
        .lines()
        .filter(|line| line.contains("treating it as gone"))
        .map(str::to_string)
        .collect();
    assert!(
        dropped.is_empty(),
        "went unavailable after the GX link was back: {dropped:?}\n{}",
        gone_lines.join("\n")
    );
    consistent.unwrap_or_else(|m| panic!("after the reboot: {m:#?}\n{}", rig.log()));
}

/// dbus-mqtt as its source reads: a queue run continues until the queue is empty.
#[tokio::test(flavor = "current_thread")]
async fn dbus_mqtt_reboot_keeps_devices() {
    dbus_mqtt_reboot(false).await;
}

/// dbus-mqtt read strictly: batches of at most 50 messages, 1.5 s apart.
#[tokio::test(flavor = "current_thread")]
async fn dbus_mqtt_paced_reboot_keeps_devices() {
    dbus_mqtt_reboot(true).await;
}

/// A lifetime counter reads 65535 for one message (a "not available" sentinel of a
/// CAN-bus device, or a corrupt reading) and then its real value again. Home Assistant
/// counts every increase of a `total_increasing` sensor, so the spike must not reach it,
/// and must certainly not stay in the published value once the reading is back.
#[tokio::test(flavor = "current_thread")]
async fn counter_spike_not_kept() {
    let rig = start_throttled(30.0).await;
    let key = "solar_yield_total";
    let source = "solarcharger/288/Yield/User";
    expect_state(&rig, key, "1922.4", Duration::from_secs(20)).await;
    // Past the energy window, so a change would go out at once.
    tokio::time::sleep(rig.scaled(Duration::from_secs(90))).await;

    let since = Instant::now();
    rig.sim.set_value(source, json!(65535.0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.sim.set_value(source, json!(1922.5)).await;
    // Ten minutes of production time: twice the hold a counter drop waits for.
    tokio::time::sleep(rig.scaled(Duration::from_secs(600))).await;
    rig.sim.set_value(source, json!(1922.6)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let published = numbers_since(&rig, key, since);
    let latest = rig.observer.state(key);
    assert_eq!(
        latest.as_deref(),
        Some("1922.6"),
        "{key}: published {published:?} after a one-message spike to 65535"
    );
}

/// `forget --days 0` clears the ghosts of removed devices, as the help text offers. It
/// also forgets the energy counters the GX still has, with the offset that kept the
/// published value continuous after a meter reset, so the next start publishes the raw
/// reading: the lifetime counter steps down from 226.67 to 0.6 kWh in Home Assistant.
#[tokio::test(flavor = "current_thread")]
async fn forget_all_keeps_counter_continuity() {
    let mut rig = start_throttled(30.0).await;
    let key = "battery_charged_energy";
    let source = "battery/275/History/ChargedEnergy";
    expect_state(&rig, key, "226.57", Duration::from_secs(20)).await;

    // The monitor's history is cleared: after the hold the drop is a real reset, and the
    // published value continues from 226.57.
    rig.sim.set_value(source, json!(0.5)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(400))).await;
    rig.sim.set_value(source, json!(0.6)).await;
    expect_state(&rig, key, "226.67", rig.limit(Duration::from_secs(120))).await;
    stop_bridge(&mut rig).await;

    let data_dir = rig.data.path().display().to_string();
    let output = std::process::Command::new(crate::support::daemon::BIN)
        .args(["forget", "--days", "0", "--data-dir", &data_dir])
        .env_remove("SUPERVISOR_TOKEN")
        .output()
        .expect("run roamcore-victron forget");
    assert!(output.status.success(), "forget failed: {output:?}");

    let since = restart_bridge(&mut rig).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;
    let published = numbers_since(&rig, key, since);
    assert!(
        !published.is_empty(),
        "{key}: nothing published after the restart\n{}",
        rig.log()
    );
    assert!(
        published.iter().all(|v| *v >= 226.67),
        "{key}: published {published:?} after forget and restart; Home Assistant last received 226.67"
    );
}

/// Returns the instance and custom name of the first fresh-water tank in `truth`.
fn fresh_water_tank(
    truth: &std::collections::BTreeMap<String, serde_json::Value>,
) -> (String, String) {
    let instance = truth
        .iter()
        .find(|(k, v)| k.starts_with("tank/") && k.ends_with("/FluidType") && v.as_i64() == Some(1))
        .map(|(k, _)| k.split('/').nth(1).unwrap().to_string())
        .expect("the boat capture has a fresh-water tank");
    let name = truth
        .get(&format!("tank/{instance}/CustomName"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    (instance, name)
}

/// Sets a fresh-water tank's values on a simulated GX.
async fn set_fresh_tank(
    sim: &roamcore_victron::sim::SimHandle,
    instance: &str,
    name: &str,
    level: f64,
) {
    let items = [
        ("CustomName", json!(name)),
        ("FluidType", json!(1)),
        ("Level", json!(level)),
        ("Remaining", json!(level / 1000.0)),
    ];
    for (path, value) in items {
        sim.set_value(&format!("tank/{instance}/{path}"), value)
            .await;
    }
}

/// A boat with two fresh-water tanks, "Fresh Aft" the second, gets a replacement GX. The
/// new GX numbers the tank senders in another order. Each tank must keep its entity (the
/// bridge stored both names), or Home Assistant's history of one tank continues with the
/// other tank's levels.
#[tokio::test(flavor = "current_thread")]
async fn gx_swap_keeps_tank_identity() {
    use roamcore_victron::sim::{capture::Capture, SimConfig, Simulator};

    let mut rig = start_with(RigOptions::default()).await;
    let truth = rig.sim.values().await;
    let (first, first_name) = fresh_water_tank(&truth);
    assert!(
        !first_name.is_empty(),
        "the boat's fresh-water tank has a custom name"
    );
    set_fresh_tank(&rig.sim, "25", "Fresh Aft", 30.0).await;
    expect_state(
        &rig,
        "tank_fresh_water_2_level",
        "30",
        Duration::from_secs(10),
    )
    .await;
    let first_level = rig.observer.state("tank_fresh_water_level");
    stop_bridge(&mut rig).await;

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
    replacement.remove_device("tank", &first).await;
    set_fresh_tank(&replacement, "30", "Fresh Aft", 31.0).await;
    set_fresh_tank(&replacement, "31", &first_name, 77.0).await;

    let since = Instant::now();
    let mut args = rig.bridge_args();
    args.extend(["--portal-id".to_string(), "c0619ab0aaaa".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rig.daemon = Some(crate::support::daemon::Daemon::start(&args, &[]));
    let online = rig
        .wait_since(GX_TOPIC, "online", since, Duration::from_secs(30))
        .await;
    assert!(
        online.is_some(),
        "the replacement GX never came online\n{}",
        rig.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let config = rig.observer.discovery().expect("discovery");
    let name_1 = config["components"]["tank_fresh_water_level"]["name"].clone();
    let name_2 = config["components"]["tank_fresh_water_2_level"]["name"].clone();
    assert_eq!(
        rig.observer.state("tank_fresh_water_2_level").as_deref(),
        Some("31"),
        "tank_fresh_water_2_level (was Fresh Aft) is now named {name_2}; tank_fresh_water_level \
         (was {first_name}, level {first_level:?}) is now named {name_1}"
    );
    assert_eq!(
        rig.observer.state("tank_fresh_water_level").as_deref(),
        Some("77"),
        "tank_fresh_water_level, named {name_1}"
    );
}

/// A counter drop that was being held when `entities.json` was last written leaves its
/// start time in the file, and nothing clears it there once the reading is back. Later
/// the GX and the host power up together, and the monitor's placeholder 0 after the
/// restart must still be held for five minutes. Taking it at once as a meter reset, on
/// the strength of the old start time, publishes the real reading on top of the old total.
#[tokio::test(flavor = "current_thread")]
async fn stored_drop_start_not_reused() {
    let mut rig = start_throttled(30.0).await;
    let key = "battery_charged_energy";
    let source = "battery/275/History/ChargedEnergy";
    expect_state(&rig, key, "226.57", Duration::from_secs(20)).await;

    // A GX reboot: the monitor first reports a placeholder 0. A new tank sender makes
    // the bridge save entities.json while the drop is held.
    rig.sim.set_value(source, json!(0.0)).await;
    set_fresh_tank(&rig.sim, "25", "Fresh Aft", 30.0).await;
    let path = rig.data.path().join("entities.json");
    let deadline = Instant::now() + rig.scaled(Duration::from_secs(200));
    let mut stored = String::new();
    while Instant::now() < deadline {
        stored = std::fs::read_to_string(&path).unwrap_or_default();
        if stored.contains("drop_since") && stored.contains("tank/25") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stored.contains("drop_since"),
        "entities.json was not saved during the hold: {stored}"
    );
    rig.sim.set_value(source, json!(226.6)).await;
    expect_state(&rig, key, "226.6", rig.limit(Duration::from_secs(60))).await;
    stop_bridge(&mut rig).await;

    // Later (here longer than the hold) the GX and the host power up together.
    tokio::time::sleep(rig.scaled(Duration::from_secs(400))).await;
    rig.sim.set_value(source, json!(0.0)).await;
    let since = restart_bridge(&mut rig).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(20))).await;
    rig.sim.set_value(source, json!(226.7)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let published = numbers_since(&rig, key, since);
    assert!(
        published.iter().all(|v| *v < 227.0),
        "{key}: published {published:?} after the restart; the monitor reads 226.7 kWh"
    );
}

/// The charger hunts between bulk and absorption every 2 s for six minutes, after a long
/// time in float. Flicker must not publish each change, but Home Assistant must not show
/// float, a state the charger left six minutes ago, either: no state may be older than
/// 5 minutes while the GX reports something else.
#[tokio::test(flavor = "current_thread")]
async fn enum_flicker_not_stale() {
    let rig = start_throttled(10.0).await;
    let key = "solar_charge_state";
    let source = "solarcharger/288/State";
    rig.sim.set_value(source, json!(5)).await;
    expect_state(&rig, key, "float", Duration::from_secs(20)).await;

    let since = Instant::now();
    let step = rig.scaled(Duration::from_secs(2));
    let end = since + rig.scaled(Duration::from_secs(360));
    let mut code = 3;
    while Instant::now() < end {
        rig.sim.set_value(source, json!(code)).await;
        code = if code == 3 { 4 } else { 3 };
        tokio::time::sleep(step).await;
    }

    let published = states_since(&rig, key, since);
    let latest = rig.observer.state(key);
    assert_ne!(
        latest.as_deref(),
        Some("float"),
        "{key}: published {published:?} in six minutes of bulk/absorption"
    );
}

/// After a GX reboot a battery monitor reports its placeholder 0 for six minutes (a BMS
/// that is slow to read its history), so the guard takes the drop as a meter reset. When
/// the old reading of 226.6 kWh then comes back, it is the same meter, not 226.6 kWh
/// charged in a minute. The published total must stay near 226.6.
#[tokio::test(flavor = "current_thread")]
async fn long_placeholder_not_doubled() {
    let rig = start_throttled(30.0).await;
    let key = "battery_charged_energy";
    let source = "battery/275/History/ChargedEnergy";
    expect_state(&rig, key, "226.57", Duration::from_secs(20)).await;

    let since = Instant::now();
    rig.sim.set_value(source, json!(0.0)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(360))).await;
    rig.sim.set_value(source, json!(226.6)).await;
    tokio::time::sleep(rig.scaled(Duration::from_secs(120))).await;

    let published = numbers_since(&rig, key, since);
    assert!(
        published.iter().all(|v| *v < 227.0),
        "{key}: published {published:?}; the monitor reads 226.6 kWh again"
    );
}
