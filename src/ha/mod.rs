//! The Home Assistant side: MQTT Discovery payloads and the publisher.

pub mod notify;
