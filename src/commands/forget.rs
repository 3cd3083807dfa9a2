//! The `forget` subcommand: drops entities whose source has not been seen for a number of
//! days, so ghosts of removed devices can be cleared. The daemon does the same at start
//! when the `forget_after_days` option is set; this command is for a stopped daemon.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::registry::Registry;

#[derive(Debug, Clone, clap::Args)]
pub struct ForgetArgs {
    /// Forget entities unseen for at least this many days (0: every entity that is not
    /// always present).
    #[arg(long, value_name = "DAYS")]
    pub days: u32,

    /// The daemon's data directory [default: as for `run`].
    #[arg(long, env = "ROAMCORE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

pub fn main(args: ForgetArgs) -> i32 {
    crate::logging::init(crate::cli::LogLevel::Info);
    let data_dir = args.data_dir.unwrap_or_else(super::default_data_dir);
    if !data_dir.join(crate::model::registry::STORE_FILE).is_file() {
        eprintln!(
            "roamcore-victron forget: no stored entities in {} (no {}); check --data-dir",
            data_dir.display(),
            crate::model::registry::STORE_FILE
        );
        return 1;
    }
    if let Some(pid) = super::running_daemon(&data_dir) {
        eprintln!(
            "roamcore-victron forget: the daemon (pid {pid}) is running with {}; stop it first, \
             or set the forget_after_days option and restart it",
            data_dir.display()
        );
        return 1;
    }

    let forgotten = match forget(&data_dir, args.days) {
        Ok(forgotten) => forgotten,
        Err(e) => {
            eprintln!("roamcore-victron forget: cannot save {}: {e}", data_dir.join(crate::model::registry::STORE_FILE).display());
            return 1;
        }
    };
    if forgotten.is_empty() {
        println!("nothing to forget: every entity was seen in the last {} days", args.days);
    } else {
        println!("forgot {} entities: {}", forgotten.len(), forgotten.join(", "));
        println!("their removal is published to Home Assistant when the daemon next starts");
    }
    0
}

/// Forgets entities unseen for `days` in the registry stored in `data_dir` and saves it.
pub fn forget(data_dir: &std::path::Path, days: u32) -> std::io::Result<Vec<String>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let cutoff = now.saturating_sub(u64::from(days) * 86_400).saturating_add(u64::from(days == 0));
    let mut registry = Registry::open(Some(data_dir));
    let forgotten = registry.forget_before(cutoff);
    registry.try_save()?;
    Ok(forgotten)
}
