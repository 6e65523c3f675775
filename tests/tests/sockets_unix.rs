//! Unix domain stream sockets: echo with half-close, the socket file's lifetime.

use std::path::{Path, PathBuf};

use net_sockets::{
    Error, SelectorManager, ServerSocket, SocketAddress, UnixSocketAddress, a_socket,
};
use net_tests::loopback::{connect, send_and_read_back, serve_echo};
use net_tests::{TempDir, payload, within};

/// A fresh socket path in the temporary directory.
fn socket_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("net-sockets-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Connects to the Unix socket at `target` from a socket bound to `local`.
fn connect_from(
    selector: &SelectorManager,
    local: &Path,
    target: &Path,
) -> impl std::future::Future<Output = Result<net_sockets::Socket, Error>> + use<> {
    a_socket(selector)
        .tcp()
        .local_address(UnixSocketAddress::new(local))
        .connect(UnixSocketAddress::new(target))
}

/// A listener on the Unix socket at `path`.
async fn unix_listener(selector: &SelectorManager, path: &Path) -> ServerSocket {
    a_socket(selector)
        .tcp()
        .bind(UnixSocketAddress::new(path))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_echo_with_half_close() {
    let selector = SelectorManager::new();
    let path = socket_path("echo");
    let listener = unix_listener(&selector, &path).await;
    assert_eq!(listener.port(), None);
    assert_eq!(
        listener.local_address().to_string(),
        path.display().to_string()
    );
    let server = serve_echo(listener);
    for size in [0, 1, 4096, 40960, 1024 * 1024] {
        let mut socket = connect(&selector, UnixSocketAddress::new(&path)).await;
        assert_eq!(
            socket.remote_address(),
            SocketAddress::Unix(UnixSocketAddress::new(&path))
        );
        let data = payload(size);
        let echoed = send_and_read_back(&mut socket, &data).await;
        assert!(echoed[..] == data[..], "{size} bytes");
        within(socket.await_closed()).await;
    }
    server.close();
}

#[tokio::test]
async fn the_socket_file_is_removed_when_the_listener_closes() {
    let selector = SelectorManager::new();
    let path = socket_path("lifetime");
    let listener = unix_listener(&selector, &path).await;
    assert!(path.exists());
    listener.close();
    assert!(!path.exists());
    // Dropping without close removes it too.
    let listener = unix_listener(&selector, &path).await;
    assert!(path.exists());
    drop(listener);
    assert!(!path.exists());
}

const WORKING_DIRECTORY_CHILD: &str = "NET_TESTS_UNIX_WORKING_DIRECTORY";

/// A listener bound to a relative path (and a connecting socket given one as its
/// `local_address`) removes its file when it closes, though the process
/// changed its working directory since (the path was resolved against the directory of the
/// bind): else the file stays, and the next bind of the path fails with `AddrInUse`. (Run in a
/// child process: the working directory is the whole process's.)
#[test]
fn a_relative_socket_file_is_removed_though_the_working_directory_changed() {
    net_tests::harness::rerun_self_alone(
        "a_relative_socket_file_is_removed_though_the_working_directory_changed_child",
        WORKING_DIRECTORY_CHILD,
        "relative socket file removed",
    );
}

#[test]
fn a_relative_socket_file_is_removed_though_the_working_directory_changed_child() {
    net_tests::harness::run_if_child(WORKING_DIRECTORY_CHILD, async {
        let selector = SelectorManager::new();
        let bound_in = TempDir::new("unix-relative-bound");
        let later_in = TempDir::new("unix-relative-later");
        std::env::set_current_dir(bound_in.path()).unwrap();
        let listener = unix_listener(&selector, Path::new("rel.sock")).await;
        let file = bound_in.join("rel.sock");
        assert!(file.exists());
        std::env::set_current_dir(later_in.path()).unwrap();
        listener.close();
        assert!(
            !file.exists(),
            "the socket file bound in the old working directory was left behind"
        );
        // The path can be bound again there.
        std::env::set_current_dir(bound_in.path()).unwrap();
        unix_listener(&selector, Path::new("rel.sock"))
            .await
            .close();
        assert!(!file.exists());
        // So does a connecting socket's relative `local_address`.
        let server = unix_listener(&selector, &later_in.join("server.sock")).await;
        let client = within(connect_from(
            &selector,
            Path::new("client.sock"),
            &later_in.join("server.sock"),
        ))
        .await
        .unwrap();
        let client_file = bound_in.join("client.sock");
        assert!(client_file.exists());
        std::env::set_current_dir(later_in.path()).unwrap();
        client.close();
        assert!(
            !client_file.exists(),
            "the client's socket file bound in the old working directory was left behind"
        );
        server.close();
        std::env::set_current_dir("/").unwrap();
        println!("relative socket file removed");
    });
}

#[tokio::test]
async fn pending_unix_accept_fails_on_close() {
    let selector = SelectorManager::new();
    let path = socket_path("accept");
    let listener = std::sync::Arc::new(unix_listener(&selector, &path).await);
    let accepting = std::sync::Arc::clone(&listener);
    let pending = tokio::spawn(async move { accepting.accept().await });
    tokio::task::yield_now().await;
    listener.close();
    assert!(matches!(within(pending).await.unwrap(), Err(Error::Closed)));
}

#[tokio::test]
async fn connecting_to_a_missing_path_fails() {
    let selector = SelectorManager::new();
    let path = socket_path("missing");
    let err = a_socket(&selector)
        .tcp()
        .connect(UnixSocketAddress::new(&path))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err:?}");
}

/// `await_closed` returns only once the listener is released: a task it wakes (on any thread,
/// at once) finds the socket file gone and may bind the path again. The wake-up is observed
/// where it happens, inside `close`, by the waker itself.
#[test]
fn await_closed_wakes_only_once_the_socket_file_is_gone() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::task::{Context, Wake, Waker};

    /// What the socket file was when the waker ran: 0 not woken, 1 gone, 2 still there.
    struct Watch(PathBuf, AtomicU8);

    impl Wake for Watch {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            let seen = if self.0.exists() { 2 } else { 1 };
            self.1.store(seen, Ordering::SeqCst);
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _runtime = runtime.enter();
    let selector = SelectorManager::new();
    let path = socket_path("await-closed");
    let listener = runtime.block_on(unix_listener(&selector, &path));
    let watch = Arc::new(Watch(path.clone(), AtomicU8::new(0)));
    let waker = Waker::from(Arc::clone(&watch));
    let mut closed = std::pin::pin!(listener.await_closed());
    assert!(
        closed
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    listener.close();
    assert_eq!(
        watch.1.load(Ordering::SeqCst),
        1,
        "1: woken with the file gone"
    );
    assert!(
        closed
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
    );
}

/// A socket in Linux's abstract namespace (a name starting with a NUL byte, no file) is named
/// by its name wherever the crate reports addresses: the client's `remote_address`, the
/// accepted side's `local_address`, and sockets adopted from `std`. (Before, every one of them
/// but the bound listener's own was the empty path, which stands for an unnamed socket.)
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn abstract_names_are_reported_as_such() {
    use std::os::linux::net::SocketAddrExt;

    let selector = SelectorManager::new();
    let name = format!("net-sockets-{}-abstract", std::process::id());
    let address = UnixSocketAddress::new(format!("\0{name}"));
    let listener = a_socket(&selector)
        .tcp()
        .bind(address.clone())
        .await
        .unwrap();
    let client = a_socket(&selector)
        .tcp()
        .connect(address.clone())
        .await
        .unwrap();
    assert_eq!(
        client.remote_address(),
        SocketAddress::Unix(address.clone())
    );
    assert_eq!(
        client.local_address(),
        SocketAddress::Unix(UnixSocketAddress::new(""))
    );
    let accepted = within(listener.accept()).await.unwrap();
    assert_eq!(
        accepted.local_address(),
        SocketAddress::Unix(address.clone())
    );
    assert_eq!(
        accepted.remote_address(),
        SocketAddress::Unix(UnixSocketAddress::new(""))
    );
    listener.close();

    // From std: a listener, and a stream connected to it.
    let std_address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let std_listener = std::os::unix::net::UnixListener::bind_addr(&std_address).unwrap();
    let std_stream = std::os::unix::net::UnixStream::connect_addr(&std_address).unwrap();
    let adopted = ServerSocket::from_std(&selector, std_listener).unwrap();
    assert_eq!(
        adopted.local_address(),
        SocketAddress::Unix(address.clone())
    );
    let stream = net_sockets::Socket::from_std(&selector, std_stream).unwrap();
    assert_eq!(stream.remote_address(), SocketAddress::Unix(address));
}

/// An empty path asks Linux to pick a free name in the abstract namespace (autobind): the
/// listener reports the name it got, as a TCP listener bound to port 0 reports its port, and a
/// client reaches it there.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn an_empty_path_binds_a_name_the_listener_reports() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(""))
        .await
        .unwrap();
    let local = listener.local_address();
    let SocketAddress::Unix(name) = &local else {
        panic!("not a Unix address: {local:?}");
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.path().as_os_str());
    assert!(
        bytes.len() > 1 && bytes[0] == 0,
        "the listener reports {local:?}, not the name the OS picked"
    );
    let client = within(a_socket(&selector).tcp().connect(local.clone()))
        .await
        .unwrap();
    assert_eq!(client.remote_address(), local);
    within(listener.accept()).await.unwrap();
}

/// A path longer than a Unix socket address holds (108 bytes on Linux) is a typed error for
/// `bind` and `connect`, never a panic or a silently cut path.
#[tokio::test]
async fn a_path_too_long_for_a_unix_address_is_invalid_input() {
    let selector = SelectorManager::new();
    let path = std::env::temp_dir().join("x".repeat(200));
    let e = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");
    let e = a_socket(&selector)
        .tcp()
        .connect(UnixSocketAddress::new(&path))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");
    assert!(!path.exists());
}

/// A connecting socket bound to a local path (`local_address`) made that socket file; the
/// socket removes it when it closes, as a listener removes its own, and at once when the
/// connect fails, so the same local path can be used again. (Before, the file stayed: a retry
/// failed with `AddrInUse`, and every client left a stale file behind.)
#[tokio::test]
async fn a_client_socket_file_is_removed_when_the_client_closes_or_fails_to_connect() {
    let selector = SelectorManager::new();
    let local = socket_path("client-local");
    let missing = socket_path("client-missing");
    for attempt in 0..2 {
        let err = connect_from(&selector, &local, &missing).await.unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::NotFound,
            "attempt {attempt}: {err:?}"
        );
        assert!(!local.exists(), "attempt {attempt}");
    }

    let path = socket_path("client-server");
    let listener = unix_listener(&selector, &path).await;
    for drop_it in [false, true] {
        let client = connect_from(&selector, &local, &path).await.unwrap();
        assert_eq!(
            client.local_address(),
            SocketAddress::Unix(UnixSocketAddress::new(&local))
        );
        assert!(local.exists());
        let accepted = within(listener.accept()).await.unwrap();
        assert_eq!(
            accepted.remote_address(),
            SocketAddress::Unix(UnixSocketAddress::new(&local))
        );
        if drop_it {
            drop(client);
        } else {
            client.close();
            within(client.await_closed()).await;
        }
        assert!(!local.exists(), "dropped: {drop_it}");
        drop(accepted);
    }

    // A file that took the path's place after the bind is not the socket's: it stays.
    let client = connect_from(&selector, &local, &path).await.unwrap();
    std::fs::remove_file(&local).unwrap();
    std::fs::write(&local, b"someone else's").unwrap();
    client.close();
    within(client.await_closed()).await;
    assert_eq!(std::fs::read(&local).unwrap(), b"someone else's");
    std::fs::remove_file(&local).unwrap();
}

/// A Unix connect bound to a local path whose future is dropped before it completes (as
/// `connect_timeout`, a `select!` or the selector's close drop it) removes the socket file it
/// made, as a failed connect does, so the same path can be used again. (Before, the file
/// stayed when the future was dropped while the connect waited for the socket to be writable:
/// the next connect with that local path failed with `AddrInUse`.)
///
/// On a current-thread runtime the socket's readiness arrives only when the runtime turns its
/// I/O driver, which it does not during one poll: the first poll of the connect is pending,
/// and the drop lands while it waits.
#[tokio::test(flavor = "current_thread")]
async fn a_unix_connect_dropped_mid_way_removes_its_socket_file() {
    use std::future::Future;
    use std::task::Poll;
    let selector = SelectorManager::new();
    let path = socket_path("abandoned-server");
    let local = socket_path("abandoned-local");
    let listener = unix_listener(&selector, &path).await;

    let mut connect = Box::pin(connect_from(&selector, &local, &path));
    let pending =
        std::future::poll_fn(|cx| Poll::Ready(connect.as_mut().poll(cx).is_pending())).await;
    assert!(pending, "the connect completed on its first poll");
    assert!(local.exists(), "the connect bound no socket file");
    drop(connect);
    assert!(!local.exists(), "a dropped connect left its socket file");
    drop(within(listener.accept()).await.unwrap());

    // The path is free again.
    let client = connect_from(&selector, &local, &path).await.unwrap();
    drop(client);
    assert!(!local.exists());
}

/// A path with a NUL byte past its start cannot be put in a socket address: the kernel reads a
/// path up to its first NUL, so `"dir/a\0b"` would bind (or reach) `"dir/a"`, and the listener
/// could not remove the file it made. `bind`, `connect` and a connect's `local_address` fail
/// with `InvalidInput`, and no file is made. (Before, the path was cut at the NUL: the bind
/// made `dir/a` and left it behind on close.)
#[tokio::test]
async fn a_path_with_a_nul_byte_is_invalid_input_not_cut_short() {
    let selector = SelectorManager::new();
    let cut = socket_path("nul");
    let mut with_nul = cut.clone().into_os_string();
    with_nul.push("\0rest");
    let with_nul = PathBuf::from(with_nul);

    let bound = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&with_nul))
        .await;
    let made = cut.exists();
    if let Ok(listener) = &bound {
        listener.close();
    }
    let _ = std::fs::remove_file(&cut);
    let e = bound.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");
    assert!(
        !made,
        "the bind made the file at the path cut at its NUL byte"
    );
    assert!(e.to_string().contains("NUL"), "{e}");

    // The connect does not reach the listener at the cut path.
    let listener = unix_listener(&selector, &cut).await;
    let e = a_socket(&selector)
        .tcp()
        .connect(UnixSocketAddress::new(&with_nul))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");

    // Nor does a local address with one bind the cut path.
    let local = socket_path("nul-local");
    let mut local_with_nul = local.clone().into_os_string();
    local_with_nul.push("\0rest");
    let e = connect_from(&selector, Path::new(&local_with_nul), &cut)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");
    assert!(!local.exists());
    listener.close();
}

/// A path of exactly 108 bytes (no room for the terminating NUL) is refused, one of 107 bytes
/// works; the error names the path and the limit.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn the_unix_path_limit_is_exact_and_named() {
    let selector = SelectorManager::new();
    let dir = std::env::temp_dir();
    let base = format!("{}/nsl-{}-", dir.display(), std::process::id());
    let fill = |total: usize| PathBuf::from(format!("{base}{}", "y".repeat(total - base.len())));
    let longest = fill(107);
    let _ = std::fs::remove_file(&longest);
    let listener = unix_listener(&selector, &longest).await;
    let client = within(
        a_socket(&selector)
            .tcp()
            .connect(UnixSocketAddress::new(&longest)),
    )
    .await
    .unwrap();
    assert_eq!(
        client.remote_address(),
        SocketAddress::Unix(UnixSocketAddress::new(&longest))
    );
    listener.close();
    assert!(!longest.exists());

    let too_long = fill(108);
    let e = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&too_long))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");
    assert!(!too_long.exists());
    let message = e.to_string();
    assert!(
        message.contains("108") && message.contains("107"),
        "{message}"
    );
}

/// A directory, or a file that is not a socket, at the path a listener binds: `AddrInUse`
/// naming the path and what is there. Before, the message said a socket file was there,
/// "another socket's, or one left behind by a process that ended", advice that fits neither.
/// Neither is touched.
#[tokio::test]
async fn binding_where_a_directory_or_a_plain_file_is_says_what_is_there() {
    let selector = SelectorManager::new();
    let dir = socket_path("a-directory");
    // One an earlier run that failed left.
    let _ = std::fs::remove_dir(&dir);
    std::fs::create_dir(&dir).unwrap();
    let file = socket_path("a-plain-file");
    std::fs::write(&file, b"not a socket").unwrap();
    for (path, says) in [(&dir, "a directory is at"), (&file, "not a socket")] {
        let e = a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(path))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e:?}");
        let message = e.to_string();
        assert!(
            message.contains(&*path.to_string_lossy())
                && message.contains(says)
                && !message.contains("left behind"),
            "{message}"
        );
    }
    assert!(dir.is_dir() && file.is_file());
    std::fs::remove_dir(&dir).unwrap();
    std::fs::remove_file(&file).unwrap();
}

/// A socket file left behind by a process that ended without removing it (a crash) is not
/// replaced: `bind` fails with `AddrInUse`, and the message names the path and says what to do,
/// since the OS's own ("Address already in use") names neither. The file is left as it is.
#[tokio::test]
async fn binding_over_a_stale_socket_file_is_addr_in_use_naming_the_path() {
    let selector = SelectorManager::new();
    let path = socket_path("stale");
    // A std listener does not remove its file: dropped, it leaves it as a crash would.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let e = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e:?}");
    let message = e.to_string();
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
    // What is there, and the likely cause.
    assert!(message.contains("left behind"), "{message}");
    assert!(path.exists(), "the stale file was removed");
    // So does a client's `local_address` on a left-behind file (before, only the OS's
    // "Address already in use", which names no path).
    let target = socket_path("stale-target");
    let listener = unix_listener(&selector, &target).await;
    let e = connect_from(&selector, &path, &target).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e:?}");
    let message = e.to_string();
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
    assert!(path.exists(), "the stale file was removed");
    listener.close();
    std::fs::remove_file(&path).unwrap();
    unix_listener(&selector, &path).await.close();

    // An abstract name has no file: its message says it is in use, and names it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let name = UnixSocketAddress::new(format!("\0net-sockets-{}-taken", std::process::id()));
        let first = a_socket(&selector).tcp().bind(name.clone()).await.unwrap();
        let e = a_socket(&selector)
            .tcp()
            .bind(name.clone())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e:?}");
        assert!(e.to_string().contains("taken\" is in use"), "{e}");
        let e = a_socket(&selector)
            .tcp()
            .local_address(name)
            .connect(first.local_address())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e:?}");
        assert!(e.to_string().contains("taken\" is in use"), "{e}");
        first.close();
    }
}

/// A Unix client has no IP address: `max_connections_per_ip` does not apply to it (most Unix
/// clients are unnamed, so counting them by address would put every one in one bucket). With a
/// PROXY protocol header, the client the header names is counted, as on a TCP listener.
#[tokio::test]
async fn a_unix_listener_caps_per_ip_only_the_clients_a_proxy_names() {
    use net_sockets::ProxyProtocol;
    use tokio::io::AsyncWriteExt;
    let selector = SelectorManager::new();
    let path = socket_path("per-ip");
    let listener = a_socket(&selector)
        .tcp()
        .max_connections_per_ip(1)
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let first = connect(&selector, UnixSocketAddress::new(&path)).await;
    let second = connect(&selector, UnixSocketAddress::new(&path)).await;
    let a = within(listener.accept()).await.unwrap();
    let b = within(listener.accept()).await.unwrap();
    assert_eq!(listener.stats().refused_per_ip, 0);
    assert_eq!(listener.stats().open, 2);
    assert_eq!(
        a.remote_address(),
        SocketAddress::Unix(UnixSocketAddress::new(""))
    );
    drop((a, b, first, second));
    listener.close();

    // Behind a PROXY header on a Unix listener, the named client is counted.
    let listener = a_socket(&selector)
        .tcp()
        .max_connections_per_ip(1)
        .proxy_protocol(ProxyProtocol::Required)
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let mut clients = Vec::new();
    for port in [1000, 1001, 1002] {
        let mut raw = tokio::net::UnixStream::connect(&path).await.unwrap();
        let header = format!("PROXY TCP4 192.0.2.7 192.0.2.1 {port} 80\r\n");
        raw.write_all(header.as_bytes()).await.unwrap();
        clients.push(raw);
    }
    let accepted = within(listener.accept()).await.unwrap();
    let remote = accepted.remote_address();
    assert_eq!(
        remote.as_inet().map(|a| a.ip()),
        Some("192.0.2.7".parse().unwrap()),
        "{remote}"
    );
    assert_eq!(
        accepted.proxy_address(),
        Some(SocketAddress::Unix(UnixSocketAddress::new("")))
    );
    // The other two come from the same client: an `accept` closes them (the client sees the
    // end of its stream) and hands out neither.
    let accepting = listener.accept();
    tokio::pin!(accepting);
    within(async {
        tokio::select! {
            r = &mut accepting => panic!("a second connection of one client: {r:?}"),
            () = async {
                let served = remote.port().unwrap_or(0);
                let others = [1000, 1001, 1002].into_iter().zip(&mut clients);
                for (_, client) in others.filter(|(port, _)| *port != served) {
                    let mut rest = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(client, &mut rest).await;
                }
            } => {}
        }
    })
    .await;
    assert_eq!(listener.stats().refused_per_ip, 2);
    drop(accepted);
    listener.close();
}

/// A graceful shutdown of a Unix listener counts and cuts its connections as a TCP one's does:
/// one that closes when told finished, one that holds on is cut after the grace period; the
/// socket file is gone, and a connect fails at once.
#[tokio::test]
async fn a_unix_listener_shuts_down_gracefully_and_counts_its_connections() {
    let selector = SelectorManager::new();
    let path = socket_path("shutdown");
    let listener = a_socket(&selector)
        .tcp()
        .max_connections(2)
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let _polite_client = connect(&selector, UnixSocketAddress::new(&path)).await;
    let polite = within(listener.accept()).await.unwrap();
    let _stubborn_client = connect(&selector, UnixSocketAddress::new(&path)).await;
    let stubborn = within(listener.accept()).await.unwrap();
    assert_eq!(listener.stats().open, 2);
    let polite_task = tokio::spawn(async move {
        polite.shutdown_requested().await;
        polite.close();
    });
    let report = within(listener.shutdown(std::time::Duration::from_millis(300))).await;
    assert_eq!((report.finished, report.cut), (1, 1), "{report:?}");
    within(polite_task).await.unwrap();
    assert!(stubborn.is_closed());
    assert!(!path.exists());
    let e = a_socket(&selector)
        .tcp()
        .connect(UnixSocketAddress::new(&path))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e:?}");
}

/// A client bound to an abstract name (given as its `local_address`, or picked by Linux for an
/// empty one) is seen by the server under that name: the accepted socket's `remote_address`
/// is what the client's `local_address` is, never the empty path of an unnamed client.
/// (Before, it was the empty path: the address `accept(2)` hands back, as tokio reads it,
/// loses an abstract name, which the socket's peer address still has.)
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn a_client_bound_to_an_abstract_name_is_seen_under_it() {
    let selector = SelectorManager::new();
    let path = socket_path("abstract-client");
    let listener = unix_listener(&selector, &path).await;
    let named = UnixSocketAddress::new(format!("\0net-sockets-{}-client", std::process::id()));
    for local in [named.clone(), UnixSocketAddress::new("")] {
        let client = within(
            a_socket(&selector)
                .tcp()
                .local_address(local.clone())
                .connect(UnixSocketAddress::new(&path)),
        )
        .await
        .unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        let bound = client.local_address();
        if local == named {
            assert_eq!(bound, SocketAddress::Unix(named.clone()));
        } else {
            assert_ne!(bound, SocketAddress::Unix(local), "no name was picked");
        }
        assert_eq!(accepted.remote_address(), bound);
    }
    listener.close();
}
