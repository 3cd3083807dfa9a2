//! The bridge-status and GX-connected diagnostic entities.

use std::time::Instant;

use serde_json::json;

use super::Engine;
use crate::config::Settings;
use crate::ha::discovery::{attributes_topic, state_topic};
use crate::status::BridgeStatus;

/// What `sensor.vt_bridge_status` shows, and its attributes.
#[derive(Debug, Clone)]
pub struct BridgeState {
    link: BridgeStatus,
    detail: String,
    config_errors: Vec<String>,
    gx_host: Option<String>,
    portal_id: Option<String>,
    model: Option<String>,
    firmware: Option<String>,
    capabilities: Vec<&'static str>,
    other_gx: Vec<serde_json::Value>,
    last_logged: Option<(BridgeStatus, String)>,
}

impl BridgeState {
    pub fn new(settings: &Settings) -> BridgeState {
        BridgeState {
            link: BridgeStatus::Starting,
            detail: "Starting.".into(),
            config_errors: settings.config_errors.clone(),
            gx_host: None,
            portal_id: None,
            model: None,
            firmware: None,
            capabilities: Vec::new(),
            other_gx: Vec::new(),
            last_logged: None,
        }
    }

    /// The status shown: a configuration error wins over the link state unless the user
    /// must fix something on the GX first.
    pub fn shown(&self) -> BridgeStatus {
        if !self.config_errors.is_empty() && !self.link.needs_user() {
            BridgeStatus::ConfigError
        } else {
            self.link
        }
    }

    pub fn link(&self) -> BridgeStatus {
        self.link
    }

    pub fn detail(&self) -> String {
        if self.shown() == BridgeStatus::ConfigError {
            format!(
                "The add-on configuration has invalid values, which were ignored: {}. {}",
                self.config_errors.join("; "),
                self.detail
            )
        } else {
            self.detail.clone()
        }
    }

    /// Sets the link status; returns true when what the user sees changed.
    pub fn set(&mut self, link: BridgeStatus, detail: impl Into<String>) -> bool {
        let detail = detail.into();
        let changed = self.link != link || self.detail != detail;
        self.link = link;
        self.detail = detail;
        changed
    }

    pub fn set_gx(&mut self, host: Option<String>, portal: Option<String>) {
        if host.is_some() {
            self.gx_host = host;
        }
        if portal.is_some() {
            self.portal_id = portal;
        }
    }

    pub fn set_model(&mut self, model: Option<String>, firmware: Option<String>) {
        if model.is_some() {
            self.model = model;
        }
        if firmware.is_some() {
            self.firmware = firmware;
        }
    }

    pub fn set_capabilities(&mut self, capabilities: &[&'static str]) {
        self.capabilities = capabilities.to_vec();
    }

    pub fn set_other_gx(&mut self, others: Vec<serde_json::Value>) {
        self.other_gx = others;
    }

    pub fn gx_model(&self) -> Option<String> {
        self.model.clone()
    }

    pub fn attributes(&self) -> serde_json::Value {
        json!({
            "detail": self.detail(),
            "link": self.link.as_str(),
            "gx_host": self.gx_host,
            "portal_id": self.portal_id,
            "model": self.model,
            "firmware": self.firmware,
            "capabilities": self.capabilities,
            "other_gx": self.other_gx,
            "config_errors": self.config_errors,
        })
    }

    /// Logs a status change once, at info for progress and warn for problems. A new detail
    /// under the same status goes to debug, because failed attempts can alternate between
    /// errors (a timeout, then "no route to host" once ARP gives up) and each switch would
    /// log a line; the rate-limited warnings already report those errors.
    pub fn log_change(&mut self) {
        let current = (self.shown(), self.detail());
        if self.last_logged.as_ref() == Some(&current) {
            return;
        }
        let same_status = self.last_logged.as_ref().is_some_and(|(status, _)| *status == current.0);
        if same_status {
            tracing::debug!(status = %current.0, "{}", current.1);
        } else if current.0.needs_user() {
            tracing::warn!(status = %current.0, "{}", current.1);
        } else {
            tracing::info!(status = %current.0, "{}", current.1);
        }
        self.last_logged = Some(current);
    }

    pub fn tick(&mut self, _now: Instant) {}
}

/// Formats `system/0/FirmwareVersion` (e.g. 225289 = 0x037009) as `v3.70~9`.
/// NOTE: release builds are assumed to carry 0xFF in the low byte (shown as `v3.70`); this
/// was read off beta captures only.
pub fn format_firmware(version: f64) -> Option<String> {
    if !(version.is_finite() && version > 0.0) {
        return None;
    }
    let v = version as u32;
    let (major, minor, build) = ((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
    let base = format!("v{major:x}.{minor:02x}");
    Some(if build == 0xff { base } else { format!("{base}~{build}") })
}

impl Engine {
    /// Sets the link status, publishes it and tells the notifier.
    pub(super) fn set_status(&mut self, status: BridgeStatus, detail: impl Into<String>) {
        if self.status.set(status, detail) {
            self.publish_status();
        }
    }

    /// Publishes the diagnostic entities' states.
    pub(super) fn publish_status(&mut self) {
        self.status.log_change();
        let shown = self.status.shown();
        self.publish_retained(state_topic("bridge_status"), shown.as_str().as_bytes().to_vec());
        self.publish_retained(attributes_topic("bridge_status"), self.status.attributes().to_string().into_bytes());
        let connected = if self.gx_online { "ON" } else { "OFF" };
        self.publish_retained(state_topic("gx_connected"), connected.as_bytes().to_vec());
        self.notify_status(shown);
    }

    fn notify_status(&mut self, shown: BridgeStatus) {
        let detail = self.status.detail();
        self.notifier.status_changed(shown, &detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_formats() {
        assert_eq!(format_firmware(225289.0).as_deref(), Some("v3.70~9"));
        assert_eq!(format_firmware(f64::from(0x0370ffu32)).as_deref(), Some("v3.70"));
        assert_eq!(format_firmware(0.0), None);
    }
}
