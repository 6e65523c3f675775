//! TLS handshakes over any transport, bounded by a timeout, and what they negotiated.

use std::io;
use std::sync::Arc;

use net_sockets::layer::{RawStream, SelectorSleep};
use rustls::{CipherSuite, CommonState, NamedGroup};
use rustls_pki_types::CertificateDer;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::server::Settings;
use crate::{Error, Result, TlsConfig, TlsVersion};

/// What a handshake negotiated, recorded once so that queries need no lock on the stream.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) alpn_protocol: Option<Vec<u8>>,
    pub(crate) protocol_version: Option<TlsVersion>,
    pub(crate) cipher_suite: Option<CipherSuite>,
    pub(crate) key_exchange_group: Option<NamedGroup>,
    pub(crate) peer_certificates: Vec<CertificateDer<'static>>,
    pub(crate) server_name: Option<String>,
}

impl Session {
    fn from_state(state: &CommonState, server_name: Option<String>) -> Self {
        Session {
            alpn_protocol: state.alpn_protocol().map(<[u8]>::to_vec),
            protocol_version: state.protocol_version().and_then(TlsVersion::from_rustls),
            cipher_suite: state.negotiated_cipher_suite().map(|s| s.suite()),
            key_exchange_group: state.negotiated_key_exchange_group().map(|g| g.name()),
            peer_certificates: state
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            server_name,
        }
    }
}

/// Runs the client handshake until `timer` fires; on failure or timeout `raw` is dropped
/// (closed). SNI and verification use the host name given to `connect` unless `config` names
/// another.
pub(crate) async fn connect(
    raw: RawStream,
    timer: SelectorSleep,
    config: &TlsConfig,
) -> Result<(TlsStream<RawStream>, Session)> {
    // A builder's list was checked at `build()`; one given through `from_rustls` is checked
    // here (rustls would panic on an empty name, or send a length that wrapped).
    crate::check_alpn(&config.rustls.alpn_protocols)?;
    let name = config.name_for(raw.connect_host())?;
    let name_text = name.to_str().into_owned();
    let connector = TlsConnector::from(Arc::clone(&config.rustls));
    let stream = bounded(
        timer,
        config.handshake_timeout,
        connector.connect(name, raw),
    )
    .await?;
    let session = Session::from_state(stream.get_ref().1, Some(name_text));
    Ok((TlsStream::Client(stream), session))
}

/// Runs the server handshake with `settings` until `timer` fires.
pub(crate) async fn accept(
    raw: RawStream,
    timer: SelectorSleep,
    settings: &Settings,
) -> Result<(TlsStream<RawStream>, Session)> {
    let acceptor = TlsAcceptor::from(Arc::clone(&settings.rustls));
    // TLS 1.3 early data (0-RTT), which a configuration from `from_rustls` may allow
    // (`max_early_data_size`), is refused: tokio-rustls never reads what rustls accepted of
    // it, so the application would lose those bytes while the client was told they arrived.
    // Refused, the client knows to send them again after the handshake.
    let accepting = acceptor.accept_with(raw, |conn| conn.reject_early_data());
    let stream = bounded(timer, settings.handshake_timeout, accepting).await?;
    let (_, conn) = stream.get_ref();
    let session = Session::from_state(conn, conn.server_name().map(str::to_owned));
    Ok((TlsStream::Server(stream), session))
}

/// Runs `handshake` until `timer` fires. The timer comes from the selector's runtime, so the
/// handshake can be polled by any executor; once the selector is closed (also by the end of
/// that runtime, racing this task) it fails with the close, `Socket(SelectorClosed)`.
async fn bounded<T>(
    timer: SelectorSleep,
    limit: std::time::Duration,
    handshake: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T> {
    tokio::select! {
        biased;
        done = handshake => done.map_err(Error::from_handshake),
        fired = timer => match fired {
            Ok(()) => Err(Error::HandshakeTimeout(limit)),
            Err(closed) => Err(Error::Socket(closed)),
        },
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
