//! The engine's periodic tick (health record, status, counters) keeps its pace while GX
//! messages arrive more often than the tick interval, as they do from any real GX.

use std::time::Duration;

use roamcore_victron::sim::{Mode, Rate, Simulator};

use crate::sim_support::sim_config;
use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;

#[tokio::test(flavor = "current_thread")]
async fn tick_keeps_pace_under_steady_stream() {
    let gx_broker = Mosquitto::start();
    let ha_broker = Mosquitto::start();
    let mut config = sim_config(&gx_broker, "boat", Mode::Flashmq);
    config.rate = Rate::PerSecond(500.0);
    config.vary = true;
    let sim = Simulator::spawn(config);
    assert!(sim.wait_connected(Duration::from_secs(5)).await);

    // --time-scale 10 makes the tick 100 ms. --no-throttle leaves no throttle deadline
    // that could wake the engine in its place. A message arrives every 2 ms.
    let data = tempfile::tempdir().unwrap();
    let options = data.path().join("options.json");
    std::fs::write(&options, "{}").unwrap();
    let mut daemon = Daemon::start(
        &[
            "run",
            "--gx",
            &gx_broker.host_port(),
            "--scan",
            "false",
            "--ha-broker",
            &ha_broker.host_port(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--options",
            options.to_str().unwrap(),
            "--no-throttle",
            "--time-scale",
            "10",
        ],
        &[("ROAMCORE_STATS_EVERY", "0.1")],
    );
    assert!(
        daemon
            .wait_line("status=connected", Duration::from_secs(10))
            .await,
        "{}",
        daemon.log_text()
    );

    let stats_lines = || {
        daemon
            .lines()
            .iter()
            .filter(|l| l.contains(" stats "))
            .count()
    };
    let before = stats_lines();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = stats_lines() - before;
    let messages = sim.stats().await.published;
    daemon.sigterm();

    assert!(
        messages > 500,
        "the simulator published only {messages} messages"
    );
    // 20 ticks are due in 2 s. A loaded machine may miss some, but a tick that every
    // message postpones misses all of them.
    assert!(
        during >= 8,
        "{during} stats lines in 2 s, expected about 20"
    );
}
