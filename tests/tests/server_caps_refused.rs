//! Listener options that no listener can serve with are refused where
//! the listener is made.

use std::io::ErrorKind;

use net_sockets::{Error, SelectorManager, UnixSocketAddress, a_socket};
use net_tests::{TempDir, within};

fn assert_refused(e: &Error, name: &str) {
    assert!(
        matches!(e, Error::InvalidOption { option, .. } if *option == name),
        "{name}: {e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{name}");
    assert!(e.to_string().contains(name), "{e}");
}

/// `max_connections(0)` made a listener whose `accept` waits for ever, and
/// `max_connections_per_ip(0)` one that refuses every client: both are refused by `bind`,
/// `from_std` and `systemd_listeners` with `Error::InvalidOption` naming the option, before
/// anything is bound (no Unix socket file is left) or taken from systemd.
#[tokio::test]
async fn a_zero_connection_cap_is_refused_where_the_listener_is_made() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("hsmall");
    for name in ["max_connections", "max_connections_per_ip"] {
        let builder = || {
            let builder = a_socket(&selector).tcp();
            if name == "max_connections" {
                builder.max_connections(0)
            } else {
                builder.max_connections_per_ip(0)
            }
        };
        let e = within(builder().bind(("127.0.0.1", 0))).await.unwrap_err();
        assert_refused(&e, name);

        let path = dir.path().join(format!("{name}.sock"));
        let e = within(builder().bind(UnixSocketAddress::new(&path)))
            .await
            .unwrap_err();
        assert_refused(&e, name);
        assert!(!path.exists(), "{name}: {path:?} was created");

        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = builder().from_std(std_listener).unwrap_err();
        assert_refused(&e, name);

        // Checked before the environment is read: without socket activation this would be
        // `Error::Io` of kind `NotFound`.
        let e = builder().systemd_listeners().unwrap_err();
        assert_refused(&e, name);
    }

    // One is a cap like any other.
    let server = within(
        a_socket(&selector)
            .tcp()
            .max_connections(1)
            .max_connections_per_ip(1)
            .bind(("127.0.0.1", 0)),
    )
    .await
    .unwrap();
    let port = server.port().unwrap();
    let _client = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
        .await
        .unwrap();
    within(server.accept()).await.unwrap();
}
