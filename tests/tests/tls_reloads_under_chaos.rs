//! A TLS server whose operator changes its configuration while it serves: two listeners share
//! one [`TlsServerConfig`] slot, a reloader swaps it at random moments between several
//! configurations (certificates from two CAs, SNI maps, client authentication off, optional
//! or required with one of two client CAs, ALPN lists, TLS 1.2 only, 1.3 only or both), and
//! many concurrent clients, ours and tokio-rustls, connect (some resuming the sessions of
//! their earlier connections, some offering ALPN, some presenting a client certificate, some
//! asking by SNI for a name with its own certificate, some vanishing mid-handshake, some
//! sending garbage, and in one round of 16 some stalling, which the handshake timeout of
//! their configuration ends).
//!
//! - Randomised but bounded (a seed per round, printed on failure; `TLSCHAOS_SEED` and
//!   `TLSCHAOS_ROUNDS` choose the rounds; the default 16 take about 3 s). One round in four
//!   reloads rarely, so that many sessions resume.
//! - Checked, for each handshake: the configuration it ran under is the one in the slot when
//!   `tls_server` was called (the reloader and the server's call share a lock), and what both
//!   sides saw is exactly what that one configuration allows: its certificate for the SNI
//!   name, the version, the ALPN protocol, the client certificate and its policy, the
//!   handshake timeout — never a part of another. A resumed session (tokio-rustls says which) shows the certificate of the
//!   configuration that made it, which must be the one serving: no session crosses a reload.
//!   A refused client gets the typed error of the reason, on both sides (for TLS 1.3 client
//!   authentication, the client's first read); the server's session queries match the
//!   client's; well-behaved clients are served in full while others misbehave; no task
//!   hangs or panics, and no socket is left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, Socket, a_socket};
use net_tests::pki::{Leaf, TestCa};
use net_tests::rng::Rng;
use net_tls::rustls::{self, AlertDescription, RootCertStore};
use net_tls::{CertificateDer, Error, TlsConfig, TlsExt, TlsServerConfig, TlsVersion};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The names clients ask for: the first is in no SNI map, `a.test` and `b.test` may be.
const NAMES: [&str; 5] = ["localhost", "a.test", "A.TEST", "b.test", "c.test"];
const SERVER_ALPN: [&[&str]; 4] = [&[], &["h2", "http/1.1"], &["x1"], &["http/1.1", "h2"]];
const CLIENT_ALPN: [&[&str]; 4] = [&[], &["h2"], &["x1", "http/1.1"], &["zz"]];
const VERSIONS: [&[TlsVersion]; 3] = [
    &[TlsVersion::Tls13, TlsVersion::Tls12],
    &[TlsVersion::Tls12],
    &[TlsVersion::Tls13],
];
/// At most this many configurations per round.
const MAX_CONFIGS: usize = 6;

/// The certificates of the whole run (keys are slow to make; configurations are cheap).
struct Certs {
    server_cas: [TestCa; 2],
    client_cas: [TestCa; 2],
    /// One client leaf per client CA.
    clients: [Leaf; 2],
    /// Configuration `k`'s default leaf (for every name clients ask for), from CA `k % 2`.
    defaults: Vec<Leaf>,
    /// Configuration `k`'s leaves for `a.test` and `b.test`.
    sni: Vec<[Leaf; 2]>,
}

impl Certs {
    fn new() -> Certs {
        let server_cas = [
            TestCa::new("chaos server CA 0"),
            TestCa::new("chaos server CA 1"),
        ];
        let client_cas = [
            TestCa::new("chaos client CA 0"),
            TestCa::new("chaos client CA 1"),
        ];
        let clients = [
            client_cas[0].client("chaos client 0"),
            client_cas[1].client("chaos client 1"),
        ];
        let all = ["localhost", "127.0.0.1", "a.test", "b.test", "c.test"];
        let defaults = (0..MAX_CONFIGS)
            .map(|k| server_cas[k % 2].server(&all))
            .collect();
        let sni = (0..MAX_CONFIGS)
            .map(|k| {
                [
                    server_cas[(k + 1) % 2].server(&["a.test"]),
                    server_cas[k % 2].server(&["b.test"]),
                ]
            })
            .collect();
        Certs {
            server_cas,
            client_cas,
            clients,
            defaults,
            sni,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Auth {
    None,
    Optional(usize),
    Required(usize),
}

/// What one configuration of a round is made of.
#[derive(Clone, Debug)]
struct Plan {
    sni: [bool; 2],
    auth: Auth,
    alpn: &'static [&'static str],
    versions: &'static [TlsVersion],
    handshake_timeout: Duration,
}

impl Plan {
    fn random(rng: &mut Rng, handshake_timeout: Duration) -> Plan {
        let ca = rng.below(2) as usize;
        Plan {
            sni: [rng.chance(2), rng.chance(2)],
            auth: match rng.below(3) {
                0 => Auth::None,
                1 => Auth::Optional(ca),
                _ => Auth::Required(ca),
            },
            alpn: SERVER_ALPN[rng.below(4) as usize],
            versions: VERSIONS[rng.below(3) as usize],
            handshake_timeout,
        }
    }

    fn build(&self, certs: &Certs, k: usize) -> TlsServerConfig {
        let mut builder = certs.defaults[k]
            .server_config()
            .alpn_protocols(self.alpn)
            .protocol_versions(self.versions)
            .handshake_timeout(self.handshake_timeout);
        for (i, name) in ["a.test", "b.test"].into_iter().enumerate() {
            if self.sni[i] {
                builder = certs.sni[k][i].sni_certificate(name, builder);
            }
        }
        builder = match self.auth {
            Auth::None => builder,
            Auth::Optional(ca) => builder
                .client_auth_optional(certs.client_cas[ca].pem().as_bytes())
                .unwrap(),
            Auth::Required(ca) => builder
                .client_auth_required(certs.client_cas[ca].pem().as_bytes())
                .unwrap(),
        };
        builder.build().expect("a configuration")
    }

    /// The leaf configuration `k` serves to a client asking for `name`.
    fn leaf<'a>(&self, certs: &'a Certs, k: usize, name: &str) -> &'a Leaf {
        match name.to_ascii_lowercase().as_str() {
            "a.test" if self.sni[0] => &certs.sni[k][0],
            "b.test" if self.sni[1] => &certs.sni[k][1],
            _ => &certs.defaults[k],
        }
    }

    /// What this configuration does with `client`.
    fn predict(&self, client: &Profile) -> Outcome {
        let Some(version) = [TlsVersion::Tls13, TlsVersion::Tls12]
            .into_iter()
            .find(|v| self.versions.contains(v) && client.versions.contains(v))
        else {
            return Outcome::Refused(Why::Version);
        };
        let alpn = self
            .alpn
            .iter()
            .find(|p| client.alpn.contains(p))
            .map(|p| p.as_bytes().to_vec());
        if alpn.is_none() && !self.alpn.is_empty() && !client.alpn.is_empty() {
            return Outcome::Refused(Why::Alpn);
        }
        let certified = match self.auth {
            Auth::None => false,
            Auth::Optional(ca) | Auth::Required(ca) if client.cert == Some(ca) => true,
            Auth::Optional(_) if client.cert.is_none() => false,
            _ => return Outcome::Refused(Why::ClientAuth(version, client.cert.is_some())),
        };
        Outcome::Accepted {
            version,
            alpn: if client.alpn.is_empty() { None } else { alpn },
            certified,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Accepted {
        version: TlsVersion,
        alpn: Option<Vec<u8>>,
        certified: bool,
    },
    Refused(Why),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Why {
    Version,
    Alpn,
    /// Client authentication refused, in this version, a certificate presented (from another
    /// CA) or not.
    ClientAuth(TlsVersion, bool),
}

/// A client's settings, with the configuration (and so the session store) it keeps for the
/// round: its later connections offer the sessions of the earlier ones.
#[derive(Clone)]
struct Profile {
    ours: bool,
    versions: &'static [TlsVersion],
    alpn: &'static [&'static str],
    cert: Option<usize>,
    name: &'static str,
    our_config: Option<TlsConfig>,
    rustls_config: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("ours", &self.ours)
            .field("versions", &self.versions)
            .field("alpn", &self.alpn)
            .field("cert", &self.cert)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Profile {
    fn random(rng: &mut Rng, certs: &Certs) -> Profile {
        let mut profile = Profile {
            ours: rng.chance(2),
            // Mostly what a server accepts, so that many handshakes complete.
            versions: VERSIONS[[0, 0, 0, 1, 2][rng.below(5) as usize]],
            alpn: CLIENT_ALPN[[0, 0, 1, 2, 2, 3][rng.below(6) as usize]],
            cert: match rng.below(3) {
                0 => None,
                n => Some(n as usize - 1),
            },
            name: NAMES[rng.below(NAMES.len() as u64) as usize],
            our_config: None,
            rustls_config: None,
        };
        if profile.ours {
            let mut builder = certs.server_cas[0]
                .client_config()
                .add_root_certificates_pem(certs.server_cas[1].pem().as_bytes())
                .unwrap()
                .server_name(profile.name)
                .alpn_protocols(profile.alpn)
                .protocol_versions(profile.versions)
                .handshake_timeout(Duration::from_secs(3));
            if let Some(c) = profile.cert {
                builder = certs.clients[c].client_certificate(builder);
            }
            profile.our_config = Some(builder.build().unwrap());
        } else {
            let mut roots = RootCertStore::empty();
            for ca in &certs.server_cas {
                roots.add(ca.der()).unwrap();
            }
            let versions: Vec<_> = profile
                .versions
                .iter()
                .map(|v| match v {
                    TlsVersion::Tls12 => &rustls::version::TLS12,
                    _ => &rustls::version::TLS13,
                })
                .collect();
            let builder = rustls::ClientConfig::builder_with_provider(net_tests::tls::provider())
                .with_protocol_versions(&versions)
                .unwrap()
                .with_root_certificates(roots);
            let mut config = match profile.cert {
                None => builder.with_no_client_auth(),
                Some(c) => builder
                    .with_client_auth_cert(
                        certs.clients[c].chain_der().to_vec(),
                        certs.clients[c].key_der(),
                    )
                    .unwrap(),
            };
            config.alpn_protocols = profile.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
            profile.rustls_config = Some(Arc::new(config));
        }
        profile
    }
}

/// What a side saw of a completed handshake.
#[derive(Clone, Debug, PartialEq)]
struct View {
    version: Option<TlsVersion>,
    suite: Option<rustls::CipherSuite>,
    alpn: Option<Vec<u8>>,
    peer: Vec<CertificateDer<'static>>,
}

/// What the server's task for one connection recorded.
#[derive(Debug)]
struct ServerRecord {
    /// The index of the configuration in the slot when `tls_server` was called.
    config: usize,
    result: Result<(View, Option<String>), Error>,
    /// The client's line came back after the greeting.
    served: bool,
}

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Good,
    /// Drops its handshake after so many microseconds.
    Vanish(u64),
    /// Sends random bytes (the first a handshake record's type one time in two).
    Garbage,
    /// Sends the start of a handshake record, then nothing: the handshake timeout ends it.
    Stall,
}

/// What a client saw.
#[derive(Debug)]
enum ClientEnd {
    /// Handshake done, greeting read, line sent, clean end read.
    Served { view: View, resumed: Option<bool> },
    /// Handshake done, then the first read failed (TLS 1.3 client authentication refused).
    RefusedAfter { view: View, error: rustls::Error },
    /// The handshake failed.
    Refused(Result<rustls::Error, String>),
    /// Misbehaved; nothing to check but that it ended.
    Other,
    /// Something a good client should not meet.
    Failed(String),
}

type Records = Arc<Mutex<HashMap<(u16, u16), Vec<ServerRecord>>>>;

fn our_view(tls: &net_tls::TlsSocket) -> View {
    View {
        version: tls.protocol_version(),
        suite: tls.cipher_suite(),
        alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
        peer: tls.peer_certificates().to_vec(),
    }
}

fn rustls_view(conn: &rustls::ClientConnection) -> View {
    View {
        version: match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => Some(TlsVersion::Tls12),
            Some(rustls::ProtocolVersion::TLSv1_3) => Some(TlsVersion::Tls13),
            _ => None,
        },
        suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        peer: conn
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
    }
}

/// The server's task for one connection: the handshake with the slot's configuration, a
/// greeting, the client's line back, a clean close.
async fn serve(
    socket: Socket,
    slot: TlsServerConfig,
    log: Arc<Mutex<Vec<usize>>>,
    listener: u16,
    records: Records,
) {
    let port = socket.remote_address().as_inet().map_or(0, |a| a.port());
    // The reloader reloads and logs under this lock: the configuration `tls_server` takes is
    // exactly the last one logged.
    let (config, handshake) = {
        let log = log.lock().unwrap();
        (*log.last().unwrap(), socket.tls_server(&slot))
    };
    let result = handshake.await;
    let mut served = false;
    let result = match result {
        Ok(mut tls) => {
            let view = our_view(&tls);
            let sni = tls.server_name().map(str::to_owned);
            if let (Ok(mut input), Ok(mut output)) =
                (tls.open_read_channel(), tls.open_write_channel(true))
            {
                if output.write_string_utf8("hello\n").await.is_ok()
                    && let Ok(Some(line)) = input.read_line(64, LineEnding::Default).await
                {
                    served = line == "bye";
                }
                let _ = output.flush_and_close().await;
            }
            tls.close();
            Ok((view, sni))
        }
        Err(e) => Err(e),
    };
    records
        .lock()
        .unwrap()
        .entry((listener, port))
        .or_default()
        .push(ServerRecord {
            config,
            result,
            served,
        });
}

/// One client connection to `port`; returns its local port and what it saw.
async fn client(
    selector: &SelectorManager,
    port: u16,
    profile: &Profile,
    behaviour: Behaviour,
    rng_bytes: Vec<u8>,
) -> Result<(u16, ClientEnd), String> {
    match behaviour {
        Behaviour::Garbage => {
            let mut tcp = TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let local = tcp.local_addr().unwrap().port();
            let _ = tcp.write_all(&rng_bytes).await;
            let _ = tcp.shutdown().await;
            let mut sink = Vec::new();
            // The server must end the connection (a clean end or a reset).
            let _ = tcp.read_to_end(&mut sink).await;
            Ok((local, ClientEnd::Other))
        }
        Behaviour::Stall => {
            let mut tcp = TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let local = tcp.local_addr().unwrap().port();
            let _ = tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x80, 0x01]).await;
            let mut sink = Vec::new();
            let _ = tcp.read_to_end(&mut sink).await;
            Ok((local, ClientEnd::Other))
        }
        Behaviour::Vanish(after) => {
            let limit = Duration::from_micros(after);
            if let Some(config) = &profile.our_config {
                let socket = a_socket(selector)
                    .tcp()
                    .connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let local = socket.local_address().as_inet().unwrap().port();
                let _ = tokio::time::timeout(limit, socket.tls(config.clone())).await;
                Ok((local, ClientEnd::Other))
            } else {
                let tcp = TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let local = tcp.local_addr().unwrap().port();
                let connector =
                    tokio_rustls::TlsConnector::from(profile.rustls_config.clone().unwrap());
                let name =
                    rustls::pki_types::ServerName::try_from(profile.name.to_owned()).unwrap();
                let _ = tokio::time::timeout(limit, connector.connect(name, tcp)).await;
                Ok((local, ClientEnd::Other))
            }
        }
        Behaviour::Good => {
            if let Some(config) = &profile.our_config {
                let socket = a_socket(selector)
                    .tcp()
                    .connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let local = socket.local_address().as_inet().unwrap().port();
                let mut tls = match socket.tls(config.clone()).await {
                    Ok(tls) => tls,
                    Err(Error::Handshake(e)) => return Ok((local, ClientEnd::Refused(Ok(e)))),
                    Err(e) => return Ok((local, ClientEnd::Refused(Err(format!("{e:?}"))))),
                };
                let view = our_view(&tls);
                // The name it gave, as given (the server sees it lower-case).
                if tls.server_name() != Some(profile.name) {
                    let failed = format!("client's server_name {:?}", tls.server_name());
                    return Ok((local, ClientEnd::Failed(failed)));
                }
                let mut input = tls.open_read_channel().map_err(|e| e.to_string())?;
                let mut output = tls.open_write_channel(true).map_err(|e| e.to_string())?;
                match input.read_line(64, LineEnding::Default).await {
                    Ok(Some(line)) if line == "hello" => {}
                    Err(e) => {
                        return match net_tests::tls::rustls_error(&e) {
                            Some(error) => Ok((
                                local,
                                ClientEnd::RefusedAfter {
                                    view,
                                    error: error.clone(),
                                },
                            )),
                            None => Ok((local, ClientEnd::Failed(format!("first read: {e:?}")))),
                        };
                    }
                    other => {
                        return Ok((local, ClientEnd::Failed(format!("first read: {other:?}"))));
                    }
                }
                if let Err(e) = output.write_string_utf8("bye\n").await {
                    return Ok((local, ClientEnd::Failed(format!("write: {e:?}"))));
                }
                match input.read_line(64, LineEnding::Default).await {
                    Ok(None) => {}
                    other => return Ok((local, ClientEnd::Failed(format!("the end: {other:?}")))),
                }
                tls.close();
                Ok((
                    local,
                    ClientEnd::Served {
                        view,
                        resumed: None,
                    },
                ))
            } else {
                let tcp = TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let local = tcp.local_addr().unwrap().port();
                let connector =
                    tokio_rustls::TlsConnector::from(profile.rustls_config.clone().unwrap());
                let name =
                    rustls::pki_types::ServerName::try_from(profile.name.to_owned()).unwrap();
                let stream = match connector.connect(name, tcp).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        return Ok((
                            local,
                            ClientEnd::Refused(
                                net_tests::tls::rustls_io_error(&e)
                                    .cloned()
                                    .ok_or_else(|| format!("{e:?}")),
                            ),
                        ));
                    }
                };
                let view = rustls_view(stream.get_ref().1);
                let resumed =
                    stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                match stream.read_line(&mut line).await {
                    Ok(_) if line == "hello\n" => {}
                    Err(e) => {
                        return match net_tests::tls::rustls_io_error(&e) {
                            Some(error) => Ok((
                                local,
                                ClientEnd::RefusedAfter {
                                    view,
                                    error: error.clone(),
                                },
                            )),
                            None => Ok((local, ClientEnd::Failed(format!("first read: {e:?}")))),
                        };
                    }
                    other => {
                        let failed = format!("first read: {other:?} {line:?}");
                        return Ok((local, ClientEnd::Failed(failed)));
                    }
                }
                let mut stream = stream.into_inner();
                if let Err(e) = stream.write_all(b"bye\n").await {
                    return Ok((local, ClientEnd::Failed(format!("write: {e:?}"))));
                }
                if let Err(e) = stream.flush().await {
                    return Ok((local, ClientEnd::Failed(format!("flush: {e:?}"))));
                }
                let mut rest = Vec::new();
                match stream.read_to_end(&mut rest).await {
                    Ok(0) => {}
                    other => return Ok((local, ClientEnd::Failed(format!("the end: {other:?}")))),
                }
                let _ = stream.shutdown().await;
                Ok((
                    local,
                    ClientEnd::Served {
                        view,
                        resumed: Some(resumed),
                    },
                ))
            }
        }
    }
}

/// Whether a client's handshake error (or its first read's) is the refusal `why`.
fn client_refusal_is(error: &rustls::Error, why: Why) -> bool {
    use AlertDescription as A;
    let rustls::Error::AlertReceived(alert) = error else {
        return false;
    };
    match why {
        Why::Version => *alert == A::ProtocolVersion,
        Why::Alpn => *alert == A::NoApplicationProtocol,
        Why::ClientAuth(_, false) => *alert == A::CertificateRequired,
        Why::ClientAuth(_, true) => *alert == A::UnknownCA,
    }
}

/// Whether the server's handshake error is the refusal `why`.
fn server_refusal_is(error: &Error, why: Why) -> bool {
    let Error::Handshake(error) = error else {
        return false;
    };
    match why {
        Why::Version => matches!(error, rustls::Error::PeerIncompatible(_)),
        Why::Alpn => matches!(error, rustls::Error::NoApplicationProtocol),
        Why::ClientAuth(_, false) => matches!(error, rustls::Error::NoCertificatesPresented),
        Why::ClientAuth(_, true) => matches!(
            error,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
    }
}

/// Checks one good client's connection against the server's record of it.
fn check(
    certs: &Certs,
    plans: &[Plan],
    profile: &Profile,
    end: &ClientEnd,
    server: &ServerRecord,
) -> Result<(), String> {
    let k = server.config;
    let plan = &plans[k];
    let expected = plan.predict(profile);
    let leaf_of = |view: &View| -> Result<usize, String> {
        let leaf = view.peer.first().ok_or("no server certificate")?;
        (0..plans.len())
            .find(|&j| plans[j].leaf(certs, j, profile.name).cert_der() == leaf)
            .ok_or_else(|| "a server certificate of no configuration for this name".to_owned())
    };
    let server_view = |expect_ok: bool| -> Result<(&View, Option<&String>), String> {
        match &server.result {
            Ok((view, sni)) if expect_ok => Ok((view, sni.as_ref())),
            other => Err(format!("server: {other:?}")),
        }
    };
    match (end, &expected) {
        (
            ClientEnd::Served { view, resumed },
            Outcome::Accepted {
                version,
                alpn,
                certified,
            },
        ) => {
            let seen_k = leaf_of(view)?;
            if seen_k != k {
                return Err(format!(
                    "the certificate of configuration {seen_k} (resumed: {resumed:?}) under {k}"
                ));
            }
            if view.version != Some(*version) || &view.alpn != alpn {
                return Err(format!("client saw {view:?}, {k} allows {expected:?}"));
            }
            let (seen, sni) = server_view(true)?;
            if seen.version != view.version || seen.suite != view.suite || seen.alpn != view.alpn {
                return Err(format!("server saw {seen:?}, client {view:?}"));
            }
            let client_leaf = profile.cert.map(|c| certs.clients[c].cert_der().clone());
            let want: Option<&CertificateDer> = if *certified {
                client_leaf.as_ref()
            } else {
                None
            };
            if seen.peer.first() != want {
                return Err(format!(
                    "server's peer certificates {} (certified {certified})",
                    seen.peer.len()
                ));
            }
            if sni.map(String::as_str) != Some(&profile.name.to_ascii_lowercase()) {
                return Err(format!("server's SNI {sni:?}"));
            }
            if !server.served {
                return Err("the server did not read the client's line".into());
            }
            Ok(())
        }
        (ClientEnd::Refused(error), Outcome::Refused(why)) => {
            match error {
                Ok(error) if client_refusal_is(error, *why) => {}
                // A TLS 1.3 client may learn of the refusal of its certificate only later.
                other => return Err(format!("client refused with {other:?}, not {why:?}")),
            }
            match &server.result {
                Err(e) if server_refusal_is(e, *why) => Ok(()),
                other => Err(format!("server: {other:?}, not {why:?}")),
            }
        }
        (
            ClientEnd::RefusedAfter { view, error },
            Outcome::Refused(why @ Why::ClientAuth(TlsVersion::Tls13, _)),
        ) => {
            let seen_k = leaf_of(view)?;
            if seen_k != k {
                return Err(format!(
                    "the certificate of configuration {seen_k} under {k}"
                ));
            }
            if !client_refusal_is(error, *why) {
                return Err(format!("client's first read failed with {error:?}"));
            }
            match &server.result {
                Err(e) if server_refusal_is(e, *why) => Ok(()),
                other => Err(format!("server: {other:?}, not {why:?}")),
            }
        }
        _ => Err(format!(
            "client {end:?}, server {:?}: configuration {k} allows {expected:?}",
            server.result
        )),
    }
}

/// How many handshakes of each kind a run checked.
type Tally = std::collections::BTreeMap<String, u64>;

/// The kind of a client's end, for the tally.
fn kind(end: &ClientEnd, record: &ServerRecord) -> String {
    match end {
        ClientEnd::Served { resumed, .. } => format!("served (resumed {resumed:?})"),
        ClientEnd::RefusedAfter { error, .. } => format!("refused after: {error:?}"),
        ClientEnd::Refused(error) => format!("refused: {error:?}"),
        ClientEnd::Failed(why) => format!("failed: {why}"),
        ClientEnd::Other => match &record.result {
            Ok(_) => "misbehaved: server Ok".into(),
            Err(Error::Handshake(_)) => "misbehaved: server Handshake".into(),
            Err(e) => format!("misbehaved: server {e}"),
        },
    }
}

async fn round(seed: u64, certs: &Certs, tally: &mut Tally) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let count = 3 + rng.below(MAX_CONFIGS as u64 - 2) as usize;
    // One round in 16 has clients that stall, and configurations with handshake timeouts of
    // their own (each handshake's timeout is that of its configuration too), long enough for
    // every other handshake on a loaded machine; the others a timeout no handshake meets.
    let stalls = seed.is_multiple_of(16);
    let plans: Vec<Plan> = (0..count)
        .map(|k| {
            let timeout = if stalls {
                Duration::from_millis(2000 + 100 * k as u64)
            } else {
                Duration::from_secs(5)
            };
            Plan::random(&mut rng, timeout)
        })
        .collect();
    let configs: Vec<TlsServerConfig> = plans
        .iter()
        .enumerate()
        .map(|(k, p)| p.build(certs, k))
        .collect();
    // The slot is a configuration of its own, never one of `configs` (a clone would share
    // their slot), into which the reloader puts theirs.
    let slot = plans[0].build(certs, 0);
    let first = rng.below(count as u64) as usize;
    slot.reload(&configs[first]);
    let log = Arc::new(Mutex::new(vec![first]));
    let profiles: Vec<Profile> = (0..4 + rng.below(5))
        .map(|_| Profile::random(&mut rng, certs))
        .collect();
    let what = format!("seed {seed}: {plans:?} {profiles:?}");

    let selector = SelectorManager::new();
    let records: Records = Arc::default();
    let mut listeners = Vec::new();
    let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
    for _ in 0..2 {
        let server = Arc::new(
            a_socket(&selector)
                .tcp()
                .bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("bind: {e}"))?,
        );
        let port = server.port().unwrap();
        let (slot, log, records, tasks) = (
            slot.clone(),
            Arc::clone(&log),
            Arc::clone(&records),
            Arc::clone(&tasks),
        );
        let accepting = tokio::spawn({
            let server = Arc::clone(&server);
            async move {
                while let Ok(socket) = server.accept().await {
                    let task = tokio::spawn(serve(
                        socket,
                        slot.clone(),
                        Arc::clone(&log),
                        port,
                        Arc::clone(&records),
                    ));
                    tasks.lock().unwrap().push(task);
                }
            }
        });
        listeners.push((server, port, accepting));
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reloader = tokio::spawn({
        let (configs, slot, log, stop) = (
            configs.clone(),
            slot.clone(),
            Arc::clone(&log),
            Arc::clone(&stop),
        );
        let mut rng = Rng::new(seed ^ 0x5eed);
        // One round in four is calm: rare reloads, so that many sessions resume.
        let calm = rng.chance(4);
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Mostly quick reloads, sometimes a quiet while (for sessions to resume).
                let quiet = if calm || rng.chance(3) { 20_000 } else { 3_000 };
                tokio::time::sleep(Duration::from_micros(rng.below(quiet))).await;
                let k = rng.below(configs.len() as u64) as usize;
                let mut log = log.lock().unwrap();
                slot.reload(&configs[k]);
                log.push(k);
            }
        }
    });

    let clients = 24 + rng.below(16);
    let mut running = Vec::new();
    for _ in 0..clients {
        let profile = profiles[rng.below(profiles.len() as u64) as usize].clone();
        let behaviour = match rng.below(12) {
            0 => Behaviour::Vanish(rng.below(3000)),
            1 => Behaviour::Garbage,
            2 if stalls => Behaviour::Stall,
            _ => Behaviour::Good,
        };
        let mut bytes: Vec<u8> = (0..1 + rng.below(300))
            .map(|_| rng.below(256) as u8)
            .collect();
        if rng.chance(2) {
            bytes[0] = 0x16;
        }
        let listener = listeners[rng.below(2) as usize].1;
        let delay = Duration::from_micros(rng.below(40_000));
        let selector = selector.clone();
        running.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let end = client(&selector, listener, &profile, behaviour, bytes).await;
            (listener, profile, behaviour, end)
        }));
    }
    let limit = Duration::from_secs(20);
    let mut ends = Vec::new();
    for running in running {
        ends.push(
            tokio::time::timeout(limit, running)
                .await
                .map_err(|_| format!("{what}: a client hung"))?
                .map_err(|e| format!("{what}: a client panicked: {e}"))?,
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reloader
        .await
        .map_err(|e| format!("{what}: the reloader: {e}"))?;
    let started = Instant::now();
    loop {
        let task = tasks.lock().unwrap().pop();
        let Some(task) = task else { break };
        let left = limit.saturating_sub(started.elapsed());
        tokio::time::timeout(left, task)
            .await
            .map_err(|_| format!("{what}: a connection's task hung"))?
            .map_err(|e| format!("{what}: a connection's task panicked: {e}"))?;
    }
    // Every client has ended, so has every connection's task: each client's record is in.
    let records = std::mem::take(&mut *records.lock().unwrap());
    for (listener, profile, behaviour, end) in ends {
        let (local, end) = end.map_err(|e| format!("{what}: {behaviour:?} {profile:?}: {e}"))?;
        let record = match records.get(&(listener, local)).map(Vec::as_slice) {
            Some([record]) => record,
            // A port used twice (a connection before this one, on the same listener): not
            // told apart.
            Some(_) => continue,
            None => {
                return Err(format!(
                    "{what}: {behaviour:?} {profile:?} port {local}: no server record ({end:?})"
                ));
            }
        };
        *tally.entry(kind(&end, record)).or_default() += 1;
        match behaviour {
            Behaviour::Good => {
                check(certs, &plans, &profile, &end, record).map_err(|e| {
                    format!(
                        "{what}\n  {profile:?} port {local} under configuration {} ({:?}): {e}",
                        record.config, plans[record.config]
                    )
                })?;
            }
            Behaviour::Stall => match &record.result {
                Err(Error::HandshakeTimeout(after))
                    if *after == plans[record.config].handshake_timeout => {}
                other => {
                    return Err(format!(
                        "{what}: a stalled client, configuration {}: server {other:?}",
                        record.config
                    ));
                }
            },
            Behaviour::Garbage | Behaviour::Vanish(_) => match &record.result {
                Ok(_)
                | Err(Error::Handshake(_) | Error::Socket(_) | Error::HandshakeTimeout(_)) => {}
                Err(other) => return Err(format!("{what}: {behaviour:?}: server {other:?}")),
            },
        }
    }
    for (server, _, accepting) in listeners {
        accepting.abort();
        let _ = accepting.await;
        server.close();
    }
    selector.close();
    Ok(())
}

/// TLS servers under reloads and misbehaving clients (`TLSCHAOS_SEED`, `TLSCHAOS_ROUNDS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn each_handshake_under_reloads_gets_exactly_one_configuration() {
    let seeds = net_tests::rng::seeds("TLSCHAOS", 16);
    let certs = Certs::new();
    let before = net_tests::probe::socket_count();
    // Long runs (`TLSCHAOS_ROUNDS`) are bounded by their count; the default one also in time.
    let limit = if std::env::var_os("TLSCHAOS_ROUNDS").is_some() {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(30)
    };
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut tally = Tally::new();
    let mut rounds = 0;
    for seed in seeds {
        if started.elapsed() > limit {
            break;
        }
        rounds += 1;
        if let Err(e) = round(seed, &certs, &mut tally).await {
            eprintln!("{e}");
            failures.push(e);
        }
        // No task of the round is left: the connections', the clients', the selector's.
        let waited = Instant::now();
        while metrics.num_alive_tasks() > tasks_before && waited.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let left = metrics.num_alive_tasks();
        if left > tasks_before {
            failures.push(format!(
                "seed {seed}: {left} tasks alive, {tasks_before} before"
            ));
        }
    }
    let handshakes: u64 = tally.values().sum();
    eprintln!(
        "{rounds} rounds, {handshakes} handshakes checked in {:?}: {tally:#?}",
        started.elapsed()
    );
    let waited = Instant::now();
    while net_tests::probe::socket_count() > before && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = net_tests::probe::socket_count();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    let resumed = tally
        .get("served (resumed Some(true))")
        .copied()
        .unwrap_or(0);
    assert!(
        resumed > 0 || rounds < 4,
        "no session was resumed: {tally:#?}"
    );
    assert!(after <= before, "sockets: {before} before, {after} after");
}
