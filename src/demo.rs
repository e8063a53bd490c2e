//! Demo traffic: a small simulated cluster whose nodes report flows to the server over its own
//! gRPC `Connect`, every few seconds, so a newcomer sees flows at once (`eddy serve --demo`).
//!
//! The cluster is [`Cluster::demo`]: fixed and seeded, a few namespaces with services, clients
//! calling them, denied probes from the public network, policy traces with tiers, staged
//! policies and end-of-tier hits, and pod labels. `eddy flowgen` drives larger clusters from
//! the same synthesis (`crate::synth`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio_stream::wrappers::ReceiverStream;

use crate::proto::flow_collector_client::FlowCollectorClient;
use crate::proto::FlowUpdate;
use crate::synth::Cluster;

/// How often each simulated node reports.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Runs `nodes` simulated nodes against the server at `server` until the task is dropped.
pub async fn run(
    server: SocketAddr,
    nodes: usize,
    now: impl Fn() -> i64 + Send + Sync + Clone + 'static,
) {
    let cluster = Arc::new(Cluster::demo(nodes));
    for node in 0..nodes {
        let now = now.clone();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(node as u64);
            loop {
                if let Err(error) = report_forever(server, &cluster, node, &mut rng, &now).await {
                    tracing::debug!(node, %error, "demo node lost its connection; retrying");
                }
                tokio::time::sleep(REPORT_INTERVAL).await;
            }
        });
    }
}

async fn report_forever(
    server: SocketAddr,
    cluster: &Cluster,
    node: usize,
    rng: &mut SmallRng,
    now: &(impl Fn() -> i64 + Send + Sync),
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{server}"))?
        .connect()
        .await?;
    let mut client = FlowCollectorClient::new(channel);
    let (updates, outbound) = tokio::sync::mpsc::channel(256);
    let mut receipts = client
        .connect(ReceiverStream::new(outbound))
        .await?
        .into_inner();
    loop {
        for flow in cluster.report(node, now(), rng) {
            updates.send(FlowUpdate { flow: Some(flow) }).await?;
            receipts.message().await?;
        }
        tokio::time::sleep(REPORT_INTERVAL).await;
    }
}
