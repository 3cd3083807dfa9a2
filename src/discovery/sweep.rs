//! TCP connects to the GX's MQTT ports (1883 plain, 8883 TLS) on the hosts of the
//! attached subnets, within the packet budget.
//!
//! Costs charged to the budget, per the Linux defaults: an address not yet in the
//! neighbour table costs up to 3 ARP requests (`mcast_solicit`) and a SYN that leaves
//! only after an ARP reply; each connect to a known host a SYN plus the closing segment
//! (an open port is closed with RST, no FIN exchange).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::candidate::{Candidate, Method};
use super::policy::PacketBudget;
use crate::config::{GX_PORT_PLAIN, GX_PORT_TLS};

/// Packets one TCP connect costs: SYN, then ACK + RST or the peer's RST.
pub const CONNECT_PACKETS: f64 = 2.0;
/// Packets for a first connect to an address the kernel does not know yet: an ARP
/// request and the SYN now, and ARP retries after one and two seconds when nobody
/// replies (Linux `mcast_solicit` 3, `retrans_time_ms` 1000).
pub const UNKNOWN_ADDRESS_PACKETS: [(Duration, f64); 3] =
    [(Duration::ZERO, 2.0), (Duration::from_secs(1), 1.0), (Duration::from_secs(2), 1.0)];
/// How many hosts are probed at once. With the connect timeout this bounds the sweep
/// speed from above; the budget bounds it from below.
const PARALLEL: usize = 8;

/// The packet budget shared by every scanner. Requests are served first come, first
/// served: without that, a validation (16 packets, more than fit beside anything else)
/// would starve while the sweep's small requests keep the window busy.
#[derive(Debug, Clone)]
pub struct Budget {
    window: Arc<Mutex<PacketBudget>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Budget {
    /// At most `per_second` packets within any one-second window.
    pub fn new(per_second: f64) -> Budget {
        Budget {
            window: Arc::new(Mutex::new(PacketBudget::new(per_second, Duration::from_secs(1)))),
            turn: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Waits until `packets` may be sent now.
    pub async fn take(&self, packets: f64) {
        self.take_parts(&[(Duration::ZERO, packets)]).await;
    }

    /// Waits until packets sent at each `(offset, count)` from now may be sent.
    pub async fn take_parts(&self, parts: &[(Duration, f64)]) {
        let _turn = self.turn.lock().await;
        loop {
            let result = self
                .window
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_take_parts(parts, Instant::now());
            match result {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(5))).await,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Open,
    /// The host replied with RST: it exists, but nothing listens.
    Closed,
    /// No reply: the host is absent or drops packets.
    Silent,
}

/// Connects to `ip:port` and closes at once with RST.
pub async fn probe_port(ip: IpAddr, port: u16, timeout: Duration) -> PortState {
    let addr = SocketAddr::new(ip, port);
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_zero_linger();
            drop(stream);
            PortState::Open
        }
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => PortState::Closed,
        Ok(Err(_)) | Err(_) => PortState::Silent,
    }
}

/// The open MQTT ports of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostPorts {
    pub plain: bool,
    pub tls: bool,
    /// The host answered on some port (RST or SYN-ACK).
    pub alive: bool,
}

/// Probes 1883, then 8883. An address that stayed silent on 1883 and is not in the
/// neighbour table afterwards is taken as absent and 8883 is skipped.
pub async fn probe_host(
    ip: Ipv4Addr,
    known: bool,
    budget: &Budget,
    timeout: Duration,
) -> HostPorts {
    let ip_addr = IpAddr::V4(ip);
    if known {
        budget.take(CONNECT_PACKETS).await;
    } else {
        budget.take_parts(&UNKNOWN_ADDRESS_PACKETS).await;
    }
    let plain = probe_port(ip_addr, GX_PORT_PLAIN, timeout).await;

    let present = plain != PortState::Silent || super::arp::read().iter().any(|n| n.ip == ip);
    if !present {
        return HostPorts::default();
    }
    budget.take(CONNECT_PACKETS).await;
    let tls = probe_port(ip_addr, GX_PORT_TLS, timeout).await;
    HostPorts {
        plain: plain == PortState::Open,
        tls: tls == PortState::Open,
        alive: plain != PortState::Silent || tls != PortState::Silent,
    }
}

/// Probes every address of `targets` (at most `PARALLEL` at once) and sends a candidate
/// for each host with an MQTT port open. Returns how many hosts answered.
pub async fn sweep(
    targets: Vec<Ipv4Addr>,
    method: Method,
    budget: Budget,
    timeout: Duration,
    found: mpsc::UnboundedSender<Candidate>,
) -> usize {
    let known: Vec<Ipv4Addr> = super::arp::read().iter().map(|n| n.ip).collect();
    let queue = Arc::new(Mutex::new(targets.into_iter()));
    let alive = Arc::new(Mutex::new(0usize));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..PARALLEL {
        let queue = queue.clone();
        let budget = budget.clone();
        let found = found.clone();
        let known = known.clone();
        let alive = alive.clone();
        workers.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(ip) = next else { return };
                let ports = probe_host(ip, known.contains(&ip), &budget, timeout).await;
                if ports.alive {
                    *alive.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                }
                if ports.plain || ports.tls {
                    tracing::debug!(%ip, plain = ports.plain, tls = ports.tls, "MQTT port open");
                    if found.send(Candidate::new(IpAddr::V4(ip), method)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let count = *alive.lock().unwrap_or_else(|e| e.into_inner());
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn port_states_on_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let timeout = Duration::from_secs(1);
        assert_eq!(probe_port(ip, open, timeout).await, PortState::Open);
        assert_eq!(probe_port(ip, closed, timeout).await, PortState::Closed);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn budget_serves_large_request_among_small_ones() {
        let budget = Budget::new(14.0);
        let small = {
            let budget = budget.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    budget.take(4.0).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), budget.take(16.0))
            .await
            .expect("the large request is served while small ones keep coming");
        assert!(start.elapsed() < Duration::from_secs(3), "waited {:?}", start.elapsed());
        small.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn budget_paces_takes() {
        let budget = Budget::new(10.0);
        let start = Instant::now();
        for _ in 0..11 {
            budget.take(1.0).await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(990), "11 packets at 10/s took {elapsed:?}");
    }
}
