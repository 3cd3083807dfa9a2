//! A test LAN made of network namespaces: a switch namespace with a bridge, and one
//! namespace per host joined to it by a veth pair. Nothing touches the machine's own
//! namespace. Everything is removed when the `Lan` is dropped, also after a panic.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Returns why the LAN tests cannot run here, or `None` when they can.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let ip = Command::new("ip").args(["netns", "list"]).output();
    match ip {
        Ok(out) if out.status.success() => {}
        _ => return Some("`ip netns` is not available".into()),
    }
    if !std::path::Path::new(&mosquitto()).exists() {
        return Some("mosquitto is not installed".into());
    }
    None
}

pub fn mosquitto() -> String {
    std::env::var("MOSQUITTO").unwrap_or_else(|_| "/usr/sbin/mosquitto".into())
}

fn run(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Switches IPv6 off in `ns`, so the kernel's router solicitations and MLD reports do
/// not mix with the IPv4 scan traffic that the tests count.
fn disable_ipv6(ns: &str) {
    for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
        let out =
            Command::new("ip").args(["netns", "exec", ns, "sysctl", "-q", "-w", key]).output();
        assert!(out.is_ok_and(|o| o.status.success()), "sysctl {key} in {ns}");
    }
}

/// One host of the test LAN.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub addr: Ipv4Addr,
    /// The host's port on the switch's bridge; `None` behind a second interface.
    pub port: Option<String>,
}

pub struct Lan {
    pub prefix: String,
    switch: String,
    pub subnet: [u8; 3],
    hosts: Vec<Host>,
    children: Vec<Child>,
}

impl Lan {
    /// Creates a LAN 192.168.<third>.0/24 whose namespaces share a unique name prefix.
    pub fn new(third: u8) -> Lan {
        let id = std::process::id() % 10_000 * 100 + COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("rcv{id}");
        let switch = format!("{prefix}-sw");
        run(&["netns", "add", &switch]);
        let lan = Lan {
            prefix,
            switch,
            subnet: [192, 168, third],
            hosts: Vec::new(),
            children: Vec::new(),
        };
        run(&["-n", &lan.switch, "link", "add", "br0", "type", "bridge"]);
        // The bridge forwards at once: no STP learning delay in a test.
        run(&["-n", &lan.switch, "link", "set", "br0", "type", "bridge", "forward_delay", "0"]);
        run(&["-n", &lan.switch, "link", "set", "br0", "up"]);
        lan
    }

    /// Returns the name of the switch's namespace, which holds each host's bridge port.
    pub fn switch_ns(&self) -> String {
        self.switch.clone()
    }

    /// Adds a host at 192.168.<third>.<last>/24 on its `eth0`.
    pub fn host(&mut self, name: &str, last: u8) -> Host {
        let ns = format!("{}-{name}", self.prefix);
        run(&["netns", "add", &ns]);
        let port = format!("p{}", self.hosts.len());
        run(&[
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        run(&["-n", &self.switch, "link", "set", &port, "master", "br0"]);
        run(&["-n", &self.switch, "link", "set", &port, "up"]);
        let addr = Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], last);
        run(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        disable_ipv6(&ns);
        run(&["-n", &ns, "link", "set", "lo", "up"]);
        run(&["-n", &ns, "link", "set", "eth0", "up"]);
        // Multicast (SSDP, mDNS) leaves by eth0 even without a default route.
        run(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        let host = Host { ns, addr, port: Some(port) };
        self.hosts.push(host.clone());
        host
    }

    /// Gives `host` a second interface `eth1` with `cidr` towards a new namespace
    /// `<prefix>-<far_name>` holding `far_cidr`, a network that must never be swept.
    pub fn far_network(&mut self, host: &Host, cidr: &str, far_name: &str, far_cidr: &str) -> Host {
        let ns = format!("{}-{far_name}", self.prefix);
        run(&["netns", "add", &ns]);
        disable_ipv6(&ns);
        run(&[
            "-n", &host.ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        run(&["-n", &host.ns, "addr", "add", cidr, "dev", "eth1"]);
        run(&["-n", &host.ns, "link", "set", "eth1", "up"]);
        run(&["-n", &ns, "addr", "add", far_cidr, "dev", "eth0"]);
        run(&["-n", &ns, "link", "set", "lo", "up"]);
        run(&["-n", &ns, "link", "set", "eth0", "up"]);
        let addr: Ipv4Addr = far_cidr.split('/').next().unwrap().parse().unwrap();
        let far = Host { ns, addr, port: None };
        self.hosts.push(far.clone());
        far
    }

    /// Starts `program` in `host`'s namespace; it is killed when the LAN is dropped.
    pub fn spawn(&mut self, host: &Host, program: &str, args: &[&str], stdout: Stdio) -> usize {
        self.spawn_with(host, program, args, stdout, Stdio::null())
    }

    /// Like `spawn`, with stderr too.
    pub fn spawn_with(
        &mut self,
        host: &Host,
        program: &str,
        args: &[&str],
        stdout: Stdio,
        stderr: Stdio,
    ) -> usize {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &host.ns, program]).args(args);
        self.spawn_command(host, command, stdout, stderr)
    }

    /// Starts `command`, an `ip netns exec` command line for `host` (with its own
    /// environment, for example). It is killed when the LAN is dropped.
    pub fn spawn_command(
        &mut self,
        host: &Host,
        mut command: Command,
        stdout: Stdio,
        stderr: Stdio,
    ) -> usize {
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?} in {}: {e}", host.ns));
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn child(&mut self, index: usize) -> &mut Child {
        &mut self.children[index]
    }

    /// Runs a command in `host`'s namespace and waits for it.
    pub fn exec(&self, host: &Host, program: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &host.ns, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", host.ns))
    }
}

impl Lan {
    /// Stops a process started with `spawn`.
    pub fn stop(&mut self, index: usize) {
        let child = &mut self.children[index];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM to a process started with `spawn` and waits up to 10 s for it to
    /// exit (then kills it). `ip netns exec` execs the program, so the child's pid is the
    /// program's.
    pub fn terminate(&mut self, index: usize) {
        let child = &mut self.children[index];
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Returns true while a process started with `spawn` has not exited.
    pub fn is_running(&mut self, index: usize) -> bool {
        matches!(self.children[index].try_wait(), Ok(None))
    }

    /// Takes `host`'s switch port down (frames to and from it are dropped silently, as
    /// when a router reboots) or brings it back up.
    pub fn set_link(&self, host: &Host, up: bool) {
        let port = host.port.as_deref().expect("a host on the switch");
        run(&["-n", &self.switch, "link", "set", port, if up { "up" } else { "down" }]);
    }

    /// Gives `host` the address 192.168.<third>.<last> in place of its current one, as a
    /// DHCP server may after a router reboot. Processes bound to the old address keep
    /// running but can no longer be reached.
    pub fn move_host(&self, host: &mut Host, last: u8) {
        let addr = Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], last);
        // Deleting first: deleting a primary address also deletes the secondaries of
        // its subnet (unless promote_secondaries is set).
        run(&["-n", &host.ns, "addr", "del", &format!("{}/24", host.addr), "dev", "eth0"]);
        run(&["-n", &host.ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        host.addr = addr;
    }
}

/// Moves the calling thread into network namespace `ns`. Sockets the thread creates
/// afterwards belong to that namespace, whichever thread uses them later.
pub fn enter_namespace(ns: &str) {
    let path = std::ffi::CString::new(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: plain libc calls on an owned, NUL-terminated path; setns affects only the
    // calling thread.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
        assert!(fd >= 0, "open {ns}");
        assert_eq!(libc::setns(fd, libc::CLONE_NEWNET), 0, "setns {ns}");
        libc::close(fd);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for host in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &host.ns]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.switch]).status();
    }
}
