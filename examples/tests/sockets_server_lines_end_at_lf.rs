//! Where `sockets-server` (and `sockets-server-tls`, through `examples::greet`) ends a line:
//! at LF or CRLF only. The seed's server reads with Ktor's `readUTF8Line`, which also ends a
//! line at a lone CR; this port does not, and its docs say so.

use std::io::Write;

use net_tests::harness::{LineClient, Process};

const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");

/// A lone CR is part of the line: `Alice\rBob\n` is one line, answered as one (the seed's
/// server would answer `Hello, Alice!` and `Hello, Bob!`), and a CR that ends what a client
/// sent (a terminal in raw mode sends CR for Enter) is answered only once an LF follows. A CRLF
/// still ends a line, its CR not part of it.
#[test]
fn a_lone_cr_is_part_of_the_line_and_only_lf_or_crlf_ends_it() {
    let mut server = Process::start(SERVER, ["127.0.0.1", "0"]);
    let port = server.listening_port();
    let mut client = LineClient::connect(port);
    client.expect("Please enter your name");

    client.send("Alice\rBob");
    client.expect("Hello, Alice\rBob!");

    // Enter in a raw terminal: CR alone. Nothing is answered for it until the LF after Dave.
    client
        .stream()
        .write_all(b"Carol\r")
        .expect("send a CR-ended name");
    client.send("Dave");
    client.expect("Hello, Carol\rDave!");

    client.stream().write_all(b"Eve\r\n").expect("send a CRLF");
    client.expect("Hello, Eve!");

    client.shutdown_write();
    client.expect_end();
    server.kill();
}
