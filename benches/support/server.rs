//! An Eddy server on a loopback socket in the bench's process, and channels to it.

use std::net::SocketAddr;
use std::sync::Arc;

use eddy::server::{build_state, serve, ServerConfig};
use eddy::state::ServerState;
use eddy::worker::clock::Clock;
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// One worker per core of the machine.
pub fn workers_per_core() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A listener on a free loopback port, and its address.
pub async fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let address = listener.local_addr().expect("an address");
    (listener, address)
}

/// Builds a server with `config` and `clock` and serves it on a loopback port until the
/// process ends; returns its state and address.
pub async fn start_server(
    config: ServerConfig,
    clock: Arc<dyn Clock>,
) -> (ServerState, SocketAddr) {
    let state = build_state(config, clock).expect("the engine starts");
    let (listener, address) = loopback_listener().await;
    tokio::spawn(serve(state.clone(), listener, std::future::pending()));
    (state, address)
}

/// A new connection to the server at `address`, with Nagle's algorithm off.
pub async fn connect(address: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("the server is up")
}
