//! Claims of the prose documents (`guide.md`, `coming_from_ktor.md`, the READMEs) that no other
//! test states as such, each checked as the document words it:
//!
//! - the defaults the guide's tables and `coming_from_ktor` give: no `socket_timeout`, a
//!   backlog of 1,024, `no_delay` and flush coalescing on, no PROXY header expected, 5 seconds
//!   for one, no connection caps; options set on `a_socket(..)` carry into `tcp()`;
//! - "a handshake timeout (10 s by default)" (`coming_from_ktor`'s TLS table, the guide's "What
//!   bounds what", the README), on the server's and the client's side, on a paused clock;
//! - `coming_from_ktor`'s `isClosedForRead` row: here it turns true once a read has seen the
//!   end, where Ktor's `ByteChannel` turns true as soon as its writer has closed and every byte
//!   was read, so a Ktor loop `while (!isClosedForRead) readByte()` ported as it is ends in
//!   `UnexpectedEof`;
//! - the workspace README's TLS snippet (a `rust,ignore` block): its names and types, compiled.

use std::future::Future;
use std::time::Duration;

use net_io::{ByteChannel, Error as IoError};
use net_sockets::{ProxyProtocol, SelectorManager, a_socket};
use net_tests::HANG_LIMIT;
use net_tests::loopback::{connected_pair, tcp_listener_with};
use net_tests::pki::Pki;
use net_tests::within;
use net_tls::TlsExt;
use tokio::time::Instant;

/// Runs `body` on a current-thread runtime on a thread of its own (which `body` pauses once its
/// connections are set up); panics if it does not finish within [`HANG_LIMIT`] of real time.
fn paused<F, Fut>(body: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = done.send(runtime.block_on(body()));
    });
    finished
        .recv_timeout(HANG_LIMIT)
        .expect("the paused runtime hung (or its test panicked)")
}

/// The guide: `socket_timeout` "There is none by default"; `backlog` "1,024 by default";
/// `proxy_header_timeout` "5 seconds by default"; flush coalescing "on by default".
/// `coming_from_ktor`: `no_delay` "On by default, as in Ktor"; `a_socket` "Options set here
/// carry into `tcp()` and `udp()`".
#[tokio::test]
async fn the_builders_defaults_are_those_the_documents_state() {
    let selector = SelectorManager::new();
    let tcp = a_socket(&selector).tcp();
    let options = tcp.options();
    assert_eq!(options.socket_timeout, None);
    assert_eq!(options.connect_timeout, None);
    assert_eq!(options.backlog, 1024);
    assert!(options.no_delay);
    assert!(options.coalesce_flushes);
    assert_eq!(options.proxy_protocol, ProxyProtocol::Off);
    assert_eq!(options.proxy_header_timeout, Duration::from_secs(5));
    assert_eq!(options.max_connections, None);
    assert_eq!(options.max_connections_per_ip, None);

    let carried = a_socket(&selector)
        .send_buffer_size(64 * 1024)
        .reuse_port(true);
    assert_eq!(
        carried.clone().tcp().options().send_buffer_size,
        Some(64 * 1024)
    );
    assert!(carried.clone().tcp().options().reuse_port);
    assert_eq!(carried.udp().options().send_buffer_size, Some(64 * 1024));
    selector.close();
}

/// "a handshake timeout (10 s by default)": a server handshake with a client that sends
/// nothing, and a client handshake with a server that answers nothing, each built without
/// `handshake_timeout`, fail with `HandshakeTimeout(10 s)` once the paused clock reached 10 s.
#[test]
fn tls_handshakes_time_out_after_10_seconds_by_default() {
    const DEFAULT: Duration = Duration::from_secs(10);
    paused(|| async {
        let pki = Pki::generate();
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b).await;
        let server_config = pki.server_config().build().unwrap();
        let client_config = pki.client_config().build().unwrap();
        let (client, server) = connected_pair(&selector, &listener).await;
        let (other_client, _other_server) = connected_pair(&selector, &listener).await;

        tokio::time::pause();
        let started = Instant::now();
        let handshake = server.tls_server(&server_config).await;
        assert!(
            matches!(handshake, Err(net_tls::Error::HandshakeTimeout(t)) if t == DEFAULT),
            "{handshake:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= DEFAULT && waited <= DEFAULT + Duration::from_millis(2),
            "the server's handshake gave up after {waited:?}"
        );
        drop(client);

        let started = Instant::now();
        let handshake = other_client.tls(client_config).await;
        assert!(
            matches!(handshake, Err(net_tls::Error::HandshakeTimeout(t)) if t == DEFAULT),
            "{handshake:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= DEFAULT && waited <= DEFAULT + Duration::from_millis(2),
            "the client's handshake gave up after {waited:?}"
        );
        selector.close();
    });
}

/// `coming_from_ktor`: "`is_closed_for_read` turns true once a read has seen the end". After
/// the writer closed and a read took the last bytes without looking past them, it is still
/// `false` (Ktor's `ByteChannel`'s `isClosedForRead` is `true` there), so a Ktor loop
/// `while (!isClosedForRead) readByte()` ported as it is gets `UnexpectedEof`; a read that
/// reaches the end (`await_content(1)`, a line read's `None`) is what ends such a loop here.
#[tokio::test]
async fn is_closed_for_read_turns_true_only_once_a_read_has_seen_the_end() {
    let (mut output, mut input) = ByteChannel::new(false);
    output.write_fully(b"ab").await.unwrap();
    output.flush_and_close().await.unwrap();

    assert_eq!(&within(input.read_bytes(2)).await.unwrap()[..], b"ab");
    assert_eq!(input.available_for_read(), 0);
    assert!(
        !input.is_closed_for_read(),
        "no read has seen the end yet (Ktor's would be closed for read here)"
    );
    // The Ktor loop, ported as it is: one more read, which finds the end.
    assert!(matches!(
        within(input.read_u8()).await,
        Err(IoError::UnexpectedEof {
            needed: 1,
            available: 0
        })
    ));
    assert!(input.is_closed_for_read());

    // The loop that ends cleanly: ask whether a byte comes.
    let (mut output, mut input) = ByteChannel::new(false);
    output.write_fully(b"ab").await.unwrap();
    output.flush_and_close().await.unwrap();
    let mut got = Vec::new();
    while within(input.await_content(1)).await.unwrap() {
        got.push(input.read_u8().await.unwrap());
    }
    assert_eq!(got, b"ab");
    assert!(input.is_closed_for_read());
}

/// The workspace README's "In code" TLS snippet (a `rust,ignore` block), as it is, in a
/// function: it must compile (it is never run: it connects to example.com).
#[allow(dead_code, unused_variables, unused_mut)]
async fn readme_tls_snippet(
    server: net_sockets::ServerSocket,
    chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
) -> Result<(), Box<dyn std::error::Error>> {
    use net_sockets::{SelectorManager, a_socket};
    use net_tls::{TlsConfig, TlsExt, TlsServerConfig};

    let selector = SelectorManager::new();
    // Client: SNI and certificate verification against "example.com".
    let mut tls = a_socket(&selector)
        .tcp()
        .connect(("example.com", 443))
        .await?
        .tls(TlsConfig::builder().build()?)
        .await?;
    let mut input = tls.open_read_channel()?;

    // Server.
    let config = TlsServerConfig::builder()
        .certificate_chain_pem(&chain_pem)?
        .private_key_pem(&key_pem)?
        .alpn_protocols(["h2", "http/1.1"])
        .build()?;
    let tls = server.accept().await?.tls_server(&config).await?;
    Ok(())
}

/// The guide's step 5: `close_gracefully(wait)` "reads and discards the client's input until
/// the client closes too or `wait` passes (a shorter `socket_timeout` does not end it)": a
/// client that read the answer and stays silent, without closing, holds the call for `wait`,
/// not for the listener's shorter `socket_timeout`, and the call returns `Ok`.
#[tokio::test]
async fn a_shorter_socket_timeout_does_not_end_close_gracefully_s_drain() {
    const SOCKET: Duration = Duration::from_millis(100);
    const WAIT: Duration = Duration::from_millis(600);
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| b.socket_timeout(SOCKET)).await;
    let port = listener.port().unwrap();
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let server = within(listener.accept()).await.unwrap();
    let mut connection = server.connection().unwrap();
    connection.output.write_fully(b"goodbye\n").await.unwrap();

    let started = std::time::Instant::now();
    let closed = within(connection.close_gracefully(WAIT)).await;
    let waited = started.elapsed();
    assert!(closed.is_ok(), "{closed:?}");
    assert!(waited >= WAIT, "the drain ended after {waited:?}");

    // The client got the answer, then the end.
    let mut got = Vec::new();
    let end = within(tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got)).await;
    assert_eq!(got, b"goodbye\n");
    assert!(end.is_ok(), "{end:?}");
    selector.close();
}

/// The guide's step 5: "`wait` bounds the whole of it, the flush included: a client that reads
/// nothing ... gets a reset after `wait`, and the call fails with `Error::Timeout`". The flush
/// is a write: a listener's `socket_timeout` shorter than `wait` fails it first (as the guide's
/// step 3 says of every write that makes no progress), with the same `Error::Timeout`.
#[tokio::test]
async fn a_shorter_socket_timeout_ends_close_gracefully_s_flush_first() {
    const SOCKET: Duration = Duration::from_millis(100);
    const WAIT: Duration = Duration::from_secs(10);
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| {
        b.socket_timeout(SOCKET).send_buffer_size(4096)
    })
    .await;
    let (server, _peer) = net_tests::loopback::accepted_with_full_buffers(&listener).await;
    let mut connection = server.connection().unwrap();
    connection.output.write_fully(b"goodbye\n").await.unwrap();

    let started = std::time::Instant::now();
    let closed = within(connection.close_gracefully(WAIT)).await;
    let waited = started.elapsed();
    assert!(
        matches!(closed, Err(net_sockets::Error::Timeout)),
        "{closed:?}"
    );
    assert!(
        waited >= SOCKET && waited < WAIT / 2,
        "the flush gave up after {waited:?}"
    );
    selector.close();
}

/// The string literals of `text` (a macro invocation's arguments), unescaped enough for a
/// log message: `\"`, `\\` and a line continuation (`\` at the end of a line, and the next
/// line's leading blanks).
fn string_literals(text: &str) -> Vec<String> {
    let mut literals = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut literal = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('\n') => {
                        while chars.peek().is_some_and(|c| c.is_whitespace()) {
                            chars.next();
                        }
                    }
                    Some(escaped) => literal.push(escaped),
                    None => {}
                },
                c => literal.push(c),
            }
        }
        literals.push(literal);
    }
    literals
}

/// The messages of the `tracing` events in `source` (a Rust file, its `#[cfg(test)] mod tests`
/// left out): the last string literal of each `tracing::LEVEL!(...)`.
fn event_messages(source: &str) -> Vec<String> {
    let source = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or(source);
    let mut messages = Vec::new();
    for level in ["trace", "debug", "info", "warn", "error"] {
        let call = format!("tracing::{level}!(");
        for (at, _) in source.match_indices(&call) {
            let args = &source[at + call.len()..];
            // To the parenthesis that closes the call (the messages hold none).
            let mut depth = 1;
            let end = args
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(args.len(), |(i, _)| i);
            if let Some(message) = string_literals(&args[..end]).pop() {
                messages.push(message);
            }
        }
    }
    messages
}

/// The guide's step 8 lists the crates' events, and net-sockets' crate docs say that it "lists
/// them all": every event of the three libraries has a row there, found by the start of its
/// message (up to its first format argument, at most 30 characters). (The selector's warning
/// about a socket dropped on another thread that held its descriptor past the close had none.)
#[test]
fn the_guide_lists_every_event_of_the_libraries() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("crates/net-sockets/src/guide.md")).unwrap();
    let tracing = guide
        .split("# 8. Tracing")
        .nth(1)
        .and_then(|rest| rest.split("# 9. TLS").next())
        .expect("the guide's step 8");
    let mut checked = 0;
    let mut missing = Vec::new();
    for krate in ["net-io", "net-sockets", "net-tls"] {
        let dir = root.join("crates").join(krate).join("src");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            for message in event_messages(&source) {
                let start: String = message
                    .split('{')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(30)
                    .collect();
                checked += 1;
                if !tracing.contains(&start) {
                    missing.push(format!("{}: {message:?}", file.display()));
                }
            }
        }
    }
    assert!(
        checked >= 30,
        "only {checked} events found: the scan is broken"
    );
    assert!(
        missing.is_empty(),
        "events without a row in the guide's step 8:\n{}",
        missing.join("\n")
    );
}
