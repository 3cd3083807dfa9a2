//! Protocol timers in one place, so tests can run them faster.
//!
//! Production uses `Timings::standard()`. Tests that must see a keepalive expire or a
//! backoff cap without waiting minutes pass `--time-scale N`, which divides every duration
//! here by N; the relations between the timers stay the same.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Timings {
    /// Interval of `R/<portal>/keepalive`. Venus expires a client 60 s after its last
    /// keepalive (dbus-flashmq) or after 60-70 s (dbus-mqtt), so 30 s leaves one spare.
    pub gx_keepalive: Duration,
    /// dbus-flashmq publishes `heartbeat` every 3 s while alive; no heartbeat for this long
    /// means the GX link is stale.
    pub gx_heartbeat_timeout: Duration,
    /// A gap between heartbeats longer than this (1.5 periods) means the GX session may
    /// have lapsed and been revived; values are then refreshed with a full keepalive.
    pub gx_heartbeat_gap: Duration,
    /// How long to wait for `full_publish_completed` before treating the snapshot as
    /// complete anyway (dbus-mqtt never sends it; dbus-flashmq before Nov 2023 neither).
    pub gx_snapshot_fallback: Duration,
    /// A full publish without `full_publish_completed` counts as complete once no topic new
    /// to it has arrived for this long. dbus-mqtt sends its queue in batches at least 1.5 s
    /// apart, so this leaves room for a late batch.
    pub gx_publish_quiet: Duration,
    /// Upper limit on how long such a full publish is waited for. dbus-mqtt v1.36 sends at
    /// most 50 messages per batch and batches at least 1.5 s apart, about 33 messages/s,
    /// so 300 s covers nearly 10,000 topics.
    pub gx_publish_max: Duration,
    /// First and largest delay between full keepalives while the link is stale.
    pub gx_stale_retry: (Duration, Duration),
    /// How long to wait for the retained `N/+/system/0/Serial` after connecting.
    pub gx_serial_wait: Duration,
    /// MQTT keepalive (PINGREQ interval) on both links. rumqttc declares a link dead when
    /// the second ping is due without a PINGRESP, so a half-open link is found within
    /// about twice this.
    pub mqtt_keep_alive: Duration,
    /// TCP connect plus CONNACK timeout on both links.
    pub connect_timeout: Duration,
    /// First and largest reconnect delay (with +-20 % jitter).
    pub reconnect: (Duration, Duration),
    /// Largest reconnect delay after a refused connection (with +-20 % jitter), so a GX
    /// or broker that was restarting is found within 6 s of listening again.
    pub reconnect_refused_max: Duration,
    /// Minimum interval between login attempts after the GX rejected our credentials.
    /// FlashMQ delays rejections by 1-6 s and rate-limits unknown passwords.
    pub auth_retry: Duration,
    /// Random delay range before republishing after Home Assistant's birth message.
    pub birth_delay: (Duration, Duration),
    /// How often the engine ticks: throttle deadlines, watchdogs, health file.
    pub tick: Duration,
    /// Interval of the repeat-count line for a problem that keeps happening.
    pub problem_summary: Duration,
    /// Multiplier for throttle intervals and debounce holds (1.0 in production).
    pub throttle_scale: f64,
}

impl Timings {
    pub fn standard() -> Timings {
        Timings {
            gx_keepalive: Duration::from_secs(30),
            gx_heartbeat_timeout: Duration::from_secs(10),
            gx_heartbeat_gap: Duration::from_millis(4500),
            gx_snapshot_fallback: Duration::from_secs(10),
            gx_publish_quiet: Duration::from_secs(5),
            gx_publish_max: Duration::from_secs(300),
            gx_stale_retry: (Duration::from_secs(5), Duration::from_secs(30)),
            gx_serial_wait: Duration::from_secs(10),
            mqtt_keep_alive: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            reconnect: (Duration::from_secs(1), Duration::from_secs(30)),
            reconnect_refused_max: Duration::from_secs(5),
            auth_retry: Duration::from_secs(60),
            birth_delay: (Duration::from_millis(500), Duration::from_secs(3)),
            tick: Duration::from_secs(1),
            problem_summary: Duration::from_secs(600),
            throttle_scale: 1.0,
        }
    }

    /// Divides every duration by `factor` (>= 1). The MQTT keepalive is rounded down to
    /// whole seconds, at least 1 s, because CONNECT carries whole seconds and the broker
    /// disconnects a client silent for 1.5 times that (MQTT 3.1.1 rule MQTT-3.1.2-24).
    /// Pinging every 1.5 s after declaring 1 s got idle links dropped.
    pub fn scaled(factor: f64) -> Timings {
        let standard = Timings::standard();
        if factor <= 1.0 {
            return standard;
        }
        let s = |d: Duration| d.div_f64(factor);
        Timings {
            gx_keepalive: s(standard.gx_keepalive),
            gx_heartbeat_timeout: s(standard.gx_heartbeat_timeout),
            gx_heartbeat_gap: s(standard.gx_heartbeat_gap),
            // The fallback must outlast a real full publish (2,600 messages, well under a
            // second on loopback), which does not get faster with the scale.
            gx_snapshot_fallback: s(standard.gx_snapshot_fallback).max(Duration::from_secs(1)),
            // Gaps inside a full publish on loopback do not shrink with the scale either.
            gx_publish_quiet: s(standard.gx_publish_quiet).max(Duration::from_secs(1)),
            gx_publish_max: s(standard.gx_publish_max).max(Duration::from_secs(10)),
            gx_stale_retry: (s(standard.gx_stale_retry.0), s(standard.gx_stale_retry.1)),
            gx_serial_wait: s(standard.gx_serial_wait),
            mqtt_keep_alive: Duration::from_secs(s(standard.mqtt_keep_alive).as_secs().max(1)),
            connect_timeout: s(standard.connect_timeout).max(Duration::from_secs(1)),
            reconnect: (s(standard.reconnect.0), s(standard.reconnect.1)),
            reconnect_refused_max: s(standard.reconnect_refused_max),
            auth_retry: s(standard.auth_retry),
            birth_delay: (s(standard.birth_delay.0), s(standard.birth_delay.1)),
            tick: s(standard.tick).max(Duration::from_millis(20)),
            problem_summary: s(standard.problem_summary),
            throttle_scale: 1.0 / factor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_keepalive_whole_seconds() {
        for factor in [2.0, 7.0, 10.0, 15.0, 100.0] {
            let keep_alive = Timings::scaled(factor).mqtt_keep_alive;
            assert_eq!(keep_alive.subsec_nanos(), 0, "factor {factor}: {keep_alive:?}");
            assert!(keep_alive >= Duration::from_secs(1), "factor {factor}: {keep_alive:?}");
            assert!(keep_alive <= Duration::from_secs(15).div_f64(factor).max(Duration::from_secs(1)));
        }
    }

    #[test]
    fn problem_summary_scales() {
        assert_eq!(Timings::standard().problem_summary, Duration::from_secs(600));
        assert_eq!(Timings::scaled(60.0).problem_summary, Duration::from_secs(10));
        assert_eq!(Timings::scaled(1.0).problem_summary, Duration::from_secs(600));
    }
}
