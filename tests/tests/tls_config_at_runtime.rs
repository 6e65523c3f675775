//! Server and client TLS configuration at run time — keys and PEM as
//! OpenSSL writes them, SNI as clients send it, reloads (racing handshakes, bad inputs,
//! certbot-style symlink swaps, client CAs), configurations shared by listeners, and the
//! handshake timeout's extremes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::harness::{Process, openssl, path_arg};
use net_tests::pki::{Pki, TestCa};
use net_tests::tls::connect;
use net_tests::{TempDir, within};
use net_tls::rustls;
use net_tls::{CertificateDer, Error, TlsConfig, TlsExt, TlsServerConfig, TlsSocket};

/// A self-signed certificate for `localhost` made by `openssl req` with the key in `key`
/// (in `dir`); its PEM file's path.
fn self_signed_with(dir: &Path, key: &str, cert: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            key,
            "-out",
            cert,
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-days",
            "2",
        ],
    );
    dir.join(cert)
}

/// The first certificate in a PEM file, in DER.
fn first_cert_der(path: &Path) -> CertificateDer<'static> {
    use net_tls::rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

/// A client that accepts any certificate (the handshake's signature is still checked with the
/// key in it): for self-signed certificates made by `openssl req`, which are CAs.
fn any_server() -> TlsConfig {
    TlsConfig::builder()
        .dangerous_accept_any_server_certificate()
        .build()
        .unwrap()
}

async fn listener(selector: &SelectorManager) -> ServerSocket {
    a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap()
}

/// One handshake: `listener` accepts with `server`, a client connects to `localhost` with
/// `client`; both results.
async fn handshake(
    selector: &SelectorManager,
    listener: &ServerSocket,
    server: &TlsServerConfig,
    client: TlsConfig,
) -> (Result<TlsSocket, Error>, Result<TlsSocket, Error>) {
    let port = listener.port().unwrap();
    within(async {
        tokio::join!(
            async { listener.accept().await?.tls_server(server).await },
            connect(selector, "localhost", port, client)
        )
    })
    .await
}

/// The leaf the server presented, seen by a client of `client` config.
async fn served_leaf(
    selector: &SelectorManager,
    listener: &ServerSocket,
    server: &TlsServerConfig,
    client: TlsConfig,
) -> CertificateDer<'static> {
    let (s, c) = handshake(selector, listener, server, client).await;
    let (s, c) = (s.expect("server handshake"), c.expect("client handshake"));
    let leaf = c.peer_certificates()[0].clone();
    drop((s, c));
    leaf
}

/// Builds a server configuration from PEM files; the key's file is `key`.
fn from_files(cert: &Path, key: &Path) -> Result<TlsServerConfig, Error> {
    TlsServerConfig::builder()
        .certificate_chain_pem_file(cert)?
        .private_key_pem_file(key)?
        .build()
}

/// The crate docs say a server key may be "RSA of 2048 bits or more"; `ring` signs only with RSA
/// keys of 2048 to 4096 bits, so a 4160-bit key (as `openssl genpkey` makes it) is refused by
/// `private_key_pem_file` as "cannot be used ... (is the file corrupted, or the key of another
/// algorithm?)": the docs promise a key that does not work, and the error sends the operator
/// looking for corruption. Usable, or refused with a reason that gives the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_key_over_4096_bits_is_usable_or_refused_saying_why() {
    let dir = TempDir::new("tlsconfig-rsa");
    openssl(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:4160",
            "-out",
            "key.pem",
        ],
    );
    let cert = self_signed_with(dir.path(), "key.pem", "cert.pem");
    match from_files(&cert, &dir.join("key.pem")) {
        Ok(config) => {
            let selector = SelectorManager::new();
            let listener = listener(&selector).await;
            let leaf = served_leaf(&selector, &listener, &config, any_server()).await;
            assert_eq!(leaf, first_cert_der(&cert));
        }
        Err(Error::Pem { origin, reason, .. }) => {
            assert!(origin.ends_with("key.pem"), "{origin}");
            assert!(
                reason.contains("4096"),
                "an RSA key of 4160 bits is 'RSA of 2048 bits or more', refused as: {reason}"
            );
        }
        Err(e) => panic!("{e:?}"),
    }
}

/// Every key form the docs list, as OpenSSL writes it (with its extras: `EC PARAMETERS`
/// before a SEC1 key, PKCS#1 from `-traditional`), and PEM files as found in the wild (CRLF
/// line ends, `openssl x509 -text` output before the certificate, PKCS#12 "Bag Attributes"
/// between sections), serve a handshake with the right certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_keys_and_pem_files_of_every_documented_kind_serve_handshakes() {
    let dir = TempDir::new("tlsconfig-keys");
    let d = dir.path();
    openssl(d, &["genrsa", "-traditional", "-out", "rsa1.pem", "2048"]);
    openssl(
        d,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-out",
            "p256.pem",
        ],
    );
    openssl(
        d,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "secp384r1",
            "-out",
            "p384.pem",
        ],
    );
    openssl(
        d,
        &["genpkey", "-algorithm", "ed25519", "-out", "ed25519.pem"],
    );
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "p256p8.pem",
        ],
    );
    let selector = SelectorManager::new();
    let listener = listener(&selector).await;
    for (key, label) in [
        ("rsa1.pem", "-----BEGIN RSA PRIVATE KEY-----"),
        ("p256.pem", "-----BEGIN EC PARAMETERS-----"),
        ("p384.pem", "-----BEGIN EC PARAMETERS-----"),
        ("ed25519.pem", "-----BEGIN PRIVATE KEY-----"),
        ("p256p8.pem", "-----BEGIN PRIVATE KEY-----"),
    ] {
        let key_text = std::fs::read_to_string(d.join(key)).unwrap();
        assert!(key_text.starts_with(label), "{key}: {key_text}");
        let cert = self_signed_with(d, key, &format!("{key}.crt"));
        let cert_text = std::fs::read_to_string(&cert).unwrap();
        let text_dump = {
            let out = std::process::Command::new("openssl")
                .args(["x509", "-text", "-in", path_arg(&cert)])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let bag = format!(
            "Bag Attributes\n    localKeyID: 01 00 00 00 \n    friendlyName: x\nsubject=CN = localhost\n\nissuer=CN = localhost\n\n{cert_text}Bag Attributes\n    localKeyID: 01 00 00 00 \nKey Attributes: <No Attributes>\n{key_text}"
        );
        for (what, chain, key_pem) in [
            ("as written", cert_text.clone(), key_text.clone()),
            (
                "CRLF",
                cert_text.replace('\n', "\r\n"),
                key_text.replace('\n', "\r\n"),
            ),
            ("x509 -text", text_dump.clone(), key_text.clone()),
            ("bag attributes, one file", bag.clone(), bag.clone()),
        ] {
            let chain_file = dir.write(&format!("{key}.{}.chain", what.len()), &chain);
            let key_file = dir.write(&format!("{key}.{}.key", what.len()), &key_pem);
            let config = TlsServerConfig::builder()
                .certificate_chain_pem_file(&chain_file)
                .and_then(|b| b.private_key_pem_file(&key_file))
                .and_then(|b| b.build())
                .unwrap_or_else(|e| panic!("{key} {what}: {e}"));
            let leaf = served_leaf(&selector, &listener, &config, any_server()).await;
            assert_eq!(leaf, first_cert_der(&cert), "{key} {what}");
        }
    }
}

/// A SEC1 EC key without its optional public key (`openssl ec -no_public`; RFC 5915 makes the
/// public key optional) is a "SEC1 (EC)" key on P-256, which the docs accept; `ring` cannot
/// load it, and the error asks whether the file is corrupted. Usable, or refused saying that
/// the public key is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sec1_key_without_its_public_key_is_usable_or_refused_saying_why() {
    let dir = TempDir::new("tlsconfig-sec1");
    let d = dir.path();
    openssl(
        d,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "full.pem",
        ],
    );
    openssl(
        d,
        &["ec", "-in", "full.pem", "-no_public", "-out", "bare.pem"],
    );
    let cert = self_signed_with(d, "full.pem", "cert.pem");
    match from_files(&cert, &d.join("bare.pem")) {
        Ok(config) => {
            let selector = SelectorManager::new();
            let listener = listener(&selector).await;
            let leaf = served_leaf(&selector, &listener, &config, any_server()).await;
            assert_eq!(leaf, first_cert_der(&cert));
        }
        Err(Error::Pem { origin, reason, .. }) => {
            assert!(origin.ends_with("bare.pem"), "{origin}");
            assert!(
                reason.contains("public key"),
                "a SEC1 P-256 key without its public key, refused as: {reason}"
            );
        }
        Err(e) => panic!("{e:?}"),
    }
}

/// A client that sends an IP address as SNI (`openssl s_client -servername 127.0.0.1`, against
/// RFC 6066) gets the default certificate, as one without SNI does, and the server reports no
/// name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_address_sent_as_sni_gets_the_default_certificate() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    let named = pki.ca.server(&["other.test", "127.0.0.1"]);
    // An SNI certificate for a DNS name, which would verify for the address too: the
    // IP-address SNI must not reach it either.
    let config = named
        .sni_certificate("other.test", pki.server_config())
        .build()
        .unwrap();
    for servername in ["127.0.0.1", "::1"] {
        let listener = listener(&selector).await;
        let port = listener.port().unwrap();
        let task = tokio::spawn({
            let config = config.clone();
            async move { listener.accept().await?.tls_server(&config).await }
        });
        let connect_to = format!("127.0.0.1:{port}");
        let mut s_client = Process::start(
            "openssl",
            [
                "s_client",
                "-brief",
                "-connect",
                &connect_to,
                "-CAfile",
                path_arg(&files.ca),
                "-servername",
                servername,
            ],
        );
        let tls = within(task).await.unwrap().unwrap();
        assert_eq!(tls.server_name(), None, "{servername}");
        drop(tls);
        let finished = s_client.finish();
        assert!(
            finished
                .stderr
                .iter()
                .any(|l| l.contains("Peer certificate: CN = localhost")),
            "{servername}: {finished:?}"
        );
    }
}

/// Many handshakes while another task reloads between two certificates as fast as it can: no
/// handshake fails, and each client sees one of the two chains whole (leaf and CA as one
/// configuration gave them, never a leaf with the other's chain). The last reload is the one
/// served afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_racing_handshakes_give_each_one_whole_chain() {
    let selector = SelectorManager::new();
    let (ca1, ca2) = (TestCa::new("race ca 1"), TestCa::new("race ca 2"));
    let (a, b) = (ca1.server(&["localhost"]), ca2.server(&["localhost"]));
    let (config_a, config_b) = (
        a.server_config().build().unwrap(),
        b.server_config().build().unwrap(),
    );
    let config = config_a.clone();
    let listener = listener(&selector).await;
    let port = listener.port().unwrap();
    let serving = tokio::spawn({
        let config = config.clone();
        async move {
            let mut handshakes = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let socket = listener.accept().await.unwrap();
                let config = config.clone();
                handshakes.spawn(async move { socket.tls_server(&config).await.map(drop) });
            }
            let mut failed = Vec::new();
            while let Some(done) = handshakes.join_next().await {
                if let Err(e) = done.unwrap() {
                    failed.push(e.to_string());
                }
            }
            (listener, failed)
        }
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reloader = std::thread::spawn({
        let (config, stop) = (config.clone(), stop.clone());
        let (config_a, config_b) = (config_a.clone(), config_b.clone());
        move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 50_000_000 {
                config.reload(if n.is_multiple_of(2) {
                    &config_b
                } else {
                    &config_a
                });
                n += 1;
            }
            n
        }
    });
    // Trusts both CAs: either chain verifies.
    let client = TlsConfig::builder()
        .add_root_certificates_pem(ca1.pem().as_bytes())
        .unwrap()
        .add_root_certificates_pem(ca2.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (selector, client) = (selector.clone(), client.clone());
        clients.spawn(async move {
            let tls = connect(&selector, "localhost", port, client).await?;
            Ok::<_, Error>(tls.peer_certificates().to_vec())
        });
    }
    let mut seen = Vec::new();
    while let Some(done) = within(clients.join_next()).await {
        seen.push(done.unwrap().expect("client handshake"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reloads = reloader.join().unwrap();
    let (listener, failed) = within(serving).await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(reloads > 0);
    for chain in &seen {
        assert!(
            chain == a.chain_der() || chain == b.chain_der(),
            "a chain of neither configuration"
        );
    }
    config.reload(&config_b);
    let leaf = served_leaf(&selector, &listener, &config, client.clone()).await;
    assert_eq!(&leaf, b.cert_der());
}

/// The docs' reload pattern with files laid out as certbot does (`live/` symlinks into
/// `archive/`, swapped by renaming a new symlink over the old): each failure met while the
/// files change (the chain swapped before the key, a file missing, empty, or holding an
/// encrypted key) is the documented typed error naming the file, the old certificate keeps
/// being served, and once both links point at the new pair the reload serves it, while a
/// connection opened before keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_style_symlink_swaps_reload_and_failures_keep_the_old_certificate() {
    use std::os::unix::fs::symlink;
    let selector = SelectorManager::new();
    let ca = TestCa::new("certbot ca");
    let (first, second) = (ca.server(&["localhost"]), ca.server(&["localhost"]));
    let dir = TempDir::new("tlsconfig-certbot");
    std::fs::create_dir(dir.join("archive")).unwrap();
    std::fs::create_dir(dir.join("live")).unwrap();
    let archive = |name: &str, text: &str| {
        std::fs::write(dir.join("archive").join(name), text).unwrap();
    };
    archive("fullchain1.pem", first.chain_pem());
    archive("privkey1.pem", first.key_pem());
    archive("fullchain2.pem", second.chain_pem());
    archive("privkey2.pem", second.key_pem());
    let (chain_link, key_link) = (dir.join("live/fullchain.pem"), dir.join("live/privkey.pem"));
    let point = |link: &Path, target: &str| {
        let tmp = link.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(format!("../archive/{target}"), &tmp).unwrap();
        std::fs::rename(&tmp, link).unwrap();
    };
    point(&chain_link, "fullchain1.pem");
    point(&key_link, "privkey1.pem");
    let load = || {
        TlsServerConfig::builder()
            .certificate_chain_pem_file(&chain_link)?
            .private_key_pem_file(&key_link)?
            .build()
    };
    let config = load().unwrap();
    let listener = listener(&selector).await;
    let client = || ca.client_config().build().unwrap();
    let (open_server, open_client) = handshake(&selector, &listener, &config, client()).await;
    let (mut open_server, mut open_client) = (open_server.unwrap(), open_client.unwrap());
    assert_eq!(&open_client.peer_certificates()[0], first.cert_der());

    // Half-way: the chain is new, the key still the old one.
    point(&chain_link, "fullchain2.pem");
    match load() {
        Err(Error::Config(rustls::Error::InconsistentKeys(
            rustls::InconsistentKeys::KeyMismatch,
        ))) => {}
        other => panic!("chain and key of two certificates: {other:?}"),
    }
    assert_eq!(
        &served_leaf(&selector, &listener, &config, client()).await,
        first.cert_der()
    );
    // The key's target missing (a dangling link), then empty, then encrypted.
    point(&key_link, "privkey-missing.pem");
    match load() {
        Err(e @ Error::ReadFile { .. }) => {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e:?}");
            assert!(e.to_string().contains("privkey.pem"), "{e}");
        }
        other => panic!("a dangling link: {other:?}"),
    }
    archive("privkey-empty.pem", "");
    point(&key_link, "privkey-empty.pem");
    match load() {
        Err(Error::Pem { origin, .. }) => assert!(origin.ends_with("live/privkey.pem"), "{origin}"),
        other => panic!("an empty key file: {other:?}"),
    }
    assert_eq!(
        &served_leaf(&selector, &listener, &config, client()).await,
        first.cert_der()
    );
    point(&key_link, "privkey2.pem");
    config.reload(&load().unwrap());
    assert_eq!(
        &served_leaf(&selector, &listener, &config, client()).await,
        second.cert_der()
    );
    // The connection opened before the reload still carries data both ways.
    let mut out = open_client.open_write_channel(true).unwrap();
    let mut input = open_server.open_read_channel().unwrap();
    within(out.write_string_utf8("still here\n")).await.unwrap();
    let line = within(input.read_line(100, net_io::LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("still here"));
}

/// Client authentication changes with a reload: a server that required certificates of CA 1
/// requires those of CA 2 after it (a CA-1 client is refused, a CA-2 one accepted), and after
/// a reload to a configuration without client authentication a client without a certificate
/// is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_client_cas_for_later_handshakes() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let (ca1, ca2) = (TestCa::new("client ca 1"), TestCa::new("client ca 2"));
    let (c1, c2) = (ca1.client("one"), ca2.client("two"));
    let config = pki.server.mutual_tls_server_config(&ca1).build().unwrap();
    let listener = listener(&selector).await;
    let client = |leaf: &net_tests::pki::Leaf| {
        leaf.client_certificate(pki.client_config())
            .protocol_versions(&[net_tls::TlsVersion::Tls12])
            .build()
            .unwrap()
    };
    let (s, c) = handshake(&selector, &listener, &config, client(&c1)).await;
    assert_eq!(&s.unwrap().peer_certificates()[0], c1.cert_der());
    drop(c);
    config.reload(&pki.server.mutual_tls_server_config(&ca2).build().unwrap());
    let (s, c) = handshake(&selector, &listener, &config, client(&c1)).await;
    assert!(
        matches!(
            &s,
            Err(Error::Handshake(rustls::Error::InvalidCertificate(_)))
        ),
        "{s:?}"
    );
    assert!(c.is_err(), "{c:?}");
    let (s, _c) = handshake(&selector, &listener, &config, client(&c2)).await;
    assert_eq!(&s.unwrap().peer_certificates()[0], c2.cert_der());
    config.reload(&pki.server_config().build().unwrap());
    let plain = pki
        .client_config()
        .protocol_versions(&[net_tls::TlsVersion::Tls12])
        .build()
        .unwrap();
    let (s, c) = handshake(&selector, &listener, &config, plain).await;
    assert!(s.unwrap().peer_certificates().is_empty());
    drop(c.unwrap());
}

/// One configuration shared by two listeners, reloaded through a third clone: both listeners
/// serve the new certificate; a configuration built separately (not a clone) does not follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_on_several_listeners_follow_a_reload_and_others_do_not() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("shared ca");
    let (first, second) = (ca.server(&["localhost"]), ca.server(&["localhost"]));
    let config = first.server_config().build().unwrap();
    let (l1, l2) = (listener(&selector).await, listener(&selector).await);
    let (on1, on2, handle) = (config.clone(), config.clone(), config.clone());
    let separate = first.server_config().build().unwrap();
    handle.reload(&second.server_config().build().unwrap());
    let client = || ca.client_config().build().unwrap();
    assert_eq!(
        &served_leaf(&selector, &l1, &on1, client()).await,
        second.cert_der()
    );
    assert_eq!(
        &served_leaf(&selector, &l2, &on2, client()).await,
        second.cert_der()
    );
    assert_eq!(
        &served_leaf(&selector, &l1, &separate, client()).await,
        first.cert_der()
    );
    // A reload takes what `new` holds at that moment: reloading `new` later changes nothing.
    let new = second.server_config().build().unwrap();
    separate.reload(&new);
    new.reload(&first.server_config().build().unwrap());
    assert_eq!(
        &served_leaf(&selector, &l2, &separate, client()).await,
        second.cert_der()
    );
}

/// The handshake timeout's extremes: `Duration::MAX` neither panics nor fails the handshake;
/// `Duration::ZERO` panics nowhere either (a handshake that fails fails with
/// `HandshakeTimeout(0)`; one done within the timer's tick completes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeouts_of_zero_and_max_are_handled() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let listener = listener(&selector).await;
    let long = pki
        .server_config()
        .handshake_timeout(Duration::MAX)
        .build()
        .unwrap();
    let client = pki
        .client_config()
        .handshake_timeout(Duration::MAX)
        .build()
        .unwrap();
    let (s, c) = handshake(&selector, &listener, &long, client).await;
    drop((s.unwrap(), c.unwrap()));
    let zero = pki
        .server_config()
        .handshake_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let client = pki.client_config().build().unwrap();
    let (s, c) = handshake(&selector, &listener, &zero, client).await;
    // Timers tick by the millisecond: a handshake done within the tick may still complete.
    assert!(
        matches!(s, Ok(_) | Err(Error::HandshakeTimeout(Duration::ZERO))),
        "{s:?}"
    );
    drop(c);
    let zero_client = pki
        .client_config()
        .handshake_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let port = listener.port().unwrap();
    let c = within(connect(&selector, "localhost", port, zero_client)).await;
    assert!(
        matches!(c, Ok(_) | Err(Error::HandshakeTimeout(Duration::ZERO))),
        "{c:?}"
    );
}

/// Runs one blocking rustls client connection to `127.0.0.1:port` (SNI `localhost`): writes
/// `early` as 0-RTT data when the session allows it, then `late` after the handshake, and
/// returns whether the early data was accepted and the server's first reply line.
fn early_data_client(
    config: &std::sync::Arc<rustls::ClientConfig>,
    port: u16,
    early: &[u8],
    late: &[u8],
) -> (bool, String) {
    use std::io::{BufRead, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(net_tests::HANG_LIMIT)).unwrap();
    let mut conn =
        rustls::ClientConnection::new(config.clone(), net_tests::tls::localhost()).unwrap();
    if let Some(mut writer) = conn.early_data() {
        writer.write_all(early).unwrap();
    }
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    let accepted = conn.is_early_data_accepted();
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    stream.write_all(late).unwrap();
    stream.flush().unwrap();
    let mut reply = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut reply)
        .unwrap();
    (accepted, reply)
}

/// A server configuration given through `from_rustls` ("used as given") that accepts TLS 1.3
/// early data (`max_early_data_size`, the escape hatch for what the builder does not offer):
/// a resuming client's 0-RTT bytes are part of what it sent, and the server application must
/// read them first. They are silently lost: the first line read is the one sent after the
/// handshake, and the client was told they were accepted. (Either the bytes must come first,
/// or early data must be refused, which tells the client to send them again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_data_accepted_by_a_from_rustls_server_reaches_the_application() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let mut rustls_server = rustls::ServerConfig::builder_with_provider(net_tests::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.server.chain_der().to_vec(), pki.server.key_der())
        .unwrap();
    rustls_server.max_early_data_size = 1024;
    let config = TlsServerConfig::from_rustls(std::sync::Arc::new(rustls_server));
    let listener = listener(&selector).await;
    let port = listener.port().unwrap();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let mut tls = listener
                .accept()
                .await
                .unwrap()
                .tls_server(&config)
                .await
                .unwrap();
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(true).unwrap();
            let line = input
                .read_line(1024, net_io::LineEnding::Default)
                .await
                .unwrap()
                .unwrap_or_default();
            output
                .write_string_utf8(&format!("first line: {line}\n"))
                .await
                .unwrap();
            output.flush().await.unwrap();
            tls.close();
        }
    });
    let mut client = (*net_tests::tls::rustls_client(&pki.ca)).clone();
    client.enable_early_data = true;
    let client = std::sync::Arc::new(client);
    let clients = tokio::task::spawn_blocking(move || {
        // The first connection gets a ticket that allows early data; the second uses it.
        let first = early_data_client(&client, port, b"", b"full handshake\n");
        let second = early_data_client(&client, port, b"sent as 0-RTT\n", b"sent after\n");
        (first, second)
    });
    let (first, (accepted, reply)) = within(clients).await.unwrap();
    within(server).await.unwrap();
    assert_eq!(first.1, "first line: full handshake\n");
    // Refused early data is the client's to send again (rustls tells it:
    // `is_early_data_accepted`); accepted early data is the application's to read, first.
    if accepted {
        assert_eq!(
            reply, "first line: sent as 0-RTT\n",
            "the server accepted the client's 0-RTT bytes, and the application never saw them"
        );
    } else {
        assert_eq!(reply, "first line: sent after\n");
    }
}

/// Several SNI certificates beside the default: each name (in any case) gets its own, a name
/// given twice gets the later certificate, and an unknown name the default. Our client sends
/// the name of `server_name` while connecting to an address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sni_names_each_get_their_certificate() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("sni ca");
    let default = ca.server(&["localhost"]);
    let (a, b, b_again) = (
        ca.server(&["a.test"]),
        ca.server(&["b.test"]),
        ca.server(&["b.test"]),
    );
    let config = b_again
        .sni_certificate(
            "B.test.",
            b.sni_certificate(
                "b.test",
                a.sni_certificate("a.test", default.server_config()),
            ),
        )
        .build()
        .unwrap();
    let listener = listener(&selector).await;
    let port = listener.port().unwrap();
    for (name, expected) in [
        ("a.test", &a),
        ("A.TEST", &a),
        ("b.test", &b_again),
        ("localhost", &default),
    ] {
        let client = ca.client_config().server_name(name).build().unwrap();
        let (s, c) = within(async {
            tokio::join!(
                async { listener.accept().await?.tls_server(&config).await },
                connect(&selector, "127.0.0.1", port, client)
            )
        })
        .await;
        let (s, c) = (s.unwrap(), c.unwrap());
        assert_eq!(&c.peer_certificates()[0], expected.cert_der(), "{name}");
        assert_eq!(s.server_name(), Some(name.to_ascii_lowercase().as_str()));
    }
    // An unknown name gets the default, which the client then refuses for that name.
    let client = ca.client_config().server_name("c.test").build().unwrap();
    let (s, c) = within(async {
        tokio::join!(
            async { listener.accept().await?.tls_server(&config).await },
            connect(&selector, "127.0.0.1", port, client)
        )
    })
    .await;
    assert!(
        matches!(
            c,
            Err(Error::Handshake(rustls::Error::InvalidCertificate(_)))
        ),
        "{c:?}"
    );
    drop(s);
}

/// Client trust: the system's PEM bundle loads whole through `add_root_certificates_pem_file`
/// (every certificate a usable anchor), a custom root is trusted beside `native_roots()`, and
/// a custom root alone replaces the bundled roots (our CA's server is trusted, nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_roots_with_and_without_the_system_store() {
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if !bundle.exists() {
        net_tests::harness::skipped("no system bundle (/etc/ssl/certs/ca-certificates.crt) here");
        return;
    }
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let listener = listener(&selector).await;
    let server = pki.server_config().build().unwrap();
    let from_file = TlsConfig::builder()
        .add_root_certificates_pem_file(bundle)
        .unwrap()
        .build()
        .unwrap();
    let (s, c) = handshake(&selector, &listener, &server, from_file).await;
    assert!(
        matches!(
            c,
            Err(Error::Handshake(rustls::Error::InvalidCertificate(_)))
        ),
        "{c:?}"
    );
    drop(s);
    let both = pki.client_config().native_roots().build().unwrap();
    let (s, c) = handshake(&selector, &listener, &server, both).await;
    drop((s.unwrap(), c.unwrap()));
    let native_only = TlsConfig::builder().native_roots().build().unwrap();
    let (s, c) = handshake(&selector, &listener, &server, native_only).await;
    assert!(
        matches!(
            c,
            Err(Error::Handshake(rustls::Error::InvalidCertificate(_)))
        ),
        "{c:?}"
    );
    drop(s);
}
