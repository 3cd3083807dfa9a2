//! A sequence of GX messages through topic parsing, payload parsing and the model, with
//! full-publish boundaries in between. Nothing may panic, and every state the model
//! produces must be one Home Assistant accepts: a number or `None` on numeric sensors, an
//! option from the entity's list on enum sensors, finite coordinates.
//!
//! Input: lines. `!b` begins a full publish, `!e` ends it; any other line is
//! `TOPIC<TAB>PAYLOAD`, the payload's raw bytes (empty: the device left).

#![no_main]

use libfuzzer_sys::fuzz_target;
use roamcore_victron::gx::{payload, topic};
use roamcore_victron::ha::state::payloads;
use roamcore_victron::model::eval::State;
use roamcore_victron::model::normalise::{Changes, Normaliser};
use roamcore_victron::model::registry::Registry;
use roamcore_victron::model::spec::Component;

fuzz_target!(|data: &[u8]| {
    let mut model = Normaliser::new(Registry::open(None));
    let mut now = 1_700_000_000;

    for line in data.split(|b| *b == b'\n') {
        now += 1;
        let changes = match line {
            b"!b" => {
                model.begin_snapshot();
                continue;
            }
            b"!e" => model.end_snapshot(now),
            _ => {
                let split = line.iter().position(|b| *b == b'\t').unwrap_or(line.len());
                let topic_text = String::from_utf8_lossy(&line[..split]);
                let payload_bytes = line.get(split + 1..).unwrap_or(&[]);
                let Ok(topic::GxTopic::Value { service, instance, path, .. }) = topic::parse(&topic_text) else {
                    continue;
                };
                model.ingest(service, instance, path, payload::parse(payload_bytes), now)
            }
        };
        check(&model, &changes);
    }
});

/// Checks every entity the message changed.
fn check(model: &Normaliser, changes: &Changes) {
    for problem in &changes.problems {
        assert!(!problem.key.is_empty());
    }
    for id in &changes.entities {
        let entity = model.registry.get(*id);
        let Some(state) = entity.state() else { continue };
        let out = payloads(entity, state);
        match state {
            State::Number(_) => {
                let text = out.state.expect("a number has a state payload");
                assert!(text == "None" || text.parse::<f64>().is_ok_and(f64::is_finite), "{}: {text}", entity.key);
            }
            State::Option(option) => {
                let options = entity.def.options().expect("an option state needs an options list");
                assert!(options.contains(option), "{}: {option} not in {options:?}", entity.key);
            }
            State::Location(location) => {
                assert_eq!(entity.def.component, Component::DeviceTracker);
                assert!(location.latitude.is_finite() && location.longitude.is_finite(), "{location:?}");
                let attributes = out.attributes.expect("a location has attributes");
                assert!(serde_json::from_str::<serde_json::Value>(&attributes).is_ok(), "{attributes}");
            }
            State::Bool(_) | State::Unknown | State::Alarms(_) => {
                assert!(out.state.is_some());
            }
        }
    }
}
