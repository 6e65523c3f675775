//! The public API as a demanding user sees it: every public async method's future is `Send`
//! (users `tokio::spawn` them), the public types are `Send`/`Sync`/`Unpin`/`Debug`/`Clone`
//! where sharing, pinning, printing or copying them is expected, and the error types are
//! `std::error::Error + Send + Sync + 'static` with source chains that lead to the cause.
//!
//! Most of it is checked at compile time, by functions that are type-checked and never run.

use std::error::Error as StdError;
use std::fmt::Debug;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{
    BoundDatagramSocket, ConnectedDatagramSocket, Connection, Datagram, SelectorManager,
    ServerSocket, ShutdownSignal, Socket, SocketStream, a_socket,
};
use net_tls::{TlsConfig, TlsConnection, TlsExt, TlsServerConfig, TlsSocket, TlsStream};
use tokio_util::codec::{BytesCodec, LinesCodec};

fn send<T: Send>(_: &T) {}
fn send_static<T: Send + 'static>(_: &T) {}
fn send_sync<T: Send + Sync + 'static>() {}
fn send_static_type<T: Send + 'static>() {}
fn unpin<T: Unpin>() {}
fn debug<T: Debug>() {}
fn clone<T: Clone>() {}
fn error<T: StdError + Send + Sync + 'static>() {}
fn io_stream<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static>() {}

/// Every public async method of the channels returns a `Send` future.
#[allow(dead_code)]
async fn channel_futures_are_send(
    mut input: ByteReadChannel,
    mut output: ByteWriteChannel,
    mut other: ByteWriteChannel,
) {
    let mut buf = [0u8; 8];
    let mut line = String::new();
    let mut lines = LinesCodec::new();
    let mut bytes_codec = BytesCodec::new();
    send(&input.read_utf8_line(1));
    send(&input.read_line(1, LineEnding::Default));
    send(&input.read_line_strict(1, LineEnding::Lenient));
    send(&input.read_line_to(&mut line, 1, LineEnding::Default));
    send(&input.read_until(b"\r\n", 1));
    send(&input.read_u8());
    send(&input.read_i8());
    send(&input.read_u16());
    send(&input.read_i16_le());
    send(&input.read_u32());
    send(&input.read_i32());
    send(&input.read_u64_le());
    send(&input.read_i64());
    send(&input.read_f32());
    send(&input.read_f64_le());
    send(&input.read_fully(&mut buf));
    send(&input.read_available(&mut buf));
    send(&input.read_bytes(1));
    send(&input.read_remaining(1));
    send(&input.discard(1));
    send(&input.discard_exact(1));
    send(&input.await_content(1));
    send(&input.peek(1));
    send(&input.skip_if_found(b"x"));
    send(&input.copy_to(&mut other, 1));
    send(&input.copy_and_close(&mut other, 1));
    send(&input.read_frame(&mut lines));
    send(&input.read_frame(&mut bytes_codec));

    send(&output.write_u8(1));
    send(&output.write_i16(1));
    send(&output.write_u32_le(1));
    send(&output.write_i64(1));
    send(&output.write_f32(1.0));
    send(&output.write_f64_le(1.0));
    send(&output.write_fully(b"x"));
    send(&output.write_bytes(Bytes::from_static(b"x")));
    send(&output.write_string_utf8("x"));
    send(&output.write_frame(&mut lines, "x"));
    send(&output.write_frame(&mut bytes_codec, Bytes::from_static(b"x")));
    send(&output.flush());
    send(&output.flush_and_close());
}

/// Every public async method of the sockets returns a `Send` future; those that take their
/// arguments by value (or own what they need) are `'static`, so they can be spawned as they
/// are.
#[allow(dead_code)]
async fn socket_futures_are_send(
    selector: SelectorManager,
    server: ServerSocket,
    socket: Socket,
    connection: Connection,
    bound: BoundDatagramSocket,
    connected: ConnectedDatagramSocket,
    signal: ShutdownSignal,
) {
    send_static(&a_socket(&selector).tcp().connect(("localhost", 1)));
    send_static(&a_socket(&selector).tcp().connect("127.0.0.1:1".to_string()));
    send_static(&a_socket(&selector).tcp().bind(("127.0.0.1", 0)));
    send_static(&a_socket(&selector).udp().bind(("127.0.0.1", 0)));
    send_static(&a_socket(&selector).udp().connect(("127.0.0.1", 1)));
    send_static(
        &a_socket(&selector)
            .udp()
            .connect_from(("127.0.0.1", 1), ("127.0.0.1", 0)),
    );
    send(&selector.shutdown(Duration::from_secs(1)));

    send(&server.accept());
    send(&server.await_closed());
    send(&server.shutdown(Duration::from_secs(1)));

    send(&socket.await_closed());
    send(&socket.shutdown_requested());
    send(&signal.requested());
    send_static(&connection.close_gracefully(Duration::from_secs(1)));

    let datagram = Datagram::new("x", bound.local_address()).unwrap();
    send(&bound.send(datagram.clone()));
    send(&bound.receive());
    send(&bound.await_closed());
    send(&connected.send(datagram));
    send(&connected.receive());
    send(&connected.await_closed());
}

/// The TLS handshakes (plain socket and STARTTLS on a `Connection`) and what a `TlsSocket`
/// offers return `Send` futures; the client handshake takes everything by value, so it is
/// `'static`.
#[allow(dead_code, clippy::too_many_arguments)]
async fn tls_futures_are_send(
    client: Socket,
    server: Socket,
    starttls_client: Connection,
    starttls_server: Connection,
    tls: TlsSocket,
    tls_connection: TlsConnection,
    config: TlsConfig,
    server_config: TlsServerConfig,
) {
    send_static(&client.tls(config.clone()));
    send(&server.tls_server(&server_config));
    send_static(&starttls_client.tls(config));
    send(&starttls_server.tls_server(&server_config));
    send(&tls.await_closed());
    send(&tls.shutdown_requested());
    send_static(&tls_connection.close_gracefully(Duration::from_secs(1)));
}

#[test]
fn the_public_types_are_send_sync_and_debug() {
    // Shared in an `Arc` or across tasks.
    send_sync::<SelectorManager>();
    send_sync::<ServerSocket>();
    send_sync::<Socket>();
    send_sync::<TlsSocket>();
    send_sync::<BoundDatagramSocket>();
    send_sync::<ConnectedDatagramSocket>();
    send_sync::<ShutdownSignal>();
    send_sync::<Datagram>();
    send_sync::<net_sockets::SocketAddress>();
    send_sync::<net_sockets::InetSocketAddress>();
    send_sync::<net_sockets::UnixSocketAddress>();
    send_sync::<net_sockets::SocketOptions>();
    send_sync::<net_sockets::ShutdownReport>();
    send_sync::<net_sockets::ListenerStats>();
    send_sync::<TlsConfig>();
    send_sync::<TlsServerConfig>();
    send_sync::<net_tls::TlsConfigBuilder>();
    send_sync::<net_tls::TlsServerConfigBuilder>();
    send_sync::<net_sockets::TcpSocketBuilder>();
    send_sync::<net_sockets::UdpSocketBuilder>();
    send_sync::<net_sockets::SocketBuilder>();
    send_sync::<net_sockets::SelectorManagerBuilder>();

    // Moved into a task.
    send_static_type::<ByteReadChannel>();
    send_static_type::<ByteWriteChannel>();
    send_static_type::<Connection>();
    send_static_type::<TlsConnection>();
    send_static_type::<SocketStream>();
    send_static_type::<TlsStream>();
    send_static_type::<net_sockets::Incoming>();
    send_static_type::<net_sockets::DatagramIncoming>();
    send_static_type::<net_io::Frames<LinesCodec>>();

    // tokio's I/O traits (SPEC §4.2: `TlsStream: AsyncRead + AsyncWrite + Send + Unpin +
    // 'static`), and streams usable with `StreamExt::next` (which needs `Unpin`).
    io_stream::<TlsStream>();
    io_stream::<SocketStream>();
    io_stream::<ByteChannelPair>();
    unpin::<ByteReadChannel>();
    unpin::<ByteWriteChannel>();
    unpin::<net_sockets::Incoming>();
    unpin::<net_sockets::DatagramIncoming>();
    unpin::<net_io::Frames<LinesCodec>>();

    // Debug on every public type.
    debug::<ByteReadChannel>();
    debug::<ByteWriteChannel>();
    debug::<ByteChannel>();
    debug::<LineEnding>();
    debug::<net_io::Frames<LinesCodec>>();
    debug::<net_io::Error>();
    debug::<net_io::SharedError>();
    debug::<net_io::Backlog>();
    debug::<net_io::WriteState>();
    debug::<SelectorManager>();
    debug::<net_sockets::SelectorManagerBuilder>();
    debug::<net_sockets::SocketBuilder>();
    debug::<net_sockets::TcpSocketBuilder>();
    debug::<net_sockets::UdpSocketBuilder>();
    debug::<ServerSocket>();
    debug::<Socket>();
    debug::<Connection>();
    debug::<SocketStream>();
    debug::<ShutdownSignal>();
    debug::<BoundDatagramSocket>();
    debug::<ConnectedDatagramSocket>();
    debug::<Datagram>();
    debug::<net_sockets::Incoming>();
    debug::<net_sockets::DatagramIncoming>();
    debug::<net_sockets::SocketAddress>();
    debug::<net_sockets::InetSocketAddress>();
    debug::<net_sockets::UnixSocketAddress>();
    debug::<net_sockets::SocketOptions>();
    debug::<net_sockets::ProxyProtocol>();
    debug::<net_sockets::ShutdownReport>();
    debug::<net_sockets::ListenerStats>();
    debug::<net_sockets::Plain>();
    debug::<net_sockets::Error>();
    debug::<TlsConfig>();
    debug::<TlsServerConfig>();
    debug::<net_tls::TlsConfigBuilder>();
    debug::<net_tls::TlsServerConfigBuilder>();
    debug::<TlsSocket>();
    debug::<TlsConnection>();
    debug::<TlsStream>();
    debug::<net_tls::TlsSession>();
    debug::<net_tls::TlsVersion>();
    debug::<net_tls::Truncated>();
    debug::<net_tls::Error>();

    // Cheap handles and plain data are `Clone`.
    clone::<SelectorManager>();
    clone::<ShutdownSignal>();
    clone::<Datagram>();
    clone::<net_sockets::SocketAddress>();
    clone::<net_sockets::SocketOptions>();
    clone::<net_sockets::TcpSocketBuilder>();
    clone::<net_sockets::UdpSocketBuilder>();
    clone::<TlsConfig>();
    clone::<TlsServerConfig>();
    clone::<LineEnding>();
    clone::<net_io::SharedError>();

    // Errors.
    error::<net_io::Error>();
    error::<net_io::SharedError>();
    error::<net_sockets::Error>();
    error::<net_tls::Error>();
    error::<net_tls::Truncated>();
}

/// The in-memory pipe's halves, as a user combines them with `tokio::io::join`.
type ByteChannelPair = tokio::io::Join<ByteReadChannel, ByteWriteChannel>;

/// An OS error reported by a socket keeps its code through every error type: converted to an
/// `io::Error` (as `?` in a function returning `io::Result` does), the OS code is still there.
#[test]
fn an_os_error_keeps_its_code_through_every_error_type() {
    let os = || io::Error::from_raw_os_error(libc::ECONNRESET);
    let channel = net_io::Error::from(os());
    assert_eq!(
        io::Error::from(channel).raw_os_error(),
        Some(libc::ECONNRESET)
    );
    let socket = net_sockets::Error::from(os());
    assert_eq!(
        io::Error::from(socket).raw_os_error(),
        Some(libc::ECONNRESET)
    );
    let tls = net_tls::Error::from(os());
    assert_eq!(io::Error::from(tls).raw_os_error(), Some(libc::ECONNRESET));
    let tls = net_tls::Error::from(net_sockets::Error::from(net_io::Error::from(os())));
    assert_eq!(io::Error::from(tls).raw_os_error(), Some(libc::ECONNRESET));
}

/// A wrapped error's cause is reachable through `source()`, also once the error is an
/// `io::Error` (a user's `anyhow` chain, or `?` into `io::Result`): an option the OS refused
/// leads to the OS error.
#[tokio::test]
async fn source_chains_lead_to_the_os_error() {
    fn chain(e: &(dyn StdError + 'static)) -> Vec<Option<i32>> {
        let mut out = Vec::new();
        let mut next = e.source();
        while let Some(e) = next {
            out.push(
                e.downcast_ref::<io::Error>()
                    .and_then(io::Error::raw_os_error),
            );
            next = e.source();
            assert!(out.len() < 16, "a cycle in the source chain");
        }
        out
    }
    let selector = SelectorManager::new();
    let refused = a_socket(&selector)
        .tcp()
        .keep_alive(true)
        .keep_alive_interval(Duration::ZERO)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, net_sockets::Error::InvalidOption { .. }),
        "{refused:?}"
    );
    assert_eq!(chain(&refused), [Some(libc::EINVAL)]);
    let tls = net_tls::Error::from(refused);
    assert_eq!(chain(&tls), [Some(libc::EINVAL)]);
    let through_io = io::Error::from(tls);
    assert_eq!(through_io.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(chain(&through_io), [Some(libc::EINVAL)]);
}

/// Futures that take everything by value can be handed to `tokio::spawn` as they are.
#[tokio::test]
async fn owned_futures_spawn_as_they_are() {
    let selector = SelectorManager::new();
    let server = Arc::new(
        a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap(),
    );
    let port = server.port().unwrap();
    let accepting = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.accept().await })
    };
    let connect = tokio::spawn(a_socket(&selector).tcp().connect(("127.0.0.1", port)));
    let client = net_tests::within(connect).await.unwrap().unwrap();
    let accepted = net_tests::within(accepting).await.unwrap().unwrap();
    let graceful = tokio::spawn(
        client
            .connection()
            .unwrap()
            .close_gracefully(Duration::from_secs(5)),
    );
    drop(accepted);
    net_tests::within(graceful).await.unwrap().unwrap();
    server.close();
}

/// The names and signatures SPEC §2 and §4 list, each with the type SPEC gives it.
#[allow(dead_code, unused_variables, clippy::too_many_arguments)]
async fn spec_signatures(
    mut input: ByteReadChannel,
    mut output: ByteWriteChannel,
    selector: SelectorManager,
    server: ServerSocket,
    mut socket: Socket,
    bound: BoundDatagramSocket,
    connected: ConnectedDatagramSocket,
    tls: TlsSocket,
    server_config: TlsServerConfig,
) -> Result<(), Box<dyn StdError>> {
    use net_sockets::{SocketAddress, UnixSocketAddress};
    use net_tls::{CertificateDer, TlsVersion};

    // net-io, reads.
    let _: ByteReadChannel = ByteReadChannel::new(tokio::io::empty());
    let _: ByteReadChannel = ByteReadChannel::from_bytes("x");
    let _: ByteReadChannel = ByteReadChannel::from_bytes(Bytes::new());
    let _: Option<String> = input.read_utf8_line(1).await?;
    let _: Option<String> = input.read_line(1, LineEnding::Default).await?;
    let _: Option<String> = input.read_line_strict(1, LineEnding::Lenient).await?;
    let mut line = String::new();
    let _: Option<usize> = input
        .read_line_to(&mut line, 1, LineEnding::Default)
        .await?;
    let _: Option<Bytes> = input.read_until(b"\r\n", 1usize).await?;
    let _: u8 = input.read_u8().await?;
    let _: i8 = input.read_i8().await?;
    let _: u16 = input.read_u16().await?;
    let _: i16 = input.read_i16_le().await?;
    let _: u32 = input.read_u32_le().await?;
    let _: i32 = input.read_i32().await?;
    let _: u64 = input.read_u64().await?;
    let _: i64 = input.read_i64_le().await?;
    let _: f32 = input.read_f32().await?;
    let _: f64 = input.read_f64_le().await?;
    let mut buf = [0u8; 4];
    let _: () = input.read_fully(&mut buf).await?;
    let _: usize = input.read_available(&mut buf).await?;
    let _: Bytes = input.read_bytes(1).await?;
    let _: Bytes = input.read_remaining(1).await?;
    let _: u64 = input.discard(1u64).await?;
    let _: () = input.discard_exact(1u64).await?;
    let _: bool = input.await_content(1).await?;
    let _: Option<Bytes> = input.peek(1).await?;
    let _: bool = input.skip_if_found(b"x").await?;
    let _: usize = input.available_for_read();
    let _: bool = input.is_closed_for_read();
    let _: u64 = input.total_bytes_read();
    let _: u64 = input.copy_to(&mut output, 1u64).await?;
    let _: u64 = input.copy_and_close(&mut output, 1u64).await?;
    let mut codec = LinesCodec::new();
    let _: Option<String> = input.read_frame(&mut codec).await?;
    input.cancel();
    let frames: net_io::Frames<LinesCodec> = ByteReadChannel::from_bytes("x").into_frames(codec);
    fn stream_of<
        S: futures_core::Stream<Item = Result<String, tokio_util::codec::LinesCodecError>>,
    >(
        _: &S,
    ) {
    }
    stream_of(&frames);

    // net-io, writes.
    let _: ByteWriteChannel = ByteWriteChannel::new(tokio::io::sink(), true);
    let _: () = output.write_u8(1).await?;
    let _: () = output.write_i8(1).await?;
    let _: () = output.write_u16_le(1).await?;
    let _: () = output.write_i16(1).await?;
    let _: () = output.write_u32(1).await?;
    let _: () = output.write_i32_le(1).await?;
    let _: () = output.write_u64(1).await?;
    let _: () = output.write_i64_le(1).await?;
    let _: () = output.write_f32_le(1.0).await?;
    let _: () = output.write_f64(1.0).await?;
    let _: () = output.write_fully(b"x").await?;
    let _: () = output.write_bytes(Bytes::from_static(b"x")).await?;
    let _: () = output.write_string_utf8("x").await?;
    let mut codec = LinesCodec::new();
    let _: () = output.write_frame(&mut codec, "x").await?;
    let _: () = output.flush().await?;
    let _: () = output.flush_and_close().await?;
    let _: bool = output.is_closed_for_write();
    let _: bool = output.auto_flush();
    let _: u64 = output.total_bytes_written();
    output.cancel();
    let _: (ByteWriteChannel, ByteReadChannel) = ByteChannel::new(true);

    // net-io, errors.
    let e = net_io::Error::TooLongLine { limit: 1 };
    match e {
        net_io::Error::TooLongLine { limit: _ }
        | net_io::Error::UnexpectedEof {
            needed: _,
            available: _,
        }
        | net_io::Error::ClosedForWrite
        | net_io::Error::Cancelled
        | net_io::Error::Timeout
        | net_io::Error::Io(_) => {}
        _ => {}
    }
    let _ = [LineEnding::Default, LineEnding::Lenient];

    // net-sockets.
    let _: SelectorManager = SelectorManager::new();
    let _: SelectorManager = SelectorManager::builder().worker_threads(4).build()?;
    let _: ServerSocket = a_socket(&selector)
        .tcp()
        .reuse_address(true)
        .backlog(1024)
        .bind(("0.0.0.0", 0))
        .await?;
    let _: Socket = a_socket(&selector)
        .tcp()
        .no_delay(true)
        .connect_timeout(Duration::from_secs(5))
        .keep_alive(true)
        .keep_alive_idle(Duration::from_secs(1))
        .keep_alive_interval(Duration::from_secs(1))
        .keep_alive_count(3)
        .tcp_user_timeout(Duration::from_secs(30))
        .reuse_port(false)
        .type_of_service(0)
        .send_buffer_size(1 << 16)
        .receive_buffer_size(1 << 16)
        .linger(Duration::ZERO)
        .socket_timeout(Duration::from_secs(5))
        .local_address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .coalesce_flushes(true)
        .max_connections(1)
        .max_connections_per_ip(1)
        .proxy_protocol(net_sockets::ProxyProtocol::Optional)
        .configure(|options| options.no_delay = true)
        .connect(("localhost", 1))
        .await?;
    let _: BoundDatagramSocket = a_socket(&selector)
        .udp()
        .broadcast(true)
        .reuse_address(true)
        .bind(("0.0.0.0", 0))
        .await?;
    let _: ConnectedDatagramSocket = a_socket(&selector)
        .udp()
        .connect(("127.0.0.1", 5353))
        .await?;
    let _: ServerSocket = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new("/tmp/x.sock"))
        .await?;
    let _: Socket = a_socket(&selector)
        .reuse_address(true)
        .tcp()
        .connect("localhost:1")
        .await?;
    let _: Socket = a_socket(&selector)
        .tcp()
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], 1)))
        .await?;
    let _: Socket = a_socket(&selector)
        .tcp()
        .connect(net_sockets::InetSocketAddress::new([127, 0, 0, 1], 1))
        .await?;
    let address: SocketAddress = server.local_address();
    let _: Option<u16> = address.port();
    match &address {
        SocketAddress::Inet(_) | SocketAddress::Unix(_) => {}
    }
    let _: String = address.to_string();
    let _: Socket = server.accept().await?;
    fn socket_stream<S: futures_core::Stream<Item = net_sockets::Result<Socket>>>(_: &S) {}
    socket_stream(&server.incoming());
    let _: Option<u16> = server.port();
    let _: () = server.close();
    let _: bool = server.is_closed();
    let _: () = server.await_closed().await;
    let _: net_sockets::ShutdownReport = server.shutdown(Duration::from_secs(1)).await;
    let _: net_sockets::ShutdownReport = selector.shutdown(Duration::from_secs(1)).await;
    let _: ByteReadChannel = socket.open_read_channel()?;
    let _: ByteWriteChannel = socket.open_write_channel(true)?;
    let _: SocketAddress = socket.local_address();
    let _: SocketAddress = socket.remote_address();
    let _: () = socket.close();
    let _: bool = socket.is_closed();
    let _: () = socket.await_closed().await;
    let connection: Connection = socket.connection()?;
    let Connection {
        socket: _,
        input: _,
        output: _,
        ..
    } = &connection;
    let _: () = connection.close_gracefully(Duration::from_secs(1)).await?;
    let datagram: Datagram = Datagram::new(Bytes::from_static(b"x"), address.clone())?;
    let Datagram {
        packet: _,
        address: _,
    } = &datagram;
    let _: () = bound.send(datagram.clone()).await?;
    let _: Datagram = bound.receive().await?;
    fn datagram_stream<S: futures_core::Stream<Item = net_sockets::Result<Datagram>>>(_: &S) {}
    datagram_stream(&bound.incoming());
    let _: SocketAddress = bound.local_address();
    let _: () = bound.close();
    let _: bool = bound.is_closed();
    let _: () = bound.await_closed().await;
    let _: () = connected.send(datagram).await?;
    let _: Datagram = connected.receive().await?;
    datagram_stream(&connected.incoming());
    let _: SocketAddress = connected.remote_address();
    let _: SocketAddress = connected.local_address();
    let _: () = selector.close();
    let _: bool = selector.is_closed();
    let e = net_sockets::Error::Closed;
    match e {
        net_sockets::Error::Channel(_)
        | net_sockets::Error::Io(_)
        | net_sockets::Error::ChannelAlreadyOpen
        | net_sockets::Error::Closed
        | net_sockets::Error::SelectorClosed
        | net_sockets::Error::DatagramTooLarge { size: _ }
        | net_sockets::Error::Resolve { host: _, .. }
        | net_sockets::Error::Timeout => {}
        _ => {}
    }
    let _: ServerSocket =
        ServerSocket::from_std(&selector, std::net::TcpListener::bind("127.0.0.1:0")?)?;
    let _: Socket = Socket::from_std(&selector, std::net::TcpStream::connect("127.0.0.1:1")?)?;

    // net-tls.
    let pem: &[u8] = b"";
    let _: TlsConfig = TlsConfig::builder()
        .server_name("example.com")
        .add_root_certificates_pem(pem)?
        .add_root_certificate(CertificateDer::from(Vec::new()))
        .client_certificate_pem(pem, pem)?
        .alpn_protocols(["h2", "http/1.1"])
        .alpn_protocols([b"h2".to_vec()])
        .native_roots()
        .dangerous_accept_any_server_certificate()
        .build()?;
    let _: TlsServerConfig = TlsServerConfig::builder()
        .certificate_chain_pem(pem)?
        .private_key_pem(pem)?
        .certificate_chain_pem_file("chain.pem")?
        .private_key_pem_file("key.pem")?
        .client_auth_optional(pem)?
        .client_auth_required(pem)?
        .alpn_protocols(["h2", "http/1.1"])
        .handshake_timeout(Duration::from_secs(10))
        .build()?;
    let _: TlsConfig = TlsConfig::from_rustls(Arc::new(
        net_tls::rustls::ClientConfig::builder()
            .with_root_certificates(net_tls::rustls::RootCertStore::empty())
            .with_no_client_auth(),
    ));
    let _: Option<&[u8]> = tls.alpn_protocol();
    let _: Option<TlsVersion> = tls.protocol_version();
    let _ = tls.cipher_suite();
    let _: &[CertificateDer<'static>] = tls.peer_certificates();
    let _: Option<&str> = tls.server_name();
    let _: () = server_config.reload(&server_config.clone());
    let _: TlsStream = tls.into_stream()?;
    Ok(())
}

/// A user's connection type that holds the channels, with an `&self` method that awaits: the
/// task that runs it holds `&Session` across an await, so `tokio::spawn` needs `Session: Sync`
/// (as it gets with tokio's `TcpStream` or `BufReader<TcpStream>`).
struct Session {
    input: ByteReadChannel,
    output: ByteWriteChannel,
    frames: net_io::Frames<LinesCodec>,
}

impl Session {
    async fn report(&self) -> (u64, u64) {
        tokio::task::yield_now().await;
        let _ = &self.frames;
        (
            self.input.total_bytes_read(),
            self.output.total_bytes_written(),
        )
    }
}

#[test]
fn the_channels_are_sync() {
    fn sync<T: Sync>() {}
    sync::<ByteReadChannel>();
    sync::<ByteWriteChannel>();
    sync::<Connection>();
    sync::<TlsConnection>();
    sync::<net_io::Frames<LinesCodec>>();
    sync::<SocketStream>();
    sync::<TlsStream>();
}

/// The `incoming()` streams are `Sync` too, as tokio's listener (and `TcpListenerStream`)
/// are: a type that holds one can be borrowed across an `.await` in a spawned task.
#[test]
fn the_incoming_streams_are_sync() {
    fn sync<T: Sync>() {}
    sync::<net_sockets::Incoming>();
    sync::<net_sockets::DatagramIncoming>();
}

/// A session held by `&self` across an await runs in `tokio::spawn`.
#[tokio::test]
async fn a_session_borrowed_across_an_await_can_be_spawned() {
    let (mut output, input) = ByteChannel::new(false);
    output.write_string_utf8("one\ntwo\n").await.unwrap();
    output.flush().await.unwrap();
    let (_, frame_input) = ByteChannel::new(false);
    let mut session = Session {
        input,
        output,
        frames: frame_input.into_frames(LinesCodec::new()),
    };
    assert_eq!(
        session
            .input
            .read_line(8, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("one")
    );
    let task = tokio::spawn(async move {
        let counts = session.report().await;
        (session, counts)
    });
    let (_session, counts) = net_tests::within(task).await.unwrap();
    assert_eq!(counts, (4, 8));
}

/// A PEM file that cannot be read keeps the operating system's error: its kind (`NotFound` for
/// a missing file, not `InvalidInput` as for bad PEM) and, through `source()`, the I/O error
/// itself with its OS code, also once converted into an `io::Error` (`?` into `io::Result`).
#[test]
fn an_unreadable_pem_file_keeps_the_os_error() {
    let dir = net_tests::TempDir::new("hx-api-pem");
    let missing = dir.join("missing.pem");
    let cases = [
        (missing.clone(), io::ErrorKind::NotFound, libc::ENOENT),
        (
            dir.path().to_path_buf(),
            io::ErrorKind::IsADirectory,
            libc::EISDIR,
        ),
    ];
    for (path, kind, code) in cases {
        let errors = [
            TlsServerConfig::builder()
                .certificate_chain_pem_file(&path)
                .unwrap_err(),
            TlsServerConfig::builder()
                .private_key_pem_file(&path)
                .unwrap_err(),
            TlsConfig::builder()
                .add_root_certificates_pem_file(&path)
                .unwrap_err(),
        ];
        for e in errors {
            assert_eq!(e.kind(), kind, "{e:?}");
            let shown = format!("{e}");
            assert!(shown.contains(&*path.to_string_lossy()), "{shown}");
            let os = e
                .source()
                .and_then(|s| s.downcast_ref::<io::Error>())
                .and_then(io::Error::raw_os_error);
            assert_eq!(os, Some(code), "{e:?}");
            let io = io::Error::from(e);
            assert_eq!(io.kind(), kind, "{io:?}");
            let os = io
                .source()
                .and_then(|s| s.downcast_ref::<io::Error>())
                .and_then(io::Error::raw_os_error);
            assert_eq!(os, Some(code), "{io:?}");
            // And back: the same variant.
            let back = net_tls::Error::from(io);
            assert_eq!(back.kind(), kind, "{back:?}");
        }
    }
}

/// A protocol's codec written only against net-io's re-exports (`net_io::codec`,
/// `net_io::bytes`), without naming `tokio-util` or `bytes` itself, plugs into `read_frame`,
/// `into_frames` and `write_frame`.
#[tokio::test]
async fn a_codec_written_against_the_reexports_fits_the_channels() {
    use net_io::bytes::{Buf, BufMut, BytesMut};
    use net_io::codec::{Decoder, Encoder};

    /// One byte of length, then that many bytes.
    struct Short;
    impl Decoder for Short {
        type Item = net_io::bytes::Bytes;
        type Error = io::Error;
        fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Self::Item>> {
            let Some(&len) = src.first() else {
                return Ok(None);
            };
            if src.len() < 1 + usize::from(len) {
                return Ok(None);
            }
            src.advance(1);
            Ok(Some(src.split_to(usize::from(len)).freeze()))
        }
    }
    impl Encoder<&[u8]> for Short {
        type Error = io::Error;
        fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> io::Result<()> {
            dst.put_u8(u8::try_from(item.len()).map_err(io::Error::other)?);
            dst.put_slice(item);
            Ok(())
        }
    }

    let (mut output, mut input) = ByteChannel::new(false);
    output.write_frame(&mut Short, b"one").await.unwrap();
    output.write_frame(&mut Short, b"two").await.unwrap();
    output
        .write_bytes(net_io::bytes::Bytes::from_static(b"\x05three"))
        .await
        .unwrap();
    output.flush_and_close().await.unwrap();
    let first = input.read_frame(&mut Short).await.unwrap();
    assert_eq!(first.as_deref(), Some(&b"one"[..]));
    let mut frames = input.into_frames(Short);
    for expected in [&b"two"[..], b"three"] {
        assert_eq!(frames.next_frame().await.unwrap().unwrap(), expected);
    }
    assert!(frames.next_frame().await.is_none());
}
