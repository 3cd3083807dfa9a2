//! The simulator task: one broker connection, the Venus bridge state machine, the value
//! table and the replay, driven by timers, broker messages and scenario commands.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::gx::{Change, Gx};
use super::handle::{Command, SimConfig, SimStats};
use super::protocol::{Now, Protocol, Publish, Timers};
use super::replay::Replay;

/// Outgoing requests rumqttc buffers before `publish` waits.
const REQUEST_CAPACITY: usize = 1024;

/// Event reported by the connection task, tagged with its session number.
#[derive(Debug)]
enum LinkEvent {
    Connected,
    Message { topic: String, payload: Vec<u8> },
    Disconnected(String),
}

struct Session {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    number: u64,
    connected: bool,
}

struct Runner {
    config: SimConfig,
    portal_id: String,
    gx: Gx,
    protocol: Protocol,
    replay: Replay,
    session: Option<Session>,
    sessions_opened: u64,
    reconnect_at: Option<Instant>,
    frozen: bool,
    stats: SimStats,
    connects: watch::Sender<u64>,
    link_tx: mpsc::UnboundedSender<(u64, LinkEvent)>,
}

/// Runs a simulated GX until the command channel closes.
pub async fn run(
    config: SimConfig,
    mut commands: mpsc::Receiver<Command>,
    connects: watch::Sender<u64>,
) {
    let portal_id = config.effective_portal_id();
    let now = Instant::now();
    let gx = Gx::from_capture(&config.capture, &portal_id);
    let timers = Timers::scaled(config.time_scale);
    let protocol = Protocol::new(config.mode, &portal_id, timers, config.dbus_mqtt_paced, now);
    let replay = Replay::new(
        &config.capture,
        &gx,
        config.speed,
        config.rate,
        config.vary,
        config.seed,
        now,
    );
    let (link_tx, mut link_rx) = mpsc::unbounded_channel();
    info!(
        capture = %config.capture.name,
        portal_id,
        broker = %config.broker,
        mode = ?config.mode,
        items = gx.item_count(),
        "simulated GX starting"
    );

    let mut runner = Runner {
        config,
        portal_id,
        gx,
        protocol,
        replay,
        session: None,
        sessions_opened: 0,
        reconnect_at: Some(now),
        frozen: false,
        stats: SimStats::default(),
        connects,
        link_tx,
    };

    loop {
        runner.open_session_if_due();
        let deadline = runner.next_deadline();
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => runner.handle_command(command).await,
                None => break,
            },
            Some((number, event)) = link_rx.recv() => runner.handle_link(number, event).await,
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        runner.tick().await;
    }
    runner.close_session();
}

impl Runner {
    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let reconnect = if self.session.is_none() {
            self.reconnect_at
        } else {
            None
        };
        [
            self.protocol.next_deadline(),
            self.replay.next_deadline(now),
            reconnect,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + Duration::from_secs(3600))
    }

    fn open_session_if_due(&mut self) {
        if self.session.is_some() || self.reconnect_at.is_none_or(|at| Instant::now() < at) {
            return;
        }
        self.reconnect_at = None;
        let Some((host, port)) = split_host_port(&self.config.broker) else {
            warn!(broker = %self.config.broker, "invalid broker address, expected HOST:PORT");
            return;
        };

        let client_id = self
            .config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("venus-sim-{}", self.portal_id));
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        if let Some((user, password)) = &self.config.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);

        self.sessions_opened += 1;
        let number = self.sessions_opened;
        let link = self.link_tx.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => LinkEvent::Connected,
                    Ok(Event::Incoming(Packet::Publish(publish))) => LinkEvent::Message {
                        topic: publish.topic.clone(),
                        payload: publish.payload.to_vec(),
                    },
                    Ok(_) => continue,
                    Err(err) => {
                        let _ = link.send((number, LinkEvent::Disconnected(err.to_string())));
                        return;
                    }
                };
                if link.send((number, event)).is_err() {
                    return;
                }
            }
        });
        self.session = Some(Session {
            client,
            task,
            number,
            connected: false,
        });
    }

    fn close_session(&mut self) {
        if let Some(session) = self.session.take() {
            session.task.abort();
        }
        self.stats.connected = false;
    }

    async fn handle_link(&mut self, number: u64, event: LinkEvent) {
        let current = self.session.as_ref().is_some_and(|s| s.number == number);
        if !current {
            return;
        }
        match event {
            LinkEvent::Connected => {
                let session = self.session.as_mut().expect("current session");
                session.connected = true;
                let client = session.client.clone();
                for prefix in ["R", "W"] {
                    let filter = format!("{prefix}/{}/#", self.portal_id);
                    let _ = client.subscribe(filter, QoS::AtMostOnce).await;
                }
                self.stats.connected = true;
                self.stats.connects += 1;
                info!(portal_id = %self.portal_id, broker = %self.config.broker, "simulated GX connected");
                let out = self.protocol.on_connect(&self.gx, Now::system());
                self.publish(out).await;
                // Reported after the start-up messages are handed to the client, so a
                // waiter can count on them being sent.
                self.connects.send_replace(self.stats.connects);
            }
            LinkEvent::Message { topic, payload } => self.handle_message(&topic, &payload).await,
            LinkEvent::Disconnected(reason) => {
                if self.stats.connected {
                    warn!(portal_id = %self.portal_id, reason, "simulated GX lost the broker");
                } else {
                    debug!(portal_id = %self.portal_id, reason, "simulated GX could not connect");
                }
                self.close_session();
                self.reconnect_at = Some(Instant::now() + self.config.reconnect_delay);
            }
        }
    }

    async fn handle_message(&mut self, topic: &str, payload: &[u8]) {
        if self.frozen {
            return;
        }
        let mut parts = topic.splitn(3, '/');
        let (Some(action), Some(portal), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if portal != self.portal_id {
            return;
        }
        match action {
            "R" => {
                let out = self
                    .protocol
                    .on_request(&self.gx, Now::system(), rest, payload);
                self.publish(out).await;
            }
            "W" => self.write(rest, payload).await,
            _ => {}
        }
    }

    /// Applies a write request `{"value": x}` to an existing item, as the GX does.
    async fn write(&mut self, suffix: &str, payload: &[u8]) {
        let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        let Some(value) = object.remove("value") else {
            return;
        };
        if self.gx.get(suffix).is_none() {
            return;
        }
        let changes = self.gx.set(suffix, value);
        self.publish_changes(&changes).await;
    }

    async fn handle_command(&mut self, command: Command) {
        match command {
            Command::Set { suffix, value } => {
                let changes = self.gx.set(&suffix, value);
                self.publish_changes(&changes).await;
            }
            Command::RemoveDevice {
                service_type,
                instance,
            } => {
                let changes = self.gx.remove_service(&service_type, &instance);
                if changes.is_empty() {
                    warn!(service_type, instance, "device not found, nothing removed");
                    return;
                }
                info!(
                    service_type,
                    instance,
                    topics = changes.len(),
                    "device leaves"
                );
                self.publish_changes(&changes).await;
            }
            Command::RestoreDevice {
                service_type,
                instance,
            } => {
                let changes = self.gx.restore_service(&service_type, &instance);
                if changes.is_empty() {
                    warn!(
                        service_type,
                        instance, "device was not removed, nothing restored"
                    );
                    return;
                }
                info!(
                    service_type,
                    instance,
                    topics = changes.len(),
                    "device returns"
                );
                self.publish_changes(&changes).await;
            }
            Command::ExpireKeepalive => {
                info!("keepalive session expired by command");
                let out = self.protocol.expire_now(&self.gx, Now::system());
                self.publish(out).await;
            }
            Command::Freeze => {
                info!("frozen: no messages out, requests ignored");
                self.frozen = true;
            }
            Command::Thaw => {
                info!("thawed");
                self.frozen = false;
            }
            Command::Reboot { down } => {
                info!(
                    down_secs = down.as_secs_f64(),
                    "rebooting: broker connection dropped"
                );
                self.close_session();
                self.frozen = false;
                self.reconnect_at = Some(Instant::now() + down);
            }
            Command::Values(reply) => {
                let _ = reply.send(self.gx.values());
            }
            Command::Stats(reply) => {
                let mut stats = self.stats.clone();
                stats.alive = self.protocol.is_alive(Instant::now());
                stats.frozen = self.frozen;
                stats.protocol = self.protocol.counters();
                let _ = reply.send(stats);
            }
        }
    }

    /// Runs due timers and value changes.
    async fn tick(&mut self) {
        let now = Now::system();
        let out = self.protocol.on_tick(&self.gx, now);
        self.publish(out).await;

        let due = self.replay.due(now.instant);
        if !due.is_empty() {
            let changes = self.gx.set_many(due);
            self.publish_changes(&changes).await;
        }

        let owed = self.replay.owed(now.instant);
        let mut changes = Vec::new();
        while changes.len() < owed {
            let Some((suffix, value)) = self.replay.next_varied() else {
                break;
            };
            changes.extend(self.gx.set_recorded(&suffix, value));
        }
        if owed > 0 {
            self.replay.spend(changes.len());
            self.publish_changes(&changes).await;
        }
    }

    async fn publish_changes(&mut self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let out = self.protocol.on_changes(&self.gx, Now::system(), changes);
        if !self.frozen && self.stats.connected {
            self.stats.change_messages += out.len() as u64;
        }
        self.publish(out).await;
    }

    /// Sends messages over the current connection. Nothing is queued while the broker is
    /// away or the GX is frozen: those messages are lost, as on a real GX.
    async fn publish(&mut self, out: Vec<Publish>) {
        if out.is_empty() || self.frozen {
            return;
        }
        let Some(session) = self.session.as_ref().filter(|s| s.connected) else {
            return;
        };
        let client = session.client.clone();
        for message in out {
            let result = client
                .publish(
                    message.topic,
                    QoS::AtMostOnce,
                    message.retain,
                    message.payload,
                )
                .await;
            if result.is_err() {
                return;
            }
            self.stats.published += 1;
        }
    }
}

/// `("host", port)` from `HOST:PORT` or `[v6]:PORT`.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}
