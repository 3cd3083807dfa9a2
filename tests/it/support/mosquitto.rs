//! A real Mosquitto broker on a free 127.0.0.1 port, stopped when dropped.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the test broker is set up.
#[derive(Debug, Clone, Default)]
pub struct BrokerConfig {
    /// Require this username and password (anonymous logins are then refused).
    pub credentials: Option<(String, String)>,
    /// Listen on this port instead of a free one (to restart a broker on the same port).
    pub port: Option<u16>,
    /// Serve TLS on the main port with this certificate and key (PEM files); a second,
    /// plain listener on `plain_port` lets tests publish without TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    /// Plain listener next to a TLS one (0 without TLS).
    pub plain_port: u16,
    dir: tempfile::TempDir,
    config: BrokerConfig,
}

/// Path of the mosquitto binary: $MOSQUITTO, or the Debian package's location, or PATH.
pub fn mosquitto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOSQUITTO") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("mosquitto")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(BrokerConfig::default())
    }

    pub fn start_with(config: BrokerConfig) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir for mosquitto");
        let port = config.port.unwrap_or_else(free_port);
        let plain_port = if config.tls.is_some() { free_port() } else { 0 };
        let mut broker = Mosquitto { child: None, port, plain_port, dir, config };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let conf_path = self.dir.path().join("mosquitto.conf");
        let mut conf = String::new();
        conf.push_str("per_listener_settings false\n");
        conf.push_str(&format!("listener {} 127.0.0.1\n", self.port));
        if let Some((cert, key)) = &self.config.tls {
            conf.push_str(&format!("certfile {}\nkeyfile {}\n", cert.display(), key.display()));
            conf.push_str(&format!("listener {} 127.0.0.1\n", self.plain_port));
        }
        conf.push_str("persistence false\n");
        conf.push_str("log_dest stderr\n");
        conf.push_str("log_type error\nlog_type warning\n");
        conf.push_str("max_queued_messages 100000\n");
        conf.push_str("message_size_limit 0\n");
        match &self.config.credentials {
            Some((user, password)) => {
                let pw_path = self.dir.path().join("passwd");
                std::fs::write(&pw_path, format!("{user}:{password}\n")).unwrap();
                let status = Command::new("mosquitto_passwd")
                    .arg("-U")
                    .arg(&pw_path)
                    .status()
                    .expect("mosquitto_passwd (package mosquitto) is needed");
                assert!(status.success(), "mosquitto_passwd -U failed");
                conf.push_str("allow_anonymous false\n");
                conf.push_str(&format!("password_file {}\n", pw_path.display()));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }
        let mut file = std::fs::File::create(&conf_path).unwrap();
        file.write_all(conf.as_bytes()).unwrap();

        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (scripts/test installs it)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
        if self.plain_port != 0 {
            wait_for_port(self.plain_port, Duration::from_secs(10));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `127.0.0.1:PORT`, as the daemon's flags take it.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGKILL: retained messages are lost, as on a power cut).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}

/// Writes a self-signed certificate and key like a GX's (RSA-2048, `CN=venus.local`) to
/// `dir`, named by `name`; returns (certificate, key) paths.
pub fn self_signed_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "36500", "-subj", "/CN=venus.local"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is needed for TLS tests");
    assert!(status.success(), "openssl req failed");
    // Mosquitto started as root drops to its own user before it loads TLS files.
    use std::os::unix::fs::PermissionsExt;
    for path in [dir, cert.as_path(), key.as_path()] {
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    (cert, key)
}
