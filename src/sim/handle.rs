//! The library face of the simulator: start one with [`Simulator::spawn`] and drive its
//! scenarios through the returned [`SimHandle`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::capture::Capture;
use super::protocol::{Counters, Mode};
use super::replay::Rate;
use super::runner;

/// Settings of one simulated GX.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Broker to publish into, `HOST:PORT`.
    pub broker: String,
    pub capture: Capture,
    /// Replaces the capture's portal id (two simulated GX devices need two ids).
    pub portal_id: Option<String>,
    pub mode: Mode,
    /// Divides every Venus timer (heartbeat 3 s, alive 60 s, ...) for fast tests.
    pub time_scale: f64,
    /// Replay speed of recordings and of the snapshot random walk (1 = real time).
    pub speed: f64,
    pub rate: Rate,
    /// Vary the measurements of captures without change events.
    pub vary: bool,
    /// Seed of the random walk, so runs repeat.
    pub seed: u64,
    /// The simulator's own login on the broker.
    pub credentials: Option<(String, String)>,
    /// MQTT client id [default: `venus-sim-<portal id>`].
    pub client_id: Option<String>,
    /// dbus-mqtt mode: one batch of 50 messages per queue run instead of draining the queue.
    pub dbus_mqtt_paced: bool,
    /// Wait between reconnect attempts after the broker went away.
    pub reconnect_delay: Duration,
}

impl SimConfig {
    pub fn new(broker: impl Into<String>, capture: Capture) -> SimConfig {
        SimConfig {
            broker: broker.into(),
            capture,
            portal_id: None,
            mode: Mode::Flashmq,
            time_scale: 1.0,
            speed: 1.0,
            rate: Rate::Natural,
            vary: true,
            seed: 1,
            credentials: None,
            client_id: None,
            dbus_mqtt_paced: false,
            reconnect_delay: Duration::from_millis(500),
        }
    }

    /// Returns the portal id the GX uses: the override, else the capture's.
    pub fn effective_portal_id(&self) -> String {
        self.portal_id
            .clone()
            .unwrap_or_else(|| self.capture.portal_id.clone())
    }
}

/// Scenario and inspection commands, also reachable as control lines (see
/// [`super::control`]).
#[derive(Debug)]
pub enum Command {
    /// Sets one item (`battery/275/Soc`) to a value; `null` makes it invalid.
    Set {
        suffix: String,
        value: Value,
    },
    /// The device leaves: each of its topics is published once with a zero-byte payload.
    RemoveDevice {
        service_type: String,
        instance: String,
    },
    /// The device comes back with the values it had.
    RestoreDevice {
        service_type: String,
        instance: String,
    },
    /// Ends the keepalive session now, as if the last keepalive were 60 s old.
    ExpireKeepalive,
    /// TCP stays up but nothing is published and keepalives are ignored.
    Freeze,
    Thaw,
    /// Drops the broker connection and all session state, stays away for `down`, then
    /// connects again like a GX that rebooted.
    Reboot {
        down: Duration,
    },
    Values(oneshot::Sender<BTreeMap<String, Value>>),
    Stats(oneshot::Sender<SimStats>),
}

/// Counters of the simulator's activity so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStats {
    pub connected: bool,
    /// Successful broker connections (reconnects included).
    pub connects: u64,
    /// Every message published.
    pub published: u64,
    /// Value messages published because a value changed (not full publishes).
    pub change_messages: u64,
    pub alive: bool,
    pub frozen: bool,
    /// Counters of the imitated Venus bridge (keepalives, full publishes, ...).
    pub protocol: Counters,
}

/// A running simulated GX. Dropping the handle stops it.
#[derive(Debug)]
pub struct SimHandle {
    commands: mpsc::Sender<Command>,
    connects: watch::Receiver<u64>,
    portal_id: String,
    task: tokio::task::JoinHandle<()>,
}

pub struct Simulator;

impl Simulator {
    /// Starts a simulated GX on the current tokio runtime; it connects to the broker in
    /// the background and reconnects whenever the connection drops.
    pub fn spawn(config: SimConfig) -> SimHandle {
        let portal_id = config.effective_portal_id();
        let (commands, command_rx) = mpsc::channel(64);
        let (connects_tx, connects) = watch::channel(0);
        let task = tokio::spawn(runner::run(config, command_rx, connects_tx));
        SimHandle {
            commands,
            connects,
            portal_id,
            task,
        }
    }
}

impl SimHandle {
    pub fn portal_id(&self) -> &str {
        &self.portal_id
    }

    async fn send(&self, command: Command) {
        let _ = self.commands.send(command).await;
    }

    /// Waits until the simulator has connected `count` times in total; false on timeout.
    pub async fn wait_connects(&self, count: u64, timeout: Duration) -> bool {
        let mut connects = self.connects.clone();
        tokio::time::timeout(timeout, connects.wait_for(|n| *n >= count))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits for the first connection; false on timeout.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.wait_connects(1, timeout).await
    }

    pub async fn set_value(&self, suffix: &str, value: Value) {
        self.send(Command::Set {
            suffix: suffix.to_string(),
            value,
        })
        .await;
    }

    pub async fn set_null(&self, suffix: &str) {
        self.set_value(suffix, Value::Null).await;
    }

    pub async fn remove_device(&self, service_type: &str, instance: &str) {
        let (service_type, instance) = (service_type.to_string(), instance.to_string());
        self.send(Command::RemoveDevice {
            service_type,
            instance,
        })
        .await;
    }

    pub async fn restore_device(&self, service_type: &str, instance: &str) {
        let (service_type, instance) = (service_type.to_string(), instance.to_string());
        self.send(Command::RestoreDevice {
            service_type,
            instance,
        })
        .await;
    }

    pub async fn expire_keepalive(&self) {
        self.send(Command::ExpireKeepalive).await;
    }

    pub async fn freeze(&self) {
        self.send(Command::Freeze).await;
    }

    pub async fn thaw(&self) {
        self.send(Command::Thaw).await;
    }

    pub async fn reboot(&self, down: Duration) {
        self.send(Command::Reboot { down }).await;
    }

    /// Sends a command built elsewhere (the CLI's control lines).
    pub async fn command(&self, command: Command) {
        self.send(command).await;
    }

    /// Returns the GX's current values, topic suffix to value: the truth to compare against.
    pub async fn values(&self) -> BTreeMap<String, Value> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Values(tx)).await;
        rx.await.unwrap_or_default()
    }

    /// Returns the current value of one topic suffix.
    pub async fn value(&self, suffix: &str) -> Option<Value> {
        self.values().await.remove(suffix)
    }

    pub async fn stats(&self) -> SimStats {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stats(tx)).await;
        rx.await.unwrap_or_default()
    }

    /// Stops the simulator and closes its broker connection.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
