//! The guide's tracing table (`net_sockets::guide`, section *Tracing*) held to what the code
//! logs: each event a connection's, a listener's and a datagram socket's life logs, and those
//! of a selector's and a listener's end, with the level, target, span and fields its row gives,
//! and each span with its documented fields.
//!
//! Each test runs on a current-thread runtime of its own, on its own thread, with a
//! [`Traced`] recorder as that thread's subscriber: the selector from `SelectorManager::new`
//! uses that runtime, so every task of the test (PROXY header reads included) logs there.

use std::future::Future;
use std::time::Duration;

use net_sockets::{ProxyProtocol, SelectorManager, a_socket};
use net_tests::logs::{EventSeen, Traced};
use net_tests::loopback::{connect, tcp_listener, tcp_listener_with};
use net_tests::within;
use tracing::{Instrument, Level};

/// Runs `body` on a current-thread runtime of its own, inside a span `caller` of the test's
/// own (the span the table calls "the caller's"), with a [`Traced`] recorder as this thread's
/// subscriber; returns what it saw.
fn traced<F: Future<Output = ()>>(body: impl FnOnce(Traced) -> F) -> Traced {
    let traced = Traced::default();
    tracing::subscriber::with_default(traced.clone(), || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let body = body(traced.clone());
        runtime.block_on(body.instrument(tracing::info_span!(target: "test", "caller")));
    });
    traced
}

/// Waits (up to 10 s) until `traced` saw `n` events whose message is `message`.
async fn until_logged(traced: &Traced, message: &str, n: usize) {
    within(async {
        while traced.named(message).len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// The events whose message is `message`, at least one, each checked against its row of the
/// table: its level, its crate (the target's first part), the span it is in (the innermost,
/// `caller` for "the caller's", one of `spans`; none of the crates' when `spans` is empty)
/// and the names of its fields.
fn row(
    traced: &Traced,
    message: &str,
    level: Level,
    krate: &str,
    spans: &[&str],
    fields: &[&str],
) -> Vec<EventSeen> {
    let events = traced.named(message);
    assert!(
        !events.is_empty(),
        "no `{message}` event: {:#?}",
        traced.events()
    );
    for event in &events {
        assert_eq!(event.level, level, "{message}: {event:#?}");
        assert_eq!(
            event.target.split("::").next(),
            Some(krate),
            "{message}: {event:#?}"
        );
        match event.span() {
            Some(span) => assert!(spans.contains(&span), "{message}: {event:#?}"),
            None => assert!(spans.is_empty(), "{message}: {event:#?}"),
        }
        assert_eq!(event.field_names(), fields, "{message}: {event:#?}");
    }
    events
}

/// The text of the field `name` of the innermost span of `event`.
fn span_field<'a>(event: &'a EventSeen, name: &str) -> Option<&'a str> {
    let span = event.spans.first()?;
    span.fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The names of the fields of the innermost span of `event`.
fn span_fields(event: &EventSeen) -> Vec<&str> {
    event.spans[0]
        .fields
        .iter()
        .map(|(n, _)| n.as_str())
        .collect()
}

/// A TCP connection from connect to close, its listener's and a datagram socket's: every row
/// of the table that such a life logs, with the spans' fields (`listener`: `local`;
/// `connection`: `local`, `remote`; `udp`: `local`, and `remote` once connected), all at
/// `debug` but `sent` (`trace`).
#[test]
fn a_connection_s_listener_s_and_datagram_socket_s_lives_log_the_table_s_rows() {
    let mut addresses = None;
    let traced = traced(|_| async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let mut client = connect(&selector, listener.local_address()).await;
        let mut server = within(listener.accept()).await.unwrap();
        let mut output = client.open_write_channel(false).unwrap();
        within(output.write_fully(b"hello")).await.unwrap();
        within(output.flush_and_close()).await.unwrap();
        let mut input = server.open_read_channel().unwrap();
        let got = within(input.read_remaining(64)).await.unwrap();
        assert_eq!(&got[..], b"hello");
        server.close();
        client.close();
        listener.close();
        let udp = net_tests::loopback::udp_socket(&selector).await;
        let connected = within(a_socket(&selector).udp().connect(udp.local_address()))
            .await
            .unwrap();
        addresses = Some((
            listener.local_address().to_string(),
            client.local_address().to_string(),
            server.local_address().to_string(),
            udp.local_address().to_string(),
            connected.local_address().to_string(),
        ));
        udp.close();
        connected.close();
        selector.close();
    });
    let (listening_at, client_at, server_at, udp_at, connected_at) = addresses.unwrap();

    let listening = row(
        &traced,
        "listening",
        Level::DEBUG,
        "net_sockets",
        &["listener"],
        &[],
    );
    assert_eq!(span_fields(&listening[0]), ["local"]);
    assert_eq!(span_field(&listening[0], "local"), Some(&*listening_at));
    assert_eq!(listening[0].spans[0].level, Level::DEBUG);

    let attempts = row(
        &traced,
        "connect attempt",
        Level::DEBUG,
        "net_sockets",
        &["caller"],
        &["address"],
    );
    assert_eq!(attempts[0].field("address"), Some(&*listening_at));

    let connected = row(
        &traced,
        "connected",
        Level::DEBUG,
        "net_sockets",
        &["connection"],
        &[],
    );
    assert_eq!(span_fields(&connected[0]), ["local", "remote"]);
    assert_eq!(span_field(&connected[0], "local"), Some(&*client_at));
    assert_eq!(span_field(&connected[0], "remote"), Some(&*server_at));
    assert_eq!(connected[0].spans[0].level, Level::DEBUG);

    let accepted = row(
        &traced,
        "accepted",
        Level::DEBUG,
        "net_sockets",
        &["connection"],
        &[],
    );
    assert_eq!(span_fields(&accepted[0]), ["local", "remote"]);
    assert_eq!(span_field(&accepted[0], "local"), Some(&*server_at));
    assert_eq!(span_field(&accepted[0], "remote"), Some(&*client_at));

    let sent = row(
        &traced,
        "sent",
        Level::TRACE,
        "net_sockets",
        &["connection"],
        &["bytes"],
    );
    assert!(
        sent.iter()
            .all(|e| span_field(e, "local") == Some(&*client_at))
    );
    let bytes: u64 = sent
        .iter()
        .map(|e| e.field("bytes").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(bytes, 5);

    let shut = row(
        &traced,
        "write side shut down",
        Level::DEBUG,
        "net_sockets",
        &["connection"],
        &[],
    );
    assert_eq!(span_field(&shut[0], "local"), Some(&*client_at));

    let closed = row(
        &traced,
        "closed",
        Level::DEBUG,
        "net_sockets",
        &["connection", "listener", "udp"],
        &["reset"],
    );
    let closed_in = |span: &str, local: &str| {
        let mut events = closed
            .iter()
            .filter(|e| e.span() == Some(span) && span_field(e, "local") == Some(local));
        let event = events
            .next()
            .unwrap_or_else(|| panic!("{span} {local}: {closed:#?}"));
        assert!(events.next().is_none(), "{span} {local}: {closed:#?}");
        assert_eq!(event.field("reset"), Some("false"), "{event:#?}");
        event.clone()
    };
    closed_in("connection", &client_at);
    closed_in("connection", &server_at);
    closed_in("listener", &listening_at);
    let udp = closed_in("udp", &udp_at);
    assert_eq!(span_fields(&udp), ["local"]);
    let connected = closed_in("udp", &connected_at);
    assert_eq!(span_fields(&connected), ["local", "remote"]);
    assert_eq!(span_field(&connected, "remote"), Some(&*udp_at));

    let open = row(
        &traced,
        "datagram socket open",
        Level::DEBUG,
        "net_sockets",
        &["udp"],
        &[],
    );
    assert_eq!(open.len(), 2, "{open:#?}");

    let closing = row(
        &traced,
        "selector manager closing",
        Level::DEBUG,
        "net_sockets",
        &["caller"],
        &["sockets"],
    );
    assert_eq!(closing[0].field("sockets"), Some("0"));

    // Nothing else, and nothing above `debug` but what the rows above allow.
    let documented = [
        "listening",
        "connect attempt",
        "connected",
        "accepted",
        "sent",
        "write side shut down",
        "closed",
        "datagram socket open",
        "selector manager closing",
    ];
    for event in traced.events() {
        if event.target != "test" {
            assert!(
                documented.contains(&&*event.message),
                "undocumented: {event:#?}"
            );
        }
    }
}

/// A connection closed with bytes its write channel never sent, and one whose write failed
/// (its peer reset it): each `closed` event says `reset=true`, as the table's `reset` field
/// says ("whether the close was made a reset, as after bytes lost or a failed write").
#[test]
fn closes_after_bytes_lost_or_a_failed_write_log_closed_with_reset_true() {
    let mut at = None;
    let traced = traced(|_| async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let mut client = connect(&selector, listener.local_address()).await;
        let _server = within(listener.accept()).await.unwrap();
        let mut output = client.open_write_channel(false).unwrap();
        within(output.write_fully(b"never sent")).await.unwrap();
        output.cancel();
        client.close();

        let peer = std::net::TcpStream::connect(listener.local_address().to_string()).unwrap();
        let mut server = within(listener.accept()).await.unwrap();
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer);
        let mut output = server.open_write_channel(true).unwrap();
        let e = net_tests::loopback::write_until_error(&mut output, &[7; 4096]).await;
        assert!(matches!(e, net_io::Error::Io(_)), "{e:?}");
        drop(output);
        server.close();
        at = Some((
            client.local_address().to_string(),
            server.remote_address().to_string(),
        ));
        selector.close();
    });
    let (client_at, server_peer) = at.unwrap();
    let closed = row(
        &traced,
        "closed",
        Level::DEBUG,
        "net_sockets",
        &["connection", "listener"],
        &["reset"],
    );
    for (name, value) in [("local", &client_at), ("remote", &server_peer)] {
        let of: Vec<_> = closed
            .iter()
            .filter(|e| e.span() == Some("connection") && span_field(e, name) == Some(value))
            .collect();
        assert_eq!(of.len(), 1, "{name}={value}: {closed:#?}");
        assert_eq!(
            of[0].field("reset"),
            Some("true"),
            "{name}={value}: {closed:#?}"
        );
    }
}

/// A listener's refusal over `max_connections_per_ip`, its dropped PROXY connections (a bad
/// header: the listener's first a `warn`, the next a `debug`; a reset before any header under
/// `Optional`) and its `shutdown` log their rows, with the fields the table gives: `remote`;
/// `peer` and `error` (the OS error's text where the OS failed it); `finished`, `cut`, `grace`.
#[test]
fn a_listener_s_refusals_dropped_headers_and_shutdown_log_the_table_s_rows() {
    let mut addresses = None;
    let found = &mut addresses;
    let traced = traced(|traced| async move {
        let selector = SelectorManager::new();

        let capped = tcp_listener_with(&selector, |b| b.max_connections_per_ip(1)).await;
        let first = connect(&selector, capped.local_address()).await;
        let kept = within(capped.accept()).await.unwrap();
        let second = connect(&selector, capped.local_address()).await;
        tokio::select! {
            accepted = capped.accept() => panic!("the second was accepted: {accepted:?}"),
            () = until_logged(&traced, "refused: too many connections from this address", 1) => {}
        }
        let report = within(capped.shutdown(Duration::from_millis(20))).await;
        assert_eq!((report.finished, report.cut), (0, 1));

        let required =
            tcp_listener_with(&selector, |b| b.proxy_protocol(ProxyProtocol::Required)).await;
        let port = required.port().unwrap();
        let bad = "dropped a connection: bad PROXY protocol header";
        let _one = net_tests::tls::garbage_client(port).await;
        let _two = net_tests::tls::garbage_client(port).await;
        tokio::select! {
            accepted = required.accept() => panic!("a garbage header was accepted: {accepted:?}"),
            () = until_logged(&traced, bad, 2) => {}
        }

        let optional =
            tcp_listener_with(&selector, |b| b.proxy_protocol(ProxyProtocol::Optional)).await;
        let reset = std::net::TcpStream::connect(optional.local_address().to_string()).unwrap();
        socket2::SockRef::from(&reset)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(reset);
        tokio::select! {
            accepted = optional.accept() => panic!("a reset connection was accepted: {accepted:?}"),
            () = until_logged(
                &traced,
                "dropped a connection that failed before it sent a PROXY protocol header",
                1,
            ) => {}
        }

        *found = Some((
            capped.local_address().to_string(),
            second.local_address().to_string(),
            required.local_address().to_string(),
            optional.local_address().to_string(),
            kept.local_address().to_string(),
            first.local_address().to_string(),
        ));
        // `first` (and `second`, refused) still open: the selector's close closes them.
        selector.close();
        drop((first, kept, second));
    });
    let (capped_at, second_at, required_at, optional_at, kept_at, first_at) = addresses.unwrap();

    let refused = row(
        &traced,
        "refused: too many connections from this address",
        Level::DEBUG,
        "net_sockets",
        &["listener"],
        &["remote"],
    );
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].field("remote"), Some(&*second_at));
    assert_eq!(span_field(&refused[0], "local"), Some(&*capped_at));

    let drained = row(
        &traced,
        "shutdown drained",
        Level::DEBUG,
        "net_sockets",
        &["caller"],
        &["finished", "cut", "grace"],
    );
    assert_eq!(drained[0].field("finished"), Some("0"));
    assert_eq!(drained[0].field("cut"), Some("1"));
    assert_eq!(drained[0].field("grace"), Some("20ms"));

    // A connection the shutdown cut, and one the selector's close closed, log `closed` too.
    let closed = row(
        &traced,
        "closed",
        Level::DEBUG,
        "net_sockets",
        &["connection", "listener"],
        &["reset"],
    );
    for local in [&kept_at, &first_at] {
        let of = closed
            .iter()
            .filter(|e| e.span() == Some("connection") && span_field(e, "local") == Some(local));
        assert_eq!(of.count(), 1, "{local}: {closed:#?}");
    }
    let closing = row(
        &traced,
        "selector manager closing",
        Level::DEBUG,
        "net_sockets",
        &["caller"],
        &["sockets"],
    );
    let sockets: usize = closing[0].field("sockets").unwrap().parse().unwrap();
    assert!(sockets >= 2, "{closing:#?}");

    let bad = traced.named("dropped a connection: bad PROXY protocol header");
    assert_eq!(
        bad.iter().map(|e| e.level).collect::<Vec<_>>(),
        [Level::WARN, Level::DEBUG],
        "{bad:#?}"
    );
    for event in &bad {
        assert!(event.target.starts_with("net_sockets::"), "{event:#?}");
        assert_eq!(event.span(), Some("listener"), "{event:#?}");
        assert_eq!(span_field(event, "local"), Some(&*required_at));
        assert_eq!(event.field_names(), ["peer", "error"], "{event:#?}");
    }

    let failed = row(
        &traced,
        "dropped a connection that failed before it sent a PROXY protocol header",
        Level::DEBUG,
        "net_sockets",
        &["listener"],
        &["peer", "error"],
    );
    assert_eq!(span_field(&failed[0], "local"), Some(&*optional_at));
    let error = failed[0].field("error").unwrap();
    assert!(
        error.contains(&format!("os error {}", libc::ECONNRESET)),
        "{error}"
    );
}

/// A selector from `SelectorManager::new` whose runtime ends before it is closed: the runtime's
/// end logs its row, in none of the crates' spans.
#[test]
fn a_selector_s_runtime_that_ends_logs_its_row() {
    let traced = Traced::default();
    tracing::subscriber::with_default(traced.clone(), || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let selector = runtime.block_on(async { SelectorManager::new() });
        drop(runtime);
        assert!(selector.is_closed());
    });
    row(
        &traced,
        "the selector's runtime shut down",
        Level::DEBUG,
        "net_sockets",
        &[],
        &[],
    );
}

/// Net-tls's rows: `tls handshake done` (`side`, `version`) and `tls handshake failed`
/// (`side`, `error`) in the `connection` span, and the `warn` of a client configuration that
/// accepts any server certificate.
#[test]
fn net_tls_s_events_log_their_rows() {
    use net_tls::TlsExt;
    let traced = traced(|_| async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        let ca = net_tests::pki::TestCa::new("test ca");
        let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
        let accept = async {
            let socket = listener.accept().await.unwrap();
            socket.tls_server(&server_config).await.unwrap()
        };
        let config = net_tls::TlsConfig::builder()
            .dangerous_accept_any_server_certificate()
            .build()
            .unwrap();
        let client = async {
            net_tests::tls::connect(&selector, "localhost", port, config)
                .await
                .unwrap()
        };
        let (mut server, mut client) = within(async { tokio::join!(accept, client) }).await;
        let mut output = client.open_write_channel(false).unwrap();
        within(output.write_fully(b"hello")).await.unwrap();
        within(output.flush_and_close()).await.unwrap();
        let mut input = server.open_read_channel().unwrap();
        assert_eq!(
            &within(input.read_remaining(64)).await.unwrap()[..],
            b"hello"
        );
        drop((server, client));
        let _garbage = net_tests::tls::garbage_client(port).await;
        let socket = within(listener.accept()).await.unwrap();
        assert!(within(socket.tls_server(&server_config)).await.is_err());
        selector.close();
    });
    let done = row(
        &traced,
        "tls handshake done",
        Level::DEBUG,
        "net_tls",
        &["connection"],
        &["side", "version"],
    );
    let mut sides: Vec<_> = done.iter().map(|e| e.field("side").unwrap()).collect();
    sides.sort_unstable();
    assert_eq!(sides, ["client", "server"]);
    // A TLS stream's sends and its write side's shutdown (after `close_notify`) are the
    // connection's, as a plain one's.
    row(
        &traced,
        "sent",
        Level::TRACE,
        "net_sockets",
        &["connection"],
        &["bytes"],
    );
    row(
        &traced,
        "write side shut down",
        Level::DEBUG,
        "net_sockets",
        &["connection"],
        &[],
    );
    let failed = row(
        &traced,
        "tls handshake failed",
        Level::DEBUG,
        "net_tls",
        &["connection"],
        &["side", "error"],
    );
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].field("side"), Some("server"));
    let insecure: Vec<_> = traced
        .events()
        .into_iter()
        .filter(|e| {
            e.message
                .starts_with("TLS client configured to accept any server certificate")
        })
        .collect();
    assert_eq!(insecure.len(), 1, "{:#?}", traced.events());
    assert_eq!(insecure[0].level, Level::WARN);
    assert!(insecure[0].target.starts_with("net_tls::"));
    assert_eq!(insecure[0].span(), Some("caller"));
}

/// Hostile clients of each kind per test of the flood below.
const FLOOD: usize = 20;

/// The guide's promise (section *Tracing*) that clients cannot fill a log kept at `info`, held
/// against a flood on one listener behind a PROXY header (`Optional`), with a per-address cap
/// and TLS: `FLOOD` clients each of a bad header, a header cut short by a reset, a reset
/// before any header, garbage instead of a ClientHello behind a good header, and one over
/// the cap. All of that logs one event above `debug`: the `warn` of the listener's first bad
/// header; the stats count every bad header and every refusal. The connections accepted have
/// a `connection` span with `via`, as the table's span row says.
#[test]
fn a_flood_of_hostile_clients_behind_proxy_headers_logs_one_warning() {
    let mut stats = None;
    let found = &mut stats;
    let traced = traced(|traced| async move {
        use net_tls::TlsExt;
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| {
            b.proxy_protocol(ProxyProtocol::Optional)
                .max_connections_per_ip(1)
        })
        .await;
        let port = listener.port().unwrap();
        let ca = net_tests::pki::TestCa::new("test ca");
        let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
        // Accepts on: a connection from the held address is kept (its place taken), any other
        // gets a TLS handshake, which fails on the garbage it sent.
        let server = async {
            let mut held = Vec::new();
            loop {
                let socket = listener.accept().await.unwrap();
                if socket
                    .remote_address()
                    .to_string()
                    .starts_with("198.51.100.1:")
                {
                    held.push(socket);
                } else {
                    assert!(within(socket.tls_server(&server_config)).await.is_err());
                }
            }
        };
        let client = |sent: &[u8], reset: bool| {
            let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            std::io::Write::write_all(&mut client, sent).unwrap();
            if reset {
                socket2::SockRef::from(&client)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            client
        };
        let clients = async {
            let mut open = Vec::new();
            for i in 0..FLOOD {
                open.push(client(b"PROXY TCP4 not a header\r\n", false));
                drop(client(b"PROXY TCP4 192", true));
                drop(client(b"", true));
                let header = format!("PROXY TCP4 192.0.2.{} 127.0.0.1 5000 {port}\r\n", i + 1);
                open.push(client(
                    &[header.as_bytes(), b"GET / HTTP/1.1\r\n\r\n"].concat(),
                    false,
                ));
            }
            let header = format!("PROXY TCP4 198.51.100.1 127.0.0.1 5000 {port}\r\n");
            open.push(client(header.as_bytes(), false));
            until_logged(&traced, "accepted", FLOOD + 1).await;
            for _ in 0..FLOOD {
                open.push(client(header.as_bytes(), false));
            }
            let bad = "dropped a connection: bad PROXY protocol header";
            until_logged(&traced, bad, 2 * FLOOD).await;
            until_logged(&traced, "tls handshake failed", FLOOD).await;
            until_logged(
                &traced,
                "refused: too many connections from this address",
                FLOOD,
            )
            .await;
            let before = "dropped a connection that failed before it sent a PROXY protocol header";
            until_logged(&traced, before, FLOOD).await;
            open
        };
        tokio::select! {
            () = server => unreachable!(),
            open = clients => drop(open),
        }
        *found = Some(listener.stats());
        selector.close();
    });
    let stats = stats.unwrap();
    assert_eq!(stats.proxy_header_failures, 2 * FLOOD as u64, "{stats:?}");
    assert_eq!(stats.refused_per_ip, FLOOD as u64, "{stats:?}");
    let loud: Vec<_> = traced
        .events()
        .into_iter()
        .filter(|e| e.level <= Level::INFO && e.target != "test")
        .collect();
    assert_eq!(loud.len(), 1, "{loud:#?}");
    assert_eq!(
        loud[0].message,
        "dropped a connection: bad PROXY protocol header"
    );
    assert_eq!(loud[0].level, Level::WARN);

    // The connections the headers named a client for: their span has `via`, the proxy's
    // address (here the client's own), after `local` and `remote` (the client named).
    let accepted = row(
        &traced,
        "accepted",
        Level::DEBUG,
        "net_sockets",
        &["connection"],
        &[],
    );
    assert_eq!(accepted.len(), FLOOD + 1);
    for event in &accepted {
        assert_eq!(span_fields(event), ["local", "remote", "via"], "{event:#?}");
        let remote = span_field(event, "remote").unwrap();
        assert!(remote.ends_with(":5000"), "{event:#?}");
        let via = span_field(event, "via").unwrap();
        assert!(via.starts_with("127.0.0.1:"), "{event:#?}");
        assert_ne!(via, "127.0.0.1:5000", "{event:#?}");
    }
}

const EMFILE_CHILD_ENV: &str = "NET_TESTS_EVENTS_TABLE_EMFILE_CHILD";

/// A listener out of descriptors logs its two rows: `out of descriptors or memory; ...` (its
/// first a `warn`, with the OS error in `error`) once for the episode, and `resources
/// available again, accepting` once an accept succeeds again, both in the `listener` span.
/// (In a child process with a limit of 64 descriptors.)
#[test]
fn running_out_of_descriptors_logs_its_rows() {
    net_tests::harness::rerun_self_with_fd_limit(
        "running_out_of_descriptors_child",
        EMFILE_CHILD_ENV,
        64,
        "events table emfile child passed",
    );
}

#[test]
fn running_out_of_descriptors_child() {
    let traced = Traced::default();
    let seen = traced.clone();
    tracing::subscriber::with_default(traced, || {
        net_tests::harness::run_if_child(EMFILE_CHILD_ENV, async move {
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let local = listener.local_address().to_string();
            let _client = std::net::TcpStream::connect(&local).unwrap();
            let filler = net_tests::probe::exhaust_descriptors(|| std::fs::File::open("/dev/null"));
            let out = "out of descriptors or memory; accept pauses and retries every 100 ms";
            let accept = listener.accept();
            tokio::pin!(accept);
            tokio::select! {
                accepted = &mut accept => panic!("accepted out of descriptors: {accepted:?}"),
                () = until_logged(&seen, out, 1) => {}
            }
            drop(filler);
            within(accept).await.unwrap();

            let out = row(
                &seen,
                out,
                Level::WARN,
                "net_sockets",
                &["listener"],
                &["error"],
            );
            assert_eq!(out.len(), 1, "{out:#?}");
            assert_eq!(span_field(&out[0], "local"), Some(&*local));
            let error = out[0].field("error").unwrap();
            assert!(
                error.contains(&format!("os error {}", libc::EMFILE)),
                "{error}"
            );
            let again = row(
                &seen,
                "resources available again, accepting",
                Level::DEBUG,
                "net_sockets",
                &["listener"],
                &[],
            );
            assert_eq!(again.len(), 1, "{again:#?}");
            assert_eq!(span_field(&again[0], "local"), Some(&*local));
            selector.close();
            println!("events table emfile child passed");
        });
    });
}
