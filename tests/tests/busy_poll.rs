//! `SelectorManager::with_busy_poll`: a selector whose reads keep polling for `window` once they
//! begin waiting. Its sockets work as any selector's (TCP, Unix, TLS, a peer sending byte by
//! byte); it spends no CPU once the window passes; closing it ends a read that polls.
//!
//! How much latency it saves is measured by `netbench` (`pingpong-1`, where `sockets-server`
//! busy-polls as shipped, against `nobusy-pingpong-1`, where it does not), not asserted here.

use std::time::{Duration, Instant};

use net_sockets::SelectorManager;
use net_tests::loopback::{Channels, echo_server, tcp_listener};
use net_tests::pki::TestCa;
use net_tests::{payload, within};
use net_tls::TlsExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Round trips of a small message through an echo server made with the busy-polling
/// `selector`, from a plain tokio client; the client, still connected (the echo's read waits).
async fn ping_pong(port: u16, rounds: usize) -> TcpStream {
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut back = [0; 5];
    for round in 0..rounds {
        client.write_all(b"ping\n").await.unwrap();
        within(client.read_exact(&mut back)).await.unwrap();
        assert_eq!(&back, b"ping\n", "round {round}");
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_polling_selector_serves_tcp_unix_and_tls() {
    let selector = SelectorManager::with_busy_poll(Duration::from_millis(1));
    let server = echo_server(&selector).await;
    drop(ping_pong(server.port().unwrap(), 500).await);

    // A peer that sends one byte at a time, slower than the window: every byte arrives.
    let mut client = TcpStream::connect(("127.0.0.1", server.port().unwrap()))
        .await
        .unwrap();
    for byte in b"slow" {
        client.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    client.shutdown().await.unwrap();
    let mut back = Vec::new();
    within(client.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, b"slow");

    // Unix.
    let dir = net_tests::TempDir::new("busy-poll");
    let path = dir.path().join("echo.sock");
    let unix = net_sockets::a_socket(&selector)
        .tcp()
        .bind(net_sockets::UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let unix = net_tests::loopback::serve_echo(unix);
    let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
    let data = payload(256 * 1024);
    let sending = data.clone();
    let (mut reader, mut writer) = client.split();
    let (sent, back) = tokio::join!(
        async {
            writer.write_all(&sending).await.unwrap();
            writer.shutdown().await.unwrap();
        },
        async {
            let mut back = Vec::new();
            within(reader.read_to_end(&mut back)).await.unwrap();
            back
        }
    );
    let () = sent;
    assert_eq!(back, data);
    drop(client);
    unix.close();

    // TLS: 100 lines in ping-pong over a session.
    let ca = TestCa::new("busy poll ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let served = tokio::spawn(async move {
        let mut tls = net_tests::tls::accept(&listener, &config).await;
        let (mut input, mut output) = Channels::open_channels(&mut tls, true).unwrap();
        while let Some(line) = input.read_utf8_line(1024).await.unwrap() {
            output
                .write_string_utf8(&format!("{line}\n"))
                .await
                .unwrap();
        }
    });
    let client = net_sockets::a_socket(&SelectorManager::new())
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let config = ca.client_config().server_name("localhost").build().unwrap();
    let mut tls = within(client.tls(config)).await.unwrap();
    let (mut input, mut output) = Channels::open_channels(&mut tls, true).unwrap();
    for round in 0..100 {
        output
            .write_string_utf8(&format!("line {round}\n"))
            .await
            .unwrap();
        let line = within(input.read_utf8_line(1024)).await.unwrap();
        assert_eq!(line.as_deref(), Some(format!("line {round}").as_str()));
    }
    output.flush_and_close().await.unwrap();
    within(served).await.unwrap();
    selector.close();
}

/// The CPU time (user and system) the threads named `name` of this process have used.
fn cpu_of_threads(name: &str) -> Duration {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
            continue;
        };
        ticks += net_tests::probe::stat_ticks(&stat).unwrap();
    }
    net_tests::probe::CLOCK_TICK * u32::try_from(ticks).unwrap()
}

/// A runtime of two workers named `name` (for [`cpu_of_threads`]).
fn runtime_of_threads_named(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// The CPU time the threads named `name` spend during the next 500 ms.
async fn cpu_of_threads_in_half_a_second(name: &str) -> Duration {
    let before = cpu_of_threads(name);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cpu_of_threads(name) - before
}

/// After traffic, once the window has passed with no read beginning to wait, the runtime's
/// threads spend (next to) nothing: 500 ms of an idle busy-polling selector costs under 100 ms
/// of CPU (a poll that never stopped would cost about 500 ms, a core's worth).
#[test]
fn a_busy_polling_selector_spends_no_cpu_once_its_window_passes() {
    const THREAD: &str = "busy-poll-idle";
    let runtime = runtime_of_threads_named(THREAD);
    runtime.block_on(async {
        let selector = SelectorManager::with_busy_poll(Duration::from_millis(20));
        let server = echo_server(&selector).await;
        // The echo task's read now waits, with the client idle: polling for 20 ms, then none.
        let _client = ping_pong(server.port().unwrap(), 200).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        let spent = cpu_of_threads_in_half_a_second(THREAD).await;
        assert!(
            spent < Duration::from_millis(100),
            "{spent:?} of CPU in {:?} idle",
            start.elapsed()
        );
        selector.close();
    });
}

/// Closing the selector ends a read that polls (with an hour's window): the read fails with
/// `SelectorClosed`, and the runtime's threads then spend (next to) nothing.
#[test]
fn closing_a_busy_polling_selector_ends_the_polling() {
    const THREAD: &str = "busy-poll-close";
    let runtime = runtime_of_threads_named(THREAD);
    runtime.block_on(async {
        let selector = SelectorManager::with_busy_poll(Duration::from_secs(3600));
        let listener = tcp_listener(&selector).await;
        let _client = TcpStream::connect(("127.0.0.1", listener.port().unwrap()))
            .await
            .unwrap();
        let mut socket = listener.accept().await.unwrap();
        let mut input = socket.open_read_channel().unwrap();
        let read = tokio::spawn(async move { input.read_utf8_line(1024).await });
        // Polling, for an hour.
        tokio::time::sleep(Duration::from_millis(50)).await;
        selector.close();
        let failed = within(read).await.unwrap().unwrap_err();
        assert!(
            matches!(
                net_sockets::Error::from(failed),
                net_sockets::Error::SelectorClosed
            ),
            "the read ends with the selector"
        );
        let spent = cpu_of_threads_in_half_a_second(THREAD).await;
        assert!(
            spent < Duration::from_millis(100),
            "{spent:?} of CPU after the close"
        );
    });
}
