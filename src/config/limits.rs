//! The size-limit flags of `eddy serve` (SPEC §12.1, §12.3): how large one update and one
//! query request may be. Updates beyond them are skipped as `too_large`; requests beyond them
//! are refused as invalid (see docs/limits.md).

use clap::Args;

use crate::api::request_limits::RequestLimits;
use crate::ingest::InputLimits;

/// Size limits of updates and query requests.
#[derive(Clone, Debug, Args)]
pub struct LimitsArgs {
    /// Bytes in one string field of a flow update (names, namespaces, policy fields).
    #[arg(long, env = "EDDY_MAX_FIELD_BYTES", default_value_t = 4096)]
    pub max_field_bytes: usize,
    /// Labels on one side (source or destination) of a flow update.
    #[arg(long, env = "EDDY_MAX_LABELS", default_value_t = 256)]
    pub max_labels: usize,
    /// Bytes in one label of a flow update.
    #[arg(long, env = "EDDY_MAX_LABEL_BYTES", default_value_t = 4096)]
    pub max_label_bytes: usize,
    /// Policy hits in one trace list (enforced or pending) of a flow update.
    #[arg(long, env = "EDDY_MAX_TRACE_HITS", default_value_t = 256)]
    pub max_trace_hits: usize,
    /// Values in one repeated filter field of a query.
    #[arg(long, env = "EDDY_MAX_FILTER_VALUES", default_value_t = 100_000)]
    pub max_filter_values: usize,
    /// Entries in a List's `sort_by`.
    #[arg(long, env = "EDDY_MAX_SORT_FIELDS", default_value_t = 1_000)]
    pub max_sort_fields: usize,
}

impl LimitsArgs {
    /// The bounds of one update.
    pub fn input_limits(&self) -> InputLimits {
        InputLimits {
            field_bytes: self.max_field_bytes,
            labels: self.max_labels,
            label_bytes: self.max_label_bytes,
            trace_hits: self.max_trace_hits,
        }
    }

    /// The bounds of one query request.
    pub fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            filter_values: self.max_filter_values,
            sort_fields: self.max_sort_fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: LimitsArgs,
    }

    #[test]
    fn defaults_are_the_documented_bounds() {
        let flags = Flags::parse_from(["eddy"]);
        assert_eq!(flags.limits.input_limits(), InputLimits::default());
        assert_eq!(flags.limits.request_limits(), RequestLimits::default());
        let flags = Flags::parse_from(["eddy", "--max-labels", "3", "--max-sort-fields", "2"]);
        assert_eq!(flags.limits.input_limits().labels, 3);
        assert_eq!(flags.limits.request_limits().sort_fields, 2);
    }
}
