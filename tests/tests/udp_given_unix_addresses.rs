//! A UDP socket given a Unix socket address where an IP one belongs: `send` of a datagram
//! addressed to one, and `connect_from` with one as the local address. The send's docs list
//! `InvalidInput` "for a Unix socket address", `bind`'s `Unsupported` for a Unix address;
//! no test reached either refusal (found by a coverage run: `datagram.rs`'s two branches had
//! a count of 0). Each is typed, sends or binds nothing, and leaves the socket working.

use std::io;
use std::pin::pin;

use net_sockets::{Datagram, Error, SelectorManager, UnixSocketAddress, a_socket};
use net_tests::loopback::udp_socket;
use net_tests::{pending_after_one_poll, within};

/// `send` of a datagram addressed to a Unix socket path: `InvalidInput`, nothing sent (the
/// receiver gets the next datagram first), and the socket sends on.
#[tokio::test]
async fn a_datagram_to_a_unix_address_is_refused_and_the_socket_sends_on() {
    let selector = SelectorManager::new();
    let sender = udp_socket(&selector).await;
    let receiver = udp_socket(&selector).await;
    let to_unix = Datagram::new("to a path", UnixSocketAddress::new("/tmp/no-such.sock")).unwrap();
    let e = within(sender.send(to_unix)).await.unwrap_err();
    assert!(matches!(&e, Error::Io(_)), "{e:?}");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e:?}");
    assert!(e.to_string().contains("Unix socket address"), "{e}");
    assert!(!sender.is_closed());

    let to = receiver.local_address();
    within(sender.send(Datagram::new("after", to).unwrap()))
        .await
        .unwrap();
    let got = within(receiver.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"after");
    assert_eq!(got.address, sender.local_address());
    let mut next = pin!(receiver.receive());
    assert!(pending_after_one_poll(next.as_mut()).await);
}

/// `connect_from` an IP peer with a Unix socket path as the local address: refused as
/// `bind` refuses a Unix address (`Unsupported`: Unix datagram sockets are not supported),
/// nothing made at the path, and the builder's selector serves a plain connect next.
#[tokio::test]
async fn a_udp_connect_from_a_unix_address_is_unsupported_and_makes_nothing() {
    let selector = SelectorManager::new();
    let receiver = udp_socket(&selector).await;
    let dir = std::env::temp_dir().join(format!("udp-unix-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("local.sock");
    let e = within(
        a_socket(&selector)
            .udp()
            .connect_from(receiver.local_address(), UnixSocketAddress::new(&path)),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e:?}");
    assert!(e.to_string().contains("Unix datagram"), "{e}");
    assert!(!path.exists(), "{} was made", path.display());
    std::fs::remove_dir_all(&dir).unwrap();

    let socket = within(a_socket(&selector).udp().connect(receiver.local_address()))
        .await
        .unwrap();
    within(socket.send(Datagram::new("ok", socket.remote_address()).unwrap()))
        .await
        .unwrap();
    assert_eq!(&within(receiver.receive()).await.unwrap().packet[..], b"ok");
}
