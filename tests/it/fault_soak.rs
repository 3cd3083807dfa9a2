//! The soak: the fault tests' faults in a loop against one bridge process, with the
//! simulated GX publishing at a real GX's rate, for `RCV_SOAK_MINUTES` (30 by default).
//! Run by `scripts/soak`, never by `cargo test` (it is ignored).
//!
//! It fails when a cycle does not recover within its bound, when the bridge panics or
//! exits, or when its RSS at the end is more than 10 % above the RSS after the first
//! cycle (the warm-up). It reports the reconnects and the messages in and out.

use std::io::Write;
use std::time::{Duration, Instant};

use roamcore_victron::sim::Rate;
use rumqttc::QoS;

use crate::support::rig::{Rig, RigOptions, BRIDGE_TOPIC, CONFIG_TOPIC, GX_TOPIC};

/// Value messages per second of the `ess` capture, a recording of a real GX.
const REAL_GX_RATE: f64 = 20.6;
const MAX_RSS_GROWTH: f64 = 0.10;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Returns the counters of the bridge's last `stats` line (`ROAMCORE_STATS_EVERY`).
fn last_stats(log: &str) -> Vec<(String, u64)> {
    let Some(line) = log.lines().rev().find(|line| line.contains(": stats ")) else { return Vec::new() };
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .collect()
}

struct Soak {
    rig: Rig,
    report: Vec<String>,
    cycle: usize,
}

impl Soak {
    /// Waits until every entity's availability is right again; fails the soak otherwise.
    async fn recovered(&mut self, fault: &str, since: Instant, bound: Duration) {
        let limit = self.rig.limit(bound);
        match self.rig.wait_available(limit).await {
            Ok(at) => {
                let took = at - since;
                self.report.push(format!("cycle {} {fault}: recovered in {:.1} s", self.cycle, took.as_secs_f64()));
            }
            Err(mismatches) => panic!(
                "cycle {} {fault}: not recovered within {limit:?}: {mismatches:#?}\n{}",
                self.cycle,
                self.rig.log()
            ),
        }
    }

    async fn pause(&self, production: Duration) {
        tokio::time::sleep(self.rig.scaled(production)).await;
    }

    /// Fails the soak unless `payload` arrives on `topic` within `bound` of `since`.
    async fn noticed(&self, fault: &str, topic: &str, payload: &str, since: Instant, bound: Duration) {
        let seen = self.rig.wait_since(topic, payload, since, self.rig.limit(bound)).await;
        assert!(seen.is_some(), "cycle {} {fault}: {topic} never became {payload}\n{}", self.cycle, self.rig.log());
    }

    async fn gx_reboot(&mut self) {
        let at = Instant::now();
        self.rig.stop_gx_broker();
        self.noticed("gx_reboot", GX_TOPIC, "offline", at, Duration::from_secs(5)).await;
        self.pause(Duration::from_secs(90)).await;
        self.rig.start_gx_broker().await;
        self.recovered("gx_reboot", Instant::now(), Duration::from_secs(10)).await;
    }

    async fn gx_freeze(&mut self) {
        let at = Instant::now();
        self.rig.sim.freeze().await;
        self.noticed("gx_freeze", GX_TOPIC, "offline", at, Duration::from_secs(15)).await;
        self.pause(Duration::from_secs(30)).await;
        self.rig.sim.thaw().await;
        self.recovered("gx_freeze", Instant::now(), Duration::from_secs(10)).await;
    }

    async fn keepalive_expiry(&mut self) {
        let at = Instant::now();
        self.rig.sim.expire_keepalive().await;
        // Stale after the 10 s heartbeat timeout, then a full publish.
        self.noticed("keepalive_expiry", GX_TOPIC, "offline", at, Duration::from_secs(15)).await;
        self.recovered("keepalive_expiry", at, Duration::from_secs(30)).await;
    }

    async fn device_leaves(&mut self) {
        self.rig.sim.remove_device("battery", "289").await;
        self.recovered("device_left", Instant::now(), Duration::from_secs(10)).await;
        self.rig.sim.restore_device("battery", "289").await;
        self.recovered("device_back", Instant::now(), Duration::from_secs(10)).await;
    }

    async fn ha_broker_restart(&mut self) {
        self.rig.stop_ha_broker();
        self.pause(Duration::from_secs(10)).await;
        self.rig.start_ha_broker().await;
        self.rig.observer.seen.lock().unwrap().latest.clear();
        self.recovered("ha_broker_restart", Instant::now(), Duration::from_secs(10)).await;
    }

    async fn ha_restart(&mut self) {
        let client = self.rig.observer.client.clone();
        client.publish("homeassistant/status", QoS::AtMostOnce, false, "offline").await.unwrap();
        self.pause(Duration::from_secs(20)).await;
        let birth = Instant::now();
        client.publish("homeassistant/status", QoS::AtMostOnce, false, "online").await.unwrap();
        let config = self.rig.observer.wait_until(self.rig.limit(Duration::from_secs(10)), |seen| {
            seen.log.iter().any(|(at, topic, _)| *at >= birth && topic == CONFIG_TOPIC)
        });
        assert!(config.await, "cycle {}: no discovery after the birth message\n{}", self.cycle, self.rig.log());
        self.recovered("ha_restart", birth, Duration::from_secs(10)).await;
    }

    async fn router_reboot(&mut self) {
        let at = Instant::now();
        self.rig.gx_proxy.as_ref().unwrap().freeze();
        self.rig.ha_proxy.as_ref().unwrap().freeze();
        // Home Assistant's broker publishes the bridge's last will.
        self.noticed("router_reboot", BRIDGE_TOPIC, "offline", at, Duration::from_secs(45)).await;
        self.pause(Duration::from_secs(120)).await;
        self.rig.gx_proxy.as_ref().unwrap().thaw();
        self.rig.ha_proxy.as_ref().unwrap().thaw();
        // One capped backoff (36 s) and the GX's full publish.
        self.recovered("router_reboot", Instant::now(), Duration::from_secs(40)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "runs for 30 minutes; scripts/soak runs it"]
async fn soak_cycles_faults() {
    let minutes = env_f64("RCV_SOAK_MINUTES", 30.0);
    let scale = env_f64("RCV_SOAK_SCALE", 1.0).max(1.0);
    let options = RigOptions {
        scale,
        scale_fixed: true,
        live_values: true,
        rate: Some(Rate::PerSecond(REAL_GX_RATE)),
        throttle: true,
        gx_proxy: true,
        ha_proxy: true,
        env: vec![("ROAMCORE_STATS_EVERY".into(), "10".into())],
        ..RigOptions::default()
    };
    let rig = Rig::start(options).await;
    let pid = rig.daemon().pid();
    let online = rig.wait_payload(GX_TOPIC, "online", Duration::from_secs(60)).await;
    assert!(online.is_some(), "the bridge never came online\n{}", rig.log());
    let mut soak = Soak { rig, report: Vec::new(), cycle: 0 };

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(minutes * 60.0);
    let mut rss_after_cycle = Vec::new();
    while Instant::now() < end || soak.cycle < 2 {
        soak.cycle += 1;
        soak.gx_reboot().await;
        soak.gx_freeze().await;
        soak.keepalive_expiry().await;
        soak.device_leaves().await;
        soak.ha_broker_restart().await;
        soak.ha_restart().await;
        soak.router_reboot().await;

        assert_eq!(soak.rig.daemon().pid(), pid);
        let rss = soak.rig.daemon().rss_kib().unwrap_or_else(|| panic!("the bridge exited\n{}", soak.rig.log()));
        rss_after_cycle.push(rss);
        let elapsed = started.elapsed().as_secs_f64() / 60.0;
        eprintln!("soak: cycle {} done after {elapsed:.1} min, RSS {rss} KiB", soak.cycle);
    }

    let log = soak.rig.log();
    let baseline = rss_after_cycle[0] as f64;
    let last = *rss_after_cycle.last().unwrap() as f64;
    let growth = last / baseline - 1.0;
    let stats = last_stats(&log);
    let warnings = log.lines().filter(|line| line.contains("WARNING")).count();
    let ha_connects = log.lines().filter(|line| line.contains("connected to Home Assistant's broker")).count();
    let sim = soak.rig.sim.stats().await;
    let mut summary = vec![
        format!("soak: {minutes} min requested, {:.1} min run, time scale {scale}", started.elapsed().as_secs_f64() / 60.0),
        format!("soak: {} cycles of 7 faults, every one recovered", soak.cycle),
        format!("soak: RSS after each cycle (KiB): {rss_after_cycle:?}"),
        format!("soak: RSS growth after warm-up {:+.1} % (limit {:.0} %)", growth * 100.0, MAX_RSS_GROWTH * 100.0),
        format!("soak: bridge counters {stats:?}"),
        format!("soak: reconnects to Home Assistant's broker: {}", ha_connects.saturating_sub(1)),
        format!("soak: simulated GX published {} messages, {} of them value changes", sim.published, sim.change_messages),
        format!("soak: {} log lines, {warnings} warnings", log.lines().count()),
    ];
    summary.extend(soak.report.iter().cloned());
    let text = summary.join("\n");
    eprintln!("{text}");
    if let Some(path) = std::env::var_os("RCV_SOAK_REPORT") {
        let mut file = std::fs::File::create(path).expect("create the soak report");
        writeln!(file, "{text}").expect("write the soak report");
    }

    assert!(!log.contains("panicked"), "the bridge panicked\n{log}");
    assert!(growth <= MAX_RSS_GROWTH, "RSS grew {:.1} % after warm-up: {rss_after_cycle:?}", growth * 100.0);
}
