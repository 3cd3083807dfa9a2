//! A router reboot with real packet loss: the GX's broker runs in a network namespace made
//! by the test, and `tc netem loss 100%` drops every packet between it and the bridge, so
//! the kernel's own TCP timers decide what the bridge sees. Needs root and iproute2; the
//! test is skipped (with a message) without them. The proxy-based test in
//! `fault_network.rs` covers the same fault without root.

use std::time::{Duration, Instant};

use roamcore_victron::sim::capture::Capture;
use roamcore_victron::sim::{SimConfig, Simulator};
use serde_json::json;

use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::netns::TestNet;
use crate::support::observer::Observer;
use crate::support::rig::{limit_at, record_figure, scale_or, GX_TOPIC};

const OUTAGE: Duration = Duration::from_secs(180);
/// One connect timeout (10 s) plus the largest reconnect delay (30 s + 20 %).
const RETRY_INTERVAL_MAX: Duration = Duration::from_secs(46);

/// Arrival times of the log lines that contain a needle, read by polling the log.
struct LineTimes {
    needle: &'static str,
    read: usize,
    arrivals: Vec<Instant>,
}

impl LineTimes {
    fn new(needle: &'static str) -> LineTimes {
        LineTimes { needle, read: 0, arrivals: Vec::new() }
    }

    fn poll(&mut self, daemon: &Daemon) {
        let now = Instant::now();
        let lines = daemon.lines();
        let new = lines[self.read..].iter().filter(|line| line.contains(self.needle)).count();
        self.arrivals.extend(std::iter::repeat_n(now, new));
        self.read = lines.len();
    }
}

/// Sleeps for `duration` while polling the log every 20 ms.
async fn sleep_polling(daemon: &Daemon, times: &mut [&mut LineTimes], duration: Duration) {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        for time in times.iter_mut() {
            time.poll(daemon);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn router_reboot_real_packet_loss() {
    let Some(net) = TestNet::create() else {
        eprintln!("router_reboot_real_packet_loss: skipped, needs root and iproute2 to make a network namespace");
        return;
    };
    let scale = scale_or(10.0);
    let dir = tempfile::tempdir().unwrap();
    let _gx = net.start_mosquitto(dir.path());
    let gx_address = format!("{}:1883", net.address);
    let ha = Mosquitto::start();
    let observer = Observer::connect(ha.port, &["roamcore/#"]).await;

    let mut config = SimConfig::new(gx_address.clone(), Capture::load("boat").unwrap());
    config.time_scale = scale;
    config.vary = false;
    config.reconnect_delay = Duration::from_millis(50);
    let sim = Simulator::spawn(config);
    assert!(sim.wait_connected(Duration::from_secs(10)).await, "the simulated GX connects");

    let data = tempfile::tempdir().unwrap();
    let scale_text = scale.to_string();
    let args = ["run", "--gx", &gx_address, "--ha-broker", &ha.host_port(), "--data-dir", data.path().to_str().unwrap(), "--time-scale", &scale_text, "--log-level", "debug", "--no-throttle"];
    let daemon = Daemon::start(&args, &[]);
    assert!(observer.wait_for(GX_TOPIC, "online", Duration::from_secs(20)).await, "{}", daemon.log_text());
    let mut errors = LineTimes::new("MQTT connection error link=\"gx\"");
    let mut lost = LineTimes::new("lost the GX");
    errors.poll(&daemon);
    lost.poll(&daemon);

    let blackholed = Instant::now();
    net.blackhole();
    while lost.arrivals.is_empty() && blackholed.elapsed() < Duration::from_secs(60) {
        sleep_polling(&daemon, &mut [&mut errors, &mut lost], Duration::from_millis(20)).await;
    }
    let detected_at = *lost.arrivals.first().unwrap_or_else(|| panic!("half-open GX link never detected\n{}", daemon.log_text()));
    record_figure("router_reboot_netns.gx_half_open_detected", detected_at - blackholed, Duration::from_secs(45), scale);
    assert!(detected_at - blackholed <= limit_at(Duration::from_secs(45), scale), "detected after {:?}", detected_at - blackholed);

    sim.set_value("system/0/Dc/Battery/Soc", json!(44.5)).await;
    let remaining = OUTAGE.div_f64(scale).saturating_sub(blackholed.elapsed());
    sleep_polling(&daemon, &mut [&mut errors], remaining).await;
    let restored = Instant::now();
    let failures: Vec<Instant> = errors.arrivals.iter().copied().filter(|at| *at > detected_at).collect();
    net.restore();

    assert!(failures.len() >= 4, "only {} failed attempts during the outage\n{}", failures.len(), daemon.log_text());
    let gaps: Vec<Duration> = failures.windows(2).map(|pair| pair[1] - pair[0]).collect();
    let largest = gaps.iter().max().copied().unwrap();
    record_figure("router_reboot_netns.gx_retry_interval_max", largest, RETRY_INTERVAL_MAX, scale);
    assert!(largest <= limit_at(RETRY_INTERVAL_MAX, scale), "attempts {largest:?} apart: {gaps:?}");
    assert!(largest >= Duration::from_secs(24).div_f64(scale), "the backoff never grew: {gaps:?}");
    let since_last = restored - *failures.last().unwrap();
    assert!(since_last <= limit_at(RETRY_INTERVAL_MAX, scale), "no attempt in the last {since_last:?}: the bridge gave up");
    assert!(!daemon.log_text().contains("connection refused"), "a dead route must not look refused\n{}", daemon.log_text());

    // States may arrive during the full publish, before the GX link is declared live.
    let state = observer.wait_for("roamcore/victron/battery_soc/state", "44.5", Duration::from_secs(90)).await;
    let online = observer.wait_for(GX_TOPIC, "online", Duration::from_secs(30)).await;
    assert!(state && online, "the bridge never recovered\n{}", daemon.log_text());
    record_figure("router_reboot_netns.entities_back_after_router", restored.elapsed(), Duration::from_secs(40), scale);
    assert!(restored.elapsed() <= limit_at(Duration::from_secs(40), scale), "recovered after {:?}", restored.elapsed());
}
