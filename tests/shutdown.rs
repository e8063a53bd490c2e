//! Graceful shutdown of a real `eddy serve` process (SPEC §11.6): after SIGTERM, an open
//! stream and an open `Connect` call end with `UNAVAILABLE`, the process exits 0, and its last
//! log line shows that every receipted update reached the views.

mod common;
mod process;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{connect_channel, flow, key, send_on_new_connection, CollectorConn};
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::FlowStreamRequest;
use process::{serve_command, EddyProcess, SERVING, STOPPED};

#[tokio::test]
async fn sigterm_ends_calls_with_unavailable_processes_every_receipt_and_exits_zero() {
    let mut eddy = EddyProcess::start(serve_command(2));
    let serving = eddy.line(SERVING);
    let address: std::net::SocketAddr = serving["address"]
        .as_str()
        .expect("the address is logged")
        .parse()
        .expect("a socket address");
    let channel = connect_channel(address).await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let flows: Vec<_> = (0..40)
        .map(|n| {
            flow(
                key(("shop", "frontend"), ("shop", &format!("backend-{n}"))),
                now,
                1,
            )
        })
        .collect();
    assert_eq!(send_on_new_connection(&channel, flows).await, 40);
    let mut open = CollectorConn::open(&channel).await;
    open.send_and_wait(flow(key(("ops", "felix"), ("shop", "cart")), now, 1))
        .await;
    let mut stream = FlowsClient::new(channel.clone())
        .stream(FlowStreamRequest::default())
        .await
        .expect("Stream is accepted")
        .into_inner();

    eddy.terminate();

    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream must end with a status, not OK"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended}");
    let collector = open.next().await.expect_err("Connect ends with a status");
    assert_eq!(collector.code(), tonic::Code::Unavailable, "{collector}");

    let stopped = eddy.line(STOPPED);
    assert_eq!(stopped["received"], 41);
    assert_eq!(stopped["stored"], 41);
    assert_eq!(stopped["skipped"], 0);
    assert_eq!(
        stopped["records_in_views"], 41,
        "every receipted update was processed"
    );
    let status = eddy.child.wait().expect("the process exits");
    assert_eq!(status.code(), Some(0), "a clean exit");
}
