//! The simulated GX on a test LAN host (a real Mosquitto with the retained Serial, or
//! with `simulate` publishing a capture into it, plus `sim-lan` for SSDP, the web page
//! and mDNS), a decoy broker, and `discover` runs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::net::{mosquitto, Host, Lan};

pub const BIN: &str = env!("CARGO_BIN_EXE_roamcore-victron");

/// Portal id of the simulated GX that the daemon tests bridge.
pub const GX_A: &str = "c0619ab0d0e1";

/// Starts Mosquitto on port 1883 of every address of `host` (and nothing on 8883), so
/// the simulator can publish over loopback while `eth0` changes. Returns the child index.
pub fn broker(lan: &mut Lan, host: &Host, dir: &Path, password: Option<&str>) -> usize {
    let conf = dir.join(format!("mosquitto-{}.conf", host.addr));
    // Mosquitto drops root privileges to its own user, which cannot write into the
    // test's directory, so the log goes to stderr (unbuffered) and the test writes it.
    let mut text =
        "listener 1883\npersistence false\nlog_dest stderr\nlog_type all\nlog_timestamp true\n"
            .to_string();
    match password {
        Some(password) => {
            let file = dir.join(format!("passwd-{}", host.addr));
            std::fs::write(&file, format!("roamcore:{password}\n")).unwrap();
            let status = std::process::Command::new("mosquitto_passwd")
                .arg("-U")
                .arg(&file)
                .status()
                .unwrap();
            assert!(status.success());
            text.push_str(&format!("allow_anonymous false\npassword_file {}\n", file.display()));
        }
        None => text.push_str("allow_anonymous true\n"),
    }
    std::fs::File::create(&conf).unwrap().write_all(text.as_bytes()).unwrap();
    let log = std::fs::File::create(log_path(dir, host)).unwrap();
    let index = lan.spawn_with(
        host,
        &mosquitto(),
        &["-c", conf.to_str().unwrap()],
        Stdio::null(),
        Stdio::from(log),
    );
    wait_for_tcp(lan, host, 1883);
    index
}

/// Makes a self-signed certificate like the GX's (`CN=venus.local`) with openssl.
/// Returns the certificate and key paths.
pub fn gx_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj"])
        .arg("/C=NL/ST=Flevoland/L=Almere/O=Victron Energy/OU=Venus OS/CN=venus.local")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is needed for the TLS tests");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// Starts Mosquitto as a Secured-profile GX: only 8883 with TLS, password required.
pub fn tls_broker(lan: &mut Lan, host: &Host, dir: &Path, cert: &Path, key: &Path, password: &str) -> usize {
    let conf = dir.join(format!("mosquitto-tls-{}.conf", host.addr));
    let file = dir.join(format!("passwd-tls-{}", host.addr));
    std::fs::write(&file, format!("roamcore:{password}\n")).unwrap();
    let status = std::process::Command::new("mosquitto_passwd").arg("-U").arg(&file).status().unwrap();
    assert!(status.success());
    // `user root`: Mosquitto loads the key after dropping privileges, and its own user
    // cannot read the test's private directory. The broker runs in a test namespace.
    let text = format!(
        "user root\nlistener 8883 {}\ncertfile {}\nkeyfile {}\npersistence false\nallow_anonymous false\n\
         password_file {}\nlog_dest stderr\nlog_type all\nlog_timestamp true\n",
        host.addr,
        cert.display(),
        key.display(),
        file.display()
    );
    std::fs::write(&conf, text).unwrap();
    let log = std::fs::File::create(log_path(dir, host)).unwrap();
    let index = lan.spawn_with(host, &mosquitto(), &["-c", conf.to_str().unwrap()], Stdio::null(), Stdio::from(log));
    wait_for_tcp(lan, host, 8883);
    index
}

/// Publishes the retained Serial over TLS with the password.
pub fn publish_serial_tls(lan: &Lan, host: &Host, portal: &str, cert: &Path, password: &str) {
    let topic = format!("N/{portal}/system/0/Serial");
    let payload = format!("{{\"value\":\"{portal}\"}}");
    let addr = host.addr.to_string();
    let cafile = cert.to_str().unwrap();
    let args = [
        "-h", &addr, "-p", "8883", "--cafile", cafile, "--insecure", "-u", "roamcore", "-P", password,
        "-t", &topic, "-m", &payload, "-r",
    ];
    let out = lan.exec(host, "mosquitto_pub", &args);
    assert!(out.status.success(), "mosquitto_pub over TLS: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn log_path(dir: &Path, host: &Host) -> PathBuf {
    dir.join(format!("mosquitto-{}.log", host.addr))
}

/// Lists the MQTT clients that connected to a broker, as (address, client id), from
/// its log lines "New client connected from ADDR:PORT as ID (...)".
pub fn broker_clients(log: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once("New client connected from ").map(|(_, rest)| rest))
        .filter_map(|rest| {
            let (from, rest) = rest.split_once(" as ")?;
            let id = rest.split(' ').next()?;
            let addr = from.rsplit_once(':').map_or(from, |(addr, _)| addr);
            Some((addr.to_string(), id.to_string()))
        })
        .collect()
}

/// Asserts that the bridge never used the broker whose log is `log`: no connection with
/// the GX link's client id (`roamcore-victron-...`) and no PUBLISH from any of our
/// clients. Returns how many validation connections (`roamcore-probe-...`) it had.
pub fn assert_not_bridged(log: &Path) -> usize {
    let clients = broker_clients(log);
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let bridged: Vec<_> =
        clients.iter().filter(|(_, id)| id.starts_with("roamcore-victron-")).collect();
    assert!(bridged.is_empty(), "the bridge connected to {}: {bridged:?}", log.display());
    let published =
        text.lines().filter(|l| l.contains("Received PUBLISH from roamcore")).count();
    assert_eq!(published, 0, "the bridge published to {}", log.display());
    clients.iter().filter(|(_, id)| id.starts_with("roamcore-probe-")).count()
}

/// Waits until `host`:`port` accepts connections (checked from inside its namespace).
fn wait_for_tcp(lan: &Lan, host: &Host, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out =
            lan.exec(host, "bash", &["-c", &format!("exec 3<>/dev/tcp/{}/{port}", host.addr)]);
        if out.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on {}:{port}", host.addr);
}

/// Publishes the retained `N/<portal>/system/0/Serial`, as dbus-flashmq does.
pub fn publish_serial(lan: &Lan, host: &Host, portal: &str, password: Option<&str>) {
    let topic = format!("N/{portal}/system/0/Serial");
    let payload = format!("{{\"value\":\"{portal}\"}}");
    let addr = host.addr.to_string();
    let mut args = vec!["-h", &addr, "-t", &topic, "-m", &payload, "-r"];
    if let Some(password) = password {
        args.extend(["-u", "roamcore", "-P", password]);
    }
    let out = lan.exec(host, "mosquitto_pub", &args);
    assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts `sim-lan` on `host` with extra flags and waits until it is ready.
pub fn sim_lan(lan: &mut Lan, host: &Host, portal: &str, flags: &[&str]) -> usize {
    let addr = host.addr.to_string();
    let mut args = vec!["sim-lan", "--bind", &addr, "--portal-id", portal];
    args.extend_from_slice(flags);
    let index = lan.spawn(host, BIN, &args, Stdio::piped());
    let stdout = lan.child(index).stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.contains("ready"), "sim-lan did not start: {line}");
    index
}

/// Starts a simulated GX with live values: a broker, `simulate` publishing the `boat`
/// capture into it under `portal`, and `sim-lan` with `flags`. `time_scale` divides the
/// simulator's Venus timers and must equal the daemon's `--time-scale`, or the 3 s
/// heartbeat exceeds the daemon's scaled heartbeat timeout. Returns the child index of
/// `sim-lan`.
pub fn live_gx(
    lan: &mut Lan,
    host: &Host,
    dir: &Path,
    portal: &str,
    password: Option<&str>,
    time_scale: f64,
    flags: &[&str],
) -> usize {
    broker(lan, host, dir, password);
    simulator(lan, host, dir, portal, password, time_scale);
    sim_lan(lan, host, portal, flags)
}

/// Starts `simulate` against the broker on `host` (over loopback) and waits until the
/// retained Serial is there.
pub fn simulator(
    lan: &mut Lan,
    host: &Host,
    dir: &Path,
    portal: &str,
    password: Option<&str>,
    time_scale: f64,
) -> usize {
    let scale = time_scale.to_string();
    let mut args = vec![
        "simulate",
        "--broker",
        "127.0.0.1:1883",
        "--portal-id",
        portal,
        "--time-scale",
        &scale,
        "--log-level",
        "warning",
    ];
    if let Some(password) = password {
        args.extend(["--username", "roamcore", "--password", password]);
    }
    let log = std::fs::File::create(dir.join(format!("simulate-{portal}.log"))).unwrap();
    let index = lan.spawn_with(host, BIN, &args, Stdio::null(), Stdio::from(log));

    let topic = format!("N/{portal}/system/0/Serial");
    let mut sub = vec!["-h", "127.0.0.1", "-t", &topic, "-C", "1", "-W", "10"];
    if let Some(password) = password {
        sub.extend(["-u", "roamcore", "-P", password]);
    }
    let out = lan.exec(host, "mosquitto_sub", &sub);
    assert!(out.status.success(), "no retained Serial from the simulator of {portal}");
    index
}

/// Starts a complete simulated GX: a broker with the retained Serial, and its LAN presence.
pub fn full_gx(lan: &mut Lan, host: &Host, dir: &Path, portal: &str, flags: &[&str]) {
    broker(lan, host, dir, None);
    publish_serial(lan, host, portal, None);
    sim_lan(lan, host, portal, flags);
}

/// One line of `discover --json` with the time it arrived.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub json: serde_json::Value,
}

/// A running `discover --json`.
pub struct Discover {
    lines: mpsc::Receiver<Line>,
    pub seen: Vec<Line>,
    pub started: Instant,
}

impl Discover {
    pub fn start(lan: &mut Lan, host: &Host, data_dir: &Path, flags: &[&str]) -> Discover {
        let dir = data_dir.to_str().unwrap();
        // ROAMCORE_TEST_LOG=debug shows the daemon's log on the test's stderr.
        let level = std::env::var("ROAMCORE_TEST_LOG").ok();
        let mut args = vec![
            "discover",
            "--json",
            "--data-dir",
            dir,
            "--log-level",
            level.as_deref().unwrap_or("info"),
        ];
        args.extend_from_slice(flags);
        let started = Instant::now();
        let stderr = if level.is_some() { Stdio::inherit() } else { Stdio::null() };
        let index = lan.spawn_with(host, BIN, &args, Stdio::piped(), stderr);
        let stdout = lan.child(index).stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(json) = serde_json::from_str(&line) else { continue };
                if tx.send(Line { at: Instant::now(), json }).is_err() {
                    return;
                }
            }
        });
        Discover { lines, seen: Vec::new(), started }
    }

    /// Waits for a line matching `predicate`, up to `timeout`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        predicate: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<Line> {
        if let Some(line) = self.seen.iter().find(|l| predicate(&l.json)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if predicate(&line.json) {
                        return Some(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Collects lines until the process ends or `timeout` passes.
    pub fn drain(&mut self, timeout: Duration) {
        let _ = self.wait_for(timeout, |_| false);
    }

    pub fn dump(&self) -> String {
        self.seen.iter().map(|l| l.json.to_string()).collect::<Vec<_>>().join("\n")
    }
}

pub fn is_event(json: &serde_json::Value, event: &str) -> bool {
    json["event"] == event
}

pub fn is_status(json: &serde_json::Value, status: &str) -> bool {
    json["event"] == "status" && json["status"] == status
}
