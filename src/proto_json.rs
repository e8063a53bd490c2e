//! Protobuf JSON of the API's messages, written through `goldmane.proto`'s file descriptor
//! set rather than a hand-kept list of fields, so a field added to the proto is never missing.
//!
//! Two spellings: the canonical proto3 JSON mapping for the command line (what grpcurl prints),
//! and the emitter's (SPEC §11.5: Goldmane marshals its Go structs with `encoding/json`).
//! Both include fields at their default value, so every scalar and list is always present.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde::ser::Error as _;
use serde::{Serialize, Serializer};

/// How a message's JSON is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// The canonical mapping: lowerCamelCase names (`destName`; `Key` stays `Key`), enums by
    /// name (`Allow`), 64-bit integers as strings (`"1200"`).
    Canonical,
    /// The emitter's: the proto's field names (`Key`, `start_time`), enums as numbers, 64-bit
    /// integers as numbers.
    Emitter,
}

impl Spelling {
    fn options(self) -> SerializeOptions {
        let emitter = self == Spelling::Emitter;
        SerializeOptions::new()
            .skip_default_fields(false)
            .use_proto_field_name(emitter)
            .use_enum_numbers(emitter)
            .stringify_64_bit_integers(!emitter)
    }
}

/// The descriptors of `goldmane.proto`, decoded once.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set build.rs compiled from goldmane.proto decodes")
});

/// A generated message ready to be serialised as JSON in one spelling.
pub struct Json<'a, M> {
    message: &'a M,
    spelling: Spelling,
}

/// `message` as JSON in `spelling`: pass it to `serde_json::to_writer` and the like.
pub fn json<M>(message: &M, spelling: Spelling) -> Json<'_, M> {
    Json { message, spelling }
}

impl<M: prost::Name> Serialize for Json<'_, M> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let name = M::full_name();
        let descriptor = POOL
            .get_message_by_name(&name)
            .ok_or_else(|| S::Error::custom(format!("no descriptor for {name}")))?;
        let mut dynamic = DynamicMessage::new(descriptor);
        dynamic
            .transcode_from(self.message)
            .map_err(S::Error::custom)?;
        dynamic.serialize_with_options(serializer, &self.spelling.options())
    }
}

/// `message` as a `serde_json::Value` in `spelling`.
pub fn to_value<M: prost::Name>(
    message: &M,
    spelling: Spelling,
) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(json(message, spelling))
}

/// Reads a message of type `M` from its JSON in either spelling (the parser takes both).
pub fn from_json<M: prost::Name + Default>(text: &[u8]) -> Result<M, String> {
    let name = M::full_name();
    let descriptor = POOL
        .get_message_by_name(&name)
        .ok_or_else(|| format!("no descriptor for {name}"))?;
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut deserializer)
        .map_err(|error| error.to_string())?;
    dynamic.transcode_to().map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Action, Flow, FlowKey, FlowResult};

    fn known() -> FlowResult {
        FlowResult {
            id: 7,
            flow: Some(Flow {
                key: Some(FlowKey {
                    dest_name: "cart".into(),
                    action: Action::Deny as i32,
                    reporter: 42,
                    ..FlowKey::default()
                }),
                start_time: 1_700_000_100,
                packets_in: 3,
                ..Flow::default()
            }),
        }
    }

    #[test]
    fn canonical_json_names_fields_in_camel_case_and_enums_by_name() {
        let value = to_value(&known(), Spelling::Canonical).expect("JSON");
        assert_eq!(value["id"], "7");
        let flow = &value["flow"];
        assert_eq!(flow["startTime"], "1700000100");
        assert_eq!(flow["packetsIn"], "3");
        assert_eq!(flow["bytesIn"], "0", "defaults are included");
        assert_eq!(flow["sourceLabels"], serde_json::json!([]));
        assert_eq!(flow["Key"]["destName"], "cart");
        assert_eq!(flow["Key"]["action"], "Deny");
        assert_eq!(
            flow["Key"]["reporter"], 42,
            "an unknown enum stays a number"
        );
    }

    #[test]
    fn emitter_json_keeps_proto_names_and_numbers() {
        let flow = known().flow.expect("a flow");
        let value = to_value(&flow, Spelling::Emitter).expect("JSON");
        assert_eq!(value["start_time"], 1_700_000_100);
        assert_eq!(value["packets_in"], 3);
        assert_eq!(value["bytes_out"], 0);
        assert_eq!(value["Key"]["dest_name"], "cart");
        assert_eq!(value["Key"]["action"], 2);
        assert_eq!(value["Key"]["source_type"], 0);
    }
}
