//! The transport-only baseline: a gRPC server on the same stack as Eddy (tonic, prost, the
//! counting mimalloc) whose `Connect` decodes each `FlowUpdate` into the generated message and
//! sends its receipt, nothing else. It runs as a child process of the bench (the bench's own
//! executable with the argument [`BASELINE_ARGUMENT`]) so its CPU time is its own.
//!
//! The child prints its address on its first line of standard output, then answers every line
//! on its standard input with its allocation count; it exits when its standard input closes.

#![allow(
    clippy::print_stdout,
    reason = "the child reports to the bench on its stdout"
)]

use std::io::{BufRead, Write};
use std::pin::Pin;

use eddy::proto::flow_collector_server::{FlowCollector, FlowCollectorServer};
use eddy::proto::{FlowReceipt, FlowUpdate};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::support::heap::allocations;

/// The argument that runs the bench's executable as the baseline server.
pub const BASELINE_ARGUMENT: &str = "baseline-server";

/// A `Connect` that answers every update with a receipt and does nothing else.
struct ReceiptsOnly;

#[tonic::async_trait]
impl FlowCollector for ReceiptsOnly {
    type ConnectStream = Pin<Box<dyn Stream<Item = Result<FlowReceipt, Status>> + Send>>;

    async fn connect(
        &self,
        request: Request<Streaming<FlowUpdate>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let (receipts, outbound) = mpsc::channel(4096);
        tokio::spawn(async move {
            while let Ok(Some(_update)) = inbound.message().await {
                if receipts.send(Ok(FlowReceipt {})).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }
}

/// Runs the baseline server until standard input closes (the bench calls this when started
/// with [`BASELINE_ARGUMENT`]).
pub fn serve_as_child() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("a bound address");
        println!("{address}");
        std::io::stdout().flush().expect("stdout is open");
        std::thread::spawn(answer_allocation_queries);
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(FlowCollectorServer::new(ReceiptsOnly))
            .serve_with_incoming(incoming)
            .await
            .expect("the baseline serves");
    });
}

/// Answers each line of standard input with the allocation count; exits the process when
/// standard input closes (the bench has gone).
fn answer_allocation_queries() {
    for _line in std::io::stdin().lock().lines().map_while(Result::ok) {
        println!("{}", allocations());
        if std::io::stdout().flush().is_err() {
            break;
        }
    }
    std::process::exit(0);
}
