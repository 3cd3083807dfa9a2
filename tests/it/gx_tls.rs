//! TLS to the GX: the certificate is pinned on first use, a changed certificate is
//! reported as `tls_untrusted`, and the bridge never falls back to plain MQTT.

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::support::daemon::Daemon;
use crate::support::mosquitto::{self_signed_certificate, BrokerConfig, Mosquitto};
use crate::support::observer::Observer;

const PORTAL: &str = "c0619ab0d0e1";

async fn publish_serial(port: u16) {
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new("serial", "127.0.0.1", port), 10);
    client
        .publish(format!("N/{PORTAL}/system/0/Serial"), QoS::AtLeastOnce, true, format!("{{\"value\":\"{PORTAL}\"}}"))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    while eventloop.poll().await.is_ok() {}
}

fn bridge(gx: &Mosquitto, ha: &Mosquitto, data: &std::path::Path) -> Daemon {
    Daemon::start(
        &[
            "run",
            "--gx",
            &format!("127.0.0.1:{}", gx.port),
            "--gx-tls",
            "--ha-broker",
            &ha.host_port(),
            "--data-dir",
            data.to_str().unwrap(),
            "--time-scale",
            "10",
        ],
        &[],
    )
}

#[tokio::test(flavor = "current_thread")]
async fn certificate_pinned_then_change_rejected() {
    let certs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ha = Mosquitto::start();
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;

    let first = self_signed_certificate(certs.path(), "first");
    let mut gx = Mosquitto::start_with(BrokerConfig { tls: Some(first), ..Default::default() });
    publish_serial(gx.plain_port).await;

    let mut daemon = bridge(&gx, &ha, data.path());
    assert!(daemon.wait_line("pinned the GX's TLS certificate", Duration::from_secs(15)).await, "{}", daemon.log_text());
    assert!(daemon.wait_line("GX identified", Duration::from_secs(5)).await);
    let pins = std::fs::read_to_string(data.path().join("tls_pins.json")).unwrap();
    assert!(pins.contains(PORTAL), "{pins}");
    let (status, _) = daemon.sigterm();
    assert!(status.success());

    // Same address, new certificate (a GX reset, or another device): never trusted.
    let second = self_signed_certificate(certs.path(), "second");
    let port = gx.port;
    gx.stop();
    let gx = Mosquitto::start_with(BrokerConfig { tls: Some(second), port: Some(port), ..Default::default() });
    publish_serial(gx.plain_port).await;

    let daemon = bridge(&gx, &ha, data.path());
    assert!(
        observer.wait_for("roamcore/victron/bridge_status/state", "tls_untrusted", Duration::from_secs(15)).await,
        "{}",
        daemon.log_text()
    );
    let attributes = observer.latest("roamcore/victron/bridge_status/attributes").unwrap();
    assert!(attributes.contains("different TLS certificate"), "{attributes}");
    assert!(!daemon.log_text().contains("GX identified"), "{}", daemon.log_text());
    assert_eq!(std::fs::read_to_string(data.path().join("tls_pins.json")).unwrap(), pins, "pin must not change");
}

#[tokio::test(flavor = "current_thread")]
async fn tls_to_plain_broker_never_falls_back() {
    let data = tempfile::tempdir().unwrap();
    let ha = Mosquitto::start();
    let gx = Mosquitto::start();
    publish_serial(gx.port).await;
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;

    let daemon = bridge(&gx, &ha, data.path());
    assert!(daemon.wait_line("TLS", Duration::from_secs(15)).await, "{}", daemon.log_text());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!daemon.log_text().contains("GX identified"), "{}", daemon.log_text());
    assert_ne!(observer.state("bridge_status").as_deref(), Some("connected"));
}
