//! The durability flags of `eddy serve` (SPEC §13): the data directory, when a batch counts as
//! written, and the bound on the bytes the directory may hold.

use std::path::PathBuf;

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
