//! SIGTERM in every state of the bridge: it publishes `offline` on its bridge topic when
//! Home Assistant's broker is reachable, and exits with status 0 within 5 s.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::support::daemon::Daemon;
use crate::support::mosquitto::{BrokerConfig, Mosquitto};
use crate::support::observer::Observer;
use crate::support::proxy::Proxy;
use crate::support::rig::{record_figure, scale_or, Rig, RigOptions, BRIDGE_TOPIC, GX_TOPIC, STATUS_TOPIC};

const EXIT_BOUND: Duration = Duration::from_secs(5);
const PORTAL: &str = "c0619ab0d0e1";

/// Sends SIGTERM and checks the exit status, the time it took and, when `observer` watches
/// the bridge's broker, the `offline` it published.
async fn stop_and_check(state: &str, daemon: &mut Daemon, observer: Option<&Observer>) {
    let before = observer.map(|o| o.count(BRIDGE_TOPIC)).unwrap_or(0);
    let (status, took) = daemon.sigterm();
    record_figure(&format!("sigterm.{state}"), took, EXIT_BOUND, 1.0);
    assert!(status.success(), "{state}: exit status {status:?}\n{}", daemon.log_text());
    assert!(took <= EXIT_BOUND, "{state}: exit took {took:?}\n{}", daemon.log_text());
    // The log reader may still be draining the pipe after the exit.
    let stopped = daemon.wait_line("stopped", Duration::from_secs(2)).await;
    assert!(stopped, "{state}: no clean stop\n{}", daemon.log_text());
    if let Some(observer) = observer {
        let published = observer.wait_until(Duration::from_secs(2), |seen| seen.counts.get(BRIDGE_TOPIC).copied().unwrap_or(0) > before).await;
        assert!(published, "{state}: no message on {BRIDGE_TOPIC} after SIGTERM");
        assert_eq!(observer.latest(BRIDGE_TOPIC).as_deref(), Some("offline"), "{state}");
    }
}

fn bridge(gx: &str, ha: &str, data: &std::path::Path, scale: f64, extra: &[&str]) -> Daemon {
    let scale = scale.to_string();
    let mut args = vec!["run", "--gx", gx, "--ha-broker", ha, "--data-dir", data.to_str().unwrap(), "--time-scale", &scale];
    args.extend_from_slice(extra);
    Daemon::start(&args, &[])
}

async fn publish_serial(port: u16) {
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new("serial", "127.0.0.1", port), 10);
    let payload = format!("{{\"value\":\"{PORTAL}\"}}");
    client.publish(format!("N/{PORTAL}/system/0/Serial"), QoS::AtLeastOnce, true, payload).await.unwrap();
    client.disconnect().await.unwrap();
    while eventloop.poll().await.is_ok() {}
}

#[tokio::test(flavor = "current_thread")]
async fn sigterm_connected_and_stale() {
    let mut rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    stop_and_check("connected", rig.daemon.as_mut().unwrap(), Some(&rig.observer)).await;

    let restarted = Instant::now();
    rig.start_bridge();
    let online = rig.wait_since(GX_TOPIC, "online", restarted, Duration::from_secs(20)).await;
    assert!(online.is_some(), "{}", rig.log());
    let frozen = Instant::now();
    rig.sim.freeze().await;
    assert!(rig.wait_since(STATUS_TOPIC, "stale", frozen, Duration::from_secs(20)).await.is_some(), "{}", rig.log());
    stop_and_check("stale", rig.daemon.as_mut().unwrap(), Some(&rig.observer)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn sigterm_while_gx_unusable() {
    let scale = scale_or(10.0);
    let ha = Mosquitto::start();
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;
    let data = tempfile::tempdir().unwrap();

    // Nothing listens at the GX address.
    let nothing = Mosquitto::start();
    let refused = nothing.host_port();
    drop(nothing);
    let mut daemon = bridge(&refused, &ha.host_port(), data.path(), scale, &[]);
    assert!(observer.wait_for(STATUS_TOPIC, "mqtt_disabled", Duration::from_secs(10)).await, "{}", daemon.log_text());
    stop_and_check("mqtt_disabled", &mut daemon, Some(&observer)).await;

    // A broker without the GX's retained Serial.
    let empty = Mosquitto::start();
    let mut daemon = bridge(&empty.host_port(), &ha.host_port(), data.path(), scale, &[]);
    assert!(observer.wait_for(STATUS_TOPIC, "validating", Duration::from_secs(10)).await, "{}", daemon.log_text());
    stop_and_check("validating", &mut daemon, Some(&observer)).await;

    // A GX that rejects the password.
    let credentials = Some(("gx".to_string(), "right".to_string()));
    let locked = Mosquitto::start_with(BrokerConfig { credentials, ..Default::default() });
    let mut daemon = bridge(&locked.host_port(), &ha.host_port(), data.path(), scale, &["--gx-password", "wrong"]);
    assert!(observer.wait_for(STATUS_TOPIC, "auth_required", Duration::from_secs(10)).await, "{}", daemon.log_text());
    stop_and_check("auth_required", &mut daemon, Some(&observer)).await;

    // A GX that accepts TCP and never sends CONNACK: SIGTERM lands inside an attempt.
    let gx = Mosquitto::start();
    publish_serial(gx.port).await;
    let silent = Proxy::start(gx.addr()).await;
    silent.freeze();
    let mut daemon = bridge(&silent.host_port(), &ha.host_port(), data.path(), scale, &[]);
    assert!(observer.wait_for(STATUS_TOPIC, "connecting", Duration::from_secs(10)).await, "{}", daemon.log_text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_and_check("connect_in_progress", &mut daemon, Some(&observer)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn sigterm_without_home_assistant() {
    let scale = scale_or(10.0);
    let gx = Mosquitto::start();
    publish_serial(gx.port).await;
    let data = tempfile::tempdir().unwrap();

    // Home Assistant's broker is down: nothing to publish to, exit anyway.
    let nothing = Mosquitto::start();
    let refused = nothing.host_port();
    drop(nothing);
    let mut daemon = bridge(&gx.host_port(), &refused, data.path(), scale, &[]);
    assert!(daemon.wait_line("GX identified", Duration::from_secs(10)).await, "{}", daemon.log_text());
    stop_and_check("ha_down", &mut daemon, None).await;

    // Home Assistant's broker went silent mid-connection: `offline` and DISCONNECT are
    // written to the socket but never delivered, and the bridge exits anyway.
    let ha = Mosquitto::start();
    let proxy = Proxy::start(ha.addr()).await;
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;
    let mut daemon = bridge(&gx.host_port(), &proxy.host_port(), data.path(), scale, &[]);
    assert!(observer.wait_for(BRIDGE_TOPIC, "online", Duration::from_secs(10)).await, "{}", daemon.log_text());
    proxy.freeze();
    stop_and_check("ha_silent", &mut daemon, None).await;
}

#[tokio::test(flavor = "current_thread")]
async fn sigterm_during_flood() {
    let rig_options = RigOptions { rate: Some(roamcore_victron::sim::Rate::Max), live_values: true, ..RigOptions::default() };
    let mut rig = Rig::start(rig_options).await;
    assert!(rig.wait_payload(GX_TOPIC, "online", Duration::from_secs(20)).await.is_some(), "{}", rig.log());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_and_check("flood", rig.daemon.as_mut().unwrap(), Some(&rig.observer)).await;
}
