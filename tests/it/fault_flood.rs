//! Floods from the GX: ten times a real GX's message rate, a burst of 100,000 messages and
//! a stream of 1 MB payloads. Memory stays under 32 MiB, and Home Assistant's broker gets
//! no more than the throttle allows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roamcore_victron::model::registry::Registry;
use roamcore_victron::sim::Rate;
use roamcore_victron::throttle::{Policy, Rule};
use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::support::rig::{record_value, Rig, RigOptions, BASE, GX_TOPIC};

/// Value messages per second of the `ess` capture, a recording of a real GX (1,952 changes
/// in 95 s).
const NORMAL_RATE: f64 = 20.6;
const RSS_LIMIT_KIB: u64 = 32 * 1024;
const PORTAL: &str = "c0619ab0d0e1";

/// Samples a process's resident set size every 50 ms and keeps the largest.
struct RssSampler {
    max_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let max_kib = Arc::new(AtomicU64::new(0));
        let max = max_kib.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(kib) = rss_kib(pid) {
                    max.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        RssSampler { max_kib, task }
    }

    fn max_kib(&self) -> u64 {
        self.max_kib.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the most state messages each throttled entity may send in `window`: one per
/// interval (or debounce hold), plus one at each edge of the window.
fn throttle_limits(rig: &Rig, window: Duration) -> BTreeMap<String, usize> {
    let copy = tempfile::tempdir().unwrap();
    let stored = rig.data.path().join("entities.json");
    if stored.exists() {
        std::fs::copy(&stored, copy.path().join("entities.json")).unwrap();
    }
    let registry = Registry::open(Some(copy.path()));
    let mut limits = BTreeMap::new();
    for (_, entity) in registry.iter() {
        let policy = Policy::for_class(entity.def.throttle, 1.0 / rig.scale);
        let period = match policy.rule {
            Rule::Numeric { interval, .. } | Rule::Location { interval, .. } => interval,
            Rule::Debounce { hold, .. } => hold,
            Rule::Immediate => continue,
        };
        let limit = (window.as_secs_f64() / period.as_secs_f64()).floor() as usize + 2;
        limits.insert(entity.key.clone(), limit);
    }
    limits
}

/// Counts the state messages per entity that reached Home Assistant's broker in `[from, to)`.
fn states_between(rig: &Rig, from: Instant, to: Instant) -> BTreeMap<String, usize> {
    let seen = rig.observer.seen.lock().unwrap();
    let mut counts = BTreeMap::new();
    for (at, topic, _) in &seen.log {
        if *at < from || *at >= to {
            continue;
        }
        let Some(key) = topic.strip_prefix(&format!("{BASE}/")).and_then(|rest| rest.strip_suffix("/state")) else {
            continue;
        };
        *counts.entry(key.to_string()).or_default() += 1;
    }
    counts
}

fn over_limit(counts: &BTreeMap<String, usize>, limits: &BTreeMap<String, usize>) -> Vec<String> {
    counts
        .iter()
        .filter_map(|(key, count)| {
            let limit = limits.get(key)?;
            (count > limit).then(|| format!("{key}: {count} states, limit {limit}"))
        })
        .collect()
}

/// A GX stand-in that publishes whatever the test requests, as fast as the broker takes it.
async fn raw_publisher(port: u16) -> AsyncClient {
    let mut options = MqttOptions::new("flood", "127.0.0.1", port);
    options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

/// Reads `name=N` from the bridge's shutdown line.
fn shutdown_counter(log: &str, name: &str) -> Option<u64> {
    let line = log.lines().rev().find(|line| line.contains("shutting down"))?;
    let field = line.split_whitespace().find_map(|word| word.strip_prefix(&format!("{name}=")))?;
    field.parse().ok()
}

#[tokio::test(flavor = "current_thread")]
async fn ten_times_rate_stays_throttled() {
    let options = RigOptions {
        scale: 2.0,
        live_values: true,
        rate: Some(Rate::PerSecond(NORMAL_RATE * 10.0)),
        throttle: true,
        ..RigOptions::default()
    };
    let rig = Rig::start(options).await;
    assert!(rig.wait_payload(GX_TOPIC, "online", Duration::from_secs(30)).await.is_some(), "{}", rig.log());
    let rss = RssSampler::start(rig.daemon().pid());

    // One full interval of the slowest fast class (power, 5 s) after the snapshot burst.
    tokio::time::sleep(rig.scaled(Duration::from_secs(5))).await;
    let window = rig.scaled(Duration::from_secs(30));
    let published_before = rig.sim.stats().await.published;
    let from = Instant::now();
    tokio::time::sleep(window).await;
    let to = Instant::now();
    let sent = rig.sim.stats().await.published - published_before;

    let counts = states_between(&rig, from, to);
    let received: usize = counts.values().sum();
    let over = over_limit(&counts, &throttle_limits(&rig, to - from));
    assert!(over.is_empty(), "throttle exceeded: {over:#?}");
    assert!(sent as f64 >= NORMAL_RATE * 10.0 * window.as_secs_f64() * 0.8, "the simulator sent only {sent} messages");
    // Most varied measurements stay inside their deadband, but some must move.
    let updated = counts.values().filter(|n| **n >= 2).count();
    assert!(updated >= 5, "only {updated} entities updated during the flood: {counts:?}");
    record_value("flood_10x.gx_messages_per_s", sent as f64 / window.as_secs_f64(), NORMAL_RATE * 10.0, "messages/s");
    record_value("flood_10x.ha_states_per_s", received as f64 / window.as_secs_f64(), 0.0, "messages/s");

    let max = rss.max_kib();
    record_value("flood_10x.rss_max", max as f64 / 1024.0, 32.0, "MiB");
    assert!(max > 0 && max < RSS_LIMIT_KIB, "RSS reached {max} KiB");
}

#[tokio::test(flavor = "current_thread")]
async fn burst_and_huge_payloads() {
    let options = RigOptions { scale: 2.0, throttle: true, ..RigOptions::default() };
    let mut rig = Rig::start(options).await;
    rig.wait_consistent(Duration::from_secs(30)).await.unwrap_or_else(|m| panic!("initial state: {m:#?}\n{}", rig.log()));
    let rss = RssSampler::start(rig.daemon().pid());
    let flood = raw_publisher(rig.gx.port).await;

    // 100,000 value messages on ten real topics, as fast as the broker takes them.
    let topics = [
        "system/0/Dc/Battery/Power",
        "system/0/Dc/Battery/Current",
        "system/0/Dc/Battery/Voltage",
        "system/0/Dc/Pv/Power",
        "system/0/Ac/Consumption/L1/Power",
        "battery/275/Dc/0/Power",
        "battery/275/Dc/0/Current",
        "solarcharger/288/Yield/Power",
        "vebus/274/Ac/Out/L1/P",
        "tank/20/Level",
    ];
    let from = Instant::now();
    for i in 0..100_000u32 {
        let topic = format!("N/{PORTAL}/{}", topics[i as usize % topics.len()]);
        let payload = format!("{{\"value\":{}}}", 100 + i % 977);
        flood.publish(topic, QoS::AtMostOnce, false, payload).await.unwrap();
    }
    let burst_sent = from.elapsed();
    record_value("flood_burst.send_seconds", burst_sent.as_secs_f64(), 0.0, "s");

    // The last value of a burst is never lost: the final SOC arrives at the latest when
    // its throttle interval ends.
    flood.publish(format!("N/{PORTAL}/system/0/Dc/Battery/Soc"), QoS::AtLeastOnce, false, r#"{"value":77.7}"#).await.unwrap();
    let caught_up = rig.observer.wait_for(&format!("{BASE}/battery_soc/state"), "77.7", Duration::from_secs(60)).await;
    assert!(caught_up, "the bridge never caught up with the burst\n{}", rig.log());
    let to = Instant::now();
    record_value("flood_burst.caught_up_seconds", (to - from).as_secs_f64(), 0.0, "s");
    let over = over_limit(&states_between(&rig, from, to), &throttle_limits(&rig, to - from));
    assert!(over.is_empty(), "throttle exceeded during the burst: {over:#?}");

    // Payloads above the 1 MiB limit are counted and dropped, never a reconnect loop.
    let huge = format!("{{\"value\":\"{}\"}}", "x".repeat(1_100_000));
    for _ in 0..20 {
        flood.publish(format!("N/{PORTAL}/system/0/Dc/Battery/Power"), QoS::AtMostOnce, false, huge.clone()).await.unwrap();
    }
    flood.publish(format!("N/{PORTAL}/system/0/Dc/Battery/Soc"), QoS::AtLeastOnce, false, r#"{"value":12.5}"#).await.unwrap();
    let after_huge = rig.observer.wait_for(&format!("{BASE}/battery_soc/state"), "12.5", Duration::from_secs(30)).await;
    assert!(after_huge, "values stopped after the 1 MB payloads\n{}", rig.log());

    let max = rss.max_kib();
    record_value("flood_burst.rss_max", max as f64 / 1024.0, 32.0, "MiB");
    assert!(max > 0 && max < RSS_LIMIT_KIB, "RSS reached {max} KiB");

    let log = rig.log();
    assert!(!log.contains("lost the GX"), "the flood dropped the GX link\n{log}");
    let warned = log.lines().filter(|line| line.contains("dropped a 1100")).count();
    assert_eq!(warned, 1, "oversized messages warned {warned} times\n{log}");

    let (status, _) = rig.daemon_mut().sigterm();
    assert!(status.success());
    assert!(rig.daemon().wait_line("stopped", Duration::from_secs(2)).await, "{}", rig.log());
    let log = rig.log();
    let handled = shutdown_counter(&log, "gx_messages").expect("shutdown line with counters");
    record_value("flood_burst.gx_messages_handled", handled as f64, 100_000.0, "messages");
    assert!(handled >= 100_000, "the bridge handled only {handled} GX messages\n{log}");
}
