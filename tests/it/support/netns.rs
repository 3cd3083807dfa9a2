//! A network namespace made by the test, joined to this one by a veth pair, in which a
//! test runs the GX's broker. Taking the namespace's end of the pair down drops every
//! packet, as a rebooting switch or access point does, with the kernel's own TCP and ARP
//! timers at work. Needs root and `ip` (iproute2). Traffic goes only to the namespace's
//! address.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::mosquitto::mosquitto_binary;

pub struct TestNet {
    pub namespace: String,
    host_link: String,
    namespace_link: String,
    /// The namespace side's address.
    pub address: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

impl TestNet {
    /// Creates the namespace and the veth pair; `None` when this process may not (not
    /// root, or no iproute2), so the caller can skip.
    pub fn create() -> Option<TestNet> {
        if !ip(&["netns", "list"]) {
            return None;
        }
        // A /30 per namespace inside 10.213.0.0/16, which nothing else here uses: four per
        // process, so tests running at the same time get their own.
        static CREATED: AtomicU32 = AtomicU32::new(0);
        let id = (std::process::id() % 4_000) * 4 + CREATED.fetch_add(1, Ordering::Relaxed) % 4;
        let (third, fourth) = (id / 64, (id % 64) * 4);
        let net = TestNet {
            namespace: format!("rcv-fault-{id}"),
            host_link: format!("rcvfh{id}"),
            namespace_link: format!("rcvfn{id}"),
            address: format!("10.213.{third}.{}", fourth + 2),
        };
        let host_address = format!("10.213.{third}.{}/30", fourth + 1);
        let namespace_address = format!("{}/30", net.address);
        let ok = ip(&["netns", "add", &net.namespace])
            && ip(&["link", "add", &net.host_link, "type", "veth", "peer", "name", &net.namespace_link])
            && ip(&["link", "set", &net.namespace_link, "netns", &net.namespace])
            && ip(&["addr", "add", &host_address, "dev", &net.host_link])
            && ip(&["link", "set", &net.host_link, "up"])
            && ip(&["netns", "exec", &net.namespace, "ip", "addr", "add", &namespace_address, "dev", &net.namespace_link])
            && ip(&["netns", "exec", &net.namespace, "ip", "link", "set", &net.namespace_link, "up"])
            && ip(&["netns", "exec", &net.namespace, "ip", "link", "set", "lo", "up"]);
        if !ok {
            drop(net);
            return None;
        }
        Some(net)
    }

    /// Takes the namespace's end of the pair down, as a rebooting switch or access point
    /// does: packets to it are dropped, nothing is refused or reset.
    pub fn blackhole(&self) {
        assert!(ip(&["netns", "exec", &self.namespace, "ip", "link", "set", &self.namespace_link, "down"]));
    }

    /// Brings the namespace's end of the pair up again.
    pub fn restore(&self) {
        assert!(ip(&["netns", "exec", &self.namespace, "ip", "link", "set", &self.namespace_link, "up"]));
    }

    /// Starts Mosquitto inside the namespace on `address:1883`; it stops when dropped.
    pub fn start_mosquitto(&self, dir: &std::path::Path) -> NetnsBroker {
        let conf: PathBuf = dir.join("mosquitto-netns.conf");
        let text = format!(
            "listener 1883 {}\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\n",
            self.address
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto in the namespace");
        let address: std::net::SocketAddr = format!("{}:1883", self.address).parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nothing listens on {address} after 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        NetnsBroker { child }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the other end.
        ip(&["netns", "delete", &self.namespace]);
        ip(&["link", "delete", &self.host_link]);
    }
}

/// Mosquitto running in a test namespace (`ip netns exec` runs it in place, so the child is
/// the broker itself).
pub struct NetnsBroker {
    child: Child,
}

impl Drop for NetnsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
