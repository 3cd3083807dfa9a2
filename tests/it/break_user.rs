//! What a new user runs into when following the README and the add-on docs literally.
//!
//! Each test here pins a case that currently behaves wrongly, so each is `#[ignore]`d with
//! the defect named, and `cargo test --test it break_user -- --ignored` runs them. Remove
//! the `ignore` once the product is fixed. Brokers are real Mosquitto instances on free
//! 127.0.0.1 ports, and the only Supervisor is a stub on 127.0.0.1.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use roamcore_victron::sim::capture::Capture;
use roamcore_victron::sim::{SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::daemon::{Daemon, BIN};
use crate::support::mosquitto::Mosquitto;
use crate::support::observer::Observer;

const STATUS_TOPIC: &str = "roamcore/victron/bridge_status/state";

/// Runs the binary with `args` to completion, with no Supervisor in the environment.
fn run_command(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SUPERVISOR_TOKEN")
        .env_remove("HASSIO_TOKEN")
        .output()
        .expect("run roamcore-victron")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits up to `timeout` for a child to exit. A child still running then is killed, and
/// the result is `None`.
fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn forget_reports_corrupt_entities_file() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("entities.json"),
        r#"{"version": 1, "entities": {"#,
    )
    .unwrap();

    let output = run_command(&[
        "forget",
        "--days",
        "0",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    let output_text = text(&output);

    assert!(
        data.path().join("entities.json.corrupt").exists(),
        "the file was not moved aside"
    );
    assert!(
        output_text.contains("entities.json") && output_text.contains("not valid JSON"),
        "the user is not told that the stored entities were unreadable:\n{output_text}"
    );
}

#[test]
fn forget_on_missing_data_dir() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("typo");

    let output = run_command(&[
        "forget",
        "--days",
        "3",
        "--data-dir",
        missing.to_str().unwrap(),
    ]);
    let output_text = text(&output);

    assert!(
        !output_text.contains("every entity was seen"),
        "a claim about entities that were never read:\n{output_text}"
    );
    assert!(
        output_text.contains(missing.to_str().unwrap()),
        "the message does not name the directory:\n{output_text}"
    );
}

#[test]
fn simulate_invalid_broker_exits_2() {
    let mut child = Command::new(BIN)
        .args(["simulate", "--broker", "nohost"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start simulate");

    let status = wait_exit(&mut child, Duration::from_secs(5));

    assert!(
        status.is_some(),
        "still running 5 s after an invalid --broker"
    );
    assert_eq!(
        status.unwrap().code(),
        Some(2),
        "invalid usage must exit with status 2"
    );
}

#[test]
fn demo_unknown_capture_exits_2() {
    let output = run_command(&["demo", "--capture", "no-such-capture", "--duration", "1"]);

    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}

#[tokio::test(flavor = "current_thread")]
async fn health_fails_once_daemon_stopped() {
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let health_file = data.path().join("health.json");
    let health_env = health_file.to_str().unwrap().to_string();

    let mut daemon = Daemon::start(
        &[
            "run",
            "--gx",
            &broker.host_port(),
            "--ha-broker",
            &broker.host_port(),
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[("ROAMCORE_HEALTH_FILE", &health_env)],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !health_file.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        health_file.exists(),
        "no health file after 15 s\n{}",
        daemon.log_text()
    );

    let (status, _) = daemon.sigterm();
    assert!(status.success(), "{status:?}");
    let check = Command::new(BIN)
        .args(["health", "--file", &health_env])
        .output()
        .unwrap();

    assert_eq!(
        check.status.code(),
        Some(1),
        "`health` after the daemon stopped: {}",
        text(&check)
    );
}

/// Starts a Supervisor stub on 127.0.0.1 that returns HTTP 400 to every request, as the
/// real one does for `GET /services/mqtt` while no MQTT broker add-on runs.
async fn supervisor_without_mqtt() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let _ = stream.read(&mut request).await;
                let body = r#"{"result":"error","message":"No mqtt service"}"#;
                let reply = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "current_thread")]
async fn supervisor_wait_stop_removes_pid_file() {
    let (port, _supervisor) = supervisor_without_mqtt().await;
    let data = tempfile::tempdir().unwrap();
    let options = data.path().join("options.json");
    std::fs::write(&options, "{}").unwrap();
    let url = format!("http://127.0.0.1:{port}");

    // A fixed --gx keeps LAN discovery off, although the daemon never gets that far.
    let mut daemon = Daemon::start(
        &[
            "run",
            "--gx",
            "127.0.0.1:1",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[
            ("SUPERVISOR_TOKEN", "test-token"),
            ("SUPERVISOR_URL", &url),
            ("ROAMCORE_OPTIONS", options.to_str().unwrap()),
        ],
    );
    assert!(
        daemon
            .wait_line("waiting for Home Assistant's MQTT broker", Duration::from_secs(10))
            .await,
        "{}",
        daemon.log_text()
    );

    let (status, _) = daemon.sigterm();

    assert!(status.success(), "{status:?}");
    assert!(
        !data.path().join("daemon.pid").exists(),
        "daemon.pid left behind\n{}",
        daemon.log_text()
    );
}

/// Starts a fresh broker with a simulated GX that reports `portal_id`.
async fn simulated_gx(portal_id: &str) -> (Mosquitto, roamcore_victron::sim::SimHandle) {
    let broker = Mosquitto::start();
    let mut config = SimConfig::new(broker.host_port(), Capture::load("boat").unwrap());
    config.portal_id = Some(portal_id.into());
    config.vary = false;
    let sim = Simulator::spawn(config);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    (broker, sim)
}

#[tokio::test(flavor = "current_thread")]
async fn config_error_logged_once() {
    let (gx, _sim) = simulated_gx("c0619ab0d0e1").await;
    let ha = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let options = data.path().join("options.json");
    std::fs::write(&options, r#"{"log_level": "DEBUG"}"#).unwrap();

    let daemon = Daemon::start(
        &[
            "run",
            "--gx",
            &gx.host_port(),
            "--ha-broker",
            &ha.host_port(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--options",
            options.to_str().unwrap(),
        ],
        &[],
    );
    let connected = daemon
        .wait_line("Connected to the GX c0619ab0d0e1", Duration::from_secs(15))
        .await;
    assert!(connected, "{}", daemon.log_text());

    let repeats = daemon
        .lines()
        .iter()
        .filter(|l| l.contains("option 'log_level' is invalid"))
        .count();

    assert!(
        repeats <= 2,
        "the invalid option was logged {repeats} times on one start:\n{}",
        daemon.log_text()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn wrong_portal_reported_as_such() {
    let (gx, _sim) = simulated_gx("c0619ab0d0e1").await;
    let ha = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;

    let daemon = Daemon::start(
        &[
            "run",
            "--gx",
            &gx.host_port(),
            "--ha-broker",
            &ha.host_port(),
            "--portal-id",
            "c0619ab0aaaa",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--time-scale",
            "10",
        ],
        &[],
    );
    assert!(
        daemon
            .wait_line("not the adopted GX", Duration::from_secs(10))
            .await,
        "{}",
        daemon.log_text()
    );
    // The daemon waits 10 s for a Serial, which is 1 s at --time-scale 10.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let log = daemon.log_text();
    assert!(
        !log.contains("no N/+/system/0/Serial"),
        "a Serial did arrive, yet the log says none did:\n{log}"
    );
    assert_ne!(
        observer.latest(STATUS_TOPIC).as_deref(),
        Some("validating"),
        "{log}"
    );
}
