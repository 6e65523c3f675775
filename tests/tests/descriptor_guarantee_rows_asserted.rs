//! Claims of the Unix-path, local-address, peer-display, backlog and path-limit rows of
//! `guarantees.md` that none of the tests the rows named asserted.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use net_sockets::{Error, SelectorManager, SocketAddress, UnixSocketAddress, a_socket};
use net_tests::harness::{rerun_self_alone, run_if_child};
use net_tests::loopback::tcp_listener;
use net_tests::{TempDir, within};

const CHILD: &str = "NET_TESTS_DESCRIPTOR_ROWS_CHILD";

/// A Unix listener bound to `address`.
async fn unix_listener(
    selector: &SelectorManager,
    address: UnixSocketAddress,
) -> net_sockets::ServerSocket {
    within(a_socket(selector).tcp().bind(address))
        .await
        .unwrap()
}

/// The error of a connect from the Unix path `local` to `target`.
async fn unix_connect_fails(selector: &SelectorManager, local: &Path, target: &Path) -> Error {
    within(
        a_socket(selector)
            .tcp()
            .local_address(UnixSocketAddress::new(local))
            .connect(UnixSocketAddress::new(target)),
    )
    .await
    .map(|_| ())
    .unwrap_err()
}

/// Row "A Unix listener (or a connecting socket's `local_address`) bound to a relative path,
/// after which the process changed its working directory": the close removes the file where
/// the bind made it, "not one at the same relative path in the new directory". (The named test
/// had nothing at that path in the new directory.) Here a socket file someone else serves sits
/// there, for the listener and for the client, and both stay, still served.
#[test]
fn a_file_at_the_same_relative_path_in_the_new_directory_is_left() {
    rerun_self_alone(
        "a_file_at_the_same_relative_path_in_the_new_directory_is_left_child",
        CHILD,
        "the new directory's file left",
    );
}

#[test]
fn a_file_at_the_same_relative_path_in_the_new_directory_is_left_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        let bound_in = TempDir::new("rows-relative-bound");
        let later_in = TempDir::new("rows-relative-later");
        let served = |dir: &TempDir, name: &str| {
            std::os::unix::net::UnixListener::bind(dir.join(name)).unwrap()
        };
        std::env::set_current_dir(bound_in.path()).unwrap();
        let listener = unix_listener(&selector, UnixSocketAddress::new("rel.sock")).await;
        let others = served(&later_in, "rel.sock");
        std::env::set_current_dir(later_in.path()).unwrap();
        listener.close();
        assert!(!bound_in.join("rel.sock").exists(), "the bound file stayed");
        assert!(
            later_in.join("rel.sock").exists(),
            "the close removed the file at the same relative path in the new directory"
        );
        // Still the other listener's: a client reaches it.
        let client = std::os::unix::net::UnixStream::connect(later_in.join("rel.sock")).unwrap();
        others.accept().unwrap();
        drop(client);

        // A connecting socket's relative `local_address`.
        std::env::set_current_dir(bound_in.path()).unwrap();
        let server =
            unix_listener(&selector, UnixSocketAddress::new(bound_in.join("srv.sock"))).await;
        let client = within(
            a_socket(&selector)
                .tcp()
                .local_address(UnixSocketAddress::new("client.sock"))
                .connect(UnixSocketAddress::new(bound_in.join("srv.sock"))),
        )
        .await
        .unwrap();
        let others_client = served(&later_in, "client.sock");
        std::env::set_current_dir(later_in.path()).unwrap();
        client.close();
        within(client.await_closed()).await;
        assert!(
            !bound_in.join("client.sock").exists(),
            "the client's file stayed"
        );
        assert!(
            later_in.join("client.sock").exists(),
            "the client's close removed the file at its relative path in the new directory"
        );
        drop(others_client);
        server.close();
        std::env::set_current_dir("/").unwrap();
        println!("the new directory's file left");
    });
}

/// Row "A Unix listener bound where a socket file is left behind ..., or where any file is; so
/// a connecting socket's `local_address`": a connect whose `local_address` is a directory or a
/// file that is not a socket fails with `AddrInUse`, its message naming the path and saying
/// what is there (a left-behind socket file: the likely cause), and what is there stays. (The
/// named tests said what is there for a listener's `bind` only.)
#[tokio::test]
async fn a_connects_local_address_where_a_file_is_says_what_is_there() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("rows-local-over");
    let target = dir.join("server.sock");
    let listener = unix_listener(&selector, UnixSocketAddress::new(&target)).await;
    let directory = dir.join("a-directory");
    std::fs::create_dir(&directory).unwrap();
    let file = dir.write("a-plain-file", b"precious");
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for (local, says) in [
        (&directory, "a directory is at"),
        (&file, "not a socket"),
        (&stale, "left behind"),
    ] {
        let e = unix_connect_fails(&selector, local, &target).await;
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{local:?}: {e:?}");
        let message = e.to_string();
        assert!(
            message.contains(&*local.to_string_lossy()) && message.contains(says),
            "{local:?}: {message}"
        );
    }
    assert!(directory.is_dir());
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    assert!(stale.exists(), "the left-behind file was removed");
    listener.close();
}

/// Row "A `connect` whose `local_address` cannot be bound": every failure's message names the
/// target as well as the local address (the named tests checked the target for `AddrInUse`
/// only), and "nothing is left open": the process's descriptor count is where it was after
/// each (checked in a child process of its own, where no other test opens descriptors).
#[test]
fn every_local_address_failure_names_the_target_and_leaves_nothing_open() {
    rerun_self_alone(
        "every_local_address_failure_names_the_target_and_leaves_nothing_open_child",
        CHILD,
        "local address failures asserted",
    );
}

#[test]
fn every_local_address_failure_names_the_target_and_leaves_nothing_open_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        let server = tcp_listener(&selector).await;
        let target = server.local_address();
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap();
        let foreign = SocketAddr::from(([192, 0, 2, 1], 0));
        let dir = TempDir::new("rows-local-target");
        let unix_target = dir.join("server.sock");
        let unix_server = unix_listener(&selector, UnixSocketAddress::new(&unix_target)).await;
        let missing = dir.join("missing").join("client.sock");
        // One of each first, so that whatever the runtime opens once is open before the count.
        for round in 0..2 {
            let before = net_tests::probe::fd_count();
            for (local, kind) in [
                (taken, ErrorKind::AddrInUse),
                (foreign, ErrorKind::AddrNotAvailable),
            ] {
                let e = within(
                    a_socket(&selector)
                        .tcp()
                        .local_address(local)
                        .connect(target.clone()),
                )
                .await
                .map(|_| ())
                .unwrap_err();
                assert_eq!(e.kind(), kind, "{e:?}");
                let message = e.to_string();
                assert!(
                    message.contains(&local.to_string()) && message.contains(&target.to_string()),
                    "{message}"
                );
            }
            let e = unix_connect_fails(&selector, &missing, &unix_target).await;
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e:?}");
            let message = e.to_string();
            assert!(
                message.contains(&*missing.to_string_lossy())
                    && message.contains(&*unix_target.to_string_lossy()),
                "{message}"
            );
            if round == 1 {
                assert_eq!(
                    net_tests::probe::fd_count(),
                    before,
                    "descriptors left open by the failed connects"
                );
            }
        }
        drop(holder);
        unix_server.close();
        server.close();
        println!("local address failures asserted");
    });
}

/// What a subscriber saw of the `connection` spans of the `net_*` crates: each one's fields.
#[derive(Clone, Default)]
struct ConnectionSpans(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for ConnectionSpans {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target().starts_with("net_")
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        /// The span's fields, as `name=value` (a `%` field's value as its `Display` shows it).
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
        if span.metadata().name() == "connection" {
            let mut fields = Fields(String::new());
            span.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Row "A Unix client bound to a path (or abstract name) with control characters": `Display`
/// escapes them "for a path as for an abstract name", and so does the `connection` span's
/// `remote`. (The named tests bound clients to paths only, and looked at `Display` alone.)
#[test]
fn an_abstract_peer_name_with_control_characters_is_shown_escaped_in_the_span_too() {
    let spans = ConnectionSpans::default();
    let _default = tracing::subscriber::set_default(spans.clone());
    let shown_all = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let selector = SelectorManager::new();
            let dir = TempDir::new("rows-abstract-display");
            let server_path = dir.join("server.sock");
            let listener = unix_listener(&selector, UnixSocketAddress::new(&server_path)).await;
            let name = format!(
                "\0rows-{}-c\nINFO forged\u{1b}[2J\u{2028}\u{202e}x",
                std::process::id()
            );
            let escaped = format!(
                "@rows-{}-c\\nINFO forged\\u{{1b}}[2J\\u{{2028}}\\u{{202e}}x",
                std::process::id()
            );
            let path_client = dir.join("p\nINFO forged\u{1b}[2J\u{2028}\u{202e}y");
            let mut shown_all = Vec::new();
            for (local, shown) in [
                (UnixSocketAddress::new(&name), escaped),
                (
                    UnixSocketAddress::new(&path_client),
                    format!(
                        "{}/p\\nINFO forged\\u{{1b}}[2J\\u{{2028}}\\u{{202e}}y",
                        dir.path().display()
                    ),
                ),
            ] {
                let client = within(
                    a_socket(&selector)
                        .tcp()
                        .local_address(local)
                        .connect(UnixSocketAddress::new(&server_path)),
                )
                .await
                .unwrap();
                let accepted = within(listener.accept()).await.unwrap();
                assert_eq!(accepted.remote_address().to_string(), shown);
                assert_eq!(client.local_address().to_string(), shown);
                drop((client, accepted));
                shown_all.push(shown);
            }
            listener.close();
            shown_all
        });
    let spans = spans.0.lock().unwrap().clone();
    for raw in ["\n", "\u{1b}", "\u{2028}", "\u{202e}"] {
        assert!(
            spans.iter().all(|fields| !fields.contains(raw)),
            "a raw {raw:?} in a connection span: {spans:?}"
        );
    }
    for shown in &shown_all {
        assert!(
            spans
                .iter()
                .any(|fields| fields.contains(&format!(" remote={shown}"))),
            "no connection span's remote is {shown:?}: {spans:?}"
        );
    }
}

/// Row "A Unix listener's backlog is full": the `connect` fails with `EAGAIN` "at once", on its
/// first poll, never waiting. (The named test bounded it by the hang limit only.)
#[tokio::test]
async fn a_connect_to_a_full_unix_backlog_fails_on_its_first_poll() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("rows-unix-backlog");
    let path = dir.join("full.sock");
    let _listener = within(
        a_socket(&selector)
            .tcp()
            .backlog(0)
            .bind(UnixSocketAddress::new(&path)),
    )
    .await
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut connect = pin!(
            a_socket(&selector)
                .tcp()
                .connect(UnixSocketAddress::new(&path))
        );
        // Its first poll, and what it gave.
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(connect.as_mut(), cx))
        })
        .await;
        let (waited, outcome) = match first {
            std::task::Poll::Ready(outcome) => (false, outcome),
            std::task::Poll::Pending => (true, within(connect).await),
        };
        match outcome {
            Ok(socket) => held.push(socket),
            Err(e) => {
                assert!(
                    matches!(&e, Error::Io(io) if io.raw_os_error() == Some(libc::EAGAIN)),
                    "{e:?}"
                );
                assert!(
                    !waited,
                    "the connect to the full backlog waited before it failed"
                );
                return;
            }
        }
    }
    panic!("the backlog never filled");
}

/// Row "A Unix socket path longer than this crate puts in a socket address": an abstract name of
/// 109 bytes fails "the same way", `bind` and `connect` alike: `InvalidInput`, the message
/// naming the name, its length and the limit. (The named test bound it only, and looked for its
/// length alone.)
#[tokio::test]
async fn an_abstract_name_too_long_is_refused_naming_it_its_length_and_the_limit() {
    let selector = SelectorManager::new();
    let base = format!("\0rows-{}-too-long-", std::process::id());
    let name = format!("{base}{}", "q".repeat(109 - base.len()));
    assert_eq!(name.len(), 109);
    for connect in [false, true] {
        let builder = a_socket(&selector).tcp();
        let address = UnixSocketAddress::new(&name);
        let e = if connect {
            within(builder.connect(address))
                .await
                .map(|_| ())
                .unwrap_err()
        } else {
            within(builder.bind(address)).await.map(|_| ()).unwrap_err()
        };
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
        let message = e.to_string();
        assert!(
            message.contains(&base[1..])
                && message.contains("109 bytes")
                && message.contains("108"),
            "connect {connect}: {message}"
        );
    }
}

/// Row "A `std` socket to adopt ... that holds a descriptor of the wrong type, family or IP
/// protocol": "a listening TCP or Unix stream socket is taken whatever its wrapper: a Unix
/// listener in a `TcpListener` becomes a Unix `ServerSocket`" (and a TCP one in a
/// `UnixListener` a TCP one), and "Multipath TCP is taken as TCP, as TCP peers reach it", a
/// listener and a connected stream. (The named tests refused sockets only.) The Multipath TCP
/// part is skipped where the kernel has none.
#[tokio::test]
async fn listeners_are_taken_whatever_their_wrapper_and_multipath_tcp_as_tcp() {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;

    use net_sockets::{ServerSocket, Socket, SocketAddress};

    let selector = SelectorManager::new();
    let dir = TempDir::new("rows-adopt-wrapper");
    let path = dir.join("listener.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let adopted =
        ServerSocket::from_std(&selector, std::net::TcpListener::from(OwnedFd::from(unix)))
            .unwrap();
    assert_eq!(
        adopted.local_address(),
        SocketAddress::Unix(UnixSocketAddress::new(&path))
    );
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let accepted = within(adopted.accept()).await.unwrap();
    assert!(
        accepted.remote_address().as_unix().is_some(),
        "{accepted:?}"
    );
    client.write_all(b"u").unwrap();
    let mut connection = accepted.connection().unwrap();
    assert_eq!(
        &within(connection.input.read_bytes(1)).await.unwrap()[..],
        b"u"
    );
    adopted.close();

    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = tcp.local_addr().unwrap();
    let adopted = ServerSocket::from_std(
        &selector,
        std::os::unix::net::UnixListener::from(OwnedFd::from(tcp)),
    )
    .unwrap();
    assert_eq!(adopted.local_address(), SocketAddress::from(address));
    let client = std::net::TcpStream::connect(address).unwrap();
    let accepted = within(adopted.accept()).await.unwrap();
    assert_eq!(
        accepted.remote_address(),
        SocketAddress::from(client.local_addr().unwrap())
    );
    adopted.close();

    /// `IPPROTO_MPTCP`.
    const MPTCP: i32 = 262;
    let multipath = || {
        socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::from(MPTCP)),
        )
    };
    let Ok(raw) = multipath() else {
        net_tests::harness::skipped("no Multipath TCP here: that part");
        return;
    };
    raw.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    raw.listen(8).unwrap();
    let address = raw.local_addr().unwrap().as_socket().unwrap();
    let adopted =
        ServerSocket::from_std(&selector, std::net::TcpListener::from(OwnedFd::from(raw))).unwrap();
    // A TCP peer reaches it.
    let mut client = std::net::TcpStream::connect(address).unwrap();
    let accepted = within(adopted.accept()).await.unwrap();
    client.write_all(b"m").unwrap();
    let mut connection = accepted.connection().unwrap();
    assert_eq!(
        &within(connection.input.read_bytes(1)).await.unwrap()[..],
        b"m"
    );
    // A connected Multipath TCP stream is taken too, and reaches a TCP peer.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let raw = multipath().unwrap();
    raw.connect(&server.local_addr().unwrap().into()).unwrap();
    let (mut peer, _) = server.accept().unwrap();
    let socket =
        Socket::from_std(&selector, std::net::TcpStream::from(OwnedFd::from(raw))).unwrap();
    assert_eq!(
        socket.remote_address(),
        SocketAddress::from(server.local_addr().unwrap())
    );
    let mut connection = socket.connection().unwrap();
    connection
        .output
        .write_bytes(bytes::Bytes::from_static(b"s"))
        .await
        .unwrap();
    connection.output.flush().await.unwrap();
    let mut got = [0];
    peer.set_read_timeout(Some(net_tests::HANG_LIMIT)).unwrap();
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"s");
    adopted.close();
}

/// Row "A peer sends an out-of-band byte (`MSG_OOB` ...) with more input after it, all queued
/// before the read": "a peer that waits for an answer to what it sent after such a byte waits
/// until `socket_timeout`" (the read ends with `Timeout` then, the rest still queued), and
/// "nothing is lost or reordered": after that timeout, once more input arrives, the same reads
/// get every byte in order, the out-of-band byte not among them. (The named tests sent more
/// input a moment later, whatever the read did meanwhile, with no timeout.)
#[tokio::test]
async fn a_read_stopped_at_an_out_of_band_mark_times_out_and_loses_nothing() {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use net_io::LineEnding;

    let selector = SelectorManager::new();
    let dir = TempDir::new("rows-oob-timeout");
    let path = dir.join("s.sock");
    let timeout = Duration::from_millis(300);
    let listener = within(
        a_socket(&selector)
            .tcp()
            .socket_timeout(timeout)
            .bind(UnixSocketAddress::new(&path)),
    )
    .await
    .unwrap();
    let mut peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let socket = within(listener.accept()).await.unwrap();
    // A Unix send puts the bytes in the receiving socket's queue before it returns.
    peer.write_all(b"abc").unwrap();
    socket2::SockRef::from(&peer)
        .send_out_of_band(b"X")
        .unwrap();
    peer.write_all(b"def\n").unwrap();
    let mut connection = socket.connection().unwrap();
    let started = Instant::now();
    let e = within(connection.input.read_line(64, LineEnding::Default))
        .await
        .unwrap_err();
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    peer.write_all(b"more\n").unwrap();
    let first = within(connection.input.read_line(64, LineEnding::Default)).await;
    let second = within(connection.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(first.unwrap().as_deref(), Some("abcdef"));
    assert_eq!(second.unwrap().as_deref(), Some("more"));
    listener.close();
}

/// Row "A peer sends ... on a Unix socket bytes with descriptors attached (`SCM_RIGHTS`)": "the
/// descriptors are closed by the kernel, never installed": once the bytes that came with one
/// were read, this process holds the passed file only where the sender opened it. (The named
/// tests looked at the bytes only.) The file is one of this test's own, so that no other test
/// of the process opens it meanwhile.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[tokio::test]
async fn descriptors_passed_with_the_bytes_read_are_never_installed() {
    use std::io::Write;

    use net_io::LineEnding;

    /// How many of this process's descriptors are open on `file`.
    fn opened(file: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target == file)
            .count()
    }

    let selector = SelectorManager::new();
    let dir = TempDir::new("rows-rights-closed");
    let path = dir.join("s.sock");
    let listener = unix_listener(&selector, UnixSocketAddress::new(&path)).await;
    let mut peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let socket = within(listener.accept()).await.unwrap();
    let file = dir.write("passed", b"passed");
    let passed = std::fs::File::open(&file).unwrap();
    assert_eq!(opened(&file), 1);
    let mut connection = socket.connection().unwrap();
    for _ in 0..3 {
        net_tests::fault::send_with_a_descriptor(&peer, b"abc", &passed);
        let came = within(connection.input.read_bytes(3)).await.unwrap();
        assert_eq!(&came[..], b"abc");
        peer.write_all(b"def\n").unwrap();
        let line = within(connection.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("def"));
    }
    assert_eq!(
        opened(&file),
        1,
        "a passed descriptor was installed in this process"
    );
    drop(passed);
    assert_eq!(opened(&file), 0);
    listener.close();
}

/// Row "A host with `net.ipv6.bindv6only = 1`": there IPv6 sockets are IPv6-only unless told
/// otherwise, yet a TCP connect to an IPv4 peer in its IPv4-mapped form (`[::ffff:127.0.0.1]:p`)
/// goes through, with no `local_address` or from `[::]:0` (which reaches both families, as the
/// row on local addresses of the other family says), both ends reporting the addresses as on
/// any host. (Before, each failed with the OS's `ENETUNREACH`, kind `NetworkUnreachable`,
/// "Network is unreachable": a routing fault, though the route is there.) In a network namespace
/// of its own.
#[test]
fn a_tcp_connect_to_an_ipv4_mapped_peer_goes_through_where_ipv6_is_ipv6_only() {
    net_tests::harness::rerun_self_in_own_netns(
        "a_tcp_connect_to_an_ipv4_mapped_peer_goes_through_where_ipv6_is_ipv6_only_child",
        CHILD,
        "mapped peer reached",
    );
}

#[test]
fn a_tcp_connect_to_an_ipv4_mapped_peer_goes_through_where_ipv6_is_ipv6_only_child() {
    run_if_child(CHILD, async {
        std::fs::write("/proc/sys/net/ipv6/bindv6only", "1").unwrap();
        let selector = SelectorManager::new();
        let server = tcp_listener(&selector).await;
        let port = server.port().unwrap();
        let mapped = SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(), port);
        let unspecified = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
        for local in [None, Some(unspecified)] {
            let mut builder = a_socket(&selector).tcp();
            if let Some(local) = local {
                builder = builder.local_address(local);
            }
            let client = within(builder.connect(mapped))
                .await
                .unwrap_or_else(|e| panic!("from {local:?}: {e:?}"));
            let accepted = within(server.accept()).await.unwrap();
            assert_eq!(client.remote_address(), SocketAddress::from(mapped));
            let client_local = client.local_address().as_inet().unwrap().socket_addr();
            assert_eq!(
                client_local.ip(),
                std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
                "from {local:?}"
            );
            assert_eq!(
                accepted.remote_address(),
                SocketAddress::from(SocketAddr::from(([127, 0, 0, 1], client_local.port())))
            );
        }
        server.close();
        println!("mapped peer reached");
    });
}
