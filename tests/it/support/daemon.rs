//! The `roamcore-victron` binary as a child process, with its log lines captured.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_roamcore-victron");

pub struct Daemon {
    child: Option<Child>,
    health: std::path::PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `roamcore-victron` with `args` and extra environment variables. The health
    /// file goes to a private place so tests do not share one.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(BIN);
        command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.env_remove("SUPERVISOR_TOKEN").env_remove("HASSIO_TOKEN");
        let health = std::env::temp_dir().join(format!("rcv-health-{}-{}.json", std::process::id(), rand_suffix()));
        command.env("ROAMCORE_HEALTH_FILE", &health);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start roamcore-victron");

        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("RCV_TEST_ECHO").is_some() {
                        eprintln!("daemon: {line}");
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Daemon { child: Some(child), health, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn log_text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_line(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.lines().iter().any(|l| l.contains(needle)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits (up to 10 s) for the exit; returns the status and how long
    /// the exit took.
    pub fn sigterm(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("daemon already stopped");
        let started = Instant::now();
        unsafe_kill(child.id(), "TERM");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let status = child.wait().unwrap();
                return (status, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon without a chance to clean up (power cut).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.health);
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}

fn rand_suffix() -> u64 {
    rand::random::<u64>()
}
