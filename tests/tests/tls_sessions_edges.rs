//! TLS sessions facing what a demanding user of rustls would try.
//!
//! - A read that waits while our half-close (`flush_and_close`) takes in what the socket holds
//!   is woken for what was taken in: a line, or the peer's `close_notify`.
//! - A read after our `close`, or waiting when it came, fails with `Closed` as on a plain
//!   socket, though the close took in the peer's last line (to spare the connection a reset).
//! - Two `close` calls at the same moment (two threads sharing the socket) send the session's
//!   last records once, then `close_notify`: the peer reads every byte, then a clean end.
//! - STARTTLS: plain text after the server's reply fails our client's handshake.
//! - An upgrade refused because a channel is open closes the socket, as its other errors do:
//!   the peer sees the end, and the open channel reads no more plain text.
//! - A session ended cleanly both ways (the peer's `close_notify`, our `flush_and_close`), in
//!   either order, closes its socket itself, as a plain socket does once both directions ended.
//! - `openssl s_client` / `s_server` as the peer: TLS 1.3 key updates (`k`, `K`) keep the
//!   session working both ways; a TLS 1.2 renegotiation (`R`, `r`) is refused, and OpenSSL then
//!   ends the session with a fatal alert that our read reports, typed.

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::TcpStream as StdTcpStream;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::fault::raw_peer_of;
use net_tests::harness::{Process, path_arg, port_at_end};
use net_tests::loopback::tcp_listener;
use net_tests::pki::{Pki, TestCa};
use net_tests::tls::{TlsTestServer, localhost, rustls_client, rustls_error};
use net_tests::within;
use net_tls::rustls;
use net_tls::{Error, TlsConfig, TlsExt, TlsSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits, without yielding to the runtime, until `socket` holds input (which its runtime has
/// then not seen yet); panics after 5 s.
fn until_input_waits(socket: &TlsSocket) {
    let started = Instant::now();
    loop {
        let mut one = [MaybeUninit::<u8>::uninit(); 1];
        if socket
            .with_sock_ref(|s| s.peek(&mut one))
            .is_ok_and(|n| n > 0)
        {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no input came");
        std::thread::yield_now();
    }
}

/// What the peer sends while our read waits.
#[derive(Clone, Copy, Debug)]
enum Sent {
    Line,
    CloseNotify,
}

/// A read waits in its task; the peer's line (or its `close_notify`) arrives, and before the
/// runtime sees the socket readable, the writer half-closes (`flush_and_close`), which takes in
/// what the socket holds before its FIN. The peer then stays silent, connection open. Before the
/// fix, nothing woke the read: the socket had nothing more to say, and the line (or the end)
/// waited in the session until the peer sent more or went away.
#[tokio::test]
async fn a_waiting_read_gets_what_our_half_close_took_in() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let ca = TestCa::new("htls half-close reader");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    for sent in [Sent::Line, Sent::CloseNotify] {
        // The peer: a blocking rustls client in a thread of its own, told when to send, then
        // silent with its connection open until told to go.
        let (to_peer, peer_orders) = std_mpsc::channel::<()>();
        let (peer_sent, sent_now) = std_mpsc::channel::<()>();
        let client_config = rustls_client(&ca);
        let peer = std::thread::spawn(move || {
            let tcp = StdTcpStream::connect(("127.0.0.1", port)).unwrap();
            let session = rustls::ClientConnection::new(client_config, localhost()).unwrap();
            let mut tls = rustls::StreamOwned::new(session, tcp);
            while tls.conn.is_handshaking() {
                tls.conn.complete_io(&mut tls.sock).unwrap();
            }
            peer_orders.recv().unwrap();
            match sent {
                Sent::Line => tls.write_all(b"hello\n").unwrap(),
                Sent::CloseNotify => tls.conn.send_close_notify(),
            }
            tls.flush().unwrap();
            peer_sent.send(()).unwrap();
            let _ = peer_orders.recv();
        });

        let socket = within(listener.accept()).await.unwrap();
        let mut server = within(socket.tls_server(&config)).await.unwrap();
        let mut input = server.open_read_channel().unwrap();
        let mut output = server.open_write_channel(false).unwrap();
        let reader = tokio::spawn(async move { input.read_line(64, LineEnding::Default).await });
        // The test's runtime has one thread: the read ran at these yields, and waits.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(!reader.is_finished(), "{sent:?}");
        to_peer.send(()).unwrap();
        sent_now.recv().unwrap();
        until_input_waits(&server);
        within(output.flush_and_close()).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(2), reader).await;
        to_peer.send(()).unwrap();
        let read = read
            .unwrap_or_else(|_| panic!("{sent:?}: the read still waits for what came"))
            .unwrap();
        let expected = match sent {
            Sent::Line => Some("hello"),
            Sent::CloseNotify => None,
        };
        assert_eq!(read.unwrap().as_deref(), expected, "{sent:?}");
        peer.join().unwrap();
    }
}

/// The peer's line arrives; before anything reads it, we `close()`. As on a plain socket, a
/// read after the close, and one that was waiting when it came, fails with `Error::Closed`.
/// Before the fix both returned the line: the close takes in what the socket holds (so that the
/// kernel does not answer the close with a reset), and reads found it in the session.
#[tokio::test]
async fn a_read_after_our_close_fails_closed_though_the_close_took_in_the_peers_line() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let ca = TestCa::new("htls read after close");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    for waiting in [false, true] {
        let (to_peer, peer_orders) = std_mpsc::channel::<()>();
        let client_config = rustls_client(&ca);
        let peer = std::thread::spawn(move || {
            let tcp = StdTcpStream::connect(("127.0.0.1", port)).unwrap();
            let session = rustls::ClientConnection::new(client_config, localhost()).unwrap();
            let mut tls = rustls::StreamOwned::new(session, tcp);
            while tls.conn.is_handshaking() {
                tls.conn.complete_io(&mut tls.sock).unwrap();
            }
            peer_orders.recv().unwrap();
            tls.write_all(b"hello\n").unwrap();
            tls.flush().unwrap();
            let _ = peer_orders.recv();
        });
        let socket = within(listener.accept()).await.unwrap();
        let mut server = within(socket.tls_server(&config)).await.unwrap();
        let mut input = server.open_read_channel().unwrap();
        let read = if waiting {
            let reader =
                tokio::spawn(async move { input.read_line(64, LineEnding::Default).await });
            // The test's runtime has one thread: the read ran at these yields, and waits.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            to_peer.send(()).unwrap();
            until_input_waits(&server);
            server.close();
            within(reader).await.unwrap()
        } else {
            to_peer.send(()).unwrap();
            until_input_waits(&server);
            server.close();
            within(input.read_line(64, LineEnding::Default)).await
        };
        to_peer.send(()).unwrap();
        peer.join().unwrap();
        let e = read.expect_err("a read after close");
        assert!(
            matches!(net_sockets::Error::from(e), net_sockets::Error::Closed),
            "waiting: {waiting}"
        );
    }
}

/// Two threads call `close` on one TLS stream at the same moment, while records rustls took
/// (our last data) wait for a full socket: the first close takes them, with `close_notify`, to
/// send as the socket drains. Before the fix the other close, finding nothing left to send,
/// could release the socket (FIN) before the first had handed its records over: they were
/// lost, and the client read `Truncated` after part of the data, in about 2 rounds in 100
/// (none with a single close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_closes_at_once_still_send_the_last_records_then_close_notify() {
    use net_tests::loopback::tcp_listener_with;
    use tokio::io::AsyncWriteExt;

    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    // Small buffers: the body fills the path while the client does not read; the rest waits
    // in the session.
    let listener = tcp_listener_with(&selector, |b| b.send_buffer_size(4096)).await;
    let port = listener.port().unwrap();
    let body = net_tests::payload(48 * 1024);
    let started = Instant::now();
    let mut rounds = 0;
    // Bounded in count and time.
    while rounds < 400 && started.elapsed() < Duration::from_millis(1500) {
        rounds += 1;
        let client_config = pki
            .client_config()
            .server_name("localhost")
            .build()
            .unwrap();
        let connect = async {
            net_sockets::a_socket(&selector)
                .tcp()
                .receive_buffer_size(4096)
                .connect(("127.0.0.1", port))
                .await
                .unwrap()
                .tls(client_config)
                .await
                .unwrap()
        };
        let (server, mut client) = within(async {
            tokio::join!(net_tests::tls::accept(&listener, &server_config), connect)
        })
        .await;
        // Writes that rustls took (the socket took only part of them): as good as sent.
        let mut stream = server.into_stream().unwrap();
        let mut taken = 0;
        while taken < body.len() {
            taken += within(stream.write(&body[taken..])).await.unwrap();
        }
        let stream = std::sync::Arc::new(stream);
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let closers: Vec<_> = (0..2)
            .map(|_| {
                let (stream, start) = (stream.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    stream.close();
                })
            })
            .collect();
        let mut input = client.open_read_channel().unwrap();
        let received = within(input.read_remaining(usize::MAX)).await;
        for closer in closers {
            closer.join().unwrap();
        }
        match received {
            Ok(received) => assert!(received == body, "round {rounds}: bytes lost"),
            Err(e) => panic!("round {rounds}: every byte, then close_notify, expected: {e:?}"),
        }
    }
}

/// STARTTLS response injection, the client's side of CVE-2011-0411: a server (or a
/// man in the middle) sends plain text right after its "220" reply, in the same segment. Our
/// client reads the reply line, then starts TLS: the plain text the input already holds is the
/// handshake's first input, so the handshake fails, typed, and the text is never read as if it
/// came over TLS. (Guard: this holds on the old code.)
#[tokio::test]
async fn plain_text_after_the_servers_starttls_reply_fails_the_handshake() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let selector = SelectorManager::new();
    let ca = TestCa::new("htls starttls injection");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tcp = BufReader::new(tcp);
        let mut command = String::new();
        tcp.read_line(&mut command).await.unwrap();
        assert_eq!(command, "STARTTLS\r\n");
        tcp.write_all(b"220 go\r\n250 injected\r\n").await.unwrap();
        // Whatever the client sends now (an alert, or nothing), until it goes.
        let mut rest = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut rest).await;
    });

    let socket = net_tests::loopback::connect(&selector, ("127.0.0.1", port)).await;
    let mut plain = socket.connection().unwrap();
    plain
        .output
        .write_string_utf8("STARTTLS\r\n")
        .await
        .unwrap();
    plain.output.flush().await.unwrap();
    let reply = within(plain.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(reply.unwrap().as_deref(), Some("220 go"));
    let config = ca.client_config().server_name("localhost").build().unwrap();
    let e = within(plain.tls(config)).await.unwrap_err();
    assert!(
        matches!(
            e,
            net_tls::Error::Handshake(rustls::Error::InvalidMessage(_))
        ),
        "{e:?}"
    );
    within(server).await.unwrap();
}

/// Our server: answers each line with `Hello, <line>!`; reports how reading ended.
async fn echo_lines(mut tls: TlsSocket) -> Result<(), net_io::Error> {
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    let end = loop {
        match input.read_line(1024, LineEnding::Default).await {
            Ok(Some(line)) => output
                .write_string_utf8(&format!("Hello, {line}!\n"))
                .await
                .unwrap(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    tls.close();
    end
}

/// Sends `line` to `peer`'s stdin, then waits for the stdout line `wanted`.
fn say(peer: &mut Process, line: &str, wanted: &str) {
    peer.send(&format!("{line}\n"));
    peer.stdout_line_where(wanted, |l| l == wanted);
}

/// Sends the command `command` to `s_client`'s stdin, then waits for the stderr line `done`,
/// which it prints once the command ran: openssl drops what follows a command in the same read
/// of its stdin.
fn command(client: &mut Process, command: &str, done: &str) {
    client.send(&format!("{command}\n"));
    while client.stderr_line() != done {}
}

/// `openssl s_client` against our server: TLS 1.3 key updates, with and without a request for
/// ours (`k`, `K`), leave the session working both ways, to a clean end; a TLS 1.2
/// renegotiation (`R`) is refused (rustls's `no_renegotiation` warning), which OpenSSL answers
/// with a fatal `handshake_failure`: our read fails with it, typed. (Guard: holds on the old
/// code.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_key_updates_and_renegotiation_against_our_server() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    let config = pki.server_config().build().unwrap();
    let mut server = TlsTestServer::start(&selector, config, |tls, reporter| async move {
        reporter.report(echo_lines(tls).await);
    })
    .await;
    for version in ["-tls1_3", "-tls1_2"] {
        let port = server.port().to_string();
        let connect = format!("127.0.0.1:{port}");
        let mut client = Process::start(
            "openssl",
            [
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "localhost",
                "-CAfile",
                path_arg(&files.ca),
                "-verify_return_error",
                version,
            ],
        );
        say(&mut client, "alice", "Hello, alice!");
        if version == "-tls1_3" {
            command(&mut client, "k", "KEYUPDATE");
            say(&mut client, "bob", "Hello, bob!");
            command(&mut client, "K", "KEYUPDATE");
            say(&mut client, "carol", "Hello, carol!");
            // End of stdin: s_client sends close_notify.
            let exit = client.finish();
            assert!(exit.status.success(), "{exit:?}");
            let end = server.next().await.unwrap();
            assert!(end.is_ok(), "{end:?}");
        } else {
            command(&mut client, "R", "RENEGOTIATING");
            let end = server.next().await.unwrap().unwrap_err();
            assert_eq!(
                rustls_error(&end),
                Some(&rustls::Error::AlertReceived(
                    rustls::AlertDescription::HandshakeFailure
                )),
                "{end:?}"
            );
            let exit = client.finish();
            assert!(
                exit.stderr.iter().any(|l| l.contains("no renegotiation")),
                "{exit:?}"
            );
        }
    }
}

/// Our client against `openssl s_server`: a TLS 1.3 key update it asks us to answer (`k`) keeps
/// the session working both ways; a TLS 1.2 renegotiation it starts (`r`, a HelloRequest) is
/// refused, and OpenSSL's fatal `handshake_failure` that follows is our read's error, typed.
/// (Guard: holds on the old code.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_openssl_s_server_key_update_and_renegotiation() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    for (version, command) in [("-tls1_3", "k"), ("-tls1_2", "r")] {
        let mut server = Process::start(
            "openssl",
            [
                "s_server",
                "-accept",
                "127.0.0.1:0",
                "-naccept",
                "1",
                version,
                "-cert",
                path_arg(&files.server_chain),
                "-key",
                path_arg(&files.server_key),
            ],
        );
        let accept = server.stdout_line_where("ACCEPT line", |l| l.starts_with("ACCEPT "));
        let socket =
            net_tests::loopback::connect(&selector, ("127.0.0.1", port_at_end(&accept))).await;
        let mut tls = within(socket.tls(pki.client_config().build().unwrap()))
            .await
            .unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        // s_server prints what it receives, and runs a command that is a line of its own.
        output.write_string_utf8("hello\n").await.unwrap();
        server.stdout_line_where("hello", |l| l == "hello");
        // A line back, read with what came before it (TLS 1.3 session tickets): from here, our
        // socket holds nothing until the command's record comes.
        server.send("zero\n");
        let line = within(input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("zero"), "{version}");
        // What it prints about the command waits in a buffer: its record reaching us says
        // that it ran, and that the next line is read on its own.
        server.send(&format!("{command}\n"));
        until_input_waits(&tls);
        if command == "k" {
            server.send("one\n");
            let line = within(input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("one"));
            output.write_string_utf8("two\n").await.unwrap();
            server.stdout_line_where("two", |l| l == "two");
        } else {
            // The read takes the HelloRequest and sends the refusal; OpenSSL's alert follows.
            let end = within(input.read_line(64, LineEnding::Default))
                .await
                .unwrap_err();
            assert_eq!(
                rustls_error(&end),
                Some(&rustls::Error::AlertReceived(
                    rustls::AlertDescription::HandshakeFailure
                )),
                "{end:?}"
            );
        }
        tls.close();
        drop(server);
    }
}

/// `tls_server` and `tls` refuse a socket whose channel is open (`ChannelAlreadyOpen`), and say
/// that on error the socket is closed. Before the fix the refusal only dropped the socket: the
/// open channel kept it alive, the peer saw no end, and the channel went on reading the peer's
/// plain text after the failed upgrade.
#[tokio::test]
async fn an_upgrade_refused_for_an_open_channel_closes_the_socket() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    let config = pki.server_config().build().unwrap();

    // Server side: the read channel is open.
    let (mut peer, mut socket) = raw_peer_of(&listener).await;
    let mut input = socket.open_read_channel().unwrap();
    let refused = within(socket.tls_server(&config)).await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Socket(net_sockets::Error::ChannelAlreadyOpen)
        ),
        "{refused:?}"
    );
    // The peer's write may be answered with a reset: either is fine, what it reads is not.
    let _ = peer
        .write_all(b"plain text after the refused upgrade\n")
        .await;
    let mut buf = [0u8; 64];
    let peer_saw = within(peer.read(&mut buf)).await;
    assert!(matches!(peer_saw, Ok(0) | Err(_)), "{peer_saw:?}");
    let ours = within(input.read_line(1024, LineEnding::Default)).await;
    assert!(ours.is_err(), "the open channel read on: {ours:?}");

    // Client side: the write channel is open.
    let port = listener.port().unwrap();
    let mut client = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut accepted = within(listener.accept()).await.unwrap();
    let _output = client.open_write_channel(true).unwrap();
    let client_config: TlsConfig = pki.client_config().build().unwrap();
    let refused = within(client.tls(client_config)).await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Socket(net_sockets::Error::ChannelAlreadyOpen)
        ),
        "{refused:?}"
    );
    let mut server_input = accepted.open_read_channel().unwrap();
    let end = within(server_input.read_line(1024, LineEnding::Default)).await;
    assert!(matches!(end, Ok(None)), "the server saw no end: {end:?}");
}

/// Which side ends its sending first.
#[derive(Clone, Copy, Debug)]
enum First {
    Peer,
    Us,
}

/// A socket closes itself once its read channel saw the end and its write channel was closed
/// (`Socket`'s "Closing"). For TLS the read channel's end is the peer's `close_notify`, after
/// which rustls reads nothing more from the socket: before the fix, the socket's own end of
/// stream was never read, so a session ended cleanly both ways stayed open (descriptor held,
/// `await_closed` waiting) until dropped, while one the peer truncated closed itself.
#[tokio::test]
async fn a_tls_session_ended_cleanly_both_ways_closes_its_socket() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    let config = pki.server_config().build().unwrap();
    let port = listener.port().unwrap();
    for first in [First::Peer, First::Us] {
        let client_config = rustls_client(&pki.ca);
        let (ours_closed_tx, ours_closed_rx) = tokio::sync::oneshot::channel::<()>();
        let client = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(client_config)
                .connect(localhost(), tcp)
                .await
                .unwrap();
            tls.write_all(b"hello\n").await.unwrap();
            tls.flush().await.unwrap();
            let mut rest = Vec::new();
            if let First::Us = first {
                // Our close_notify first: read to it, then end ours.
                tls.read_to_end(&mut rest).await.unwrap();
                tls.shutdown().await.unwrap();
            } else {
                tls.shutdown().await.unwrap();
                tls.read_to_end(&mut rest).await.unwrap();
            }
            // The connection stays open until the server's side is done with it.
            let _ = ours_closed_rx.await;
            rest
        });
        let mut tls = within(listener.accept())
            .await
            .unwrap()
            .tls_server(&config)
            .await
            .unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(false).unwrap();
        let line = within(input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("hello"), "{first:?}");
        match first {
            First::Peer => {
                let end = within(input.read_line(64, LineEnding::Default)).await;
                assert!(matches!(end, Ok(None)), "{first:?}: {end:?}");
                output.write_string_utf8("bye\n").await.unwrap();
                within(output.flush_and_close()).await.unwrap();
            }
            First::Us => {
                output.write_string_utf8("bye\n").await.unwrap();
                within(output.flush_and_close()).await.unwrap();
                let end = within(input.read_line(64, LineEnding::Default)).await;
                assert!(matches!(end, Ok(None)), "{first:?}: {end:?}");
            }
        }
        let closed = tokio::time::timeout(Duration::from_secs(5), tls.await_closed()).await;
        assert!(
            closed.is_ok(),
            "{first:?}: ended both ways, yet the TLS socket did not close itself"
        );
        let _ = ours_closed_tx.send(());
        let rest = within(client).await.unwrap();
        assert_eq!(rest, b"bye\n", "{first:?}");
    }
}
