//! What `public_api.rs` does not assert yet, checked at compile time: the public types a user
//! keeps in an `Arc`, a static or a spawned task beside the sockets (the small value types,
//! the markers, the transport's session, the escaped text) are `Send + Sync + 'static` and
//! `Debug`; the errors also convert into `io::Error` (for `?` into `io::Result`) and back; the
//! connect and bind futures are `Send + 'static` for every owned kind of address the builders
//! take (a user spawns `connect(address)` as it is); and the channels are tokio's buffered
//! reader and writer.
//!
//! The functions below are type-checked and never run.

use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use net_io::{ByteReadChannel, ByteWriteChannel};
use net_sockets::{InetSocketAddress, SelectorManager, SocketAddress, UnixSocketAddress, a_socket};
use net_tls::{TlsConfig, TlsExt, TlsSocket};

fn shared<T: Send + Sync + Debug + 'static>() {}
fn send_static<T: Send + 'static>(_: &T) {}
fn send<T: Send>(_: &T) {}
fn io_round_trip<E>()
where
    E: std::error::Error + Send + Sync + 'static + From<io::Error>,
    io::Error: From<E>,
{
}
fn buffered_reader<T: tokio::io::AsyncBufRead + tokio::io::AsyncRead + Send + Unpin>() {}
fn writer<T: tokio::io::AsyncWrite + Send + Unpin>() {}

#[test]
fn the_small_public_types_are_send_sync_static_and_debug() {
    // net-io.
    shared::<net_io::Backlog>();
    shared::<net_io::WriteState>();
    shared::<net_io::LineEnding>();
    shared::<net_io::PeerText<'static>>();
    shared::<net_io::SharedError>();
    shared::<net_io::ByteChannel>();
    shared::<net_io::Error>();

    // net-sockets.
    shared::<net_sockets::ProxyProtocol>();
    shared::<net_sockets::Plain>();
    shared::<net_sockets::Error>();
    shared::<net_sockets::Incoming>();
    shared::<net_sockets::DatagramIncoming>();

    // net-tls.
    shared::<net_tls::TlsSession>();
    shared::<net_tls::TlsVersion>();
    shared::<net_tls::Truncated>();
    shared::<net_tls::Error>();
    shared::<net_tls::CertificateDer<'static>>();
    shared::<net_tls::PrivateKeyDer<'static>>();
}

#[test]
fn every_crates_error_converts_into_an_io_error_and_back() {
    io_round_trip::<net_io::Error>();
    io_round_trip::<net_sockets::Error>();
    io_round_trip::<net_tls::Error>();
}

#[test]
fn the_channels_are_tokios_buffered_reader_and_writer() {
    buffered_reader::<ByteReadChannel>();
    writer::<ByteWriteChannel>();
}

/// `connect` and `bind` futures are `Send + 'static` for every owned address the builders
/// take, so that `tokio::spawn(a_socket(&s).tcp().connect(address))` compiles whatever the
/// address's type.
#[allow(dead_code)]
fn connect_and_bind_futures_are_send_and_static_for_every_owned_address(
    selector: &SelectorManager,
    unix: UnixSocketAddress,
    address: SocketAddress,
    inet: InetSocketAddress,
) {
    let tcp = || a_socket(selector).tcp();
    let udp = || a_socket(selector).udp();
    let v4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
    let v6 = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 1, 0, 0);

    send_static(&tcp().connect(unix.clone()));
    send_static(&tcp().connect(address.clone()));
    send_static(&tcp().connect(inet));
    send_static(&tcp().connect(SocketAddr::V4(v4)));
    send_static(&tcp().connect(v4));
    send_static(&tcp().connect(v6));
    send_static(&tcp().connect((IpAddr::V4(Ipv4Addr::LOCALHOST), 1)));
    send_static(&tcp().connect((Ipv4Addr::LOCALHOST, 1)));
    send_static(&tcp().connect((Ipv6Addr::LOCALHOST, 1)));
    send_static(&tcp().connect(("localhost".to_string(), 1)));
    send_static(&tcp().connect("localhost:1"));

    send_static(&tcp().bind(unix.clone()));
    send_static(&tcp().bind(address.clone()));
    send_static(&tcp().bind(inet));
    send_static(&tcp().bind(v6));
    send_static(&tcp().bind("127.0.0.1:0".to_string()));

    send_static(&udp().bind(unix.clone()));
    send_static(&udp().bind(address.clone()));
    send_static(&udp().connect(v4));
    send_static(&udp().connect(unix.clone()));
    send_static(&udp().connect_from(address, unix));
}

/// The futures of a TLS socket's own waits are `Send`, and its session queries are there
/// through the stream too.
#[allow(dead_code)]
async fn tls_socket_waits_are_send(tls: TlsSocket, server: net_sockets::Socket) {
    send(&tls.await_closed());
    send(&tls.shutdown_signal().requested());
    let config = TlsConfig::builder().build().unwrap();
    send_static(&server.tls(config));
}
