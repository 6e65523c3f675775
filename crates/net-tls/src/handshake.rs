//! TLS handshakes over any transport, bounded by a timeout, and what they negotiated.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::{CipherSuite, CommonState};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::{Error, Result, TlsConfig, TlsServerConfig, TlsVersion};

/// What a handshake negotiated, recorded once so that queries need no lock on the stream.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) alpn_protocol: Option<Vec<u8>>,
    pub(crate) protocol_version: Option<TlsVersion>,
    pub(crate) cipher_suite: Option<CipherSuite>,
    pub(crate) peer_certificates: Vec<CertificateDer<'static>>,
    pub(crate) server_name: Option<String>,
}

impl Session {
    fn from_state(state: &CommonState, server_name: Option<String>) -> Self {
        Session {
            alpn_protocol: state.alpn_protocol().map(<[u8]>::to_vec),
            protocol_version: state.protocol_version().and_then(TlsVersion::from_rustls),
            cipher_suite: state.negotiated_cipher_suite().map(|s| s.suite()),
            peer_certificates: state
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            server_name,
        }
    }
}

/// Runs the client handshake; on failure or timeout `io` is dropped (closed).
pub(crate) async fn connect<S>(
    io: S,
    config: &TlsConfig,
    connect_host: Option<&str>,
) -> Result<(TlsStream<S>, Session)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = config.name_for(connect_host)?;
    let name_text = name.to_str().into_owned();
    let connector = TlsConnector::from(Arc::clone(&config.rustls));
    let stream = tokio::time::timeout(config.handshake_timeout, connector.connect(name, io))
        .await
        .map_err(|_| Error::HandshakeTimeout(config.handshake_timeout))?
        .map_err(Error::from_handshake)?;
    let session = Session::from_state(stream.get_ref().1, Some(name_text));
    Ok((TlsStream::Client(stream), session))
}

/// Runs the server handshake with the configuration current at this moment.
pub(crate) async fn accept<S>(io: S, config: &TlsServerConfig) -> Result<(TlsStream<S>, Session)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let settings = config.settings();
    let acceptor = TlsAcceptor::from(Arc::clone(&settings.rustls));
    let stream = tokio::time::timeout(settings.handshake_timeout, acceptor.accept(io))
        .await
        .map_err(|_| Error::HandshakeTimeout(settings.handshake_timeout))?
        .map_err(Error::from_handshake)?;
    let (_, conn) = stream.get_ref();
    let session = Session::from_state(conn, conn.server_name().map(str::to_owned));
    Ok((TlsStream::Server(stream), session))
}

/// Marks the end of a TLS stream without `close_notify`, so readers can tell it from a clean end.
///
/// rustls reports it as an [`io::ErrorKind::UnexpectedEof`] error (the only source of that kind
/// on a TLS read); this adapter keeps the kind and makes the inner error a [`Truncated`], which
/// callers can test for.
#[derive(Debug)]
pub(crate) struct TruncationAware<R>(pub(crate) R);

impl<R: AsyncRead + Unpin> AsyncRead for TruncationAware<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, Truncated)))
            }
            other => other,
        }
    }
}

/// The peer ended the TCP stream without a TLS `close_notify` alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Truncated;

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("peer closed the connection without tls close_notify (truncated stream)")
    }
}

impl std::error::Error for Truncated {}
