//! Bad input from the GX: every case is logged, changes nothing else, and never stops the
//! daemon from updating the other entities.

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::observer::Observer;

const PORTAL: &str = "c0619ab0d0e1";

/// A GX stand-in that publishes raw payloads (the simulator refuses to send garbage).
async fn raw_gx(port: u16) -> AsyncClient {
    let mut options = MqttOptions::new("raw-gx", "127.0.0.1", port);
    options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

async fn publish(gx: &AsyncClient, path: &str, payload: impl Into<Vec<u8>>) {
    gx.publish(format!("N/{PORTAL}/{path}"), QoS::AtLeastOnce, false, payload).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn bad_input_table_changes_nothing_else() {
    let gx_broker = Mosquitto::start();
    let ha_broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let observer = Observer::connect(ha_broker.port, &[]).await;

    let gx = raw_gx(gx_broker.port).await;
    gx.publish(format!("N/{PORTAL}/system/0/Serial"), QoS::AtLeastOnce, true, format!("{{\"value\":\"{PORTAL}\"}}"))
        .await
        .unwrap();

    let daemon = Daemon::start(
        &[
            "run",
            "--gx",
            &gx_broker.host_port(),
            "--ha-broker",
            &ha_broker.host_port(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--no-throttle",
            "--time-scale",
            "10",
        ],
        &[],
    );
    assert!(daemon.wait_line("GX identified", Duration::from_secs(10)).await, "{}", daemon.log_text());

    // "GX identified" is logged before the bridge's subscriptions reach the broker, and
    // these messages are not retained, so send them until all four have arrived.
    let mut arrived = false;
    for _ in 0..20 {
        publish(&gx, "system/0/Dc/Battery/Voltage", r#"{"value":12.5}"#).await;
        publish(&gx, "system/0/Dc/Battery/Soc", r#"{"value":80}"#).await;
        publish(&gx, "system/0/Dc/Battery/State", r#"{"value":2}"#).await;
        publish(&gx, "system/0/Ac/ActiveIn/Source", r#"{"value":3}"#).await;
        arrived = observer
            .wait_until(Duration::from_millis(500), |seen| {
                ["battery_voltage", "battery_soc", "battery_state", "shore_connected"]
                    .iter()
                    .all(|key| seen.latest.get(&format!("roamcore/victron/{key}/state")).is_some_and(|s| s != "None"))
            })
            .await;
        if arrived {
            break;
        }
    }
    assert!(arrived, "the first values never reached Home Assistant's broker\n{}", daemon.log_text());

    // One very long level: Mosquitto itself refuses topics deeper than 200 levels.
    let long_topic = format!("system/0/{}", "x".repeat(5000));
    let huge = format!("{{\"value\":\"{}\"}}", "a".repeat(1_100_000));
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("null on a valued path", "system/0/Dc/Battery/Voltage".into(), br#"{"value":null}"#.to_vec()),
        ("empty list", "system/0/Dc/Battery/Voltage".into(), br#"{"value":[]}"#.to_vec()),
        ("non-JSON", "system/0/Dc/Battery/Voltage".into(), b"12.7V".to_vec()),
        ("NaN literal", "system/0/Dc/Battery/Voltage".into(), br#"{"value":NaN}"#.to_vec()),
        ("huge number", "system/0/Dc/Battery/Voltage".into(), br#"{"value":1e999}"#.to_vec()),
        ("string for a number", "system/0/Dc/Battery/Voltage".into(), br#"{"value":"12.9"}"#.to_vec()),
        ("object for a number", "system/0/Dc/Battery/Voltage".into(), br#"{"value":{"a":1}}"#.to_vec()),
        ("unknown enum code", "system/0/Dc/Battery/State".into(), br#"{"value":77}"#.to_vec()),
        ("unknown AC source", "system/0/Ac/ActiveIn/Source".into(), br#"{"value":99}"#.to_vec()),
        ("invalid UTF-8", "system/0/Dc/Battery/Power".into(), b"\xff\xfe\xfd".to_vec()),
        ("no value key", "system/0/Dc/Battery/Power".into(), br#"{"val":1}"#.to_vec()),
        ("very long topic", long_topic, br#"{"value":1}"#.to_vec()),
        ("oversized message", "system/0/Dc/Battery/Power".into(), huge.into_bytes()),
        ("zero-byte on an unknown device", "battery/999/Soc".into(), Vec::new()),
    ];

    for (name, path, payload) in &cases {
        publish(&gx, path, payload.clone()).await;

        // The other entities keep updating after each bad message.
        let soc = format!("{}", 50 + cases.iter().position(|c| c.0 == *name).unwrap());
        publish(&gx, "system/0/Dc/Battery/Soc", format!("{{\"value\":{soc}}}")).await;
        assert!(
            observer.wait_for("roamcore/victron/battery_soc/state", &soc, Duration::from_secs(10)).await,
            "case '{name}': SOC stopped updating\n{}",
            daemon.log_text()
        );
    }

    // Null on a path that had a value: unknown, entity still available.
    assert_eq!(observer.state("battery_voltage").as_deref(), Some("None"));
    assert_eq!(observer.latest("roamcore/victron/battery_voltage/availability").as_deref(), Some("online"));
    // Unknown enum codes publish unknown, never a string outside the options.
    assert_eq!(observer.state("battery_state").as_deref(), Some("None"));
    assert_eq!(observer.state("shore_connected").as_deref(), Some("None"));

    let log = daemon.log_text();
    assert!(log.contains("unknown battery state code 77"), "{log}");
    assert!(log.contains("expected a number, got text"), "{log}");
    assert!(log.contains("dropped a 1100") && log.contains("limit 1048576 bytes"), "{log}");
    assert!(log.contains("not JSON with a \"value\" key"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // Repeats of one problem are not logged again.
    for _ in 0..50 {
        publish(&gx, "system/0/Dc/Battery/State", br#"{"value":77}"#.to_vec()).await;
        publish(&gx, "system/0/Dc/Battery/State", br#"{"value":2}"#.to_vec()).await;
    }
    publish(&gx, "system/0/Dc/Battery/Soc", r#"{"value":99}"#).await;
    assert!(observer.wait_for("roamcore/victron/battery_soc/state", "99", Duration::from_secs(10)).await);
    let repeats = daemon.lines().iter().filter(|l| l.contains("code 77")).count();
    assert_eq!(repeats, 1, "repeated problem logged {repeats} times");
}
