//! The catalog's bounds as flags of `eddy serve`: entries and bytes of each table (strings,
//! label sets, policy traces, and the rules of traces), SPEC §12.4.

use clap::Args;

use crate::catalog::CatalogLimits;
use crate::intern::TableLimit;

/// Bounds of the catalog's tables.
#[derive(Clone, Debug, Args)]
pub struct CatalogArgs {
    /// Most distinct strings held (names, namespaces, protocols, policy fields).
    #[arg(long, env = "EDDY_CATALOG_MAX_STRINGS", default_value_t = 4_000_000)]
    pub catalog_max_strings: usize,
    /// Most bytes of distinct strings held.
    #[arg(
        long,
        env = "EDDY_CATALOG_MAX_STRING_BYTES",
        default_value_t = 268_435_456
    )]
    pub catalog_max_string_bytes: usize,
    /// Most distinct label sets held.
    #[arg(long, env = "EDDY_CATALOG_MAX_LABEL_SETS", default_value_t = 1_000_000)]
    pub catalog_max_label_sets: usize,
    /// Most bytes of distinct label sets held (the bytes of their labels).
    #[arg(
        long,
        env = "EDDY_CATALOG_MAX_LABEL_SET_BYTES",
        default_value_t = 268_435_456
    )]
    pub catalog_max_label_set_bytes: usize,
    /// Most distinct policy traces held.
    #[arg(long, env = "EDDY_CATALOG_MAX_TRACES", default_value_t = 1_000_000)]
    pub catalog_max_traces: usize,
    /// Most bytes of distinct policy traces held (their protobuf encoding).
    #[arg(
        long,
        env = "EDDY_CATALOG_MAX_TRACE_BYTES",
        default_value_t = 268_435_456
    )]
    pub catalog_max_trace_bytes: usize,
    /// Most policy rules of traces held, summed over the traces.
    #[arg(
        long,
        env = "EDDY_CATALOG_MAX_TRACE_RULES",
        default_value_t = 4_000_000
    )]
    pub catalog_max_trace_rules: usize,
    /// Most bytes of policy rules of traces held.
    #[arg(
        long,
        env = "EDDY_CATALOG_MAX_TRACE_RULE_BYTES",
        default_value_t = 268_435_456
    )]
    pub catalog_max_trace_rule_bytes: usize,
}

impl CatalogArgs {
    /// The bounds these flags describe.
    pub fn limits(&self) -> CatalogLimits {
        CatalogLimits {
            strings: TableLimit {
                entries: self.catalog_max_strings,
                bytes: self.catalog_max_string_bytes,
            },
            label_sets: TableLimit {
                entries: self.catalog_max_label_sets,
                bytes: self.catalog_max_label_set_bytes,
            },
            traces: TableLimit {
                entries: self.catalog_max_traces,
                bytes: self.catalog_max_trace_bytes,
            },
            trace_rules: TableLimit {
                entries: self.catalog_max_trace_rules,
                bytes: self.catalog_max_trace_rule_bytes,
            },
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
        catalog: CatalogArgs,
    }

    #[test]
    fn the_defaults_are_the_catalogs_defaults_and_flags_set_each_bound() {
        let defaults = Flags::parse_from(["eddy"]).catalog.limits();
        assert_eq!(defaults, CatalogLimits::default());
        let set = Flags::parse_from([
            "eddy",
            "--catalog-max-strings",
            "7",
            "--catalog-max-trace-rule-bytes",
            "900",
        ])
        .catalog
        .limits();
        assert_eq!(
            set.strings,
            TableLimit {
                entries: 7,
                bytes: 268_435_456
            }
        );
        assert_eq!(set.trace_rules.bytes, 900);
        assert_eq!(set.traces, CatalogLimits::default().traces);
    }
}
