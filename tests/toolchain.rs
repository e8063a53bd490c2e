//! The declared toolchain is true: the workspace's `rust-version` is at least every locked
//! dependency's `rust-version`, and the compiler running the tests satisfies it.

use std::process::Command;

use serde_json::Value;

/// A Rust version such as `1.88` or `1.88.0`, as (major, minor, patch).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.trim().split('.').map(|part| {
        part.parse::<u64>()
            .unwrap_or_else(|_| panic!("`{text}` is a dotted version number"))
    });
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch)
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo metadata` of the workspace against Cargo.lock, offline when the registry cache allows.
fn metadata() -> Value {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let run = |offline: bool| {
        let mut command = cargo();
        command.args([
            "metadata",
            "--locked",
            "--format-version",
            "1",
            "--manifest-path",
        ]);
        command.arg(manifest);
        if offline {
            command.arg("--offline");
        }
        command.output().expect("cargo runs")
    };
    let mut output = run(true);
    if !output.status.success() {
        output = run(false);
    }
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn rust_version_covers_every_locked_dependency_and_the_running_compiler() {
    let metadata = metadata();
    let resolved: Vec<&str> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("the resolve lists its nodes")
        .iter()
        .filter_map(|node| node["id"].as_str())
        .collect();
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .expect("the workspace lists its members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages = metadata["packages"].as_array().expect("a package list");
    let rust_version = |package: &Value| package["rust_version"].as_str().map(version);

    let declared: Vec<(u64, u64, u64)> = packages
        .iter()
        .filter(|package| members.contains(&package["id"].as_str().unwrap_or_default()))
        .map(|package| {
            rust_version(package).unwrap_or_else(|| {
                panic!(
                    "workspace member {} declares a rust-version",
                    package["name"]
                )
            })
        })
        .collect();
    assert_eq!(declared.len(), members.len(), "every member was found");
    let workspace = declared[0];
    assert!(
        declared.iter().all(|member| *member == workspace),
        "members share the workspace rust-version: {declared:?}"
    );

    let (needed, by) = packages
        .iter()
        .filter(|package| resolved.contains(&package["id"].as_str().unwrap_or_default()))
        .filter_map(|package| Some((rust_version(package)?, package["name"].to_string())))
        .max()
        .expect("some locked package declares a rust-version");
    assert!(
        workspace >= needed,
        "the workspace's rust-version {workspace:?} is below {by}'s {needed:?}"
    );

    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .arg("--version")
        .output()
        .expect("rustc runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let running = text
        .split_whitespace()
        .nth(1)
        .map(|number| version(number.split('-').next().unwrap_or(number)))
        .expect("`rustc --version` prints `rustc X.Y.Z ...`");
    assert!(
        running >= workspace,
        "rustc {running:?} is older than the declared rust-version {workspace:?}"
    );
}
