//! Results as JSON for `-o json` and `-o ndjson`: keys are the proto's field names (`Key`,
//! `start_time`, `dest_labels`), enums are their proto names (`Allow`, `Dst`) or the number
//! when the server sent one this build does not know, and int64 values are JSON numbers.

use serde_json::{json, Value};

use crate::proto::{
    Action, EndpointType, FilterHint, Flow, FlowKey, FlowResult, ListMetadata, PolicyHit,
    PolicyKind, PolicyTrace, Reporter, RuleDirection, StatisticType, StatisticsGroupBy,
    StatisticsResult,
};

/// An enum's proto name, or its number when unknown.
fn name<E>(number: i32, as_name: fn(&E) -> &'static str) -> Value
where
    E: TryFrom<i32>,
{
    match E::try_from(number) {
        Ok(known) => Value::from(as_name(&known)),
        Err(_) => Value::from(number),
    }
}

/// A policy hit, with its trigger.
pub fn hit(hit: &PolicyHit) -> Value {
    json!({
        "kind": name(hit.kind, PolicyKind::as_str_name),
        "namespace": hit.namespace,
        "name": hit.name,
        "tier": hit.tier,
        "action": name(hit.action, Action::as_str_name),
        "policy_index": hit.policy_index,
        "rule_index": hit.rule_index,
        "trigger": hit.trigger.as_deref().map_or(Value::Null, self::hit),
    })
}

fn trace(trace: Option<&PolicyTrace>) -> Value {
    let hits = |list: &[PolicyHit]| Value::from(list.iter().map(hit).collect::<Vec<_>>());
    let empty = PolicyTrace::default();
    let trace = trace.unwrap_or(&empty);
    json!({
        "enforced_policies": hits(&trace.enforced_policies),
        "pending_policies": hits(&trace.pending_policies),
    })
}

/// A flow key.
pub fn key(key: &FlowKey) -> Value {
    json!({
        "source_name": key.source_name,
        "source_namespace": key.source_namespace,
        "source_type": name(key.source_type, EndpointType::as_str_name),
        "dest_name": key.dest_name,
        "dest_namespace": key.dest_namespace,
        "dest_type": name(key.dest_type, EndpointType::as_str_name),
        "dest_port": key.dest_port,
        "dest_service_name": key.dest_service_name,
        "dest_service_namespace": key.dest_service_namespace,
        "dest_service_port_name": key.dest_service_port_name,
        "dest_service_port": key.dest_service_port,
        "proto": key.proto,
        "reporter": name(key.reporter, Reporter::as_str_name),
        "action": name(key.action, Action::as_str_name),
        "policies": trace(key.policies.as_ref()),
    })
}

/// A flow with its counters.
pub fn flow(flow: &Flow) -> Value {
    json!({
        "Key": flow.key.as_ref().map_or(Value::Null, key),
        "start_time": flow.start_time,
        "end_time": flow.end_time,
        "source_labels": flow.source_labels,
        "dest_labels": flow.dest_labels,
        "packets_in": flow.packets_in,
        "packets_out": flow.packets_out,
        "bytes_in": flow.bytes_in,
        "bytes_out": flow.bytes_out,
        "num_connections_started": flow.num_connections_started,
        "num_connections_completed": flow.num_connections_completed,
        "num_connections_live": flow.num_connections_live,
    })
}

/// A `FlowResult`: `{"id": .., "flow": {..}}`.
pub fn flow_result(result: &FlowResult) -> Value {
    json!({
        "id": result.id,
        "flow": result.flow.as_ref().map_or(Value::Null, flow),
    })
}

/// List metadata.
pub fn meta(meta: Option<&ListMetadata>) -> Value {
    let (pages, results) = meta.map_or((0, 0), |m| (m.total_pages, m.total_results));
    json!({ "totalPages": pages, "totalResults": results })
}

/// One filter hint.
pub fn filter_hint(hint: &FilterHint) -> Value {
    json!({ "value": hint.value })
}

/// One statistics result.
pub fn statistics(result: &StatisticsResult) -> Value {
    json!({
        "policy": result.policy.as_ref().map_or(Value::Null, hit),
        "direction": name(result.direction, RuleDirection::as_str_name),
        "group_by": name(result.group_by, StatisticsGroupBy::as_str_name),
        "type": name(result.r#type, StatisticType::as_str_name),
        "allowed_in": result.allowed_in,
        "allowed_out": result.allowed_out,
        "denied_in": result.denied_in,
        "denied_out": result.denied_out,
        "passed_in": result.passed_in,
        "passed_out": result.passed_out,
        "x": result.x,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_named_and_unknown_numbers_survive() {
        let result = FlowResult {
            id: 7,
            flow: Some(Flow {
                key: Some(FlowKey {
                    action: Action::Deny as i32,
                    reporter: 42,
                    ..FlowKey::default()
                }),
                packets_in: 3,
                ..Flow::default()
            }),
        };
        let value = flow_result(&result);
        assert_eq!(value["id"], 7);
        assert_eq!(value["flow"]["packets_in"], 3);
        assert_eq!(value["flow"]["Key"]["action"], "Deny");
        assert_eq!(value["flow"]["Key"]["reporter"], 42);
        assert_eq!(
            value["flow"]["Key"]["policies"]["enforced_policies"],
            json!([])
        );
    }
}
