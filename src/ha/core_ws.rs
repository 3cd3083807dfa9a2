//! A minimal client for Home Assistant Core's WebSocket API, reached through the
//! Supervisor's proxy at `ws://supervisor/core/websocket`.
//!
//! Some calls exist only in the WebSocket API (listing and ignoring config flows among
//! them), and a WebSocket crate would bring a second HTTP stack for a few short sessions.
//! So this speaks just enough RFC 6455 itself: plain `ws://` (no TLS), no extensions,
//! masked text frames from the client, fragmented messages joined, a pong for each ping,
//! and the close handshake.
//!
//! Home Assistant's login: the server sends `auth_required`, the client sends
//! `{"type": "auth", "access_token": ...}`, and the server replies `auth_ok` or
//! `auth_invalid`. The Supervisor's proxy (home-assistant/supervisor,
//! `supervisor/api/proxy.py`) checks the add-on's `SUPERVISOR_TOKEN` itself, which needs
//! `homeassistant_api: true` in the manifest, and then logs in to Core with its own
//! token. Each command carries an `id`. Core replies with a message of type `result` and
//! the same id, and other messages are skipped.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use self::frame::{
    base64, check_upgrade_response, encode_frame, find, parse_frame, OP_BINARY, OP_CLOSE,
    OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};
use crate::http::Url;
use crate::supervisor::Supervisor;

mod frame;

/// Path of the Core WebSocket API on the Supervisor.
pub const SUPERVISOR_PATH: &str = "/core/websocket";

/// Largest message accepted from Core. A list of a few config flows is a few KiB.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Largest HTTP head accepted in the response to the upgrade request.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CoreWsError {
    #[error("invalid WebSocket URL '{0}' (expected http://host[:port]/path)")]
    InvalidUrl(String),
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("I/O error on the WebSocket to {url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url} timed out while {stage}")]
    Timeout { url: String, stage: &'static str },
    /// The server did not switch protocols, e.g. HTTP 502 from the Supervisor while
    /// Core is down.
    #[error("{url} rejected the WebSocket upgrade: {detail}")]
    Upgrade { url: String, detail: String },
    #[error(
        "Home Assistant rejected the login at {url}: {message} (the add-on needs \
         homeassistant_api: true in its manifest)"
    )]
    AuthInvalid { url: String, message: String },
    #[error("invalid WebSocket data from {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{url} closed the WebSocket (close code {code:?})")]
    Closed { url: String, code: Option<u16> },
    /// Core returned `success: false` for the command.
    #[error("Home Assistant rejected '{command}' with {code}: {message}")]
    Command {
        command: String,
        code: String,
        message: String,
    },
}

/// One logged-in connection to Core's WebSocket API.
pub struct CoreWs {
    stream: TcpStream,
    /// Bytes received but not yet parsed into frames.
    buffer: Vec<u8>,
    next_id: u64,
    /// `ws://host[:port]/path`, for messages.
    url: String,
    /// Limit of each step: connect, upgrade, login, and each request.
    timeout: Duration,
    /// Home Assistant's version from `auth_required`, when the server sent one.
    pub ha_version: Option<String>,
}

impl CoreWs {
    /// Connects to Core's WebSocket API through the Supervisor's proxy and logs in with
    /// the add-on's token.
    pub async fn through_supervisor(
        supervisor: &Supervisor,
        timeout: Duration,
    ) -> Result<CoreWs, CoreWsError> {
        let url = format!("{}{SUPERVISOR_PATH}", supervisor.base_url());
        CoreWs::connect(&url, supervisor.token(), timeout).await
    }

    /// Connects to `url` (`http://host[:port]/path`, the `ws://` URL written the HTTP
    /// way), upgrades to WebSocket and logs in with `token`.
    pub async fn connect(url: &str, token: &str, timeout: Duration) -> Result<CoreWs, CoreWsError> {
        let parsed = Url::parse(url).map_err(|_| CoreWsError::InvalidUrl(url.to_string()))?;
        let authority = authority(&parsed);
        let label = format!("ws://{authority}{}", parsed.path);

        let connecting = TcpStream::connect((parsed.host.as_str(), parsed.port));
        let stream = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(CoreWsError::Connect { url: label, source }),
            Err(_) => {
                return Err(CoreWsError::Timeout {
                    url: label,
                    stage: "connecting",
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let mut ws = CoreWs {
            stream,
            buffer: Vec::new(),
            next_id: 1,
            url: label,
            timeout,
            ha_version: None,
        };

        let label = ws.url.clone();
        let upgrade = ws.upgrade(&authority, &parsed.path);
        timed(&label, timeout, "upgrading to WebSocket", upgrade).await?;
        timed(&label, timeout, "logging in", ws.login(token)).await?;
        Ok(ws)
    }

    /// Returns the `ws://host[:port]/path` URL of this session.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `command` (a JSON object with a `type`) with the next id and returns the
    /// `result` of Core's response (`null` when it has none).
    pub async fn request(&mut self, command: Value) -> Result<Value, CoreWsError> {
        let label = self.url.clone();
        timed(
            &label,
            self.timeout,
            "waiting for a command result",
            self.exchange(command),
        )
        .await
    }

    /// Ends the session with a close frame and waits briefly for the server's close.
    /// Errors are ignored because the session's work is done by then.
    pub async fn close(mut self) {
        let frame = encode_frame(OP_CLOSE, &1000u16.to_be_bytes(), rand::random());
        if self.stream.write_all(&frame).await.is_err() {
            return;
        }
        let wait = self.timeout.min(Duration::from_secs(1));
        let _ = tokio::time::timeout(wait, async {
            loop {
                if self.read_message().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Sends the HTTP upgrade request and checks the `101 Switching Protocols` response.
    async fn upgrade(&mut self, authority: &str, path: &str) -> Result<(), CoreWsError> {
        let key = base64(&rand::random::<[u8; 16]>());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             User-Agent: roamcore-victron/{}\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        self.write(request.as_bytes()).await?;

        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            if self.buffer.len() > MAX_HEAD {
                return Err(self.upgrade_error(format!("HTTP head longer than {MAX_HEAD} bytes")));
            }
            if self.fill().await? == 0 {
                return Err(self.upgrade_error("connection closed before the HTTP response".into()));
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        // Bytes after the head are already WebSocket frames (often `auth_required`).
        self.buffer.drain(..head_end);
        check_upgrade_response(&head, &key).map_err(|detail| self.upgrade_error(detail))
    }

    fn upgrade_error(&self, detail: String) -> CoreWsError {
        CoreWsError::Upgrade {
            url: self.url.clone(),
            detail,
        }
    }

    async fn login(&mut self, token: &str) -> Result<(), CoreWsError> {
        let greeting = self.read_json().await?;
        match greeting.get("type").and_then(Value::as_str) {
            Some("auth_required") => {}
            // A server that needs no login (not the Supervisor's proxy) greets this way.
            Some("auth_ok") => return Ok(()),
            _ => return Err(self.protocol(format!("expected auth_required, got {greeting}"))),
        }
        self.ha_version = greeting
            .get("ha_version")
            .and_then(Value::as_str)
            .map(str::to_string);

        let auth = json!({"type": "auth", "access_token": token});
        self.send_text(&auth.to_string()).await?;
        let answer = self.read_json().await?;
        match answer.get("type").and_then(Value::as_str) {
            Some("auth_ok") => Ok(()),
            Some("auth_invalid") => Err(CoreWsError::AuthInvalid {
                url: self.url.clone(),
                message: answer
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
                    .to_string(),
            }),
            _ => Err(self.protocol(format!("expected auth_ok, got {answer}"))),
        }
    }

    async fn exchange(&mut self, mut command: Value) -> Result<Value, CoreWsError> {
        let name = command
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let Some(fields) = command.as_object_mut() else {
            return Err(self.protocol(format!("command is not a JSON object: {command}")));
        };
        let id = self.next_id;
        self.next_id += 1;
        fields.insert("id".into(), json!(id));
        self.send_text(&command.to_string()).await?;

        loop {
            let message = self.read_json().await?;
            let is_answer = message.get("id").and_then(Value::as_u64) == Some(id)
                && message.get("type").and_then(Value::as_str) == Some("result");
            if !is_answer {
                tracing::debug!(url = %self.url, %message, "skipping a WebSocket message that is not our result");
                continue;
            }
            if message.get("success").and_then(Value::as_bool) == Some(true) {
                return Ok(message.get("result").cloned().unwrap_or(Value::Null));
            }
            let error = message.get("error");
            let text = |key: &str| {
                error
                    .and_then(|e| e.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            return Err(CoreWsError::Command {
                command: name,
                code: text("code"),
                message: text("message"),
            });
        }
    }

    async fn read_json(&mut self) -> Result<Value, CoreWsError> {
        let text = self.read_message().await?;
        serde_json::from_str(&text).map_err(|e| self.protocol(format!("message is not JSON ({e})")))
    }

    /// Reads the next text message. Joins fragments, replies to pings and skips pongs.
    async fn read_message(&mut self) -> Result<String, CoreWsError> {
        let mut fragments: Option<Vec<u8>> = None;
        loop {
            let frame = match parse_frame(&self.buffer, MAX_MESSAGE) {
                Ok(Some((frame, used))) => {
                    self.buffer.drain(..used);
                    frame
                }
                Ok(None) => {
                    if self.fill().await? == 0 {
                        return Err(CoreWsError::Closed {
                            url: self.url.clone(),
                            code: None,
                        });
                    }
                    continue;
                }
                Err(reason) => return Err(self.protocol(reason)),
            };
            if frame.masked {
                return Err(self.protocol("the server masked a frame (RFC 6455 forbids it)".into()));
            }

            match frame.opcode {
                OP_PING => {
                    self.write(&encode_frame(OP_PONG, &frame.payload, rand::random()))
                        .await?;
                }
                OP_PONG => {}
                OP_CLOSE => {
                    let code = (frame.payload.len() >= 2)
                        .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    // Echo the close; the server then closes the TCP connection.
                    let echo = encode_frame(
                        OP_CLOSE,
                        &frame.payload[..frame.payload.len().min(2)],
                        rand::random(),
                    );
                    let _ = self.stream.write_all(&echo).await;
                    return Err(CoreWsError::Closed {
                        url: self.url.clone(),
                        code,
                    });
                }
                OP_TEXT if fragments.is_none() => {
                    if frame.fin {
                        return self.text(frame.payload);
                    }
                    fragments = Some(frame.payload);
                }
                OP_CONTINUATION if fragments.is_some() => {
                    let mut joined = fragments.take().unwrap_or_default();
                    if joined.len() + frame.payload.len() > MAX_MESSAGE {
                        return Err(
                            self.protocol(format!("message longer than {MAX_MESSAGE} bytes"))
                        );
                    }
                    joined.extend_from_slice(&frame.payload);
                    if frame.fin {
                        return self.text(joined);
                    }
                    fragments = Some(joined);
                }
                OP_BINARY => return Err(self.protocol("unexpected binary frame".into())),
                opcode => {
                    return Err(self.protocol(format!("unexpected frame with opcode {opcode:#x}")))
                }
            }
        }
    }

    fn text(&self, payload: Vec<u8>) -> Result<String, CoreWsError> {
        String::from_utf8(payload).map_err(|_| self.protocol("text message is not UTF-8".into()))
    }

    async fn send_text(&mut self, text: &str) -> Result<(), CoreWsError> {
        let frame = encode_frame(OP_TEXT, text.as_bytes(), rand::random());
        self.write(&frame).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), CoreWsError> {
        let url = &self.url;
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| CoreWsError::Io {
                url: url.clone(),
                source,
            })
    }

    /// Reads more bytes into the buffer and returns how many (0 at end of stream).
    async fn fill(&mut self) -> Result<usize, CoreWsError> {
        let mut chunk = [0u8; 8192];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|source| CoreWsError::Io {
                url: self.url.clone(),
                source,
            })?;
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn protocol(&self, reason: String) -> CoreWsError {
        CoreWsError::Protocol {
            url: self.url.clone(),
            reason,
        }
    }
}

/// Runs one step of a session with the session's timeout.
async fn timed<T>(
    url: &str,
    timeout: Duration,
    stage: &'static str,
    step: impl std::future::Future<Output = Result<T, CoreWsError>>,
) -> Result<T, CoreWsError> {
    match tokio::time::timeout(timeout, step).await {
        Ok(result) => result,
        Err(_) => Err(CoreWsError::Timeout {
            url: url.to_string(),
            stage,
        }),
    }
}

/// Formats `host[:port]` for the `Host` header, without the port when it is 80.
fn authority(url: &Url) -> String {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    if url.port == 80 {
        host
    } else {
        format!("{host}:{}", url.port)
    }
}

#[cfg(test)]
mod tests;
