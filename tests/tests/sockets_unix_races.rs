//! Unix stream sockets under concurrency: many clients connecting and closing at random while
//! an accept loop serves them, the socket file removed mid-run (by someone else), then the
//! listener closed with accepts pending. Every task ends; no descriptor is left behind.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, UnixSocketAddress, a_socket};
use net_tests::rng::Rng;
use net_tests::{TempDir, within};

/// One round: an accept loop (in two tasks, so accepts are pending at the close), eight
/// clients connecting and ending at random, the file removed half-way, then the close.
async fn round(seed: u64, dir: &TempDir) {
    let selector = SelectorManager::new();
    let path = dir.join(&format!("s{seed}.sock"));
    let listener = Arc::new(
        a_socket(&selector)
            .tcp()
            .backlog(4)
            .bind(UnixSocketAddress::new(&path))
            .await
            .unwrap(),
    );
    let mut acceptors = Vec::new();
    for _ in 0..2 {
        let listener = Arc::clone(&listener);
        acceptors.push(tokio::spawn(async move {
            let mut served = Vec::new();
            loop {
                match listener.accept().await {
                    Ok(socket) => served.push(tokio::spawn(async move {
                        let mut connection = socket.connection().unwrap();
                        while let Ok(Some(line)) =
                            connection.input.read_line(1024, LineEnding::Default).await
                        {
                            if connection
                                .output
                                .write_fully(line.as_bytes())
                                .await
                                .is_err()
                                || connection.output.write_fully(b"\n").await.is_err()
                                || connection.output.flush().await.is_err()
                            {
                                break;
                            }
                        }
                        connection.socket.close();
                        connection.socket.await_closed().await;
                    })),
                    Err(Error::Closed) => break,
                    Err(e) => panic!("accept: {e:?}"),
                }
            }
            for task in served {
                task.await.unwrap();
            }
        }));
    }
    let removed_after = 20;
    let connects = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..8u64 {
        let selector = selector.clone();
        let path = path.clone();
        let connects = Arc::clone(&connects);
        clients.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed * 100 + c);
            for _ in 0..40 {
                let connected = a_socket(&selector)
                    .tcp()
                    .connect(UnixSocketAddress::new(&path))
                    .await;
                let socket = match connected {
                    Ok(socket) => socket,
                    // The file is gone.
                    Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => return,
                    // The backlog is full (documented: `EAGAIN` at once).
                    Err(Error::Io(e)) if e.raw_os_error() == Some(libc::EAGAIN) => {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    Err(e) => panic!("connect: {e:?}"),
                };
                connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut connection = socket.connection().unwrap();
                match rng.below(4) {
                    0 => drop(connection),
                    1 => connection.socket.close(),
                    _ => {
                        connection.output.write_fully(b"hello\n").await.unwrap();
                        connection.output.flush().await.unwrap();
                        // The server may be closing: an end or a reset is fine, data not.
                        if let Ok(Some(line)) =
                            connection.input.read_line(64, LineEnding::Default).await
                        {
                            assert_eq!(line, "hello");
                        }
                        if rng.below(2) == 0 {
                            connection.output.flush_and_close().await.ok();
                        }
                        connection.socket.close();
                        connection.socket.await_closed().await;
                    }
                }
            }
        }));
    }
    // Someone removes the file half-way.
    let waited = Instant::now();
    while connects.load(std::sync::atomic::Ordering::Relaxed) < removed_after
        && waited.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    std::fs::remove_file(&path).unwrap();
    for client in clients {
        within(client).await.unwrap();
    }
    listener.close();
    listener.await_closed().await;
    for acceptor in acceptors {
        within(acceptor).await.unwrap();
    }
    assert!(!path.exists());
    selector.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_clients_ending_at_random_while_the_file_goes_leave_nothing_behind() {
    let dir = TempDir::new("unix-races");
    let before = net_tests::probe::fd_count();
    let started = Instant::now();
    for seed in 1..=10 {
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
        round(seed, &dir).await;
    }
    let waited = Instant::now();
    while net_tests::probe::fd_count() > before && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = net_tests::probe::fd_count();
    assert!(
        after <= before,
        "descriptors: {before} before, {after} after"
    );
}
