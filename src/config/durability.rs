//! The durability flags of `eddy serve` (SPEC §13): the data directory, when a batch counts as
//! written, and the bound on the bytes the directory may hold.

use std::path::{Path, PathBuf};

use clap::Args;

/// When a batch of updates counts as written, so that its receipts may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// Flushed to the disk (fsync) before the receipts; concurrent calls share one flush.
    Batch,
    /// Written to the operating system: survives a process crash, not a power cut.
    None,
}

/// Data directory, sync mode and disk bound.
#[derive(Clone, Debug, Args)]
pub struct DurabilityArgs {
    /// Keep receipted updates and closed buckets in this directory, and recover them at start-up
    /// (default: everything in memory).
    #[arg(long, env = "EDDY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// With a data directory: `batch` flushes each batch to the disk before its receipts,
    /// `none` only writes it to the operating system.
    #[arg(long, env = "EDDY_SYNC", value_enum, default_value = "batch")]
    pub sync: SyncMode,
    /// With a data directory: most bytes it may hold; beyond that `Connect` calls end with
    /// `RESOURCE_EXHAUSTED` (default: no bound but the disk's).
    #[arg(long, env = "EDDY_MAX_DISK_BYTES")]
    pub max_disk_bytes: Option<u64>,
}

impl DurabilityArgs {
    /// Where a state file named `path` lives: a relative path inside the data directory when
    /// one is set (SPEC §13.5), as given otherwise.
    pub fn state_file(&self, path: &Path) -> PathBuf {
        match &self.data_dir {
            Some(directory) if path.is_relative() => directory.join(path),
            _ => path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_state_file_lives_in_the_data_directory() {
        let mut args = DurabilityArgs {
            data_dir: None,
            sync: SyncMode::Batch,
            max_disk_bytes: None,
        };
        let relative = Path::new("eddy-emitter-state.json");
        assert_eq!(args.state_file(relative), relative);
        args.data_dir = Some(PathBuf::from("/var/lib/eddy"));
        assert_eq!(
            args.state_file(relative),
            Path::new("/var/lib/eddy/eddy-emitter-state.json")
        );
        let absolute = Path::new("/etc/eddy/state.json");
        assert_eq!(args.state_file(absolute), absolute);
    }
}
