//! Command-line interface: one binary, one subcommand per job.
//!
//! The flag names here are a public interface: the add-on's start-up, the provisioning
//! script and the tests drive them. Every `run` flag can also come from an environment
//! variable (named next to the flag) or from the add-on options file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;

/// Victron GX to Home Assistant bridge for RoamCore.
#[derive(Debug, Parser)]
#[command(name = "roamcore-victron", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge daemon: GX MQTT in, Home Assistant MQTT Discovery out.
    Run(Box<RunArgs>),
    /// Run a simulated GX that replays a real capture into an MQTT broker.
    Simulate(crate::sim::SimArgs),
    /// Run everything in one process with embedded brokers and a simulated GX, and show
    /// the entities as they appear. Needs nothing but this binary.
    Demo(commands::demo::DemoArgs),
    /// Remove entities whose source has not been seen for a number of days.
    Forget(commands::forget::ForgetArgs),
    /// Adopt the GX with this portal id, replacing the one adopted before.
    Adopt(commands::adopt::AdoptArgs),
    /// Exit 0 when the running daemon is healthy, 1 when not (for a container HEALTHCHECK).
    Health(commands::health::HealthArgs),
    /// Print the entity catalogue as Markdown (the source of docs/ENTITIES.md).
    Entities(commands::entities::EntitiesArgs),
    /// Search the LAN for the GX once and print what was found and decided.
    Discover(Box<commands::discover::DiscoverArgs>),
    /// Run the simulated GX's LAN presence: SSDP, web page, HTTPS, Modbus, mDNS (tests).
    #[command(hide = true)]
    SimLan(crate::sim::lan::SimLanArgs),
}

/// Log verbosity, from most to least detailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Fatal,
}

/// Flags of `run`. Absent flags fall back to the options file, then to built-in defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// GX device address, HOST or HOST:PORT. Absent: find the GX on the LAN.
    /// The port defaults to 1883, or 8883 with --gx-tls.
    #[arg(long, env = "ROAMCORE_GX", value_name = "HOST[:PORT]")]
    pub gx: Option<String>,

    /// Username for the GX broker. Venus OS ignores the name but some clients need one.
    #[arg(long, env = "ROAMCORE_GX_USERNAME", value_name = "NAME")]
    pub gx_username: Option<String>,

    /// Password for the GX broker: the GX's security-profile password (Secured and Weak
    /// profiles).
    #[arg(long, env = "ROAMCORE_GX_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub gx_password: Option<String>,

    /// Connect to the GX over TLS (port 8883). The GX certificate is pinned on first use
    /// [default: false].
    #[arg(long, env = "ROAMCORE_GX_TLS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub gx_tls: Option<bool>,

    /// Trust the GX's TLS certificate as it is now, once: a factory reset gives the GX a
    /// new certificate, which the bridge otherwise rejects (`tls_untrusted`). Takes effect
    /// when switched on; leaving it on does not re-trust later changes [default: false].
    #[arg(long, env = "ROAMCORE_GX_TRUST_NEW_CERTIFICATE", value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub gx_trust_new_certificate: Option<bool>,

    /// Portal id of the GX to adopt (12 letters or digits). Needed when several GX devices are
    /// visible, and to replace an adopted GX.
    #[arg(long, env = "ROAMCORE_PORTAL_ID", value_name = "ID")]
    pub portal_id: Option<String>,

    /// Search the LAN for the GX when no --gx is given (SSDP, mDNS, ARP, port probes)
    /// [default: true].
    #[arg(long, env = "ROAMCORE_SCAN", value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub scan: Option<bool>,

    /// IPv4 subnets to sweep, comma separated CIDRs. Default: the directly attached
    /// private subnets of /24 or smaller.
    #[arg(long, env = "ROAMCORE_SCAN_SUBNETS", value_name = "CIDR,...", value_delimiter = ',')]
    pub scan_subnets: Option<Vec<String>>,

    /// Allow sweeping subnets larger than /24 [default: false].
    #[arg(long, env = "ROAMCORE_SCAN_LARGE_SUBNETS", value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub scan_large_subnets: Option<bool>,

    /// Home Assistant's MQTT broker, HOST or HOST:PORT (port default 1883). Absent: asked
    /// from the Supervisor when SUPERVISOR_TOKEN is set, else 127.0.0.1:1883.
    #[arg(long, env = "ROAMCORE_HA_BROKER", value_name = "HOST[:PORT]")]
    pub ha_broker: Option<String>,

    /// Username for Home Assistant's broker.
    #[arg(long, env = "ROAMCORE_HA_USERNAME", value_name = "NAME")]
    pub ha_username: Option<String>,

    /// Password for Home Assistant's broker.
    #[arg(long, env = "ROAMCORE_HA_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub ha_password: Option<String>,

    /// MQTT Discovery prefix that Home Assistant listens on [default: homeassistant].
    #[arg(long, env = "ROAMCORE_DISCOVERY_PREFIX", value_name = "PREFIX")]
    pub discovery_prefix: Option<String>,

    /// Directory for adoption, certificate pins, slots and capabilities [default: /data
    /// under the Supervisor, else $XDG_STATE_HOME/roamcore-victron, else
    /// ~/.local/state/roamcore-victron].
    #[arg(long, env = "ROAMCORE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log level [default: info].
    #[arg(long, env = "ROAMCORE_LOG_LEVEL", value_enum, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// Add-on options file (JSON). Read when present [default: /data/options.json]; a file
    /// named here that cannot be read shows config_error.
    #[arg(long, env = "ROAMCORE_OPTIONS", value_name = "FILE")]
    pub options: Option<PathBuf>,

    /// Health file for `roamcore-victron health`, rewritten every few seconds; give each
    /// daemon on one machine its own [default: /tmp/roamcore-victron/health.json].
    #[arg(long, env = crate::health::PATH_ENV, value_name = "FILE")]
    pub health_file: Option<PathBuf>,

    /// Drop entities whose source has not been seen for this many days, checked once the GX
    /// has sent its full publish and then daily [default: 0, never].
    #[arg(long, env = "ROAMCORE_FORGET_AFTER_DAYS", value_name = "DAYS")]
    pub forget_after_days: Option<u32>,

    /// Turn off throttling and debouncing: every change is published at once (for
    /// latency measurements; do not use in a van).
    #[arg(long, env = "ROAMCORE_NO_THROTTLE", hide = true)]
    pub no_throttle: bool,

    /// Divide every protocol timer (keepalive, staleness, backoff, throttle) by this
    /// factor. Only for tests that need accelerated time.
    #[arg(long, env = "ROAMCORE_TIME_SCALE", hide = true, value_name = "FACTOR")]
    pub time_scale: Option<f64>,
}

/// Parses the command line and runs the subcommand; returns the process exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return err.exit_code();
        }
    };

    match cli.command {
        Command::Run(args) => commands::run::main(*args),
        Command::Simulate(args) => commands::simulate::main(args),
        Command::Demo(args) => commands::demo::main(args),
        Command::Forget(args) => commands::forget::main(args),
        Command::Adopt(args) => commands::adopt::main(args),
        Command::Health(args) => commands::health::main(args),
        Command::Entities(args) => commands::entities::main(args),
        Command::Discover(args) => commands::discover::main(*args),
        Command::SimLan(args) => commands::sim_lan::main(args),
    }
}
