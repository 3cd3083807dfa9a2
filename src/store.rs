//! Files in the data directory that must survive a restart.
//!
//! Each concern has its own small JSON file (entities and slots, adoption, certificate
//! pins), written whole to a temporary file and renamed, so a power cut in the middle of a
//! write leaves the previous version intact. A file that cannot be parsed is renamed to
//! `<name>.corrupt` and treated as absent, with a warning, rather than stopping the daemon.

use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Writes `value` as pretty JSON to `path` through a temporary file and a rename.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&mut file, value)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads a JSON file. Missing file: `Ok(None)`. Unparsable file: moved aside to
/// `<path>.corrupt`, logged, `Ok(None)`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match serde_json::from_str(&text) {
        Ok(value) => Ok(Some(value)),
        Err(e) => {
            let aside = path.with_extension("json.corrupt");
            tracing::warn!(
                file = %path.display(), error = %e,
                "stored state is not valid JSON; moved it to {} and starting without it",
                aside.display()
            );
            let _ = std::fs::rename(path, &aside);
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write_json_atomic(&path, &vec![1, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&path).unwrap(), Some(vec![1, 2, 3]));

        std::fs::write(&path, "{ not json").unwrap();
        assert_eq!(read_json::<Vec<i32>>(&path).unwrap(), None);
        assert!(dir.path().join("sub/state.json.corrupt").exists());
        assert_eq!(read_json::<Vec<i32>>(&path).unwrap(), None);
    }
}
