//! Conversions from engine rows (ids) back to protobuf messages (strings).
//!
//! A [`RowConverter`] lives for one query or epoch and decodes each distinct trace once, so a
//! large trace shared by many rows is not decoded again for every row.

use std::collections::HashMap;

use eddy_dataflows::model::TraceId;
use eddy_dataflows::queries::list::ListRow;

use crate::catalog::Catalog;
use crate::proto::{Flow, FlowKey, FlowResult, ListMetadata, PolicyHit, PolicyKind, PolicyTrace};

/// The intersection of sorted label sets (SPEC §3.4); empty when there are none.
fn intersect(mut sets: impl Iterator<Item = Vec<String>>) -> Vec<String> {
    let Some(mut common) = sets.next() else {
        return Vec::new();
    };
    for set in sets {
        common.retain(|label| set.binary_search(label).is_ok());
    }
    common
}

/// A List row as the `FlowResult` clients see, converted alone: what [`RowConverter`] must
/// give for each of many rows.
#[cfg(test)]
fn flow_result(row: &ListRow, catalog: &Catalog) -> FlowResult {
    RowConverter::new(catalog).flow_result(row)
}

/// Converts the rows of one answer, decoding each distinct trace once.
pub struct RowConverter<'a> {
    catalog: &'a Catalog,
    traces: HashMap<TraceId, PolicyTrace>,
}

impl<'a> RowConverter<'a> {
    /// A converter with nothing decoded yet.
    pub fn new(catalog: &'a Catalog) -> Self {
        RowConverter {
            catalog,
            traces: HashMap::new(),
        }
    }

    /// A List row as the `FlowResult` clients see.
    pub fn flow_result(&mut self, row: &ListRow) -> FlowResult {
        let catalog = self.catalog;
        let policies = self
            .traces
            .entry(row.key.trace)
            .or_insert_with(|| catalog.trace(row.key.trace))
            .clone();
        result_with(row, catalog, policies)
    }
}

fn result_with(row: &ListRow, catalog: &Catalog, policies: PolicyTrace) -> FlowResult {
    let key = &row.key;
    let symbols = &catalog.symbols;
    let source_labels = intersect(row.labels.iter().map(|(s, _)| catalog.label_set(*s)));
    let dest_labels = intersect(row.labels.iter().map(|(_, d)| catalog.label_set(*d)));
    FlowResult {
        id: key.id as i64,
        flow: Some(Flow {
            key: Some(FlowKey {
                source_name: symbols.resolve(key.source_name),
                source_namespace: symbols.resolve(key.source_namespace),
                source_type: key.source_type,
                dest_name: symbols.resolve(key.dest_name),
                dest_namespace: symbols.resolve(key.dest_namespace),
                dest_type: key.dest_type,
                dest_port: key.dest_port,
                dest_service_name: symbols.resolve(key.dest_service_name),
                dest_service_namespace: symbols.resolve(key.dest_service_namespace),
                dest_service_port_name: symbols.resolve(key.dest_service_port_name),
                dest_service_port: key.dest_service_port,
                proto: symbols.resolve(key.proto),
                reporter: key.reporter,
                action: key.action,
                policies: Some(policies),
            }),
            start_time: row.start,
            end_time: row.end,
            source_labels,
            dest_labels,
            packets_in: row.stats.packets_in,
            packets_out: row.stats.packets_out,
            bytes_in: row.stats.bytes_in,
            bytes_out: row.stats.bytes_out,
            num_connections_started: row.stats.connections_started,
            num_connections_completed: row.stats.connections_completed,
            num_connections_live: row.stats.connections_live,
        }),
    }
}

/// Paging metadata (SPEC §4.4).
pub fn list_metadata(total: u64, page_size: i64) -> ListMetadata {
    let total = total as i64;
    let pages = match (total, page_size) {
        (0, _) => 0,
        (_, 0) => 1,
        // ceil(total / size) without overflowing for huge page sizes.
        (total, size) => (total - 1) / size + 1,
    };
    ListMetadata {
        total_pages: pages,
        total_results: total,
    }
}

/// A policy field FilterHints can report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyField {
    /// The tier.
    Tier,
    /// The name.
    Name,
    /// The kind, as its enum name.
    Kind,
    /// The namespace.
    Namespace,
}

fn kind_name(kind: i32) -> String {
    PolicyKind::try_from(kind)
        .map(|kind| kind.as_str_name().to_string())
        .unwrap_or_else(|_| kind.to_string())
}

/// The values of `field` in a trace (SPEC §6.3): every hit of enforced then pending, Profile
/// hits skipped, values taken from the trigger where there is one, empty strings dropped.
pub fn policy_values(trace: &PolicyTrace, field: PolicyField) -> Vec<String> {
    let value = |hit: &PolicyHit| match field {
        PolicyField::Tier => hit.tier.clone(),
        PolicyField::Name => hit.name.clone(),
        PolicyField::Kind => kind_name(hit.kind),
        PolicyField::Namespace => hit.namespace.clone(),
    };
    trace
        .enforced_policies
        .iter()
        .chain(&trace.pending_policies)
        .filter(|hit| hit.kind != PolicyKind::Profile as i32)
        .map(|hit| value(hit.trigger.as_deref().unwrap_or(hit)))
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_counts_pages() {
        assert_eq!(list_metadata(0, 10).total_pages, 0);
        assert_eq!(list_metadata(5, 0).total_pages, 1);
        assert_eq!(list_metadata(21, 10).total_pages, 3);
        assert_eq!(list_metadata(20, 10).total_pages, 2);
        assert_eq!(list_metadata(2, i64::MAX).total_pages, 1);
    }

    #[test]
    fn rows_sharing_a_trace_decode_it_once_and_carry_it_whole() {
        use crate::catalog::CatalogLimits;
        use eddy_dataflows::model::{FlowKey as EngineKey, Stats};
        use prost::Message;

        let catalog = Catalog::new(CatalogLimits::default());
        let trace = PolicyTrace {
            enforced_policies: vec![PolicyHit {
                name: "allow-web".into(),
                ..Default::default()
            }],
            pending_policies: vec![],
        };
        let id = catalog
            .intern_trace(&trace.encode_to_vec(), || Ok(Vec::new()))
            .expect("an empty catalog has room");
        let row = |key_id: u64, trace: u32| ListRow {
            key: EngineKey {
                id: key_id,
                source_name: 0,
                source_namespace: 0,
                source_type: 0,
                dest_name: 0,
                dest_namespace: 0,
                dest_type: 0,
                dest_port: 0,
                dest_service_name: 0,
                dest_service_namespace: 0,
                dest_service_port_name: 0,
                dest_service_port: 0,
                proto: 0,
                reporter: 0,
                action: 0,
                trace,
            },
            start: 0,
            end: 15,
            stats: Stats::default(),
            labels: vec![],
            order: Default::default(),
        };
        let mut converter = RowConverter::new(&catalog);
        let results: Vec<FlowResult> = [row(1, id), row(2, id), row(3, 0)]
            .iter()
            .map(|row| converter.flow_result(row))
            .collect();
        assert_eq!(converter.traces.len(), 2, "one decode per distinct trace");
        let policies = |result: &FlowResult| {
            result
                .flow
                .as_ref()
                .and_then(|flow| flow.key.as_ref())
                .and_then(|key| key.policies.clone())
        };
        assert_eq!(policies(&results[0]), Some(trace.clone()));
        assert_eq!(policies(&results[1]), Some(trace));
        assert_eq!(policies(&results[2]), Some(PolicyTrace::default()));
        assert_eq!(results[1], flow_result(&row(2, id), &catalog));
    }

    #[test]
    fn intersection_keeps_common_labels_in_order() {
        let sets = vec![
            vec!["a".to_string(), "b".into(), "c".into()],
            vec!["b".to_string(), "c".into()],
        ];
        assert_eq!(
            intersect(sets.into_iter()),
            vec!["b".to_string(), "c".into()]
        );
    }
}
