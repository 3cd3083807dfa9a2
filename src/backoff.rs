//! Exponential backoff with jitter for reconnect loops.

use std::time::Duration;

use rand::Rng;

/// Doubles the delay after each failure up to `max`, with +-20 % jitter so that many
/// clients restarted by one router reboot do not retry in lock step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, current: initial }
    }

    /// Returns the delay before the next attempt and grows the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let factor = rand::rng().random_range(0.8..=1.2);
        base.mul_f64(factor).min(self.max.mul_f64(1.2))
    }

    /// Starts again from the initial delay, after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    /// The largest delay this backoff can return.
    pub fn cap(&self) -> Duration {
        self.max.mul_f64(1.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(800) && delays[0] <= Duration::from_millis(1200));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(36)));
        assert!(delays[9] >= Duration::from_secs(24), "capped delay {:?}", delays[9]);

        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(1200));
    }
}
