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
//!   configuration as it is. rustls is re-exported as [`rustls`], the version these take (and
//!   its `pki_types` as `rustls::pki_types`), so the application need not depend on it itself.
//!
//! # Secure by default
//!
//! The client sends SNI and verifies the server's certificate against the host name given to
//! `connect` (an IP address against the certificate's IP SANs, and without SNI, which only
//! carries DNS names; an IPv4-mapped IPv6 address, `::ffff:a.b.c.d`, as the IPv4 address it
//! reaches), trusting the bundled Mozilla
//! roots unless told otherwise. Trusting everyone takes a call named
//! [`dangerous_accept_any_server_certificate`](TlsConfigBuilder::dangerous_accept_any_server_certificate).
//!
//! # Crypto provider
//!
//! This crate passes its provider ([`crypto_provider`]) to every configuration it builds, so
//! there is no process-wide default to install and no panic when another crate in the build
//! enables a different provider. A Cargo feature chooses it:
//!
//! - **`ring`** (the default): rustls's `ring` provider. It builds faster than `aws-lc-rs`
//!   (a cold build of this crate: 13 s against 26 s in debug, 28 s against 96 s in release,
//!   on a 2-vCPU machine of the project's, 2026-12-05). It has **no post-quantum key
//!   exchange**: a handshake's keys come from elliptic curves alone (X25519, then P-256, then
//!   P-384, in the order of preference this crate gives them), which a quantum computer could
//!   one day break in traffic recorded today. rustls deprecates the provider for that reason
//!   from 0.23.48 on, and still supports it. (rustls 0.23.48 also puts P-384 first, which in
//!   `ring` costs about 12 times what X25519 does per handshake; this crate keeps X25519
//!   first, as OpenSSL, Go and the browsers do.)
//! - **`aws-lc-rs`**: rustls's `aws-lc-rs` provider, preferring the hybrid post-quantum key
//!   exchange `X25519MLKEM768` (the one Chrome, Go from 1.24 and OpenSSL from 3.5 offer by
//!   default), and the elliptic curves, in the same order, with peers that lack it. When both
//!   features are on, it is the one used. To build without `ring`:
//!   `knet-tls = { version = "0.1", default-features = false, features = ["aws-lc-rs"] }`.
//!
//! With neither feature on, the build fails with one error that names them, and no other.
//!
//! Both offer every TLS 1.2 and 1.3 cipher suite rustls offers by default; they differ in the
//! private keys they sign with (see "Certificates from PEM files" below).
//! [`key_exchange_group`](TlsSession::key_exchange_group) says what a handshake used.
//!
//! # Truncation
//!
//! A peer that ends the TCP stream without TLS's `close_notify` alert makes reads fail with an
//! [`std::io::ErrorKind::UnexpectedEof`] error whose inner error is [`Truncated`], where a clean
//! close gives an ordinary end of stream (`Ok(None)` from a line read).
//!
//! Many clients close without `close_notify` (Python's `http.client`, for one). A protocol
//! whose messages carry their own end (a length, a last line) may take a truncation between
//! two messages for the client's end, after checking that the last message was whole:
//!
//! ```
//! use net_io::{ByteReadChannel, LineEnding};
//! use net_tls::Truncated;
//!
//! /// The next request line, or `None` when the client went away between requests,
//! /// with or without `close_notify`.
//! async fn next_request(input: &mut ByteReadChannel) -> net_io::Result<Option<String>> {
//!     match input.read_line(8192, LineEnding::Default).await {
//!         Err(e) if e.inner_error().is_some_and(|inner| inner.is::<Truncated>()) => Ok(None),
//!         read => read,
//!     }
//! }
//! ```
//!
//! A truncation in the middle of a line gives the same error and returns none of the line's
//! bytes, so a half-received request is never taken for a whole one.
//!
//! # Serving TLS in production
//!
//! The guide of `net-sockets`, [`net_sockets::guide`], walks the seed's greeting server through
//! line limits, timeouts, connection caps, graceful shutdown and the PROXY protocol. All of it
//! holds for a [`TlsSocket`] unchanged, since it is a [`Socket`](net_sockets::Socket) with a
//! TLS layer: a conversation written for a `Connection<T>` with `T:`
//! [`Transport`](net_sockets::Transport) serves plain and TLS connections alike. This section
//! adds what is particular to TLS.
//!
//! ## Certificates from PEM files
//!
//! Build the [`TlsServerConfig`] once, before accepting, and run each handshake in the
//! connection's own task, so that a slow client holds up no other:
//!
//! ```no_run
//! use net_io::LineEnding;
//! use net_sockets::{a_socket, SelectorManager, Socket};
//! use net_tls::{TlsExt, TlsServerConfig};
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), BoxError> {
//!     let config = TlsServerConfig::builder()
//!         .certificate_chain_pem_file("/etc/greeter/tls/fullchain.pem")? // leaf first
//!         .private_key_pem_file("/etc/greeter/tls/privkey.pem")?
//!         .build()?;
//!     let selector = SelectorManager::new();
//!     let server = a_socket(&selector).tcp().bind(("0.0.0.0", 9443)).await?;
//!     loop {
//!         let socket = server.accept().await?;
//!         let config = config.clone(); // cheap: clones share one configuration
//!         tokio::spawn(async move {
//!             let peer = socket.remote_address();
//!             if let Err(e) = greet(socket, &config).await {
//!                 eprintln!("{peer}: {e}");
//!             }
//!         });
//!     }
//! }
//!
//! async fn greet(socket: Socket, config: &TlsServerConfig) -> Result<(), BoxError> {
//!     let mut tls = socket.tls_server(config).await?;
//!     let mut input = tls.open_read_channel()?;
//!     let mut output = tls.open_write_channel(true)?;
//!     output.write_string_utf8("Please enter your name\n").await?;
//!     while let Some(name) = input.read_line(8192, LineEnding::Default).await? {
//!         output.write_string_utf8(&format!("Hello, {name}!\n")).await?;
//!     }
//!     tls.close(); // sends close_notify
//!     Ok(())
//! }
//! ```
//!
//! A file that cannot be read is [`Error::ReadFile`], whose kind and source are the operating
//! system's error (`NotFound` for a missing file: a deployment can tell it from a bad file); an
//! empty or malformed one is [`Error::Pem`] naming the file (certificates are read from
//! `CERTIFICATE` sections; one under OpenSSL's `TRUSTED CERTIFICATE` or `X509 CERTIFICATE`
//! label, or under `CERTIFICATE` written otherwise (a blank before its dashes, lower case), is
//! refused, not skipped, and so is a section, of a certificate or a key, whose BEGIN
//! line does not start a line of its own, as `cat` leaves two files the first of which lacked
//! its last newline: `-----END CERTIFICATE----------BEGIN CERTIFICATE-----`; a file in UTF-16,
//! as Windows PowerShell's `>` writes it, is refused saying so); a key that does not match the
//! certificate is [`Error::Config`]. The key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC),
//! unencrypted (an encrypted one is [`Error::Pem`] saying so), and one the crypto provider
//! signs with: with `ring`, RSA of 2048 to 4096 bits, ECDSA on P-256 or P-384 (with its public
//! key included, as OpenSSL writes it), or Ed25519; with `aws-lc-rs`, RSA of 2048 to 8192
//! bits, ECDSA on P-256, P-384 or P-521, Ed25519, or ML-DSA (PKCS#8). Any other is
//! [`Error::Pem`] saying what is accepted.
//! [`sni_certificate_pem`](TlsServerConfigBuilder::sni_certificate_pem) adds a certificate for
//! clients that ask for another name by SNI (a leaf whose subject alternative names do not
//! cover that name is refused).
//!
//! ## Rotating certificates without a restart
//!
//! Clones of a [`TlsServerConfig`] share one slot. [`reload`](TlsServerConfig::reload) puts a
//! newly built configuration into it: every handshake that starts afterwards uses the new
//! certificate, and connections already open keep the one they started with. No session made
//! under the old configuration is resumed under the new one: its clients do a full handshake,
//! which checks what the new configuration requires (see [`TlsServerConfig`]). Build the new
//! configuration first, so that a bad file leaves the old one in place:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use net_tls::TlsServerConfig;
//!
//! fn load() -> net_tls::Result<TlsServerConfig> {
//!     TlsServerConfig::builder()
//!         .certificate_chain_pem_file("/etc/greeter/tls/fullchain.pem")?
//!         .private_key_pem_file("/etc/greeter/tls/privkey.pem")?
//!         .build()
//! }
//!
//! # async fn demo() -> net_tls::Result<()> {
//! let config = load()?; // given to `tls_server` as above
//! let rotating = config.clone();
//! tokio::spawn(async move {
//!     loop {
//!         tokio::time::sleep(Duration::from_secs(6 * 60 * 60)).await;
//!         match load() {
//!             Ok(new) => rotating.reload(&new),
//!             Err(e) => eprintln!("keeping the current certificate: {e}"),
//!         }
//!     }
//! });
//! # Ok(()) }
//! ```
//!
//! A timer is one trigger; a signal (SIGHUP) or a file watcher calls `reload` the same way.
//!
//! ## Client certificates (mutual TLS)
//!
//! [`client_auth_required`](TlsServerConfigBuilder::client_auth_required) refuses clients without
//! a certificate issued by one of the given CAs;
//! [`client_auth_optional`](TlsServerConfigBuilder::client_auth_optional) asks for one, verifies
//! any that is sent, and accepts clients without. After the handshake,
//! [`peer_certificates`](TlsSession::peer_certificates) holds the client's chain, its own
//! certificate first (empty when it sent none):
//!
//! ```
//! use net_tls::{TlsExt, TlsServerConfig};
//!
//! # use net_tls::CertificateDer;
//! # async fn demo(
//! #     socket: net_sockets::Socket,
//! #     chain: &[u8],
//! #     key: &[u8],
//! #     clients_ca: &[u8],
//! # ) -> net_tls::Result<CertificateDer<'static>> {
//! let config = TlsServerConfig::builder()
//!     .certificate_chain_pem(chain)?
//!     .private_key_pem(key)?
//!     .client_auth_required(clients_ca)?
//!     .build()?;
//! let tls = socket.tls_server(&config).await?;
//! let client_certificate = &tls.peer_certificates()[0]; // DER, verified against `clients_ca`
//! # Ok(client_certificate.clone()) }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let ca_key = rcgen::KeyPair::generate()?;
//! # let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
//! # ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! # let ca_cert = ca_params.self_signed(&ca_key)?;
//! # let ca = rcgen::Issuer::new(ca_params, ca_key);
//! # let client_key = rcgen::KeyPair::generate()?;
//! # let client_cert = rcgen::CertificateParams::new(vec!["client.test".into()])?
//! #     .signed_by(&client_key, &ca)?;
//! # let key = rcgen::KeyPair::generate()?;
//! # let cert = rcgen::CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
//! # let selector = net_sockets::SelectorManager::new();
//! # let server = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
//! # let client_config = net_tls::TlsConfig::builder()
//! #     .add_root_certificates_pem(cert.pem().as_bytes())?
//! #     .server_name("localhost")
//! #     .client_certificate_pem(
//! #         client_cert.pem().as_bytes(),
//! #         client_key.serialize_pem().as_bytes(),
//! #     )?
//! #     .build()?;
//! # let client = net_sockets::a_socket(&selector).tcp().connect(server.local_address());
//! # let client = tokio::spawn(async move { client.await?.tls(client_config).await });
//! # let (chain, key) = (cert.pem(), key.serialize_pem());
//! # let socket = server.accept().await?;
//! # let seen = demo(socket, chain.as_bytes(), key.as_bytes(), ca_cert.pem().as_bytes()).await?;
//! # assert_eq!(&seen, client_cert.der());
//! # drop(client.await??);
//! # Ok(()) }
//! ```
//!
//! A client without a certificate fails the server's handshake with
//! [`Error::Handshake`]`(rustls::Error::NoCertificatesPresented)`. With TLS 1.3 the client may
//! learn of the refusal only on its first read.
//!
//! ## ALPN
//!
//! [`alpn_protocols`](TlsServerConfigBuilder::alpn_protocols) lists the application protocols
//! the server speaks, most preferred first; [`alpn_protocol`](TlsSession::alpn_protocol) says
//! which one the handshake chose. A client that offers ALPN but none of these is refused; one
//! that offers none gets `None`.
//!
//! ```
//! use net_tls::{TlsExt, TlsServerConfig};
//!
//! # async fn demo(socket: net_sockets::Socket, chain: &[u8], key: &[u8]) -> net_tls::Result<()> {
//! let config = TlsServerConfig::builder()
//!     .certificate_chain_pem(chain)?
//!     .private_key_pem(key)?
//!     .alpn_protocols(["h2", "http/1.1"])
//!     .build()?;
//! let tls = socket.tls_server(&config).await?;
//! match tls.alpn_protocol() {
//!     Some(b"h2") => { /* HTTP/2 */ }
//!     _ => { /* HTTP/1.1 */ }
//! }
//! # assert_eq!(tls.alpn_protocol(), Some(&b"h2"[..])); // ours first, whatever the client's order
//! # Ok(()) }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let key = rcgen::KeyPair::generate()?;
//! # let cert = rcgen::CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
//! # let selector = net_sockets::SelectorManager::new();
//! # let server = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
//! # let client_config = net_tls::TlsConfig::builder()
//! #     .add_root_certificates_pem(cert.pem().as_bytes())?
//! #     .server_name("localhost")
//! #     .alpn_protocols(["http/1.1", "h2"])
//! #     .build()?;
//! # let client = net_sockets::a_socket(&selector).tcp().connect(server.local_address());
//! # let client = tokio::spawn(async move { client.await?.tls(client_config).await });
//! # demo(server.accept().await?, cert.pem().as_bytes(), key.serialize_pem().as_bytes()).await?;
//! # assert_eq!(client.await??.alpn_protocol(), Some(&b"h2"[..]));
//! # Ok(()) }
//! ```
//!
//! ## STARTTLS
//!
//! A protocol that starts in plain text and upgrades on a command (SMTP, IMAP, ...) talks over
//! a [`Connection`](net_sockets::Connection) first, then calls
//! [`tls_server`](TlsExt::tls_server) (or [`tls`](TlsExt::tls) on the client) on it. The
//! upgrade flushes the connection's output first, and bytes its input already holds (a
//! ClientHello that arrived together with the command) go to the handshake. So plain text a
//! client sent after the command, which an attacker on the path may have added, is never taken
//! as if it came under TLS: it fails the handshake ([`Error::Handshake`]). Read the plain-text
//! phase with the channel's own reads (`read_line`, `read_frame`, and
//! [`Frames::into_parts`](net_io::Frames::into_parts) to get the channel back): a tokio
//! `BufReader` or `FramedRead` wrapped around the input keeps what it read ahead in its own
//! buffer, and a ClientHello there never reaches the handshake. The handshake
//! timeout bounds the flush and the handshake together: one deadline, from the start of the
//! upgrade, so a peer that never reads fails it with [`Error::HandshakeTimeout`] too. When a read of its
//! input already failed (the peer reset the connection), no handshake starts: the upgrade
//! fails with that error, as [`Error::Socket`] (kind
//! [`ConnectionReset`](std::io::ErrorKind::ConnectionReset) for a reset). Nor does one start
//! on an output that misses the rest of a write dropped part-way (see
//! [`ByteWriteChannel`](net_io::ByteWriteChannel)'s "Dropped writes"): the upgrade fails
//! with [`Error::Socket`] of kind [`BrokenPipe`](std::io::ErrorKind::BrokenPipe), rather
//! than start TLS on a stream with a gap. The server's side:
//!
//! ```
//! use net_io::LineEnding;
//! use net_tls::{TlsExt, TlsServerConfig, TlsSocket};
//!
//! # async fn demo(socket: net_sockets::Socket, config: TlsServerConfig) -> Result<Option<TlsSocket>, Box<dyn std::error::Error>> {
//! let mut plain = socket.connection()?;
//! plain.output.write_string_utf8("220 greeter ready\r\n").await?;
//! plain.output.flush().await?;
//! while let Some(command) = plain.input.read_line(512, LineEnding::Default).await? {
//!     if command.eq_ignore_ascii_case("STARTTLS") {
//!         plain.output.write_string_utf8("220 Ready to start TLS\r\n").await?;
//!         return Ok(Some(plain.tls_server(&config).await?)); // flushes the reply first
//!     }
//!     plain.output.write_string_utf8("502 Command not implemented\r\n").await?;
//!     plain.output.flush().await?;
//! }
//! Ok(None) // the client left without upgrading
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # type BoxError = Box<dyn std::error::Error + Send + Sync>;
//! # let key = rcgen::KeyPair::generate()?;
//! # let cert = rcgen::CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
//! # let config = TlsServerConfig::builder()
//! #     .certificate_chain_pem(cert.pem().as_bytes())?
//! #     .private_key_pem(key.serialize_pem().as_bytes())?
//! #     .build()?;
//! # let selector = net_sockets::SelectorManager::new();
//! # let server = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
//! # let client_config = net_tls::TlsConfig::builder()
//! #     .add_root_certificates_pem(cert.pem().as_bytes())?
//! #     .server_name("localhost")
//! #     .build()?;
//! # let client = net_sockets::a_socket(&selector).tcp().connect(server.local_address());
//! # let client = tokio::spawn(async move {
//! #     let mut plain = client.await?.connection()?;
//! #     let reply = plain.input.read_line(512, LineEnding::Default).await?;
//! #     assert_eq!(reply.as_deref(), Some("220 greeter ready"));
//! #     plain.output.write_string_utf8("NOOP\r\nSTARTTLS\r\n").await?;
//! #     plain.output.flush().await?;
//! #     let reply = plain.input.read_line(512, LineEnding::Default).await?;
//! #     assert_eq!(reply.as_deref(), Some("502 Command not implemented"));
//! #     // Not flushed when `tls_server` began: the upgrade sent it.
//! #     let reply = plain.input.read_line(512, LineEnding::Default).await?;
//! #     assert_eq!(reply.as_deref(), Some("220 Ready to start TLS"));
//! #     Ok::<_, BoxError>(plain.tls(client_config).await?)
//! # });
//! # let tls = demo(server.accept().await?, config).await?.expect("upgraded");
//! # assert!(tls.protocol_version().is_some());
//! # drop(client.await.unwrap().map_err(|e| e.to_string())?);
//! # Ok(()) }
//! ```
//!
//! ## Handshake timeout
//!
//! A server handshake that does not complete within
//! [`handshake_timeout`](TlsServerConfigBuilder::handshake_timeout) (10 seconds by default)
//! fails with [`Error::HandshakeTimeout`] and closes the connection, so a client that connects
//! and sends nothing holds its slot for that long at most (after STARTTLS too, where the flush
//! of the plain-text output counts against the same deadline). A listener's shorter
//! `socket_timeout` ends such a handshake first, with [`Error::Socket`]`(`[`Timeout`](net_sockets::Error::Timeout)`)`:
//! both have the kind [`TimedOut`](std::io::ErrorKind::TimedOut). Failed handshakes are worth a log
//! line, not an alarm: scanners and clients with an outdated trust store make them all the time.
//! A client that ends or resets the connection before the handshake is done (a port scan, a
//! load balancer's TCP health check) fails it at once with [`Error::Socket`], of kind
//! [`UnexpectedEof`](std::io::ErrorKind::UnexpectedEof) or
//! [`ConnectionReset`](std::io::ErrorKind::ConnectionReset), which the example passes on with
//! the other errors.
//!
//! ```
//! use std::time::Duration;
//!
//! use net_tls::{Error, TlsExt, TlsServerConfig};
//!
//! # async fn demo(
//! #     socket: net_sockets::Socket,
//! #     chain: &[u8],
//! #     key: &[u8],
//! #     logged: &mut bool,
//! # ) -> net_tls::Result<()> {
//! let config = TlsServerConfig::builder()
//!     .certificate_chain_pem(chain)?
//!     .private_key_pem(key)?
//!     .handshake_timeout(Duration::from_secs(5))
//!     .build()?;
//! let peer = socket.remote_address();
//! let tls = match socket.tls_server(&config).await {
//!     Ok(tls) => tls,
//!     Err(Error::HandshakeTimeout(after)) => {
//!         eprintln!("{peer}: no handshake within {after:?}");
//!         return Ok(());
//!     }
//!     Err(Error::Handshake(reason)) => {
//!         eprintln!("{peer}: handshake failed: {reason}");
//! #       *logged = true;
//!         return Ok(());
//!     }
//!     Err(e) => return Err(e),
//! };
//! # let _ = tls; Ok(()) }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use tokio::io::AsyncWriteExt;
//! # let key = rcgen::KeyPair::generate()?;
//! # let cert = rcgen::CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
//! # let (chain, key) = (cert.pem(), key.serialize_pem());
//! # let selector = net_sockets::SelectorManager::new();
//! # let server = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
//! # let address = server.local_address().as_inet().unwrap().socket_addr();
//! # // A scanner that speaks plain text.
//! # let mut scanner = tokio::net::TcpStream::connect(address).await?;
//! # scanner.write_all(b"GET / HTTP/1.1\r\n\r\n").await?;
//! # let mut logged = false;
//! # demo(server.accept().await?, chain.as_bytes(), key.as_bytes(), &mut logged).await?;
//! # assert!(logged, "a scanner");
//! # // A client whose trust store lacks the server's issuer (here: the bundled roots).
//! # let outdated = net_tls::TlsConfig::builder().server_name("localhost").build()?;
//! # let client = net_sockets::a_socket(&selector).tcp().connect(address);
//! # let client = tokio::spawn(async move { client.await?.tls(outdated).await });
//! # let mut logged = false;
//! # demo(server.accept().await?, chain.as_bytes(), key.as_bytes(), &mut logged).await?;
//! # assert!(logged, "a client with an outdated trust store");
//! # assert!(client.await?.is_err());
//! # // A health check: connects, then ends the connection.
//! # drop(tokio::net::TcpStream::connect(address).await?);
//! # let mut logged = false;
//! # let e = demo(server.accept().await?, chain.as_bytes(), key.as_bytes(), &mut logged).await;
//! # let e = e.unwrap_err();
//! # assert!(matches!(e, Error::Socket(_)), "{e:?}");
//! # assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
//! # assert!(!logged);
//! # Ok(()) }
//! ```
//!
//! ## tokio's I/O traits: `TlsStream`
//!
//! [`into_stream`](net_sockets::Socket::into_stream) turns a [`TlsSocket`] into a
//! [`TlsStream`]: one `AsyncRead + AsyncWrite + Unpin` value for code written against tokio's
//! traits, such as `tokio::io::copy_bidirectional` or hyper (through `hyper_util`'s `TokioIo`
//! adapter). It keeps the socket's `socket_timeout`, dereferences to the socket (addresses,
//! `close`, the session queries), and its `poll_shutdown` sends `close_notify` and FIN. Here it
//! terminates TLS in front of a plain-text service:
//!
//! ```no_run
//! use net_sockets::{a_socket, SelectorManager, Socket};
//! use net_tls::{TlsExt, TlsServerConfig};
//!
//! # async fn demo(selector: SelectorManager, socket: Socket, config: TlsServerConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = socket.tls_server(&config).await?.into_stream()?;
//! println!("ALPN: {:?}", client.alpn_protocol()); // the session, through the stream
//! let upstream = a_socket(&selector).tcp().connect(("127.0.0.1", 8080)).await?;
//! let mut upstream = upstream.into_stream()?;
//! let (sent, received) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
//! println!("{sent} bytes up, {received} bytes down");
//! # Ok(()) }
//! ```
//!
//! ## Closing
//!
//! [`close`](net_sockets::Socket::close) sends `close_notify`, then FIN, and returns at once:
//! when the socket's send buffer is full (a slow client still taking what was written), a task
//! sends the `close_notify` as it drains, then the FIN (a failed send, `socket_timeout`
//! without progress or the selector's close resets the connection instead).
//! [`Connection::close_gracefully`](net_sockets::Connection::close_gracefully) on a
//! [`TlsConnection`] flushes, sends `close_notify` and FIN, and waits (up to a time you give)
//! for the client to close too, so that no reply is lost to a reset. After a failed write
//! neither sends `close_notify`, nor does `close` while the write channel still holds bytes it
//! did not send (or after it threw some away, cancelled or dropped with bytes unsent), or once
//! a read found the session failed (the client's fatal alert, a record that broke the
//! protocol; an alert rustls owes the client still goes): the
//! client sees a cut stream ([`Truncated`] on its side, if it uses this crate), never a clean
//! end. Dropping the socket without `close` sends no `close_notify` either, nor does a cut:
//! the selector's close, the end of its runtime, or the end of a graceful shutdown's grace
//! period (the client sees [`Truncated`], or a reset when bytes were lost).

/// The setters both configuration builders have (ALPN, protocol versions, handshake timeout),
/// with each side's documentation.
macro_rules! negotiation_setters {
    (alpn: $alpn:literal, versions: $versions:literal, timeout: $timeout:literal) => {
        #[doc = $alpn]
        ///
        /// Each name must be 1 to 255 bytes long, and the names together, each with its length
        /// byte, at most [`MAX_ALPN_LIST`](crate::MAX_ALPN_LIST) bytes; otherwise
        /// [`build`](Self::build) fails with
        /// [`Error::InvalidAlpnProtocol`](crate::Error::InvalidAlpnProtocol).
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
        ///
        /// It bounds the whole upgrade, from the first poll of the future of
        /// [`tls`](crate::TlsExt::tls) or [`tls_server`](crate::TlsExt::tls_server): on a
        /// [`Connection`](net_sockets::Connection) (STARTTLS) the flush of its output comes
        /// first and counts against the same deadline, so a peer that reads nothing cannot
        /// hold the upgrade longer either (what the output still holds then is thrown away,
        /// and the close is a reset).
        ///
        /// The handshake reads and writes through the socket, so a shorter `socket_timeout`
        /// on it ends a handshake whose peer stays silent that long first, with
        /// [`Error::Socket`](crate::Error::Socket)`(`[`net_sockets::Error::Timeout`]`)`
        /// (kind [`TimedOut`](std::io::ErrorKind::TimedOut), as this one's).
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
/// rustls, the version this crate runs on: what [`TlsConfig::from_rustls`] and
/// [`TlsServerConfig::from_rustls`] take, what [`crypto_provider`] returns, the types of
/// [`TlsSession::cipher_suite`] and [`TlsSession::key_exchange_group`], and the causes
/// [`Error::Handshake`], [`Error::Config`] and [`Error::ClientVerifier`] hold. A configuration
/// or verifier written against it fits this crate whatever version of rustls the application
/// itself depends on; its [`pki_types`](rustls::pki_types) has the key types a
/// [`PrivateKeyDer`] holds (`PrivatePkcs8KeyDer`, `PrivatePkcs1KeyDer`, `PrivateSec1KeyDer`).
pub use rustls;
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
pub use server::{TlsServerConfig, TlsServerConfigBuilder};
pub use socket::{TlsConnection, TlsExt, TlsSession, TlsSocket, TlsStream};

/// A TLS protocol version, ordered from the oldest to the newest.
///
/// ```
/// use net_tls::TlsVersion;
///
/// assert!(TlsVersion::Tls12 < TlsVersion::Tls13);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// The rustls versions of `versions`; none is [`Error::Config`] saying so (rustls's own error
/// would be of "no usable cipher suites", which the caller did not set).
fn versions(versions: &[TlsVersion]) -> Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    if versions.is_empty() {
        return Err(Error::Config(rustls::Error::General(
            "no protocol version was given (protocol_versions(&[]))".into(),
        )));
    }
    Ok(versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect())
}

/// The most bytes an ALPN protocol list may take, each name with its length byte: about half
/// of the 65,535 bytes a ClientHello's extensions may take, leaving the rest to the others
/// (a resumed session's ticket among them: see [`TlsConfig`]'s resumption).
pub const MAX_ALPN_LIST: usize = 32 * 1024;

/// Whether `name` can be an ALPN protocol name (1 to 255 bytes: its length is one byte).
fn alpn_name_fits(name: &[u8]) -> bool {
    (1..=255).contains(&name.len())
}

/// Checks that `alpn` can be sent: rustls encodes whatever it is given, so an empty name fails
/// its assertion (a panic in the handshake) and a longer one, or a longer list, gets a length
/// that wrapped (a ClientHello the server cannot decode).
fn check_alpn(alpn: &[Vec<u8>]) -> Result<(), Error> {
    let mut total = 0;
    for name in alpn {
        total += 1 + name.len();
        if !alpn_name_fits(name) || total > MAX_ALPN_LIST {
            return Err(Error::InvalidAlpnProtocol {
                protocol: name.clone(),
            });
        }
    }
    Ok(())
}

/// The most bytes a certificate chain may take, each certificate with the 5 bytes that frame
/// it in a Certificate message (its 3-byte length, 2 for its extensions): what one handshake
/// message carries (its length is 3 bytes: 16 MiB), less room for the message's other fields.
const MAX_CHAIN: usize = 0xff_ffff - 1024;
const _: () = assert!(
    MAX_CHAIN < 1 << 24,
    "a chain at the limit must fit a 3-byte length"
);

/// Checks that `chain` fits in one handshake message: rustls takes any chain, and encodes a
/// longer one with a length that wrapped (in a debug build, a panic during the unwinding of
/// another: the process aborts), in the first handshake that sends it.
fn check_chain(chain: &[CertificateDer<'_>]) -> Result<()> {
    let size = chain
        .iter()
        .map(|cert| 5 + cert.as_ref().len())
        .fold(0usize, usize::saturating_add);
    if size > MAX_CHAIN {
        return Err(Error::Config(rustls::Error::General(format!(
            "the certificate chain takes {size} bytes, more than a handshake message carries \
             ({MAX_CHAIN})"
        ))));
    }
    Ok(())
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

/// The crypto provider this crate gives every configuration it builds: rustls's `aws-lc-rs`
/// provider with the `aws-lc-rs` feature on, else its `ring` provider, each with the key
/// exchange groups in this crate's order (see the crate docs' "Crypto provider"). Each call
/// builds it anew, the same each time.
///
/// A rustls configuration built for [`TlsConfig::from_rustls`] or
/// [`TlsServerConfig::from_rustls`] can take it, so that it negotiates what this crate's own
/// configurations do.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    provider()
}

#[cfg(feature = "aws-lc-rs")]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{self, kx_group};
    let mut provider = aws_lc_rs::default_provider();
    // The post-quantum hybrid first, then the curves in the order of `ring`'s below (rustls
    // 0.23.48 puts P-384 second: about 6 times X25519's cost here, 383 µs against 65).
    provider.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ];
    Arc::new(provider)
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::{self, kx_group};
    // rustls 0.23.48 deprecates the `ring` provider for its lack of post-quantum key exchange;
    // it is still supported, and the crate docs say what it lacks and how to choose the other.
    #[allow(deprecated)]
    let mut provider = ring::default_provider();
    // X25519 first, as rustls had it before 0.23.48 (which puts P-384 first) and as OpenSSL,
    // Go and the browsers do: in `ring`, a P-384 exchange costs about 12 times an X25519 one
    // (1,528 µs against 124 µs of CPU, both sides together, in a release build on the
    // project's 2-vCPU machine), and neither is post-quantum.
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
compile_error!("knet-tls needs a crypto provider: its `ring` feature (the default) or `aws-lc-rs`");

/// Stands in for the provider when neither feature is on, so that the `compile_error!` above is
/// the one error the build reports (its callers would otherwise add "cannot find function
/// `provider`"). The build stops at that error, so this is never called.
#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    unreachable!("knet-tls does not build without a crypto provider")
}

/// A configuration builder, or a setter's result, that is dropped unused loses its settings:
/// the compiler warns (both builders are `#[must_use]`). Each of these fails to compile under
/// `deny(unused_must_use)`:
///
/// ```compile_fail
/// #[deny(unused_must_use)]
/// fn lost(builder: net_tls::TlsConfigBuilder) {
///     builder.alpn_protocols(["h2"]); // consumed, and the result dropped
/// }
/// ```
///
/// ```compile_fail
/// #[deny(unused_must_use)]
/// fn lost() {
///     net_tls::TlsServerConfig::builder();
/// }
/// ```
///
/// ```compile_fail
/// #[deny(unused_must_use)]
/// fn lost() {
///     net_tls::TlsConfig::builder().dangerous_accept_any_server_certificate();
/// }
/// ```
///
/// The same, used, compiles:
///
/// ```
/// #[deny(unused_must_use)]
/// fn kept() -> net_tls::Result<net_tls::TlsConfig> {
///     let _ = net_tls::TlsServerConfig::builder().handshake_timeout(std::time::Duration::from_secs(1));
///     net_tls::TlsConfig::builder().server_name("example.com").alpn_protocols(["h2"]).build()
/// }
/// ```
#[cfg(doctest)]
pub struct BuildersAreMustUse;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
