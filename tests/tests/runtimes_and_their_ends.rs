//! Runtimes and their ends as a tokio user meets them: the libraries used from every flavour of
//! runtime and from the places blocking code runs (a `LocalSet`, `Handle::block_on` on a plain
//! thread, `spawn_blocking`); and sockets held in a thread's locals, which the thread's exit
//! drops after tokio's own thread-local context is gone (as in a destructor of a static),
//! whatever runtime their selector has and whether it still runs.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::harness::rerun_self_alone;
use net_tests::loopback::{connected_pair, tcp_listener_with};
use net_tests::pki::Pki;
use net_tests::{HANG_LIMIT, within};

/// The socket (`socket:[inode]`) behind descriptor `fd`.
fn socket_of(fd: std::os::fd::RawFd) -> String {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    target.to_string_lossy().into_owned()
}

/// The sockets among this process's descriptors.
fn open_sockets() -> HashSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with("socket:"))
        .collect()
}

/// Waits until none of `ours` is open any more; panics after [`HANG_LIMIT`].
fn released(case: &str, ours: &[String]) {
    let deadline = Instant::now() + HANG_LIMIT;
    loop {
        let open = open_sockets();
        let left: Vec<&String> = ours.iter().filter(|s| open.contains(*s)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{case}: {left:?} still open");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How many threads of this process are named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

thread_local! {
    /// What a thread keeps until it exits. Touched first on every thread that uses it, before
    /// anything of tokio: the exit destroys thread-locals in the reverse order of their first
    /// use, so these are dropped after tokio's context is gone.
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Dropped first among [`HELD`]: notes whether tokio's thread-local context was gone by then.
struct Sentinel(std::sync::mpsc::Sender<bool>);

impl Drop for Sentinel {
    fn drop(&mut self) {
        let gone = tokio::runtime::Handle::try_current()
            .err()
            .is_some_and(|e| e.is_thread_local_destroyed());
        let _ = self.0.send(gone);
    }
}

/// Keeps `value` in this thread's [`HELD`].
fn hold(value: impl Any) {
    HELD.with(|held| held.borrow_mut().push(Box::new(value)));
}

/// One of everything through `selector`, in the current context: a line each way over a
/// connection made to a host name (looked up on a blocking thread) and over TLS, a datagram,
/// `close_gracefully`, and a graceful shutdown of the selector that finds a connection open.
async fn one_of_everything(case: &str, selector: &SelectorManager, pki: &Pki) {
    let listener = tcp_listener_with(selector, |b| b.socket_timeout(HANG_LIMIT)).await;
    let port = listener.port().unwrap();
    let connect = a_socket(selector).tcp().connect(("localhost", port));
    let (client, server) = tokio::join!(within(connect), within(listener.accept()));
    let (client, server) = (client.unwrap(), server.unwrap());
    let (mut client, mut server) = (client.connection().unwrap(), server.connection().unwrap());
    within(client.output.write_string_utf8("ping\n"))
        .await
        .unwrap();
    within(client.output.flush()).await.unwrap();
    let line = within(server.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("ping"), "{case}");
    within(server.output.write_string_utf8("pong\n"))
        .await
        .unwrap();
    within(server.output.flush()).await.unwrap();
    let line = within(client.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("pong"), "{case}");
    within(client.close_gracefully(Duration::from_millis(100)))
        .await
        .unwrap();
    let line = within(server.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap(), None, "{case}");
    drop(server);

    let (mut tls_server, mut tls_client) = net_tests::tls::pair_of(selector, &listener, pki).await;
    let mut output = tls_client.open_write_channel(true).unwrap();
    let mut input = tls_server.open_read_channel().unwrap();
    within(output.write_string_utf8("over tls\n"))
        .await
        .unwrap();
    let line = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("over tls"), "{case}");

    let a = net_tests::loopback::udp_socket(selector).await;
    let b = net_tests::loopback::udp_socket(selector).await;
    let to_b = net_sockets::Datagram::new(&b"datagram"[..], b.local_address()).unwrap();
    within(a.send(to_b)).await.unwrap();
    let got = within(b.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"datagram", "{case}");

    // The TLS connection is still open (both its ends are the selector's): the shutdown
    // signals them, waits its grace, cuts them.
    let report = within(selector.shutdown(Duration::from_millis(50))).await;
    assert_eq!((report.finished, report.cut), (0, 2), "{case}: {report:?}");
    assert!(
        selector.is_closed() && listener.is_closed() && a.is_closed(),
        "{case}"
    );
    let read = within(input.read_line(64, LineEnding::Default)).await;
    assert!(
        matches!(
            read.map_err(net_sockets::Error::from),
            Err(net_sockets::Error::SelectorClosed)
        ),
        "{case}"
    );
}

/// Both kinds of selector, `SelectorManager::new()` made in the current context and one with a
/// runtime of its own, each through [`one_of_everything`].
async fn both_selectors(case: &str, pki: &Pki) {
    one_of_everything(&format!("{case}, new()"), &SelectorManager::new(), pki).await;
    let own = SelectorManager::builder()
        .worker_threads(1)
        .build()
        .unwrap();
    one_of_everything(&format!("{case}, own runtime"), &own, pki).await;
}

fn multi_thread(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The libraries from every flavour of runtime, and from where blocking code runs: a
/// current-thread runtime, a multi-thread runtime of 1 and of 4 workers, a `LocalSet`,
/// `Handle::block_on` on a plain thread (multi-thread runtime), `Handle::current().block_on`
/// inside `spawn_blocking` (of a current-thread and of a multi-thread runtime). Everything
/// works with both kinds of selector, its timers (`close_gracefully`, the shutdown's grace)
/// and its lookups (on a blocking thread) included.
#[test]
fn every_runtime_flavour_and_blocking_context_works() {
    let pki = std::sync::Arc::new(Pki::generate());
    current_thread().block_on(both_selectors("current_thread", &pki));
    multi_thread(1).block_on(both_selectors("multi_thread(1)", &pki));
    multi_thread(4).block_on(both_selectors("multi_thread(4)", &pki));
    let local = tokio::task::LocalSet::new();
    local.block_on(&current_thread(), async {
        let pki = std::sync::Arc::clone(&pki);
        tokio::task::spawn_local(async move { both_selectors("LocalSet", &pki).await })
            .await
            .unwrap();
    });
    let runtime = multi_thread(2);
    let handle = runtime.handle().clone();
    let plain = std::sync::Arc::clone(&pki);
    std::thread::spawn(move || handle.block_on(both_selectors("Handle::block_on", &plain)))
        .join()
        .expect("Handle::block_on on a plain thread");
    for runtime in [current_thread(), multi_thread(2)] {
        let pki = std::sync::Arc::clone(&pki);
        runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                tokio::runtime::Handle::current().block_on(both_selectors("spawn_blocking", &pki))
            })
            .await
            .unwrap();
        });
    }
}

/// The sockets of one connection, plain and TLS, a listener and a UDP socket of `selector`,
/// with channels open and bytes written both ways; a connection with `linger` whose peer (a std
/// socket, returned) has read nothing of 16 KiB written and flushed; a connection whose answers
/// flush coalescing holds back, more than its socket takes, for a std peer that has read none.
/// All kept in [`HELD`]; returns their sockets' names and the three std peers.
async fn hold_all_kinds(
    selector: &SelectorManager,
    pki: &Pki,
) -> (Vec<String>, Vec<std::net::TcpStream>) {
    let fd = |s: socket2::SockRef<'_>| Ok(s.as_raw_fd());
    let mut ours = Vec::new();
    let listener = tcp_listener_with(selector, |b| b).await;
    let (mut client, mut server) = connected_pair(selector, &listener).await;
    ours.push(socket_of(client.with_sock_ref(fd).unwrap()));
    ours.push(socket_of(server.with_sock_ref(fd).unwrap()));
    let mut output = client.open_write_channel(false).unwrap();
    let mut input = server.open_read_channel().unwrap();
    within(output.write_string_utf8("hello\n")).await.unwrap();
    within(output.flush()).await.unwrap();
    let line = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("hello"));
    // Bytes left unflushed in the channel, and a read waiting for more.
    within(output.write_string_utf8("unflushed")).await.unwrap();

    let (tls_server, tls_client) = net_tests::tls::pair_of(selector, &listener, pki).await;
    let mut tls_server = tls_server;
    let mut tls_client = tls_client;
    let mut tls_output = tls_client.open_write_channel(true).unwrap();
    let mut tls_input = tls_server.open_read_channel().unwrap();
    within(tls_output.write_string_utf8("over tls\n"))
        .await
        .unwrap();
    let line = within(tls_input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("over tls"));

    let udp = net_tests::loopback::udp_socket(selector).await;
    ours.push(socket_of(udp.with_sock_ref(fd).unwrap()));
    ours.push(socket_of(listener.with_sock_ref(fd).unwrap()));

    // A lingering close: its peer reads nothing of what is in flight.
    let lingering = tcp_listener_with(selector, |b| {
        b.linger(Duration::from_secs(3)).send_buffer_size(32 * 1024)
    })
    .await;
    let peer = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    peer.set_recv_buffer_size(4096).unwrap();
    peer.connect(
        &lingering
            .local_address()
            .as_inet()
            .unwrap()
            .socket_addr()
            .into(),
    )
    .unwrap();
    let lingers = within(lingering.accept()).await.unwrap();
    ours.push(socket_of(lingers.with_sock_ref(fd).unwrap()));
    ours.push(socket_of(lingering.with_sock_ref(fd).unwrap()));
    let mut lingers = lingers.connection().unwrap();
    within(lingers.output.write_fully(&net_tests::payload(16 * 1024)))
        .await
        .unwrap();
    within(lingers.output.flush()).await.unwrap();

    // A std peer that sees how the plain connection ends.
    let watched =
        std::net::TcpStream::connect(listener.local_address().as_inet().unwrap().socket_addr())
            .unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    ours.push(socket_of(accepted.with_sock_ref(fd).unwrap()));

    // Answers held back by flush coalescing (requests still pending), more than the socket
    // takes at once: its close leaves them to a task of the selector's runtime.
    let coalescing = tcp_listener_with(selector, |b| b.send_buffer_size(4096)).await;
    let asker = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    asker.set_recv_buffer_size(4096).unwrap();
    asker
        .connect(
            &coalescing
                .local_address()
                .as_inet()
                .unwrap()
                .socket_addr()
                .into(),
        )
        .unwrap();
    let mut asker = std::net::TcpStream::from(asker);
    let mut answering = within(coalescing.accept()).await.unwrap();
    ours.push(socket_of(answering.with_sock_ref(fd).unwrap()));
    let mut requests = "x\n".repeat(HELD_ANSWERS);
    requests.push_str("pending\n");
    std::io::Write::write_all(&mut asker, requests.as_bytes()).unwrap();
    let mut questions = answering.open_read_channel().unwrap();
    let mut answers = answering.open_write_channel(true).unwrap();
    for i in 0..HELD_ANSWERS {
        let line = within(questions.read_line(16, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("x"));
        within(answers.write_string_utf8(&format!("{i:>99}\n")))
            .await
            .unwrap();
    }

    hold((answering, questions, answers, coalescing));
    hold((client, server, output, input));
    hold((tls_server, tls_client, tls_output, tls_input));
    hold((udp, listener, lingering, lingers, accepted));
    (ours, vec![peer.into(), watched, asker])
}

/// How many answers of 100 bytes [`hold_all_kinds`] leaves held back.
const HELD_ANSWERS: usize = 400;

/// A peer that reads what is left, then sees an end (its read returns 0 or a reset), within
/// [`HANG_LIMIT`].
fn sees_the_end(case: &str, mut peer: std::net::TcpStream) -> usize {
    peer.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    let mut buf = vec![0; 64 * 1024];
    let mut read = 0;
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return read,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return read,
            Err(e) => panic!("{case}: the peer saw no end: {e}"),
        }
    }
}

const CHILD_ENV: &str = "NET_TESTS_THREAD_LOCAL_DROPS_CHILD";
const MARKER: &str = "thread-local drops: done";

/// Sockets (plain and TLS connections with their channels, listeners, a UDP socket, a
/// connection whose close lingers) kept in a thread's locals and dropped as the thread exits,
/// after tokio's thread-local context is gone there: with a selector of a runtime of its own
/// (held elsewhere too, or only there, so that the runtime's end comes from that drop), and
/// with a `SelectorManager::new()` selector of a multi-thread runtime that still runs. No panic
/// (a panic there aborts the process), every descriptor released, every peer sees an end.
///
/// Run in a child process: an abort would end the whole test binary.
#[test]
fn sockets_dropped_with_a_threads_locals_are_released_without_a_panic() {
    let text = rerun_self_alone("thread_local_drops_child", CHILD_ENV, MARKER);
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn thread_local_drops_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let pki = std::sync::Arc::new(Pki::generate());
    let own = SelectorManager::builder()
        .worker_threads(1)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let on_runtime = runtime.block_on(async { SelectorManager::new() });
    for case in [
        "own runtime, held elsewhere too",
        "own runtime, held only there",
        "new(), runtime running",
    ] {
        let (gone_tx, gone_rx) = std::sync::mpsc::channel();
        let handle = runtime.handle().clone();
        let own = own.clone();
        let on_runtime = on_runtime.clone();
        let pki = std::sync::Arc::clone(&pki);
        let (ours, peers) = std::thread::spawn(move || {
            HELD.with(|_| {});
            hold(Sentinel(gone_tx));
            match case {
                "own runtime, held elsewhere too" => {
                    let driver = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let held = driver.block_on(hold_all_kinds(&own, &pki));
                    hold(own);
                    held
                }
                "own runtime, held only there" => {
                    let selector = SelectorManager::builder()
                        .worker_threads(1)
                        .thread_name("held-selector")
                        .build()
                        .unwrap();
                    let driver = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let held = driver.block_on(hold_all_kinds(&selector, &pki));
                    hold(selector);
                    held
                }
                _ => {
                    let held = handle.block_on(hold_all_kinds(&on_runtime, &pki));
                    hold(on_runtime);
                    held
                }
            }
        })
        .join()
        .unwrap_or_else(|_| panic!("{case}: the thread panicked"));
        assert!(
            gone_rx.recv_timeout(HANG_LIMIT).unwrap(),
            "{case}: tokio's context was still there as the thread's locals were dropped"
        );
        let mut peers = peers.into_iter();
        let (lingering, watched, asker) = (
            peers.next().unwrap(),
            peers.next().unwrap(),
            peers.next().unwrap(),
        );
        sees_the_end(case, lingering);
        sees_the_end(case, watched);
        // Every held-back answer, then a clean end.
        assert_eq!(sees_the_end(case, asker), HELD_ANSWERS * 100, "{case}");
        released(case, &ours);
        if case == "own runtime, held only there" {
            // Its runtime ends with the last of it, dropped there: its threads end.
            let deadline = Instant::now() + HANG_LIMIT;
            while threads_named("held-selector") > 0 {
                assert!(
                    Instant::now() < deadline,
                    "{case}: the selector's threads still run"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    own.close();
    drop(runtime);
    println!("{MARKER}");
}
