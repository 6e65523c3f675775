//! Flush coalescing over TLS holds the answers' plaintext back while the reader has requests
//! still to read, and seals it as one record (SPEC §4.4; `wire_segments` counts the 16
//! answers' bytes). Held plaintext is nobody's to lose: these check that it leaves, whole, in
//! order and before `close_notify`, on every way a connection goes on or ends with some held:
//! the reader dropped, the socket's close, the write side's shutdown, a writer in a task of
//! its own, and answers larger than one record.

use std::os::fd::AsRawFd as _;

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::Pki;
use net_tests::probe::tcp_info;
use net_tests::tls::pair_of;
use net_tests::within;
use net_tls::TlsSocket;

/// Both ends of a TLS connection over loopback, and their channels (auto-flushed writers).
struct Ends {
    server: TlsSocket,
    client: TlsSocket,
    server_in: ByteReadChannel,
    server_out: ByteWriteChannel,
    client_in: ByteReadChannel,
    client_out: ByteWriteChannel,
    _selector: SelectorManager,
}

impl Ends {
    async fn connect() -> Ends {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (mut server, mut client) = pair_of(&selector, &listener, &Pki::generate()).await;
        Ends {
            server_in: server.open_read_channel().unwrap(),
            server_out: server.open_write_channel(true).unwrap(),
            client_in: client.open_read_channel().unwrap(),
            client_out: client.open_write_channel(true).unwrap(),
            server,
            client,
            _selector: selector,
        }
    }
}

impl Ends {
    /// The client sends two requests at once; the server reads the first and answers it,
    /// the second still to read: the answer is held.
    async fn hold_one_answer(&mut self) {
        self.client_out.write_string_utf8("a\nb\n").await.unwrap();
        assert_eq!(line(&mut self.server_in).await, "a");
        self.server_out.write_string_utf8("A\n").await.unwrap();
    }

    /// The client reads the held answer, then a clean end (the server's `close_notify`).
    async fn answer_then_clean_end(&mut self) {
        assert_eq!(line(&mut self.client_in).await, "A");
        let end = within(self.client_in.read_line(64, LineEnding::Default))
            .await
            .expect("a clean end after the held answer");
        assert_eq!(end, None);
    }
}

/// Reads one line, which must come.
async fn line(input: &mut ByteReadChannel) -> String {
    within(input.read_line(64 * 1024, LineEnding::Default))
        .await
        .expect("a line")
        .expect("not the end")
}

/// The answers written while the reader still had a request to read are held; the reader is
/// then dropped: they leave, as one record, and the peer reads them.
#[tokio::test]
async fn answers_held_for_a_reader_that_is_dropped_leave() {
    let mut e = Ends::connect().await;

    e.client_out.write_string_utf8("a\nb\nc\n").await.unwrap();
    assert_eq!(line(&mut e.server_in).await, "a");
    assert!(e.server_in.available_for_read() > 0, "b and c came with a");
    e.server_out.write_string_utf8("A\n").await.unwrap();
    assert_eq!(line(&mut e.server_in).await, "b");
    e.server_out.write_string_utf8("B\n").await.unwrap();
    let before = e.client.with_sock_ref(|s| tcp_info(s.as_raw_fd())).unwrap();
    drop(e.server_in);
    assert_eq!(line(&mut e.client_in).await, "A");
    assert_eq!(line(&mut e.client_in).await, "B");
    let after = e.client.with_sock_ref(|s| tcp_info(s.as_raw_fd())).unwrap();
    assert_eq!(
        after.tcpi_bytes_received - before.tcpi_bytes_received,
        4 + 22,
        "bytes of the two held answers: one TLS 1.3 record"
    );
    // The writer goes on, answers leaving at once.
    e.server_out.write_string_utf8("later\n").await.unwrap();
    assert_eq!(line(&mut e.client_in).await, "later");
}

/// The socket's close with answers held: they come before its `close_notify`, so the peer
/// reads them and then a clean end (not a truncation).
#[tokio::test]
async fn a_close_sends_the_held_answers_before_close_notify() {
    let mut e = Ends::connect().await;

    e.hold_one_answer().await;
    e.server.close();
    e.answer_then_clean_end().await;
}

/// The write side's shutdown (`flush_and_close`) with answers held: they come before its
/// `close_notify`, and the reader reads on.
#[tokio::test]
async fn a_shutdown_sends_the_held_answers_before_close_notify() {
    let mut e = Ends::connect().await;

    e.hold_one_answer().await;
    within(e.server_out.flush_and_close()).await.unwrap();
    e.answer_then_clean_end().await;
    assert_eq!(line(&mut e.server_in).await, "b");
}

/// A writer in a task of its own, fed by the reader's task: bursts of requests get every
/// answer, whatever the reader's state when each is written (held, or not).
#[tokio::test]
async fn a_writer_in_a_task_of_its_own_gets_every_answer_out() {
    let mut e = Ends::connect().await;

    let (mut server_in, mut server_out) = (e.server_in, e.server_out);
    let (names, mut to_answer) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(name)) = server_in.read_line(64, LineEnding::Default).await {
            if names.send(name).is_err() {
                break;
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(name) = to_answer.recv().await {
            server_out
                .write_string_utf8(&format!("Hello, {name}!\n"))
                .await
                .unwrap();
        }
    });
    for burst in 0..20 {
        let requests: String = (0..16).map(|i| format!("n{burst}-{i}\n")).collect();
        e.client_out.write_string_utf8(&requests).await.unwrap();
        for i in 0..16 {
            assert_eq!(
                line(&mut e.client_in).await,
                format!("Hello, n{burst}-{i}!")
            );
        }
    }
    drop((e.client_in, e.client_out, e.client));
    within(reader).await.unwrap();
    within(writer).await.unwrap();
    drop(e.server);
}

/// Answers that together pass what one record carries (16 KiB): whole and in order.
#[tokio::test]
async fn answers_past_one_record_arrive_whole_and_in_order() {
    let mut e = Ends::connect().await;

    let answer = |i: usize| format!("{i}:{}", "x".repeat(5_000 + i));
    let (mut server_in, mut server_out) = (e.server_in, e.server_out);
    let serving = tokio::spawn(async move {
        let mut i = 0;
        while let Ok(Some(_)) = server_in.read_line(64, LineEnding::Default).await {
            server_out
                .write_string_utf8(&format!("{}\n", answer(i)))
                .await
                .unwrap();
            i += 1;
        }
    });
    let requests: String = (0..12).map(|i| format!("r{i}\n")).collect();
    e.client_out.write_string_utf8(&requests).await.unwrap();
    for i in 0..12 {
        assert_eq!(line(&mut e.client_in).await, answer(i));
    }
    drop((e.client_in, e.client_out, e.client));
    within(serving).await.unwrap();
    drop(e.server);
}
