//! `sockets-client`'s line limit, 64 KiB, holds for what it sends as for what it receives: a
//! line of its input longer than that ends it with status 1 and one line on stderr naming
//! stdin, not the server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use net_tests::HANG_LIMIT;
use net_tests::harness::Process;

const CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client");

/// The longest line `sockets-client` reads, from the server or from stdin.
const LIMIT: usize = 64 * 1024;

/// A line of exactly the limit is sent whole; one byte more ends the program with
/// `sockets-client: reading stdin: line longer than the limit of 65536 bytes`, status 1.
#[test]
fn a_stdin_line_over_64_kib_is_a_runtime_failure_naming_stdin() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The server: greets, then reports the length of each line it receives.
    let server = std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(HANG_LIMIT)).unwrap();
        peer.write_all(b"Hello\n").unwrap();
        let mut reader = BufReader::new(peer.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            let length = line.trim_end_matches('\n').len();
            if peer.write_all(format!("{length}\n").as_bytes()).is_err() {
                return;
            }
            line.clear();
        }
    });

    let mut client = Process::start(CLIENT, ["127.0.0.1".to_owned(), port.to_string()]);
    assert_eq!(client.stdout_line(), "Hello");
    client.send(&format!("{}\n", "x".repeat(LIMIT)));
    assert_eq!(client.stdout_line(), LIMIT.to_string());
    // Without its LF: the program decides at the byte past the limit, and exits; a byte still
    // to write then would meet a closed pipe.
    client.send(&"y".repeat(LIMIT + 1));
    let finished = client.finish();
    assert_eq!(
        finished.failure_line(),
        "sockets-client: reading stdin: line longer than the limit of 65536 bytes"
    );
    assert_eq!(finished.status.code(), Some(1));
    server.join().unwrap();
}
