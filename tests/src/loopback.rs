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

/// A UDP socket bound to `127.0.0.1:0`.
pub async fn udp_socket(selector: &SelectorManager) -> BoundDatagramSocket {
    a_socket(selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .expect("bind a UDP socket on 127.0.0.1:0")
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
    // auto_flush: `copy_to` flushes only at the end, and an interactive peer needs each chunk.
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
