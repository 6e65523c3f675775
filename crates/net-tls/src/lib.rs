//! TLS for `net-sockets`, client and server, on rustls.
//!
//! - [`TlsConfig`] (client) and [`TlsServerConfig`] (server) are built once and shared; both are
//!   cheap to clone.
//! - [`TlsExt::tls`] turns a connected [`Socket`](net_sockets::Socket) into a [`TlsSocket`]
//!   (client side); [`TlsExt::tls_server`] does the same for an accepted one.
//! - A [`TlsSocket`] has the surface of a `Socket` — channels, addresses, `close`,
//!   `await_closed` — plus what the handshake negotiated.
//! - [`Error`] says what failed, with rustls's reason for handshake failures.
//! - Certificates and keys come as PEM (bytes or files) or as DER ([`CertificateDer`],
//!   [`PrivateKeyDer`]); for anything the builders do not offer (a custom verifier, certificate
//!   pinning), [`TlsConfig::from_rustls`] and [`TlsServerConfig::from_rustls`] take a rustls
//!   configuration as it is.
//!
//! # Secure by default
//!
//! The client sends SNI and verifies the server's certificate against the host name given to
//! `connect` (an IP address against the certificate's IP SANs), trusting the bundled Mozilla
//! roots unless told otherwise. Trusting everyone takes a call named
//! [`dangerous_accept_any_server_certificate`](TlsConfigBuilder::dangerous_accept_any_server_certificate).
//!
//! # Crypto provider
//!
//! This crate uses rustls's `ring` provider and passes it to every configuration explicitly, so
//! there is no process-wide default to install and no panic when another crate in the build
//! enables a different provider. `ring` was chosen on measurements made on the project's 2-core
//! build machines: it builds about 3× faster than `aws-lc-rs` (22 s against 64 s cold in debug,
//! 37 s against 115 s in release), needs no C toolchain beyond what `cc` finds and no cmake or
//! NASM, and supports every TLS 1.2 and 1.3 cipher suite rustls offers by default.
//!
//! # Truncation
//!
//! A peer that ends the TCP stream without TLS's `close_notify` alert makes reads fail with an
//! [`std::io::ErrorKind::UnexpectedEof`] error whose inner error is [`Truncated`], where a clean
//! close gives an ordinary end of stream (`Ok(None)` from a line read).

/// The setters both configuration builders have (ALPN, protocol versions, handshake timeout),
/// with each side's documentation.
macro_rules! negotiation_setters {
    (alpn: $alpn:literal, versions: $versions:literal, timeout: $timeout:literal) => {
        #[doc = $alpn]
        pub fn alpn_protocols(
            mut self,
            protocols: impl IntoIterator<Item = impl AsRef<[u8]>>,
        ) -> Self {
            self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
            self
        }

        #[doc = $versions]
        pub fn protocol_versions(mut self, versions: &[TlsVersion]) -> Self {
            self.versions = versions.to_vec();
            self
        }

        #[doc = $timeout]
        pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
            self.handshake_timeout = timeout;
            self
        }
    };
}

mod client;
mod error;
mod handshake;
mod pem;
mod server;
mod socket;

use std::sync::Arc;

pub use client::{TlsConfig, TlsConfigBuilder};
pub use error::{Error, Result};
pub use handshake::Truncated;
pub use rustls;
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
pub use server::{TlsServerConfig, TlsServerConfigBuilder};
pub use socket::{TlsConnection, TlsExt, TlsSession, TlsSocket, TlsStream};

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    fn from_rustls(v: rustls::ProtocolVersion) -> Option<Self> {
        match v {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

fn versions(versions: &[TlsVersion]) -> Vec<&'static rustls::SupportedProtocolVersion> {
    versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect()
}

/// Ends a configuration's `Debug` with what both sides negotiate.
fn negotiated(
    debug: &mut std::fmt::DebugStruct<'_, '_>,
    alpn: &[Vec<u8>],
    handshake_timeout: std::time::Duration,
) -> std::fmt::Result {
    debug
        .field("alpn_protocols", &alpn)
        .field("handshake_timeout", &handshake_timeout)
        .finish_non_exhaustive()
}

/// The one crypto provider this crate uses (see the crate docs).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
