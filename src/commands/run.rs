//! The `run` subcommand: the daemon.

use crate::cli::RunArgs;
use crate::clock::Timings;
use crate::config::{self, GxTarget as Target, Settings};
use crate::engine::{ha_link_config, Engine, GxTarget, Parts};
use crate::health::HealthReporter;
use crate::supervisor::Supervisor;

/// Default port of Home Assistant's broker when only a host is given.
const HA_DEFAULT_PORT: u16 = 1883;

pub fn main(args: RunArgs) -> i32 {
    if let Err(message) = config::validate_args(&args) {
        eprintln!("roamcore-victron run: {message}");
        return 2;
    }
    let supervisor = Supervisor::from_env();
    let settings = config::merge(&args, supervisor.is_some());
    crate::logging::init(settings.log_level);

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return 1;
        }
    };
    runtime.block_on(run(settings, supervisor))
}

async fn run(settings: Settings, supervisor: Option<Supervisor>) -> i32 {
    log_start(&settings, supervisor.is_some());
    if let Err(e) = std::fs::create_dir_all(&settings.data_dir) {
        tracing::warn!(dir = %settings.data_dir.display(), error = %e, "cannot create the data directory; nothing will be remembered across restarts");
    }

    let pid_file = settings.data_dir.join(super::PID_FILE);
    let _ = std::fs::write(&pid_file, format!("{}\n", std::process::id()));
    if settings.forget_after_days > 0 {
        let forgotten = super::forget::forget(&settings.data_dir, settings.forget_after_days);
        if !forgotten.is_empty() {
            tracing::info!(days = settings.forget_after_days, entities = ?forgotten, "forgetting entities whose source was not seen recently");
        }
    }

    let timings = Timings::scaled(settings.time_scale);
    let ha = match (&settings.ha_broker, &supervisor) {
        (Some(broker), _) => ha_link_config(
            &timings,
            broker.host.clone(),
            broker.port.unwrap_or(HA_DEFAULT_PORT),
            settings.ha_username.clone(),
            settings.ha_password.clone(),
        ),
        (None, Some(supervisor)) => {
            tracing::info!("asking the Supervisor for Home Assistant's MQTT broker");
            let service = tokio::select! {
                service = supervisor.wait_mqtt_service(&timings) => service,
                _ = shutdown_signal() => return 0,
            };
            ha_link_config(&timings, service.host.clone(), service.port, service.username.clone(), service.password.clone())
        }
        (None, None) => ha_link_config(&timings, "127.0.0.1".into(), HA_DEFAULT_PORT, settings.ha_username.clone(), settings.ha_password.clone()),
    };

    let gx = match &settings.gx {
        Target::Fixed(host) => Some(GxTarget {
            host: host.host.clone(),
            port: host.port.unwrap_or_else(|| settings.gx_default_port()),
            tls: settings.gx_tls,
            portal_id: settings.portal_id.clone(),
        }),
        Target::Discover => None,
    };

    let parts = Parts { timings, ha, supervisor, health: HealthReporter::from_env() };
    let mut engine = Engine::new(settings, parts);
    match gx {
        Some(target) => engine.connect_gx(target),
        None => engine.start_discovery(),
    }
    engine.run(shutdown_signal()).await;
    let _ = std::fs::remove_file(&pid_file);
    tracing::info!("stopped");
    0
}

fn log_start(settings: &Settings, supervised: bool) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        supervised,
        data_dir = %settings.data_dir.display(),
        "RoamCore Victron starting"
    );
    tracing::debug!(
        gx = ?settings.gx,
        gx_tls = settings.gx_tls,
        gx_username = settings.gx_username.as_deref().unwrap_or(""),
        gx_password_set = settings.gx_password.is_some(),
        portal_id = settings.portal_id.as_deref().unwrap_or(""),
        scan = settings.scan,
        scan_subnets = %settings.scan_subnets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        discovery_prefix = %settings.discovery_prefix,
        forget_after_days = settings.forget_after_days,
        "effective settings"
    );
    if !settings.applied_options.is_empty() {
        tracing::info!("options applied: {}", config::describe_applied(settings));
    }
    for error in &settings.config_errors {
        tracing::warn!(status = "config_error", "{error}");
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
