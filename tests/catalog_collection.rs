//! The catalog collector through a real server: names and label sets that no retained flow
//! uses are removed once they have been unused at two epoch ends in a row (SPEC §2.3 expiry
//! releases them), while names in use, and the names of policy rules, stay; a removed name that
//! comes back gets a new id and is listed as before.

mod common;

use common::*;
use eddy::catalog::collector::CatalogCollector;
use eddy::proto::{Action, PolicyKind, PolicyTrace};
use eddy::retention::Retention;

/// Window 1 s, five closed buckets: at `NOW` the buckets `NOW-5 ..= NOW+1` exist.
const SHORT: Retention = Retention {
    window: 1,
    closed_buckets: 5,
};

fn labelled_flow(source_pod: &str, labels: &[&str], start: i64) -> eddy::proto::Flow {
    let mut key = key(("shop", source_pod), ("shop", "cart"));
    key.policies = Some(PolicyTrace {
        enforced_policies: vec![hit(
            PolicyKind::CalicoNetworkPolicy,
            "security",
            "shop",
            "allow-cart",
            Action::Allow,
        )],
        pending_policies: vec![],
    });
    let mut flow = flow(key, start, 3);
    flow.source_labels = strings(labels);
    flow
}

fn label_set(labels: &[&str]) -> Vec<String> {
    strings(labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_names_and_label_sets_are_removed_after_two_epochs_and_can_come_back() {
    let server = TestServer::start_with(2, SHORT, NOW).await;
    let catalog = server.state.catalog.clone();
    server
        .ingest(vec![
            labelled_flow("web-aaa", &["pod-template-hash=aaa"], NOW - 1),
            labelled_flow("web-kept", &["app=kept"], NOW),
        ])
        .await;
    let old_pod = catalog
        .symbols
        .lookup("web-aaa")
        .expect("interned on ingest");
    let old_labels = catalog
        .label_sets
        .lookup(&label_set(&["pod-template-hash=aaa"])[..])
        .expect("interned on ingest");

    let mut collector = CatalogCollector::new(server.state.engine.clone(), catalog.clone());
    collector.collect().await.expect("the engine runs");
    collector.collect().await.expect("the engine runs");
    assert_eq!(
        catalog.symbols.lookup("web-aaa"),
        Some(old_pod),
        "a name a retained flow uses stays"
    );

    // NOW - 1 leaves retention; NOW stays.
    server.advance_clock(5).await;
    collector.collect().await.expect("the engine runs");
    assert!(
        catalog.symbols.lookup("web-aaa").is_some(),
        "one epoch unused is not enough"
    );
    collector.collect().await.expect("the engine runs");
    assert_eq!(catalog.symbols.lookup("web-aaa"), None);
    assert_eq!(
        catalog
            .label_sets
            .lookup(&label_set(&["pod-template-hash=aaa"])[..]),
        None
    );
    assert!(catalog.symbols.lookup("web-kept").is_some());
    assert!(catalog
        .label_sets
        .lookup(&label_set(&["app=kept"])[..])
        .is_some());
    for rule_name in ["security", "shop", "allow-cart", "cart", "TCP", ""] {
        assert!(
            catalog.symbols.lookup(rule_name).is_some(),
            "{rule_name:?} is still used"
        );
    }
    assert!(
        catalog
            .removed
            .strings
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert!(
        catalog
            .removed
            .label_sets
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // The name comes back (in the newest closed bucket, which the default List range covers):
    // a new id, listed with its name and labels.
    server
        .ingest(vec![labelled_flow(
            "web-aaa",
            &["pod-template-hash=aaa"],
            NOW + 4,
        )])
        .await;
    let new_pod = catalog.symbols.lookup("web-aaa").expect("interned again");
    assert_ne!(new_pod, old_pod, "ids are never reused");
    let new_labels = catalog
        .label_sets
        .lookup(&label_set(&["pod-template-hash=aaa"])[..])
        .expect("interned again");
    assert_ne!(new_labels, old_labels);
    let listed: Vec<(String, Vec<String>)> = server
        .list_all()
        .await
        .iter()
        .map(|result| {
            let flow = flow_of(result);
            (
                key_of(result).source_name.clone(),
                flow.source_labels.clone(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&("web-aaa".to_string(), label_set(&["pod-template-hash=aaa"]))));
    assert!(listed.contains(&("web-kept".to_string(), label_set(&["app=kept"]))));
    common::assert_accounting(&server.state);
}
