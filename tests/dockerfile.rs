//! The Dockerfile's invariants, checked without a container engine: a multi-stage build with
//! the locked dependencies and a Rust at least the workspace's `rust-version`, a non-root
//! runtime stage holding the binary at the path the manifests' probes run, the ports the
//! manifests use, and a `.dockerignore` that keeps what the build needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;

fn read(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{} cannot be read: {error}", path.display()))
}

/// The instructions of a Dockerfile: continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (keyword, rest) = line.split_once(' ').unwrap_or((&line, ""));
            (keyword.to_uppercase(), rest.trim().to_string())
        })
        .collect()
}

/// `ARG NAME=default` values, with `${NAME}` in later defaults expanded.
fn arguments(instructions: &[(String, String)]) -> BTreeMap<String, String> {
    let mut arguments = BTreeMap::new();
    for (keyword, rest) in instructions {
        if keyword == "ARG" {
            if let Some((name, value)) = rest.split_once('=') {
                let value = expand(value, &arguments);
                arguments.insert(name.to_string(), value);
            }
        }
    }
    arguments
}

fn expand(text: &str, arguments: &BTreeMap<String, String>) -> String {
    arguments
        .iter()
        .fold(text.to_string(), |text, (name, value)| {
            text.replace(&format!("${{{name}}}"), value)
        })
}

/// The instructions of each stage, by the base image its `FROM` names (arguments expanded).
fn stages(instructions: &[(String, String)]) -> Vec<(String, Vec<(String, String)>)> {
    let arguments = arguments(instructions);
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (keyword, rest) in instructions {
        if keyword == "FROM" {
            let image = rest.split_whitespace().next().unwrap_or_default();
            stages.push((expand(image, &arguments), Vec::new()));
        } else if let Some((_, stage)) = stages.last_mut() {
            stage.push((keyword.clone(), rest.clone()));
        }
    }
    stages
}

/// `1.88.0` or `1.88` as comparable numbers.
fn version(text: &str) -> Vec<u32> {
    text.trim_matches('"')
        .split('.')
        .map(|part| part.parse().expect("a numeric version part"))
        .collect()
}

fn deployment() -> Deployment {
    serde_norway::from_str(&read("deploy/base/deployment.yaml"))
        .expect("the base Deployment parses")
}

#[test]
fn the_build_is_multi_stage_locked_and_new_enough() {
    let instructions = instructions(&read("Dockerfile"));
    let stages = stages(&instructions);
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (builder, build) = &stages[0];
    let (runtime, _) = &stages[1];
    assert!(builder.contains("rust:"), "{builder}");
    assert!(
        !runtime.contains("rust"),
        "the runtime carries no toolchain: {runtime}"
    );
    assert!(
        runtime.contains("distroless/cc"),
        "glibc for the binary: {runtime}"
    );
    let runs: Vec<&str> = build
        .iter()
        .filter(|(keyword, _)| keyword == "RUN")
        .map(|(_, rest)| rest.as_str())
        .collect();
    assert!(runs
        .iter()
        .any(|run| run.contains("cargo build --release --locked --bin eddy")));

    let arguments = arguments(&instructions);
    assert!(arguments.contains_key("SOURCE_DATE_EPOCH"));
    let manifest = read("Cargo.toml");
    let minimum = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .expect("the workspace sets rust-version");
    assert!(version(&arguments["RUST_VERSION"]) >= version(minimum));
}

#[test]
fn the_runtime_is_non_root_and_matches_the_manifests() {
    let stages = stages(&instructions(&read("Dockerfile")));
    let (_, runtime) = stages.last().expect("a runtime stage");
    let last = |keyword: &str| {
        runtime
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.clone())
            .unwrap_or_else(|| panic!("the runtime stage has {keyword}"))
    };
    let user = last("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|uid| uid.parse().ok())
        .expect("a numeric user, as runAsNonRoot needs");
    assert_ne!(uid, 0);

    let deployment = deployment();
    let pod = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .expect("a pod spec");
    let container = &pod.containers[0];
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_user),
        Some(i64::from(uid)),
        "the manifests run as the image's user"
    );
    let exposed: BTreeSet<i32> = last("EXPOSE")
        .split_whitespace()
        .map(|port| port.parse().expect("a numeric port"))
        .collect();
    let declared: BTreeSet<i32> = container
        .ports
        .iter()
        .flatten()
        .map(|port| port.container_port)
        .collect();
    assert_eq!(exposed, declared);

    let probe = container
        .readiness_probe
        .as_ref()
        .and_then(|probe| probe.exec.as_ref())
        .and_then(|exec| exec.command.as_ref())
        .expect("an exec readiness probe");
    let binary = probe[0].as_str();
    let copies_binary = runtime
        .iter()
        .any(|(keyword, rest)| keyword == "COPY" && rest.ends_with(&format!(" {binary}")));
    assert!(
        copies_binary,
        "the runtime stage puts the binary at {binary}"
    );
    assert_eq!(
        last("ENTRYPOINT"),
        format!("[\"{binary}\", \"serve\"]"),
        "the image serves by default"
    );
    assert_eq!(
        container.command.as_deref(),
        Some(&[binary.to_string(), "serve".to_string()][..])
    );
}

#[test]
fn dockerignore_keeps_what_the_build_needs() {
    let ignored: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    for excluded in ["target", ".git"] {
        assert!(
            ignored.contains(excluded),
            "{excluded} stays out of the context"
        );
    }
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src",
        "proto",
        "dataflows",
        "benches",
    ] {
        assert!(!ignored.contains(needed), "{needed} is needed by the build");
    }
}
