//! The bridge-status and GX-connected diagnostic entities.

use std::time::Instant;

use serde_json::json;

use super::Engine;
use crate::config::Settings;
use crate::ha::discovery::{attributes_topic, state_topic};
use crate::ha::notify::{notice_for, Notice, SetupProblem};
use crate::status::BridgeStatus;

/// What `sensor.vt_bridge_status` shows, and its attributes.
#[derive(Debug, Clone)]
pub struct BridgeState {
    link: BridgeStatus,
    detail: String,
    /// Cause of a `config_error` link status when the options point at no usable GX.
    setup_problem: Option<SetupProblem>,
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
            setup_problem: None,
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
        if self.shown() == BridgeStatus::ConfigError && !self.config_errors.is_empty() {
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
        self.setup_problem = None;
        changed
    }

    /// Sets the link status to `config_error` for `problem`; returns true when what the
    /// user sees changed.
    pub fn set_setup_problem(&mut self, problem: SetupProblem, detail: impl Into<String>) -> bool {
        let new_problem = self.setup_problem.as_ref() != Some(&problem);
        let changed = self.set(BridgeStatus::ConfigError, detail);
        self.setup_problem = Some(problem);
        changed || new_problem
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

    /// Logs a change of the link status once, at info for progress and warn for problems;
    /// a new detail with the same status goes to debug. Invalid options are logged once at
    /// start, so they are left out here even while the entity shows `config_error`.
    pub fn log_change(&mut self) {
        let current = (self.link, self.detail.clone());
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

    /// The words for the notification of the shown status: for `config_error` only the
    /// invalid options, so the notice stays the same while the link status changes.
    pub fn notice_detail(&self) -> String {
        if self.shown() == BridgeStatus::ConfigError && !self.config_errors.is_empty() {
            self.config_errors.join("; ")
        } else {
            self.detail.clone()
        }
    }

    /// Builds the notification for the shown status, or `None` when it needs nothing from
    /// the user. A setup problem has its own words, which name the options to change.
    pub fn notice(&self) -> Option<Notice> {
        match &self.setup_problem {
            Some(problem) if self.link == BridgeStatus::ConfigError => Some(problem.notice()),
            _ => notice_for(self.shown(), &self.notice_detail()),
        }
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
        self.notify_status();
    }

    /// Sets the link status to `config_error` for `problem`, publishes it and updates
    /// the notification.
    pub(super) fn set_setup_problem(&mut self, problem: SetupProblem, detail: impl Into<String>) {
        if self.status.set_setup_problem(problem, detail) {
            self.publish_status();
        }
    }

    fn notify_status(&mut self) {
        if self.status.shown() == BridgeStatus::Connected {
            self.notifier.connected();
        }
        self.notifier.show(self.status.notice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_errors(config_errors: &[&str]) -> BridgeState {
        let mut settings = crate::config::merge(&crate::cli::RunArgs::default(), false);
        settings.config_errors = config_errors.iter().map(|e| e.to_string()).collect();
        BridgeState::new(&settings)
    }

    fn wrong_gx() -> SetupProblem {
        SetupProblem::WrongGx {
            host: "192.0.2.10:1883".into(),
            found: "c0619ab0d0e1".into(),
            expected: "c0619ab0aaaa".into(),
        }
    }

    #[test]
    fn setup_problem_has_own_notice() {
        let mut state = state_with_errors(&[]);
        assert!(state.set_setup_problem(wrong_gx(), "The GX at 192.0.2.10:1883 has portal id c0619ab0d0e1."));
        assert_eq!(state.shown(), BridgeStatus::ConfigError);
        assert_eq!(state.notice(), Some(wrong_gx().notice()));
        assert!(!state.detail().contains("invalid"), "{}", state.detail());

        assert!(!state.set_setup_problem(wrong_gx(), "The GX at 192.0.2.10:1883 has portal id c0619ab0d0e1."));
        assert!(state.set_setup_problem(SetupProblem::NoGxToFind, "The GX at 192.0.2.10:1883 has portal id c0619ab0d0e1."));
        assert_eq!(state.notice(), Some(SetupProblem::NoGxToFind.notice()));
    }

    #[test]
    fn setup_problem_cleared_by_status() {
        let mut state = state_with_errors(&[]);
        state.set_setup_problem(wrong_gx(), "wrong GX");
        state.set(BridgeStatus::Connecting, "Connecting.");
        assert_eq!(state.notice(), None);
        state.set(BridgeStatus::ConfigError, "other");
        let notice = state.notice().unwrap();
        assert_ne!(notice, wrong_gx().notice());
    }

    #[test]
    fn invalid_options_keep_their_notice() {
        let mut state = state_with_errors(&["gx_port: 0 is not a port"]);
        state.set(BridgeStatus::Connecting, "Connecting.");
        let notice = state.notice().unwrap();
        assert_eq!(notice.id, "roamcore_victron_config_error");
        assert!(notice.title.contains("invalid option"), "{}", notice.title);
        assert!(notice.message.contains("gx_port: 0"), "{}", notice.message);
        assert!(state.detail().contains("were ignored: gx_port: 0"), "{}", state.detail());
    }

    #[test]
    fn firmware_formats() {
        assert_eq!(format_firmware(225289.0).as_deref(), Some("v3.70~9"));
        assert_eq!(format_firmware(f64::from(0x0370ffu32)).as_deref(), Some("v3.70"));
        assert_eq!(format_firmware(0.0), None);
    }
}
