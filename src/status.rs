//! The bridge status shown to the user on `sensor.vt_bridge_status`.
//!
//! The option strings are part of the public interface (automations match on them), so
//! they are listed once here and the discovery payload takes its `options` from this list.

use serde::Serialize;

/// What the bridge is doing, and what (if anything) the user has to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeStatus {
    /// The daemon has just started and has not yet tried the GX.
    Starting,
    /// No GX known or reachable; the LAN is being searched.
    Searching,
    /// A candidate was found and is being checked over MQTT.
    Validating,
    /// Connecting to the adopted GX.
    Connecting,
    /// Connected; values are live.
    Connected,
    /// Connected, but the GX stopped sending heartbeats or values.
    Stale,
    /// A GX was found but MQTT access is switched off on it.
    MqttDisabled,
    /// The GX broker rejected our login; a password is needed or wrong.
    AuthRequired,
    /// The GX's TLS certificate differs from the pinned one.
    TlsUntrusted,
    /// Several GX devices are visible and none is adopted yet.
    MultipleGx,
    /// The configuration has an invalid value, or points at no usable GX (the broker at
    /// `gx_host` belongs to another GX, or scanning is off without a `gx_host`).
    ConfigError,
}

impl BridgeStatus {
    pub const ALL: [BridgeStatus; 11] = [
        BridgeStatus::Starting,
        BridgeStatus::Searching,
        BridgeStatus::Validating,
        BridgeStatus::Connecting,
        BridgeStatus::Connected,
        BridgeStatus::Stale,
        BridgeStatus::MqttDisabled,
        BridgeStatus::AuthRequired,
        BridgeStatus::TlsUntrusted,
        BridgeStatus::MultipleGx,
        BridgeStatus::ConfigError,
    ];

    /// The state string published to Home Assistant.
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeStatus::Starting => "starting",
            BridgeStatus::Searching => "searching",
            BridgeStatus::Validating => "validating",
            BridgeStatus::Connecting => "connecting",
            BridgeStatus::Connected => "connected",
            BridgeStatus::Stale => "stale",
            BridgeStatus::MqttDisabled => "mqtt_disabled",
            BridgeStatus::AuthRequired => "auth_required",
            BridgeStatus::TlsUntrusted => "tls_untrusted",
            BridgeStatus::MultipleGx => "multiple_gx",
            BridgeStatus::ConfigError => "config_error",
        }
    }

    /// True for states that wait for the user to fix something.
    pub fn needs_user(self) -> bool {
        matches!(
            self,
            BridgeStatus::MqttDisabled
                | BridgeStatus::AuthRequired
                | BridgeStatus::TlsUntrusted
                | BridgeStatus::MultipleGx
                | BridgeStatus::ConfigError
        )
    }
}

impl std::fmt::Display for BridgeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
