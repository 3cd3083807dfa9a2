//! The scan policy: which subnets may be swept, when a sweep may start, and how many
//! packets per second the scanners may send. Pure functions and types, time passed in.
//!
//! A van often sits on a marina or campsite Wi-Fi full of other people's devices, so the
//! defaults are deliberately timid. Only private subnets of /24 or smaller are swept,
//! never container bridges. All scanners together send at most 20 packets per second,
//! and after the first hour of searching at most one sweep starts every 10 minutes.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::config::Ipv4Net;

/// Upper bound of scan traffic, in packets per second, over all scanners together.
pub const MAX_PACKETS_PER_SECOND: f64 = 20.0;

/// How long the first, eager phase of searching lasts.
pub const EAGER_PHASE: Duration = Duration::from_secs(3600);

/// Smallest interval between the starts of two sweeps after the eager phase.
pub const SLOW_SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Pause between two sweeps during the eager phase.
pub const EAGER_SWEEP_PAUSE: Duration = Duration::from_secs(60);

/// The scanner activity allowed at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMode {
    /// Scanning is switched off: only the configured or cached address is tried.
    Off,
    /// Connected to the GX: listen for SSDP NOTIFY only, send nothing.
    Passive,
    /// Searching: SSDP M-SEARCH, mDNS queries, the ARP table, sweeps and probes.
    Active,
}

/// True for names of interfaces that belong to containers or virtual bridges rather than
/// to the LAN: Docker's `docker0` and `br-*`, the Supervisor's `hassio`, and `veth*`.
pub fn is_container_interface(name: &str) -> bool {
    name == "docker0" || name == "hassio" || name.starts_with("br-") || name.starts_with("veth")
}

/// True for RFC 1918 private IPv4 networks (10/8, 172.16/12, 192.168/16).
pub fn is_rfc1918(net: &Ipv4Net) -> bool {
    let private = [
        Ipv4Net { addr: Ipv4Addr::new(10, 0, 0, 0), prefix: 8 },
        Ipv4Net { addr: Ipv4Addr::new(172, 16, 0, 0), prefix: 12 },
        Ipv4Net { addr: Ipv4Addr::new(192, 168, 0, 0), prefix: 16 },
    ];
    private.iter().any(|p| net.prefix >= p.prefix && p.contains(net.network()))
}

/// The verdict on sweeping a subnet, with the reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubnetVerdict {
    Sweep,
    NotPrivate,
    TooLarge,
    ContainerInterface,
}

/// Decides whether the attached subnet `net` on interface `interface` may be swept.
/// Subnets the user configured explicitly skip the private and size checks, but never
/// the size cap of /16, which would take over an hour at the packet limit.
pub fn judge_subnet(net: &Ipv4Net, interface: &str, large_subnets: bool) -> SubnetVerdict {
    if is_container_interface(interface) {
        return SubnetVerdict::ContainerInterface;
    }
    if !is_rfc1918(net) {
        return SubnetVerdict::NotPrivate;
    }
    if net.prefix < 24 && !(large_subnets && net.prefix >= 16) {
        return SubnetVerdict::TooLarge;
    }
    SubnetVerdict::Sweep
}

/// Lists the host addresses of `net` in sweep order, without the network and broadcast
/// addresses and without `skip` (the host's own addresses).
pub fn sweep_targets(net: &Ipv4Net, skip: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let base = u32::from(net.network());
    let size: u64 = 1u64 << (32 - u32::from(net.prefix));
    let (first, last) = if size <= 2 { (0, size) } else { (1, size - 1) };
    (first..last)
        .map(|offset| Ipv4Addr::from(base + offset as u32))
        .filter(|ip| !skip.contains(ip))
        .collect()
}

/// When sweeps may start, given how long the search has lasted.
#[derive(Debug, Clone)]
pub struct SweepSchedule {
    searching_since: Option<Instant>,
    last_start: Option<Instant>,
    last_end: Option<Instant>,
    running: bool,
}

impl SweepSchedule {
    pub fn new() -> SweepSchedule {
        SweepSchedule { searching_since: None, last_start: None, last_end: None, running: false }
    }

    /// Starts counting the search time, unless a search is already under way.
    pub fn search_started(&mut self, now: Instant) {
        self.searching_since.get_or_insert(now);
    }

    /// Ends the search (connected, or a state that waits for the user).
    pub fn search_ended(&mut self) {
        self.searching_since = None;
        self.running = false;
    }

    /// True when a sweep may start at `now`. `grace` is how long SSDP and mDNS get
    /// before the first sweep of a search.
    pub fn may_start(&self, now: Instant, grace: Duration) -> bool {
        let Some(since) = self.searching_since else { return false };
        if self.running || now < since + grace {
            return false;
        }
        let (Some(start), Some(end)) = (self.last_start, self.last_end) else { return true };
        if now.duration_since(since) < EAGER_PHASE {
            now >= end + EAGER_SWEEP_PAUSE
        } else {
            now >= start + SLOW_SWEEP_INTERVAL && now >= end + EAGER_SWEEP_PAUSE
        }
    }

    pub fn started(&mut self, now: Instant) {
        self.running = true;
        self.last_start = Some(now);
    }

    pub fn finished(&mut self, now: Instant) {
        self.running = false;
        self.last_end = Some(now);
    }

    pub fn is_running(&self) -> bool {
        self.running
    }
}

impl Default for SweepSchedule {
    fn default() -> Self {
        SweepSchedule::new()
    }
}

/// A sliding-window limit on scan packets: within any window of one second, the
/// packets granted never add up to more than `limit`. Each scanner requests the packets
/// an action will cause, each at the time it will be sent: a TCP connect is a SYN plus
/// the closing segments now, and an unknown address adds the kernel's ARP requests now,
/// one second later and two seconds later. The scanner waits until they are granted.
#[derive(Debug, Clone)]
pub struct PacketBudget {
    limit: f64,
    window: Duration,
    /// Granted packets by the time they are (or will be) sent, sorted by time.
    scheduled: Vec<(Instant, f64)>,
}

/// How long a rejected request waits before it asks again.
const RETRY: Duration = Duration::from_millis(20);

impl PacketBudget {
    /// At most `limit` packets per `window`.
    pub fn new(limit: f64, window: Duration) -> PacketBudget {
        PacketBudget { limit, window, scheduled: Vec::new() }
    }

    /// Grants `packets` sent now; see [`PacketBudget::try_take_parts`].
    pub fn try_take(&mut self, packets: f64, now: Instant) -> Result<(), Duration> {
        self.try_take_parts(&[(Duration::ZERO, packets)], now)
    }

    /// Grants packets sent at `now + offset` for each part, if every window of
    /// `window` that contains one of them stays within the limit. A request larger
    /// than the limit is granted when nothing else is scheduled within one window of it,
    /// so it has its windows to itself. Otherwise returns how long to wait.
    pub fn try_take_parts(&mut self, parts: &[(Duration, f64)], now: Instant) -> Result<(), Duration> {
        let window = self.window;
        self.scheduled.retain(|(at, _)| *at + window > now);
        let new: Vec<(Instant, f64)> = parts.iter().map(|(offset, n)| (now + *offset, *n)).collect();
        let first = new.iter().map(|(at, _)| *at).min().unwrap_or(now);
        let last = new.iter().map(|(at, _)| *at).max().unwrap_or(now);

        let oversize = new.iter().map(|(_, n)| n).sum::<f64>() > self.limit;
        let fits = if oversize {
            !self.scheduled.iter().any(|(at, _)| *at + window > first && *at < last + window)
        } else {
            self.windows_fit(&new)
        };
        if !fits {
            return Err(RETRY);
        }
        self.scheduled.extend(new);
        self.scheduled.sort_by_key(|(at, _)| *at);
        Ok(())
    }

    /// True when every window that contains a new part holds at most `limit` packets.
    /// The fullest window can always be moved to start at a packet, so only windows
    /// starting at a scheduled or new packet are checked.
    fn windows_fit(&self, new: &[(Instant, f64)]) -> bool {
        let all: Vec<(Instant, f64)> = self.scheduled.iter().chain(new.iter()).copied().collect();
        for (start, _) in &all {
            let end = *start + self.window;
            if !new.iter().any(|(at, _)| at >= start && *at < end) {
                continue;
            }
            let sum: f64 = all.iter().filter(|(at, _)| at >= start && *at < end).map(|(_, n)| n).sum();
            if sum > self.limit + 1e-9 {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_ipv4_net;

    #[test]
    fn subnet_rules() {
        let lan = parse_ipv4_net("192.168.1.0/24").unwrap();
        let small = parse_ipv4_net("10.0.5.128/25").unwrap();
        let big = parse_ipv4_net("10.0.0.0/16").unwrap();
        let huge = parse_ipv4_net("10.0.0.0/8").unwrap();
        let public = parse_ipv4_net("81.2.3.0/24").unwrap();
        let cgnat = parse_ipv4_net("100.64.1.0/24").unwrap();
        let edge = parse_ipv4_net("172.32.0.0/24").unwrap();

        assert_eq!(judge_subnet(&lan, "eth0", false), SubnetVerdict::Sweep);
        assert_eq!(judge_subnet(&small, "wlan0", false), SubnetVerdict::Sweep);
        assert_eq!(judge_subnet(&big, "eth0", false), SubnetVerdict::TooLarge);
        assert_eq!(judge_subnet(&big, "eth0", true), SubnetVerdict::Sweep);
        assert_eq!(judge_subnet(&huge, "eth0", true), SubnetVerdict::TooLarge);
        assert_eq!(judge_subnet(&public, "eth0", false), SubnetVerdict::NotPrivate);
        assert_eq!(judge_subnet(&cgnat, "eth0", false), SubnetVerdict::NotPrivate);
        assert_eq!(judge_subnet(&edge, "eth0", false), SubnetVerdict::NotPrivate);
        for bridge in ["docker0", "hassio", "veth1a2b", "br-12ab"] {
            assert_eq!(judge_subnet(&lan, bridge, false), SubnetVerdict::ContainerInterface);
        }
    }

    #[test]
    fn sweep_targets_skip_network_broadcast_and_self() {
        let lan = parse_ipv4_net("192.168.1.77/24").unwrap();
        let own = Ipv4Addr::new(192, 168, 1, 77);
        let targets = sweep_targets(&lan, &[own]);
        assert_eq!(targets.len(), 253);
        assert_eq!(targets[0], Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(*targets.last().unwrap(), Ipv4Addr::new(192, 168, 1, 254));
        assert!(!targets.contains(&own));
    }

    #[test]
    fn sweeps_slow_down_after_first_hour() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let mut schedule = SweepSchedule::new();
        assert!(!schedule.may_start(t0, grace), "no sweep before a search starts");

        schedule.search_started(t0);
        assert!(!schedule.may_start(t0 + Duration::from_secs(5), grace));
        assert!(schedule.may_start(t0 + grace, grace));

        schedule.started(t0 + grace);
        assert!(!schedule.may_start(t0 + Duration::from_secs(30), grace), "one at a time");
        schedule.finished(t0 + Duration::from_secs(100));
        assert!(!schedule.may_start(t0 + Duration::from_secs(150), grace));
        assert!(schedule.may_start(t0 + Duration::from_secs(160), grace));

        // After the first hour: at most one sweep start per 10 minutes.
        let late = t0 + EAGER_PHASE + Duration::from_secs(10);
        schedule.started(late);
        schedule.finished(late + Duration::from_secs(90));
        assert!(!schedule.may_start(late + Duration::from_secs(300), grace));
        assert!(!schedule.may_start(late + Duration::from_secs(599), grace));
        assert!(schedule.may_start(late + SLOW_SWEEP_INTERVAL, grace));

        schedule.search_ended();
        assert!(!schedule.may_start(late + Duration::from_secs(3600), grace));
    }

    #[test]
    fn budget_limits_every_window() {
        let t0 = Instant::now();
        let mut budget = PacketBudget::new(14.0, Duration::from_secs(1));
        let mut grants = Vec::new();
        let mut now = t0;
        // Ask for 3 packets every 10 ms for 10 s.
        for _ in 0..1000 {
            if budget.try_take(3.0, now).is_ok() {
                grants.push((now, 3.0));
            }
            now += Duration::from_millis(10);
        }
        for (i, (start, _)) in grants.iter().enumerate() {
            let sum: f64 = grants[i..]
                .iter()
                .take_while(|(at, _)| at.duration_since(*start) < Duration::from_secs(1))
                .map(|(_, p)| p)
                .sum();
            assert!(sum <= 14.0, "{sum} packets in the second after grant {i}");
        }
        let total: f64 = grants.iter().map(|(_, p)| p).sum();
        assert!(total >= 120.0, "only {total} packets granted in 10 s");
    }

    #[test]
    fn budget_waits_for_expiry() {
        let t0 = Instant::now();
        let mut budget = PacketBudget::new(10.0, Duration::from_secs(1));
        assert!(budget.try_take(6.0, t0).is_ok());
        assert!(budget.try_take(4.0, t0 + Duration::from_millis(300)).is_ok());
        assert!(budget.try_take(5.0, t0 + Duration::from_millis(500)).is_err());
        assert!(budget.try_take(5.0, t0 + Duration::from_millis(999)).is_err());
        assert!(budget.try_take(5.0, t0 + Duration::from_millis(1000)).is_ok());

        let later = t0 + Duration::from_secs(5);
        assert!(budget.try_take(16.0, later).is_ok(), "an empty window grants more than the limit");
        assert!(budget.try_take(1.0, later + Duration::from_millis(999)).is_err());
        assert!(budget.try_take(1.0, later + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn budget_counts_future_arp_retries() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let arp = [(Duration::ZERO, 2.0), (second, 1.0), (second * 2, 1.0)];
        let mut budget = PacketBudget::new(16.0, second);
        // Eight unknown addresses now: 16 packets now, 8 in one second, 8 in two.
        for _ in 0..8 {
            assert!(budget.try_take_parts(&arp, t0).is_ok());
        }
        assert!(budget.try_take_parts(&arp, t0).is_err(), "the window now is full");

        // A validation of 16 packets must wait until the retries two seconds out are sent.
        let validation = [(Duration::ZERO, 16.0)];
        assert!(budget.try_take_parts(&validation, t0 + Duration::from_millis(1500)).is_err());
        assert!(budget.try_take_parts(&validation, t0 + Duration::from_millis(2999)).is_err());
        assert!(budget.try_take_parts(&validation, t0 + Duration::from_secs(3)).is_ok());
    }
}
