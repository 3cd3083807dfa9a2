//! The fault-injection rig: a GX broker with a simulated GX, Home Assistant's broker, the
//! bridge as a child process and an observer on Home Assistant's side. It also has the
//! checks every fault test needs: entities against the simulator's truth, time bounds and
//! the figures for docs/RELIABILITY.md.
//!
//! Time: the bridge runs with `--time-scale S` and the simulator with the same factor, so
//! every protocol timer is S times shorter. `RCV_FAULT_SCALE` overrides S for all fault
//! tests; `scripts/fault-figures` sets it to 1 to measure with production timers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use roamcore_victron::gx::payload;
use roamcore_victron::ha::state::payloads;
use roamcore_victron::model::normalise::Normaliser;
use roamcore_victron::model::registry::Registry;
use roamcore_victron::sim::capture::Capture;
use roamcore_victron::sim::{Mode, Rate, SimConfig, SimHandle, Simulator};
use serde_json::Value;

use super::daemon::Daemon;
use super::mosquitto::Mosquitto;
use super::observer::Observer;
use super::proxy::Proxy;

pub const BASE: &str = "roamcore/victron";
pub const GX_TOPIC: &str = "roamcore/victron/gx";
pub const BRIDGE_TOPIC: &str = "roamcore/victron/bridge";
pub const STATUS_TOPIC: &str = "roamcore/victron/bridge_status/state";
pub const CONFIG_TOPIC: &str = "homeassistant/device/roamcore_victron/config";

/// Allowance for work that `--time-scale` does not shorten (connecting, a full publish of
/// 2,600 messages through two brokers, the observer's own delivery) on a loaded 2-core
/// machine. It applies only when time is scaled: at scale 1 the bound is checked as is.
const UNSCALED_SLACK: Duration = Duration::from_millis(1500);

/// Returns the time scale of this test: `RCV_FAULT_SCALE` when set, else `default`.
pub fn scale_or(default: f64) -> f64 {
    std::env::var("RCV_FAULT_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v >= 1.0)
        .unwrap_or(default)
}

/// Returns the wall-clock limit for a bound stated in production time at time scale `scale`.
pub fn limit_at(bound: Duration, scale: f64) -> Duration {
    let slack = if scale > 1.0 { UNSCALED_SLACK } else { Duration::ZERO };
    bound.div_f64(scale) + slack
}

/// How a rig is set up.
#[derive(Debug, Clone)]
pub struct RigOptions {
    pub capture: &'static str,
    pub mode: Mode,
    /// Default time scale; `RCV_FAULT_SCALE` wins unless `scale_fixed` is set.
    pub scale: f64,
    /// Ignore `RCV_FAULT_SCALE`, for tests that would take hours in production time.
    pub scale_fixed: bool,
    /// Replay the capture's value changes (a realistic rate). Off: values change only
    /// when the test sets them, so published states can be compared with the truth.
    pub live_values: bool,
    /// A fixed message rate of the simulated GX instead of the capture's own.
    pub rate: Option<Rate>,
    /// Keep the bridge's throttle on. Off: `--no-throttle`.
    pub throttle: bool,
    /// Route the bridge's GX link through a freezable proxy.
    pub gx_proxy: bool,
    /// Route the bridge's link to Home Assistant's broker through a freezable proxy.
    pub ha_proxy: bool,
    /// Extra flags for `roamcore-victron run`.
    pub extra_args: Vec<String>,
    /// Extra environment for the bridge.
    pub env: Vec<(String, String)>,
}

impl Default for RigOptions {
    fn default() -> RigOptions {
        RigOptions {
            capture: "boat",
            mode: Mode::Flashmq,
            scale: 10.0,
            scale_fixed: false,
            live_values: false,
            rate: None,
            throttle: false,
            gx_proxy: false,
            ha_proxy: false,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

pub struct Rig {
    pub scale: f64,
    pub gx: Mosquitto,
    pub ha: Mosquitto,
    pub gx_proxy: Option<Proxy>,
    pub ha_proxy: Option<Proxy>,
    pub sim: SimHandle,
    pub observer: Observer,
    pub data: tempfile::TempDir,
    pub daemon: Option<Daemon>,
    options: RigOptions,
}

impl Rig {
    /// Starts the brokers, the simulated GX, the observer and the bridge.
    pub async fn start(options: RigOptions) -> Rig {
        let mut rig = Rig::start_without_bridge(options).await;
        rig.start_bridge();
        rig
    }

    /// Starts everything but the bridge.
    pub async fn start_without_bridge(options: RigOptions) -> Rig {
        let scale = if options.scale_fixed { options.scale } else { scale_or(options.scale) };
        let gx = Mosquitto::start();
        let ha = Mosquitto::start();
        let gx_proxy = if options.gx_proxy { Some(Proxy::start(gx.addr()).await) } else { None };
        let ha_proxy = if options.ha_proxy { Some(Proxy::start(ha.addr()).await) } else { None };
        let sim = Simulator::spawn(sim_config(&gx, &options, scale));
        assert!(sim.wait_connected(Duration::from_secs(10)).await, "the simulated GX connects");
        let observer = Observer::connect(ha.port, &[]).await;
        let data = tempfile::tempdir().expect("data dir");
        Rig { scale, gx, ha, gx_proxy, ha_proxy, sim, observer, data, daemon: None, options }
    }

    /// Returns the bridge's command line.
    pub fn bridge_args(&self) -> Vec<String> {
        let gx = match &self.gx_proxy {
            Some(proxy) => proxy.host_port(),
            None => self.gx.host_port(),
        };
        let ha = match &self.ha_proxy {
            Some(proxy) => proxy.host_port(),
            None => self.ha.host_port(),
        };
        let mut args: Vec<String> = vec![
            "run".into(),
            "--gx".into(),
            gx,
            "--ha-broker".into(),
            ha,
            "--data-dir".into(),
            self.data.path().display().to_string(),
            "--time-scale".into(),
            self.scale.to_string(),
        ];
        if !self.options.throttle {
            args.push("--no-throttle".into());
        }
        args.extend(self.options.extra_args.iter().cloned());
        args
    }

    /// Starts the bridge (again, after a stop).
    pub fn start_bridge(&mut self) {
        let args = self.bridge_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self.options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.daemon = Some(Daemon::start(&args, &env));
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the bridge runs")
    }

    pub fn daemon_mut(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("the bridge runs")
    }

    /// Stops the GX's broker; connections to it are refused, through the proxy too.
    pub fn stop_gx_broker(&mut self) {
        self.gx.stop();
        if let Some(proxy) = &mut self.gx_proxy {
            proxy.close();
        }
    }

    /// Starts the GX's broker again, empty, on the same port.
    pub async fn start_gx_broker(&mut self) {
        self.gx.restart();
        if let Some(proxy) = &mut self.gx_proxy {
            proxy.reopen().await;
        }
    }

    /// Stops Home Assistant's broker; connections to it are refused, through the proxy too.
    pub fn stop_ha_broker(&mut self) {
        self.ha.stop();
        if let Some(proxy) = &mut self.ha_proxy {
            proxy.close();
        }
    }

    /// Starts Home Assistant's broker again, empty, on the same port.
    pub async fn start_ha_broker(&mut self) {
        self.ha.restart();
        if let Some(proxy) = &mut self.ha_proxy {
            proxy.reopen().await;
        }
    }

    /// Returns the bridge's log so far, for assertion messages.
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log_text).unwrap_or_default()
    }

    /// Shortens a production duration by the time scale.
    pub fn scaled(&self, production: Duration) -> Duration {
        production.div_f64(self.scale)
    }

    /// Returns the wall-clock limit for a bound stated in production time.
    pub fn limit(&self, bound: Duration) -> Duration {
        limit_at(bound, self.scale)
    }

    /// Waits until `topic`'s latest payload equals `value`; returns when it was seen.
    pub async fn wait_payload(&self, topic: &str, value: &str, timeout: Duration) -> Option<Instant> {
        let ok = self.observer.wait_for(topic, value, timeout).await;
        ok.then(|| self.last_arrival(topic).unwrap_or_else(Instant::now))
    }

    /// Returns when the latest message on `topic` arrived.
    pub fn last_arrival(&self, topic: &str) -> Option<Instant> {
        let seen = self.observer.seen.lock().unwrap();
        seen.log.iter().rev().find(|(_, t, _)| t == topic).map(|(at, _, _)| *at)
    }

    /// Waits until the bridge and the GX link are online and every entity matches the
    /// simulator's truth. Returns the time of the check that passed, or the last mismatches.
    pub async fn wait_consistent(&self, timeout: Duration) -> Result<Instant, Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let mismatches = self.mismatches().await;
            if mismatches.is_empty() {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                return Err(mismatches);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Lists the differences between what Home Assistant's broker contains and what the bridge should
    /// publish for the simulator's current values: discovery, GX link, availability,
    /// states and attributes of every entity.
    pub async fn mismatches(&self) -> Vec<String> {
        self.compare(true).await
    }

    /// Like [`Rig::mismatches`] without states and attributes, for a GX whose values keep
    /// changing (the throttle delays states on purpose).
    pub async fn availability_mismatches(&self) -> Vec<String> {
        self.compare(false).await
    }

    /// Waits until [`Rig::availability_mismatches`] is empty; returns when it was.
    pub async fn wait_available(&self, timeout: Duration) -> Result<Instant, Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let mismatches = self.availability_mismatches().await;
            if mismatches.is_empty() {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                return Err(mismatches);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn compare(&self, with_states: bool) -> Vec<String> {
        let expected = self.expected().await;
        let discovered = self.discovery_ids();
        let seen = self.observer.seen.lock().unwrap();
        let mut out = Vec::new();
        for key in expected.keys().filter(|key| !discovered.contains_key(*key)) {
            out.push(format!("{key} is missing from the discovery message"));
        }
        for topic in [BRIDGE_TOPIC, GX_TOPIC] {
            if seen.latest.get(topic).map(String::as_str) != Some("online") {
                out.push(format!("{topic} is {:?}, expected online", seen.latest.get(topic)));
            }
        }
        for (key, entity) in &expected {
            let availability = format!("{BASE}/{key}/availability");
            let state = format!("{BASE}/{key}/state");
            let attributes = format!("{BASE}/{key}/attributes");
            if let Some(want) = &entity.availability {
                let got = seen.latest.get(&availability);
                if got != Some(want) {
                    out.push(format!("{availability}: {got:?}, expected {want}"));
                }
            }
            if !with_states {
                continue;
            }
            if let Some(want) = &entity.state {
                let got = seen.latest.get(&state);
                if got != Some(want) {
                    out.push(format!("{state}: {got:?}, expected {want}"));
                }
            }
            if let Some(want) = &entity.attributes {
                let got = seen.latest.get(&attributes).and_then(|text| serde_json::from_str::<Value>(text).ok());
                let want: Value = serde_json::from_str(want).unwrap();
                if got.as_ref() != Some(&want) {
                    out.push(format!("{attributes}: {got:?}, expected {want}"));
                }
            }
        }
        out
    }

    /// Computes what the bridge should publish for the simulator's current values, per
    /// entity key. The bridge's own model computes it from the truth, with the slots the
    /// bridge stored, so the comparison checks freshness, not the transforms (which the
    /// capture tests cover).
    pub async fn expected(&self) -> BTreeMap<String, Expected> {
        let truth = self.sim.values().await;
        expected_from(&truth, self.data.path())
    }

    /// Returns the discovery message's components: key to unique id.
    pub fn discovery_ids(&self) -> BTreeMap<String, String> {
        let Some(config) = self.observer.discovery() else { return BTreeMap::new() };
        let components = config["components"].as_object().cloned().unwrap_or_default();
        components
            .into_iter()
            .map(|(key, component)| (key, component["unique_id"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    /// Counts the messages on `topic` that arrived at or after `since`.
    pub fn count_since(&self, topic: &str, since: Instant) -> usize {
        let seen = self.observer.seen.lock().unwrap();
        seen.log.iter().filter(|(at, t, _)| *at >= since && t == topic).count()
    }

    /// Counts the messages under `prefix` that arrived at or after `since`.
    pub fn count_prefix_since(&self, prefix: &str, since: Instant) -> usize {
        let seen = self.observer.seen.lock().unwrap();
        seen.log.iter().filter(|(at, t, _)| *at >= since && t.starts_with(prefix)).count()
    }

    /// Returns the first arrival at or after `since` of `payload` on `topic`.
    pub fn first_since(&self, topic: &str, payload: &str, since: Instant) -> Option<Instant> {
        let seen = self.observer.seen.lock().unwrap();
        seen.log.iter().find(|(at, t, p)| *at >= since && t == topic && p == payload).map(|(at, _, _)| *at)
    }

    /// Returns the arrival of the first discovery message at or after `since`.
    pub fn first_config_since(&self, since: Instant) -> Option<Instant> {
        let seen = self.observer.seen.lock().unwrap();
        seen.log.iter().find(|(at, t, _)| *at >= since && t == CONFIG_TOPIC).map(|(at, _, _)| *at)
    }

    /// Waits for `payload` on `topic` arriving at or after `since`; returns its arrival.
    pub async fn wait_since(&self, topic: &str, payload: &str, since: Instant, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.first_since(topic, payload, since) {
                return Some(at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns the number of log lines the bridge has written so far, to look only at
    /// later ones.
    pub fn log_mark(&self) -> usize {
        self.daemon().lines().len()
    }

    /// Waits for a log line after `mark` that contains `needle`; returns when it was seen.
    pub async fn wait_log(&self, needle: &str, mark: usize, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.daemon().lines().iter().skip(mark).any(|line| line.contains(needle)) {
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Checks `measured` against a bound stated in production time and records the figure.
    pub fn check_bound(&self, figure: &str, measured: Duration, bound: Duration) {
        record_figure(figure, measured, bound, self.scale);
        let limit = self.limit(bound);
        assert!(
            measured <= limit,
            "{figure}: took {measured:?}, limit {limit:?} ({bound:?} at time scale {})\n{}",
            self.scale,
            self.log()
        );
    }
}

/// One entity as the bridge should publish it.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// `online`/`offline`; `None` for diagnostic entities, which have no own topic.
    pub availability: Option<String>,
    pub state: Option<String>,
    pub attributes: Option<String>,
}

/// Runs the truth through the bridge's model, as one complete full publish.
pub fn expected_from(truth: &BTreeMap<String, Value>, data_dir: &Path) -> BTreeMap<String, Expected> {
    // Read the bridge's stored slots from a copy, so this never writes its data dir.
    let copy = tempfile::tempdir().unwrap();
    let stored = data_dir.join("entities.json");
    if stored.exists() {
        std::fs::copy(&stored, copy.path().join("entities.json")).unwrap();
    }
    let mut model = Normaliser::new(Registry::open(Some(copy.path())));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    model.begin_snapshot();
    for (suffix, value) in truth {
        let mut parts = suffix.splitn(3, '/');
        let (Some(service), Some(instance), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let bytes = serde_json::to_vec(&serde_json::json!({ "value": value })).unwrap();
        model.ingest(service, instance, path, payload::parse(&bytes), now);
    }
    model.end_snapshot(now);

    let mut out = BTreeMap::new();
    for (_, entity) in model.registry.iter() {
        if !entity.in_discovery() || entity.def.is_diagnostic() {
            continue;
        }
        let available = entity.available();
        let published = entity.state().filter(|_| available).map(|state| payloads(entity, state));
        out.insert(
            entity.key.clone(),
            Expected {
                availability: Some(if available { "online" } else { "offline" }.to_string()),
                state: published.as_ref().and_then(|p| p.state.clone()),
                attributes: published.and_then(|p| p.attributes),
            },
        );
    }
    out
}

/// Builds the simulated GX's configuration for a rig.
fn sim_config(gx: &Mosquitto, options: &RigOptions, scale: f64) -> SimConfig {
    let mut capture = Capture::load(options.capture).expect("capture loads");
    if !options.live_values {
        capture.events.clear();
    }
    let mut config = SimConfig::new(gx.host_port(), capture);
    config.mode = options.mode;
    config.time_scale = scale;
    config.vary = options.live_values;
    if let Some(rate) = options.rate {
        config.rate = rate;
    }
    // A rebooted GX's broker and its MQTT plugin come up together; the simulator should
    // not add its own delay to the bridge's recovery time.
    config.reconnect_delay = Duration::from_millis(50);
    config
}

/// Appends a measured figure to `$RCV_FIGURES_FILE` (read by `scripts/fault-figures`) and
/// prints it for `--nocapture` runs.
pub fn record_figure(figure: &str, measured: Duration, bound: Duration, scale: f64) {
    let line = serde_json::json!({
        "figure": figure,
        "measured_ms": measured.as_millis() as u64,
        "bound_ms": bound.as_millis() as u64,
        "scale": scale,
    })
    .to_string();
    eprintln!("FIGURE {line}");
    if let Some(path) = std::env::var_os("RCV_FIGURES_FILE") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the figures file");
        writeln!(file, "{line}").expect("write the figures file");
    }
}

/// Records a figure that is a count or a size rather than a time.
pub fn record_value(figure: &str, measured: f64, bound: f64, unit: &str) {
    let line = serde_json::json!({ "figure": figure, "value": measured, "bound": bound, "unit": unit }).to_string();
    eprintln!("FIGURE {line}");
    if let Some(path) = std::env::var_os("RCV_FIGURES_FILE") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the figures file");
        writeln!(file, "{line}").expect("write the figures file");
    }
}
