//! The public API's traits as a user of tokio and rustls expects them, beside what
//! `public_api.rs`, `public_types_are_send_sync_debug.rs` and `public_api_printing.rs` assert:
//! a received datagram's `Debug` shows its size, never the peer's bytes; the options enum a user
//! compares or keys a map by hashes, as `LineEnding` and `TlsVersion` do; every handle a user
//! keeps in a struct that is polled or pinned is `Unpin`, as tokio's sockets are; and a
//! `Frames` stream's `next_frame` future is `Send`.

use std::collections::HashSet;
use std::hash::Hash;

use net_sockets::{Datagram, InetSocketAddress, ProxyProtocol, SelectorManager, a_socket};
use tokio_util::codec::LinesCodec;

/// A secret a user's protocol carries in a datagram (a token, a password).
const SECRET: &str = "token=hunter2-SECRET";

fn unpin<T: Unpin>() {}
fn send<T: Send>(_: &T) {}
fn hash<T: Hash + Eq + Copy>() {}

/// `Debug` of a `Datagram` (what `{:?}` of a received datagram, or of a `Result` that holds
/// one, writes to a log) names its address and its size, never its bytes: the peer's data, up
/// to 64 KiB of it, as a `SocketStream`'s and a `Backlog`'s `Debug` never show what they hold.
#[tokio::test]
async fn a_datagrams_debug_shows_its_size_not_its_payload() {
    let selector = SelectorManager::new();
    let socket = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = socket.local_address().port().unwrap();
    let mut packet = SECRET.as_bytes().to_vec();
    packet.resize(8192, b'x');
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(&packet, ("127.0.0.1", port)).unwrap();
    let received = net_tests::within(socket.receive()).await.unwrap();
    assert_eq!(received.packet.len(), 8192);

    let made = Datagram::new(packet, InetSocketAddress::new([127, 0, 0, 1], 9)).unwrap();
    for datagram in [&received, &made] {
        let shown = format!("{datagram:?}");
        assert!(
            !shown.contains("hunter2"),
            "Debug of a Datagram prints its payload: {}",
            &shown[..shown.len().min(200)]
        );
        assert!(
            shown.len() < 200,
            "Debug of a Datagram is {} bytes",
            shown.len()
        );
        assert!(shown.contains("8192"), "{shown}");
        assert!(shown.contains(&datagram.address.to_string()), "{shown}");
    }
    // Pretty-printed, or inside a `Result` as a `receive` returns it: the same.
    let shown = format!("{:#?}", Ok::<_, net_sockets::Error>(received));
    assert!(!shown.contains("hunter2") && shown.len() < 300, "{shown}");
}

/// `ProxyProtocol` is a small option value like `LineEnding` and `TlsVersion`: a user who keys
/// listeners (or their counts) by it needs `Hash`, with `Eq` agreeing.
#[test]
fn the_small_option_enums_hash() {
    hash::<ProxyProtocol>();
    hash::<net_io::LineEnding>();
    hash::<net_tls::TlsVersion>();
    let modes: HashSet<ProxyProtocol> = [
        ProxyProtocol::Off,
        ProxyProtocol::Optional,
        ProxyProtocol::Required,
        ProxyProtocol::default(),
    ]
    .into_iter()
    .collect();
    assert_eq!(modes.len(), 3);
}

/// Every handle a user keeps beside a pinned future or in a type that implements `Future` or
/// `Stream` by hand is `Unpin`, as tokio's `TcpStream`, `TcpListener`, `UdpSocket` and
/// `Runtime` handles are.
#[test]
fn every_handle_is_unpin() {
    unpin::<SelectorManager>();
    unpin::<net_sockets::ServerSocket>();
    unpin::<net_sockets::Socket>();
    unpin::<net_sockets::Connection>();
    unpin::<net_sockets::SocketStream>();
    unpin::<net_sockets::BoundDatagramSocket>();
    unpin::<net_sockets::ConnectedDatagramSocket>();
    unpin::<net_sockets::ShutdownSignal>();
    unpin::<Datagram>();
    unpin::<net_tls::TlsSocket>();
    unpin::<net_tls::TlsConnection>();
    unpin::<net_tls::TlsStream>();
    unpin::<net_tls::TlsSession>();
    unpin::<net_io::ByteChannel>();
    unpin::<net_io::Backlog>();
    unpin::<net_io::WriteState>();
}

/// `Frames::next_frame`, the stream's step without `StreamExt`, is `Send` (a task that loops
/// on it is spawned).
#[allow(dead_code)]
fn next_frame_is_send(mut frames: net_io::Frames<LinesCodec>) {
    send(&frames.next_frame());
}
