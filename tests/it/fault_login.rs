//! Brokers the bridge cannot use: wrong credentials, a changed TLS certificate, and a
//! broker that accepts TCP but never sends a CONNACK. Each must give a clear status,
//! retries at a bounded rate, a handful of log lines and no crash.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::support::daemon::Daemon;
use crate::support::mosquitto::{self_signed_certificate, BrokerConfig, Mosquitto};
use crate::support::observer::Observer;
use crate::support::proxy::Proxy;
use crate::support::rig::{limit_at, record_figure, scale_or, STATUS_TOPIC};

const PORTAL: &str = "c0619ab0d0e1";
/// Distinct enough that finding it in the log means the password was logged.
const WRONG_PASSWORD: &str = "not-the-password-7f3a";
/// Minimum interval between logins after the GX rejected one.
const AUTH_RETRY: Duration = Duration::from_secs(60);
/// Largest reconnect delay (30 s + 20 % jitter) plus the connect timeout of one attempt.
const RETRY_INTERVAL_MAX: Duration = Duration::from_secs(36 + 10);

/// Publishes the retained Serial a GX keeps on its broker.
async fn publish_serial(port: u16, credentials: Option<(&str, &str)>) {
    let mut options = MqttOptions::new("serial", "127.0.0.1", port);
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let payload = format!("{{\"value\":\"{PORTAL}\"}}");
    client.publish(format!("N/{PORTAL}/system/0/Serial"), QoS::AtLeastOnce, true, payload).await.unwrap();
    client.disconnect().await.unwrap();
    while eventloop.poll().await.is_ok() {}
}

fn bridge(gx: &str, ha: &str, data: &std::path::Path, scale: f64, extra: &[&str]) -> Daemon {
    let scale = scale.to_string();
    let mut args = vec!["run", "--gx", gx, "--ha-broker", ha, "--data-dir", data.to_str().unwrap(), "--time-scale", &scale];
    args.extend_from_slice(extra);
    Daemon::start(&args, &[])
}

fn warnings(daemon: &Daemon) -> Vec<String> {
    daemon.lines().into_iter().filter(|line| line.contains("WARNING") || line.contains("ERROR")).collect()
}

fn is_running(daemon: &Daemon) -> bool {
    daemon.rss_kib().is_some()
}

/// Returns the intervals between the connection attempts a proxy saw.
fn attempt_gaps(proxy: &Proxy) -> Vec<Duration> {
    proxy.accepted().windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn gx_wrong_password_retries_slowly() {
    let scale = scale_or(10.0);
    let credentials = Some(("gx".to_string(), "right".to_string()));
    let gx = Mosquitto::start_with(BrokerConfig { credentials, ..Default::default() });
    publish_serial(gx.port, Some(("gx", "right"))).await;
    let gx_proxy = Proxy::start(gx.addr()).await;
    let ha = Mosquitto::start();
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;
    let data = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let daemon = bridge(&gx_proxy.host_port(), &ha.host_port(), data.path(), scale, &["--gx-password", WRONG_PASSWORD]);
    let shown = observer.wait_for(STATUS_TOPIC, "auth_required", Duration::from_secs(15)).await;
    assert!(shown, "status never became auth_required\n{}", daemon.log_text());
    record_figure("wrong_password.status_shown", started.elapsed(), Duration::from_secs(10), scale);
    let attributes = observer.latest("roamcore/victron/bridge_status/attributes").unwrap();
    assert!(attributes.contains("gx_password"), "the status does not say what to set: {attributes}");

    tokio::time::sleep(AUTH_RETRY.mul_f64(3.5).div_f64(scale)).await;
    let attempts = gx_proxy.accepted().len();
    assert!((3..=5).contains(&attempts), "{attempts} logins in 3.5 retry intervals\n{}", daemon.log_text());
    for gap in attempt_gaps(&gx_proxy) {
        assert!(gap >= AUTH_RETRY.mul_f64(0.95).div_f64(scale), "logins {gap:?} apart\n{}", daemon.log_text());
    }
    assert!(is_running(&daemon), "{}", daemon.log_text());
    let warned = warnings(&daemon);
    assert!(warned.len() <= 2, "repeated warnings: {warned:#?}");
    assert!(!daemon.log_text().contains(WRONG_PASSWORD), "the password was logged\n{}", daemon.log_text());
}

#[tokio::test(flavor = "current_thread")]
async fn ha_wrong_password_backs_off() {
    let scale = scale_or(10.0);
    let gx = Mosquitto::start();
    publish_serial(gx.port, None).await;
    let credentials = Some(("homeassistant".to_string(), "right".to_string()));
    let ha = Mosquitto::start_with(BrokerConfig { credentials, ..Default::default() });
    let ha_proxy = Proxy::start(ha.addr()).await;
    let data = tempfile::tempdir().unwrap();

    let daemon = bridge(&gx.host_port(), &ha_proxy.host_port(), data.path(), scale, &["--ha-username", "homeassistant", "--ha-password", WRONG_PASSWORD]);
    tokio::time::sleep(Duration::from_secs(150).div_f64(scale)).await;

    let gaps = attempt_gaps(&ha_proxy);
    assert!(gaps.len() >= 3, "too few attempts to judge: {gaps:?}");
    let largest = gaps.iter().max().copied().unwrap();
    assert!(largest >= Duration::from_secs(24).div_f64(scale), "the retry interval never grew: {gaps:?}");
    assert!(largest <= limit_at(RETRY_INTERVAL_MAX, scale), "retries {largest:?} apart: {gaps:?}");
    assert!(is_running(&daemon), "{}", daemon.log_text());
    assert!(daemon.log_text().contains("GX identified"), "the GX side must work meanwhile\n{}", daemon.log_text());
    let warned = warnings(&daemon);
    assert!(warned.len() <= 2, "repeated warnings: {warned:#?}");
    assert!(!daemon.log_text().contains(WRONG_PASSWORD), "the password was logged\n{}", daemon.log_text());
}

#[tokio::test(flavor = "current_thread")]
async fn gx_certificate_change_untrusted() {
    let scale = scale_or(10.0);
    let certs = tempfile::tempdir().unwrap();
    let first = self_signed_certificate(certs.path(), "first");
    let mut gx = Mosquitto::start_with(BrokerConfig { tls: Some(first), ..Default::default() });
    publish_serial(gx.plain_port, None).await;
    let gx_proxy = Proxy::start(gx.addr()).await;
    let ha = Mosquitto::start();
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;
    let data = tempfile::tempdir().unwrap();

    let daemon = bridge(&gx_proxy.host_port(), &ha.host_port(), data.path(), scale, &["--gx-tls"]);
    assert!(daemon.wait_line("pinned the GX's TLS certificate", Duration::from_secs(15)).await, "{}", daemon.log_text());
    assert!(observer.wait_for(STATUS_TOPIC, "connected", Duration::from_secs(10)).await, "{}", daemon.log_text());
    let pins = std::fs::read_to_string(data.path().join("tls_pins.json")).unwrap();

    // The GX is reset (new certificate) at the same address while the bridge runs.
    let second = self_signed_certificate(certs.path(), "second");
    let port = gx.port;
    gx.stop();
    let gx = Mosquitto::start_with(BrokerConfig { tls: Some(second), port: Some(port), ..Default::default() });
    publish_serial(gx.plain_port, None).await;
    let changed = Instant::now();
    let shown = observer.wait_for(STATUS_TOPIC, "tls_untrusted", Duration::from_secs(30)).await;
    assert!(shown, "status never became tls_untrusted\n{}", daemon.log_text());
    record_figure("certificate_change.status_shown", changed.elapsed(), Duration::from_secs(10), scale);
    assert_eq!(observer.latest("roamcore/victron/gx").as_deref(), Some("offline"));
    let pins_now = std::fs::read_to_string(data.path().join("tls_pins.json")).unwrap();
    assert_eq!(pins_now, pins, "the running bridge replaced its pin");

    let attempts_before = gx_proxy.accepted().len();
    tokio::time::sleep(Duration::from_secs(150).div_f64(scale)).await;
    let gaps: Vec<Duration> = attempt_gaps(&gx_proxy).into_iter().skip(attempts_before).collect();
    assert!(!gaps.is_empty(), "the bridge stopped trying\n{}", daemon.log_text());
    let largest = gaps.iter().max().copied().unwrap();
    assert!(largest <= limit_at(RETRY_INTERVAL_MAX, scale), "retries {largest:?} apart: {gaps:?}");
    assert!(largest >= Duration::from_secs(24).div_f64(scale), "the retry interval never grew: {gaps:?}");
    assert!(is_running(&daemon), "{}", daemon.log_text());
    let warned = warnings(&daemon);
    assert!(warned.len() <= 3, "repeated warnings: {warned:#?}");
}

#[tokio::test(flavor = "current_thread")]
async fn silent_gx_broker_times_out() {
    let scale = scale_or(10.0);
    let gx = Mosquitto::start();
    // A frozen proxy accepts every connection and never forwards a byte.
    let silent = Proxy::start(gx.addr()).await;
    silent.freeze();
    let ha = Mosquitto::start();
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;
    let data = tempfile::tempdir().unwrap();

    let daemon = bridge(&silent.host_port(), &ha.host_port(), data.path(), scale, &[]);
    tokio::time::sleep(Duration::from_secs(150).div_f64(scale)).await;

    assert_eq!(observer.state("bridge_status").as_deref(), Some("connecting"), "{}", daemon.log_text());
    let attributes = observer.latest("roamcore/victron/bridge_status/attributes").unwrap();
    assert!(attributes.contains("timed out"), "the status does not say why: {attributes}");
    let gaps = attempt_gaps(&silent);
    assert!(gaps.len() >= 3, "too few attempts: {gaps:?}");
    let largest = gaps.iter().max().copied().unwrap();
    assert!(largest <= limit_at(RETRY_INTERVAL_MAX, scale), "retries {largest:?} apart: {gaps:?}");
    assert!(largest >= Duration::from_secs(24).div_f64(scale), "the retry interval never grew: {gaps:?}");
    assert!(is_running(&daemon), "{}", daemon.log_text());
    let warned = warnings(&daemon);
    assert!(warned.len() <= 2, "repeated warnings: {warned:#?}");
}

#[tokio::test(flavor = "current_thread")]
async fn silent_ha_broker_times_out() {
    let scale = scale_or(10.0);
    let gx = Mosquitto::start();
    publish_serial(gx.port, None).await;
    let ha = Mosquitto::start();
    let silent = Proxy::start(ha.addr()).await;
    silent.freeze();
    let data = tempfile::tempdir().unwrap();

    let mut daemon = bridge(&gx.host_port(), &silent.host_port(), data.path(), scale, &[]);
    tokio::time::sleep(Duration::from_secs(150).div_f64(scale)).await;

    let gaps = attempt_gaps(&silent);
    assert!(gaps.len() >= 3, "too few attempts: {gaps:?}");
    let largest = gaps.iter().max().copied().unwrap();
    assert!(largest <= limit_at(RETRY_INTERVAL_MAX, scale), "retries {largest:?} apart: {gaps:?}");
    assert!(is_running(&daemon), "{}", daemon.log_text());
    assert!(daemon.log_text().contains("GX identified"), "the GX side must work meanwhile\n{}", daemon.log_text());
    let warned = warnings(&daemon);
    assert!(warned.len() <= 2, "repeated warnings: {warned:#?}");

    let (status, took) = daemon.sigterm();
    assert!(status.success(), "exit status {status:?}");
    assert!(took <= Duration::from_secs(5), "SIGTERM took {took:?} with an unreachable broker");
}
