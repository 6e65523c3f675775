//! A PORT typed on its own is read as the one in `HOST:PORT` is.
//!
//! `examples::address` says "a port is digits only, 0 to 65535", and `localhost:+1` is refused
//! (`address_arguments.rs`). But the separate PORT argument went through clap's `u16` parser,
//! which takes a sign: `sockets-server 127.0.0.1 +9002` listened on 9002, `sockets-client
//! 127.0.0.1 +9002` connected there, and, since every program reads a value that looks like a
//! negative number as a value (`examples::cli::parse`), `sockets-server 127.0.0.1 -0`
//! listened on a random free port instead of being refused.
//!
//! (Here, not in `tests/tests/`: only this package's tests get `CARGO_BIN_EXE_*` for the
//! example programs.)

use std::time::{Duration, Instant};

use net_tests::harness::{Finished, Process};

const SOCKETS_SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");
const SOCKETS_CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client");
const TLS_SERVER: &str = env!("CARGO_BIN_EXE_sockets-server-tls");
const TLS_CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client-tls");
const UDP_ECHO: &str = env!("CARGO_BIN_EXE_udp-echo");
const CHAT_SERVER: &str = env!("CARGO_BIN_EXE_chat-server");
const STARTTLS_SERVER: &str = env!("CARGO_BIN_EXE_starttls-server");
const STARTTLS_CLIENT: &str = env!("CARGO_BIN_EXE_starttls-client");

/// Every program that takes `[HOST] [PORT]`, with the arguments before HOST.
const PROGRAMS: [(&str, &[&str]); 9] = [
    (SOCKETS_SERVER, &[]),
    (TLS_SERVER, &[]),
    (CHAT_SERVER, &[]),
    (STARTTLS_SERVER, &[]),
    (UDP_ECHO, &["server"]),
    (SOCKETS_CLIENT, &[]),
    (TLS_CLIENT, &[]),
    (STARTTLS_CLIENT, &[]),
    (UDP_ECHO, &["client"]),
];

/// A program refusing its command line exits before doing anything: this bounds one that
/// runs instead (it is killed, and the test fails with what it printed).
const EXIT_LIMIT: Duration = Duration::from_secs(5);

fn run_bounded(program: &str, args: &[&str]) -> Finished {
    let mut process = Process::start(program, args);
    let started = Instant::now();
    while process.is_running() {
        if started.elapsed() > EXIT_LIMIT {
            let printed = process.printed_so_far();
            process.kill();
            panic!("{program} {args:?}: still running after {EXIT_LIMIT:?}: {printed}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    process.finish()
}

/// `+1`, `+09002` and `-0` as PORT are bad command lines (exit status 2, one line naming the
/// value), in every program, as `localhost:+1` is; before, each was taken as a port (the
/// clients then tried to connect, the servers listened).
#[test]
fn a_signed_port_is_refused_on_its_own_as_in_host_colon_port() {
    for (program, before) in PROGRAMS {
        for port in ["+1", "+09002", "-0"] {
            let mut args = before.to_vec();
            args.extend(["127.0.0.1", port]);
            let finished = run_bounded(program, &args);
            assert_eq!(finished.status.code(), Some(2), "{args:?}: {finished:#?}");
            assert!(finished.stdout.is_empty(), "{args:?}: {finished:#?}");
            assert_eq!(finished.stderr.len(), 1, "{args:?}: {finished:#?}");
            let line = &finished.stderr[0];
            assert!(line.contains(port), "{args:?}: {line}");
            assert!(line.ends_with("(see --help)"), "{args:?}: {line}");
        }
    }
}

/// What the README shows for a PORT that is no number, and the range, are unchanged.
#[test]
fn a_bad_port_on_its_own_keeps_its_message() {
    let finished = run_bounded(SOCKETS_SERVER, &["127.0.0.1", "notaport"]);
    assert_eq!(finished.status.code(), Some(2), "{finished:#?}");
    assert_eq!(
        finished.stderr,
        [
            "sockets-server: invalid value 'notaport' for '[PORT]': invalid digit found in string (see --help)"
        ]
    );
    let finished = run_bounded(SOCKETS_CLIENT, &["127.0.0.1", "70000"]);
    assert_eq!(finished.status.code(), Some(2), "{finished:#?}");
    assert_eq!(
        finished.stderr,
        [
            "sockets-client: invalid value '70000' for '[PORT]': 70000 is not in 0..=65535 (see --help)"
        ]
    );
}
