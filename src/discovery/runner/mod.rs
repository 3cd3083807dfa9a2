//! The I/O loop around the discovery state machine: runs the scanners the scan mode
//! allows, validates candidates one at a time, stores the adoption and pins, and sends
//! the machine's events to the engine.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod scanners;

use super::candidate::{Candidate, Method, Outcome};
use super::machine::{Action, Machine, MachineConfig};
use super::netif::{self, HostAddr};
use super::policy::{ScanMode, SweepSchedule};
use super::ssdp::{self, Announcement, DescriptionCache};
use super::sweep::Budget;
use super::validate::{self, ValidateConfig};
use super::{adoption, mdns, probe, DiscoveryConfig, DiscoveryEvent, LinkReport};
use crate::gx::tls::PinStore;

/// Packets per second the scanners may charge. Below the 20 packets/s limit, because
/// mDNS queries and IGMP reports are not charged, and the kernel's ARP retries only
/// approximately: with 14 the sweep test measured peaks of up to 20.
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
/// Minimum interval (at time scale 1) between two rounds of web, HTTPS and Modbus probes of
/// the adopted GX's last address, which may belong to another device by now and is tried
/// every 30 s while the GX is away.
const ADOPTED_PROBE_INTERVAL: Duration = Duration::from_secs(300);

/// A step of the runner, printed by `roamcore-victron discover`.
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
                if std::mem::take(&mut runner.adopted_probe_armed) && outcome == Outcome::PortsClosed {
                    runner.adopted_probed_at = Some(Instant::now());
                }
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
    /// Configured subnets already reported as not swept (each is warned about once).
    skipped_subnets: std::collections::HashSet<String>,
    pins: PinStore,
    budget: Budget,
    validate_config: ValidateConfig,
    mode: Option<ScanMode>,
    /// True while the mode is Active; tasks that waited for the packet budget check it
    /// before sending, so nothing leaves once the GX is connected.
    active: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
    /// The running validation probes the adopted GX's address if its ports are closed.
    adopted_probe_armed: bool,
    /// When the adopted GX's address was last probed.
    adopted_probed_at: Option<Instant>,
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
            // NOTE: an estimate. SSDP answers arrive within MX (2 s) plus a description
            // fetch; a second GX that only the sweep finds comes too late, and the first
            // one found is adopted alone.
            settle: Duration::from_secs(5),
            recheck: Duration::from_secs(30).div_f64(config.time_scale.max(1.0)),
            retry: config.timings.reconnect,
            time_scale: config.time_scale,
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
            skipped_subnets: Default::default(),
            budget: Budget::new(BUDGET_PER_SECOND),
            validate_config,
            mode: None,
            active: Default::default(),
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
            adopted_probe_armed: false,
            adopted_probed_at: None,
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
                Action::Pin { portal_id, fingerprint } => {
                    match self.pins.pin(&portal_id, &fingerprint) {
                        Ok(true) => {
                            tracing::info!(%portal_id, fingerprint = %crate::gx::tls::format_fingerprint(&fingerprint),
                        "pinned the GX's TLS certificate")
                        }
                        Ok(false) => {}
                        Err(err) => tracing::warn!(error = %err, "cannot store the TLS pin"),
                    }
                }
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
        self.active.store(mode == ScanMode::Active, std::sync::atomic::Ordering::SeqCst);
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
        // The adopted GX's own address is probed with scanning on or off: closed MQTT
        // ports there mean MQTT access is off only if the host still looks like a GX.
        let interval = ADOPTED_PROBE_INTERVAL.div_f64(self.config.time_scale.max(1.0));
        let probe_due = self.adopted_probed_at.is_none_or(|at| at.elapsed() >= interval);
        let adopted_address =
            candidate.method == Method::Cached && candidate.evidence.is_none() && probe_due;
        self.adopted_probe_armed = adopted_address;
        let outcomes = self.outcomes_tx.clone();
        self.validating = Some(tokio::spawn(async move {
            budget.take(VALIDATION_PACKETS).await;
            let mut candidate = candidate;
            let outcome = validate::validate(&candidate, &config, pin, expected.as_deref()).await;
            let unexplained =
                matches!(outcome, Outcome::LoginRejected { .. } | Outcome::PortsClosed);
            let probe_unknown = probes_allowed && candidate.portal_hint.is_none();
            let probe_adopted = adopted_address && outcome == Outcome::PortsClosed;
            if unexplained && (probe_unknown || probe_adopted) {
                let evidence =
                    probe::probe_gx(candidate.host, &budget, Duration::from_secs(3)).await;
                if evidence.is_gx() {
                    candidate.evidence = Some(evidence.signs.join("; "));
                    // Modbus may name another GX at the adopted address.
                    if evidence.portal_id.is_some() {
                        candidate.portal_hint = evidence.portal_id;
                    }
                }
            }
            let _ = outcomes.send((candidate, outcome));
        }));
    }
}

/// Turns the configured host into a candidate. A host name is resolved once, at start.
async fn configured_candidate(config: &DiscoveryConfig) -> Option<Candidate> {
    let host = config.host.as_ref()?;
    let ip = match host.host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match tokio::net::lookup_host((host.host.as_str(), 0)).await {
            Ok(mut addrs) => addrs.next()?.ip(),
            Err(err) => {
                tracing::warn!(host = %host.host, error = %err, "cannot resolve the configured GX host; set gx_host to its IP address");
                return None;
            }
        },
    };
    let mut candidate = Candidate::new(ip, Method::Configured);
    candidate.port = host.port;
    candidate.evidence = Some("configured GX address".into());
    Some(candidate)
}
