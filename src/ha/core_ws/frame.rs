//! The RFC 6455 wire format that the Core WebSocket client needs: frames, and the check
//! of the server's response to the upgrade request. No I/O here.

/// The GUID that RFC 6455 appends to the key to compute `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub(super) const OP_CONTINUATION: u8 = 0x0;
pub(super) const OP_TEXT: u8 = 0x1;
pub(super) const OP_BINARY: u8 = 0x2;
pub(super) const OP_CLOSE: u8 = 0x8;
pub(super) const OP_PING: u8 = 0x9;
pub(super) const OP_PONG: u8 = 0xA;

/// Checks the server's response to the upgrade request (RFC 6455 section 4.1): status
/// 101, `Upgrade: websocket`, `Connection: upgrade` and the accept value for `key`.
pub(super) fn check_upgrade_response(head: &str, key: &str) -> Result<(), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line.split(' ').nth(1).unwrap_or("");
    if !status_line.starts_with("HTTP/1.1 ") || status != "101" {
        return Err(format!(
            "returned '{status_line}' instead of 101 Switching Protocols"
        ));
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };

    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("the answer lacks 'Upgrade: websocket'".into());
    }
    let connection_upgrade = header("connection").is_some_and(|v| {
        v.split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
    });
    if !connection_upgrade {
        return Err("the answer lacks 'Connection: upgrade'".into());
    }
    let expected = accept_value(key);
    match header("sec-websocket-accept") {
        Some(value) if value == expected => Ok(()),
        Some(value) => Err(format!(
            "Sec-WebSocket-Accept is '{value}', expected '{expected}'"
        )),
        None => Err("the answer lacks Sec-WebSocket-Accept".into()),
    }
}

/// `Sec-WebSocket-Accept` for a key: base64 of SHA-1 over the key and the RFC 6455 GUID.
pub(super) fn accept_value(key: &str) -> String {
    let input = format!("{key}{ACCEPT_GUID}");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, input.as_bytes());
    base64(digest.as_ref())
}

/// Standard base64 with padding (RFC 4648 section 4).
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One WebSocket frame, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Frame {
    pub fin: bool,
    pub opcode: u8,
    /// True when the sender masked the payload (clients must, servers must not).
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// Builds one final, masked frame, as a client sends them.
pub(super) fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        length @ 0..=125 => frame.push(0x80 | length as u8),
        length @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4]),
    );
    frame
}

/// Parses the frame at the start of `data`. Returns the frame and the bytes it took, or
/// `None` when `data` holds only part of it.
pub(super) fn parse_frame(
    data: &[u8],
    max_payload: usize,
) -> Result<Option<(Frame, usize)>, String> {
    if data.len() < 2 {
        return Ok(None);
    }
    let fin = data[0] & 0x80 != 0;
    if data[0] & 0x70 != 0 {
        return Err("reserved bits set, but no extension was negotiated".into());
    }
    let opcode = data[0] & 0x0F;
    let masked = data[1] & 0x80 != 0;
    let mut at = 2;

    let length = match data[1] & 0x7F {
        126 => {
            let Some(bytes) = data.get(at..at + 2) else {
                return Ok(None);
            };
            at += 2;
            u64::from(u16::from_be_bytes([bytes[0], bytes[1]]))
        }
        127 => {
            let Some(bytes) = data.get(at..at + 8) else {
                return Ok(None);
            };
            at += 8;
            u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
        }
        short => u64::from(short),
    };
    if opcode >= 0x8 && (length > 125 || !fin) {
        return Err(format!(
            "control frame {opcode:#x} is fragmented or longer than 125 bytes"
        ));
    }
    if length > max_payload as u64 {
        return Err(format!(
            "frame of {length} bytes is larger than the limit of {max_payload}"
        ));
    }
    let length = length as usize;

    let mask = if masked {
        let Some(bytes) = data.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        None
    };
    let Some(body) = data.get(at..at + length) else {
        return Ok(None);
    };
    let payload = match mask {
        Some(mask) => body
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4])
            .collect(),
        None => body.to_vec(),
    };
    Ok(Some((
        Frame {
            fin,
            opcode,
            masked,
            payload,
        },
        at + length,
    )))
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
