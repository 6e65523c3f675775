//! The example programs on hosts whose network is set up unlike a developer's laptop, each in a
//! network namespace of its own (skipped, saying why, where one cannot be made), with an
//! `/etc/hosts` of its own as Debian writes it (`localhost` is `::1` and `127.0.0.1`): IPv6
//! disabled, and `::` made IPv6-only (`net.ipv6.bindv6only = 1`).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use net_tests::HANG_LIMIT;
use net_tests::harness::{
    Process, RunOutput, rerun_self_in_own_netns_with_hosts, run_if_child, run_with_input,
};

const CHILD: &str = "EXAMPLES_OTHER_HOSTS_CHILD";
const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client");
const PROXY: &str = env!("CARGO_BIN_EXE_tcp-proxy");

/// `localhost` as Debian's `/etc/hosts` has it: IPv6 and IPv4.
const HOSTS: &str = "::1 localhost ip6-localhost\n127.0.0.1 localhost\n";

/// Writes `value` to the namespace's sysctl at `path` (under `/proc/sys/net/`).
fn sysctl(path: &str, value: &str) {
    let path = format!("/proc/sys/net/{path}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("set {path} to {value}: {e}"));
}

/// Runs `tcp-proxy` with `args` (LISTEN, UPSTREAM), and checks that it refuses them as a loop:
/// exit status 1, its last line saying the upstream is its own listening address.
fn refused_as_a_loop<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: [S; 2]) {
    let looping = Process::run(PROXY, args);
    assert_eq!(looping.status.code(), Some(1), "{looping:?}");
    assert!(
        looping
            .failure_line()
            .contains("is this proxy's own listening address"),
        "{looping:?}"
    );
}

/// With IPv6 disabled: `sockets-server` on its default address (127.0.0.1 9002) serves
/// `sockets-client localhost` (whose `::1` cannot be used: the connect goes on to
/// `127.0.0.1`), and `sockets-server ::` takes IPv4 clients. With nobody listening,
/// `sockets-client localhost` fails with one line saying the connection was refused (before:
/// "Cannot assign requested address", the error of `::1`, as if the host had run out of ports).
#[test]
fn examples_with_ipv6_disabled() {
    rerun_self_in_own_netns_with_hosts(
        "examples_with_ipv6_disabled_child",
        CHILD,
        HOSTS,
        "examples with ipv6 disabled as documented",
    );
}

#[test]
fn examples_with_ipv6_disabled_child() {
    run_if_child(CHILD, async {
        sysctl("ipv6/conf/all/disable_ipv6", "1");
        sysctl("ipv6/conf/lo/disable_ipv6", "1");
        // Nobody listening yet.
        let RunOutput {
            status,
            stdout,
            stderr,
        } = run_with_input(CLIENT, ["localhost"], "");
        assert!(!status.success());
        assert_eq!(stdout, "");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("sockets-client: cannot connect to localhost:9002: ")
                && stderr.contains("refused"),
            "{stderr}"
        );
        // The server on its defaults, the client to `localhost`.
        let mut server = Process::start(SERVER, Vec::<&str>::new());
        assert_eq!(server.listening_port(), 9002);
        let RunOutput {
            status,
            stdout,
            stderr,
        } = run_with_input(CLIENT, ["localhost"], "Alice\n");
        assert!(status.success(), "client failed: {stderr}");
        assert_eq!(
            stdout,
            "Please enter your name\nHello, Alice!\nServer closed a connection\n"
        );
        server.kill();
        // On `::`, IPv4 clients are served.
        let mut server = Process::start(SERVER, ["::", "0"]);
        let port = server.listening_port().to_string();
        let RunOutput {
            status,
            stdout,
            stderr,
        } = run_with_input(CLIENT, ["127.0.0.1", &port], "Bob\n");
        assert!(status.success(), "client failed: {stderr}");
        assert!(stdout.contains("Hello, Bob!"), "{stdout}");
        server.kill();
        println!("examples with ipv6 disabled as documented");
    });
}

/// With `net.ipv6.bindv6only = 1`, `tcp-proxy [::]:P 127.0.0.1:P` is no loop: `::` takes no
/// IPv4 client, so the upstream at `127.0.0.1:P` is another server, and the proxy starts and
/// relays an IPv6 client to it. (Before, it refused to start, "upstream 127.0.0.1:P is this
/// proxy's own listening address", taking `::` for dual-stack.) `[::1]:P` as the upstream is
/// still the proxy itself, and refused.
#[test]
fn tcp_proxy_with_bindv6only() {
    rerun_self_in_own_netns_with_hosts(
        "tcp_proxy_with_bindv6only_child",
        CHILD,
        HOSTS,
        "tcp-proxy with bindv6only as documented",
    );
}

#[test]
fn tcp_proxy_with_bindv6only_child() {
    run_if_child(CHILD, async {
        sysctl("ipv6/bindv6only", "1");
        let upstream = TcpListener::bind("127.0.0.1:5000").unwrap();
        let mut proxy = Process::start(PROXY, ["[::]:5000", "127.0.0.1:5000"]);
        assert_eq!(proxy.listening_port_after_banner(), 5000);
        let mut client = TcpStream::connect("[::1]:5000").unwrap();
        let (mut served, _) = upstream.accept().unwrap();
        std::io::Write::write_all(&mut served, b"from upstream").unwrap();
        drop(served);
        client.set_read_timeout(Some(HANG_LIMIT)).unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "from upstream");
        proxy.kill();
        refused_as_a_loop(["[::]:5001", "[::1]:5001"]);
        println!("tcp-proxy with bindv6only as documented");
    });
}

/// With `net.ipv4.ip_nonlocal_bind = 1` (common where a floating address moves between hosts)
/// any IPv4 address can be bound, but only this host's are the proxy's own:
/// `tcp-proxy 0.0.0.0:P 192.0.2.1:P` starts (192.0.2.1 is TEST-NET-1, no address of this
/// host), while `127.0.0.2:P` is still refused as the proxy itself. (Before, the proxy took
/// every address it could bind for one of this host's, and refused to start.)
#[test]
fn tcp_proxy_with_ip_nonlocal_bind() {
    rerun_self_in_own_netns_with_hosts(
        "tcp_proxy_with_ip_nonlocal_bind_child",
        CHILD,
        HOSTS,
        "tcp-proxy with ip_nonlocal_bind as documented",
    );
}

#[test]
fn tcp_proxy_with_ip_nonlocal_bind_child() {
    run_if_child(CHILD, async {
        sysctl("ipv4/ip_nonlocal_bind", "1");
        let mut proxy = Process::start(PROXY, ["0.0.0.0:5000", "192.0.2.1:5000"]);
        assert_eq!(proxy.listening_port_after_banner(), 5000);
        proxy.kill();
        refused_as_a_loop(["0.0.0.0:5001", "127.0.0.2:5001"]);
        println!("tcp-proxy with ip_nonlocal_bind as documented");
    });
}

/// An upstream on a link-local address of this host (`fe80::1%d0`, on one end of a veth pair)
/// at the port of a proxy listening on `::` is the proxy itself: refused (before, the address's
/// scope was dropped where the check asks whether it is this host's, the bind failed, and the
/// proxy started, every connection coming back to it); another link-local address on that link
/// is another host. Skipped, saying why, where the namespace cannot have a veth pair.
#[test]
fn tcp_proxy_with_a_link_local_upstream() {
    rerun_self_in_own_netns_with_hosts(
        "tcp_proxy_with_a_link_local_upstream_child",
        CHILD,
        HOSTS,
        "tcp-proxy with a link-local upstream as documented",
    );
}

#[test]
fn tcp_proxy_with_a_link_local_upstream_child() {
    run_if_child(CHILD, async {
        let veth = Command::new("ip")
            .args("link add d0 type veth peer name d1".split(' '))
            .status();
        if !veth.as_ref().is_ok_and(|s| s.success()) {
            net_tests::harness::skipped(&format!("no veth pair can be made here ({veth:?})"));
            println!("tcp-proxy with a link-local upstream as documented");
            return;
        }
        for args in [
            "link set d0 up",
            "link set d1 up",
            "-6 addr add fe80::1/64 dev d0 nodad",
        ] {
            let done = Command::new("ip").args(args.split(' ')).status();
            assert!(
                done.as_ref().is_ok_and(|s| s.success()),
                "ip {args}: {done:?}"
            );
        }
        refused_as_a_loop(["[::]:5003", "[fe80::1%d0]:5003"]);
        let mut proxy = Process::start(PROXY, ["[::]:5004", "[fe80::2%d0]:5004"]);
        assert_eq!(proxy.listening_port_after_banner(), 5004);
        proxy.kill();
        println!("tcp-proxy with a link-local upstream as documented");
    });
}

/// A proxy listening on `127.0.0.1:P` (or `[::1]:P`) whose upstream is `0.0.0.0:P` (`[::]:P`)
/// is refused: a connect to the unspecified address reaches the loopback (before, the proxy
/// started, and each connection opened another to itself until descriptors ran out).
#[test]
fn tcp_proxy_to_the_unspecified_address_at_its_own_port() {
    for (listen, upstream) in [("127.0.0.1", "0.0.0.0"), ("::1", "::")] {
        // A port free now, for the proxy to listen at.
        let Ok(port) = TcpListener::bind((listen, 0)).and_then(|l| l.local_addr()) else {
            net_tests::harness::skipped(&format!("{listen} cannot be bound here"));
            continue;
        };
        let port = port.port();
        let at = |host: &str| {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        };
        refused_as_a_loop([at(listen), at(upstream)]);
    }
}
