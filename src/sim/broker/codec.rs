//! MQTT 3.1.1 packets: the subset the embedded broker needs, read from and written to
//! byte streams (OASIS MQTT Version 3.1.1, section 2 and 3).

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest packet the broker accepts (the remaining-length field allows 256 MiB).
pub const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("packet of {0} bytes is over the {MAX_PACKET_SIZE}-byte limit")]
    TooLarge(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    fn from_bits(bits: u8) -> Result<QoS, CodecError> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(CodecError::Malformed("QoS 3")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

#[derive(Debug, Clone)]
pub struct Connect {
    pub protocol_level: u8,
    pub client_id: String,
    pub clean_session: bool,
    pub keep_alive_secs: u16,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    /// Packet identifier; 0 for QoS 0.
    pub pkid: u16,
}

#[derive(Debug, Clone)]
pub enum Packet {
    Connect(Connect),
    /// Session-present flag and return code (0 accepted, 1 bad protocol level, 4 bad
    /// credentials, 5 not authorised).
    ConnAck {
        session_present: bool,
        code: u8,
    },
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<(String, QoS)>,
    },
    /// One return code per filter: the granted QoS or 0x80 for failure.
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}

/// Reads one packet. `Closed` means a clean end of stream before the first byte.
pub async fn read_packet<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Packet, CodecError> {
    let first = match reader.read_u8().await {
        Ok(byte) => byte,
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(CodecError::Closed)
        }
        Err(err) => return Err(err.into()),
    };

    let mut length = 0usize;
    let mut shift = 0;
    loop {
        let byte = reader.read_u8().await?;
        length |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(CodecError::Malformed("remaining length over 4 bytes"));
        }
    }
    if length > MAX_PACKET_SIZE {
        return Err(CodecError::TooLarge(length));
    }

    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    decode(first, body)
}

fn decode(first: u8, body: Vec<u8>) -> Result<Packet, CodecError> {
    let flags = first & 0x0f;
    let mut cursor = Cursor {
        data: &body,
        pos: 0,
    };
    let packet = match first >> 4 {
        1 => Packet::Connect(decode_connect(&mut cursor)?),
        3 => {
            let qos = QoS::from_bits((flags >> 1) & 0x03)?;
            let topic = cursor.string()?;
            let pkid = if qos == QoS::AtMostOnce {
                0
            } else {
                cursor.u16()?
            };
            Packet::Publish(Publish {
                topic,
                payload: cursor.rest().to_vec(),
                qos,
                retain: flags & 0x01 != 0,
                dup: flags & 0x08 != 0,
                pkid,
            })
        }
        4 => Packet::PubAck(cursor.u16()?),
        5 => Packet::PubRec(cursor.u16()?),
        6 => Packet::PubRel(cursor.u16()?),
        7 => Packet::PubComp(cursor.u16()?),
        8 => {
            let pkid = cursor.u16()?;
            let mut filters = Vec::new();
            while !cursor.is_empty() {
                let filter = cursor.string()?;
                let qos = QoS::from_bits(cursor.u8()? & 0x03)?;
                filters.push((filter, qos));
            }
            if filters.is_empty() {
                return Err(CodecError::Malformed("SUBSCRIBE without a filter"));
            }
            Packet::Subscribe { pkid, filters }
        }
        10 => {
            let pkid = cursor.u16()?;
            let mut filters = Vec::new();
            while !cursor.is_empty() {
                filters.push(cursor.string()?);
            }
            Packet::Unsubscribe { pkid, filters }
        }
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect,
        _ => return Err(CodecError::Malformed("packet type a client must not send")),
    };
    Ok(packet)
}

fn decode_connect(cursor: &mut Cursor<'_>) -> Result<Connect, CodecError> {
    let protocol_name = cursor.string()?;
    let protocol_level = cursor.u8()?;
    if protocol_name != "MQTT" && protocol_name != "MQIsdp" {
        return Err(CodecError::Malformed(
            "protocol name is neither MQTT nor MQIsdp",
        ));
    }
    let flags = cursor.u8()?;
    let keep_alive_secs = cursor.u16()?;
    let client_id = cursor.string()?;

    let will = if flags & 0x04 != 0 {
        let topic = cursor.string()?;
        let payload = cursor.binary()?;
        Some(Will {
            topic,
            payload,
            qos: QoS::from_bits((flags >> 3) & 0x03)?,
            retain: flags & 0x20 != 0,
        })
    } else {
        None
    };
    let username = if flags & 0x80 != 0 {
        Some(cursor.string()?)
    } else {
        None
    };
    let password = if flags & 0x40 != 0 {
        Some(cursor.binary()?)
    } else {
        None
    };

    Ok(Connect {
        protocol_level,
        client_id,
        clean_session: flags & 0x02 != 0,
        keep_alive_secs,
        will,
        username,
        password,
    })
}

/// Encodes a packet the broker sends (CONNACK, PUBLISH, acknowledgements, PINGRESP).
pub fn encode(packet: &Packet, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    let first = match packet {
        Packet::ConnAck {
            session_present,
            code,
        } => {
            body.push(u8::from(*session_present));
            body.push(*code);
            0x20
        }
        Packet::Publish(publish) => {
            put_string(&mut body, &publish.topic);
            if publish.qos != QoS::AtMostOnce {
                body.extend_from_slice(&publish.pkid.to_be_bytes());
            }
            body.extend_from_slice(&publish.payload);
            0x30 | (u8::from(publish.dup) << 3)
                | ((publish.qos as u8) << 1)
                | u8::from(publish.retain)
        }
        Packet::PubAck(pkid) => ack(&mut body, 0x40, *pkid),
        Packet::PubRec(pkid) => ack(&mut body, 0x50, *pkid),
        Packet::PubRel(pkid) => ack(&mut body, 0x62, *pkid),
        Packet::PubComp(pkid) => ack(&mut body, 0x70, *pkid),
        Packet::SubAck { pkid, codes } => {
            body.extend_from_slice(&pkid.to_be_bytes());
            body.extend_from_slice(codes);
            0x90
        }
        Packet::UnsubAck(pkid) => ack(&mut body, 0xb0, *pkid),
        Packet::PingResp => 0xd0,
        Packet::PingReq => 0xc0,
        Packet::Disconnect => 0xe0,
        Packet::Connect(_) | Packet::Subscribe { .. } | Packet::Unsubscribe { .. } => {
            unreachable!("the broker never sends client packets")
        }
    };

    out.push(first);
    let mut length = body.len();
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            break;
        }
    }
    out.extend_from_slice(&body);
}

fn ack(body: &mut Vec<u8>, first: u8, pkid: u16) -> u8 {
    body.extend_from_slice(&pkid.to_be_bytes());
    first
}

fn put_string(body: &mut Vec<u8>, text: &str) {
    body.extend_from_slice(&(text.len() as u16).to_be_bytes());
    body.extend_from_slice(text.as_bytes());
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        let byte = *self
            .data
            .get(self.pos)
            .ok_or(CodecError::Malformed("truncated"))?;
        self.pos += 1;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }

    fn binary(&mut self) -> Result<Vec<u8>, CodecError> {
        let length = usize::from(self.u16()?);
        let end = self.pos + length;
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or(CodecError::Malformed("truncated"))?;
        self.pos = end;
        Ok(bytes.to_vec())
    }

    fn string(&mut self) -> Result<String, CodecError> {
        String::from_utf8(self.binary()?).map_err(|_| CodecError::Malformed("invalid UTF-8"))
    }

    fn rest(&mut self) -> &[u8] {
        let rest = &self.data[self.pos.min(self.data.len())..];
        self.pos = self.data.len();
        rest
    }
}
