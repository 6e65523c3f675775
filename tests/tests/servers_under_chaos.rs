//! A whole line-protocol server (an accept loop, a task per connection reading lines and
//! writing one answer per line) under many concurrent, randomly misbehaving clients, plain and
//! TLS, with flush coalescing on and a `max_connections` cap.
//!
//! - Randomised but bounded (a seed per round, printed on failure; `CHAOS_SEED` and
//!   `CHAOS_ROUNDS` choose the rounds, a round of each test takes about 0.2 s): clients
//!   pipeline bursts of requests (some over-long, some not UTF-8, some asking for answers of
//!   up to 16 KiB), read everything, slowly, or nothing for a while, half-close, reset, or
//!   vanish (mid-TLS-handshake too); each tells its connection's task, in its first line, how
//!   that task ends it (`close`, `close_gracefully`, `flush_and_close` at the end of the
//!   stream, after how many answers, flushing each answer or not, whether it honours a
//!   shutdown). Some rounds have small socket buffers, some a `socket_timeout` that a client
//!   reading nothing runs out. The server side, once per round, shuts the listener down
//!   gracefully, closes it, closes or shuts down the selector, or does nothing.
//! - Checked: every client's bytes are an exact prefix of the answers its requests call for; a
//!   client that reads a clean end (FIN; TLS: `close_notify`) has every answer whose write
//!   returned `Ok` on the server; a well-behaved client is served in full when nothing ended
//!   the server; no task hangs or panics; a graceful shutdown leaves no connection open;
//!   the cap's places are all free at the end (exactly `cap` more are admitted); no
//!   descriptor is left behind.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, Socket, Transport, a_socket};
use net_tests::rng::Rng;
use net_tests::stress::ServerEnd;
use net_tls::TlsExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The line limit of the server's reads.
const LIMIT: usize = 64;

/// How many answers each connection's task wrote with `Ok`, by the client's port.
type Written = Arc<Mutex<HashMap<u16, usize>>>;

/// How a connection's task ends its connection (the client's first line says).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    /// At the end of the stream: `flush_and_close`, then `close`.
    AtEnd,
    /// At the end of the stream: `close_gracefully`.
    GracefulAtEnd,
    /// `close` after so many answers.
    CloseAfter,
    /// `close_gracefully` after so many answers.
    GracefulAfter,
}

/// What the client's first line tells its connection's task.
#[derive(Clone, Copy, Debug)]
struct Orders {
    ending: Ending,
    after: usize,
    wait: Duration,
    flush_each: bool,
    honour_shutdown: bool,
}

impl Orders {
    fn line(&self) -> String {
        let ending = match self.ending {
            Ending::AtEnd => 0,
            Ending::GracefulAtEnd => 1,
            Ending::CloseAfter => 2,
            Ending::GracefulAfter => 3,
        };
        format!(
            "orders {ending} {} {} {} {}\n",
            self.after,
            self.wait.as_millis(),
            u8::from(self.flush_each),
            u8::from(self.honour_shutdown)
        )
    }

    fn parse(line: &str) -> Option<Orders> {
        let mut words = line.strip_prefix("orders ")?.split(' ');
        let mut next = || words.next()?.parse::<u64>().ok();
        let ending = match next()? {
            0 => Ending::AtEnd,
            1 => Ending::GracefulAtEnd,
            2 => Ending::CloseAfter,
            _ => Ending::GracefulAfter,
        };
        Some(Orders {
            ending,
            after: usize::try_from(next()?).ok()?,
            wait: Duration::from_millis(next()?),
            flush_each: next()? == 1,
            honour_shutdown: next()? == 1,
        })
    }
}

/// The answer the client expects for one request line.
fn expected_answer(line: &[u8]) -> String {
    if line.len() > LIMIT {
        return "! too long\n".to_owned();
    }
    answer(&String::from_utf8_lossy(line))
}

/// The answer the server writes for one line it read: `big N` asks for `N` bytes.
fn answer(line: &str) -> String {
    match line
        .strip_prefix("big ")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => "=".repeat(n) + "\n",
        None => format!("> {line}\n"),
    }
}

/// How a connection's loop ended.
enum Next {
    /// `close_gracefully(wait)` is to end it.
    Graceful(Duration),
    /// It is ended (closed or failed); nothing more to do.
    Done,
}

/// A connection's task: reads lines, writes one answer for each, ends as the orders say. Those
/// of clients with an odd port use channels opened one by one, the write channel
/// auto-flushing, as the seed's server (a graceful ending is then `flush_and_close` and
/// `close`); the others a `connection()`, flushing after each answer or not.
async fn serve<T: Transport>(mut socket: Socket<T>, written: Written) {
    let port = socket.remote_address().as_inet().map_or(0, |a| a.port());
    if port % 2 == 1 {
        let (Ok(mut input), Ok(mut output)) =
            (socket.open_read_channel(), socket.open_write_channel(true))
        else {
            return;
        };
        if let Next::Graceful(_) = answers(&socket, &mut input, &mut output, &written, port).await {
            let _ = output.flush_and_close().await;
            socket.close();
        }
        return;
    }
    let Ok(mut conn) = socket.connection() else {
        return;
    };
    let next = answers(
        &conn.socket,
        &mut conn.input,
        &mut conn.output,
        &written,
        port,
    )
    .await;
    if let Next::Graceful(wait) = next {
        let _ = conn.close_gracefully(wait).await;
    }
}

/// The loop of a connection's task (see [`serve`]).
async fn answers<T: Transport>(
    socket: &Socket<T>,
    input: &mut net_io::ByteReadChannel,
    output: &mut net_io::ByteWriteChannel,
    written: &Written,
    port: u16,
) -> Next {
    let orders = match input.read_line(LIMIT, LineEnding::Default).await {
        Ok(Some(line)) => Orders::parse(&line),
        _ => None,
    };
    let Some(orders) = orders else {
        socket.close();
        return Next::Done;
    };
    written.lock().unwrap().insert(port, 0);
    let mut answers = 0;
    loop {
        let read = tokio::select! {
            biased;
            () = socket.shutdown_requested(), if orders.honour_shutdown => {
                return Next::Graceful(Duration::from_millis(100));
            }
            read = input.read_line(LIMIT, LineEnding::Default) => read,
        };
        let reply = match read {
            Ok(Some(line)) => answer(&line),
            Err(net_io::Error::TooLongLine { .. }) => "! too long\n".to_owned(),
            Ok(None) => {
                if orders.ending == Ending::GracefulAtEnd {
                    return Next::Graceful(orders.wait);
                }
                let _ = output.flush_and_close().await;
                socket.close();
                return Next::Done;
            }
            Err(_) => {
                socket.close();
                return Next::Done;
            }
        };
        if output.write_string_utf8(&reply).await.is_err() {
            socket.close();
            return Next::Done;
        }
        answers += 1;
        written.lock().unwrap().insert(port, answers);
        if orders.flush_each && output.flush().await.is_err() {
            socket.close();
            return Next::Done;
        }
        if answers >= orders.after {
            match orders.ending {
                Ending::CloseAfter => {
                    socket.close();
                    return Next::Done;
                }
                Ending::GracefulAfter => return Next::Graceful(orders.wait),
                Ending::AtEnd | Ending::GracefulAtEnd => {}
            }
        }
    }
}

/// What a client does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    /// Sends its requests in bursts, half-closes, reads everything.
    Good,
    /// As `Good`, reading a few bytes at a time with pauses.
    Slow,
    /// Sends, half-closes, reads nothing for a while, then everything.
    Stall,
    /// Sends, reads for a while, then leaves (a FIN, or a reset when answers are unread).
    Leave,
    /// Sends, reads a little, then resets (`SO_LINGER` 0).
    Reset,
    /// Connects, sends a piece of its first line (TLS: of a `ClientHello`'s record), vanishes.
    Vanish,
}

/// How a client's reads ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Clean,
    Failed(ErrorKind),
    /// The client stopped reading itself.
    Left,
    /// It never connected (the listener was closed).
    Refused,
}

/// The client's stream.
trait PeerIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
    /// Ends the connection with a reset.
    fn reset(self: Box<Self>);
}

impl PeerIo for TcpStream {
    fn reset(self: Box<Self>) {
        net_tests::fault::reset(*self);
    }
}

impl PeerIo for tokio_rustls::client::TlsStream<TcpStream> {
    fn reset(self: Box<Self>) {
        net_tests::fault::reset(self.into_inner().0);
    }
}

/// What a client saw.
struct Outcome {
    behaviour: Behaviour,
    orders: Orders,
    port: u16,
    requests: usize,
    received: Vec<u8>,
    expected: Vec<u8>,
    end: End,
}

/// One client, bounded in time.
async fn client(
    seed: u64,
    address: std::net::SocketAddr,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    small_buffers: bool,
) -> Outcome {
    let mut rng = Rng::new(seed);
    let behaviour = [
        Behaviour::Good,
        Behaviour::Good,
        Behaviour::Slow,
        Behaviour::Stall,
        Behaviour::Leave,
        Behaviour::Reset,
        Behaviour::Vanish,
    ][rng.below(7) as usize];
    let orders = Orders {
        ending: [
            Ending::AtEnd,
            Ending::AtEnd,
            Ending::GracefulAtEnd,
            Ending::CloseAfter,
            Ending::GracefulAfter,
        ][rng.below(5) as usize],
        after: rng.below(40) as usize,
        wait: Duration::from_millis(rng.below(200)),
        flush_each: !rng.chance(4),
        honour_shutdown: rng.chance(2),
    };
    let requests = rng.below(60) as usize;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for i in 0..requests {
        lines.push(match rng.below(10) {
            0 => vec![b'x'; 100 + rng.below(3000) as usize],
            2 => format!("big {}", rng.below(16 * 1024)).into_bytes(),
            1 => (0..rng.below(40))
                .map(|_| match rng.below(256) as u8 {
                    b'\n' | b'\r' => b'?',
                    b => b,
                })
                .collect(),
            _ => format!("request {i}").into_bytes(),
        });
    }
    let expected: Vec<u8> = lines
        .iter()
        .flat_map(|l| expected_answer(l).into_bytes())
        .collect();
    let mut wire = orders.line().into_bytes();
    for line in &lines {
        wire.extend_from_slice(line);
        wire.push(b'\n');
    }
    let mut outcome = Outcome {
        behaviour,
        orders,
        port: 0,
        requests,
        received: Vec::new(),
        expected,
        end: End::Refused,
    };
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if small_buffers {
        socket.set_recv_buffer_size(8 * 1024).unwrap();
    }
    let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(5), socket.connect(address)).await
    else {
        return outcome;
    };
    outcome.port = tcp.local_addr().unwrap().port();
    if behaviour == Behaviour::Vanish {
        let piece: &[u8] = if tls.is_some() {
            b"\x16\x03\x01\x02\x00\x01\x00\x01"
        } else {
            &wire
        };
        let cut = rng.below(piece.len() as u64 + 1) as usize;
        let mut tcp = tcp;
        let _ = tcp.write_all(&piece[..cut]).await;
        if rng.chance(2) {
            net_tests::fault::reset(tcp);
        }
        outcome.end = End::Left;
        return outcome;
    }
    let stream: Box<dyn PeerIo> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            match tokio::time::timeout(
                Duration::from_secs(5),
                connector.connect(net_tests::tls::localhost(), tcp),
            )
            .await
            {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    outcome.end = End::Failed(e.kind());
                    return outcome;
                }
                Err(_) => {
                    outcome.end = End::Failed(ErrorKind::TimedOut);
                    return outcome;
                }
            }
        }
    };
    // Bursts of the wire bytes, written while the reads go on.
    let mut bursts = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let len = (1 + rng.below(4000) as usize).min(wire.len() - at);
        bursts.push(wire[at..at + len].to_vec());
        at += len;
    }
    let pauses: Vec<bool> = bursts.iter().map(|_| rng.chance(4)).collect();
    let half_close = matches!(
        behaviour,
        Behaviour::Good | Behaviour::Slow | Behaviour::Stall
    );
    let stall = Duration::from_millis(rng.below(100));
    let read_for = Duration::from_millis(rng.below(150));
    let reset_after = rng.below(200) as usize;
    let (mut rd, mut wr) = tokio::io::split(stream);
    // A write of the client's that fails: the connection was reset. Linux tells a reset once,
    // to the first call that asks, so a read after that write sees only the end of the stream
    // (`Ok(0)`), which is then no clean end.
    let write_failed = std::sync::OnceLock::new();
    let writer = async {
        for (burst, pause) in bursts.iter().zip(pauses) {
            if let Err(e) = wr.write_all(burst).await {
                let _ = write_failed.set(e.kind());
                return;
            }
            if pause {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if half_close && let Err(e) = wr.shutdown().await {
            let _ = write_failed.set(e.kind());
        }
    };
    let started = Instant::now();
    let received = &mut outcome.received;
    let reader = async {
        if behaviour == Behaviour::Stall {
            tokio::time::sleep(stall).await;
        }
        let mut buf = vec![0; 16 * 1024];
        loop {
            let size = if behaviour == Behaviour::Slow {
                1 + rng.below(512) as usize
            } else {
                buf.len()
            };
            match behaviour {
                Behaviour::Leave if started.elapsed() > read_for => return End::Left,
                Behaviour::Reset if received.len() >= reset_after => return End::Left,
                _ => {}
            }
            let read = tokio::time::timeout(Duration::from_millis(20), rd.read(&mut buf[..size]));
            match read.await {
                Ok(Ok(0)) => return write_failed.get().map_or(End::Clean, |&k| End::Failed(k)),
                Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => return End::Failed(e.kind()),
                Err(_) if matches!(behaviour, Behaviour::Leave | Behaviour::Reset) => {
                    if started.elapsed() > read_for {
                        return End::Left;
                    }
                }
                Err(_) => {}
            }
            if behaviour == Behaviour::Slow {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let ((), end) = tokio::join!(writer, reader);
    outcome.end = end;
    let stream = rd.unsplit(wr);
    if behaviour == Behaviour::Reset {
        stream.reset();
    }
    outcome
}

async fn round(seed: u64, tls: bool, pki: &net_tests::pki::Pki) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let cap = 1 + rng.below(5) as usize;
    let event = [
        ServerEnd::Nothing,
        ServerEnd::Nothing,
        ServerEnd::ListenerShutdown,
        ServerEnd::ListenerShutdown,
        ServerEnd::ListenerClose,
        ServerEnd::SelectorClose,
        ServerEnd::SelectorShutdown,
    ][rng.below(7) as usize];
    let grace = Duration::from_millis(rng.below(300));
    let when = Duration::from_millis(rng.below(150));
    let clients = 2 + rng.below(14);
    let small_buffers = rng.chance(2);
    // A peer that reads nothing for longer fails a write: the connection then ends in a reset.
    let timeout = rng
        .chance(4)
        .then(|| Duration::from_millis(30 + rng.below(100)));
    let what = format!(
        "seed {seed} (tls {tls}, cap {cap}, {event:?} after {when:?}, grace {grace:?}, \
         {clients} clients, small buffers {small_buffers}, socket_timeout {timeout:?})"
    );
    let selector = SelectorManager::new();
    let server = Arc::new(
        a_socket(&selector)
            .tcp()
            .max_connections(cap)
            .configure(|o| {
                if small_buffers {
                    o.send_buffer_size = Some(8 * 1024);
                }
                o.socket_timeout = timeout;
            })
            .bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("{what}: bind: {e}"))?,
    );
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    let written: Written = Arc::default();
    let config = pki
        .server_config()
        .handshake_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    let accepting = {
        let (server, written, tasks) = (
            Arc::clone(&server),
            Arc::clone(&written),
            Arc::clone(&tasks),
        );
        tokio::spawn(async move {
            while let Ok(socket) = server.accept().await {
                let written = Arc::clone(&written);
                let config = config.clone();
                let task = tokio::spawn(async move {
                    if tls {
                        if let Ok(socket) = socket.tls_server(&config).await {
                            serve(socket, written).await;
                        }
                    } else {
                        serve(socket, written).await;
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        })
    };
    let client_config = tls.then(|| net_tests::tls::rustls_client(&pki.ca));
    let running: Vec<JoinHandle<Outcome>> = (0..clients)
        .map(|i| {
            let config = client_config.clone();
            tokio::spawn(client(seed * 1000 + i, address, config, small_buffers))
        })
        .collect();
    tokio::time::sleep(when).await;
    net_tests::stress::end_server(event, &server, &selector, grace, cap, &what).await?;
    let limit = Duration::from_secs(15);
    let mut outcomes = Vec::new();
    for running in running {
        let outcome = tokio::time::timeout(limit, running)
            .await
            .map_err(|_| format!("{what}: a client hung"))?
            .map_err(|e| format!("{what}: a client panicked: {e}"))?;
        outcomes.push(outcome);
    }
    // The connections' tasks end: every client has gone.
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
    let written = written.lock().unwrap().clone();
    let served_all = event == ServerEnd::Nothing && timeout.is_none();
    for o in &outcomes {
        let ok = written.get(&o.port).copied().unwrap_or(0);
        let answers = o.received.iter().filter(|&&b| b == b'\n').count();
        let who = format!(
            "{what}: client {:?} port {} ({:?}), {} requests, {} answers read then {:?}, {ok} written",
            o.behaviour, o.port, o.orders, o.requests, answers, o.end
        );
        if !o.expected.starts_with(&o.received) {
            return Err(format!(
                "{who}: bytes that are not the answers' prefix: {:?}",
                String::from_utf8_lossy(&o.received)
            ));
        }
        if o.end == End::Clean && (answers != ok || o.received.last().is_some_and(|&b| b != b'\n'))
        {
            return Err(format!("{who}: a clean end after answers were lost"));
        }
        let well_behaved = matches!(
            o.behaviour,
            Behaviour::Good | Behaviour::Slow | Behaviour::Stall
        ) && o.orders.ending == Ending::AtEnd;
        if served_all && well_behaved && (o.end != End::Clean || answers != o.requests) {
            return Err(format!("{who}: not served in full"));
        }
    }
    // The cap's places are all free: exactly `cap` more are admitted, the next waits.
    accepting.abort();
    let _ = accepting.await;
    // Every client and every connection's task is gone: so are the connections (those with
    // answers still to send once their sends end).
    let started = Instant::now();
    while server.stats().open != 0 {
        if started.elapsed() > limit {
            return Err(format!("{what}: {:?} at the end", server.stats()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if event == ServerEnd::Nothing {
        let mut held = Vec::new();
        for _ in 0..=cap {
            held.push(
                tokio::time::timeout(limit, TcpStream::connect(address))
                    .await
                    .map_err(|_| format!("{what}: a connect hung"))?
                    .map_err(|e| format!("{what}: connect: {e}"))?,
            );
        }
        let mut accepted = Vec::new();
        for _ in 0..cap {
            accepted.push(
                tokio::time::timeout(limit, server.accept())
                    .await
                    .map_err(|_| format!("{what}: a free place was not given"))?
                    .map_err(|e| format!("{what}: accept: {e}"))?,
            );
        }
        let next = server.accept();
        tokio::pin!(next);
        if !net_tests::pending_after_one_poll(next.as_mut()).await {
            return Err(format!("{what}: more than the cap admitted"));
        }
    }
    selector.close();
    Ok(())
}

/// The tests of this file one at a time: each counts the process's sockets.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn many(tls: bool, default: u64) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let pki = net_tests::pki::Pki::generate();
    net_tests::stress::run_rounds("CHAOS", default, Duration::from_secs(60), |seed| {
        round(seed, tls, &pki)
    })
    .await;
}

/// Plain TCP servers under chaos (`CHAOS_SEED`, `CHAOS_ROUNDS` choose the rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_plain_server_under_misbehaving_clients_keeps_its_answers_exact() {
    many(false, 16).await;
}

/// TLS servers under chaos (`CHAOS_SEED`, `CHAOS_ROUNDS` choose the rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_tls_server_under_misbehaving_clients_keeps_its_answers_exact() {
    many(true, 16).await;
}
