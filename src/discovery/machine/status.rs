//! The public status of the machine, with the sentence for the user.

use std::net::IpAddr;

use super::{Action, Machine, Phase};
use crate::discovery::{messages, DiscoveryEvent, GxSeen};
use crate::status::BridgeStatus;

impl Machine {
    /// Returns the status for the current phase, with the sentence for the user.
    pub fn status(&self) -> Option<(BridgeStatus, String)> {
        let info = |host: &IpAddr| self.known.get(host);
        let model = |host: &IpAddr| info(host).and_then(|c| c.model.clone());
        let portal = |host: &IpAddr| {
            info(host).and_then(|c| c.portal_hint.clone()).or_else(|| {
                self.adopted.as_ref().filter(|a| a.host == *host).map(|a| a.portal_id.clone())
            })
        };
        match &self.phase {
            Phase::Searching => {
                let detail = match self.target_portal() {
                    Some(portal) => {
                        let last =
                            self.adopted.as_ref().filter(|a| a.portal_id == portal).map(|a| a.host);
                        messages::searching_for(portal, last)
                    }
                    None => messages::searching(self.config.scan),
                };
                Some((BridgeStatus::Searching, detail))
            }
            Phase::Validating(host) => {
                Some((BridgeStatus::Validating, messages::validating(*host)))
            }
            Phase::Connecting(_) | Phase::Connected(_) => None,
            Phase::MqttDisabled(host) => Some((
                BridgeStatus::MqttDisabled,
                messages::mqtt_disabled(*host, model(host).as_deref(), portal(host).as_deref()),
            )),
            Phase::AuthRequired(host) => Some((
                BridgeStatus::AuthRequired,
                messages::auth_required(
                    *host,
                    model(host).as_deref(),
                    portal(host).as_deref(),
                    self.config.password_given,
                ),
            )),
            Phase::TlsUntrusted(host) => Some((
                BridgeStatus::TlsUntrusted,
                messages::tls_untrusted(*host, portal(host).as_deref().unwrap_or("unknown")),
            )),
            Phase::MultipleGx => {
                Some((BridgeStatus::MultipleGx, messages::multiple_gx(&self.unadopted())))
            }
        }
    }

    /// Returns the GX devices listed by `multiple_gx`.
    pub fn unadopted(&self) -> Vec<GxSeen> {
        self.unadopted.values().map(|p| p.seen.clone()).collect()
    }

    pub(super) fn emit_status(&mut self, actions: &mut Vec<Action>) {
        let Some(status) = self.status() else { return };
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        self.last_status = Some(status.clone());
        actions.push(Action::Emit(DiscoveryEvent::Status { status: status.0, detail: status.1 }));
    }
}
