//! SPEC §4.5: `chat-server` shuts down gracefully "on SIGINT/SIGTERM as `sockets-server`".
//! `chat_examples` sends SIGTERM only; this is the same walk with SIGINT (a Ctrl-C in the
//! terminal that runs it): a line sent before the signal still reaches the other member, every
//! member (one without a nick yet too) reads `Server is shutting down` and then the end, the
//! server prints `Shutting down (N open)` and `Server stopped`, and exits 0.

use net_tests::harness::{LineClient, Process};

const CHAT: &str = env!("CARGO_BIN_EXE_chat-server");

/// A client that has given its nick and read its welcome.
fn join(port: u16, nick: &str, welcome: &str) -> LineClient {
    let mut client = LineClient::connect(port);
    client.expect("Your name?");
    client.send(nick);
    client.expect(welcome);
    client
}

#[test]
fn sigint_says_goodbye_to_every_member_and_stops_with_status_0() {
    let mut server = Process::start(CHAT, ["127.0.0.1", "0"]);
    let port = server.listening_port();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    let mut anonymous = LineClient::connect(port);
    anonymous.expect("Your name?");
    server.stdout_line_where("bob joined", |l| l.ends_with("joined as bob"));
    // A line relayed before the signal is delivered, not lost to the shutdown.
    alice.send("before the signal");
    bob.expect("alice: before the signal");

    server.signal("INT");
    for client in [&mut alice, &mut bob, &mut anonymous] {
        client.expect("Server is shutting down");
        client.expect_end();
    }
    server.stdout_line_where("shutting down", |l| l == "Shutting down (3 open)");
    drop((alice, bob, anonymous));
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    let (last, before) = finished.stdout.split_last().unwrap();
    assert_eq!(last, "Server stopped");
    let mut left = before.to_vec();
    left.sort();
    assert_eq!(left, ["alice left", "bob left"]);
}
