//! Publishing to Home Assistant's broker: discovery, availability, states, and the
//! reaction to Home Assistant's birth message and to reconnects.

use std::time::{Duration, Instant};

use rand::Rng;
use rumqttc::QoS;

use super::{Engine, Internal};
use crate::clock::Timings;
use crate::mqtt::LinkConfig;
use crate::supervisor::MqttService;
use crate::ha::discovery::{self, attributes_topic, bridge_topic, config_topic, state_topic};
use crate::ha::state::payloads;
use crate::model::eval::State;
use crate::model::registry::EntityId;
use crate::mqtt::{LinkEvent, QOS};

impl Engine {
    pub(super) fn on_ha_event(&mut self, event: LinkEvent) {
        let now = Instant::now();
        match event {
            LinkEvent::Connected => {
                self.ha_connected = true;
                self.problems.clear("ha_link");
                tracing::info!(broker = %self.ha_address(), "connected to Home Assistant's broker; publishing discovery");
                let prefix = self.settings.discovery_prefix.clone();
                let mut birth = vec![format!("{prefix}/status")];
                if prefix != "homeassistant" {
                    birth.push("homeassistant/status".into());
                }
                for topic in birth {
                    let _ = self.ha.client.try_subscribe(topic, QoS::AtLeastOnce);
                }
                self.orphans_listen(now);
                self.republish_all();
            }
            LinkEvent::Message { topic, payload } => {
                if self.orphans_message(&topic, &payload.payload, payload.retain) {
                    return;
                }
                if topic.ends_with("/status") && payload.payload.as_ref() == b"online" {
                    self.notifier.refresh();
                    if let Some(task) = &self.victron_gx {
                        task.core_restarted();
                    }
                    let (low, high) = self.timings.birth_delay;
                    let delay = rand::rng().random_range(low.as_secs_f64()..=high.as_secs_f64().max(low.as_secs_f64()));
                    self.birth_republish_at = Some(now + Duration::from_secs_f64(delay));
                }
            }
            LinkEvent::Disconnected(error) => {
                if self.ha_connected {
                    tracing::warn!(broker = %self.ha_address(), error = %error.describe(), "lost Home Assistant's broker; reconnecting");
                } else {
                    crate::warn_limited!(
                        self.problems,
                        "ha_link",
                        now,
                        "cannot connect to Home Assistant's broker {}: {}",
                        self.ha_address(),
                        error.describe()
                    );
                }
                self.ha_connected = false;
                if error == crate::mqtt::LinkError::Auth {
                    self.ha_auth_failed();
                }
            }
            LinkEvent::Acked => self.health_published = Some(now),
            LinkEvent::Closed => self.ha_connected = false,
        }
    }

    fn ha_address(&self) -> String {
        self.ha_broker_label.clone()
    }

    /// Home Assistant's broker rejected our login. Under the Supervisor the credentials
    /// change whenever the Mosquitto add-on restarts, so ask again.
    fn ha_auth_failed(&mut self) {
        let Some(supervisor) = self.supervisor.clone() else {
            return;
        };
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            if let Ok(service) = supervisor.mqtt_service().await {
                let _ = tx.send(Internal::HaService(service)).await;
            }
        });
    }

    /// Publishes the bridge's own topics that exist from the start.
    pub(super) fn publish_initial(&mut self) {
        self.publish_retained(bridge_topic(), b"online".to_vec());
        self.publish_retained(discovery::gx_topic(), b"offline".to_vec());
        self.publish_discovery();
        let now = Instant::now();
        let ids: Vec<EntityId> = self.model.registry.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.offer(id, now);
        }
        self.publish_status();
    }

    /// Builds and publishes the device discovery message.
    pub(super) fn publish_discovery(&mut self) {
        let removed = self.model.registry.pending_removals();
        let config = discovery::device_config(
            self.model.registry.iter().map(|(_, e)| e).filter(|e| e.in_discovery()),
            &removed,
            self.status.gx_model(),
        );
        match serde_json::to_vec(&config) {
            Ok(payload) => {
                let topic = config_topic(&self.settings.discovery_prefix);
                self.publish_retained(topic, payload);
            }
            Err(e) => tracing::error!(error = %e, "cannot serialise the discovery message"),
        }
        if !removed.is_empty() && self.ha_connected {
            tracing::info!(entities = ?removed.iter().map(|(k, _)| k).collect::<Vec<_>>(), "removed forgotten entities from Home Assistant");
            self.model.registry.removals_published();
        }

        // A new entity needs its availability and state right after its config.
        let now = Instant::now();
        let ids: Vec<EntityId> = self.model.registry.iter().filter(|(_, e)| e.in_discovery()).map(|(id, _)| id).collect();
        for id in ids {
            let key = &self.model.registry.get(id).key;
            if !self.retained.contains_key(&discovery::availability_topic(key)) {
                self.offer(id, now);
            }
        }
    }

    /// Publishes a state (and attributes) now.
    pub(super) fn publish_state(&mut self, id: EntityId, state: &State) {
        let entity = self.model.registry.get(id);
        let out = payloads(entity, state);
        let key = entity.key.clone();
        if let Some(payload) = out.state {
            self.publish_retained(state_topic(&key), payload.into_bytes());
        }
        if let Some(payload) = out.attributes {
            self.publish_retained(attributes_topic(&key), payload.into_bytes());
        }
    }

    /// Records a retained topic's payload and queues it unless it is unchanged.
    pub(super) fn publish_retained(&mut self, topic: String, payload: Vec<u8>) {
        if self.retained.get(&topic) == Some(&payload) {
            return;
        }
        self.retained.insert(topic.clone(), payload);
        self.dirty.insert(topic);
    }

    /// Queues every retained topic again: after a reconnect (the broker may have lost
    /// them) and after Home Assistant's birth message.
    pub(super) fn republish_all(&mut self) {
        self.dirty.extend(self.retained.keys().cloned());
    }

    /// Hands queued topics to the MQTT client while it has room.
    pub(super) fn flush(&mut self) {
        if !self.ha_connected {
            return;
        }
        // Discovery first, so Home Assistant knows the entities before their states.
        let config = config_topic(&self.settings.discovery_prefix);
        if self.dirty.remove(&config) && !self.send(&config) {
            self.dirty.insert(config);
            return;
        }
        while let Some(topic) = self.dirty.pop_first() {
            if !self.send(&topic) {
                self.dirty.insert(topic);
                break;
            }
        }
    }

    fn send(&mut self, topic: &str) -> bool {
        let Some(payload) = self.retained.get(topic) else {
            return true;
        };
        match self.ha.client.try_publish(topic, QOS, true, payload.clone()) {
            Ok(()) => {
                self.stats.ha_published += 1;
                true
            }
            Err(_) => false,
        }
    }
}

impl Engine {
    /// Publishes a small non-retained message whose acknowledgement proves to the health
    /// check that Home Assistant's broker still takes our publishes while nothing changes.
    pub(super) fn publish_liveness(&mut self) {
        if !self.ha_connected {
            return;
        }
        let topic = format!("{}/heartbeat", discovery::BASE);
        let payload = Engine::unix_now().to_string();
        let _ = self.ha.client.try_publish(topic, QOS, false, payload.into_bytes());
    }
}

/// Publishes `offline` on the bridge topic and disconnects cleanly, within about 3 s.
pub(super) async fn shutdown(engine: &mut Engine) {
    if !engine.ha_connected {
        engine.ha.stop();
        return;
    }
    let topic = bridge_topic();
    let _ = engine.ha.client.try_publish(topic.clone(), QOS, true, b"offline".to_vec());
    let _ = engine.ha.client.try_disconnect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, engine.ha.events.recv()).await {
            Ok(Some(LinkEvent::Closed)) | Ok(None) | Err(_) => break,
            Ok(Some(_)) => {}
        }
    }
    engine.ha.stop();
}

/// The link configuration for Home Assistant's broker, with our last will.
pub fn ha_link_config(timings: &Timings, host: String, port: u16, username: Option<String>, password: Option<String>) -> LinkConfig {
    LinkConfig {
        name: "ha",
        client_id: format!("roamcore-victron-{:08x}", rand::random::<u32>()),
        host,
        port,
        username,
        password,
        tls: None,
        keep_alive: timings.mqtt_keep_alive,
        connect_timeout: timings.connect_timeout,
        max_incoming: 256 * 1024,
        // The discovery message of a large system is tens of KiB.
        max_outgoing: 1024 * 1024,
        last_will: Some(rumqttc::LastWill::new(bridge_topic(), "offline", QOS, true)),
        reconnect: timings.reconnect,
        reconnect_refused_max: timings.reconnect_refused_max,
        auth_retry: timings.reconnect.0,
    }
}

/// Applies the Supervisor's broker details to a link configuration.
pub fn apply_service(mut config: LinkConfig, service: &MqttService) -> LinkConfig {
    config.host = service.host.clone();
    config.port = service.port;
    config.username = service.username.clone();
    config.password = service.password.clone();
    config
}
