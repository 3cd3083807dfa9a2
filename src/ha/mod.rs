//! The Home Assistant side: MQTT Discovery payloads, state formatting, notifications,
//! and the Core WebSocket API used to ignore Home Assistant's own discovery of the GX.

pub mod core_ws;
pub mod discovery;
pub mod notice;
pub mod notify;
pub mod state;
pub mod victron_gx;
