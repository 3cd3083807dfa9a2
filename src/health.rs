//! Liveness of the running daemon, for the container's `HEALTHCHECK`.
//!
//! The engine calls [`HealthReporter::record`] on every tick (about once a second). The
//! reporter writes a small JSON file at most every [`WRITE_INTERVAL`], outside the
//! persistent data directory: by default `/tmp/roamcore-victron/health.json`, and the
//! add-on mounts `/tmp` as tmpfs, so the ticks never wear the flash. `roamcore-victron
//! health` reads the file and applies [`judge`]:
//!
//! * unhealthy when the event loop has not ticked for [`MAX_TICK_AGE`] (30 s): the
//!   daemon hangs;
//! * unhealthy when no publish to Home Assistant's broker succeeded for
//!   [`MAX_PUBLISH_AGE`] (5 minutes) while that broker accepts connections: the link to
//!   Home Assistant is stuck although the broker is fine;
//! * healthy otherwise, including while Home Assistant's broker is down (a restart of
//!   this add-on would not bring it back).
//!
//! Times are seconds on one clock that both processes can read: `/proc/uptime` (time
//! since boot, which NTP corrections at boot do not move), or Unix time where that file
//! is missing. The file names the clock so the reader uses the same one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Default location of the health file, overridden by `--health-file` or `ROAMCORE_HEALTH_FILE`.
pub const DEFAULT_PATH: &str = "/tmp/roamcore-victron/health.json";

/// Environment variable that overrides [`DEFAULT_PATH`] for the daemon and the check.
pub const PATH_ENV: &str = "ROAMCORE_HEALTH_FILE";

/// Minimum time between two writes of the health file.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// The event loop counts as hung when its last tick is older than this.
pub const MAX_TICK_AGE: Duration = Duration::from_secs(30);

/// With Home Assistant's broker accepting connections, the link to it counts as stuck
/// when no publish succeeded for this long (or since start).
pub const MAX_PUBLISH_AGE: Duration = Duration::from_secs(300);

/// The clock that the seconds in a [`HealthRecord`] are measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSource {
    /// Seconds since boot, from `/proc/uptime`.
    Uptime,
    /// Seconds since 1970-01-01 UTC.
    Unix,
}

/// The content of the health file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub clock: ClockSource,
    pub pid: u32,
    /// When the daemon started.
    pub started: f64,
    /// The last event-loop tick.
    pub tick: f64,
    /// The last successful publish to Home Assistant's broker, if any.
    pub last_publish: Option<f64>,
    /// Whether Home Assistant's broker accepted our connection at the last tick.
    pub broker_accepts: bool,
}

/// The outcome of a health check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Healthy,
    /// The event loop has not ticked for this many seconds.
    LoopStalled { seconds: f64 },
    /// Home Assistant's broker accepts connections but nothing was published for this
    /// many seconds.
    PublishStalled { seconds: f64 },
}

impl Verdict {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Verdict::Healthy)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Healthy => f.write_str("healthy"),
            Verdict::LoopStalled { seconds } => write!(
                f,
                "unhealthy: the event loop has not ticked for {seconds:.0} s (limit {} s)",
                MAX_TICK_AGE.as_secs()
            ),
            Verdict::PublishStalled { seconds } => write!(
                f,
                "unhealthy: Home Assistant's broker accepts connections, but no publish \
                 succeeded for {seconds:.0} s (limit {} s)",
                MAX_PUBLISH_AGE.as_secs()
            ),
        }
    }
}

/// Decides whether `record` describes a healthy daemon at time `now` (same clock).
/// A clock that went backwards counts as no time passed.
pub fn judge(record: &HealthRecord, now: f64) -> Verdict {
    let since = |then: f64| (now - then).max(0.0);

    let tick_age = since(record.tick);
    if tick_age > MAX_TICK_AGE.as_secs_f64() {
        return Verdict::LoopStalled { seconds: tick_age };
    }

    if record.broker_accepts {
        let publish_age = since(record.last_publish.unwrap_or(record.started));
        if publish_age > MAX_PUBLISH_AGE.as_secs_f64() {
            return Verdict::PublishStalled { seconds: publish_age };
        }
    }
    Verdict::Healthy
}

/// Reads the current time on `source`; `None` when that clock cannot be read.
pub fn clock_now(source: ClockSource) -> Option<f64> {
    match source {
        ClockSource::Uptime => {
            let text = std::fs::read_to_string("/proc/uptime").ok()?;
            text.split_whitespace().next()?.parse::<f64>().ok()
        }
        ClockSource::Unix => SystemTime::now().duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64()),
    }
}

/// Picks the clock: uptime where `/proc/uptime` is readable, else Unix time.
fn preferred_clock() -> ClockSource {
    if clock_now(ClockSource::Uptime).is_some() {
        ClockSource::Uptime
    } else {
        ClockSource::Unix
    }
}

/// Writes the health file from the engine's ticks.
#[derive(Debug)]
pub struct HealthReporter {
    path: PathBuf,
    clock: ClockSource,
    started: f64,
    last_write: Option<Instant>,
    write_failed: bool,
}

impl HealthReporter {
    pub fn new(path: PathBuf) -> HealthReporter {
        let clock = preferred_clock();
        let started = clock_now(clock).unwrap_or(0.0);
        HealthReporter { path, clock, started, last_write: None, write_failed: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one engine tick. `tick` is when the tick ran, `last_publish` when a publish
    /// to Home Assistant's broker last succeeded, `broker_accepts` whether that broker
    /// currently accepts our connection. Writes the file at most every
    /// [`WRITE_INTERVAL`]; a failed write is logged once and retried on later ticks.
    pub fn record(&mut self, tick: Instant, last_publish: Option<Instant>, broker_accepts: bool) {
        let now = Instant::now();
        if let Some(last) = self.last_write {
            if now.duration_since(last) < WRITE_INTERVAL {
                return;
            }
        }
        let Some(clock_now) = clock_now(self.clock) else {
            return;
        };
        // Express each Instant on the shared clock by its distance from "now".
        let on_clock = |instant: Instant| clock_now - now.saturating_duration_since(instant).as_secs_f64();
        let record = HealthRecord {
            clock: self.clock,
            pid: std::process::id(),
            started: self.started,
            tick: on_clock(tick),
            last_publish: last_publish.map(on_clock),
            broker_accepts,
        };

        match write_record(&self.path, &record) {
            Ok(()) => {
                self.last_write = Some(now);
                self.write_failed = false;
            }
            Err(err) => {
                if !self.write_failed {
                    tracing::warn!(
                        file = %self.path.display(),
                        error = %err,
                        "cannot write the health file; the container health check will fail"
                    );
                }
                self.write_failed = true;
            }
        }
    }
}

/// Writes `record` through a temporary file and a rename, so the checker never reads a
/// half-written file. No fsync: the file lives in RAM and means nothing after a reboot.
pub fn write_record(path: &Path, record: &HealthRecord) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(record)?)?;
    std::fs::rename(&tmp, path)
}

/// Reads the health file.
pub fn read_record(path: &Path) -> std::io::Result<HealthRecord> {
    let text = std::fs::read(path)?;
    serde_json::from_slice(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tick: f64, last_publish: Option<f64>, broker_accepts: bool) -> HealthRecord {
        HealthRecord {
            clock: ClockSource::Uptime,
            pid: 1,
            started: 1000.0,
            tick,
            last_publish,
            broker_accepts,
        }
    }

    #[test]
    fn judge_loop_tick_age() {
        assert_eq!(judge(&record(2000.0, Some(2000.0), true), 2030.0), Verdict::Healthy);
        assert_eq!(
            judge(&record(2000.0, Some(2000.0), true), 2030.5),
            Verdict::LoopStalled { seconds: 30.5 }
        );
        assert_eq!(
            judge(&record(2000.0, None, false), 2100.0),
            Verdict::LoopStalled { seconds: 100.0 }
        );
    }

    #[test]
    fn judge_publish_age_only_while_broker_accepts() {
        assert_eq!(judge(&record(2000.0, Some(1700.0), true), 2000.0), Verdict::Healthy);
        assert_eq!(
            judge(&record(2000.0, Some(1699.0), true), 2000.0),
            Verdict::PublishStalled { seconds: 301.0 }
        );
        assert_eq!(judge(&record(2000.0, Some(1000.0), false), 2000.0), Verdict::Healthy);
    }

    #[test]
    fn judge_never_published_counts_from_start() {
        assert_eq!(judge(&record(1290.0, None, true), 1300.0), Verdict::Healthy);
        assert_eq!(
            judge(&record(1310.0, None, true), 1310.0),
            Verdict::PublishStalled { seconds: 310.0 }
        );
    }

    #[test]
    fn judge_clock_going_backwards_is_fresh() {
        assert_eq!(judge(&record(2000.0, Some(2000.0), true), 1990.0), Verdict::Healthy);
    }

    #[test]
    fn reporter_writes_and_rate_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/health.json");
        let mut reporter = HealthReporter::new(path.clone());

        let t0 = Instant::now();
        reporter.record(t0, None, false);
        let first = read_record(&path).unwrap();
        assert_eq!(first.pid, std::process::id());
        assert_eq!(first.last_publish, None);
        assert!(!first.broker_accepts);
        let now = clock_now(first.clock).unwrap();
        assert!((now - first.tick).abs() < 2.0, "tick {} vs now {now}", first.tick);

        // Within the write interval nothing changes on disk.
        reporter.record(Instant::now(), Some(Instant::now()), true);
        assert_eq!(read_record(&path).unwrap(), first);
        assert!(judge(&first, now).is_healthy());
    }

    #[test]
    fn verdict_messages_name_the_limit() {
        let text = Verdict::LoopStalled { seconds: 31.0 }.to_string();
        assert!(text.contains("31 s"), "{text}");
        assert!(text.contains("limit 30 s"), "{text}");
        let text = Verdict::PublishStalled { seconds: 400.0 }.to_string();
        assert!(text.contains("400 s"), "{text}");
        assert!(text.contains("limit 300 s"), "{text}");
    }
}
