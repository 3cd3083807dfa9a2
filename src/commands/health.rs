//! The `health` subcommand: exit 0 when the running daemon is healthy, 1 when not.
//!
//! It only reads the health file that `run` writes (see [`crate::health`]), so it is
//! cheap enough for a container `HEALTHCHECK` every 30 s and needs no network access.

use std::path::PathBuf;

use crate::health::{self, Verdict};

#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Health file written by the running daemon [default: /tmp/roamcore-victron/health.json].
    #[arg(long, env = health::PATH_ENV, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

pub fn main(args: HealthArgs) -> i32 {
    let path = args.file.unwrap_or_else(|| PathBuf::from(health::DEFAULT_PATH));

    let record = match health::read_record(&path) {
        Ok(record) => record,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!("unhealthy: {} does not exist (the daemon is not running, or has not ticked yet)", path.display());
            return 1;
        }
        Err(err) => {
            println!("unhealthy: cannot read {}: {err}", path.display());
            return 1;
        }
    };

    let Some(now) = health::clock_now(record.clock) else {
        println!("unhealthy: cannot read the {:?} clock that {} uses", record.clock, path.display());
        return 1;
    };

    if !daemon_alive(record.pid) {
        println!("unhealthy: the daemon that wrote {} (pid {}) is not running", path.display(), record.pid);
        return 1;
    }

    let verdict = health::judge(&record, now);
    println!("{verdict} (pid {})", record.pid);
    match verdict {
        Verdict::Healthy => 0,
        Verdict::LoopStalled { .. } | Verdict::PublishStalled { .. } => 1,
    }
}

/// True when `pid` is a running roamcore-victron process (a crashed daemon leaves its last
/// record behind, and the pid may be reused by another program).
fn daemon_alive(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains("roamcore-victron"),
        // Without /proc (not Linux) the pid cannot be checked; trust the record.
        Err(_) => !std::path::Path::new("/proc/self").exists(),
    }
}
