//! Energy counters that never step backwards.
//!
//! Home Assistant's Energy dashboard reads `total_increasing` sensors by their increases,
//! and treats a decrease as the start of a new meter cycle, so a value that dips and comes
//! back counts the whole total again. A GX produces such dips: a device publishes a
//! placeholder 0 when it starts, a charger leaves the sum while it is off, the GX switches
//! its main battery monitor, a charger is replaced with a new one. It also produces the
//! opposite: a single reading far above the real one (a "not available" sentinel such
//! as 65535, a corrupt frame).
//!
//! The guard publishes the raw counter plus an offset. When the source changes (another
//! device, or another set of chargers in a sum) the offset is set so the published value
//! continues where it was, and only later increases are added. A drop on the same source
//! is held; if it lasts (`hold`), it is a real reset and the offset again keeps the value
//! continuous. If the old reading comes back after such a reset, the reset was a long
//! placeholder and the old offset returns. A jump up by more than a tenth (plus one unit)
//! is held too, until a later reading goes past it or it has lasted `hold`. A reading below
//! the jump discards it. A daily counter (solar yield today) never carries an
//! offset across a lasting drop: the drop is the start of a new day, and the published
//! value drops with it.

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
    /// A jump up waiting to be confirmed: its raw value and the unix time it arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<(f64, f64)>,
    /// The raw value and offset before the last reset taken on this source; used if the
    /// old reading comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_reset: Option<(f64, f64)>,
}

/// True when a rise from `old` to `new` is too large to take from one reading.
fn is_jump(old: f64, new: f64) -> bool {
    new - old > 0.1 * old.abs() + 1.0
}

impl CounterGuard {
    /// Returns the guard as read back from the data directory, without the drop or jump an
    /// earlier run was watching: this run must see it last for itself.
    pub fn restored(mut self) -> CounterGuard {
        self.drop_since = None;
        self.rise = None;
        self
    }

    /// Returns the value to publish for a new raw reading, or `None` to keep the last one.
    /// `now` is in seconds; `hold` is how long a drop or a jump must last to be believed.
    pub fn adjust(&mut self, raw: f64, source: &str, daily: bool, now: f64, hold: f64) -> Option<f64> {
        let Some(published) = self.published else {
            self.accept(raw, source, 0.0);
            return self.published;
        };

        if source != self.source {
            // Another device or another set of chargers: continue from the last value.
            self.drop_since = None;
            self.rise = None;
            self.before_reset = None;
            // The offset is negative when the new source reads higher (a used charger with a
            // longer history): none of that history was produced here.
            let offset = if daily && raw >= published { 0.0 } else { published - raw };
            self.accept(raw, source, offset);
            return self.published;
        }

        if raw >= self.raw {
            self.drop_since = None;
            let jump = is_jump(self.raw, raw);
            if jump {
                let confirmed = match self.rise {
                    // The counter went on from the new level, or stayed there long enough.
                    Some((level, since)) => raw > level || (raw == level && now - since >= hold),
                    None => false,
                };
                if !confirmed {
                    if self.rise.is_none_or(|(level, _)| raw != level) {
                        self.rise = Some((raw, now));
                    }
                    return None;
                }
            }
            self.rise = None;
            let mut offset = self.offset;
            if let Some((old_raw, old_offset)) = self.before_reset.filter(|_| jump) {
                if raw >= old_raw {
                    // The reading jumped back to its level before the reset: the "reset" was
                    // a long placeholder. Return to the old offset, never below `published`.
                    offset = old_offset.max(published - raw);
                    self.before_reset = None;
                }
            }
            self.accept(raw, source, offset);
            return self.published;
        }

        // Below the accepted reading: a jump waiting for confirmation was a spike.
        self.rise = None;
        let since = *self.drop_since.get_or_insert(now);
        if now - since < hold {
            return None;
        }
        self.drop_since = None;
        if daily {
            // A new day: the day's counter starts again.
            self.accept(raw, source, 0.0);
        } else {
            // A reset or a replaced device: continue from the last value.
            self.before_reset = Some((self.raw, self.offset));
            self.accept(raw, source, published - raw);
        }
        self.published
    }

    fn accept(&mut self, raw: f64, source: &str, offset: f64) {
        self.raw = raw;
        self.offset = offset;
        self.source = source.to_string();
        self.published = Some(raw + offset);
    }

    /// True while a drop or a jump waits for its hold to pass (it needs a later check even
    /// if the GX sends nothing new).
    pub fn waiting(&self) -> bool {
        self.drop_since.is_some() || self.rise.is_some()
    }

    /// True when the fields that decide future values changed (not only the latest reading).
    pub fn structure_differs(&self, other: &CounterGuard) -> bool {
        self.source != other.source || self.offset != other.offset || self.before_reset != other.before_reset
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
    fn one_reading_spike_is_discarded() {
        let mut g = CounterGuard::default();
        g.adjust(1922.4, "a", false, 0.0, HOLD);
        assert_eq!(g.adjust(65535.0, "a", false, 1.0, HOLD), None);
        assert!(g.waiting());
        assert_eq!(g.adjust(1922.5, "a", false, 2.0, HOLD), Some(1922.5));
        assert!(!g.waiting());
    }

    #[test]
    fn jump_is_taken_once_confirmed() {
        let mut g = CounterGuard::default();
        g.adjust(100.0, "a", false, 0.0, HOLD);
        // A small rise goes out at once.
        assert_eq!(g.adjust(100.5, "a", false, 1.0, HOLD), Some(100.5));
        // A jump waits for a reading past it ...
        assert_eq!(g.adjust(500.0, "a", false, 2.0, HOLD), None);
        assert_eq!(g.adjust(500.1, "a", false, 3.0, HOLD), Some(500.1));
        // ... or for the hold, on the unchanged reading.
        assert_eq!(g.adjust(900.0, "a", false, 10.0, HOLD), None);
        assert_eq!(g.adjust(900.0, "a", false, 200.0, HOLD), None);
        assert_eq!(g.adjust(900.0, "a", false, 310.0, HOLD), Some(900.0));
    }

    #[test]
    fn long_placeholder_restores_offset() {
        let mut g = CounterGuard::default();
        g.adjust(226.57, "a", false, 0.0, HOLD);
        assert_eq!(g.adjust(0.0, "a", false, 10.0, HOLD), None);
        // Six minutes of placeholder: taken as a reset, the published value holds.
        assert_eq!(g.adjust(0.0, "a", false, 370.0, HOLD), Some(226.57));
        // The old reading comes back: the same meter, not 226 kWh more.
        assert_eq!(g.adjust(226.6, "a", false, 380.0, HOLD), None);
        let back = g.adjust(226.7, "a", false, 390.0, HOLD).unwrap();
        assert!((back - 226.7).abs() < 1e-9, "{back}");
    }

    #[test]
    fn real_reset_climbs_past_old_level() {
        let mut g = CounterGuard::default();
        g.adjust(2.0, "a", false, 0.0, HOLD);
        g.adjust(0.1, "a", false, 10.0, HOLD);
        assert_eq!(g.adjust(0.1, "a", false, 320.0, HOLD), Some(2.0));
        // The new meter climbs past the old reading in small steps: no step down.
        let mut last = 2.0;
        for step in 1..=30 {
            let raw = 0.1 + f64::from(step) * 0.1;
            let out = g.adjust(raw, "a", false, 320.0 + f64::from(step), HOLD).unwrap();
            assert!(out >= last, "{out} after {last}");
            last = out;
        }
        assert!((last - 5.0).abs() < 1e-9, "{last}");
    }

    #[test]
    fn daily_lasting_drop_is_new_day() {
        let mut g = CounterGuard::default();
        g.adjust(0.11, "c", true, 0.0, HOLD);
        // The next morning, 45 % of yesterday's total: still a new day once it lasts.
        assert_eq!(g.adjust(0.05, "c", true, 10.0, HOLD), None);
        assert_eq!(g.adjust(0.05, "c", true, 320.0, HOLD), Some(0.05));
        assert_eq!(g.adjust(0.06, "c", true, 330.0, HOLD), Some(0.06));
    }

    #[test]
    fn restored_guard_sees_drops_afresh() {
        let mut g = CounterGuard::default();
        g.adjust(226.57, "a", false, 0.0, HOLD);
        g.adjust(0.0, "a", false, 10.0, HOLD);
        let stored: CounterGuard = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        let mut g = stored.restored();
        // Hours later the placeholder comes again: held for the full hold, not taken at once.
        assert_eq!(g.adjust(0.0, "a", false, 20_000.0, HOLD), None);
        assert_eq!(g.adjust(226.7, "a", false, 20_010.0, HOLD), Some(226.7));
    }

    #[test]
    fn higher_new_source_adds_nothing() {
        let mut g = CounterGuard::default();
        g.adjust(1922.4, "solarcharger/288#A", false, 0.0, HOLD);
        // A used charger on the same port, 3,000 kWh further on.
        assert_eq!(g.adjust(4922.4, "solarcharger/288#B", false, 60.0, HOLD), Some(1922.4));
        let next = g.adjust(4922.5, "solarcharger/288#B", false, 120.0, HOLD).unwrap();
        assert!((next - 1922.5).abs() < 1e-9, "{next}");
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
