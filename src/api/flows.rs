//! The `Flows` service: List (SPEC §4), FilterHints (SPEC §6) and Stream (SPEC §7, served by
//! the stream hub). `api::flows_wire` puts it on the wire.

use std::net::IpAddr;
use std::sync::Arc;

use eddy_dataflows::filter::FlowFilter;
use eddy_dataflows::model::BucketRange;
use eddy_dataflows::queries::hints::HintsQuery;
use eddy_dataflows::queries::list::{self, ListQuery, SortField};
use eddy_dataflows::views::hints::HintField;

use crate::api::convert::{self, PolicyField};
use crate::api::filter;
use crate::api::status::ApiError;
use crate::api::timerange::bucket_range;
use crate::intern::Symbols;
use crate::proto::{
    FilterHint, FilterHintsRequest, FilterHintsResult, FilterType, FlowListRequest, FlowListResult,
    FlowStreamRequest, SortBy,
};
use crate::state::ServerState;
use crate::streams::outbound::Outbound;
use crate::worker::shared_reads::{ReadKind, SharedReads};

/// What makes two List calls the same read: the validated, compiled request. The compiled
/// filter is part of it, so a call whose filter names a string interned since another call
/// compiled its own does not join that call.
#[derive(Debug, PartialEq)]
struct ListKey {
    range: BucketRange,
    interval: i64,
    filter: FlowFilter,
    sort: Vec<SortField>,
    page: usize,
    page_size: i64,
}

/// What makes two FilterHints calls the same read.
#[derive(Debug, PartialEq)]
struct HintsKey {
    range: BucketRange,
    filter_type: i32,
    filter: FlowFilter,
    page: usize,
    page_size: i64,
}

/// The `Flows` service.
#[derive(Clone)]
pub struct FlowsService {
    state: ServerState,
    lists: Arc<SharedReads<ListKey, Result<FlowListResult, ApiError>>>,
    hints: Arc<SharedReads<HintsKey, Result<FilterHintsResult, ApiError>>>,
}

impl FlowsService {
    /// A service over `state`. Identical List and FilterHints calls waiting at once share
    /// one read (see [`crate::worker::shared_reads`]).
    pub fn new(state: ServerState) -> Self {
        let slots = state.engine.read_slots().clone();
        FlowsService {
            lists: SharedReads::new(ReadKind::List, slots.clone()),
            hints: SharedReads::new(ReadKind::Hints, slots),
            state,
        }
    }
}

/// Checks `page` and `page_size` (SPEC §4.1) and returns them as sizes.
fn paging(page: i64, page_size: i64) -> Result<(usize, usize), ApiError> {
    if page < 0 {
        return Err(ApiError::invalid("page", "must not be negative"));
    }
    if page_size < 0 {
        return Err(ApiError::invalid("page_size", "must not be negative"));
    }
    let page = usize::try_from(page).map_err(|_| ApiError::invalid("page", "is too large"))?;
    let size =
        usize::try_from(page_size).map_err(|_| ApiError::invalid("page_size", "is too large"))?;
    Ok((page, size))
}

fn sort_fields(request: &FlowListRequest) -> Result<Vec<SortField>, ApiError> {
    let mut fields = Vec::new();
    for option in &request.sort_by {
        let field = match SortBy::try_from(option.sort_by) {
            Ok(SortBy::Time) => SortField::Time,
            Ok(SortBy::DestName) => SortField::DestName,
            Ok(SortBy::DestNamespace) => SortField::DestNamespace,
            Ok(SortBy::DestType) => SortField::DestType,
            Ok(SortBy::SourceName) => SortField::SourceName,
            Ok(SortBy::SourceNamespace) => SortField::SourceNamespace,
            Ok(SortBy::SourceType) => SortField::SourceType,
            Err(_) => {
                return Err(ApiError::invalid(
                    "sort_by",
                    format!("unknown sort option {}", option.sort_by),
                ))
            }
        };
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    if fields.is_empty() {
        fields.push(SortField::Time);
    }
    Ok(fields)
}

impl FlowsService {
    /// `Flows.List` (SPEC §4).
    pub async fn list(&self, request: FlowListRequest) -> Result<FlowListResult, ApiError> {
        let state = &self.state;
        let now = state.now();
        let range = bucket_range(
            request.start_time_gte,
            request.start_time_lt,
            now,
            &state.retention,
        )?;
        let (page, page_size) = paging(request.page, request.page_size)?;
        let window = state.retention.window;
        let interval = request.aggregation_interval;
        if interval != 0 && (interval < 0 || interval % window != 0) {
            return Err(ApiError::invalid(
                "aggregation_interval",
                format!("must be 0 or a positive multiple of the {window}s window"),
            ));
        }
        state.request_limits.check_sort(request.sort_by.len())?;
        let sort = sort_fields(&request)?;
        state.request_limits.check_filter(request.filter.as_ref())?;
        let filter = filter::compile(request.filter.as_ref(), &state.catalog).await?;
        let limit = (page_size > 0).then(|| page.saturating_add(1).saturating_mul(page_size));
        let by_name = sort.iter().any(|field| {
            matches!(
                field,
                SortField::DestName
                    | SortField::DestNamespace
                    | SortField::SourceName
                    | SortField::SourceNamespace
            )
        });
        // Ranking every string costs a sort of the string table: only name orders need it.
        let name_ranks = if by_name {
            state.catalog.symbols.ranks()
        } else {
            Arc::new(Vec::new())
        };
        let key = ListKey {
            range,
            interval,
            filter: filter.clone(),
            sort: sort.clone(),
            page,
            page_size: request.page_size,
        };
        let query = ListQuery {
            range,
            window,
            interval,
            filter,
            sort,
            limit,
            name_ranks,
        };
        let state = state.clone();
        let requested_size = request.page_size;
        self.lists
            .read(key, move |slot| async move {
                let partials = state.engine.list_receipted(query).await?;
                drop(slot);
                let (rows, total) = list::merge(partials, page, page_size);
                Ok(FlowListResult {
                    meta: Some(convert::list_metadata(total, requested_size)),
                    flows: {
                        let mut converter = convert::RowConverter::new(&state.catalog);
                        rows.iter().map(|row| converter.flow_result(row)).collect()
                    },
                })
            })
            .await
    }

    /// `Flows.Stream` (SPEC §7): a subscription to the stream hub for a client at `peer`.
    pub fn stream(
        &self,
        request: FlowStreamRequest,
        peer: Option<IpAddr>,
    ) -> Result<Outbound, ApiError> {
        let window = self.state.retention.window;
        if request.aggregation_interval != 0 && request.aggregation_interval != window {
            return Err(ApiError::invalid(
                "aggregation_interval",
                format!("must be 0 or the {window}s window"),
            ));
        }
        self.state
            .request_limits
            .check_filter(request.filter.as_ref())?;
        let start = match request.start_time_gte {
            0 => None,
            relative if relative < 0 => Some(self.state.now().saturating_add(relative)),
            absolute => Some(absolute),
        };
        self.state
            .streams
            .subscribe(request.filter.unwrap_or_default(), start, peer)
    }

    /// `Flows.FilterHints` (SPEC §6).
    pub async fn filter_hints(
        &self,
        request: FilterHintsRequest,
    ) -> Result<FilterHintsResult, ApiError> {
        let state = &self.state;
        let (field, policy_field) = match FilterType::try_from(request.r#type) {
            Ok(FilterType::DestName) => (HintField::DestName, None),
            Ok(FilterType::SourceName) => (HintField::SourceName, None),
            Ok(FilterType::DestNamespace) => (HintField::DestNamespace, None),
            Ok(FilterType::SourceNamespace) => (HintField::SourceNamespace, None),
            Ok(FilterType::PolicyTier) => (HintField::Trace, Some(PolicyField::Tier)),
            Ok(FilterType::PolicyName) => (HintField::Trace, Some(PolicyField::Name)),
            Ok(FilterType::PolicyKind) => (HintField::Trace, Some(PolicyField::Kind)),
            Ok(FilterType::PolicyNamespace) => (HintField::Trace, Some(PolicyField::Namespace)),
            Ok(FilterType::Unspecified) | Err(_) => {
                return Err(ApiError::invalid(
                    "type",
                    format!("unknown or unspecified filter type {}", request.r#type),
                ))
            }
        };
        let range = bucket_range(
            request.start_time_gte,
            request.start_time_lt,
            state.now(),
            &state.retention,
        )?;
        let (page, page_size) = paging(request.page, request.page_size)?;
        state.request_limits.check_filter(request.filter.as_ref())?;
        let filter = filter::compile(request.filter.as_ref(), &state.catalog).await?;
        let key = HintsKey {
            range,
            filter_type: request.r#type,
            filter: filter.clone(),
            page,
            page_size: request.page_size,
        };
        let query = HintsQuery {
            range,
            field,
            filter,
        };
        let state = state.clone();
        let requested_size = request.page_size;
        self.hints
            .read(key, move |slot| async move {
                let partials = state.engine.hints(query).await?;
                drop(slot);
                Ok(hints_page(
                    &state,
                    partials,
                    policy_field,
                    page,
                    page_size,
                    requested_size,
                ))
            })
            .await
    }
}

/// The count of distinct non-empty `values` and the page of them in byte order (all of them
/// when `page_size` is 0).
fn values_page(mut values: Vec<String>, page: usize, page_size: usize) -> (u64, Vec<String>) {
    values.retain(|value| !value.is_empty());
    values.sort_unstable();
    values.dedup();
    let total = values.len() as u64;
    (total, list::page_of(values, page, page_size))
}

/// [`values_page`] of the strings of `ids`: ordered by the string table's byte-order ranks
/// (kept until the table changes) so that only the page's strings are resolved, since a
/// FilterHints of a name (one per flow) otherwise resolves and sorts every name. If an id has
/// no rank (removed from the table since the workers read it), every string is resolved and
/// sorted instead.
fn string_page(
    symbols: &Symbols,
    ids: Vec<u32>,
    page: usize,
    page_size: usize,
) -> (u64, Vec<String>) {
    match string_page_by_rank(symbols, ids, page, page_size) {
        Ok(page) => page,
        Err(ids) => values_page(
            ids.into_iter().map(|id| symbols.resolve(id)).collect(),
            page,
            page_size,
        ),
    }
}

/// [`string_page`] by rank; gives the ids back if one has no rank.
fn string_page_by_rank(
    symbols: &Symbols,
    mut ids: Vec<u32>,
    page: usize,
    page_size: usize,
) -> Result<(u64, Vec<String>), Vec<u32>> {
    let ranks = symbols.ranks();
    let rank_of = |id: u32| {
        ranks
            .get(id as usize)
            .copied()
            .filter(|rank| *rank != u32::MAX)
    };
    if ids.iter().any(|id| rank_of(*id).is_none()) {
        return Err(ids);
    }
    // Distinct ids are distinct strings: the table holds each value once.
    ids.sort_unstable_by_key(|id| rank_of(*id));
    ids.dedup();
    let resolve = |id: &u32| symbols.resolve(*id);
    // The empty string sorts first.
    if ids.first().is_some_and(|id| resolve(id).is_empty()) {
        ids.remove(0);
    }
    let total = ids.len() as u64;
    let chosen = list::page_of(ids, page, page_size);
    Ok((total, chosen.iter().map(resolve).collect()))
}

/// One page of FilterHints values from the workers' distinct ids: resolved to strings, empty
/// values dropped, sorted and de-duplicated (SPEC §6).
fn hints_page(
    state: &ServerState,
    partials: Vec<Vec<u32>>,
    policy_field: Option<PolicyField>,
    page: usize,
    page_size: usize,
    requested_size: i64,
) -> FilterHintsResult {
    let ids: Vec<u32> = partials.into_iter().flatten().collect();
    let (total, hints) = match policy_field {
        None => string_page(&state.catalog.symbols, ids, page, page_size),
        Some(policy_field) => values_page(
            ids.into_iter()
                .flat_map(|id| convert::policy_values(&state.catalog.trace(id), policy_field))
                .collect(),
            page,
            page_size,
        ),
    };
    FilterHintsResult {
        meta: Some(convert::list_metadata(total, requested_size)),
        hints: hints
            .into_iter()
            .map(|value| FilterHint { value })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intern::TableLimit;

    /// A string table holding `values`, and their ids in the same order.
    fn table(values: &[&str]) -> (Symbols, Vec<u32>) {
        let symbols = Symbols::new(TableLimit::entries(64));
        let ids = values
            .iter()
            .map(|value| symbols.intern(value).expect("the table has room"))
            .collect();
        (symbols, ids)
    }

    /// Hints of a name: distinct values in byte order, no empty string, paged like List
    /// (SPEC §6.2, §6.3, §4.4).
    #[test]
    fn a_name_page_is_in_byte_order_without_the_empty_string() {
        let (symbols, ids) = table(&["web-b", "", "api-a", "Web-c", "web-a"]);
        let twice = ids.iter().chain(&ids).copied().collect();
        assert_eq!(
            string_page(&symbols, twice, 0, 0),
            (
                4,
                vec![
                    "Web-c".into(),
                    "api-a".into(),
                    "web-a".into(),
                    "web-b".into()
                ]
            )
        );
        assert_eq!(
            string_page(&symbols, ids.clone(), 1, 3),
            (4, vec!["web-b".to_string()])
        );
        assert_eq!(string_page(&symbols, ids, 2, 3), (4, vec![]));
    }

    /// The same page (SPEC §6.2, §4.4) when an id has no rank.
    #[test]
    fn an_id_without_a_rank_falls_back_to_sorting_every_string() {
        // An id the workers read can leave the table before the page is cut: the catalog
        // collector removed it. It has no rank then, and resolves to the empty string.
        let (symbols, ids) = table(&["web-b", "gone", "api-a", "web-a"]);
        let gone = ids[1];
        assert_eq!(symbols.table().remove_unused(&[gone], 1), vec![gone]);
        assert_eq!(
            string_page_by_rank(&symbols, ids.clone(), 0, 2),
            Err(ids.clone()),
            "a removed id has no rank"
        );
        assert_eq!(
            string_page(&symbols, ids.clone(), 0, 2),
            (3, vec!["api-a".to_string(), "web-a".to_string()])
        );
        assert_eq!(
            string_page(&symbols, ids, 1, 2),
            (3, vec!["web-b".to_string()])
        );
    }
}
