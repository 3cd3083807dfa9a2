//! SSDP: M-SEARCH while searching, NOTIFY listening always (passive), and the UPnP
//! device description fetched from LOCATION.
//!
//! Every GX runs simple-upnpd (GUPnP), which announces a root device of type
//! `urn:schemas-upnp-org:device:Basic:1` with manufacturer `Victron Energy` and, in the
//! namespace `urn:schemas-victronenergy-com:venusinfo-1`, `X_VrmPortalId`,
//! `X_MqttOnLan` (MQTT access on), `X_MqttWssOnLan` and `X_VenusVersion`. simple-upnpd
//! restarts when MQTT access is switched, so a fresh NOTIFY follows the change.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::candidate::{Candidate, Method};
use super::netif::HostAddr;

pub const MULTICAST: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
pub const PORT: u16 = 1900;
/// The device type simple-upnpd announces. Searching for it alone keeps responses from
/// routers and TVs away.
pub const DEVICE_TYPE: &str = "urn:schemas-upnp-org:device:Basic:1";
pub const MANUFACTURER: &str = "Victron Energy";

/// Builds the M-SEARCH request, with MX 2 s (responders wait a random 0-2 s).
pub fn msearch() -> String {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\
         MX: 2\r\nST: {DEVICE_TYPE}\r\nUSER-AGENT: Linux UPnP/1.1 roamcore-victron/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// An SSDP message: a search response or a NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub location: String,
    /// NT of a NOTIFY, ST of a response.
    pub target: String,
    pub usn: String,
    /// `ssdp:alive` / `ssdp:byebye` for a NOTIFY; empty for a response.
    pub nts: String,
    pub boot_id: Option<String>,
}

/// Parses an SSDP datagram. M-SEARCH requests (our own, looped back) and other
/// messages without LOCATION give `None`.
pub fn parse_message(datagram: &[u8]) -> Option<Announcement> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    let is_response = first.starts_with("HTTP/1.1 200");
    let is_notify = first.starts_with("NOTIFY ");
    if !is_response && !is_notify {
        return None;
    }
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_uppercase(), value.trim().to_string());
        }
    }
    let target_key = if is_notify { "NT" } else { "ST" };
    Some(Announcement {
        location: headers.get("LOCATION")?.clone(),
        target: headers.get(target_key).cloned().unwrap_or_default(),
        usn: headers.get("USN").cloned().unwrap_or_default(),
        nts: headers.get("NTS").cloned().unwrap_or_default(),
        boot_id: headers.get("BOOTID.UPNP.ORG").cloned(),
    })
}

impl Announcement {
    /// True for announcements worth fetching the description of: the Basic device type
    /// (one per GX), or anything whose USN names Victron's UDN scheme.
    pub fn is_interesting(&self) -> bool {
        if self.nts == "ssdp:byebye" {
            return false;
        }
        self.target == DEVICE_TYPE || self.usn.contains("com.victronenergy")
    }
}

/// The parts of a UPnP device description that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    pub manufacturer: Option<String>,
    pub model_name: Option<String>,
    pub serial_number: Option<String>,
    pub portal_id: Option<String>,
    pub mqtt_on_lan: Option<bool>,
    pub mqtt_wss_on_lan: Option<bool>,
    pub venus_version: Option<String>,
}

/// Reads the first element with local name `name` (any namespace prefix), with the
/// five predefined XML entities decoded.
fn element(xml: &str, name: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let tag_name = tag.split_whitespace().next().unwrap_or("");
        let local = tag_name.rsplit(':').next().unwrap_or("");
        if local == name && !tag.ends_with('/') && !tag.starts_with('/') {
            let body = &rest[end + 1..];
            let close = body.find("</")?;
            let value = body[..close].trim();
            return Some(
                value
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&amp;", "&"),
            );
        }
        rest = &rest[end..];
    }
    None
}

fn flag(xml: &str, name: &str) -> Option<bool> {
    match element(xml, name)?.as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

pub fn parse_description(xml: &str) -> Description {
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    Description {
        manufacturer: non_empty(element(xml, "manufacturer")),
        model_name: non_empty(element(xml, "modelName")),
        serial_number: non_empty(element(xml, "serialNumber")),
        portal_id: non_empty(element(xml, "X_VrmPortalId")).map(|p| p.to_ascii_lowercase()),
        mqtt_on_lan: flag(xml, "X_MqttOnLan"),
        mqtt_wss_on_lan: flag(xml, "X_MqttWssOnLan"),
        venus_version: non_empty(element(xml, "X_VenusVersion")),
    }
}

impl Description {
    pub fn is_victron(&self) -> bool {
        self.manufacturer.as_deref() == Some(MANUFACTURER)
    }

    /// Converts the description into a candidate for `host`; `None` when the device is not
    /// a Victron one.
    pub fn to_candidate(&self, host: IpAddr) -> Option<Candidate> {
        if !self.is_victron() {
            return None;
        }
        let mut candidate = Candidate::new(host, Method::Ssdp);
        candidate.portal_hint.clone_from(&self.portal_id);
        candidate.mqtt_on_lan = self.mqtt_on_lan;
        candidate.model.clone_from(&self.model_name);
        candidate.firmware.clone_from(&self.venus_version);
        candidate.serial.clone_from(&self.serial_number);
        candidate.evidence = Some("SSDP announcement by Victron Energy".into());
        Some(candidate)
    }
}

/// Returns the host of a LOCATION URL when it is an IP address, else the datagram's source.
pub fn location_host(location: &str, source: IpAddr) -> IpAddr {
    crate::http::Url::parse(location)
        .ok()
        .and_then(|url| url.host.parse::<IpAddr>().ok())
        .unwrap_or(source)
}

/// Fetches and parses a device description.
pub async fn fetch_description(location: &str, timeout: Duration) -> anyhow::Result<Description> {
    use anyhow::Context;
    let response = crate::http::get(location, &[], timeout)
        .await
        .with_context(|| format!("fetching the UPnP description {location}"))?;
    if response.status != 200 {
        anyhow::bail!("UPnP description {location} returned HTTP {}", response.status);
    }
    Ok(parse_description(&response.text()))
}

/// One socket per LAN address for M-SEARCH and its responses, plus one shared socket on
/// port 1900 that has joined the multicast group on every LAN interface for NOTIFY.
pub struct Sockets {
    pub search: Vec<(HostAddr, UdpSocket)>,
    pub notify: Option<UdpSocket>,
}

impl Sockets {
    /// Opens the sockets for `lan`. A failure on one interface is logged and skipped.
    pub fn open(lan: &[HostAddr]) -> Sockets {
        let mut search = Vec::new();
        for addr in lan {
            match open_search_socket(addr.addr) {
                Ok(socket) => search.push((addr.clone(), socket)),
                Err(err) => tracing::warn!(interface = %addr.interface, error = %err,
                    "cannot open the SSDP search socket; SSDP search skips this interface"),
            }
        }
        let notify = match open_notify_socket(lan) {
            Ok(socket) => Some(socket),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SSDP NOTIFY on port 1900");
                None
            }
        };
        Sockets { search, notify }
    }

    /// Sends one M-SEARCH per interface; returns how many went out.
    pub async fn search(&self) -> usize {
        let request = msearch();
        let target = SocketAddr::V4(SocketAddrV4::new(MULTICAST, PORT));
        let mut sent = 0;
        for (addr, socket) in &self.search {
            match socket.send_to(request.as_bytes(), target).await {
                Ok(_) => sent += 1,
                Err(err) => {
                    tracing::debug!(interface = %addr.interface, error = %err, "M-SEARCH failed")
                }
            }
        }
        sent
    }
}

fn open_search_socket(local: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_multicast_if_v4(&local)?;
    socket.set_multicast_ttl_v4(2)?;
    socket.set_multicast_loop_v4(false)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into())?;
    UdpSocket::from_std(socket.into())
}

fn open_notify_socket(lan: &[HostAddr]) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT)).into())?;
    let mut joined = 0;
    for addr in lan {
        match socket.join_multicast_v4(&MULTICAST, &addr.addr) {
            Ok(()) => joined += 1,
            Err(err) => {
                tracing::debug!(interface = %addr.interface, error = %err, "cannot join SSDP group")
            }
        }
    }
    if joined == 0 {
        return Err(std::io::Error::other("joined the SSDP group on no interface"));
    }
    UdpSocket::from_std(socket.into())
}

/// Remembers which descriptions were fetched recently, so a chatty device costs one
/// fetch per minute at most. A new BOOTID (the responder restarted) fetches again.
#[derive(Debug, Default)]
pub struct DescriptionCache {
    fetched: HashMap<(String, Option<String>), Instant>,
}

impl DescriptionCache {
    pub const TTL: Duration = Duration::from_secs(60);

    /// True when `announcement` should be fetched now; records the fetch.
    pub fn should_fetch(&mut self, announcement: &Announcement, now: Instant) -> bool {
        self.fetched.retain(|_, at| now.duration_since(*at) < Self::TTL);
        let key = (announcement.location.clone(), announcement.boot_id.clone());
        if self.fetched.contains_key(&key) {
            return false;
        }
        self.fetched.insert(key, now);
        true
    }
}

#[cfg(test)]
#[path = "ssdp_tests.rs"]
mod tests;
