//! Writes to a peer that is gone fail with `BrokenPipe` and do not kill the process, even where
//! `SIGPIPE` has its default disposition (Rust programs ignore it at startup; a CLI tool that
//! restores it for `| head`, a program built with `-Zon-broken-pipe=kill`, or a C host that
//! loads the library do not). The test process ignores `SIGPIPE` as every Rust program does,
//! so the scenarios run in a child process (this test binary again) that restores the default
//! first: one send of ours without `MSG_NOSIGNAL` that meets `EPIPE` kills it.
//!
//! Each scenario makes the kernel answer our next send with `EPIPE`, the error that raises the
//! signal: over TCP, the peer sends its FIN, then resets (a connection in `CLOSE_WAIT` that is
//! reset fails its sends so); a Unix stream socket whose peer closed fails its sends so at
//! once. The paths: the write channel over TCP and over a Unix socket, a vectored write of
//! `SocketStream`, answers held back by flush coalescing (sent by a later write, or at the
//! socket's close), a TLS server's handshake (its answer to a ClientHello), a TLS write, and
//! the `close_notify` of a TLS write channel's close.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use net_sockets::{SelectorManager, Socket, Transport, UnixSocketAddress, a_socket};
use net_tests::harness::{rerun_self_alone, run_if_child};
use net_tests::loopback::{tcp_listener, tcp_listener_with};
use net_tests::pki::Pki;
use net_tests::{HANG_LIMIT, TempDir, within};
use net_tls::TlsExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

const CHILD_ENV: &str = "NET_TESTS_SIGPIPE_DEFAULT_CHILD";

#[test]
fn writes_to_a_gone_peer_fail_without_killing_a_process_that_takes_sigpipe() {
    let text = rerun_self_alone("sigpipe_child", CHILD_ENV, "sigpipe child passed");
    for line in text.lines().filter(|l| l.contains("sigpipe: ")) {
        eprintln!("child: {line}");
    }
}

#[test]
fn sigpipe_child() {
    run_if_child(CHILD_ENV, async {
        take_sigpipe();
        let selector = SelectorManager::new();
        write_channel_over_tcp(&selector).await;
        write_channel_over_unix(&selector).await;
        vectored_write(&selector).await;
        held_back_answers(&selector).await;
        tls_handshake(&selector).await;
        tls_write(&selector).await;
        tls_close_notify(&selector).await;
        selector.close();
        held_back_answers_after_a_close().await;
        println!("sigpipe child passed");
    });
}

/// Restores `SIGPIPE`'s default disposition (terminate the process) in this child process.
#[allow(unsafe_code)]
fn take_sigpipe() {
    // SAFETY: `SIG_DFL` installs no handler; nothing else in this process changes the
    // disposition of `SIGPIPE`.
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(
        previous,
        libc::SIG_ERR,
        "{}",
        std::io::Error::last_os_error()
    );
}

/// Waits (blocking, at most [`HANG_LIMIT`]) until `poll(2)` reports `event` on `socket`'s
/// descriptor, without reading from it or taking its pending error.
#[allow(unsafe_code)]
fn wait_for<T: Transport>(socket: &Socket<T>, event: libc::c_short) {
    socket
        .with_sock_ref(|s| {
            let mut entry = libc::pollfd {
                fd: s.as_raw_fd(),
                events: event,
                revents: 0,
            };
            let limit = HANG_LIMIT.as_millis() as libc::c_int;
            // SAFETY: one `pollfd` that lives through the call; its descriptor is open (the
            // socket's, borrowed for the closure).
            let ready = unsafe { libc::poll(&mut entry, 1, limit) };
            assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
            assert!(
                entry.revents & event != 0,
                "no event {event:#x} on the socket in {HANG_LIMIT:?}: {:#x}",
                entry.revents
            );
            Ok(())
        })
        .expect("the socket's descriptor");
}

/// Makes `ours`'s TCP connection one that fails a send with `EPIPE`: the peer sends its FIN,
/// then resets; returns once both came.
fn peer_ends_then_resets<T: Transport>(ours: &Socket<T>, peer: socket2::SockRef<'_>) {
    peer.shutdown(Shutdown::Write).unwrap();
    wait_for(ours, libc::POLLRDHUP);
    peer.set_linger(Some(Duration::ZERO)).unwrap();
}

/// Asserts that the error of `what`, of kind `kind`, is `EPIPE`'s.
fn assert_broken_pipe(what: &str, kind: std::io::ErrorKind, error: &dyn std::fmt::Debug) {
    assert_eq!(kind, std::io::ErrorKind::BrokenPipe, "{what}: {error:?}");
    println!("sigpipe: {what}: {error:?}");
}

async fn write_channel_over_tcp(selector: &SelectorManager) {
    let listener = tcp_listener(selector).await;
    let peer = TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    let mut ours = within(listener.accept()).await.unwrap();
    let mut output = ours.open_write_channel(true).unwrap();
    peer_ends_then_resets(&ours, socket2::SockRef::from(&peer));
    drop(peer);
    wait_for(&ours, libc::POLLHUP);
    let failed = within(output.write_fully(b"to nobody\n"))
        .await
        .unwrap_err();
    assert_broken_pipe("TCP write channel", failed.kind(), &failed);
}

async fn write_channel_over_unix(selector: &SelectorManager) {
    let dir = TempDir::new("sigpipe-unix");
    let path = dir.join("server.sock");
    let listener = a_socket(selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut ours = within(listener.accept()).await.unwrap();
    let mut output = ours.open_write_channel(true).unwrap();
    drop(peer);
    wait_for(&ours, libc::POLLHUP);
    let failed = within(output.write_fully(b"to nobody\n"))
        .await
        .unwrap_err();
    assert_broken_pipe("Unix write channel", failed.kind(), &failed);
}

async fn vectored_write(selector: &SelectorManager) {
    // Without coalescing, a vectored write is one vectored send.
    let listener = tcp_listener_with(selector, |b| b.coalesce_flushes(false)).await;
    let peer = TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    let ours = within(listener.accept()).await.unwrap();
    peer_ends_then_resets(&ours, socket2::SockRef::from(&peer));
    drop(peer);
    wait_for(&ours, libc::POLLHUP);
    let mut stream = ours.into_stream().unwrap();
    assert!(stream.is_write_vectored());
    let slices = [
        std::io::IoSlice::new(b"to "),
        std::io::IoSlice::new(b"nobody\n"),
    ];
    let failed = within(stream.write_vectored(&slices)).await.unwrap_err();
    assert_broken_pipe("vectored write", failed.kind(), &failed);
}

async fn held_back_answers(selector: &SelectorManager) {
    let listener = tcp_listener_with(selector, |b| b.coalesce_flushes(true)).await;
    let mut peer = TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    let mut ours = within(listener.accept()).await.unwrap();
    let mut input = ours.open_read_channel().unwrap();
    let mut output = ours.open_write_channel(true).unwrap();
    peer.write_all(b"a\nb\n").unwrap();
    // Read once both requests are in: the first read takes both.
    wait_for(&ours, libc::POLLIN);
    assert_eq!(
        within(input.read_utf8_line(64)).await.unwrap().as_deref(),
        Some("a")
    );
    // The answer to `a` is held back: `b` is not read yet.
    within(output.write_fully(b"A\n")).await.unwrap();
    peer_ends_then_resets(&ours, socket2::SockRef::from(&peer));
    drop(peer);
    wait_for(&ours, libc::POLLHUP);
    assert_eq!(
        within(input.read_utf8_line(64)).await.unwrap().as_deref(),
        Some("b")
    );
    // The held answer leaves with this one, or with the flush.
    let failed = match within(output.write_fully(b"B\n")).await {
        Err(e) => e,
        Ok(()) => within(output.flush()).await.unwrap_err(),
    };
    assert_broken_pipe("held-back answers", failed.kind(), &failed);
}

/// Answers held back when the socket closes are sent at the close, or, where the socket cannot
/// take them then, by a task of their own after it, which a graceful shutdown of the selector
/// waits for.
async fn held_back_answers_after_a_close() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let mut peer = TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    let mut ours = within(listener.accept()).await.unwrap();
    let mut input = ours.open_read_channel().unwrap();
    let mut output = ours.open_write_channel(true).unwrap();
    peer.write_all(b"a\nb\n").unwrap();
    wait_for(&ours, libc::POLLIN);
    assert_eq!(
        within(input.read_utf8_line(64)).await.unwrap().as_deref(),
        Some("a")
    );
    within(output.write_fully(b"A\n")).await.unwrap();
    peer_ends_then_resets(&ours, socket2::SockRef::from(&peer));
    drop(peer);
    wait_for(&ours, libc::POLLHUP);
    ours.close();
    drop((input, output));
    let report = within(selector.shutdown(HANG_LIMIT)).await;
    // Not cut: the send failed, and nothing was left to wait for.
    assert_eq!(report.cut, 0, "{report:?}");
    println!("sigpipe: held-back answers after a close: {report:?}");
}

async fn tls_handshake(selector: &SelectorManager) {
    let pki = Pki::generate();
    let config = pki.server_config().build().unwrap();
    let listener = tcp_listener(selector).await;
    let mut peer = TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    let ours = within(listener.accept()).await.unwrap();
    let mut client = net_tls::rustls::ClientConnection::new(
        net_tests::tls::rustls_client(&pki.ca),
        net_tests::tls::localhost(),
    )
    .unwrap();
    peer.write_all(&net_tests::tls::records(&mut client))
        .unwrap();
    peer_ends_then_resets(&ours, socket2::SockRef::from(&peer));
    drop(peer);
    wait_for(&ours, libc::POLLHUP);
    // The ClientHello is still there to read; the answer meets `EPIPE`.
    let failed = within(ours.tls_server(&config)).await.unwrap_err();
    assert_broken_pipe("TLS handshake", failed.kind(), &failed);
}

async fn tls_write(selector: &SelectorManager) {
    let pki = Pki::generate();
    let listener = tcp_listener(selector).await;
    let (peer, mut ours) = net_tests::tls::pair_of(selector, &listener, &pki).await;
    let mut output = ours.open_write_channel(true).unwrap();
    peer.with_sock_ref(|s| {
        peer_ends_then_resets(&ours, s);
        Ok(())
    })
    .unwrap();
    drop(peer);
    wait_for(&ours, libc::POLLHUP);
    let failed = within(output.write_fully(b"to nobody\n"))
        .await
        .unwrap_err();
    assert_broken_pipe("TLS write", failed.kind(), &failed);
}

async fn tls_close_notify(selector: &SelectorManager) {
    let pki = Pki::generate();
    let listener = tcp_listener(selector).await;
    let (peer, mut ours) = net_tests::tls::pair_of(selector, &listener, &pki).await;
    let mut output = ours.open_write_channel(true).unwrap();
    peer.with_sock_ref(|s| {
        peer_ends_then_resets(&ours, s);
        Ok(())
    })
    .unwrap();
    drop(peer);
    wait_for(&ours, libc::POLLHUP);
    let failed = within(output.flush_and_close()).await.unwrap_err();
    assert_broken_pipe("TLS close_notify", failed.kind(), &failed);
}
