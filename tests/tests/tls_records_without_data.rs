//! Hostile TLS 1.3 peers that send records without data. Servers against our client
//! (`.tls(config)`), with records crafted after the handshake: endless NewSessionTickets, empty
//! records between them, a post-handshake CertificateRequest; and a client that sends only
//! KeyUpdates to our server. What our side holds (a counting allocator), what it spends
//! (process CPU time), and whether its reads end: `socket_timeout` counts records without data
//! as no progress.
//!
//! The hostile server is rustls's own, up to the end of its handshake; then it hands over its
//! traffic keys (`dangerous_extract_secrets`) and the test encrypts the records it wants with
//! rustls's own cipher (`Tls13AeadAlgorithm::encrypter`). It never reads.
//!
//! One scenario at a time (the allocator's count is process-wide), over a Unix socket.

use std::alloc::System;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::TempDir;
use net_tests::pki::TestCa;
use net_tls::rustls::crypto::cipher::{MessageEncrypter, OutboundChunks, OutboundPlainMessage};
use net_tls::rustls::crypto::{CryptoProvider, ring};
use net_tls::rustls::{
    self, CipherSuite, ConnectionTrafficSecrets, ContentType, ProtocolVersion, ServerConfig,
};
use net_tls::{TlsExt, TlsSocket};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// This process's CPU time (user + system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of the whole line: 12 and 13 after the state (field 3).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// A hostile TLS 1.3 server past its handshake: it writes records of its own making.
struct Hostile {
    stream: std::os::unix::net::UnixStream,
    encrypter: Box<dyn MessageEncrypter>,
    seq: u64,
}

impl Hostile {
    /// One encrypted TLS 1.3 record whose inner type is `typ`.
    fn record(&mut self, typ: ContentType, payload: &[u8]) -> Vec<u8> {
        let plain = OutboundPlainMessage {
            typ,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(payload),
        };
        let sealed = self.encrypter.encrypt(plain, self.seq).unwrap();
        self.seq += 1;
        sealed.encode()
    }

    fn handshake_message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend_from_slice(body);
        m
    }

    /// A NewSessionTicket with a ticket of `ticket_len` bytes (its `i` in front).
    fn new_session_ticket(&mut self, i: u64, ticket_len: usize) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&3600u32.to_be_bytes()); // lifetime
        body.extend_from_slice(&(i as u32).to_be_bytes()); // age_add
        body.push(8);
        body.extend_from_slice(&i.to_be_bytes()); // nonce
        let mut ticket = i.to_be_bytes().to_vec();
        ticket.resize(ticket_len.max(8), 0xAB);
        body.extend_from_slice(&(ticket.len() as u16).to_be_bytes());
        body.extend_from_slice(&ticket);
        body.extend_from_slice(&0u16.to_be_bytes()); // no extensions
        let message = Self::handshake_message(4, &body);
        self.record(ContentType::Handshake, &message)
    }

    fn data(&mut self, data: &[u8]) -> Vec<u8> {
        self.record(ContentType::ApplicationData, data)
    }

    /// A post-handshake CertificateRequest (context "x", signature_algorithms: ed25519).
    fn certificate_request(&mut self) -> Vec<u8> {
        let mut body = vec![1, b'x'];
        let sig_algs = [0x00, 0x02, 0x08, 0x07];
        let mut ext = vec![0x00, 0x0d];
        ext.extend_from_slice(&(sig_algs.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sig_algs);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let message = Self::handshake_message(13, &body);
        self.record(ContentType::Handshake, &message)
    }
}

fn hostile_config(ca: &TestCa) -> Arc<ServerConfig> {
    let leaf = ca.server(&["localhost"]);
    let mut provider = Arc::unwrap_or_clone(net_tls::crypto_provider());
    provider
        .cipher_suites
        .retain(|suite| suite.suite() == CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider: Arc<CryptoProvider> = Arc::new(provider);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain_der().to_vec(), leaf.key_der())
        .unwrap();
    config.send_tls13_tickets = 0;
    config.enable_secret_extraction = true;
    Arc::new(config)
}

/// Our client, connected to a hostile server past the handshake, and the server.
struct Setup {
    runtime: tokio::runtime::Runtime,
    selector: SelectorManager,
    client: TlsSocket,
    hostile: Hostile,
    _dir: TempDir,
}

fn setup(socket_timeout: Option<Duration>) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let selector = runtime.block_on(async { SelectorManager::new() });
    let ca = TestCa::new("tlshostile ca");
    let config = hostile_config(&ca);
    let dir = TempDir::new("tlshostile");
    let path = dir.join("hostile.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut stream).unwrap();
        }
        while conn.wants_write() {
            conn.write_tls(&mut stream).unwrap();
        }
        let secrets = conn.dangerous_extract_secrets().unwrap();
        let (seq, tx) = secrets.tx;
        let encrypter = match tx {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                ring::cipher_suite::TLS13_AES_128_GCM_SHA256
                    .tls13()
                    .unwrap()
                    .aead_alg
                    .encrypter(key, iv)
            }
            _ => panic!("not AES-128-GCM"),
        };
        Hostile {
            stream,
            encrypter,
            seq,
        }
    });
    let client_config = ca.client_config().server_name("localhost").build().unwrap();
    let client = runtime.block_on(async {
        let mut builder = a_socket(&selector).tcp();
        if let Some(t) = socket_timeout {
            builder = builder.socket_timeout(t);
        }
        let socket = builder
            .connect(UnixSocketAddress::new(&path))
            .await
            .unwrap();
        socket.tls(client_config).await.unwrap()
    });
    let hostile = server.join().unwrap();
    Setup {
        runtime,
        selector,
        client,
        hostile,
        _dir: dir,
    }
}

/// NewSessionTickets, 10,000 of them, then a line: what our reading client holds after them.
#[test]
fn endless_session_tickets_to_our_reading_client_stay_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    const TICKETS: u64 = 10_000;
    const TICKET_LEN: usize = 1000;
    let Setup {
        runtime,
        selector,
        mut client,
        mut hostile,
        _dir,
    } = setup(None);
    let mut input = client.open_read_channel().unwrap();
    // Warm up: a few tickets and a line.
    let mut warm = Vec::new();
    for i in 0..100 {
        warm.extend(hostile.new_session_ticket(i, TICKET_LEN));
    }
    warm.extend(hostile.data(b"warm\n"));
    hostile.stream.write_all(&warm).unwrap();
    let line = runtime
        .block_on(input.read_line(1024, LineEnding::Default))
        .unwrap();
    assert_eq!(line.as_deref(), Some("warm"));
    let mut blob = Vec::new();
    for i in 100..100 + TICKETS {
        blob.extend(hostile.new_session_ticket(i, TICKET_LEN));
    }
    blob.extend(hostile.data(b"x\n"));
    let before = live();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        hostile.stream.write_all(&blob).unwrap();
        (hostile, blob)
    });
    let line = runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                input.read_line(1024, LineEnding::Default),
            )
            .await
        })
        .expect("the line after the tickets")
        .unwrap();
    assert_eq!(line.as_deref(), Some("x"));
    let took = started.elapsed();
    let cpu = cpu_time() - cpu_before;
    let (hostile, blob) = writer.join().unwrap();
    let grown = live() - before;
    drop(blob);
    eprintln!(
        "{TICKETS} tickets of {TICKET_LEN} B: heap grew {grown} B ({:.1} B/ticket), {took:?} wall, {cpu:?} CPU",
        grown as f64 / TICKETS as f64
    );
    // Quiet: the hostile server neither reads nor sends; our client waits for a line.
    let read = runtime.spawn(async move { input.read_line(1024, LineEnding::Default).await });
    std::thread::sleep(Duration::from_millis(200));
    let quiet = cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let quiet_cpu = cpu_time() - quiet;
    eprintln!("quiet second: {quiet_cpu:?} CPU");
    read.abort();
    drop(hostile);
    client.close();
    selector.close();
    assert!(grown < 128 * 1024, "grew {grown} B over {TICKETS} tickets");
    assert!(
        quiet_cpu < Duration::from_millis(300),
        "{quiet_cpu:?} CPU in a quiet second"
    );
}

/// Records without data for ever (31 empty data records, then a ticket, again and again, within
/// rustls's limit of 32 empty records in a row), every 20 ms, to our client reading a line under
/// a `socket_timeout` of 300 ms: no byte of data ever comes.
#[test]
fn records_without_data_do_not_hold_off_our_clients_socket_timeout() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Setup {
        runtime,
        selector,
        mut client,
        mut hostile,
        _dir,
    } = setup(Some(Duration::from_millis(300)));
    let mut input = client.open_read_channel().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut i = 0;
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Acquire) && i < 500 {
                let mut batch = Vec::new();
                for _ in 0..31 {
                    batch.extend(hostile.data(b""));
                }
                batch.extend(hostile.new_session_ticket(i, 64));
                sent += batch.len();
                if hostile.stream.write_all(&batch).is_err() {
                    break;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (hostile, sent, i)
        })
    };
    let started = Instant::now();
    let outcome = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(3),
            input.read_line(1024, LineEnding::Default),
        )
        .await
    });
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (hostile, sent, batches) = sender.join().unwrap();
    eprintln!(
        "after {:?}: {outcome:?}; the peer sent {batches} batches ({sent} bytes, no data)",
        started.elapsed()
    );
    drop(hostile);
    client.close();
    selector.close();
    match outcome {
        Ok(Err(e)) => assert!(matches!(e, net_io::Error::Timeout), "{e:?}"),
        other => panic!("a read under a socket_timeout of 300 ms, with no data for 3 s: {other:?}"),
    }
}

/// A post-handshake CertificateRequest (TLS 1.3; rustls does not do post-handshake auth): our
/// client's read fails at once, typed, and the server gets a fatal alert.
#[test]
fn a_post_handshake_certificate_request_fails_our_read_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Setup {
        runtime,
        selector,
        mut client,
        mut hostile,
        _dir,
    } = setup(None);
    let mut input = client.open_read_channel().unwrap();
    let record = hostile.certificate_request();
    hostile.stream.write_all(&record).unwrap();
    let outcome = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            input.read_line(1024, LineEnding::Default),
        )
        .await
    });
    eprintln!("{outcome:?}");
    drop(hostile);
    client.close();
    selector.close();
    let e = outcome.expect("the read ends").expect_err("fails");
    assert!(
        e.inner_error()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .is_some(),
        "{e:?}"
    );
}

/// Our TLS server reads a line under a `socket_timeout` of 300 ms; a TLS 1.3 client sends no
/// data, only a KeyUpdate every 100 ms (30 of them: under rustls's limit of 32 without data).
#[test]
fn key_updates_without_data_do_not_hold_off_our_servers_socket_timeout() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let selector = runtime.block_on(async { SelectorManager::new() });
    let ca = TestCa::new("tlshostile ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let dir = TempDir::new("tlshostile-server");
    let path = dir.join("server.sock");
    let listener = runtime.block_on(async {
        a_socket(&selector)
            .tcp()
            .socket_timeout(Duration::from_millis(300))
            .bind(UnixSocketAddress::new(&path))
            .await
            .unwrap()
    });
    let server = runtime.spawn(async move {
        let socket = listener.accept().await.unwrap();
        let mut tls = socket.tls_server(&config).await.unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let started = Instant::now();
        let read = input.read_line(1024, LineEnding::Default).await;
        (read, started.elapsed(), tls)
    });
    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut client = rustls::ClientConnection::new(
        net_tests::tls::rustls_client(&ca),
        net_tests::tls::localhost(),
    )
    .unwrap();
    while client.is_handshaking() {
        client.complete_io(&mut stream).unwrap();
    }
    let mut updates = 0;
    let started = Instant::now();
    while !server.is_finished() && updates < 30 {
        std::thread::sleep(Duration::from_millis(100));
        client.refresh_traffic_keys().unwrap();
        while client.wants_write() {
            client.write_tls(&mut stream).unwrap();
        }
        updates += 1;
    }
    let sent_for = started.elapsed();
    let (read, waited, tls) = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await })
        .expect("the server's read ended")
        .unwrap();
    eprintln!("{updates} KeyUpdates over {sent_for:?}; the read: {read:?} after {waited:?}");
    drop(stream);
    tls.close();
    selector.close();
    let e = read.expect_err("no data came");
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    assert!(
        waited < Duration::from_millis(1500),
        "the read timed out only after {waited:?} (socket_timeout 300 ms), {updates} KeyUpdates"
    );
}

/// The hostile server streams tickets and lines (2,000 of each) and never reads; our client
/// reads the lines in one task and writes 8 MiB in another (which waits on the full socket).
/// Then the server goes quiet: our client must spend no CPU while it waits; then our `close`
/// ends both tasks.
#[test]
fn a_client_writing_to_a_server_that_floods_and_never_reads_neither_spins_nor_hangs() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Setup {
        runtime,
        selector,
        client,
        mut hostile,
        _dir,
    } = setup(None);
    let connection = client.connection().unwrap();
    let socket = connection.socket;
    let mut input = connection.input;
    let mut output = connection.output;
    let lines = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let lines = Arc::clone(&lines);
        runtime.spawn(async move {
            loop {
                match input.read_line(1024, LineEnding::Default).await {
                    Ok(Some(_)) => {
                        lines.fetch_add(1, std::sync::atomic::Ordering::Release);
                    }
                    other => return format!("{other:?}"),
                }
            }
        })
    };
    let writer = runtime.spawn(async move {
        let r = output.write_fully(&vec![b'w'; 8 * 1024 * 1024]).await;
        let _ = output.flush().await;
        format!("{r:?}")
    });
    let cpu_before = cpu_time();
    for i in 0..2000 {
        let mut batch = hostile.new_session_ticket(i, 200);
        batch.extend(hostile.data(b"x\n"));
        hostile.stream.write_all(&batch).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines.load(std::sync::atomic::Ordering::Acquire) < 2000 {
        assert!(
            Instant::now() < deadline,
            "read {} lines",
            lines.load(std::sync::atomic::Ordering::Acquire)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let flood_cpu = cpu_time() - cpu_before;
    std::thread::sleep(Duration::from_millis(200));
    let quiet = cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let quiet_cpu = cpu_time() - quiet;
    eprintln!("flood: {flood_cpu:?} CPU; quiet second: {quiet_cpu:?} CPU");
    let closed = Instant::now();
    socket.close();
    let (read, wrote) = runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async {
                (reader.await, writer.await)
            })
            .await
        })
        .expect("our close ends the reader and the writer");
    eprintln!(
        "after {:?}: read {read:?}, write {wrote:?}",
        closed.elapsed()
    );
    drop(hostile);
    selector.close();
    assert!(
        quiet_cpu < Duration::from_millis(300),
        "{quiet_cpu:?} CPU in a quiet second"
    );
}
