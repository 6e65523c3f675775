//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use net_io::PeerText;

/// A specialised `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when configuring TLS or setting up a TLS connection.
///
/// Handshake failures carry rustls's reason ([`rustls::Error`]): match on it to tell an untrusted
/// certificate (`InvalidCertificate(UnknownIssuer)`, also when the server left out an
/// intermediate), an expired one (`InvalidCertificate(ExpiredContext { .. })`, with the time
/// of the check and the certificate's end; older rustls gave `Expired`), one not valid yet
/// (`NotValidYetContext { .. }` or `NotValidYet`), a wrong host
/// (`NotValidForNameContext { .. }` or `NotValidForName`), a peer's alert
/// (`AlertReceived(..)`) or garbage on the wire (`InvalidMessage(..)`) apart. The `Display`
/// text is for people; match on the variants, not on the message. It shows rustls's reason,
/// which may quote the peer (the names its certificate holds), as [`net_io::PeerText`] does:
/// control characters (`\n`, `\u{1b}`), line separators (`\u{2028}`) and bidi controls
/// (`\u{202e}`) escaped, so that a peer cannot forge or reorder lines in a log the text is
/// written to.
///
/// `Error` converts into an [`io::Error`] of its [`kind`](Error::kind), and that `io::Error`
/// converts back into the same variant.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The TLS handshake failed; the connection was closed.
    Handshake(rustls::Error),
    /// The handshake did not complete within the configured time; the connection was closed.
    HandshakeTimeout(Duration),
    /// PEM input (a certificate chain, a key or a CA bundle) could not be used.
    ///
    /// The reason quotes little of the input: a PEM whose newlines were lost (a key on one
    /// line, or with `\n` for its newlines, as an environment variable may hold it) is named by
    /// its marker and the count of bytes after it, which are not shown (they would be the
    /// key's); a BEGIN marker after other text on its line is quoted with at most 24 bytes
    /// either side (after a key's marker, that is less than the key's header).
    #[non_exhaustive]
    Pem {
        /// Where the PEM came from: a file's path, or `PEM bytes`.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A PEM file (a certificate chain, a key or a CA bundle) could not be read: missing,
    /// unreadable, a directory. The error has the kind of `source`, the operating system's
    /// error ([`NotFound`](io::ErrorKind::NotFound) for a missing file). A file that was read
    /// but holds no usable PEM is [`Error::Pem`].
    #[non_exhaustive]
    ReadFile {
        /// The file's path.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// rustls refused the configuration (for example, a key that does not match its
    /// certificate, an empty chain given in DER, a chain too large for a handshake message
    /// (over 16 MiB), no protocol version, or a CA certificate given in DER that it cannot use;
    /// one from PEM is [`Error::Pem`]). Also the error of each
    /// handshake with a configuration given to `from_rustls` that rustls cannot start a
    /// connection with (a `max_fragment_size` out of its range), before any byte is sent.
    Config(rustls::Error),
    /// A server configuration was built without a certificate chain, or with an empty one.
    MissingCertificateChain,
    /// A server configuration was built without a private key.
    MissingPrivateKey,
    /// The client-certificate verifier could not be built from the given roots (for example,
    /// none was usable).
    ClientVerifier(rustls::server::VerifierBuilderError),
    /// The operating system's certificate store gave no usable certificate
    /// ([`native_roots`](crate::TlsConfigBuilder::native_roots)): it could not be read, or it
    /// holds none. The source is the first error met reading it, or an
    /// [`io::ErrorKind::NotFound`] error when there was none; the error has the kind of the
    /// I/O error in that source (as [`Error::ReadFile`] has its source's: `NotFound` for a
    /// missing file, `IsADirectory` for an `SSL_CERT_FILE` that names a directory), else
    /// `NotFound`.
    NativeRoots(Box<dyn std::error::Error + Send + Sync>),
    /// An ALPN protocol list that cannot be sent in a handshake: `protocol` is empty or longer
    /// than 255 bytes, or it is the first name that takes the list past
    /// [`MAX_ALPN_LIST`](crate::MAX_ALPN_LIST) bytes. Reported by a builder's `build()`, and
    /// by the client handshake for a configuration given through
    /// [`TlsConfig::from_rustls`](crate::TlsConfig::from_rustls).
    #[non_exhaustive]
    InvalidAlpnProtocol {
        /// The name that was refused.
        protocol: Vec<u8>,
    },
    /// The name to verify the server against is neither a DNS name nor an IP address (brackets
    /// are allowed only around an IPv6 literal, and so is a scope, `fe80::1%eth0`, which is
    /// dropped), or it is empty: an empty
    /// [`server_name`](crate::TlsConfigBuilder::server_name), or none at all (a Unix socket
    /// without `server_name`).
    #[non_exhaustive]
    InvalidServerName {
        /// The name that was given.
        name: String,
    },
    /// A name given for an SNI certificate
    /// ([`sni_certificate_pem`](crate::TlsServerConfigBuilder::sni_certificate_pem)) that no
    /// client sends by SNI: not a DNS name in ASCII (an IP address, a wildcard, a name with
    /// other characters than its punycode form, an empty one, one that ends with more than
    /// one dot).
    #[non_exhaustive]
    InvalidSniName {
        /// The name that was given.
        name: String,
    },
    /// The socket failed during the handshake, or could not be used (already closed, a channel
    /// already open).
    Socket(net_sockets::Error),
}

impl Error {
    /// The [`io::ErrorKind`] this error maps to when converted into an [`io::Error`].
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Handshake(_) => io::ErrorKind::InvalidData,
            Error::HandshakeTimeout(_) => io::ErrorKind::TimedOut,
            Error::Pem { .. }
            | Error::Config(_)
            | Error::InvalidServerName { .. }
            | Error::InvalidSniName { .. }
            | Error::InvalidAlpnProtocol { .. }
            | Error::MissingCertificateChain
            | Error::MissingPrivateKey
            | Error::ClientVerifier(_) => io::ErrorKind::InvalidInput,
            Error::NativeRoots(e) => io_kind_in(e.as_ref()).unwrap_or(io::ErrorKind::NotFound),
            Error::ReadFile { source, .. } => source.kind(),
            Error::Socket(e) => e.kind(),
        }
    }

    /// The error the socket's transport reported inside an I/O error
    /// ([`net_sockets::Error::inner_error`]): for example [`Truncated`](crate::Truncated),
    /// when the peer ended the stream without `close_notify`. `None` for the other variants.
    ///
    /// ```
    /// use net_io::LineEnding;
    /// use net_tls::{Error, TlsSocket, Truncated};
    ///
    /// async fn first_line(tls: &mut TlsSocket) -> Result<Option<String>, Error> {
    ///     let mut input = tls.open_read_channel()?;
    ///     Ok(input.read_line(1024, LineEnding::Default).await?)
    /// }
    ///
    /// # async fn demo(mut tls: TlsSocket) {
    /// match first_line(&mut tls).await {
    ///     Err(e) if e.inner_error().is_some_and(|inner| inner.is::<Truncated>()) => {
    ///         println!("the peer cut the session");
    /// #       return;
    ///     }
    ///     other => println!("{other:?}"),
    /// }
    /// # unreachable!("the peer's cut was not seen as one");
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use net_tls::{TlsConfig, TlsExt, TlsServerConfig};
    /// # let key = rcgen::KeyPair::generate()?;
    /// # let cert = rcgen::CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
    /// # let config = TlsServerConfig::builder()
    /// #     .certificate_chain_pem(cert.pem().as_bytes())?
    /// #     .private_key_pem(key.serialize_pem().as_bytes())?
    /// #     .build()?;
    /// # let client_config = TlsConfig::builder()
    /// #     .add_root_certificates_pem(cert.pem().as_bytes())?
    /// #     .server_name("localhost")
    /// #     .build()?;
    /// # let selector = net_sockets::SelectorManager::new();
    /// # let server = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
    /// # let client = net_sockets::a_socket(&selector).tcp().connect(server.local_address());
    /// # let client = tokio::spawn(async move { client.await?.tls(client_config).await });
    /// # let accepted = server.accept().await?.tls_server(&config).await?;
    /// # let tls = client.await??;
    /// # // The end of the grace period cuts `accepted`: a FIN without `close_notify`.
    /// # assert_eq!(server.shutdown(std::time::Duration::ZERO).await.cut, 1);
    /// # demo(tls).await;
    /// # drop(accepted);
    /// # Ok(()) }
    /// ```
    pub fn inner_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Error::Socket(e) => e.inner_error(),
            _ => None,
        }
    }

    /// Maps an error from a tokio-rustls handshake: a rustls error inside becomes `Handshake`,
    /// but for one rustls gave when the connection was made, before any byte was exchanged
    /// (tokio-rustls wraps it in an error of kind `Other`, and the session's errors in
    /// `InvalidData`): the configuration's (a `from_rustls` one with a `max_fragment_size` out
    /// of range), which becomes `Config`, as the peer had no part in it.
    pub(crate) fn from_handshake(e: io::Error) -> Self {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) if e.kind() == io::ErrorKind::Other => Error::Config(tls.clone()),
            Some(tls) => Error::Handshake(tls.clone()),
            None => Error::Socket(e.into()),
        }
    }
}

/// The kind of the first I/O error in `e`'s chain: `e` itself, then its sources.
fn io_kind_in(e: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    std::iter::successors(Some(e), |e| e.source())
        .find_map(|e| e.downcast_ref::<io::Error>())
        .map(io::Error::kind)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Handshake(e) => {
                // rustls's reason may quote the peer: the names in its certificate, which
                // its owner chose (a newline, a terminal escape or a bidi control there
                // would forge or reorder lines in a log), so they are escaped.
                write!(f, "tls handshake failed: {}", PeerText(&e.to_string()))
            }
            Error::HandshakeTimeout(d) => write!(f, "tls handshake did not complete within {d:?}"),
            Error::Pem { origin, reason } => write!(f, "unusable pem in {origin}: {reason}"),
            Error::ReadFile { path, .. } => write!(f, "cannot read pem file {}", path.display()),
            // rustls words these for other cases: the caller's own certificates as a peer's
            // ("peer sent no certificates", "invalid peer certificate"), a key that does not
            // match as "keys may not be consistent", a setting refused as "unexpected error".
            Error::Config(rustls::Error::NoCertificatesPresented) => {
                f.write_str("invalid tls configuration: the certificate chain is empty")
            }
            Error::Config(rustls::Error::InvalidCertificate(reason)) => {
                write!(f, "invalid tls configuration: invalid certificate: {reason}")
            }
            Error::Config(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                f.write_str(
                    "invalid tls configuration: the private key does not match the certificate \
                     (the chain's first, its leaf)",
                )
            }
            Error::Config(rustls::Error::General(reason)) => {
                write!(f, "invalid tls configuration: {reason}")
            }
            Error::Config(e) => write!(f, "invalid tls configuration: {e}"),
            Error::InvalidServerName { name } if name.is_empty() => f.write_str(
                "empty tls server name: give server_name a DNS name or an IP address (a connection without a host name, such as a Unix socket, needs one)",
            ),
            Error::InvalidServerName { name } => write!(f, "invalid tls server name {name:?}"),
            Error::InvalidSniName { name } => write!(
                f,
                "no client sends {name:?} by SNI (give a DNS name, in ASCII, without wildcard)"
            ),
            // The name's bytes escaped once (`{:?}` of the escaped text escaped its escapes).
            Error::InvalidAlpnProtocol { protocol } if crate::alpn_name_fits(protocol) => write!(
                f,
                "alpn protocol list longer than {} bytes at \"{}\"",
                crate::MAX_ALPN_LIST,
                protocol.escape_ascii()
            ),
            Error::InvalidAlpnProtocol { protocol } => write!(
                f,
                "alpn protocol name of {} bytes (1 to 255 allowed)",
                protocol.len()
            ),
            Error::MissingCertificateChain => {
                f.write_str("no certificate chain was given, or an empty one")
            }
            Error::MissingPrivateKey => f.write_str("no private key was given"),
            Error::ClientVerifier(_) => f.write_str("cannot verify client certificates"),
            Error::NativeRoots(_) => {
                f.write_str("no usable certificate in the system's certificate store")
            }
            Error::Socket(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    /// The `Display` text already includes rustls's reason, and `Socket` is transparent, so
    /// no error chain repeats a message: `Handshake` and `Config` have no source (match on the
    /// variant to get the rustls error), `Socket` has its inner error's source, and
    /// `ClientVerifier`, `NativeRoots` and `ReadFile` have the error that caused them.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Socket(e) => e.source(),
            Error::ClientVerifier(e) => Some(e),
            Error::NativeRoots(e) => Some(e.as_ref()),
            Error::ReadFile { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<net_sockets::Error> for Error {
    fn from(e: net_sockets::Error) -> Self {
        Error::Socket(e)
    }
}

impl From<net_io::Error> for Error {
    /// A channel error (from reading or writing a TLS socket's channels), as
    /// [`Error::Socket`]; `net_sockets::Error::from` says how it maps.
    fn from(e: net_io::Error) -> Self {
        Error::Socket(e.into())
    }
}

impl From<io::Error> for Error {
    /// Unwraps an `Error` carried inside the I/O error (so an `Error` converted into an
    /// [`io::Error`] converts back into its variant); any other I/O error becomes
    /// [`Error::Socket`], as `net_sockets::Error::from` maps it.
    fn from(e: io::Error) -> Self {
        match e.downcast::<Error>() {
            Ok(inner) => inner,
            Err(e) => Error::Socket(e.into()),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Socket(e) => e.into(),
            other => io::Error::new(other.kind(), other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_variants_round_trip_through_io_error() {
        let io = io::Error::from(Error::HandshakeTimeout(Duration::from_secs(3)));
        assert_eq!(io.kind(), io::ErrorKind::TimedOut);
        let back = Error::from(io);
        assert!(
            matches!(back, Error::HandshakeTimeout(d) if d == Duration::from_secs(3)),
            "{back:?}"
        );

        let io = io::Error::from(Error::MissingPrivateKey);
        let back = Error::from(io);
        assert!(matches!(back, Error::MissingPrivateKey), "{back:?}");

        let io = io::Error::from(Error::Handshake(rustls::Error::HandshakeNotComplete));
        let back = Error::from(io);
        assert!(
            matches!(back, Error::Handshake(rustls::Error::HandshakeNotComplete)),
            "{back:?}"
        );

        // A socket error still goes through net_sockets's mapping.
        let io = io::Error::from(Error::Socket(net_sockets::Error::Closed));
        let back = Error::from(io);
        assert!(
            matches!(back, Error::Socket(net_sockets::Error::Closed)),
            "{back:?}"
        );
    }

    #[test]
    fn a_handshake_error_shows_control_characters_escaped() {
        let e = Error::Handshake(rustls::Error::General(
            "name \"a\nb\u{1b}[31mc\u{7f}\" \u{e9}".into(),
        ));
        assert_eq!(
            e.to_string(),
            "tls handshake failed: unexpected error: name \"a\\nb\\u{1b}[31mc\\u{7f}\" \u{e9}"
        );
    }

    /// A peer's certificate names reach rustls's reason; a Unicode line or paragraph separator
    /// (some log viewers break lines on them) or a bidi control (which reorders what follows
    /// it on screen, "Trojan Source") is escaped as a control character is, and so is NEL.
    #[test]
    fn a_handshake_error_shows_line_separators_and_bidi_controls_escaped() {
        let e = Error::Handshake(rustls::Error::General(
            "a\u{2028}b\u{2029}c\u{202e}d\u{2066}e\u{2069}f\u{85}g \u{5d0}".into(),
        ));
        assert_eq!(
            e.to_string(),
            "tls handshake failed: unexpected error: \
             a\\u{2028}b\\u{2029}c\\u{202e}d\\u{2066}e\\u{2069}f\\u{85}g \u{5d0}"
        );
    }

    /// `Socket` is transparent: its source is the socket error's own, so the cause a transport
    /// error carries stays reachable through `source()`.
    #[test]
    fn a_socket_errors_source_is_the_socket_errors_own() {
        #[derive(Debug)]
        struct Cause;
        impl fmt::Display for Cause {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the cause")
            }
        }
        impl std::error::Error for Cause {}
        #[derive(Debug)]
        struct Failure(Cause);
        impl fmt::Display for Failure {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the failure")
            }
        }
        impl std::error::Error for Failure {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let socket = net_sockets::Error::from(io::Error::other(Failure(Cause)));
        let cause = |e: &dyn std::error::Error| e.source().map(ToString::to_string);
        assert_eq!(cause(&socket).as_deref(), Some("the cause"), "{socket:?}");
        let tls = Error::from(socket);
        assert_eq!(cause(&tls).as_deref(), Some("the cause"), "{tls:?}");
    }
}
