//! `sockets-server-tls --alpn` with more protocol names than a ClientHello's ALPN list can carry
//! (net-tls's `MAX_ALPN_LIST`, 32 KiB with the length bytes) is a bad argument: one short line
//! on stderr and exit status 2, as the README says of every bad argument, not a runtime failure
//! (status 1) whose line repeats a 255-byte name.

use net_tests::harness::{Finished, Process};

#[test]
fn an_alpn_list_over_the_limit_is_a_usage_error() {
    let name = "a".repeat(255);
    // 128 names of 255 bytes take 128 * 256 = 32768 bytes with their length bytes: the limit.
    let at_limit = vec![name.as_str(); 128].join(",");
    let over = vec![name.as_str(); 129].join(",");
    let limit = |list: &str| {
        net_tls::TlsConfig::builder()
            .alpn_protocols(list.split(','))
            .build()
            .is_ok()
    };
    assert!(
        limit(&at_limit),
        "a list of 32768 bytes is one net-tls takes"
    );
    assert!(!limit(&over), "a list of 32768 + 256 bytes is not");
    // At the limit the server starts.
    let mut server = Process::start(
        env!("CARGO_BIN_EXE_sockets-server-tls"),
        ["127.0.0.1", "0", "--alpn", at_limit.as_str()],
    );
    assert_ne!(server.listening_port_after_banner(), 0);
    server.kill();
    let Finished {
        status,
        stdout,
        stderr,
        ..
    } = Process::run(
        env!("CARGO_BIN_EXE_sockets-server-tls"),
        ["127.0.0.1", "0", "--alpn", over.as_str()],
    );
    assert_eq!(status.code(), Some(2), "{stderr:?}");
    assert!(stdout.is_empty(), "{stdout:?}");
    assert_eq!(stderr.len(), 1, "{stderr:#?}");
    let line = &stderr[0];
    assert!(line.starts_with("sockets-server-tls: "), "{line}");
    assert!(line.contains("--alpn"), "{line}");
    assert!(line.contains("32768"), "{line}");
    assert!(!line.contains(&name), "the line repeats a name: {line}");
}
