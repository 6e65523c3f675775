//! Unix listeners at their end: connections still queued in the kernel when the listener
//! closes, the socket file's directory gone or its path taken by something else meanwhile, and
//! many binds of one path at once.

use std::io::ErrorKind;
use std::sync::Arc;

use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::{TempDir, within};

/// `close` says: connections still in the kernel's listen queue are reset, their clients read
/// `ConnectionReset`. So for a Unix listener: each queued client's read fails with it.
#[tokio::test]
async fn unix_clients_queued_at_the_close_read_connection_reset() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-queued");
    let path = dir.join("s.sock");
    let address = UnixSocketAddress::new(&path);
    let listener = a_socket(&selector)
        .tcp()
        .bind(address.clone())
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let socket = within(a_socket(&selector).tcp().connect(address.clone()))
            .await
            .unwrap();
        let mut connection = socket.connection().unwrap();
        connection.output.write_fully(b"never read").await.unwrap();
        connection.output.flush().await.unwrap();
        clients.push(connection);
    }
    listener.close();
    for mut connection in clients {
        let mut room = [0u8; 16];
        let read = within(connection.input.read_available(&mut room)).await;
        match read {
            Err(net_io::Error::Io(e)) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("a queued client read {other:?}, not ConnectionReset"),
        }
    }
    assert!(!path.exists());
}

/// The socket file's directory removed while the listener runs, and made again with another
/// file at the path: the listener closes without error and leaves that file alone.
#[tokio::test]
async fn a_listener_whose_directory_was_replaced_leaves_the_new_file() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-dir-gone");
    let sub = dir.join("run");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("s.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    std::fs::remove_dir_all(&sub).unwrap();
    std::fs::create_dir(&sub).unwrap();
    // Another service's socket at the same path.
    let other = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.close();
    listener.await_closed().await;
    assert!(path.exists(), "the other service's file was removed");
    let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    drop(other);
    // And one whose path is a plain file now.
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(dir.join("t.sock")))
        .await
        .unwrap();
    std::fs::remove_file(dir.join("t.sock")).unwrap();
    std::fs::write(dir.join("t.sock"), b"data").unwrap();
    drop(listener);
    assert_eq!(std::fs::read(dir.join("t.sock")).unwrap(), b"data");
}

/// Many binds of one path at once: one wins, every other fails with `AddrInUse`, and none of
/// the losers removes the winner's file (a client reaches the winner after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_binds_of_one_path_at_once_leave_the_winner_its_file() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-bind-race");
    for round in 0..20 {
        let path = dir.join(&format!("s{round}.sock"));
        let start = Arc::new(tokio::sync::Barrier::new(6));
        let mut binds = Vec::new();
        for _ in 0..6 {
            let selector = selector.clone();
            let path = path.clone();
            let start = Arc::clone(&start);
            binds.push(tokio::spawn(async move {
                start.wait().await;
                a_socket(&selector)
                    .tcp()
                    .bind(UnixSocketAddress::new(&path))
                    .await
            }));
        }
        let mut winners = Vec::new();
        for bind in binds {
            match within(bind).await.unwrap() {
                Ok(listener) => winners.push(listener),
                Err(e) => assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}"),
            }
        }
        assert_eq!(winners.len(), 1);
        let winner = winners.pop().unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        within(winner.accept()).await.unwrap();
        winner.close();
        assert!(!path.exists());
    }
}
