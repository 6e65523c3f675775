//! The fault suite through the `sockets-server` example binary, as a user runs it: a line over
//! its limit, invalid UTF-8 and a reset in the middle of a line, while another client keeps
//! getting `Hello, X!` answers and the server keeps running and says what happened.

use std::time::Duration;

use net_sockets::{SelectorManager, Socket, a_socket};
use net_tests::greeting::GreetingClient;
use net_tests::harness::Process;

/// A client of the server; `reset_on_close` makes closing it send RST (`SO_LINGER` 0).
async fn connect(
    selector: &SelectorManager,
    port: u16,
    reset_on_close: bool,
) -> GreetingClient<Socket> {
    let mut builder = a_socket(selector).tcp();
    if reset_on_close {
        builder = builder.linger(Duration::ZERO);
    }
    let socket = builder.connect(("127.0.0.1", port)).await.unwrap();
    GreetingClient::start(socket).await
}

/// Waits for a line of the server's output that contains every one of `parts`.
fn expect_output(server: &mut Process, parts: &[&str]) -> String {
    server.stdout_line_where(&format!("line with {parts:?}"), |line| {
        parts.iter().all(|p| line.contains(p))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_disturb_a_well_behaved_one() {
    let mut server = Process::start(env!("CARGO_BIN_EXE_sockets-server"), ["127.0.0.1", "0"]);
    let port = server.listening_port();
    let selector = SelectorManager::new();
    let mut good = connect(&selector, port, false).await;
    good.round_trip("Alice").await;

    // A line over the 8192-byte limit: a notice, then that connection ends.
    let mut long = connect(&selector, port, false).await;
    let mut line = vec![b'a'; 100_000];
    line.push(b'\n');
    long.say(&line).await;
    assert_eq!(
        long.line().await.as_deref(),
        Some("Line too long (limit 8192 bytes), closing the connection")
    );
    assert_eq!(long.line().await, None);
    expect_output(
        &mut server,
        &["ended:", "line longer than the limit of 8192 bytes"],
    );
    good.round_trip("Bob").await;

    // Invalid UTF-8 is answered with U+FFFD in its place; the connection goes on.
    let mut latin1 = connect(&selector, port, false).await;
    latin1.say(b"Jos\xe9\n").await;
    assert_eq!(latin1.line().await.as_deref(), Some("Hello, Jos\u{FFFD}!"));
    latin1.round_trip("Jose").await;
    good.round_trip("Carol").await;

    // A reset in the middle of a line: the server reports it and drops only that connection.
    let mut resetter = connect(&selector, port, true).await;
    resetter.say(b"half a li").await;
    good.round_trip("Dave").await;
    resetter.connection().close(); // SO_LINGER 0: RST
    expect_output(&mut server, &["ended:", "reset"]);
    good.round_trip("Eve").await;

    assert!(server.is_running(), "the server exited");
    good.finish().await;
}
