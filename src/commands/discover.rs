//! The `discover` subcommand: runs discovery once (or until Ctrl-C with `--watch`) and
//! prints the candidates, the validation outcomes and the adoption decision.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::discovery::runner::{self, Trace};
use crate::discovery::{DiscoveryConfig, DiscoveryEvent, LinkReport};

#[derive(Debug, Clone, clap::Args)]
pub struct DiscoverArgs {
    /// Keep running and printing until Ctrl-C (or --duration) instead of stopping at
    /// the first decision.
    #[arg(long)]
    pub watch: bool,
    /// Stop after this many seconds [default: 60, or unlimited with --watch].
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Try this GX address first, HOST or HOST:PORT.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub gx: Option<String>,
    /// Username for the GX broker.
    #[arg(long, value_name = "NAME")]
    pub gx_username: Option<String>,
    /// Password for the GX broker (the GX's security-profile password).
    #[arg(long, env = "ROAMCORE_GX_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub gx_password: Option<String>,
    /// Use only TLS on port 8883.
    #[arg(long)]
    pub gx_tls: bool,
    /// Adopt the GX with this portal id.
    #[arg(long, value_name = "ID")]
    pub portal_id: Option<String>,
    /// Search the LAN (SSDP, mDNS, ARP, sweep).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub scan: bool,
    /// IPv4 subnets to sweep, comma separated CIDRs [default: attached private subnets
    /// of /24 or smaller].
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub scan_subnets: Vec<String>,
    /// Allow sweeping subnets larger than /24 (up to /16).
    #[arg(long)]
    pub scan_large_subnets: bool,
    /// Directory of discovery.json and tls_pins.json. Without it, a temporary directory
    /// is used, so nothing is adopted for good.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log level of the messages on stderr [default: warning].
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub log_level: Option<crate::cli::LogLevel>,
    /// Act as the GX link: report "connected" for each GX handed out, so the passive
    /// scan mode can be observed (for tests).
    #[arg(long, hide = true)]
    pub act_connected: bool,
    /// Divide protocol timers by this factor (for tests).
    #[arg(long, hide = true, value_name = "FACTOR")]
    pub time_scale: Option<f64>,
}

pub fn main(args: DiscoverArgs) -> i32 {
    init_logging(args.log_level);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("discover: cannot start the runtime: {err}");
            return 1;
        }
    };
    match runtime.block_on(discover(args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("discover: {message}");
            2
        }
    }
}

/// Logs go to stderr so that stdout carries only the discovery output.
fn init_logging(level: Option<crate::cli::LogLevel>) {
    let level = crate::logging::tracing_level(level.unwrap_or(crate::cli::LogLevel::Warning));
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,roamcore_victron={level}"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn config_from(args: &DiscoverArgs, data_dir: PathBuf) -> Result<DiscoveryConfig, String> {
    let host = match &args.gx {
        Some(gx) => Some(
            crate::config::parse_host_port(gx)
                .map_err(|e| format!("invalid value for --gx: {e}"))?,
        ),
        None => None,
    };
    if let Some(portal) = &args.portal_id {
        crate::config::validate_portal_id(portal)
            .map_err(|e| format!("invalid value for --portal-id: {e}"))?;
    }
    let mut subnets = Vec::new();
    for subnet in &args.scan_subnets {
        subnets.push(
            crate::config::parse_ipv4_net(subnet)
                .map_err(|e| format!("invalid value for --scan-subnets: {e}"))?,
        );
    }
    Ok(DiscoveryConfig {
        scan: args.scan,
        host,
        subnets,
        large_subnets: args.scan_large_subnets,
        portal_id: args.portal_id.as_ref().map(|p| p.to_ascii_lowercase()),
        username: args.gx_username.clone(),
        password: args.gx_password.clone(),
        tls: args.gx_tls,
        data_dir,
        timings: crate::clock::Timings::scaled(args.time_scale.unwrap_or(1.0)),
        time_scale: args.time_scale.unwrap_or(1.0),
        ignore: Vec::new(),
    })
}

async fn discover(args: DiscoverArgs) -> Result<i32, String> {
    // SIGTERM ends the scan like Ctrl-C: the summary is printed and the temporary
    // directory removed.
    let stop = crate::commands::run::Shutdown::listen().wait();
    tokio::pin!(stop);
    let temp = match &args.data_dir {
        Some(_) => None,
        None => Some(tempfile_dir()?),
    };
    let data_dir = args.data_dir.clone().or_else(|| temp.clone()).unwrap_or_default();
    let result = scan(&args, data_dir, stop).await;
    if let Some(dir) = temp {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

async fn scan(args: &DiscoverArgs, data_dir: PathBuf, mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>) -> Result<i32, String> {
    let config = config_from(args, data_dir)?;
    let (events_tx, mut events) = mpsc::channel(64);
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let (trace_tx, mut traces) = mpsc::unbounded_channel();
    tokio::spawn(runner::run_traced(config, events_tx, reports, Some(trace_tx)));

    let started = Instant::now();
    let limit = match (args.duration, args.watch) {
        (Some(seconds), _) => Some(Duration::from_secs(seconds)),
        (None, false) => Some(Duration::from_secs(60)),
        (None, true) => None,
    };
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    let mut code = 1;
    loop {
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(trace) = traces.recv() => print_trace(args, started, &trace),
            event = events.recv() => {
                let Some(event) = event else { break };
                print_event(args, started, &event);
                match &event {
                    DiscoveryEvent::Use(endpoint) => {
                        code = 0;
                        if args.act_connected {
                            let _ = reports_tx.send(LinkReport::Connected(endpoint.clone()));
                        }
                        if !args.watch {
                            break;
                        }
                    }
                    DiscoveryEvent::Status { status, .. } if status.needs_user() => {
                        code = 3;
                        if !args.watch {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            _ = sleep => break,
            _ = &mut stop => break,
        }
    }
    // Trace lines and events travel on separate channels: print the traces that are
    // still queued, such as the outcome behind a final status.
    while let Ok(trace) = traces.try_recv() {
        print_trace(args, started, &trace);
    }
    Ok(code)
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("roamcore-discover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn print_event(args: &DiscoverArgs, started: Instant, event: &DiscoveryEvent) {
    let t = started.elapsed().as_secs_f64();
    if args.json {
        let mut value = match event {
            DiscoveryEvent::Status { status, detail } => {
                serde_json::json!({"event": "status", "status": status, "detail": detail})
            }
            DiscoveryEvent::Use(endpoint) => {
                let mut value = serde_json::to_value(endpoint).unwrap_or_default();
                value["event"] = serde_json::json!("use");
                value
            }
            DiscoveryEvent::OthersSeen(others) => {
                serde_json::json!({"event": "others_seen", "others": others})
            }
        };
        value["t"] = serde_json::json!(t);
        println!("{value}");
        return;
    }
    match event {
        DiscoveryEvent::Status { status, detail } => println!("{t:7.1}s status {status}: {detail}"),
        DiscoveryEvent::Use(e) => println!(
            "{t:7.1}s use GX {} at {}:{}{} (model {}, firmware {})",
            e.portal_id,
            e.host,
            e.port,
            if e.tls { " TLS" } else { "" },
            e.model.as_deref().unwrap_or("unknown"),
            e.firmware.as_deref().unwrap_or("unknown")
        ),
        DiscoveryEvent::OthersSeen(others) => {
            for gx in others {
                let how = if gx.confirmed { "confirmed over MQTT" } else { "announced by SSDP" };
                println!("{t:7.1}s other GX {} at {} ({how}), not used", gx.portal_id, gx.host);
            }
        }
    }
}

fn print_trace(args: &DiscoverArgs, started: Instant, trace: &Trace) {
    let t = started.elapsed().as_secs_f64();
    if args.json {
        let value = match trace {
            Trace::Candidate(c) => {
                serde_json::json!({"event": "candidate", "host": c.host, "method": c.method,
                "portal_hint": c.portal_hint, "mqtt_on_lan": c.mqtt_on_lan, "evidence": c.evidence})
            }
            Trace::Outcome(c, o) => {
                serde_json::json!({"event": "outcome", "host": c.host, "method": c.method,
                "outcome": o.label(), "evidence": c.evidence})
            }
            Trace::SweepStarted { subnet, hosts } => {
                serde_json::json!({"event": "sweep_started", "subnet": subnet, "hosts": hosts})
            }
            Trace::SweepSkipped { subnet, reason } => {
                serde_json::json!({"event": "sweep_skipped", "subnet": subnet, "reason": reason})
            }
            Trace::SweepFinished { answered, elapsed } => {
                serde_json::json!({"event": "sweep_finished", "answered": answered, "seconds": elapsed.as_secs_f64()})
            }
            Trace::ScanMode(mode) => {
                serde_json::json!({"event": "scan_mode", "mode": format!("{mode:?}").to_lowercase()})
            }
        };
        let mut value = value;
        value["t"] = serde_json::json!(t);
        println!("{value}");
        return;
    }
    match trace {
        Trace::Candidate(c) => println!(
            "{t:7.1}s candidate {} by {}{}",
            c.host,
            c.method.as_str(),
            c.portal_hint.as_deref().map(|p| format!(", portal id hint {p}")).unwrap_or_default()
        ),
        Trace::Outcome(c, o) => println!("{t:7.1}s checked {}: {}", c.host, o.label()),
        Trace::SweepStarted { subnet, hosts } => {
            println!("{t:7.1}s sweeping {subnet} ({hosts} addresses)")
        }
        Trace::SweepSkipped { subnet, reason } => {
            println!("{t:7.1}s not sweeping {subnet}: {reason}")
        }
        Trace::SweepFinished { answered, elapsed } => {
            println!(
                "{t:7.1}s sweep done in {:.0} s, {answered} hosts answered",
                elapsed.as_secs_f64()
            )
        }
        Trace::ScanMode(mode) => println!("{t:7.1}s scan mode {mode:?}"),
    }
}
