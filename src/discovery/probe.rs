//! Probes that tell a GX from other devices when MQTT alone cannot: its web page on port
//! 80, its HTTPS certificate on 443 and its Modbus TCP server on 502. They run only on
//! hosts that already look like a GX (an MQTT port open, a Victron MAC, an mDNS or SSDP
//! hint), and only while searching.
//!
//! Signatures (Venus OS nginx and venus-www): `/` redirects to `/gui-v2` (or `/gui-v1`);
//! without a session the login page `/auth/login.php` ("GX device login"); with the
//! Secured profile port 80 serves only the certificate note ("Venus GX - SSL certifcate
//! note", spelled so). The HTTPS certificate is self-signed with subject
//! `O=Victron Energy, OU=Venus OS, CN=venus.local`. Modbus unit 100 is
//! com.victronenergy.system; holding registers 800-805 hold its Serial, the portal id,
//! as 12 ASCII characters.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::sweep::Budget;

/// Packets one short TCP exchange costs (handshake, request, response, close), an
/// estimate for the budget.
const EXCHANGE_PACKETS: f64 = 8.0;

/// What the probes found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The signatures seen, in words, e.g. "web page redirects to /gui-v2".
    pub signs: Vec<String>,
    /// The portal id read over Modbus (a hint until MQTT confirms it).
    pub portal_id: Option<String>,
}

impl Evidence {
    pub fn is_gx(&self) -> bool {
        !self.signs.is_empty()
    }
}

/// Classifies the answer to `GET /` on port 80.
pub fn web_signature(response: &crate::http::Response) -> Option<&'static str> {
    let location = response.header("location").unwrap_or("");
    let body = response.text();
    if (300..400).contains(&response.status) {
        if location.contains("/gui-v2") || location.contains("/gui-v1") {
            return Some("web page redirects to the GX GUI");
        }
        if location.contains("/auth/login.php") {
            return Some("web page redirects to the GX login page");
        }
        if location.contains("cert-explanation") {
            return Some("web page shows the GX certificate note");
        }
    }
    if body.contains("GX device login") {
        return Some("web page is the GX login page");
    }
    if body.contains("Venus GX - SSL certifcate note") {
        return Some("web page shows the GX certificate note");
    }
    None
}

pub async fn probe_web(ip: IpAddr, timeout: Duration) -> Option<&'static str> {
    let url = match ip {
        IpAddr::V4(v4) => format!("http://{v4}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]/"),
    };
    let response = crate::http::get(&url, &[], timeout).await.ok()?;
    web_signature(&response)
}

/// True when a certificate subject is Victron's GX certificate.
pub fn is_gx_subject(subject: &[(&'static str, String)]) -> bool {
    let has = |key: &str, value: &str| subject.iter().any(|(k, v)| *k == key && v == value);
    has("O", "Victron Energy") && has("OU", "Venus OS")
}

/// Reads the subject of the certificate served on `ip:port` (TLS through rustls with
/// the ring provider; the certificate is recorded, not trusted).
pub async fn probe_certificate(ip: IpAddr, port: u16, timeout: Duration) -> Option<bool> {
    tokio::task::spawn_blocking(move || -> Option<bool> {
        let der = peer_certificate(SocketAddr::new(ip, port), timeout).ok()?;
        Some(is_gx_subject(&super::der::subject(&der)?))
    })
    .await
    .ok()
    .flatten()
}

fn peer_certificate(addr: SocketAddr, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let (config, _) = crate::gx::tls::client_config(None);
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut connection =
        rustls::ClientConnection::new(Arc::clone(&config), name).map_err(std::io::Error::other)?;
    let mut socket = TcpStream::connect_timeout(&addr, timeout)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    while connection.is_handshaking() {
        connection.complete_io(&mut socket)?;
    }
    let der = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.as_ref().to_vec())
        .ok_or_else(|| std::io::Error::other("no certificate"))?;
    connection.send_close_notify();
    let _ = connection.complete_io(&mut socket);
    Ok(der)
}

/// Unit id of com.victronenergy.system on the GX's Modbus TCP server.
pub const MODBUS_UNIT_SYSTEM: u8 = 100;
/// Holding registers 800-805: `/Serial` of the system service (the portal id).
pub const MODBUS_SERIAL_REGISTER: u16 = 800;

/// A Modbus TCP "read holding registers" request for the portal id.
pub fn modbus_request(transaction: u16) -> [u8; 12] {
    let [t0, t1] = transaction.to_be_bytes();
    let [r0, r1] = MODBUS_SERIAL_REGISTER.to_be_bytes();
    [t0, t1, 0, 0, 0, 6, MODBUS_UNIT_SYSTEM, 0x03, r0, r1, 0, 6]
}

/// Reads the portal id from a Modbus TCP response to [`modbus_request`].
pub fn parse_modbus_response(response: &[u8], transaction: u16) -> Option<String> {
    if response.len() < 9 + 12 || response[0..2] != transaction.to_be_bytes() {
        return None;
    }
    if response[7] != 0x03 || response[8] != 12 {
        return None;
    }
    let text: String =
        response[9..21].iter().filter(|b| **b != 0).map(|b| char::from(*b)).collect();
    let text = text.trim().to_ascii_lowercase();
    crate::config::validate_portal_id(&text).ok().map(|_| text)
}

pub async fn probe_modbus(ip: IpAddr, timeout: Duration) -> Option<String> {
    tokio::task::spawn_blocking(move || -> Option<String> {
        let addr = SocketAddr::new(ip, 502);
        let mut socket = TcpStream::connect_timeout(&addr, timeout).ok()?;
        socket.set_read_timeout(Some(timeout)).ok()?;
        socket.write_all(&modbus_request(0x5243)).ok()?;
        let mut buf = [0u8; 64];
        let mut len = 0;
        while len < 21 {
            let n = socket.read(&mut buf[len..]).ok()?;
            if n == 0 {
                break;
            }
            len += n;
        }
        parse_modbus_response(&buf[..len], 0x5243)
    })
    .await
    .ok()
    .flatten()
}

/// Runs the three probes on `ip` within the budget.
pub async fn probe_gx(ip: IpAddr, budget: &Budget, timeout: Duration) -> Evidence {
    let mut evidence = Evidence::default();
    budget.take(EXCHANGE_PACKETS).await;
    if let Some(sign) = probe_web(ip, timeout).await {
        evidence.signs.push(sign.to_string());
    }
    budget.take(EXCHANGE_PACKETS).await;
    if probe_certificate(ip, 443, timeout).await == Some(true) {
        evidence.signs.push("HTTPS certificate of Victron Energy, Venus OS".to_string());
    }
    budget.take(EXCHANGE_PACKETS).await;
    if let Some(portal) = probe_modbus(ip, timeout).await {
        evidence.signs.push(format!("Modbus TCP reports portal id {portal}"));
        evidence.portal_id = Some(portal);
    }
    evidence
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
