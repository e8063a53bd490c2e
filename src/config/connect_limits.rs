//! The flags of the `Connect` bounds: concurrent calls and the bytes of one batch.

use clap::Args;

use crate::api::collector::limits::ConnectLimits;

/// `Connect` bounds of `eddy serve`.
#[derive(Clone, Copy, Debug, Args)]
pub struct ConnectLimitArgs {
    /// Most FlowCollector.Connect calls open at once; beyond it a call ends with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "EDDY_MAX_CONNECT_CALLS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connect_calls: u32,
    /// Most bytes of updates one Connect call hands to the engine as one batch (a batch holds
    /// at least one update).
    #[arg(long, env = "EDDY_MAX_CONNECT_BATCH_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connect_batch_bytes: u32,
}

impl ConnectLimitArgs {
    /// The bounds these flags describe.
    pub fn limits(&self) -> ConnectLimits {
        ConnectLimits {
            max_calls: self.max_connect_calls as usize,
            max_batch_bytes: self.max_connect_batch_bytes as usize,
        }
    }
}
