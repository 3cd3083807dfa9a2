//! The daemon run as the add-on container runs it: `SUPERVISOR_TOKEN` set, options in
//! an `options.json`, Home Assistant's broker (a real Mosquitto that requires a password)
//! announced by a fake Supervisor that first answers 400, and the simulated GX.
//!
//! NOTE: these need the engine (`run`) and the simulator (`simulate`), which are built on
//! other branches; they are ignored until both are merged. Run them with
//! `cargo test --test it addon_daemon -- --ignored`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::addon_fake::{Call, FakeServer, Reply};
use crate::support::mosquitto::{free_port, BrokerConfig, Mosquitto};

const BIN: &str = env!("CARGO_BIN_EXE_roamcore-victron");
const TOKEN: &str = "addon-token-5678";

/// A fake Supervisor: `/services/mqtt` answers 400 `not_ready` times, then `broker`'s
/// address with `user`/`password`; notification calls answer 200.
fn fake_supervisor(broker_port: u16, not_ready: usize) -> FakeServer {
    let attempts = Arc::new(AtomicUsize::new(0));
    FakeServer::start(
        Arc::new(move |call: &Call| {
            if call.authorization.as_deref() != Some(&*format!("Bearer {TOKEN}")) {
                return Reply::json(401, json!({"result": "error", "message": "bad token"}));
            }
            match call.path.as_str() {
                "/services/mqtt" if attempts.fetch_add(1, Ordering::SeqCst) < not_ready => {
                    Reply::json(400, json!({"result": "error", "message": "Service not enabled"}))
                }
                "/services/mqtt" => Reply::json(
                    200,
                    json!({"result": "ok", "data": {"host": "127.0.0.1", "port": broker_port,
                           "ssl": false, "username": "addons", "password": "broker-pw-1",
                           "protocol": "3.1.1", "addon": "core_mosquitto"}}),
                ),
                path if path.starts_with("/core/api/services/persistent_notification/") => {
                    Reply::json(200, json!([]))
                }
                _ => Reply::json(404, json!({"result": "error", "message": "not found"})),
            }
        }),
        None,
    )
}

/// Starts `roamcore-victron run` with the add-on environment and a line channel of its
/// stdout and stderr.
fn start_daemon(data_dir: &Path, options: &Value, supervisor: &FakeServer) -> (Child, mpsc::Receiver<String>) {
    let options_path = data_dir.join("options.json");
    std::fs::write(&options_path, options.to_string()).unwrap();
    let mut child = Command::new(BIN)
        .arg("run")
        .env("SUPERVISOR_TOKEN", TOKEN)
        .env("SUPERVISOR_URL", supervisor.url())
        .env("ROAMCORE_DATA_DIR", data_dir)
        .env("ROAMCORE_OPTIONS", &options_path)
        .env("ROAMCORE_HEALTH_FILE", data_dir.join("health.json"))
        .env("ROAMCORE_TIME_SCALE", "10")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start roamcore-victron run");
    let (sender, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
    }
    (child, lines)
}

/// Collects output lines until one satisfies `done` or `timeout` passes.
fn wait_for_line(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let hit = done(&line);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "daemon did not exit within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn retained(broker: &Mosquitto, topic: &str) -> Vec<(String, String)> {
    let output = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-u", "addons", "-P", "broker-pw-1"])
        .args(["-t", topic, "-v", "--retained-only", "-W", "2"])
        .output()
        .expect("mosquitto_sub (package mosquitto-clients)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(t, p)| (t.to_string(), p.to_string())))
        .collect()
}

fn ha_broker() -> Mosquitto {
    Mosquitto::start_with(BrokerConfig {
        credentials: Some(("addons".into(), "broker-pw-1".into())),
        ..Default::default()
    })
}

#[test]
fn daemon_reads_every_option() {
    let broker = ha_broker();
    let supervisor = fake_supervisor(broker.port, 0);
    let dir = tempfile::tempdir().unwrap();
    let closed_port = free_port();
    let options = json!({
        "gx_host": "127.0.0.1", "gx_port": closed_port, "gx_tls": true,
        "gx_username": "sentinel-user", "gx_password": "sentinel-password-31337",
        "portal_id": "c0ffee123456", "scan": false, "scan_subnets": ["10.99.0.0/24"],
        "scan_large_subnets": true, "discovery_prefix": "sentinelprefix",
        "forget_after_days": 17, "log_level": "debug",
    });
    let (mut child, lines) = start_daemon(dir.path(), &options, &supervisor);
    let mut seen = Vec::new();
    let found = wait_for_line(&lines, &mut seen, Duration::from_secs(20), |l| l.contains("gx_password=***"));
    let _ = sigterm(&mut child);
    let log = seen.join("\n");
    assert!(found, "no start-up line naming the applied options:\n{log}");
    for key in roamcore_victron::config::OPTION_KEYS {
        assert!(log.contains(key), "option '{key}' not in the start-up log:\n{log}");
    }
    assert!(!log.contains("sentinel-password-31337"), "the GX password leaked into the log");
    assert!(!log.contains("broker-pw-1"), "the broker password leaked into the log");
    assert!(!log.contains(TOKEN), "the Supervisor token leaked into the log");
    assert!(log.contains("DEBUG"), "log_level debug was not applied:\n{log}");
}

#[test]
fn daemon_reports_invalid_option() {
    let broker = ha_broker();
    let supervisor = fake_supervisor(broker.port, 0);
    let dir = tempfile::tempdir().unwrap();
    let options = json!({"scan": false, "gx_host": "127.0.0.1", "gx_port": 70000});
    let (mut child, lines) = start_daemon(dir.path(), &options, &supervisor);
    let mut seen = Vec::new();
    let found = wait_for_line(&lines, &mut seen, Duration::from_secs(20), |l| l.contains("config_error"));
    let _ = sigterm(&mut child);
    assert!(found, "no config_error line for gx_port 70000:\n{}", seen.join("\n"));
}

#[test]
fn daemon_as_container_end_to_end() {
    let broker = ha_broker();
    let gx_broker = Mosquitto::start();
    // Three 400 answers first: Mosquitto "not up yet".
    let supervisor = fake_supervisor(broker.port, 3);
    let dir = tempfile::tempdir().unwrap();

    let mut simulator = Command::new(BIN)
        .args(["simulate", "--broker", &gx_broker.host_port()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start roamcore-victron simulate");

    let options = json!({"gx_host": "127.0.0.1", "gx_port": gx_broker.port, "scan": false});
    let (mut child, lines) = start_daemon(dir.path(), &options, &supervisor);

    // Entities appear: the device discovery message is retained on HA's broker.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut discovery = Vec::new();
    while discovery.is_empty() && Instant::now() < deadline {
        discovery = retained(&broker, "homeassistant/#");
    }
    assert!(!discovery.is_empty(), "no retained discovery on Home Assistant's broker");
    let mqtt_calls = supervisor.calls().iter().filter(|c| c.path == "/services/mqtt").count();
    assert!(mqtt_calls >= 4, "the daemon did not retry /services/mqtt after 400 ({mqtt_calls} calls)");

    // SIGTERM: `offline` retained, exit 0.
    let status = sigterm(&mut child);
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let offline = retained(&broker, "#").into_iter().any(|(_, payload)| payload == "offline");
    assert!(offline, "no retained 'offline' after SIGTERM");
    drop(lines);

    // The GX with MQTT off: nothing listens on its MQTT ports.
    let _ = simulator.kill();
    let _ = simulator.wait();
    let dir = tempfile::tempdir().unwrap();
    let options = json!({"gx_host": "127.0.0.1", "gx_port": free_port(), "scan": false});
    supervisor.clear_calls();
    let (mut child, _lines) = start_daemon(dir.path(), &options, &supervisor);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut notified = false;
    while !notified && Instant::now() < deadline {
        notified = supervisor.calls().iter().any(|c| {
            c.path == "/core/api/services/persistent_notification/create"
                && c.body.contains("roamcore_victron_mqtt_disabled")
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = sigterm(&mut child);
    assert!(notified, "no mqtt_disabled notification within 30 s: {:?}", supervisor.calls());
}
