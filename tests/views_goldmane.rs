//! Goldmane's views (flows, hints, policy statistics) as registry entries, over real gRPC:
//! listed by `ListViews`, read through `eddy.views.v1.Read` with concrete values, and in
//! agreement with `Flows.List`, `Flows.FilterHints` and `Statistics.List` on the same data
//! (SPEC §14.1–§14.3; §4, §6 and §8 for the Goldmane side). With 1 and 2 workers.

mod common;

use std::collections::BTreeMap;

use common::*;
use eddy::proto::views::value::Kind;
use eddy::proto::views::views_client::ViewsClient;
use eddy::proto::views::{Filter, ListViewsRequest, ReadRequest, ReadResponse, Value};
use eddy::proto::{
    Action, FilterHintsRequest, FilterType, Flow, PolicyKind, PolicyTrace, StatisticType,
    StatisticsGroupBy, StatisticsRequest,
};

/// Three flows, each hitting the policy `default/shop/web` (allow): shop/frontend →
/// shop/cart (3 packets each way) and shop/checkout → payments/api (10) in the last closed
/// bucket, web/proxy → shop/frontend (1) two buckets earlier. 100 bytes a packet.
fn traffic() -> Vec<Flow> {
    let recent = bucket(NOW) - WINDOW + 1;
    let earlier = recent - 2 * WINDOW;
    let web = hit(
        PolicyKind::CalicoNetworkPolicy,
        "default",
        "shop",
        "web",
        Action::Allow,
    );
    let traced = |source, dest| {
        let mut key = key(source, dest);
        key.policies = Some(PolicyTrace {
            enforced_policies: vec![web.clone()],
            pending_policies: vec![web.clone()],
        });
        key
    };
    vec![
        flow(traced(("shop", "frontend"), ("shop", "cart")), recent, 3),
        flow(
            traced(("shop", "checkout"), ("payments", "api")),
            recent,
            10,
        ),
        flow(traced(("web", "proxy"), ("shop", "frontend")), earlier, 1),
    ]
}

fn views(server: &TestServer) -> ViewsClient<tonic::transport::Channel> {
    ViewsClient::new(server.channel.clone())
}

async fn read(server: &TestServer, view: &str, filters: Vec<Filter>) -> ReadResponse {
    views(server)
        .read(ReadRequest {
            view: view.into(),
            filters,
            ..ReadRequest::default()
        })
        .await
        .expect("the read succeeds")
        .into_inner()
}

/// Each row of `answer` by column name.
fn named(answer: &ReadResponse) -> Vec<BTreeMap<String, Kind>> {
    answer
        .rows
        .iter()
        .map(|row| {
            answer
                .columns
                .iter()
                .zip(&row.values)
                .filter_map(|(column, value)| Some((column.name.clone(), value.kind.clone()?)))
                .collect()
        })
        .collect()
}

fn text(row: &BTreeMap<String, Kind>, column: &str) -> String {
    match row.get(column) {
        Some(Kind::StringValue(text)) => text.clone(),
        other => panic!("column {column} holds no string: {other:?}"),
    }
}

fn number(row: &BTreeMap<String, Kind>, column: &str) -> i64 {
    match row.get(column) {
        Some(Kind::IntegerValue(number)) => *number,
        other => panic!("column {column} holds no integer: {other:?}"),
    }
}

fn filter(column: &str, kind: Kind) -> Filter {
    Filter {
        column: column.into(),
        value: Some(Value { kind: Some(kind) }),
    }
}

#[tokio::test]
async fn list_views_lists_goldmanes_views_after_the_others() {
    let server = TestServer::start(1).await;
    let listed = views(&server)
        .list_views(ListViewsRequest {})
        .await
        .expect("ListViews succeeds")
        .into_inner();
    let names: Vec<&str> = listed.views.iter().map(|view| view.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "top_talkers",
            "dns",
            "policy_changes",
            "flows",
            "hints",
            "policy_stats"
        ]
    );
    let flows = &listed.views[3];
    assert_eq!(flows.default_sort, "start_time");
    assert!(flows.default_descending);
    let columns: Vec<&str> = flows.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(&columns[..3], &["id", "source_name", "source_namespace"]);
    assert_eq!(columns.len(), 25);
}

#[tokio::test]
async fn the_flows_view_reads_each_flow_as_flows_list_does() {
    for workers in [1, 2] {
        let server = TestServer::start(workers).await;
        server.ingest(traffic()).await;
        let answer = read(&server, "flows", Vec::new()).await;
        let mut rows: Vec<(String, String, i64, i64, i64, i64)> = named(&answer)
            .iter()
            .map(|row| {
                (
                    text(row, "source_name"),
                    text(row, "dest_name"),
                    number(row, "updates"),
                    number(row, "packets_in"),
                    number(row, "bytes_out"),
                    number(row, "id"),
                )
            })
            .collect();
        rows.sort();
        let listed = server.list_all().await;
        assert_eq!(listed.len(), 3, "{workers} workers");
        let id_of = |source: &str| {
            listed
                .iter()
                .find(|result| key_of(result).source_name == source)
                .map(|result| result.id)
                .expect("Flows.List has the flow")
        };
        assert_eq!(
            rows,
            vec![
                (
                    "checkout".into(),
                    "api".into(),
                    1,
                    10,
                    1000,
                    id_of("checkout")
                ),
                (
                    "frontend".into(),
                    "cart".into(),
                    1,
                    3,
                    300,
                    id_of("frontend")
                ),
                ("proxy".into(), "frontend".into(), 1, 1, 100, id_of("proxy")),
            ],
            "{workers} workers"
        );
        for result in &listed {
            let flow = flow_of(result);
            let row = named(&answer)
                .into_iter()
                .find(|row| number(row, "id") == result.id)
                .expect("the view has every listed flow");
            assert_eq!(number(&row, "packets_in"), flow.packets_in);
            assert_eq!(number(&row, "packets_out"), flow.packets_out);
            assert_eq!(number(&row, "bytes_in"), flow.bytes_in);
            assert_eq!(text(&row, "dest_namespace"), key_of(result).dest_namespace);
        }
        let per_bucket = views(&server)
            .read(ReadRequest {
                view: "flows".into(),
                per_bucket: true,
                filters: vec![filter("dest_namespace", Kind::StringValue("shop".into()))],
                ..ReadRequest::default()
            })
            .await
            .expect("the read succeeds")
            .into_inner();
        let starts: Vec<(String, i64, i64)> = named(&per_bucket)
            .iter()
            .map(|row| {
                let Some(Kind::TimestampValue(start)) = row.get("start_time") else {
                    panic!("start_time is a timestamp");
                };
                let Some(Kind::TimestampValue(end)) = row.get("end_time") else {
                    panic!("end_time is a timestamp");
                };
                (text(row, "source_name"), *start, *end)
            })
            .collect();
        let recent = bucket(NOW) - WINDOW;
        assert_eq!(
            starts,
            vec![
                ("frontend".into(), recent, recent + WINDOW),
                ("proxy".into(), recent - 2 * WINDOW, recent - WINDOW),
            ],
            "{workers} workers: newest first"
        );
    }
}

#[tokio::test]
async fn the_hints_view_counts_the_values_filter_hints_lists() {
    for workers in [1, 2] {
        let server = TestServer::start(workers).await;
        server.ingest(traffic()).await;
        // FilterTypeDestNamespace is 3.
        let answer = read(
            &server,
            "hints",
            vec![filter("field", Kind::IntegerValue(3))],
        )
        .await;
        let mut counted: Vec<(String, i64)> = named(&answer)
            .iter()
            .map(|row| (text(row, "value"), number(row, "updates")))
            .collect();
        counted.sort();
        assert_eq!(
            counted,
            vec![("payments".into(), 1), ("shop".into(), 2)],
            "{workers} workers"
        );
        let hints = server
            .flows()
            .filter_hints(FilterHintsRequest {
                r#type: FilterType::DestNamespace as i32,
                ..FilterHintsRequest::default()
            })
            .await
            .expect("FilterHints succeeds")
            .into_inner();
        let listed: Vec<String> = hints.hints.into_iter().map(|hint| hint.value).collect();
        let values: Vec<String> = counted.into_iter().map(|(value, _)| value).collect();
        assert_eq!(listed, values, "{workers} workers");
    }
}

/// A policy row: tier, namespace, name, action, direction, updates, packets in, bytes out.
type PolicyRow = (String, String, String, i64, i64, i64, i64, i64);

#[tokio::test]
async fn the_policy_stats_view_sums_what_statistics_reports() {
    for workers in [1, 2] {
        let server = TestServer::start(workers).await;
        server.ingest(traffic()).await;
        let answer = read(
            &server,
            "policy_stats",
            vec![filter("per_rule", Kind::BoolValue(false))],
        )
        .await;
        let rows = named(&answer);
        let summed: Vec<PolicyRow> = rows
            .iter()
            .map(|row| {
                (
                    text(row, "tier"),
                    text(row, "namespace"),
                    text(row, "name"),
                    number(row, "action"),
                    number(row, "direction"),
                    number(row, "updates"),
                    number(row, "packets_in"),
                    number(row, "bytes_out"),
                )
            })
            .collect();
        // The destination reports every flow: ingress (1).
        assert_eq!(
            summed,
            vec![(
                "default".into(),
                "shop".into(),
                "web".into(),
                Action::Allow as i64,
                1,
                3,
                14,
                1400
            )],
            "{workers} workers"
        );
        let mut results = server
            .statistics()
            .list(StatisticsRequest {
                r#type: StatisticType::PacketCount as i32,
                group_by: StatisticsGroupBy::Policy as i32,
                ..StatisticsRequest::default()
            })
            .await
            .expect("Statistics succeeds")
            .into_inner();
        let result = results
            .message()
            .await
            .expect("the results stream has no error")
            .expect("one result");
        let policy = result.policy.as_ref().expect("the result names its policy");
        assert_eq!(
            (policy.tier.as_str(), policy.name.as_str()),
            ("default", "web")
        );
        assert_eq!(result.allowed_in, vec![number(&rows[0], "packets_in")]);
        assert_eq!(result.allowed_out, vec![number(&rows[0], "packets_out")]);
        assert!(
            results.message().await.expect("no error").is_none(),
            "one policy"
        );
    }
}
