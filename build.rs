//! Compiles `proto/goldmane.proto` into Rust with protox (pure Rust, no system `protoc`), and
//! writes the encoded file descriptor set that server reflection serves.
//!
//! The four messages the emitter writes as NDJSON (SPEC §11.5) derive `serde::Serialize`
//! with the proto's field names (`Key` keeps its capital) and enums as numbers.

use prost::Message;

/// Messages serialised by the emitter, and the one field whose proto name is not snake case.
const SERIALIZED: [&str; 4] = [
    "goldmane.Flow",
    "goldmane.FlowKey",
    "goldmane.PolicyTrace",
    "goldmane.PolicyHit",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/goldmane.proto");
    let descriptors = protox::compile(["proto/goldmane.proto"], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("goldmane_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    let mut builder = tonic_prost_build::configure().build_transport(false);
    for message in SERIALIZED {
        builder = builder.message_attribute(message, "#[derive(serde::Serialize)]");
    }
    builder
        .field_attribute("goldmane.Flow.Key", "#[serde(rename = \"Key\")]")
        .compile_fds(descriptors)?;
    Ok(())
}
