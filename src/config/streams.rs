//! The flags of live streams' bounds (SPEC §7.5, §12.5): the stream limit, the per-peer cap,
//! the per-stream buffer, the backfills sent at once and the queue of new streams.

use clap::{value_parser, Args};

use crate::streams::StreamLimits;

/// Live stream bounds.
#[derive(Clone, Debug, Args)]
pub struct StreamArgs {
    /// Most concurrent `Flows.Stream` calls; a call beyond it gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "EDDY_MAX_STREAMS", default_value_t = 10_000,
        value_parser = value_parser!(u32).range(1..=1_000_000))]
    pub max_streams: u32,
    /// Most concurrent streams from one client IP address (0: no cap, as when a proxy carries
    /// every user's streams from one address).
    #[arg(long, env = "EDDY_MAX_STREAMS_PER_PEER", default_value_t = 0,
        value_parser = value_parser!(u32).range(0..=1_000_000))]
    pub max_streams_per_peer: u32,
    /// Results waiting for one stream's client; a client further behind is ended as too slow.
    #[arg(long, env = "EDDY_STREAM_BUFFER", default_value_t = 4096,
        value_parser = value_parser!(u32).range(1..=1_000_000))]
    pub stream_buffer: u32,
    /// Backfills (buckets sent to a stream that starts in the past) running at once; the
    /// others wait their turn.
    #[arg(long, env = "EDDY_STREAM_BACKFILLS", default_value_t = 16,
        value_parser = value_parser!(u32).range(1..=10_000))]
    pub stream_backfills: u32,
    /// New streams waiting to be registered; a stream beyond it gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "EDDY_STREAM_QUEUE", default_value_t = 1024,
        value_parser = value_parser!(u32).range(1..=1_000_000))]
    pub stream_queue: u32,
}

impl StreamArgs {
    /// The bounds these flags describe.
    pub fn limits(&self) -> StreamLimits {
        let size = |value: u32| usize::try_from(value).unwrap_or(usize::MAX);
        StreamLimits {
            max_streams: size(self.max_streams),
            buffer: size(self.stream_buffer),
            per_peer: (self.max_streams_per_peer > 0).then(|| size(self.max_streams_per_peer)),
            backfills: size(self.stream_backfills),
            queue: size(self.stream_queue),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn streams(args: &[&str]) -> Result<StreamArgs, clap::Error> {
        let cli = Cli::try_parse_from(["eddy", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(serve) => Ok(serve.streams),
            other => panic!("`eddy serve` parses as serve, not {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_the_documented_bounds() {
        let limits = streams(&[]).expect("no flags").limits();
        assert_eq!(limits.max_streams, 10_000);
        assert_eq!(limits.buffer, 4096);
        assert_eq!(limits.per_peer, None);
        assert_eq!(limits.backfills, 16);
        assert_eq!(limits.queue, 1024);
    }

    #[test]
    fn each_flag_sets_its_bound() {
        let limits = streams(&[
            "--max-streams",
            "50",
            "--max-streams-per-peer",
            "5",
            "--stream-buffer",
            "64",
            "--stream-backfills",
            "2",
            "--stream-queue",
            "8",
        ])
        .expect("valid flags")
        .limits();
        assert_eq!(limits.max_streams, 50);
        assert_eq!(limits.per_peer, Some(5));
        assert_eq!(limits.buffer, 64);
        assert_eq!(limits.backfills, 2);
        assert_eq!(limits.queue, 8);
    }

    #[test]
    fn zero_is_refused_naming_the_flag_except_for_the_per_peer_cap() {
        for flag in [
            "--max-streams",
            "--stream-buffer",
            "--stream-backfills",
            "--stream-queue",
        ] {
            let error = streams(&[flag, "0"]).expect_err("0 is out of range");
            assert!(error.to_string().contains(flag), "{flag}: {error}");
        }
        let error = streams(&["--max-streams", "1000001"]).expect_err("above the range");
        assert!(error.to_string().contains("--max-streams"), "{error}");
        let off = streams(&["--max-streams-per-peer", "0"]).expect("0 turns the cap off");
        assert_eq!(off.limits().per_peer, None);
    }
}
