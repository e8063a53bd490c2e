//! The size bounds of a query request (SPEC §12.3): values in one repeated filter field and
//! entries in `sort_by`. A request beyond them is `INVALID_ARGUMENT` naming the field.

use crate::api::status::ApiError;
use crate::proto::Filter;

/// How large a query request may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Values in one repeated filter field.
    pub filter_values: usize,
    /// Entries in `sort_by`.
    pub sort_fields: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            filter_values: 100_000,
            sort_fields: 1_000,
        }
    }
}

impl RequestLimits {
    /// Refuses a filter with too many values in one of its repeated fields.
    pub fn check_filter(&self, filter: Option<&Filter>) -> Result<(), ApiError> {
        let Some(filter) = filter else {
            return Ok(());
        };
        let sizes = [
            ("filter.source_names", filter.source_names.len()),
            ("filter.source_namespaces", filter.source_namespaces.len()),
            ("filter.dest_names", filter.dest_names.len()),
            ("filter.dest_namespaces", filter.dest_namespaces.len()),
            ("filter.protocols", filter.protocols.len()),
            ("filter.dest_ports", filter.dest_ports.len()),
            ("filter.actions", filter.actions.len()),
            ("filter.policies", filter.policies.len()),
            ("filter.pending_actions", filter.pending_actions.len()),
        ];
        match sizes.iter().find(|(_, size)| *size > self.filter_values) {
            Some((field, size)) => Err(ApiError::invalid(
                field,
                format!(
                    "{size} values, more than the {} allowed",
                    self.filter_values
                ),
            )),
            None => Ok(()),
        }
    }

    /// Refuses a `sort_by` with too many entries.
    pub fn check_sort(&self, entries: usize) -> Result<(), ApiError> {
        if entries > self.sort_fields {
            return Err(ApiError::invalid(
                "sort_by",
                format!(
                    "{entries} entries, more than the {} allowed",
                    self.sort_fields
                ),
            ));
        }
        Ok(())
    }
}
