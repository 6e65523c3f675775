//! IPv6 addresses whose scope names an interface (`fe80::1%lo`), in every form `bind` and
//! `connect` take.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;

use net_sockets::{SelectorManager, SocketAddress, a_socket};

const NAMED_SCOPE_ENV: &str = "NET_TESTS_NAMED_SCOPE";

/// An IPv6 address whose scope is an interface name (`fe80::1%lo`), as `ip`, `ping`, `curl` and
/// Go write it, is one address in every form: `"[fe80::1%lo]:p"`, `("[fe80::1%lo]", p)` and
/// `("fe80::1%lo", p)` reach the same listener as the numeric scope does (`"[fe80::1%1]:p"`),
/// for TCP and UDP. Before, only the bare `(host, port)` form worked: the string was refused
/// with `InvalidInput` ("a scope is a number"), and the bracketed host went to the resolver with
/// its brackets, which fails (`Error::Resolve`). In a network namespace of the test's own, whose
/// loopback is given the link-local address `fe80::1`.
#[test]
fn an_ipv6_scope_naming_an_interface_works_in_every_form() {
    net_tests::harness::rerun_self_in_own_netns(
        "an_ipv6_scope_naming_an_interface_works_in_every_form_child",
        NAMED_SCOPE_ENV,
        "named scopes reached",
    );
}

#[test]
fn an_ipv6_scope_naming_an_interface_works_in_every_form_child() {
    net_tests::harness::run_if_child(NAMED_SCOPE_ENV, async {
        let added = std::process::Command::new("ip")
            .args(["addr", "add", "fe80::1/64", "dev", "lo", "nodad"])
            .status()
            .unwrap();
        assert!(added.success(), "ip addr add: {added}");
        net_tests::harness::wait_for_local_route("fe80::1");
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .tcp()
            .bind("[fe80::1%1]:0")
            .await
            .unwrap();
        let port = server.port().unwrap();
        let expected =
            SocketAddress::from(format!("[fe80::1%1]:{port}").parse::<SocketAddr>().unwrap());
        let text = format!("[fe80::1%lo]:{port}");
        let bracketed = ("[fe80::1%lo]", port);
        let bare = ("fe80::1%lo", port);
        for (form, socket) in [
            (
                "numeric",
                a_socket(&selector)
                    .tcp()
                    .connect(format!("[fe80::1%1]:{port}"))
                    .await,
            ),
            (
                "\"[fe80::1%lo]:p\"",
                a_socket(&selector).tcp().connect(&text).await,
            ),
            (
                "(\"[fe80::1%lo]\", p)",
                a_socket(&selector).tcp().connect(bracketed).await,
            ),
            (
                "(\"fe80::1%lo\", p)",
                a_socket(&selector).tcp().connect(bare).await,
            ),
        ] {
            let socket = socket.unwrap_or_else(|e| panic!("TCP {form}: {e:?}"));
            assert_eq!(socket.remote_address(), expected, "TCP {form}");
            drop(server.accept().await.unwrap());
        }
        let udp = a_socket(&selector).udp().bind(&text).await.unwrap();
        assert_eq!(udp.local_address(), expected);
        drop(udp);
        let peer = a_socket(&selector)
            .udp()
            .bind("[fe80::1%1]:0")
            .await
            .unwrap();
        let port = peer.local_address().port().unwrap();
        let expected =
            SocketAddress::from(format!("[fe80::1%1]:{port}").parse::<SocketAddr>().unwrap());
        for (form, socket) in [
            (
                "\"[fe80::1%lo]:p\"",
                a_socket(&selector)
                    .udp()
                    .connect(format!("[fe80::1%lo]:{port}"))
                    .await,
            ),
            (
                "(\"[fe80::1%lo]\", p)",
                a_socket(&selector)
                    .udp()
                    .connect(("[fe80::1%lo]", port))
                    .await,
            ),
        ] {
            let socket = socket.unwrap_or_else(|e| panic!("UDP {form}: {e:?}"));
            assert_eq!(socket.remote_address(), expected, "UDP {form}");
        }
        // Brackets still go only around an IPv6 address.
        for bad in [
            "[localhost%lo]:80",
            "[127.0.0.1%lo]:80",
            "[fe80::1%]:80",
            "[fe80::1%lo]:99999",
        ] {
            let e = a_socket(&selector).tcp().connect(bad).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad}: {e:?}");
        }
        selector.close();
        println!("named scopes reached");
    });
}
