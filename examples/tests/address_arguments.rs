//! How the example programs read an address from their command line, as a user types it: every
//! program reads HOST (and PORT) the same way, and the library's rules for `HOST:PORT` hold on
//! the command line too.
//!
//! - `HOST PORT` and `HOST:PORT` (`127.0.0.1:9002`, `[::1]:9002`, `localhost:9002`) both work;
//! - a lone number is a port, not a host: refused, never bound as `0.0.0.0` (`0`) or connected
//!   to as `0.0.35.42` (`9002`), which is what the system's resolver makes of it;
//! - an IPv6 address whose last group could be a port (`::1:9002`) is refused, with the
//!   bracketed form to write, unless the port is given on its own;
//! - an empty host, a port given twice, a path (no program takes a Unix socket) are usage
//!   errors: one line, exit status 2;
//! - every server bound to the IPv6 loopback serves its client there.

use std::time::{Duration, Instant};

use net_tests::harness::{Finished, Process, path_arg, port_at_end, run_with_input};
use net_tests::pki::Pki;

const SOCKETS_SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");
const SOCKETS_CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client");
const TLS_SERVER: &str = env!("CARGO_BIN_EXE_sockets-server-tls");
const TLS_CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client-tls");
const UDP_ECHO: &str = env!("CARGO_BIN_EXE_udp-echo");
const CHAT_SERVER: &str = env!("CARGO_BIN_EXE_chat-server");
const STARTTLS_SERVER: &str = env!("CARGO_BIN_EXE_starttls-server");
const STARTTLS_CLIENT: &str = env!("CARGO_BIN_EXE_starttls-client");
const TCP_PROXY: &str = env!("CARGO_BIN_EXE_tcp-proxy");

/// How long a program refusing its command line may take to exit: it exits before it does
/// anything, so this only bounds a program that runs instead.
const EXIT_LIMIT: Duration = Duration::from_secs(5);

fn name(program: &str) -> &str {
    program.rsplit('/').next().unwrap()
}

/// `program ARGS`, waited for at most [`EXIT_LIMIT`] (a server that starts instead of refusing
/// is killed, and the test fails with what it printed).
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

/// `program ARGS` is refused as a bad command line: exit status 2, nothing on stdout, one line
/// on stderr, `NAME: ... (see --help)`, that contains `needle`.
fn assert_refused(program: &str, args: &[&str], needle: &str) {
    let finished = run_bounded(program, args);
    assert_eq!(finished.status.code(), Some(2), "{finished:#?}");
    assert!(finished.stdout.is_empty(), "{finished:#?}");
    assert_eq!(finished.stderr.len(), 1, "{finished:#?}");
    let line = &finished.stderr[0];
    assert!(line.starts_with(&format!("{}: ", name(program))), "{line}");
    assert!(line.ends_with("(see --help)"), "{line}");
    assert!(line.contains(needle), "{program} {args:?}: {line}");
}

/// Every program that takes `[HOST] [PORT]` (or `HOST PORT`), as (program, arguments before
/// HOST): the servers first.
const SERVERS: [(&str, &[&str]); 5] = [
    (SOCKETS_SERVER, &[]),
    (TLS_SERVER, &[]),
    (CHAT_SERVER, &[]),
    (STARTTLS_SERVER, &[]),
    (UDP_ECHO, &["server"]),
];
const CLIENTS: [(&str, &[&str]); 4] = [
    (SOCKETS_CLIENT, &[]),
    (TLS_CLIENT, &[]),
    (STARTTLS_CLIENT, &[]),
    (UDP_ECHO, &["client"]),
];

fn with(before: &[&'static str], args: &[&'static str]) -> Vec<&'static str> {
    before.iter().chain(args).copied().collect()
}

/// `sockets-server 0` meant port 0: it listened at `0.0.0.0:9002`, every address of the host,
/// because the system's resolver reads "0" as the address 0.0.0.0 (and "9002" as 0.0.35.42).
/// A lone number is refused as a host, by every program.
#[test]
fn servers_refuse_a_lone_number_as_their_host_instead_of_listening_on_every_address() {
    for (program, before) in SERVERS {
        assert_refused(program, &with(before, &["0"]), "\"0\" is not a host");
        // Also with a port after it: "0 9002" is no host either.
        assert_refused(program, &with(before, &["0", "0"]), "\"0\" is not a host");
    }
}

/// A client given a lone number (`sockets-client 9002`) connected to 0.0.35.42 on the default
/// port, an address off this host; refused now, before any connection.
#[test]
fn clients_refuse_a_lone_number_as_their_host_before_connecting() {
    for (program, before) in CLIENTS {
        assert_refused(program, &with(before, &["9002"]), "\"9002\" is not a host");
    }
}

/// What every server prints after `is listening at `, given `host_arg` and no PORT.
fn listening_at(program: &str, before: &[&str], host_arg: &str) -> String {
    let mut args = before.to_vec();
    args.push(host_arg);
    let mut server = Process::start(program, &args);
    let line = server.stdout_line_where("listening line", |l| l.contains(" is listening at "));
    server.kill();
    line.split(" is listening at ").nth(1).unwrap().to_owned()
}

/// `HOST:PORT` in the HOST argument (as every server prints where it listens, and as
/// `tcp-proxy` takes it) works everywhere; before, the whole text was taken for a host name to
/// resolve (`cannot listen at [127.0.0.1:0]:9002: could not resolve host`).
#[test]
fn servers_take_host_colon_port_in_the_host_argument() {
    for (program, before) in SERVERS {
        let at = listening_at(program, before, "127.0.0.1:0");
        assert!(at.starts_with("127.0.0.1:"), "{program}: {at}");
        assert_ne!(port_at_end(&at), 0, "{program}: the real port is printed");
        let at = listening_at(program, before, "[::1]:0");
        assert!(at.starts_with("[::1]:"), "{program}: {at}");
        assert_ne!(port_at_end(&at), 0, "{program}: the real port is printed");
        // Whichever loopback address the resolver gives first.
        let at = listening_at(program, before, "localhost:0");
        assert!(
            at.starts_with("127.0.0.1:") || at.starts_with("[::1]:"),
            "{program}: {at}"
        );
    }
}

/// `::1:9002` is itself an IPv6 address, or `::1` with port 9002: the library refuses it in
/// `"host:port"`, and so does every program, with the bracketed form to write, unless the port
/// is given on its own (`::1:9002 9002`: then it can only be the address). Before, a server
/// tried to listen at `[::1:9002]:9002` and `tcp-proxy` took it for `[::1]:9002`.
#[test]
fn servers_refuse_an_ambiguous_ipv6_host_and_port() {
    for (program, before) in SERVERS {
        assert_refused(program, &with(before, &["::1:0"]), "[::1]:0");
    }
    assert_refused(TCP_PROXY, &["::1:0", "127.0.0.1:1"], "[::1]:0");
    assert_refused(
        TCP_PROXY,
        &["127.0.0.1:0", "2001:db8::1:80"],
        "[2001:db8::1]:80",
    );
    // With its port on its own, the whole text is the address (one no interface has here).
    let finished = run_bounded(SOCKETS_SERVER, &["::1:0", "0"]);
    assert_eq!(finished.status.code(), Some(1), "{finished:#?}");
    assert!(
        finished.stderr[0].starts_with("sockets-server: cannot listen at [::1:0]:0: "),
        "{finished:#?}"
    );
}

/// A client given `::1:PORT` is refused the same way, before any connection.
#[test]
fn clients_refuse_an_ambiguous_ipv6_host_and_port() {
    for (program, before) in CLIENTS {
        assert_refused(program, &with(before, &["::1:9"]), "[::1]:9");
    }
}

/// An empty host (`""`, `:9002`), a port given twice, and a path are usage errors (exit status
/// 2, as `tcp-proxy` already treated `:9002`), not failures to resolve (exit status 1).
#[test]
fn an_empty_host_a_port_given_twice_or_a_path_is_a_usage_error() {
    for (program, before) in SERVERS.into_iter().chain(CLIENTS) {
        assert_refused(program, &with(before, &["", "1"]), "no host");
        assert_refused(program, &with(before, &[":1"]), "no host");
        assert_refused(
            program,
            &with(before, &["127.0.0.1:1", "1"]),
            "port given twice",
        );
        assert_refused(
            program,
            &with(before, &["/tmp/review-exip6.sock"]),
            "Unix sockets",
        );
    }
}

/// Out-of-range and malformed ports are refused wherever they are typed. A sign too: before,
/// a PORT on its own went through clap's `u16` parser, which takes one, so `sockets-server
/// 127.0.0.1 +1` listened on port 1 and `-0` (read as a value, as every negative number is)
/// on a random port, while `localhost:+1` was refused.
#[test]
fn a_bad_port_is_refused_in_either_place() {
    for (program, before) in SERVERS.into_iter().chain(CLIENTS) {
        for signed in ["+1", "+09002", "-0"] {
            assert_refused(program, &with(before, &["127.0.0.1", signed]), signed);
        }
        assert_refused(program, &with(before, &["127.0.0.1", "70000"]), "70000");
        assert_refused(program, &with(before, &["127.0.0.1:70000"]), "70000");
        assert_refused(program, &with(before, &["[::1]:70000"]), "70000");
        assert_refused(program, &with(before, &["localhost:+1"]), "\"+1\"");
        assert_refused(program, &with(before, &["localhost:"]), "port number");
    }
}

/// `tcp-proxy` reads `HOST:PORT` as the library does: brackets only around an IPv6 address, a
/// port all digits, and a missing port said as such. Before, `[127.0.0.1]:0` and
/// `127.0.0.1:+0` were taken (the library refuses both), `::1` was read as host `:` and
/// port 1 (exit status 1, `cannot listen at [:]:1`), and `[::1]` was `"1]" is not a port
/// number`.
#[test]
fn tcp_proxy_reads_host_port_as_the_library_does() {
    let upstream = "127.0.0.1:1";
    assert_refused(
        TCP_PROXY,
        &["[127.0.0.1]:0", upstream],
        "not an IPv6 address",
    );
    assert_refused(TCP_PROXY, &["127.0.0.1:+0", upstream], "\"+0\"");
    assert_refused(TCP_PROXY, &["::1", upstream], "no port");
    assert_refused(TCP_PROXY, &["[::1]", upstream], "no port");
    assert_refused(TCP_PROXY, &["127.0.0.1:0", "localhost"], "no port");
    assert_refused(TCP_PROXY, &["0", upstream], "\"0\" is not a host");
}

/// `--help` says what HOST may be, in every program.
#[test]
fn help_says_how_to_write_an_address() {
    for (program, before) in SERVERS.into_iter().chain(CLIENTS) {
        let finished = run_bounded(program, &with(before, &["--help"]));
        assert_eq!(finished.status.code(), Some(0), "{finished:#?}");
        let help = finished.stdout.join("\n");
        assert!(help.contains("HOST:PORT"), "{program}: {help}");
        assert!(help.contains("[::1]"), "{program}: {help}");
    }
}

/// Guard: every TCP server bound to the IPv6 loopback (`::1`, or `[::1]`) serves its client
/// there, the client given `::1` or `[::1]`; the TLS client verifies the certificate for `::1`
/// and sends `Host: [::1]:PORT`. (udp-echo and tcp-proxy have theirs in sockets_examples and
/// proxy_examples.)
#[test]
fn every_server_on_the_ipv6_loopback_serves_its_client() {
    let files = Pki::generate().temp_files();
    let (chain, key, ca) = (
        path_arg(&files.server_chain),
        path_arg(&files.server_key),
        path_arg(&files.ca),
    );

    let mut server = Process::start(SOCKETS_SERVER, ["::1", "0"]);
    let port = server.listening_port().to_string();
    let client = run_with_input(SOCKETS_CLIENT, ["[::1]", &port], "Ann\n");
    assert_eq!(client.status.code(), Some(0), "{client:#?}");
    assert!(client.stdout.contains("Hello, Ann!\n"), "{client:#?}");

    let mut chat = Process::start(CHAT_SERVER, ["[::1]", "0"]);
    let port = chat.listening_port().to_string();
    let client = run_with_input(SOCKETS_CLIENT, ["::1", &port], "ann\n");
    assert_eq!(client.status.code(), Some(0), "{client:#?}");
    assert!(
        client
            .stdout
            .contains("* Welcome, ann. Nobody else is here yet.\n"),
        "{client:#?}"
    );

    let mut tls = Process::start(TLS_SERVER, ["::1", "0", "--cert", chain, "--key", key]);
    let port = tls.listening_port_after_banner().to_string();
    let mut client = Process::start(TLS_CLIENT, ["::1", &port, "--ca", ca, "--timeout", "5"]);
    client.stdout_line_where("the Host line", |l| {
        l == format!("Hello, Host: [::1]:{port}!")
    });
    let connected = client.stderr_line();
    assert!(
        connected.starts_with(&format!("Connected to [::1]:{port}: TLS")),
        "{connected}"
    );
    client.kill();

    let mut starttls = Process::start(STARTTLS_SERVER, ["::1", "0", "--cert", chain, "--key", key]);
    let port = starttls.listening_port_after_banner().to_string();
    let client = Process::run(STARTTLS_CLIENT, ["[::1]", &port, "--ca", ca]);
    assert_eq!(client.status.code(), Some(0), "{client:#?}");
    assert_eq!(client.stdout.last().map(String::as_str), Some("221 Bye"));

    for process in [&mut server, &mut chat, &mut tls, &mut starttls] {
        process.kill();
    }
}
