//! A socket-activated TCP listener (systemd's `LISTEN_FDS`) takes the builder's options as a
//! bound one does, its family's included: the options are first tried on a scratch socket of
//! the listener's family (a value the OS refuses is found before the descriptors are taken),
//! and an IPv4 listener's type of service is `IP_TOS`, not IPv6's traffic class, which an IPv4
//! socket refuses.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use net_sockets::{SelectorManager, SocketAddress, a_socket};
use net_tests::loopback::has_ipv6_loopback;
use net_tests::within;

/// Set in the child process that plays the socket-activated service: the child test to run.
const ACTIVATED: &str = "NET_TESTS_ACTIVATED_OPTIONS_CHILD";

/// The type of service the child's builder asks for.
const TOS: u32 = 0x28;

/// Passes a TCP listener on `address` to a child process as systemd does (descriptor 3,
/// `LISTEN_PID`, `LISTEN_FDS=1`), runs `child_with_type_of_service` there, and returns the
/// line its connection sends to a client.
fn activate(address: &str) -> String {
    let listener = std::net::TcpListener::bind(address).unwrap();
    let address = listener.local_addr().unwrap();
    let listener = std::os::fd::OwnedFd::from(listener);
    socket2::SockRef::from(&listener)
        .set_cloexec(false)
        .unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let to_three = if fd == 3 {
        String::new()
    } else {
        format!("exec 3<&{fd} {fd}<&-; ")
    };
    let script = format!(
        "{to_three}LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec \"$0\" \
         --exact child_with_type_of_service --nocapture"
    );
    let process = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(std::env::current_exe().unwrap())
        .env(ACTIVATED, "child_with_type_of_service")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child's descriptor 3 keeps the socket listening.
    drop(listener);
    let stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    let output = process.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the activated child failed (read {line:?}): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    line
}

/// An IPv4 listener with a type of service: taken (were the scratch socket taken for an IPv6
/// one, the traffic class set on it would fail the call with
/// `InvalidOption { option: "type_of_service" }`), and the listener and what it accepts carry
/// `IP_TOS`.
#[test]
fn an_activated_ipv4_listener_takes_its_type_of_service() {
    if std::env::var_os(ACTIVATED).is_some() {
        return;
    }
    assert_eq!(activate("127.0.0.1:0"), "tos 40\n");
}

/// The same on IPv6, where the listener carries both the traffic class and `IP_TOS`.
#[test]
fn an_activated_ipv6_listener_takes_its_type_of_service() {
    if std::env::var_os(ACTIVATED).is_some() {
        return;
    }
    if !has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    assert_eq!(activate("[::1]:0"), "tos 40\n");
}

/// The socket-activated side of the tests above (does nothing in a normal run).
#[test]
fn child_with_type_of_service() {
    if std::env::var(ACTIVATED).is_err() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let mut listeners = a_socket(&selector)
            .tcp()
            .type_of_service(TOS as u8)
            .systemd_listeners()
            .expect("an activated listener with a type of service");
        assert_eq!(listeners.len(), 1);
        let (_, server) = listeners.remove(0);
        let SocketAddress::Inet(address) = server.local_address() else {
            panic!("not an IP listener: {:?}", server.local_address())
        };
        let ipv6 = address.socket_addr().is_ipv6();
        let tos = |s: socket2::SockRef<'_>| {
            let class = if ipv6 { Some(s.tclass_v6()?) } else { None };
            Ok((s.tos_v4()?, class))
        };
        let expected = (TOS, ipv6.then_some(TOS));
        assert_eq!(server.with_sock_ref(tos).unwrap(), expected, "listener");
        let mut socket = within(server.accept()).await.unwrap();
        assert_eq!(socket.with_sock_ref(tos).unwrap(), expected, "accepted");
        let mut output = socket.open_write_channel(true).unwrap();
        output.write_string_utf8("tos 40\n").await.unwrap();
        output.flush_and_close().await.unwrap();
    });
}
