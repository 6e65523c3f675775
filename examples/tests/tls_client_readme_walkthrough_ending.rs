//! README's walkthrough of `sockets-client-tls localhost 9443 --insecure` against
//! `sockets-server-tls`, to its end: the greeting server answers each line of the request,
//! then waits for more names and never closes, so that the client, once nothing has come for
//! `--timeout` seconds, gives up with one line on stderr and status 1 (README showed the
//! answers as if that were all).

use net_tests::harness::{Process, port_at_end};

const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server-tls");
const CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client-tls");

#[test]
fn the_walkthrough_ends_with_the_clients_timeout_and_status_1() {
    let mut server = Process::start(SERVER, ["127.0.0.1", "0"]);
    let listening = server.stdout_line_where("the listening line", |l| {
        l.starts_with("Server is listening at ")
    });
    let port = port_at_end(&listening).to_string();
    let mut client = Process::start(
        CLIENT,
        ["localhost", port.as_str(), "--insecure", "--timeout", "1"],
    );
    let finished = client.finish();
    assert_eq!(
        finished.stdout,
        [
            "Please enter your name".to_owned(),
            "Hello, GET / HTTP/1.1!".to_owned(),
            format!("Hello, Host: localhost:{port}!"),
            "Hello, Connection: close!".to_owned(),
            "Hello, !".to_owned(),
        ]
    );
    assert_eq!(finished.status.code(), Some(1), "{finished:?}");
    assert_eq!(
        finished.stderr.last().map(String::as_str),
        Some(
            format!(
                "sockets-client-tls: timed out: nothing from localhost:{port} for 1 s (see --timeout)"
            )
            .as_str()
        ),
        "{finished:?}"
    );
}
