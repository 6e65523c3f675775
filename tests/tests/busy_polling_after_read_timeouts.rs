//! Busy polling (`SelectorManager::with_busy_poll`) and `socket_timeout` together: a read that
//! times out received nothing, so the next read that waits is no new cue for the poller.
//! `with_busy_poll`'s docs say that a read begins waiting (the cue) only when its socket
//! received or sent something since a read last waited, "so a socket that stays idle costs
//! nothing once `window` passed, however often its task polls it". A server that reads again
//! after each `Timeout` (a timeout is not final on a read: SPEC §4.1), to send a keepalive or
//! check a flag, kept a worker polling its idle connection for as long as it did.

use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, ServerSocket};
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener_with;
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tests::within;
use net_tls::{TlsExt, TlsServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

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

const TIMEOUT: Duration = Duration::from_millis(20);
const LOOP: Duration = Duration::from_millis(1500);

/// The most CPU time the reads of [`LOOP`] may take: the poller's 100 ms window, and the
/// reads. (It ran throughout before: 1.24 s of the 1.5 s.)
const MOST: Duration = Duration::from_millis(600);

/// Reads `input` again after every timeout for [`LOOP`]; the CPU time that took.
async fn idle_reads(input: &mut (impl AsyncRead + Unpin), case: &str) -> Duration {
    let mut byte = [0u8; 1];
    let before = cpu_time();
    let start = Instant::now();
    let mut timeouts = 0;
    while start.elapsed() < LOOP {
        let e = within(input.read(&mut byte)).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{case}: {e:?}");
        timeouts += 1;
    }
    let spent = cpu_time() - before;
    assert!(timeouts >= 10, "{case}: {timeouts} timeouts");
    assert!(
        spent < MOST,
        "{case}: {spent:?} of CPU over {LOOP:?} of reads timing out on an idle connection \
         ({timeouts} timeouts): busy polling ran throughout"
    );
    spent
}

/// Our server's `TlsStream`, accepted by `listener` with `config`, and a tokio-rustls client
/// trusting `ca`, past the handshake. The listener's 20 ms `socket_timeout` bounds the server
/// handshake's reads too, which wait for the client in this process: a loaded machine that runs
/// the client late makes the handshake fail with `Timeout` ("the server handshake:
/// Socket(Timeout)"), so a handshake that times out is tried again on a new connection (bounded
/// by the hang limit). The handshake is no part of what this file asserts.
async fn tls_pair(
    listener: &ServerSocket,
    config: &TlsServerConfig,
    ca: &TestCa,
) -> (
    net_tls::TlsStream,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let port = listener.port().unwrap();
    let connector = TlsConnector::from(rustls_client(ca));
    within(async {
        loop {
            let (server, client) = tokio::join!(
                async { listener.accept().await.unwrap().tls_server(config).await },
                async {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    connector.connect(localhost(), tcp).await
                }
            );
            match server {
                Ok(server) => return (server.into_stream().unwrap(), client.unwrap()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) => panic!("the server handshake: {e:?}"),
            }
        }
    })
    .await
}

/// An idle connection read again after every `socket_timeout` (20 ms) for 1.5 s, under a
/// 100 ms busy-polling window, through the read channel (its `AsyncRead`), through
/// `into_stream`, and over TLS (a `TlsStream`): the poller runs for the window after the first
/// read waits, then no more, so the loop costs far less than the 1.5 s of CPU a poller running
/// throughout takes (each timeout, counted as input, made the next read a cue, 15 per window).
/// The reads still work: the peer's byte, sent after, is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_retried_after_socket_timeouts_on_an_idle_connection_do_not_keep_busy_polling() {
    let selector = SelectorManager::with_busy_poll(Duration::from_millis(100));
    let listener = tcp_listener_with(&selector, |b| b.socket_timeout(TIMEOUT)).await;
    let mut byte = [0u8; 1];

    let (mut peer, mut socket) = raw_peer_of(&listener).await;
    let mut input = socket.open_read_channel().unwrap();
    idle_reads(&mut input, "channel").await;
    peer.write_all(b"!").await.unwrap();
    let n = within(input.read(&mut byte)).await.unwrap();
    assert_eq!(&byte[..n], b"!", "channel");

    let (mut peer, socket) = raw_peer_of(&listener).await;
    let mut stream = socket.into_stream().unwrap();
    idle_reads(&mut stream, "stream").await;
    peer.write_all(b"!").await.unwrap();
    let n = within(stream.read(&mut byte)).await.unwrap();
    assert_eq!(&byte[..n], b"!", "stream");

    let ca = TestCa::new("busy polling ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (mut tls, mut peer) = tls_pair(&listener, &config, &ca).await;
    idle_reads(&mut tls, "tls").await;
    peer.write_all(b"!").await.unwrap();
    peer.flush().await.unwrap();
    let n = within(tls.read(&mut byte)).await.unwrap();
    assert_eq!(&byte[..n], b"!", "tls");
    selector.close();
}
