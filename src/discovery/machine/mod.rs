//! The discovery state machine: a pure type without I/O. The runner feeds it candidates
//! from the scanners, validation outcomes and reports from the GX link, always with the
//! current time, and carries out the actions it returns.
//!
//! ```text
//!   searching ──► validating ──► (Use sent) connecting ──► connected
//!       ▲             │                                       │
//!       │             ├──► mqtt_disabled / auth_required /    ▼
//!       │             │    tls_untrusted / multiple_gx     lost (link gave up)
//!       └─────────────┴──────────── with backoff ◄────────────┘
//! ```
//!
//! The four states that need the user hold until the cause is gone. The host is checked
//! again on a timer, a rejected login at most once per `auth_retry`. An SSDP announcement
//! of the same GX triggers a check at once, because simple-upnpd restarts when MQTT
//! access is switched.

mod link;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::adoption::Adoption;
use super::candidate::{Candidate, Method, Outcome};
use super::messages;
use super::policy::ScanMode;
use super::{DiscoveryEvent, GxEndpoint, GxSeen};
use crate::gx::tls::Fingerprint;
use crate::status::BridgeStatus;

/// Fixed inputs of the machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub scan: bool,
    /// Portal id named by the user: adopt this one, replacing any other.
    pub wanted: Option<String>,
    pub password_given: bool,
    /// Minimum interval between two logins to a host that rejected the last one.
    pub auth_retry: Duration,
    /// How long to wait after the first GX was validated for others to show up, before
    /// adopting it.
    pub settle: Duration,
    /// Interval between checks of a GX that has MQTT access off.
    pub recheck: Duration,
    /// First and largest delay between tries of the adopted GX's last known address
    /// while searching.
    pub retry: (Duration, Duration),
    /// Divisor of the machine's fixed waits between checks of a host (`--time-scale`,
    /// 1.0 in production).
    pub time_scale: f64,
}

/// An instruction for the runner.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Emit(DiscoveryEvent),
    /// Store the adoption (new GX, or a new address of the adopted one).
    Persist(Adoption),
    /// Pin this certificate for the portal id (trust on first use).
    Pin {
        portal_id: String,
        fingerprint: Fingerprint,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Searching,
    Validating(IpAddr),
    /// `Use` was sent; waiting for the link to report.
    Connecting(GxEndpoint),
    Connected(GxEndpoint),
    MqttDisabled(IpAddr),
    AuthRequired(IpAddr),
    TlsUntrusted(IpAddr),
    MultipleGx,
}

/// A validated GX that waits for the adoption decision.
#[derive(Debug, Clone)]
struct Pending {
    seen: GxSeen,
    endpoint: GxEndpoint,
    fingerprint: Option<Fingerprint>,
}

#[derive(Debug)]
pub struct Machine {
    config: MachineConfig,
    adopted: Option<Adoption>,
    phase: Phase,
    /// The phase to return to after a validation (a hold state, or searching).
    resume: Phase,
    /// Merged hints per host, from every scanner.
    known: HashMap<IpAddr, Candidate>,
    queue: Vec<Candidate>,
    /// A host is not validated again before this time.
    retry_at: HashMap<IpAddr, Instant>,
    /// When each host last rejected our login.
    rejected_at: HashMap<IpAddr, Instant>,
    /// GX devices validated before any was adopted.
    unadopted: BTreeMap<String, Pending>,
    first_gx_at: Option<Instant>,
    /// Other GX devices seen (validated, or announced by SSDP while connected).
    others: BTreeMap<String, GxSeen>,
    last_status: Option<(BridgeStatus, String)>,
    /// Next try of the last known address while searching, and how many tries so far.
    cached_retry: Option<(Instant, u32)>,
    /// The next check of the last known address shows `validating`: only the first one
    /// after start. After a lost link the status stays at searching for that address.
    announce_cached: bool,
    /// Next check of the host a hold state is about.
    hold_retry_at: Option<Instant>,
}

impl Machine {
    /// Starts searching: the configured host and the cached address of the adopted GX
    /// are queued first.
    pub fn new(
        config: MachineConfig,
        adopted: Option<Adoption>,
        configured: Option<Candidate>,
        now: Instant,
    ) -> (Machine, Vec<Action>) {
        let mut machine = Machine {
            config,
            adopted,
            phase: Phase::Searching,
            resume: Phase::Searching,
            known: HashMap::new(),
            queue: Vec::new(),
            retry_at: HashMap::new(),
            rejected_at: HashMap::new(),
            unadopted: BTreeMap::new(),
            first_gx_at: None,
            others: BTreeMap::new(),
            last_status: None,
            cached_retry: None,
            announce_cached: true,
            hold_retry_at: None,
        };
        // A replacement named by the user makes the old adoption irrelevant for searching.
        if let (Some(wanted), Some(adopted)) = (&machine.config.wanted, &machine.adopted) {
            if *wanted != adopted.portal_id {
                tracing::info!(
                    old = %adopted.portal_id, new = %wanted,
                    "the option portal_id names another GX; it replaces the adopted one once found"
                );
            }
        }

        let mut actions = Vec::new();
        if let Some(candidate) = configured {
            machine.push(candidate, now);
        }
        // The GX may start after the bridge (a van powering up), so its last address is
        // tried again with backoff until the GX is validated there, with scanning on or off.
        machine.start_cached_retry(now);
        machine.emit_status(&mut actions);
        (machine, actions)
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn adopted(&self) -> Option<&Adoption> {
        self.adopted.as_ref()
    }

    /// Returns the scan mode that the current phase allows.
    pub fn scan_mode(&self) -> ScanMode {
        if !self.config.scan {
            return ScanMode::Off;
        }
        match self.phase {
            Phase::Searching | Phase::Validating(_) if self.resume == Phase::Searching => {
                ScanMode::Active
            }
            _ => ScanMode::Passive,
        }
    }

    /// The portal id a GX must have to be used: the one the user named, else the
    /// adopted one. `None` before the first adoption.
    fn target_portal(&self) -> Option<&str> {
        self.config.wanted.as_deref().or(self.adopted.as_ref().map(|a| a.portal_id.as_str()))
    }

    /// Returns the candidate for the adopted GX's last known address, unless the user
    /// named another GX.
    fn cached_candidate(&self) -> Option<Candidate> {
        let adopted = self.adopted.as_ref()?;
        if self.config.wanted.as_deref().is_some_and(|w| w != adopted.portal_id) {
            return None;
        }
        let mut candidate = Candidate::new(adopted.host, Method::Cached);
        candidate.portal_hint = Some(adopted.portal_id.clone());
        candidate.model.clone_from(&adopted.model);
        candidate.firmware.clone_from(&adopted.firmware);
        // No evidence: the address may belong to another device by now, so closed ports
        // there are no sign of the GX's settings.
        Some(candidate)
    }

    /// Queues the adopted GX's last known address; returns false when there is none.
    fn queue_cached(&mut self, now: Instant) -> bool {
        let Some(candidate) = self.cached_candidate() else { return false };
        self.retry_at.remove(&candidate.host);
        self.push(candidate, now);
        true
    }

    /// Tries the adopted GX's last known address now and then again with backoff while
    /// searching (see `on_tick`).
    fn start_cached_retry(&mut self, now: Instant) {
        if self.queue_cached(now) {
            self.cached_retry = Some((now + self.retry_delay(0), 0));
        }
    }

    /// Returns true when `host` is the adopted GX's last known address and the adopted
    /// GX is the one looked for.
    fn is_cached_host(&self, host: IpAddr) -> bool {
        self.cached_candidate().is_some_and(|c| c.host == host)
    }

    /// Returns true while the last known address is being tried again after a first
    /// failed try of this search.
    fn cached_retrying(&self) -> bool {
        self.cached_retry.is_some_and(|(_, tries)| tries > 0)
    }

    /// Returns one of the machine's fixed waits, `seconds` in production, divided by the
    /// time scale.
    fn wait(&self, seconds: u64) -> Duration {
        Duration::from_secs(seconds).div_f64(self.config.time_scale.max(1.0))
    }

    /// Records a candidate from a scanner and queues it when it is worth a check now.
    pub fn on_candidate(&mut self, candidate: Candidate, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let host = candidate.host;
        let merged = {
            let entry = self.known.entry(host).or_insert_with(|| candidate.clone());
            entry.merge(&candidate);
            entry.clone()
        };

        // While connected or waiting for the user, only the adopted GX's own
        // announcements (and the held host) are acted on; other GX devices are reported.
        let hint_is_target =
            merged.portal_hint.as_deref().is_some_and(|p| Some(p) == self.target_portal());
        match &self.phase {
            Phase::Connected(endpoint) | Phase::Connecting(endpoint) => {
                if let Some(portal) = &candidate.portal_hint {
                    if *portal != endpoint.portal_id {
                        self.note_other(&merged, portal, false, &mut actions);
                    }
                }
                return actions;
            }
            Phase::MqttDisabled(held_host)
            | Phase::AuthRequired(held_host)
            | Phase::TlsUntrusted(held_host) => {
                let held = *held_host;
                let switched_on = host == held && candidate.mqtt_on_lan == Some(true);
                if switched_on && matches!(self.phase, Phase::MqttDisabled(_)) {
                    self.retry_at.remove(&host);
                    self.hold_retry_at = Some(now);
                }
                if host != held && hint_is_target {
                    self.retry_at.remove(&host);
                    self.push(merged, now);
                }
                return actions;
            }
            Phase::MultipleGx => {
                if hint_is_target {
                    self.push(merged, now);
                }
                return actions;
            }
            Phase::Searching | Phase::Validating(_) => {}
        }

        // A new announcement of a host whose port state may have changed is checked
        // again sooner, but never sooner than the login rule allows.
        if candidate.method == Method::Ssdp && candidate.mqtt_on_lan == Some(true) {
            if let Some(at) = self.retry_at.get(&host) {
                if *at > now + self.config.recheck {
                    self.retry_at.insert(host, now + self.config.recheck);
                }
            }
        }
        self.push(merged, now);
        actions
    }

    fn push(&mut self, candidate: Candidate, now: Instant) {
        if self.retry_at.get(&candidate.host).is_some_and(|at| *at > now) {
            return;
        }
        if matches!(self.phase, Phase::Validating(h) if h == candidate.host) {
            return;
        }
        match self.queue.iter_mut().find(|c| c.host == candidate.host) {
            Some(queued) => queued.merge(&candidate),
            None => self.queue.push(candidate),
        }
        // Stable sort: the configured host, hosts announcing the portal id looked for,
        // then by method (the cached address first).
        let target = self.target_portal().map(str::to_string);
        self.queue.sort_by_key(|c| c.validation_order(target.as_deref()));
    }

    /// Hands out the next candidate to validate, if any may be validated now. Only one
    /// validation runs at a time.
    pub fn next_validation(&mut self, now: Instant) -> (Option<Candidate>, Vec<Action>) {
        let mut actions = Vec::new();
        if matches!(self.phase, Phase::Validating(_) | Phase::Connecting(_) | Phase::Connected(_)) {
            return (None, actions);
        }
        let position = self.queue.iter().position(|c| self.may_validate(c, now));
        let Some(position) = position else { return (None, actions) };
        let candidate = self.queue.remove(position);

        self.resume = self.phase.clone();
        self.phase = Phase::Validating(candidate.host);
        // A retry of the last known address keeps the status at searching, so a GX that
        // stays away changes the status once, not twice per try.
        let quiet = candidate.method == Method::Cached && !self.announce_cached;
        if candidate.method == Method::Cached {
            self.announce_cached = false;
        }
        if self.resume == Phase::Searching && !quiet {
            self.emit_status(&mut actions);
        }
        (Some(candidate), actions)
    }

    fn may_validate(&self, candidate: &Candidate, now: Instant) -> bool {
        if self.retry_at.get(&candidate.host).is_some_and(|at| *at > now) {
            return false;
        }
        // FlashMQ delays rejections by 1-6 s and rate-limits unknown passwords, so a
        // host that rejected our login is never asked again within `auth_retry`.
        self.rejected_at.get(&candidate.host).is_none_or(|at| now >= *at + self.config.auth_retry)
    }

    /// Takes the result of a validation started by `next_validation`.
    pub fn on_outcome(
        &mut self,
        candidate: &Candidate,
        outcome: Outcome,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let host = candidate.host;
        if let Some(known) = self.known.get_mut(&host) {
            known.merge(candidate);
        } else if candidate.evidence.is_some() {
            // Probe results for the configured or cached address, kept for later checks.
            self.known.insert(host, candidate.clone());
        }
        let info = self.known.get(&host).cloned().unwrap_or_else(|| candidate.clone());
        let resume = std::mem::replace(&mut self.resume, Phase::Searching);
        self.phase = resume;
        let cached = self.is_cached_host(host);
        // Outcomes of the last known address are logged once per search, not at each retry.
        let first_try = !(cached && self.cached_retrying());

        let has_evidence = info.evidence.is_some() || info.portal_hint.is_some();
        let closed_means_off = info.evidence.is_some() || info.mqtt_on_lan == Some(false);
        let hint_is_other = match (info.portal_hint.as_deref(), self.target_portal()) {
            (Some(hint), Some(target)) => hint != target,
            _ => false,
        };
        match outcome {
            Outcome::Gx { portal_id, port, tls, fingerprint } => {
                // A GX answering over MQTT ends any hold about access to it.
                if matches!(
                    self.phase,
                    Phase::MqttDisabled(_) | Phase::AuthRequired(_) | Phase::TlsUntrusted(_)
                ) {
                    self.phase = Phase::Searching;
                    self.hold_retry_at = None;
                }
                self.on_gx(&info, portal_id, port, tls, fingerprint, now, &mut actions);
            }
            Outcome::NotGx { port } if cached => {
                // A GX that is still starting runs its broker before dbus-flashmq has
                // published the Serial; the cached retry tries the address again.
                if first_try {
                    tracing::info!(%host, port, "the broker at the adopted GX's address has not published its portal id yet (the GX may still be starting); trying again");
                }
            }
            Outcome::NotGx { port } => {
                tracing::info!(%host, port, "a broker that is not a GX (no retained N/+/system/0/Serial); ignoring it");
                let wait = if has_evidence { 120 } else { 1800 };
                self.retry_at.insert(host, now + self.wait(wait));
            }
            Outcome::LoginRejected { port, tls } => {
                self.rejected_at.insert(host, now);
                self.retry_at.insert(host, now + self.config.auth_retry);
                if has_evidence && !hint_is_other && self.may_hold() {
                    if self.phase != Phase::AuthRequired(host) {
                        tracing::warn!(%host, port, tls, "the GX rejected the MQTT login");
                    }
                    self.phase = Phase::AuthRequired(host);
                    self.hold_retry_at = Some(now + self.config.auth_retry);
                } else {
                    tracing::info!(%host, port, "a broker rejected the login and shows no sign of being a GX; ignoring it");
                    self.retry_at.insert(host, now + self.wait(1800));
                }
            }
            Outcome::PortsClosed => {
                if closed_means_off && !hint_is_other && self.may_hold() {
                    if self.phase != Phase::MqttDisabled(host) {
                        tracing::warn!(%host, evidence = info.evidence.as_deref().unwrap_or("portal id"),
                            "a GX with MQTT ports 1883 and 8883 closed: MQTT access is off");
                    }
                    self.phase = Phase::MqttDisabled(host);
                    self.hold_retry_at = Some(now + self.config.recheck);
                    self.retry_at.insert(host, now + self.config.recheck);
                } else {
                    self.retry_at.insert(host, now + self.wait(600));
                }
            }
            Outcome::NoConnack { port } => {
                if first_try {
                    tracing::info!(%host, port, "TCP connection accepted but no CONNACK; trying again later");
                }
                self.retry_at.insert(host, now + self.wait(60));
            }
            Outcome::Unreachable => {
                self.retry_at.insert(host, now + self.wait(60));
            }
            Outcome::TlsUntrusted { port, portal_id, .. } => {
                if self.phase != Phase::TlsUntrusted(host) {
                    tracing::warn!(%host, port, %portal_id, "the GX's TLS certificate differs from the pinned one");
                }
                self.retry_at.insert(host, now + self.wait(300));
                if self.may_hold() {
                    self.phase = Phase::TlsUntrusted(host);
                    self.hold_retry_at = Some(now + self.wait(300));
                }
            }
        }
        self.emit_status(&mut actions);
        actions
    }

    /// Returns whether a hold state may replace the current phase: searching or another
    /// hold, never a working link.
    fn may_hold(&self) -> bool {
        !matches!(self.phase, Phase::Connected(_) | Phase::Connecting(_))
    }

    #[allow(clippy::too_many_arguments)]
    fn on_gx(
        &mut self,
        info: &Candidate,
        portal_id: String,
        port: u16,
        tls: bool,
        fingerprint: Option<Fingerprint>,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let seen = GxSeen {
            portal_id: portal_id.clone(),
            host: info.host,
            model: info.model.clone(),
            firmware: info.firmware.clone(),
            confirmed: true,
        };
        let endpoint = GxEndpoint {
            host: info.host,
            port,
            tls,
            portal_id: portal_id.clone(),
            model: info.model.clone(),
            firmware: info.firmware.clone(),
        };
        self.retry_at.remove(&info.host);
        self.rejected_at.remove(&info.host);

        match self.target_portal() {
            Some(target) if target == portal_id => {
                self.use_endpoint(endpoint, fingerprint, actions);
            }
            Some(_) => {
                // Not ours: reported once, never used, not checked again for a while.
                self.retry_at.insert(info.host, now + self.wait(1800));
                self.note_other(info, &portal_id, true, actions);
            }
            None => {
                tracing::info!(host = %info.host, %portal_id, "validated a GX");
                self.first_gx_at.get_or_insert(now);
                self.retry_at.insert(info.host, now + self.wait(1800));
                self.unadopted.insert(portal_id, Pending { seen, endpoint, fingerprint });
                if self.phase == Phase::MultipleGx {
                    self.settle(actions);
                }
            }
        }
    }

    fn use_endpoint(
        &mut self,
        endpoint: GxEndpoint,
        fingerprint: Option<Fingerprint>,
        actions: &mut Vec<Action>,
    ) {
        let replaced = self.adopted.as_ref().is_some_and(|a| a.portal_id != endpoint.portal_id);
        let new = self.adopted.is_none() || replaced;
        if new {
            tracing::info!(host = %endpoint.host, portal_id = %endpoint.portal_id, replaced,
                "{}", messages::adopted(endpoint.host, endpoint.model.as_deref(), &endpoint.portal_id));
        }
        let adoption = Adoption::from_endpoint(&endpoint);
        if self.adopted.as_ref() != Some(&adoption) {
            actions.push(Action::Persist(adoption.clone()));
        }
        if let (Some(fingerprint), true) = (fingerprint, endpoint.tls) {
            actions.push(Action::Pin { portal_id: endpoint.portal_id.clone(), fingerprint });
        }
        self.adopted = Some(adoption);
        self.unadopted.clear();
        self.others.remove(&endpoint.portal_id);
        self.cached_retry = None;
        self.hold_retry_at = None;
        self.queue.clear();
        self.phase = Phase::Connecting(endpoint.clone());
        self.last_status = None;
        actions.push(Action::Emit(DiscoveryEvent::Use(endpoint)));
    }

    fn note_other(
        &mut self,
        info: &Candidate,
        portal_id: &str,
        confirmed: bool,
        actions: &mut Vec<Action>,
    ) {
        let seen = GxSeen {
            portal_id: portal_id.to_string(),
            host: info.host,
            model: info.model.clone(),
            firmware: info.firmware.clone(),
            confirmed,
        };
        let previous = self.others.get(portal_id);
        if previous.is_none() {
            tracing::info!(host = %info.host, portal_id, confirmed,
                "another GX is on the network; it is not the adopted one and will not be used");
        }
        let changed = previous.is_none_or(|p| p.host != seen.host || (confirmed && !p.confirmed));
        if changed {
            let confirmed = confirmed || previous.is_some_and(|p| p.confirmed);
            self.others.insert(portal_id.to_string(), GxSeen { confirmed, ..seen });
            actions.push(Action::Emit(DiscoveryEvent::OthersSeen(
                self.others.values().cloned().collect(),
            )));
        }
    }

    /// Adopts the one GX validated so far, or reports `multiple_gx`.
    fn settle(&mut self, actions: &mut Vec<Action>) {
        if self.unadopted.len() == 1 {
            let (_, pending) = self.unadopted.pop_first().expect("one entry");
            self.use_endpoint(pending.endpoint, pending.fingerprint, actions);
            return;
        }
        tracing::warn!(
            count = self.unadopted.len(),
            "several GX devices and none adopted; waiting for the option portal_id"
        );
        self.phase = Phase::MultipleGx;
        self.emit_status(actions);
    }
}
