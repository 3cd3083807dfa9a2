//! Rate-limited reporting of recurring problems.
//!
//! A GX that sends a malformed value sends it again with every change, and an unreachable
//! broker fails every few seconds. Each distinct problem is logged at warn the first time,
//! then summarised with a repeat count at most once per `summary_interval` while it keeps
//! happening, and never more than that; per-occurrence detail goes to debug.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Problems are told apart by a short key, e.g. `bad_json:battery/Dc/0/Voltage`.
#[derive(Debug)]
pub struct Problems {
    entries: HashMap<String, Entry>,
    summary_interval: Duration,
    max_entries: usize,
}

#[derive(Debug)]
struct Entry {
    /// Occurrences since the last line was logged.
    unreported: u64,
    total: u64,
    last_logged: Instant,
}

/// What the caller should log for this occurrence.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// First time: log the full message at warn.
    First,
    /// Log a summary line: `count` more occurrences since the last line.
    Summary { count: u64, total: u64 },
    /// Stay quiet (log at debug at most).
    Quiet,
}

impl Problems {
    pub fn new(summary_interval: Duration) -> Problems {
        Problems { entries: HashMap::new(), summary_interval, max_entries: 1024 }
    }

    /// Records one occurrence of `key` at `now` and says what to log.
    pub fn record(&mut self, key: &str, now: Instant) -> Report {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.total += 1;
            entry.unreported += 1;
            if now.duration_since(entry.last_logged) >= self.summary_interval {
                let count = entry.unreported;
                entry.unreported = 0;
                entry.last_logged = now;
                return Report::Summary { count, total: entry.total };
            }
            return Report::Quiet;
        }

        // A flood of distinct keys (say, random topic names) must not grow memory without
        // bound; past the cap, new keys are only counted under one shared key.
        if self.entries.len() >= self.max_entries {
            return self.record_overflow(now);
        }
        self.entries
            .insert(key.to_string(), Entry { unreported: 0, total: 1, last_logged: now });
        Report::First
    }

    fn record_overflow(&mut self, now: Instant) -> Report {
        const OVERFLOW: &str = "other_problems";
        match self.entries.get_mut(OVERFLOW) {
            Some(entry) => {
                entry.total += 1;
                entry.unreported += 1;
                if now.duration_since(entry.last_logged) >= self.summary_interval {
                    let count = entry.unreported;
                    entry.unreported = 0;
                    entry.last_logged = now;
                    Report::Summary { count, total: entry.total }
                } else {
                    Report::Quiet
                }
            }
            None => {
                self.entries.insert(
                    OVERFLOW.to_string(),
                    Entry { unreported: 0, total: 1, last_logged: now },
                );
                Report::First
            }
        }
    }

    /// Forgets a problem once it is over, so that a later recurrence is logged again.
    pub fn clear(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    /// Total occurrences of every problem so far.
    pub fn total(&self) -> u64 {
        self.entries.values().map(|e| e.total).sum()
    }
}

/// Logs `message` for a problem through a [`Problems`] table: warn on the first
/// occurrence, a warn summary with the count at most once per interval, debug otherwise.
#[macro_export]
macro_rules! warn_limited {
    ($problems:expr, $key:expr, $now:expr, $($arg:tt)+) => {{
        match $problems.record(&$key, $now) {
            $crate::problems::Report::First => ::tracing::warn!($($arg)+),
            $crate::problems::Report::Summary { count, total } => ::tracing::warn!(
                repeats = count, total, "{} (repeated)", format_args!($($arg)+)
            ),
            $crate::problems::Report::Quiet => ::tracing::debug!($($arg)+),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_summary_per_interval() {
        let mut problems = Problems::new(Duration::from_secs(600));
        let t0 = Instant::now();
        assert_eq!(problems.record("a", t0), Report::First);
        for i in 1..100 {
            assert_eq!(problems.record("a", t0 + Duration::from_secs(i)), Report::Quiet);
        }
        assert_eq!(
            problems.record("a", t0 + Duration::from_secs(600)),
            Report::Summary { count: 100, total: 101 }
        );
        assert_eq!(problems.record("b", t0), Report::First);
    }

    #[test]
    fn cleared_problem_is_first_again() {
        let mut problems = Problems::new(Duration::from_secs(600));
        let t0 = Instant::now();
        assert_eq!(problems.record("a", t0), Report::First);
        assert_eq!(problems.record("a", t0), Report::Quiet);
        assert!(problems.clear("a"));
        assert!(!problems.clear("a"));
        assert_eq!(problems.record("a", t0), Report::First);
    }

    #[test]
    fn distinct_keys_are_capped() {
        let mut problems = Problems::new(Duration::from_secs(600));
        let now = Instant::now();
        let firsts = (0..5000)
            .filter(|i| problems.record(&format!("k{i}"), now) == Report::First)
            .count();
        assert_eq!(firsts, 1025, "1024 keys plus one overflow key");
        assert!(problems.entries.len() <= 1025);
    }
}
