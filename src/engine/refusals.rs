//! How long the GX has refused connections without a break: a GX that refuses long after
//! a reboot would have ended has MQTT access switched off.

use std::time::{Duration, Instant};

/// The current run of refused connections to the GX.
#[derive(Debug, Default)]
pub(super) struct RefusalRun {
    since: Option<Instant>,
}

impl RefusalRun {
    /// Records a failed connection. Returns how long refusals have lasted without a
    /// break, or zero when this failure was not a refusal.
    pub(super) fn record(&mut self, refused: bool, now: Instant) -> Duration {
        if !refused {
            self.since = None;
            return Duration::ZERO;
        }
        now.duration_since(*self.since.get_or_insert(now))
    }

    /// Ends the run: the GX accepted a connection, or another GX is targeted.
    pub(super) fn reset(&mut self) {
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_counted_from_first() {
        let t0 = Instant::now();
        let mut run = RefusalRun::default();
        assert_eq!(run.record(true, t0), Duration::ZERO);
        assert_eq!(
            run.record(true, t0 + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            run.record(true, t0 + Duration::from_secs(301)),
            Duration::from_secs(301)
        );
    }

    #[test]
    fn other_error_restarts_run() {
        let t0 = Instant::now();
        let mut run = RefusalRun::default();
        run.record(true, t0);

        // A timeout: the GX was off for a while, so the refusals before do not count.
        assert_eq!(
            run.record(false, t0 + Duration::from_secs(100)),
            Duration::ZERO
        );
        let later = t0 + Duration::from_secs(200);
        assert_eq!(run.record(true, later), Duration::ZERO);
        assert_eq!(
            run.record(true, later + Duration::from_secs(10)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn reset_restarts_run() {
        let t0 = Instant::now();
        let mut run = RefusalRun::default();
        run.record(true, t0);
        run.reset();
        assert_eq!(
            run.record(true, t0 + Duration::from_secs(400)),
            Duration::ZERO
        );
    }
}
