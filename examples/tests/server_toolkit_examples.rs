//! `sockets-server`'s server flags end to end: graceful shutdown on SIGTERM and SIGINT with a
//! grace period, the idle timeout against a silent client (slow-loris), and the connection
//! caps, with the line the server prints when `--max-per-ip` refuses a connection.

use std::io::Read;
use std::time::{Duration, Instant};

use net_tests::HANG_LIMIT;
use net_tests::harness::{LineClient, Process};

const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");

/// `sockets-server 127.0.0.1 0 EXTRA...` and its port.
fn start(extra: &[&str]) -> (Process, u16) {
    let mut args = vec!["127.0.0.1", "0"];
    args.extend_from_slice(extra);
    let mut server = Process::start(SERVER, args);
    let port = server.listening_port();
    (server, port)
}

/// A client that has read the prompt.
fn greeted(port: u16) -> LineClient {
    let mut client = LineClient::connect(port);
    client.expect("Please enter your name");
    client
}

#[test]
fn sigterm_answers_the_request_in_flight_then_says_goodbye_and_stops() {
    let (mut server, port) = start(&[]);
    let mut busy = greeted(port);
    server.stdout_line_where("accept", |l| l.starts_with("Accepted "));
    let mut idle = greeted(port);
    server.stdout_line_where("accept", |l| l.starts_with("Accepted "));

    // The request is in the server's receive buffer before the signal is sent.
    busy.send("Alice");
    server.signal("TERM");
    busy.expect("Hello, Alice!");
    busy.expect("Server is shutting down");
    busy.expect_end();

    assert_eq!(server.stdout_line(), "Shutting down (2 open)");
    // The listener is closed at once: while `idle` still holds the server in its grace
    // period, a new client is refused.
    idle.expect("Server is shutting down");
    assert!(server.is_running());
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    idle.expect_end();

    // Both clients left: the server stops without waiting out the 10-second grace period.
    drop((busy, idle));
    let started = Instant::now();
    let finished = server.finish();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    assert_eq!(finished.stdout, ["Server stopped"]);
    assert!(finished.stderr.is_empty(), "{:?}", finished.stderr);
}

#[test]
fn a_client_that_never_leaves_is_cut_after_the_grace_period() {
    let (mut server, port) = start(&["--grace", "2"]);
    let mut stubborn = greeted(port);
    server.stdout_line_where("accept", |l| l.starts_with("Accepted "));

    let signalled = Instant::now();
    server.signal("INT");
    assert_eq!(server.stdout_line(), "Shutting down (1 open)");
    let finished = server.finish();
    let took = signalled.elapsed();
    assert_eq!(finished.status.code(), Some(0));
    assert_eq!(
        finished.stdout,
        [
            "Closed 1 connection still open after the grace period",
            "Server stopped"
        ]
    );
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // It was told, and its connection closed.
    stubborn.expect("Server is shutting down");
    stubborn.expect_end();
}

#[test]
fn a_second_signal_closes_what_is_open_without_waiting_out_the_grace_period() {
    let (mut server, port) = start(&["--grace", "60"]);
    let mut stubborn = greeted(port);
    server.stdout_line_where("accept", |l| l.starts_with("Accepted "));

    server.signal("INT");
    assert_eq!(server.stdout_line(), "Shutting down (1 open)");
    stubborn.expect("Server is shutting down");
    let signalled = Instant::now();
    server.signal("TERM");
    let finished = server.finish();
    assert!(signalled.elapsed() < Duration::from_secs(30));
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    assert_eq!(
        finished.stdout,
        [
            "Second signal: not waiting for the grace period",
            "Closed 1 connection still open",
            "Server stopped"
        ]
    );
    stubborn.expect_end();
}

#[test]
fn an_idle_client_is_dropped_while_an_active_one_is_served() {
    let (mut server, port) = start(&["--idle-timeout", "1"]);
    let mut idle = greeted(port);
    let idle_address = idle.stream().local_addr().unwrap().to_string();
    let mut active = greeted(port);
    let started = Instant::now();

    // The active client talks every 300 ms for 2.1 s: more than the idle timeout in all,
    // never that long silent.
    for i in 0..7 {
        active.send(&format!("round {i}"));
        active.expect(&format!("Hello, round {i}!"));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(started.elapsed() > Duration::from_secs(2));

    // The silent one was closed (after 1 s; the server said why).
    idle.expect_end();
    let ended = server.stdout_line_where("the idle client's end", |l| {
        l.starts_with(&format!("Connection with {idle_address} ended"))
    });
    assert!(ended.ends_with("timed out"), "{ended}");
    active.send("still here");
    active.expect("Hello, still here!");
}

#[test]
fn max_per_ip_closes_extra_connections_and_frees_places_when_they_close() {
    let (_server, port) = start(&["--max-per-ip", "2"]);
    let mut first = greeted(port);
    let _second = greeted(port);

    // The third from the same address is closed at once, unanswered.
    let mut third = LineClient::connect(port);
    third.expect_end();

    // The first leaves; its place is free once it has seen the end.
    first.shutdown_write();
    first.expect_end();
    let _fourth = greeted(port);
}

/// A connection refused by `--max-per-ip` is not silent on the server's side: within a second
/// or so it prints `Refused 1 connection: over --max-per-ip`, once per refusal (only the new
/// ones are counted in each line), and nothing more when nothing else is refused.
#[test]
fn a_connection_over_max_per_ip_makes_the_server_print_a_refusal_line() {
    let (mut server, port, first) = one_held_one_refused();
    let line = server.stdout_line_where("the refusal line", |l| l.starts_with("Refused "));
    assert_eq!(line, "Refused 1 connection: over --max-per-ip");

    // Another one later: a line of its own, which counts only it.
    let mut third = LineClient::connect(port);
    third.expect_end();
    let line = server.stdout_line_where("the second refusal line", |l| l.starts_with("Refused "));
    assert_eq!(line, "Refused 1 connection: over --max-per-ip");

    // Gone before the shutdown, which would otherwise wait its 10 s grace period for it.
    drop(first);
    let finished = stopped(&mut server);
    let refused = refusal_lines(&finished);
    assert!(refused.is_empty(), "refusals reported twice: {refused:?}");
}

/// `sockets-server --max-per-ip 1` holding one greeted client (returned), and a second client
/// it has refused (the client saw the end).
fn one_held_one_refused() -> (Process, u16, LineClient) {
    let (mut server, port) = start(&["--max-per-ip", "1"]);
    let first = greeted(port);
    server.stdout_line_where("accept", |l| l.starts_with("Accepted "));
    let mut second = LineClient::connect(port);
    second.expect_end();
    (server, port, first)
}

/// Sends the server SIGTERM and waits for it to exit 0.
fn stopped(server: &mut Process) -> net_tests::harness::Finished {
    server.signal("TERM");
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    finished
}

/// The `Refused …` lines among what the server printed.
fn refusal_lines(finished: &net_tests::harness::Finished) -> Vec<&String> {
    finished
        .stdout
        .iter()
        .filter(|l| l.starts_with("Refused "))
        .collect()
}

/// A refusal just before the shutdown is reported too, once, though the shutdown ends long
/// before the next look at the counters would have come.
#[test]
fn a_refusal_just_before_a_shutdown_is_reported_once() {
    let (mut server, _, first) = one_held_one_refused();
    drop(first);
    let finished = stopped(&mut server);
    assert_eq!(
        refusal_lines(&finished),
        ["Refused 1 connection: over --max-per-ip"],
        "{:?}",
        finished.stdout
    );
}

#[test]
fn max_connections_makes_new_clients_wait_until_a_place_frees() {
    let (_server, port) = start(&["--max-connections", "1"]);
    let mut first = greeted(port);

    // The second is connected by the kernel but not accepted: no prompt while the first is
    // open (a bounded wait: time is the behaviour here).
    let mut second = LineClient::connect(port);
    second
        .stream()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let waited = second.stream().read(&mut byte).unwrap_err();
    assert!(
        matches!(
            waited.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{waited}"
    );
    second.stream().set_read_timeout(Some(HANG_LIMIT)).unwrap();

    first.shutdown_write();
    first.expect_end();
    second.expect("Please enter your name");
}

/// A connection that ends while the shutdown waits for it is reported before `Server stopped`,
/// never after it (or not at all, lost with the process): the shutdown waits for the
/// connection's task, not only for its socket, which closes itself when the client leaves.
#[test]
fn a_connection_that_ends_during_the_shutdown_is_reported_before_server_stopped() {
    for _ in 0..10 {
        let (mut server, port) = start(&[]);
        let mut client = greeted(port);
        server.stdout_line_where("accept", |l| l.starts_with("Accepted "));
        client.send(&"x".repeat(8193));
        client.expect("Line too long (limit 8192 bytes), closing the connection");
        client.expect_end();
        // The server drains our input until we leave (at most a second): we leave as it shuts
        // down.
        server.signal("TERM");
        drop(client);
        let finished = server.finish();
        assert_eq!(finished.status.code(), Some(0), "{finished:?}");
        let ended = finished
            .stdout
            .iter()
            .position(|l| l.ends_with("ended: line longer than the limit of 8192 bytes"));
        assert!(ended.is_some(), "{finished:?}");
        assert_eq!(
            finished.stdout.last().map(String::as_str),
            Some("Server stopped"),
            "{finished:?}"
        );
    }
}
