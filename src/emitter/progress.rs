//! The emitter's state file: the end of the last window delivered, so a restart neither
//! resends nor skips a window (SPEC §11.5). Written to a temporary file beside it and renamed
//! over it, so a crash mid-write leaves the previous state intact.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the state file holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// End (Unix seconds, exclusive) of the last window delivered.
    pub last_window_end: i64,
}

/// A state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    /// Reading or writing failed.
    #[error("emitter state file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The file exists but is not a state file.
    #[error("emitter state file `{path}` is not valid: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        source: serde_json::Error,
    },
}

/// Reads the state file; `None` if it does not exist yet.
pub fn load(path: &Path) -> Result<Option<Progress>, ProgressError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| ProgressError::Invalid {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ProgressError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replaces the state file with `progress`.
pub fn store(path: &Path, progress: Progress) -> Result<(), ProgressError> {
    let io_error = |source| ProgressError::Io {
        path: path.to_owned(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let bytes = serde_json::to_vec(&progress).map_err(|source| ProgressError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    std::fs::write(&temporary, bytes).map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_survives_a_round_trip_and_a_missing_file_is_none() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let path = directory.path().join("state.json");
        assert_eq!(load(&path).expect("a missing file is fine"), None);
        store(
            &path,
            Progress {
                last_window_end: 1_700_000_100,
            },
        )
        .expect("writable");
        assert_eq!(
            load(&path).expect("readable"),
            Some(Progress {
                last_window_end: 1_700_000_100
            })
        );
        std::fs::write(&path, b"not json").expect("writable");
        assert!(matches!(load(&path), Err(ProgressError::Invalid { .. })));
    }
}
