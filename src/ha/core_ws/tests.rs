use super::frame::{accept_value, Frame};
use super::*;

use tokio::net::TcpListener;

/// Builds an unmasked frame, as a server sends them.
fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 | opcode } else { opcode }];
    match payload.len() {
        length @ 0..=125 => frame.push(length as u8),
        length @ 126..=0xFFFF => {
            frame.push(126);
            frame.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            frame.push(127);
            frame.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

fn server_text(value: &Value) -> Vec<u8> {
    server_frame(OP_TEXT, true, value.to_string().as_bytes())
}

/// The server side of one connection on a local socket.
struct Peer {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Peer {
    /// Accepts one connection and reads the upgrade request. Returns the peer and the
    /// request's head.
    async fn accept(listener: &TcpListener) -> (Peer, String) {
        let (stream, _) = listener.accept().await.unwrap();
        let mut peer = Peer {
            stream,
            buffer: Vec::new(),
        };
        while find(&peer.buffer, b"\r\n\r\n").is_none() {
            assert!(
                peer.fill().await > 0,
                "client closed before its upgrade request"
            );
        }
        let end = find(&peer.buffer, b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8(peer.buffer.drain(..end).collect()).unwrap();
        (peer, head)
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.unwrap();
        self.buffer.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one client frame and checks that it is masked.
    async fn frame(&mut self) -> Frame {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buffer, MAX_MESSAGE).unwrap() {
                self.buffer.drain(..used);
                assert!(frame.masked, "client frame without mask");
                return frame;
            }
            assert!(self.fill().await > 0, "client closed the connection");
        }
    }

    async fn json(&mut self) -> Value {
        let frame = self.frame().await;
        assert_eq!(frame.opcode, OP_TEXT);
        serde_json::from_slice(&frame.payload).unwrap()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }
}

fn switching_protocols(request_head: &str) -> String {
    let key = request_head
        .lines()
        .find_map(|line| line.strip_prefix("Sec-WebSocket-Key: "))
        .expect("request without Sec-WebSocket-Key");
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_value(key.trim())
    )
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/core/websocket", listener.local_addr().unwrap());
    (listener, url)
}

#[test]
fn accept_value_matches_rfc_example() {
    // The handshake example of RFC 6455, section 1.3.
    assert_eq!(
        accept_value("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foobar", "Zm9vYmFy"),
    ];
    for (input, expected) in cases {
        assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
    }
}

#[test]
fn frame_round_trip_at_length_boundaries() {
    for length in [0usize, 1, 125, 126, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..length).map(|i| (i % 251) as u8).collect();
        let encoded = encode_frame(OP_TEXT, &payload, [0x12, 0x34, 0x56, 0x78]);
        let (frame, used) = parse_frame(&encoded, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(used, encoded.len(), "length {length}");
        assert!(frame.fin);
        assert!(frame.masked);
        assert_eq!(frame.opcode, OP_TEXT);
        assert_eq!(frame.payload, payload, "length {length}");
    }
}

#[test]
fn frame_mask_changes_the_bytes_on_the_wire() {
    let encoded = encode_frame(OP_TEXT, b"hello", [1, 2, 3, 4]);
    assert_eq!(&encoded[..2], &[0x81, 0x85]);
    assert_eq!(&encoded[2..6], &[1, 2, 3, 4]);
    assert_ne!(&encoded[6..], b"hello");
}

#[test]
fn frame_partial_input_needs_more() {
    let encoded = server_frame(OP_TEXT, true, &[7u8; 300]);
    for cut in 0..encoded.len() {
        assert_eq!(
            parse_frame(&encoded[..cut], MAX_MESSAGE).unwrap(),
            None,
            "cut at {cut}"
        );
    }
    let mut two = encoded.clone();
    two.extend_from_slice(&server_frame(OP_PING, true, b"x"));
    let (frame, used) = parse_frame(&two, MAX_MESSAGE).unwrap().unwrap();
    assert_eq!(used, encoded.len());
    assert!(!frame.masked);
    assert_eq!(frame.payload.len(), 300);
}

#[test]
fn frame_rejects_invalid_headers() {
    let mut reserved = server_frame(OP_TEXT, true, b"a");
    reserved[0] |= 0x40;
    assert!(
        parse_frame(&reserved, MAX_MESSAGE).is_err(),
        "RSV1 without an extension"
    );

    let long_ping = server_frame(OP_PING, true, &[0u8; 126]);
    assert!(
        parse_frame(&long_ping, MAX_MESSAGE).is_err(),
        "control frame over 125 bytes"
    );

    let fragmented_close = server_frame(OP_CLOSE, false, b"");
    assert!(
        parse_frame(&fragmented_close, MAX_MESSAGE).is_err(),
        "fragmented control frame"
    );

    let big = server_frame(OP_TEXT, true, &[0u8; 200]);
    assert!(
        parse_frame(&big, 100).is_err(),
        "frame above the size limit"
    );
}

#[test]
fn upgrade_response_checks() {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    assert_eq!(check_upgrade_response(good, key), Ok(()));

    let keep_alive = good.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
    assert_eq!(check_upgrade_response(&keep_alive, key), Ok(()));

    let bad_gateway = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
    let error = check_upgrade_response(bad_gateway, key).unwrap_err();
    assert!(error.contains("502 Bad Gateway"), "{error}");

    let wrong_accept = good.replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAA");
    assert!(check_upgrade_response(&wrong_accept, key)
        .unwrap_err()
        .contains("expected"));

    let no_upgrade = good.replace("Upgrade: websocket\r\n", "");
    assert!(check_upgrade_response(&no_upgrade, key).is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn session_logs_in_and_runs_commands() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let (mut peer, head) = Peer::accept(&listener).await;
        assert!(
            head.starts_with("GET /core/websocket HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");

        // The greeting in the same write as the 101 response.
        let mut response = switching_protocols(&head).into_bytes();
        response.extend(server_text(
            &json!({"type": "auth_required", "ha_version": "2026.11.0"}),
        ));
        peer.send(&response).await;

        let auth = peer.json().await;
        assert_eq!(auth, json!({"type": "auth", "access_token": "tok-1"}));
        peer.send(&server_frame(OP_PING, true, b"p1")).await;
        let pong = peer.frame().await;
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (OP_PONG, b"p1".as_slice())
        );
        peer.send(&server_text(
            &json!({"type": "auth_ok", "ha_version": "2026.11.0"}),
        ))
        .await;

        // First command: an unrelated event first, then the result in three fragments.
        let command = peer.json().await;
        assert_eq!(
            command,
            json!({"type": "config_entries/flow/progress", "id": 1})
        );
        peer.send(&server_text(
            &json!({"id": 99, "type": "event", "event": {}}),
        ))
        .await;
        let result =
            json!({"id": 1, "type": "result", "success": true, "result": [{"flow_id": "f1"}]})
                .to_string()
                .into_bytes();
        let (a, rest) = result.split_at(10);
        let (b, c) = rest.split_at(10);
        peer.send(&server_frame(OP_TEXT, false, a)).await;
        peer.send(&server_frame(OP_CONTINUATION, false, b)).await;
        peer.send(&server_frame(OP_PING, true, b"")).await;
        peer.send(&server_frame(OP_CONTINUATION, true, c)).await;
        assert_eq!(peer.frame().await.opcode, OP_PONG);

        // Second command: rejected.
        let command = peer.json().await;
        assert_eq!(command["id"], 2);
        peer.send(&server_text(
            &json!({"id": 2, "type": "result", "success": false,
            "error": {"code": "not_found", "message": "Config entry not found"}}),
        ))
        .await;

        // Close handshake: the client's close, then ours.
        let close = peer.frame().await;
        assert_eq!(close.opcode, OP_CLOSE);
        assert_eq!(close.payload, 1000u16.to_be_bytes());
        peer.send(&server_frame(OP_CLOSE, true, &1000u16.to_be_bytes()))
            .await;
    });

    let mut ws = CoreWs::connect(&url, "tok-1", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ws.ha_version.as_deref(), Some("2026.11.0"));

    let flows = ws
        .request(json!({"type": "config_entries/flow/progress"}))
        .await
        .unwrap();
    assert_eq!(flows, json!([{"flow_id": "f1"}]));

    let ignore = json!({"type": "config_entries/ignore_flow", "flow_id": "f1", "title": "t"});
    match ws.request(ignore).await {
        Err(CoreWsError::Command {
            command,
            code,
            message,
        }) => {
            assert_eq!(command, "config_entries/ignore_flow");
            assert_eq!(code, "not_found");
            assert_eq!(message, "Config entry not found");
        }
        other => panic!("expected a Command error, got {other:?}"),
    }
    ws.close().await;
    server.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn session_reports_invalid_login() {
    let (listener, url) = listen().await;
    tokio::spawn(async move {
        let (mut peer, head) = Peer::accept(&listener).await;
        peer.send(switching_protocols(&head).as_bytes()).await;
        peer.send(&server_text(&json!({"type": "auth_required"})))
            .await;
        let _auth = peer.json().await;
        peer.send(&server_text(
            &json!({"type": "auth_invalid", "message": "Invalid access"}),
        ))
        .await;
        let _ = peer.fill().await;
    });
    match CoreWs::connect(&url, "wrong", Duration::from_secs(5)).await {
        Err(CoreWsError::AuthInvalid { message, .. }) => assert_eq!(message, "Invalid access"),
        other => panic!("expected AuthInvalid, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn session_times_out_without_greeting() {
    let (listener, url) = listen().await;
    tokio::spawn(async move {
        let (mut peer, head) = Peer::accept(&listener).await;
        peer.send(switching_protocols(&head).as_bytes()).await;
        // Never greets, and keeps the connection open until the client gives up.
        let _ = peer.fill().await;
    });
    let started = std::time::Instant::now();
    match CoreWs::connect(&url, "tok", Duration::from_millis(300)).await {
        Err(CoreWsError::Timeout { stage, .. }) => assert_eq!(stage, "logging in"),
        other => panic!("expected Timeout, got {:?}", other.map(|_| ())),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn session_reports_refused_upgrade() {
    let (listener, url) = listen().await;
    tokio::spawn(async move {
        let (mut peer, _head) = Peer::accept(&listener).await;
        peer.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    });
    match CoreWs::connect(&url, "tok", Duration::from_secs(5)).await {
        Err(CoreWsError::Upgrade { detail, .. }) => assert!(detail.contains("502"), "{detail}"),
        other => panic!("expected Upgrade, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn session_rejects_masked_server_frames() {
    let (listener, url) = listen().await;
    tokio::spawn(async move {
        let (mut peer, head) = Peer::accept(&listener).await;
        peer.send(switching_protocols(&head).as_bytes()).await;
        let greeting = json!({"type": "auth_required"}).to_string();
        peer.send(&encode_frame(OP_TEXT, greeting.as_bytes(), [9, 9, 9, 9]))
            .await;
        let _ = peer.fill().await;
    });
    match CoreWs::connect(&url, "tok", Duration::from_secs(5)).await {
        Err(CoreWsError::Protocol { reason, .. }) => assert!(reason.contains("masked"), "{reason}"),
        other => panic!("expected Protocol, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn session_reports_close_from_server() {
    let (listener, url) = listen().await;
    tokio::spawn(async move {
        let (mut peer, head) = Peer::accept(&listener).await;
        peer.send(switching_protocols(&head).as_bytes()).await;
        peer.send(&server_frame(OP_CLOSE, true, &1011u16.to_be_bytes()))
            .await;
        let _ = peer.fill().await;
    });
    match CoreWs::connect(&url, "tok", Duration::from_secs(5)).await {
        Err(CoreWsError::Closed { code, .. }) => assert_eq!(code, Some(1011)),
        other => panic!("expected Closed, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn connect_refused_is_a_connect_error() {
    let (listener, url) = listen().await;
    drop(listener);
    let result = CoreWs::connect(&url, "tok", Duration::from_secs(5)).await;
    assert!(
        matches!(result, Err(CoreWsError::Connect { .. })),
        "{:?}",
        result.map(|_| ())
    );
    assert!(matches!(
        CoreWs::connect("ws://x/y", "tok", Duration::from_secs(1)).await,
        Err(CoreWsError::InvalidUrl(_))
    ));
}
