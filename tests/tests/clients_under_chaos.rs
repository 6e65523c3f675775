//! Our sockets as clients (`a_socket(..).tcp().connect(..)`, plain and `.tls(..)`) under many
//! concurrent, randomly misbehaving tokio servers.
//!
//! - Randomised but bounded (a seed per round, printed on failure; `CLCHAOS_SEED` and
//!   `CLCHAOS_ROUNDS` choose the rounds): each client gets a server of its own (a tokio
//!   listener, plain or tokio-rustls, on 127.0.0.1, 127.0.0.2 or `::1`) that answers a
//!   request/response protocol correctly, in 1-byte pieces, or all its answers ahead of the
//!   requests; half-closes after answering; resets (`SO_LINGER` 0) before, after or while
//!   answering; never reads; sends a stream of bytes with an over-long line in it; over TLS,
//!   stops mid-handshake, shows a certificate for another host, ends without `close_notify`, or
//!   sends bytes after it; or never accepts (a full backlog: `listen(1)` and held connects).
//!   Our clients use the channels (auto-flushing or not) or a `SocketStream`, with flush
//!   coalescing on or off, a random `connect_timeout` and `socket_timeout`, some from
//!   127.0.0.2 (`local_address`), some by name (`localhost`); some of those on channels have
//!   their socket closed by another task, and some rounds close the clients' selector as they
//!   run.
//! - Checked: every client's bytes are a prefix of what its server sends; a clean end has
//!   exactly every byte its server sent, and comes only from a server that ended cleanly; each
//!   failure is one of the documented typed errors (`Timeout` only with a timeout set, `Closed`
//!   only after our close, `SelectorClosed` only after the selector's, a reset, a TLS
//!   truncation or handshake error only from a server that made one); a connect past a full
//!   backlog ends with `Timeout`; a connect or handshake that ends after the selector's close
//!   returned gives a closed socket; a well-behaved server's client is served in full; no
//!   client hangs or panics; no descriptor is left behind.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, Socket, Transport, a_socket};
use net_tests::pki::{Pki, TestCa};
use net_tests::rng::Rng;
use net_tls::{TlsExt, Truncated};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// The line limit of our clients' reads.
const LIMIT: usize = 1024;

/// What a client's server does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Answers each request, then ends cleanly after the client's end.
    Good,
    /// As `Good`, writing its answers in pieces of 1 to 3 bytes.
    Pieces,
    /// Writes every answer before it reads a request, then reads to the end, then ends.
    Ahead,
    /// Writes every answer, half-closes (TLS: `close_notify`), then reads to the end.
    HalfClose,
    /// Resets the connection as soon as it has the first line.
    ResetBefore,
    /// Writes every answer, then resets.
    ResetAfter,
    /// Resets in the middle of an answer.
    ResetWhile,
    /// Never reads (the client's writes fill the buffers): a `socket_timeout` ends it.
    NeverRead,
    /// Sends bytes with an over-long line among them, then ends cleanly.
    LongLine,
    /// TLS: ends the stream after its answers without `close_notify`.
    NoCloseNotify,
    /// TLS: sends `close_notify` after its answers, then more bytes.
    AfterCloseNotify,
    /// TLS: reads part of the `ClientHello`, then ends (a FIN or a reset).
    MidHandshake,
    /// TLS: a certificate for another host.
    BadCertificate,
    /// Never accepts: its backlog is full, so the client's `connect_timeout` ends the connect.
    FullBacklog,
}

impl Mode {
    /// Whether the server ends its stream cleanly (FIN; TLS: `close_notify`) after every byte
    /// it sent.
    fn ends_cleanly(self) -> bool {
        matches!(
            self,
            Mode::Good | Mode::Pieces | Mode::Ahead | Mode::HalfClose | Mode::LongLine
        ) || self == Mode::AfterCloseNotify
    }
}

/// The answer to request `i`.
fn answer(i: usize, pad: usize) -> String {
    format!("ans {i} {}\n", "a".repeat(pad))
}

/// What the server sent with success: its bytes, and whether it ended cleanly after them.
#[derive(Debug, Default)]
struct Sent {
    bytes: Vec<u8>,
    clean: bool,
}

/// A server's stream, plain or TLS.
trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP stream under it.
    fn tcp(self: Box<Self>) -> TcpStream;
}

impl PeerIo for TcpStream {
    fn tcp(self: Box<Self>) -> TcpStream {
        *self
    }
}

impl PeerIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(self: Box<Self>) -> TcpStream {
        self.into_inner().0
    }
}

/// Reads one line (without its `\n`) from `io`, a byte at a time; `None` at the end or an error.
async fn server_line(io: &mut Box<dyn PeerIo>) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    loop {
        match io.read(&mut byte).await {
            Ok(1) if byte[0] == b'\n' => return Some(String::from_utf8_lossy(&line).into_owned()),
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
}

/// Reads and throws away everything until the end (or an error).
async fn drain(io: &mut Box<dyn PeerIo>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Writes `bytes` and notes them as sent when the write succeeded.
async fn send(io: &mut Box<dyn PeerIo>, sent: &mut Sent, bytes: &[u8]) -> bool {
    if io.write_all(bytes).await.is_ok() && io.flush().await.is_ok() {
        sent.bytes.extend_from_slice(bytes);
        true
    } else {
        false
    }
}

/// A server's plan, from its seed.
#[derive(Clone, Debug)]
struct Plan {
    mode: Mode,
    pad: usize,
    reset_at: usize,
    garbage: Vec<u8>,
    fin_mid_handshake: bool,
    handshake_cut: usize,
}

/// One server: accepts one connection (or none, `FullBacklog`) and does what `plan` says;
/// reports what it sent. `stop` ends it (a `NeverRead` or `FullBacklog` server holds its
/// connections until then). A `FullBacklog` server tells `full` once its queue is full (it is
/// dropped untold where a loaded machine kept the queue from filling).
async fn server(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    plan: Plan,
    stop: oneshot::Receiver<()>,
    full: oneshot::Sender<()>,
) -> Sent {
    let mut full = Some(full);
    let mut sent = Sent::default();
    let mut stop = stop;
    if plan.mode == Mode::FullBacklog {
        // `listen(1)` was asked for: fill the queue (Linux takes one more than the backlog).
        // The queue is full once a connect does not complete.
        let address = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(address))
                .await
            {
                Ok(Ok(s)) => held.push(s),
                Ok(Err(_)) => break,
                Err(_) => {
                    if let Some(full) = full.take() {
                        let _ = full.send(());
                    }
                    break;
                }
            }
        }
        drop(full);
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut stop).await;
        drop(held);
        return sent;
    }
    let accepted = tokio::select! {
        a = listener.accept() => a,
        _ = &mut stop => return sent,
    };
    let Ok((tcp, _)) = accepted else {
        return sent;
    };
    drop(listener);
    let mut io: Box<dyn PeerIo> = match acceptor {
        None => Box::new(tcp),
        Some(acceptor) => {
            if plan.mode == Mode::MidHandshake {
                let mut tcp = tcp;
                let mut buf = vec![0u8; plan.handshake_cut.max(1)];
                let _ = tcp.read(&mut buf).await;
                if plan.fin_mid_handshake {
                    drop(tcp);
                } else {
                    net_tests::fault::reset(tcp);
                }
                return sent;
            }
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Box::new(s),
                _ => return sent,
            }
        }
    };
    let Some(hello) = server_line(&mut io).await else {
        return sent;
    };
    let n: usize = hello
        .strip_prefix("hello ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let all: Vec<u8> = (0..n)
        .flat_map(|i| answer(i, plan.pad).into_bytes())
        .collect();
    match plan.mode {
        Mode::Good | Mode::Pieces => {
            for i in 0..n {
                if server_line(&mut io).await.is_none() {
                    return sent;
                }
                let a = answer(i, plan.pad).into_bytes();
                if plan.mode == Mode::Pieces {
                    let mut at = 0;
                    while at < a.len() {
                        let len = (1 + (i + at) % 3).min(a.len() - at);
                        if !send(&mut io, &mut sent, &a[at..at + len]).await {
                            return sent;
                        }
                        at += len;
                        if at % 7 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                } else if !send(&mut io, &mut sent, &a).await {
                    return sent;
                }
            }
            drain(&mut io).await;
            sent.clean = io.shutdown().await.is_ok();
        }
        Mode::Ahead => {
            if !send(&mut io, &mut sent, &all).await {
                return sent;
            }
            drain(&mut io).await;
            sent.clean = io.shutdown().await.is_ok();
        }
        Mode::HalfClose => {
            if !send(&mut io, &mut sent, &all).await {
                return sent;
            }
            sent.clean = io.shutdown().await.is_ok();
            drain(&mut io).await;
        }
        Mode::ResetBefore => net_tests::fault::reset(io.tcp()),
        Mode::ResetAfter | Mode::ResetWhile => {
            let upto = if plan.mode == Mode::ResetAfter {
                all.len()
            } else {
                plan.reset_at.min(all.len())
            };
            let _ = send(&mut io, &mut sent, &all[..upto]).await;
            net_tests::fault::reset(io.tcp());
        }
        Mode::NeverRead => {
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut stop).await;
        }
        Mode::LongLine => {
            if send(&mut io, &mut sent, &plan.garbage).await {
                sent.clean = io.shutdown().await.is_ok();
            }
            drain(&mut io).await;
        }
        Mode::NoCloseNotify => {
            if send(&mut io, &mut sent, &all).await {
                // A FIN without `close_notify`.
                let mut tcp = io.tcp();
                let _ = tcp.shutdown().await;
                let _ = tokio::time::timeout(Duration::from_secs(10), &mut stop).await;
            }
        }
        Mode::AfterCloseNotify => {
            if send(&mut io, &mut sent, &all).await && io.shutdown().await.is_ok() {
                sent.clean = true;
                let mut tcp = io.tcp();
                let _ = tcp.write_all(&plan.garbage).await;
                let _ = tokio::time::timeout(Duration::from_secs(10), &mut stop).await;
            }
        }
        Mode::MidHandshake | Mode::BadCertificate | Mode::FullBacklog => {
            drain(&mut io).await;
        }
    }
    sent
}

/// A failure, as its type says.
fn class(e: &net_sockets::Error) -> String {
    use net_sockets::Error;
    match e {
        Error::Timeout | Error::Channel(net_io::Error::Timeout) => "timeout".into(),
        Error::Closed => "closed".into(),
        Error::SelectorClosed => "selector closed".into(),
        Error::Channel(net_io::Error::TooLongLine { .. }) => "too long".into(),
        _ => {
            if let Some(inner) = e.inner_error() {
                if inner.is::<Truncated>() {
                    return "truncated".into();
                }
                if let Some(tls) = inner.downcast_ref::<net_tls::rustls::Error>() {
                    return format!("tls {tls:?}");
                }
            }
            match e.kind() {
                ErrorKind::ConnectionReset => "reset".into(),
                ErrorKind::BrokenPipe => "broken pipe".into(),
                ErrorKind::ConnectionRefused => "refused".into(),
                _ => format!("other {e:?}"),
            }
        }
    }
}

/// A TLS upgrade's failure, as its type says.
fn tls_class(e: &net_tls::Error) -> String {
    match e {
        net_tls::Error::Handshake(net_tls::rustls::Error::InvalidCertificate(_)) => {
            "bad certificate".into()
        }
        net_tls::Error::Handshake(_) => "handshake".into(),
        net_tls::Error::HandshakeTimeout(_) => "timeout".into(),
        net_tls::Error::Socket(e) => class(e),
        _ => format!("other {e:?}"),
    }
}

/// How a client ended.
#[derive(Debug, PartialEq)]
enum End {
    /// It read a clean end.
    Clean,
    /// A failure (its class).
    Failed(String),
}

/// What a client saw.
#[derive(Debug)]
struct Outcome {
    received: Vec<u8>,
    end: End,
    /// The class of a failed write (or flush, or half-close).
    write: Option<String>,
}

/// What a client does.
#[derive(Clone, Debug)]
struct ClientPlan {
    requests: usize,
    stream: bool,
    auto_flush: bool,
    coalesce: bool,
    socket_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    close_after: Option<Duration>,
    request_pad: usize,
}

/// The client's requests.
fn requests(plan: &ClientPlan) -> Vec<u8> {
    let mut wire = format!("hello {}\n", plan.requests).into_bytes();
    for i in 0..plan.requests {
        wire.extend_from_slice(format!("req {i} {}\n", "r".repeat(plan.request_pad)).as_bytes());
    }
    wire
}

/// Reads and writes over the channels of `socket`, which another task closes after
/// `plan.close_after`.
async fn over_channels<T: Transport>(
    mut socket: Socket<T>,
    plan: &ClientPlan,
) -> Result<Outcome, String> {
    let (mut input, mut output) = match (
        socket.open_read_channel(),
        socket.open_write_channel(plan.auto_flush),
    ) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => {
            return Ok(Outcome {
                received: Vec::new(),
                end: End::Failed(class(&e)),
                write: None,
            });
        }
    };
    let socket = Arc::new(socket);
    let _closer = plan.close_after.map(|after| {
        let socket = Arc::clone(&socket);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            socket.close();
        })
    });
    let wire = requests(plan);
    let writer = async {
        for chunk in wire.chunks(1000) {
            if let Err(e) = output.write_fully(chunk).await {
                return Some(class(&e.into()));
            }
        }
        output
            .flush_and_close()
            .await
            .err()
            .map(|e| class(&e.into()))
    };
    let reader = async {
        let mut received = Vec::new();
        let end = loop {
            match input.read_line(LIMIT, LineEnding::Default).await {
                Ok(Some(line)) => {
                    received.extend_from_slice(line.as_bytes());
                    received.push(b'\n');
                }
                Ok(None) => break End::Clean,
                Err(e) => break End::Failed(class(&e.into())),
            }
        };
        (received, end)
    };
    let (write, (received, end)) = tokio::join!(writer, reader);
    Ok(Outcome {
        received,
        end,
        write,
    })
}

/// Reads and writes over a `SocketStream`.
async fn over_stream<T: Transport>(socket: Socket<T>, plan: &ClientPlan) -> Result<Outcome, String>
where
    net_sockets::SocketStream<T>: AsyncRead + AsyncWrite + Unpin,
{
    let stream = match socket.into_stream() {
        Ok(s) => s,
        Err(e) => {
            return Ok(Outcome {
                received: Vec::new(),
                end: End::Failed(class(&e)),
                write: None,
            });
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let wire = requests(plan);
    let writer = async {
        for chunk in wire.chunks(1000) {
            if let Err(e) = wr.write_all(chunk).await {
                return Some(class(&e.into()));
            }
        }
        wr.shutdown().await.err().map(|e| class(&e.into()))
    };
    let reader = async {
        let mut received = Vec::new();
        let mut buf = vec![0u8; 4096];
        let end = loop {
            match rd.read(&mut buf).await {
                Ok(0) => break End::Clean,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => break End::Failed(class(&e.into())),
            }
        };
        (received, end)
    };
    let (write, (received, end)) = tokio::join!(writer, reader);
    Ok(Outcome {
        received,
        end,
        write,
    })
}

/// Runs the client's exchange on `socket` (over the channels, another task closes it after
/// `close_after`).
async fn exchange<T: Transport>(socket: Socket<T>, plan: &ClientPlan) -> Result<Outcome, String>
where
    net_sockets::SocketStream<T>: AsyncRead + AsyncWrite + Unpin,
{
    if plan.stream {
        return over_stream(socket, plan).await;
    }
    over_channels(socket, plan).await
}

/// A whole client: its server, its connect, its exchange; checks its outcome.
async fn client(
    seed: u64,
    selector: SelectorManager,
    pki: Arc<Pki>,
    other_ca: Arc<TestCa>,
    tls: bool,
    selector_closes: bool,
    selector_closed: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let modes: &[Mode] = if tls {
        &[
            Mode::Good,
            Mode::Good,
            Mode::Pieces,
            Mode::Ahead,
            Mode::HalfClose,
            Mode::ResetBefore,
            Mode::ResetAfter,
            Mode::ResetWhile,
            Mode::NeverRead,
            Mode::LongLine,
            Mode::NoCloseNotify,
            Mode::AfterCloseNotify,
            Mode::MidHandshake,
            Mode::BadCertificate,
            Mode::FullBacklog,
        ]
    } else {
        &[
            Mode::Good,
            Mode::Good,
            Mode::Pieces,
            Mode::Ahead,
            Mode::HalfClose,
            Mode::ResetBefore,
            Mode::ResetAfter,
            Mode::ResetWhile,
            Mode::NeverRead,
            Mode::LongLine,
            Mode::FullBacklog,
        ]
    };
    let mode = modes[rng.below(modes.len() as u64) as usize];
    let mut garbage = Vec::new();
    for _ in 0..rng.below(20) {
        garbage.extend((0..rng.below(100)).map(|_| b'!' + rng.below(90) as u8));
        garbage.push(b'\n');
    }
    let long = LIMIT + 1 + rng.below(3000) as usize;
    garbage.extend(std::iter::repeat_n(b'x', long));
    garbage.extend_from_slice(b"\nafter\n");
    let plan = Plan {
        mode,
        pad: rng.below(300) as usize,
        reset_at: rng.below(2000) as usize,
        garbage,
        fin_mid_handshake: rng.chance(2),
        handshake_cut: 1 + rng.below(100) as usize,
    };
    let never_read = mode == Mode::NeverRead;
    let cplan = ClientPlan {
        requests: if never_read {
            200 + rng.below(200) as usize
        } else {
            rng.below(40) as usize
        },
        stream: rng.chance(2),
        auto_flush: rng.chance(2),
        coalesce: rng.chance(2),
        socket_timeout: if never_read || rng.chance(4) {
            Some(Duration::from_millis(50 + rng.below(250)))
        } else {
            None
        },
        connect_timeout: if mode == Mode::FullBacklog || rng.chance(3) {
            Some(Duration::from_millis(
                if mode == Mode::FullBacklog { 20 } else { 2000 } + rng.below(200),
            ))
        } else {
            None
        },
        close_after: rng.chance(8).then(|| Duration::from_millis(rng.below(30))),
        request_pad: if never_read {
            4000
        } else {
            rng.below(200) as usize
        },
    };
    let family = rng.below(3);
    let ip: std::net::IpAddr = match family {
        0 => [127, 0, 0, 1].into(),
        1 => [127, 0, 0, 2].into(),
        _ if net_tests::loopback::has_ipv6_loopback() => std::net::Ipv6Addr::LOCALHOST.into(),
        _ => [127, 0, 0, 1].into(),
    };
    let what = format!("client seed {seed}: {mode:?} tls {tls} on {ip}, {cplan:?}");
    let listening = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .unwrap();
    if never_read {
        listening.set_recv_buffer_size(4096).unwrap();
    }
    listening.bind(SocketAddr::new(ip, 0)).unwrap();
    let address = listening.local_addr().unwrap();
    let listener = listening
        .listen(if mode == Mode::FullBacklog { 1 } else { 4 })
        .unwrap();
    let acceptor = tls.then(|| {
        let leaf = if mode == Mode::BadCertificate {
            if rng.chance(2) {
                pki.ca.wrong_host_server()
            } else {
                other_ca.server(&["localhost"])
            }
        } else {
            pki.ca.server(&["localhost"])
        };
        tokio_rustls::TlsAcceptor::from(net_tests::tls::rustls_server(&leaf))
    });
    let (stop, stopped) = oneshot::channel();
    let (full, filled) = oneshot::channel();
    let serving = tokio::spawn(server(listener, acceptor, plan.clone(), stopped, full));
    // The server's queue is full before the client connects (`FullBacklog`).
    let backlog_full = mode == Mode::FullBacklog
        && tokio::time::timeout(Duration::from_secs(10), filled)
            .await
            .is_ok_and(|told| told.is_ok());
    // Some clients connect from 127.0.0.2, some by name (`localhost` is 127.0.0.1 here).
    let from = (ip.is_ipv4() && rng.chance(3)).then(|| SocketAddr::from(([127, 0, 0, 2], 0)));
    let by_name = ip == std::net::IpAddr::from([127, 0, 0, 1])
        && rng.chance(3)
        && std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0))
            .is_ok_and(|mut all| all.all(|a| a.ip() == ip));
    let what = format!("{what}, from {from:?}, by name {by_name}");
    let mut builder = a_socket(&selector).tcp().coalesce_flushes(cplan.coalesce);
    if let Some(t) = cplan.socket_timeout {
        builder = builder.socket_timeout(t);
    }
    if let Some(t) = cplan.connect_timeout {
        builder = builder.connect_timeout(t);
    }
    if never_read {
        builder = builder.send_buffer_size(4096);
    }
    if let Some(from) = from {
        builder = builder.local_address(from);
    }
    let started = Instant::now();
    let connected = if by_name {
        builder.connect(("localhost", address.port())).await
    } else {
        builder.connect(address).await
    };
    // A connect that ends after the selector's close returned gives no open socket.
    if let Ok(socket) = &connected
        && selector_closed.load(Ordering::SeqCst)
        && !socket.is_closed()
    {
        return Err(format!(
            "{what}: a socket connected after its selector's close is open"
        ));
    }
    if let (Ok(socket), Some(from)) = (&connected, from) {
        let local = socket.local_address().as_inet().map(|a| a.ip());
        if local != Some(from.ip()) {
            return Err(format!("{what}: connected from {local:?}, not {from}"));
        }
    }
    let outcome = match connected {
        Err(e) => Outcome {
            received: Vec::new(),
            end: End::Failed(format!("connect {}", class(&e))),
            write: None,
        },
        Ok(socket) => {
            if tls {
                let config = pki
                    .ca
                    .client_config()
                    .server_name("localhost")
                    .handshake_timeout(Duration::from_secs(3))
                    .build()
                    .unwrap();
                match socket.tls(config).await {
                    Ok(tls) if selector_closed.load(Ordering::SeqCst) && !tls.is_closed() => {
                        return Err(format!(
                            "{what}: a handshake ended after its selector's close left it open"
                        ));
                    }
                    Ok(tls) => exchange(tls, &cplan).await?,
                    Err(e) => Outcome {
                        received: Vec::new(),
                        end: End::Failed(format!("handshake {}", tls_class(&e))),
                        write: None,
                    },
                }
            } else {
                exchange(socket, &cplan).await?
            }
        }
    };
    let took = started.elapsed();
    let _ = stop.send(());
    let sent = tokio::time::timeout(Duration::from_secs(15), serving)
        .await
        .map_err(|_| format!("{what}: the server hung"))?
        .map_err(|e| format!("{what}: the server panicked: {e}"))?;
    let who = format!(
        "{what}: {:?} (write {:?}), {} bytes read of {} sent (clean {}), after {took:?}",
        outcome.end,
        outcome.write,
        outcome.received.len(),
        sent.bytes.len(),
        sent.clean
    );
    // The bytes: a prefix of what the server sent.
    if !sent.bytes.starts_with(&outcome.received) {
        return Err(format!(
            "{who}: bytes that are not the server's: {:?}",
            String::from_utf8_lossy(&outcome.received)
        ));
    }
    let events = selector_closes || cplan.close_after.is_some();
    match &outcome.end {
        End::Clean => {
            if !sent.clean || !mode.ends_cleanly() {
                return Err(format!("{who}: a clean end from a server that made none"));
            }
            if outcome.received.len() != sent.bytes.len() {
                return Err(format!("{who}: a clean end after bytes were lost"));
            }
            if !cplan.stream && mode == Mode::LongLine {
                return Err(format!("{who}: an over-long line went unreported"));
            }
        }
        End::Failed(class) => {
            let class = class
                .strip_prefix("connect ")
                .or_else(|| class.strip_prefix("handshake "))
                .unwrap_or(class);
            let allowed = match class {
                "timeout" => {
                    cplan.socket_timeout.is_some()
                        || cplan.connect_timeout.is_some()
                        || (tls && mode == Mode::MidHandshake)
                }
                "closed" => cplan.close_after.is_some(),
                "selector closed" => selector_closes,
                "too long" => mode == Mode::LongLine && !cplan.stream,
                "reset" | "broken pipe" => matches!(
                    mode,
                    Mode::ResetBefore
                        | Mode::ResetAfter
                        | Mode::ResetWhile
                        | Mode::MidHandshake
                        | Mode::NeverRead
                ),
                "truncated" => {
                    tls && matches!(
                        mode,
                        Mode::NoCloseNotify
                            | Mode::ResetBefore
                            | Mode::ResetAfter
                            | Mode::ResetWhile
                            | Mode::MidHandshake
                    )
                }
                "bad certificate" => mode == Mode::BadCertificate,
                "handshake" => mode == Mode::MidHandshake || events,
                c if c.starts_with("tls ") => tls && mode == Mode::AfterCloseNotify,
                _ => false,
            };
            if !allowed {
                return Err(format!("{who}: an error this server cannot cause"));
            }
        }
    }
    if let Some(write) = &outcome.write {
        let ok = match write.as_str() {
            "timeout" => cplan.socket_timeout.is_some(),
            "closed" => cplan.close_after.is_some(),
            "selector closed" => selector_closes,
            "reset" | "broken pipe" => !matches!(mode, Mode::Good | Mode::Pieces | Mode::Ahead),
            _ => false,
        };
        if !ok {
            return Err(format!("{who}: a write failure this server cannot cause"));
        }
    }
    // A well-behaved server, nothing closed, no timeouts: served in full.
    let calm = !events && cplan.socket_timeout.is_none();
    if calm
        && matches!(
            mode,
            Mode::Good | Mode::Pieces | Mode::Ahead | Mode::HalfClose
        )
        && (outcome.end != End::Clean
            || outcome.write.is_some()
            || sent.bytes.len() != (0..cplan.requests).map(|i| answer(i, plan.pad).len()).sum())
    {
        return Err(format!("{who}: not served in full"));
    }
    if backlog_full && !selector_closes && outcome.end != End::Failed("connect timeout".into()) {
        return Err(format!(
            "{who}: a connect past a full backlog that did not time out"
        ));
    }
    Ok(())
}

async fn round(seed: u64, pki: &Arc<Pki>, other_ca: &Arc<TestCa>) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let clients = 4 + rng.below(12);
    let close_selector = rng.chance(5).then(|| Duration::from_millis(rng.below(80)));
    let selector = SelectorManager::new();
    let selector_closed = Arc::new(AtomicBool::new(false));
    let running: Vec<_> = (0..clients)
        .map(|i| {
            let tls = rng.chance(2);
            tokio::spawn(client(
                seed * 1000 + i,
                selector.clone(),
                Arc::clone(pki),
                Arc::clone(other_ca),
                tls,
                close_selector.is_some(),
                Arc::clone(&selector_closed),
            ))
        })
        .collect();
    if let Some(after) = close_selector {
        tokio::time::sleep(after).await;
        selector.close();
        selector_closed.store(true, Ordering::SeqCst);
    }
    let mut failures = Vec::new();
    for running in running {
        match tokio::time::timeout(Duration::from_secs(20), running).await {
            Err(_) => failures.push(format!("round {seed}: a client hung")),
            Ok(Err(e)) => failures.push(format!("round {seed}: a client panicked: {e}")),
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Ok(Ok(()))) => {}
        }
    }
    selector.close();
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn our_clients_against_misbehaving_servers_keep_their_bytes_and_errors_exact() {
    let pki = Arc::new(Pki::generate());
    let other_ca = Arc::new(TestCa::new("other"));
    let (pki, other_ca) = (&pki, &other_ca);
    net_tests::stress::run_rounds("CLCHAOS", 16, Duration::from_secs(30), |seed| async move {
        let failures = round(seed, pki, other_ca).await;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    })
    .await;
}
