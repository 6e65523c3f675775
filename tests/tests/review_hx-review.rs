//! Review of the close paths changed in this pass (listeners stopped at their close, closes
//! that wait for one another, lingering closes at a runtime's end).

use std::io::{Read as _, Write as _};
use std::time::Duration;

use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::TempDir;

/// Accepts, within a bounded time, the connection `kept` (a copy of a listening socket) has
/// in its queue.
fn accept_on(kept: &std::net::TcpListener) -> std::io::Result<std::net::TcpStream> {
    kept.set_nonblocking(true)?;
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match kept.accept() {
            Ok((stream, _)) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > until {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A listening socket adopted with `from_std` (or from systemd, which keeps a copy of it so
/// that connections queue while the service restarts, and hands the same socket to the next
/// instance) is shared: closing the adopted listener releases this process's descriptor, and
/// must leave the socket listening for the other copies. (Stopping it with
/// `shutdown(SHUT_RD)` stops it for every copy: systemd's socket no longer listens, the next
/// instance's accept fails, and connects are refused.)
#[tokio::test]
async fn closing_an_adopted_tcp_listener_leaves_the_other_copies_listening() {
    for how in ["close", "drop", "selector"] {
        let selector = SelectorManager::new();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = std_listener.local_addr().unwrap();
        // The supervisor's copy.
        let kept = std_listener.try_clone().unwrap();
        let server = ServerSocket::from_std(&selector, std_listener).unwrap();
        match how {
            "close" => server.close(),
            "drop" => drop(server),
            _ => selector.close(),
        }
        let mut client = std::net::TcpStream::connect(address)
            .unwrap_or_else(|e| panic!("{how}: a connect to the still shared socket: {e}"));
        let mut accepted = accept_on(&kept)
            .unwrap_or_else(|e| panic!("{how}: the supervisor's copy accepts: {e}"));
        client.write_all(b"hi").unwrap();
        let mut got = [0; 2];
        accepted.set_nonblocking(false).unwrap();
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }
}

/// The same for a Unix listener.
#[tokio::test]
async fn closing_an_adopted_unix_listener_leaves_the_other_copies_listening() {
    let dir = TempDir::new("hx-review");
    for (i, how) in ["close", "drop", "selector"].into_iter().enumerate() {
        let selector = SelectorManager::new();
        let path = dir.join(&format!("s{i}"));
        let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let kept = std_listener.try_clone().unwrap();
        let server = ServerSocket::from_std(&selector, std_listener).unwrap();
        match how {
            "close" => server.close(),
            "drop" => drop(server),
            _ => selector.close(),
        }
        let connected = std::os::unix::net::UnixStream::connect(&path);
        assert!(
            connected.is_ok(),
            "{how}: a connect to the still shared socket: {connected:?}"
        );
        kept.set_nonblocking(true).unwrap();
        assert!(
            kept.accept().is_ok(),
            "{how}: the supervisor's copy accepts"
        );
    }
}

/// A listener this process bound and handed over (its descriptor duplicated through
/// `with_sock_ref` and passed to a successor, which takes over the port for a restart without
/// downtime): closing the old one leaves the successor's copy listening, as closing any
/// descriptor of a socket does.
#[tokio::test]
async fn closing_a_listener_whose_socket_was_handed_over_leaves_the_successor_listening() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    let successor: std::net::TcpListener = server.with_sock_ref(|s| s.try_clone()).unwrap().into();
    server.close();
    let connected = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(
        connected.is_ok(),
        "a connect to the successor's socket: {connected:?}"
    );
    assert!(accept_on(&successor).is_ok(), "the successor accepts");
}
