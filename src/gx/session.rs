//! The GX session: portal id, keepalive and staleness, as a pure state machine.
//!
//! Facts it encodes (Venus OS, dbus-flashmq README and source; dbus-mqtt README):
//! * The portal id comes from the retained `N/+/system/0/Serial`, the only retained topic.
//! * Nothing is published until a keepalive on `R/<portal>/keepalive`; the GX stops 60 s
//!   after the last one. We send one every 30 s.
//! * The first keepalive after every (re)connect is empty: both dbus-flashmq and the old
//!   dbus-mqtt answer it with a full publish.
//! * dbus-flashmq (Venus >= 3.20) publishes `heartbeat` every 3 s while a client keeps it
//!   alive and ends a full publish with `full_publish_completed`, echoing our token if the
//!   keepalive asked for one (Venus >= 3.50). Only once one of those was seen do we send the
//!   JSON keepalive forms: dbus-mqtt reads any non-empty payload as a list of topic filters,
//!   and a JSON object would keep nothing alive.
//! * No heartbeat for 10 s on dbus-flashmq means the link is stale. The GX session may
//!   have expired, and a `suppress-republish` keepalive would revive it without a
//!   republish, leaving values that changed in the gap wrong while looking fresh; so the
//!   revival keepalive is always a full one.
//! * Without the completion marker, values are shown 10 s after the keepalive. The
//!   snapshot marks devices missing from it as gone, so it ends only once no new topic has
//!   arrived for a few seconds (`republish`): dbus-mqtt's rate-limited queue can take
//!   minutes to republish a large system.
//!
//! The I/O loop around this type feeds it events with the current time and performs the
//! actions it returns.

use std::time::{Duration, Instant};

use super::republish::Republish;
use crate::backoff::Backoff;
use crate::clock::Timings;
use crate::model::spec::ServiceKind;

/// Topic path of the GX's model name ("Cerbo GX") under `N/<portal>/`.
pub const MODEL_PATH: &str = "platform/0/Device/Model";

/// Which Venus MQTT bridge the GX runs, as far as we can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// Nothing seen yet that tells: keepalives stay empty.
    Unknown,
    /// dbus-flashmq: heartbeats, completion markers, JSON keepalive options.
    FlashMq,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Disconnected,
    /// Connected, waiting for the retained Serial.
    WaitingSerial { since: Instant, warned: bool },
    /// Keepalive sent, waiting for the full publish to finish.
    Snapshot { since: Instant, token: Option<String> },
    /// Values are live.
    Live,
    /// dbus-flashmq stopped its heartbeat; full keepalives are retried with backoff.
    Stale { token: String, next_retry: Instant, heartbeat_back: Option<Instant> },
}

/// What the I/O loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Subscribe(Vec<String>),
    /// Publish to `R/<portal>/keepalive` (not retained) with this payload.
    Keepalive(String),
    /// The portal id is known (first time in this session).
    Portal(String),
    /// The GX is about to republish everything.
    SnapshotBegin,
    /// The republish is complete: values are current.
    SnapshotEnd,
    /// Values are live again (entities available).
    Online,
    /// Values are not live (entities unavailable), with the reason for the log.
    Offline(&'static str),
    /// Connected, but no retained Serial arrived in time: not a GX, or one still booting.
    NoSerial,
}

pub struct Session {
    timings: Timings,
    phase: Phase,
    portal: Option<String>,
    firmware: Firmware,
    last_keepalive: Option<Instant>,
    last_heartbeat: Option<Instant>,
    /// When the last value (any `N/<portal>/...` item) arrived.
    last_value: Option<Instant>,
    /// The full publish requested by the keepalive that began the current snapshot, until
    /// `Action::SnapshotEnd`. The phase may already be `Live` when it has no marker.
    republish: Option<Republish>,
    stale_backoff: Backoff,
    token_counter: u64,
    token_prefix: String,
}

impl Session {
    pub fn new(timings: Timings) -> Session {
        let stale_backoff = Backoff::new(timings.gx_stale_retry.0, timings.gx_stale_retry.1);
        Session {
            timings,
            phase: Phase::Disconnected,
            portal: None,
            firmware: Firmware::Unknown,
            last_keepalive: None,
            last_heartbeat: None,
            last_value: None,
            republish: None,
            stale_backoff,
            token_counter: 0,
            token_prefix: format!("roamcore-{:08x}", rand::random::<u32>()),
        }
    }

    pub fn portal(&self) -> Option<&str> {
        self.portal.as_deref()
    }

    pub fn firmware(&self) -> Firmware {
        self.firmware
    }

    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    pub fn is_stale(&self) -> bool {
        matches!(self.phase, Phase::Stale { .. })
    }

    /// True from the broker's CONNACK until the connection drops.
    pub fn is_connected(&self) -> bool {
        self.phase != Phase::Disconnected
    }

    /// The broker accepted our connection.
    pub fn connected(&mut self, now: Instant) -> Vec<Action> {
        self.phase = Phase::WaitingSerial { since: now, warned: false };
        self.portal = None;
        self.firmware = Firmware::Unknown;
        self.last_keepalive = None;
        self.last_heartbeat = None;
        self.last_value = None;
        self.republish = None;
        self.stale_backoff.reset();
        vec![Action::Subscribe(vec![super::topic::SERIAL_FILTER.to_string()])]
    }

    /// The connection dropped.
    pub fn disconnected(&mut self) -> Vec<Action> {
        let was_live = matches!(self.phase, Phase::Live | Phase::Stale { .. } | Phase::Snapshot { .. });
        self.phase = Phase::Disconnected;
        if was_live {
            vec![Action::Offline("connection to the GX broker lost")]
        } else {
            Vec::new()
        }
    }

    /// A retained or republished `N/<portal>/system/0/Serial`.
    pub fn serial(&mut self, portal: &str, now: Instant) -> Vec<Action> {
        if !matches!(self.phase, Phase::WaitingSerial { .. }) || self.portal.is_some() {
            return Vec::new();
        }
        self.portal = Some(portal.to_string());

        let mut topics: Vec<String> = ServiceKind::ALL
            .iter()
            .map(|kind| format!("N/{portal}/{}/#", kind.as_str()))
            .collect();
        topics.push(format!("N/{portal}/heartbeat"));
        topics.push(format!("N/{portal}/full_publish_completed"));
        topics.push(format!("N/{portal}/keepalive"));
        // The GX's model ("Cerbo GX") for the status attributes: one topic of the
        // platform tree, not the tree.
        topics.push(format!("N/{portal}/{MODEL_PATH}"));

        self.phase = Phase::Snapshot { since: now, token: None };
        self.last_keepalive = Some(now);
        self.republish = Some(Republish::new(now));
        vec![
            Action::Portal(portal.to_string()),
            Action::Subscribe(topics),
            Action::SnapshotBegin,
            Action::Keepalive(String::new()),
        ]
    }

    /// Records a value message of our portal on `topic`.
    pub fn value(&mut self, topic: &str, now: Instant) {
        self.last_value = Some(now);
        if let Some(republish) = &mut self.republish {
            republish.message(topic, now);
        }
    }

    /// `N/<portal>/heartbeat`: only dbus-flashmq sends it.
    pub fn heartbeat(&mut self, now: Instant) -> Vec<Action> {
        self.firmware = Firmware::FlashMq;
        let gap = self.last_heartbeat.map(|at| now.duration_since(at));
        self.last_heartbeat = Some(now);
        match &self.phase {
            Phase::Stale { token, heartbeat_back: None, .. } => {
                let token = token.clone();

                // The GX is back, but the full keepalives sent while it was silent may have
                // been lost. Ask again now rather than at the next retry, which can be up to
                // 36 s away: the fallback in `tick` ends the snapshot 10 s after this
                // heartbeat, and ending it without a republish would mark every device as
                // gone.
                let next_retry = now + self.stale_backoff.next_delay();
                self.phase = Phase::Stale { token: token.clone(), next_retry, heartbeat_back: Some(now) };
                self.last_keepalive = Some(now);
                vec![Action::Keepalive(full_keepalive(&token))]
            }
            // Heartbeats came back after a gap: the GX session may have lapsed and been
            // revived by a keepalive without a republish, so refresh every value.
            Phase::Live if gap.is_some_and(|gap| gap > self.timings.gx_heartbeat_gap) => self.resync(now),
            _ => Vec::new(),
        }
    }

    /// Asks for a full republish while staying online. No snapshot is tracked: if the
    /// republish were lost, ending a tracked snapshot would mark every device as gone.
    fn resync(&mut self, now: Instant) -> Vec<Action> {
        let token = self.next_token();
        self.phase = Phase::Snapshot { since: now, token: Some(token.clone()) };
        self.last_keepalive = Some(now);
        self.republish = Some(Republish::new(now));
        vec![Action::Keepalive(full_keepalive(&token))]
    }

    /// `N/<portal>/full_publish_completed`, with the echo token if it carried one.
    pub fn full_publish_completed(&mut self, echo: Option<&str>, now: Instant) -> Vec<Action> {
        self.firmware = Firmware::FlashMq;
        self.last_heartbeat.get_or_insert(now);
        let matches = |expected: &Option<String>| match (expected, echo) {
            // Another client's full publish: not the one we asked for.
            (Some(expected), Some(echo)) => expected == echo,
            // Firmware that does not echo (before Venus 3.50), or our empty keepalive.
            _ => true,
        };
        let complete = match &self.phase {
            Phase::Snapshot { token, .. } => matches(token),
            Phase::Stale { token, .. } => matches(&Some(token.clone())),
            _ => false,
        };
        if !complete {
            return Vec::new();
        }
        self.republish = None;
        self.go_live(now)
    }

    /// Shows values as live. The snapshot ends too, unless a full publish without a
    /// completion marker is still bringing new topics; `tick` ends it later.
    fn go_live(&mut self, now: Instant) -> Vec<Action> {
        self.phase = Phase::Live;
        self.last_heartbeat = Some(now);
        self.stale_backoff.reset();
        if self.republish_end().is_some_and(|end| end > now) {
            return vec![Action::Online];
        }
        self.republish = None;
        vec![Action::SnapshotEnd, Action::Online]
    }

    /// When the full publish being tracked counts as complete.
    fn republish_end(&self) -> Option<Instant> {
        let republish = self.republish.as_ref()?;
        Some(republish.ends_at(self.timings.gx_publish_quiet, self.timings.gx_publish_max))
    }

    /// Advances timers; call at least every second.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();

        // The heartbeat watchdog covers a resync republish too: a GX that freezes while we
        // wait for one must still go stale.
        let heartbeat_late = self.firmware == Firmware::FlashMq
            && self.last_heartbeat.is_some_and(|at| now.duration_since(at) >= self.timings.gx_heartbeat_timeout);
        if heartbeat_late && matches!(self.phase, Phase::Live | Phase::Snapshot { .. }) {
            let token = self.next_token();
            self.stale_backoff.reset();
            let next_retry = now + self.stale_backoff.next_delay();
            self.phase = Phase::Stale { token: token.clone(), next_retry, heartbeat_back: None };
            self.last_keepalive = Some(now);
            // The stale phase ends with its own snapshot, on the marker or the fallback.
            self.republish = None;
            actions.push(Action::Offline("no heartbeat from the GX for 10 s"));
            actions.push(Action::SnapshotBegin);
            actions.push(Action::Keepalive(full_keepalive(&token)));
            return actions;
        }

        match self.phase.clone() {
            Phase::Disconnected => return actions,
            Phase::WaitingSerial { since, warned } => {
                if !warned && now.duration_since(since) >= self.timings.gx_serial_wait {
                    self.phase = Phase::WaitingSerial { since, warned: true };
                    actions.push(Action::NoSerial);
                }
                return actions;
            }
            Phase::Snapshot { since, token } => {
                if now.duration_since(since) >= self.timings.gx_snapshot_fallback {
                    let heard = |at: Option<Instant>| at.is_some_and(|at| at >= since);
                    if heard(self.last_value) || heard(self.last_heartbeat) {
                        // dbus-mqtt, and dbus-flashmq before Nov 2023, never send the marker.
                        actions.extend(self.go_live(now));
                    } else {
                        // Nothing at all since the keepalive: the GX is not answering (it may
                        // have gone away right after we connected). Ask again rather than
                        // showing entities as available with no data.
                        self.phase = Phase::Snapshot { since: now, token: token.clone() };
                        self.last_keepalive = Some(now);
                        self.republish = Some(Republish::new(now));
                        let payload = match &token {
                            Some(token) => full_keepalive(token),
                            None => String::new(),
                        };
                        actions.push(Action::Keepalive(payload));
                        return actions;
                    }
                }
            }
            Phase::Live => {
                if self.republish_end().is_some_and(|end| end <= now) {
                    self.republish = None;
                    actions.push(Action::SnapshotEnd);
                }
            }
            Phase::Stale { token, next_retry, heartbeat_back } => {
                if heartbeat_back.is_some_and(|at| now.duration_since(at) >= self.timings.gx_snapshot_fallback) {
                    // Heartbeats are back but the completion marker never came.
                    actions.extend(self.go_live(now));
                } else if now >= next_retry {
                    let next_retry = now + self.stale_backoff.next_delay();
                    self.phase = Phase::Stale { token: token.clone(), next_retry, heartbeat_back };
                    self.last_keepalive = Some(now);
                    actions.push(Action::Keepalive(full_keepalive(&token)));
                }
                // While stale, the retries above are the keepalives.
                return actions;
            }
        }

        let due = self.last_keepalive.is_none_or(|at| now.duration_since(at) >= self.timings.gx_keepalive);
        if due {
            let heartbeat_gap = self.last_heartbeat.is_some_and(|at| now.duration_since(at) > self.timings.gx_heartbeat_gap);
            match (self.firmware, &self.phase) {
                // A keepalive that may revive a lapsed session must be a full one.
                (Firmware::FlashMq, Phase::Live) if heartbeat_gap => actions.extend(self.resync(now)),
                (Firmware::FlashMq, Phase::Live) => {
                    self.last_keepalive = Some(now);
                    actions.push(Action::Keepalive(SUPPRESS_REPUBLISH.to_string()));
                }
                _ => {
                    self.last_keepalive = Some(now);
                    actions.push(Action::Keepalive(String::new()));
                }
            }
        }
        actions
    }

    /// When `tick` next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let keepalive = self.last_keepalive.map(|at| at + self.timings.gx_keepalive);
        let phase = match &self.phase {
            Phase::Disconnected => return None,
            Phase::WaitingSerial { since, warned: false } => Some(*since + self.timings.gx_serial_wait),
            Phase::WaitingSerial { .. } => None,
            Phase::Snapshot { since, .. } => {
                let fallback = *since + self.timings.gx_snapshot_fallback;
                match (self.firmware, self.last_heartbeat) {
                    (Firmware::FlashMq, Some(at)) => Some(fallback.min(at + self.timings.gx_heartbeat_timeout)),
                    _ => Some(fallback),
                }
            }
            Phase::Live => {
                let watchdog = match (self.firmware, self.last_heartbeat) {
                    (Firmware::FlashMq, Some(at)) => Some(at + self.timings.gx_heartbeat_timeout),
                    _ => None,
                };
                [watchdog, self.republish_end()].into_iter().flatten().min()
            }
            Phase::Stale { next_retry, heartbeat_back, .. } => {
                let back = heartbeat_back.map(|at| at + self.timings.gx_snapshot_fallback);
                Some(back.map_or(*next_retry, |b| b.min(*next_retry)))
            }
        };
        [keepalive, phase].into_iter().flatten().min()
    }

    fn next_token(&mut self) -> String {
        self.token_counter += 1;
        format!("{}-{}", self.token_prefix, self.token_counter)
    }

    /// Timeout after which a silent link counts as down for the fault reports.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.timings.gx_heartbeat_timeout
    }
}

/// Extends the alive timer without a republish (dbus-flashmq only).
pub const SUPPRESS_REPUBLISH: &str = r#"{"keepalive-options":["suppress-republish"]}"#;

/// Asks for a full republish whose completion marker echoes `token` (dbus-flashmq only).
pub fn full_keepalive(token: &str) -> String {
    serde_json::json!({ "keepalive-options": [ { "full-publish-completed-echo": token } ] }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> (Session, Instant) {
        (Session::new(Timings::standard()), Instant::now())
    }

    fn keepalives(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Keepalive(p) => Some(p.as_str()),
                _ => None,
            })
            .collect()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn connect_serial_then_empty_keepalive() {
        let (mut s, t0) = session();
        assert_eq!(s.connected(t0), vec![Action::Subscribe(vec!["N/+/system/0/Serial".into()])]);
        let actions = s.serial("c0619ab0d0e1", t0);
        assert_eq!(actions[0], Action::Portal("c0619ab0d0e1".into()));
        let Action::Subscribe(topics) = &actions[1] else { panic!("{actions:?}") };
        assert!(topics.contains(&"N/c0619ab0d0e1/battery/#".to_string()));
        assert!(topics.contains(&"N/c0619ab0d0e1/heartbeat".to_string()));
        assert!(!topics.iter().any(|t| t.contains("settings") || t.contains("platform/#") || t.contains("vecan")));
        assert!(topics.contains(&"N/c0619ab0d0e1/platform/0/Device/Model".to_string()));
        assert_eq!(keepalives(&actions), vec![""]);
        assert!(s.serial("c0619ab0d0e1", t0).is_empty(), "repeated Serial is ignored");
    }

    #[test]
    fn dbus_mqtt_keepalives_stay_empty() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        s.value("N/p/system/0/Serial", t0 + secs(1));
        let actions = s.tick(t0 + secs(10));
        assert!(actions.contains(&Action::Online), "timer stands in for the marker: {actions:?}");
        for n in 1..=6 {
            let actions = s.tick(t0 + secs(30 * n));
            assert_eq!(keepalives(&actions), vec![""], "tick {n}");
        }
        assert!(s.is_live(), "no heartbeat watchdog without dbus-flashmq");
    }

    #[test]
    fn paced_publish_ends_snapshot_when_new_topics_stop() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);

        // 50 new topics every 2 s for 60 s, as a paced dbus-mqtt queue sends them.
        let mut actions = Vec::new();
        for ms in (0..=80_000u64).step_by(250) {
            let now = t0 + Duration::from_millis(ms);
            if ms % 2000 == 0 && ms <= 60_000 {
                for n in 0..50 {
                    s.value(&format!("N/p/battery/{ms}/Path{n}"), now);
                }
            }
            actions.extend(s.tick(now).into_iter().map(|action| (ms, action)));
        }

        let online: Vec<u64> = actions.iter().filter(|(_, a)| *a == Action::Online).map(|(ms, _)| *ms).collect();
        let ends: Vec<u64> = actions.iter().filter(|(_, a)| *a == Action::SnapshotEnd).map(|(ms, _)| *ms).collect();
        assert_eq!(online, vec![10_000], "values shown at the fallback");
        assert_eq!(ends, vec![65_000], "snapshot ends 5 s after the last new topic");
    }

    #[test]
    fn paced_publish_deadline_is_quiet_end() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        s.value("N/p/battery/0/Soc", t0 + secs(9));
        let actions = s.tick(t0 + secs(10));
        assert_eq!(actions, vec![Action::Online]);

        // Values on topics already seen do not delay the end.
        s.value("N/p/battery/0/Soc", t0 + secs(12));
        assert_eq!(s.next_deadline(), Some(t0 + secs(14)));
        assert!(s.tick(t0 + secs(13)).is_empty());
        assert_eq!(s.tick(t0 + secs(14)), vec![Action::SnapshotEnd]);
        assert!(s.tick(t0 + secs(15)).is_empty(), "ended once");
    }

    #[test]
    fn reconnect_drops_pending_snapshot_end() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        s.value("N/p/battery/0/Soc", t0 + secs(9));
        assert_eq!(s.tick(t0 + secs(10)), vec![Action::Online]);
        s.disconnected();

        // The new connection starts its own snapshot; the old one never ends on its own.
        s.connected(t0 + secs(11));
        assert!(s.tick(t0 + secs(20)).iter().all(|a| *a != Action::SnapshotEnd));
    }

    #[test]
    fn flashmq_uses_suppress_republish_once_seen() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        s.heartbeat(t0 + secs(1));
        let actions = s.full_publish_completed(None, t0 + secs(2));
        assert_eq!(actions, vec![Action::SnapshotEnd, Action::Online]);
        let mut sent = Vec::new();
        for second in (3..=120u64).step_by(3) {
            let at = t0 + secs(second);
            s.heartbeat(at);
            sent.extend(keepalives(&s.tick(at)).into_iter().map(str::to_string));
        }
        assert_eq!(sent, vec![SUPPRESS_REPUBLISH; 4]);
    }

    #[test]
    fn stale_link_sends_full_keepalive_and_recovers_on_echo() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        s.heartbeat(t0);
        s.full_publish_completed(None, t0);

        let actions = s.tick(t0 + secs(10));
        assert!(actions.contains(&Action::Offline("no heartbeat from the GX for 10 s")));
        let sent = keepalives(&actions);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].contains("full-publish-completed-echo"), "revival must be full: {}", sent[0]);
        assert!(!sent[0].contains("suppress-republish"));
        let token: serde_json::Value = serde_json::from_str(sent[0]).unwrap();
        let token = token["keepalive-options"][0]["full-publish-completed-echo"].as_str().unwrap().to_string();

        assert!(s.full_publish_completed(Some("someone-else"), t0 + secs(11)).is_empty());
        let actions = s.full_publish_completed(Some(&token), t0 + secs(12));
        assert_eq!(actions, vec![Action::SnapshotEnd, Action::Online]);
    }

    #[test]
    fn stale_heartbeat_back_asks_again() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        s.heartbeat(t0);
        s.full_publish_completed(None, t0);
        let first = keepalives(&s.tick(t0 + secs(10))).concat();

        // Silent long enough for the retry delay to reach its cap.
        for second in 11..120 {
            s.tick(t0 + secs(second));
        }
        let actions = s.heartbeat(t0 + secs(120));
        assert_eq!(keepalives(&actions), vec![first.as_str()], "full keepalive with the same token at once");
        assert!(s.heartbeat(t0 + secs(121)).is_empty(), "asked once per return");
        assert!(s.is_stale(), "live only after the republish");
    }

    #[test]
    fn stale_retries_with_backoff() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        s.heartbeat(t0);
        s.full_publish_completed(None, t0);
        s.tick(t0 + secs(10));

        let mut sent_at = Vec::new();
        for second in 11..200 {
            let actions = s.tick(t0 + secs(second));
            if !keepalives(&actions).is_empty() {
                sent_at.push(second);
            }
        }
        assert!(sent_at.len() >= 4, "retries: {sent_at:?}");
        let gaps: Vec<u64> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g <= 37), "retry gap above the cap: {gaps:?}");
        assert!(gaps.last() > gaps.first(), "no backoff: {gaps:?}");
    }

    #[test]
    fn keepalive_gap_never_exceeds_interval() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        let mut last = t0;
        let mut max_gap = Duration::ZERO;
        for ms in (0..180_000).step_by(250) {
            let now = t0 + Duration::from_millis(ms);
            if now.duration_since(t0) < secs(5) || ms % 3000 == 0 {
                s.heartbeat(now);
            }
            if ms == 1000 {
                s.full_publish_completed(None, now);
            }
            if !keepalives(&s.tick(now)).is_empty() {
                max_gap = max_gap.max(now.duration_since(last));
                last = now;
            }
        }
        assert!(max_gap <= secs(30), "gap {max_gap:?}");
    }

    #[test]
    fn heartbeat_gap_triggers_full_keepalive_without_going_offline() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        s.heartbeat(t0);
        s.full_publish_completed(None, t0);
        s.heartbeat(t0 + secs(3));

        // The session lapsed and came back: heartbeats resume after 8 s.
        let actions = s.heartbeat(t0 + secs(11) - Duration::from_millis(500));
        assert!(!actions.iter().any(|a| matches!(a, Action::Offline(_))), "{actions:?}");
        let sent = keepalives(&actions);
        assert_eq!(sent.len(), 1, "{actions:?}");
        assert!(sent[0].contains("full-publish-completed-echo"), "{}", sent[0]);
    }

    #[test]
    fn periodic_keepalive_after_silence_is_full() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        s.heartbeat(t0);
        s.full_publish_completed(None, t0);
        for n in 1..10 {
            s.heartbeat(t0 + secs(3 * n));
        }
        // Last heartbeat at 27 s; at 30 s the keepalive is due and 3 s is no gap.
        assert_eq!(keepalives(&s.tick(t0 + secs(30))), vec![SUPPRESS_REPUBLISH]);
        s.heartbeat(t0 + secs(30));
        s.heartbeat(t0 + secs(33));
        // Heartbeats stop at 33 s; the keepalive due at 60 s would come after a 27 s
        // silence, but the watchdog has gone stale at 43 s already.
        let actions = s.tick(t0 + secs(43));
        assert!(actions.contains(&Action::Offline("no heartbeat from the GX for 10 s")));
    }

    #[test]
    fn silent_gx_is_not_declared_online() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        let actions = s.tick(t0 + secs(10));
        assert!(!actions.contains(&Action::Online), "{actions:?}");
        assert_eq!(keepalives(&actions), vec![""], "asks again");
        s.value("N/p/system/0/Serial", t0 + secs(12));
        assert!(s.tick(t0 + secs(20)).contains(&Action::Online));
    }

    #[test]
    fn missing_serial_is_reported_once() {
        let (mut s, t0) = session();
        s.connected(t0);
        assert!(s.tick(t0 + secs(5)).is_empty());
        assert_eq!(s.tick(t0 + secs(10)), vec![Action::NoSerial]);
        assert!(s.tick(t0 + secs(20)).is_empty());
    }

    #[test]
    fn disconnect_goes_offline() {
        let (mut s, t0) = session();
        s.connected(t0);
        s.serial("p", t0);
        assert!(s.is_connected());
        assert_eq!(s.disconnected(), vec![Action::Offline("connection to the GX broker lost")]);
        assert!(!s.is_connected());
        assert!(s.tick(t0 + secs(100)).is_empty());
    }
}
