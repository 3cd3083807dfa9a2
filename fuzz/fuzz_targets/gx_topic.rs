//! Any text as a GX topic: parsing never panics, and every part of a parsed topic is a
//! non-empty piece of the text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use roamcore_victron::gx::topic::{self, GxTopic, MAX_TOPIC_LEN};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = topic::parse(&text) else { return };
    assert!(text.len() <= MAX_TOPIC_LEN);
    assert!(text.starts_with("N/"));
    match parsed {
        GxTopic::Value { portal, service, instance, path } => {
            for part in [portal, service, instance, path] {
                assert!(!part.is_empty());
                assert!(text.contains(part));
            }
            assert!(!portal.contains('/'));
            assert!(!service.contains('/'));
            assert!(!instance.contains('/'));
        }
        GxTopic::Heartbeat { portal } | GxTopic::FullPublishCompleted { portal } | GxTopic::Keepalive { portal } => {
            assert!(!portal.is_empty());
            assert!(!portal.contains('/'));
        }
    }
});
