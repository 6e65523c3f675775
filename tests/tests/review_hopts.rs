//! Review round "hopts": socket options on every kind of socket they apply to (listeners,
//! accepted, connected, dual-stack), values out of the OS's range, and admission control under
//! concurrency.

use net_sockets::{SelectorManager, a_socket};
use net_tests::within;

/// A dual-stack listener (bound to `::`) serves IPv4 clients through IPv4-mapped addresses, and
/// their packets carry the IPv4 `IP_TOS`, not the IPv6 traffic class. `type_of_service` marks
/// them too, as the JDK under Ktor does on Linux ("set the V4 option also"): an accepted
/// IPv4-mapped connection has the type of service, and so has a UDP socket bound to `::`
/// (whose datagrams to IPv4 peers carry it). (Before, only `IPV6_TCLASS` was set: IPv4 clients
/// of a dual-stack server were served unmarked.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn type_of_service_marks_the_ipv4_traffic_of_a_dual_stack_socket() {
    if !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .type_of_service(0x20)
        .bind(("::", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    accepted
        .with_sock_ref(|s| {
            assert_eq!(s.tclass_v6()?, 0x20, "the IPv6 traffic class");
            assert_eq!(
                s.tos_v4()?,
                0x20,
                "the IPv4 type of service of a mapped connection"
            );
            Ok(())
        })
        .unwrap();
    drop(client);

    let udp = a_socket(&selector)
        .udp()
        .type_of_service(0x20)
        .bind(("::", 0))
        .await
        .unwrap();
    udp.with_sock_ref(|s| {
        assert_eq!(s.tclass_v6()?, 0x20, "the IPv6 traffic class");
        assert_eq!(
            s.tos_v4()?,
            0x20,
            "the IPv4 type of service of a dual-stack socket"
        );
        Ok(())
    })
    .unwrap();
}

/// A listener adopted with `from_std` gets the builder's options for the connections it
/// accepts, the buffer sizes among them, TCP as Unix: each accepted socket has the sizes asked
/// for. (Before, an adopted Unix listener's connections got them and an adopted TCP one's did
/// not: they were set on a listener only before its `bind`, and a TCP connection takes its
/// listener's.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_adopted_listener_gives_its_connections_the_builders_buffer_sizes() {
    let selector = SelectorManager::new();
    let builder = a_socket(&selector)
        .tcp()
        .send_buffer_size(64 * 1024)
        .receive_buffer_size(96 * 1024);
    let check = |which: &'static str| {
        move |s: socket2::SockRef<'_>| {
            // Linux doubles what it is asked for; its defaults differ.
            assert_eq!(s.send_buffer_size()?, 2 * 64 * 1024, "{which}");
            assert_eq!(s.recv_buffer_size()?, 2 * 96 * 1024, "{which}");
            Ok(())
        }
    };

    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = std_listener.local_addr().unwrap();
    let server = builder.clone().from_std(std_listener).unwrap();
    let client = std::net::TcpStream::connect(address).unwrap();
    let accepted = within(server.accept()).await.unwrap();
    accepted.with_sock_ref(check("accepted TCP")).unwrap();
    drop(client);

    let dir = net_tests::TempDir::new("hopts");
    let path = dir.join("adopted.sock");
    let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = builder.from_std(std_listener).unwrap();
    let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let accepted = within(server.accept()).await.unwrap();
    accepted.with_sock_ref(check("accepted Unix")).unwrap();
    drop(client);
}
