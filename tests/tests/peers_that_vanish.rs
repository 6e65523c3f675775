//! Peers that vanish: a phone or a laptop that drops off the network sends no FIN and no reset,
//! and from then on nothing of it arrives; the connection stays open on our side. Each test
//! runs in a network namespace of its own (skipped, saying why, where one cannot be made, or
//! where its loopback cannot be given the filter below) in which every packet from or to
//! [`VANISHING`] (`127.0.0.2`) is dropped once the peer there vanishes: a `tc` filter on the
//! loopback's ingress queue redirects each such packet to a veth interface that is down, where
//! it is thrown away, so that neither end ever receives anything from the other again, without
//! an ICMP error or a local routing error (the kernel's `sch_netem` is not needed). The kernel
//! then ends a connection only by its own timers: keep-alive, or its retransmissions' (some
//! 15 minutes, `net.ipv4.tcp_retries2`).
//!
//! Covered, over plain TCP and TLS, on the client's side and on the server's: keep-alive ends a
//! waiting read with the OS's `ETIMEDOUT` (and the write after it with `EPIPE`), and the
//! socket's descriptor is released after the drop; keep-alive does nothing while data sent
//! before is unacknowledged (`socket_timeout` then bounds the read, and so does
//! `TCP_USER_TIMEOUT`, the builder's `tcp_user_timeout`); `socket_timeout` ends reads and writes;
//! `close_gracefully`, `linger` and a listener's shutdown are bounded by their own times; a
//! PROXY header and a TLS handshake that the peer left half-way end at their timeouts; and a
//! connection to a peer that stays (`127.0.0.1`) on the same selector works all the while.

use std::io::ErrorKind;
use std::process::Command;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{
    Connection, ProxyProtocol, SelectorManager, ServerSocket, Socket, TcpSocketBuilder, Transport,
    a_socket,
};
use net_tests::harness::{rerun_self_in_own_netns, run_if_child, status};
use net_tests::pki::Pki;
use net_tests::probe::fd_count;
use net_tests::within;
use net_tls::{TlsExt as _, TlsSocket};
use tokio::io::AsyncWriteExt as _;

/// The address of the peer that vanishes: every packet from or to it is dropped by [`vanish`].
const VANISHING: &str = "127.0.0.2";

/// The address of everything that stays.
const STAYING: &str = "127.0.0.1";

/// The keep-alive of the ends that notice: the first probe after 1 s of silence, one more
/// 1 s after it, and the connection dropped when that one is unanswered, some 2 s after the
/// peer vanished.
fn keep_alive(builder: TcpSocketBuilder) -> TcpSocketBuilder {
    builder
        .keep_alive_idle(Duration::from_secs(1))
        .keep_alive_interval(Duration::from_secs(1))
        .keep_alive_count(1)
}

/// A generous bound on the end that [`keep_alive`] promises in some 2 s (idle + interval ×
/// count): a failure says only that it never came, never that it was slow.
const KEEP_ALIVE_BOUND: Duration = Duration::from_secs(15);

/// The `socket_timeout` of the tests of timeouts.
const SOCKET_TIMEOUT: Duration = Duration::from_millis(300);

const U32_DROP: &str = "u32 match ip {dir} 127.0.0.2/32 action mirred egress redirect dev vanish0";

/// Whether a network namespace can be made here with the filter [`vanish`] adds: says why not
/// on stderr when it cannot.
fn can_vanish(name: &str) -> bool {
    let script = format!(
        "ip link add vanish0 type veth peer name vanish1 && tc qdisc add dev lo ingress \
         && tc filter add dev lo parent ffff: protocol ip prio 1 {}",
        U32_DROP.replace("{dir}", "dst")
    );
    let made = net_tests::harness::unshare_netns().is_some_and(|netns| {
        status(
            Command::new("unshare")
                .args(netns)
                .args(["sh", "-c", &script])
                .env("PATH", net_tests::harness::path_with_sbin())
                .stderr(std::process::Stdio::null()),
        )
        .is_ok_and(|status| status.success())
    });
    if !made {
        net_tests::harness::skipped(&format!(
            "{name}: no network namespace with a veth pair and a tc u32 filter with a mirred \
             action on its loopback can be made here (needs root or unprivileged user \
             namespaces, unshare, ip, ss, tc)"
        ));
    }
    made
}

/// Runs `child` again in a network namespace of its own, unless [`can_vanish`] says no.
fn run_vanishing(name: &str, child: &str, env: &str, marker: &str) {
    if can_vanish(name) {
        rerun_self_in_own_netns(child, env, marker);
    }
}

/// Waits (bounded) until every TCP connection of the child's namespace has had all it sent
/// acknowledged (`ss`'s `Send-Q` of each is 0): the kernel sends no keep-alive probe while
/// anything is unacknowledged, and the last bytes of a handshake (TLS 1.3's session tickets,
/// sent as the server's handshake ends) or the kernel's delayed acknowledgement of them may
/// still be under way when a test's handshakes return.
async fn all_acknowledged() {
    let started = Instant::now();
    loop {
        let listed = net_tests::harness::output(Command::new("ss").args(["-tnH"])).expect("ss");
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let unacknowledged = listed
            .lines()
            .filter(|line| line.split_whitespace().nth(2) != Some("0"))
            .count();
        if unacknowledged == 0 {
            return;
        }
        assert!(
            started.elapsed() < net_tests::HANG_LIMIT,
            "bytes never acknowledged:\n{listed}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `tc` with `args` in the child's namespace.
fn tc(args: &str) {
    let done = status(Command::new("tc").args(args.split_whitespace()));
    assert!(done.is_ok_and(|s| s.success()), "tc {args}");
}

/// In the child: the down veth interface that [`vanish`]'s filter sends packets to, and the
/// loopback's ingress queue that the filter hangs on.
fn prepare() {
    let done = status(Command::new("ip").args([
        "link", "add", "vanish0", "type", "veth", "peer", "name", "vanish1",
    ]));
    assert!(done.is_ok_and(|s| s.success()), "ip link add vanish0");
    tc("qdisc add dev lo ingress");
}

/// In the child: from now on every packet from or to [`VANISHING`] is dropped as it arrives
/// at the loopback's ingress (redirected to `vanish0`, which is down: `tc`'s mirred action
/// drops what it cannot hand on). Nothing is told to either end.
fn vanish() {
    for (prio, dir) in [(1, "src"), (2, "dst")] {
        tc(&format!(
            "filter add dev lo parent ffff: protocol ip prio {prio} {}",
            U32_DROP.replace("{dir}", dir)
        ));
    }
}

/// A listener at `at` (port 0), set up by `options`.
async fn listener(
    selector: &SelectorManager,
    at: &str,
    options: impl FnOnce(TcpSocketBuilder) -> TcpSocketBuilder,
) -> ServerSocket {
    options(a_socket(selector).tcp())
        .bind((at, 0))
        .await
        .expect("bind")
}

/// A connection from `from` to `listener`, the client set up by `options`: (the accepted
/// socket, the connected one).
async fn pair(
    selector: &SelectorManager,
    listener: &ServerSocket,
    from: &str,
    options: impl FnOnce(TcpSocketBuilder) -> TcpSocketBuilder,
) -> (Socket, Socket) {
    let to = listener.local_address();
    let connect = options(a_socket(selector).tcp())
        .local_address(std::net::SocketAddr::new(from.parse().unwrap(), 0))
        .connect(to);
    let (accepted, connected) = within(async { tokio::join!(listener.accept(), connect) }).await;
    (accepted.expect("accept"), connected.expect("connect"))
}

/// [`pair`], then a TLS handshake over it with `pki`'s configurations (the client names
/// `localhost`, which the server's certificate carries, whatever address it connected to).
async fn tls_pair(
    selector: &SelectorManager,
    listener: &ServerSocket,
    from: &str,
    options: impl FnOnce(TcpSocketBuilder) -> TcpSocketBuilder,
    pki: &Pki,
) -> (TlsSocket, TlsSocket) {
    let (accepted, connected) = pair(selector, listener, from, options).await;
    let server_config = pki.server_config().build().unwrap();
    let client_config = pki
        .client_config()
        .server_name("localhost")
        .build()
        .unwrap();
    let (server, client) = within(async {
        tokio::join!(
            accepted.tls_server(&server_config),
            connected.tls(client_config)
        )
    })
    .await;
    (
        server.expect("the server handshake"),
        client.expect("the client handshake"),
    )
}

/// A line echo server at [`STAYING`] on `selector`; returns a connection to it from
/// [`STAYING`].
async fn staying_echo(selector: &SelectorManager) -> Connection {
    let echo = listener(selector, STAYING, |b| b).await;
    let (accepted, connected) = pair(selector, &echo, STAYING, |b| b).await;
    tokio::spawn(async move {
        let _echo = echo;
        let mut connection = accepted.connection().unwrap();
        while let Ok(Some(line)) = connection.input.read_line(1024, LineEnding::Default).await {
            let sent = connection
                .output
                .write_string_utf8(&format!("{line}\n"))
                .await;
            if sent.is_err() || connection.output.flush().await.is_err() {
                return;
            }
        }
    });
    connected.connection().unwrap()
}

/// Sends lines on `staying` and asserts that each comes back, every 50 ms until `until` ends
/// (at most 400 lines): the connection to a peer that stayed keeps working on the selector
/// whose other connections wait on vanished peers. Returns what `until` returned.
async fn keeps_echoing<R>(staying: &mut Connection, until: impl Future<Output = R>) -> R {
    let echoes = async {
        for n in 0..400 {
            let line = format!("still here {n}");
            staying
                .output
                .write_string_utf8(&format!("{line}\n"))
                .await
                .unwrap();
            staying.output.flush().await.unwrap();
            let back = within(staying.input.read_line(1024, LineEnding::Default)).await;
            assert_eq!(back.unwrap().as_deref(), Some(line.as_str()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::pin!(until);
    tokio::select! {
        result = &mut until => result,
        () = echoes => within(until).await,
    }
}

/// Waits (bounded) until this process holds `fds` descriptors.
async fn descriptors_back_to(fds: usize, what: &str) {
    let started = Instant::now();
    while fd_count() != fds {
        assert!(
            started.elapsed() < net_tests::HANG_LIMIT,
            "{what}: {} descriptors, not {fds}",
            fd_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `e` is the OS's `ETIMEDOUT`, as a channel reports it.
fn assert_os_timeout(e: &net_io::Error, what: &str) {
    assert!(
        matches!(e, net_io::Error::Io(io) if io.raw_os_error() == Some(libc::ETIMEDOUT)),
        "{what}: not the OS's ETIMEDOUT: {e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{what}");
}

/// On a connection whose peer vanished and whose keep-alive is on (or whose `TCP_USER_TIMEOUT`
/// passed, data sent to it unacknowledged): a read waiting for input fails with the OS's
/// `ETIMEDOUT` once the kernel gave up, and a write (with its flush) after it fails with the
/// error a plain socket's send then gets (`EPIPE`, as after a reset that a read reported).
/// Then drops the connection.
async fn the_kernel_ends<T: Transport>(mut connection: Connection<T>, what: &'static str) {
    let read = tokio::time::timeout(
        KEEP_ALIVE_BOUND,
        connection.input.read_line(1024, LineEnding::Default),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: the read still waits after {KEEP_ALIVE_BOUND:?}"));
    assert_os_timeout(&read.unwrap_err(), &format!("{what}: the read"));
    let write = async {
        connection.output.write_string_utf8("too late\n").await?;
        connection.output.flush().await
    };
    let e = within(write).await.unwrap_err();
    assert!(
        matches!(&e, net_io::Error::Io(io) if io.raw_os_error() == Some(libc::EPIPE)),
        "{what}: the write after the read's ETIMEDOUT: not a plain socket's EPIPE: {e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{what}");
}

/// Keep-alive (`keep_alive_idle`, `keep_alive_interval`, `keep_alive_count` on the builder)
/// bounds how long a connection to a vanished peer stays open, over TCP and TLS, on the
/// server's side (set on the listener) and on the client's: a read waiting on it fails, within
/// a generous bound of idle + interval × count, with `net_io::Error::Io` of kind `TimedOut`
/// (the OS's `ETIMEDOUT`), and a write after it with `EPIPE` (kind `BrokenPipe`, as after a
/// reset that a read reported); once dropped, each releases its
/// descriptor. Keep-alive does nothing while data sent before the peer vanished is
/// unacknowledged (the kernel sends no probe then, it retransmits): a read waiting after such
/// a write is ended by `socket_timeout` (`net_io::Error::Timeout`), not keep-alive's
/// `ETIMEDOUT`, though the timeout is twice keep-alive's time; the kernel's
/// `TCP_USER_TIMEOUT`, set by the builder's `tcp_user_timeout` on a listener (for the
/// connection it accepts) or on a client (then upgraded to TLS), ends such a read with
/// `ETIMEDOUT`, and the write after it with `EPIPE`; with keep-alive on too, it decides when
/// unanswered probes end an idle connection, in place of the count (tcp(7)): a count of 100,
/// which alone would hold it some 100 s, ends within the same bound. A connection to a peer that stayed, on the same
/// selector, echoes all the while.
#[test]
fn keep_alive_ends_the_waits_on_a_vanished_peer() {
    run_vanishing(
        "keep_alive_ends_the_waits_on_a_vanished_peer",
        "keep_alive_ends_the_waits_on_a_vanished_peer_child",
        "NET_TESTS_VANISH_KEEP_ALIVE",
        "keep-alive ended every wait",
    );
}

#[test]
fn keep_alive_ends_the_waits_on_a_vanished_peer_child() {
    run_if_child("NET_TESTS_VANISH_KEEP_ALIVE", async {
        prepare();
        let pki = Pki::generate();
        let selector = SelectorManager::new();
        let mut staying = staying_echo(&selector).await;
        // The server's side: a listener with keep-alive, its clients at VANISHING.
        let noticing = listener(&selector, STAYING, keep_alive).await;
        let (tcp_server, _gone_tcp_client) = pair(&selector, &noticing, VANISHING, |b| b).await;
        let (tls_server, _gone_tls_client) =
            tls_pair(&selector, &noticing, VANISHING, |b| b, &pki).await;
        // The client's side: clients with keep-alive, their server at VANISHING.
        let gone = listener(&selector, VANISHING, |b| b).await;
        let (_gone_tcp_server, tcp_client) = pair(&selector, &gone, STAYING, keep_alive).await;
        let (_gone_tls_server, tls_client) =
            tls_pair(&selector, &gone, STAYING, keep_alive, &pki).await;
        // A client that writes after the peer vanished: its data is never acknowledged.
        let (_gone_server, unacked) = pair(&selector, &gone, STAYING, |b| {
            keep_alive(b).socket_timeout(Duration::from_secs(4))
        })
        .await;
        let mut unacked = unacked.connection().unwrap();
        // The same with the kernel's TCP_USER_TIMEOUT, set by the builder: on a listener (for
        // the connections it accepts), and on a client (then upgraded to TLS).
        let user_timeout = Duration::from_secs(1);
        let bounded = listener(&selector, STAYING, |b| b.tcp_user_timeout(user_timeout)).await;
        let (bounded_server, _gone_client) = pair(&selector, &bounded, VANISHING, |b| b).await;
        let (gone_server, bounded_client) = pair(&selector, &gone, STAYING, |b| {
            b.tcp_user_timeout(user_timeout)
        })
        .await;
        let client_config = pki
            .client_config()
            .server_name("localhost")
            .build()
            .unwrap();
        let server_config = pki.server_config().build().unwrap();
        let (bounded_client, _gone_tls_server_2) = within(async {
            tokio::join!(
                bounded_client.tls(client_config),
                gone_server.tls_server(&server_config)
            )
        })
        .await;
        // Keep-alive whose count alone would hold the connection some 100 s, with the same
        // TCP_USER_TIMEOUT: the user timeout decides when unanswered probes end it (tcp(7)).
        let (_gone_server_3, overridden) = pair(&selector, &gone, STAYING, |b| {
            keep_alive(b)
                .keep_alive_count(100)
                .tcp_user_timeout(user_timeout)
        })
        .await;
        let mut bounded_server = bounded_server.connection().unwrap();
        let mut bounded_client = bounded_client.unwrap().connection().unwrap();
        let connections = [tcp_server, tcp_client].map(|s| s.connection().unwrap());
        let tls = [tls_server, tls_client].map(|s| s.connection().unwrap());
        let overridden = overridden.connection().unwrap();
        let fds = fd_count();
        all_acknowledged().await;
        vanish();
        unacked.output.write_string_utf8("hello?\n").await.unwrap();
        within(unacked.output.flush()).await.unwrap();
        for output in [&mut bounded_server.output, &mut bounded_client.output] {
            output.write_string_utf8("hello?\n").await.unwrap();
            within(output.flush()).await.unwrap();
        }
        let [tcp_server, tcp_client] = connections;
        let [tls_server, tls_client] = tls;
        let unacked_read = async {
            let read = tokio::time::timeout(
                KEEP_ALIVE_BOUND,
                unacked.input.read_line(1024, LineEnding::Default),
            )
            .await
            .expect("socket_timeout did not end the read");
            let e = read.unwrap_err();
            assert!(
                matches!(e, net_io::Error::Timeout),
                "not socket_timeout's end (keep-alive's?): {e:?}"
            );
            drop(unacked);
        };
        keeps_echoing(&mut staying, async {
            tokio::join!(
                the_kernel_ends(tcp_server, "TCP, the server's side"),
                the_kernel_ends(tcp_client, "TCP, the client's side"),
                the_kernel_ends(tls_server, "TLS, the server's side"),
                the_kernel_ends(tls_client, "TLS, the client's side"),
                unacked_read,
                the_kernel_ends(bounded_server, "TCP_USER_TIMEOUT, TCP, the server's side"),
                the_kernel_ends(bounded_client, "TCP_USER_TIMEOUT, TLS, the client's side"),
                the_kernel_ends(
                    overridden,
                    "keep-alive's count overridden by TCP_USER_TIMEOUT"
                ),
            )
        })
        .await;
        descriptors_back_to(fds - 8, "after the connections were dropped").await;
        println!("keep-alive ended every wait");
    });
}

/// Asserts that `e` is `socket_timeout`'s end: `net_io::Error::Timeout`.
fn assert_socket_timeout(e: &net_io::Error, what: &str) {
    assert!(
        matches!(e, net_io::Error::Timeout),
        "{what}: not socket_timeout's Timeout: {e:?}"
    );
}

/// On a connection with [`SOCKET_TIMEOUT`] and a small send buffer, whose peer vanished: a
/// read fails with `net_io::Error::Timeout`; then a write of more than the socket can take
/// (or its flush) fails the same way, the bytes kept for a retry; then `close_gracefully`,
/// which cannot flush them, fails with `net_sockets::Error::Timeout`.
async fn socket_timeout_ends<T: Transport>(mut connection: Connection<T>, what: &'static str) {
    let read = within(connection.input.read_line(1024, LineEnding::Default)).await;
    assert_socket_timeout(&read.unwrap_err(), &format!("{what}: the read"));
    let big = vec![b'x'; 4 << 20];
    let write = within(async {
        connection.output.write_fully(&big).await?;
        connection.output.flush().await
    })
    .await;
    assert_socket_timeout(&write.unwrap_err(), &format!("{what}: the write"));
    let closed = within(connection.close_gracefully(Duration::from_millis(500))).await;
    assert!(
        matches!(closed, Err(net_sockets::Error::Timeout)),
        "{what}: close_gracefully: {closed:?}"
    );
}

/// The connection options of [`socket_timeout_ends`].
fn timed(builder: TcpSocketBuilder) -> TcpSocketBuilder {
    builder
        .socket_timeout(SOCKET_TIMEOUT)
        .send_buffer_size(16 * 1024)
}

/// `socket_timeout` bounds every wait on a vanished peer, over TCP and TLS, on both sides: a
/// read and then a write of more than the socket takes end with `net_io::Error::Timeout`, and
/// `close_gracefully`, which cannot flush what is left, with `net_sockets::Error::Timeout`.
/// Without it, what bounds the rest is each call's own time, whatever the kernel still holds
/// unacknowledged: `close_gracefully` after a flush the kernel took returns `Ok` once its
/// `wait` passed, though the peer received nothing (the kernel retransmits the data and the
/// FIN on its own after the descriptor's release); a `linger` close's wait ends (the
/// descriptor released) at the linger time; and a listener's `shutdown` cuts a connection
/// whose handler ignores the signal at the end of its grace period. Each releases the
/// connection's descriptor; a connection to a peer that stayed echoes all the while.
#[test]
fn timeouts_and_closes_are_bounded_on_a_vanished_peer() {
    run_vanishing(
        "timeouts_and_closes_are_bounded_on_a_vanished_peer",
        "timeouts_and_closes_are_bounded_on_a_vanished_peer_child",
        "NET_TESTS_VANISH_TIMEOUTS",
        "every wait and close ended",
    );
}

#[test]
fn timeouts_and_closes_are_bounded_on_a_vanished_peer_child() {
    run_if_child("NET_TESTS_VANISH_TIMEOUTS", async {
        prepare();
        let pki = Pki::generate();
        let selector = SelectorManager::new();
        let mut staying = staying_echo(&selector).await;
        let noticing = listener(&selector, STAYING, timed).await;
        let (tcp_server, _gone_tcp_client) = pair(&selector, &noticing, VANISHING, |b| b).await;
        let (tls_server, _gone_tls_client) =
            tls_pair(&selector, &noticing, VANISHING, |b| b, &pki).await;
        let gone = listener(&selector, VANISHING, |b| b).await;
        let (_gone_tcp_server, tcp_client) = pair(&selector, &gone, STAYING, timed).await;
        let (_gone_tls_server, tls_client) = tls_pair(&selector, &gone, STAYING, timed, &pki).await;
        // No timeouts: bounded by `close_gracefully`'s wait, by `linger`, by a shutdown.
        let (_gone_server, graceful) = pair(&selector, &gone, STAYING, |b| b).await;
        let (_gone_server_2, lingering) = pair(&selector, &gone, STAYING, |b| {
            b.linger(Duration::from_secs(1))
        })
        .await;
        let shut = listener(&selector, STAYING, |b| b).await;
        let (handled, _gone_client) = pair(&selector, &shut, VANISHING, |b| b).await;
        let connections = [tcp_server, tcp_client].map(|s| s.connection().unwrap());
        let tls = [tls_server, tls_client].map(|s| s.connection().unwrap());
        let [mut graceful, mut lingering, mut handled] =
            [graceful, lingering, handled].map(|s| s.connection().unwrap());
        all_acknowledged().await;
        let fds = fd_count();

        vanish();
        // Data the kernel takes at once, never acknowledged.
        for connection in [&mut graceful, &mut lingering, &mut handled] {
            connection.output.write_fully(&[b'y'; 1024]).await.unwrap();
            within(connection.output.flush()).await.unwrap();
        }
        let [tcp_server, tcp_client] = connections;
        let [tls_server, tls_client] = tls;
        let handler = tokio::spawn(async move {
            // A handler that ignores the shutdown's signal: its read ends with the cut.
            let read = handled.input.read_line(1024, LineEnding::Default).await;
            assert!(read.is_err(), "the cut connection's read: {read:?}");
        });
        let closes = async {
            let closed = within(graceful.close_gracefully(Duration::from_millis(500))).await;
            assert!(
                closed.is_ok(),
                "close_gracefully, all flushed to the kernel: {closed:?}"
            );
            lingering.socket.close();
            within(lingering.socket.await_closed()).await;
            drop(lingering);
            let report = within(shut.shutdown(Duration::from_millis(500))).await;
            assert_eq!((report.finished, report.cut), (0, 1), "{report:?}");
            within(handler).await.unwrap();
        };
        keeps_echoing(&mut staying, async {
            tokio::join!(
                socket_timeout_ends(tcp_server, "TCP, the server's side"),
                socket_timeout_ends(tcp_client, "TCP, the client's side"),
                socket_timeout_ends(tls_server, "TLS, the server's side"),
                socket_timeout_ends(tls_client, "TLS, the client's side"),
                closes,
            )
        })
        .await;
        // Seven connections, and the listener that shut down.
        descriptors_back_to(fds - 8, "after the connections were closed").await;
        println!("every wait and close ended");
    });
}

/// The client's handshake future of [`handshakes_and_headers_left_half_way_end_at_their_timeouts`].
type ClientHandshake = tokio::task::JoinHandle<net_tls::Result<TlsSocket>>;

/// Waits (bounded) until a connection of the child's namespace whose local end is `local`
/// has received bytes that are not read yet (`ss`'s `Recv-Q`).
async fn bytes_arrived_at(local: std::net::SocketAddr) {
    let started = Instant::now();
    loop {
        let listed = net_tests::harness::output(Command::new("ss").args(["-tnH"])).expect("ss");
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let arrived = listed.lines().any(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            columns.get(3) == Some(&local.to_string().as_str()) && columns.get(1) != Some(&"0")
        });
        if arrived {
            return;
        }
        assert!(
            started.elapsed() < net_tests::HANG_LIMIT,
            "nothing arrived at {local}:\n{listed}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A listener's waits on a client that vanished half-way are bounded by their timeouts, and
/// hold nothing else up: a PROXY header cut short (a required one, `proxy_header_timeout`)
/// drops that connection, counted in `proxy_header_failures`, while `accept` hands out the
/// next client, whose header came whole; a TLS handshake whose ClientHello arrived ends with
/// `net_tls::Error::HandshakeTimeout` (kind `TimedOut`) on the server's side, and the
/// client's, whose server vanished after it sent its ClientHello, the same way. A connect to
/// the vanished address ends at its `connect_timeout` with `net_sockets::Error::Timeout`. A
/// connection to a peer that stayed echoes all the while.
#[test]
fn handshakes_and_headers_left_half_way_end_at_their_timeouts() {
    run_vanishing(
        "handshakes_and_headers_left_half_way_end_at_their_timeouts",
        "handshakes_and_headers_left_half_way_end_at_their_timeouts_child",
        "NET_TESTS_VANISH_HALF_WAY",
        "every half-way wait ended",
    );
}

#[test]
fn handshakes_and_headers_left_half_way_end_at_their_timeouts_child() {
    run_if_child("NET_TESTS_VANISH_HALF_WAY", async {
        prepare();
        let pki = Pki::generate();
        let selector = SelectorManager::new();
        let mut staying = staying_echo(&selector).await;
        let short = Duration::from_millis(300);
        // A PROXY header cut short.
        let proxied = listener(&selector, STAYING, |b| {
            b.proxy_protocol(ProxyProtocol::Required)
                .proxy_header_timeout(short)
        })
        .await;
        let proxied_at = proxied.local_address();
        let mut cut_short = within(
            a_socket(&selector)
                .tcp()
                .local_address(std::net::SocketAddr::new(VANISHING.parse().unwrap(), 0))
                .connect(proxied_at.clone()),
        )
        .await
        .unwrap()
        .connection()
        .unwrap();
        cut_short.output.write_fully(b"PROXY TCP4 ").await.unwrap();
        within(cut_short.output.flush()).await.unwrap();
        // A TLS handshake: the client's ClientHello arrives, nothing after it.
        let tls_listener = listener(&selector, STAYING, |b| b).await;
        let (accepted, connected) = pair(&selector, &tls_listener, VANISHING, |b| b).await;
        let accepted_at = accepted.local_address().as_inet().unwrap().socket_addr();
        let client_config = pki
            .client_config()
            .server_name("localhost")
            .handshake_timeout(short)
            .build()
            .unwrap();
        let client: ClientHandshake = tokio::spawn(connected.tls(client_config));
        bytes_arrived_at(accepted_at).await;
        let gone = listener(&selector, VANISHING, |b| b).await;
        all_acknowledged().await;

        vanish();
        let server_config = pki
            .server_config()
            .handshake_timeout(short)
            .build()
            .unwrap();
        let proxy = async {
            let mut whole =
                tokio::net::TcpStream::connect(proxied_at.as_inet().unwrap().socket_addr())
                    .await
                    .unwrap();
            whole
                .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n")
                .await
                .unwrap();
            let next = within(proxied.accept()).await.unwrap();
            assert_eq!(
                next.remote_address().to_string(),
                "192.0.2.1:1",
                "accept handed out another connection"
            );
            let started = Instant::now();
            while proxied.stats().proxy_header_failures == 0 {
                assert!(started.elapsed() < net_tests::HANG_LIMIT, "never dropped");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(proxied.stats().open, 1, "{:?}", proxied.stats());
        };
        let handshakes = async {
            let server = within(accepted.tls_server(&server_config)).await;
            assert!(
                matches!(server, Err(net_tls::Error::HandshakeTimeout(t)) if t == short),
                "the server's handshake: {server:?}"
            );
            let client = within(client).await.unwrap();
            assert!(
                matches!(client, Err(net_tls::Error::HandshakeTimeout(t)) if t == short),
                "the client's handshake: {client:?}"
            );
        };
        let connect = async {
            let connected = within(
                a_socket(&selector)
                    .tcp()
                    .connect_timeout(short)
                    .connect(gone.local_address()),
            )
            .await;
            assert!(
                matches!(connected, Err(net_sockets::Error::Timeout)),
                "the connect: {connected:?}"
            );
        };
        keeps_echoing(&mut staying, async {
            tokio::join!(proxy, handshakes, connect)
        })
        .await;
        drop(cut_short);
        println!("every half-way wait ended");
    });
}
