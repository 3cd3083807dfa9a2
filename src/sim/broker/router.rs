//! Broker state: the subscriptions of each connection and the retained messages, and the
//! delivery of publishes to the connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use super::codec::{Packet, Publish, QoS};

/// Messages queued for one connection's writer before newer ones are dropped. Mosquitto's
/// `max_queued_messages` plays the same role.
pub const QUEUE_CAPACITY: usize = 100_000;

/// Item for a connection's writer task, from its reader or the router.
#[derive(Debug)]
pub enum Outbound {
    Packet(Packet),
    /// Flush what is queued and close the socket.
    Close,
}

struct Session {
    connection_id: u64,
    tx: mpsc::Sender<Outbound>,
    kick: Arc<Notify>,
    subscriptions: HashMap<String, QoS>,
}

#[derive(Default)]
pub struct Router {
    sessions: HashMap<String, Session>,
    retained: BTreeMap<String, (Vec<u8>, QoS)>,
    next_connection_id: u64,
    /// Messages dropped because a connection's queue was full.
    pub dropped: u64,
}

impl Router {
    /// Registers a connection under `client_id` and returns its connection id. An older
    /// connection with the same client id is closed (MQTT 3.1.1, 3.1.4-2).
    pub fn connect(
        &mut self,
        client_id: &str,
        tx: mpsc::Sender<Outbound>,
        kick: Arc<Notify>,
    ) -> u64 {
        self.next_connection_id += 1;
        let session = Session {
            connection_id: self.next_connection_id,
            tx,
            kick,
            subscriptions: HashMap::new(),
        };
        if let Some(old) = self.sessions.insert(client_id.to_string(), session) {
            old.kick.notify_one();
        }
        self.next_connection_id
    }

    /// Forgets the connection, unless a newer one has taken over its client id.
    pub fn disconnect(&mut self, client_id: &str, connection_id: u64) {
        if self.sessions.get(client_id).map(|s| s.connection_id) == Some(connection_id) {
            self.sessions.remove(client_id);
        }
    }

    /// Adds the subscriptions and returns the SUBACK codes and the retained messages to
    /// send after the SUBACK.
    pub fn subscribe(
        &mut self,
        client_id: &str,
        filters: &[(String, QoS)],
    ) -> (Vec<u8>, Vec<Publish>) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return (vec![0x80; filters.len()], Vec::new());
        };
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained = Vec::new();
        for (filter, requested) in filters {
            if !is_valid_filter(filter) {
                codes.push(0x80);
                continue;
            }
            // QoS 2 delivery is not implemented, so a QoS 2 request is granted QoS 1.
            let granted = (*requested).min(QoS::AtLeastOnce);
            session.subscriptions.insert(filter.clone(), granted);
            codes.push(granted as u8);
            for (topic, (payload, qos)) in &self.retained {
                if matches(filter, topic) {
                    retained.push(Publish {
                        topic: topic.clone(),
                        payload: payload.clone(),
                        qos: (*qos).min(granted),
                        retain: true,
                        dup: false,
                        pkid: 0,
                    });
                }
            }
        }
        (codes, retained)
    }

    pub fn unsubscribe(&mut self, client_id: &str, filters: &[String]) {
        if let Some(session) = self.sessions.get_mut(client_id) {
            for filter in filters {
                session.subscriptions.remove(filter);
            }
        }
    }

    /// Stores or clears the retained message and delivers the publish to every session
    /// with a matching subscription, once each, at the highest matching QoS.
    pub fn route(&mut self, publish: &Publish) {
        if publish.retain {
            if publish.payload.is_empty() {
                self.retained.remove(&publish.topic);
            } else {
                let qos = publish.qos.min(QoS::AtLeastOnce);
                self.retained
                    .insert(publish.topic.clone(), (publish.payload.clone(), qos));
            }
        }

        for session in self.sessions.values() {
            let granted = session
                .subscriptions
                .iter()
                .filter(|(filter, _)| matches(filter, &publish.topic))
                .map(|(_, qos)| *qos)
                .max();
            let Some(granted) = granted else { continue };
            let outgoing = Publish {
                topic: publish.topic.clone(),
                payload: publish.payload.clone(),
                qos: publish.qos.min(granted),
                // MQTT 3.1.1, 3.3.1-9: live deliveries carry retain 0.
                retain: false,
                dup: false,
                pkid: 0,
            };
            if session
                .tx
                .try_send(Outbound::Packet(Packet::Publish(outgoing)))
                .is_err()
            {
                self.dropped += 1;
            }
        }
    }

    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }
}

/// Returns whether a filter is valid: `#` only as the whole last level and `+` only as a
/// whole level (MQTT 3.1.1, 4.7.1).
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (index, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || index != levels.len() - 1) {
            return false;
        }
        if level.contains('+') && *level != "+" {
            return false;
        }
    }
    true
}

/// MQTT topic matching; a wildcard in the first level does not match a topic that starts
/// with `$` (MQTT 3.1.1, 4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if topic_levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matching() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+/+", "a/b", true),
            ("+", "a/b", false),
            ("a/+/c", "a//c", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/b/c", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn filter_validity() {
        for valid in ["a", "#", "a/#", "+/b", "a/+/c"] {
            assert!(is_valid_filter(valid), "{valid}");
        }
        for invalid in ["", "a#", "a/#/b", "a+/b", "#/a"] {
            assert!(!is_valid_filter(invalid), "{invalid}");
        }
    }
}
