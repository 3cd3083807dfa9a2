//! The `demo` subcommand: the whole product in one process, needing nothing but this
//! binary. Two embedded brokers stand in for the GX's and Home Assistant's, a simulated
//! GX replays a real capture into the first, the bridge runs as in production, and a
//! viewer prints each entity as Home Assistant would see it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::cli::{LogLevel, RunArgs};
use crate::clock::Timings;
use crate::config;
use crate::engine::{ha_link_config, Engine, GxTarget, Parts};
use crate::health::HealthReporter;
use crate::sim::broker::start_broker;
use crate::sim::capture::Capture;
use crate::sim::{Mode, SimConfig, Simulator};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Capture the simulated GX replays (see `simulate --list-captures`).
    #[arg(long, default_value = "boat", value_name = "NAME|PATH")]
    pub capture: String,

    /// Venus MQTT bridge to imitate: flashmq (Venus 3.20 and later) or dbus-mqtt (older).
    #[arg(long, value_enum, default_value = "flashmq")]
    pub mode: Mode,

    /// Port of the embedded GX broker on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub gx_port: u16,

    /// Port of the embedded Home Assistant broker on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub ha_port: u16,

    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub duration: u64,

    /// Data directory for the bridge [default: a fresh temporary directory].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log level of the bridge.
    #[arg(long, value_enum, default_value = "info", value_name = "LEVEL")]
    pub log_level: LogLevel,
}

pub fn main(args: DemoArgs) -> i32 {
    crate::logging::init(args.log_level);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("demo: cannot start the async runtime: {e}");
            return 1;
        }
    };
    if let Err(e) = Capture::load(&args.capture) {
        eprintln!("roamcore-victron demo: invalid --capture: {e:#}");
        return 2;
    }
    match runtime.block_on(run(args)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("demo failed: {e:#}");
            1
        }
    }
}

async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let shutdown = super::run::Shutdown::listen();
    let capture = Capture::load(&args.capture)?;
    let gx_broker = start_broker(SocketAddr::from(([127, 0, 0, 1], args.gx_port))).await?;
    let ha_broker = start_broker(SocketAddr::from(([127, 0, 0, 1], args.ha_port))).await?;
    let temporary = tempdir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temporary.clone());

    println!("RoamCore Victron demo");
    println!("  simulated GX broker:           {}  (capture '{}', portal id {})", gx_broker.addr(), capture.name, capture.portal_id);
    println!("  Home Assistant broker:         {}", ha_broker.addr());
    println!("  watch it: mosquitto_sub -h 127.0.0.1 -p {} -t 'roamcore/#' -v", ha_broker.addr().port());
    println!("  data directory:                {}", data_dir.display());
    println!("  stop with Ctrl-C\n");

    let mut sim_config = SimConfig::new(gx_broker.addr().to_string(), capture);
    sim_config.mode = args.mode;
    let simulator = Simulator::spawn(sim_config);

    let run_args = RunArgs {
        gx: Some(gx_broker.addr().to_string()),
        ha_broker: Some(ha_broker.addr().to_string()),
        data_dir: Some(data_dir.clone()),
        log_level: Some(args.log_level),
        options: Some(data_dir.join("no-options.json")),
        ..Default::default()
    };
    let mut settings = config::merge(&run_args, false);
    settings.config_errors.clear();
    let timings = Timings::standard();
    let ha = ha_link_config(&timings, "127.0.0.1".into(), ha_broker.addr().port(), None, None);
    let health = HealthReporter::new(data_dir.join("health.json"));
    let mut engine = Engine::new(settings, Parts { timings, ha, supervisor: None, health });
    engine.connect_gx(GxTarget {
        host: "127.0.0.1".into(),
        port: gx_broker.addr().port(),
        tls: false,
        portal_id: None,
    });

    tokio::spawn(view(ha_broker.addr().port()));

    let duration = args.duration;
    let stop = async move {
        if duration > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(duration)) => {}
                _ = shutdown.clone().wait() => {}
            }
        } else {
            shutdown.wait().await;
        }
    };
    engine.run(stop).await;
    simulator.stop();
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temporary);
    }
    Ok(())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("roamcore-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Prints entity states as they change on Home Assistant's broker, with the entity id and
/// unit taken from the discovery message.
async fn view(port: u16) {
    let mut options = MqttOptions::new("roamcore-demo-viewer", "127.0.0.1", port);
    options.set_max_packet_size(1024 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let mut entities: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    // States that arrived before the discovery message named their entity.
    let mut waiting: BTreeMap<String, String> = BTreeMap::new();

    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.subscribe("homeassistant/device/roamcore_victron/config", QoS::AtMostOnce).await;
                let _ = client.subscribe("roamcore/victron/+/state", QoS::AtMostOnce).await;
                let _ = client.subscribe("roamcore/victron/gx", QoS::AtMostOnce).await;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let payload = String::from_utf8_lossy(&publish.payload).to_string();
                if publish.topic.ends_with("/config") {
                    entities = entity_names(&payload);
                    println!("discovery: {} entities under \"RoamCore Victron System\"", entities.len());
                    for (key, state) in std::mem::take(&mut waiting) {
                        show(&entities, &mut shown, &mut waiting, key, state);
                    }
                    continue;
                }
                if publish.topic == "roamcore/victron/gx" {
                    println!("GX link: {payload}");
                    continue;
                }
                let key = publish.topic.trim_start_matches("roamcore/victron/").trim_end_matches("/state").to_string();
                show(&entities, &mut shown, &mut waiting, key, payload);
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

fn show(
    entities: &BTreeMap<String, (String, String)>,
    shown: &mut BTreeMap<String, String>,
    waiting: &mut BTreeMap<String, String>,
    key: String,
    state: String,
) {
    if shown.get(&key) == Some(&state) {
        return;
    }
    let Some((entity_id, unit)) = entities.get(&key) else {
        waiting.insert(key, state);
        return;
    };
    if state == "None" {
        println!("{entity_id:<44} unknown");
    } else {
        println!("{entity_id:<44} {state} {unit}");
    }
    shown.insert(key, state);
}

/// Entity id and unit by key, from the discovery message.
fn entity_names(config: &str) -> BTreeMap<String, (String, String)> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(config) else {
        return BTreeMap::new();
    };
    let Some(components) = value.get("components").and_then(|c| c.as_object()) else {
        return BTreeMap::new();
    };
    components
        .iter()
        .filter_map(|(key, component)| {
            let id = component.get("default_entity_id")?.as_str()?.to_string();
            let unit = component.get("unit_of_measurement").and_then(|u| u.as_str()).unwrap_or("").to_string();
            Some((key.clone(), (id, unit)))
        })
        .collect()
}
