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
    runtime.block_on(async move {
        let shutdown = Shutdown::listen();
        run(settings, supervisor, shutdown).await
    })
}

async fn run(settings: Settings, supervisor: Option<Supervisor>, shutdown: Shutdown) -> i32 {
    log_start(&settings, supervisor.is_some());
    if let Err(e) = std::fs::create_dir_all(&settings.data_dir) {
        tracing::warn!(dir = %settings.data_dir.display(), error = %e, "cannot create the data directory; nothing will be remembered across restarts");
    }

    let mut settings = settings;
    if settings.portal_id.is_none() {
        settings.portal_id = super::adopt::pending(&settings.data_dir);
        if let Some(portal) = &settings.portal_id {
            tracing::info!(portal_id = %portal, "adopting the GX requested with `roamcore-victron adopt`");
        }
    }
    apply_trust_new_certificate(&settings);
    let pid_file = settings.data_dir.join(super::PID_FILE);
    let _ = std::fs::write(&pid_file, format!("{}\n", std::process::id()));
    let timings = Timings::scaled(settings.time_scale);
    let mut health = HealthReporter::new(settings.health_file.clone());
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
            // Keep the health file fresh while waiting: a missing broker is not a stalled
            // daemon, and the container must not be restarted for it.
            let wait = supervisor.wait_mqtt_service(&timings);
            tokio::pin!(wait);
            let mut ticks = tokio::time::interval(timings.tick);
            let service = loop {
                tokio::select! {
                    service = &mut wait => break service,
                    _ = ticks.tick() => health.record(std::time::Instant::now(), None, false),
                    _ = shutdown.clone().wait() => {
                        stopped(&pid_file, &health);
                        return 0;
                    }
                }
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

    let health_path = health.path().to_path_buf();
    let (settings_gx, settings_tls) = (settings.gx.clone(), settings.gx_tls);
    let parts = Parts { timings, ha, supervisor, health };
    let mut engine = Engine::new(settings, parts);
    let fallback = matches!(&settings_gx, Target::Fixed(host) if host.port.is_none()) && !settings_tls;
    match gx {
        Some(target) => {
            if fallback {
                engine.allow_tls_fallback();
            }
            engine.connect_gx(target)
        }
        None => engine.start_discovery(),
    }
    engine.run(shutdown.wait()).await;
    stopped_at(&pid_file, &health_path);
    0
}

/// Cleans up after a stop: the pid file, and the health file so that `health` does not
/// report a stopped daemon as healthy.
fn stopped(pid_file: &std::path::Path, health: &HealthReporter) {
    stopped_at(pid_file, health.path());
}

fn stopped_at(pid_file: &std::path::Path, health_file: &std::path::Path) {
    let _ = std::fs::remove_file(pid_file);
    let _ = std::fs::remove_file(health_file);
    tracing::info!("stopped");
}

/// Marker file: the `gx_trust_new_certificate` option was already acted on.
const TRUSTED_MARKER: &str = "trust_new_certificate.done";

/// Forgets the pinned GX certificates once per switch-on of `gx_trust_new_certificate`:
/// a marker in the data directory remembers that it happened, and switching the option
/// off removes the marker.
fn apply_trust_new_certificate(settings: &Settings) {
    let marker = settings.data_dir.join(TRUSTED_MARKER);
    if !settings.trust_new_certificate {
        let _ = std::fs::remove_file(&marker);
        return;
    }
    if marker.exists() {
        return;
    }
    match crate::gx::tls::PinStore::open(&settings.data_dir).forget_all() {
        Ok(count) => {
            tracing::info!(
                pins = count,
                "forgot the pinned GX certificates as requested; the next TLS connection trusts the GX's current one. Switch gx_trust_new_certificate off again."
            );
            let _ = std::fs::write(&marker, b"");
        }
        Err(e) => tracing::warn!(error = %e, "cannot forget the pinned GX certificates"),
    }
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

/// SIGTERM or SIGINT, listened for from the start of the process.
///
/// A signal that arrives while no listener exists is lost once tokio has replaced the
/// default handler, and the daemon would then never stop. So one task listens for the
/// whole life of the process and records the request; `wait` can be called any time.
#[derive(Clone)]
pub struct Shutdown {
    requested: tokio::sync::watch::Receiver<bool>,
}

impl Shutdown {
    /// Installs the signal handlers. Must run inside the runtime, before anything slow.
    pub fn listen() -> Shutdown {
        let (tx, requested) = tokio::sync::watch::channel(false);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let term = signal(SignalKind::terminate());
            let int = signal(SignalKind::interrupt());
            tokio::spawn(async move {
                match (term, int) {
                    (Ok(mut term), Ok(mut int)) => {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = int.recv() => {}
                        }
                    }
                    _ => {
                        tracing::warn!("cannot install the SIGTERM/SIGINT handlers; stop the daemon with SIGKILL");
                        std::future::pending::<()>().await;
                    }
                }
                let _ = tx.send(true);
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
        });
        Shutdown { requested }
    }

    /// Completes once a stop was requested (at once if it already was).
    pub async fn wait(mut self) {
        let _ = self.requested.wait_for(|stop| *stop).await;
    }
}
