//! Entities left behind by an earlier data directory. When `entities.json` is lost (an
//! add-on reinstall, a corrupt file set aside), Home Assistant still has the entities of
//! the earlier discovery message. Their retained availability is `online`, so once the GX
//! is back they would show their last values as current. For a short while after each
//! connection to Home Assistant's broker the bridge reads the retained availability topics
//! under its base; once the GX's full publish has rebuilt the registry, every key the
//! registry does not publish is marked `offline`. Such entities stay in Home Assistant,
//! unavailable, as entities of a device that went away do.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rumqttc::QoS;

use super::Engine;
use crate::ha::discovery::{availability_topic, BASE};

/// How long after connecting the retained availability topics are read. The broker sends
/// retained messages right after the subscription is acknowledged.
const WINDOW: Duration = Duration::from_secs(10);

/// State of the check for keys that only an earlier data directory knew.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    /// Until when retained availability messages are collected; `None` when not listening.
    listening_until: Option<Instant>,
    /// Keys whose retained availability is `online`.
    online: BTreeSet<String>,
}

fn filter() -> String {
    format!("{BASE}/+/availability")
}

impl Engine {
    /// Starts reading the retained availability topics (on each connection to Home
    /// Assistant's broker).
    pub(super) fn orphans_listen(&mut self, now: Instant) {
        if self.ha.client.try_subscribe(filter(), QoS::AtLeastOnce).is_ok() {
            self.orphans.listening_until = Some(now + WINDOW);
        }
    }

    /// Handles a message from Home Assistant's broker; returns true when it was an
    /// availability topic under the bridge's base.
    pub(super) fn orphans_message(&mut self, topic: &str, payload: &[u8], retained: bool) -> bool {
        let Some(key) = topic.strip_prefix(BASE).and_then(|rest| rest.strip_prefix('/')).and_then(|rest| rest.strip_suffix("/availability")) else {
            return false;
        };
        if self.orphans.listening_until.is_some() && retained && payload == b"online" && !key.contains('/') {
            self.orphans.online.insert(key.to_string());
        }
        true
    }

    /// Ends the listening window and, once the GX's full publish is complete, marks the
    /// keys the registry does not publish `offline`.
    pub(super) fn orphans_tick(&mut self, now: Instant) {
        if self.orphans.listening_until.is_some_and(|until| now >= until) {
            self.orphans.listening_until = None;
            let _ = self.ha.client.try_unsubscribe(filter());
        }
        if self.orphans.online.is_empty() || !self.model.snapshot_complete() {
            return;
        }
        let orphans: Vec<String> = std::mem::take(&mut self.orphans.online)
            .into_iter()
            .filter(|key| {
                let known = self.model.registry.by_key(key).map(|id| self.model.registry.get(id));
                !known.is_some_and(|entity| entity.in_discovery())
            })
            .collect();
        if orphans.is_empty() {
            return;
        }
        tracing::info!(
            count = orphans.len(),
            first = %orphans[0],
            "entities from an earlier data directory are not on this GX; showing them unavailable"
        );
        for key in orphans {
            self.publish_retained(availability_topic(&key), b"offline".to_vec());
        }
    }
}
