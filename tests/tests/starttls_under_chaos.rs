//! An SMTP-like line server that upgrades to TLS on `STARTTLS` (a `Connection` handed to
//! `tls_server`), under concurrent, randomly misbehaving clients, with flush coalescing on, a
//! `max_connections` cap, some rounds behind a required PROXY header with a
//! `max_connections_per_ip` cap, some with a `socket_timeout`, all with a short handshake
//! timeout.
//!
//! - Randomised but bounded (a seed per round, printed on failure; `STCHAOS_SEED` and
//!   `STCHAOS_ROUNDS` choose the rounds, a round takes about 0.2 s): clients (TLS 1.3, or
//!   1.2) pipeline plain lines (some over the line limit) and `STARTTLS`, some their
//!   ClientHello right behind it; send a plain line right after `STARTTLS`, in the same write
//!   (the classic STARTTLS injection); vanish or reset mid-handshake; send garbage instead of
//!   a ClientHello; never send one (the handshake timeout ends them); half-close before the
//!   upgrade; never upgrade; pipeline over TLS, reading everything, slowly, late, or leaving
//!   or resetting part-way. Each tells its connection's task, in its first line, how that
//!   task ends the TLS session (`flush_and_close` at the end of the stream,
//!   `close_gracefully`, `close` after so many answers, flushing each answer or not,
//!   honouring a shutdown or not). The server side, once per round, shuts the listener down
//!   gracefully, closes it, closes or shuts down the selector, or does nothing.
//! - Checked: the plain bytes a client reads are an exact prefix of the greeting and answers
//!   its lines call for, and nothing plain follows `220 go ahead`; a line injected after
//!   `STARTTLS` is never answered, in plain text or under TLS: the server's upgrade fails with
//!   `Error::Handshake` (as the crate's docs promise) and the client's handshake fails;
//!   garbage fails it with `Error::Handshake` too, silence with a timeout; the TLS bytes are
//!   an exact prefix of the answers; a clean end (`close_notify`, or a plain FIN) comes only
//!   after every answer the server's writes reported `Ok`; a well-behaved client is served in
//!   full when nothing ended the server; an upgraded connection counts in the listener's
//!   `open`, never past the cap; a graceful shutdown leaves no connection open and reports no
//!   more than the cap; `accepted` is the number of connections handed out; the places are
//!   all free at the end (exactly `cap`, or the per-address cap, more are admitted, and the
//!   next waits, or is refused for its address); no task hangs or panics; no descriptor is
//!   left behind.
//! - Deterministic beside it: the injection on the client's side (a line after the server's
//!   go-ahead fails our client's handshake), and a graceful shutdown counting an upgraded, a
//!   handshaking and a plain connection once each.
//! - Interop: Python's `smtplib` (`starttls()`, OpenSSL) against the same server, when
//!   `python3` is there (skipped with a note otherwise).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{ProxyProtocol, SelectorManager, ServerSocket, Socket, a_socket};
use net_tests::rng::Rng;
use net_tests::stress::ServerEnd;
use net_tls::{TlsExt, TlsServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The line limit of the server's reads.
const LIMIT: usize = 64;

/// The server's greeting.
const GREETING: &str = "220 chaos ready\r\n";

/// The server's answer to `STARTTLS`.
const GO_AHEAD: &str = "220 go ahead\r\n";

/// The line a client injects after `STARTTLS`.
const INJECTED: &str = "NOOP injected";

/// What the server's connections reported, by the client's id.
#[derive(Clone, Debug, Default)]
struct Served {
    /// How the upgrade ended: `None` before it, `Some(Ok)` upgraded, else the error's text
    /// and kind, and whether it is `Error::Handshake`.
    upgrade: Option<Result<(), (String, ErrorKind, bool)>>,
    /// Answers written with `Ok` under TLS.
    written: usize,
    /// Bytes written with `Ok` in plain text, the greeting included.
    plain_written: usize,
    /// The listener's `open` right after the upgrade.
    open_after_upgrade: usize,
    /// A line under TLS that the client never sent under TLS (the injected one).
    injected_answered: bool,
}

type Report = Arc<Mutex<HashMap<u64, Served>>>;

/// How a connection's task ends its TLS session (the client's first line says).
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
    id: u64,
    ending: Ending,
    after: usize,
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
            "orders {} {ending} {} {} {}",
            self.id,
            self.after,
            u8::from(self.flush_each),
            u8::from(self.honour_shutdown)
        )
    }

    fn parse(line: &str) -> Option<Orders> {
        let mut words = line.strip_prefix("orders ")?.split(' ');
        let mut next = || words.next()?.parse::<u64>().ok();
        let id = next()?;
        let ending = match next()? {
            0 => Ending::AtEnd,
            1 => Ending::GracefulAtEnd,
            2 => Ending::CloseAfter,
            _ => Ending::GracefulAfter,
        };
        Some(Orders {
            id,
            ending,
            after: usize::try_from(next()?).ok()?,
            flush_each: next()? == 1,
            honour_shutdown: next()? == 1,
        })
    }

    /// A client without orders (Python's `smtplib`).
    fn none() -> Orders {
        Orders {
            id: u64::MAX,
            ending: Ending::AtEnd,
            after: usize::MAX,
            flush_each: true,
            honour_shutdown: false,
        }
    }
}

/// What the server's plain phase takes a line over [`LIMIT`] for.
const TOO_LONG: &str = "\u{0}too long";

/// The answer to one line, plain or under TLS (SMTP-like, so that `smtplib` understands it).
fn answer(line: &str) -> String {
    if line.len() > LIMIT || line == TOO_LONG {
        return "500 line too long\r\n".to_owned();
    }
    let upper = line.to_ascii_uppercase();
    if upper.starts_with("EHLO") {
        "250-chaos\r\n250 STARTTLS\r\n".to_owned()
    } else if upper == "QUIT" {
        "221 bye\r\n".to_owned()
    } else {
        format!("250 {line}\r\n")
    }
}

/// What a line's answer ends the session with: `QUIT`.
fn is_quit(line: &str) -> bool {
    line.eq_ignore_ascii_case("QUIT")
}

/// The server's side of one connection: the plain phase, the upgrade, the TLS phase.
async fn serve(socket: Socket, config: TlsServerConfig, report: Report, server: Arc<ServerSocket>) {
    let Ok(mut plain) = socket.connection() else {
        return;
    };
    let mut orders = Orders::none();
    if plain.output.write_string_utf8(GREETING).await.is_err()
        || plain.output.flush().await.is_err()
    {
        plain.socket.close();
        return;
    }
    let mut plain_written = GREETING.len();
    loop {
        let line = match plain.input.read_line(LIMIT, LineEnding::Default).await {
            Ok(Some(line)) => line,
            Ok(None) => {
                let _ = plain.output.flush_and_close().await;
                plain.socket.close();
                return;
            }
            // Answered as a line of its own (the next read skips the rest of it).
            Err(net_io::Error::TooLongLine { .. }) => TOO_LONG.to_owned(),
            Err(_) => {
                plain.socket.close();
                return;
            }
        };
        if let Some(o) = Orders::parse(&line) {
            orders = o;
            report.lock().unwrap().entry(o.id).or_default();
        }
        if line.eq_ignore_ascii_case("STARTTLS") {
            if plain.output.write_string_utf8(GO_AHEAD).await.is_err() {
                plain.socket.close();
                return;
            }
            break;
        }
        let reply = answer(&line);
        if plain.output.write_string_utf8(&reply).await.is_err() {
            plain.socket.close();
            return;
        }
        plain_written += reply.len();
        report
            .lock()
            .unwrap()
            .entry(orders.id)
            .or_default()
            .plain_written = plain_written;
        if orders.flush_each && plain.output.flush().await.is_err() {
            plain.socket.close();
            return;
        }
        if is_quit(&line) {
            let _ = plain.output.flush_and_close().await;
            plain.socket.close();
            return;
        }
    }
    let tls = match plain.tls_server(&config).await {
        Ok(tls) => tls,
        Err(e) => {
            let handshake = matches!(e, net_tls::Error::Handshake(_));
            let failed = (e.to_string(), std::io::Error::from(e).kind(), handshake);
            report.lock().unwrap().entry(orders.id).or_default().upgrade = Some(Err(failed));
            return;
        }
    };
    {
        let open = server.stats().open;
        let mut report = report.lock().unwrap();
        let served = report.entry(orders.id).or_default();
        served.upgrade = Some(Ok(()));
        served.open_after_upgrade = open;
    }
    let Ok(mut secure) = tls.connection() else {
        return;
    };
    let next = answers(
        &secure.socket,
        &mut secure.input,
        &mut secure.output,
        &report,
        orders,
    )
    .await;
    if let Some(wait) = next {
        let _ = secure.close_gracefully(wait).await;
    }
}

/// The TLS phase's loop: `Some(wait)` when `close_gracefully(wait)` is to end it.
async fn answers<T: net_sockets::Transport>(
    socket: &Socket<T>,
    input: &mut ByteReadChannel,
    output: &mut ByteWriteChannel,
    report: &Report,
    orders: Orders,
) -> Option<Duration> {
    let mut written = 0;
    loop {
        let read = tokio::select! {
            biased;
            () = socket.shutdown_requested(), if orders.honour_shutdown => {
                return Some(Duration::from_millis(100));
            }
            read = input.read_line(LIMIT, LineEnding::Default) => read,
        };
        let line = match read {
            Ok(Some(line)) => line,
            Ok(None) => {
                if orders.ending == Ending::GracefulAtEnd {
                    return Some(Duration::from_millis(100));
                }
                let _ = output.flush_and_close().await;
                socket.close();
                return None;
            }
            Err(_) => {
                socket.close();
                return None;
            }
        };
        if line == INJECTED {
            report
                .lock()
                .unwrap()
                .entry(orders.id)
                .or_default()
                .injected_answered = true;
        }
        if output.write_string_utf8(&answer(&line)).await.is_err() {
            socket.close();
            return None;
        }
        written += 1;
        report.lock().unwrap().entry(orders.id).or_default().written = written;
        if orders.flush_each && output.flush().await.is_err() {
            socket.close();
            return None;
        }
        if is_quit(&line) {
            return Some(Duration::from_millis(100));
        }
        if written >= orders.after {
            match orders.ending {
                Ending::CloseAfter => {
                    socket.close();
                    return None;
                }
                Ending::GracefulAfter => return Some(Duration::from_millis(100)),
                Ending::AtEnd | Ending::GracefulAtEnd => {}
            }
        }
    }
}

/// What a client does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    /// Plain lines and `STARTTLS` in one burst, the upgrade, lines under TLS in bursts, a
    /// half-close (`close_notify`), and reads everything.
    Good,
    /// As `Good`, reading the TLS answers a few bytes at a time.
    Slow,
    /// As `Good`, reading nothing under TLS for a while first.
    Stall,
    /// As `Good`, then leaves (or resets) part-way through the TLS answers.
    Leave,
    /// Sends a plain line right after `STARTTLS`, in the same write (an attacker's injection),
    /// then tries the handshake.
    Inject,
    /// Garbage instead of a ClientHello.
    Garbage,
    /// A piece of a ClientHello, then a FIN or a reset.
    Vanish,
    /// Never sends a ClientHello (the handshake timeout ends it).
    Silent,
    /// Half-closes right after `STARTTLS`.
    HalfClose,
    /// Never upgrades: plain lines, a half-close, reads everything.
    PlainOnly,
    /// As `Good`, its ClientHello sent right after `STARTTLS`, without waiting for the
    /// go-ahead (the plain answers are read before the server's TLS).
    Eager,
}

/// How a client's TLS reads ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// `close_notify`.
    Clean,
    Failed(ErrorKind),
    /// The client stopped reading itself, or never got as far.
    Left,
}

/// What a client saw.
#[derive(Debug)]
struct Outcome {
    behaviour: Behaviour,
    orders: Orders,
    /// Whether it was connected at all (a closed listener refuses).
    connected: bool,
    plain: Vec<u8>,
    plain_expected: Vec<u8>,
    /// The plain bytes that came after `220 go ahead` (before any of the client's TLS).
    after_go_ahead: Vec<u8>,
    /// Whether the client's handshake completed.
    upgraded: bool,
    tls_lines: usize,
    received: Vec<u8>,
    expected: Vec<u8>,
    end: End,
    /// The end of the plain phase was clean (`PlainOnly`).
    plain_clean: bool,
}

/// A v1 PROXY header naming `ip`.
fn proxy_v1(ip: Ipv4Addr) -> Vec<u8> {
    format!("PROXY TCP4 {ip} 127.0.0.1 4242 9002\r\n").into_bytes()
}

/// Reads until `wanted` is among what was read, the end, an error, or `limit`; what came
/// after `wanted` in the same read goes to `after`.
async fn read_until(
    tcp: &mut TcpStream,
    received: &mut Vec<u8>,
    after: &mut Vec<u8>,
    wanted: &[u8],
    limit: Duration,
) -> bool {
    let started = Instant::now();
    let mut buf = [0; 4096];
    while started.elapsed() < limit {
        if let Some(at) = received.windows(wanted.len()).position(|w| w == wanted) {
            after.extend_from_slice(&received[at + wanted.len()..]);
            received.truncate(at + wanted.len());
            return true;
        }
        match tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return false,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    false
}

/// One client, bounded in time.
async fn client(
    seed: u64,
    id: u64,
    address: SocketAddr,
    proxy: Option<Ipv4Addr>,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
) -> Outcome {
    let mut rng = Rng::new(seed);
    let behaviour = [
        Behaviour::Good,
        Behaviour::Good,
        Behaviour::Slow,
        Behaviour::Stall,
        Behaviour::Leave,
        Behaviour::Inject,
        Behaviour::Inject,
        Behaviour::Garbage,
        Behaviour::Vanish,
        Behaviour::Silent,
        Behaviour::HalfClose,
        Behaviour::PlainOnly,
        Behaviour::Eager,
    ][rng.below(13) as usize];
    let orders = Orders {
        id,
        ending: [
            Ending::AtEnd,
            Ending::AtEnd,
            Ending::GracefulAtEnd,
            Ending::CloseAfter,
            Ending::GracefulAfter,
        ][rng.below(5) as usize],
        after: rng.below(30) as usize,
        flush_each: !rng.chance(3),
        honour_shutdown: rng.chance(2),
    };
    let mut plain_lines = vec![orders.line()];
    for i in 0..rng.below(6) {
        plain_lines.push(match rng.below(5) {
            0 => "EHLO chaos".to_owned(),
            // Over the line limit: the server skips it (the rest may come later, or with
            // `STARTTLS` and a ClientHello behind it).
            1 => "y".repeat(LIMIT + 1 + rng.below(300) as usize),
            _ => format!("plain {i}"),
        });
    }
    let mut plain_expected = GREETING.as_bytes().to_vec();
    for line in &plain_lines {
        plain_expected.extend_from_slice(answer(line).as_bytes());
    }
    let mut wire = Vec::new();
    for line in &plain_lines {
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(if rng.chance(2) { b"\r\n" } else { b"\n" });
    }
    if behaviour != Behaviour::PlainOnly {
        plain_expected.extend_from_slice(GO_AHEAD.as_bytes());
        wire.extend_from_slice(b"STARTTLS\r\n");
        if behaviour == Behaviour::Inject {
            wire.extend_from_slice(format!("{INJECTED}\r\n").as_bytes());
        }
    }
    let tls_lines: Vec<String> = (0..rng.below(40))
        .map(|i| format!("secure {i} {}", "x".repeat(rng.below(40) as usize)))
        .collect();
    let expected: Vec<u8> = tls_lines
        .iter()
        .flat_map(|l| answer(l).into_bytes())
        .collect();
    let mut outcome = Outcome {
        behaviour,
        orders,
        connected: false,
        plain: Vec::new(),
        plain_expected,
        after_go_ahead: Vec::new(),
        upgraded: false,
        tls_lines: tls_lines.len(),
        received: Vec::new(),
        expected,
        end: End::Left,
        plain_clean: false,
    };
    let limit = Duration::from_secs(10);
    let Ok(Ok(mut tcp)) = tokio::time::timeout(limit, TcpStream::connect(address)).await else {
        return outcome;
    };
    outcome.connected = true;
    // The PROXY header comes first: the listener reads it before the greeting. A client that
    // does not wait for the greeting sends it with its lines (and, `Eager`, its ClientHello
    // right after), all in one segment or nearly.
    let greeting_first = rng.chance(2);
    if let Some(ip) = proxy {
        if greeting_first {
            if tcp.write_all(&proxy_v1(ip)).await.is_err() {
                return outcome;
            }
        } else {
            wire.splice(0..0, proxy_v1(ip));
        }
    }
    if greeting_first
        && !read_until(
            &mut tcp,
            &mut outcome.plain,
            &mut outcome.after_go_ahead,
            GREETING.as_bytes(),
            limit,
        )
        .await
    {
        return outcome;
    }
    if tcp.write_all(&wire).await.is_err() {
        return outcome;
    }
    if behaviour == Behaviour::PlainOnly {
        let _ = tcp.shutdown().await;
        outcome.plain.append(&mut outcome.after_go_ahead);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(limit, tcp.read_to_end(&mut rest)).await;
        outcome.plain.extend_from_slice(&rest);
        outcome.plain_clean = matches!(read, Ok(Ok(_)));
        return outcome;
    }
    if behaviour == Behaviour::HalfClose {
        let _ = tcp.shutdown().await;
    }
    if behaviour == Behaviour::Eager {
        outcome.plain.append(&mut outcome.after_go_ahead);
        let skip = outcome
            .plain_expected
            .len()
            .saturating_sub(outcome.plain.len());
        return tls_phase(outcome, SkipPlain::new(tcp, skip), tls, tls_lines, rng).await;
    }
    let mut plain = std::mem::take(&mut outcome.plain);
    plain.append(&mut outcome.after_go_ahead);
    let go_ahead_read = read_until(
        &mut tcp,
        &mut plain,
        &mut outcome.after_go_ahead,
        GO_AHEAD.as_bytes(),
        limit,
    )
    .await;
    outcome.plain = plain;
    if !go_ahead_read {
        return outcome;
    }
    // Nothing plain may follow the go-ahead: the server waits for the ClientHello. (Only an
    // alert of a failed handshake may, for the injecting client, whose injected line is the
    // server's handshake's first input.)
    if behaviour == Behaviour::Inject {
        let mut buf = [0; 4096];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(rng.below(20)), tcp.read(&mut buf)).await
        {
            outcome.after_go_ahead.extend_from_slice(&buf[..n]);
        }
    }
    match behaviour {
        Behaviour::Garbage => {
            let _ = tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(limit, tcp.read_to_end(&mut rest)).await;
            outcome.after_go_ahead.extend_from_slice(&rest);
            return outcome;
        }
        Behaviour::Vanish => {
            let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
            let cut = rng.below(hello.len() as u64 + 1) as usize;
            let _ = tcp.write_all(&hello[..cut]).await;
            if rng.chance(2) {
                net_tests::fault::reset(tcp);
            }
            return outcome;
        }
        Behaviour::Silent => {
            // The server's handshake timeout (or `socket_timeout`) ends it: a reset or a FIN.
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(limit, tcp.read_to_end(&mut rest)).await;
            outcome.after_go_ahead.extend_from_slice(&rest);
            return outcome;
        }
        Behaviour::HalfClose => {
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(limit, tcp.read_to_end(&mut rest)).await;
            outcome.after_go_ahead.extend_from_slice(&rest);
            return outcome;
        }
        _ => {}
    }
    tls_phase(outcome, SkipPlain::new(tcp, 0), tls, tls_lines, rng).await
}

/// A client's stream that first takes the plain bytes still to come (`skip` of them) off what
/// it reads, for a client whose ClientHello followed `STARTTLS` at once.
struct SkipPlain {
    tcp: TcpStream,
    skip: usize,
    plain: Vec<u8>,
}

impl SkipPlain {
    fn new(tcp: TcpStream, skip: usize) -> SkipPlain {
        SkipPlain {
            tcp,
            skip,
            plain: Vec::new(),
        }
    }
}

impl tokio::io::AsyncRead for SkipPlain {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.skip > 0 {
            let mut plain = [0; 1024];
            let mut read = tokio::io::ReadBuf::new(&mut plain[..this.skip.min(1024)]);
            std::task::ready!(std::pin::Pin::new(&mut this.tcp).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return std::task::Poll::Ready(Ok(()));
            }
            this.plain.extend_from_slice(read.filled());
            this.skip -= read.filled().len();
        }
        std::pin::Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SkipPlain {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The handshake and the TLS phase of a client.
async fn tls_phase(
    mut outcome: Outcome,
    io: SkipPlain,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    tls_lines: Vec<String>,
    mut rng: Rng,
) -> Outcome {
    let behaviour = outcome.behaviour;
    let limit = Duration::from_secs(10);
    let connector = tokio_rustls::TlsConnector::from(tls);
    let connected = tokio::time::timeout(limit, connector.connect(net_tests::tls::localhost(), io));
    let stream = match connected.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            outcome.end = End::Failed(e.kind());
            return outcome;
        }
        Err(_) => {
            outcome.end = End::Failed(ErrorKind::TimedOut);
            return outcome;
        }
    };
    outcome.upgraded = true;
    let mut wire = Vec::new();
    for line in &tls_lines {
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    let mut bursts = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let len = (1 + rng.below(600) as usize).min(wire.len() - at);
        bursts.push(wire[at..at + len].to_vec());
        at += len;
    }
    let stall = Duration::from_millis(rng.below(80));
    let read_for = Duration::from_millis(rng.below(100));
    let reset = rng.chance(2);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let write_failed = std::sync::OnceLock::new();
    let writer = async {
        for burst in &bursts {
            if let Err(e) = wr.write_all(burst).await {
                let _ = write_failed.set(e.kind());
                return;
            }
        }
        // `close_notify`, then FIN.
        if let Err(e) = wr.shutdown().await {
            let _ = write_failed.set(e.kind());
        }
    };
    let started = Instant::now();
    let received = &mut outcome.received;
    let reader = async {
        if behaviour == Behaviour::Stall {
            tokio::time::sleep(stall).await;
        }
        let mut buf = vec![0; 8 * 1024];
        while started.elapsed() < limit {
            if behaviour == Behaviour::Leave && started.elapsed() > read_for {
                return End::Left;
            }
            let size = if behaviour == Behaviour::Slow {
                1 + rng.below(64) as usize
            } else {
                buf.len()
            };
            let read = tokio::time::timeout(Duration::from_millis(20), rd.read(&mut buf[..size]));
            match read.await {
                Ok(Ok(0)) => return write_failed.get().map_or(End::Clean, |&k| End::Failed(k)),
                Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => return End::Failed(e.kind()),
                Err(_) => {}
            }
        }
        End::Left
    };
    let ((), end) = tokio::join!(writer, reader);
    outcome.end = end;
    let io = rd.unsplit(wr).into_inner().0;
    outcome.plain.extend_from_slice(&io.plain);
    if behaviour == Behaviour::Leave && reset {
        net_tests::fault::reset(io.tcp);
    }
    outcome
}

/// Connects (with a PROXY header naming `proxy`), for the check of the free places.
async fn hold(address: SocketAddr, proxy: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(address).await?;
    if let Some(ip) = proxy {
        tcp.write_all(&proxy_v1(ip)).await?;
    }
    Ok(tcp)
}

async fn round(seed: u64, pki: &net_tests::pki::Pki) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let cap = 1 + rng.below(5) as usize;
    let event = [
        ServerEnd::Nothing,
        ServerEnd::Nothing,
        ServerEnd::Nothing,
        ServerEnd::ListenerShutdown,
        ServerEnd::ListenerShutdown,
        ServerEnd::ListenerClose,
        ServerEnd::SelectorClose,
        ServerEnd::SelectorShutdown,
    ][rng.below(8) as usize];
    let grace = Duration::from_millis(rng.below(300));
    let when = Duration::from_millis(rng.below(150));
    let clients = 2 + rng.below(12);
    // Behind a PROXY header, every client naming one address: the per-address cap is the
    // tighter one.
    let proxy = rng
        .chance(3)
        .then(|| Ipv4Addr::new(192, 0, 2, 1 + rng.below(200) as u8));
    let per_ip = proxy.map(|_| 1 + rng.below(cap as u64) as usize);
    // Long enough for a well-behaved client's handshake on a loaded machine (a debug build).
    let handshake = Duration::from_millis(500 + rng.below(300));
    let timeout = rng
        .chance(4)
        .then(|| Duration::from_millis(80 + rng.below(150)));
    let what = format!(
        "seed {seed} (cap {cap}, {event:?} after {when:?}, grace {grace:?}, {clients} clients, \
         proxy {proxy:?}, per-ip cap {per_ip:?}, handshake timeout {handshake:?}, \
         socket_timeout {timeout:?})"
    );
    let selector = SelectorManager::new();
    let mut builder = a_socket(&selector).tcp().max_connections(cap);
    if let Some(per_ip) = per_ip {
        builder = builder
            .max_connections_per_ip(per_ip)
            .proxy_protocol(ProxyProtocol::Required)
            .proxy_header_timeout(Duration::from_secs(2));
    }
    let server = Arc::new(
        builder
            .configure(|o| o.socket_timeout = timeout)
            .bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("{what}: bind: {e}"))?,
    );
    let address = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    let config = pki
        .server_config()
        .handshake_timeout(handshake)
        .build()
        .unwrap();
    let report: Report = Arc::default();
    let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    let accepting = {
        let (server, report, tasks) =
            (Arc::clone(&server), Arc::clone(&report), Arc::clone(&tasks));
        tokio::spawn(async move {
            while let Ok(socket) = server.accept().await {
                let task = tokio::spawn(serve(
                    socket,
                    config.clone(),
                    Arc::clone(&report),
                    Arc::clone(&server),
                ));
                tasks.lock().unwrap().push(task);
            }
        })
    };
    let tls13 = net_tests::tls::rustls_client(&pki.ca);
    let tls12 =
        net_tests::tls::rustls_client_config(&pki.ca, &[&tokio_rustls::rustls::version::TLS12]);
    let running: Vec<JoinHandle<Outcome>> = (0..clients)
        .map(|i| {
            tokio::spawn(client(
                seed * 1000 + i,
                i,
                address,
                proxy,
                Arc::clone(if rng.chance(3) { &tls12 } else { &tls13 }),
            ))
        })
        .collect();
    tokio::time::sleep(when).await;
    net_tests::stress::end_server(event, &server, &selector, grace, cap, &what).await?;
    let limit = Duration::from_secs(15);
    let mut outcomes = Vec::new();
    for running in running {
        outcomes.push(
            tokio::time::timeout(limit, running)
                .await
                .map_err(|_| format!("{what}: a client hung"))?
                .map_err(|e| format!("{what}: a client panicked: {e}"))?,
        );
    }
    // Every client has gone: the accept loop stops, and the connections' tasks end.
    accepting.abort();
    let _ = accepting.await;
    let started = Instant::now();
    let mut served_connections = 0u64;
    loop {
        let task = tasks.lock().unwrap().pop();
        let Some(task) = task else { break };
        served_connections += 1;
        tokio::time::timeout(limit.saturating_sub(started.elapsed()), task)
            .await
            .map_err(|_| format!("{what}: a connection's task hung"))?
            .map_err(|e| format!("{what}: a connection's task panicked: {e}"))?;
    }
    let report = report.lock().unwrap().clone();
    let ended_by_server = event != ServerEnd::Nothing || timeout.is_some();
    for o in &outcomes {
        let served = report.get(&o.orders.id).cloned().unwrap_or_default();
        let answers = o.received.windows(2).filter(|w| w == b"\r\n").count();
        let who = format!(
            "{what}: client {} {:?} ({:?}), {} TLS lines, {answers} answers read then {:?}; \
             server: {served:?}",
            o.orders.id, o.behaviour, o.orders, o.tls_lines, o.end
        );
        if !o.plain_expected.starts_with(&o.plain) {
            return Err(format!(
                "{who}: plain bytes that are not the answers' prefix: {:?}",
                String::from_utf8_lossy(&o.plain)
            ));
        }
        if served.injected_answered || String::from_utf8_lossy(&o.after_go_ahead).contains("250 ") {
            return Err(format!(
                "{who}: the line injected after STARTTLS was answered"
            ));
        }
        if o.behaviour != Behaviour::Inject
            && matches!(
                o.behaviour,
                Behaviour::Good | Behaviour::Slow | Behaviour::Stall
            )
            && !o.after_go_ahead.is_empty()
        {
            return Err(format!("{who}: plain bytes after the go-ahead"));
        }
        if o.behaviour == Behaviour::Inject {
            if o.upgraded || matches!(served.upgrade, Some(Ok(()))) {
                return Err(format!("{who}: a session began after an injected line"));
            }
            // Unless the server side ended it first, the upgrade failed on the injected line.
            if !ended_by_server
                && o.plain.ends_with(GO_AHEAD.as_bytes())
                && !matches!(&served.upgrade, Some(Err((_, _, true))))
            {
                return Err(format!(
                    "{who}: the injected line did not fail the handshake"
                ));
            }
        }
        if o.behaviour == Behaviour::Silent
            && !ended_by_server
            && o.plain.ends_with(GO_AHEAD.as_bytes())
            && !matches!(&served.upgrade, Some(Err((_, ErrorKind::TimedOut, false))))
        {
            return Err(format!("{who}: a silent client's upgrade did not time out"));
        }
        if o.behaviour == Behaviour::Garbage
            && !ended_by_server
            && o.plain.ends_with(GO_AHEAD.as_bytes())
            && !matches!(&served.upgrade, Some(Err((_, _, true))))
        {
            return Err(format!("{who}: garbage did not fail the handshake"));
        }
        // An upgraded connection counts once: among those open, never past the cap. (The end
        // of a shutdown's grace period, or the selector's close, may cut it as soon as its
        // handshake is done, before the count is read.)
        let open = served.open_after_upgrade;
        if matches!(served.upgrade, Some(Ok(())))
            && ((open == 0 && event == ServerEnd::Nothing) || open > cap)
        {
            return Err(format!("{who}: open {open} after the upgrade"));
        }
        if !o.expected.starts_with(&o.received) {
            return Err(format!(
                "{who}: TLS bytes that are not the answers' prefix: {:?}",
                String::from_utf8_lossy(&o.received)
            ));
        }
        if o.end == End::Clean
            && (answers != served.written || (answers > 0 && !o.received.ends_with(b"\r\n")))
        {
            return Err(format!("{who}: a clean end after answers were lost"));
        }
        let well_behaved = matches!(
            o.behaviour,
            Behaviour::Good | Behaviour::Slow | Behaviour::Stall | Behaviour::Eager
        ) && o.orders.ending == Ending::AtEnd;
        // (A client over the per-address cap is refused before the greeting.)
        let admitted = o.plain.starts_with(GREETING.as_bytes());
        if !ended_by_server
            && admitted
            && well_behaved
            && (o.end != End::Clean || answers != o.tls_lines)
        {
            return Err(format!("{who}: not served in full"));
        }
        if o.behaviour == Behaviour::PlainOnly
            && o.plain_clean
            && admitted
            && o.plain.len() != served.plain_written.max(GREETING.len())
        {
            return Err(format!("{who}: a clean plain end after answers were lost"));
        }
        if !ended_by_server
            && admitted
            && o.behaviour == Behaviour::PlainOnly
            && (!o.plain_clean || o.plain != o.plain_expected)
        {
            return Err(format!("{who}: a plain client not served in full"));
        }
    }
    let started = Instant::now();
    while server.stats().open != 0 {
        if started.elapsed() > limit {
            return Err(format!("{what}: {:?} at the end", server.stats()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stats = server.stats();
    if stats.accepted != served_connections {
        return Err(format!(
            "{what}: {stats:?}, but {served_connections} connections accepted"
        ));
    }
    if event == ServerEnd::Nothing {
        // Exactly the cap's places are free: `per_ip` for the one address when it is the
        // tighter cap (the next of it is refused), `cap` otherwise (the next waits).
        let places = per_ip.unwrap_or(cap);
        let mut held = Vec::new();
        for _ in 0..places {
            held.push(
                tokio::time::timeout(limit, hold(address, proxy))
                    .await
                    .map_err(|_| format!("{what}: a connect hung"))?
                    .map_err(|e| format!("{what}: connect: {e}"))?,
            );
        }
        let mut accepted = Vec::new();
        for _ in 0..places {
            accepted.push(
                tokio::time::timeout(limit, server.accept())
                    .await
                    .map_err(|_| format!("{what}: a free place was not given"))?
                    .map_err(|e| format!("{what}: accept: {e}"))?,
            );
        }
        let refused_before = server.stats().refused_per_ip;
        held.push(
            tokio::time::timeout(limit, hold(address, proxy))
                .await
                .map_err(|_| format!("{what}: a connect hung"))?
                .map_err(|e| format!("{what}: connect: {e}"))?,
        );
        let next = server.accept();
        tokio::pin!(next);
        if !net_tests::pending_after_one_poll(next.as_mut()).await {
            return Err(format!("{what}: more than the cap admitted"));
        }
        if per_ip.is_some_and(|p| p < cap) {
            // The listener reads the header, and refuses, as `accept` is polled.
            let refused = async {
                while server.stats().refused_per_ip == refused_before {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            };
            tokio::select! {
                accepted = &mut next => {
                    return Err(format!("{what}: more than the per-address cap admitted: {:?}",
                        accepted.map(|s| s.remote_address())));
                }
                () = refused => {}
                () = tokio::time::sleep(limit) => {
                    return Err(format!("{what}: the next of the address was not refused"));
                }
            }
        }
    }
    selector.close();
    Ok(())
}

/// The tests of this file one at a time: each counts the process's sockets.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// STARTTLS servers under chaos (`STCHAOS_SEED`, `STCHAOS_ROUNDS` choose the rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_starttls_server_under_misbehaving_clients_keeps_its_answers_exact() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let pki = net_tests::pki::Pki::generate();
    net_tests::stress::run_rounds("STCHAOS", 12, Duration::from_secs(30), |seed| {
        round(seed, &pki)
    })
    .await;
}

/// Python's `smtplib` (OpenSSL): EHLO, STARTTLS, EHLO, NOOP, QUIT; prints what it got.
const PYTHON_SMTP_CLIENT: &str = r#"
import smtplib, ssl, sys
port, ca, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
for i in range(rounds):
    s = smtplib.SMTP("localhost", port, timeout=5)
    code, _ = s.ehlo("python")
    assert code == 250 and s.has_extn("starttls"), (code, s.esmtp_features)
    code, msg = s.starttls(context=ctx)
    assert code == 220, (code, msg)
    code, _ = s.ehlo("python")
    assert code == 250, code
    code, msg = s.noop()
    assert (code, msg) == (250, b"noop"), (code, msg)
    code, msg = s.docmd("HELP", "me %d" % i)
    assert (code, msg) == (250, b"HELP me %d" % i), (code, msg)
    code, msg = s.quit()
    assert code == 221, (code, msg)
    print("ok", i, s.sock is None, flush=True)
print("done", flush=True)
"#;

/// Python's `smtplib.starttls()` against the server: every round upgrades, is answered under
/// TLS, and ends with `QUIT`; the listener counts every connection once and none stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn python_smtplib_starttls_against_the_server() {
    let _alone = ONE_AT_A_TIME.lock().await;
    if std::process::Command::new("python3")
        .arg("-c")
        .arg("import smtplib, ssl")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        net_tests::harness::skipped("python3 with smtplib and ssl is not there");
        return;
    }
    const ROUNDS: u64 = 5;
    let pki = net_tests::pki::Pki::generate();
    let files = pki.temp_files();
    let selector = SelectorManager::new();
    let server = Arc::new(
        a_socket(&selector)
            .tcp()
            .max_connections(2)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap(),
    );
    let port = server.port().unwrap();
    let config = pki.server_config().build().unwrap();
    let report: Report = Arc::default();
    let accepting = {
        let (server, report) = (Arc::clone(&server), Arc::clone(&report));
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            while let Ok(socket) = server.accept().await {
                tasks.push(tokio::spawn(serve(
                    socket,
                    config.clone(),
                    Arc::clone(&report),
                    Arc::clone(&server),
                )));
                if tasks.len() as u64 == ROUNDS {
                    break;
                }
            }
            for task in tasks {
                task.await.unwrap();
            }
        })
    };
    let python = tokio::task::spawn_blocking(move || {
        net_tests::harness::output(
            std::process::Command::new("python3")
                .arg("-c")
                .arg(PYTHON_SMTP_CLIENT)
                .arg(port.to_string())
                .arg(&files.ca)
                .arg(ROUNDS.to_string()),
        )
        .unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(60), python)
        .await
        .expect("python3 finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.ends_with("done\n"),
        "python3: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    tokio::time::timeout(Duration::from_secs(10), accepting)
        .await
        .expect("the connections' tasks ended")
        .unwrap();
    let served = report
        .lock()
        .unwrap()
        .get(&u64::MAX)
        .cloned()
        .unwrap_or_default();
    assert!(matches!(served.upgrade, Some(Ok(()))), "{served:?}");
    let started = Instant::now();
    while server.stats().open != 0 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.open), (ROUNDS, 0), "{stats:?}");
    selector.close();
}

/// The client's side of the injection: a plain line that follows the server's go-ahead (in the
/// same segment, as an attacker on the path adds it) is the handshake's first input, so our
/// client's upgrade fails with `Error::Handshake`, though a real TLS server follows; never a
/// session whose first bytes are that line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_injected_after_the_servers_go_ahead_fails_the_clients_handshake() {
    let pki = net_tests::pki::Pki::generate();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(net_tests::tls::rustls_server(&pki.server));
    let peer = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        tcp.write_all(GREETING.as_bytes()).await.unwrap();
        let mut command = Vec::new();
        read_until(
            &mut tcp,
            &mut command,
            &mut Vec::new(),
            b"\r\n",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(command, b"STARTTLS\r\n");
        tcp.write_all(b"220 go ahead\r\n250 injected\r\n")
            .await
            .unwrap();
        // A real TLS server follows: the client's handshake would succeed but for the line.
        let _ = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
    });
    let selector = SelectorManager::new();
    let socket = net_tests::loopback::connect(&selector, ("localhost", port)).await;
    let mut plain = socket.connection().unwrap();
    let greeting = net_tests::within(plain.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(greeting.unwrap().as_deref(), Some(GREETING.trim_end()));
    plain
        .output
        .write_string_utf8("STARTTLS\r\n")
        .await
        .unwrap();
    plain.output.flush().await.unwrap();
    let go = net_tests::within(plain.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(go.unwrap().as_deref(), Some(GO_AHEAD.trim_end()));
    let config = pki.client_config().build().unwrap();
    let upgraded = net_tests::within(plain.tls(config)).await;
    assert!(
        matches!(upgraded, Err(net_tls::Error::Handshake(_))),
        "{:?}",
        upgraded.map(|_| "a session")
    );
    net_tests::within(peer).await.unwrap();
    selector.close();
}

/// A listener's graceful shutdown counts each connection once, whatever its phase: one
/// upgraded (it honours the shutdown: finished, its client reading a clean end after every
/// answer), one whose handshake waits (cut at the end of the grace period) and one still
/// plain (cut too); nothing stays open after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_counts_upgraded_handshaking_and_plain_connections_once_each() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let pki = net_tests::pki::Pki::generate();
    let selector = SelectorManager::new();
    let server = Arc::new(
        a_socket(&selector)
            .tcp()
            .max_connections(3)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap(),
    );
    let address = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    let config = pki
        .server_config()
        .handshake_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let report: Report = Arc::default();
    let accepting = {
        let (server, report) = (Arc::clone(&server), Arc::clone(&report));
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            while let Ok(socket) = server.accept().await {
                tasks.push(tokio::spawn(serve(
                    socket,
                    config.clone(),
                    Arc::clone(&report),
                    Arc::clone(&server),
                )));
            }
            tasks
        })
    };
    let limit = Duration::from_secs(10);
    let orders = |id| Orders {
        id,
        ending: Ending::AtEnd,
        after: usize::MAX,
        flush_each: true,
        honour_shutdown: true,
    };
    // The upgraded one, with one answer under TLS.
    let mut tcp = TcpStream::connect(address).await.unwrap();
    let mut plain = Vec::new();
    tcp.write_all(format!("{}\r\nSTARTTLS\r\n", orders(1).line()).as_bytes())
        .await
        .unwrap();
    assert!(
        read_until(
            &mut tcp,
            &mut plain,
            &mut Vec::new(),
            GO_AHEAD.as_bytes(),
            limit
        )
        .await
    );
    let connector = tokio_rustls::TlsConnector::from(net_tests::tls::rustls_client(&pki.ca));
    let mut upgraded = net_tests::within(connector.connect(net_tests::tls::localhost(), tcp))
        .await
        .unwrap();
    upgraded.write_all(b"first\r\n").await.unwrap();
    let mut answer = [0; 11];
    net_tests::within(upgraded.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(&answer, b"250 first\r\n");
    // The one whose handshake waits for its ClientHello.
    let mut handshaking = TcpStream::connect(address).await.unwrap();
    handshaking
        .write_all(format!("{}\r\nSTARTTLS\r\n", orders(2).line()).as_bytes())
        .await
        .unwrap();
    let mut plain = Vec::new();
    assert!(
        read_until(
            &mut handshaking,
            &mut plain,
            &mut Vec::new(),
            GO_AHEAD.as_bytes(),
            limit
        )
        .await
    );
    // The plain one.
    let mut still_plain = TcpStream::connect(address).await.unwrap();
    still_plain
        .write_all(format!("{}\r\n", orders(3).line()).as_bytes())
        .await
        .unwrap();
    let mut plain = Vec::new();
    let wanted = format!("250 {}\r\n", orders(3).line());
    assert!(
        read_until(
            &mut still_plain,
            &mut plain,
            &mut Vec::new(),
            wanted.as_bytes(),
            limit
        )
        .await
    );
    assert_eq!(server.stats().open, 3, "{:?}", server.stats());
    let shutdown = net_tests::within(server.shutdown(Duration::from_millis(300))).await;
    assert_eq!((shutdown.finished, shutdown.cut), (1, 2), "{shutdown:?}");
    assert_eq!(server.stats().open, 0, "{:?}", server.stats());
    // The upgraded client read a clean end (`close_notify`).
    let mut rest = Vec::new();
    let end = net_tests::within(upgraded.read_to_end(&mut rest)).await;
    assert!(end.is_ok() && rest.is_empty(), "{end:?} {rest:?}");
    let tasks = net_tests::within(accepting).await.unwrap();
    for task in tasks {
        net_tests::within(task).await.unwrap();
    }
    let report = report.lock().unwrap().clone();
    assert!(matches!(report[&1].upgrade, Some(Ok(()))), "{report:?}");
    assert!(matches!(report[&2].upgrade, Some(Err(_))), "{report:?}");
    assert_eq!(report[&3].upgrade, None, "{report:?}");
    drop((handshaking, still_plain));
    selector.close();
}
