//! The Home Assistant side: MQTT Discovery payloads, state formatting, notifications,
//! and a client for the Core WebSocket API.

pub mod core_ws;
pub mod discovery;
pub mod notify;
pub mod state;
