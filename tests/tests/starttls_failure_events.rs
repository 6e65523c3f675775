//! Every STARTTLS upgrade (`tls_server` or `tls` on a `Connection`) that fails logs the guide's
//! `tls handshake failed` event (debug, in the `connection` span, with `side` and `error`)
//! once, whichever part of the upgrade failed: the flush of the plain-text output (the peer's
//! reset, `socket_timeout`, the handshake timeout), a socket closed before the upgrade, or the
//! handshake itself. Before, only a failed handshake and the handshake timeout logged it: an
//! upgrade that failed on its flush (a reset, `socket_timeout`) or on a closed socket returned
//! its error with no event at all, so an operator's debug log showed `accepted` and `closed
//! reset=true` for a connection whose STARTTLS had failed, with nothing saying why.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use net_io::LineEnding;
use net_sockets::{Connection, SelectorManager, ServerSocket};
use net_tests::loopback::{tcp_listener, tcp_listener_with};
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tests::{pending_after_one_poll, within};
use net_tls::TlsExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::BytesCodec;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Each event of the crates, as `SPAN: message name=value ...`, where `SPAN` is the span the
/// event was in (the innermost entered on this thread) or `-`.
#[derive(Clone, Default)]
struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    names: Arc<Mutex<HashMap<u64, &'static str>>>,
    entered: Arc<Mutex<Vec<u64>>>,
    next: Arc<Mutex<u64>>,
}

impl Lines {
    /// The lines of `tls handshake failed` events, taken.
    fn failures(&self) -> Vec<String> {
        let mut lines = self.lines.lock().unwrap();
        let failed = lines
            .iter()
            .filter(|line| line.contains("tls handshake failed"))
            .cloned()
            .collect();
        lines.clear();
        failed
    }
}

impl Subscriber for Lines {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("net_")
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut next = self.next.lock().unwrap();
        *next += 1;
        self.names
            .lock()
            .unwrap()
            .insert(*next, attributes.metadata().name());
        Id::from_u64(*next)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0.insert_str(0, &format!("{value:?}"));
                } else {
                    let _ = write!(self.0, " {}={value:?}", field.name());
                }
            }
        }
        let mut line = Line(String::new());
        event.record(&mut line);
        let span = match event.parent() {
            Some(id) => Some(id.into_u64()),
            None if event.is_contextual() => self.entered.lock().unwrap().last().copied(),
            None => None,
        };
        let name = span
            .and_then(|id| self.names.lock().unwrap().get(&id).copied())
            .unwrap_or("-");
        self.lines
            .lock()
            .unwrap()
            .push(format!("{name}: {}", line.0));
    }
    fn enter(&self, id: &Id) {
        self.entered.lock().unwrap().push(id.into_u64());
    }
    fn exit(&self, id: &Id) {
        let mut entered = self.entered.lock().unwrap();
        if let Some(at) = entered.iter().rposition(|&e| e == id.into_u64()) {
            entered.remove(at);
        }
    }
}

/// Runs `test` on a current-thread runtime with `lines` as the subscriber.
fn with_lines(lines: &Lines, test: impl std::future::Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(lines.clone(), || runtime.block_on(test));
}

/// A plain connection accepted by `listener`, and its raw peer.
async fn accepted(listener: &ServerSocket) -> (Connection, TcpStream) {
    let port = listener.port().unwrap();
    let (accepted, tcp) =
        within(async { tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port))) })
            .await;
    (accepted.unwrap().connection().unwrap(), tcp.unwrap())
}

/// Leaves 16 MiB in `connection`'s output, more than the socket takes from a peer that reads
/// nothing (a frame is buffered whole; the write dropped after one poll leaves the rest).
async fn leave_unflushed(connection: &mut Connection) {
    let mut codec = BytesCodec::new();
    let frame = Bytes::from(vec![7u8; 16 << 20]);
    let writing = pin!(connection.output.write_frame(&mut codec, frame));
    assert!(pending_after_one_poll(writing).await);
}

/// Upgrades `plain` on the given side, with a short handshake timeout.
async fn upgrade(
    plain: Connection,
    ca: &TestCa,
    server: bool,
    timeout: Duration,
) -> net_tls::Error {
    let result = if server {
        let config = ca
            .server(&["localhost"])
            .server_config()
            .handshake_timeout(timeout)
            .build()
            .unwrap();
        within(plain.tls_server(&config)).await
    } else {
        let config = ca
            .client_config()
            .server_name("localhost")
            .handshake_timeout(timeout)
            .build()
            .unwrap();
        within(plain.tls(config)).await
    };
    result.expect_err("this upgrade cannot succeed")
}

/// Asserts that `lines` logged one `tls handshake failed` for `side`, in the connection's span,
/// whose error is `e`'s text (for a handshake rustls refused, its reason alone).
fn assert_logged_once(lines: &Lines, side: &str, e: &net_tls::Error, case: &str) {
    let text = match e {
        net_tls::Error::Handshake(reason) => reason.to_string(),
        e => e.to_string(),
    };
    let failures = lines.failures();
    assert_eq!(
        failures.len(),
        1,
        "{case}: one `tls handshake failed` event for {e:?}, got {failures:#?}"
    );
    let line = &failures[0];
    assert!(
        line.starts_with("connection: tls handshake failed")
            && line.contains(&format!("side={side:?}"))
            && line.ends_with(&format!("error={text}")),
        "{case}: {line}"
    );
}

/// The flush of the plain-text output meets the peer's reset: the upgrade fails with the
/// socket's error, and says so in the log, on either side.
#[test]
fn an_upgrade_whose_flush_meets_a_reset_logs_its_failure() {
    let lines = Lines::default();
    with_lines(&lines, async {
        let selector = SelectorManager::new();
        let ca = TestCa::new("starttls events ca");
        let listener = tcp_listener(&selector).await;
        for (server, side) in [(true, "server"), (false, "client")] {
            let (mut plain, mut tcp) = accepted(&listener).await;
            tcp.write_all(b"STARTTLS\r\n").await.unwrap();
            let line = within(plain.input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
            net_tests::fault::reset_arrived(tcp).await;
            plain.output.write_string_utf8("220 go\r\n").await.unwrap();
            lines.failures();
            let e = upgrade(plain, &ca, server, Duration::from_secs(5)).await;
            assert!(matches!(e, net_tls::Error::Socket(_)), "{side}: {e:?}");
            assert_logged_once(&lines, side, &e, &format!("{side}, reset"));
        }
        selector.close();
    });
}

/// The flush of the plain-text output to a peer that reads nothing ends at the socket's
/// `socket_timeout` (shorter than the handshake timeout), or at the handshake timeout: both
/// are logged, on either side.
#[test]
fn an_upgrade_whose_flush_times_out_logs_its_failure() {
    let lines = Lines::default();
    with_lines(&lines, async {
        let selector = SelectorManager::new();
        let ca = TestCa::new("starttls events ca");
        let short = tcp_listener_with(&selector, |builder| {
            builder.socket_timeout(Duration::from_millis(100))
        })
        .await;
        let long = tcp_listener(&selector).await;
        for (server, side) in [(true, "server"), (false, "client")] {
            for socket_timeout in [true, false] {
                let listener = if socket_timeout { &short } else { &long };
                let (mut plain, _tcp) = accepted(listener).await;
                leave_unflushed(&mut plain).await;
                lines.failures();
                let e = upgrade(plain, &ca, server, Duration::from_millis(300)).await;
                let expected = if socket_timeout {
                    matches!(e, net_tls::Error::Socket(net_sockets::Error::Timeout))
                } else {
                    matches!(e, net_tls::Error::HandshakeTimeout(_))
                };
                assert!(expected, "{side}, socket_timeout {socket_timeout}: {e:?}");
                let case = format!("{side}, socket_timeout {socket_timeout}");
                assert_logged_once(&lines, side, &e, &case);
            }
        }
        selector.close();
    });
}

/// An upgrade of a connection whose socket was closed fails with `Closed`, logged.
#[test]
fn an_upgrade_of_a_closed_socket_logs_its_failure() {
    let lines = Lines::default();
    with_lines(&lines, async {
        let selector = SelectorManager::new();
        let ca = TestCa::new("starttls events ca");
        let listener = tcp_listener(&selector).await;
        for (server, side) in [(true, "server"), (false, "client")] {
            let (plain, _tcp) = accepted(&listener).await;
            plain.socket.close();
            lines.failures();
            let e = upgrade(plain, &ca, server, Duration::from_secs(5)).await;
            assert!(
                matches!(e, net_tls::Error::Socket(net_sockets::Error::Closed)),
                "{side}: {e:?}"
            );
            assert_logged_once(&lines, side, &e, &format!("{side}, closed"));
        }
        selector.close();
    });
}

/// A handshake that fails (the client's, against a server that is not TLS at all and answers
/// in plain text) logs once, as before; and a handshake that succeeds logs no failure.
#[test]
fn a_failed_handshake_still_logs_once_and_a_good_one_not_at_all() {
    let lines = Lines::default();
    with_lines(&lines, async {
        let selector = SelectorManager::new();
        let ca = Arc::new(TestCa::new("starttls events ca"));
        let listener = tcp_listener(&selector).await;
        // Our client, the peer answers the ClientHello in plain text.
        let (plain, mut tcp) = accepted(&listener).await;
        let peer = tokio::spawn(async move {
            let mut hello = [0u8; 5];
            tcp.read_exact(&mut hello).await.unwrap();
            tcp.write_all(b"500 what?\r\n").await.unwrap();
            tcp
        });
        lines.failures();
        let e = upgrade(plain, &ca, false, Duration::from_secs(5)).await;
        assert!(matches!(e, net_tls::Error::Handshake(_)), "{e:?}");
        assert_logged_once(&lines, "client", &e, "client, plain-text answer");
        drop(within(peer).await);
        // Our server, a good client.
        let (mut plain, tcp) = accepted(&listener).await;
        let client = {
            let ca = Arc::clone(&ca);
            tokio::spawn(async move {
                let connector = tokio_rustls::TlsConnector::from(rustls_client(&ca));
                let mut tls = connector.connect(localhost(), tcp).await.unwrap();
                let mut all = Vec::new();
                tls.read_to_end(&mut all).await.map(|_| all)
            })
        };
        let config = ca.server(&["localhost"]).server_config().build().unwrap();
        plain.output.write_string_utf8("").await.unwrap();
        let tls = within(plain.tls_server(&config)).await.unwrap();
        let mut secure = tls.connection().unwrap();
        secure.output.write_string_utf8("hello\r\n").await.unwrap();
        secure
            .close_gracefully(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(within(client).await.unwrap().unwrap(), b"hello\r\n");
        assert_eq!(lines.failures(), Vec::<String>::new());
        selector.close();
    });
}
