//! `sockets-server --proxy-protocol` behind a real HAProxy (`send-proxy` and `send-proxy-v2`):
//! the client HAProxy saw is the one greeted, announced (`Accepted CLIENT via PROXY`) and
//! counted by `--max-per-ip`; a client that reaches the server directly, without a header, is
//! dropped unanswered while the proxied one is served, and the server prints that it dropped it.
//!
//! The clients connect from `127.0.0.2` and `127.0.0.3`, so that the address the server
//! reports can only have come from the header (HAProxy itself connects from `127.0.0.1`).
//! Needs `haproxy` on the PATH (`.ci/run` installs Debian's package when it is missing), except
//! for the drop line's test, which needs no proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use net_tests::harness::{Haproxy, LineClient, Process, SendProxy};

const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// `sockets-server 127.0.0.1 0 --proxy-protocol EXTRA...` behind a HAProxy that sends `send`:
/// (the server, its port, HAProxy).
fn start(send: SendProxy, extra: &[&str]) -> (Process, u16, Haproxy) {
    let mut args = vec!["127.0.0.1", "0", "--proxy-protocol"];
    args.extend_from_slice(extra);
    let mut server = Process::start(SERVER, args);
    let port = server.listening_port();
    let haproxy = Haproxy::start(SocketAddr::from(([127, 0, 0, 1], port)), send);
    (server, port, haproxy)
}

/// A client from `source` through `haproxy` that has read the prompt, and that `server` has
/// announced as `Accepted <client> via <proxy>` (see [`accepted_via_proxy`]).
fn greeted(server: &mut Process, haproxy: &mut Haproxy, source: IpAddr) -> LineClient {
    let mut client = LineClient::connect_from(source, haproxy.front());
    let greeting = client.try_line();
    if !matches!(&greeting, Ok(Some(line)) if line == "Please enter your name") {
        // (Seen once in CI: a reset before the greeting, not reproduced since; what both
        // sides printed tells which one gave up.)
        panic!(
            "no greeting through HAProxy: {greeting:?}\nserver: {}\nhaproxy: {}",
            server.printed_so_far(),
            haproxy.printed_so_far()
        );
    }
    accepted_via_proxy(server, client.local_addr());
    client
}

/// Says `name` and checks the answer.
fn round_trip(client: &mut LineClient, name: &str) {
    client.send(name);
    client.expect(&format!("Hello, {name}!"));
}

/// Reads the server's output up to the line announcing `client` (passing over the other
/// connections, HAProxy's readiness probe among them), and checks that it names exactly
/// `client`, then HAProxy's end of its connection to the server (`127.0.0.1:PORT`) as the
/// proxy.
fn accepted_via_proxy(server: &mut Process, client: SocketAddr) {
    let port = format!(":{} via ", client.port());
    let line = server.stdout_line_where("the client's accept line", |l| {
        l.starts_with("Accepted ") && l.contains(&port)
    });
    let proxy = line
        .strip_prefix(&format!("Accepted {client} via 127.0.0.1:"))
        .unwrap_or_else(|| panic!("not {client} via 127.0.0.1: {line:?}"));
    assert!(proxy.parse::<u16>().is_ok(), "no proxy port in {line:?}");
}

/// A client from 127.0.0.2 is greeted and answered through HAProxy, and the server announces
/// it with its own address and port and HAProxy's as the proxy.
fn served_through_haproxy(send: SendProxy) {
    let (mut server, _, mut haproxy) = start(send, &[]);
    let mut client = greeted(&mut server, &mut haproxy, CLIENT);
    round_trip(&mut client, "Alice");
    round_trip(&mut client, "Bob");
    client.shutdown_write();
    client.expect_end();
}

#[test]
fn haproxy_send_proxy_v1_client_is_greeted_and_announced() {
    served_through_haproxy(SendProxy::V1);
}

#[test]
fn haproxy_send_proxy_v2_client_is_greeted_and_announced() {
    served_through_haproxy(SendProxy::V2);
}

/// Under `--proxy-protocol`, a client that connects directly is dropped without a greeting:
/// at once when its first bytes are not a header, after the header timeout (a clean end of
/// stream) when it sends nothing. Meanwhile a client through HAProxy is served, and no direct
/// connection is ever announced as accepted.
#[test]
fn a_direct_client_without_a_header_is_dropped_while_the_proxied_one_is_served() {
    let (mut server, port, mut haproxy) = start(SendProxy::V1, &[]);
    let mut silent = LineClient::connect(port);
    let mut talking = LineClient::connect(port);
    talking.send("Mallory");
    // Not a PROXY header: closed unanswered (a reset when the rest of the line was unread).
    talking.expect_end();

    let mut proxied = greeted(&mut server, &mut haproxy, CLIENT);
    round_trip(&mut proxied, "Alice");

    // The silent one waited for a header that never came, and got a clean end, no greeting.
    assert_eq!(silent.line(), None, "the silent direct client");
    round_trip(&mut proxied, "still here");
    proxied.shutdown_write();
    proxied.expect_end();

    server.signal("TERM");
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    let direct: Vec<&String> = finished
        .stdout
        .iter()
        .filter(|l| l.starts_with("Accepted ") && !l.contains(" via "))
        .collect();
    assert!(direct.is_empty(), "accepted without a header: {direct:?}");
}

/// `--max-per-ip 1` behind HAProxy counts the client address from the header, not HAProxy's:
/// a second client from 127.0.0.2 is refused while the first is connected, one from 127.0.0.3
/// is served, and the first's place is free again once it has left.
#[test]
fn max_per_ip_behind_haproxy_counts_the_client_the_header_names() {
    let (mut server, _, mut haproxy) = start(SendProxy::V2, &["--max-per-ip", "1"]);
    let mut first = greeted(&mut server, &mut haproxy, CLIENT);

    // The same client address again: closed at once, unanswered.
    let mut second = LineClient::connect_from(CLIENT, haproxy.front());
    second.expect_end();

    // Another client address through the same HAProxy (the same proxy address): served.
    let mut other = greeted(&mut server, &mut haproxy, OTHER_CLIENT);
    round_trip(&mut other, "Carol");
    round_trip(&mut first, "Alice");

    // The first leaves; its place is free once it has seen the end.
    first.shutdown_write();
    first.expect_end();
    let mut again = greeted(&mut server, &mut haproxy, CLIENT);
    round_trip(&mut again, "Alice again");
}

/// Under `--proxy-protocol`, a connection without a valid header is not dropped in silence on
/// the server's side: it prints `Dropped 1 connection: no valid PROXY header within 5 s` soon
/// after (a client that sends garbage is dropped at once, so this does not wait out the 5 s).
#[test]
fn a_connection_without_a_proxy_header_makes_the_server_print_a_drop_line() {
    let mut server = Process::start(SERVER, ["127.0.0.1", "0", "--proxy-protocol"]);
    let port = server.listening_port();
    let sent = Instant::now();
    let mut direct = LineClient::connect(port);
    direct.send("GARBAGE\r");
    direct.expect_end();

    let line = server.stdout_line_where("the drop line", |l| l.starts_with("Dropped "));
    assert_eq!(
        line,
        "Dropped 1 connection: no valid PROXY header within 5 s"
    );
    // Reported soon, not after the header timeout: garbage is refused at once.
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );

    server.signal("TERM");
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    assert_eq!(
        finished.stdout,
        ["Shutting down (0 open)", "Server stopped"]
    );
}
