//! A TCP proxy on 127.0.0.1 that a test can freeze, to imitate a router that reboots.
//!
//! While frozen, the proxy forwards no bytes in either direction and closes nothing, so
//! both ends see a silent link rather than a refused or reset one: the same as packets
//! being dropped. New connections are accepted by the kernel as usual, but nothing is
//! forwarded for them until the thaw, so a client's MQTT CONNECT gets no CONNACK and its
//! connect timeout fires. After the thaw every connection forwards again, except those
//! opened during the freeze that the client has closed meanwhile: on a dead route their
//! packets would never have reached the broker. The proxy records the time of each
//! accepted connection, so a test can read the client's retry intervals from them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    upstream: SocketAddr,
    frozen: watch::Sender<bool>,
    accepted: Arc<Mutex<Vec<Instant>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding 127.0.0.1:<free port> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let (frozen, _) = watch::channel(false);
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let mut proxy = Proxy { port, upstream, frozen, accepted, task: None };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&mut self, listener: TcpListener) {
        let accepted = self.accepted.clone();
        let frozen = self.frozen.subscribe();
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                accepted.lock().unwrap().push(Instant::now());
                tokio::spawn(forward(client, upstream, frozen.clone()));
            }
        }));
    }

    /// Stops listening, so new connections are refused as by a host whose broker is down.
    /// Open connections stay.
    pub fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port after [`Proxy::close`].
    pub async fn reopen(&mut self) {
        self.close();
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(address).await {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot listen on {address} again: {e}"),
            }
        };
        self.accept_on(listener);
    }

    /// Returns `127.0.0.1:PORT`, as the daemon's flags take it.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops forwarding without closing anything.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Resumes forwarding on old and new connections.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Returns the times at which the proxy accepted a connection.
    pub fn accepted(&self) -> Vec<Instant> {
        self.accepted.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits while the proxy is frozen.
async fn wait_thawed(frozen: &mut watch::Receiver<bool>) {
    let _ = frozen.wait_for(|frozen| !*frozen).await;
}

async fn forward(client: TcpStream, upstream: SocketAddr, mut frozen: watch::Receiver<bool>) {
    // A connection that arrives during the freeze waits, as a SYN retransmitted by the
    // client's kernel would, and reaches the broker only after the thaw.
    let arrived_frozen = *frozen.borrow();
    wait_thawed(&mut frozen).await;
    let mut early = Vec::new();
    if arrived_frozen && !client_still_open(&client, &mut early) {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    if server.write_all(&early).await.is_err() {
        return;
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = tokio::spawn(pipe(client_read, server_write, frozen.clone()));
    let down = tokio::spawn(pipe(server_read, client_write, frozen));
    let _ = tokio::join!(up, down);
}

/// Reads what the client sent while it waited. Returns false when the client has closed
/// the connection.
fn client_still_open(client: &TcpStream, early: &mut Vec<u8>) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        match client.try_read(&mut buffer) {
            Ok(0) => return false,
            Ok(n) => early.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// Copies bytes one way until either side closes; stops reading while frozen.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        wait_thawed(&mut frozen).await;
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // A freeze while waiting for data: stop reading so the bytes stay in the
            // kernel, as they would on a dead route.
            _ = frozen.wait_for(|frozen| *frozen) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Bytes read just before a freeze are held back until the thaw.
        wait_thawed(&mut frozen).await;
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
