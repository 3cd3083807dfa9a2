//! The Home Assistant side: MQTT Discovery payloads, state formatting and notifications.

pub mod discovery;
pub mod notify;
pub mod state;
