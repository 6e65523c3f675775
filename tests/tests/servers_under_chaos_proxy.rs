//! A line server behind a PROXY protocol header (required, optional or off), with a
//! `max_connections_per_ip` cap, on TCP and on a Unix listener, under concurrent clients that
//! send a valid header (v1 or v2) then requests, a header cut short, garbage instead of a
//! header, a header then a reset, a header too slowly (past `proxy_header_timeout`), or no
//! header at all (where that is allowed).
//!
//! - Randomised but bounded (a seed per round, printed on failure; `CHAOS_SEED` and
//!   `CHAOS_ROUNDS` choose the rounds, a round takes about 0.5 s).
//! - Checked: a client the listener admitted gets exactly its answers and a clean end, and its
//!   connection reports the address its header named (without one, the real peer); one it
//!   refused or dropped reads no byte; the listener counts at least the refusals and header
//!   failures that are certain, and no more than could be; no task hangs; nothing stays open;
//!   then, deterministically, exactly `cap` connections per address are admitted (the next of
//!   that address is refused, another address's admitted), and once they close the next
//!   `cap` are admitted again; no descriptor is left behind.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{ProxyProtocol, SelectorManager, ServerSocket, UnixSocketAddress, a_socket};
use net_tests::rng::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

/// The client address a header names, or the source a TCP client binds, by index.
fn named(index: u64, off: bool) -> Ipv4Addr {
    if off {
        Ipv4Addr::new(127, 0, 0, 1 + u8::try_from(index).unwrap())
    } else {
        Ipv4Addr::new(192, 0, 2, 1 + u8::try_from(index).unwrap())
    }
}

/// A v1 header naming `ip`.
fn v1(ip: Ipv4Addr) -> Vec<u8> {
    format!("PROXY TCP4 {ip} 127.0.0.1 4242 9002\r\n").into_bytes()
}

/// A v2 header naming `ip`.
fn v2(ip: Ipv4Addr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&ip.octets());
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&4242u16.to_be_bytes());
    header.extend_from_slice(&9002u16.to_be_bytes());
    header
}

/// What the server's connections saw, by the client's id: the client's IP address.
type Seen = Arc<Mutex<HashMap<u64, Option<IpAddr>>>>;

/// A connection's task: the first line `id K` is answered `hi K` (and its remote address
/// recorded), each line after it `> line`; at the end of the stream it flushes and closes.
async fn serve(socket: net_sockets::Socket, seen: Seen) {
    let ip = socket.remote_address().as_inet().map(|a| a.ip());
    let Ok(mut conn) = socket.connection() else {
        return;
    };
    loop {
        let reply = match conn.input.read_line(256, LineEnding::Default).await {
            Ok(Some(line)) => match line.strip_prefix("id ").and_then(|k| k.parse().ok()) {
                Some(id) => {
                    seen.lock().unwrap().insert(id, ip);
                    format!("hi {id}\n")
                }
                None => format!("> {line}\n"),
            },
            Ok(None) => {
                let _ = conn.output.flush_and_close().await;
                conn.socket.close();
                return;
            }
            Err(_) => {
                conn.socket.close();
                return;
            }
        };
        if conn.output.write_string_utf8(&reply).await.is_err()
            || conn.output.flush().await.is_err()
        {
            conn.socket.close();
            return;
        }
    }
}

/// What a client does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    /// A valid header (v1 or v2; none when the listener's protocol is off), then requests, a
    /// half-close, and reads everything.
    Valid,
    /// No header: requests at once (only where the header is optional).
    NoHeader,
    /// A piece of a header (at least its whole signature), then a half-close.
    Cut,
    /// Bytes that are no header (only where the header is required).
    Garbage,
    /// A whole header, then a reset.
    HeaderThenReset,
    /// A header a byte at a time, slower than the header timeout.
    Slow,
}

/// The listener's mode in a round.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Off,
    Optional,
    Required,
}

/// The client's stream.
enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Stream {
    fn io(&mut self) -> &mut dyn IoBoth {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    /// Ends the connection with a reset (a Unix socket only closes).
    fn reset(self) {
        match self {
            Stream::Tcp(s) => net_tests::fault::reset(s),
            Stream::Unix(s) => drop(s),
        }
    }
}

/// A client's stream, either kind.
trait IoBoth: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoBoth for T {}

/// Where the listener is.
#[derive(Clone, Debug)]
enum Target {
    Tcp(u16),
    Unix(std::path::PathBuf),
}

async fn connect(target: &Target, source: Ipv4Addr) -> std::io::Result<Stream> {
    match target {
        Target::Tcp(port) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((source, 0).into())?;
            Ok(Stream::Tcp(
                socket.connect((Ipv4Addr::LOCALHOST, *port).into()).await?,
            ))
        }
        Target::Unix(path) => Ok(Stream::Unix(tokio::net::UnixStream::connect(path).await?)),
    }
}

/// What a client saw.
#[derive(Debug)]
struct Outcome {
    behaviour: Behaviour,
    id: u64,
    ip: Option<Ipv4Addr>,
    received: Vec<u8>,
    expected: Vec<u8>,
    clean: bool,
    /// Whether a valid header was sent so late that it may have missed its deadline.
    late: bool,
}

/// Reads until the end, an error, or `limit`; whether the end was clean.
async fn read_to_end(stream: &mut Stream, received: &mut Vec<u8>, limit: Duration) -> bool {
    let started = Instant::now();
    let mut buf = [0; 4096];
    while started.elapsed() < limit {
        match tokio::time::timeout(Duration::from_millis(50), stream.io().read(&mut buf)).await {
            Ok(Ok(0)) => return true,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => return false,
            Err(_) => {}
        }
    }
    false
}

#[allow(clippy::too_many_arguments)]
async fn client(
    seed: u64,
    id: u64,
    target: Target,
    mode: Mode,
    addresses: u64,
    header_timeout: Duration,
) -> Outcome {
    let mut rng = Rng::new(seed);
    let choices: &[Behaviour] = match mode {
        Mode::Off => &[Behaviour::Valid],
        Mode::Optional => &[
            Behaviour::Valid,
            Behaviour::Valid,
            Behaviour::NoHeader,
            Behaviour::Cut,
            Behaviour::HeaderThenReset,
            Behaviour::Slow,
        ],
        Mode::Required => &[
            Behaviour::Valid,
            Behaviour::Valid,
            Behaviour::Cut,
            Behaviour::Garbage,
            Behaviour::HeaderThenReset,
            Behaviour::Slow,
        ],
    };
    let behaviour = choices[rng.below(choices.len() as u64) as usize];
    let ip = named(rng.below(addresses), mode == Mode::Off);
    let header = if mode == Mode::Off || behaviour == Behaviour::NoHeader {
        Vec::new()
    } else if rng.chance(2) {
        v1(ip)
    } else {
        v2(ip)
    };
    let requests = rng.below(20);
    let mut wire = format!("id {id}\n").into_bytes();
    let mut expected = format!("hi {id}\n").into_bytes();
    for i in 0..requests {
        wire.extend_from_slice(format!("request {i}\n").as_bytes());
        expected.extend_from_slice(format!("> request {i}\n").as_bytes());
    }
    let mut outcome = Outcome {
        behaviour,
        id,
        // The address the cap counts: a header's, or a TCP client's own.
        ip: match behaviour {
            Behaviour::Valid | Behaviour::HeaderThenReset | Behaviour::Slow
                if mode != Mode::Off || matches!(target, Target::Tcp(_)) =>
            {
                Some(ip)
            }
            Behaviour::NoHeader if matches!(target, Target::Tcp(_)) => Some(Ipv4Addr::LOCALHOST),
            _ => None,
        },
        received: Vec::new(),
        expected,
        clean: false,
        late: false,
    };
    let source = if mode == Mode::Off {
        ip
    } else {
        Ipv4Addr::LOCALHOST
    };
    let started = Instant::now();
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(5), connect(&target, source)).await
    else {
        return outcome;
    };
    let limit = Duration::from_secs(5);
    match behaviour {
        Behaviour::Valid | Behaviour::NoHeader => {
            let mut all = header;
            all.extend_from_slice(&wire);
            // Never within a signature: an optional header's would be taken as no header
            // if the timeout passed there.
            let cut = match rng.below(all.len() as u64) as usize {
                cut if cut < 12 => 0,
                cut => cut,
            };
            let (first, second) = all.split_at(cut);
            let _ = stream.io().write_all(first).await;
            if rng.chance(2) {
                tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
            }
            let _ = stream.io().write_all(second).await;
            // A header sent that late (a loaded machine) may have missed its deadline.
            outcome.late = started.elapsed() > header_timeout / 2;
            let _ = stream.io().shutdown().await;
            outcome.clean = read_to_end(&mut stream, &mut outcome.received, limit).await;
        }
        Behaviour::Cut => {
            let signature = if header.starts_with(b"PROXY") { 5 } else { 12 };
            let cut = signature + rng.below((header.len() - signature) as u64) as usize;
            let _ = stream.io().write_all(&header[..cut]).await;
            if rng.chance(2) {
                let _ = stream.io().shutdown().await;
            }
            outcome.clean = read_to_end(&mut stream, &mut outcome.received, limit).await;
        }
        Behaviour::Garbage => {
            let garbage: &[u8] = [
                &b"GET / HTTP/1.0\r\n\r\n"[..],
                b"PROXI TCP4\r\n",
                b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c",
                b"PROXY TCP4 not an address\r\n",
                b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x00",
            ][rng.below(5) as usize];
            let _ = stream.io().write_all(garbage).await;
            let _ = stream.io().write_all(&wire).await;
            if rng.chance(2) {
                let _ = stream.io().shutdown().await;
            }
            outcome.clean = read_to_end(&mut stream, &mut outcome.received, limit).await;
        }
        Behaviour::HeaderThenReset => {
            let _ = stream.io().write_all(&header).await;
            if rng.chance(2) {
                let _ = stream.io().write_all(&wire).await;
            }
            if rng.chance(2) {
                tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
            }
            stream.reset();
            return outcome;
        }
        Behaviour::Slow => {
            // The signature at once (an optional header is then cut short, not absent), the
            // rest a byte at a time, the whole taking at least one and a half times the timeout.
            let signature = if header.starts_with(b"PROXY") { 5 } else { 12 };
            let _ = stream.io().write_all(&header[..signature]).await;
            let pause = header_timeout * 3 / 2 / u32::try_from(header.len() - signature).unwrap();
            let started = Instant::now();
            for byte in &header[signature..] {
                if stream.io().write_all(&[*byte]).await.is_err() || started.elapsed() > limit {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let _ = stream.io().write_all(&wire).await;
            let _ = stream.io().shutdown().await;
            outcome.clean = read_to_end(&mut stream, &mut outcome.received, limit).await;
        }
    }
    outcome
}

async fn round(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let unix = rng.chance(3);
    let mode = [Mode::Off, Mode::Optional, Mode::Required][rng.below(3) as usize];
    let cap = 1 + rng.below(3) as usize;
    // Room for a refused connection and another address's beside `cap` held ones.
    let total = rng.chance(2).then(|| cap + 2 + rng.below(3) as usize);
    let addresses = 1 + rng.below(3);
    let header_timeout = Duration::from_millis(250 + rng.below(150));
    let clients = 2 + rng.below(12);
    let what = format!(
        "seed {seed} (unix {unix}, {mode:?}, per-ip cap {cap}, {addresses} addresses, \
         header timeout {header_timeout:?}, max_connections {total:?}, {clients} clients)"
    );
    let selector = SelectorManager::new();
    let mut builder = a_socket(&selector).tcp().max_connections_per_ip(cap);
    if let Some(total) = total {
        builder = builder.max_connections(total);
    }
    let builder = builder
        .proxy_protocol(match mode {
            Mode::Off => ProxyProtocol::Off,
            Mode::Optional => ProxyProtocol::Optional,
            Mode::Required => ProxyProtocol::Required,
        })
        .proxy_header_timeout(header_timeout);
    let path = std::env::temp_dir().join(format!(
        "net-tests-chaos-proxy-{}-{seed}.sock",
        std::process::id()
    ));
    let server: Arc<ServerSocket> = Arc::new(
        if unix {
            let _ = std::fs::remove_file(&path);
            builder.bind(UnixSocketAddress::new(&path)).await
        } else {
            builder.bind(("127.0.0.1", 0)).await
        }
        .map_err(|e| format!("{what}: bind: {e}"))?,
    );
    let target = if unix {
        Target::Unix(path.clone())
    } else {
        Target::Tcp(server.port().unwrap())
    };
    let seen: Seen = Arc::default();
    let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    let accepting = {
        let (server, seen, tasks) = (Arc::clone(&server), Arc::clone(&seen), Arc::clone(&tasks));
        tokio::spawn(async move {
            while let Ok(socket) = server.accept().await {
                let task = tokio::spawn(serve(socket, Arc::clone(&seen)));
                tasks.lock().unwrap().push(task);
            }
        })
    };
    let running: Vec<JoinHandle<Outcome>> = (0..clients)
        .map(|i| {
            tokio::spawn(client(
                seed * 1000 + i,
                i,
                target.clone(),
                mode,
                addresses,
                header_timeout,
            ))
        })
        .collect();
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
    let started = Instant::now();
    loop {
        let task = tasks.lock().unwrap().pop();
        let Some(task) = task else { break };
        tokio::time::timeout(limit.saturating_sub(started.elapsed()), task)
            .await
            .map_err(|_| format!("{what}: a connection's task hung"))?
            .map_err(|e| format!("{what}: a connection's task panicked: {e}"))?;
    }
    let started = Instant::now();
    while server.stats().open != 0 {
        if started.elapsed() > limit {
            return Err(format!("{what}: {:?} at the end", server.stats()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stats = server.stats();
    let seen = seen.lock().unwrap().clone();
    let (mut refused, mut failures, mut resets, mut either) = (0, 0, 0, 0);
    for o in &outcomes {
        let who = format!("{what}: client {o:?} (server saw {:?})", seen.get(&o.id));
        let admitted = !o.received.is_empty();
        match o.behaviour {
            Behaviour::Valid | Behaviour::NoHeader => {
                if admitted {
                    if o.received != o.expected || !o.clean {
                        return Err(format!("{who}: not served exactly"));
                    }
                    let want = match (o.ip, &target) {
                        (Some(ip), _) => Some(IpAddr::V4(ip)),
                        (None, Target::Tcp(_)) => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                        (None, Target::Unix(_)) => None,
                    };
                    if seen.get(&o.id) != Some(&want) {
                        return Err(format!("{who}: the wrong client address"));
                    }
                } else if o.late {
                    either += 1;
                } else if o.ip.is_none() {
                    return Err(format!("{who}: refused without a per-address cap"));
                } else {
                    if seen.contains_key(&o.id) {
                        return Err(format!("{who}: refused, yet served"));
                    }
                    refused += 1;
                }
            }
            // The header's deadline runs from the listener's accept, which waits for a free
            // `max_connections` place: meanwhile a slow header may come whole, and is then
            // good (or refused for its address).
            Behaviour::Slow if total.is_some() => {
                if admitted {
                    if o.received != o.expected || !o.clean {
                        return Err(format!("{who}: not served exactly"));
                    }
                    if seen.get(&o.id) != Some(&o.ip.map(IpAddr::V4)) {
                        return Err(format!("{who}: the wrong client address"));
                    }
                } else {
                    either += 1;
                }
            }
            Behaviour::Cut | Behaviour::Garbage | Behaviour::Slow => {
                if admitted || seen.contains_key(&o.id) {
                    return Err(format!("{who}: a bad header admitted"));
                }
                failures += 1;
            }
            Behaviour::HeaderThenReset => resets += 1,
        }
    }
    if std::env::var_os("CHAOS_VERBOSE").is_some() {
        eprintln!("{what}: {stats:?}\n{outcomes:#?}");
    }
    if stats.refused_per_ip < refused || stats.refused_per_ip > refused + resets + either {
        return Err(format!(
            "{what}: {stats:?}, {refused} refused, {resets} reset, {either} either"
        ));
    }
    if stats.proxy_header_failures < failures
        || stats.proxy_header_failures > failures + resets + either
    {
        return Err(format!(
            "{what}: {stats:?}, {failures} bad headers, {resets} reset, {either} either"
        ));
    }
    // Exactly `cap` per address admitted, the next refused, another address admitted; all
    // free once they close.
    // A Unix client without a header has no IP address: the cap does not apply to it.
    let uncapped = mode == Mode::Off && unix;
    {
        for turn in 0..2 {
            let refused_before = server.stats().refused_per_ip;
            let mut held = Vec::new();
            for k in 0..=cap {
                let ip = named(3, mode == Mode::Off);
                let mut stream = connect(
                    &target,
                    if mode == Mode::Off {
                        ip
                    } else {
                        Ipv4Addr::LOCALHOST
                    },
                )
                .await
                .map_err(|e| format!("{what}: connect: {e}"))?;
                let mut wire = if mode == Mode::Off {
                    Vec::new()
                } else {
                    v1(ip)
                };
                wire.extend_from_slice(format!("id {}\n", 900 + k).as_bytes());
                let _ = stream.io().write_all(&wire).await;
                let mut got = Vec::new();
                let want = format!("hi {}\n", 900 + k).into_bytes();
                let started = Instant::now();
                let mut buf = [0; 64];
                while got.len() < want.len() && started.elapsed() < limit {
                    match tokio::time::timeout(
                        Duration::from_millis(50),
                        stream.io().read(&mut buf),
                    )
                    .await
                    {
                        Ok(Ok(0) | Err(_)) => break,
                        Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                        Err(_) => {}
                    }
                }
                if (k < cap || uncapped) && got != want {
                    return Err(format!(
                        "{what}: turn {turn}: connection {k} of {cap} not admitted: {got:?}"
                    ));
                }
                if k == cap && !uncapped && !got.is_empty() {
                    return Err(format!("{what}: turn {turn}: more than {cap} admitted"));
                }
                held.push(stream);
            }
            // (A connection of the rounds' that reset after its header may be admitted only now,
            // and refused for its own address: the end uses addresses of its own.)
            let now = server.stats().refused_per_ip - refused_before;
            let leftovers = if turn == 0 { resets } else { 0 };
            if now < u64::from(!uncapped) || now > u64::from(!uncapped) + leftovers {
                return Err(format!("{what}: turn {turn}: {:?}", server.stats()));
            }
            if addresses > 1 {
                let ip = named(4, mode == Mode::Off);
                let mut stream = connect(
                    &target,
                    if mode == Mode::Off {
                        ip
                    } else {
                        Ipv4Addr::LOCALHOST
                    },
                )
                .await
                .map_err(|e| format!("{what}: connect: {e}"))?;
                let mut wire = if mode == Mode::Off {
                    Vec::new()
                } else {
                    v2(ip)
                };
                wire.extend_from_slice(b"id 999\n");
                let _ = stream.io().write_all(&wire).await;
                let mut got = [0; 7];
                let read = tokio::time::timeout(limit, stream.io().read_exact(&mut got)).await;
                if !matches!(read, Ok(Ok(_))) || &got != b"hi 999\n" {
                    return Err(format!("{what}: turn {turn}: another address not admitted"));
                }
                held.push(stream);
            }
            drop(held);
            let started = Instant::now();
            while server.stats().open != 0 || tasks.lock().unwrap().iter().any(|t| !t.is_finished())
            {
                if started.elapsed() > limit {
                    return Err(format!(
                        "{what}: turn {turn}: {:?} at the end",
                        server.stats()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    accepting.abort();
    let _ = accepting.await;
    selector.close();
    drop(server);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// PROXY headers, per-address caps and Unix listeners under chaos (`CHAOS_SEED`,
/// `CHAOS_ROUNDS` choose the rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_server_behind_proxy_headers_and_per_address_caps_keeps_its_answers_exact() {
    net_tests::stress::run_rounds("CHAOS", 5, Duration::from_secs(30), round).await;
}
