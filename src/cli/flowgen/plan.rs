//! What every node of `eddy flowgen` does, decided once from the flags: the backfill's flush
//! times, how live flushes are paced, the window of updates in flight, the replay span.

use std::time::Duration;

use crate::cli::error::CliError;
use crate::cli::flowgen::FlowgenArgs;

/// When live flushes happen once the backfill is sent.
#[derive(Clone, Copy, Debug)]
pub enum Pacing {
    /// Every interval; `None` flushes until stopped.
    Interval {
        /// How many live flushes.
        flushes: Option<u64>,
    },
    /// Back to back, as soon as the previous flush is sent, for this long (or until stopped).
    Max {
        /// How long.
        duration: Option<Duration>,
    },
}

/// What every node does, in the same order.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Flush times of the backfill, oldest first.
    pub backfill: Vec<i64>,
    /// Live flushes.
    pub pacing: Pacing,
    /// Time between live flushes.
    pub interval: Duration,
    /// Updates in flight per node before it waits for receipts.
    pub window: usize,
    /// Seconds of history a reconnect replays.
    pub replay_span: i64,
}

impl Plan {
    /// The plan `args` describe, with the backfill ending at `now_unix`.
    pub fn new(args: &FlowgenArgs, now_unix: i64) -> Result<Plan, CliError> {
        if args.interval.is_zero() {
            return Err(CliError::Usage(
                "--interval: must be longer than zero".into(),
            ));
        }
        let step = i64::try_from(args.interval.as_secs())
            .unwrap_or(i64::MAX)
            .max(1);
        let backfill = match args.backfill {
            None => Vec::new(),
            Some(span) => {
                let span = i64::try_from(span.as_secs()).unwrap_or(i64::MAX);
                let first = now_unix.saturating_sub(span);
                (0..)
                    .map(|k| first + k * step)
                    .take_while(|&t| t < now_unix)
                    .collect()
            }
        };
        let pacing = if args.max {
            Pacing::Max {
                duration: args.duration,
            }
        } else {
            let flushes = args
                .duration
                .map(|d| (d.as_secs_f64() / args.interval.as_secs_f64()).ceil() as u64);
            Pacing::Interval { flushes }
        };
        Ok(Plan {
            backfill,
            pacing,
            interval: args.interval,
            window: if args.stop_and_wait {
                1
            } else {
                args.window as usize
            },
            replay_span: i64::try_from(args.replay.as_secs()).unwrap_or(i64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn parse(flags: &[&str]) -> Result<Plan, CliError> {
        let cli =
            Cli::try_parse_from(["eddy", "flowgen"].iter().chain(flags)).expect("flags parse");
        let Command::Flowgen(args) = cli.command else {
            panic!("not flowgen");
        };
        Plan::new(&args, 1_700_000_000)
    }

    #[test]
    fn backfill_and_live_flushes_follow_the_flags() {
        let plan =
            parse(&["--backfill", "1m", "--interval", "15s", "--duration", "31s"]).expect("valid");
        assert_eq!(
            plan.backfill,
            [1_699_999_940, 1_699_999_955, 1_699_999_970, 1_699_999_985]
        );
        assert!(matches!(plan.pacing, Pacing::Interval { flushes: Some(3) }));
        assert_eq!(plan.window, 256);
        assert_eq!(plan.replay_span, 300);
        let felix = parse(&["--stop-and-wait", "--max"]).expect("valid");
        assert_eq!(felix.window, 1);
        assert!(matches!(felix.pacing, Pacing::Max { duration: None }));
        assert!(parse(&["--interval", "0s"]).is_err());
        let forever = parse(&[]).expect("valid");
        assert!(forever.backfill.is_empty());
        assert!(matches!(forever.pacing, Pacing::Interval { flushes: None }));
    }
}
