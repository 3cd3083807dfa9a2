//! The adopted GX, kept in `discovery.json` in the data directory so that a restart
//! connects to the last good address at once, without scanning.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GxEndpoint;

pub const FILE_NAME: &str = "discovery.json";

/// The GX this bridge belongs to, by portal id, with its last good address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adoption {
    pub portal_id: String,
    pub host: IpAddr,
    pub port: u16,
    pub tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
}

impl Adoption {
    pub fn from_endpoint(endpoint: &GxEndpoint) -> Adoption {
        Adoption {
            portal_id: endpoint.portal_id.clone(),
            host: endpoint.host,
            port: endpoint.port,
            tls: endpoint.tls,
            model: endpoint.model.clone(),
            firmware: endpoint.firmware.clone(),
        }
    }
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the adoption; a missing or unreadable file means nothing is adopted.
pub fn load(data_dir: &Path) -> Option<Adoption> {
    match crate::store::read_json::<Adoption>(&path(data_dir)) {
        Ok(adoption) => adoption,
        Err(err) => {
            tracing::warn!(file = %path(data_dir).display(), error = %err,
                "cannot read the adopted GX; searching as if none was adopted");
            None
        }
    }
}

pub fn save(data_dir: &Path, adoption: &Adoption) -> std::io::Result<()> {
    crate::store::write_json_atomic(&path(data_dir), adoption)
}

/// Removes the adoption, so that the next start adopts the first GX it validates.
pub fn forget(data_dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path(data_dir)) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adoption_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);

        let adoption = Adoption {
            portal_id: "c0619ab0d0e1".into(),
            host: "192.168.1.20".parse().unwrap(),
            port: 8883,
            tls: true,
            model: Some("Cerbo GX".into()),
            firmware: None,
        };
        save(dir.path(), &adoption).unwrap();
        assert_eq!(load(dir.path()), Some(adoption));
        assert!(forget(dir.path()).unwrap());
        assert!(!forget(dir.path()).unwrap());
    }
}
