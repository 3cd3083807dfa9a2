//! A small in-process MQTT 3.1.1 broker, so the demo runs with nothing but this binary.
//!
//! rumqttd 0.20 was tried first and rejected: a QoS 1 subscription whose filter matched 500
//! retained messages received only 100 of them, because its router drops the retained
//! messages that do not fit the connection's free in-flight slots. A Home Assistant broker
//! keeps more retained discovery and state messages than that.
//!
//! Supported: CONNECT/CONNACK with optional username and password, SUBSCRIBE and
//! UNSUBSCRIBE with `+` and `#`, retained messages, last will, PINGREQ and the keepalive
//! timeout. PUBLISH works at QoS 0 and 1; QoS 2 from clients is accepted and delivered at
//! QoS 1.
//! One tokio task reads each connection and one writes it.
//!
//! NOTE: sessions are always clean (no state kept for `clean_session = false`), QoS 1
//! deliveries are not retransmitted, and a connection whose queue holds
//! [`router::QUEUE_CAPACITY`] messages loses newer ones. That fits a demo in one process,
//! not a production broker.

pub mod codec;
pub mod router;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info};

use codec::{read_packet, CodecError, Connect, Packet, Publish, QoS};
use router::{Outbound, Router, QUEUE_CAPACITY};

/// How long a new connection may take to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the embedded broker.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// Require this username and password; anonymous logins are then rejected.
    pub credentials: Option<(String, String)>,
}

/// A running broker. Dropping the handle stops it and closes every connection.
pub struct BrokerHandle {
    addr: SocketAddr,
    router: Arc<Mutex<Router>>,
    shutdown: watch::Sender<bool>,
}

impl BrokerHandle {
    /// Returns the address the broker listens on, with the real port when port 0 was given.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of retained messages held.
    pub fn retained_count(&self) -> usize {
        self.router.lock().expect("router lock").retained_count()
    }

    /// Number of connected clients.
    pub fn connection_count(&self) -> usize {
        self.router.lock().expect("router lock").connection_count()
    }

    /// Messages dropped because a subscriber's queue was full.
    pub fn dropped_count(&self) -> u64 {
        self.router.lock().expect("router lock").dropped
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Starts a broker on `bind` (port 0 picks a free port) without authentication.
pub async fn start_broker(bind: SocketAddr) -> anyhow::Result<BrokerHandle> {
    start_broker_with(bind, BrokerOptions::default()).await
}

/// Starts a broker on `bind` with `options`. Must run inside a tokio runtime.
pub async fn start_broker_with(
    bind: SocketAddr,
    options: BrokerOptions,
) -> anyhow::Result<BrokerHandle> {
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("embedded MQTT broker: failed to listen on {bind}"))?;
    let addr = listener.local_addr()?;
    let router = Arc::new(Mutex::new(Router::default()));
    let (shutdown, shutdown_rx) = watch::channel(false);

    let accept_router = router.clone();
    let options = Arc::new(options);
    tokio::spawn(async move {
        let mut shutdown_rx = shutdown_rx;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve(
                            stream,
                            peer,
                            accept_router.clone(),
                            options.clone(),
                            shutdown_rx.clone(),
                        ));
                    }
                    Err(err) => {
                        debug!(error = %err, "embedded broker: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown_rx.changed() => return,
            }
        }
    });

    info!(%addr, "embedded MQTT broker listening");
    Ok(BrokerHandle {
        addr,
        router,
        shutdown,
    })
}

/// Runs one client connection from CONNECT to close.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    router: Arc<Mutex<Router>>,
    options: Arc<BrokerOptions>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);

    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut reader)).await {
        Ok(Ok(Packet::Connect(connect))) => connect,
        Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
            debug!(%peer, "embedded broker: no valid CONNECT, closing");
            return;
        }
    };

    if let Some(code) = reject_code(&connect, &options) {
        let mut bytes = Vec::new();
        codec::encode(
            &Packet::ConnAck {
                session_present: false,
                code,
            },
            &mut bytes,
        );
        let _ = write_half.write_all(&bytes).await;
        return;
    }

    let client_id = if connect.client_id.is_empty() {
        format!("auto-{peer}")
    } else {
        connect.client_id.clone()
    };
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let kick = Arc::new(Notify::new());
    let connection_id =
        router
            .lock()
            .expect("router lock")
            .connect(&client_id, tx.clone(), kick.clone());
    tokio::spawn(write_loop(rx, write_half));
    let _ = tx.try_send(Outbound::Packet(Packet::ConnAck {
        session_present: false,
        code: 0,
    }));
    debug!(%peer, client_id, "embedded broker: client connected");

    // MQTT 3.1.1, 3.1.2.10: the server closes a connection silent for 1.5 keepalives.
    let idle_limit = match connect.keep_alive_secs {
        0 => Duration::from_secs(24 * 3600),
        secs => Duration::from_millis(u64::from(secs) * 1500),
    };
    let mut clean_close = false;
    loop {
        let packet = tokio::select! {
            read = tokio::time::timeout(idle_limit, read_packet(&mut reader)) => read,
            _ = kick.notified() => break,
            _ = shutdown.changed() => break,
        };
        let packet = match packet {
            Ok(Ok(packet)) => packet,
            Ok(Err(CodecError::Closed)) => break,
            Ok(Err(err)) => {
                debug!(%peer, client_id, error = %err, "embedded broker: closing connection");
                break;
            }
            Err(_) => {
                debug!(%peer, client_id, "embedded broker: keepalive timeout");
                break;
            }
        };
        if matches!(packet, Packet::Disconnect) {
            clean_close = true;
            break;
        }
        handle_packet(packet, &client_id, &router, &tx);
    }

    let mut router = router.lock().expect("router lock");
    router.disconnect(&client_id, connection_id);
    if !clean_close {
        if let Some(will) = connect.will {
            router.route(&Publish {
                topic: will.topic,
                payload: will.payload,
                qos: will.qos,
                retain: will.retain,
                dup: false,
                pkid: 0,
            });
        }
    }
    let _ = tx.try_send(Outbound::Close);
}

/// The CONNACK return code that rejects this CONNECT, if any.
fn reject_code(connect: &Connect, options: &BrokerOptions) -> Option<u8> {
    if connect.protocol_level != 3 && connect.protocol_level != 4 {
        return Some(1);
    }
    if connect.client_id.is_empty() && !connect.clean_session {
        return Some(2);
    }
    if let Some((user, password)) = &options.credentials {
        let given_user = connect.username.as_deref();
        let given_password = connect.password.as_deref();
        if given_user != Some(user.as_str()) || given_password != Some(password.as_bytes()) {
            return Some(if given_user.is_none() { 5 } else { 4 });
        }
    }
    None
}

fn handle_packet(
    packet: Packet,
    client_id: &str,
    router: &Mutex<Router>,
    tx: &mpsc::Sender<Outbound>,
) {
    let reply = |packet| {
        let _ = tx.try_send(Outbound::Packet(packet));
    };
    match packet {
        Packet::Publish(publish) => {
            match publish.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => reply(Packet::PubAck(publish.pkid)),
                QoS::ExactlyOnce => reply(Packet::PubRec(publish.pkid)),
            }
            router.lock().expect("router lock").route(&publish);
        }
        Packet::PubRel(pkid) => reply(Packet::PubComp(pkid)),
        Packet::Subscribe { pkid, filters } => {
            let (codes, retained) = router
                .lock()
                .expect("router lock")
                .subscribe(client_id, &filters);
            reply(Packet::SubAck { pkid, codes });
            for publish in retained {
                reply(Packet::Publish(publish));
            }
        }
        Packet::Unsubscribe { pkid, filters } => {
            router
                .lock()
                .expect("router lock")
                .unsubscribe(client_id, &filters);
            reply(Packet::UnsubAck(pkid));
        }
        Packet::PingReq => reply(Packet::PingResp),
        // Acknowledgements of our QoS 1 deliveries: nothing is retransmitted, so nothing
        // to release.
        Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
        Packet::Connect(_) | Packet::ConnAck { .. } | Packet::SubAck { .. } => {}
        Packet::UnsubAck(_) | Packet::PingResp | Packet::Disconnect => {}
    }
}

/// Writes queued packets, batching whatever is ready into one write. Assigns packet ids to
/// QoS 1 deliveries.
async fn write_loop(mut rx: mpsc::Receiver<Outbound>, mut socket: OwnedWriteHalf) {
    let mut next_pkid: u16 = 0;
    let mut buffer = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut closing = false;
        let mut next = Some(first);
        while let Some(outbound) = next.take() {
            match outbound {
                Outbound::Close => {
                    closing = true;
                    break;
                }
                Outbound::Packet(Packet::Publish(mut publish))
                    if publish.qos != QoS::AtMostOnce =>
                {
                    next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                    publish.pkid = next_pkid;
                    codec::encode(&Packet::Publish(publish), &mut buffer);
                }
                Outbound::Packet(packet) => codec::encode(&packet, &mut buffer),
            }
            if buffer.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if socket.write_all(&buffer).await.is_err() {
            return;
        }
        buffer.clear();
        if closing {
            let _ = socket.shutdown().await;
            return;
        }
    }
}
