//! `Server stopped` is a server's last line: what it reports of the connections it turned away
//! comes before it, also when the shutdown has nothing to wait for.

use net_tests::harness::{LineClient, Process};

const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");

/// A connection dropped for a bad PROXY header just before the signal (before the next of
/// the reports made every half second) is reported before `Server stopped`, not after it: with
/// no connection open, the shutdown ends at once, and the last report came after it.
#[test]
fn a_drop_just_before_the_shutdown_is_reported_before_server_stopped() {
    for _ in 0..5 {
        let mut server = Process::start(SERVER, ["127.0.0.1", "0", "--proxy-protocol"]);
        let port = server.listening_port();
        let mut direct = LineClient::connect(port);
        direct.send("GARBAGE\r");
        // Dropped at once, and counted before the drop.
        direct.expect_end();
        server.signal("TERM");
        let finished = server.finish();
        assert_eq!(finished.status.code(), Some(0), "{finished:?}");
        assert_eq!(
            finished.stdout.last().map(String::as_str),
            Some("Server stopped"),
            "{finished:?}"
        );
        assert!(
            finished
                .stdout
                .iter()
                .any(|l| l == "Dropped 1 connection: no valid PROXY header within 5 s"),
            "{finished:?}"
        );
    }
}
