//! Graceful shutdown and connection accounting: what a shutdown waits for, and what the peers
//! of the connections it cuts see. (Guards: each passed on the code as it was.)

use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::within;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

async fn bound(
    selector: &SelectorManager,
    configure: impl FnOnce(net_sockets::TcpSocketBuilder) -> net_sockets::TcpSocketBuilder,
) -> (ServerSocket, std::net::SocketAddr) {
    let server = configure(a_socket(selector).tcp())
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    (server, address)
}

/// Whether the client's next reads end in a reset (`Err`), or a clean end of the stream.
async fn ends_in_a_reset(client: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    within(client.read_to_end(&mut rest)).await.is_err()
}

/// A shutdown with no grace period: it cuts at once what is open; an idle connection ends
/// cleanly (nothing of it is lost), one whose write channel still buffers a reply is reset.
#[tokio::test]
async fn a_shutdown_with_no_grace_period_cuts_at_once_and_resets_what_lost_bytes() {
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let (server, address) = bound(&selector, |b| b).await;
        let mut idle_client = TcpStream::connect(address).await.unwrap();
        let idle = within(server.accept()).await.unwrap();
        let mut busy_client = TcpStream::connect(address).await.unwrap();
        let mut busy = within(server.accept()).await.unwrap();
        let mut output = busy.open_write_channel(false).unwrap();
        output.write_string_utf8("half a reply").await.unwrap();
        let started = Instant::now();
        let report = if by_selector {
            within(selector.shutdown(Duration::ZERO)).await
        } else {
            within(server.shutdown(Duration::ZERO)).await
        };
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!((report.finished, report.cut), (0, 2), "{report:?}");
        assert!(idle.is_closed() && busy.is_closed());
        assert!(
            !ends_in_a_reset(&mut idle_client).await,
            "by_selector {by_selector}"
        );
        assert!(
            ends_in_a_reset(&mut busy_client).await,
            "by_selector {by_selector}"
        );
    }
}

/// A connection whose task panics when the shutdown begins closes then (its socket is dropped
/// as the task unwinds): it counts as finished, and the shutdown does not wait out its grace
/// period for it.
#[tokio::test]
async fn a_connection_whose_task_panics_at_the_signal_finishes_the_shutdown_early() {
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let (server, address) = bound(&selector, |b| b.max_connections_per_ip(1)).await;
        let _client = TcpStream::connect(address).await.unwrap();
        let mut socket = within(server.accept()).await.unwrap();
        let task = tokio::spawn(async move {
            let _input = socket.open_read_channel().unwrap();
            socket.shutdown_requested().await;
            panic!("the handler fails as it is told to stop");
        });
        let started = Instant::now();
        let report = if by_selector {
            within(selector.shutdown(Duration::from_secs(10))).await
        } else {
            within(server.shutdown(Duration::from_secs(10))).await
        };
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
        assert!(within(task).await.unwrap_err().is_panic());
        assert_eq!(server.stats().open, 0);
    }
}

/// A TLS connection cut at the end of the grace period never ends in a way its client takes
/// for a complete stream: no `close_notify` follows what it read.
#[tokio::test]
async fn a_tls_connection_cut_at_the_end_of_the_grace_period_is_truncated_for_its_client() {
    use net_tls::TlsExt;
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let client_config = pki.client_config().build().unwrap();
    let selector = SelectorManager::new();
    let (server, address) = bound(&selector, |b| b).await;
    let connecting = {
        let selector = selector.clone();
        tokio::spawn(async move {
            let socket = a_socket(&selector).tcp().connect(address).await.unwrap();
            socket.tls(client_config).await.unwrap()
        })
    };
    let accepted = within(server.accept()).await.unwrap();
    let mut tls = within(accepted.tls_server(&server_config)).await.unwrap();
    let mut client = within(connecting).await.unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    output.write_string_utf8("part one\n").await.unwrap();
    let mut input = client.open_read_channel().unwrap();
    let first = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("part one"));
    let report = within(server.shutdown(Duration::from_millis(100))).await;
    assert_eq!((report.finished, report.cut), (0, 1), "{report:?}");
    let end = within(input.read_line(64, LineEnding::Default)).await;
    let e = end.expect_err("the cut looked like a clean end");
    assert!(
        matches!(&e, net_io::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof),
        "{e:?}"
    );
    drop((tls, output));
}
