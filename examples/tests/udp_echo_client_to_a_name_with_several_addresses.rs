//! `udp-echo client localhost` on a host whose `/etc/hosts` names `localhost` `::1` first and
//! `127.0.0.1` after it (as Debian and Fedora write it), against `udp-echo server` on its
//! defaults (127.0.0.1 9003): the server is there, at `localhost`'s second address. UDP has no
//! handshake, but the kernel's "port unreachable" for the first line's datagram says that
//! nothing listens at `::1`, and the client goes on to the next address, as `sockets-client`
//! does over TCP, instead of failing with `no reply from [::1]:9003: Connection refused`.
//! Run in a network namespace of its own, with an `/etc/hosts` of its own (skipped, saying
//! why, where one cannot be made).

use net_tests::harness::{
    Process, RunOutput, rerun_self_in_own_netns_with_hosts, run_if_child, run_with_input,
};

const CHILD: &str = "UDP_ECHO_SEVERAL_ADDRESSES_CHILD";
const UDP_ECHO: &str = env!("CARGO_BIN_EXE_udp-echo");

/// `localhost` as Debian's `/etc/hosts` has it: IPv6 first, then IPv4.
const HOSTS: &str = "::1 localhost ip6-localhost\n127.0.0.1 localhost\n";

#[test]
fn udp_echo_client_finds_the_server_at_the_names_next_address() {
    rerun_self_in_own_netns_with_hosts(
        "udp_echo_client_finds_the_server_at_the_names_next_address_child",
        CHILD,
        HOSTS,
        "udp-echo client reached localhost's next address",
    );
}

#[test]
fn udp_echo_client_finds_the_server_at_the_names_next_address_child() {
    run_if_child(CHILD, async {
        // The server on its defaults: 127.0.0.1 9003.
        let mut server = Process::start(UDP_ECHO, ["server"]);
        assert_eq!(server.listening_port(), 9003);
        let RunOutput {
            status,
            stdout,
            stderr,
        } = run_with_input(UDP_ECHO, ["client", "localhost"], "one\ntwo\n");
        assert!(status.success(), "the client failed: {stderr}");
        assert_eq!(stdout, "one\ntwo\n");
        assert_eq!(stderr, "");
        // Each line reached the server once: the datagram to ::1 was refused, not echoed.
        server.stdout_line_where("the first echo", |l| {
            l.starts_with("Echoing 3 bytes to 127.0.0.1:")
        });
        server.stdout_line_where("the second echo", |l| {
            l.starts_with("Echoing 3 bytes to 127.0.0.1:")
        });
        server.kill();

        // Nobody at either address: the failure names the last address tried, status 1.
        let RunOutput {
            status,
            stdout,
            stderr,
        } = run_with_input(UDP_ECHO, ["client", "localhost", "9"], "one\n");
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert_eq!(stdout, "");
        assert_eq!(
            stderr,
            "udp-echo: no reply from 127.0.0.1:9: Connection refused (os error 111)\n"
        );
        println!("udp-echo client reached localhost's next address");
    });
}
