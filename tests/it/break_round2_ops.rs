//! Second round of breaking the bridge as a van owner runs it: the add-on under a fake
//! Supervisor, restarts, zero-configuration discovery and the log.
//!
//! Each test pins a case that once behaved wrongly and keeps it fixed. Brokers are real
//! Mosquitto instances on free 127.0.0.1 ports, and the Supervisor is the scripted fake
//! from `addon_fake.rs`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::addon_fake::{Call, FakeServer, Reply};
use crate::support::mosquitto::{free_port, Mosquitto};
use crate::support::rig::{Rig, RigOptions, GX_TOPIC, STATUS_TOPIC};

const BIN: &str = env!("CARGO_BIN_EXE_roamcore-victron");
const TOKEN: &str = "round2-token-4242";
const CREATE: &str = "/core/api/services/persistent_notification/create";
const DISMISS: &str = "/core/api/services/persistent_notification/dismiss";

/// A fake Supervisor that announces `broker_port` as Home Assistant's broker (anonymous)
/// and returns 200 for every notification call.
fn fake_supervisor(broker_port: u16) -> FakeServer {
    fake_supervisor_with_core(broker_port, 200)
}

/// Like [`fake_supervisor`], with `core_status` as the status code of notification
/// calls: the Supervisor's Core proxy returns 502 while Core is down.
fn fake_supervisor_with_core(broker_port: u16, core_status: u16) -> FakeServer {
    FakeServer::start(
        Arc::new(move |call: &Call| {
            if call.authorization.as_deref() != Some(&*format!("Bearer {TOKEN}")) {
                return Reply::json(401, json!({"result": "error", "message": "bad token"}));
            }
            match call.path.as_str() {
                "/services/mqtt" => Reply::json(
                    200,
                    json!({"result": "ok", "data": {"host": "127.0.0.1", "port": broker_port,
                           "ssl": false, "protocol": "3.1.1", "addon": "core_mosquitto"}}),
                ),
                path if path.starts_with("/core/api/services/persistent_notification/") => {
                    Reply::json(core_status, json!([]))
                }
                _ => Reply::json(404, json!({"result": "error", "message": "not found"})),
            }
        }),
        None,
    )
}

/// The add-on process with its output lines collected.
struct Addon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Addon {
    /// Starts `roamcore-victron run` as the Supervisor starts the add-on: token, options
    /// file and data dir from the environment, at time scale 10.
    fn start(data_dir: &Path, options: &Value, supervisor: &FakeServer) -> Addon {
        Addon::start_scaled(data_dir, options, supervisor, 10.0)
    }

    /// Like [`Addon::start`] at time scale `scale`.
    fn start_scaled(
        data_dir: &Path,
        options: &Value,
        supervisor: &FakeServer,
        scale: f64,
    ) -> Addon {
        let options_path = data_dir.join("options.json");
        std::fs::write(&options_path, options.to_string()).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("run")
            .env("SUPERVISOR_TOKEN", TOKEN)
            .env("SUPERVISOR_URL", supervisor.url())
            .env("ROAMCORE_DATA_DIR", data_dir)
            .env("ROAMCORE_OPTIONS", &options_path)
            .env("ROAMCORE_HEALTH_FILE", data_dir.join("health.json"))
            .env("ROAMCORE_TIME_SCALE", scale.to_string());
        Addon::spawn(command)
    }

    /// Starts `command` with its stdout and stderr collected line by line.
    fn spawn(mut command: Command) -> Addon {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the process");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("RCV_TEST_ECHO").is_some() {
                        eprintln!("addon: {line}");
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Addon { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Counts the log lines that contain `needle`.
    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits until a log line contains `needle`.
    fn wait_line(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends SIGTERM and waits up to 15 s for the exit.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Addon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the `notification_id` of every call to `path`, in order.
fn notification_ids(supervisor: &FakeServer, path: &str) -> Vec<String> {
    supervisor
        .calls()
        .iter()
        .filter(|call| call.path == path)
        .filter_map(|call| serde_json::from_str::<Value>(&call.body).ok())
        .filter_map(|body| body["notification_id"].as_str().map(str::to_string))
        .collect()
}

/// Waits until a call to `path` carries `id`.
fn wait_notification(supervisor: &FakeServer, path: &str, id: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if notification_ids(supervisor, path)
            .iter()
            .any(|seen| seen == id)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Starts `roamcore-victron simulate` against `broker`, with Venus OS timers at the
/// add-on's time scale of 10.
fn simulator(broker: &Mosquitto) -> Running {
    let child = Command::new(BIN)
        .args([
            "simulate",
            "--broker",
            &broker.host_port(),
            "--time-scale",
            "10",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start roamcore-victron simulate");
    Running(child)
}

/// Home Assistant keeps a persistent notification until it is dismissed or Core
/// restarts; an add-on restart does neither. The owner who fixes the GX and restarts the
/// add-on (as the notice asks) must see the notice go once the bridge connects.
#[test]
fn notice_dismissed_after_restart() {
    let ha = Mosquitto::start();
    let supervisor = fake_supervisor(ha.port);
    let dir = tempfile::tempdir().unwrap();

    // First run: MQTT is off on the GX, so nothing listens on its port.
    let gx_port = free_port();
    let options = json!({"gx_host": "127.0.0.1", "gx_port": gx_port, "scan": false});
    let mut first = Addon::start(dir.path(), &options, &supervisor);
    let created = wait_notification(
        &supervisor,
        CREATE,
        "roamcore_victron_mqtt_disabled",
        Duration::from_secs(30),
    );
    first.stop();
    assert!(
        created,
        "no mqtt_disabled notification in the first run:\n{}",
        first.log()
    );

    // The owner switches MQTT on and restarts the add-on.
    let gx = Mosquitto::start_with(crate::support::mosquitto::BrokerConfig {
        port: Some(gx_port),
        ..Default::default()
    });
    let mut sim = simulator(&gx);
    supervisor.clear_calls();
    let mut second = Addon::start(dir.path(), &options, &supervisor);
    let connected = second.wait_line("status=connected", Duration::from_secs(30));
    let dismissed = wait_notification(
        &supervisor,
        DISMISS,
        "roamcore_victron_mqtt_disabled",
        Duration::from_secs(10),
    );
    second.stop();
    kill(&mut sim);
    assert!(
        connected,
        "the second run did not connect:\n{}",
        second.log()
    );
    assert!(
        dismissed,
        "the mqtt_disabled notice of the first run was not dismissed; calls: {:?}\n{}",
        supervisor
            .calls()
            .iter()
            .map(Call::line)
            .collect::<Vec<_>>(),
        second.log()
    );
}

/// A problem that outlasts an add-on restart keeps its notice: the new run creates it
/// again (Home Assistant replaces a notice with the same id) and never dismisses it in
/// between, so the owner does not see it vanish and come back.
#[test]
fn notice_kept_across_restart() {
    let ha = Mosquitto::start();
    let supervisor = fake_supervisor(ha.port);
    let dir = tempfile::tempdir().unwrap();
    let gx_port = free_port();
    let options = json!({"gx_host": "127.0.0.1", "gx_port": gx_port, "scan": false});
    let id = "roamcore_victron_mqtt_disabled";

    let mut first = Addon::start(dir.path(), &options, &supervisor);
    let created = wait_notification(&supervisor, CREATE, id, Duration::from_secs(30));
    first.stop();
    assert!(created, "no mqtt_disabled notification in the first run:\n{}", first.log());

    // Restarted with MQTT still off on the GX.
    supervisor.clear_calls();
    let mut second = Addon::start(dir.path(), &options, &supervisor);
    let created_again = wait_notification(&supervisor, CREATE, id, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    second.stop();
    assert!(created_again, "the second run did not show the notice:\n{}", second.log());
    let dismissed = notification_ids(&supervisor, DISMISS);
    assert!(!dismissed.iter().any(|seen| seen == id), "dismissed while the problem lasted: {dismissed:?}");
}

/// Home Assistant Core down for an hour (a failed update, a restart loop) while the add-on
/// has a notice to show. The Supervisor's Core proxy returns 502 meanwhile. Every other
/// repeated problem is warned once and then counted every 10 minutes, so an hour may
/// cost a handful of lines, not one per retry.
#[test]
fn core_down_hour_log_lines() {
    // An hour takes 30 s.
    const SCALE: f64 = 120.0;
    const MAX_LINES: usize = 8;
    let ha = Mosquitto::start();
    let supervisor = fake_supervisor_with_core(ha.port, 502);
    let dir = tempfile::tempdir().unwrap();
    let options = json!({"gx_host": "127.0.0.1", "gx_port": free_port(), "scan": false});
    let mut addon = Addon::start_scaled(dir.path(), &options, &supervisor, SCALE);
    std::thread::sleep(Duration::from_secs(3600).div_f64(SCALE));
    addon.stop();

    let attempts = notification_ids(&supervisor, CREATE).len();
    let warnings = addon.count("cannot update the notification");
    assert!(
        attempts >= 2,
        "the notice was not retried while Core was down ({attempts} calls)"
    );
    assert!(
        warnings <= MAX_LINES,
        "{warnings} warnings for {attempts} failed notification calls in an hour, limit {MAX_LINES}:\n{}",
        addon.log()
    );
}

/// The owner switches MQTT access off on a GX the bridge has bridged before (gx_host set).
/// Refusals right after a loss are a rebooting GX, but a GX that refuses for ten minutes
/// has MQTT off. The user guide says `mqtt_disabled` and a notification report exactly
/// this case; the bridge shows `connecting` instead.
#[tokio::test(flavor = "current_thread")]
async fn mqtt_switched_off_reported() {
    const SCALE: f64 = 60.0;
    let options = RigOptions {
        scale: SCALE,
        scale_fixed: true,
        ..RigOptions::default()
    };
    let mut rig = Rig::start(options).await;
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    // MQTT access off: nothing listens on the GX's port any more.
    rig.stop_gx_broker();
    let off = Instant::now();
    let reported = rig
        .wait_since(
            STATUS_TOPIC,
            "mqtt_disabled",
            off,
            rig.scaled(Duration::from_secs(600)),
        )
        .await;
    let status = rig.observer.latest(STATUS_TOPIC);
    let log = rig.log();
    rig.daemon_mut().sigterm();
    assert!(
        reported.is_some(),
        "after ten minutes of refused connections the status is {status:?}, expected mqtt_disabled:\n{log}"
    );
}

/// The container's HEALTHCHECK runs `roamcore-victron health` under the add-on's AppArmor
/// profile. The check reads `/proc/<daemon pid>/cmdline` to make sure the daemon that
/// wrote the health file still runs, and takes a failed read for a dead daemon. The
/// profile allows only a few `/proc/<pid>/net` files, so every check would fail.
/// (This kernel has no AppArmor, so the profile text is checked.)
#[test]
fn apparmor_allows_health_check() {
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("roamcore_victron/apparmor.txt");
    let text = std::fs::read_to_string(&profile).unwrap();
    let rules: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("@{PROC}/") && line.contains("cmdline"))
        .collect();
    assert!(
        !rules.is_empty(),
        "{} has no rule that lets `health` read /proc/<pid>/cmdline, such as `@{{PROC}}/@{{pid}}/cmdline r,`",
        profile.display()
    );
}

/// Returns the body of the first call to `path` that carries notification `id`.
fn notification_body(supervisor: &FakeServer, path: &str, id: &str) -> Option<Value> {
    supervisor
        .calls()
        .iter()
        .filter(|call| call.path == path)
        .filter_map(|call| serde_json::from_str::<Value>(&call.body).ok())
        .find(|body| body["notification_id"] == id)
}

/// `portal_id` is set to the owner's GX, but the broker at `gx_host` belongs to another
/// GX (a neighbour's, or a replaced unit). Both options are valid, and neither was
/// ignored, yet the notice states that invalid options were ignored and that the log
/// names them.
#[test]
fn wrong_portal_notice_wording() {
    let ha = Mosquitto::start();
    let gx = Mosquitto::start();
    let mut sim = simulator(&gx);
    let supervisor = fake_supervisor(ha.port);
    let dir = tempfile::tempdir().unwrap();
    let options = json!({"gx_host": "127.0.0.1", "gx_port": gx.port, "scan": false, "portal_id": "c0619ab0aaaa"});
    let mut addon = Addon::start(dir.path(), &options, &supervisor);
    let id = "roamcore_victron_config_error";
    let created = wait_notification(&supervisor, CREATE, id, Duration::from_secs(30));
    addon.stop();
    kill(&mut sim);
    assert!(
        created,
        "no config_error notification: {:?}\n{}",
        supervisor.calls(),
        addon.log()
    );

    let body = notification_body(&supervisor, CREATE, id).unwrap();
    let title = body["title"].as_str().unwrap_or_default();
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("c0619ab0d0e1"),
        "the notice does not name the GX found: {message}"
    );
    assert!(!title.contains("invalid option"), "title: {title}");
    assert!(!message.contains("were ignored"), "message: {message}");
}

/// A network namespace made by this test with only its loopback up, so that discovery
/// can try its fixed MQTT ports (1883, then 8883) on a GX at 127.0.0.2 without touching
/// anything on this machine. Deleted when dropped.
struct LoopbackNet {
    name: String,
}

impl LoopbackNet {
    /// Creates the namespace; `None` without root or iproute2, so the caller can skip.
    fn create(tag: &str) -> Option<LoopbackNet> {
        let name = format!("rcv-r2-{tag}-{}", std::process::id());
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let net = LoopbackNet { name };
        if !ip(&["netns", "exec", &net.name, "ip", "link", "set", "lo", "up"]) {
            return None;
        }
        Some(net)
    }

    /// Returns a command that runs `program` inside the namespace.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Starts Mosquitto inside the namespace on `address:1883`, anonymous or with one
    /// user, logging connections to `dir/<name>.log`. Waits until it runs.
    fn mosquitto(
        &self,
        dir: &Path,
        name: &str,
        address: &str,
        login: Option<(&str, &str)>,
    ) -> Running {
        use std::os::unix::fs::PermissionsExt;
        // Lets Mosquitto read its files after it switches from root to its own user.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();

        let mut conf = format!(
            "listener 1883 {address}\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n"
        );
        match login {
            Some((user, password)) => {
                let passwords = dir.join(format!("{name}.passwd"));
                std::fs::write(&passwords, format!("{user}:{password}\n")).unwrap();
                let hashed = Command::new("mosquitto_passwd")
                    .arg("-U")
                    .arg(&passwords)
                    .status()
                    .expect("mosquitto_passwd");
                assert!(hashed.success(), "mosquitto_passwd -U failed");
                std::fs::set_permissions(&passwords, std::fs::Permissions::from_mode(0o644))
                    .unwrap();
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    passwords.display()
                ));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }

        let conf_path = dir.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = self
            .command(crate::support::mosquitto::mosquitto_binary())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start mosquitto in the namespace");
        let child = Running(child);

        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("running")
        {
            assert!(
                Instant::now() < deadline,
                "mosquitto {name} did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }
}

impl Drop for LoopbackNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A child process started by a test, killed when dropped, so that a failed assert
/// leaves no broker or simulator behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        kill(self);
    }
}

/// Stops a child process started by a test.
fn kill(process: &mut Running) {
    let _ = process.0.kill();
    let _ = process.0.wait();
}

/// The GX the bridge found by discovery (adopted, scan off: only its last address is
/// tried) gets a password: the owner picks the Weak profile. The bridge must raise one
/// notice that stays until the password is set. Here the GX link and discovery each set
/// the status with their own words, and the lost link's `searching` dismisses the notice.
#[test]
fn gx_gets_password_after_discovery() {
    const SCALE: f64 = 10.0;
    let Some(net) = LoopbackNet::create("pw") else {
        eprintln!("gx_gets_password_after_discovery: skipped, needs root and iproute2 for a network namespace");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut ha = net.mosquitto(dir.path(), "ha", "127.0.0.1", None);
    let mut gx = net.mosquitto(dir.path(), "gx-open", "127.0.0.2", None);
    let mut sim = Running(
        net.command(BIN)
            .args([
                "simulate",
                "--broker",
                "127.0.0.2:1883",
                "--time-scale",
                &SCALE.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulated GX"),
    );
    let serial = net
        .command("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.2",
            "-t",
            "N/+/system/0/Serial",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .output()
        .expect("mosquitto_sub (package mosquitto-clients)");
    assert!(
        !serial.stdout.is_empty(),
        "the simulated GX did not publish its Serial"
    );
    // The bridge found this GX before: its adoption names the last good address.
    let adoption =
        json!({"portal_id": "c0619ab0d0e1", "host": "127.0.0.2", "port": 1883, "tls": false});
    std::fs::write(data.join("discovery.json"), adoption.to_string()).unwrap();

    let mut command = net.command(BIN);
    command
        .args([
            "run",
            "--ha-broker",
            "127.0.0.1:1883",
            "--scan",
            "false",
            "--time-scale",
            &SCALE.to_string(),
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("ROAMCORE_HEALTH_FILE", dir.path().join("health.json"));
    let mut daemon = Addon::spawn(command);
    let connected = daemon.wait_line("status=connected", Duration::from_secs(30));
    assert!(
        connected,
        "the bridge did not connect to the adopted GX:\n{}",
        daemon.log()
    );

    // The owner sets a password on the GX: its broker restarts and rejects anonymous logins.
    kill(&mut sim);
    kill(&mut gx);
    let mut gx = net.mosquitto(
        dir.path(),
        "gx-password",
        "127.0.0.2",
        Some(("gx", "gx-password-1")),
    );
    let watch = Duration::from_secs(300).div_f64(SCALE);
    std::thread::sleep(watch);
    let broker_log = std::fs::read_to_string(dir.path().join("gx-password.log")).unwrap();
    daemon.stop();
    kill(&mut gx);
    kill(&mut ha);

    let logins = broker_log
        .lines()
        .filter(|line| line.contains("New connection from"))
        .count();
    let notices = daemon.count("notification_id=roamcore_victron_auth_required");
    let dismissals = daemon.count("problem solved");
    assert!(
        daemon.log().contains("status=auth_required"),
        "no auth_required status:\n{}",
        daemon.log()
    );
    // The login rate itself is checked by the LAN tests; here it is only reported.
    eprintln!("{logins} logins in five production minutes");
    assert_eq!(
        dismissals,
        0,
        "the notice was dismissed while the GX still rejects the login:\n{}",
        daemon.log()
    );
    assert!(
        notices <= 1,
        "the auth_required notice was raised {notices} times, expected once:\n{}",
        daemon.log()
    );
}

/// Starts the bridge with an adopted GX at 127.0.0.2 and scan off (only the adopted GX's
/// last address is tried), while that GX is still booting: with `broker_early` its
/// broker already accepts connections but holds no Serial, else nothing listens yet.
/// The GX comes up 20 production seconds later; the bridge must connect within 60.
fn adopted_gx_late(tag: &str, broker_early: bool) {
    const SCALE: f64 = 10.0;
    let Some(net) = LoopbackNet::create(tag) else {
        eprintln!("adopted GX late: skipped, needs root and iproute2 for a network namespace");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut ha = net.mosquitto(dir.path(), "ha", "127.0.0.1", None);
    let mut gx = broker_early.then(|| net.mosquitto(dir.path(), "gx", "127.0.0.2", None));
    let adoption =
        json!({"portal_id": "c0619ab0d0e1", "host": "127.0.0.2", "port": 1883, "tls": false});
    std::fs::write(data.join("discovery.json"), adoption.to_string()).unwrap();

    let mut command = net.command(BIN);
    command
        .args([
            "run",
            "--ha-broker",
            "127.0.0.1:1883",
            "--scan",
            "false",
            "--time-scale",
            &SCALE.to_string(),
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("ROAMCORE_HEALTH_FILE", dir.path().join("health.json"));
    let mut daemon = Addon::spawn(command);
    let checked = daemon.wait_line("status=validating", Duration::from_secs(10));
    assert!(
        checked,
        "the bridge did not try the adopted GX:\n{}",
        daemon.log()
    );

    std::thread::sleep(Duration::from_secs(20).div_f64(SCALE));
    if gx.is_none() {
        gx = Some(net.mosquitto(dir.path(), "gx", "127.0.0.2", None));
    }
    let mut sim = Running(
        net.command(BIN)
            .args([
                "simulate",
                "--broker",
                "127.0.0.2:1883",
                "--time-scale",
                &SCALE.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulated GX"),
    );
    let up = Instant::now();
    // 60 production seconds, plus start-up work the time scale does not shorten.
    let limit = Duration::from_secs(60).div_f64(SCALE) + Duration::from_millis(1500);
    let connected = daemon.wait_line("status=connected", limit);
    let waited = up.elapsed();
    daemon.stop();
    kill(&mut sim);
    if let Some(gx) = &mut gx {
        kill(gx);
    }
    kill(&mut ha);
    assert!(
        connected,
        "not connected {waited:?} after the GX came up (limit {limit:?}):\n{}",
        daemon.log()
    );
}

/// Van power-up with the GX's broker up before its MQTT plugin has published the Serial.
/// Discovery tries the adopted GX's address once at start, calls it "a broker that is
/// not a GX" and, with scan off, never tries it again (seen: not connected after 200 s).
#[test]
fn adopted_gx_serial_late() {
    adopted_gx_late("serial", true);
}

/// Van power-up with Home Assistant up before the GX: nothing listens at the adopted
/// GX's address yet. Same cause as `adopted_gx_serial_late`: one try at start only.
#[test]
fn adopted_gx_powered_on_late() {
    adopted_gx_late("power", false);
}

/// What the owner reads in the add-on log when the GX reboots: one line saying the GX
/// was lost, in plain words. The bridge writes two (an info line for the status and a
/// warning for the link), and the warning quotes the MQTT library's error text.
#[tokio::test(flavor = "current_thread")]
async fn gx_loss_log_wording() {
    let mut rig = Rig::start(RigOptions::default()).await;
    rig.wait_consistent(Duration::from_secs(20))
        .await
        .unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));

    let mark = rig.log_mark();
    rig.stop_gx_broker();
    let broker_stopped = Instant::now();
    let offline = rig
        .wait_since(GX_TOPIC, "offline", broker_stopped, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines: Vec<String> = rig.daemon().lines().into_iter().skip(mark).collect();
    rig.daemon_mut().sigterm();
    let text = lines.join("\n");

    assert!(offline.is_some(), "the GX link never went offline:\n{text}");
    let internals: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("Mqtt state"))
        .collect();
    assert!(
        internals.is_empty(),
        "library error text in the log: {internals:?}"
    );
    let lost = lines
        .iter()
        .filter(|line| line.to_lowercase().contains("lost the gx"))
        .count();
    assert_eq!(lost, 1, "lines about losing the GX:\n{text}");
}

/// Runs the bridge against a GX it found by discovery (adopted at 127.0.0.2, scan off)
/// until connected, then switches MQTT access off on the GX: its broker stops, its web
/// page stays up. Returns the bridge's log lines from the switch on, for ten production
/// minutes at time scale 20.
fn mqtt_off_after_discovery(tag: &str) -> Option<Vec<String>> {
    const SCALE: f64 = 20.0;
    let Some(net) = LoopbackNet::create(tag) else {
        eprintln!(
            "MQTT off after discovery: skipped, needs root and iproute2 for a network namespace"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut ha = net.mosquitto(dir.path(), "ha", "127.0.0.1", None);
    let mut gx = net.mosquitto(dir.path(), "gx", "127.0.0.2", None);
    let mut sim = Running(
        net.command(BIN)
            .args([
                "simulate",
                "--broker",
                "127.0.0.2:1883",
                "--time-scale",
                &SCALE.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulated GX"),
    );
    let mut web = Running(
        net.command(BIN)
            .args([
                "sim-lan",
                "--bind",
                "127.0.0.2",
                "--ssdp",
                "false",
                "--web",
                "gui",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulated GX's web page"),
    );
    let serial = net
        .command("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.2",
            "-t",
            "N/+/system/0/Serial",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .output()
        .expect("mosquitto_sub (package mosquitto-clients)");
    assert!(
        !serial.stdout.is_empty(),
        "the simulated GX did not publish its Serial"
    );
    let adoption =
        json!({"portal_id": "c0619ab0d0e1", "host": "127.0.0.2", "port": 1883, "tls": false});
    std::fs::write(data.join("discovery.json"), adoption.to_string()).unwrap();

    let mut command = net.command(BIN);
    command
        .args([
            "run",
            "--ha-broker",
            "127.0.0.1:1883",
            "--scan",
            "false",
            "--time-scale",
            &SCALE.to_string(),
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("ROAMCORE_HEALTH_FILE", dir.path().join("health.json"));
    let mut daemon = Addon::spawn(command);
    let connected = daemon.wait_line("status=connected", Duration::from_secs(30));
    assert!(
        connected,
        "the bridge did not connect to the adopted GX:\n{}",
        daemon.log()
    );

    let mark = daemon.lines.lock().unwrap().len();
    kill(&mut sim);
    kill(&mut gx);
    std::thread::sleep(Duration::from_secs(600).div_f64(SCALE));
    daemon.stop();
    kill(&mut web);
    kill(&mut ha);
    let lines = daemon.lines.lock().unwrap()[mark..].to_vec();
    Some(lines)
}

/// Ten minutes of a GX with MQTT off, after discovery. With gx_host set, an hour of GX
/// outage costs at most 30 log lines; here the GX link and discovery set the status in
/// turn (`searching`, `validating`, `connecting`) at every retry, and each change is an
/// info line and a new state of `sensor.vt_bridge_status`.
#[test]
fn gx_outage_after_discovery_log_lines() {
    const MAX_LINES: usize = 10;
    let Some(lines) = mqtt_off_after_discovery("flap") else {
        return;
    };
    let changes = lines.iter().filter(|line| line.contains("status=")).count();
    assert!(
        lines.len() <= MAX_LINES,
        "{} log lines ({changes} status changes) in ten minutes of GX outage, limit {MAX_LINES}:\n{}",
        lines.len(),
        lines.join("\n")
    );
}

/// The same GX with MQTT off, scan off. Its web page stays up and its portal id is
/// known, so the bridge has what it needs to say `mqtt_disabled`, yet in ten minutes it
/// only cycles through `searching`, `validating` and `connecting`.
#[test]
fn mqtt_off_after_discovery_reported() {
    let Some(lines) = mqtt_off_after_discovery("mqtt") else {
        return;
    };
    let reported = lines
        .iter()
        .any(|line| line.contains("status=mqtt_disabled"));
    assert!(
        reported,
        "no mqtt_disabled in ten minutes with MQTT off:\n{}",
        lines.join("\n")
    );
}

/// The owner installed the add-on but not the Mosquitto broker add-on: the Supervisor
/// returns 400 for `/services/mqtt` until they do. Other repeated problems are warned
/// once and then counted every 10 minutes; this one repeats every minute, a window that
/// `--time-scale` does not shorten, so the test runs at time scale 1 for 130 s.
#[test]
fn mqtt_service_missing_log_lines() {
    let supervisor = FakeServer::start(
        Arc::new(|call: &Call| match call.path.as_str() {
            "/services/mqtt" => Reply::json(
                400,
                json!({"result": "error", "message": "Service not enabled"}),
            ),
            _ => Reply::json(404, json!({"result": "error", "message": "not found"})),
        }),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let options = json!({"gx_host": "127.0.0.1", "gx_port": free_port(), "scan": false});
    let mut addon = Addon::start_scaled(dir.path(), &options, &supervisor, 1.0);
    std::thread::sleep(Duration::from_secs(130));
    addon.stop();

    let requests = supervisor
        .calls()
        .iter()
        .filter(|call| call.path == "/services/mqtt")
        .count();
    let warnings = addon.count("waiting for Home Assistant's MQTT broker");
    assert!(
        requests >= 3,
        "only {requests} requests for the MQTT service"
    );
    assert!(
        warnings <= 1,
        "{warnings} warnings in 130 s, expected the first one only:\n{}",
        addon.log()
    );
}
