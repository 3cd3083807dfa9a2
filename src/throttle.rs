//! Decides when a new entity state is worth a publish to Home Assistant.
//!
//! A GX sends power values several times a second; Home Assistant's recorder stores every
//! state change. Per throttle class there is a minimum interval and a deadband: a change
//! larger than the deadband is published at most once per interval, a smaller one once it
//! is five minutes old. The latest value is never dropped: a change that arrives inside an
//! interval is delivered when the interval ends. Binary and enum states are debounced:
//! published once they have held for a few seconds (shore power 10 s), or at the latest
//! once the published state has been contradicted for a minute. Energy counters
//! reach the throttle already kept from stepping backwards (`model::counter`).
//!
//! Pure logic: time is passed in, nothing here does I/O.

use std::time::{Duration, Instant};

use crate::model::eval::State;
use crate::model::spec::ThrottleClass;

/// A value inside the deadband is still published once the last publish is this old.
pub const MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Numbers: interval and deadband in the entity's unit.
    Numeric { interval: Duration, deadband: f64 },
    /// Discrete states: published once unchanged for `hold`. When the state keeps changing
    /// between values other than the published one (a charger hunting between bulk and
    /// absorption), the latest value is published once the published state has been
    /// contradicted for `max_wait` without a break.
    Debounce { hold: Duration, max_wait: Duration },
    /// Positions: interval, a deadband in metres, and a settle time. The GX sends latitude
    /// and longitude as two messages. A move is held for `settle` after its first half
    /// arrives, so Home Assistant never shows a point with only one coordinate new.
    Location { interval: Duration, metres: f64, settle: Duration },
    /// Every change at once.
    Immediate,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub rule: Rule,
}

impl Policy {
    /// Returns the numbers for a throttle class. `scale` multiplies every duration (1.0 in
    /// production; smaller in accelerated tests).
    pub fn for_class(class: ThrottleClass, scale: f64) -> Policy {
        let s = |secs: f64| Duration::from_secs_f64(secs * scale);
        let numeric = |interval: f64, deadband: f64| Rule::Numeric { interval: s(interval), deadband };
        let rule = match class {
            ThrottleClass::Power => numeric(5.0, 5.0),
            ThrottleClass::Current => numeric(5.0, 0.1),
            ThrottleClass::Voltage => numeric(15.0, 0.05),
            ThrottleClass::Soc => numeric(10.0, 0.5),
            ThrottleClass::Temperature => numeric(30.0, 0.2),
            ThrottleClass::Humidity => numeric(30.0, 1.0),
            ThrottleClass::Frequency => numeric(15.0, 0.1),
            ThrottleClass::Energy => numeric(60.0, 0.01),
            ThrottleClass::Charge => numeric(30.0, 0.1),
            ThrottleClass::Duration => numeric(60.0, 60.0),
            ThrottleClass::TankLevel => numeric(60.0, 1.0),
            ThrottleClass::TankVolume => numeric(60.0, 1.0),
            ThrottleClass::Speed => numeric(10.0, 0.2),
            ThrottleClass::Count => numeric(30.0, 1.0),
            ThrottleClass::Binary | ThrottleClass::State => Rule::Debounce { hold: s(3.0), max_wait: s(60.0) },
            ThrottleClass::ShorePower => Rule::Debounce { hold: s(10.0), max_wait: s(60.0) },
            ThrottleClass::Location => Rule::Location { interval: s(30.0), metres: 25.0, settle: s(1.0) },
            ThrottleClass::Immediate => Rule::Immediate,
        };
        Policy { rule }
    }

    pub fn immediate() -> Policy {
        Policy { rule: Rule::Immediate }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    policy: Policy,
    published: Option<(State, Instant)>,
    /// Latest offered value not yet published, with the time it was first offered.
    pending: Option<(State, Instant)>,
    /// Start of the current run of offers that all differ from the published state. Only
    /// `Rule::Debounce` reads it.
    contradicted_since: Option<Instant>,
}

/// Throttle state for a set of entities, indexed like the registry.
#[derive(Debug, Default)]
pub struct Throttle {
    slots: Vec<Slot>,
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle::default()
    }

    /// Sets the policy of entity `index` (entities are added as the registry grows).
    pub fn set_policy(&mut self, index: usize, policy: Policy) {
        while self.slots.len() <= index {
            self.slots.push(Slot {
                policy: Policy::immediate(),
                published: None,
                pending: None,
                contradicted_since: None,
            });
        }
        self.slots[index].policy = policy;
    }

    /// Offers a new state; returns it when it should be published now. Otherwise it is
    /// kept as pending and comes out of [`Throttle::due`] later, unless superseded.
    pub fn offer(&mut self, index: usize, state: State, now: Instant) -> Option<State> {
        let slot = &mut self.slots[index];
        let Some((last, last_at)) = slot.published.clone() else {
            return publish(slot, state, now);
        };

        if state == last {
            slot.pending = None;
            slot.contradicted_since = None;
            return None;
        }

        match slot.policy.rule {
            Rule::Immediate => publish(slot, state, now),
            Rule::Debounce { .. } => {
                let since = match &slot.pending {
                    Some((pending, since)) if *pending == state => *since,
                    _ => now,
                };
                slot.pending = Some((state, since));
                slot.contradicted_since.get_or_insert(now);
                self.release_if_due(index, now)
            }
            Rule::Numeric { interval, .. } => {
                let significant = significant(&slot.policy.rule, &last, &state);
                if significant && now.duration_since(last_at) >= interval {
                    return publish(slot, state, now);
                }
                slot.pending = Some((state, now));
                self.release_if_due(index, now)
            }
            Rule::Location { .. } => {
                // A move already waiting keeps its start time, so a vehicle that keeps
                // moving is still published once per interval.
                let since = match &slot.pending {
                    Some((pending, since)) if significant(&slot.policy.rule, &last, pending) => *since,
                    _ => now,
                };
                slot.pending = Some((state, since));
                self.release_if_due(index, now)
            }
        }
    }

    fn release_if_due(&mut self, index: usize, now: Instant) -> Option<State> {
        let slot = &mut self.slots[index];
        match due_at(slot) {
            Some(at) if at <= now => {
                let (state, _) = slot.pending.take()?;
                publish(slot, state, now)
            }
            _ => None,
        }
    }

    /// Pending states whose time has come.
    pub fn due(&mut self, now: Instant) -> Vec<(usize, State)> {
        let mut out = Vec::new();
        for index in 0..self.slots.len() {
            if let Some(state) = self.release_if_due(index, now) {
                out.push((index, state));
            }
        }
        out
    }

    /// When the next pending state becomes due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().filter_map(due_at).min()
    }

    /// Forgets what was published, so the next offer of every entity goes out at once:
    /// after the GX link comes back, every state must be the GX's current value.
    pub fn reset_all(&mut self) {
        for slot in &mut self.slots {
            slot.published = None;
            slot.pending = None;
            slot.contradicted_since = None;
        }
    }

    /// Returns the state last published for entity `index`, if any.
    pub fn last_published(&self, index: usize) -> Option<&State> {
        self.slots.get(index).and_then(|s| s.published.as_ref().map(|(state, _)| state))
    }
}

fn publish(slot: &mut Slot, state: State, now: Instant) -> Option<State> {
    slot.published = Some((state.clone(), now));
    slot.pending = None;
    slot.contradicted_since = None;
    Some(state)
}

/// When the pending state of a slot is due.
fn due_at(slot: &Slot) -> Option<Instant> {
    let (pending, since) = slot.pending.as_ref()?;
    let (last, last_at) = slot.published.as_ref()?;
    match slot.policy.rule {
        Rule::Immediate => Some(*since),
        Rule::Debounce { hold, max_wait } => {
            let hold_end = *since + hold;
            match slot.contradicted_since {
                Some(contradicted) => Some(hold_end.min(contradicted + max_wait)),
                None => Some(hold_end),
            }
        }
        Rule::Numeric { interval, .. } => {
            if significant(&slot.policy.rule, last, pending) {
                Some(*last_at + interval)
            } else {
                Some(*last_at + MAX_AGE)
            }
        }
        Rule::Location { interval, settle, .. } => {
            if significant(&slot.policy.rule, last, pending) {
                Some((*last_at + interval).max(*since + settle))
            } else {
                Some(*last_at + MAX_AGE)
            }
        }
    }
}

/// True when `new` differs from `old` by more than the deadband (or changes kind).
fn significant(rule: &Rule, old: &State, new: &State) -> bool {
    match (rule, old, new) {
        // The epsilon keeps a step of exactly one deadband (0.06 - 0.05 kWh) significant.
        (Rule::Numeric { deadband, .. }, State::Number(a), State::Number(b)) => (a - b).abs() >= *deadband * (1.0 - 1e-9),
        (Rule::Location { metres, .. }, State::Location(a), State::Location(b)) => {
            distance_metres(a.latitude, a.longitude, b.latitude, b.longitude) >= *metres
        }
        _ => old != new,
    }
}

/// Great-circle distance (haversine, mean Earth radius 6371 km).
fn distance_metres(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn throttle(class: ThrottleClass) -> Throttle {
        let mut throttle = Throttle::new();
        throttle.set_policy(0, Policy::for_class(class, 1.0));
        throttle
    }

    #[test]
    fn first_value_goes_out_at_once() {
        let mut t = throttle(ThrottleClass::Power);
        let t0 = Instant::now();
        assert_eq!(t.offer(0, State::Number(100.0), t0), Some(State::Number(100.0)));
    }

    #[test]
    fn change_inside_interval_is_delivered_at_window_end() {
        let mut t = throttle(ThrottleClass::Power);
        let t0 = Instant::now();
        t.offer(0, State::Number(100.0), t0);
        assert_eq!(t.offer(0, State::Number(200.0), t0 + secs(1)), None);
        assert_eq!(t.offer(0, State::Number(300.0), t0 + secs(2)), None);
        assert_eq!(t.next_deadline(), Some(t0 + secs(5)));
        assert!(t.due(t0 + secs(4)).is_empty());
        assert_eq!(t.due(t0 + secs(5)), vec![(0, State::Number(300.0))]);
        assert!(t.due(t0 + secs(6)).is_empty());
    }

    #[test]
    fn deadband_change_waits_for_max_age() {
        let mut t = throttle(ThrottleClass::Power);
        let t0 = Instant::now();
        t.offer(0, State::Number(100.0), t0);
        assert_eq!(t.offer(0, State::Number(101.0), t0 + secs(10)), None);
        assert_eq!(t.next_deadline(), Some(t0 + MAX_AGE));
        assert_eq!(t.due(t0 + MAX_AGE), vec![(0, State::Number(101.0))]);
    }

    #[test]
    fn step_of_one_deadband_is_significant() {
        let mut t = throttle(ThrottleClass::Energy);
        let t0 = Instant::now();
        t.offer(0, State::Number(0.05), t0);
        // 0.06 - 0.05 is 0.009999999999999995 in binary floating point.
        assert_eq!(t.offer(0, State::Number(0.06), t0 + secs(61)), Some(State::Number(0.06)));
    }

    #[test]
    fn significant_change_after_interval_goes_out_at_once() {
        let mut t = throttle(ThrottleClass::Power);
        let t0 = Instant::now();
        t.offer(0, State::Number(100.0), t0);
        assert_eq!(t.offer(0, State::Number(150.0), t0 + secs(6)), Some(State::Number(150.0)));
    }

    #[test]
    fn unknown_is_a_change() {
        let mut t = throttle(ThrottleClass::Power);
        let t0 = Instant::now();
        t.offer(0, State::Number(100.0), t0);
        assert_eq!(t.offer(0, State::Unknown, t0 + secs(6)), Some(State::Unknown));
    }

    #[test]
    fn debounce_holds_and_cancels() {
        let mut t = throttle(ThrottleClass::ShorePower);
        let t0 = Instant::now();
        t.offer(0, State::Bool(true), t0);
        assert_eq!(t.offer(0, State::Bool(false), t0 + secs(1)), None);
        assert_eq!(t.offer(0, State::Bool(true), t0 + secs(5)), None, "flipped back");
        assert!(t.due(t0 + secs(20)).is_empty(), "nothing to publish after a flicker");

        assert_eq!(t.offer(0, State::Bool(false), t0 + secs(30)), None);
        assert_eq!(t.offer(0, State::Bool(false), t0 + secs(35)), None);
        assert_eq!(t.due(t0 + secs(40)), vec![(0, State::Bool(false))]);
    }

    /// Offers `states` in turn every 2 s from `start` for `steps` offers, calling `due` after
    /// each, and returns every release with its time.
    fn alternate(t: &mut Throttle, states: [State; 2], start: Instant, steps: u64) -> Vec<(Instant, State)> {
        let mut released = Vec::new();
        for step in 0..steps {
            let now = start + secs(2 * step);
            let state = states[(step % 2) as usize].clone();
            released.extend(t.offer(0, state, now).map(|s| (now, s)));
            released.extend(t.due(now).into_iter().map(|(_, s)| (now, s)));
        }
        released
    }

    #[test]
    fn debounce_alternation_published_after_max_wait() {
        let mut t = throttle(ThrottleClass::State);
        let t0 = Instant::now();
        let hunting = [State::Option("bulk"), State::Option("absorption")];
        t.offer(0, State::Option("float"), t0);

        // Neither state holds for 3 s, so only the 60 s maximum wait releases one.
        let released = alternate(&mut t, hunting, t0 + secs(1), 40);
        assert_eq!(released.len(), 1, "released {released:?}");
        assert_eq!(released[0].0, t0 + secs(61));
        assert_eq!(released[0].1, State::Option("bulk"));
    }

    #[test]
    fn debounce_max_wait_deadline() {
        let mut t = throttle(ThrottleClass::ShorePower);
        let t0 = Instant::now();
        t.offer(0, State::Bool(true), t0);
        for step in 0..12u64 {
            let now = t0 + secs(1 + 5 * step);
            assert_eq!(t.offer(0, State::Unknown, now), None);
            assert_eq!(t.offer(0, State::Bool(false), now + Duration::from_millis(500)), None);
        }

        // The last offer came at 56.5 s, so its 10 s hold ends after the 60 s maximum wait.
        assert_eq!(t.next_deadline(), Some(t0 + secs(61)));
        assert!(t.due(t0 + secs(60)).is_empty());
        assert_eq!(t.due(t0 + secs(61)), vec![(0, State::Bool(false))]);
    }

    #[test]
    fn debounce_published_state_restarts_max_wait() {
        let mut t = throttle(ThrottleClass::State);
        let t0 = Instant::now();
        let hunting = [State::Option("bulk"), State::Option("absorption")];
        t.offer(0, State::Option("float"), t0);
        let released = alternate(&mut t, hunting.clone(), t0 + secs(1), 25);
        assert!(released.is_empty(), "released {released:?}");

        // The published state returns for a moment, so the 60 s count starts again.
        assert_eq!(t.offer(0, State::Option("float"), t0 + secs(50)), None);
        let released = alternate(&mut t, hunting, t0 + secs(51), 40);
        assert_eq!(released.len(), 1, "released {released:?}");
        assert_eq!(released[0].0, t0 + secs(111));
    }

    #[test]
    fn reset_all_releases_next_value() {
        let mut t = throttle(ThrottleClass::Temperature);
        let t0 = Instant::now();
        t.offer(0, State::Number(20.0), t0);
        t.reset_all();
        assert_eq!(t.offer(0, State::Number(20.1), t0 + secs(1)), Some(State::Number(20.1)));
    }

    #[test]
    fn location_deadband_in_metres() {
        use crate::model::eval::Location;
        let at = |lat: f64| {
            State::Location(Location {
                latitude: lat,
                longitude: 5.0,
                altitude: None,
                course: None,
                speed: None,
                satellites: None,
            })
        };
        let mut t = throttle(ThrottleClass::Location);
        let t0 = Instant::now();
        t.offer(0, at(50.0), t0);
        // 0.0001 degrees of latitude is about 11 m: jitter.
        assert_eq!(t.offer(0, at(50.0001), t0 + secs(40)), None);
        // 0.001 degrees is about 111 m: published once it has settled for a second.
        assert_eq!(t.offer(0, at(50.001), t0 + secs(41)), None);
        assert_eq!(t.due(t0 + secs(41) + Duration::from_millis(999)), vec![]);
        assert_eq!(t.due(t0 + secs(42)), vec![(0, at(50.001))]);
    }

    #[test]
    fn location_waits_for_the_second_coordinate() {
        use crate::model::eval::Location;
        let at = |latitude: f64, longitude: f64| {
            State::Location(Location { latitude, longitude, altitude: None, course: None, speed: None, satellites: None })
        };
        let mut t = throttle(ThrottleClass::Location);
        let t0 = Instant::now();
        assert_eq!(t.offer(0, at(50.0, 5.0), t0), Some(at(50.0, 5.0)));
        // Latitude first, longitude 50 ms later: one publish with both.
        assert_eq!(t.offer(0, at(50.01, 5.0), t0 + secs(60)), None);
        assert_eq!(t.offer(0, at(50.01, 5.01), t0 + secs(60) + Duration::from_millis(50)), None);
        assert_eq!(t.due(t0 + secs(61)), vec![(0, at(50.01, 5.01))]);
        // A vehicle that keeps moving every half second is still published each interval.
        let mut published = 0;
        for step in 1..=240u32 {
            let now = t0 + secs(61) + Duration::from_millis(500 * u64::from(step));
            let lat = 50.01 + f64::from(step) * 0.0001;
            if t.offer(0, at(lat, 5.01), now).is_some() {
                published += 1;
            }
            published += t.due(now).len();
        }
        assert_eq!(published, 4, "120 s of driving at a 30 s interval");
    }
}
