//! A server that starts a child process (`std::process::Command`, CGI-like work) leaks none of
//! the descriptors the libraries made into it: every socket (listeners, accepted and connected
//! ones, PROXY protocol, UDP, Unix, TLS, adopted ones), and the selectors' own (their
//! runtimes' epoll and eventfd descriptors), is close-on-exec. In a test binary of its own
//! with a single test, so that no other test makes descriptors meanwhile.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use net_sockets::{
    ProxyProtocol, SelectorManager, ServerSocket, Socket, SocketAddress, UnixSocketAddress,
    a_socket,
};
use net_tests::pki::Pki;
use net_tests::{TempDir, within};

/// What each open descriptor of this process refers to (`socket:[123]`, `anon_inode:[eventfd]`,
/// a path), by number.
fn own_descriptors() -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // The directory's own descriptor is gone by the time it is read.
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.display().to_string();
            // The listing's own descriptor.
            if !target.starts_with("/proc/") {
                found.push((fd, target));
            }
        }
    }
    found
}

/// The descriptors a child process (a shell) holds, `(number, target)`, but for 0, 1 and 2,
/// read by the child itself through `/proc/self/fd`.
fn child_descriptors() -> Vec<(i32, String)> {
    let output = net_tests::harness::output(Command::new("sh").arg("-c").arg(
        "for fd in /proc/$$/fd/*; do printf '%s %s\\n' \"${fd##*/}\" \"$(readlink \"$fd\")\"; done",
    ))
    .expect("start sh");
    assert!(output.status.success(), "the child failed: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (fd, target) = line.split_once(' ')?;
            let fd: i32 = fd.parse().ok()?;
            (fd > 2).then(|| (fd, target.to_owned()))
        })
        .collect()
}

/// Asserts that a child started now inherits none of the descriptors this process opened since
/// `before` (a listing of [`own_descriptors`]): sockets, pipes, the runtimes' own, and those
/// of files in `dir` (a Unix socket file's, which pins its inode); and that the test sees some
/// (`at_least`), of which `files` of files in `dir`.
fn assert_child_inherits_none(
    before: &[(i32, String)],
    dir: &Path,
    at_least: usize,
    files: usize,
    what: &str,
) {
    let dir = dir.display().to_string();
    let new: Vec<(i32, String)> = own_descriptors()
        .into_iter()
        .filter(|d| !before.contains(d))
        .filter(|(_, target)| {
            target.starts_with("socket:")
                || target.starts_with("anon_inode:")
                || target.starts_with("pipe:")
                || target.starts_with(&dir)
        })
        .collect();
    let in_dir = new.iter().filter(|(_, t)| t.starts_with(&dir)).count();
    assert!(
        in_dir >= files,
        "{what}: only {in_dir} descriptors of files in {dir} seen: {new:?}"
    );
    assert!(
        new.len() >= at_least,
        "{what}: only {} new descriptors seen: {new:?}",
        new.len()
    );
    // Sockets and pipes by their inode; the `anon_inode:` ones (epoll, eventfd) share one
    // name, so by their name: the child may hold none of that kind that this process did not
    // hold before.
    let new: BTreeSet<String> = new.into_iter().map(|(_, target)| target).collect();
    let leaked: Vec<(i32, String)> = child_descriptors()
        .into_iter()
        .filter(|d| new.contains(&d.1) && !before.contains(d))
        .collect();
    assert!(
        leaked.is_empty(),
        "{what}: the child process inherited {leaked:?}"
    );
}

async fn accepted_and_connected(
    selector: &SelectorManager,
    listener: &ServerSocket,
) -> [Socket; 2] {
    let address = listener.local_address();
    let (accepted, connected) = within(async {
        tokio::join!(listener.accept(), a_socket(selector).tcp().connect(address))
    })
    .await;
    [accepted.unwrap(), connected.unwrap()]
}

#[test]
fn no_descriptor_leaks_into_a_child_process() {
    // The control first: a socket without close-on-exec is seen in the child (the check
    // works).
    let before = own_descriptors();
    let control = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&control).set_cloexec(false).unwrap();
    let new: Vec<String> = own_descriptors()
        .into_iter()
        .filter(|d| !before.contains(d))
        .map(|(_, target)| target)
        .collect();
    let child = child_descriptors();
    assert!(
        new.iter()
            .all(|target| child.iter().any(|(_, t)| t == target)),
        "the child does not show a descriptor it inherits: {new:?} not in {child:?}"
    );
    drop(control);

    let before = own_descriptors();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = TempDir::new("children");
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let busy = SelectorManager::with_busy_poll(Duration::from_millis(5));
        let mut held: Vec<Socket> = Vec::new();

        // TCP: a listener, an accepted and a connected socket; the same with PROXY headers.
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        held.extend(accepted_and_connected(&selector, &listener).await);
        let proxied = a_socket(&selector)
            .tcp()
            .proxy_protocol(ProxyProtocol::Required)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = proxied.port().unwrap();
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 9002\r\n")
            .unwrap();
        held.push(within(proxied.accept()).await.unwrap());
        // A busy-polling selector's sockets.
        let busy_listener = a_socket(&busy).tcp().bind(("127.0.0.1", 0)).await.unwrap();
        held.extend(accepted_and_connected(&busy, &busy_listener).await);

        // A selector of its own runtime, and a connect to a host name (the resolver runs on
        // a blocking thread).
        let own = SelectorManager::builder()
            .worker_threads(1)
            .build()
            .unwrap();
        let own_listener = a_socket(&own).tcp().bind(("127.0.0.1", 0)).await.unwrap();
        let port = own_listener.port().unwrap();
        let (accepted, by_name) = within(async {
            tokio::join!(
                own_listener.accept(),
                a_socket(&own).tcp().connect(("localhost", port))
            )
        })
        .await;
        held.extend([accepted.unwrap(), by_name.unwrap()]);

        // UDP, bound and connected.
        let bound = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let connected_udp = a_socket(&selector)
            .udp()
            .connect(bound.local_address())
            .await
            .unwrap();

        // Unix: a listener, an accepted and a connected socket (one bound to a path of its
        // own too).
        let path = UnixSocketAddress::new(dir.join("server.sock"));
        let unix = a_socket(&selector).tcp().bind(path.clone()).await.unwrap();
        held.extend(accepted_and_connected(&selector, &unix).await);
        let (accepted, bound_client) = within(async {
            tokio::join!(
                unix.accept(),
                a_socket(&selector)
                    .tcp()
                    .local_address(UnixSocketAddress::new(dir.join("client.sock")))
                    .connect(SocketAddress::from(path.clone()))
            )
        })
        .await;
        held.extend([accepted.unwrap(), bound_client.unwrap()]);

        // Adopted from `std` (close-on-exec there, as `std` makes every socket).
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std_stream = std::net::TcpStream::connect(std_listener.local_addr().unwrap()).unwrap();
        let adopted_listener = ServerSocket::from_std(&selector, std_listener).unwrap();
        held.push(Socket::from_std(&selector, std_stream).unwrap());
        held.push(within(adopted_listener.accept()).await.unwrap());

        // TLS, both ends.
        let pki = Pki::generate();
        let tls_listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let (tls_server, tls_client) =
            net_tests::tls::pair_of(&selector, &tls_listener, &pki).await;

        // 7 listeners, 14 streams (one of them the PROXY client's own), 2 UDP sockets, 2 TLS
        // sockets, the runtimes' epoll and eventfd descriptors (the test's and the selector's
        // own: 4), and the 2 that pin the socket files of the Unix listener and of the client
        // bound to a path (`O_PATH`).
        assert_child_inherits_none(
            &before,
            dir.path(),
            7 + 14 + 2 + 2 + 4 + 2,
            2,
            "every kind of socket",
        );

        // As documented, `from_std` leaves the flag as it finds it: a listener adopted
        // without it (made from an inherited descriptor) is inherited, until it is set.
        let inheritable = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&inheritable)
            .set_cloexec(false)
            .unwrap();
        let target = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&inheritable)
        ))
        .unwrap()
        .display()
        .to_string();
        let adopted_inheritable = ServerSocket::from_std(&selector, inheritable).unwrap();
        assert!(
            child_descriptors().iter().any(|(_, t)| *t == target),
            "an adopted socket without close-on-exec was not inherited"
        );
        adopted_inheritable
            .with_sock_ref(|s| s.set_cloexec(true))
            .unwrap();
        assert!(
            !child_descriptors().iter().any(|(_, t)| *t == target),
            "an adopted socket made close-on-exec was inherited"
        );
        drop(adopted_inheritable);

        drop((held, tls_server, tls_client, bound, connected_udp, client));
        drop((
            listener,
            proxied,
            busy_listener,
            unix,
            adopted_listener,
            tls_listener,
        ));
        drop(own_listener);
        selector.close();
        busy.close();
        own.close();
    });
}
