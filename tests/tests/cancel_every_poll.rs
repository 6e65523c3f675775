//! Cancellation at every poll: each operation is polled k times (k = 1, 2, … until it
//! completes), woken only by its own waker, then dropped, as `select!` or `timeout` would; then
//! what its documentation promises is checked (nothing lost or doubled, the socket still usable
//! or closed, the peer told, no descriptor kept).
//!
//! The tests run one at a time (a lock), so that descriptor counts see no other test's sockets.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use net_io::LineEnding;
use net_sockets::{Datagram, ProxyProtocol, SelectorManager, ServerSocket, a_socket};
use net_tests::loopback::{
    connect, connected_pair, next_item, tcp_listener, tcp_listener_with, udp_socket,
};
use net_tests::pki::Pki;
use net_tests::probe::fd_count;
use net_tests::{payload, poll_at_most, within};
use net_tls::{TlsConfig, TlsExt, TlsServerConfig, TlsSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serialises the tests of this binary (descriptor counts).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The most polls tried for one operation before the test gives up on it completing.
const MAX_POLLS: usize = 64;

/// Waits (bounded) until the descriptor count is back to `expected`.
async fn settle_to(expected: usize) {
    within(async {
        while fd_count() > expected {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Waits (bounded) until `listener` counts no open connection.
async fn no_open_connection(listener: &ServerSocket) {
    within(async {
        while listener.stats().open != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn tls_configs(pki: &Pki) -> (TlsServerConfig, TlsConfig) {
    let server = pki.server_config().build().unwrap();
    let client = pki.client_config().build().unwrap();
    (server, client)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client handshake dropped after k polls: the server's handshake fails (never hangs until
/// its timeout, never succeeds), the listener counts the connection gone, and the descriptors
/// come back.
#[test]
fn a_client_handshake_dropped_at_every_poll_leaves_nothing_behind() {
    let _serial = serial();
    runtime().block_on(async {
        let pki = Pki::generate();
        let (server_config, client_config) = tls_configs(&pki);
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        let before = fd_count();
        for polls in 1..=MAX_POLLS {
            let socket = connect(&selector, ("localhost", port)).await;
            let accepted = within(listener.accept()).await.unwrap();
            let server_config = server_config.clone();
            let server = tokio::spawn(async move { accepted.tls_server(&server_config).await });
            let handshake = socket.tls(client_config.clone());
            let Some(done) = poll_at_most(handshake, polls).await else {
                let served = within(server).await.unwrap();
                assert!(
                    served.is_err(),
                    "the server's handshake completed with a client that gave up at poll {polls}"
                );
                no_open_connection(&listener).await;
                continue;
            };
            let mut tls = done.expect("the client's handshake");
            let mut served = within(server)
                .await
                .unwrap()
                .expect("the server's handshake");
            // Both sides work.
            let mut output = tls.open_write_channel(true).unwrap();
            output.write_string_utf8("ping\n").await.unwrap();
            let mut input = served.open_read_channel().unwrap();
            let line = within(input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("ping"));
            drop((input, output, tls, served));
            no_open_connection(&listener).await;
            settle_to(before).await;
            return;
        }
        panic!("the handshake did not complete in {MAX_POLLS} polls");
    });
}

/// A server handshake dropped after k polls: the client's handshake fails with a typed error,
/// the listener counts the connection gone, and the descriptors come back.
#[test]
fn a_server_handshake_dropped_at_every_poll_leaves_nothing_behind() {
    let _serial = serial();
    runtime().block_on(async {
        let pki = Pki::generate();
        let (server_config, client_config) = tls_configs(&pki);
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        let before = fd_count();
        for polls in 1..=MAX_POLLS {
            let client_config = client_config.clone();
            let selector_c = selector.clone();
            let client = tokio::spawn(async move {
                let socket = a_socket(&selector_c)
                    .tcp()
                    .connect(("localhost", port))
                    .await?;
                socket.tls(client_config).await
            });
            let accepted = within(listener.accept()).await.unwrap();
            let handshake = accepted.tls_server(&server_config);
            let Some(done) = poll_at_most(handshake, polls).await else {
                let client = within(client).await.unwrap();
                if let Ok(mut tls) = client {
                    // TLS 1.3: the client may finish first; its first read must then fail.
                    let mut input = tls.open_read_channel().unwrap();
                    let read = within(input.read_line(64, LineEnding::Default)).await;
                    assert!(read.is_err(), "gave up at poll {polls}, read: {read:?}");
                }
                no_open_connection(&listener).await;
                continue;
            };
            done.expect("the server's handshake");
            within(client)
                .await
                .unwrap()
                .expect("the client's handshake");
            no_open_connection(&listener).await;
            settle_to(before).await;
            return;
        }
        panic!("the handshake did not complete in {MAX_POLLS} polls");
    });
}

/// One side's STARTTLS upgrade was dropped after `polls` polls: the other side's upgrade
/// failed, or (TLS 1.3: it may finish first) its first read fails; the listener counts the
/// connection gone.
async fn the_other_side_fails<E>(
    other: Result<TlsSocket, E>,
    polls: usize,
    listener: &ServerSocket,
) {
    if let Ok(mut tls) = other {
        let mut input = tls.open_read_channel().unwrap();
        let read = within(input.read_line(64, LineEnding::Default)).await;
        assert!(read.is_err(), "gave up at poll {polls}, read: {read:?}");
    }
    no_open_connection(listener).await;
}

/// Both sides upgraded: a line from `client` reaches `served`, and once both are dropped the
/// listener counts the connection gone and the descriptors come back to `before`.
async fn a_line_goes_through_then_all_is_released(
    mut client: TlsSocket,
    mut served: TlsSocket,
    listener: &ServerSocket,
    before: usize,
) {
    let mut output = client.open_write_channel(true).unwrap();
    output.write_string_utf8("secret\n").await.unwrap();
    let mut input = served.open_read_channel().unwrap();
    let line = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("secret"));
    drop((input, output, client, served));
    no_open_connection(listener).await;
    settle_to(before).await;
}

/// STARTTLS on a `Connection` (plain-text exchange first, then the handshake) dropped after k
/// polls: the peer's handshake fails, the connection is closed and counted gone.
#[test]
fn a_starttls_upgrade_dropped_at_every_poll_closes_the_connection() {
    let _serial = serial();
    runtime().block_on(async {
        let pki = Pki::generate();
        let (server_config, client_config) = tls_configs(&pki);
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        let before = fd_count();
        for polls in 1..=MAX_POLLS {
            let client_config = client_config.clone();
            let selector_c = selector.clone();
            let client = tokio::spawn(async move {
                let socket = a_socket(&selector_c)
                    .tcp()
                    .connect(("localhost", port))
                    .await?;
                let mut connection = socket.connection()?;
                connection.output.write_string_utf8("STARTTLS\r\n").await?;
                connection.output.flush().await?;
                let go = connection.input.read_line(64, LineEnding::Default).await?;
                assert_eq!(go.as_deref(), Some("GO"));
                connection.tls(client_config).await
            });
            let accepted = within(listener.accept()).await.unwrap();
            let mut connection = accepted.connection().unwrap();
            let line = within(connection.input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
            // Buffered, not flushed: the upgrade flushes it.
            connection.output.write_string_utf8("GO\r\n").await.unwrap();
            let upgrade = connection.tls_server(&server_config);
            let Some(done) = poll_at_most(upgrade, polls).await else {
                the_other_side_fails(within(client).await.unwrap(), polls, &listener).await;
                continue;
            };
            let served = done.expect("the server's upgrade");
            let tls = within(client).await.unwrap().expect("the client's upgrade");
            a_line_goes_through_then_all_is_released(tls, served, &listener, before).await;
            return;
        }
        panic!("the upgrade did not complete in {MAX_POLLS} polls");
    });
}

/// `accept` dropped after k polls while connections arrive, on a plain listener and on one that
/// reads PROXY protocol headers: the next `accept` hands out every connection, once, in order.
#[test]
fn accepts_dropped_at_every_poll_lose_no_connection() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        for proxied in [false, true] {
            let listener = if proxied {
                tcp_listener_with(&selector, |b| b.proxy_protocol(ProxyProtocol::Required)).await
            } else {
                tcp_listener(&selector).await
            };
            let port = listener.port().unwrap();
            for polls in 1..=6 {
                let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let local = client.local_addr().unwrap();
                let header =
                    format!("PROXY TCP4 192.0.2.{polls} 192.0.2.200 4000 80\r\nhello {polls}\n");
                let body = format!("hello {polls}\n");
                let sent = if proxied { &header } else { &body };
                // The header in pieces, so that accepts are dropped while it is read.
                let writer = tokio::spawn({
                    let sent = sent.clone();
                    async move {
                        for chunk in sent.as_bytes().chunks(7) {
                            client.write_all(chunk).await.unwrap();
                            tokio::task::yield_now().await;
                        }
                        client
                    }
                });
                let mut got = None;
                for k in 1..=polls {
                    let accept = listener.accept();
                    if let Some(done) = poll_at_most(accept, k).await {
                        got = Some(done.unwrap());
                        break;
                    }
                }
                let mut socket = match got {
                    Some(socket) => socket,
                    None => within(listener.accept()).await.unwrap(),
                };
                let remote = socket.remote_address().to_string();
                if proxied {
                    assert_eq!(remote, format!("192.0.2.{polls}:4000"));
                } else {
                    assert_eq!(remote, local.to_string());
                }
                let mut input = socket.open_read_channel().unwrap();
                let line = within(input.read_line(64, LineEnding::Default)).await;
                assert_eq!(line.unwrap(), Some(format!("hello {polls}")));
                let client = within(writer).await.unwrap();
                drop((input, socket, client));
            }
            no_open_connection(&listener).await;
            assert_eq!(listener.stats().proxy_header_failures, 0);
        }
    });
}

/// `flush` is documented cancel safe: flushes dropped after k polls while the peer reads
/// slowly through small socket buffers lose and double nothing; the peer reads the exact
/// stream and a clean end.
#[test]
fn flushes_dropped_at_every_poll_send_the_exact_stream() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b.receive_buffer_size(4096)).await;
        let mut ours = a_socket(&selector)
            .tcp()
            .send_buffer_size(4096)
            .connect(listener.local_address())
            .await
            .unwrap();
        let mut theirs = within(listener.accept()).await.unwrap();
        let mut output = ours.open_write_channel(false).unwrap();
        let mut input = theirs.open_read_channel().unwrap();
        let data = payload(1_000_000);
        // The reader starts once a flush had to wait (the socket buffers full).
        let (go, started) = tokio::sync::oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            let _ = started.await;
            let mut got = Vec::with_capacity(1_000_000);
            let mut room = [0u8; 1024];
            loop {
                let n = within(input.read_available(&mut room)).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&room[..n]);
                tokio::task::yield_now().await;
            }
            (got, input.total_bytes_read())
        });
        let mut go = Some(go);
        let mut polls = 1;
        let mut dropped = 0;
        for chunk in data.chunks(1000) {
            within(output.write_fully(chunk)).await.unwrap();
            // One poll until the reader runs: no wake-up would come for a second.
            let tries = if go.is_some() { 1 } else { polls };
            match poll_at_most(output.flush(), tries).await {
                Some(done) => done.unwrap(),
                None => {
                    dropped += 1;
                    if let Some(go) = go.take() {
                        go.send(()).unwrap();
                    }
                }
            }
            polls = polls % 4 + 1;
        }
        assert!(dropped > 0, "no flush had to wait: the test shows nothing");
        within(output.flush_and_close()).await.unwrap();
        assert_eq!(output.total_bytes_written(), data.len() as u64);
        let (got, read) = within(reader).await.unwrap();
        assert_eq!(read, data.len() as u64);
        assert!(got == data, "the peer's stream differs");
    });
}

/// `read_until` and `read_frame` (tokio-util's length-delimited codec, which keeps its state
/// in the decoder) dropped after every byte of their item: nothing is lost, and the counts
/// agree.
#[test]
fn delimited_and_frame_reads_dropped_at_every_byte_lose_nothing() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (mut ours, mut theirs) = connected_pair(&selector, &listener).await;
        let mut output = theirs.open_write_channel(true).unwrap();
        let mut input = ours.open_read_channel().unwrap();

        let item = b"alpha--beta--";
        for (i, byte) in item.iter().enumerate() {
            output.write_u8(*byte).await.unwrap();
            assert!(within(input.await_content(i + 1)).await.unwrap());
            if i + 1 < 7 {
                let read = input.read_until(b"--", 64);
                assert!(poll_at_most(read, 1).await.is_none(), "complete at {i}");
            }
        }
        let first = within(input.read_until(b"--", 64)).await.unwrap();
        assert_eq!(first.as_deref(), Some(&b"alpha"[..]));
        let second = within(input.read_until(b"--", 64)).await.unwrap();
        assert_eq!(second.as_deref(), Some(&b"beta"[..]));

        let mut codec = tokio_util::codec::LengthDelimitedCodec::new();
        let frame = b"\x00\x00\x00\x05hello\x00\x00\x00\x03end";
        let mut frames = Vec::new();
        for byte in frame {
            output.write_u8(*byte).await.unwrap();
            // One poll: the byte may already be in (then no wake-up comes for a second poll
            // until the next byte, written after it). It completes a frame or is dropped.
            if let Some(done) = poll_at_most(input.read_frame(&mut codec), 1).await {
                frames.extend(done.unwrap());
            }
        }
        while frames.len() < 2 {
            let next = within(input.read_frame(&mut codec)).await.unwrap();
            frames.push(next.expect("a frame"));
        }
        assert_eq!(frames[0].as_ref(), b"hello");
        assert_eq!(frames[1].as_ref(), b"end");
        assert_eq!(input.total_bytes_read(), (item.len() + frame.len()) as u64);
        assert_eq!(input.available_for_read(), 0);
    });
}

/// UDP `receive` and `send` dropped after k polls: every datagram is received once, whole.
#[test]
fn datagram_operations_dropped_at_every_poll_lose_and_double_nothing() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        let receiver = udp_socket(&selector).await;
        let sender = udp_socket(&selector).await;
        let to = receiver.local_address();
        let mut expected = Vec::new();
        for i in 0..40u32 {
            let packet = Bytes::from(format!("datagram {i}"));
            let send = sender.send(Datagram::new(packet.clone(), to.clone()).unwrap());
            // Sent whole or not at all: one dropped and sent anyway would be received below
            // where another is expected.
            if let Some(done) = poll_at_most(send, (i % 3 + 1) as usize).await {
                done.unwrap();
                expected.push(packet);
            }
            if expected.is_empty() {
                // Nothing to wake a receive that waits.
                continue;
            }
            for k in 1..=3 {
                let receive = receiver.receive();
                if let Some(done) = poll_at_most(receive, k).await {
                    let got = done.unwrap();
                    assert_eq!(Some(&got.packet), expected.first(), "at {i}");
                    expected.remove(0);
                    break;
                }
            }
        }
        let end = Bytes::from_static(b"end");
        within(sender.send(Datagram::new(end.clone(), to.clone()).unwrap()))
            .await
            .unwrap();
        expected.push(end);
        while !expected.is_empty() {
            let got = within(receiver.receive()).await.unwrap();
            assert_eq!(got.packet, expected.remove(0));
        }
    });
}

/// A listener's graceful `shutdown` dropped after its first poll (it is woken again only by a
/// connection leaving or the end of its grace period) leaves the shutdown begun (listener
/// closed, connections signalled) and closes no connection; a second `shutdown` completes and
/// counts the connection as finished.
#[test]
fn a_listener_shutdown_dropped_after_its_first_poll_can_be_awaited_again() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        for round in 0..3 {
            let listener = tcp_listener(&selector).await;
            let (mut client, mut served) = connected_pair(&selector, &listener).await;
            let shutdown = listener.shutdown(Duration::from_secs(10));
            assert!(poll_at_most(shutdown, 1).await.is_none());
            assert!(listener.is_closed());
            within(served.shutdown_requested()).await;
            assert!(
                !served.is_closed(),
                "a dropped shutdown closed a connection"
            );
            // The connection still works.
            let mut output = served.open_write_channel(true).unwrap();
            output.write_string_utf8("still here\n").await.unwrap();
            let mut input = client.open_read_channel().unwrap();
            let line = within(input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("still here"));
            // The second shutdown counts the connections open when it begins (its first poll).
            let mut again = pin!(listener.shutdown(Duration::from_secs(10)));
            let first =
                std::future::poll_fn(|cx| Poll::Ready(again.as_mut().poll(cx).is_pending())).await;
            assert!(first, "the shutdown ended with a connection open");
            drop((output, served));
            let report = within(again).await;
            assert_eq!((report.finished, report.cut), (1, 0), "round {round}");
            drop((input, client));
        }
    });
}

/// A reader that drops its futures after reading from a raw peer at every byte: `read_line_to`
/// leaves the string untouched until a line is complete, and a dropped `read_bytes` keeps its
/// bytes for the next read.
#[test]
fn raw_peer_reads_dropped_at_every_poll_keep_the_exact_stream() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let mut peer = tokio::net::TcpStream::connect(listener.local_address().to_string())
            .await
            .unwrap();
        let mut socket = within(listener.accept()).await.unwrap();
        let mut input = socket.open_read_channel().unwrap();
        let data = payload(3000);
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(13) {
                peer.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            peer.shutdown().await.unwrap();
            let mut rest = Vec::new();
            peer.read_to_end(&mut rest).await.unwrap();
        });
        let mut got = Vec::new();
        let mut polls = 1;
        loop {
            let read = input.read_bytes(100);
            match poll_at_most(read, polls).await {
                Some(Ok(bytes)) => got.extend_from_slice(&bytes),
                Some(Err(_)) => break,
                None => {}
            }
            polls = polls % 5 + 1;
        }
        // The end: what is left is less than one read.
        let rest = within(input.read_remaining(1000)).await.unwrap();
        got.extend_from_slice(&rest);
        assert!(got == payload(3000), "the stream differs");
        assert_eq!(input.total_bytes_read(), 3000);
        drop((input, socket));
        within(writer).await.unwrap();
    });
}

/// A TCP connect to a name with several addresses (`localhost`: `::1` and `127.0.0.1`, tried
/// in turn) dropped after k polls leaves no descriptor behind.
#[test]
fn connects_dropped_at_every_poll_leak_no_descriptor() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        // Only on 127.0.0.1: an attempt to ::1 is refused first, when there is a ::1.
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        let before = fd_count();
        for polls in 1..=MAX_POLLS {
            let connect = a_socket(&selector).tcp().connect(("localhost", port));
            if let Some(done) = poll_at_most(connect, polls).await {
                let socket = done.unwrap();
                // The connects dropped after the kernel completed them wait in the backlog
                // before this one: accept them all, and close them.
                let ours = socket.local_address();
                loop {
                    let accepted = within(listener.accept()).await.unwrap();
                    if accepted.remote_address() == ours {
                        break;
                    }
                }
                drop(socket);
                settle_to(before).await;
                return;
            }
        }
        panic!("the connect did not complete in {MAX_POLLS} polls");
    });
}

/// Over TLS: a `read_line` dropped at every poll while the line arrives one record per byte,
/// and flushes dropped at every poll while the peer reads slowly: the exact streams, and a
/// clean end (`close_notify`).
#[test]
fn tls_reads_and_flushes_dropped_at_every_poll_keep_the_exact_stream() {
    let _serial = serial();
    runtime().block_on(async {
        let pki = Pki::generate();
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (mut server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let mut server_out = server.open_write_channel(true).unwrap();
        let mut client_in = client.open_read_channel().unwrap();
        let line = "one record per byte, é\r\n";
        let writer = tokio::spawn(async move {
            for byte in line.as_bytes() {
                server_out.write_u8(*byte).await.unwrap();
                tokio::task::yield_now().await;
            }
            server_out
        });
        let mut polls = 1;
        let got = loop {
            let read = client_in.read_line(64, LineEnding::Default);
            if let Some(done) = poll_at_most(read, polls).await {
                break done.unwrap();
            }
            polls = polls % 3 + 1;
        };
        assert_eq!(got.as_deref(), Some("one record per byte, é"));
        let _server_out = within(writer).await.unwrap();

        // Flushes dropped while the peer reads slowly.
        let mut client_out = client.open_write_channel(false).unwrap();
        let mut server_in = server.open_read_channel().unwrap();
        let data = payload(1_000_000);
        let reader = tokio::spawn(async move {
            let mut got = Vec::with_capacity(1_000_000);
            let mut room = [0u8; 4096];
            loop {
                let n = within(server_in.read_available(&mut room)).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&room[..n]);
                tokio::task::yield_now().await;
            }
            got
        });
        for chunk in data.chunks(3000) {
            within(client_out.write_fully(chunk)).await.unwrap();
            if let Some(done) = poll_at_most(client_out.flush(), polls).await {
                done.unwrap();
            }
            polls = polls % 4 + 1;
        }
        within(client_out.flush_and_close()).await.unwrap();
        let got = within(reader).await.unwrap();
        assert!(
            got == data,
            "the peer's stream differs ({} bytes)",
            got.len()
        );
    });
}

/// `Connection::close_gracefully` dropped while it waits for the peer's end (after its first
/// poll: a silent peer wakes it no more) closes the socket at once: the peer reads what was
/// written, then the end, and the listener counts the connection gone.
#[test]
fn a_graceful_close_dropped_while_it_waits_closes_at_once() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        for round in 0..3 {
            let mut peer = tokio::net::TcpStream::connect(listener.local_address().to_string())
                .await
                .unwrap();
            let accepted = within(listener.accept()).await.unwrap();
            let mut connection = accepted.connection().unwrap();
            connection.output.write_string_utf8("bye\n").await.unwrap();
            // The peer never ends its side: the close waits, until it is dropped.
            let close = connection.close_gracefully(Duration::from_secs(30));
            assert!(poll_at_most(close, 1).await.is_none(), "round {round}");
            let mut got = Vec::new();
            within(peer.read_to_end(&mut got)).await.unwrap();
            assert_eq!(got, b"bye\n");
            no_open_connection(&listener).await;
        }
    });
}

/// A peer that reads slowly through a small receive buffer, from a listener of its own: what it
/// read, and how the stream ended (`Ok`: a clean end).
async fn slow_reader(
    peer: tokio::net::TcpStream,
    go: tokio::sync::oneshot::Receiver<()>,
) -> (Vec<u8>, std::io::Result<()>) {
    slow_reader_counting(peer, go, tokio::sync::watch::channel(0).0).await
}

/// [`slow_reader`] that also tells `count` how many bytes it has read so far.
async fn slow_reader_counting(
    mut peer: tokio::net::TcpStream,
    go: tokio::sync::oneshot::Receiver<()>,
    count: tokio::sync::watch::Sender<usize>,
) -> (Vec<u8>, std::io::Result<()>) {
    let _ = go.await;
    let mut got = Vec::new();
    let mut room = [0u8; 1024];
    let end = loop {
        match peer.read(&mut room).await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                got.extend_from_slice(&room[..n]);
                count.send_replace(got.len());
            }
            Err(e) => break Err(e),
        }
        tokio::task::yield_now().await;
    };
    (got, end)
}

/// A raw listener whose connections have a small receive buffer.
fn small_buffer_peer_listener() -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(16).unwrap()
}

/// Fills the socket buffers through `output` (its peer does not read yet): until a flush still
/// cannot finish a while after one had to wait (loopback moves bytes on after a write
/// returned). Then up to 7 KB more, buffered, for a close to flush: as many of seven 1,000-byte
/// writes as the channel's 8 KiB buffer takes without waiting. That is all seven where the
/// stalled flush left the buffer empty; fewer where it left bytes there, as through TLS on
/// `aws-lc-rs`, where a write that waited for room would wait for ever. Returns what was
/// written.
async fn fill_the_socket_then_buffer(output: &mut net_io::ByteWriteChannel) -> Vec<u8> {
    let mut sent = Vec::new();
    let mut extra = None;
    for chunk in payload(4_000_000).chunks(1000) {
        let Some(extra) = &mut extra else {
            within(output.write_fully(chunk)).await.unwrap();
            sent.extend_from_slice(chunk);
            if poll_at_most(output.flush(), 1).await.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if poll_at_most(output.flush(), 1).await.is_none() {
                    extra = Some(0);
                }
            }
            continue;
        };
        let before = output.total_bytes_written();
        match poll_at_most(output.write_fully(chunk), 1).await {
            Some(written) => written.unwrap(),
            None => {
                // No room: a dropped write of up to 8 KiB is taken whole or not at all.
                if output.total_bytes_written() > before {
                    sent.extend_from_slice(chunk);
                }
                return sent;
            }
        }
        sent.extend_from_slice(chunk);
        *extra += 1;
        if *extra == 7 {
            return sent;
        }
    }
    panic!("the socket buffers took 4 MB");
}

/// What the peer read after a graceful close that completed (`done`) or was dropped after
/// `polls` polls: a prefix of `sent`; all of it and a clean end after a completed close; after
/// a dropped one, all of it and a clean end, or a failed end (checked by `check_cut`), never a
/// clean end after part of it. Returns whether the end was cut.
fn judge_the_end<E: std::fmt::Debug>(
    done: &Option<net_sockets::Result<()>>,
    sent: &[u8],
    got: &[u8],
    end: Result<(), E>,
    polls: usize,
    check_cut: impl FnOnce(E),
) -> bool {
    assert!(
        sent.starts_with(got),
        "poll {polls}: the peer read bytes that were not sent"
    );
    match (done, end) {
        (Some(closed), Ok(())) => {
            closed.as_ref().unwrap();
            assert_eq!(got.len(), sent.len(), "poll {polls}");
            false
        }
        (None, Ok(())) => {
            assert_eq!(
                got.len(),
                sent.len(),
                "poll {polls}: a clean end after {} of {} bytes",
                got.len(),
                sent.len()
            );
            false
        }
        (Some(closed), Err(e)) => {
            panic!("poll {polls}: the close returned {closed:?}, the peer read {e:?}")
        }
        (None, Err(e)) => {
            check_cut(e);
            true
        }
    }
}

/// `close` polled at most `polls` times, then dropped; `go` is told after the first poll (the
/// peer's reader starts then, so that poll has to wait).
async fn close_then_go(
    close: impl Future<Output = net_sockets::Result<()>>,
    go: tokio::sync::oneshot::Sender<()>,
    polls: usize,
) -> Option<net_sockets::Result<()>> {
    let mut close = pin!(close);
    let mut go = Some(go);
    let close_then_go = std::future::poll_fn(|cx| {
        let polled = close.as_mut().poll(cx);
        if let Some(go) = go.take() {
            go.send(()).unwrap();
        }
        polled
    });
    poll_at_most(close_then_go, polls).await
}

/// `Connection::close_gracefully` dropped after k polls (k = 1, 2, … until it completes) while
/// it flushes output that the socket buffers cannot take yet, to a peer that reads slowly and
/// has already ended its side: the socket is closed at once, as `Socket::close` is, so the
/// peer reads either everything and a clean end, or a prefix and a reset — never a clean end
/// after a cut stream; and the descriptors come back.
#[test]
fn graceful_closes_dropped_at_every_poll_never_end_a_cut_stream_cleanly() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        let peers = small_buffer_peer_listener();
        let port = peers.local_addr().unwrap().port();
        let before = fd_count();
        let mut cut = 0;
        for polls in 1..=MAX_POLLS {
            let socket = a_socket(&selector)
                .tcp()
                .send_buffer_size(4096)
                .connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut peer, _) = within(peers.accept()).await.unwrap();
            // The close's drain sees the peer's end at once: only the flush makes it wait.
            peer.shutdown().await.unwrap();
            let (go, started) = tokio::sync::oneshot::channel();
            let reader = tokio::spawn(slow_reader(peer, started));
            let mut connection = socket.connection().unwrap();
            let sent = fill_the_socket_then_buffer(&mut connection.output).await;
            let close = connection.close_gracefully(Duration::from_secs(10));
            let done = close_then_go(close, go, polls).await;
            let (got, end) = within(reader).await.unwrap();
            if judge_the_end(&done, &sent, &got, end, polls, |e| {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
            }) {
                cut += 1;
            }
            settle_to(before).await;
            if done.is_some() {
                assert!(cut > 0, "no close was dropped with bytes unsent");
                return;
            }
        }
        panic!("the close did not complete in {MAX_POLLS} polls");
    });
}

/// `copy_to` from one socket to another, dropped after k polls (k = 1, 2, … 5, over and over),
/// then called again until the source ends. Not cancel safe, but never silently wrong: the
/// source is read once, to its end; and either the destination's peer reads the exact stream
/// and a clean end, or the destination refuses the clean end (`flush_and_close` fails, the
/// peer reads a reset). With a destination that takes everything at once, the copies are
/// dropped (after one poll) while they wait for the source, and the stream is exact; with one whose peer reads
/// slowly through small buffers, while the socket took part of a chunk, which stays in the
/// source (and is sent again), so the stream has no clean end.
#[test]
fn copies_dropped_at_every_poll_never_end_a_wrong_stream_cleanly() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let small = small_buffer_peer_listener();
        let large = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let before = fd_count();
        // The slow case shows something only when a copy is dropped while the socket took part
        // of a chunk, which depends on how the kernel's buffers fill: a run where none was is
        // exact and ends cleanly, and is run again (at most three times).
        for (slow, attempt) in [(false, 1), (true, 1), (true, 2), (true, 3)] {
            let peers = if slow { &small } else { &large };
            let port = peers.local_addr().unwrap().port();
            let data = payload(60_000);
            let mut source_peer =
                tokio::net::TcpStream::connect(listener.local_address().to_string())
                    .await
                    .unwrap();
            let mut from = within(listener.accept()).await.unwrap();
            // With the fast destination, the source sends a chunk each time a copy was
            // dropped, so that copies are dropped while they wait for it.
            let chunks = data.chunks(3000).count();
            let release =
                std::sync::Arc::new(tokio::sync::Semaphore::new(if slow { chunks } else { 1 }));
            let writer = tokio::spawn({
                let data = data.clone();
                let release = release.clone();
                async move {
                    for chunk in data.chunks(3000) {
                        release.acquire().await.unwrap().forget();
                        source_peer.write_all(chunk).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    source_peer.shutdown().await.unwrap();
                    source_peer
                }
            });
            let mut to = a_socket(&selector).tcp();
            if slow {
                to = to.send_buffer_size(4096);
            }
            let mut to = to.connect(("127.0.0.1", port)).await.unwrap();
            let (peer, _) = within(peers.accept()).await.unwrap();
            // The slow reader starts once a copy was dropped (the socket buffers full).
            let (go, started) = tokio::sync::oneshot::channel();
            let mut go = Some(go);
            if !slow {
                go.take().unwrap().send(()).unwrap();
            }
            let reader = tokio::spawn(slow_reader(peer, started));
            let mut input = from.open_read_channel().unwrap();
            let mut output = to.open_write_channel(false).unwrap();
            let mut polls = 1;
            let mut dropped = 0;
            let mut copies = 0;
            loop {
                copies += 1;
                // A copy dropped after the socket took part of a chunk sends that chunk again
                // from its start: after 40 copies, one runs to the source's end.
                // One poll with the fast destination: a copy that waits for the source gets
                // no wake-up until a chunk is released.
                let tries = match (copies <= 40, slow) {
                    (true, true) => polls,
                    (true, false) => 1,
                    (false, _) => usize::MAX,
                };
                match poll_at_most(input.copy_to(&mut output, u64::MAX), tries).await {
                    // The source's end.
                    Some(Ok(_)) => break,
                    Some(Err(e)) => panic!("copy {copies}: {e:?}"),
                    None => {
                        dropped += 1;
                        if !slow {
                            release.add_permits(1);
                        }
                        if let Some(go) = go.take() {
                            go.send(()).unwrap();
                        }
                    }
                }
                polls = polls % 5 + 1;
            }
            assert!(dropped > 0, "no copy was dropped: the test shows nothing");
            assert_eq!(input.total_bytes_read(), data.len() as u64);
            let closed = within(output.flush_and_close()).await;
            drop((input, output, from));
            to.close();
            drop(to);
            let (got, end) = within(reader).await.unwrap();
            let shown = match (closed, end) {
                (Ok(()), Ok(())) => {
                    assert!(got == data, "a clean end after a wrong stream");
                    !slow
                }
                (Err(_), Err(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
                    true
                }
                (closed, end) => panic!("the close: {closed:?}, the peer's end: {end:?}"),
            };
            drop(within(writer).await.unwrap());
            if slow && shown {
                break;
            }
            assert!(
                !slow || attempt < 3,
                "in three runs, no copy took part of a chunk: the test shows nothing"
            );
        }
        settle_to(before).await;
    });
}

/// Over TLS: `close_gracefully` dropped after k polls while it flushes output the socket
/// buffers cannot take yet, to a peer that reads slowly and has already ended its side (with
/// `close_notify`): the peer reads everything and a clean end (`close_notify`), or a prefix and
/// an error — never a clean end after a cut stream; the listener counts the connection gone and
/// the descriptors come back.
#[test]
fn tls_graceful_closes_dropped_at_every_poll_never_end_a_cut_stream_cleanly() {
    let _serial = serial();
    runtime().block_on(async {
        let pki = Pki::generate();
        let (server_config, client_config) = tls_configs(&pki);
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b.receive_buffer_size(4096)).await;
        let port = listener.port().unwrap();
        let before = fd_count();
        let mut cut = 0;
        for polls in 1..=MAX_POLLS {
            let socket = a_socket(&selector)
                .tcp()
                .send_buffer_size(4096)
                .connect(("127.0.0.1", port))
                .await
                .unwrap();
            let accepted = within(listener.accept()).await.unwrap();
            let server_config = server_config.clone();
            let server = tokio::spawn(async move { accepted.tls_server(&server_config).await });
            let tls = within(socket.tls(client_config.clone())).await.unwrap();
            let mut served = within(server).await.unwrap().unwrap();
            // The close's drain sees the peer's end at once: only the flush makes it wait.
            let mut served_output = served.open_write_channel(false).unwrap();
            within(served_output.flush_and_close()).await.unwrap();
            let mut served_input = served.open_read_channel().unwrap();
            let (go, started) = tokio::sync::oneshot::channel::<()>();
            let reader = tokio::spawn(async move {
                let _ = started.await;
                let mut got = Vec::new();
                let mut room = [0u8; 1024];
                let end = loop {
                    match served_input.read_available(&mut room).await {
                        Ok(0) => break Ok(()),
                        Ok(n) => got.extend_from_slice(&room[..n]),
                        Err(e) => break Err(e),
                    }
                    tokio::task::yield_now().await;
                };
                drop((served_input, served_output, served));
                (got, end)
            });
            let mut connection = tls.connection().unwrap();
            let sent = fill_the_socket_then_buffer(&mut connection.output).await;
            let close = connection.close_gracefully(Duration::from_secs(10));
            let done = close_then_go(close, go, polls).await;
            let (got, end) = within(reader).await.unwrap();
            if judge_the_end(&done, &sent, &got, end, polls, |_| {}) {
                cut += 1;
            }
            no_open_connection(&listener).await;
            settle_to(before).await;
            if done.is_some() {
                assert!(cut > 0, "no close was dropped with bytes unsent");
                return;
            }
        }
        panic!("the close did not complete in {MAX_POLLS} polls");
    });
}

/// `bind` (TCP and UDP) and the UDP `connect` and `connect_from` to a host name (`localhost`,
/// resolved on a blocking thread) dropped after k polls (k = 1, 2, … until they complete):
/// nothing is bound, no descriptor is left behind, and the next call binds.
#[test]
fn binds_dropped_at_every_poll_leave_nothing_behind() {
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        let receiver = udp_socket(&selector).await;
        let port = receiver.local_address().port().unwrap();
        let before = fd_count();
        for operation in ["tcp bind", "udp bind", "udp connect", "udp connect_from"] {
            let mut completed = false;
            for polls in 1..=MAX_POLLS {
                let done = match operation {
                    "tcp bind" => {
                        let bind = a_socket(&selector).tcp().bind(("localhost", 0));
                        poll_at_most(bind, polls).await.map(|r| drop(r.unwrap()))
                    }
                    "udp bind" => {
                        let bind = a_socket(&selector).udp().bind(("localhost", 0));
                        poll_at_most(bind, polls).await.map(|r| drop(r.unwrap()))
                    }
                    "udp connect" => {
                        let connect = a_socket(&selector).udp().connect(("localhost", port));
                        poll_at_most(connect, polls).await.map(|r| drop(r.unwrap()))
                    }
                    _ => {
                        let connect = a_socket(&selector)
                            .udp()
                            .connect_from(("localhost", port), ("127.0.0.1", 0));
                        poll_at_most(connect, polls).await.map(|r| drop(r.unwrap()))
                    }
                };
                // Dropped or closed: the count comes back (a resolution still running on its
                // thread may hold /etc/hosts open for a moment).
                settle_to(before).await;
                if done.is_some() {
                    completed = true;
                    break;
                }
            }
            assert!(
                completed,
                "{operation} did not complete in {MAX_POLLS} polls"
            );
        }
    });
}

/// The `incoming()` streams of a listener and of a datagram socket, each polled k times and
/// then dropped (the stream itself, with the `accept` or `receive` it runs): a later stream
/// hands out every connection and every datagram, once, in order.
#[test]
fn incoming_streams_dropped_at_every_poll_lose_nothing() {
    use futures_core::Stream;
    let _serial = serial();
    runtime().block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        for round in 1..=6 {
            let client = tokio::spawn(async move {
                let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                client
                    .write_all(format!("hello {round}\n").as_bytes())
                    .await
                    .unwrap();
                client
            });
            let mut got = None;
            for k in 1..=round {
                let mut incoming = listener.incoming();
                let next = std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_next(cx));
                if let Some(done) = poll_at_most(next, k).await {
                    got = Some(done.expect("a connection").unwrap());
                    break;
                }
            }
            let mut socket = match got {
                Some(socket) => socket,
                None => next_item(&mut listener.incoming()).await.unwrap().unwrap(),
            };
            let client = within(client).await.unwrap();
            assert_eq!(socket.remote_address(), client.local_addr().unwrap().into());
            let mut input = socket.open_read_channel().unwrap();
            let line = within(input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap(), Some(format!("hello {round}")));
            drop((input, socket, client));
        }
        no_open_connection(&listener).await;

        let receiver = udp_socket(&selector).await;
        let sender = udp_socket(&selector).await;
        let to = receiver.local_address();
        let mut expected = Vec::new();
        for i in 0..30u32 {
            let packet = Bytes::from(format!("datagram {i}"));
            within(sender.send(Datagram::new(packet.clone(), to.clone()).unwrap()))
                .await
                .unwrap();
            expected.push(packet);
            // A stream polled once, then one polled twice, … : some are dropped at once,
            // some take a datagram (at most one pending poll: one is on its way).
            let mut incoming = receiver.incoming();
            let next = std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_next(cx));
            if let Some(done) = poll_at_most(next, (i % 3) as usize + 1).await {
                let got = done.expect("a datagram").unwrap();
                assert_eq!(got.packet, expected.remove(0), "at {i}");
            }
        }
        let mut incoming = receiver.incoming();
        while !expected.is_empty() {
            let got = next_item(&mut incoming).await.unwrap().unwrap();
            assert_eq!(got.packet, expected.remove(0));
        }
    });
}

/// `flush_and_close` dropped after k polls (k = 1, 2, … until it completes) while it flushes
/// output the socket buffers cannot take yet, then called again: not cancel safe (the channel
/// stays open with bytes unwritten), but the second call finishes the job; the peer reads the
/// exact stream, then one clean end (TLS: `close_notify`).
#[test]
fn a_flush_and_close_dropped_at_every_poll_then_called_again_ends_the_stream_cleanly() {
    let _serial = serial();
    runtime().block_on(async {
        let pki = Pki::generate();
        let (server_config, client_config) = tls_configs(&pki);
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b.receive_buffer_size(4096)).await;
        let port = listener.port().unwrap();
        for tls in [false, true] {
            let mut completed = false;
            for polls in 1..=MAX_POLLS {
                let socket = a_socket(&selector)
                    .tcp()
                    .send_buffer_size(4096)
                    .connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let accepted = within(listener.accept()).await.unwrap();
                // Our output, the peer's input, and both sockets (kept open meanwhile).
                let (mut output, mut input, sockets): (_, _, Box<dyn std::any::Any + Send>) = if tls
                {
                    let server_config = server_config.clone();
                    let server =
                        tokio::spawn(async move { accepted.tls_server(&server_config).await });
                    let mut client = within(socket.tls(client_config.clone())).await.unwrap();
                    let mut served = within(server).await.unwrap().unwrap();
                    let output = client.open_write_channel(false).unwrap();
                    let input = served.open_read_channel().unwrap();
                    (output, input, Box::new((client, served)))
                } else {
                    let (mut socket, mut accepted) = (socket, accepted);
                    let output = socket.open_write_channel(false).unwrap();
                    let input = accepted.open_read_channel().unwrap();
                    (output, input, Box::new((socket, accepted)))
                };
                let (go, started) = tokio::sync::oneshot::channel::<()>();
                let reader = tokio::spawn(async move {
                    let _ = started.await;
                    let mut got = Vec::new();
                    let mut room = [0u8; 1024];
                    let end = loop {
                        match input.read_available(&mut room).await {
                            Ok(0) => break Ok(()),
                            Ok(n) => got.extend_from_slice(&room[..n]),
                            Err(e) => break Err(e),
                        }
                        tokio::task::yield_now().await;
                    };
                    (got, end)
                });
                let sent = fill_the_socket_then_buffer(&mut output).await;
                let done =
                    close_then_go(async { Ok(output.flush_and_close().await?) }, go, polls).await;
                match done {
                    Some(closed) => {
                        closed.unwrap();
                        completed = true;
                    }
                    None => within(output.flush_and_close()).await.unwrap(),
                }
                let (got, end) = within(reader).await.unwrap();
                end.unwrap_or_else(|e| panic!("tls {tls}, poll {polls}: {e:?}"));
                assert!(
                    got == sent,
                    "tls {tls}, poll {polls}: the peer's stream differs"
                );
                drop((output, sockets));
                if completed {
                    break;
                }
            }
            assert!(completed, "the close did not complete in {MAX_POLLS} polls");
        }
    });
}

/// The client's side of STARTTLS (`Connection::tls` after a plain-text exchange) dropped after
/// k polls: the socket is closed, the server's upgrade fails (never hangs, never succeeds), the
/// listener counts the connection gone, and the descriptors come back.
#[test]
fn a_client_starttls_upgrade_dropped_at_every_poll_closes_the_connection() {
    let _serial = serial();
    runtime().block_on(async {
        let pki = Pki::generate();
        let (server_config, client_config) = tls_configs(&pki);
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        let before = fd_count();
        for polls in 1..=MAX_POLLS {
            let socket = connect(&selector, ("127.0.0.1", port)).await;
            let accepted = within(listener.accept()).await.unwrap();
            let server_config = server_config.clone();
            let server = tokio::spawn(async move {
                let mut connection = accepted.connection()?;
                let line = connection.input.read_line(64, LineEnding::Default).await?;
                assert_eq!(line.as_deref(), Some("STARTTLS"));
                connection.output.write_string_utf8("GO\r\n").await?;
                connection.output.flush().await?;
                connection.tls_server(&server_config).await
            });
            let mut connection = socket.connection().unwrap();
            connection
                .output
                .write_string_utf8("STARTTLS\r\n")
                .await
                .unwrap();
            connection.output.flush().await.unwrap();
            let go = within(connection.input.read_line(64, LineEnding::Default)).await;
            assert_eq!(go.unwrap().as_deref(), Some("GO"));
            let upgrade = connection.tls(client_config.clone());
            let Some(done) = poll_at_most(upgrade, polls).await else {
                the_other_side_fails(within(server).await.unwrap(), polls, &listener).await;
                continue;
            };
            let tls = done.expect("the client's upgrade");
            let served = within(server).await.unwrap().expect("the server's upgrade");
            a_line_goes_through_then_all_is_released(tls, served, &listener, before).await;
            return;
        }
        panic!("the upgrade did not complete in {MAX_POLLS} polls");
    });
}

/// A server's STARTTLS upgrade (`Connection::tls_server`) dropped after k polls (k = 1, 2, …
/// until its flush is done) while it flushes output that the socket buffers cannot take yet, to
/// a peer that reads slowly: its docs say the drop closes the socket and throws away what the
/// output still held, so that the close is a reset; the peer reads everything and then the
/// end, or a prefix and a reset — never a clean end after a cut stream; and the descriptors
/// come back. Once the peer has read everything, the upgrade waits for a ClientHello that never
/// comes, and is dropped then (how many polls its flush takes varies from one connection to
/// the next, so it can be done before the k-th poll).
#[test]
fn starttls_upgrades_dropped_while_they_flush_never_end_a_cut_stream_cleanly() {
    let _serial = serial();
    runtime().block_on(async {
        let pki = Pki::generate();
        let (server_config, _) = tls_configs(&pki);
        let selector = SelectorManager::new();
        let peers = small_buffer_peer_listener();
        let port = peers.local_addr().unwrap().port();
        let before = fd_count();
        let mut cut = 0;
        for polls in 1..=MAX_POLLS {
            let socket = a_socket(&selector)
                .tcp()
                .send_buffer_size(4096)
                .connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (peer, _) = within(peers.accept()).await.unwrap();
            let (go, started) = tokio::sync::oneshot::channel();
            let (count, mut read_so_far) = tokio::sync::watch::channel(0);
            let reader = tokio::spawn(slow_reader_counting(peer, started, count));
            let mut connection = socket.connection().unwrap();
            let sent = fill_the_socket_then_buffer(&mut connection.output).await;
            // The peer never sends a ClientHello: the upgrade, once flushed, waits for it.
            let upgrade = async {
                let upgraded = connection.tls_server(&server_config).await;
                upgraded
                    .map(drop)
                    .map_err(|e| net_sockets::Error::Io(std::io::Error::other(e)))
            };
            let everything_read = async {
                if read_so_far.wait_for(|&n| n == sent.len()).await.is_err() {
                    // The reader ended first: only the upgrade's end can end this wait.
                    std::future::pending::<()>().await;
                }
            };
            let done = tokio::select! {
                biased;
                () = everything_read => None,
                done = close_then_go(upgrade, go, polls) => done,
            };
            assert!(
                done.is_none(),
                "the upgrade ended without a ClientHello: {done:?}"
            );
            let (got, end) = within(reader).await.unwrap();
            if got.len() == sent.len() {
                // The flush was done, the handshake waited: the drop's close may be a reset.
                assert!(got == sent, "poll {polls}: the peer's stream differs");
                if let Err(e) = end {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
                }
                assert!(cut > 0, "no upgrade was dropped with bytes unsent");
                settle_to(before).await;
                return;
            }
            if judge_the_end(&done, &sent, &got, end, polls, |e| {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
            }) {
                cut += 1;
            }
            settle_to(before).await;
        }
        panic!("the flush did not complete in {MAX_POLLS} polls");
    });
}
