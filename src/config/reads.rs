//! The flags of query reads and engine pacing (issue 10): how many reads run on the workers
//! at once, how many callers one shared read answers, how much ingest one tick holds, and how
//! far below queries ingest runs.

use clap::{value_parser, Args};

use crate::ingest::threads::INGEST_NICE;
use crate::worker::controller::TICK_RECORDS;
use crate::worker::shared_reads::ReadLimits;

/// Query read sharing and tick pacing.
#[derive(Clone, Debug, Args)]
pub struct ReadArgs {
    /// Query reads (List, FilterHints, Statistics) running on the workers at once; identical
    /// queries that arrive while a read waits for its turn share its answer.
    #[arg(long, env = "EDDY_READS_IN_FLIGHT", default_value_t = 2,
        value_parser = value_parser!(u32).range(1..=1024))]
    pub reads_in_flight: u32,
    /// Callers one shared query read answers; more identical callers start another read.
    #[arg(long, env = "EDDY_MAX_READ_WAITERS", default_value_t = 256,
        value_parser = value_parser!(u32).range(1..=1_000_000))]
    pub max_read_waiters: u32,
    /// Flow records after which the engine closes a tick; no more ingest than one tick is
    /// ever ahead of a query (for 10 s after a query, ticks close at 4,096 records or this,
    /// whichever is smaller; recovery, which no query waits on, uses 262,144 or this,
    /// whichever is larger).
    #[arg(long, env = "EDDY_TICK_RECORDS", default_value_t = TICK_RECORDS as u32,
        value_parser = value_parser!(u32).range(1024..=16_777_216))]
    pub tick_records: u32,
    /// Nice levels below the rest of the server at which the threads that read
    /// FlowCollector.Connect calls run (0 to 19; 0: the same priority). When the CPU is
    /// saturated, queries and the engine then come before decoding more updates, which wait
    /// in HTTP/2 flow control.
    #[arg(long, env = "EDDY_INGEST_NICE", default_value_t = INGEST_NICE,
        value_parser = value_parser!(u8).range(0..=19))]
    pub ingest_nice: u8,
}

impl ReadArgs {
    /// The read-sharing limits these flags describe.
    pub fn limits(&self) -> ReadLimits {
        let size = |value: u32| usize::try_from(value).unwrap_or(usize::MAX);
        ReadLimits {
            in_flight: size(self.reads_in_flight),
            max_waiters: size(self.max_read_waiters),
        }
    }

    /// The records one tick holds.
    pub fn tick_records(&self) -> usize {
        usize::try_from(self.tick_records).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn reads(args: &[&str]) -> Result<ReadArgs, clap::Error> {
        let cli = Cli::try_parse_from(["eddy", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(serve) => Ok(serve.reads),
            other => panic!("`eddy serve` parses as serve, not {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_the_documented_limits() {
        let args = reads(&[]).expect("no flags");
        assert_eq!(args.limits(), ReadLimits::default());
        assert_eq!(args.tick_records(), 32_768);
        assert_eq!(args.ingest_nice, INGEST_NICE);
    }

    #[test]
    fn each_flag_sets_its_limit() {
        let args = reads(&[
            "--reads-in-flight",
            "1",
            "--max-read-waiters",
            "8",
            "--tick-records",
            "4096",
            "--ingest-nice",
            "0",
        ])
        .expect("valid flags");
        assert_eq!(
            args.limits(),
            ReadLimits {
                in_flight: 1,
                max_waiters: 8
            }
        );
        assert_eq!(args.tick_records(), 4096);
        assert_eq!(args.ingest_nice, 0);
    }

    #[test]
    fn a_nice_level_past_19_is_refused() {
        assert!(reads(&["--ingest-nice", "20"]).is_err());
        assert_eq!(
            reads(&["--ingest-nice", "19"])
                .expect("19 is the lowest priority")
                .ingest_nice,
            19
        );
    }

    #[test]
    fn zero_reads_in_flight_is_refused() {
        assert!(reads(&["--reads-in-flight", "0"]).is_err());
        assert!(reads(&["--tick-records", "10"]).is_err());
    }
}
