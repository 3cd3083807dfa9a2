//! One MQTT connection that never gives up: a task that drives rumqttc's event loop,
//! reconnects with capped, jittered backoff, and hands events to the engine over a
//! bounded channel (so a slow engine slows the socket instead of growing memory).
//! A refused connection has a lower cap of its own: the attempt costs one round trip,
//! and a rebooted GX or restarted broker should be found within seconds of coming back.
//!
//! rumqttc notes that shape this: its `poll` reconnects immediately after an error, so
//! the backoff sleep is ours; subscriptions are not restored on a new clean session, so
//! the engine resubscribes on every `Connected`; a half-open link is detected when the
//! second PINGREQ is due without a PINGRESP, so the keepalive is kept short (15 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, QoS, StateError, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::gx::tls::{is_pin_mismatch, PinningVerifier};

/// Everything needed to (re)connect one link.
#[derive(Clone)]
pub struct LinkConfig {
    /// Short name for log lines: `gx` or `ha`.
    pub name: &'static str,
    pub client_id: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<(Arc<rustls::ClientConfig>, Arc<PinningVerifier>)>,
    pub keep_alive: Duration,
    pub connect_timeout: Duration,
    pub max_incoming: usize,
    pub max_outgoing: usize,
    pub last_will: Option<LastWill>,
    pub reconnect: (Duration, Duration),
    /// Largest reconnect delay after the connection was refused (nothing listening).
    pub reconnect_refused_max: Duration,
    /// Wait at least this long before retrying after the broker rejected our login.
    pub auth_retry: Duration,
}

impl LinkConfig {
    pub fn address(&self) -> String {
        crate::config::HostPort { host: self.host.clone(), port: Some(self.port) }.to_string()
    }

    fn options(&self) -> MqttOptions {
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        options.set_keep_alive(self.keep_alive.max(Duration::from_secs(1)));
        options.set_clean_session(true);
        options.set_max_packet_size(self.max_incoming, self.max_outgoing);
        if let Some(will) = &self.last_will {
            options.set_last_will(will.clone());
        }
        match (&self.username, &self.password) {
            (Some(user), password) => {
                options.set_credentials(user.clone(), password.clone().unwrap_or_default());
            }
            // FlashMQ on Venus ignores the user name; a password alone still needs one.
            (None, Some(password)) => {
                options.set_credentials("roamcore", password.clone());
            }
            (None, None) => {}
        }
        if let Some((config, _)) = &self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config.clone())));
        }
        options
    }
}

/// Why a connection attempt or a connection failed, in the terms the engine acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The broker rejected our credentials (CONNACK 4 or 5).
    Auth,
    /// The TLS certificate is not the pinned one.
    PinMismatch,
    /// Another TLS failure (for instance a plain broker on a TLS port).
    Tls(String),
    /// Nothing listens on the port.
    Refused,
    /// TCP connect or CONNACK timed out (a blackholed route, or a broker that accepts
    /// TCP and never answers CONNECT).
    Timeout,
    /// The host or its network cannot be reached (no ARP reply, no route).
    Unreachable,
    /// The broker stopped answering pings: a half-open link.
    Dead,
    /// The broker closed or reset the connection (it stopped, restarted or dropped us).
    PeerClosed,
    /// The connection closed.
    Closed(String),
}

impl LinkError {
    pub fn describe(&self) -> String {
        match self {
            LinkError::Auth => "login rejected (wrong or missing username/password)".into(),
            LinkError::PinMismatch => "TLS certificate differs from the pinned one".into(),
            LinkError::Tls(e) => format!("TLS handshake failed: {e} (does the port speak TLS? a GX serves TLS on 8883, plain MQTT on 1883)"),
            LinkError::Refused => "connection refused (nothing listens on that port)".into(),
            LinkError::Timeout => "timed out (no answer to TCP connect or MQTT CONNECT)".into(),
            LinkError::Unreachable => "no route to the host (it is off, or not on this network)".into(),
            LinkError::Dead => "no answer to MQTT pings (half-open connection)".into(),
            LinkError::PeerClosed => "the broker closed the connection".into(),
            LinkError::Closed(e) => format!("connection closed: {e}"),
        }
    }

    /// A short key for rate-limited logging of repeats.
    pub fn kind(&self) -> &'static str {
        match self {
            LinkError::Auth => "auth",
            LinkError::PinMismatch => "pin",
            LinkError::Tls(_) => "tls",
            LinkError::Refused => "refused",
            LinkError::Timeout => "timeout",
            LinkError::Unreachable => "unreachable",
            LinkError::Dead => "dead",
            LinkError::PeerClosed => "peer_closed",
            LinkError::Closed(_) => "closed",
        }
    }
}

/// tokio-rustls reports certificate failures as I/O errors wrapping the rustls error.
fn wrapped_pin_mismatch(error: &std::io::Error) -> bool {
    error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).is_some_and(is_pin_mismatch)
}

fn unreachable(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(error.kind(), ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable)
}

/// Returns true when the other side ended the connection: it closed the stream or reset it.
fn closed_by_peer(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
    )
}

fn classify(error: &ConnectionError) -> LinkError {
    match error {
        ConnectionError::Tls(rumqttc::TlsError::Io(e)) | ConnectionError::Io(e) if wrapped_pin_mismatch(e) => {
            LinkError::PinMismatch
        }
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => LinkError::Auth,
        ConnectionError::ConnectionRefused(code) => LinkError::Closed(format!("CONNACK refused: {code:?}")),
        ConnectionError::Tls(rumqttc::TlsError::TLS(e)) if is_pin_mismatch(e) => LinkError::PinMismatch,
        ConnectionError::Tls(rumqttc::TlsError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            LinkError::Refused
        }
        ConnectionError::Io(e) | ConnectionError::Tls(rumqttc::TlsError::Io(e)) if unreachable(e) => {
            LinkError::Unreachable
        }
        ConnectionError::Tls(e) => LinkError::Tls(e.to_string()),
        ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => LinkError::Refused,
        ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => LinkError::Timeout,
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => LinkError::Timeout,
        ConnectionError::MqttState(StateError::AwaitPingResp) => LinkError::Dead,
        // rumqttc 0.25 reports the end of the stream (the broker closed the socket) as
        // `ConnectionAborted`.
        ConnectionError::MqttState(StateError::ConnectionAborted) => LinkError::PeerClosed,
        ConnectionError::MqttState(StateError::Io(e)) | ConnectionError::Io(e) if closed_by_peer(e) => {
            LinkError::PeerClosed
        }
        // The packet reader wraps socket errors as well: a reset is not a protocol fault.
        ConnectionError::MqttState(StateError::Deserialization(rumqttc::mqttbytes::Error::Io(e))) if closed_by_peer(e) => {
            LinkError::PeerClosed
        }
        ConnectionError::MqttState(StateError::Deserialization(_)) | ConnectionError::NotConnAck(_) => {
            LinkError::Closed("the other side does not speak MQTT (invalid reply); check the address and port".into())
        }
        ConnectionError::Io(e) if e.to_string().contains("failed to lookup address") => {
            LinkError::Closed("cannot resolve the host name; check the address".into())
        }
        other => LinkError::Closed(other.to_string()),
    }
}

#[derive(Debug)]
pub enum LinkEvent {
    Connected,
    Message { topic: String, payload: rumqttc::Publish },
    Disconnected(LinkError),
    /// The broker acknowledged one of our QoS 1 publishes.
    Acked,
    /// Our DISCONNECT went out (shutdown).
    Closed,
}

enum Control {
    Retarget(Box<LinkConfig>),
    Stop,
}

/// The engine's end of a link.
pub struct Link {
    pub client: AsyncClient,
    pub events: mpsc::Receiver<LinkEvent>,
    control: mpsc::Sender<Control>,
}

impl Link {
    /// Connects to another broker, or the same one with new credentials, dropping the
    /// current connection.
    pub fn retarget(&self, config: LinkConfig) {
        let _ = self.control.try_send(Control::Retarget(Box::new(config)));
    }

    /// Stops connecting (the pump task ends).
    pub fn stop(&self) {
        let _ = self.control.try_send(Control::Stop);
    }
}

/// Starts the pump task for a link. `request_capacity` bounds queued outgoing requests.
pub fn spawn(config: LinkConfig, request_capacity: usize, event_capacity: usize) -> Link {
    let (client, eventloop) = AsyncClient::new(config.options(), request_capacity);
    let (events_tx, events) = mpsc::channel(event_capacity);
    let (control, control_rx) = mpsc::channel(4);
    tokio::spawn(pump(config, eventloop, events_tx, control_rx));
    Link { client, events, control }
}

async fn pump(
    mut config: LinkConfig,
    mut eventloop: EventLoop,
    events: mpsc::Sender<LinkEvent>,
    mut control: mpsc::Receiver<Control>,
) {
    let mut backoff = Backoff::new(config.reconnect.0, config.reconnect.1);
    let mut refused_backoff = Backoff::new(config.reconnect.0, config.reconnect_refused_max);
    let mut connected_at: Option<Instant> = None;
    set_network_timeout(&mut eventloop, &config);

    loop {
        let polled = tokio::select! {
            message = control.recv() => {
                match message {
                    Some(Control::Retarget(new_config)) => {
                        config = *new_config;
                        eventloop.mqtt_options = config.options();
                        set_network_timeout(&mut eventloop, &config);
                        eventloop.clean();
                        backoff.reset();
                        refused_backoff.reset();
                        if connected_at.take().is_some()
                            && events.send(LinkEvent::Disconnected(LinkError::Closed("switching broker".into()))).await.is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    Some(Control::Stop) | None => return,
                }
            }
            polled = eventloop.poll() => polled,
        };

        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected_at = Some(Instant::now());
                if events.send(LinkEvent::Connected).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let topic = publish.topic.clone();
                if events.send(LinkEvent::Message { topic, payload: publish }).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                if events.send(LinkEvent::Acked).await.is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = events.send(LinkEvent::Closed).await;
                return;
            }
            Ok(_) => {}
            Err(error) => {
                let link_error = classify(&error);
                tracing::debug!(link = config.name, error = %error, "MQTT connection error");
                // A connection that stayed up a while earns a fresh backoff; one that
                // drops right after connecting keeps growing it.
                if connected_at.take().is_some_and(|at| at.elapsed() >= Duration::from_secs(30)) {
                    backoff.reset();
                    refused_backoff.reset();
                }
                let mut delay = match link_error {
                    LinkError::Refused => refused_backoff.next_delay(),
                    _ => backoff.next_delay(),
                };
                if link_error == LinkError::Auth {
                    delay = delay.max(config.auth_retry);
                }
                if events.send(LinkEvent::Disconnected(link_error)).await.is_err() {
                    return;
                }

                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    message = control.recv() => match message {
                        Some(Control::Retarget(new_config)) => {
                            config = *new_config;
                            eventloop.mqtt_options = config.options();
                            set_network_timeout(&mut eventloop, &config);
                            eventloop.clean();
                            backoff.reset();
                            refused_backoff.reset();
                        }
                        Some(Control::Stop) | None => return,
                    },
                }
            }
        }
    }
}

fn set_network_timeout(eventloop: &mut EventLoop, config: &LinkConfig) {
    let mut network = eventloop.network_options();
    network.set_connection_timeout(config.connect_timeout.as_secs().max(1));
    eventloop.set_network_options(network);
}

/// QoS for everything we publish: at least once, so retained discovery and states are not
/// lost on a flaky link.
pub const QOS: QoS = QoS::AtLeastOnce;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn io_error_kinds() {
        let io = |kind| classify(&ConnectionError::Io(Error::from(kind)));
        assert_eq!(io(ErrorKind::ConnectionRefused), LinkError::Refused);
        assert_eq!(io(ErrorKind::TimedOut), LinkError::Timeout);
        assert_eq!(io(ErrorKind::HostUnreachable), LinkError::Unreachable);
        assert_eq!(io(ErrorKind::NetworkUnreachable), LinkError::Unreachable);
        assert_eq!(io(ErrorKind::ConnectionReset), LinkError::PeerClosed);
        assert_eq!(io(ErrorKind::BrokenPipe), LinkError::PeerClosed);
        assert_eq!(io(ErrorKind::UnexpectedEof), LinkError::PeerClosed);
        let wrapped = rumqttc::mqttbytes::Error::Io(Error::from(ErrorKind::ConnectionReset));
        let reset_while_reading = classify(&ConnectionError::MqttState(StateError::Deserialization(wrapped)));
        assert_eq!(reset_while_reading, LinkError::PeerClosed);
        let tls = classify(&ConnectionError::Tls(rumqttc::TlsError::Io(Error::from(ErrorKind::HostUnreachable))));
        assert_eq!(tls, LinkError::Unreachable);
    }

    #[test]
    fn peer_close_is_plain() {
        let aborted = classify(&ConnectionError::MqttState(StateError::ConnectionAborted));
        assert_eq!(aborted, LinkError::PeerClosed);
        let reset = classify(&ConnectionError::MqttState(StateError::Io(Error::from(ErrorKind::ConnectionReset))));
        assert_eq!(reset, LinkError::PeerClosed);
        assert_eq!(aborted.describe(), "the broker closed the connection");
        assert!(!aborted.describe().contains("Mqtt state"));
    }
}
