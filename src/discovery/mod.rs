//! Finding the GX on the LAN without configuration.
//!
//! Scanners, one module each, produce [`candidate::Candidate`]s:
//! * [`ssdp`]: M-SEARCH and NOTIFY; simple-upnpd on every GX announces a UPnP device with
//!   manufacturer `Victron Energy` and the portal id. The best signal.
//! * [`mdns`]: resolves `venus.local` (Avahi's fixed host name on Venus OS).
//! * [`arp`]: the host's neighbour table, Victron's MAC block first.
//! * [`sweep`]: TCP connects to 1883 and 8883 across the attached private subnets.
//! * [`probe`]: the GX web page, HTTPS certificate and Modbus portal id, only on hosts
//!   that already look like a GX, to tell "MQTT off" or "password needed" apart from an
//!   unrelated device.
//!
//! Every candidate must pass [`validate`]: an MQTT handshake that shows the retained
//! `N/<portal>/system/0/Serial`. Hints from SSDP or Modbus are never trusted alone. The
//! pure state machine in [`machine`] decides what to validate, which GX to adopt and what
//! to tell the user; [`runner`] does the I/O around it. The [`policy`] module contains the
//! scan limits: private subnets of /24 or smaller, 20 packets per second, no scans while
//! connected.

pub mod adoption;
pub mod arp;
pub mod candidate;
mod der;
pub mod machine;
pub mod mdns;
pub mod messages;
pub mod netif;
pub mod policy;
pub mod probe;
pub mod runner;
pub mod ssdp;
pub mod sweep;
pub mod validate;

#[cfg(test)]
mod machine_tests;
#[cfg(test)]
mod machine_cached_tests;

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::clock::Timings;
use crate::config::{HostPort, Ipv4Net};
use crate::status::BridgeStatus;

/// Settings of discovery, taken from [`crate::config::Settings`].
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Search the LAN. Off: only `host` (and the cached address of the adopted GX).
    pub scan: bool,
    /// A GX address given by the user, tried first and validated like any candidate.
    pub host: Option<HostPort>,
    /// Subnets to sweep; empty means the attached private subnets.
    pub subnets: Vec<Ipv4Net>,
    pub large_subnets: bool,
    /// Adopt this GX (replacing an adopted one with another portal id).
    pub portal_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Use only TLS on 8883 (never plain 1883).
    pub tls: bool,
    pub data_dir: PathBuf,
    pub timings: Timings,
    /// Divisor of discovery's own waits (`--time-scale`, 1.0 in production). `timings` is
    /// already divided by it.
    pub time_scale: f64,
    /// Hosts never validated, such as Home Assistant's own broker.
    pub ignore: Vec<IpAddr>,
}

impl DiscoveryConfig {
    /// Discovery settings from the daemon's settings. `ignore` is left empty; the caller
    /// adds Home Assistant's broker address once it is known.
    pub fn from_settings(settings: &crate::config::Settings) -> DiscoveryConfig {
        let host = match &settings.gx {
            crate::config::GxTarget::Fixed(host) => Some(host.clone()),
            crate::config::GxTarget::Discover => None,
        };
        DiscoveryConfig {
            scan: settings.scan,
            host,
            subnets: settings.scan_subnets.clone(),
            large_subnets: settings.scan_large_subnets,
            portal_id: settings.portal_id.clone(),
            username: settings.gx_username.clone(),
            password: settings.gx_password.clone(),
            tls: settings.gx_tls,
            data_dir: settings.data_dir.clone(),
            timings: Timings::scaled(settings.time_scale),
            time_scale: settings.time_scale,
            ignore: Vec::new(),
        }
    }
}

/// Events from discovery to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryEvent {
    /// searching, validating, mqtt_disabled, auth_required, tls_untrusted or
    /// multiple_gx, with the sentence the user reads.
    Status { status: BridgeStatus, detail: String },
    /// The validated, adopted GX to connect to.
    Use(GxEndpoint),
    /// Other GX devices on the network, for the bridge-status attributes.
    OthersSeen(Vec<GxSeen>),
}

/// The address, port and TLS setting of the adopted GX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GxEndpoint {
    pub host: IpAddr,
    pub port: u16,
    pub tls: bool,
    pub portal_id: String,
    pub model: Option<String>,
    pub firmware: Option<String>,
}

/// A GX that is not the adopted one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GxSeen {
    pub portal_id: String,
    pub host: IpAddr,
    pub model: Option<String>,
    pub firmware: Option<String>,
    /// True when MQTT showed its Serial; false when only SSDP announced it.
    pub confirmed: bool,
}

/// Reports from the GX link to discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkReport {
    Connected(GxEndpoint),
    /// The link gave up on the endpoint: search again, last address first.
    Lost,
    /// The GX rejected the login.
    AuthFailed,
    /// The GX presented a certificate other than the pinned one.
    TlsUntrusted,
}

/// The engine's side of a running discovery task.
#[derive(Debug, Clone)]
pub struct DiscoveryHandle {
    reports: mpsc::UnboundedSender<LinkReport>,
}

impl DiscoveryHandle {
    pub fn report(&self, report: LinkReport) {
        if self.reports.send(report).is_err() {
            tracing::debug!("discovery task has stopped; link report dropped");
        }
    }
}

/// Starts discovery on the current tokio runtime. It runs until `events` is closed.
pub fn spawn(config: DiscoveryConfig, events: mpsc::Sender<DiscoveryEvent>) -> DiscoveryHandle {
    let (reports, report_rx) = mpsc::unbounded_channel();
    tokio::spawn(runner::run(config, events, report_rx));
    DiscoveryHandle { reports }
}
