//! Compiles `proto/goldmane.proto` and `proto/eddy/views/v1/views.proto` into Rust with protox (pure Rust, no system `protoc`), and
//! writes the encoded file descriptor set that server reflection serves and that
//! `eddy::proto_json` writes JSON from.
//!
//! Every generated message implements `prost::Name`, so its descriptor can be found by its
//! full name (`goldmane.Flow`).

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/goldmane.proto");
    println!("cargo:rerun-if-changed=proto/eddy/views/v1/views.proto");
    let descriptors = protox::compile(
        ["proto/goldmane.proto", "proto/eddy/views/v1/views.proto"],
        ["proto"],
    )?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("goldmane_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    // goldmane's servers are generated; eddy.views.v1's is written by hand (`api::views_wire`,
    // its Subscribe sends bytes encoded once for many subscribers), so only its client is.
    for views in [false, true] {
        let mut files = descriptors.clone();
        files
            .file
            .retain(|file| (file.package() == "eddy.views.v1") == views);
        let mut config = tonic_prost_build::Config::new();
        config.enable_type_names();
        tonic_prost_build::configure()
            .build_transport(false)
            .build_server(!views)
            .compile_fds_with_config(files, config)?;
    }
    Ok(())
}
