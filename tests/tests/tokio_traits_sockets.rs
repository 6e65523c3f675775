//! SPEC §4.2 over real sockets: the channels of a connection and `TlsStream`s driven only through
//! tokio's traits by generic code — reads and writes in two tasks (`tokio::io::split`) or one
//! `select!` with flush coalescing on, `Framed` over a split `TlsStream`, half-closes each way
//! through `copy_bidirectional` and over TLS, and a plain `SocketStream`'s contract.

use std::future::poll_fn;
use std::pin::Pin;

use futures_core::Stream;
use futures_sink::Sink;
use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::within;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Framed, LinesCodec};

/// With coalescing on, a reader task (tokio's `lines`) hands each request to a writer task and
/// waits for its answer: a pipelined burst and a lone request are all answered (no held-back
/// answer waits for a reader that waits for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trait_reads_and_writes_in_two_tasks_with_coalescing_answer_everything() {
    for auto in [false, true] {
        let selector = SelectorManager::new();
        let server = tcp_listener(&selector).await;
        let (mut client, mut socket) = raw_peer_of(&server).await;
        let input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(auto).unwrap();
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<(String, tokio::sync::oneshot::Sender<()>)>(1);
        let reader = tokio::spawn(async move {
            let mut lines = input.lines();
            while let Some(line) = lines.next_line().await.unwrap() {
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                tx.send((line, done_tx)).await.unwrap();
                // wait for the answer to be written before reading the next request
                done_rx.await.unwrap();
            }
        });
        let writer = tokio::spawn(async move {
            while let Some((line, done)) = rx.recv().await {
                output
                    .write_all(format!("re {line}\n").as_bytes())
                    .await
                    .unwrap();
                output.flush().await.unwrap();
                let _ = done.send(());
            }
            output.shutdown().await.unwrap();
        });
        let mut req = String::new();
        for i in 0..16 {
            req.push_str(&format!("q{i}\n"));
        }
        client.write_all(req.as_bytes()).await.unwrap();
        let mut expect = String::new();
        for i in 0..16 {
            expect.push_str(&format!("re q{i}\n"));
        }
        let mut got = vec![0u8; expect.len()];
        within(client.read_exact(&mut got)).await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), expect);
        // request/response: send one, wait answer
        client.write_all(b"solo\n").await.unwrap();
        let mut got = vec![0u8; 8];
        within(client.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"re solo\n");
        client.shutdown().await.unwrap();
        within(reader).await.unwrap();
        within(writer).await.unwrap();
        let mut rest = Vec::new();
        within(client.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty());
    }
}

/// `tokio::io::split` of a joined pair: 3-byte trait reads in one task, writes in another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_split_of_joined_channels_echoes_across_two_tasks() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let input = socket.open_read_channel().unwrap();
    let output = socket.open_write_channel(true).unwrap();
    let (mut r, mut w) = tokio::io::split(tokio::io::join(input, output));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 3];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            tx.send(buf[..n].to_vec()).unwrap();
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            w.write_all(&b).await.unwrap();
            // `poll_write` sends only what the socket takes now, auto flush or not: the
            // rest (in the channel, or a TLS record in the session) leaves with a flush, which
            // must come before this task waits for more.
            w.flush().await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let data: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
    client.write_all(&data).await.unwrap();
    let mut got = vec![0u8; data.len()];
    within(client.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, data);
    client.write_all(b"xy").await.unwrap();
    let mut got = [0u8; 2];
    within(client.read_exact(&mut got)).await.unwrap();
    client.shutdown().await.unwrap();
    within(reader).await.unwrap();
    within(writer).await.unwrap();
}

/// One task `select!`s between a trait line read and a timer; every burst is answered.
#[tokio::test]
async fn one_task_selecting_between_a_trait_read_and_a_timer_answers_every_burst() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(false).unwrap();
    let serving = tokio::spawn(async move {
        let mut lines = input.lines();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
        let mut n = 0;
        loop {
            tokio::select! {
                line = lines.next_line() => {
                    match line.unwrap() {
                        Some(l) => { output.write_all(format!("{l}!\n").as_bytes()).await.unwrap(); output.flush().await.unwrap(); }
                        None => break,
                    }
                }
                _ = tick.tick() => { n += 1; }
            }
        }
        output.shutdown().await.unwrap();
        n
    });
    for round in 0..20 {
        let mut req = String::new();
        for i in 0..(round % 4 + 1) {
            req.push_str(&format!("r{round}.{i}\n"));
        }
        client.write_all(req.as_bytes()).await.unwrap();
        let expect = req.replace('\n', "!\n");
        let mut got = vec![0u8; expect.len()];
        within(client.read_exact(&mut got)).await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), expect);
    }
    client.shutdown().await.unwrap();
    within(serving).await.unwrap();
}

/// `FramedRead`/`FramedWrite` with `LinesCodec` over a split `TlsStream` (two server tasks)
/// answer 50 pipelined lines, then both ends close cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_lines_over_a_split_tls_stream() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = net_tests::pki::Pki::generate();
    let (server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let server = server.into_stream().unwrap();
    let client = client.into_stream().unwrap();
    let srv = tokio::spawn(async move {
        let (r, w) = tokio::io::split(server);
        let mut rd = tokio_util::codec::FramedRead::new(r, LinesCodec::new());
        let mut wr = tokio_util::codec::FramedWrite::new(w, LinesCodec::new());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let wt = tokio::spawn(async move {
            while let Some(l) = rx.recv().await {
                poll_fn(|cx| Sink::<String>::poll_ready(Pin::new(&mut wr), cx))
                    .await
                    .unwrap();
                Pin::new(&mut wr).start_send(format!("re {l}")).unwrap();
                poll_fn(|cx| Sink::<String>::poll_flush(Pin::new(&mut wr), cx))
                    .await
                    .unwrap();
            }
            poll_fn(|cx| Sink::<String>::poll_close(Pin::new(&mut wr), cx))
                .await
                .unwrap();
        });
        while let Some(l) = poll_fn(|cx| Pin::new(&mut rd).poll_next(cx)).await {
            tx.send(l.unwrap()).unwrap();
        }
        drop(tx);
        wt.await.unwrap();
    });
    let mut framed = Framed::new(client, LinesCodec::new());
    for i in 0..50 {
        Sink::<String>::start_send(Pin::new(&mut framed), format!("q{i}")).unwrap();
    }
    poll_fn(|cx| Sink::<String>::poll_flush(Pin::new(&mut framed), cx))
        .await
        .unwrap();
    for i in 0..50 {
        let l = within(poll_fn(|cx| Pin::new(&mut framed).poll_next(cx)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(l, format!("re q{i}"));
    }
    // half close client, server closes after.
    poll_fn(|cx| Sink::<String>::poll_close(Pin::new(&mut framed), cx))
        .await
        .unwrap();
    assert!(
        within(poll_fn(|cx| Pin::new(&mut framed).poll_next(cx)))
            .await
            .is_none()
    );
    within(srv).await.unwrap();
}

/// `TlsStream` half-close each way: the side that shut down still reads, the other still writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_streams_half_close_each_way() {
    for server_first in [false, true] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let pki = net_tests::pki::Pki::generate();
        let (server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let mut server = server.into_stream().unwrap();
        let mut client = client.into_stream().unwrap();
        let s = tokio::spawn(async move {
            if server_first {
                server.write_all(b"from server").await.unwrap();
                server.shutdown().await.unwrap();
                let mut v = Vec::new();
                server.read_to_end(&mut v).await.unwrap();
                assert_eq!(v, b"from client");
                let e = server.write_all(b"late").await;
                assert!(e.is_err());
            } else {
                let mut v = Vec::new();
                server.read_to_end(&mut v).await.unwrap();
                assert_eq!(v, b"from client");
                server.write_all(b"from server").await.unwrap();
                server.shutdown().await.unwrap();
            }
            server
        });
        if server_first {
            let mut v = Vec::new();
            within(client.read_to_end(&mut v)).await.unwrap();
            assert_eq!(v, b"from server");
            client.write_all(b"from client").await.unwrap();
            client.shutdown().await.unwrap();
        } else {
            client.write_all(b"from client").await.unwrap();
            client.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(client.read_to_end(&mut v)).await.unwrap();
            assert_eq!(v, b"from server");
        }
        within(s).await.unwrap();
        let _ = client.shutdown().await;
    }
}

/// `copy_bidirectional` between two connections' channels passes a half-close each way,
/// whichever side ends first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_bidirectional_over_connections_half_closes_each_way() {
    for server_first in [false, true] {
        let selector = SelectorManager::new();
        let front = tcp_listener(&selector).await;
        let back = tcp_listener(&selector).await;
        let (mut client, mut a) = raw_peer_of(&front).await;
        let (mut upstream, mut b) = raw_peer_of(&back).await;
        let relay = tokio::spawn(async move {
            let mut x = tokio::io::join(
                a.open_read_channel().unwrap(),
                a.open_write_channel(false).unwrap(),
            );
            let mut y = tokio::io::join(
                b.open_read_channel().unwrap(),
                b.open_write_channel(false).unwrap(),
            );
            let r = tokio::io::copy_bidirectional(&mut x, &mut y).await;
            (r, a, b)
        });
        if server_first {
            upstream.write_all(b"hello client").await.unwrap();
            upstream.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(client.read_to_end(&mut v)).await.unwrap();
            assert_eq!(v, b"hello client");
            client.write_all(b"hello upstream").await.unwrap();
            client.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(upstream.read_to_end(&mut v)).await.unwrap();
            assert_eq!(v, b"hello upstream");
        } else {
            client.write_all(b"hello upstream").await.unwrap();
            client.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(upstream.read_to_end(&mut v)).await.unwrap();
            assert_eq!(v, b"hello upstream");
            upstream.write_all(b"hello client").await.unwrap();
            upstream.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(client.read_to_end(&mut v)).await.unwrap();
            assert_eq!(v, b"hello client");
        }
        let (r, _a, _b) = within(relay).await.unwrap();
        assert_eq!(r.unwrap(), (14, 12));
    }
}

/// A plain `SocketStream`: repeated shutdown, a write after it fails with `EPIPE`, the end is
/// found again by every later read.
#[tokio::test]
async fn a_plain_socket_stream_follows_the_trait_contracts() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, socket) = raw_peer_of(&server).await;
    let mut s = socket.into_stream().unwrap();
    s.write_all(b"abc").await.unwrap();
    s.shutdown().await.unwrap();
    s.shutdown().await.unwrap();
    let e = s.write(b"x").await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    let mut v = Vec::new();
    within(client.read_to_end(&mut v)).await.unwrap();
    assert_eq!(v, b"abc");
    client.write_all(b"xyz").await.unwrap();
    drop(client);
    let mut v = Vec::new();
    within(s.read_to_end(&mut v)).await.unwrap();
    assert_eq!(v, b"xyz");
    let mut b = [0u8; 4];
    assert_eq!(s.read(&mut b).await.unwrap(), 0);
    assert_eq!(s.read(&mut b).await.unwrap(), 0);
    assert_eq!(s.read(&mut []).await.unwrap(), 0);
}

/// The two-task exchange over a TLS connection's channels, bursts of growing size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trait_reads_and_writes_in_two_tasks_answer_everything() {
    for auto in [false, true] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let pki = net_tests::pki::Pki::generate();
        let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let input = server.open_read_channel().unwrap();
        let mut output = server.open_write_channel(auto).unwrap();
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<(String, tokio::sync::oneshot::Sender<()>)>(1);
        let reader = tokio::spawn(async move {
            let mut lines = input.lines();
            while let Some(line) = lines.next_line().await.unwrap() {
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                tx.send((line, done_tx)).await.unwrap();
                done_rx.await.unwrap();
            }
        });
        let writer = tokio::spawn(async move {
            while let Some((line, done)) = rx.recv().await {
                output
                    .write_all(format!("re {line}\n").as_bytes())
                    .await
                    .unwrap();
                output.flush().await.unwrap();
                let _ = done.send(());
            }
            output.shutdown().await.unwrap();
        });
        let mut client = client.into_stream().unwrap();
        for round in 0..10 {
            let mut req = String::new();
            for i in 0..(round * 3 + 1) {
                req.push_str(&format!("q{i}\n"));
            }
            client.write_all(req.as_bytes()).await.unwrap();
            let expect = req.replace('q', "re q");
            let mut got = vec![0u8; expect.len()];
            within(client.read_exact(&mut got)).await.unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), expect);
        }
        client.shutdown().await.unwrap();
        within(reader).await.unwrap();
        within(writer).await.unwrap();
        let mut rest = Vec::new();
        within(client.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty());
        drop(server);
    }
}

/// `tokio::io::split` of a TLS connection's joined channels, 50 KB bursts echoed in 3-byte reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_split_of_joined_tls_channels_echoes_across_two_tasks() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = net_tests::pki::Pki::generate();
    let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let input = server.open_read_channel().unwrap();
    let output = server.open_write_channel(true).unwrap();
    let (mut r, mut w) = tokio::io::split(tokio::io::join(input, output));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 3];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            tx.send(buf[..n].to_vec()).unwrap();
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            w.write_all(&b).await.unwrap();
            // `poll_write` sends only what the socket takes now, auto flush or not: the
            // rest (in the channel, or a TLS record in the session) leaves with a flush, which
            // must come before this task waits for more.
            w.flush().await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut client = client.into_stream().unwrap();
    let data: Vec<u8> = (0..50000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for _ in 0..5 {
        client.write_all(&data).await.unwrap();
        let mut got = vec![0u8; data.len()];
        within(client.read_exact(&mut got)).await.unwrap();
        assert_eq!(got, data);
        client.write_all(b"xy").await.unwrap();
        let mut got = [0u8; 2];
        within(client.read_exact(&mut got)).await.unwrap();
    }
    client.shutdown().await.unwrap();
    within(reader).await.unwrap();
    within(writer).await.unwrap();
    drop(server);
}

/// The bytes `0, 1, …, 250, 0, …`: `n` of them.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A CONNECT-style relay: the request line read with `read_line` (the client's first 20 KB
/// sent right behind it), then `tokio::io::copy_bidirectional` (default buffer sizes) between
/// the connection's channels and an upstream that takes the client's bytes slowly (an
/// in-memory pipe of 64 bytes). With `reply`, the relay writes and flushes it before the copy
/// begins (the client's bytes all buffered first, so that the flush is held back); without,
/// the upstream takes 64 bytes and answers. Whether that answer reaches the client within 5 s.
async fn relay_delivers<C>(
    mut client: C,
    mut input: net_io::ByteReadChannel,
    mut output: net_io::ByteWriteChannel,
    reply: Option<&'static [u8]>,
) -> bool
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut first = b"CONNECT upstream:1\r\n".to_vec();
    first.extend_from_slice(&pattern(20_000));
    client.write_all(&first).await.unwrap();
    client.flush().await.unwrap();
    if reply.is_some() {
        // More than the copy's 8 KiB buffer stays behind the line, on TLS as on plain TCP.
        assert!(within(input.await_content(first.len())).await.unwrap());
    }
    let line = within(input.read_line(1024, net_io::LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("CONNECT upstream:1"));
    if let Some(reply) = reply {
        output.write_fully(reply).await.unwrap();
        output.flush().await.unwrap();
    }
    let (mut proxy_side, mut far) = tokio::io::duplex(64);
    let proxy = tokio::spawn(async move {
        let mut ours = tokio::io::join(input, output);
        tokio::io::copy_bidirectional(&mut ours, &mut proxy_side).await
    });
    // The copy has read through the trait, and now waits to write to the upstream.
    let mut taken = [0u8; 64];
    within(far.read_exact(&mut taken)).await.unwrap();
    assert_eq!(&taken[..], &pattern(20_000)[..64]);
    let want = match reply {
        Some(reply) => reply,
        None => {
            far.write_all(b"HELLO\n").await.unwrap();
            b"HELLO\n"
        }
    };
    let mut got = vec![0u8; want.len()];
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.read_exact(&mut got),
    )
    .await;
    proxy.abort();
    match answer {
        Ok(read) => {
            read.unwrap();
            assert_eq!(&got[..], want);
            true
        }
        Err(_) => false,
    }
}

/// [`relay_delivers`] over a plain connection.
async fn plain_relay_delivers(reply: Option<&'static [u8]>) -> bool {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, mut socket) = raw_peer_of(&listener).await;
    let input = socket.open_read_channel().unwrap();
    let output = socket.open_write_channel(false).unwrap();
    let delivered = relay_delivers(client, input, output, reply).await;
    socket.close();
    delivered
}

/// [`relay_delivers`] over TLS, whose records are held back under the session.
async fn tls_relay_delivers(reply: Option<&'static [u8]>) -> bool {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = net_tests::pki::Pki::generate();
    let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let input = server.open_read_channel().unwrap();
    let output = server.open_write_channel(false).unwrap();
    let delivered = relay_delivers(client.into_stream().unwrap(), input, output, reply).await;
    server.close();
    delivered
}

/// SPEC §4.2 with §4.4's flush coalescing on (the default): `copy_bidirectional` over a
/// connection's channels, whose copy towards a slow upstream stops reading with client bytes
/// still buffered, delivers what it flushes the other way. (The upstream's answer was held back
/// for ever: a trait read left those bytes pending, as requests a later read would answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_bidirectional_over_a_connections_channels_delivers_while_the_other_way_waits() {
    assert!(
        plain_relay_delivers(None).await,
        "the upstream's answer never reached the client (plain)"
    );
}

/// The same over TLS, whose records are held back under the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_bidirectional_over_tls_channels_delivers_while_the_other_way_waits() {
    assert!(
        tls_relay_delivers(None).await,
        "the upstream's answer never reached the client (TLS)"
    );
}

/// After `Socket::close`, a flush fails with `Error::Closed`, as every later operation does
/// (guarantees: "later operations fail with `Error::Closed`"), also when nothing is buffered:
/// the channel's own flush, the trait's, a `SocketStream`'s and a TLS channel's (each
/// returned `Ok(())`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_after_the_socket_closed_fails_with_closed() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let closed = |r: &Result<(), String>| matches!(r, Err(e) if e.contains("closed"));
    let mut outcomes = Vec::new();
    let (_peer, mut server) = raw_peer_of(&listener).await;
    let mut output = server.open_write_channel(false).unwrap();
    output.write_fully(b"hello").await.unwrap();
    output.flush().await.unwrap();
    server.close();
    outcomes.push((
        "channel flush",
        output.flush().await.map_err(|e| e.to_string()),
    ));
    outcomes.push((
        "trait flush",
        AsyncWriteExt::flush(&mut output)
            .await
            .map_err(|e| e.to_string()),
    ));
    let (_peer, server) = raw_peer_of(&listener).await;
    let mut stream = server.into_stream().unwrap();
    stream.write_all(b"hello").await.unwrap();
    stream.close();
    outcomes.push((
        "stream flush",
        stream.flush().await.map_err(|e| e.to_string()),
    ));
    let pki = net_tests::pki::Pki::generate();
    let (mut server, _client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let mut output = server.open_write_channel(false).unwrap();
    output.write_fully(b"hello").await.unwrap();
    output.flush().await.unwrap();
    server.close();
    outcomes.push((
        "tls channel flush",
        output.flush().await.map_err(|e| e.to_string()),
    ));
    let wrong: Vec<_> = outcomes.iter().filter(|(_, r)| !closed(r)).collect();
    assert!(
        wrong.is_empty(),
        "not failed with the close after close: {wrong:?}"
    );
}

/// A relay's reply to a CONNECT.
const REPLY: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// guide.md §7: nothing is held back for reads through tokio's traits, which may stop reading
/// one way while their write that way waits. An answer flushed just before such code takes
/// over (after the request line was read with `read_line`, the client's next bytes buffered
/// behind it, so the flush was held back) leaves when the first trait read takes bytes: it
/// stayed held while the copy waited (the trait read cleared the pending flag, but nothing
/// sent what was held for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_flushed_before_copy_bidirectional_takes_over_reaches_the_client() {
    assert!(
        plain_relay_delivers(Some(REPLY)).await,
        "the relay's flushed answer never reached the client while copy_bidirectional waited (plain)"
    );
}

/// The same over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_answer_flushed_before_copy_bidirectional_takes_over_reaches_the_client() {
    assert!(
        tls_relay_delivers(Some(REPLY)).await,
        "the relay's flushed answer never reached the client while copy_bidirectional waited (TLS)"
    );
}

/// guide.md §7 again, for `AsyncBufRead`: after the request line was read with `read_line` (the
/// client's next bytes buffered behind it), a relay hands the channels to trait code: one copy
/// towards the upstream through `AsyncBufRead` (`tokio::io::copy_buf`), whose first write waits
/// (the upstream's buffer is full), and one copy back through `tokio::io::copy`, which flushes
/// the upstream's answer. That answer is held back for as long as the first copy waits: its
/// `poll_fill_buf` handed out buffered bytes but left them pending, as an own read would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_flushed_while_a_buf_read_copy_waits_reaches_the_client() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&listener).await;
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(false).unwrap();
    let mut first = b"CONNECT upstream:1\r\n".to_vec();
    first.extend_from_slice(&pattern(20_000));
    client.write_all(&first).await.unwrap();
    assert!(within(input.await_content(first.len())).await.unwrap());
    let line = within(input.read_line(1024, net_io::LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("CONNECT upstream:1"));
    let (proxy_side, mut far) = tokio::io::duplex(64);
    let (mut up_read, mut up_write) = tokio::io::split(proxy_side);
    // The upstream's buffer is full: the copy towards it waits at its first write.
    up_write.write_all(&[0u8; 64]).await.unwrap();
    let towards = tokio::spawn(async move { tokio::io::copy_buf(&mut input, &mut up_write).await });
    let back = tokio::spawn(async move {
        let copied = tokio::io::copy(&mut up_read, &mut output).await;
        (copied, output)
    });
    // Whether or not the copy towards the upstream has taken its first buffered bytes by now
    // (a trait read), the answer must leave once it has.
    far.write_all(b"HELLO\n").await.unwrap();
    let mut got = [0u8; 6];
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        client.read_exact(&mut got),
    )
    .await;
    towards.abort();
    back.abort();
    socket.close();
    assert!(
        matches!(answer, Ok(Ok(_))) && &got == b"HELLO\n",
        "the upstream's answer, flushed by tokio::io::copy, never reached the client while \
         copy_buf waited: {answer:?}"
    );
}

/// Over TLS, an answer held back for the channel's own reads, after an own read took all the
/// channel had buffered (the session still holding plaintext of the same record), leaves at
/// the first trait read, which goes straight to the session: the session hands out that
/// plaintext without a read of the socket, the read that would have sent the held answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_tls_answer_leaves_at_a_trait_read_that_goes_straight_to_the_session() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = net_tests::pki::Pki::generate();
    let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let mut client = client.into_stream().unwrap();
    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(false).unwrap();
    // The request line and 20 KB behind it: the first record (16 KiB of plaintext) is more
    // than the channel takes from the session at once.
    let mut first = b"CONNECT upstream:1\r\n".to_vec();
    first.extend_from_slice(&pattern(20_000));
    client.write_all(&first).await.unwrap();
    client.flush().await.unwrap();
    let line = within(input.read_line(1024, net_io::LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("CONNECT upstream:1"));
    // Held back: input is pending.
    output.write_fully(REPLY).await.unwrap();
    output.flush().await.unwrap();
    // An own read takes all the channel holds (nothing pending any more; the reply still held).
    let mut taken = vec![0u8; 64 * 1024];
    let n = within(input.read_available(&mut taken)).await.unwrap();
    assert!(n > 0);
    let (mut proxy_side, mut far) = tokio::io::duplex(64);
    let proxy = tokio::spawn(async move {
        let mut ours = tokio::io::join(input, output);
        tokio::io::copy_bidirectional(&mut ours, &mut proxy_side).await
    });
    let mut upstream = [0u8; 64];
    within(far.read_exact(&mut upstream)).await.unwrap();
    let mut got = vec![0u8; REPLY.len()];
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.read_exact(&mut got),
    )
    .await;
    proxy.abort();
    server.close();
    assert!(
        matches!(answer, Ok(Ok(_))) && got == REPLY,
        "the held reply never reached the client while copy_bidirectional waited: {answer:?}"
    );
}
