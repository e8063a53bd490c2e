//! The `eddy.views.v1.Views` service: lists the registered views, reads any of them
//! through the engine's one generic read, and subscribes to their changes through the view
//! hub (`streams::views`); `api::views_wire` puts it on the wire. Requests are checked against the view's schema
//! here (unknown view, unknown column, wrong type, empty range); string values are looked up
//! in the catalog on the way in and resolved on the way out.

use eddy_dataflows::model::BucketRange;
use eddy_dataflows::views::registry::{
    Column, ColumnFilter, ColumnType, Row, Sort, Value, ViewQuery, ViewSchema,
};
use eddy_dataflows::views::{registered, REGISTERED};
use std::net::IpAddr;

use prost::Message;

use crate::api::status::ApiError;
use crate::api::timerange::bucket_range;
use crate::catalog::Catalog;
use crate::proto::views::{
    self as wire, value::Kind, ListViewsResponse, ReadRequest, ReadResponse, SubscribeRequest,
    ViewInfo,
};
use crate::state::ServerState;
use crate::streams::outbound::Outbound;

/// The `Views` service.
#[derive(Clone)]
pub struct ViewsService {
    state: ServerState,
}

impl ViewsService {
    /// A service over `state`.
    pub fn new(state: ServerState) -> Self {
        ViewsService { state }
    }
}

fn column_type(kind: ColumnType) -> wire::ColumnType {
    match kind {
        ColumnType::String => wire::ColumnType::String,
        ColumnType::Integer => wire::ColumnType::Integer,
        ColumnType::Float => wire::ColumnType::Float,
        ColumnType::Bool => wire::ColumnType::Bool,
        ColumnType::Timestamp => wire::ColumnType::Timestamp,
    }
}

/// The columns of `schema` as the API describes them.
pub(crate) fn columns(schema: &ViewSchema) -> Vec<wire::Column> {
    schema
        .columns
        .iter()
        .map(|column: &Column| wire::Column {
            name: column.name.into(),
            r#type: column_type(column.kind) as i32,
            description: column.description.into(),
        })
        .collect()
}

fn info(schema: &ViewSchema) -> ViewInfo {
    let sort = &schema.columns[schema.default_sort.column];
    ViewInfo {
        name: schema.name.into(),
        description: schema.description.into(),
        columns: columns(schema),
        default_sort: sort.name.into(),
        default_descending: schema.default_sort.descending,
    }
}

/// What a filter's value means on the workers: a value, or no row at all (a string the
/// catalog does not hold cannot be in any row).
enum Wanted {
    Value(Value),
    Nothing,
}

/// The engine value of `value` for `column`, or why it does not fit.
fn engine_value(column: &Column, value: &wire::Value, catalog: &Catalog) -> Result<Wanted, String> {
    let mismatch = |given: &str| {
        format!(
            "column {} holds {} values, not {given}",
            column.name,
            type_name(column.kind)
        )
    };
    let wanted = match (&value.kind, column.kind) {
        (Some(Kind::StringValue(text)), ColumnType::String) => match catalog.symbols.lookup(text) {
            Some(id) => Wanted::Value(Value::String(id)),
            None => Wanted::Nothing,
        },
        (Some(Kind::IntegerValue(number)), ColumnType::Integer) => {
            Wanted::Value(Value::Integer(*number))
        }
        (Some(Kind::FloatValue(number)), ColumnType::Float) => Wanted::Value(Value::Float(*number)),
        (Some(Kind::BoolValue(flag)), ColumnType::Bool) => Wanted::Value(Value::Bool(*flag)),
        (Some(Kind::TimestampValue(seconds)), ColumnType::Timestamp) => {
            Wanted::Value(Value::Timestamp(*seconds))
        }
        (None, _) => return Err("a value is required".into()),
        (Some(Kind::StringValue(_)), _) => return Err(mismatch("string")),
        (Some(Kind::IntegerValue(_)), _) => return Err(mismatch("integer")),
        (Some(Kind::FloatValue(_)), _) => return Err(mismatch("float")),
        (Some(Kind::BoolValue(_)), _) => return Err(mismatch("bool")),
        (Some(Kind::TimestampValue(_)), _) => return Err(mismatch("timestamp")),
    };
    Ok(wanted)
}

/// The word the API uses for a column type.
fn type_name(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::String => "string",
        ColumnType::Integer => "integer",
        ColumnType::Float => "float",
        ColumnType::Bool => "bool",
        ColumnType::Timestamp => "timestamp",
    }
}

/// `row` as the API sends it, strings resolved to text.
pub(crate) fn wire_row(row: &[Value], catalog: &Catalog) -> wire::Row {
    wire::Row {
        values: row.iter().map(|value| wire_value(value, catalog)).collect(),
    }
}

fn wire_value(value: &Value, catalog: &Catalog) -> wire::Value {
    let kind = match value {
        Value::String(id) => Kind::StringValue(catalog.symbols.resolve(*id)),
        Value::Integer(number) => Kind::IntegerValue(*number),
        Value::Float(number) => Kind::FloatValue(*number),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Timestamp(seconds) => Kind::TimestampValue(*seconds),
    };
    wire::Value { kind: Some(kind) }
}

/// A checked read: the view's index, its schema, the engine query, and whether a filter
/// names a string no row can hold.
struct Checked {
    index: usize,
    schema: &'static ViewSchema,
    query: ViewQuery,
    matches_nothing: bool,
}

impl ViewsService {
    fn check(&self, request: &ReadRequest) -> Result<Checked, ApiError> {
        let state = &self.state;
        let (index, view) = registered(&request.view).ok_or_else(|| {
            ApiError::NotFound(format!("view: no view is called {:?}", request.view))
        })?;
        let schema = view.schema();
        let column_of = |field: &str, name: &str| {
            schema.column(name).ok_or_else(|| {
                ApiError::invalid(
                    field,
                    format!("view {} has no column {name:?}", schema.name),
                )
            })
        };
        let range: BucketRange = bucket_range(
            request.start_time_gte,
            request.start_time_lt,
            state.now(),
            &state.retention,
        )?;
        let mut filters = Vec::with_capacity(request.filters.len());
        let mut matches_nothing = false;
        for (at, filter) in request.filters.iter().enumerate() {
            let field = format!("filters[{at}]");
            let column = column_of(&field, &filter.column)?;
            let value = filter.value.clone().unwrap_or_default();
            match engine_value(&schema.columns[column], &value, &state.catalog)
                .map_err(|problem| ApiError::invalid(&field, problem))?
            {
                Wanted::Value(value) => filters.push(ColumnFilter { column, value }),
                Wanted::Nothing => matches_nothing = true,
            }
        }
        let sort = match &request.sort {
            None => schema.default_sort,
            Some(sort) => Sort {
                column: column_of("sort.column", &sort.column)?,
                descending: sort.descending,
            },
        };
        let query = ViewQuery {
            range,
            per_bucket: request.per_bucket,
            window: state.retention.window,
            filters,
            sort,
            limit: (request.limit > 0).then_some(request.limit as usize),
            sort_is_string: schema.columns[sort.column].kind == ColumnType::String,
        };
        Ok(Checked {
            index,
            schema,
            query,
            matches_nothing,
        })
    }

    /// `Views.Read`: one view's rows at one consistent time.
    pub async fn read(&self, request: ReadRequest) -> Result<ReadResponse, ApiError> {
        let checked = self.check(&request)?;
        let query = checked.query;
        let rows: Vec<Row> = if checked.matches_nothing {
            Vec::new()
        } else {
            self.state
                .engine
                .read_view(checked.index, query.clone())
                .await?
        };
        let catalog = &self.state.catalog;
        let mut rows: Vec<Vec<wire::Value>> = rows
            .iter()
            .map(|row| row.iter().map(|value| wire_value(value, catalog)).collect())
            .collect();
        if query.sort_is_string {
            // Workers order strings by id; the text decides here (stable: ties keep the
            // workers' order), then the limit applies.
            let text = |row: &Vec<wire::Value>| match row.get(query.sort.column) {
                Some(wire::Value {
                    kind: Some(Kind::StringValue(text)),
                }) => text.clone(),
                _ => String::new(),
            };
            rows.sort_by(|a, b| {
                let order = text(a).cmp(&text(b));
                if query.sort.descending {
                    order.reverse()
                } else {
                    order
                }
            });
            if let Some(limit) = query.limit {
                rows.truncate(limit);
            }
        }
        Ok(ReadResponse {
            columns: columns(checked.schema),
            rows: rows
                .into_iter()
                .map(|values| wire::Row { values })
                .collect(),
            start_time_gte: query.range.gte,
            start_time_lt: query.range.lt,
        })
    }
}

impl ViewsService {
    /// `Views.ListViews`: every registered view with its typed columns.
    pub fn list_views(&self) -> ListViewsResponse {
        let views = REGISTERED.iter().map(|view| info(view.schema())).collect();
        ListViewsResponse { views }
    }

    /// `Views.Subscribe`: a subscription to a view's rows and changes for a client at
    /// `peer`, filters checked as in Read.
    pub fn subscribe(
        &self,
        request: SubscribeRequest,
        peer: Option<IpAddr>,
    ) -> Result<Outbound, ApiError> {
        let (index, view) = registered(&request.view).ok_or_else(|| {
            ApiError::NotFound(format!("view: no view is called {:?}", request.view))
        })?;
        let schema = view.schema();
        let mut filters = Vec::with_capacity(request.filters.len());
        for (at, filter) in request.filters.iter().enumerate() {
            let field = format!("filters[{at}]");
            let column = schema.column(&filter.column).ok_or_else(|| {
                ApiError::invalid(
                    &field,
                    format!("view {} has no column {:?}", schema.name, filter.column),
                )
            })?;
            let value = filter.value.clone().unwrap_or_default();
            engine_value(&schema.columns[column], &value, &self.state.catalog)
                .map_err(|problem| ApiError::invalid(&field, problem))?;
            filters.push((column, value));
        }
        let group = request.encode_to_vec();
        self.state
            .view_streams
            .subscribe(index, filters, group, peer)
    }
}
