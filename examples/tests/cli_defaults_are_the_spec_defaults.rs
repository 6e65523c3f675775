//! The defaults SPEC §2.4 and §4.5 give the example programs, as each program's `--help` states
//! them (clap prints the very default it parses with): `sockets-server` listens at
//! 127.0.0.1 9002 with `--idle-timeout` 300, `--max-connections` 10000, `--max-per-ip` 1000
//! and `--grace` 10; `chat-server` at 127.0.0.1 9004 and `starttls-server` at 127.0.0.1 9025,
//! each shutting down "as `sockets-server`" (`--grace` 10); `sockets-server-tls` at
//! 127.0.0.1 9443; `sockets-client` to 127.0.0.1 9002; `sockets-client-tls` to
//! youtrack.jetbrains.com 443; `udp-echo` at 127.0.0.1 9003. No other test reads them: a
//! changed default would otherwise go unnoticed until a user's deployment meets it.

use net_tests::harness::Process;

/// The help's line for the option or argument `name` (`--grace <SECS>`, `[PORT]`).
fn help_line(help: &[String], name: &str) -> String {
    help.iter()
        .map(|l| l.trim_start())
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in the help: {help:#?}"))
        .to_owned()
}

fn help(program: &str, before: &[&str]) -> Vec<String> {
    let mut args = before.to_vec();
    args.push("--help");
    let finished = Process::run(program, args);
    assert_eq!(finished.status.code(), Some(0), "{program}: {finished:?}");
    finished.stdout
}

#[track_caller]
fn assert_default(help: &[String], name: &str, default: &str, program: &str) {
    let line = help_line(help, name);
    assert!(
        line.contains(&format!("[default: {default}]")),
        "{program}: {name} should default to {default}: {line:?}"
    );
}

/// A program, the arguments before `--help`, and its (option or argument, default) pairs.
type Case = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

#[test]
fn servers_and_clients_default_as_the_spec_says() {
    let cases: [Case; 8] = [
        (
            env!("CARGO_BIN_EXE_sockets-server"),
            &[],
            &[
                ("[HOST]", "127.0.0.1"),
                ("[PORT]", "9002"),
                ("--idle-timeout <SECS>", "300"),
                ("--max-connections <N>", "10000"),
                ("--max-per-ip <N>", "1000"),
                ("--grace <SECS>", "10"),
            ],
        ),
        (
            env!("CARGO_BIN_EXE_chat-server"),
            &[],
            &[
                ("[HOST]", "127.0.0.1"),
                ("[PORT]", "9004"),
                ("--grace <SECS>", "10"),
            ],
        ),
        (
            env!("CARGO_BIN_EXE_starttls-server"),
            &[],
            &[
                ("[HOST]", "127.0.0.1"),
                ("[PORT]", "9025"),
                ("--grace <SECS>", "10"),
            ],
        ),
        (
            env!("CARGO_BIN_EXE_sockets-server-tls"),
            &[],
            &[("[HOST]", "127.0.0.1"), ("[PORT]", "9443")],
        ),
        (
            env!("CARGO_BIN_EXE_sockets-client"),
            &[],
            &[("[HOST]", "127.0.0.1"), ("[PORT]", "9002")],
        ),
        (
            env!("CARGO_BIN_EXE_sockets-client-tls"),
            &[],
            &[("[HOST]", "youtrack.jetbrains.com"), ("[PORT]", "443")],
        ),
        (
            env!("CARGO_BIN_EXE_udp-echo"),
            &["server"],
            &[("[HOST]", "127.0.0.1"), ("[PORT]", "9003")],
        ),
        (
            env!("CARGO_BIN_EXE_udp-echo"),
            &["client"],
            &[("[HOST]", "127.0.0.1"), ("[PORT]", "9003")],
        ),
    ];
    for (program, before, defaults) in cases {
        let help = help(program, before);
        for (name, default) in defaults {
            assert_default(&help, name, default, program);
        }
    }
}
