//! A scripted HTTP/1.1 and WebSocket server on 127.0.0.1 that stands in for the
//! Supervisor and the Home Assistant Core API, and records every request.
//!
//! Each connection runs on its own thread and gets one answer (`Connection: close`),
//! except a WebSocket upgrade, after which every text message goes to the WebSocket
//! handler and its replies are sent back in order. An optional upgrade check can turn an
//! upgrade request into a plain HTTP request, to play a Supervisor whose Core is down.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the fake saw it. WebSocket messages are recorded with method `WS`.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

impl Call {
    /// `METHOD PATH`, for comparing call sequences.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// An HTTP answer: status and JSON (or text) body.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply { status, body: body.to_string() }
    }
}

pub type HttpHandler = dyn Fn(&Call) -> Reply + Send + Sync;
/// Receives each WebSocket text message (after the handshake) and returns the messages
/// to send back. The first call gets an empty string: the server's greeting.
pub type WsHandler = dyn Fn(&str) -> Vec<String> + Send + Sync;
/// Decides whether a WebSocket upgrade request is accepted; a rejected one goes to the
/// HTTP handler.
pub type UpgradeCheck = dyn Fn(&Call) -> bool + Send + Sync;

pub struct FakeServer {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    pub fn start(http: Arc<HttpHandler>, ws: Option<Arc<WsHandler>>) -> FakeServer {
        FakeServer::start_checked(http, ws, None)
    }

    /// Like [`FakeServer::start`], with `check` deciding which WebSocket upgrades are
    /// accepted.
    pub fn start_checked(
        http: Arc<HttpHandler>,
        ws: Option<Arc<WsHandler>>,
        check: Option<Arc<UpgradeCheck>>,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));

        let (calls2, stop2) = (calls.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (calls, http, ws) = (calls2.clone(), http.clone(), ws.clone());
                        let check = check.clone();
                        std::thread::spawn(move || {
                            serve(stream, &calls, &*http, ws.as_deref(), check.as_deref())
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeServer { port, calls, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn clear_calls(&self) {
        self.calls.lock().unwrap().clear();
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    calls: &Mutex<Vec<Call>>,
    http: &HttpHandler,
    ws: Option<&WsHandler>,
    check: Option<&UpgradeCheck>,
) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;

    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();

    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());

    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let call = Call {
        method,
        path,
        authorization: header("authorization"),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    calls.lock().unwrap().push(call.clone());

    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && check.is_none_or(|accept| accept(&call));
    if let (true, Some(ws), Some(key)) = (upgrade, ws, header("sec-websocket-key")) {
        let accept = websocket_accept(&key);
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        websocket_session(reader, writer, calls, &call.path, ws);
        return;
    }

    let reply = http(&call);
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        502 => "Bad Gateway",
        _ => "Status",
    };
    let response = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = writer.write_all(response.as_bytes());
}

fn websocket_session(
    mut reader: BufReader<TcpStream>,
    mut writer: TcpStream,
    calls: &Mutex<Vec<Call>>,
    path: &str,
    ws: &WsHandler,
) {
    for message in ws("") {
        if write_text_frame(&mut writer, &message).is_err() {
            return;
        }
    }
    loop {
        let Some((opcode, payload)) = read_frame(&mut reader) else {
            return;
        };
        match opcode {
            0x1 => {
                let text = String::from_utf8_lossy(&payload).into_owned();
                calls.lock().unwrap().push(Call {
                    method: "WS".into(),
                    path: path.to_string(),
                    authorization: None,
                    body: text.clone(),
                });
                for message in ws(&text) {
                    if write_text_frame(&mut writer, &message).is_err() {
                        return;
                    }
                }
            }
            0x8 => {
                let _ = writer.write_all(&[0x88, 0x00]);
                return;
            }
            _ => {}
        }
    }
}

/// Reads one client frame (masked, as RFC 6455 requires of clients); `None` on EOF or
/// an unmasked frame.
fn read_frame(reader: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).ok()?;
    let opcode = head[0] & 0x0f;
    if head[1] & 0x80 == 0 {
        return None;
    }
    let mut length = u64::from(head[1] & 0x7f);
    if length == 126 {
        let mut ext = [0u8; 2];
        reader.read_exact(&mut ext).ok()?;
        length = u64::from(u16::from_be_bytes(ext));
    } else if length == 127 {
        let mut ext = [0u8; 8];
        reader.read_exact(&mut ext).ok()?;
        length = u64::from_be_bytes(ext);
    }
    let mut mask = [0u8; 4];
    reader.read_exact(&mut mask).ok()?;
    let mut payload = vec![0u8; length as usize];
    reader.read_exact(&mut payload).ok()?;
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    Some((opcode, payload))
}

fn write_text_frame(writer: &mut impl Write, text: &str) -> std::io::Result<()> {
    let bytes = text.as_bytes();
    let mut frame = vec![0x81u8];
    if bytes.len() < 126 {
        frame.push(bytes.len() as u8);
    } else if bytes.len() < 65536 {
        frame.push(126);
        frame.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    } else {
        frame.push(127);
        frame.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    }
    frame.extend_from_slice(bytes);
    writer.write_all(&frame)
}

/// `Sec-WebSocket-Accept` for a client key: base64 of SHA-1 over key + the RFC 6455 GUID.
fn websocket_accept(key: &str) -> String {
    let input = format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, input.as_bytes());
    base64(digest.as_ref())
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn websocket_accept_matches_rfc_example() {
    // The handshake example of RFC 6455, section 1.3.
    assert_eq!(websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
