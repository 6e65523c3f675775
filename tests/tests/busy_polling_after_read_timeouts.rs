//! Busy polling (`SelectorManager::with_busy_poll`) and `socket_timeout` together: a read that
//! times out received nothing, so the next read that waits is no new cue for the poller.
//! `with_busy_poll`'s docs say that a read begins waiting (the cue) only when its socket
//! received or sent something since a read last waited, "so a socket that stays idle costs
//! nothing once `window` passed, however often its task polls it". A server that reads again
//! after each `Timeout` (a timeout is not final on a read: SPEC §4.1), to send a keepalive or
//! check a flag, kept a worker polling its idle connection for as long as it did.

use std::time::{Duration, Instant};

use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener_with;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// CPU time (user + system) this process has used so far.
#[allow(unsafe_code)]
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// An idle connection read again after every `socket_timeout` (20 ms) for 1.5 s, under a
/// 100 ms busy-polling window, through the read channel and through `into_stream`: the poller
/// runs for the window after the first read waits, then no more, so the loop costs far less
/// than the 1.5 s of CPU a poller running throughout takes (each timeout, counted as input,
/// made the next read a cue, 15 per window). The reads still work: the peer's byte, sent
/// after, is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_retried_after_socket_timeouts_on_an_idle_connection_do_not_keep_busy_polling() {
    const TIMEOUT: Duration = Duration::from_millis(20);
    const LOOP: Duration = Duration::from_millis(1500);
    let selector = SelectorManager::with_busy_poll(Duration::from_millis(100));
    let listener = tcp_listener_with(&selector, |b| b.socket_timeout(TIMEOUT)).await;
    for stream in [false, true] {
        let (mut peer, mut socket) = raw_peer_of(&listener).await;
        let mut input = (!stream).then(|| socket.open_read_channel().unwrap());
        let mut stream = stream.then(|| socket.into_stream().unwrap());
        let mut byte = [0u8; 1];
        let before = cpu_time();
        let start = Instant::now();
        let mut timeouts = 0;
        while start.elapsed() < LOOP {
            let e = match (&mut input, &mut stream) {
                (Some(input), _) => {
                    let e = within(input.read_available(&mut byte)).await.unwrap_err();
                    std::io::Error::from(e)
                }
                (_, Some(stream)) => within(stream.read(&mut byte)).await.unwrap_err(),
                _ => unreachable!(),
            };
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e:?}");
            timeouts += 1;
        }
        let spent = cpu_time() - before;
        let case = if stream.is_some() {
            "stream"
        } else {
            "channel"
        };
        assert!(timeouts >= 10, "{case}: {timeouts} timeouts");
        assert!(
            spent < Duration::from_millis(600),
            "{case}: {spent:?} of CPU over {LOOP:?} of reads timing out on an idle connection \
             ({timeouts} timeouts): busy polling ran throughout"
        );
        peer.write_all(b"!").await.unwrap();
        let n = match (&mut input, &mut stream) {
            (Some(input), _) => within(input.read_available(&mut byte)).await.unwrap(),
            (_, Some(stream)) => within(stream.read(&mut byte)).await.unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(&byte[..n], b"!", "{case}");
    }
    selector.close();
}
