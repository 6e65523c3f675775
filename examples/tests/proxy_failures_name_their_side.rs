//! `tcp-proxy` prints `CLIENT -> UPSTREAM: what went wrong` for a connection that failed. A
//! reset (or any other failure of a read or a write) says which side it came from: a bare
//! `Connection reset by peer` after `CLIENT -> UPSTREAM` reads as the upstream's, whichever
//! peer it was.

use net_tests::HANG_LIMIT;
use net_tests::harness::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PROXY: &str = env!("CARGO_BIN_EXE_tcp-proxy");

/// The failure the proxy printed for the connection from `client`, after `CLIENT -> UPSTREAM: `.
fn failure_of(proxy: &mut Process, client: std::net::SocketAddr, upstream: u16) -> String {
    let start = format!("{client} -> 127.0.0.1:{upstream}: ");
    let line = proxy.stdout_line_where("the connection's line", |l| l.starts_with(&start));
    line[start.len()..].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_reported_with_the_side_that_sent_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = listener.local_addr().unwrap().port();
    let upstream_address = format!("127.0.0.1:{upstream_port}");
    let mut proxy = Process::start(PROXY, ["127.0.0.1:0", upstream_address.as_str()]);
    let port = proxy.listening_port_after_banner();

    // The client resets once its first bytes have reached the upstream.
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let me = client.local_addr().unwrap();
    let (mut upstream, _) = listener.accept().await.unwrap();
    client.write_all(b"request").await.unwrap();
    let mut request = [0; 7];
    let read = upstream.read_exact(&mut request);
    tokio::time::timeout(HANG_LIMIT, read)
        .await
        .unwrap()
        .unwrap();
    net_tests::fault::reset(client);
    let failure = failure_of(&mut proxy, me, upstream_port);
    assert_eq!(
        failure,
        "reading from the client: Connection reset by peer (os error 104)"
    );

    // The upstream resets once its first bytes have reached the client.
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let me = client.local_addr().unwrap();
    let (mut upstream, _) = listener.accept().await.unwrap();
    upstream.write_all(b"response").await.unwrap();
    let mut response = [0; 8];
    let read = client.read_exact(&mut response);
    tokio::time::timeout(HANG_LIMIT, read)
        .await
        .unwrap()
        .unwrap();
    net_tests::fault::reset(upstream);
    let failure = failure_of(&mut proxy, me, upstream_port);
    assert_eq!(
        failure,
        "reading from upstream: Connection reset by peer (os error 104)"
    );
    drop(client);

    proxy.signal("TERM");
    assert!(proxy.finish().status.success());
}
