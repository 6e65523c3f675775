//! The load generator: plain tokio (and tokio-rustls) clients, the same for both servers, on
//! loopback only. Every run is bounded in time (a warm-up, then a measured window) and in count
//! (a cap on operations per connection), and the whole run has a hard timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Barrier, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::server::GREETING;

/// The most operations one connection performs in one run (a count bound besides the time one).
const MAX_OPS: u64 = 50_000_000;
/// The bulk echo's write size.
pub(crate) const CHUNK: usize = 64 * 1024;
/// How many 64 KiB chunks one bulk connection keeps in flight.
const WINDOW: usize = 4;
/// The name the ping-pong client sends.
const NAME: &str = "Alice";
/// How many request lines a pipelining client sends in one write.
pub(crate) const BURST: usize = 16;
/// How many connections are being set up at once, at most.
const CONNECTING: usize = 64;
/// How long setting one connection up may take.
const SETUP_LIMIT: Duration = Duration::from_secs(10);
/// How long a UDP client waits for an echo before counting the datagram lost.
const UDP_WAIT: Duration = Duration::from_millis(200);

/// When the measured window starts and ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

impl Window {
    fn new(warmup: Duration, secs: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + secs,
        }
    }

    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }

    fn over(&self) -> bool {
        Instant::now() >= self.end
    }
}

/// Where a load function tells the driver its measured window once it has fixed it (the
/// connection-holding loads fix it only after every connection is set up), so that the driver
/// can read the server's CPU time at the window's start and end: the operations counted are
/// the window's alone, and so must be the CPU time they are divided into. Dropped unsent when
/// the load fails before it has a window.
pub(crate) type WindowReport = tokio::sync::oneshot::Sender<Window>;

/// What one connection (or client) measured inside the window.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Completed operations (round trips, pipelined requests, chunks, handshakes, datagrams).
    pub(crate) ops: u64,
    /// Payload bytes those operations carried back.
    pub(crate) bytes: u64,
    /// The latency of each recorded exchange (an operation, or a burst of pipelined ones), in
    /// nanoseconds.
    pub(crate) latencies: Vec<u64>,
    /// UDP datagrams that got no echo in time.
    pub(crate) lost: u64,
}

impl Tally {
    /// Records an exchange of `ops` operations that began at `started` and ends now, if it ends
    /// inside the window.
    fn record(&mut self, window: &Window, started: Instant, ops: u64, bytes: usize) {
        let now = Instant::now();
        if window.contains(now) {
            self.ops += ops;
            self.bytes += bytes as u64;
            self.latencies
                .push(u64::try_from((now - started).as_nanos()).unwrap_or(u64::MAX));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.latencies.extend(other.latencies);
        self.lost += other.lost;
    }
}

/// The result of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) ops_per_sec: f64,
    pub(crate) bytes_per_sec: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) lost: u64,
}

fn finish(mut total: Tally, secs: Duration) -> Outcome {
    total.latencies.sort_unstable();
    let at = |percent| {
        Duration::from_nanos(bench::percentile(&total.latencies, percent).unwrap_or_default())
    };
    Outcome {
        ops_per_sec: total.ops as f64 / secs.as_secs_f64(),
        bytes_per_sec: total.bytes as f64 / secs.as_secs_f64(),
        p50: at(50),
        p99: at(99),
        lost: total.lost,
    }
}

/// Adds up what `tasks` measured in a window of `secs`; an error when one failed, or when none
/// completed an operation in the window.
async fn collect(mut tasks: JoinSet<Result<Tally>>, secs: Duration) -> Result<Outcome> {
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("load task panicked")??);
    }
    // Most loads fail when an answer is wrong or never comes, but the bulk echo's reader stops
    // at the window's end and a UDP client counts an echo that never comes as lost: a server
    // that answers nothing would score zero and the run (the smoke run CI runs among them)
    // would pass.
    ensure!(
        total.ops > 0,
        "no operation completed in the {secs:?} measured window{}: the server answered nothing",
        if total.lost > 0 {
            format!(" ({} datagrams lost)", total.lost)
        } else {
            String::new()
        }
    );
    Ok(finish(total, secs))
}

/// Sets a connection up with at most [`CONNECTING`] others at once and within [`SETUP_LIMIT`].
///
/// A burst of hundreds of connects overflows the listener's queues; with SYN cookies a client
/// can then believe it is connected to a server that forgot it, and wait forever for the
/// greeting.
async fn bounded<T>(gate: &Semaphore, setup: impl Future<Output = Result<T>>) -> Result<T> {
    let _permit = gate.acquire().await?;
    tokio::time::timeout(SETUP_LIMIT, setup)
        .await
        .context("a connection took too long to set up")?
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads one `\n`-terminated line (the greeting) byte-run by byte-run, without a buffer that
/// could swallow more.
async fn read_greeting<S: AsyncRead + Unpin>(stream: &mut S) -> Result<()> {
    let mut got = Vec::with_capacity(GREETING.len());
    let mut buf = [0u8; 64];
    while !got.ends_with(b"\n") {
        let want = (GREETING.len() - got.len()).clamp(1, buf.len());
        let n = stream.read(&mut buf[..want]).await?;
        ensure!(n > 0, "connection closed before the greeting");
        got.extend_from_slice(&buf[..n]);
    }
    ensure!(got == GREETING.as_bytes(), "unexpected greeting {got:?}");
    Ok(())
}

// ----- ping-pong and pipelining ------------------------------------------------------------

/// Sets up `conns` connections with `open` (each greeted), then runs `client` on each over the
/// same measured window and adds up what they measured.
async fn greeted_clients<S, O, OFut, F, Fut>(
    open: O,
    conns: usize,
    warmup: Duration,
    secs: Duration,
    report: WindowReport,
    client: F,
) -> Result<Outcome>
where
    S: AsyncRead + Unpin + Send + 'static,
    O: Fn() -> OFut + Clone + Send + Sync + 'static,
    OFut: Future<Output = Result<S>> + Send,
    F: Fn(S, Window) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Tally>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(conns + 1));
    let (window_tx, window_rx) = tokio::sync::watch::channel(None::<Window>);
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut tasks = JoinSet::new();
    for _ in 0..conns {
        let barrier = Arc::clone(&barrier);
        let gate = Arc::clone(&gate);
        let mut window_rx = window_rx.clone();
        let client = client.clone();
        let open = open.clone();
        tasks.spawn(async move {
            let connected = bounded(&gate, async {
                let mut stream = open().await?;
                read_greeting(&mut stream).await?;
                Ok(stream)
            })
            .await;
            barrier.wait().await;
            let stream = connected?;
            let window = window_rx.wait_for(Option::is_some).await?.expect("set");
            client(stream, window).await
        });
    }
    barrier.wait().await;
    let window = Window::new(warmup, secs);
    let _ = window_tx.send(Some(window));
    let _ = report.send(window);
    collect(tasks, secs).await
}

/// `conns` connections, each: read the greeting, then send `Alice` and wait for `Hello, Alice!`
/// in a loop. One operation is one round trip. At the end the client leaves, and a byte from
/// the server before it closes is an error (see [`bench::expect_no_more`]).
pub(crate) async fn pingpong(
    addr: SocketAddr,
    conns: usize,
    warmup: Duration,
    secs: Duration,
    report: WindowReport,
) -> Result<Outcome> {
    greeted_clients(
        move || connect(addr),
        conns,
        warmup,
        secs,
        report,
        |stream, window| async move {
            let mut stream = BufReader::new(stream);
            let request = format!("{NAME}\n");
            let expected = format!("Hello, {NAME}!\n");
            let mut line = String::new();
            let mut tally = Tally::default();
            for _ in 0..MAX_OPS {
                if window.over() {
                    break;
                }
                let started = Instant::now();
                stream.write_all(request.as_bytes()).await?;
                line.clear();
                stream.read_line(&mut line).await?;
                ensure!(line == expected, "unexpected answer {line:?}");
                tally.record(&window, started, 1, line.len());
            }
            // An extra answer would have been taken for the next request's: check there was none.
            bench::expect_no_more(&mut stream, SETUP_LIMIT).await?;
            Ok(tally)
        },
    )
    .await
}

/// `conns` connections, each: read the greeting, then in a loop send `burst` lines `Alice` in
/// one write and wait for all `burst` replies `Hello, Alice!` before the next burst. One
/// operation is one request; a latency is one burst's (its write to its last reply). At the end
/// the client leaves, and a byte from the server before it closes is an error. Over TLS
/// (`transport`) each burst is one record, flushed.
pub(crate) async fn pipeline(
    addr: SocketAddr,
    conns: usize,
    burst: usize,
    transport: Transport,
    warmup: Duration,
    secs: Duration,
    report: WindowReport,
) -> Result<Outcome> {
    match transport {
        Transport::Tcp => {
            let open = move || connect(addr);
            pipeline_on(open, conns, burst, warmup, secs, report).await
        }
        Transport::Tls(connector) => {
            let open = move || {
                let connector = connector.clone();
                async move { tls_connect(&connector, addr).await }
            };
            pipeline_on(open, conns, burst, warmup, secs, report).await
        }
    }
}

/// [`pipeline`] over the streams `open` makes.
async fn pipeline_on<S, O, OFut>(
    open: O,
    conns: usize,
    burst: usize,
    warmup: Duration,
    secs: Duration,
    report: WindowReport,
) -> Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    O: Fn() -> OFut + Clone + Send + Sync + 'static,
    OFut: Future<Output = Result<S>> + Send,
{
    let request = Arc::new(format!("{NAME}\n").repeat(burst).into_bytes());
    let expected = Arc::new(format!("Hello, {NAME}!\n").repeat(burst).into_bytes());
    greeted_clients(
        open,
        conns,
        warmup,
        secs,
        report,
        move |mut stream, window| {
            let (request, expected) = (Arc::clone(&request), Arc::clone(&expected));
            async move {
                let mut got = vec![0u8; expected.len()];
                let mut tally = Tally::default();
                for _ in 0..MAX_OPS / burst as u64 {
                    if window.over() {
                        break;
                    }
                    let started = Instant::now();
                    stream.write_all(&request).await?;
                    // A TLS client's records leave with the flush (a plain socket's at once).
                    stream.flush().await?;
                    // The replies have a known total length: read exactly that much.
                    stream
                        .read_exact(&mut got)
                        .await
                        .context("reading a burst's replies")?;
                    ensure!(
                        got == *expected,
                        "unexpected answer {:?}",
                        String::from_utf8_lossy(&got)
                    );
                    tally.record(&window, started, burst as u64, got.len());
                }
                // Extra answers would have been taken for the next burst's: check there were none.
                bench::expect_no_more(&mut stream, SETUP_LIMIT).await?;
                Ok(tally)
            }
        },
    )
    .await
}

// ----- short-lived connections ---------------------------------------------------------------

/// How many client addresses the churn clients spread their connections over: 127.0.0.2 up to
/// 127.0.0.17 (not 127.0.0.1, which every other test and benchmark on the machine uses).
///
/// The client closes first, so every finished connection leaves a `TIME_WAIT` entry (60 s on
/// Linux) on the client's side, holding its address and port. Left to `connect`, the kernel
/// picks a source port by searching 127.0.0.1's ephemeral range (about 28,000 ports) past those
/// entries: tried here, at tens of thousands of connections a second that search, not the
/// server, set the pace (about 10,000 connections/s with p99 over 25 ms, on both sides), and a
/// round can use more ports than the range has. So each connection binds its source address and
/// port itself, in turn over [`CHURN_SOURCES`] addresses × [`CHURN_PORTS`] ports (640,000, more
/// than [`CHURN_MAX`], so no address pair repeats within a run), with `SO_REUSEADDR` so that a
/// port whose earlier connection (to another server port) is in `TIME_WAIT` can be bound again.
/// A pair that cannot be used (a port some other socket holds, or one still in `TIME_WAIT` with
/// this server port from an earlier run) is skipped.
const CHURN_SOURCES: u64 = 16;
/// The source ports the churn clients bind, from [`CHURN_FIRST_PORT`] on.
const CHURN_PORTS: u64 = 40_000;
/// The first of them.
const CHURN_FIRST_PORT: u64 = 20_000;
/// The most connections one churn run tries (a count bound besides the time one).
const CHURN_MAX: u64 = 200_000;

/// The source address of churn connection `n`: the address changes every connection, the port
/// every [`CHURN_SOURCES`] connections.
fn churn_source(n: u64) -> SocketAddr {
    let host = 2 + (n % CHURN_SOURCES) as u8;
    let port = (CHURN_FIRST_PORT + (n / CHURN_SOURCES) % CHURN_PORTS) as u16;
    SocketAddr::from(([127, 0, 0, host], port))
}

/// `clients` loops, each: connect (from its own source address and port, see
/// [`CHURN_SOURCES`]), read the greeting, send `Alice`, read `Hello, Alice!`, check that nothing follows it, close. One
/// operation is one connection; its latency runs from `connect` to the reply. No run opens more
/// than [`CHURN_MAX`] connections.
pub(crate) async fn churn(
    addr: SocketAddr,
    clients: usize,
    warmup: Duration,
    secs: Duration,
    report: WindowReport,
) -> Result<Outcome> {
    let window = Window::new(warmup, secs);
    let _ = report.send(window);
    let opened = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let opened = Arc::clone(&opened);
        tasks.spawn(async move {
            let request = format!("{NAME}\n");
            let expected = format!("Hello, {NAME}!\n");
            let mut line = String::new();
            let mut tally = Tally::default();
            while !window.over() {
                let n = opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= CHURN_MAX {
                    break;
                }
                let started = Instant::now();
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.set_reuseaddr(true)?;
                let stream = match socket.bind(churn_source(n)) {
                    Ok(()) => tokio::time::timeout(SETUP_LIMIT, socket.connect(addr))
                        .await
                        .context("a connect took too long")?,
                    Err(e) => Err(e),
                };
                let stream = match stream {
                    Ok(stream) => stream,
                    Err(e) if pair_taken(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                tokio::time::timeout(SETUP_LIMIT, async {
                    stream.set_nodelay(true)?;
                    let mut stream = BufReader::new(stream);
                    read_greeting(&mut stream).await?;
                    stream.write_all(request.as_bytes()).await?;
                    line.clear();
                    stream.read_line(&mut line).await?;
                    ensure!(line == expected, "unexpected answer {line:?}");
                    // An extra answer would go unseen: the server must have sent only these.
                    ensure!(stream.buffer().is_empty(), "bytes after the answer");
                    Ok::<_, anyhow::Error>(())
                })
                .await
                .context("a short-lived connection took too long")??;
                tally.record(&window, started, 1, line.len());
            }
            Ok(tally)
        });
    }
    collect(tasks, secs).await
}

/// Whether a churn connection's bind or connect failed because its address pair is in use.
fn pair_taken(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable
    )
}

// ----- bulk echo -----------------------------------------------------------------------------

/// A TLS client stream for the load generator.
pub(crate) type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// How the bulk client reaches the server.
#[derive(Clone)]
pub(crate) enum Transport {
    Tcp,
    Tls(tokio_rustls::TlsConnector),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "Tcp",
            Transport::Tls(_) => "Tls",
        })
    }
}

async fn tls_connect(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Result<Tls> {
    let stream = connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    Ok(connector.connect(name, stream).await?)
}

/// `conns` connections, each streaming 64 KiB writes to an echo server with up to four chunks
/// in flight while a second task reads the echo back and compares every byte with what was
/// sent (each chunk numbered, see [`bench::EchoSource`]: a byte repeated, skipped or another
/// connection's fails the run). One operation is one 64 KiB chunk back; its latency runs from
/// the start of its write to the arrival of its last byte.
pub(crate) async fn echo(
    addr: SocketAddr,
    conns: usize,
    transport: Transport,
    warmup: Duration,
    secs: Duration,
    report: WindowReport,
) -> Result<Outcome> {
    let barrier = Arc::new(Barrier::new(conns + 1));
    let (window_tx, window_rx) = tokio::sync::watch::channel(None::<Window>);
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut tasks = JoinSet::new();
    for i in 0..conns {
        let barrier = Arc::clone(&barrier);
        let gate = Arc::clone(&gate);
        let mut window_rx = window_rx.clone();
        let transport = transport.clone();
        tasks.spawn(async move {
            let connected = bounded(&gate, async {
                Ok(match &transport {
                    Transport::Tcp => {
                        let (r, w) = connect(addr).await?.into_split();
                        (
                            Box::new(r) as Box<dyn AsyncRead + Send + Unpin>,
                            Box::new(w) as Box<dyn AsyncWrite + Send + Unpin>,
                        )
                    }
                    Transport::Tls(connector) => {
                        let (r, w) = tokio::io::split(tls_connect(connector, addr).await?);
                        (
                            Box::new(r) as Box<dyn AsyncRead + Send + Unpin>,
                            Box::new(w) as Box<dyn AsyncWrite + Send + Unpin>,
                        )
                    }
                })
            })
            .await;
            barrier.wait().await;
            let (mut reader, mut writer) = connected?;
            let window = window_rx.wait_for(Option::is_some).await?.expect("set");
            let mut source = bench::EchoSource::new(i, CHUNK);
            // Every byte must come back as sent: a server that answers wrong must not score.
            let mut check = source.check();
            let (sent_tx, mut sent_rx) = mpsc::channel::<Instant>(WINDOW);
            let write = tokio::spawn(async move {
                for _ in 0..MAX_OPS {
                    if window.over() {
                        break;
                    }
                    // Wait for room in the window of chunks in flight first and only then
                    // take the chunk's start: the latency runs from its write, not from when
                    // it began to queue behind the chunks ahead of it.
                    let Ok(permit) = sent_tx.reserve().await else {
                        break;
                    };
                    permit.send(Instant::now());
                    writer.write_all(source.next_chunk()).await?;
                }
                writer.flush().await?;
                Ok::<_, std::io::Error>(writer)
            });
            let mut buf = vec![0u8; CHUNK];
            let mut received = 0usize;
            let mut tally = Tally::default();
            let end = tokio::time::Instant::from_std(window.end);
            while !window.over() {
                // The writer may stop (at the end of the window) with nothing left in flight.
                let Ok(n) = tokio::time::timeout_at(end, reader.read(&mut buf)).await else {
                    break;
                };
                let n = n?;
                if n == 0 {
                    bail!("echo server closed the connection");
                }
                ensure!(
                    check.check(&buf[..n]),
                    "the echo server sent back bytes it was not sent"
                );
                received += n;
                while received >= CHUNK {
                    received -= CHUNK;
                    let started = sent_rx.recv().await.context("writer gone")?;
                    tally.record(&window, started, 1, CHUNK);
                }
            }
            // The server may be blocked writing to us: do not wait for the writer.
            write.abort();
            Ok(tally)
        });
    }
    barrier.wait().await;
    let window = Window::new(warmup, secs);
    let _ = window_tx.send(Some(window));
    let _ = report.send(window);
    collect(tasks, secs).await
}

// ----- TLS handshakes ------------------------------------------------------------------------

/// `clients` loops, each: connect, full TLS 1.3 handshake (no resumption), read the greeting,
/// leave with a reset (`SO_LINGER` 0, so no `TIME_WAIT` piles up). One operation is one new
/// session; its latency runs from `connect` to the greeting.
pub(crate) async fn handshakes(
    addr: SocketAddr,
    clients: usize,
    connector: tokio_rustls::TlsConnector,
    warmup: Duration,
    secs: Duration,
    report: WindowReport,
) -> Result<Outcome> {
    let window = Window::new(warmup, secs);
    let _ = report.send(window);
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let connector = connector.clone();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            for _ in 0..MAX_OPS {
                if window.over() {
                    break;
                }
                let started = Instant::now();
                let tls = tokio::time::timeout(SETUP_LIMIT, async {
                    let mut tls = tls_connect(&connector, addr).await?;
                    read_greeting(&mut tls).await?;
                    Ok::<_, anyhow::Error>(tls)
                })
                .await
                .context("a TLS connection took too long to set up")??;
                tally.record(&window, started, 1, GREETING.len());
                socket2::SockRef::from(tls.get_ref().0).set_linger(Some(Duration::ZERO))?;
            }
            Ok(tally)
        });
    }
    collect(tasks, secs).await
}

// ----- UDP -----------------------------------------------------------------------------------

/// `clients` connected UDP sockets, each sending a `size`-byte datagram (a sequence number
/// first) and waiting for its echo, one at a time; an echo that differs from the datagram in
/// any byte is an error, and so is any other datagram but the late echo of one given up on
/// (see [`bench::UdpEchoCheck`]). One operation is one echoed datagram; a datagram without an
/// echo within 200 ms counts as lost.
pub(crate) async fn udp(
    addr: SocketAddr,
    clients: usize,
    size: usize,
    warmup: Duration,
    secs: Duration,
    report: WindowReport,
) -> Result<Outcome> {
    let window = Window::new(warmup, secs);
    let _ = report.send(window);
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(addr).await?;
            let mut out = vec![0x5au8; size.max(8)];
            let mut back = vec![0u8; 65_536];
            let mut tally = Tally::default();
            let mut check = bench::UdpEchoCheck::new();
            for seq in 0..MAX_OPS {
                if window.over() {
                    break;
                }
                out[..8].copy_from_slice(&seq.to_be_bytes());
                let started = Instant::now();
                socket.send(&out).await?;
                loop {
                    match tokio::time::timeout(UDP_WAIT, socket.recv(&mut back)).await {
                        Err(_) => {
                            tally.lost += 1;
                            check.lost(seq);
                            break;
                        }
                        Ok(n) => {
                            let n = n?;
                            // This datagram's echo, every byte as sent, or the late echo of one
                            // given up on (skipped); anything else fails the run.
                            match check.check(&out, &back[..n]) {
                                Ok(true) => {
                                    tally.record(&window, started, 1, n);
                                    break;
                                }
                                Ok(false) => {}
                                Err(why) => bail!("UDP, waiting for datagram {seq}'s echo: {why}"),
                            }
                        }
                    }
                }
            }
            Ok(tally)
        });
    }
    collect(tasks, secs).await
}

// ----- idle connections ----------------------------------------------------------------------

/// How many idle connections come from one client address: half of `sockets-server`'s
/// default per-address cap, which our ping-pong server keeps.
const IDLE_PER_SOURCE: usize = crate::server::SHIPPED_MAX_PER_IP / 2;

/// The client address idle connection `i` comes from: 127.0.0.1, 127.0.0.2, … (all loopback),
/// [`IDLE_PER_SOURCE`] connections each.
fn idle_source(i: usize) -> Result<std::net::IpAddr> {
    let host = u8::try_from(1 + i / IDLE_PER_SOURCE)
        .ok()
        .filter(|h| *h < 255)
        .context("too many idle connections for 127.0.0.1-254")?;
    Ok(std::net::Ipv4Addr::new(127, 0, 0, host).into())
}

/// Opens `conns` connections to a ping-pong server (at most [`CONNECTING`] connecting at
/// once, from as many loopback addresses as [`IDLE_PER_SOURCE`] needs), reads each greeting,
/// and returns the open streams.
pub(crate) async fn open_idle(addr: SocketAddr, conns: usize) -> Result<Vec<TcpStream>> {
    open_greeted(addr, conns, |stream| async move {
        let mut stream = stream;
        read_greeting(&mut stream).await?;
        Ok(stream)
    })
    .await
}

/// As [`open_idle`], each connection TLS (1.3, as the connector offers) and greeted through
/// it: the streams returned hold finished sessions that have read the server's tickets too.
pub(crate) async fn open_tls_idle(
    addr: SocketAddr,
    conns: usize,
    connector: tokio_rustls::TlsConnector,
) -> Result<Vec<Tls>> {
    open_greeted(addr, conns, move |stream| {
        let connector = connector.clone();
        async move {
            let name = rustls_pki_types::ServerName::try_from("localhost")?;
            let mut stream = connector.connect(name, stream).await?;
            read_greeting(&mut stream).await?;
            Ok(stream)
        }
    })
    .await
}

/// Connects `conns` times (at most [`CONNECTING`] at once, from as many loopback addresses as
/// [`IDLE_PER_SOURCE`] needs) and runs `greet` on each connection, each bounded by
/// [`SETUP_LIMIT`].
async fn open_greeted<T, F, Fut>(addr: SocketAddr, conns: usize, greet: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(TcpStream) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let mut streams = Vec::with_capacity(conns);
    let mut pending = JoinSet::new();
    let mut started = 0;
    while streams.len() < conns {
        while started < conns && pending.len() < CONNECTING {
            let source = idle_source(started)?;
            started += 1;
            let greet = greet.clone();
            pending.spawn(async move {
                tokio::time::timeout(SETUP_LIMIT, async move {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    // Earlier rounds' connections from this address may be in TIME_WAIT.
                    socket.set_reuseaddr(true)?;
                    socket.bind(SocketAddr::new(source, 0))?;
                    let stream = socket.connect(addr).await?;
                    stream.set_nodelay(true)?;
                    greet(stream).await
                })
                .await
                .context("a connection took too long to set up")?
            });
        }
        let stream = pending.join_next().await.context("no task")???;
        streams.push(stream);
    }
    Ok(streams)
}
