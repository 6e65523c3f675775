//! Claims of the public documentation checked as stated (review of the docs against the code).
//!
//! - `SelectorManager::new`'s "# Panics": outside a runtime it panics; on a runtime without
//!   I/O, `bind` and `connect` panic; on one without timers (`enable_io` alone), a `connect` to
//!   a host name, a graceful shutdown, `close_gracefully` and a configured timeout panic with
//!   tokio's message ("timers are disabled") — never a hang, never an error that hides the
//!   setup mistake.
//! - net-tls's builders' "# Errors": `Error::Config` for no protocol version (client and
//!   server) and for a root that cannot be a trust anchor (`add_root_certificate`).
//! - net-io's reads after the channel's own `cancel()` fail with `Error::Cancelled`, the
//!   typed, count-taking and slice-filling reads included (their "# Errors" sections list it).
//! - The guide's "4. Admission control": an IPv4 client of a dual-stack listener counts as its
//!   IPv4 address for `max_connections_per_ip`.
//! - `with_sock_ref` after the selector's close is `Error::SelectorClosed` (its "# Errors"
//!   sections list it beside `Error::Closed`).
//! - The UDP builder refuses a Unix path with `Error::Io` of kind `Unsupported`.
//! - The guide's "6. Behind HAProxy": a v1 `UNKNOWN` header keeps the connection's own address.
//! - `Connection::close_gracefully` with a cancelled output: `ClosedForWrite`, and the socket
//!   closed at once.
//! - `SelectorManagerBuilder::build`'s "# Errors": a thread name no thread can have (a NUL
//!   byte) is `Error::Io` of kind `InvalidInput`, not a panic.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};

/// How long a case may take before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(10);

/// The panic message of `payload`, or `""` when it is not a string.
fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// Runs `case` on a current-thread runtime made by `runtime` in a thread of its own and
/// returns its panic message; fails when it returns instead, or hangs.
fn panic_of<F>(runtime: fn() -> tokio::runtime::Runtime, case: F) -> String
where
    F: AsyncFnOnce() + Send + 'static,
{
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| runtime().block_on(case())));
        let _ = done.send(result.map_err(|payload| message(&*payload)));
    });
    match outcome.recv_timeout(LIMIT) {
        Ok(Err(message)) => message,
        Ok(Ok(())) => panic!("returned without the documented panic"),
        Err(_) => panic!("hung for {LIMIT:?} instead of the documented panic"),
    }
}

fn io_only() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

fn time_only() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// A listener on the I/O-only runtime of the running case.
async fn listener(selector: &SelectorManager) -> net_sockets::ServerSocket {
    a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap()
}

#[test]
fn a_selector_made_outside_a_runtime_panics() {
    let payload = std::panic::catch_unwind(SelectorManager::new).unwrap_err();
    assert!(
        message(&*payload).contains("no reactor running"),
        "{}",
        message(&*payload)
    );
}

#[test]
fn without_io_bind_and_connect_panic() {
    for connect in [false, true] {
        let message = panic_of(time_only, async move || {
            let selector = SelectorManager::new();
            if connect {
                let _ = a_socket(&selector).tcp().connect(("127.0.0.1", 9)).await;
            } else {
                let _ = a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await;
            }
        });
        assert!(
            message.contains("IO is disabled") || message.contains("enable_io"),
            "connect: {connect}: {message}"
        );
    }
}

#[test]
fn without_timers_a_connect_to_a_host_name_panics() {
    let message = panic_of(io_only, async || {
        let selector = SelectorManager::new();
        let server = listener(&selector).await;
        let _ = a_socket(&selector)
            .tcp()
            .connect(("localhost", server.port().unwrap()))
            .await;
    });
    assert!(message.contains("timers are disabled"), "{message}");
}

#[test]
fn without_timers_a_graceful_shutdown_panics() {
    let message = panic_of(io_only, async || {
        let selector = SelectorManager::new();
        let server = listener(&selector).await;
        let _client = a_socket(&selector)
            .tcp()
            .connect(server.local_address())
            .await
            .unwrap();
        let _accepted = server.accept().await.unwrap();
        let _ = server.shutdown(Duration::from_secs(1)).await;
    });
    assert!(message.contains("timers are disabled"), "{message}");
}

/// A busy-polling selector rests its polling with a timer. Without timers it panics where it
/// is made, as documented, never later in its polling task: that task's end closed the whole
/// selector, every socket failing with `SelectorClosed` while the runtime ran on. (Before, a
/// busy runtime's first rest did that.)
#[test]
fn without_timers_a_busy_polling_selector_panics_where_it_is_made() {
    let message = panic_of(io_only, async || {
        let _selector = SelectorManager::with_busy_poll(Duration::from_micros(200));
    });
    assert!(message.contains("timers are disabled"), "{message}");
}

#[test]
fn without_timers_close_gracefully_panics() {
    let message = panic_of(io_only, async || {
        let selector = SelectorManager::new();
        let server = listener(&selector).await;
        let client = a_socket(&selector)
            .tcp()
            .connect(server.local_address())
            .await
            .unwrap();
        let _accepted = server.accept().await.unwrap();
        let _ = client
            .connection()
            .unwrap()
            .close_gracefully(Duration::from_secs(1))
            .await;
    });
    assert!(message.contains("timers are disabled"), "{message}");
}

#[test]
fn without_timers_a_socket_timeout_panics() {
    let message = panic_of(io_only, async || {
        let selector = SelectorManager::new();
        let server = listener(&selector).await;
        let mut client = a_socket(&selector)
            .tcp()
            .socket_timeout(Duration::from_secs(1))
            .connect(server.local_address())
            .await
            .unwrap();
        let _accepted = server.accept().await.unwrap();
        let mut input = client.open_read_channel().unwrap();
        let _ = input.read_line(64, LineEnding::Default).await;
    });
    assert!(message.contains("timers are disabled"), "{message}");
}

/// `TlsConfigBuilder::build`'s "# Errors": `Error::Config` when rustls refuses the
/// combination, "no protocol version" named; and `add_root_certificate`'s: a certificate that
/// cannot be a trust anchor fails `build` with `Error::Config`.
#[test]
fn a_client_configuration_without_a_protocol_version_or_with_a_bad_root_is_a_config_error() {
    let no_version = net_tls::TlsConfig::builder().protocol_versions(&[]).build();
    assert!(
        matches!(no_version, Err(net_tls::Error::Config(_))),
        "{no_version:?}"
    );
    let bad_root = net_tls::TlsConfig::builder()
        .add_root_certificate(net_tls::CertificateDer::from(b"not a certificate".to_vec()))
        .build();
    assert!(
        matches!(bad_root, Err(net_tls::Error::Config(_))),
        "{bad_root:?}"
    );
}

/// `TlsServerConfigBuilder::build`'s "# Errors": `Error::Config` when rustls refuses the
/// combination (here: no protocol version).
#[test]
fn a_server_configuration_without_a_protocol_version_is_a_config_error() {
    let pki = net_tests::pki::Pki::generate();
    let built = net_tls::TlsServerConfig::builder()
        .certificate_chain_pem(pki.server.chain_pem().as_bytes())
        .unwrap()
        .private_key_pem(pki.server.key_pem().as_bytes())
        .unwrap()
        .protocol_versions(&[])
        .build();
    assert!(matches!(built, Err(net_tls::Error::Config(_))), "{built:?}");
}

/// Every read of a `ByteReadChannel` after its own `cancel()` fails with `Error::Cancelled`
/// (`cancel`'s doc): so each read's "# Errors" section must list it, the count-taking and
/// typed reads included.
#[tokio::test]
async fn every_read_after_a_local_cancel_is_cancelled() {
    use net_io::{ByteReadChannel, Error};
    fn fresh() -> ByteReadChannel {
        let mut input = ByteReadChannel::from_bytes(&b"0123456789\n"[..]);
        input.cancel();
        input
    }
    let mut dst = [0u8; 4];
    let results: [(&str, Result<(), Error>); 6] = [
        ("read_u32", fresh().read_u32().await.map(drop)),
        ("read_bytes", fresh().read_bytes(4).await.map(drop)),
        ("read_fully", fresh().read_fully(&mut dst).await.map(drop)),
        ("discard_exact", fresh().discard_exact(4).await.map(drop)),
        (
            "read_line_strict",
            fresh()
                .read_line_strict(64, LineEnding::Default)
                .await
                .map(drop),
        ),
        (
            "read_line",
            fresh().read_line(64, LineEnding::Default).await.map(drop),
        ),
    ];
    for (read, result) in results {
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{read}: {result:?}"
        );
    }
}

/// The guide, "4. Admission control": "An IPv4 client on an IPv6 listener (`::ffff:192.0.2.1`)
/// counts as its IPv4 address" for `max_connections_per_ip`. On a dual-stack listener a direct
/// IPv4 client is seen as `::ffff:127.0.0.1`; a PROXY header naming `127.0.0.1` is the same
/// client, so with a cap of one the second is refused.
#[tokio::test]
async fn an_ipv4_mapped_client_counts_as_its_ipv4_address_for_the_per_ip_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .max_connections_per_ip(1)
        .proxy_protocol(net_sockets::ProxyProtocol::Optional)
        .proxy_header_timeout(Duration::from_millis(200))
        .bind(("::", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    // A direct IPv4 client: no header; taken as it is once the header timeout passes.
    let _direct = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let first = net_tests::within(server.accept()).await.unwrap();
    let seen = first.remote_address().to_string();
    assert!(seen.contains("::ffff:127.0.0.1"), "{seen}");
    // The same client by its IPv4 address, named by a PROXY header (from ::1, another peer).
    let mut proxied = tokio::net::TcpStream::connect(("::1", port)).await.unwrap();
    proxied
        .write_all(format!("PROXY TCP4 127.0.0.1 127.0.0.1 5000 {port}\r\n").as_bytes())
        .await
        .unwrap();
    // The listener closes it at once, inside `accept`, which must not return it.
    let mut byte = [0u8; 1];
    let ended = tokio::select! {
        second = net_tests::within(server.accept()) => panic!(
            "accepted a second connection of 127.0.0.1: {:?}",
            second.map(|s| s.remote_address())
        ),
        read = proxied.read(&mut byte) => read,
    };
    assert!(
        matches!(ended, Ok(0)) || ended.is_err(),
        "the refused connection got {ended:?}"
    );
    assert_eq!(server.stats().refused_per_ip, 1);
}

/// `with_sock_ref` on a socket, listener or datagram socket that its selector closed fails with
/// `Error::SelectorClosed` (as every other operation then does), which its "# Errors" section
/// lists beside `Error::Closed`.
#[tokio::test]
async fn with_sock_ref_after_the_selectors_close_is_selector_closed() {
    use net_sockets::Error;
    let selector = SelectorManager::new();
    let server = listener(&selector).await;
    let client = a_socket(&selector)
        .tcp()
        .connect(server.local_address())
        .await
        .unwrap();
    let udp = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    selector.close();
    let results = [
        (
            "socket",
            client.with_sock_ref(|s| s.tcp_nodelay()).map(drop),
        ),
        (
            "listener",
            server.with_sock_ref(|s| s.reuse_address()).map(drop),
        ),
        (
            "datagram socket",
            udp.with_sock_ref(|s| s.broadcast()).map(drop),
        ),
    ];
    for (what, result) in results {
        assert!(
            matches!(result, Err(Error::SelectorClosed)),
            "{what}: {result:?}"
        );
    }
}

/// net-sockets' "Platforms": "Unix datagram sockets are not supported": the UDP builder's
/// `bind`, `connect` and `connect_from` refuse a Unix path with `Error::Io` of kind
/// `Unsupported` (their "# Errors" sections say so), and make no socket file.
#[tokio::test]
async fn the_udp_builder_refuses_a_unix_path_as_unsupported() {
    use net_sockets::{Error, UnixSocketAddress};
    let dir = net_tests::TempDir::new("review-docs-unix-udp");
    let path = dir.join("udp.sock");
    let selector = SelectorManager::new();
    let unix = UnixSocketAddress::new(&path);
    let results = [
        (
            "bind",
            a_socket(&selector).udp().bind(unix.clone()).await.map(drop),
        ),
        (
            "connect",
            a_socket(&selector)
                .udp()
                .connect(unix.clone())
                .await
                .map(drop),
        ),
        (
            "connect_from",
            a_socket(&selector)
                .udp()
                .connect_from(unix.clone(), unix.clone())
                .await
                .map(drop),
        ),
    ];
    for (what, result) in results {
        assert!(
            matches!(&result, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::Unsupported),
            "{what}: {result:?}"
        );
    }
    assert!(!path.exists());
}

/// The guide, "6. Behind HAProxy": "A header that names no client (HAProxy's `LOCAL` command
/// ..., or v1 `UNKNOWN`) leaves the connection's own address as the remote address, and
/// `proxy_address` is `None`" — here v1 `UNKNOWN`, bare and with addresses, through a listener
/// that requires a header; the bytes after the header are the read channel's first.
#[tokio::test]
async fn a_v1_unknown_header_keeps_the_connections_own_address() {
    use tokio::io::AsyncWriteExt;

    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .proxy_protocol(net_sockets::ProxyProtocol::Required)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let headers = [
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN 192.0.2.1 192.0.2.2 1000 2000\r\n", // addresses to ignore
    ];
    for header in headers {
        let mut client = tokio::net::TcpStream::connect(server.local_address().to_string())
            .await
            .unwrap();
        client
            .write_all(format!("{header}hello\n").as_bytes())
            .await
            .unwrap();
        let mut accepted = net_tests::within(server.accept()).await.unwrap();
        assert_eq!(
            accepted.remote_address(),
            net_sockets::SocketAddress::from(client.local_addr().unwrap()),
            "{header:?}"
        );
        assert_eq!(accepted.proxy_address(), None, "{header:?}");
        let mut input = accepted.open_read_channel().unwrap();
        let line = net_tests::within(input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("hello"), "{header:?}");
    }
    assert_eq!(server.stats().proxy_header_failures, 0);
}

/// `Connection::close_gracefully`'s "# Errors": an output that was cancelled is
/// `ClosedForWrite` (inside this crate's `Error::Channel`, as every channel error other than
/// `Io` and `Timeout`), and the socket is closed at once.
#[tokio::test]
async fn close_gracefully_after_the_output_was_cancelled_is_closed_for_write() {
    use net_sockets::Error;
    let selector = SelectorManager::new();
    let server = listener(&selector).await;
    let client = a_socket(&selector)
        .tcp()
        .connect(server.local_address())
        .await
        .unwrap();
    let mut accepted = net_tests::within(server.accept()).await.unwrap();
    let mut connection = client.connection().unwrap();
    connection.output.cancel();
    let result = net_tests::within(connection.close_gracefully(Duration::from_secs(5))).await;
    assert!(
        matches!(result, Err(Error::Channel(net_io::Error::ClosedForWrite))),
        "{result:?}"
    );
    // Closed at once (nothing was thrown away: a clean end), not after `wait`.
    let mut input = accepted.open_read_channel().unwrap();
    let end = net_tests::within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(end.unwrap(), None);
}

/// Before the fix, std panicked as the runtime named its first thread ("thread name may not
/// contain interior null bytes"), on the thread that called `build`.
#[test]
fn a_thread_name_with_a_nul_byte_is_an_invalid_input_error() {
    let built = std::panic::catch_unwind(|| {
        SelectorManager::builder()
            .worker_threads(1)
            .thread_name("net\0selector")
            .build()
    });
    match built {
        Ok(Err(net_sockets::Error::Io(e))) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        }
        Ok(other) => panic!("not Error::Io: {other:?}"),
        Err(payload) => panic!("build panicked: {}", message(&*payload)),
    }
}

/// A worker count no runtime can have is an `InvalidInput` error from `build`, never a panic
/// (before, tokio's builder overflowed adding it to its blocking threads).
#[test]
fn an_absurd_worker_count_is_an_invalid_input_error() {
    // Where `usize` has 32 bits, 2^40 is `usize::MAX`.
    for n in [
        usize::MAX,
        usize::try_from(1u64 << 40).unwrap_or(usize::MAX),
    ] {
        let built =
            std::panic::catch_unwind(|| SelectorManager::builder().worker_threads(n).build());
        match built {
            Ok(Err(net_sockets::Error::Io(e))) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
            }
            Ok(Ok(selector)) => {
                selector.close();
                panic!("{n} workers were started");
            }
            Ok(Err(other)) => panic!("not Error::Io: {other:?}"),
            Err(payload) => panic!("build panicked: {}", message(&*payload)),
        }
    }
}
