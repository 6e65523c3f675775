//! The mixed soak of `cargo xtask soak-mix` (see `RELIABILITY.md`): one server process with
//! every kind of listener the library has, and a load program that churns connections of every
//! shape through it, so that a leak of descriptors, tasks, threads or memory on any of those
//! paths shows as growth in the server process.
//!
//! ```text
//! soak-mix serve --unix PATH --cert CHAIN.pem --key KEY.pem
//! soak-mix load --tcp ADDR --proxy ADDR --tls ADDR --udp ADDR --unix PATH --ca CA.pem
//!               --workers W --secs S
//! ```
//!
//! `serve` listens on 127.0.0.1 (free ports) with plain TCP, TCP behind a required PROXY
//! header, TLS, UDP (echo) and a Unix socket at PATH, the TCP listeners with an idle timeout
//! of 30 s and at most 256 connections per client address (the PROXY load names a new client
//! address for most connections, so the per-address counts see ever new keys); prints one line
//! `listening tcp=A proxy=A tls=A udp=A unix=PATH`, then every second
//! `tasks alive=N conns=M panics=P accept_errors=E` (tokio's alive tasks, the connection
//! handlers running, the handlers that panicked so far, and the accept errors so far). Every
//! stream answers each line `X` with `Hello, X!`; it exits when its stdin closes. A panic's
//! message and each accept error also go to stderr.
//!
//! `load` runs W workers for S seconds, each going round the shapes in turn (a 20 ms pause
//! between two): plain TCP, TLS, Unix, PROXY v1 (5 lines each, then an orderly close), a TCP
//! half-close (lines, write side shut, answers read to the end), an abrupt reset after a line
//! (TCP and TLS, `SO_LINGER` 0), a TLS handshake cut short, and a UDP echo. It prints one
//! `shape NAME ok=N failed=M` line per shape, then `total ok=N failed=M`. A failure of an
//! orderly shape is counted, not fatal; the connections it cuts on purpose count as ok. A
//! worker that panics (a bug of the load program) is counted, and after the report the load
//! exits with an error naming how many did.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{
    ProxyProtocol, SelectorManager, ServerSocket, Socket, UnixSocketAddress, a_socket,
};
use net_tls::{TlsExt, TlsServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket, UnixStream};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, timeout};

/// The longest line a server reads.
const LINE_LIMIT: usize = 1024;
/// Lines per orderly connection.
const LINES: usize = 5;
/// How long one step of a client may take before it counts as failed.
const STEP_LIMIT: Duration = Duration::from_secs(5);
/// A worker's pause between two connections.
const PAUSE: Duration = Duration::from_millis(20);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str);
    let get = |key: &str| -> Result<String> {
        let at = args
            .iter()
            .position(|a| a == key)
            .with_context(|| format!("{key} missing"))?;
        args.get(at + 1)
            .cloned()
            .with_context(|| format!("{key} needs a value"))
    };
    match mode {
        Some("serve") => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(
                PathBuf::from(get("--unix")?),
                PathBuf::from(get("--cert")?),
                PathBuf::from(get("--key")?),
            )),
        Some("load") => {
            let cfg = LoadConfig {
                tcp: get("--tcp")?.parse()?,
                proxy: get("--proxy")?.parse()?,
                tls: get("--tls")?.parse()?,
                udp: get("--udp")?.parse()?,
                unix: PathBuf::from(get("--unix")?),
                tls_client: client_config(&PathBuf::from(get("--ca")?))?,
            };
            let workers: usize = get("--workers")?.parse()?;
            let secs: f64 = get("--secs")?.parse()?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(load(Arc::new(cfg), workers, Duration::from_secs_f64(secs)))
        }
        _ => bail!("usage: soak-mix serve ... | soak-mix load ... (see the source)"),
    }
}

// ---- server ----

/// Counts a connection handler while it runs.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Live {
        count.fetch_add(1, Ordering::Relaxed);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Faults of the server that its clients may not see, counted for the driver. A handler's
/// panic is caught by tokio and ends only that handler (its client may see no more than a
/// cut connection, which the reset shapes make on purpose); an accept error is one the
/// listener does not retry by itself (it retries those `accept(2)` says to), so any is a fault.
#[derive(Default)]
struct Faults {
    panics: AtomicU64,
    accept_errors: AtomicU64,
}

impl Faults {
    /// Counts a finished handler that panicked (its message is already on stderr).
    fn finished(&self, handler: Result<(), JoinError>) {
        if handler.is_err_and(|e| e.is_panic()) {
            self.panics.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts and reports an accept error.
    fn accept_failed(&self, error: &net_sockets::Error) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("accept: {error}");
    }
}

async fn serve(unix: PathBuf, cert: PathBuf, key: PathBuf) -> Result<()> {
    let selector = SelectorManager::new();
    let tcp = || {
        a_socket(&selector)
            .tcp()
            .socket_timeout(Duration::from_secs(30))
            // Kept per client address: the PROXY load names ever new ones.
            .max_connections_per_ip(256)
    };
    let plain = tcp().bind("127.0.0.1:0").await?;
    let proxy = tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .bind("127.0.0.1:0")
        .await?;
    let tls = tcp().bind("127.0.0.1:0").await?;
    let _ = std::fs::remove_file(&unix);
    let local = tcp().bind(UnixSocketAddress::new(&unix)).await?;
    let udp = a_socket(&selector).udp().bind("127.0.0.1:0").await?;
    let config = TlsServerConfig::builder()
        .certificate_chain_pem_file(&cert)?
        .private_key_pem_file(&key)?
        .build()?;
    println!(
        "listening tcp={} proxy={} tls={} udp={} unix={}",
        plain.local_address(),
        proxy.local_address(),
        tls.local_address(),
        udp.local_address(),
        unix.display()
    );
    let conns = Arc::new(AtomicUsize::new(0));
    let faults = Arc::new(Faults::default());
    for listener in [plain, proxy, local] {
        tokio::spawn(accept_plain(listener, conns.clone(), faults.clone()));
    }
    tokio::spawn(accept_tls(tls, config, conns.clone(), faults.clone()));
    tokio::spawn(async move {
        while let Ok(datagram) = udp.receive().await {
            let _ = udp.send(datagram).await;
        }
    });
    // Exit when stdin closes (the driver holds the other end).
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    let metrics = tokio::runtime::Handle::current().metrics();
    loop {
        println!(
            "tasks alive={} conns={} panics={} accept_errors={}",
            metrics.num_alive_tasks(),
            conns.load(Ordering::Relaxed),
            faults.panics.load(Ordering::Relaxed),
            faults.accept_errors.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The next connection of `listener`, while reaping the finished handlers of `handlers` into
/// `faults`; `None` after an accept error (counted and reported).
///
/// The handlers are kept in a `JoinSet` so that a panic is seen: a handler's own result is
/// ignored (a reset or a cut handshake fails it on purpose), its panic is not. `accept` is
/// cancel safe, so a handler finishing first loses no connection.
async fn next_connection(
    listener: &ServerSocket,
    handlers: &mut JoinSet<()>,
    faults: &Faults,
) -> Option<Socket> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(socket) => return Some(socket),
                Err(e) => {
                    faults.accept_failed(&e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return None;
                }
            },
            // `None` (no handler) disables this branch until the next call.
            Some(handler) = handlers.join_next() => faults.finished(handler),
        }
    }
}

async fn accept_plain(listener: ServerSocket, conns: Arc<AtomicUsize>, faults: Arc<Faults>) {
    let mut handlers = JoinSet::new();
    loop {
        let Some(mut socket) = next_connection(&listener, &mut handlers, &faults).await else {
            continue;
        };
        let live = Live::new(&conns);
        handlers.spawn(async move {
            let _live = live;
            if let (Ok(input), Ok(output)) =
                (socket.open_read_channel(), socket.open_write_channel(true))
            {
                let _ = answer(input, output).await;
            }
            socket.close();
        });
    }
}

async fn accept_tls(
    listener: ServerSocket,
    config: TlsServerConfig,
    conns: Arc<AtomicUsize>,
    faults: Arc<Faults>,
) {
    let mut handlers = JoinSet::new();
    loop {
        let Some(socket) = next_connection(&listener, &mut handlers, &faults).await else {
            continue;
        };
        let live = Live::new(&conns);
        let config = config.clone();
        handlers.spawn(async move {
            let _live = live;
            let Ok(mut tls) = socket.tls_server(&config).await else {
                return;
            };
            if let (Ok(input), Ok(output)) = (tls.open_read_channel(), tls.open_write_channel(true))
            {
                let _ = answer(input, output).await;
            }
            tls.close();
        });
    }
}

/// `Hello, X!` for every line `X`, until the client closes its side; then the server's side
/// is flushed and closed.
async fn answer(mut input: ByteReadChannel, mut output: ByteWriteChannel) -> Result<()> {
    while let Some(line) = input.read_line(LINE_LIMIT, LineEnding::Default).await? {
        output
            .write_fully(format!("Hello, {line}!\n").as_bytes())
            .await?;
    }
    output.flush_and_close().await?;
    Ok(())
}

// ---- load ----

struct LoadConfig {
    tcp: SocketAddr,
    proxy: SocketAddr,
    tls: SocketAddr,
    udp: SocketAddr,
    unix: PathBuf,
    tls_client: Arc<rustls::ClientConfig>,
}

const SHAPES: [&str; 9] = [
    "tcp",
    "tls",
    "unix",
    "proxy_v1",
    "tcp_half_close",
    "tcp_reset",
    "tls_reset",
    "tls_cut_handshake",
    "udp",
];

#[derive(Default)]
struct Counts {
    ok: [AtomicU64; SHAPES.len()],
    failed: [AtomicU64; SHAPES.len()],
}

async fn load(cfg: Arc<LoadConfig>, workers: usize, secs: Duration) -> Result<()> {
    let connect = move |shape, worker, n| {
        let cfg = cfg.clone();
        async move { one(&cfg, shape, worker, n).await }
    };
    load_with(connect, workers, secs).await
}

/// The load of [`load`], each connection made by `connect(shape, worker, n)`.
async fn load_with<F, C>(connect: F, workers: usize, secs: Duration) -> Result<()>
where
    F: Fn(usize, usize, usize) -> C + Send + Sync + 'static,
    C: Future<Output = Result<()>> + Send,
{
    let connect = Arc::new(connect);
    let counts = Arc::new(Counts::default());
    let end = Instant::now() + secs;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (connect, counts) = (connect.clone(), counts.clone());
        tasks.spawn(async move {
            let mut n = worker;
            while Instant::now() < end {
                let shape = n % SHAPES.len();
                let ok = matches!(
                    timeout(STEP_LIMIT * 2, connect(shape, worker, n)).await,
                    Ok(Ok(()))
                );
                let slot = if ok { &counts.ok } else { &counts.failed };
                slot[shape].fetch_add(1, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(PAUSE).await;
            }
        });
    }
    // A worker's panic ends only that worker (tokio catches it): the others go on, and its
    // connections stop without a count. Counted here, and it fails the load.
    let mut panicked = 0;
    while let Some(worker) = tasks.join_next().await {
        if let Err(e) = worker {
            eprintln!("soak-mix load: a worker ended: {e}");
            panicked += 1;
        }
    }
    let (mut ok, mut failed) = (0, 0);
    for (i, name) in SHAPES.iter().enumerate() {
        let (o, f) = (
            counts.ok[i].load(Ordering::Relaxed),
            counts.failed[i].load(Ordering::Relaxed),
        );
        println!("shape {name} ok={o} failed={f}");
        ok += o;
        failed += f;
    }
    println!("total ok={ok} failed={failed}");
    ensure!(
        panicked == 0,
        "{panicked} of {workers} load workers panicked (their message is above)"
    );
    Ok(())
}

async fn one(cfg: &LoadConfig, shape: usize, worker: usize, n: usize) -> Result<()> {
    let tag = format!("w{worker}n{n}");
    match SHAPES[shape] {
        "tcp" => orderly(TcpStream::connect(cfg.tcp).await?, &tag, b"").await,
        "tls" => {
            let tls = tls_connect(cfg).await?;
            orderly(tls, &tag, b"").await
        }
        "unix" => orderly(UnixStream::connect(&cfg.unix).await?, &tag, b"").await,
        "proxy_v1" => {
            let header = format!(
                "PROXY TCP4 10.{}.{}.{} 192.0.2.1 {} 80\r\n",
                worker % 250,
                n % 250,
                (n / 250) % 250 + 1,
                1024 + n % 60_000
            );
            orderly(
                TcpStream::connect(cfg.proxy).await?,
                &tag,
                header.as_bytes(),
            )
            .await
        }
        "tcp_half_close" => {
            let mut s = TcpStream::connect(cfg.tcp).await?;
            let mut sent = String::new();
            for i in 0..LINES {
                sent.push_str(&format!("{tag}l{i}\n"));
            }
            s.write_all(sent.as_bytes()).await?;
            s.shutdown().await?;
            let mut got = String::new();
            timeout(STEP_LIMIT, s.read_to_string(&mut got)).await??;
            let want: String = (0..LINES).map(|i| format!("Hello, {tag}l{i}!\n")).collect();
            anyhow::ensure!(got == want, "half-close: got {got:?}");
            Ok(())
        }
        "tcp_reset" => {
            let mut s = TcpStream::connect(cfg.tcp).await?;
            s.write_all(format!("{tag}\npartial-line").as_bytes())
                .await?;
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
            drop(s);
            Ok(())
        }
        "tls_reset" => {
            let mut tls = tls_connect(cfg).await?;
            tls.write_all(format!("{tag}\n").as_bytes()).await?;
            tls.flush().await?;
            let (tcp, _) = tls.get_ref();
            socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO))?;
            drop(tls);
            Ok(())
        }
        "tls_cut_handshake" => {
            // The first bytes of a ClientHello record, then a reset.
            let mut s = TcpStream::connect(cfg.tls).await?;
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
                .await?;
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
            drop(s);
            Ok(())
        }
        "udp" => {
            let s = UdpSocket::bind("127.0.0.1:0").await?;
            s.connect(cfg.udp).await?;
            s.send(tag.as_bytes()).await?;
            let mut buf = [0u8; 256];
            let n = timeout(STEP_LIMIT, s.recv(&mut buf)).await??;
            anyhow::ensure!(&buf[..n] == tag.as_bytes(), "udp echo differs");
            Ok(())
        }
        other => bail!("unknown shape {other}"),
    }
}

async fn tls_connect(cfg: &LoadConfig) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(cfg.tls).await?;
    let connector = tokio_rustls::TlsConnector::from(cfg.tls_client.clone());
    let name = ServerName::try_from("localhost")?;
    Ok(timeout(STEP_LIMIT, connector.connect(name, tcp)).await??)
}

/// `LINES` lines in ping-pong after `preamble`, then the write side closed and the server's
/// end of stream read.
async fn orderly<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    tag: &str,
    preamble: &[u8],
) -> Result<()> {
    let mut stream = BufReader::new(stream);
    if !preamble.is_empty() {
        stream.get_mut().write_all(preamble).await?;
    }
    let mut line = String::new();
    for i in 0..LINES {
        stream
            .get_mut()
            .write_all(format!("{tag}l{i}\n").as_bytes())
            .await?;
        stream.get_mut().flush().await?;
        line.clear();
        timeout(STEP_LIMIT, stream.read_line(&mut line)).await??;
        anyhow::ensure!(line == format!("Hello, {tag}l{i}!\n"), "got {line:?}");
    }
    stream.get_mut().shutdown().await?;
    line.clear();
    let n = timeout(STEP_LIMIT, stream.read_line(&mut line)).await??;
    anyhow::ensure!(n == 0, "bytes after the last answer: {line:?}");
    Ok(())
}

fn client_config(ca: &PathBuf) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("reading the CA")? {
        roots.add(cert?)?;
    }
    let provider = net_tls::crypto_provider();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_load_worker_that_panics_fails_the_load() {
        // Once dropped silently: the worker's connections stopped, the others went on, and the
        // report (and the exit status) read as a clean run.
        let connect = |_shape, worker, _n| async move {
            assert_ne!(worker, 1, "a load worker's bug");
            Ok(())
        };
        let loaded = load_with(connect, 3, Duration::from_millis(300)).await;
        let err = loaded.expect_err("a worker panicked");
        assert!(
            err.to_string().contains("1 of 3 load workers panicked"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn a_handler_panic_and_an_accept_error_are_counted() {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector).tcp().bind("127.0.0.1:0").await.unwrap();
        let faults = Faults::default();
        let mut handlers = JoinSet::new();
        handlers.spawn(async { panic!("a handler's bug") });
        handlers.spawn(async {});
        // No client comes: waiting for one reaps the finished handlers, the panic counted
        // (once; the handler that returned is no fault).
        let waited = timeout(
            Duration::from_millis(500),
            next_connection(&listener, &mut handlers, &faults),
        )
        .await;
        assert!(waited.is_err(), "no connection was made");
        assert!(handlers.is_empty());
        assert_eq!(faults.panics.load(Ordering::Relaxed), 1);
        assert_eq!(faults.accept_errors.load(Ordering::Relaxed), 0);

        // A closed listener's accept fails: counted, and no connection.
        listener.close();
        assert!(
            next_connection(&listener, &mut handlers, &faults)
                .await
                .is_none()
        );
        assert_eq!(faults.accept_errors.load(Ordering::Relaxed), 1);
        assert_eq!(faults.panics.load(Ordering::Relaxed), 1);
    }
}
