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

/// A flow whose trace is one hit of policy `name` at `policy_index`.
fn flow_with_policy(name: &str, policy_index: i64, start: i64, packets: i64) -> eddy::proto::Flow {
    let mut key = key(("shop", "web"), ("shop", "cart"));
    let mut policy = hit(
        PolicyKind::CalicoNetworkPolicy,
        "security",
        "shop",
        name,
        Action::Allow,
    );
    policy.policy_index = policy_index;
    key.policies = Some(PolicyTrace {
        enforced_policies: vec![policy],
        pending_policies: vec![],
    });
    flow(key, start, packets)
}

/// The packets in, per policy name, of every policy-level statistic.
async fn packets_by_policy(server: &TestServer) -> Vec<(String, i64)> {
    use eddy::proto::{StatisticType, StatisticsGroupBy, StatisticsRequest};
    let mut stream = server
        .statistics()
        .list(StatisticsRequest {
            r#type: StatisticType::PacketCount as i32,
            group_by: StatisticsGroupBy::Policy as i32,
            start_time_gte: NOW - 100,
            ..Default::default()
        })
        .await
        .expect("Statistics succeeds")
        .into_inner();
    let mut rows = Vec::new();
    while let Some(result) = stream.message().await.expect("results stream") {
        let name = result.policy.map(|policy| policy.name).unwrap_or_default();
        rows.push((name, result.allowed_in.iter().sum()));
    }
    rows.sort();
    rows
}

/// Many distinct `policy_index` values over retention cycles (the million-trace case scaled
/// down to a table of 12 traces): traces, their rules and their rules' names are removed once
/// no retained flow uses them, the tables level off, nothing is refused, and the statistics
/// show exactly the retained policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_and_their_rules_are_removed_so_distinct_policies_never_fill_the_tables() {
    use eddy::intern::TableLimit;
    let config = eddy::server::ServerConfig {
        catalog: eddy::catalog::CatalogLimits {
            strings: TableLimit::entries(40),
            traces: TableLimit::entries(12),
            trace_rules: TableLimit::entries(24),
            ..Default::default()
        },
        ..eddy::server::ServerConfig::new(2, SHORT)
    };
    let server = TestServer::start_config(config, NOW).await;
    let catalog = server.state.catalog.clone();
    let mut collector = CatalogCollector::new(server.state.engine.clone(), catalog.clone());
    let per_cycle = 5;
    let cycles = 8;
    for cycle in 0..cycles {
        let start = server.state.now() - 1;
        let flows = (0..per_cycle)
            .map(|n| {
                let index = cycle * per_cycle + n;
                flow_with_policy(&format!("policy-{index}"), index, start, index + 1)
            })
            .collect();
        server.ingest(flows).await;
        let expected: Vec<(String, i64)> = {
            let mut rows: Vec<_> = (0..per_cycle)
                .map(|n| {
                    let index = cycle * per_cycle + n;
                    (format!("policy-{index}"), index + 1)
                })
                .collect();
            rows.sort();
            rows
        };
        assert_eq!(packets_by_policy(&server).await, expected, "cycle {cycle}");
        // Everything of this cycle leaves retention; two rounds later it is gone.
        server.advance_clock(7).await;
        collector.collect().await.expect("the engine runs");
        collector.collect().await.expect("the engine runs");
        assert_eq!(packets_by_policy(&server).await, vec![], "cycle {cycle}");
        assert_eq!(catalog.traces.len(), 1, "only the empty trace is left");
        assert_eq!(catalog.rules.len(), 0);
        // A rule's name is unused from the round its trace goes: two rounds later it goes.
        if cycle > 0 {
            let earlier = format!("policy-{}", (cycle - 1) * per_cycle);
            assert_eq!(catalog.symbols.lookup(&earlier), None, "cycle {cycle}");
        }
        assert!(
            catalog.symbols.len() <= 6 + 2 * per_cycle as usize,
            "cycle {cycle}"
        );
    }
    assert_eq!(catalog.refused_total(), 0);
    assert_eq!(
        server.state.ingest.stored_total(),
        (per_cycle * cycles) as u64
    );
    assert!(
        catalog
            .removed
            .traces
            .load(std::sync::atomic::Ordering::Relaxed)
            >= (per_cycle * cycles) as u64
    );
    // A trace seen again after its removal gets a new id and its statistics again.
    server
        .ingest(vec![flow_with_policy(
            "policy-0",
            0,
            server.state.now() - 1,
            3,
        )])
        .await;
    assert_eq!(
        packets_by_policy(&server).await,
        vec![("policy-0".to_string(), 3)]
    );
}
