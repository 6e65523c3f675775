//! The crates' `tracing` output seen by an operator who runs at `info`: a peer must not be able
//! to make the libraries log at `warn` (or `info`) at a rate it controls, and text a peer chose
//! must not reach a log line raw (a newline or a terminal escape in it would forge lines).
//!
//! A process-wide recorder sees every event of every thread (the selector's runtime threads
//! included, where PROXY headers are read); each test picks its own events out by the span
//! they are in (its listener's `local` address, a client connection's `remote`, or a span of
//! the test's own), so the tests of this binary can run side by side.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use net_sockets::{ProxyProtocol, SelectorManager};
use net_tests::harness::{rerun_self_with_fd_limit, run_if_child};
use net_tests::loopback::{tcp_listener, tcp_listener_with};
use net_tests::pki::TestCa;
use net_tests::probe::exhaust_descriptors;
use net_tests::tls::{connect, garbage_client};
use net_tests::within;
use net_tls::TlsExt;
use tokio::io::AsyncWriteExt;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Instrument, Level, Metadata, Subscriber};

/// A span the recorder saw.
#[derive(Clone, Debug)]
struct SpanSeen {
    fields: Vec<(String, String)>,
    parent: Option<u64>,
}

/// An event the recorder saw.
#[derive(Clone, Debug)]
struct EventSeen {
    level: Level,
    target: String,
    message: String,
    fields: Vec<(String, String)>,
    span: Option<u64>,
}

impl EventSeen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Seen {
    /// By id (ids are indices + 1).
    spans: Vec<SpanSeen>,
    events: Vec<EventSeen>,
}

thread_local! {
    /// The spans entered now on this thread, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Collects the fields of a span or an event as text: `%x` fields as their `Display`, `?x`
/// fields as their `Debug`, strings raw (what a text formatter writes).
struct Fields(Vec<(String, String)>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
}

/// Records every event and span of the workspace's crates (and of this test), process-wide.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("net_") || metadata.target().starts_with("operator_logs")
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut fields = Fields(Vec::new());
        attributes.record(&mut fields);
        let parent = match attributes.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if attributes.is_contextual() => ENTERED.with(|e| e.borrow().last().copied()),
            None => None,
        };
        let mut seen = self.0.lock().unwrap();
        seen.spans.push(SpanSeen {
            fields: fields.0,
            parent,
        });
        Id::from_u64(seen.spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let message = fields
            .0
            .iter()
            .position(|(n, _)| n == "message")
            .map(|i| fields.0.remove(i).1)
            .unwrap_or_default();
        let span = match event.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if event.is_contextual() => ENTERED.with(|e| e.borrow().last().copied()),
            None => None,
        };
        self.0.lock().unwrap().events.push(EventSeen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message,
            fields: fields.0,
            span,
        });
    }
    fn enter(&self, id: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(id.into_u64()));
    }
    fn exit(&self, _: &Id) {
        ENTERED.with(|e| e.borrow_mut().pop());
    }
    fn clone_span(&self, id: &Id) -> Id {
        id.clone()
    }
    fn try_close(&self, _: Id) -> bool {
        false
    }
}

impl Recorder {
    /// The process-wide recorder, installed as the global default on first use.
    fn global() -> &'static Recorder {
        static RECORDER: OnceLock<Recorder> = OnceLock::new();
        RECORDER.get_or_init(|| {
            let recorder = Recorder::default();
            tracing::subscriber::set_global_default(recorder.clone())
                .expect("no other global subscriber in this test binary");
            recorder
        })
    }

    /// The events in a span (or one of its ancestors) that has the field `name` with the value
    /// `value`.
    fn events_in(&self, name: &str, value: &str) -> Vec<EventSeen> {
        let seen = self.0.lock().unwrap();
        let matches = |mut id: Option<u64>| {
            while let Some(i) = id {
                let span = &seen.spans[(i - 1) as usize];
                if span.fields.iter().any(|(n, v)| n == name && v == value) {
                    return true;
                }
                id = span.parent;
            }
            false
        };
        seen.events
            .iter()
            .filter(|e| matches(e.span))
            .cloned()
            .collect()
    }

    /// Waits (up to 10 s) until `count` returns at least `n`; returns its last value.
    async fn until_at_least(&self, n: usize, count: impl Fn(&Recorder) -> usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = count(self);
            if now >= n || Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn at_warn_or_above(events: &[EventSeen]) -> Vec<&EventSeen> {
    events.iter().filter(|e| e.level <= Level::INFO).collect()
}

/// Whether `text` holds a control character (a newline, a terminal escape) that would reach
/// a text log raw.
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Checks that the span `case` saw exactly one event at `warn` or above, a `warn` naming
/// `unflushed` bytes: what a write channel dropped with bytes it never sent logs.
fn assert_one_unflushed_warning(recorder: &Recorder, case: &str, unflushed: &str) {
    let events = recorder.events_in("case", case);
    let loud = at_warn_or_above(&events);
    assert_eq!(loud.len(), 1, "{events:#?}");
    assert_eq!(loud[0].level, Level::WARN);
    assert_eq!(loud[0].field("unflushed"), Some(unflushed));
}

/// Runs `body` on a current-thread runtime of its own, dropped when `body` returns.
fn block_on<T>(body: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body)
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol headers

const BAD_HEADER_CLIENTS: usize = 20;

/// A listener that requires a PROXY header is reachable by a port scanner or any client that
/// skips the proxy: each of its connections fails the header. Before: each one logged a
/// `warn` (20 of 20 here), a rate the peer picks. Now the listener's first bad header logs a
/// `warn` (a proxy that sends none shows up at `info`), the others `debug`, and
/// `ListenerStats::proxy_header_failures` counts them all.
#[test]
fn bad_proxy_headers_log_one_warning_per_listener_not_one_per_connection() {
    let recorder = Recorder::global();
    block_on(async {
        let selector = SelectorManager::new();
        let listener = Arc::new(
            tcp_listener_with(&selector, |b| b.proxy_protocol(ProxyProtocol::Required)).await,
        );
        let local = listener.local_address().to_string();
        let port = listener.port().unwrap();
        // `accept` takes connections from the kernel and reads their headers.
        let taker = {
            let listener = Arc::clone(&listener);
            tokio::spawn(async move { while listener.accept().await.is_ok() {} })
        };
        for i in 0..BAD_HEADER_CLIENTS {
            let mut raw = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
                .await
                .unwrap();
            // Garbage, a header cut short, or nothing at all.
            match i % 3 {
                0 => raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap(),
                1 => raw.write_all(b"PROXY TCP4 1.2.3.4\r\n").await.unwrap(),
                _ => {}
            }
            drop(raw);
        }
        let dropped = |r: &Recorder| {
            r.events_in("local", &local)
                .iter()
                .filter(|e| e.message == "dropped a connection: bad PROXY protocol header")
                .count()
        };
        let n = recorder.until_at_least(BAD_HEADER_CLIENTS, dropped).await;
        assert_eq!(n, BAD_HEADER_CLIENTS, "one event per dropped connection");
        assert_eq!(
            listener.stats().proxy_header_failures,
            BAD_HEADER_CLIENTS as u64
        );
        let events = recorder.events_in("local", &local);
        let loud = at_warn_or_above(&events);
        assert_eq!(
            loud.len(),
            1,
            "events at info or above for {BAD_HEADER_CLIENTS} bad headers: {loud:#?}"
        );
        assert_eq!(loud[0].level, Level::WARN);
        assert!(loud[0].field("peer").is_some(), "{:?}", loud[0]);
        assert!(loud[0].target.starts_with("net_sockets"), "{:?}", loud[0]);
        // Each says why: garbage is no header, and a connection that ended before sending
        // anything ended before one was complete (a header cut short says what the parser
        // found).
        let reasons: Vec<_> = events
            .iter()
            .filter(|e| e.message == "dropped a connection: bad PROXY protocol header")
            .map(|e| e.field("error").unwrap_or_default())
            .collect();
        for reason in [
            "the connection did not start with one",
            "the connection ended before it was complete",
        ] {
            assert!(reasons.contains(&reason), "{reason:?} not in {reasons:#?}");
        }
        assert!(reasons.iter().all(|r| !r.is_empty()), "{reasons:#?}");
        taker.abort();
        listener.close();
        selector.close();
    });
}

// ---------------------------------------------------------------------------------------------
// A write channel dropped after its write timed out

/// The guide's complete server, facing a client that sends but never reads: the replies fill
/// the socket buffers, a flush fails with `Timeout` (the socket timeout), and the `?` drops
/// the connection with the reply still buffered. The caller was told (the `Timeout`), the
/// client chose it, and the guide does just this. Before: the drop logged the `warn` meant
/// for a channel dropped unflushed by mistake, once per such client (1 of 1 here). Now it is
/// a `debug` event.
#[test]
fn a_write_channel_dropped_after_its_flush_timed_out_logs_no_warning() {
    dropped_after_a_timeout("flush timed out", true);
}

/// The same with writes alone (no `flush`): the write that fills the buffer writes it out,
/// times out without effect, and leaves the earlier writes' bytes buffered.
#[test]
fn a_write_channel_dropped_after_its_write_timed_out_logs_no_warning() {
    dropped_after_a_timeout("write timed out", false);
}

/// A client connected to a listener with a 150 ms `socket_timeout` and a 16 KiB send buffer
/// (so that writes to a client that reads nothing time out soon), and its accepted socket.
async fn slow_reader(selector: &SelectorManager) -> (tokio::net::TcpStream, net_sockets::Socket) {
    let listener = tcp_listener_with(selector, |b| {
        b.socket_timeout(Duration::from_millis(150))
            .send_buffer_size(16 * 1024)
    })
    .await;
    let port = listener.port().unwrap();
    let client = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
        .await
        .unwrap();
    let socket = within(listener.accept()).await.unwrap();
    (client, socket)
}

/// Replies that the channel buffers (its buffer holds 8 KiB) to a client that reads nothing,
/// each flushed when `flush` is set (3 KiB each; else 128 bytes, so that one fills the buffer
/// exactly), until one times out; then the connection is dropped. Checks the level of the
/// drop's event (in a span named `case`).
fn dropped_after_a_timeout(case: &'static str, flush: bool) {
    let recorder = Recorder::global();
    block_on(async {
        let selector = SelectorManager::new();
        // Connected, never read from.
        let (client, socket) = slow_reader(&selector).await;
        let span = tracing::info_span!(target: "operator_logs", "case", case);
        let result: net_sockets::Result<()> = async {
            let mut connection = socket.connection()?;
            let reply = vec![b'x'; if flush { 3 * 1024 } else { 128 }];
            // Bounded: the socket buffers of loopback hold a few MB at most.
            for _ in 0..200_000 {
                connection.output.write_fully(&reply).await?;
                if flush {
                    connection.output.flush().await?;
                }
            }
            Ok(())
        }
        .instrument(span)
        .await;
        match result {
            Err(net_sockets::Error::Timeout) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        let events = recorder.events_in("case", case);
        let dropped: Vec<_> = events
            .iter()
            .filter(|e| e.target.starts_with("net_io") && e.field("unflushed").is_some())
            .collect();
        assert_eq!(dropped.len(), 1, "the drop's event: {events:#?}");
        assert!(
            dropped[0].level > Level::INFO,
            "a drop after a timeout logged at {}: {:?}",
            dropped[0].level,
            dropped[0]
        );
        drop(client);
        selector.close();
    });
}

/// A write that timed out, then a flush that sent everything once the client read: the timeout
/// was made good. Bytes written after that and dropped unflushed are a forgotten flush like any
/// other, and warn. Before: the channel remembered the timeout for good, and the drop logged a
/// `debug` event (1 of 1 here).
#[test]
fn a_write_channel_dropped_unflushed_after_a_timeout_it_made_good_still_warns() {
    let recorder = Recorder::global();
    block_on(async {
        let selector = SelectorManager::new();
        let (mut client, socket) = slow_reader(&selector).await;
        let case = "timeout made good";
        let span = tracing::info_span!(target: "operator_logs", "case", case);
        async {
            let mut connection = socket.connection().unwrap();
            let reply = [b'x'; 128];
            // Bounded: the socket buffers of loopback hold a few MB at most.
            let mut timed_out = false;
            for _ in 0..200_000 {
                match connection.output.write_fully(&reply).await {
                    Ok(()) => {}
                    Err(net_io::Error::Timeout) => {
                        timed_out = true;
                        break;
                    }
                    Err(e) => panic!("expected a timeout, got {e:?}"),
                }
            }
            assert!(timed_out, "the client read nothing, yet no write timed out");
            // The client reads everything from now on; the flush sends what was kept.
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client, &mut tokio::io::sink()).await;
            });
            within(connection.output.flush()).await.unwrap();
            connection
                .output
                .write_fully(b"never flushed")
                .await
                .unwrap();
        }
        .instrument(span)
        .await;
        assert_one_unflushed_warning(recorder, case, "13");
        selector.close();
    });
}

/// A guard: a write channel dropped with bytes it never tried to send (a forgotten flush, no
/// error reported to anyone) still logs its `warn`.
#[test]
fn a_write_channel_dropped_unflushed_by_mistake_still_warns() {
    let recorder = Recorder::global();
    block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        let _client = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap();
        let socket = within(listener.accept()).await.unwrap();
        let span = tracing::info_span!(target: "operator_logs", "case", case = "forgot to flush");
        async {
            let mut connection = socket.connection().unwrap();
            connection
                .output
                .write_fully(b"never flushed")
                .await
                .unwrap();
        }
        .instrument(span)
        .await;
        assert_one_unflushed_warning(recorder, "forgot to flush", "13");
        selector.close();
    });
}

// ---------------------------------------------------------------------------------------------
// Peer-chosen text in a TLS handshake error

/// A server's certificate names what its owner likes: here a dNSName with a newline and a
/// terminal escape. The client's handshake fails (not valid for `localhost`), and rustls's
/// reason quotes the names the certificate holds. Before: `Error`'s `Display` passed them on
/// raw, into the `tls handshake failed` event (and into whatever log the application writes
/// the error to): a forged log line. Now control characters are escaped.
#[test]
fn a_certificate_name_with_control_characters_reaches_no_log_raw() {
    let recorder = Recorder::global();
    block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        let ca = TestCa::new("test ca");
        let evil = "evil.example\n2026-01-01T00:00:00Z  INFO forged: \u{1b}[31mline";
        let server_config = ca.server(&[evil]).server_config().build().unwrap();
        let server = async {
            let socket = within(listener.accept()).await.unwrap();
            let _ = socket.tls_server(&server_config).await;
        };
        let client = connect(
            &selector,
            "localhost",
            port,
            ca.client_config().build().unwrap(),
        );
        let ((), client) = within(async { tokio::join!(server, client) }).await;
        let e = client.expect_err("the certificate is not valid for localhost");
        let text = e.to_string();
        assert!(
            text.contains("evil.example"),
            "rustls's reason names the certificate's names: {text}"
        );
        assert!(!has_control(&text), "the error's Display: {text:?}");

        let remote = format!("127.0.0.1:{port}");
        let failed: Vec<_> = recorder
            .events_in("remote", &remote)
            .into_iter()
            .filter(|e| e.message == "tls handshake failed")
            .collect();
        assert_eq!(failed.len(), 1, "the client's event");
        let error = failed[0].field("error").unwrap_or_default();
        assert!(error.contains("evil.example"), "{error}");
        assert!(!has_control(error), "the event's error field: {error:?}");
        selector.close();
    });
}

// ---------------------------------------------------------------------------------------------
// Out of descriptors, on and off

const EMFILE_CHILD_ENV: &str = "NET_TESTS_REVIEW_LOGS_EMFILE_CHILD";
const EMFILE_TOGGLES: usize = 5;

/// A server at its descriptor limit: each connection that ends frees one descriptor, `accept`
/// takes the next connection with it and is out of descriptors again. Before: each such turn
/// was a new "episode" with its own `warn` (6 of 6 here, up to 10 a second: one per back-off),
/// at a pace the clients set by closing and opening connections. Now the warning comes at
/// most once a minute per listener; the episodes between are at `debug`.
#[test]
fn running_out_of_descriptors_again_and_again_warns_once() {
    rerun_self_with_fd_limit(
        "emfile_toggle_child",
        EMFILE_CHILD_ENV,
        64,
        "emfile toggle child passed",
    );
}

#[test]
fn emfile_toggle_child() {
    run_if_child(EMFILE_CHILD_ENV, async {
        let recorder = Recorder::global();
        let selector = SelectorManager::new();
        let listener = Arc::new(tcp_listener(&selector).await);
        let local = listener.local_address().to_string();
        // Connections waiting in the backlog, one for each turn and one more.
        let _clients: Vec<_> = (0..=EMFILE_TOGGLES)
            .map(|_| std::net::TcpStream::connect(listener.local_address().to_string()).unwrap())
            .collect();
        let mut filler = exhaust_descriptors(|| std::fs::File::open("/dev/null"));
        let exhausted = |r: &Recorder| {
            r.events_in("local", &local)
                .iter()
                .filter(|e| e.message.starts_with("out of descriptors or memory"))
                .count()
        };
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let taker = {
            let accepted = Arc::clone(&accepted);
            let listener = Arc::clone(&listener);
            tokio::spawn(async move {
                while let Ok(socket) = listener.accept().await {
                    accepted.lock().unwrap().push(socket);
                }
            })
        };
        assert_eq!(recorder.until_at_least(1, exhausted).await, 1);
        for turn in 1..=EMFILE_TOGGLES {
            // One descriptor free: the accept takes a connection with it, then runs out again.
            filler.pop();
            let n = recorder.until_at_least(turn + 1, exhausted).await;
            assert_eq!(n, turn + 1, "turn {turn}");
            assert_eq!(accepted.lock().unwrap().len(), turn);
        }
        let events = recorder.events_in("local", &local);
        let loud = at_warn_or_above(&events);
        assert_eq!(
            loud.len(),
            1,
            "warnings for {} times out of descriptors: {loud:#?}",
            EMFILE_TOGGLES + 1
        );
        taker.abort();
        drop(filler);
        listener.close();
        selector.close();
        println!("emfile toggle child passed");
    });
}

// ---------------------------------------------------------------------------------------------
// Guard: what else a peer can do, connection by connection, stays at `debug`

const HOSTILE_ROUNDS: usize = 10;

/// A guard of the guide's claim (section *Tracing*) that no event a peer causes connection by
/// connection is above `debug`: connections reset before they are accepted, connections over
/// `max_connections_per_ip`, garbage instead of a ClientHello, a line over the limit. None of
/// them logs at `info` or above.
#[test]
fn a_hostile_peer_s_connections_log_nothing_above_debug() {
    let recorder = Recorder::global();
    block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| {
            b.max_connections_per_ip(1)
                .keep_alive_idle(Duration::from_secs(30))
                .no_delay(true)
        })
        .await;
        let local = listener.local_address().to_string();
        let port = listener.port().unwrap();
        let ca = TestCa::new("test ca");
        let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
        // Reset before the accept (connect, then close with SO_LINGER 0), then one that stays:
        // `accept` may hand out reset ones first, whose reads fail or end.
        for _ in 0..HOSTILE_ROUNDS {
            let reset = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            socket2::SockRef::from(&reset)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(reset);
        }
        let mut stays = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap();
        stays
            .write_all(b"a line far over the limit\n")
            .await
            .unwrap();
        let mut held = None;
        for _ in 0..=HOSTILE_ROUNDS {
            let mut socket = within(listener.accept()).await.unwrap();
            let mut input = socket.open_read_channel().unwrap();
            let line = within(input.read_line(4, net_io::LineEnding::Default)).await;
            // The one that stays: its line is over the limit.
            if let Err(net_io::Error::TooLongLine { .. }) = line {
                held = Some(socket);
                break;
            }
        }
        assert!(held.is_some(), "the connection that stays was not accepted");

        // Over `max_connections_per_ip` while `held` is open: refused inside `accept`.
        let over: Vec<_> = {
            let mut over = Vec::new();
            for _ in 0..HOSTILE_ROUNDS {
                over.push(
                    within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
                        .await
                        .unwrap(),
                );
            }
            over
        };
        let refused = |r: &Recorder| {
            r.events_in("local", &local)
                .iter()
                .filter(|e| e.message == "refused: too many connections from this address")
                .count()
        };
        tokio::select! {
            biased;
            n = recorder.until_at_least(HOSTILE_ROUNDS, refused) => {
                assert_eq!(n, HOSTILE_ROUNDS);
            }
            accepted = listener.accept() => panic!("accepted over the cap: {accepted:?}"),
        }
        drop(over);
        drop(held);

        // Garbage where the ClientHello goes.
        for _ in 0..HOSTILE_ROUNDS {
            let _garbage = garbage_client(port).await;
            let socket = within(listener.accept()).await.unwrap();
            assert!(within(socket.tls_server(&server_config)).await.is_err());
        }
        let events = recorder.events_in("local", &local);
        let loud = at_warn_or_above(&events);
        assert!(loud.is_empty(), "{loud:#?}");
        selector.close();
    });
}

// ---------------------------------------------------------------------------------------------
// Connect attempts

/// The guide's event table: `connect attempt` (debug, in the caller's span), with the
/// `address`, one per address tried: for a connect to an IP address or a Unix path too, not
/// only for each address of a host name. (Before, only a host name's attempts logged it.)
#[test]
fn every_connect_logs_its_attempts() {
    let recorder = Recorder::global();
    block_on(async {
        let selector = SelectorManager::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = net_tests::TempDir::new("logs-connect-attempt");
        let path = dir.join("s.sock");
        let _unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        for (case, target) in [
            (
                "attempt by name",
                net_sockets::SocketAddress::from(listener.local_addr().unwrap()),
            ),
            (
                "attempt by address",
                net_sockets::SocketAddress::from(listener.local_addr().unwrap()),
            ),
            (
                "attempt by path",
                net_sockets::UnixSocketAddress::new(&path).into(),
            ),
        ] {
            let span = tracing::info_span!(target: "operator_logs", "case", case = case);
            async {
                let connect = net_sockets::a_socket(&selector).tcp();
                let socket = if case == "attempt by name" {
                    within(connect.connect(("localhost", port))).await
                } else {
                    within(connect.connect(target.clone())).await
                };
                socket.unwrap();
            }
            .instrument(span)
            .await;
            let attempts: Vec<_> = recorder
                .events_in("case", case)
                .into_iter()
                .filter(|e| e.message == "connect attempt")
                .map(|e| e.field("address").map(str::to_owned))
                .collect();
            if case == "attempt by name" {
                // `localhost` may also name `::1`, tried first.
                assert_eq!(attempts.last(), Some(&Some(target.to_string())), "{case}");
            } else {
                assert_eq!(attempts, [Some(target.to_string())], "{case}");
            }
        }
        selector.close();
    });
}
