//! The I/O loop around the discovery state machine: runs the scanners the scan mode
//! allows, validates candidates one at a time, stores the adoption and pins, and sends
//! the machine's events to the engine.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::candidate::{Candidate, Method, Outcome};
use super::machine::{Action, Machine, MachineConfig};
use super::netif::{self, HostAddr};
use super::policy::{self, ScanMode, SubnetVerdict, SweepSchedule};
use super::ssdp::{self, Announcement, DescriptionCache};
use super::sweep::{self, Budget};
use super::validate::{self, ValidateConfig};
use super::{adoption, mdns, probe, DiscoveryConfig, DiscoveryEvent, LinkReport};
use crate::gx::tls::PinStore;

/// Packets per second the scanners may charge. Below the 20 packets/s limit, because
/// mDNS queries, IGMP reports and the kernel's ARP retries are not charged exactly.
const BUDGET_PER_SECOND: f64 = 12.0;
/// Packets of one validation: TCP probe (SYN, ACK, RST), then the MQTT connection
/// (handshake, CONNECT, SUBSCRIBE, acknowledgements, DISCONNECT, close): 16 counted on
/// the test LAN against Mosquitto 2.0.11.
const VALIDATION_PACKETS: f64 = 16.0;
/// Packets of one UPnP description fetch (one HTTP exchange).
const DESCRIPTION_PACKETS: f64 = 7.0;
/// How often the host's interfaces are read to notice a changed address.
const INTERFACE_POLL: Duration = Duration::from_secs(5);
/// How long SSDP and mDNS get before the first sweep of a search.
const SWEEP_GRACE: Duration = Duration::from_secs(8);
/// First and largest interval between M-SEARCHes while searching.
const MSEARCH_INTERVAL: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(60));
/// Connect timeout of sweep probes: long enough for an ARP round trip on Wi-Fi.
const SWEEP_TIMEOUT: Duration = Duration::from_millis(1500);

/// What the runner did, for `roamcore-victron discover`.
#[derive(Debug, Clone)]
pub enum Trace {
    Candidate(Candidate),
    Outcome(Candidate, Outcome),
    SweepStarted { subnet: String, hosts: usize },
    SweepSkipped { subnet: String, reason: String },
    SweepFinished { answered: usize, elapsed: Duration },
    ScanMode(ScanMode),
}

/// Runs discovery until `events` closes.
pub async fn run(
    config: DiscoveryConfig,
    events: mpsc::Sender<DiscoveryEvent>,
    reports: mpsc::UnboundedReceiver<LinkReport>,
) {
    run_traced(config, events, reports, None).await;
}

pub async fn run_traced(
    config: DiscoveryConfig,
    events: mpsc::Sender<DiscoveryEvent>,
    mut reports: mpsc::UnboundedReceiver<LinkReport>,
    trace: Option<mpsc::UnboundedSender<Trace>>,
) {
    let mut runner = Runner::new(config, events, trace).await;
    let mut tick = tokio::time::interval(runner.config.timings.tick.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            report = reports.recv() => match report {
                Some(report) => {
                    let actions = runner.machine.on_link(report, Instant::now());
                    if !runner.apply(actions).await { return; }
                }
                None => return,
            },
            Some(candidate) = runner.candidates_rx.recv() => {
                if !runner.on_candidate(candidate).await { return; }
            }
            Some((announcement, source)) = runner.announcements_rx.recv() => {
                runner.on_announcement(announcement, source);
            }
            Some((candidate, outcome)) = runner.outcomes_rx.recv() => {
                runner.validating = None;
                runner.emit_trace(Trace::Outcome(candidate.clone(), outcome.clone()));
                let actions = runner.machine.on_outcome(&candidate, outcome, Instant::now());
                if !runner.apply(actions).await { return; }
            }
            _ = tick.tick() => {
                if !runner.on_tick().await { return; }
            }
        }
    }
}

struct Runner {
    config: DiscoveryConfig,
    machine: Machine,
    events: mpsc::Sender<DiscoveryEvent>,
    trace: Option<mpsc::UnboundedSender<Trace>>,
    pins: PinStore,
    budget: Budget,
    validate_config: ValidateConfig,
    mode: Option<ScanMode>,
    addrs: Vec<HostAddr>,
    addrs_polled: Instant,
    candidates_tx: mpsc::UnboundedSender<Candidate>,
    candidates_rx: mpsc::UnboundedReceiver<Candidate>,
    announcements_tx: mpsc::UnboundedSender<(Announcement, IpAddr)>,
    announcements_rx: mpsc::UnboundedReceiver<(Announcement, IpAddr)>,
    outcomes_tx: mpsc::UnboundedSender<(Candidate, Outcome)>,
    outcomes_rx: mpsc::UnboundedReceiver<(Candidate, Outcome)>,
    ssdp: Option<std::sync::Arc<ssdp::Sockets>>,
    ssdp_tasks: Vec<JoinHandle<()>>,
    descriptions: DescriptionCache,
    next_msearch: Option<(Instant, Duration)>,
    mdns: Option<mdns::Resolver>,
    schedule: SweepSchedule,
    sweep_task: Option<JoinHandle<()>>,
    sweep_done_rx: Option<tokio::sync::oneshot::Receiver<()>>,
    validating: Option<JoinHandle<()>>,
}

impl Runner {
    async fn new(
        config: DiscoveryConfig,
        events: mpsc::Sender<DiscoveryEvent>,
        trace: Option<mpsc::UnboundedSender<Trace>>,
    ) -> Runner {
        let now = Instant::now();
        let adopted = adoption::load(&config.data_dir);
        let configured = configured_candidate(&config).await;
        let machine_config = MachineConfig {
            scan: config.scan,
            wanted: config.portal_id.clone(),
            password_given: config.password.is_some(),
            auth_retry: config.timings.auth_retry,
            settle: Duration::from_secs(5),
            recheck: Duration::from_secs(30),
            retry: config.timings.reconnect,
        };
        let (machine, actions) = Machine::new(machine_config, adopted, configured, now);
        let validate_config = ValidateConfig {
            username: config.username.clone(),
            password: config.password.clone(),
            tls_only: config.tls,
            connect_timeout: config.timings.connect_timeout.min(Duration::from_secs(5)),
            serial_wait: config.timings.gx_serial_wait.min(Duration::from_secs(5)),
        };
        let (candidates_tx, candidates_rx) = mpsc::unbounded_channel();
        let (announcements_tx, announcements_rx) = mpsc::unbounded_channel();
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let mut runner = Runner {
            pins: PinStore::open(&config.data_dir),
            config,
            machine,
            events,
            trace,
            budget: Budget::new(BUDGET_PER_SECOND),
            validate_config,
            mode: None,
            addrs: netif::snapshot().unwrap_or_default(),
            addrs_polled: now,
            candidates_tx,
            candidates_rx,
            announcements_tx,
            announcements_rx,
            outcomes_tx,
            outcomes_rx,
            ssdp: None,
            ssdp_tasks: Vec::new(),
            descriptions: DescriptionCache::default(),
            next_msearch: None,
            mdns: None,
            schedule: SweepSchedule::new(),
            sweep_task: None,
            sweep_done_rx: None,
            validating: None,
        };
        runner.apply(actions).await;
        runner
    }

    fn emit_trace(&self, trace: Trace) {
        if let Some(tx) = &self.trace {
            let _ = tx.send(trace);
        }
    }

    /// Carries out the machine's actions; false when the engine has gone.
    async fn apply(&mut self, actions: Vec<Action>) -> bool {
        for action in actions {
            match action {
                Action::Emit(event) => {
                    if self.events.send(event).await.is_err() {
                        return false;
                    }
                }
                Action::Persist(adoption) => {
                    if let Err(err) = adoption::save(&self.config.data_dir, &adoption) {
                        tracing::warn!(error = %err, dir = %self.config.data_dir.display(),
                            "cannot store the adopted GX; a restart will search again");
                    }
                }
                Action::Pin { portal_id, fingerprint } => match self.pins.pin(&portal_id, &fingerprint) {
                    Ok(true) => tracing::info!(%portal_id, fingerprint = %crate::gx::tls::format_fingerprint(&fingerprint),
                        "pinned the GX's TLS certificate"),
                    Ok(false) => {}
                    Err(err) => tracing::warn!(error = %err, "cannot store the TLS pin"),
                },
            }
        }
        self.sync_mode().await;
        true
    }

    /// Starts and stops scanners to match the machine's scan mode.
    async fn sync_mode(&mut self) {
        let mode = self.machine.scan_mode();
        if self.mode == Some(mode) {
            return;
        }
        let previous = self.mode.replace(mode);
        self.emit_trace(Trace::ScanMode(mode));
        tracing::debug!(?previous, ?mode, "scan mode");
        match mode {
            ScanMode::Off => {
                self.stop_active();
                self.close_ssdp();
            }
            ScanMode::Passive => {
                self.stop_active();
                if self.ssdp.is_none() {
                    self.open_ssdp();
                }
            }
            ScanMode::Active => {
                if self.ssdp.is_none() {
                    self.open_ssdp();
                }
                self.start_mdns();
                self.schedule.search_started(Instant::now());
                self.next_msearch = Some((Instant::now(), MSEARCH_INTERVAL.0));
            }
        }
    }

    fn stop_active(&mut self) {
        if let Some(resolver) = self.mdns.take() {
            resolver.stop();
        }
        if let Some(task) = self.sweep_task.take() {
            task.abort();
        }
        self.sweep_done_rx = None;
        self.schedule.search_ended();
        self.next_msearch = None;
    }

    fn start_mdns(&mut self) {
        if self.mdns.is_some() {
            return;
        }
        match mdns::Resolver::start(self.candidates_tx.clone()) {
            Ok(resolver) => self.mdns = Some(resolver),
            Err(err) => tracing::warn!(error = %err, "mDNS is unavailable; searching without it"),
        }
    }

    fn open_ssdp(&mut self) {
        let lan = netif::lan_addrs(&self.addrs);
        if lan.is_empty() {
            return;
        }
        let sockets = std::sync::Arc::new(ssdp::Sockets::open(&lan));
        let mut tasks = Vec::new();
        for index in 0..sockets.search.len() {
            tasks.push(spawn_receiver(sockets.clone(), Some(index), self.announcements_tx.clone()));
        }
        if sockets.notify.is_some() {
            tasks.push(spawn_receiver(sockets.clone(), None, self.announcements_tx.clone()));
        }
        self.ssdp = Some(sockets);
        self.ssdp_tasks = tasks;
    }

    fn close_ssdp(&mut self) {
        for task in self.ssdp_tasks.drain(..) {
            task.abort();
        }
        self.ssdp = None;
    }

    fn on_announcement(&mut self, announcement: Announcement, source: IpAddr) {
        if !announcement.is_interesting() {
            return;
        }
        let host = ssdp::location_host(&announcement.location, source);
        if self.mode == Some(ScanMode::Passive) {
            // No HTTP while connected: the UDN in the USN carries the portal id.
            if let Some(portal) = portal_from_usn(&announcement.usn) {
                let mut candidate = Candidate::new(host, Method::Ssdp);
                candidate.portal_hint = Some(portal);
                candidate.evidence = Some("SSDP announcement with a Victron UDN".into());
                let _ = self.candidates_tx.send(candidate);
            }
            return;
        }
        if !self.descriptions.should_fetch(&announcement, Instant::now()) {
            return;
        }
        let budget = self.budget.clone();
        let found = self.candidates_tx.clone();
        tokio::spawn(async move {
            budget.take(DESCRIPTION_PACKETS).await;
            match ssdp::fetch_description(&announcement.location, Duration::from_secs(3)).await {
                Ok(description) => {
                    if let Some(candidate) = description.to_candidate(host) {
                        let _ = found.send(candidate);
                    }
                }
                Err(err) => tracing::debug!(error = %format!("{err:#}"), "SSDP description"),
            }
        });
    }

    /// Filters a scanner's candidate and hands it to the machine.
    async fn on_candidate(&mut self, candidate: Candidate) -> bool {
        let host = candidate.host;
        let own = self.addrs.iter().any(|a| IpAddr::V4(a.addr) == host);
        let attached = match host {
            IpAddr::V4(v4) => netif::is_attached(&self.addrs, v4),
            IpAddr::V6(_) => false,
        };
        let trusted_source = matches!(candidate.method, Method::Configured | Method::Cached);
        if self.config.ignore.contains(&host) || own || (!attached && !trusted_source) {
            tracing::debug!(%host, method = candidate.method.as_str(), "candidate skipped (own, ignored or not attached)");
            return true;
        }
        if let Some(serial) = &candidate.serial {
            if let Some(resolver) = self.mdns.as_mut() {
                resolver.resolve(&mdns::name_for_serial(serial));
            }
        }
        self.emit_trace(Trace::Candidate(candidate.clone()));
        let actions = self.machine.on_candidate(candidate, Instant::now());
        self.apply(actions).await
    }

    async fn on_tick(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.addrs_polled) >= INTERFACE_POLL {
            self.addrs_polled = now;
            self.poll_interfaces();
        }

        let actions = self.machine.on_tick(now);
        if !self.apply(actions).await {
            return false;
        }

        if self.validating.is_none() {
            let (candidate, actions) = self.machine.next_validation(now);
            if !self.apply(actions).await {
                return false;
            }
            if let Some(candidate) = candidate {
                self.start_validation(candidate);
            }
        }

        if self.mode == Some(ScanMode::Active) {
            self.search_step(now).await;
        }
        true
    }

    fn poll_interfaces(&mut self) {
        let Ok(addrs) = netif::snapshot() else { return };
        if addrs == self.addrs {
            return;
        }
        tracing::info!(before = ?self.addrs, after = ?addrs,
            "the host's network addresses changed; rebuilding the SSDP and mDNS sockets");
        self.addrs = addrs;
        self.descriptions = DescriptionCache::default();
        if matches!(self.mode, Some(ScanMode::Active | ScanMode::Passive)) {
            self.close_ssdp();
            self.open_ssdp();
        }
        if let Some(resolver) = self.mdns.take() {
            resolver.stop();
            self.start_mdns();
        }
        if self.mode == Some(ScanMode::Active) {
            self.next_msearch = Some((Instant::now(), MSEARCH_INTERVAL.0));
        }
    }

    fn start_validation(&mut self, candidate: Candidate) {
        let config = self.validate_config.clone();
        let expected = candidate
            .portal_hint
            .clone()
            .or_else(|| self.config.portal_id.clone())
            .or_else(|| self.machine.adopted().map(|a| a.portal_id.clone()));
        let pin = expected.as_deref().and_then(|p| self.pins.get(p));
        let budget = self.budget.clone();
        let probes_allowed = self.mode == Some(ScanMode::Active);
        let outcomes = self.outcomes_tx.clone();
        self.validating = Some(tokio::spawn(async move {
            budget.take(VALIDATION_PACKETS).await;
            let mut candidate = candidate;
            let outcome = validate::validate(&candidate, &config, pin, expected.as_deref()).await;
            let unexplained = matches!(outcome, Outcome::LoginRejected { .. } | Outcome::PortsClosed);
            if unexplained && probes_allowed && candidate.portal_hint.is_none() {
                let evidence = probe::probe_gx(candidate.host, &budget, Duration::from_secs(3)).await;
                if evidence.is_gx() {
                    candidate.evidence = Some(evidence.signs.join("; "));
                    candidate.portal_hint = evidence.portal_id;
                }
            }
            let _ = outcomes.send((candidate, outcome));
        }));
    }

    async fn search_step(&mut self, now: Instant) {
        if let Some((at, interval)) = self.next_msearch {
            if now >= at {
                if let Some(sockets) = &self.ssdp {
                    let interfaces = sockets.search.len() as f64;
                    self.budget.take(interfaces).await;
                    sockets.search().await;
                }
                let next = (interval * 2).min(MSEARCH_INTERVAL.1);
                self.next_msearch = Some((now + interval, next));
            }
        }

        if let Some(done) = self.sweep_done_rx.as_mut() {
            if done.try_recv().is_ok() {
                self.sweep_done_rx = None;
                self.sweep_task = None;
                self.schedule.finished(now);
            }
        }
        if self.config.scan && self.schedule.may_start(now, SWEEP_GRACE) {
            self.start_sweep(now);
        }
    }

    /// The subnets to sweep with the verdict for each.
    fn sweep_plan(&self) -> Vec<(crate::config::Ipv4Net, Result<(), String>)> {
        let lan = netif::lan_addrs(&self.addrs);
        let mut plan = Vec::new();
        if self.config.subnets.is_empty() {
            for addr in &self.addrs {
                let net = addr.net();
                let verdict = match policy::judge_subnet(&net, &addr.interface, self.config.large_subnets) {
                    SubnetVerdict::Sweep => Ok(()),
                    other => Err(format!("{other:?} on {}", addr.interface)),
                };
                plan.push((net, verdict));
            }
        } else {
            for net in &self.config.subnets {
                let attached = lan.iter().find(|a| a.net().contains(net.network()) && a.prefix <= net.prefix);
                let verdict = match attached {
                    None => Err("not directly attached".to_string()),
                    Some(addr) => match policy::judge_subnet(net, &addr.interface, self.config.large_subnets) {
                        SubnetVerdict::Sweep => Ok(()),
                        other => Err(format!("{other:?}")),
                    },
                };
                plan.push((*net, verdict));
            }
        }
        plan
    }

    fn start_sweep(&mut self, now: Instant) {
        let own: Vec<Ipv4Addr> = self.addrs.iter().map(|a| a.addr).collect();
        let ignore = self.config.ignore.clone();
        let mut targets = Vec::new();
        let mut nets = Vec::new();
        for (net, verdict) in self.sweep_plan() {
            match verdict {
                Ok(()) => {
                    let hosts = policy::sweep_targets(&net, &own);
                    self.emit_trace(Trace::SweepStarted { subnet: net.to_string(), hosts: hosts.len() });
                    nets.push(net);
                    targets.extend(hosts);
                }
                Err(reason) => {
                    tracing::debug!(subnet = %net, %reason, "subnet not swept");
                    self.emit_trace(Trace::SweepSkipped { subnet: net.to_string(), reason });
                }
            }
        }
        targets.retain(|ip| !ignore.contains(&IpAddr::V4(*ip)));
        self.schedule.started(now);
        let budget = self.budget.clone();
        let found = self.candidates_tx.clone();
        let trace = self.trace.clone();
        let lan: Vec<String> = netif::lan_addrs(&self.addrs).into_iter().map(|a| a.interface).collect();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        self.sweep_done_rx = Some(done_rx);
        self.sweep_task = Some(tokio::spawn(async move {
            let started = Instant::now();
            // The neighbour table first: known hosts cost no ARP, Victron's MACs first.
            let neighbours: Vec<_> = super::arp::read()
                .into_iter()
                .filter(|n| lan.contains(&n.interface) && nets.iter().any(|net| net.contains(n.ip)))
                .collect();
            let mut answered = 0;
            for neighbour in &neighbours {
                if neighbour.is_victron() {
                    let mut candidate = Candidate::new(IpAddr::V4(neighbour.ip), Method::ArpVictron);
                    candidate.evidence = Some("MAC address in Victron's block C0:61:9A:B".into());
                    let _ = found.send(candidate);
                }
            }
            let known: Vec<Ipv4Addr> = neighbours.iter().filter(|n| !n.is_victron()).map(|n| n.ip).collect();
            answered += sweep::sweep(known.clone(), Method::Arp, budget.clone(), SWEEP_TIMEOUT, found.clone()).await;
            let rest: Vec<Ipv4Addr> = targets
                .into_iter()
                .filter(|ip| !neighbours.iter().any(|n| n.ip == *ip))
                .collect();
            answered += sweep::sweep(rest, Method::Sweep, budget, SWEEP_TIMEOUT, found).await;
            let elapsed = started.elapsed();
            tracing::debug!(answered, ?elapsed, "sweep finished");
            if let Some(trace) = trace {
                let _ = trace.send(Trace::SweepFinished { answered, elapsed });
            }
            let _ = done_tx.send(());
        }));
    }
}

/// The portal id in a simple-upnpd USN (`uuid:com.victronenergy.ccgx.C0:61:9A:B0:D0:E1::...`).
pub fn portal_from_usn(usn: &str) -> Option<String> {
    let rest = usn.split("com.victronenergy.ccgx.").nth(1)?;
    let udn = rest.split("::").next()?;
    let portal: String = udn.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    crate::config::validate_portal_id(&portal).ok().map(|_| portal)
}

fn spawn_receiver(
    sockets: std::sync::Arc<ssdp::Sockets>,
    index: Option<usize>,
    tx: mpsc::UnboundedSender<(Announcement, IpAddr)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let socket = match index {
            Some(i) => &sockets.search[i].1,
            None => sockets.notify.as_ref().expect("checked by the caller"),
        };
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if let Some(announcement) = ssdp::parse_message(&buf[..n]) {
                if tx.send((announcement, from.ip())).is_err() {
                    return;
                }
            }
        }
    })
}

/// The configured host as a candidate (names are resolved once, at start).
async fn configured_candidate(config: &DiscoveryConfig) -> Option<Candidate> {
    let host = config.host.as_ref()?;
    let ip = match host.host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match tokio::net::lookup_host((host.host.as_str(), 0)).await {
            Ok(mut addrs) => addrs.next()?.ip(),
            Err(err) => {
                tracing::warn!(host = %host.host, error = %err, "cannot resolve the configured GX host");
                return None;
            }
        },
    };
    let mut candidate = Candidate::new(ip, Method::Configured);
    candidate.port = host.port;
    candidate.evidence = Some("configured GX address".into());
    Some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_id_from_usn() {
        let usn = "uuid:com.victronenergy.ccgx.C0:61:9A:B0:D0:E1::urn:schemas-upnp-org:device:Basic:1";
        assert_eq!(portal_from_usn(usn).as_deref(), Some("c0619ab0d0e1"));
        assert_eq!(portal_from_usn("uuid:1234::upnp:rootdevice"), None);
    }
}
