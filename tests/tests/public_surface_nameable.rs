//! Every foreign type in the libraries' public signatures is nameable through the libraries
//! themselves, at the version their signatures use: a user stores it in a field, names it in a
//! helper's signature, or builds the value a call needs, without adding that dependency at a
//! matching version (and with its features) on their own, as tokio-rustls re-exports rustls.
//!
//! The exposures, each named by the path a user has: `net_io::bytes` (the channels' and
//! datagrams' `Bytes`), `net_io::codec` (the frame reads' and writes' codec traits),
//! `net_tls::rustls` (the escape hatches, the session's cipher suite and key exchange group,
//! the errors' rustls causes), `net_tls::CertificateDer` and `net_tls::PrivateKeyDer` (the DER
//! input), and `net_sockets::socket2` (the `SockRef` that `with_sock_ref` hands over, and the
//! socket2 values its setters take). tokio's I/O traits and `futures_core::Stream` are the
//! ecosystem's own (tokio 1, futures-core 0.3): a user of this API has them already.
//!
//! Most of it is checked at compile time, by functions that are type-checked and never run.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use net_sockets::{
    BoundDatagramSocket, ConnectedDatagramSocket, SelectorManager, ServerSocket, Socket, a_socket,
};
use net_tests::loopback::{connected_pair, tcp_listener};

/// A helper a user writes once and hands to every `with_sock_ref`: its signature names
/// socket2's `SockRef` through `net_sockets`, and it builds socket2's `TcpKeepalive`, which
/// `SockRef::set_tcp_keepalive` takes, from there too.
fn tune(socket: net_sockets::socket2::SockRef<'_>) -> io::Result<()> {
    let keepalive = net_sockets::socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(97))
        .with_interval(Duration::from_secs(13));
    socket.set_tcp_keepalive(&keepalive)
}

/// What a user keeps beside a socket: the socket2 values it reads back, by their types.
#[derive(Debug)]
struct Tuned {
    kind: net_sockets::socket2::Type,
    domain: net_sockets::socket2::Domain,
    idle: Duration,
}

fn read_back(socket: net_sockets::socket2::SockRef<'_>) -> io::Result<Tuned> {
    Ok(Tuned {
        kind: socket.r#type()?,
        domain: socket.domain()?,
        idle: socket.tcp_keepalive_time()?,
    })
}

/// `with_sock_ref` on each of the four socket types takes a function over the re-exported
/// `SockRef`.
#[allow(dead_code)]
fn every_with_sock_ref_takes_the_reexported_sock_ref(
    socket: &Socket,
    listener: &ServerSocket,
    bound: &BoundDatagramSocket,
    connected: &ConnectedDatagramSocket,
) -> net_sockets::Result<()> {
    socket.with_sock_ref(tune)?;
    listener.with_sock_ref(tune)?;
    let _: net_sockets::socket2::Type = bound.with_sock_ref(|s| s.r#type())?;
    let _: Option<net_sockets::socket2::SockAddr> =
        connected.with_sock_ref(|s| s.peer_addr().map(Some))?;
    Ok(())
}

/// Options set through the re-exported socket2 types reach the socket, and read back as those
/// types: socket2 is the version `with_sock_ref` hands over, so one built from
/// `net_sockets::socket2` fits it whatever socket2 the application depends on.
#[tokio::test]
async fn socket2_values_built_from_the_reexport_fit_with_sock_ref() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, accepted) = connected_pair(&selector, &listener).await;
    for socket in [&client, &accepted] {
        socket.with_sock_ref(tune).unwrap();
        let tuned = socket.with_sock_ref(read_back).unwrap();
        assert_eq!(tuned.kind, net_sockets::socket2::Type::STREAM, "{tuned:?}");
        assert_eq!(
            tuned.domain,
            net_sockets::socket2::Domain::IPV4,
            "{tuned:?}"
        );
        assert_eq!(tuned.idle, Duration::from_secs(97), "{tuned:?}");
    }
    listener.with_sock_ref(tune).unwrap();

    // The re-export carries the features this crate builds socket2 with (`all`): the
    // close-on-exec flag the adoption docs ask a user to set is there.
    let udp = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    udp.with_sock_ref(|s| s.set_cloexec(true)).unwrap();
    let kind = udp.with_sock_ref(|s| s.r#type()).unwrap();
    assert_eq!(kind, net_sockets::socket2::Type::DGRAM);
    client.close();
    accepted.close();
}

/// The other foreign types of the public signatures, each named by the path the libraries
/// give it (a guard: these paths are part of the contract).
#[allow(dead_code)]
fn the_other_foreign_types_are_named_through_the_libraries(
    session: &net_tls::TlsSession,
    datagram: &net_sockets::Datagram,
    error: &net_tls::Error,
) {
    let _: Option<net_tls::rustls::CipherSuite> = session.cipher_suite();
    let _: Option<net_tls::rustls::NamedGroup> = session.key_exchange_group();
    let _: &[net_tls::CertificateDer<'static>] = session.peer_certificates();
    let _: Arc<net_tls::rustls::crypto::CryptoProvider> = net_tls::crypto_provider();
    let _: fn(Arc<net_tls::rustls::ClientConfig>) -> net_tls::TlsConfig =
        net_tls::TlsConfig::from_rustls;
    let _: fn(Arc<net_tls::rustls::ServerConfig>) -> net_tls::TlsServerConfig =
        net_tls::TlsServerConfig::from_rustls;
    let key: net_tls::PrivateKeyDer<'static> =
        net_tls::rustls::pki_types::PrivatePkcs8KeyDer::from(vec![0u8; 4]).into();
    let _ = net_tls::TlsServerConfig::builder().private_key_der(key);
    match error {
        net_tls::Error::Config(e) | net_tls::Error::Handshake(e) => {
            let _: &net_tls::rustls::Error = e;
        }
        net_tls::Error::ClientVerifier(e) => {
            let _: &net_tls::rustls::server::VerifierBuilderError = e;
        }
        _ => {}
    }
    let _: &net_io::bytes::Bytes = &datagram.packet;
    let _ = net_sockets::Datagram::new(net_io::bytes::Bytes::new(), datagram.address.clone());
    fn codec<C: net_io::codec::Decoder + net_io::codec::Encoder<String>>(_: &C) {}
    codec(&net_io::codec::LinesCodec::new());
}
