//! One module per subcommand.

pub mod adopt;
pub mod demo;
pub mod discover;
pub mod entities;
pub mod forget;
pub mod health;
pub mod run;
pub mod sim_lan;
pub mod simulate;

use std::path::{Path, PathBuf};

/// The data directory `run` uses when none is given.
pub fn default_data_dir() -> PathBuf {
    crate::config::merge(&crate::cli::RunArgs::default(), crate::supervisor::Supervisor::from_env().is_some()).data_dir
}

/// File in the data directory holding the pid of the running daemon.
pub const PID_FILE: &str = "daemon.pid";

/// The pid of a daemon that uses `data_dir`, if one is running.
pub fn running_daemon(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join(PID_FILE)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    if pid == std::process::id() {
        return None;
    }
    // The pid may belong to another program after a crash and a reboot.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline).contains("roamcore-victron").then_some(pid)
}
