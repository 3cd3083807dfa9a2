//! Finds the end of a full publish that carries no completion marker.
//!
//! dbus-mqtt (Venus OS before 3.20) and dbus-flashmq before Nov 2023 never send
//! `full_publish_completed`. dbus-mqtt also publishes through a rate-limited queue (at most
//! 50 messages per batch, batches at least 1.5 s apart), so the full publish of a large
//! system can take minutes. A full publish sends every topic the GX has, and values that
//! change meanwhile arrive on topics already seen. So once no topic new to this publish has
//! arrived for a few seconds, the publish is over, and a device missing from it is gone.
//!
//! Pure logic: time is passed in, nothing here does I/O.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

/// The topics seen since a full publish was requested.
#[derive(Debug, Clone)]
pub struct Republish {
    started: Instant,
    /// Hashes of the topics seen, 8 bytes each in place of the topic strings. A collision
    /// makes one new topic look seen, which at worst ends the publish early.
    topics: HashSet<u64>,
    /// When the last topic new to this publish arrived, or `started`.
    last_new: Instant,
}

impl Republish {
    pub fn new(now: Instant) -> Republish {
        Republish { started: now, topics: HashSet::new(), last_new: now }
    }

    /// Records a value message on `topic`.
    pub fn message(&mut self, topic: &str, now: Instant) {
        let mut hasher = DefaultHasher::new();
        topic.hash(&mut hasher);
        if self.topics.insert(hasher.finish()) {
            self.last_new = now;
        }
    }

    /// Returns when the publish counts as complete: `quiet` after the last new topic, and
    /// `max` after it was requested at the latest.
    pub fn ends_at(&self, quiet: Duration, max: Duration) -> Instant {
        (self.last_new + quiet).min(self.started + max)
    }

    /// Returns the number of distinct topics seen.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn paced_publish_ends_after_last_new_topic() {
        let t0 = Instant::now();
        let mut republish = Republish::new(t0);

        // 50 new topics every 2 s for 100 s, like a paced dbus-mqtt queue.
        for batch in 0..50u64 {
            for n in 0..50u64 {
                republish.message(&format!("N/p/battery/{batch}/Path{n}"), t0 + secs(2 * batch));
            }
        }
        assert_eq!(republish.topic_count(), 2500);
        assert_eq!(republish.ends_at(QUIET, MAX), t0 + secs(98) + QUIET);
    }

    #[test]
    fn repeated_topics_do_not_extend() {
        let t0 = Instant::now();
        let mut republish = Republish::new(t0);
        republish.message("N/p/system/0/Dc/Battery/Power", t0 + secs(1));

        // A value that keeps changing arrives again and again on a topic already seen.
        for second in 2..60 {
            republish.message("N/p/system/0/Dc/Battery/Power", t0 + secs(second));
        }
        assert_eq!(republish.topic_count(), 1);
        assert_eq!(republish.ends_at(QUIET, MAX), t0 + secs(1) + QUIET);
    }

    #[test]
    fn endless_new_topics_end_at_max() {
        let t0 = Instant::now();
        let mut republish = Republish::new(t0);
        for second in 0..400u64 {
            republish.message(&format!("N/p/tank/{second}/Level"), t0 + secs(second));
        }
        assert_eq!(republish.ends_at(QUIET, MAX), t0 + MAX);
    }

    #[test]
    fn silent_publish_ends_quiet_after_request() {
        let t0 = Instant::now();
        let republish = Republish::new(t0);
        assert_eq!(republish.ends_at(QUIET, MAX), t0 + QUIET);
    }
}
