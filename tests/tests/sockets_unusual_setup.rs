//! Stream-socket set-up under unusual inputs: adopting descriptors that are not sockets at all.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;

use net_sockets::{
    BoundDatagramSocket, ConnectedDatagramSocket, Error, SelectorManager, ServerSocket, Socket,
};
use net_tests::probe::fd_count;

/// One test at a time: one counts this process's descriptors.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `test` alone, on a runtime of its own.
fn run(test: impl std::future::Future<Output = ()>) {
    let _serial = serial();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// A `std` wrapper holds whatever descriptor it was made from (`From<OwnedFd>` is safe code),
/// also one that is no socket at all (a device, a file). Adopting it is the documented
/// `InvalidInput` error of a descriptor of the wrong kind, as for a socket of the wrong type,
/// and the descriptor is closed (one owner, no leak). (Before, it was the raw `ENOTSOCK`, of
/// kind `Uncategorized`, which no caller can match on.)
#[test]
fn a_descriptor_that_is_not_a_socket_is_refused_as_invalid_input() {
    run(a_descriptor_that_is_not_a_socket_is_refused_as_invalid_input_body());
}

async fn a_descriptor_that_is_not_a_socket_is_refused_as_invalid_input_body() {
    let selector = SelectorManager::new();
    let refused = |what: &str, e: Error| {
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e:?}");
        assert!(e.to_string().contains("not a socket"), "{what}: {e}");
    };
    let dir = net_tests::TempDir::new("adopt-not-a-socket");
    let file = dir.write("plain", "x");
    // Each wrapper of each adoption, over a character device and a regular file.
    for round in 0..2 {
        let not_a_socket = || -> OwnedFd {
            if round == 0 {
                OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
            } else {
                OwnedFd::from(std::fs::File::open(&file).unwrap())
            }
        };
        let before = fd_count();
        refused(
            "TcpStream",
            Socket::from_std(&selector, std::net::TcpStream::from(not_a_socket())).unwrap_err(),
        );
        refused(
            "UnixStream",
            Socket::from_std(
                &selector,
                std::os::unix::net::UnixStream::from(not_a_socket()),
            )
            .unwrap_err(),
        );
        refused(
            "TcpListener",
            ServerSocket::from_std(&selector, std::net::TcpListener::from(not_a_socket()))
                .unwrap_err(),
        );
        refused(
            "UnixListener",
            ServerSocket::from_std(
                &selector,
                std::os::unix::net::UnixListener::from(not_a_socket()),
            )
            .unwrap_err(),
        );
        refused(
            "bound UdpSocket",
            BoundDatagramSocket::from_std(&selector, std::net::UdpSocket::from(not_a_socket()))
                .unwrap_err(),
        );
        refused(
            "connected UdpSocket",
            ConnectedDatagramSocket::from_std(&selector, std::net::UdpSocket::from(not_a_socket()))
                .unwrap_err(),
        );
        assert_eq!(
            fd_count(),
            before,
            "round {round}: a descriptor was left open"
        );
    }
}

/// Two listeners on distinct abstract names that differ only where a filesystem path would be
/// the same (a trailing `/`, a `//`, a `/./`: every byte of an abstract name is its own) are two
/// sockets, and their addresses are not equal, nor hashed alike: `SocketAddress` equality is
/// the socket's identity. (Before, `UnixSocketAddress` compared its `PathBuf` component by
/// component, so `"\0svc"` and `"\0svc/"` were equal, and a map keyed by address merged them.)
#[test]
fn abstract_names_that_differ_in_any_byte_are_different_addresses() {
    run(abstract_names_that_differ_in_any_byte_are_different_addresses_body());
}

async fn abstract_names_that_differ_in_any_byte_are_different_addresses_body() {
    use std::collections::HashSet;

    use net_sockets::{SocketAddress, UnixSocketAddress, a_socket};

    let selector = SelectorManager::new();
    let base = format!("\0net-sockets-unusual-setup-{}", std::process::id());
    let names = [
        base.clone(),
        format!("{base}/"),
        format!("{base}/x"),
        format!("{base}//x"),
        format!("{base}/./x"),
    ];
    let mut listeners = Vec::new();
    for name in &names {
        let listener = a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(name))
            .await
            .unwrap_or_else(|e| panic!("bind {name:?}: {e}"));
        assert_eq!(
            listener.local_address(),
            SocketAddress::Unix(UnixSocketAddress::new(name))
        );
        listeners.push(listener);
    }
    let addresses: Vec<SocketAddress> = listeners.iter().map(|l| l.local_address()).collect();
    for (i, a) in addresses.iter().enumerate() {
        for (j, b) in addresses.iter().enumerate() {
            assert_eq!(a == b, i == j, "{a:?} and {b:?}");
            let order = a.as_unix().unwrap().cmp(b.as_unix().unwrap());
            assert_eq!(
                order == std::cmp::Ordering::Equal,
                i == j,
                "{a:?} and {b:?}"
            );
        }
    }
    let distinct: HashSet<&SocketAddress> = addresses.iter().collect();
    assert_eq!(distinct.len(), names.len(), "{addresses:?}");
}

/// A Unix client picks its own path (any byte but NUL), and a server shows its peers'
/// addresses (its `connection` span's `remote`, its own log lines): a control character in
/// that path — a newline that starts a forged log line, a terminal escape — is escaped by
/// `Display`, as it is in an abstract name, never written raw. (Before, a path was displayed
/// as it is, so a local client could write lines of its own into a server's log.)
#[test]
fn a_unix_peer_path_with_control_characters_is_displayed_escaped() {
    run(a_unix_peer_path_with_control_characters_is_displayed_escaped_body());
}

async fn a_unix_peer_path_with_control_characters_is_displayed_escaped_body() {
    use net_sockets::{UnixSocketAddress, a_socket};

    let selector = SelectorManager::new();
    let dir = net_tests::TempDir::new("unusual-setup-display");
    let server_path = dir.join("server.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&server_path))
        .await
        .unwrap();
    let client_path = dir.join("c\nINFO forged line\u{1b}[2J\r.sock");
    let client = a_socket(&selector)
        .tcp()
        .local_address(UnixSocketAddress::new(&client_path))
        .connect(UnixSocketAddress::new(&server_path))
        .await
        .unwrap();
    let accepted = net_tests::within(listener.accept()).await.unwrap();
    for shown in [
        accepted.remote_address().to_string(),
        client.local_address().to_string(),
        UnixSocketAddress::new(&client_path).to_string(),
    ] {
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(
            shown.ends_with("/c\\nINFO forged line\\u{1b}[2J\\r.sock"),
            "{shown:?}"
        );
    }
    // A path without control characters is shown as it is.
    assert_eq!(
        listener.local_address().to_string(),
        server_path.display().to_string()
    );
}
