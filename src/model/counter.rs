//! Energy counters that never step backwards.
//!
//! Home Assistant's Energy dashboard reads `total_increasing` sensors by their increases,
//! and treats a decrease as the start of a new meter cycle, so a value that dips and comes
//! back counts the whole total again. A GX produces such dips: a device publishes a
//! placeholder 0 when it starts, a charger leaves the sum while it is off, the GX switches
//! its main battery monitor, a charger is replaced with a new one.
//!
//! The guard publishes the raw counter plus an offset. When the source changes (another
//! device, or another set of chargers in a sum) the offset is set so the published value
//! continues where it was, and only later increases are added. A drop on the same source
//! is held; if it lasts (`hold`), it is a real reset and the offset again keeps the value
//! continuous. A daily counter (solar yield today) is the exception: a drop to below 10 %
//! of the old value that lasts is midnight, and the published value drops with it.

use serde::{Deserialize, Serialize};

/// The guard's state for one counter; persisted so a restart keeps the offset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterGuard {
    /// Last value published (raw + offset).
    pub published: Option<f64>,
    /// Last raw value accepted.
    pub raw: f64,
    pub offset: f64,
    /// Origin of the raw value: a device, or the set of devices summed.
    pub source: String,
    /// Unix time (s) since which raw values have stayed below `raw` on the same source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_since: Option<f64>,
}

impl CounterGuard {
    /// Returns the value to publish for a new raw reading, or `None` to keep the last one.
    /// `now` is in seconds; `hold` is how long a drop must last to count as a reset.
    pub fn adjust(&mut self, raw: f64, source: &str, daily: bool, now: f64, hold: f64) -> Option<f64> {
        let Some(published) = self.published else {
            self.accept(raw, source, 0.0);
            return self.published;
        };

        if source != self.source {
            // Another device or another set of chargers: continue from the last value.
            self.drop_since = None;
            let offset = if daily && raw >= published { 0.0 } else { published - raw };
            self.accept(raw, source, offset.max(0.0));
            return self.published;
        }

        if raw >= self.raw {
            self.drop_since = None;
            let offset = self.offset;
            self.accept(raw, source, offset);
            return self.published;
        }

        let since = *self.drop_since.get_or_insert(now);
        if now - since < hold {
            return None;
        }
        self.drop_since = None;
        if daily && raw < self.raw * 0.1 {
            // Midnight: the day's counter starts again.
            self.accept(raw, source, 0.0);
        } else {
            // A reset or a replaced device: continue from the last value.
            self.accept(raw, source, (published - raw).max(0.0));
        }
        self.published
    }

    fn accept(&mut self, raw: f64, source: &str, offset: f64) {
        self.raw = raw;
        self.offset = offset;
        self.source = source.to_string();
        self.published = Some(raw + offset);
    }

    /// True while a drop waits for its hold to pass (it needs a later check even if the
    /// GX sends nothing new).
    pub fn waiting(&self) -> bool {
        self.drop_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: f64 = 300.0;

    #[test]
    fn placeholder_zero_is_held() {
        let mut g = CounterGuard::default();
        assert_eq!(g.adjust(1922.4, "a", false, 0.0, HOLD), Some(1922.4));
        assert_eq!(g.adjust(0.0, "a", false, 10.0, HOLD), None);
        assert_eq!(g.adjust(1922.5, "a", false, 20.0, HOLD), Some(1922.5));
    }

    #[test]
    fn lasting_reset_continues_from_last_value() {
        let mut g = CounterGuard::default();
        g.adjust(1922.4, "a", false, 0.0, HOLD);
        assert_eq!(g.adjust(500.0, "a", false, 10.0, HOLD), None);
        assert_eq!(g.adjust(500.0, "a", false, 320.0, HOLD), Some(1922.4));
        assert_eq!(g.adjust(501.0, "a", false, 400.0, HOLD), Some(1923.4));
    }

    #[test]
    fn source_change_adds_no_energy() {
        let mut g = CounterGuard::default();
        g.adjust(226.57, "battery/275", false, 0.0, HOLD);
        assert_eq!(g.adjust(1.23, "battery/289", false, 1.0, HOLD), Some(226.57));
        let next = g.adjust(1.33, "battery/289", false, 2.0, HOLD).unwrap();
        assert!((next - 226.67).abs() < 1e-9, "{next}");
        let back = g.adjust(226.60, "battery/275", false, 3.0, HOLD).unwrap();
        assert!((back - 226.67).abs() < 1e-9, "{back}");
    }

    #[test]
    fn daily_counter_resets_at_midnight() {
        let mut g = CounterGuard::default();
        g.adjust(1.5, "c", true, 0.0, HOLD);
        assert_eq!(g.adjust(0.0, "c", true, 10.0, HOLD), None);
        assert_eq!(g.adjust(0.0, "c", true, 320.0, HOLD), Some(0.0));
        assert_eq!(g.adjust(0.2, "c", true, 400.0, HOLD), Some(0.2));
    }

    #[test]
    fn daily_sum_continues_without_charger() {
        let mut g = CounterGuard::default();
        g.adjust(3.0, "c1+c2", true, 0.0, HOLD);
        // One charger leaves: its 1.0 kWh stays in the published value.
        assert_eq!(g.adjust(2.0, "c1", true, 1.0, HOLD), Some(3.0));
        assert_eq!(g.adjust(2.5, "c1", true, 2.0, HOLD), Some(3.5));
    }
}
