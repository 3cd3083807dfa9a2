//! A simulated GX that replays real captures into an MQTT broker.

pub mod broker;
pub mod capture;
pub mod dbus_mqtt;
pub mod flashmq;
pub mod gx;
pub mod lan;
pub mod protocol;
pub mod replay;
pub mod systemcalc;

/// Flags of `simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Broker to publish into, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<String>,
}
