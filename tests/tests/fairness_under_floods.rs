//! Fairness: a greedy peer (one that floods pipelined lines, or bytes, or connects) does not
//! starve the other connections that the same runtime thread serves.
//!
//! The flood tests serve connections on a runtime of one thread (a current-thread runtime, or
//! a multi-thread runtime with one worker), in a thread of its own, with the selector of that
//! runtime (so that thread also drives the sockets' readiness). A client on another runtime
//! floods one connection and keeps reading the echo; the server's socket buffer is large and
//! the server does some work per byte, so that its socket always holds more and the greedy
//! task's reads never have to wait (where the kernel grants the buffer: checked here by making
//! the server tasks `unconstrained`, which made the line, `read_available`, `read_frame` and
//! TLS tests fail). Then a second connection sends `ping` and must get its echo within a
//! generous limit, while the flood is still going: a task that never yielded would keep the
//! second connection's task from ever running, and the ping would time out. (The `copy_to`
//! tests pass even then: that server task waits on its writes now and then.)
//!
//! The accept tests and the in-memory pipe's count the turns of a ticker task while a task
//! accepts queued connections, or echoes through a `ByteChannel`, without ever waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_core::Stream as _;
use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{SelectorManager, ServerSocket, Socket, a_socket};
use net_tests::loopback::{Channels, tcp_listener_with};
use net_tests::pki::Pki;
use net_tests::{Ticker, within};
use net_tls::{TlsConfig, TlsExt, TlsServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::runtime::Runtime;

/// How long the ping may take while the flood goes on: generous (a fair server answers within
/// milliseconds), as this is no measure of speed, only of whether the ping is ever answered.
const PING_LIMIT: Duration = Duration::from_secs(10);

/// The flood stops by itself after this long, whatever happens (every loop here is bounded).
const FLOOD_LIMIT: Duration = Duration::from_secs(30);

/// How many echoed bytes the flood's client must have seen before the ping: the greedy task is
/// under way by then.
const FLOOD_UNDER_WAY: u64 = 256 << 10;

/// How far the flood's writer may run ahead of its echo. Unbounded, both directions of the one
/// loopback connection filled to megabytes (the server echoes with `copy_to`, which reads no
/// more while a write waits): the kernel then dropped segments from a receive queue that
/// overran its buffer (`TcpExtRcvPruned`), and the sender's retransmission timer, doubling at
/// each try, outlasted the reader's 10 s bound, about once in 2,500–5,000 runs, every task
/// waiting on the kernel as it should.
const IN_FLIGHT: u64 = 1 << 20;

/// The flood's socket buffers (the server's receive buffer, the client's send buffer; Linux
/// caps them at `net.core.rmem_max` and `wmem_max`): large, so that the server's socket holds
/// more input than the greedy task reads in a turn, whenever the client last ran. Its reads
/// then never have to wait, and only tokio's cooperative budget makes it yield.
const BUFFERS: usize = 4 << 20;

/// The runtime that serves the connections: one thread either way.
#[derive(Clone, Copy, Debug)]
enum Flavor {
    CurrentThread,
    OneWorker,
}

impl Flavor {
    fn runtime(self) -> Runtime {
        match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::OneWorker => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(1);
                builder
            }
        }
        .enable_all()
        .build()
        .expect("a runtime")
    }
}

/// How a server task echoes what its connection reads.
#[derive(Clone, Copy, Debug)]
enum Echo {
    /// `read_line`, and the line written back with its LF.
    Lines,
    /// `read_line_to` into a reused `String`.
    LinesTo,
    /// `read_until(b"\n")`.
    Until,
    /// `read_available` into a 16 KiB slice.
    Available,
    /// `copy_to` the connection's own write channel.
    CopyTo,
    /// `read_frame` with tokio-util's `LinesCodec`.
    Frames,
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work on each byte a server task reads, as a server does for each request: it makes the
/// server slower than the flood's client, so that the socket always holds more and no read of
/// the greedy task has to wait (without it, the server may empty the socket and wait, which
/// yields whatever the reads do).
fn work(bytes: &[u8]) {
    let mut hash = 0u64;
    for _ in 0..2 {
        for &b in bytes {
            hash = hash.wrapping_mul(31).wrapping_add(u64::from(b));
        }
    }
    std::hint::black_box(hash);
}

/// Echoes `input` to `output` until the end of the stream or an error.
async fn echo(echo: Echo, mut input: ByteReadChannel, mut output: ByteWriteChannel) {
    let _ = async {
        match echo {
            Echo::Lines => {
                while let Some(mut line) = input.read_line(1024, LineEnding::Default).await? {
                    work(line.as_bytes());
                    line.push('\n');
                    output.write_string_utf8(&line).await?;
                }
            }
            Echo::LinesTo => {
                let mut line = String::new();
                while input
                    .read_line_to(&mut line, 1024, LineEnding::Default)
                    .await?
                    .is_some()
                {
                    work(line.as_bytes());
                    line.push('\n');
                    output.write_string_utf8(&line).await?;
                    line.clear();
                }
            }
            Echo::Until => {
                while let Some(item) = input.read_until(b"\n", 1024).await? {
                    work(&item);
                    output.write_fully(&item).await?;
                    output.write_u8(b'\n').await?;
                }
            }
            Echo::Available => {
                let mut buf = vec![0; 16 * 1024];
                loop {
                    let n = input.read_available(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    work(&buf[..n]);
                    output.write_fully(&buf[..n]).await?;
                }
            }
            Echo::CopyTo => {
                input.copy_to(&mut output, u64::MAX).await?;
            }
            Echo::Frames => {
                let mut codec = tokio_util::codec::LinesCodec::new_with_max_length(1024);
                while let Some(mut line) = input
                    .read_frame(&mut codec)
                    .await
                    .map_err(|e| net_io::Error::Io(std::io::Error::other(e)))?
                {
                    work(line.as_bytes());
                    line.push('\n');
                    output.write_string_utf8(&line).await?;
                }
            }
        }
        output.flush().await
    }
    .await;
}

/// A server on a runtime of one thread of its own: accepts connections and serves each in a
/// task of its own; `extra` runs as one more task on that runtime (a greedy task that is no
/// connection). Stopped (and its thread joined) on drop.
struct Server {
    port: u16,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(
        flavor: Flavor,
        how: Echo,
        tls: Option<TlsServerConfig>,
        extra: Option<Box<dyn FnOnce() -> BoxFuture + Send>>,
    ) -> Server {
        let stop = Arc::new(tokio::sync::Notify::new());
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let runtime = flavor.runtime();
                runtime.block_on(async move {
                    let selector = SelectorManager::new();
                    let listener =
                        tcp_listener_with(&selector, |b| b.receive_buffer_size(BUFFERS)).await;
                    port_tx.send(listener.port().expect("a TCP port")).unwrap();
                    if let Some(extra) = extra {
                        tokio::spawn(extra());
                    }
                    let accept_loop = async {
                        while let Ok(socket) = listener.accept().await {
                            let tls = tls.clone();
                            tokio::spawn(serve(socket, tls, how));
                        }
                    };
                    tokio::select! {
                        () = accept_loop => {}
                        () = stop.notified() => {}
                    }
                    selector.close();
                });
                runtime.shutdown_timeout(Duration::from_secs(5));
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the server's port");
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves one connection, plain or TLS.
async fn serve(socket: Socket, tls: Option<TlsServerConfig>, how: Echo) {
    match tls {
        None => {
            let mut socket = socket;
            if let Ok((input, output)) = socket.open_channels(true) {
                echo(how, input, output).await;
            }
        }
        Some(config) => {
            let channels = match socket.tls_server(&config).await {
                Ok(mut tls) => tls.open_channels(true),
                Err(e) => Err(e.into()),
            };
            if let Ok((input, output)) = channels {
                echo(how, input, output).await;
            }
        }
    }
}

/// The client side of the server's connections, on the test's own runtime.
struct Client {
    port: u16,
    selector: SelectorManager,
    tls: Option<TlsConfig>,
}

type Stream = Box<dyn AsyncReadWrite>;
trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

impl Client {
    /// A connection whose socket may hold much on its way (see [`BUFFERS`]).
    async fn connect(&self) -> Stream {
        let socket = a_socket(&self.selector)
            .tcp()
            .send_buffer_size(BUFFERS)
            .connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        match &self.tls {
            None => Box::new(socket.into_stream().expect("a stream")),
            Some(config) => Box::new(
                socket
                    .tls(config.clone())
                    .await
                    .expect("the TLS handshake")
                    .into_stream()
                    .expect("a TLS stream"),
            ),
        }
    }
}

/// A flood of pipelined lines on one connection, its echo read and counted as it comes, until
/// [`stop`](Flood::stop) or [`FLOOD_LIMIT`].
struct Flood {
    stop: Arc<AtomicBool>,
    echoed: Arc<AtomicU64>,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl Flood {
    async fn start(client: &Client) -> Flood {
        let stream = client.connect().await;
        let (mut read, mut write) = tokio::io::split(stream);
        let stop = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn({
            let stop = Arc::clone(&stop);
            let echoed = Arc::clone(&echoed);
            async move {
                // Short lines: many items per transport read.
                let block = b"0123456789abcde\n".repeat(4096);
                let started = Instant::now();
                let going = || !stop.load(Ordering::Relaxed) && started.elapsed() < FLOOD_LIMIT;
                let mut written = 0u64;
                while going() {
                    // At most `IN_FLIGHT` ahead of the echo: the server always has lines to
                    // take, and neither direction's kernel buffers overrun (see `IN_FLIGHT`).
                    if written.saturating_sub(echoed.load(Ordering::Relaxed)) > IN_FLIGHT {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    if write.write_all(&block).await.is_err() {
                        break;
                    }
                    written += block.len() as u64;
                }
                let _ = write.shutdown().await;
            }
        });
        let reader = tokio::spawn({
            let echoed = Arc::clone(&echoed);
            async move {
                let mut buf = vec![0; 64 * 1024];
                let started = Instant::now();
                // Until the end of the echo (after the writer's shutdown), within a bound.
                while started.elapsed() < FLOOD_LIMIT + Duration::from_secs(10) {
                    match tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {
                            echoed.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
            }
        });
        Flood {
            stop,
            echoed,
            writer,
            reader,
        }
    }

    /// Waits until `bytes` were echoed (the greedy task is busy with the flood).
    async fn until_echoed(&self, bytes: u64) {
        let started = Instant::now();
        while self.echoed.load(Ordering::Relaxed) < bytes {
            assert!(
                started.elapsed() < FLOOD_LIMIT,
                "the flood was not echoed ({} bytes so far)",
                self.echoed.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn going(&self) -> bool {
        !self.writer.is_finished()
    }

    /// Stops the flood: the connection is dropped, with whatever it still holds (the server's
    /// task then fails, instead of working through megabytes still on their way).
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.abort();
        self.reader.abort();
        let _ = self.writer.await;
        let _ = self.reader.await;
    }
}

/// A second connection's `ping`: its echo, and how long it took.
async fn ping(client: &Client) -> Result<Duration, String> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = BufReader::new(client.connect().await);
        ping_on(&mut stream).await
    };
    match tokio::time::timeout(PING_LIMIT, exchange).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no echo within {PING_LIMIT:?}")),
    }
}

/// Sends `ping` on `stream` and reads its echo.
async fn ping_on(stream: &mut BufReader<Stream>) -> Result<(), String> {
    stream
        .write_all(b"ping\n")
        .await
        .map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_line(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    if answer == "ping\n" {
        Ok(())
    } else {
        Err(format!("the echo was {answer:?}"))
    }
}

/// The test: a flood on one connection, then a ping on another, answered while the flood goes
/// on.
fn flood_and_ping(flavor: Flavor, how: Echo, tls: bool) {
    let pki = tls.then(Pki::generate);
    let server_config = pki
        .as_ref()
        .map(|pki| pki.server_config().build().expect("server configuration"));
    let server = Server::start(flavor, how, server_config, None);
    let runtime = Flavor::OneWorker.runtime();
    runtime.block_on(async {
        let client = Client {
            port: server.port,
            selector: SelectorManager::new(),
            tls: pki
                .as_ref()
                .map(|pki| pki.client_config().build().expect("client configuration")),
        };
        let flood = Flood::start(&client).await;
        flood.until_echoed(FLOOD_UNDER_WAY).await;
        let answered = ping(&client).await;
        let going = flood.going();
        let echoed = flood.echoed.load(Ordering::Relaxed);
        flood.stop().await;
        let took = answered.unwrap_or_else(|e| {
            panic!("{flavor:?}, {how:?}, tls {tls}: the ping of a second connection: {e} (the flood's echo: {echoed} bytes)")
        });
        assert!(
            going,
            "{flavor:?}, {how:?}: the flood ended before the ping was answered ({took:?}): nothing was shown"
        );
    });
    drop(server);
}

macro_rules! flood_tests {
    ($($name:ident: $flavor:ident, $how:ident, $tls:expr;)*) => {$(
        #[test]
        fn $name() {
            flood_and_ping(Flavor::$flavor, Echo::$how, $tls);
        }
    )*};
}

flood_tests! {
    a_line_flood_does_not_starve_another_connection_current_thread: CurrentThread, Lines, false;
    a_line_flood_does_not_starve_another_connection_one_worker: OneWorker, Lines, false;
    a_read_line_to_flood_does_not_starve_another_connection: CurrentThread, LinesTo, false;
    a_read_until_flood_does_not_starve_another_connection: CurrentThread, Until, false;
    a_read_available_flood_does_not_starve_another_connection: CurrentThread, Available, false;
    a_copy_to_flood_does_not_starve_another_connection: CurrentThread, CopyTo, false;
    a_copy_to_flood_does_not_starve_another_connection_one_worker: OneWorker, CopyTo, false;
    a_read_frame_flood_does_not_starve_another_connection: CurrentThread, Frames, false;
    a_tls_line_flood_does_not_starve_another_connection_current_thread: CurrentThread, Lines, true;
    a_tls_line_flood_does_not_starve_another_connection_one_worker: OneWorker, Lines, true;
    a_tls_copy_to_flood_does_not_starve_another_connection: CurrentThread, CopyTo, true;
}

// ----- a connect flood --------------------------------------------------------------------

/// More connections than a task's cooperative budget (128 units) waiting to be accepted.
const QUEUED_CONNECTS: usize = 200;

/// A listener with [`QUEUED_CONNECTS`] connections waiting in its queue, and the clients'
/// ends of them, after one first accept (the reactor reports the listener readable then; the
/// first accept may wait for it).
async fn listener_with_a_queue(
    selector: &SelectorManager,
) -> (ServerSocket, Vec<std::net::TcpStream>) {
    let listener = tcp_listener_with(selector, |b| b.backlog(1024)).await;
    let address =
        std::net::SocketAddr::from(([127, 0, 0, 1], listener.port().expect("a TCP port")));
    // The kernel completes each handshake itself and queues the connection.
    let clients: Vec<_> = (0..=QUEUED_CONNECTS)
        .map(|_| std::net::TcpStream::connect(address).expect("connect"))
        .collect();
    drop(within(listener.accept()).await.expect("the first accept"));
    (listener, clients)
}

/// An accept loop that never has to wait (a flood of connects keeps the queue full) still lets
/// the other tasks of its thread run, such as those of the connections it accepted: each accept
/// takes a unit of tokio's cooperative budget.
#[tokio::test(flavor = "current_thread")]
async fn an_accept_loop_that_never_waits_still_yields_to_other_tasks() {
    let selector = SelectorManager::new();
    let (listener, _clients) = listener_with_a_queue(&selector).await;
    let ticker = Ticker::spawn();
    for _ in 0..QUEUED_CONNECTS {
        drop(listener.accept().await.expect("accept"));
    }
    assert!(
        ticker.ticks() > 0,
        "the accepting task never yielded to the ticker"
    );
}

/// As [`an_accept_loop_that_never_waits_still_yields_to_other_tasks`], through `incoming()`.
#[tokio::test(flavor = "current_thread")]
async fn incoming_that_never_waits_still_yields_to_other_tasks() {
    let selector = SelectorManager::new();
    let (listener, _clients) = listener_with_a_queue(&selector).await;
    let mut incoming = listener.incoming();
    let ticker = Ticker::spawn();
    for _ in 0..QUEUED_CONNECTS {
        let next = std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_next(cx)).await;
        drop(next.expect("a connection").expect("accept"));
    }
    assert!(
        ticker.ticks() > 0,
        "the accepting task never yielded to the ticker"
    );
}

// ----- the in-memory pipe ------------------------------------------------------------------

/// A task that echoes lines through a [`ByteChannel`] of its own (it writes a line, then reads
/// it back: neither ever waits) until `stop` or [`FLOOD_LIMIT`], counting its rounds.
fn pipe_loop(stop: Arc<AtomicBool>, rounds: Arc<AtomicU64>) -> BoxFuture {
    Box::pin(async move {
        let (mut output, mut input) = ByteChannel::new(true);
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) && started.elapsed() < FLOOD_LIMIT {
            output.write_string_utf8("0123456789abcde\n").await.unwrap();
            let line = input.read_line(1024, LineEnding::Default).await.unwrap();
            assert_eq!(line.as_deref(), Some("0123456789abcde"));
            rounds.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Two tasks on a [`ByteChannel`]: one writes lines as fast as the pipe takes them, the other
/// reads them, until `stop` or [`FLOOD_LIMIT`].
fn pipe_pair(stop: Arc<AtomicBool>, rounds: Arc<AtomicU64>) -> BoxFuture {
    Box::pin(async move {
        let (mut output, mut input) = ByteChannel::new(false);
        let writer = tokio::spawn(async move {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < FLOOD_LIMIT {
                if output.write_string_utf8("0123456789abcde\n").await.is_err() {
                    break;
                }
            }
            let _ = output.flush_and_close().await;
        });
        while let Ok(Some(_)) = input.read_line(1024, LineEnding::Default).await {
            rounds.fetch_add(1, Ordering::Relaxed);
        }
        let _ = writer.await;
    })
}

/// A greedy task on the in-memory pipe, then a ping on a TCP connection of the same runtime.
fn pipe_and_ping(flavor: Flavor, greedy: fn(Arc<AtomicBool>, Arc<AtomicU64>) -> BoxFuture) {
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let server = Server::start(
        flavor,
        Echo::Lines,
        None,
        Some(Box::new({
            let stop = Arc::clone(&stop);
            let rounds = Arc::clone(&rounds);
            move || greedy(stop, rounds)
        })),
    );
    let runtime = Flavor::OneWorker.runtime();
    let answered = runtime.block_on(async {
        let client = Client {
            port: server.port,
            selector: SelectorManager::new(),
            tls: None,
        };
        let started = Instant::now();
        while rounds.load(Ordering::Relaxed) < 10_000 && started.elapsed() < FLOOD_LIMIT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ping(&client).await
    });
    let going = !stop.load(Ordering::Relaxed) && rounds.load(Ordering::Relaxed) > 0;
    stop.store(true, Ordering::Relaxed);
    drop(server);
    let took = answered.unwrap_or_else(|e| {
        panic!(
            "{flavor:?}: the ping of a connection, while a task echoes through a ByteChannel: {e} ({} rounds)",
            rounds.load(Ordering::Relaxed)
        )
    });
    assert!(going, "the pipe's task ended before the ping ({took:?})");
}

#[test]
fn a_task_echoing_through_a_byte_channel_does_not_starve_a_connection_current_thread() {
    pipe_and_ping(Flavor::CurrentThread, pipe_loop);
}

#[test]
fn a_task_echoing_through_a_byte_channel_does_not_starve_a_connection_one_worker() {
    pipe_and_ping(Flavor::OneWorker, pipe_loop);
}

#[test]
fn a_writer_and_reader_of_a_byte_channel_do_not_starve_a_connection() {
    pipe_and_ping(Flavor::CurrentThread, pipe_pair);
}

/// A task that writes to a [`ByteChannel`] and reads the bytes back, so that neither end ever
/// waits, still lets the other tasks of its thread run: each read and write of the pipe takes
/// a unit of tokio's cooperative budget, as tokio's `DuplexStream` does.
#[tokio::test(flavor = "current_thread")]
async fn a_task_echoing_through_a_byte_channel_yields_to_other_tasks() {
    let (mut output, mut input) = ByteChannel::new(true);
    let ticker = Ticker::spawn();
    for _ in 0..1_000 {
        output.write_string_utf8("ping\n").await.unwrap();
        let line = input.read_line(64, LineEnding::Default).await.unwrap();
        assert_eq!(line.as_deref(), Some("ping"));
    }
    assert!(
        ticker.ticks() > 0,
        "the task echoing through the pipe never yielded to the ticker"
    );
}
