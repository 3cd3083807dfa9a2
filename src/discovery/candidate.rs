//! What the scanners report about a host, and what validation found out about it.

use std::net::IpAddr;

use crate::gx::tls::Fingerprint;

/// How a candidate was found, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The host given in the configuration.
    Configured,
    /// The last address the adopted GX had, from `discovery.json`.
    Cached,
    Ssdp,
    Mdns,
    /// The host's ARP table, an entry with Victron's MAC block.
    ArpVictron,
    /// The host's ARP table, any other entry with an MQTT port open.
    Arp,
    Sweep,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Configured => "configured",
            Method::Cached => "cached",
            Method::Ssdp => "ssdp",
            Method::Mdns => "mdns",
            Method::ArpVictron => "arp_victron",
            Method::Arp => "arp",
            Method::Sweep => "sweep",
        }
    }
}

/// A host that might be a GX, with every hint gathered so far. Hints are never trusted
/// on their own: only the retained Serial over MQTT proves a GX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub host: IpAddr,
    pub method: Method,
    /// Only this port is tried (configured host with a port).
    pub port: Option<u16>,
    /// Portal id announced by SSDP or read over Modbus.
    pub portal_hint: Option<String>,
    /// `X_MqttOnLan` from SSDP: false means MQTT access is off on the GX.
    pub mqtt_on_lan: Option<bool>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub serial: Option<String>,
    /// Why this host looks like a GX (SSDP manufacturer, web page, certificate, MAC
    /// block, mDNS name), in words for the log. `None` for a bare open port.
    pub evidence: Option<String>,
}

impl Candidate {
    pub fn new(host: IpAddr, method: Method) -> Candidate {
        Candidate {
            host,
            method,
            port: None,
            portal_hint: None,
            mqtt_on_lan: None,
            model: None,
            firmware: None,
            serial: None,
            evidence: None,
        }
    }

    /// Returns the sort key of the validation queue: the configured host first, then a
    /// host announcing `target` (the portal id looked for), then the others, each group
    /// by method. An announcement is fresher than the stored address, which may be
    /// unreachable after a router reboot and would otherwise be retried ahead of it, each
    /// try waiting out a connect timeout.
    pub fn validation_order(&self, target: Option<&str>) -> (u8, Method) {
        let announces_target = self.method != Method::Cached
            && target.is_some()
            && self.portal_hint.as_deref() == target;
        let group = match self.method {
            Method::Configured => 0,
            _ if announces_target => 1,
            _ => 2,
        };
        (group, self.method)
    }

    /// Adds the hints of `other` (same host) that this one lacks. The earlier method wins.
    pub fn merge(&mut self, other: &Candidate) {
        self.method = self.method.min(other.method);
        self.port = self.port.or(other.port);
        if other.portal_hint.is_some() {
            self.portal_hint.clone_from(&other.portal_hint);
        }
        if other.mqtt_on_lan.is_some() {
            self.mqtt_on_lan = other.mqtt_on_lan;
        }
        if self.model.is_none() {
            self.model.clone_from(&other.model);
        }
        if other.firmware.is_some() {
            self.firmware.clone_from(&other.firmware);
        }
        if self.serial.is_none() {
            self.serial.clone_from(&other.serial);
        }
        if self.evidence.is_none() {
            self.evidence.clone_from(&other.evidence);
        }
    }
}

/// What an MQTT handshake with a candidate showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A GX: the retained `N/<portal>/system/0/Serial` arrived.
    Gx { portal_id: String, port: u16, tls: bool, fingerprint: Option<Fingerprint> },
    /// A broker that is not a GX: no retained Serial within the wait.
    NotGx { port: u16 },
    /// CONNACK with "bad user name or password" or "not authorised".
    LoginRejected { port: u16, tls: bool },
    /// Neither 1883 nor 8883 accepts a TCP connection.
    PortsClosed,
    /// The TCP connection was accepted but no CONNACK came (or the TLS handshake
    /// stalled) within the connect timeout.
    NoConnack { port: u16 },
    /// The TLS certificate is not the one pinned for this portal id.
    TlsUntrusted { port: u16, portal_id: String, fingerprint: Option<Fingerprint> },
    /// The host did not answer at all (no route, no ARP reply).
    Unreachable,
}

impl Outcome {
    /// A short name for the log and the `discover` output.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Gx { .. } => "gx",
            Outcome::NotGx { .. } => "not_gx",
            Outcome::LoginRejected { .. } => "auth_required",
            Outcome::PortsClosed => "port_closed",
            Outcome::NoConnack { .. } => "timeout",
            Outcome::TlsUntrusted { .. } => "tls_untrusted",
            Outcome::Unreachable => "unreachable",
        }
    }
}
