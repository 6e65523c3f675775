//! TLS 1.3 records written by hand, for hostile-peer tests: a client configuration that logs
//! its traffic secret ([`secret_logging_client`], [`ClientSecret`]), a [`RecordWriter`] that
//! encrypts records of that session from it (empty records, KeyUpdates: what rustls itself
//! never sends), [`raw_tls13_peer`], a session with our server whose client writes them, and
//! [`no_data_flood`], a connection to our server whose socket such records fill.

use std::sync::{Arc, Mutex};

use net_sockets::{SelectorManager, ServerSocket};
use net_tls::rustls::crypto::cipher::{AeadKey, Iv, OutboundChunks, OutboundPlainMessage};
use net_tls::rustls::crypto::tls13::OkmBlock;
use net_tls::rustls::crypto::{CryptoProvider, ring};
use net_tls::rustls::{
    self, ClientConfig, ContentType, KeyLog, ProtocolVersion, RootCertStore, SupportedCipherSuite,
};
use net_tls::{TlsExt, TlsServerConfig, TlsSocket};

use crate::loopback::tcp_listener;
use crate::pki::TestCa;
use crate::tls::localhost;
use crate::within;

/// The one suite the hand-made records use: its key (32 bytes) fits rustls's `AeadKey` as is.
pub const SUITE: SupportedCipherSuite = ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256;

/// Keeps the client's first application traffic secret (`CLIENT_TRAFFIC_SECRET_0`), so that the
/// test can write records of that session by hand.
#[derive(Debug, Default)]
pub struct ClientSecret(pub Mutex<Option<Vec<u8>>>);

impl KeyLog for ClientSecret {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == "CLIENT_TRAFFIC_SECRET_0" {
            *self.0.lock().expect("hand-made records") = Some(secret.to_vec());
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == "CLIENT_TRAFFIC_SECRET_0"
    }
}

/// A TLS 1.3 client configuration (ChaCha20-Poly1305 only) that trusts `ca` and logs its
/// traffic secret into `secret`.
pub fn secret_logging_client(ca: &TestCa, secret: Arc<ClientSecret>) -> Arc<ClientConfig> {
    let provider = CryptoProvider {
        cipher_suites: vec![SUITE],
        ..Arc::unwrap_or_clone(net_tls::crypto_provider())
    };
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).expect("hand-made records");
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("hand-made records")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.key_log = secret;
    Arc::new(config)
}

/// HKDF-Expand-Label (RFC 8446 §7.1) of `secret` with an empty context.
fn expand_label(secret: &[u8], label: &[u8], out: &mut [u8]) {
    let hkdf = SUITE.tls13().expect("hand-made records").hkdf_provider;
    let expander = hkdf.expander_for_okm(&OkmBlock::new(secret));
    let length = u16::try_from(out.len())
        .expect("hand-made records")
        .to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).expect("hand-made records")];
    expander
        .expand_slice(&[&length, &label_len, b"tls13 ", label, &[0]], out)
        .expect("hand-made records");
}

/// Writes TLS 1.3 records of one direction of a session by hand, from its traffic secret.
pub struct RecordWriter {
    secret: [u8; 32],
    seq: u64,
    encrypter: Box<dyn rustls::crypto::cipher::MessageEncrypter>,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl RecordWriter {
    /// A writer of records from `secret`, a TLS 1.3 traffic secret of [`SUITE`] (32 bytes).
    pub fn new(secret: &[u8]) -> RecordWriter {
        let secret: [u8; 32] = secret.try_into().expect("hand-made records");
        RecordWriter {
            secret,
            seq: 0,
            encrypter: RecordWriter::encrypter(&secret),
        }
    }

    fn encrypter(secret: &[u8; 32]) -> Box<dyn rustls::crypto::cipher::MessageEncrypter> {
        let mut key = [0u8; 32];
        let mut iv = [0u8; 12];
        expand_label(secret, b"key", &mut key);
        expand_label(secret, b"iv", &mut iv);
        SUITE
            .tls13()
            .expect("hand-made records")
            .aead_alg
            .encrypter(AeadKey::from(key), Iv::new(iv))
    }

    /// One record of `typ` carrying `payload`, appended to `out`.
    pub fn record(&mut self, typ: ContentType, payload: &[u8], out: &mut Vec<u8>) {
        let message = OutboundPlainMessage {
            typ,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(payload),
        };
        let record = self
            .encrypter
            .encrypt(message, self.seq)
            .expect("hand-made records");
        self.seq += 1;
        out.extend_from_slice(&record.encode());
    }

    /// A KeyUpdate that asks for no update in return, after which this side uses its next
    /// keys (RFC 8446 §4.6.3).
    pub fn key_update(&mut self, out: &mut Vec<u8>) {
        self.key_update_with(false, out);
    }

    /// A KeyUpdate that asks the peer to update its keys too (`update_requested`), after which
    /// this side uses its next keys.
    pub fn key_update_requested(&mut self, out: &mut Vec<u8>) {
        self.key_update_with(true, out);
    }

    fn key_update_with(&mut self, requested: bool, out: &mut Vec<u8>) {
        // key_update(24), length 1, update_not_requested(0) or update_requested(1).
        self.record(
            ContentType::Handshake,
            &[24, 0, 0, 1, u8::from(requested)],
            out,
        );
        let mut next = [0u8; 32];
        expand_label(&self.secret, b"traffic upd", &mut next);
        self.secret = next;
        self.encrypter = RecordWriter::encrypter(&self.secret);
        self.seq = 0;
    }
}

/// A TLS 1.3 session between a [`secret_logging_client`] and our server (on a listener of
/// `selector`, with a certificate of `ca` for `localhost`), for records written by hand: the
/// client's raw TCP stream and its session (which reads our records), a [`RecordWriter`] of
/// its records, and our server's socket.
pub async fn raw_tls13_peer(
    selector: &SelectorManager,
    ca: &TestCa,
) -> (
    tokio::net::TcpStream,
    rustls::ClientConnection,
    RecordWriter,
    TlsSocket,
) {
    let config = ca
        .server(&["localhost"])
        .server_config()
        .build()
        .expect("a server configuration");
    let listener = tcp_listener(selector).await;
    let port = listener.port().expect("a TCP listener");
    let secret = Arc::new(ClientSecret::default());
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        tokio_rustls::TlsConnector::from(secret_logging_client(ca, Arc::clone(&secret)))
            .connect(localhost(), tcp)
            .await
            .expect("the client's handshake")
    };
    let accept = async {
        listener
            .accept()
            .await
            .expect("accept")
            .tls_server(&config)
            .await
            .expect("the server handshake")
    };
    let (client, server) = within(async { tokio::join!(connect, accept) }).await;
    let (tcp, session) = client.into_inner();
    let secret = secret
        .0
        .lock()
        .expect("the secret's lock")
        .clone()
        .expect("the client's traffic secret");
    (tcp, session, RecordWriter::new(&secret), server)
}

/// A TLS 1.3 connection from a [`secret_logging_client`] to `listener` (accepted with
/// `config`), whose client then fills the socket with pairs of an empty application data
/// record and a KeyUpdate (records that carry no data, within rustls's limits on each): 1 MiB,
/// or what the socket takes if less, at least 256 KiB. Our server's socket, the client's raw
/// TCP stream (non-blocking), and the bytes sent.
pub async fn no_data_flood(
    listener: &ServerSocket,
    ca: &TestCa,
    config: &TlsServerConfig,
) -> (TlsSocket, std::net::TcpStream, usize) {
    use std::io::Write as _;
    let port = listener.port().expect("a TCP listener");
    let secret = Arc::new(ClientSecret::default());
    let client_config = secret_logging_client(ca, Arc::clone(&secret));
    let tcp = tokio::net::TcpSocket::new_v4().expect("a socket");
    tcp.set_send_buffer_size(1 << 20).expect("SO_SNDBUF");
    let connect = async {
        let tcp = tcp
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect");
        tokio_rustls::TlsConnector::from(client_config)
            .connect(localhost(), tcp)
            .await
            .expect("the client's handshake")
    };
    let accept = async {
        listener
            .accept()
            .await
            .expect("accept")
            .tls_server(config)
            .await
            .expect("the server handshake")
    };
    let (client, server) = within(async { tokio::join!(connect, accept) }).await;
    let secret = secret
        .0
        .lock()
        .expect("the secret's lock")
        .clone()
        .expect("the client's traffic secret");
    let (tcp, _session) = client.into_inner();
    let mut tcp = tcp.into_std().expect("a std stream");
    let mut records = RecordWriter::new(&secret);
    let mut filled = 0;
    'fill: while filled < 1 << 20 {
        let mut pair = Vec::new();
        records.record(ContentType::ApplicationData, &[], &mut pair);
        records.key_update(&mut pair);
        let mut rest = &pair[..];
        while !rest.is_empty() {
            match tcp.write(rest) {
                Ok(n) => {
                    rest = &rest[n..];
                    filled += n;
                }
                // Full. A pair cut in the middle is no matter: the server never gets to it.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break 'fill,
                Err(e) => panic!("the peer's write failed: {e}"),
            }
        }
    }
    assert!(
        filled >= 256 * 1024,
        "the socket buffers took only {filled} bytes"
    );
    (server, tcp, filled)
}
