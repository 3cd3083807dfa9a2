//! The `adopt` subcommand: makes the bridge adopt a GX by portal id, replacing the one
//! adopted before (a replaced Cerbo), and optionally trusts a GX's new TLS certificate
//! (after a factory reset, which generates a new one). Entity ids stay the same.
//!
//! The daemon must be stopped; in the add-on, set the `portal_id` option instead.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::discovery::adoption;
use crate::gx::tls::PinStore;

#[derive(Debug, Clone, clap::Args)]
pub struct AdoptArgs {
    /// Portal id of the GX to adopt (12 letters or digits, printed on the GX's label and
    /// shown in its Settings -> VRM online portal page).
    #[arg(value_name = "PORTAL_ID")]
    pub portal_id: String,

    /// Forget the pinned TLS certificates, so the next TLS connection trusts the
    /// certificate the GX presents then.
    #[arg(long)]
    pub repin: bool,

    /// The daemon's data directory [default: as for `run`].
    #[arg(long, env = "ROAMCORE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The portal id to adopt at the next start, in `adopt.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAdoption {
    pub portal_id: String,
}

pub const FILE_NAME: &str = "adopt.json";

/// Returns the portal id requested with `adopt`, if any.
pub fn pending(data_dir: &Path) -> Option<String> {
    crate::store::read_json::<PendingAdoption>(&data_dir.join(FILE_NAME)).ok().flatten().map(|p| p.portal_id)
}

pub fn main(args: AdoptArgs) -> i32 {
    if let Err(message) = crate::config::validate_portal_id(&args.portal_id) {
        eprintln!("roamcore-victron adopt: invalid portal id: {message}");
        return 2;
    }
    let portal_id = args.portal_id.to_ascii_lowercase();
    let data_dir = args.data_dir.unwrap_or_else(super::default_data_dir);
    if let Some(pid) = super::running_daemon(&data_dir) {
        eprintln!(
            "roamcore-victron adopt: the daemon (pid {pid}) is running with {}; stop it first, \
             or set the portal_id option and restart it",
            data_dir.display()
        );
        return 1;
    }

    match adopt(&data_dir, &portal_id, args.repin) {
        Ok(report) => {
            println!("{report}");
            0
        }
        Err(e) => {
            eprintln!("roamcore-victron adopt: cannot write to {}: {e}", data_dir.display());
            1
        }
    }
}

/// Records the adoption request; returns what was done, in words.
pub fn adopt(data_dir: &Path, portal_id: &str, repin: bool) -> std::io::Result<String> {
    std::fs::create_dir_all(data_dir)?;
    let mut lines = Vec::new();

    let previous = adoption::load(data_dir).map(|a| a.portal_id);
    if previous.as_deref() != Some(portal_id) {
        adoption::forget(data_dir)?;
        if let Some(previous) = previous {
            lines.push(format!("the GX {previous} is no longer adopted"));
        }
    }
    crate::store::write_json_atomic(&data_dir.join(FILE_NAME), &PendingAdoption { portal_id: portal_id.to_string() })?;
    lines.push(format!("the GX {portal_id} is adopted at the next start, wherever it is on the LAN"));

    if repin {
        let removed = PinStore::open(data_dir).forget_all()?;
        lines.push(format!("forgot {removed} pinned TLS certificate(s); the next TLS connection pins the GX's current one"));
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopt_replaces_and_repins() {
        let dir = tempfile::tempdir().unwrap();
        let old = adoption::Adoption {
            portal_id: "c0619ab0d0e1".into(),
            host: "192.168.1.20".parse().unwrap(),
            port: 1883,
            tls: false,
            model: None,
            firmware: None,
        };
        adoption::save(dir.path(), &old).unwrap();
        let mut pins = PinStore::open(dir.path());
        pins.pin("c0619ab0d0e1", &crate::gx::tls::fingerprint(b"cert")).unwrap();

        let report = adopt(dir.path(), "48e7da87942f", true).unwrap();
        assert!(report.contains("c0619ab0d0e1 is no longer adopted"), "{report}");
        assert_eq!(adoption::load(dir.path()), None);
        assert_eq!(pending(dir.path()).as_deref(), Some("48e7da87942f"));
        assert_eq!(PinStore::open(dir.path()).get("c0619ab0d0e1"), None);
    }
}
