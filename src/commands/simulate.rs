//! The `simulate` subcommand: a simulated GX publishing a capture into a broker, driven by
//! scenario presets, `--at` lines and control lines on standard input.

use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::cli::LogLevel;
use crate::sim::capture::{catalogue::DEFAULT_CAPTURE, Capture, NAMED_CAPTURES};
use crate::sim::control::{self, Control};
use crate::sim::{SimArgs, SimConfig, SimHandle, Simulator};

pub fn main(args: SimArgs) -> i32 {
    crate::logging::init(args.log_level.unwrap_or(LogLevel::Info));

    if args.list_captures {
        for capture in NAMED_CAPTURES {
            println!(
                "{:<14} {:<13} {}",
                capture.name, capture.portal_id, capture.description
            );
        }
        return 0;
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!(error = %err, "failed to start the tokio runtime");
            return 1;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => 0,
        Err(err) => {
            error!("simulate: {err:#}");
            2
        }
    }
}

async fn run(args: SimArgs) -> anyhow::Result<()> {
    let capture_name = args.capture.as_deref().unwrap_or(DEFAULT_CAPTURE);
    let capture = Capture::load(capture_name)?;
    anyhow::ensure!(
        args.speed > 0.0 && args.speed.is_finite(),
        "invalid --speed {}: expected a factor > 0",
        args.speed
    );
    anyhow::ensure!(
        args.time_scale >= 1.0 && args.time_scale.is_finite(),
        "invalid --time-scale {}: expected a factor >= 1",
        args.time_scale
    );
    if let Some(id) = &args.portal_id {
        anyhow::ensure!(
            !id.is_empty() && !id.contains(['/', '+', '#']),
            "invalid --portal-id {id:?}: it must be one MQTT topic level"
        );
    }

    let mut timed = Vec::new();
    for name in &args.scenario {
        timed.extend(control::preset(name, &capture).map_err(anyhow::Error::msg)?);
    }
    for text in &args.at {
        timed.push(control::parse_at(text).map_err(anyhow::Error::msg)?);
    }

    let broker = args.broker.clone().unwrap_or_else(|| "127.0.0.1:1883".into());
    match crate::config::parse_host_port(&broker) {
        Ok(crate::config::HostPort { port: Some(_), .. }) => {}
        Ok(_) => anyhow::bail!("invalid --broker {broker:?}: expected HOST:PORT, e.g. 127.0.0.1:1883"),
        Err(e) => anyhow::bail!("invalid --broker: {e}"),
    }

    let credentials = match (args.username, args.password) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, Some(password)) => Some((String::new(), password)),
        (Some(user), None) => Some((user, String::new())),
        (None, None) => None,
    };
    let mut config = SimConfig::new(broker, capture);
    config.portal_id = args.portal_id;
    config.mode = args.mode;
    config.time_scale = args.time_scale;
    config.speed = args.speed;
    config.rate = args.rate;
    config.vary = !args.no_vary;
    config.seed = args.seed;
    config.credentials = credentials;
    config.dbus_mqtt_paced = args.dbus_mqtt_paced;
    let handle = Simulator::spawn(config);

    let (line_tx, mut lines) = mpsc::channel::<String>(16);
    for (delay, line) in timed {
        let line_tx = line_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = line_tx.send(line).await;
        });
    }
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line_tx.blocking_send(std::mem::take(&mut line)).is_err() {
                return;
            }
        }
    });

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("failed to install the SIGTERM handler")?;
    loop {
        tokio::select! {
            Some(line) = lines.recv() => {
                if line.trim().is_empty() {
                    continue;
                }
                if !run_line(&handle, &line).await {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    info!("simulated GX stopping");
    handle.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// Runs one control line and returns false for `quit`.
async fn run_line(handle: &SimHandle, line: &str) -> bool {
    match control::parse_line(line) {
        Ok(Control::Command(command)) => {
            info!(line = line.trim(), "control");
            handle.command(command).await;
        }
        Ok(Control::Status) => {
            let stats = handle.stats().await;
            info!(
                connected = stats.connected,
                connects = stats.connects,
                alive = stats.alive,
                frozen = stats.frozen,
                published = stats.published,
                change_messages = stats.change_messages,
                keepalives = stats.protocol.keepalives,
                full_publishes = stats.protocol.full_publishes,
                "status"
            );
        }
        Ok(Control::Quit) => return false,
        Err(message) => error!("{message}"),
    }
    true
}
