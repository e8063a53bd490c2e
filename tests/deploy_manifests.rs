//! The Kubernetes manifests under `deploy/`, checked by `cargo test` alone. Each
//! kustomization is built here the way kustomize builds it, for the features the manifests use
//! (resources, JSON 6902 patches, namespace, images; any other field fails the test). Every
//! built object is read into its typed Kubernetes API object (k8s-openapi) and must serialize
//! back to exactly the JSON it came from, so an unknown or misspelled field or a wrong type
//! fails. Then the objects must agree with each other and with the `eddy` command line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use eddy::config::{Cli, Command};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service, ServiceAccount, Volume};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every kustomization under `deploy/`, relative to the repository.
const KUSTOMIZATIONS: [&str; 2] = ["deploy/base", "deploy/overlays/beside-goldmane"];

/// The path of the binary in the image (see the Dockerfile).
const BINARY: &str = "/usr/local/bin/eddy";

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The part of kustomize's `Kustomization` these manifests use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    patches: Vec<PatchEntry>,
    #[serde(default)]
    images: Vec<ImageEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchEntry {
    path: String,
    target: PatchTarget,
    #[serde(default)]
    options: PatchOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchTarget {
    kind: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PatchOptions {
    #[serde(default)]
    allow_name_change: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ImageEntry {
    name: String,
    #[serde(default)]
    new_name: Option<String>,
    #[serde(default)]
    new_tag: Option<String>,
}

/// Every YAML document of `path`, as JSON values.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{} cannot be read: {error}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{} is not valid YAML: {error}", path.display()))
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn field<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is missing in {object}"))
}

/// Builds the kustomization in `directory` (relative to the repository).
fn build(directory: &Path) -> Vec<Value> {
    let file = directory.join("kustomization.yaml");
    let [document] = documents(&file)
        .try_into()
        .unwrap_or_else(|documents: Vec<_>| {
            panic!("{} holds {} documents", file.display(), documents.len())
        });
    let kustomization: Kustomization = serde_json::from_value(document)
        .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
    assert_eq!(kustomization.api_version, "kustomize.config.k8s.io/v1beta1");
    assert_eq!(kustomization.kind, "Kustomization");
    let mut objects = Vec::new();
    for resource in &kustomization.resources {
        let path = directory.join(resource);
        assert!(
            path.exists(),
            "{}: resource {resource} does not exist",
            file.display()
        );
        if path.is_dir() {
            objects.extend(build(&path));
        } else {
            objects.extend(documents(&path));
        }
    }
    for entry in &kustomization.patches {
        apply_patch(directory, entry, &mut objects);
    }
    if let Some(namespace) = &kustomization.namespace {
        for object in &mut objects {
            object["metadata"]["namespace"] = Value::from(namespace.as_str());
        }
    }
    for image in &kustomization.images {
        let replaced = set_image(image, &mut objects);
        assert!(
            replaced > 0,
            "{}: image {} is used by no container",
            file.display(),
            image.name
        );
    }
    objects
}

fn apply_patch(directory: &Path, entry: &PatchEntry, objects: &mut [Value]) {
    let path = directory.join(&entry.path);
    let [operations] = documents(&path)
        .try_into()
        .unwrap_or_else(|documents: Vec<_>| {
            panic!("{} holds {} documents", path.display(), documents.len())
        });
    let patch: json_patch::Patch = serde_json::from_value(operations)
        .unwrap_or_else(|error| panic!("{} is not a JSON 6902 patch: {error}", path.display()));
    let mut matched = 0;
    for object in objects.iter_mut() {
        if field(object, "/kind") != entry.target.kind
            || field(object, "/metadata/name") != entry.target.name
        {
            continue;
        }
        matched += 1;
        json_patch::patch(object, &patch)
            .unwrap_or_else(|error| panic!("{} does not apply: {error}", path.display()));
        if !entry.options.allow_name_change {
            assert_eq!(
                field(object, "/metadata/name"),
                entry.target.name,
                "{}",
                path.display()
            );
        }
    }
    assert_eq!(
        matched,
        1,
        "{} must patch exactly one {} named {}",
        path.display(),
        entry.target.kind,
        entry.target.name
    );
}

/// Points containers that use `image.name` at the new name and tag; returns how many.
fn set_image(image: &ImageEntry, objects: &mut [Value]) -> usize {
    let mut replaced = 0;
    for object in objects.iter_mut() {
        let Some(containers) = object
            .pointer_mut("/spec/template/spec/containers")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for container in containers {
            let current = container["image"].as_str().unwrap_or_default();
            let name = current.split(['@', ':']).next().unwrap_or_default();
            if name != image.name {
                continue;
            }
            let name = image.new_name.as_deref().unwrap_or(name);
            container["image"] = Value::from(match &image.new_tag {
                Some(tag) => format!("{name}:{tag}"),
                None => name.to_string(),
            });
            replaced += 1;
        }
    }
    replaced
}

/// The first place where `left` and `right` differ, as a JSON pointer with both values.
fn first_difference(left: &Value, right: &Value, at: &str) -> Option<String> {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => l
            .keys()
            .chain(r.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .find_map(|key| {
                let (a, b) = (l.get(key), r.get(key));
                match (a, b) {
                    (Some(a), Some(b)) => first_difference(a, b, &format!("{at}/{key}")),
                    _ => Some(format!("{at}/{key}: {a:?} against {b:?}")),
                }
            }),
        (Value::Array(l), Value::Array(r)) if l.len() == r.len() => l
            .iter()
            .zip(r)
            .enumerate()
            .find_map(|(index, (a, b))| first_difference(a, b, &format!("{at}/{index}"))),
        _ => (left != right).then(|| format!("{at}: {left} against {right}")),
    }
}

/// Reads `object` as a `T` and checks that nothing was dropped or changed on the way.
fn round_trip<T: DeserializeOwned + Serialize>(object: &Value, origin: &str) -> T {
    let typed: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|error| panic!("{origin}: not a valid object: {error}"));
    let back = serde_json::to_value(&typed).expect("typed Kubernetes objects serialize");
    if let Some(difference) = first_difference(object, &back, "") {
        panic!("{origin}: a field is unknown to the API or has the wrong form: {difference} (as written against as the API reads it)");
    }
    typed
}

/// The objects of one build, typed.
#[derive(Default)]
struct Built {
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    service_accounts: Vec<ServiceAccount>,
    budgets: Vec<PodDisruptionBudget>,
    config_maps: Vec<ConfigMap>,
}

fn validate(kustomization: &str) -> Built {
    let mut built = Built::default();
    for object in build(&repository().join(kustomization)) {
        let kind = field(&object, "/kind").to_string();
        let origin = format!(
            "{kustomization}: {kind} {}",
            field(&object, "/metadata/name")
        );
        match (field(&object, "/apiVersion"), kind.as_str()) {
            ("apps/v1", "Deployment") => built.deployments.push(round_trip(&object, &origin)),
            ("v1", "Service") => built.services.push(round_trip(&object, &origin)),
            ("v1", "ServiceAccount") => built.service_accounts.push(round_trip(&object, &origin)),
            ("policy/v1", "PodDisruptionBudget") => {
                built.budgets.push(round_trip(&object, &origin))
            }
            ("v1", "ConfigMap") => built.config_maps.push(round_trip(&object, &origin)),
            (version, kind) => panic!("{origin}: no schema here for {version} {kind}"),
        }
    }
    built
}

fn name_of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    metadata.name.as_deref().expect("every object is named")
}

fn pod(deployment: &Deployment) -> (&BTreeMap<String, String>, &PodSpec) {
    let spec = deployment.spec.as_ref().expect("a Deployment has a spec");
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    (
        labels.expect("pods are labelled"),
        spec.template
            .spec
            .as_ref()
            .expect("a pod template has a spec"),
    )
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn env(container: &Container) -> BTreeMap<&str, &str> {
    container
        .env
        .iter()
        .flatten()
        .map(|var| (var.name.as_str(), var.value.as_deref().unwrap_or_default()))
        .collect()
}

/// The volume mounted at the deepest mount path that holds `file`, and whether it is read-only.
fn volume_holding<'a>(pod: &'a PodSpec, container: &Container, file: &str) -> (&'a Volume, bool) {
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|mount| Path::new(file).starts_with(&mount.mount_path))
        .max_by_key(|mount| mount.mount_path.len())
        .unwrap_or_else(|| panic!("{file} is on no mounted volume (the root is read-only)"));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|volume| volume.name == mount.name)
        .unwrap_or_else(|| panic!("mount {} names no volume", mount.name));
    (volume, mount.read_only == Some(true))
}

/// The environment variables `eddy serve` reads, hidden flags included.
fn serve_variables() -> BTreeSet<String> {
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("eddy has a serve subcommand");
    serve
        .get_arguments()
        .filter_map(|argument| argument.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

/// Checks one built kustomization: names, references, probes, environment, security.
fn check_consistency(built: &Built, name: &str) {
    let [deployment] = built.deployments.as_slice() else {
        panic!("one Deployment");
    };
    let spec = deployment.spec.as_ref().expect("a Deployment has a spec");
    let (labels, pod) = pod(deployment);
    let selector = spec.selector.match_labels.as_ref().expect("matchLabels");
    assert!(selects(selector, labels), "the Deployment selects its pods");
    assert_eq!(spec.replicas, Some(1), "one server receives every report");
    assert_eq!(name_of(&deployment.metadata), name);

    let account = pod
        .service_account_name
        .as_deref()
        .expect("a service account");
    assert!(built
        .service_accounts
        .iter()
        .any(|sa| name_of(&sa.metadata) == account));

    let [container] = pod.containers.as_slice() else {
        panic!("one container");
    };
    let command: Vec<&str> = container
        .command
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    assert_eq!(command, [BINARY, "serve"]);
    assert!(matches!(
        Cli::try_parse_from(["eddy", "serve"]).map(|cli| cli.command),
        Ok(Command::Serve(_))
    ));
    let ports: BTreeMap<&str, i32> = container
        .ports
        .iter()
        .flatten()
        .map(|port| {
            (
                port.name.as_deref().expect("named ports"),
                port.container_port,
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([("grpc", 7443), ("health", 8080), ("metrics", 9094)])
    );

    let variables = env(container);
    let known = serve_variables();
    for variable in variables.keys() {
        assert!(
            known.contains(*variable),
            "{variable} is not read by `eddy serve`"
        );
    }
    assert_eq!(variables["PORT"], "7443");
    assert_eq!(variables["HEALTH_PORT"], "8080");
    assert_eq!(variables["PROMETHEUS_PORT"], "9094");

    for (probe, kind) in [
        (&container.readiness_probe, "readiness"),
        (&container.liveness_probe, "liveness"),
    ] {
        let exec = probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .expect("exec probes");
        let argv: Vec<&str> = exec.command.iter().flatten().map(String::as_str).collect();
        assert_eq!(
            argv[..2],
            [BINARY, "health"],
            "{kind} probe runs eddy health"
        );
        let parsed = Cli::try_parse_from(std::iter::once("eddy").chain(argv[1..].iter().copied()))
            .unwrap_or_else(|error| panic!("the {kind} probe does not parse: {error}"));
        let Command::Health(health) = parsed.command else {
            panic!("the {kind} probe is not `eddy health`");
        };
        assert_eq!(health.probe.path(), format!("/{kind}"));
        assert_eq!(
            i32::from(health.port),
            ports["health"],
            "the {kind} probe asks the health port"
        );
    }

    let (key_pair, read_only) = volume_holding(pod, container, variables["SERVER_CERT_PATH"]);
    assert!(read_only);
    let secret = key_pair.secret.as_ref().expect("the key pair is a secret");
    let (key_volume, _) = volume_holding(pod, container, variables["SERVER_KEY_PATH"]);
    assert_eq!(
        key_volume.name, key_pair.name,
        "certificate and key come from one secret"
    );
    assert!(variables["SERVER_CERT_PATH"].ends_with("/tls.crt"));
    assert!(variables["SERVER_KEY_PATH"].ends_with("/tls.key"));
    let (bundle, read_only) = volume_holding(pod, container, variables["CA_CERT_PATH"]);
    assert!(read_only);
    let bundle = bundle
        .config_map
        .as_ref()
        .expect("the CA bundle is a config map");
    assert_eq!(bundle.name, "tigera-ca-bundle");
    assert!(variables["CA_CERT_PATH"].ends_with("/tigera-ca-bundle.crt"));
    let (state, read_only) = volume_holding(pod, container, variables["EDDY_EMITTER_STATE"]);
    assert!(
        !read_only && state.empty_dir.is_some(),
        "the emitter's state is writable"
    );
    let (data, read_only) = volume_holding(pod, container, variables["EDDY_DATA_DIR"]);
    assert!(
        !read_only && data.empty_dir.is_some(),
        "the data directory is writable"
    );
    for volume in pod.volumes.iter().flatten() {
        assert!(
            container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == volume.name),
            "volume {} is mounted",
            volume.name
        );
    }

    let security = container
        .security_context
        .as_ref()
        .expect("a security context");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.run_as_non_root, Some(true));
    let pod_security = pod
        .security_context
        .as_ref()
        .expect("a pod security context");
    assert!(pod_security.run_as_user.is_some_and(|uid| uid != 0));
    let resources = container.resources.as_ref().expect("resources");
    for map in [&resources.requests, &resources.limits] {
        let map = map.as_ref().expect("requests and limits");
        assert!(map.contains_key("cpu") && map.contains_key("memory"));
    }

    for service in &built.services {
        let spec = service.spec.as_ref().expect("a Service has a spec");
        let selector = spec.selector.as_ref().expect("a selector");
        assert!(
            selects(selector, labels),
            "{} selects the pods",
            name_of(&service.metadata)
        );
        for port in spec.ports.iter().flatten() {
            match &port.target_port {
                Some(IntOrString::String(target)) => {
                    assert!(ports.contains_key(target.as_str()), "port {target} exists")
                }
                other => panic!(
                    "{}: name the target port, not {other:?}",
                    name_of(&service.metadata)
                ),
            }
        }
    }
    for budget in &built.budgets {
        let spec = budget.spec.as_ref().expect("a budget has a spec");
        let selector = spec.selector.as_ref().and_then(|s| s.match_labels.as_ref());
        assert!(selects(selector.expect("matchLabels"), labels));
    }
    let names: Vec<&str> = built
        .deployments
        .iter()
        .map(|d| &d.metadata)
        .chain(built.services.iter().map(|s| &s.metadata))
        .chain(built.service_accounts.iter().map(|s| &s.metadata))
        .chain(built.budgets.iter().map(|b| &b.metadata))
        .map(|metadata| {
            assert_eq!(metadata.namespace.as_deref(), Some("calico-system"));
            name_of(metadata)
        })
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with(name)),
        "{names:?} all belong to {name}"
    );
    assert!(secret.secret_name.is_some());
}

fn grpc_service<'a>(built: &'a Built, name: &str) -> &'a Service {
    built
        .services
        .iter()
        .find(|service| name_of(&service.metadata) == name)
        .unwrap_or_else(|| panic!("a Service named {name}"))
}

#[test]
fn every_kustomization_under_deploy_is_checked() {
    let mut found = BTreeSet::new();
    let mut pending = vec![repository().join("deploy")];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).expect("deploy/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .file_name()
                .is_some_and(|name| name == "kustomization.yaml")
            {
                let relative = path.parent().expect("a parent").strip_prefix(repository());
                found.insert(
                    relative
                        .expect("under the repository")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let listed: BTreeSet<String> = KUSTOMIZATIONS.iter().map(|k| k.to_string()).collect();
    assert_eq!(found, listed);
}

#[test]
fn the_base_is_goldmane_in_calico_system() {
    let built = validate("deploy/base");
    check_consistency(&built, "goldmane");
    let service = grpc_service(&built, "goldmane");
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .expect("ports");
    assert_eq!(ports.iter().map(|p| p.port).collect::<Vec<_>>(), [7443]);
    let (_, pod) = pod(&built.deployments[0]);
    let secret = pod.volumes.iter().flatten().find_map(|v| v.secret.as_ref());
    assert_eq!(
        secret.and_then(|s| s.secret_name.as_deref()),
        Some("goldmane-key-pair")
    );
    assert_eq!(pod.containers[0].image.as_deref(), Some("eddy:0.1.0"));
}

#[test]
fn the_overlay_runs_eddy_beside_goldmane_with_its_own_names_and_certificate() {
    let built = validate("deploy/overlays/beside-goldmane");
    check_consistency(&built, "eddy");
    grpc_service(&built, "eddy");
    grpc_service(&built, "eddy-metrics");
    let (labels, pod) = pod(&built.deployments[0]);
    assert_eq!(labels.get("k8s-app").map(String::as_str), Some("eddy"));
    let secret = pod.volumes.iter().flatten().find_map(|v| v.secret.as_ref());
    assert_eq!(
        secret.and_then(|s| s.secret_name.as_deref()),
        Some("eddy-key-pair")
    );
}

#[test]
fn a_misspelled_or_mistyped_field_fails_the_round_trip() {
    let object = documents(&repository().join("deploy/base/service.yaml")).remove(0);
    round_trip::<Service>(&object, "as written");
    let mut misspelled = object.clone();
    misspelled["spec"]["selectr"] = serde_json::json!({"k8s-app": "goldmane"});
    let caught = std::panic::catch_unwind(|| round_trip::<Service>(&misspelled, "misspelled"));
    assert!(caught.is_err(), "an unknown field is refused");
    let mut mistyped = object;
    mistyped["spec"]["ports"][0]["port"] = Value::from("7443");
    let caught = std::panic::catch_unwind(|| round_trip::<Service>(&mistyped, "mistyped"));
    assert!(caught.is_err(), "a string port is refused");
}
