//! A simulated GX that replaces hardware in tests, benchmarks and the demo.
//!
//! It is an MQTT client that publishes a real capture into a broker the way Venus OS
//! does. The pieces, from data to wire:
//!
//! * [`capture`] loads the recordings (embedded in the binary) and [`gx`] keeps the
//!   current value of every D-Bus item, computing `system/0` with [`systemcalc`] when the
//!   recording has none;
//! * [`replay`] changes values over time;
//! * [`flashmq`] and [`dbus_mqtt`] imitate the two Venus OS MQTT bridges as state
//!   machines without I/O, behind [`protocol::Protocol`];
//! * [`runner`] is the task around them, and [`handle`] its library API
//!   ([`Simulator::spawn`] returns a [`SimHandle`]); [`control`] parses the CLI's control
//!   lines;
//! * [`broker`] is the embedded MQTT broker the demo uses.
//!
//! docs/SIMULATOR.md describes the behaviour and the computed paths.

pub mod broker;
pub mod capture;
pub mod control;
pub mod dbus_mqtt;
pub mod flashmq;
pub mod gx;
pub mod handle;
pub mod lan;
pub mod protocol;
pub mod replay;
pub mod runner;
pub mod systemcalc;

pub use handle::{Command, SimConfig, SimHandle, SimStats, Simulator};
pub use protocol::Mode;
pub use replay::Rate;

/// Control lines of `simulate`, shown by `--help`.
const CONTROL_HELP: &str = "\
Control lines (standard input, or --at SECONDS:LINE):
  set TYPE/INSTANCE/PATH JSON   set an item, e.g. set battery/275/Soc 55.5
  null TYPE/INSTANCE/PATH       make an item invalid ({\"value\": null})
  remove TYPE/INSTANCE          the device leaves: its topics get zero-byte payloads
  restore TYPE/INSTANCE         the device returns with its values
  expire                        end the keepalive session now
  freeze | thaw                 stop or resume all output; TCP stays up, requests ignored
  reboot [SECONDS]              drop the connection and session, reconnect after SECONDS [10]
  status                        log the counters
  quit                          stop

A broker that does not run stands for a GX with MQTT disabled.";

/// Flags of `simulate`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = CONTROL_HELP)]
pub struct SimArgs {
    /// Broker to publish into, HOST:PORT [default: 127.0.0.1:1883].
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<String>,

    /// Capture to replay [default: boat]: a name (boat, demo1, demo1-dbus, ess, boat-recorder,
    /// bmv, yacht35, simple-boat, multirs, gui-demo; see --list-captures). A path works too:
    /// a Signal K plugin .log/.jsonl (MQTT or D-Bus lines), a dbus-recorder .csv or a folder.
    #[arg(long, value_name = "NAME|PATH")]
    pub capture: Option<String>,

    /// Print the named captures and exit.
    #[arg(long)]
    pub list_captures: bool,

    /// Portal id to publish under (one topic level; a real one is 12 letters or digits)
    /// [default: the capture's].
    #[arg(long, value_name = "ID")]
    pub portal_id: Option<String>,

    /// Venus OS MQTT bridge to imitate: flashmq (Venus >= 3.20) or dbus-mqtt (older).
    #[arg(long, value_enum, default_value = "flashmq")]
    pub mode: Mode,

    /// Replay speed of recordings and of the snapshot value variation (2 = twice as fast).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0)]
    pub speed: f64,

    /// Value messages per second: a number (measurements varied round-robin), max (as fast
    /// as the broker takes them) or natural (the recording's own timing).
    #[arg(long, value_name = "N|max|natural", default_value = "natural")]
    pub rate: Rate,

    /// Do not vary the values of captures that have no recorded changes.
    #[arg(long)]
    pub no_vary: bool,

    /// Seed of the value variation, for repeatable runs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Username of the simulator's own broker login.
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,

    /// Password of the simulator's own broker login.
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,

    /// Divide the Venus timers (heartbeat 3 s, alive 60 s, dbus-mqtt queue 1.5 s and expiry
    /// 60 s) by this factor, for tests that cannot wait.
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0)]
    pub time_scale: f64,

    /// dbus-mqtt mode: send one batch of 50 messages per queue run (>= 1.5 s apart) instead
    /// of draining the queue in batches of 50 as dbus-mqtt v1.36 does.
    #[arg(long)]
    pub dbus_mqtt_paced: bool,

    /// Scenario preset, repeatable. device-leaves: the first battery monitor leaves at
    /// 20 s and returns at 40 s. null-soc: system/0/Dc/Battery/Soc turns null at 20 s.
    /// reboot: GX reboot at 20 s, 10 s down. expire: the keepalive session ends at 20 s.
    /// freeze: frozen from 20 s to 50 s. Times are wall-clock seconds after start.
    #[arg(long, value_name = "NAME")]
    pub scenario: Vec<String>,

    /// Run a control line at a time, repeatable: SECONDS:LINE, e.g. "30:remove battery/275".
    /// The same lines are read from standard input; see docs/SIMULATOR.md.
    #[arg(long = "at", value_name = "SECONDS:LINE")]
    pub at: Vec<String>,

    /// Log level [default: info].
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub log_level: Option<crate::cli::LogLevel>,
}
