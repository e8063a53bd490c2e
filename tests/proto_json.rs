//! Completeness of the descriptor-based JSON: every response message of every RPC in
//! `goldmane.proto` and `views.proto`, with every field populated (the first member of a
//! oneof), is decoded into its generated Rust type and written in both spellings; every
//! field of the descriptor must appear with its value.

use eddy::proto::views::{ListViewsResponse, ReadResponse, SubscribeResponse};
use eddy::proto::{
    FilterHint, FilterHintsResult, Flow, FlowListResult, FlowReceipt, FlowResult, StatisticsResult,
};
use eddy::proto_json::{to_value, Spelling};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};
use serde_json::Value as Json;

fn pool() -> DescriptorPool {
    DescriptorPool::decode(eddy::proto::FILE_DESCRIPTOR_SET).expect("the embedded descriptors")
}

/// A value for every field of `descriptor`: strings `"x"`, integers 7, the first non-zero
/// enum value, one element per list, nested messages filled to `depth`.
fn filled(descriptor: &MessageDescriptor, depth: usize) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    for field in descriptor.fields() {
        let oneof_taken = field
            .containing_oneof()
            .is_some_and(|oneof| oneof.fields().any(|other| message.has_field(&other)));
        if oneof_taken {
            continue; // one member of a oneof is filled: the first
        }
        let single = match field.kind() {
            Kind::String => Value::String("x".into()),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(7),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(7),
            Kind::Bool => Value::Bool(true),
            Kind::Double => Value::F64(7.0),
            Kind::Enum(values) => Value::EnumNumber(
                values
                    .values()
                    .map(|value| value.number())
                    .find(|&number| number != 0)
                    .expect("every enum of the API has a non-zero value"),
            ),
            Kind::Message(nested) if depth > 0 => Value::Message(filled(&nested, depth - 1)),
            Kind::Message(_) => continue,
            other => panic!("{}: add a value for {other:?}", field.full_name()),
        };
        let value = if field.is_list() {
            Value::List(vec![single])
        } else {
            single
        };
        message.set_field(&field, value);
    }
    message
}

/// Asserts every field of `descriptor` is in `json`, with the values [`filled`] gave it.
fn assert_complete(descriptor: &MessageDescriptor, json: &Json, spelling: Spelling, path: &str) {
    for field in descriptor.fields() {
        let name = match spelling {
            Spelling::Canonical => field.json_name(),
            Spelling::Emitter => field.name(),
        };
        let at = format!("{path}.{name}");
        let Some(value) = json.get(name) else {
            if matches!(field.kind(), Kind::Message(_)) || field.containing_oneof().is_some() {
                continue; // beyond the filled depth
            }
            panic!("{at} is missing from {json}");
        };
        let beyond_depth =
            matches!(field.kind(), Kind::Message(_)) && value == &Json::Array(vec![]);
        if beyond_depth {
            continue;
        }
        let value = if field.is_list() {
            assert_eq!(value.as_array().map(Vec::len), Some(1), "{at}: {value}");
            &value[0]
        } else {
            value
        };
        match field.kind() {
            Kind::Message(nested) => assert_complete(&nested, value, spelling, &at),
            Kind::String => assert_eq!(value, "x", "{at}"),
            Kind::Int64 if spelling == Spelling::Canonical => assert_eq!(value, "7", "{at}"),
            Kind::Int64 | Kind::Int32 => assert_eq!(value, 7, "{at}"),
            Kind::Bool => assert_eq!(value, true, "{at}"),
            Kind::Enum(values) => {
                let first = values
                    .values()
                    .find(|value| value.number() != 0)
                    .expect("a non-zero value");
                match spelling {
                    Spelling::Canonical => assert_eq!(value, first.name(), "{at}"),
                    Spelling::Emitter => assert_eq!(value, first.number(), "{at}"),
                }
            }
            other => panic!("{at}: no check for {other:?}"),
        }
    }
}

/// `message` decoded into the generated type `M`, then written in `spelling`.
fn through<M: Message + Default + prost::Name>(
    message: &DynamicMessage,
    spelling: Spelling,
) -> Json {
    let generated = M::decode(message.encode_to_vec().as_slice()).expect("the same wire format");
    to_value(&generated, spelling).expect("JSON")
}

/// The JSON of the generated type named `name`, or `None` for a type this test does not know.
fn json_of(name: &str, message: &DynamicMessage, spelling: Spelling) -> Option<Json> {
    Some(match name {
        "goldmane.FlowListResult" => through::<FlowListResult>(message, spelling),
        "goldmane.FlowResult" => through::<FlowResult>(message, spelling),
        "goldmane.FilterHintsResult" => through::<FilterHintsResult>(message, spelling),
        "goldmane.FilterHint" => through::<FilterHint>(message, spelling),
        "goldmane.StatisticsResult" => through::<StatisticsResult>(message, spelling),
        "goldmane.FlowReceipt" => through::<FlowReceipt>(message, spelling),
        "goldmane.Flow" => through::<Flow>(message, spelling),
        "eddy.views.v1.ListViewsResponse" => through::<ListViewsResponse>(message, spelling),
        "eddy.views.v1.ReadResponse" => through::<ReadResponse>(message, spelling),
        "eddy.views.v1.SubscribeResponse" => through::<SubscribeResponse>(message, spelling),
        _ => return None,
    })
}

#[test]
fn every_field_of_every_response_appears_in_both_spellings() {
    let pool = pool();
    let mut responses: Vec<MessageDescriptor> = pool
        .services()
        .flat_map(|service| {
            service
                .methods()
                .map(|method| method.output())
                .collect::<Vec<_>>()
        })
        .collect();
    responses.push(
        pool.get_message_by_name("goldmane.Flow")
            .expect("the emitter's message"),
    );
    assert!(responses.len() >= 5, "the API has its RPCs: {responses:?}");
    for descriptor in responses {
        let message = filled(&descriptor, 8);
        for spelling in [Spelling::Canonical, Spelling::Emitter] {
            let json = json_of(descriptor.full_name(), &message, spelling).unwrap_or_else(|| {
                panic!(
                    "{} is returned by an RPC: add it here",
                    descriptor.full_name()
                )
            });
            assert_complete(&descriptor, &json, spelling, descriptor.full_name());
        }
    }
}

#[test]
fn a_known_flow_has_the_exact_canonical_json() {
    let result = FlowResult {
        id: 42,
        flow: Some(Flow {
            key: Some(eddy::proto::FlowKey {
                source_name: "frontend".into(),
                source_namespace: "shop".into(),
                dest_name: "cart".into(),
                dest_port: 8080,
                proto: "TCP".into(),
                reporter: eddy::proto::Reporter::Dst as i32,
                action: eddy::proto::Action::Allow as i32,
                ..Default::default()
            }),
            start_time: 1_700_000_100,
            end_time: 1_700_000_115,
            source_labels: vec!["app=web".into()],
            packets_in: 12,
            bytes_in: 1200,
            ..Default::default()
        }),
    };
    let text =
        serde_json::to_string(&eddy::proto_json::json(&result, Spelling::Canonical)).expect("JSON");
    assert_eq!(
        text,
        concat!(
            r#"{"id":"42","flow":{"Key":{"sourceName":"frontend","sourceNamespace":"shop","#,
            r#""sourceType":"EndpointTypeUnspecified","destName":"cart","destNamespace":"","#,
            r#""destType":"EndpointTypeUnspecified","destPort":"8080","destServiceName":"","#,
            r#""destServiceNamespace":"","destServicePortName":"","destServicePort":"0","#,
            r#""proto":"TCP","reporter":"Dst","action":"Allow"},"#,
            r#""startTime":"1700000100","endTime":"1700000115","sourceLabels":["app=web"],"#,
            r#""destLabels":[],"packetsIn":"12","packetsOut":"0","bytesIn":"1200","#,
            r#""bytesOut":"0","numConnectionsStarted":"0","numConnectionsCompleted":"0","#,
            r#""numConnectionsLive":"0"}}"#
        )
    );
}
