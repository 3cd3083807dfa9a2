//! The engine: the one task that sees every event.
//!
//! It owns the model and the throttle and drives both MQTT links (their I/O runs in
//! `mqtt` pump tasks). Events come from the GX link ([`gx`]), Home Assistant's link
//! ([`ha`]), discovery, timers and the shutdown signal; nothing else mutates state, so no
//! locks are needed.

mod gx;
mod ha;
mod lan;
mod orphans;
mod refusals;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::clock::Timings;
use crate::config::Settings;
use crate::gx::session::Session;
use crate::gx::tls::PinningVerifier;
use crate::ha::notify::{Notifier, WorkerOptions};
use crate::ha::victron_gx;
use crate::health::HealthReporter;
use crate::model::normalise::{Changes, Normaliser};
use crate::model::registry::{EntityId, Registry};
use crate::mqtt::{Link, LinkConfig};
use crate::problems::Problems;
use crate::supervisor::{MqttService, Supervisor};
use crate::throttle::{Policy, Throttle};

pub use self::gx::GxTarget;
pub use self::ha::ha_link_config;

/// Largest GX payload we parse. Venus values are tiny; the `Batteries` list of a big
/// system is a few KiB. Larger messages are counted and dropped.
pub const MAX_GX_PAYLOAD: usize = 1024 * 1024;

/// How many queued GX messages are handled before the engine looks at other events.
const BATCH: usize = 256;

/// Counters for logs and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub gx_messages: u64,
    pub gx_oversized: u64,
    pub ha_published: u64,
    pub gx_reconnects: u64,
}

/// Results of background work, delivered back to the engine.
#[derive(Debug)]
enum Internal {
    /// The Supervisor's answer after our login to Home Assistant's broker was rejected.
    HaService(MqttService),
}

/// What the engine needs besides the settings.
pub struct Parts {
    pub timings: Timings,
    /// Home Assistant's broker.
    pub ha: LinkConfig,
    pub supervisor: Option<Supervisor>,
    pub health: HealthReporter,
}

pub struct Engine {
    settings: Settings,
    timings: Timings,
    model: Normaliser,
    throttle: Throttle,
    session: Session,
    gx: Option<Link>,
    gx_target: Option<GxTarget>,
    gx_online: bool,
    gx_verifier: Option<Arc<PinningVerifier>>,
    /// Running LAN discovery, when no GX host is configured.
    lan: Option<lan::Lan>,
    /// Portal id of the GX this process last connected to.
    last_portal: Option<String>,
    /// When `forget_after_days` was last applied.
    last_forget: Option<Instant>,
    /// A configured GX host may still be tried over TLS on 8883 when 1883 is closed.
    gx_tls_fallback: bool,
    /// Portal id reported by the current broker when it is not the expected one.
    wrong_portal: Option<String>,
    /// Refused connections to the GX since the last accepted one.
    gx_refusals: refusals::RefusalRun,
    ha: Link,
    ha_config: LinkConfig,
    ha_connected: bool,
    ha_broker_label: String,
    supervisor: Option<Supervisor>,
    notifier: Notifier,
    /// Task that ignores Home Assistant's own discovery of our GX, present only under a
    /// Supervisor.
    victron_gx: Option<victron_gx::Handle>,
    health: HealthReporter,
    health_published: Option<Instant>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    /// Latest payload of every retained topic we own, for republishing.
    retained: BTreeMap<String, Vec<u8>>,
    /// Topics waiting for room in the request queue (or for a connection).
    dirty: BTreeSet<String>,
    discovery_due: Option<Instant>,
    birth_republish_at: Option<Instant>,
    orphans: orphans::Orphans,
    status: status::BridgeState,
    problems: Problems,
    stats: Stats,
    started: Instant,
    last_save: Instant,
    last_liveness: Instant,
    /// When the periodic tick is due next. Kept as an instant, not recomputed as
    /// `now + tick` on every loop turn, so a steady stream of GX messages cannot keep
    /// postponing the tick (health record, status, stats).
    next_tick: Instant,
    /// Interval of the counters line for benchmarks (`ROAMCORE_STATS_EVERY`, seconds).
    stats_every: Option<Duration>,
    last_stats: Instant,
}

impl Engine {
    /// Builds the engine and starts the link to Home Assistant's broker. Must run inside
    /// a tokio runtime.
    pub fn new(settings: Settings, parts: Parts) -> Engine {
        let Parts { timings, ha: ha_config, supervisor, health } = parts;
        let registry = Registry::open(Some(&settings.data_dir));
        let mut model = Normaliser::new(registry);
        model.set_time_scale(timings.throttle_scale);
        let ha = crate::mqtt::spawn(ha_config.clone(), 4096, 256);
        let notifier = Notifier::spawn_with(
            supervisor.clone(),
            WorkerOptions {
                retry: timings.reconnect,
                problem_summary: timings.problem_summary,
                dismiss_earlier: true,
            },
        );
        let schedule = victron_gx::Schedule::scaled(settings.time_scale);
        let victron_gx = supervisor.clone().map(|s| victron_gx::spawn_with(s, schedule));
        let (internal_tx, internal_rx) = mpsc::channel(8);
        let problems = Problems::new(timings.problem_summary);
        let mut engine = Engine {
            status: status::BridgeState::new(&settings),
            settings,
            session: Session::new(timings.clone()),
            timings,
            model,
            throttle: Throttle::new(),
            gx: None,
            gx_target: None,
            gx_online: false,
            gx_verifier: None,
            lan: None,
            last_portal: None,
            wrong_portal: None,
            gx_refusals: refusals::RefusalRun::default(),
            gx_tls_fallback: false,
            last_forget: None,
            ha_broker_label: ha_config.address(),
            ha,
            ha_config,
            ha_connected: false,
            supervisor,
            notifier,
            victron_gx,
            health,
            health_published: None,
            internal_tx,
            internal_rx,
            retained: BTreeMap::new(),
            dirty: BTreeSet::new(),
            discovery_due: None,
            birth_republish_at: None,
            orphans: orphans::Orphans::default(),
            problems,
            stats: Stats::default(),
            started: Instant::now(),
            last_save: Instant::now(),
            last_liveness: Instant::now(),
            next_tick: Instant::now(),
            stats_every: std::env::var("ROAMCORE_STATS_EVERY")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v > 0.0)
                .map(Duration::from_secs_f64),
            last_stats: Instant::now(),
        };
        // Capabilities and the model seen before a restart are shown at once, also while
        // the GX is away.
        engine.status.set_capabilities(engine.model.capabilities());
        engine.status.set_model(engine.model.registry.stored.gx_model.clone(), None);
        engine.sync_policies();
        engine.publish_initial();
        engine
    }

    /// Runs until `shutdown` completes, then publishes `offline` and disconnects.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Stats {
        tokio::pin!(shutdown);
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut current_deadline: Option<Instant> = None;

        loop {
            let deadline = self.next_deadline();
            if current_deadline != Some(deadline) {
                sleep.as_mut().reset(tokio::time::Instant::from_std(deadline));
                current_deadline = Some(deadline);
            }

            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                event = self.ha.events.recv() => match event {
                    Some(event) => self.on_ha_event(event),
                    None => break,
                },
                Some(internal) = self.internal_rx.recv() => self.on_internal(internal),
                event = lan::recv(&mut self.lan) => self.on_discovery_event(event),
                event = gx::recv(&mut self.gx) => {
                    self.on_gx_event(event);
                    for _ in 0..BATCH {
                        match self.gx.as_mut().and_then(|link| link.events.try_recv().ok()) {
                            Some(event) => self.on_gx_event(event),
                            None => break,
                        }
                    }
                }
                _ = &mut sleep => {
                    current_deadline = None;
                    self.tick(Instant::now());
                }
            }
            self.flush();
        }

        self.shutdown().await;
        self.stats
    }

    /// The earliest time something is due.
    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut deadline = self.next_tick;
        for candidate in [
            self.throttle.next_deadline(),
            self.session.next_deadline(),
            self.discovery_due,
            self.birth_republish_at,
        ]
        .into_iter()
        .flatten()
        {
            deadline = deadline.min(candidate);
        }
        deadline.max(now)
    }

    fn tick(&mut self, now: Instant) {
        self.next_tick = now + self.timings.tick;
        let actions = self.session.tick(now);
        self.perform(actions, now);
        self.lan_tick(now);
        let changes = self.model.tick(Engine::unix_now());
        self.apply(changes, now);

        for (index, state) in self.throttle.due(now) {
            self.publish_state(EntityId(index), &state);
        }

        if self.discovery_due.is_some_and(|at| at <= now) {
            self.discovery_due = None;
            self.publish_discovery();
        }
        self.orphans_tick(now);
        if self.birth_republish_at.is_some_and(|at| at <= now) {
            self.birth_republish_at = None;
            tracing::info!("Home Assistant came online; republishing discovery and states");
            self.republish_all();
        }

        // New or changed entities are saved within 5 s, counter readings once a minute (a
        // restart after a power cut continues from a value at most that old).
        let periodic = Duration::from_secs_f64(60.0 * self.timings.throttle_scale);
        if now.duration_since(self.last_save) >= periodic || self.model.registry.is_dirty() && now.duration_since(self.last_save) >= Duration::from_secs(5) {
            self.model.registry.save();
            self.last_save = now;
        }
        if now.duration_since(self.last_liveness) >= Duration::from_secs(60) {
            self.last_liveness = now;
            self.publish_liveness();
        }
        if let Some(every) = self.stats_every {
            if now.duration_since(self.last_stats) >= every {
                self.last_stats = now;
                tracing::info!(
                    gx_messages = self.stats.gx_messages,
                    gx_oversized = self.stats.gx_oversized,
                    ha_published = self.stats.ha_published,
                    gx_reconnects = self.stats.gx_reconnects,
                    "stats"
                );
            }
        }
        self.status.tick(now);
        self.health.record(now, self.health_published, self.ha_connected);
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::HaService(service) => {
                let config = ha::apply_service(self.ha_config.clone(), &service);
                if config.username != self.ha_config.username || config.password != self.ha_config.password || config.host != self.ha_config.host || config.port != self.ha_config.port {
                    tracing::info!(broker = %config.address(), "the Supervisor reports new broker details; reconnecting with them");
                    self.ha_broker_label = config.address();
                    self.ha_config = config.clone();
                    self.ha.retarget(config);
                }
            }
        }
    }

    /// Applies what the model reported.
    fn apply(&mut self, changes: Changes, now: Instant) {
        for problem in changes.problems {
            crate::warn_limited!(self.problems, problem.key, now, "{}", problem.message);
        }
        if changes.discovery {
            self.sync_policies();
            self.discovery_due.get_or_insert(now + Duration::from_millis(500).min(self.timings.tick));
        }
        if changes.capabilities {
            self.status.set_capabilities(self.model.capabilities());
            self.publish_status();
        }
        for id in changes.entities {
            self.offer(id, now);
        }
    }

    /// Makes sure every entity has its throttle policy.
    fn sync_policies(&mut self) {
        let scale = self.timings.throttle_scale;
        let throttle = self.settings.throttle;
        for (id, entity) in self.model.registry.iter() {
            let policy = if throttle { Policy::for_class(entity.def.throttle, scale) } else { Policy::immediate() };
            self.throttle.set_policy(id.0, policy);
        }
    }

    /// Publishes an entity's availability at once and offers its state to the throttle.
    fn offer(&mut self, id: EntityId, now: Instant) {
        let entity = self.model.registry.get(id);
        if !entity.in_discovery() {
            return;
        }
        let available = entity.available();
        let state = entity.state().cloned();
        let key = entity.key.clone();
        if !entity.def.is_diagnostic() {
            self.publish_retained(
                crate::ha::discovery::availability_topic(&key),
                if available { b"online".to_vec() } else { b"offline".to_vec() },
            );
        }
        if let Some(state) = state {
            if let Some(out) = self.throttle.offer(id.0, state, now) {
                self.publish_state(id, &out);
            }
        }
    }

    /// Offers every entity again; used after the GX link comes back.
    fn offer_all(&mut self, now: Instant) {
        let ids: Vec<EntityId> = self.model.registry.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.offer(id, now);
        }
    }

    fn unix_now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    async fn shutdown(&mut self) {
        tracing::info!(
            gx_messages = self.stats.gx_messages,
            ha_published = self.stats.ha_published,
            uptime_s = self.started.elapsed().as_secs(),
            "shutting down: publishing offline"
        );
        self.model.registry.save();
        ha::shutdown(self).await;
        if let Some(gx) = &self.gx {
            let _ = gx.client.try_disconnect();
            gx.stop();
        }
    }
}
