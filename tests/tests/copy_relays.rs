//! `copy_to` between sockets: it flushes its destination only when its source
//! makes it wait. A relay between sockets (plain and TLS destinations, both write modes), an
//! echo server that copies its own input to its own output, `copy_and_close`, and a source
//! with a `socket_timeout` never leave bytes behind an unflushed destination.

use std::time::Duration;

use net_io::{ByteReadChannel, ByteWriteChannel};
use net_sockets::SelectorManager;
use net_tests::loopback::{connected_pair, tcp_listener, tcp_listener_with};
use net_tests::pki::Pki;
use net_tests::tls::pair_of;
use net_tests::{payload, within};

/// How long a relayed message may take to reach the far peer (a hang bound, not a timing
/// assertion: without a flush it never arrives).
const ARRIVE: Duration = Duration::from_secs(10);

async fn read_exact(input: &mut ByteReadChannel, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    tokio::time::timeout(ARRIVE, input.read_fully(&mut got))
        .await
        .unwrap_or_else(|_| panic!("{n} bytes relayed did not arrive: stalled behind the relay"))
        .unwrap();
    got
}

/// The channels of a connection's two ends, plain or TLS: the near end's output in
/// `auto_flush` mode, the far end's auto-flushed; and what keeps both sockets open.
struct Ends {
    near_in: ByteReadChannel,
    near_out: ByteWriteChannel,
    far_in: ByteReadChannel,
    far_out: ByteWriteChannel,
    keep: Box<dyn Send>,
}

async fn ends(
    selector: &SelectorManager,
    listener: &net_sockets::ServerSocket,
    pki: &Pki,
    tls: bool,
    auto_flush: bool,
) -> Ends {
    if tls {
        let (mut near, mut far) = pair_of(selector, listener, pki).await;
        Ends {
            near_in: near.open_read_channel().unwrap(),
            near_out: near.open_write_channel(auto_flush).unwrap(),
            far_in: far.open_read_channel().unwrap(),
            far_out: far.open_write_channel(true).unwrap(),
            keep: Box::new((near, far)),
        }
    } else {
        let (mut near, mut far) = connected_pair(selector, listener).await;
        Ends {
            near_in: near.open_read_channel().unwrap(),
            near_out: near.open_write_channel(auto_flush).unwrap(),
            far_in: far.open_read_channel().unwrap(),
            far_out: far.open_write_channel(true).unwrap(),
            keep: Box::new((near, far)),
        }
    }
}

/// A relay `copy_to` from one socket to another (plain or TLS), in both write modes: every
/// message reaches the far peer while the source stays open and silent (the copy waits for
/// it), also a large one that the far peer starts to read late (TLS records queued in the
/// session when the socket was full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_between_sockets_never_stalls_behind_its_destination() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    for tls in [false, true] {
        for auto_flush in [false, true] {
            let (mut src_peer, mut src) = connected_pair(&selector, &listener).await;
            let mut to_src = src_peer.open_write_channel(true).unwrap();
            let mut input = src.open_read_channel().unwrap();
            let Ends {
                near_out: output,
                far_in: mut far_input,
                keep,
                ..
            } = ends(&selector, &listener, &pki, tls, auto_flush).await;
            let relay = tokio::spawn(async move {
                let mut output = output;
                let copied = input.copy_to(&mut output, u64::MAX).await;
                (copied, output, input)
            });
            let mut total = 0u64;
            for (i, size) in [1usize, 100, 3000, 20_000, 3 << 20, 2, 70_000]
                .into_iter()
                .enumerate()
            {
                let data = payload(size + i);
                let data = &data[i..];
                within(to_src.write_fully(data)).await.unwrap();
                if size > 1 << 20 {
                    // Let the far socket fill up before its peer reads.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let got = read_exact(&mut far_input, size).await;
                assert!(
                    got == data,
                    "tls {tls}, auto_flush {auto_flush}, message {i}: relayed bytes differ"
                );
                total += size as u64;
            }
            within(to_src.flush_and_close()).await.unwrap();
            let (copied, mut output, _input) = within(relay).await.unwrap();
            assert_eq!(copied.unwrap(), total);
            within(output.flush_and_close()).await.unwrap();
            drop(keep);
        }
    }
}

/// `copy_and_close` as a relay: every byte, then a clean end, at the far peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_close_relays_everything_then_a_clean_end() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    for tls in [false, true] {
        let (mut src_peer, mut src) = connected_pair(&selector, &listener).await;
        let mut to_src = src_peer.open_write_channel(false).unwrap();
        let mut input = src.open_read_channel().unwrap();
        let Ends {
            near_out: output,
            far_in: mut far_input,
            keep,
            ..
        } = ends(&selector, &listener, &pki, tls, false).await;
        let relay = tokio::spawn(async move {
            let mut output = output;
            input.copy_and_close(&mut output, u64::MAX).await
        });
        let data = payload(1 << 20);
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(10_000) {
                to_src.write_fully(chunk).await.unwrap();
            }
            to_src.flush_and_close().await.unwrap();
            drop(src_peer);
        });
        let got = within(far_input.read_remaining(usize::MAX)).await.unwrap();
        assert!(got[..] == payload(1 << 20)[..], "tls {tls}");
        within(writer).await.unwrap();
        assert_eq!(within(relay).await.unwrap().unwrap(), 1 << 20);
        drop(keep);
    }
}

/// A server that echoes with `copy_to` from its own input to its own output (plain: the shared
/// backlog holds its answers while input is pending; TLS), in both write modes: each message
/// comes back before the next is sent (interactive), and a burst of pipelined ones comes back
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_server_that_copies_answers_every_message() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    for tls in [false, true] {
        for auto_flush in [false, true] {
            let Ends {
                near_in,
                near_out,
                far_in: mut from_server,
                far_out: mut to_server,
                keep,
            } = ends(&selector, &listener, &pki, tls, auto_flush).await;
            let server_io = (near_in, near_out);
            let echo = tokio::spawn(async move {
                let (mut input, mut output) = server_io;
                let copied = input.copy_to(&mut output, u64::MAX).await;
                let _ = output.flush_and_close().await;
                copied
            });
            let mut total = 0;
            for i in 0..200usize {
                let data = payload(1 + (i * 977) % 5000);
                within(to_server.write_fully(&data)).await.unwrap();
                let got = read_exact(&mut from_server, data.len()).await;
                assert!(
                    got == data,
                    "tls {tls}, auto_flush {auto_flush}, message {i}"
                );
                total += data.len();
            }
            // Pipelined: a burst, then nothing more until all came back.
            let burst: Vec<u8> = (0..50).flat_map(|i| payload(100 + i)).collect();
            for chunk in burst.chunks(333) {
                within(to_server.write_fully(chunk)).await.unwrap();
            }
            let got = read_exact(&mut from_server, burst.len()).await;
            assert!(got == burst);
            total += burst.len();
            within(to_server.flush_and_close()).await.unwrap();
            assert_eq!(within(echo).await.unwrap().unwrap(), total as u64);
            drop(keep);
        }
    }
}

/// A source with a `socket_timeout`, whose peer sends with pauses shorter than it, relayed by
/// `copy_to` to a plain and a TLS destination: the copy never times out, and every message
/// arrives while the source is silent.
///
/// The pauses are an eighth of the timeout, and the messages go on for twice the timeout: the
/// rest of the timeout is for the peer's own work between messages (making the next, reading
/// the last at the far end), which a loaded machine runs late. (With a 400 ms timeout and
/// pauses of a quarter of it, a starved peer's pause set the timeout off: the copy failed, and
/// the next message did not arrive.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_a_socket_timeout_that_keeps_sending_never_times_out() {
    let selector = SelectorManager::new();
    let timeout = Duration::from_secs(2);
    let timed = tcp_listener_with(&selector, |b| b.socket_timeout(timeout)).await;
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    for tls in [false, true] {
        let (mut src_peer, mut src) = connected_pair(&selector, &timed).await;
        let mut to_src = src_peer.open_write_channel(true).unwrap();
        let mut input = src.open_read_channel().unwrap();
        let Ends {
            near_out: output,
            far_in: mut far_input,
            keep,
            ..
        } = ends(&selector, &listener, &pki, tls, false).await;
        let relay = tokio::spawn(async move {
            let mut output = output;
            input.copy_to(&mut output, u64::MAX).await
        });
        let mut total = 0u64;
        for i in 0..16usize {
            let data = payload(100_000 + i);
            within(to_src.write_fully(&data)).await.unwrap();
            let got = read_exact(&mut far_input, data.len()).await;
            assert!(got == data);
            total += data.len() as u64;
            tokio::time::sleep(timeout / 8).await;
        }
        within(to_src.flush_and_close()).await.unwrap();
        assert_eq!(within(relay).await.unwrap().unwrap(), total, "tls {tls}");
        drop((keep, src_peer));
    }
}

/// A relay whose destination makes its flush wait (a slow peer, bytes the caller buffered
/// before the copy) while its source, which has a `socket_timeout`, is silent: once the flush
/// is over, the source has its whole `socket_timeout` to send. A first version of the change
/// that spared a copy from a ready source its flushes (5408f43) polled the source before it
/// flushed bytes the caller had buffered, which started the source's timer: a flush longer
/// than the timeout made the copy fail with the source's `Timeout` as soon as the flush ended
/// (indistinguishable from the destination's own), although the source sent a fifth of the
/// timeout later. Now what `dst` buffered is written out before the source is polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_timeout_does_not_count_the_time_the_copy_spent_flushing_its_destination() {
    use tokio::io::AsyncReadExt;
    let selector = SelectorManager::new();
    let timeout = Duration::from_millis(500);
    let timed = tcp_listener_with(&selector, |b| b.socket_timeout(timeout)).await;
    let (mut src_peer, mut src) = connected_pair(&selector, &timed).await;
    let mut to_src = src_peer.open_write_channel(true).unwrap();
    let mut input = src.open_read_channel().unwrap();
    // The destination: a transport that takes 64 bytes until its peer reads.
    let (near, mut far) = tokio::io::duplex(64);
    let mut output = ByteWriteChannel::new(near, false);
    // Buffered: the copy's flush must write it, and the peer that reads nothing makes it wait.
    let head = payload(4000);
    within(output.write_fully(&head)).await.unwrap();
    let relay = tokio::spawn(async move {
        let copied = input.copy_to(&mut output, 5).await;
        (copied, output, input)
    });
    // The copy waits in its flush meanwhile.
    tokio::time::sleep(2 * timeout).await;
    assert!(!relay.is_finished());
    // The far peer reads what the copy flushed; the source sends as soon as it is all there.
    let mut got = vec![0; head.len()];
    within(far.read_exact(&mut got)).await.unwrap();
    assert!(got == head);
    // A fifth of the timeout after the flush ended (so that the copy is back at its source
    // whichever thread runs first): well within the timeout, counted from then.
    tokio::time::sleep(timeout / 5).await;
    within(to_src.write_fully(b"hello")).await.unwrap();
    let (copied, _output, _input) = within(relay).await.unwrap();
    assert!(
        matches!(copied, Ok(5)),
        "the source sent right after the flush ended, but the copy returned {copied:?}"
    );
    let mut hello = [0; 5];
    within(far.read_exact(&mut hello)).await.unwrap();
    assert_eq!(&hello, b"hello");
    drop(src_peer);
}
