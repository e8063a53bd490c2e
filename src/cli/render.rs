//! How a flow looks in a table row (`-o table` and `-o wide`), shared by `list` and `watch`.

use crate::cli::table::{bytes, count, Align, Cell, Style};
use crate::cli::time::{format_ago, format_rfc3339};
use crate::proto::{
    Action, EndpointType, FlowResult, PolicyHit, PolicyKind, PolicyTrace, Reporter,
};

/// Columns of `-o table`.
pub const TABLE: [(&str, Align); 10] = [
    ("START", Align::Left),
    ("SOURCE", Align::Left),
    ("DESTINATION", Align::Left),
    ("PORT", Align::Left),
    ("REPORTER", Align::Left),
    ("ACTION", Align::Left),
    ("PKTS IN", Align::Right),
    ("PKTS OUT", Align::Right),
    ("BYTES IN", Align::Right),
    ("BYTES OUT", Align::Right),
];

/// Extra columns of `-o wide`, after the table's.
pub const WIDE_EXTRA: [(&str, Align); 10] = [
    ("ID", Align::Right),
    ("FROM", Align::Left),
    ("TO", Align::Left),
    ("SRC TYPE", Align::Left),
    ("DST TYPE", Align::Left),
    ("SERVICE", Align::Left),
    ("CONNS S/C/L", Align::Right),
    ("POLICIES", Align::Left),
    ("SRC LABELS", Align::Left),
    ("DST LABELS", Align::Left),
];

/// Fixed widths for a streaming (`watch`) table, column by column.
pub const STREAM_WIDTHS: [usize; 10] = [8, 32, 32, 9, 8, 6, 8, 8, 10, 10];

/// The columns for `wide` or not.
pub fn columns(wide: bool) -> Vec<(&'static str, Align)> {
    let mut columns = TABLE.to_vec();
    if wide {
        columns.extend(WIDE_EXTRA);
    }
    columns
}

/// `namespace/name`, or the name alone for global endpoints (`-` or empty namespace).
pub fn endpoint(namespace: &str, name: &str) -> String {
    if namespace.is_empty() || namespace == "-" {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

fn action_cell(action: i32) -> Cell {
    match Action::try_from(action) {
        Ok(Action::Allow) => Cell::styled("allow", Style::Green),
        Ok(Action::Deny) => Cell::styled("deny", Style::Red),
        Ok(Action::Pass) => Cell::styled("pass", Style::Yellow),
        Ok(Action::Unspecified) => Cell::styled("-", Style::Dim),
        Err(_) => Cell::from(format!("action#{action}")),
    }
}

fn reporter(reporter: i32) -> String {
    match Reporter::try_from(reporter) {
        Ok(Reporter::Src) => "src".into(),
        Ok(Reporter::Dst) => "dst".into(),
        Ok(Reporter::Unspecified) => "-".into(),
        Err(_) => format!("#{reporter}"),
    }
}

fn endpoint_type(number: i32) -> String {
    EndpointType::try_from(number).map_or_else(|_| format!("#{number}"), |t| t.as_str_name().into())
}

fn action_word(action: i32) -> String {
    Action::try_from(action)
        .map_or_else(|_| format!("#{action}"), |a| a.as_str_name().to_lowercase())
}

/// One hit: `tier/namespace/name:action`; an end of tier names its trigger.
pub fn hit(hit: &PolicyHit) -> String {
    let own = endpoint(&hit.namespace, &hit.name);
    let what = if hit.kind == PolicyKind::EndOfTier as i32 {
        match &hit.trigger {
            Some(trigger) => format!(
                "end-of-tier<{}",
                endpoint(&trigger.namespace, &trigger.name)
            ),
            None => "end-of-tier".into(),
        }
    } else {
        own
    };
    format!("{}/{what}:{}", hit.tier, action_word(hit.action))
}

/// Enforced hits, then pending ones when they differ.
pub fn trace(trace: Option<&PolicyTrace>) -> String {
    let Some(trace) = trace else {
        return String::new();
    };
    let list = |hits: &[PolicyHit]| hits.iter().map(hit).collect::<Vec<_>>().join(", ");
    let enforced = list(&trace.enforced_policies);
    if trace.pending_policies == trace.enforced_policies {
        enforced
    } else {
        format!("{enforced}; pending {}", list(&trace.pending_policies))
    }
}

/// The cells of one flow, relative times against `now`.
pub fn flow_row(result: &FlowResult, wide: bool, now: i64) -> Vec<Cell> {
    let flow = result.flow.clone().unwrap_or_default();
    let key = flow.key.clone().unwrap_or_default();
    let mut row: Vec<Cell> = vec![
        Cell::styled(format_ago(flow.start_time.min(now), now), Style::Dim),
        endpoint(&key.source_namespace, &key.source_name).into(),
        endpoint(&key.dest_namespace, &key.dest_name).into(),
        format!("{}/{}", key.proto, key.dest_port).into(),
        reporter(key.reporter).into(),
        action_cell(key.action),
        count(flow.packets_in).into(),
        count(flow.packets_out).into(),
        bytes(flow.bytes_in).into(),
        bytes(flow.bytes_out).into(),
    ];
    if wide {
        let service = if key.dest_service_name.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{}:{}/{}",
                endpoint(&key.dest_service_namespace, &key.dest_service_name),
                key.dest_service_port_name,
                key.dest_service_port
            )
        };
        row.extend([
            Cell::from(result.id.to_string()),
            format_rfc3339(flow.start_time).into(),
            format_rfc3339(flow.end_time).into(),
            endpoint_type(key.source_type).into(),
            endpoint_type(key.dest_type).into(),
            service.into(),
            format!(
                "{}/{}/{}",
                flow.num_connections_started,
                flow.num_connections_completed,
                flow.num_connections_live
            )
            .into(),
            trace(key.policies.as_ref()).into(),
            flow.source_labels.join(",").into(),
            flow.dest_labels.join(",").into(),
        ]);
    }
    row
}
