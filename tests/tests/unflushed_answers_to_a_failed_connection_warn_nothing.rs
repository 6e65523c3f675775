//! A server that answers each request and flushes when no further request is buffered (the
//! pattern of the hand-tuned server SPEC §4.6 measures against), with its write channel not
//! auto-flushing: a client that sends a request, then part of another, then resets (or, over
//! TLS, a corrupted record) leaves the answer to the first in the channel's buffer when the
//! read reports the failure, and the handler returns that error, dropping the channel. The
//! answer could never be sent (every write and flush of the channel fails from then on), and
//! the client chose when: the guide (section *Tracing*) says that what a client causes
//! connection by connection, a reset among them, is at `debug` or below. Before, each such
//! client made the drop log the `warn` of a forgotten flush ("write channel dropped with 14
//! unflushed bytes; they are not sent (call flush_and_close, ...)"): 50 warnings for 50
//! clients. A flush forgotten on a connection that still works keeps its `warn` (the guard).

use std::io::Write as _;

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::SelectorManager;
use net_tests::logs::Traced;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{manual_pair, records};
use net_tests::within;
use tokio::io::AsyncWriteExt;
use tracing::Level;

/// Hostile clients per test.
const N: usize = 50;

/// The message of the drop's `warn` starts so.
const WARNING: &str = "write channel dropped with";

/// Runs `body` on a current-thread runtime with a [`Traced`] recorder as this thread's
/// subscriber (the handlers run on this thread); what it saw.
fn traced(body: impl std::future::Future<Output = ()>) -> Traced {
    let traced = Traced::default();
    let _default = tracing::subscriber::set_default(traced.clone());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
    traced
}

/// How many events at `level` or above `traced` saw, and the first of them.
fn at_or_above(traced: &Traced, level: Level) -> (usize, Option<String>) {
    let loud: Vec<_> = traced
        .events()
        .into_iter()
        .filter(|e| e.level <= level)
        .collect();
    let first = loud.first().map(|e| format!("{} {}", e.level, e.message));
    (loud.len(), first)
}

/// The handler: answers each line, flushing when no further request is buffered; returns the
/// read's error as it is (`?`), dropping the channels.
async fn answer(input: &mut ByteReadChannel, output: &mut ByteWriteChannel) -> net_io::Result<()> {
    while let Some(line) = input.read_line(64, LineEnding::Default).await? {
        output
            .write_string_utf8(&format!("Hello, {line}!\n"))
            .await?;
        if input.available_for_read() == 0 {
            output.flush().await?;
        }
    }
    output.flush_and_close().await
}

/// Serves `socket` (plain or TLS) with [`answer`] on channels that do not auto-flush, the
/// socket dropped last; the handler's result.
macro_rules! serve {
    ($socket:expr) => {{
        let mut socket = $socket;
        let mut input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(false).unwrap();
        within(answer(&mut input, &mut output)).await
    }};
}

/// A request, then part of another, then a reset: the answer to the first is buffered when
/// the read reports the reset.
#[test]
fn answers_buffered_when_the_client_resets_log_no_warning() {
    let traced = traced(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        for _ in 0..N {
            let client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let socket = within(listener.accept()).await.unwrap();
            let mut client = client;
            client.write_all(b"alice\nbo").await.unwrap();
            net_tests::fault::reset_arrived(client).await;
            let served = serve!(socket);
            let e = served.expect_err("the client reset");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
        }
        selector.close();
    });
    let (loud, first) = at_or_above(&traced, Level::INFO);
    assert_eq!(
        loud, 0,
        "{loud} events at info or above for {N} clients that reset: {first:?}"
    );
}

/// The same over TLS, each client ending its session with a corrupted record (the session
/// fails for good), or with a reset.
#[test]
fn answers_buffered_when_a_tls_client_corrupts_a_record_or_resets_log_no_warning() {
    let traced = traced(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let ca = TestCa::new("unflushed answers ca");
        let config = ca.server(&["localhost"]).server_config().build().unwrap();
        for i in 0..N {
            let (tls, mut tcp, mut client) = manual_pair(&listener, &ca, &config).await;
            client.writer().write_all(b"alice\nbo").unwrap();
            let mut sent = records(&mut client);
            let corrupt = i % 2 == 0;
            if corrupt {
                // An application-data record that does not decrypt.
                sent.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x20]);
                sent.extend_from_slice(&[0x5a; 0x20]);
            }
            tcp.write_all(&sent).await.unwrap();
            if !corrupt {
                net_tests::fault::reset_arrived(tcp).await;
                let served = serve!(tls);
                served.expect_err("the client reset");
            } else {
                let served = serve!(tls);
                let e = served.expect_err("the record does not decrypt");
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e:?}");
                drop(tcp);
            }
        }
        selector.close();
    });
    let (loud, first) = at_or_above(&traced, Level::INFO);
    assert_eq!(
        loud, 0,
        "{loud} events at info or above for {N} TLS clients: {first:?}"
    );
}

/// The guard: a handler that forgets its last flush on a connection that still works (the
/// client ended its side cleanly and still reads) logs the `warn`, once per connection.
#[test]
fn a_flush_forgotten_on_a_working_connection_still_warns() {
    const GUARD: usize = 3;
    let traced = traced(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        for _ in 0..GUARD {
            let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut socket = within(listener.accept()).await.unwrap();
            (&client).write_all(b"alice\n").unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let mut input = socket.open_read_channel().unwrap();
            let mut output = socket.open_write_channel(false).unwrap();
            // Answers, then forgets the flush at the end.
            while let Some(line) = within(input.read_line(64, LineEnding::Default))
                .await
                .unwrap()
            {
                output
                    .write_string_utf8(&format!("Hello, {line}!\n"))
                    .await
                    .unwrap();
            }
            drop(output);
        }
        selector.close();
    });
    let warnings = traced
        .events()
        .into_iter()
        .filter(|e| e.level == Level::WARN && e.message.starts_with(WARNING))
        .count();
    assert_eq!(warnings, GUARD);
}
