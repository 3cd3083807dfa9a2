//! The daemon's side of the test LAN: `roamcore-victron run` without `--gx` in its
//! namespace, Home Assistant's broker as a real Mosquitto on loopback there, a watcher
//! that records what reaches that broker, and a fake Supervisor.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::addon_fake::{Call, FakeServer, Reply};
use crate::capture::{Capture, Direction, Frame};
use crate::gx::BIN;
use crate::net::{enter_namespace, mosquitto, Host, Lan};
use crate::traffic::{assert_in_subnet, assert_scan_rate};

pub const STATUS: &str = "roamcore/victron/bridge_status/state";
pub const ATTRIBUTES: &str = "roamcore/victron/bridge_status/attributes";
/// `online` while the GX link is live; every GX entity is unavailable while `offline`.
pub const GX: &str = "roamcore/victron/gx";
/// The first entity the tests wait for: the boat capture has a battery monitor.
pub const SOC: &str = "roamcore/victron/battery_soc/state";
/// The Supervisor token the fake expects.
pub const TOKEN: &str = "lan-test-token";

/// The daemon's corner of a test LAN 192.168.<third>.0/24: its host at .10 with Home
/// Assistant's broker and a watcher, and a capture of every frame the host sends, taken
/// at its switch port (outside its namespace). Fields drop in order: processes stop
/// with the `Lan`, before the directory with their logs goes.
pub struct Site {
    pub watcher: Watcher,
    pub sent: Capture,
    pub host: Host,
    pub lan: Lan,
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new(third: u8) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let mut lan = Lan::new(third);
        let host = lan.host("d", 10);
        home_assistant_broker(&mut lan, &host, dir.path());
        let watcher = Watcher::start(&mut lan, &host);
        let port = host.port.clone().unwrap();
        let sent = Capture::start_direction(&lan.switch_ns(), &port, Direction::Received);
        Site {
            watcher,
            sent,
            host,
            lan,
            dir,
        }
    }

    /// Returns the daemon's data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the daemon; see [`Daemon::start`].
    pub fn start_daemon(&mut self, time_scale: f64, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let data = self.data();
        Daemon::start(
            &mut self.lan,
            &self.host,
            self.dir.path(),
            &data,
            time_scale,
            args,
            env,
        )
    }

    /// Waits for the first battery SOC state at or after `since`.
    pub fn wait_soc(&mut self, since: Instant, timeout: Duration) -> Option<Message> {
        self.watcher
            .wait(since, timeout, SOC, |p| p.parse::<f64>().is_ok())
    }

    /// Waits for the state of any GX entity (not a diagnostic one) at or after `since`,
    /// which shows that values flow. After a GX reconnect an unchanged value is not
    /// published again: the daemon skips a retained payload equal to its last one.
    pub fn wait_value(&mut self, since: Instant, timeout: Duration) -> Option<Message> {
        let diagnostic = [STATUS, "roamcore/victron/gx_connected/state"];
        self.watcher.wait_message(since, timeout, |m| {
            m.topic.ends_with("/state") && !diagnostic.contains(&m.topic.as_str())
        })
    }

    /// Returns every frame the daemon's host has sent so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.sent.frames()
    }

    /// Asserts the scan limits on everything the daemon's host has sent so far: nothing
    /// for addresses outside the attached /24, and at most 20 packets in any second
    /// besides the GX link. Returns that peak. The GX link's connection is identified
    /// by its packets after the link came online, so this first waits until 3 s after.
    pub fn assert_scan_limits(&mut self) -> usize {
        let online: Vec<Instant> = self
            .watcher
            .between(GX, self.watcher.started, Instant::now())
            .into_iter()
            .filter(|m| m.payload == "online")
            .map(|m| m.at)
            .collect();
        if let Some(last) = online.last() {
            let settled = *last + Duration::from_secs(3);
            self.watcher
                .collect(settled.saturating_duration_since(Instant::now()));
        }
        let frames = self.frames();
        assert_in_subnet(&frames, self.lan.subnet);
        assert_scan_rate(&frames, &online)
    }
}

/// Starts Home Assistant's broker on 127.0.0.1:1883 inside `host`'s namespace.
pub fn home_assistant_broker(lan: &mut Lan, host: &Host, dir: &Path) -> usize {
    let conf = dir.join("home-assistant-mosquitto.conf");
    let text = "listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n\
                log_dest stderr\nlog_type error\nlog_type warning\n";
    std::fs::write(&conf, text).unwrap();
    let index = lan.spawn(
        host,
        &mosquitto(),
        &["-c", conf.to_str().unwrap()],
        Stdio::null(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = lan.exec(host, "bash", &["-c", "exec 3<>/dev/tcp/127.0.0.1/1883"]);
        if out.status.success() {
            return index;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Home Assistant's broker did not start in {}", host.ns);
}

/// One message on Home Assistant's broker, with the time it arrived.
#[derive(Debug, Clone)]
pub struct Message {
    pub at: Instant,
    pub topic: String,
    pub payload: String,
}

/// `mosquitto_sub` on Home Assistant's broker: every message under `roamcore/victron/`.
pub struct Watcher {
    rx: mpsc::Receiver<Message>,
    seen: Vec<Message>,
    started: Instant,
}

impl Watcher {
    /// Subscribes and waits until the subscription is live, so no message the daemon
    /// publishes later is missed.
    pub fn start(lan: &mut Lan, host: &Host) -> Watcher {
        let args = [
            "-h",
            "127.0.0.1",
            "-v",
            "-t",
            "roamcore/victron/#",
            "-t",
            "lan-test/ready",
        ];
        let index = lan.spawn(host, "mosquitto_sub", &args, Stdio::piped());
        let stdout = lan.child(index).stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let (topic, payload) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                let message = Message {
                    at: Instant::now(),
                    topic: topic.into(),
                    payload: payload.into(),
                };
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let mut watcher = Watcher {
            rx,
            seen: Vec::new(),
            started,
        };
        let deadline = started + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ready = ["-h", "127.0.0.1", "-t", "lan-test/ready", "-m", "1"];
            lan.exec(host, "mosquitto_pub", &ready);
            let seen = watcher.wait(
                started,
                Duration::from_millis(300),
                "lan-test/ready",
                |_| true,
            );
            if seen.is_some() {
                return watcher;
            }
        }
        panic!("mosquitto_sub on Home Assistant's broker did not start");
    }

    /// Waits up to `timeout` for a message on `topic` that arrived at or after `since`
    /// and whose payload matches `predicate`.
    pub fn wait(
        &mut self,
        since: Instant,
        timeout: Duration,
        topic: &str,
        predicate: impl Fn(&str) -> bool,
    ) -> Option<Message> {
        self.wait_message(since, timeout, |m| {
            m.topic == topic && predicate(&m.payload)
        })
    }

    /// Waits up to `timeout` for a message that arrived at or after `since` and matches
    /// `predicate`.
    pub fn wait_message(
        &mut self,
        since: Instant,
        timeout: Duration,
        predicate: impl Fn(&Message) -> bool,
    ) -> Option<Message> {
        let matches = |m: &Message| m.at >= since && predicate(m);
        if let Some(message) = self.seen.iter().find(|m| matches(m)) {
            return Some(message.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let message = self.rx.recv_timeout(left).ok()?;
            self.seen.push(message.clone());
            if matches(&message) {
                return Some(message);
            }
        }
    }

    /// Records whatever arrives within `duration`.
    pub fn collect(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(message) => self.seen.push(message),
                Err(_) => return,
            }
        }
    }

    /// Returns the messages on `topic` that arrived within `[from, to)`.
    pub fn between(&mut self, topic: &str, from: Instant, to: Instant) -> Vec<Message> {
        while let Ok(message) = self.rx.try_recv() {
            self.seen.push(message);
        }
        let in_range = |m: &&Message| m.topic == topic && m.at >= from && m.at < to;
        self.seen.iter().filter(in_range).cloned().collect()
    }

    /// Returns the bridge-status attributes last published, parsed.
    pub fn attributes(&mut self) -> serde_json::Value {
        let all = self.between(ATTRIBUTES, self.started, Instant::now());
        let Some(last) = all.last() else {
            panic!("no bridge-status attributes:\n{}", self.dump());
        };
        serde_json::from_str(&last.payload).unwrap()
    }

    /// Lists the status, attributes, GX-link and SOC messages, for a failure message.
    pub fn dump(&self) -> String {
        let listed = [STATUS, ATTRIBUTES, GX, SOC];
        self.seen
            .iter()
            .filter(|m| listed.contains(&m.topic.as_str()))
            .map(|m| {
                let at = m.at.duration_since(self.started).as_secs_f64();
                format!("{at:7.2} {} {}", m.topic, m.payload)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Numbers the daemons' log files.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// A running `roamcore-victron run` in the daemon's namespace.
pub struct Daemon {
    pub index: usize,
    pub started: Instant,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon with no `--gx`, Home Assistant's broker on loopback, its data in
    /// `data`, every timer divided by `time_scale`, and `args` and `env` added. The test
    /// process's own `ROAMCORE_*` and Supervisor variables are not passed on.
    pub fn start(
        lan: &mut Lan,
        host: &Host,
        dir: &Path,
        data: &Path,
        time_scale: f64,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let options = dir.join("options.json");
        std::fs::write(&options, "{}").unwrap();
        let level = std::env::var("ROAMCORE_TEST_LOG").unwrap_or_else(|_| "info".into());
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                &host.ns,
                BIN,
                "run",
                "--ha-broker",
                "127.0.0.1:1883",
            ])
            .arg("--data-dir")
            .arg(data)
            .arg("--options")
            .arg(&options)
            .args([
                "--log-level",
                &level,
                "--time-scale",
                &time_scale.to_string(),
            ])
            .args(args);
        for (key, _) in std::env::vars() {
            if key.starts_with("ROAMCORE_") || key == "SUPERVISOR_TOKEN" || key == "HASSIO_TOKEN" {
                command.env_remove(key);
            }
        }
        command.env("ROAMCORE_HEALTH_FILE", dir.join("health.json"));
        command.envs(env.iter().copied());

        let log = dir.join(format!(
            "daemon-{}.log",
            RUNS.fetch_add(1, Ordering::SeqCst)
        ));
        // The daemon logs to stdout; stderr carries only a panic.
        let file = std::fs::File::create(&log).unwrap();
        let stderr = file.try_clone().unwrap();
        let started = Instant::now();
        let index = lan.spawn_command(host, command, Stdio::from(file), Stdio::from(stderr));
        Daemon {
            index,
            started,
            log,
        }
    }

    /// Returns the daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Returns the last lines of the log, for a failure message.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Starts a fake Supervisor on 127.0.0.1 inside namespace `ns`. It records every
/// request, accepts every Core service call with HTTP 200 and returns 404 for the rest.
pub fn fake_supervisor(ns: &str) -> FakeServer {
    let ns = ns.to_string();
    let handler = Arc::new(|call: &Call| {
        if call.method == "POST" && call.path.starts_with("/core/api/services/") {
            Reply {
                status: 200,
                body: "[]".into(),
            }
        } else {
            Reply::json(
                404,
                serde_json::json!({"result": "error", "message": "not found"}),
            )
        }
    });
    // The listener is bound by a thread inside the namespace, so it lives there.
    std::thread::spawn(move || {
        enter_namespace(&ns);
        FakeServer::start(handler, None)
    })
    .join()
    .unwrap()
}

/// Returns the calls of Core service `service` (e.g. `persistent_notification/create`)
/// recorded by the fake Supervisor, with their JSON bodies.
pub fn service_calls(supervisor: &FakeServer, service: &str) -> Vec<(Call, serde_json::Value)> {
    let path = format!("/core/api/services/{service}");
    supervisor
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path == path)
        .map(|c| {
            let body = serde_json::from_str(&c.body).unwrap_or_default();
            (c, body)
        })
        .collect()
}
