//! Asks a running server through gRPC and compares every answer with the reference model.

use std::collections::HashMap;

use eddy::proto::{
    FilterHintsRequest, FilterType, FlowListRequest, FlowResult, ListMetadata, SortOption,
    StatisticsRequest,
};
use proptest::prelude::*;
use prost::Message;
use tonic::Code;

use crate::common::TestServer;
use crate::domain::{Bound, QuerySpec, W};
use crate::model::{counters_of, Model, Row};
use crate::semantics::sort_rows;
use crate::stats;

const FILTER_TYPES: [FilterType; 8] = [
    FilterType::DestName,
    FilterType::SourceName,
    FilterType::DestNamespace,
    FilterType::SourceNamespace,
    FilterType::PolicyTier,
    FilterType::PolicyName,
    FilterType::PolicyKind,
    FilterType::PolicyNamespace,
];

/// Ids seen for keys that stayed in retention (SPEC §3.6: stable while retained).
#[derive(Default)]
pub struct Ids(HashMap<Vec<u8>, i64>);

fn row_of(result: &FlowResult) -> Row {
    let flow = result.flow.clone().unwrap_or_default();
    Row {
        key: flow.key.clone().unwrap_or_default().encode_to_vec(),
        start: flow.start_time,
        end: flow.end_time,
        counters: counters_of(&flow),
        source_labels: flow.source_labels,
        dest_labels: flow.dest_labels,
    }
}

fn pages(total: usize, page_size: i64) -> i64 {
    match (total as i64, page_size) {
        (0, _) => 0,
        (_, 0) => 1,
        (total, size) => (total + size - 1) / size,
    }
}

fn check_meta(
    meta: Option<ListMetadata>,
    total: usize,
    page_size: i64,
) -> Result<(), TestCaseError> {
    let meta = meta.unwrap_or_default();
    prop_assert_eq!(meta.total_results, total as i64, "totalResults");
    prop_assert_eq!(meta.total_pages, pages(total, page_size), "totalPages");
    Ok(())
}

fn bound(bound: Bound, now: i64) -> i64 {
    match bound {
        Bound::Zero => 0,
        Bound::Relative(seconds) => -seconds,
        Bound::Absolute(buckets, second) => now - now.rem_euclid(W) + buckets * W + second,
    }
}

fn page_of(rows: Vec<Row>, page: i64, page_size: i64) -> Vec<Row> {
    if page_size == 0 {
        return rows;
    }
    let skip = (page * page_size) as usize;
    rows.into_iter()
        .skip(skip)
        .take(page_size as usize)
        .collect()
}

impl Ids {
    /// Checks ids of `results`: positive, one per key, and the same as earlier for a key that
    /// stayed retained. `learn` records new keys (only the full-range List does).
    fn check(&mut self, results: &[FlowResult], learn: bool) -> Result<(), TestCaseError> {
        let mut keys_of: HashMap<i64, Vec<u8>> = HashMap::new();
        for result in results {
            let key = row_of(result).key;
            prop_assert!(result.id > 0, "id {} is not positive", result.id);
            match self.0.get(&key) {
                Some(id) => prop_assert_eq!(*id, result.id, "the id of a retained key changed"),
                None if learn => {
                    self.0.insert(key.clone(), result.id);
                }
                None => prop_assert!(false, "a key missing from the full List: {:?}", result),
            }
            let other = keys_of.entry(result.id).or_insert_with(|| key.clone());
            prop_assert_eq!(&*other, &key, "two keys share id {}", result.id);
        }
        Ok(())
    }
}

/// Lists with `request`, compares the rows as a set, then their order (SPEC §4.3).
async fn check_list(
    server: &TestServer,
    ids: &mut Ids,
    request: FlowListRequest,
    expected: Option<Vec<Row>>,
    learn: bool,
) -> Result<(), TestCaseError> {
    let what = format!("List {request:?}");
    let answer = server.flows().list(request.clone()).await;
    let Some(mut expected) = expected else {
        let code = answer.err().map(|status| status.code());
        prop_assert_eq!(code, Some(Code::InvalidArgument), "{}", what);
        return Ok(());
    };
    let answer = answer
        .map_err(|s| TestCaseError::fail(format!("{what}: {s}")))?
        .into_inner();
    let total = expected.len();
    check_meta(answer.meta, total, request.page_size)?;
    ids.check(&answer.flows, learn)?;
    let sort_by: Vec<i32> = request.sort_by.iter().map(|o| o.sort_by).collect();
    sort_rows(&mut expected, &sort_by, &ids.0);
    let expected = page_of(expected, request.page, request.page_size);
    let actual: Vec<Row> = answer.flows.iter().map(row_of).collect();
    if request.page_size == 0 {
        let (mut sorted_actual, mut sorted_expected) = (actual.clone(), expected.clone());
        sorted_actual.sort();
        sorted_expected.sort();
        prop_assert_eq!(sorted_actual, sorted_expected, "{}: rows", what);
    }
    prop_assert_eq!(
        actual,
        expected,
        "{}: order or page (total {})",
        what,
        total
    );
    Ok(())
}

async fn check_hints(
    server: &TestServer,
    request: FilterHintsRequest,
    expected: Option<Vec<String>>,
) -> Result<(), TestCaseError> {
    let what = format!("FilterHints {request:?}");
    let answer = server.flows().filter_hints(request.clone()).await;
    let Some(expected) = expected else {
        let code = answer.err().map(|status| status.code());
        prop_assert_eq!(code, Some(Code::InvalidArgument), "{}", what);
        return Ok(());
    };
    let answer = answer
        .map_err(|s| TestCaseError::fail(format!("{what}: {s}")))?
        .into_inner();
    check_meta(answer.meta, expected.len(), request.page_size)?;
    let actual: Vec<String> = answer.hints.into_iter().map(|h| h.value).collect();
    let skip = (request.page * request.page_size) as usize;
    let expected: Vec<String> = if request.page_size == 0 {
        expected
    } else {
        expected
            .into_iter()
            .skip(skip)
            .take(request.page_size as usize)
            .collect()
    };
    prop_assert_eq!(actual, expected, "{}", what);
    Ok(())
}

/// Statistics.List (SPEC §8): the whole stream of results, in order.
async fn check_statistics(
    server: &TestServer,
    model: &Model,
    request: StatisticsRequest,
) -> Result<(), TestCaseError> {
    let what = format!("Statistics {request:?}");
    let answer = server.statistics().list(request.clone()).await;
    let Some(expected) = stats::expected(model, &request) else {
        let code = answer.err().map(|status| status.code());
        prop_assert_eq!(code, Some(Code::InvalidArgument), "{}", what);
        return Ok(());
    };
    let fail = |s: tonic::Status| TestCaseError::fail(format!("{what}: {s}"));
    let mut stream = answer.map_err(fail)?.into_inner();
    let mut actual = Vec::new();
    while let Some(result) = stream.message().await.map_err(fail)? {
        actual.push(result);
    }
    prop_assert_eq!(actual, expected, "{}", what);
    Ok(())
}

/// Every comparison made after one operation.
pub async fn check_all(
    server: &TestServer,
    model: &Model,
    ids: &mut Ids,
    spec: &QuerySpec,
) -> Result<(), TestCaseError> {
    let retained = model.retained_keys();
    ids.0.retain(|key, _| retained.contains(key));
    let now = model.now;
    // Every retained bucket, current and future included: learns the id of every key.
    let everything = FlowListRequest {
        start_time_lt: now + 3 * W,
        ..Default::default()
    };
    let full = model.range(0, everything.start_time_lt);
    let expected = full.map(|range| model.rows(range, 0, None));
    check_list(server, ids, everything, expected, true).await?;
    let default_range = model.range(0, 0);
    for interval in [0, 2 * W] {
        let request = FlowListRequest {
            aggregation_interval: interval,
            ..Default::default()
        };
        let expected = default_range.map(|range| model.rows(range, interval, None));
        check_list(server, ids, request, expected, false).await?;
    }
    let (gte, lt) = (bound(spec.gte, now), bound(spec.lt, now));
    let range = model.range(gte, lt);
    let interval = spec.intervals * W;
    let request = FlowListRequest {
        start_time_gte: gte,
        start_time_lt: lt,
        page: spec.page,
        page_size: spec.page_size,
        sort_by: spec
            .sort_by
            .iter()
            .map(|&sort_by| SortOption { sort_by })
            .collect(),
        filter: Some(spec.filter.clone()),
        aggregation_interval: interval,
    };
    let expected = range.map(|range| model.rows(range, interval, Some(&spec.filter)));
    check_list(server, ids, request, expected, false).await?;
    let statistics = StatisticsRequest {
        start_time_gte: gte,
        start_time_lt: lt,
        ..spec.statistics.clone()
    };
    check_statistics(server, model, statistics).await?;
    for field in FILTER_TYPES {
        let unfiltered = FilterHintsRequest {
            r#type: field as i32,
            ..Default::default()
        };
        let expected = default_range.map(|range| model.hints(range, field, None));
        check_hints(server, unfiltered, expected).await?;
        let filtered = FilterHintsRequest {
            r#type: field as i32,
            filter: Some(spec.filter.clone()),
            start_time_gte: gte,
            start_time_lt: lt,
            page: spec.page,
            page_size: spec.page_size,
        };
        let expected = range.map(|range| model.hints(range, field, Some(&spec.filter)));
        check_hints(server, filtered, expected).await?;
    }
    Ok(())
}
