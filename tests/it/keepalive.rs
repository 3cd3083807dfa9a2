//! The Venus keepalive as the GX's broker sees it, with the simulated GX in both broker
//! modes. Timers run 6 times faster (`--time-scale 6`): the 30 s keepalive comes every
//! 5 s, so a 3-minute run takes 30 s.

use std::time::{Duration, Instant};

use roamcore_victron::sim::capture::Capture;
use roamcore_victron::sim::{Mode, SimConfig, SimHandle, Simulator};

use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::observer::Observer;

const SCALE: f64 = 6.0;
const SUPPRESS: &str = r#"{"keepalive-options":["suppress-republish"]}"#;

struct Rig {
    gx: Mosquitto,
    ha: Mosquitto,
    _data: tempfile::TempDir,
    sim: SimHandle,
    daemon: Daemon,
    gx_side: Observer,
    ha_side: Observer,
}

async fn rig(mode: Mode, extra: &[&str]) -> Rig {
    let gx = Mosquitto::start();
    let ha = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let gx_side = Observer::connect(gx.port, &["R/#"]).await;
    let ha_side = Observer::connect(ha.port, &["roamcore/#"]).await;

    let mut config = SimConfig::new(gx.host_port(), Capture::load("boat").unwrap());
    config.mode = mode;
    config.time_scale = SCALE;
    config.vary = false;
    config.reconnect_delay = Duration::from_millis(200);
    let sim = Simulator::spawn(config);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);

    let scale = SCALE.to_string();
    let (gx_address, ha_address) = (gx.host_port(), ha.host_port());
    let mut args = vec![
        "run", "--gx", &gx_address, "--ha-broker", &ha_address, "--data-dir",
        data.path().to_str().unwrap(), "--time-scale", &scale,
    ];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&args, &[]);
    assert!(
        ha_side.wait_for("roamcore/victron/bridge_status/state", "connected", Duration::from_secs(15)).await,
        "{}",
        daemon.log_text()
    );
    Rig { gx, ha, _data: data, sim, daemon, gx_side, ha_side }
}

/// Keepalives seen on the GX broker: (arrival, payload).
fn keepalives(observer: &Observer) -> Vec<(Instant, String)> {
    observer
        .seen
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|(_, topic, _)| topic.ends_with("/keepalive") && topic.starts_with("R/"))
        .map(|(at, _, payload)| (*at, payload.clone()))
        .collect()
}

fn max_gap(sent: &[(Instant, String)]) -> Duration {
    sent.windows(2).map(|w| w[1].0.duration_since(w[0].0)).max().unwrap_or_default()
}

async fn three_minutes(mode: Mode) -> Vec<(Instant, String)> {
    let rig = rig(mode, &[]).await;
    tokio::time::sleep(Duration::from_secs_f64(180.0 / SCALE)).await;
    let sent = keepalives(&rig.gx_side);
    assert!(sent.len() >= 6, "{} keepalives in 3 scaled minutes\n{}", sent.len(), rig.daemon.log_text());
    let gap = max_gap(&sent);
    assert!(gap <= Duration::from_secs_f64(35.0 / SCALE), "gap of {gap:?} (35 s scaled is {:?})", Duration::from_secs_f64(35.0 / SCALE));
    assert_eq!(sent[0].1, "", "the first keepalive after connecting is empty");
    sent
}

#[tokio::test(flavor = "current_thread")]
async fn keepalive_flashmq_three_minutes() {
    let sent = three_minutes(Mode::Flashmq).await;
    let suppressed = sent.iter().filter(|(_, p)| p == SUPPRESS).count();
    assert!(suppressed >= sent.len() - 2, "dbus-flashmq keepalives should suppress republish: {sent:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn keepalive_dbus_mqtt_three_minutes() {
    let sent = three_minutes(Mode::DbusMqtt).await;
    assert!(sent.iter().all(|(_, p)| p.is_empty()), "dbus-mqtt reads any payload as topic filters: {sent:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn broker_restart_resubscribes_and_full_publishes() {
    let mut rig = rig(Mode::Flashmq, &[]).await;
    rig.gx.restart();
    let restarted = Instant::now();

    assert!(
        rig.ha_side.wait_for("roamcore/victron/gx", "offline", Duration::from_secs(10)).await,
        "GX link never went offline"
    );
    assert!(
        rig.ha_side.wait_for("roamcore/victron/gx", "online", Duration::from_secs(20)).await,
        "{}",
        rig.daemon.log_text()
    );
    // The restarted broker forgot the subscription; a value changed now must arrive.
    rig.sim.set_value("system/0/Dc/Battery/Soc", serde_json::json!(63)).await;
    assert!(rig.ha_side.wait_for("roamcore/victron/battery_soc/state", "63", Duration::from_secs(10)).await);
    let empty_after = keepalives(&rig.gx_side).iter().any(|(at, p)| *at > restarted && p.is_empty());
    assert!(empty_after, "no empty keepalive after the broker restart");
}

#[tokio::test(flavor = "current_thread")]
async fn expired_session_gets_values_from_the_gap() {
    let rig = rig(Mode::Flashmq, &["--no-throttle"]).await;
    rig.sim.expire_keepalive().await;
    rig.sim.set_value("system/0/Dc/Battery/Soc", serde_json::json!(42)).await;
    rig.sim.set_value("system/0/Dc/Pv/Power", serde_json::json!(321)).await;

    assert!(
        rig.ha_side.wait_for("roamcore/victron/battery_soc/state", "42", Duration::from_secs(20)).await,
        "value changed while the session was expired never arrived\n{}",
        rig.daemon.log_text()
    );
    assert!(rig.ha_side.wait_for("roamcore/victron/solar_power/state", "321", Duration::from_secs(5)).await);
    let full = keepalives(&rig.gx_side).iter().any(|(_, p)| p.contains("full-publish-completed-echo"));
    assert!(full, "revival keepalive was not a full one");
    let _ = &rig.ha;
}
