//! The engine's side of LAN discovery: it follows the adopted GX wherever discovery finds
//! it and reports back how the link fares.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Engine, GxTarget};
use crate::discovery::{self, DiscoveryConfig, DiscoveryEvent, GxEndpoint, LinkReport};
use crate::status::BridgeStatus;

/// A GX link that has not reconnected for this long (at time scale 1) counts as lost, and
/// discovery searches again: the GX may have a new address after a router reboot. The
/// link stops then, and discovery alone tries the old address until the GX is back.
const LOST_AFTER: Duration = Duration::from_secs(30);

/// LAN discovery while it runs.
pub(super) struct Lan {
    handle: discovery::DiscoveryHandle,
    events: mpsc::Receiver<DiscoveryEvent>,
    endpoint: Option<GxEndpoint>,
    down_since: Option<Instant>,
    lost_reported: bool,
}

/// Waits for the next discovery event, or forever without discovery.
pub(super) async fn recv(lan: &mut Option<Lan>) -> DiscoveryEvent {
    match lan {
        Some(lan) => match lan.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

impl Engine {
    /// Starts searching the LAN for the GX (no host configured).
    pub fn start_discovery(&mut self) {
        let mut config = DiscoveryConfig::from_settings(&self.settings);
        // Home Assistant's own broker is a plain Mosquitto on the LAN: never a candidate.
        if let Ok(ip) = self.ha_config.host.parse::<IpAddr>() {
            config.ignore.push(ip);
        }
        let adopted = discovery::adoption::load(&config.data_dir).is_some();
        if !config.scan && config.host.is_none() && !adopted {
            // Nothing to search and nowhere to connect: say so and do nothing else.
            self.set_setup_problem(
                crate::ha::notify::SetupProblem::NoGxToFind,
                "Scanning is switched off (scan: false) and no GX host is set, so the bridge cannot find the GX. \
                 Set gx_host, or switch scan back on.",
            );
            return;
        }
        self.set_status(BridgeStatus::Searching, "Searching the LAN for the Victron GX.");

        let (tx, events) = mpsc::channel(32);
        let handle = discovery::spawn(config, tx);
        self.lan = Some(Lan { handle, events, endpoint: None, down_since: None, lost_reported: false });
    }

    pub(super) fn on_discovery_event(&mut self, event: DiscoveryEvent) {
        match event {
            DiscoveryEvent::Status { status, detail } => {
                if !self.gx_online {
                    self.set_status(status, detail);
                }
            }
            DiscoveryEvent::Use(endpoint) => {
                self.status.set_model(endpoint.model.clone(), endpoint.firmware.clone());
                self.remember_model();
                let target = GxTarget {
                    host: endpoint.host.to_string(),
                    port: endpoint.port,
                    tls: endpoint.tls,
                    portal_id: Some(endpoint.portal_id.clone()),
                };
                if let Some(lan) = &mut self.lan {
                    lan.endpoint = Some(endpoint);
                    lan.lost_reported = false;
                }
                self.connect_gx(target);
            }
            DiscoveryEvent::OthersSeen(others) => {
                let list = others.iter().map(|o| serde_json::to_value(o).unwrap_or_default()).collect();
                self.status.set_other_gx(list);
                self.publish_status();
            }
        }
    }

    /// The GX link is live: discovery stops sweeping and remembers the address.
    pub(super) fn lan_link_up(&mut self) {
        if let Some(lan) = &mut self.lan {
            lan.down_since = None;
            lan.lost_reported = false;
            if let Some(endpoint) = lan.endpoint.clone() {
                lan.handle.report(LinkReport::Connected(endpoint));
            }
        }
    }

    /// Reports a failed GX link to discovery. A rejected login or certificate hands the
    /// GX over to discovery at once, because only the user can fix either.
    pub(super) fn lan_link_down(&mut self, error: &crate::mqtt::LinkError, now: Instant) {
        let Some(lan) = &mut self.lan else { return };
        let report = match error {
            crate::mqtt::LinkError::Auth => LinkReport::AuthFailed,
            crate::mqtt::LinkError::PinMismatch => LinkReport::TlsUntrusted,
            _ => {
                lan.down_since.get_or_insert(now);
                return;
            }
        };
        lan.handle.report(report);
        self.hand_gx_to_discovery();
    }

    /// Reports the link as lost once it has been down for a while.
    pub(super) fn lan_tick(&mut self, now: Instant) {
        let scale = self.timings.throttle_scale;
        let Some(lan) = &mut self.lan else { return };
        let lost_after = LOST_AFTER.mul_f64(scale);
        if lan.down_since.is_some_and(|since| now.duration_since(since) >= lost_after) && !lan.lost_reported {
            lan.handle.report(LinkReport::Lost);
            self.hand_gx_to_discovery();
        }
    }

    /// Stops the GX link, so only discovery connects to the GX's address until it sends
    /// `Use` again. Two clients on the same address would double the logins a GX counts
    /// against a wrong password, and each would set the bridge status in its own words.
    fn hand_gx_to_discovery(&mut self) {
        if let Some(lan) = &mut self.lan {
            lan.down_since = None;
            lan.lost_reported = true;
        }
        if let Some(link) = self.gx.take() {
            tracing::debug!(gx = %self.gx_label(), "GX link stopped; discovery checks the GX from now on");
            link.stop();
        }
    }
}
