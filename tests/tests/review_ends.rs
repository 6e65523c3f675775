//! What the peer sees for each way a connection of ours ends, against what the docs promise
//! (`guarantees.md`, the "Closing" sections of `Socket`, `net_tls` and `Connection`): a clean
//! end (FIN, `close_notify`) only when nothing was lost, a truncation or a reset otherwise, and
//! never a reset where the docs promise a FIN.

use std::io;
use std::time::Duration;

use net_io::ByteReadChannel;
use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{is_truncated, pair};
use net_tests::within;

async fn line(input: &mut ByteReadChannel) -> Option<String> {
    within(input.read_utf8_line(64)).await.unwrap()
}

/// How a connection of a selector is ended from outside the connection.
#[derive(Clone, Copy, Debug)]
enum OuterEnd {
    /// `SelectorManager::close`.
    SelectorClose,
    /// `SelectorManager::shutdown` with no grace period: the connection is cut.
    SelectorShutdown,
    /// The selector's runtime shuts down.
    RuntimeEnd,
}

const OUTER_ENDS: [OuterEnd; 3] = [
    OuterEnd::SelectorClose,
    OuterEnd::SelectorShutdown,
    OuterEnd::RuntimeEnd,
];

/// A TLS 1.3 client of ours (on a selector and runtime of its own) that wrote, never read (the
/// server's session tickets sit unread in its socket), and is ended by `end`: what our server,
/// its peer, reads after the line that arrived.
async fn peer_of_a_tls13_client_that_never_read(end: OuterEnd) -> net_io::Error {
    let server_selector = SelectorManager::new();
    let ca = TestCa::new("review ends ca");
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&server_selector).await;
    let client_config = ca.client_config().build().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_selector = {
        let _runtime = runtime.enter();
        SelectorManager::new()
    };
    let (mut server, mut client) =
        pair(&client_selector, &listener, &server_config, client_config).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = client.open_write_channel(true).unwrap();
    output.write_string_utf8("whole\nlast").await.unwrap();
    assert_eq!(line(&mut input).await.as_deref(), Some("whole"));
    // The server's tickets went out with its handshake, before it read the line: on loopback
    // they are in the client's socket now, unread.
    let mut runtime = Some(runtime);
    match end {
        OuterEnd::SelectorClose => client_selector.close(),
        OuterEnd::SelectorShutdown => {
            within(client_selector.shutdown(Duration::ZERO)).await;
        }
        OuterEnd::RuntimeEnd => runtime.take().unwrap().shutdown_background(),
    }
    let e = within(input.read_utf8_line(64)).await.unwrap_err();
    server.close();
    drop((output, client));
    if let Some(runtime) = runtime {
        runtime.shutdown_background();
    }
    e
}

/// The selector's close, its graceful shutdown's cut and the end of its runtime send no
/// `close_notify` (guarantees: "over TLS never a `close_notify`, the client sees a truncated
/// stream"), and the kernel must send the FIN of a truncated stream, not a reset (which the
/// peer reads as `ConnectionReset`, and which destroys what is still queued for it), also for
/// a TLS 1.3 client that never read the server's session tickets, as its own `close()` and drop
/// already do.
#[tokio::test]
async fn a_tls13_client_that_never_read_ended_by_its_selector_or_runtime_is_truncated_not_reset() {
    for end in OUTER_ENDS {
        let e = peer_of_a_tls13_client_that_never_read(end).await;
        assert!(
            is_truncated(&e) && e.kind() == io::ErrorKind::UnexpectedEof,
            "{end:?}: the peer read {e:?}"
        );
    }
}
