//! Sockets on loopback in one line each, an echo server, and [`Channels`]: what a plain
//! [`Socket`] and a [`TlsSocket`] have in common, so that one helper serves both.

use std::io;
use std::sync::Arc;

use futures_core::Stream;
use net_io::{ByteReadChannel, ByteWriteChannel};
use net_sockets::{
    BoundDatagramSocket, SelectorManager, ServerSocket, Socket, TcpSocketBuilder, ToSocketAddress,
    a_socket,
};
use net_tls::TlsSocket;

use crate::within;

/// A connection with a read and a write channel: [`Socket`] and [`TlsSocket`].
pub trait Channels {
    /// Opens both channels (each can be opened once).
    ///
    /// # Errors
    ///
    /// A channel already open, a closed socket or selector.
    fn open_channels(
        &mut self,
        auto_flush: bool,
    ) -> io::Result<(ByteReadChannel, ByteWriteChannel)>;

    /// Closes the connection.
    fn close_connection(&self);
}

/// The same two calls on both socket types (they share no trait of their own).
macro_rules! impl_channels {
    ($($socket:ty),*) => {$(
        impl Channels for $socket {
            fn open_channels(
                &mut self,
                auto_flush: bool,
            ) -> io::Result<(ByteReadChannel, ByteWriteChannel)> {
                Ok((
                    self.open_read_channel()?,
                    self.open_write_channel(auto_flush)?,
                ))
            }

            fn close_connection(&self) {
                self.close();
            }
        }
    )*};
}

impl_channels!(Socket, TlsSocket);

/// A TCP listener on `127.0.0.1:0`.
pub async fn tcp_listener(selector: &SelectorManager) -> ServerSocket {
    tcp_listener_with(selector, |builder| builder).await
}

/// A TCP listener on `127.0.0.1:0`, with the options `configure` sets on the builder.
pub async fn tcp_listener_with(
    selector: &SelectorManager,
    configure: impl FnOnce(TcpSocketBuilder) -> TcpSocketBuilder,
) -> ServerSocket {
    configure(a_socket(selector).tcp())
        .bind(("127.0.0.1", 0))
        .await
        .expect("bind a TCP listener on 127.0.0.1:0")
}

/// A selector with a listener of each kind a connection of ours comes through: TCP on
/// `127.0.0.1:0` (TLS too, with [`config`](Self::config), a certificate for `localhost` from
/// [`ca`](Self::ca)) and Unix, in a temporary directory of its own.
#[derive(Debug)]
pub struct Listeners {
    /// The selector of both listeners.
    pub selector: SelectorManager,
    /// The TCP listener.
    pub tcp: ServerSocket,
    /// The Unix listener.
    pub unix: ServerSocket,
    /// Where the Unix listener listens.
    pub unix_path: std::path::PathBuf,
    /// The CA of the TLS server's certificate.
    pub ca: crate::pki::TestCa,
    /// A TLS server's configuration: a certificate for `localhost`.
    pub config: net_tls::TlsServerConfig,
    _dir: crate::TempDir,
}

impl Listeners {
    /// Both listeners made with the options `configure` sets on their builders; `name` names
    /// the temporary directory and the CA.
    pub async fn new(name: &str, configure: impl Fn(TcpSocketBuilder) -> TcpSocketBuilder) -> Self {
        let selector = SelectorManager::new();
        let tcp = tcp_listener_with(&selector, &configure).await;
        let dir = crate::TempDir::new(name);
        let unix_path = dir.join("s.sock");
        let unix = configure(a_socket(&selector).tcp())
            .bind(net_sockets::UnixSocketAddress::new(&unix_path))
            .await
            .expect("bind a Unix listener");
        let ca = crate::pki::TestCa::new(&format!("{name} ca"));
        let config = ca
            .server(&["localhost"])
            .server_config()
            .build()
            .expect("a TLS server's configuration");
        Listeners {
            selector,
            tcp,
            unix,
            unix_path,
            ca,
            config,
            _dir: dir,
        }
    }
}

/// A TCP listener on `127.0.0.1:0` with a backlog of 0, which the test never accepts from: once
/// its queue is full, further SYNs are dropped and connects to it stay pending.
pub async fn never_accepting_listener(selector: &SelectorManager) -> ServerSocket {
    a_socket(selector)
        .tcp()
        .backlog(0)
        .bind(("127.0.0.1", 0))
        .await
        .expect("bind a TCP listener on 127.0.0.1:0")
}

/// A port of `127.0.0.1` where connects are refused, for as long as this value lives: a TCP
/// socket bound there that never listens (a SYN to it is answered with RST), so that no other
/// socket — of this test binary, of a parallel test's child process, of another program —
/// can be handed the port and answer instead.
///
/// Dropping a listener is no such guarantee: its port is free again for anyone's `bind`, and
/// while another thread's spawned child has not yet run `exec`, the child's copy of the
/// descriptor keeps the listener listening (a connect succeeds, then is reset).
///
/// [`listen`](Self::listen) opens a listener on the same port, which
/// [`stop_listening`] turns back into refusing.
#[derive(Debug)]
pub struct RefusingPort {
    _holder: socket2::Socket,
    address: std::net::SocketAddr,
}

impl RefusingPort {
    /// Binds a fresh port of `127.0.0.1` (with `SO_REUSEPORT`, so that [`listen`](Self::listen)
    /// can share it; no automatic `bind` to port 0 picks a port in use).
    pub fn new() -> RefusingPort {
        let holder = reuse_port_socket();
        holder
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind 127.0.0.1:0");
        let address = holder
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("the address of a bound TCP socket");
        RefusingPort {
            _holder: holder,
            address,
        }
    }

    /// The address: `127.0.0.1` and the port.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// A listener on this port (non-blocking, so that `tokio::net::TcpListener::from_std` can
    /// take it); connects reach it until [`stop_listening`] or its drop.
    pub fn listen(&self) -> std::net::TcpListener {
        // The holder stays bound, never listening: it gets no connection.
        let listener = reuse_port_socket();
        listener
            .bind(&self.address.into())
            .expect("bind the held port");
        listener.listen(128).expect("listen on the held port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        listener.into()
    }
}

impl Default for RefusingPort {
    fn default() -> RefusingPort {
        RefusingPort::new()
    }
}

/// Makes `listener` stop listening at once, whatever other copies of its descriptor exist (a
/// spawned child's, until it runs `exec`): connections still in its queue are reset, and new
/// connects are refused once nothing else listens on the port (as with a [`RefusingPort`]).
/// Linux's `shutdown(SHUT_RD)` of a listening socket.
pub fn stop_listening(listener: &impl std::os::fd::AsFd) {
    socket2::SockRef::from(listener)
        .shutdown(std::net::Shutdown::Read)
        .expect("shutdown of a listening socket");
}

/// Whether `server` refuses the next connection from 127.0.0.1 (closes it before `accept`
/// hands it out, as a per-address or total cap does) rather than accepting it; an accepted one
/// is dropped. The server must listen on 127.0.0.1.
pub async fn next_is_refused(server: &ServerSocket) -> bool {
    use tokio::io::AsyncReadExt;
    let address = server.local_address().as_inet().unwrap().socket_addr();
    let mut again = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut byte = [0; 1];
    within(async {
        tokio::select! {
            accepted = server.accept() => { drop(accepted.unwrap()); false }
            _ = again.read(&mut byte) => true,
        }
    })
    .await
}

fn reuse_port_socket() -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    socket
}

/// A TCP connection to `address` with default options.
pub async fn connect(selector: &SelectorManager, address: impl ToSocketAddress) -> Socket {
    within(a_socket(selector).tcp().connect(address))
        .await
        .expect("connect")
}

/// Connects to `listener` and accepts the connection: (client side, server side).
pub async fn connected_pair(
    selector: &SelectorManager,
    listener: &ServerSocket,
) -> (Socket, Socket) {
    let client = connect(selector, listener.local_address()).await;
    let accepted = within(listener.accept()).await.expect("accept");
    (client, accepted)
}

/// A connection accepted by `listener` (on `127.0.0.1`) whose peer reads nothing, with the
/// kernel's buffers on both sides full (filled through the socket itself, before any channel
/// is open), so that any flush waits; and its peer, a blocking std stream with a 4 KiB receive
/// buffer.
pub async fn accepted_with_full_buffers(listener: &ServerSocket) -> (Socket, std::net::TcpStream) {
    let port = listener.port().expect("a TCP listener");
    let peer = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket2::SockRef::from(&peer)
        .set_recv_buffer_size(4096)
        .expect("SO_RCVBUF");
    let server = within(listener.accept()).await.expect("accept");
    let chunk = vec![7u8; 64 * 1024];
    server
        .with_sock_ref(|sock| {
            for _ in 0..1024 {
                if sock.send(&chunk).is_err() {
                    break;
                }
            }
            Ok(())
        })
        .expect("the socket's descriptor");
    (server, peer)
}

/// A UDP socket bound to `127.0.0.1:0`.
pub async fn udp_socket(selector: &SelectorManager) -> BoundDatagramSocket {
    a_socket(selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .expect("bind a UDP socket on 127.0.0.1:0")
}

/// An address no UDP socket is bound to, for datagrams that draw an ICMP "port unreachable":
/// a port on 127.0.0.93, with the same port held on 127.0.0.1 by the returned socket while it
/// lives, so that no bind to port 0 (on any address) or to the wildcard address is given it.
///
/// Nothing is ever bound there: a socket bound and closed for the purpose would live on in any
/// child process another test spawns meanwhile, until that child's `exec`, and take the
/// datagram (no ICMP error then). Bind the address to make the port answer again.
pub fn unbound_udp_address() -> (net_sockets::SocketAddress, std::net::UdpSocket) {
    let reserved = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = reserved.local_addr().unwrap().port();
    let address = std::net::SocketAddr::from(([127, 0, 0, 93], port));
    (address.into(), reserved)
}

/// Whether this machine has an IPv6 loopback (`::1`), asked of std rather than of our own
/// builders: a test that skips its IPv6 part without one must not also skip it when a bind of
/// ours fails. Without one, says so with [`skipped`](crate::harness::skipped): every caller
/// skips or narrows an IPv6 part then.
pub fn has_ipv6_loopback() -> bool {
    let has = std::net::UdpSocket::bind(("::1", 0)).is_ok();
    if !has {
        crate::harness::skipped("no IPv6 loopback (`::1`): the test's IPv6 part");
    }
    has
}

/// The next item of `stream` (`Incoming`, `DatagramIncoming`), or `None` at its end.
pub async fn next_item<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    within(std::future::poll_fn(|cx| {
        std::pin::Pin::new(&mut *stream).poll_next(cx)
    }))
    .await
}

/// Echoes everything a socket receives back to it until the peer's FIN, then half-closes.
pub async fn echo(mut socket: Socket) -> net_sockets::Result<u64> {
    let mut input = socket.open_read_channel()?;
    // auto_flush as an interactive peer expects; `copy_to` also flushes whenever the input has
    // nothing buffered.
    let mut output = socket.open_write_channel(true)?;
    let copied = input.copy_to(&mut output, u64::MAX).await?;
    output.flush_and_close().await?;
    Ok(copied)
}

/// Binds a TCP echo server on `127.0.0.1:0` and serves every connection in its own task.
pub async fn echo_server(selector: &SelectorManager) -> Arc<ServerSocket> {
    serve_echo(tcp_listener(selector).await)
}

/// Serves `server` as an echo server in a background task until it is closed.
pub fn serve_echo(server: ServerSocket) -> Arc<ServerSocket> {
    let server = Arc::new(server);
    let listener = Arc::clone(&server);
    tokio::spawn(async move {
        while let Ok(socket) = listener.accept().await {
            tokio::spawn(echo(socket));
        }
    });
    server
}

/// Sends `data` to an echo peer from another task, half-closes, and reads until the peer's end
/// of stream: returns what came back. Both channels are opened without auto-flush.
pub async fn send_and_read_back(connection: &mut impl Channels, data: &[u8]) -> bytes::Bytes {
    let (mut input, mut output) = connection.open_channels(false).expect("open channels");
    let sent = data.to_vec();
    let writer = tokio::spawn(async move {
        output.write_fully(&sent).await?;
        output.flush_and_close().await
    });
    let echoed = within(input.read_remaining(usize::MAX))
        .await
        .expect("read the echo");
    within(writer)
        .await
        .expect("the writer task")
        .expect("write and half-close");
    echoed
}

/// Writes `chunk` again and again until a write fails (a peer that left, a write timeout), and
/// returns that error; panics after [`HANG_LIMIT`](crate::HANG_LIMIT) of successful writes.
pub async fn write_until_error(output: &mut ByteWriteChannel, chunk: &[u8]) -> net_io::Error {
    within(async {
        loop {
            if let Err(e) = output.write_fully(chunk).await {
                break e;
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::net::TcpStream;
    use std::process::{Command, Stdio};

    use super::*;

    /// A child process holding a copy of a listener's descriptor (as a child spawned by another
    /// thread holds every descriptor until its `exec`) keeps a dropped listener listening;
    /// `stop_listening` stops it anyway, and the held port refuses.
    #[test]
    fn a_stopped_listener_refuses_though_a_child_holds_its_descriptor() {
        let (dropped, stopped) = (RefusingPort::new(), RefusingPort::new());
        for port in [&dropped, &stopped] {
            let refused = TcpStream::connect(port.address()).unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
        }
        let listeners = [dropped.listen(), stopped.listen()];
        for listener in &listeners {
            socket2::SockRef::from(listener).set_cloexec(false).unwrap();
        }
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let [first, second] = listeners;
        drop(first);
        let answered = TcpStream::connect(dropped.address());
        stop_listening(&second);
        drop(second);
        let refused = TcpStream::connect(stopped.address());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(answered.is_ok(), "the child's copy stopped listening");
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
    }
}
