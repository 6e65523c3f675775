//! Unix domain stream sockets, reviewed: what a close that would reset a TCP connection does
//! to a Unix one, binding over files that are there, abstract names at their edges, and the
//! socket file when the selector or its runtime ends.

use std::io::ErrorKind;

use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::{TempDir, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Unix socket has no reset. A close that resets a TCP connection (here: bytes still
/// buffered in the write channel) ends a Unix stream as a clean close does: the peer reads
/// what was sent, then the end of the stream, and cannot tell that bytes were lost. (Before,
/// the documentation promised every byte stream, Unix included, a reset: `ConnectionReset`,
/// "never a clean end".) What Linux does report to a Unix peer: `ECONNRESET`, after every
/// byte sent, when the closing side leaves input unread.
#[tokio::test]
async fn a_unix_close_that_resets_tcp_ends_the_stream_as_unix_has_no_reset() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("hx-unix-reset");
    let path = dir.join("s.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    for unread_input in [false, true] {
        let mut peer = tokio::net::UnixStream::connect(&path).await.unwrap();
        let socket = within(listener.accept()).await.unwrap();
        let mut connection = socket.connection().unwrap();
        connection.output.write_fully(b"sent").await.unwrap();
        connection.output.flush().await.unwrap();
        if unread_input {
            // A Unix stream's write puts the bytes in the other socket's input queue at once:
            // once it returned, they wait there, unread.
            peer.write_all(b"never read").await.unwrap();
        }
        connection.output.write_fully(b"never sent").await.unwrap();
        connection.socket.close();
        let mut received = Vec::new();
        let end = within(peer.read_to_end(&mut received)).await;
        assert_eq!(received, b"sent", "unread input: {unread_input}");
        if unread_input {
            let e = end.expect_err("a close with unread input is reported as a reset");
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
        } else {
            assert!(
                end.is_ok(),
                "a Unix stream ends cleanly, it has no reset: {end:?}"
            );
        }
    }
}

/// A name in Linux's abstract namespace is any bytes after its leading NUL, NUL bytes
/// included, and may be empty: `"\0svc\0a"` binds that name (not `"\0svc"`, which stays free),
/// and is reported byte for byte; `"\0"` binds the empty name, reported as such (`@`), not as
/// an unnamed socket. (Before, `UnixSocketAddress`'s documentation said a NUL byte past the
/// start was refused for every path, abstract names included: `bind` took it.)
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn an_abstract_name_may_hold_nul_bytes_and_be_empty() {
    use net_sockets::SocketAddress;
    let selector = SelectorManager::new();
    let base = format!("\0net-sockets-{}-review-nul", std::process::id());
    let inner = UnixSocketAddress::new(format!("{base}\0inner"));
    let empty = UnixSocketAddress::new("\0");
    for (address, shown) in [
        (inner.clone(), format!("@{}\\0inner", &base[1..])),
        (empty, "@".to_string()),
    ] {
        let listener = a_socket(&selector)
            .tcp()
            .bind(address.clone())
            .await
            .unwrap();
        assert_eq!(
            listener.local_address(),
            SocketAddress::Unix(address.clone())
        );
        assert_eq!(listener.local_address().to_string(), shown);
        let client = within(a_socket(&selector).tcp().connect(address.clone()))
            .await
            .unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        assert_eq!(
            client.remote_address(),
            SocketAddress::Unix(address.clone())
        );
        assert_eq!(accepted.local_address(), SocketAddress::Unix(address));
        // The client is unnamed: the empty path, not the empty abstract name.
        assert_eq!(accepted.remote_address().to_string(), "(unnamed)");
        if shown != "@" {
            // The name before the inner NUL is another socket, which nobody serves.
            let e = a_socket(&selector)
                .tcp()
                .connect(UnixSocketAddress::new(&base))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
        }
    }
}

/// An abstract name has no terminating NUL: with its leading NUL it may take all 108 bytes of
/// a socket address (and is reported whole); 109 bytes are refused with `InvalidInput`, never
/// cut to the 108 that fit (which would bind another name).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn an_abstract_name_takes_all_108_bytes_and_no_more() {
    let selector = SelectorManager::new();
    let base = format!("\0net-sockets-{}-review-limit-", std::process::id());
    let fill = |total: usize| format!("{base}{}", "z".repeat(total - base.len()));
    let longest = UnixSocketAddress::new(fill(108));
    let listener = a_socket(&selector)
        .tcp()
        .bind(longest.clone())
        .await
        .unwrap();
    assert_eq!(listener.local_address().as_unix(), Some(&longest));
    let client = within(a_socket(&selector).tcp().connect(longest.clone()))
        .await
        .unwrap();
    assert_eq!(client.remote_address().as_unix(), Some(&longest));
    // No child process starting meanwhile: from its fork to its `exec` one would hold the
    // listener, and its abstract name with it (the connect below would then be taken), and
    // this binary starts children (`a_unix_accept_out_of_descriptors_waits_and_resumes`).
    net_tests::harness::without_spawns(|| listener.close());

    let too_long = fill(109);
    let e = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&too_long))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    assert!(e.to_string().contains("109 bytes"), "{e}");
    // Nothing was bound under the 108 bytes that would have fit.
    let e = a_socket(&selector)
        .tcp()
        .connect(UnixSocketAddress::new(&too_long[..108]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
}

/// `bind` never replaces what is at the path: a regular file (its contents untouched) and the
/// socket file of a listener that someone else serves (which goes on answering) both fail the
/// bind with `AddrInUse`, as a stale socket file does.
#[tokio::test]
async fn binding_over_a_regular_file_or_a_live_listener_is_addr_in_use_and_leaves_both() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("hx-unix-over");
    let file = dir.write("file", b"precious");
    let live = dir.join("live.sock");
    let served = std::os::unix::net::UnixListener::bind(&live).unwrap();
    for path in [&file, &live] {
        let e = a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(path))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    let client = within(
        a_socket(&selector)
            .tcp()
            .connect(UnixSocketAddress::new(&live)),
    )
    .await
    .unwrap();
    served.accept().unwrap();
    drop(client);
}

/// A Unix listener closed by its selector (`close`, a graceful `shutdown`) or by the end of
/// the runtime its selector runs on removes its socket file, as its own close does, though the
/// `ServerSocket` is still held.
#[test]
fn a_unix_listener_closed_by_its_selector_or_runtime_end_removes_its_file() {
    let dir = TempDir::new("hx-unix-ends");
    for how in ["selector close", "selector shutdown", "runtime end"] {
        let path = dir.join(&how.replace(' ', "-"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (selector, listener) = runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = a_socket(&selector)
                .tcp()
                .bind(UnixSocketAddress::new(&path))
                .await
                .unwrap();
            (selector, listener)
        });
        assert!(path.exists());
        match how {
            "selector close" => selector.close(),
            "selector shutdown" => {
                let grace = std::time::Duration::from_millis(10);
                runtime.block_on(within(selector.shutdown(grace)));
            }
            _ => drop(runtime),
        }
        assert!(!path.exists(), "{how}: the socket file is left");
        drop(listener);
    }
}

const EMFILE_CHILD_ENV: &str = "NET_TESTS_REVIEW_HX_UNIX_EMFILE_CHILD";

/// A Unix listener's `accept`, out of descriptors (`EMFILE`), neither fails nor spins: it
/// pauses, and takes the connections waiting in the backlog once descriptors are free, as a
/// TCP listener's does. (Run in a child process under `ulimit -n 64`.)
#[test]
fn a_unix_accept_out_of_descriptors_waits_and_resumes() {
    net_tests::harness::rerun_self_with_fd_limit(
        "unix_emfile_child",
        EMFILE_CHILD_ENV,
        64,
        "unix emfile child passed",
    );
}

#[test]
fn unix_emfile_child() {
    net_tests::harness::run_if_child(EMFILE_CHILD_ENV, async {
        let selector = SelectorManager::new();
        let dir = TempDir::new("hx-unix-emfile");
        let path = dir.join("s.sock");
        let listener = a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(&path))
            .await
            .unwrap();
        // Two connections wait in the backlog; their client descriptors exist already.
        let _a = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let _b = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let cpu = net_tests::probe::CpuClock::open();
        let filler = net_tests::probe::exhaust_descriptors(|| std::fs::File::open("/dev/null"));
        let cpu_before = cpu.ticks();
        let mut accept = Box::pin(listener.accept());
        let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut accept).await;
        assert!(
            early.is_err(),
            "accept returned while out of descriptors: {early:?}"
        );
        let spent = cpu.ticks() - cpu_before;
        // A spinning loop burns the whole 500 ms (50 ticks at 100 Hz).
        assert!(
            spent < 15,
            "accept loop used {spent} ticks of CPU in 500 ms"
        );
        drop(filler);
        within(accept).await.unwrap();
        within(listener.accept()).await.unwrap();
        listener.close();
        assert!(!path.exists());
        println!("unix emfile child passed");
    });
}

/// A client may bind a path of 108 bytes, the whole of `sun_path` without a terminating NUL
/// (Linux takes it; std and socket2 refuse to make one). It is a peer's input: the listener
/// hands the connection out, reporting that path, and serves it. (Before, `accept` panicked
/// in mio, which reads the address into a buffer one byte short: one `connect` from any local
/// user stopped a server's accept loop.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_client_bound_to_a_108_byte_path_is_accepted() {
    use std::io::{Read as _, Write as _};
    use std::os::fd::FromRawFd as _;

    let selector = SelectorManager::new();
    let dir = TempDir::new("hx-unix-108");
    let path = dir.join("l.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let base = dir.path().to_str().unwrap().to_owned() + "/";
    assert!(base.len() < 100, "{base}");
    let client_path = format!("{base}{}", "c".repeat(108 - base.len()));
    // A socket address filled to its last byte: only the C API makes one.
    #[allow(unsafe_code)]
    let mut client = unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a new socket this block owns from here on.
        let client = std::os::unix::net::UnixStream::from_raw_fd(fd);
        let mut address: libc::sockaddr_un = std::mem::zeroed();
        address.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (to, byte) in address.sun_path.iter_mut().zip(client_path.bytes()) {
            *to = byte as libc::c_char;
        }
        let length = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let bound = libc::bind(fd, (&raw const address).cast(), length);
        assert_eq!(bound, 0, "{}", std::io::Error::last_os_error());
        client
    };
    socket2::SockRef::from(&client)
        .connect(&socket2::SockAddr::unix(&path).unwrap())
        .unwrap();
    let socket = within(listener.accept()).await.unwrap();
    match socket.remote_address() {
        net_sockets::SocketAddress::Unix(unix) => {
            assert_eq!(unix.path().to_str(), Some(client_path.as_str()));
        }
        other => panic!("{other:?}"),
    }
    let mut connection = socket.connection().unwrap();
    client.write_all(b"hi\n").unwrap();
    let line = within(connection.input.read_line(100, net_io::LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("hi"));
    connection.output.write_fully(b"ok").await.unwrap();
    connection.output.flush().await.unwrap();
    let mut answer = [0u8; 2];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"ok");
    std::fs::remove_file(&client_path).unwrap();
}
