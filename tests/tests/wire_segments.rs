//! What goes on the wire, counted by the kernel rather than seen through the API: Linux's
//! `TCP_INFO` per socket (`tcpi_data_segs_in`, `tcpi_data_segs_out`: segments that carried
//! data; `tcpi_notsent_bytes`: bytes written to the socket and not sent yet). The other tests
//! observe our sockets through what a peer reads; these check the promises about segments:
//! flush coalescing answers a burst of 16 pipelined requests in one segment (SPEC §4.4, plain
//! and TLS), and, with `TCP_NODELAY` on as documented, each auto-flushed write is sent before
//! it returns, even with the one before it not yet acknowledged (Nagle's algorithm would keep
//! it back until the peer's delayed acknowledgement, some 40 ms later).
//!
//! A capture on `lo` (tcpdump) of the examples showed the same: the seed's `sockets-server`
//! answers 16 pipelined lines with one 192-byte segment, a lone line at once (0.1 ms), and a
//! writer-only task's writes each in a segment of its own as it writes.

use std::os::fd::AsRawFd as _;

use net_io::LineEnding;
use net_sockets::{SelectorManager, Socket, Transport, a_socket};
use net_tests::fault::raw_peer_of;
use net_tests::greeting::serve_seed;
use net_tests::loopback::tcp_listener;
use net_tests::probe::tcp_info;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `TCP_INFO` of one of our sockets.
fn info_of<T: Transport>(socket: &Socket<T>) -> libc::tcp_info {
    socket.with_sock_ref(|s| tcp_info(s.as_raw_fd())).unwrap()
}

/// How many segments with data `peer` has received.
fn segments_in(peer: &TcpStream) -> u32 {
    tcp_info(peer.as_raw_fd()).unwrap().tcpi_data_segs_in
}

async fn read_exactly(peer: &mut TcpStream, text: &str) {
    let mut buf = vec![0; text.len()];
    within(peer.read_exact(&mut buf)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), text);
}

fn burst() -> String {
    (0..16).map(|i| format!("n{i:02}\n")).collect()
}

fn answers() -> String {
    (0..16).map(|i| format!("Hello, n{i:02}!\n")).collect()
}

/// The seed's server as shipped (coalescing on by default): the greeting is one segment, 16
/// pipelined requests sent in one segment are answered with one segment, and a lone request's
/// answer is one segment, sent at once.
#[tokio::test]
async fn sixteen_pipelined_requests_are_answered_in_one_segment() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut peer, accepted) = raw_peer_of(&server).await;
    let serving = tokio::spawn(serve_seed(accepted));
    read_exactly(&mut peer, "Please enter your name\n").await;
    assert_eq!(segments_in(&peer), 1, "segments for the greeting");
    peer.write_all(burst().as_bytes()).await.unwrap();
    read_exactly(&mut peer, &answers()).await;
    assert_eq!(segments_in(&peer), 2, "segments for 16 answers to a burst");
    peer.write_all(b"lone\n").await.unwrap();
    read_exactly(&mut peer, "Hello, lone!\n").await;
    assert_eq!(segments_in(&peer), 3, "segments for a lone answer");
    drop(peer);
    within(serving).await.unwrap();
}

/// The seed's server loop over TLS, with an auto-flushing write channel (as shipped), or one
/// flushed once the read channel holds no more input (the guide's way to a record per burst).
async fn greet_tls(socket: net_tls::TlsSocket, auto_flush: bool) {
    if auto_flush {
        return serve_seed(socket).await;
    }
    let mut socket = socket;
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(false).unwrap();
    output
        .write_string_utf8("Please enter your name\n")
        .await
        .unwrap();
    output.flush().await.unwrap();
    while let Ok(Some(name)) = input.read_line(1024, LineEnding::Default).await {
        output
            .write_string_utf8(&format!("Hello, {name}!\n"))
            .await
            .unwrap();
        if input.available_for_read() == 0 {
            output.flush().await.unwrap();
        }
    }
}

/// Sends a TLS burst of 16 requests to the seed's server; returns the segments and bytes its
/// answers took.
async fn tls_burst(auto_flush: bool) -> (u32, u64) {
    use net_tls::TlsExt;
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let server = tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let serving = tokio::spawn(async move {
        let socket = server.accept().await.unwrap();
        greet_tls(socket.tls_server(&server_config).await.unwrap(), auto_flush).await;
    });
    let client = a_socket(&selector)
        .tcp()
        .connect(("localhost", port))
        .await
        .unwrap();
    let mut tls = within(client.tls(pki.client_config().build().unwrap()))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(false).unwrap();
    let greeting = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(greeting.as_deref(), Some("Please enter your name"));
    // A lone request first: what the server sent after its handshake (session tickets) has
    // arrived once its answer has.
    output.write_string_utf8("warm\n").await.unwrap();
    output.flush().await.unwrap();
    let warm = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(warm.as_deref(), Some("Hello, warm!"));
    let before = info_of(&tls);
    output.write_string_utf8(&burst()).await.unwrap();
    output.flush().await.unwrap();
    for i in 0..16 {
        let line = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line, Some(format!("Hello, n{i:02}!")));
    }
    let after = info_of(&tls);
    drop((tls, input, output));
    within(serving).await.unwrap();
    (
        after.tcpi_data_segs_in - before.tcpi_data_segs_in,
        after.tcpi_bytes_received - before.tcpi_bytes_received,
    )
}

/// Over TLS too, the 16 answers leave together, in one segment, and as one record: 214 bytes
/// for the 192 of text (TLS 1.3: a 5-byte header, the content type, a 16-byte tag), as the guide
/// says (§7), both auto-flushed (flush coalescing holds the plaintext back and seals it once)
/// and flushed once the read channel holds no more input. (Sealed at each flush, they were 16
/// records, 544 bytes, until the sixty-fourth pass.)
#[tokio::test]
async fn a_tls_burst_of_sixteen_is_answered_in_one_segment() {
    assert_eq!(
        tls_burst(true).await,
        (1, 192 + 22),
        "segments and bytes of 16 answers to a TLS burst, auto-flushed"
    );
    assert_eq!(
        tls_burst(false).await,
        (1, 192 + 22),
        "segments and bytes of 16 answers to a TLS burst, flushed once the input is read"
    );
}

/// Request and answer in turn (the peer then acknowledges late, as a peer in an interactive
/// exchange does), then two answers to one request: each write of an auto-flushing channel is
/// sent before it returns, the second with the first unacknowledged, on an accepted socket and
/// on a connected one (`no_delay` on by default; with `no_delay(false)` the second write's
/// bytes stay unsent until the peer's acknowledgement).
#[tokio::test]
async fn each_auto_flushed_write_is_sent_before_it_returns() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (peer, accepted) = raw_peer_of(&server).await;
    answers_leave_at_once("accepted", peer, accepted).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (connected, peer) = within(async {
        tokio::join!(
            a_socket(&selector).tcp().connect(address),
            listener.accept()
        )
    })
    .await;
    answers_leave_at_once("connected", peer.unwrap().0, connected.unwrap()).await;
}

async fn answers_leave_at_once(which: &str, mut peer: TcpStream, mut socket: Socket) {
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    for round in 0..6 {
        peer.write_all(b"q\n").await.unwrap();
        let request = within(input.read_line(16, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(request.as_deref(), Some("q"));
        for part in ["first", "second"] {
            let before = info_of(&socket);
            output
                .write_string_utf8(&format!("{part} {round}\n"))
                .await
                .unwrap();
            let after = info_of(&socket);
            assert_eq!(
                after.tcpi_notsent_bytes, 0,
                "{which}: round {round}: the {part} answer's bytes were not sent as its write returned"
            );
            // A retransmission meanwhile (the kernel's loss probe for the first answer, still
            // unacknowledged, when this thread stalls some 200 ms in the write on a loaded
            // host) is no segment of this answer's.
            let sent = after.tcpi_data_segs_out - before.tcpi_data_segs_out;
            let resent = after.tcpi_total_retrans - before.tcpi_total_retrans;
            assert_eq!(
                sent - resent,
                1,
                "{which}: round {round}: segments for the {part} answer ({sent} sent, {resent} of them again)"
            );
        }
        read_exactly(&mut peer, &format!("first {round}\nsecond {round}\n")).await;
    }
}

/// Answers each line with itself, after a write of nothing, a write of an empty string and a
/// flush with nothing to send.
async fn echo_after_nothing<T: Transport>(mut socket: Socket<T>) {
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    while let Ok(Some(line)) = input.read_line(64, LineEnding::Default).await {
        output.write_fully(&[]).await.unwrap();
        output.write_string_utf8("").await.unwrap();
        output.flush().await.unwrap();
        output
            .write_string_utf8(&format!("{line}\n"))
            .await
            .unwrap();
    }
}

/// Writes of nothing and a flush with nothing to send put nothing on the wire: each answer
/// after them comes as one segment of its own bytes only, plain, and over TLS as one record
/// (no empty record before it: 5 bytes of header, the content type and a 16-byte tag).
#[tokio::test]
async fn writes_and_flushes_of_nothing_send_nothing() {
    use net_tls::TlsExt;
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut peer, accepted) = raw_peer_of(&server).await;
    let serving = tokio::spawn(echo_after_nothing(accepted));
    for i in 0..4 {
        let before = tcp_info(peer.as_raw_fd()).unwrap();
        peer.write_all(format!("r{i}\n").as_bytes()).await.unwrap();
        read_exactly(&mut peer, &format!("r{i}\n")).await;
        let after = tcp_info(peer.as_raw_fd()).unwrap();
        let segments = after.tcpi_data_segs_in - before.tcpi_data_segs_in;
        let bytes = after.tcpi_bytes_received - before.tcpi_bytes_received;
        assert_eq!(
            (segments, bytes),
            (1, 3),
            "plain: segments and bytes of answer {i}"
        );
    }
    drop(peer);
    within(serving).await.unwrap();

    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let port = server.port().unwrap();
    let serving = tokio::spawn(async move {
        let socket = server.accept().await.unwrap();
        echo_after_nothing(socket.tls_server(&server_config).await.unwrap()).await;
    });
    let client = a_socket(&selector)
        .tcp()
        .connect(("localhost", port))
        .await
        .unwrap();
    let mut tls = within(client.tls(pki.client_config().build().unwrap()))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    // What the server sent after its handshake (session tickets) has arrived once the first
    // answer has.
    output.write_string_utf8("warm\n").await.unwrap();
    let warm = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(warm.as_deref(), Some("warm"));
    for i in 0..4 {
        let before = info_of(&tls);
        output.write_string_utf8(&format!("r{i}\n")).await.unwrap();
        let line = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line, Some(format!("r{i}")));
        let after = info_of(&tls);
        let segments = after.tcpi_data_segs_in - before.tcpi_data_segs_in;
        let bytes = after.tcpi_bytes_received - before.tcpi_bytes_received;
        assert_eq!(
            (segments, bytes),
            (1, 5 + 3 + 1 + 16),
            "TLS: segments and bytes of answer {i}"
        );
    }
    drop((tls, input, output));
    within(serving).await.unwrap();
}
