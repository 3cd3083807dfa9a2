//! Values over time: recording change events at their timestamps, a small random walk on
//! the measurements of static snapshots, or a fixed message rate for benchmarks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::capture::Capture;
use super::gx::Gx;

/// Pace of value changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// The recording's own timing, or one random-walk step per second for snapshots.
    Natural,
    /// About this many value messages per second, measurements varied round-robin.
    PerSecond(f64),
    /// As fast as the broker connection takes them.
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Rate, String> {
        match text {
            "natural" => Ok(Rate::Natural),
            "max" => Ok(Rate::Max),
            number => match number.parse::<f64>() {
                Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(Rate::PerSecond(rate)),
                _ => Err(format!(
                    "invalid rate {number:?}: expected messages per second (> 0), natural or max"
                )),
            },
        }
    }
}

/// Largest relative deviation of a varied measurement from its captured value.
const MAX_DEVIATION: f64 = 0.03;
/// Largest relative step of one variation.
const MAX_STEP: f64 = 0.005;
/// Items a `Rate::Max` round produces before the runner checks commands again.
const MAX_RATE_BATCH: usize = 256;

/// Last path levels that name a measurement worth varying.
const MEASUREMENTS: &[&str] = &[
    "Voltage",
    "Current",
    "Power",
    "V",
    "I",
    "P",
    "S",
    "F",
    "Temperature",
    "Soc",
    "Level",
    "Remaining",
    "Humidity",
    "Pressure",
    "Speed",
];

/// Random-walk state of one measurement.
#[derive(Debug, Clone, Copy)]
struct Walk {
    /// The captured value.
    base: f64,
    /// Relative deviation of `current` from `base`.
    deviation: f64,
    current: f64,
    integer: bool,
}

#[derive(Debug)]
pub struct Replay {
    events: Vec<(Duration, String, Value)>,
    /// Length of one pass through the recording before it starts again.
    period: Duration,
    speed: f64,
    rate: Rate,
    cursor: usize,
    pass_start: Instant,
    next_step: Instant,
    walk: BTreeMap<String, Walk>,
    round_robin: Vec<String>,
    round_robin_index: usize,
    rng: StdRng,
    /// Value messages owed under `Rate::PerSecond`.
    budget: f64,
    last_budget_at: Instant,
}

impl Replay {
    /// `vary` turns the random walk on for captures without change events.
    pub fn new(
        capture: &Capture,
        gx: &Gx,
        speed: f64,
        rate: Rate,
        vary: bool,
        seed: u64,
        now: Instant,
    ) -> Replay {
        let events: Vec<(Duration, String, Value)> = capture
            .events
            .iter()
            .map(|event| {
                let service = &capture.services[event.service];
                let suffix = format!(
                    "{}/{}/{}",
                    service.service_type, service.instance, event.path
                );
                (event.at, suffix, event.value.clone())
            })
            .collect();
        let period = events.last().map_or(Duration::ZERO, |e| e.0) + Duration::from_secs(1);

        let mut walk = BTreeMap::new();
        let wants_walk = vary && (events.is_empty() || rate != Rate::Natural);
        if wants_walk {
            for (suffix, value) in gx.values() {
                let skip_system = gx.computes_system() && suffix.starts_with("system/");
                if skip_system || !is_measurement(&suffix) {
                    continue;
                }
                if let Some(number) = value.as_f64().filter(|n| *n != 0.0) {
                    let integer = value.is_i64() || value.is_u64();
                    let state = Walk {
                        base: number,
                        deviation: 0.0,
                        current: number,
                        integer,
                    };
                    walk.insert(suffix, state);
                }
            }
        }
        let round_robin = walk.keys().cloned().collect();

        Replay {
            events,
            period,
            speed: speed.max(0.001),
            rate,
            cursor: 0,
            pass_start: now,
            next_step: now,
            walk,
            round_robin,
            round_robin_index: 0,
            rng: StdRng::seed_from_u64(seed),
            budget: 0.0,
            last_budget_at: now,
        }
    }

    /// Number of measurements the random walk varies.
    pub fn varied_count(&self) -> usize {
        self.walk.len()
    }

    /// Returns the value changes due at `now` under the natural rate.
    pub fn due(&mut self, now: Instant) -> Vec<(String, Value)> {
        match self.rate {
            Rate::Natural if !self.events.is_empty() => self.due_events(now),
            Rate::Natural => {
                if now < self.next_step || self.walk.is_empty() {
                    return Vec::new();
                }
                self.next_step = now + Duration::from_secs(1).div_f64(self.speed);
                let suffixes: Vec<String> = self.walk.keys().cloned().collect();
                let mut out = Vec::new();
                for suffix in suffixes {
                    if !self.rng.random_bool(0.5) {
                        continue;
                    }
                    if let Some(value) = self.step(&suffix) {
                        out.push((suffix, value));
                    }
                }
                out
            }
            Rate::PerSecond(_) | Rate::Max => Vec::new(),
        }
    }

    fn due_events(&mut self, now: Instant) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        loop {
            let elapsed = now
                .saturating_duration_since(self.pass_start)
                .mul_f64(self.speed);
            match self.events.get(self.cursor) {
                Some((at, suffix, value)) if *at <= elapsed => {
                    out.push((suffix.clone(), value.clone()));
                    self.cursor += 1;
                }
                Some(_) => return out,
                None if elapsed >= self.period => {
                    self.cursor = 0;
                    self.pass_start += self.period.div_f64(self.speed);
                }
                None => return out,
            }
        }
    }

    /// Returns how many value messages a fixed rate owes at `now` (0 under the natural
    /// rate).
    pub fn owed(&mut self, now: Instant) -> usize {
        match self.rate {
            Rate::Natural => 0,
            Rate::Max => MAX_RATE_BATCH,
            Rate::PerSecond(rate) => {
                let elapsed = now
                    .saturating_duration_since(self.last_budget_at)
                    .as_secs_f64();
                self.last_budget_at = now;
                // Cap the debt at one second so a stall does not cause a burst.
                self.budget = (self.budget + rate * elapsed).min(rate.max(1.0));
                self.budget.floor() as usize
            }
        }
    }

    /// Reports `count` messages sent against the fixed-rate budget.
    pub fn spend(&mut self, count: usize) {
        self.budget -= count as f64;
    }

    /// Returns the next measurement in round-robin order with a new value, for fixed rates.
    pub fn next_varied(&mut self) -> Option<(String, Value)> {
        if self.round_robin.is_empty() {
            return None;
        }
        let suffix = self.round_robin[self.round_robin_index % self.round_robin.len()].clone();
        self.round_robin_index += 1;
        let value = self.step(&suffix)?;
        Some((suffix, value))
    }

    /// Moves a measurement one random-walk step. Integers move by at least 1.
    fn step(&mut self, suffix: &str) -> Option<Value> {
        let state = *self.walk.get(suffix)?;
        let mut deviation = state.deviation + self.rng.random_range(-MAX_STEP..=MAX_STEP);
        if deviation.abs() > MAX_DEVIATION {
            deviation = 2.0 * state.deviation - deviation;
        }

        let mut number = state.base * (1.0 + deviation);
        if state.integer {
            number = number.round();
            if number == state.current {
                number += if deviation >= state.deviation {
                    1.0
                } else {
                    -1.0
                };
            }
        } else if number == state.current {
            number *= 1.0 + MAX_STEP;
        }
        if suffix.ends_with("/Soc") || suffix.ends_with("/Level") {
            number = number.clamp(0.0, 100.0);
            if number == state.current {
                // Stuck at a bound: step back inside so every step is a change.
                let unit = if state.integer { 1.0 } else { 0.1 };
                number += if number >= 100.0 { -unit } else { unit };
            }
        }

        let walked = Walk {
            deviation: number / state.base - 1.0,
            current: number,
            ..state
        };
        self.walk.insert(suffix.to_string(), walked);
        if state.integer {
            Some(Value::from(number as i64))
        } else {
            Some(Value::from(number))
        }
    }

    /// When `due` or `owed` next has something.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        match self.rate {
            Rate::Max => Some(now),
            Rate::PerSecond(rate) => Some(now + Duration::from_secs_f64((1.0 / rate).max(0.01))),
            Rate::Natural if !self.events.is_empty() => {
                let at = match self.events.get(self.cursor) {
                    Some((at, _, _)) => *at,
                    None => self.period,
                };
                Some(self.pass_start + at.div_f64(self.speed))
            }
            Rate::Natural if !self.walk.is_empty() => Some(self.next_step),
            Rate::Natural => None,
        }
    }
}

/// Returns whether a topic suffix is a measurement (a voltage, power, level, ...) rather
/// than a setting, counter or identifier.
pub fn is_measurement(suffix: &str) -> bool {
    let mut parts = suffix.splitn(3, '/');
    let service_type = parts.next().unwrap_or("");
    let path = parts.nth(1).unwrap_or("");
    let skipped_services = [
        "settings",
        "platform",
        "logger",
        "vecan",
        "modbusclient",
        "adc",
    ];
    if skipped_services.contains(&service_type) {
        return false;
    }
    let skipped_trees = [
        "History/",
        "Settings/",
        "Alarms/",
        "Info/",
        "Link/",
        "Devices/",
    ];
    if skipped_trees
        .iter()
        .any(|tree| path.starts_with(tree) || path.contains(&format!("/{tree}")))
    {
        return false;
    }
    let last = path.rsplit('/').next().unwrap_or("");
    MEASUREMENTS.contains(&last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_paths() {
        assert!(is_measurement("battery/275/Dc/0/Voltage"));
        assert!(is_measurement("vebus/274/Ac/Out/L1/P"));
        assert!(is_measurement("tank/20/Level"));
        assert!(is_measurement("system/0/Dc/Battery/Soc"));
        assert!(!is_measurement("battery/275/History/MaximumVoltage"));
        assert!(!is_measurement(
            "settings/0/Settings/SystemSetup/MaxChargeVoltage"
        ));
        assert!(!is_measurement("battery/275/ProductId"));
    }

    #[test]
    fn rate_parsing() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("250".parse::<Rate>(), Ok(Rate::PerSecond(250.0)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }

    #[test]
    fn recording_events_replay_in_time_and_loop() {
        let capture = Capture::load("bmv").unwrap();
        let gx = Gx::from_capture(&capture, "x");
        let start = Instant::now();
        let mut replay = Replay::new(&capture, &gx, 10.0, Rate::Natural, true, 1, start);
        let first = replay.due(start);
        assert!(first.is_empty(), "no event at t=0 in battery.csv");
        let in_first_second = replay.due(start + Duration::from_millis(100));
        assert_eq!(
            in_first_second.len(),
            3,
            "events at t=1 s, played at speed 10"
        );
        let whole = replay.due(start + Duration::from_millis(9_450));
        assert_eq!(in_first_second.len() + whole.len(), capture.events.len());
        let again = replay.due(start + Duration::from_millis(9_600));
        assert_eq!(
            again.len(),
            3,
            "the recording loops after its last event plus 1 s"
        );
    }

    #[test]
    fn snapshot_walk_stays_near_capture() {
        let capture = Capture::load("boat").unwrap();
        let gx = Gx::from_capture(&capture, "x");
        let start = Instant::now();
        let mut replay = Replay::new(&capture, &gx, 1.0, Rate::Natural, true, 7, start);
        assert!(replay.varied_count() > 20);
        let base = gx
            .get("system/0/Dc/Battery/Voltage")
            .unwrap()
            .as_f64()
            .unwrap();
        for second in 0..200 {
            for (suffix, value) in replay.due(start + Duration::from_secs(second)) {
                if suffix == "system/0/Dc/Battery/Voltage" {
                    let v = value.as_f64().unwrap();
                    assert!((v - base).abs() <= base * (MAX_DEVIATION + MAX_STEP) + 0.001);
                }
            }
        }
    }

    #[test]
    fn fixed_rate_changes_every_value() {
        let capture = Capture::load("boat").unwrap();
        let gx = Gx::from_capture(&capture, "x");
        let mut replay = Replay::new(&capture, &gx, 1.0, Rate::Max, true, 3, Instant::now());
        let mut last: BTreeMap<String, Value> = BTreeMap::new();
        for _ in 0..(replay.varied_count() * 3) {
            let (suffix, value) = replay.next_varied().unwrap();
            let previous = last.insert(suffix.clone(), value.clone());
            let before = previous.unwrap_or_else(|| gx.get(&suffix).unwrap().clone());
            assert_ne!(before, value, "{suffix} must change");
        }
    }
}
