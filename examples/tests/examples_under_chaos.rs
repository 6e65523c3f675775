//! The example servers under a seeded chaos of clients, driven as an outside checker would:
//! each server runs once as a real process, and rounds of plain TCP clients hit it at once,
//! well-behaved ones (whose every answer must be exact and in order) beside ones that
//! pipeline, send over-long lines or bytes that are not UTF-8, half-close, reset, connect and
//! never speak, or send much while reading nothing. Then SIGTERM: the documented goodbye, the
//! right count of open connections, exit 0. Throughout: no panic, and no socket of the server
//! left behind once the clients are gone (`/proc/PID/fd`).
//!
//! Each round's clients come from a seed (`EXCHAOS_SEED`, first seed; `EXCHAOS_ROUNDS`, how
//! many): a failing seed can be run again alone.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_tests::HANG_LIMIT;
use net_tests::harness::{Process, path_arg, without_spawns};
use net_tests::pki::Pki;
use net_tests::rng::{Rng, seeds};
use net_tests::tls::{localhost, rustls_client_config};
use net_tls::rustls;

const SOCKETS_SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");
const CHAT: &str = env!("CARGO_BIN_EXE_chat-server");
const PROXY: &str = env!("CARGO_BIN_EXE_tcp-proxy");

/// Rounds when `EXCHAOS_ROUNDS` is not set: a few seconds in all.
const DEFAULT_ROUNDS: u64 = 6;

/// What one client's conversation found wrong, if anything.
type Outcome = Result<(), String>;

/// A connection to `127.0.0.1:port`, every read and write bounded by [`HANG_LIMIT`].
fn connect(port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    stream.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    stream.set_write_timeout(Some(HANG_LIMIT)).unwrap();
    Ok(stream)
}

/// Drops `stream` with a reset (`SO_LINGER` 0), no child process starting meanwhile (one
/// would hold the socket until its `exec`).
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    without_spawns(|| drop(stream));
}

/// How many sockets the process `pid` holds.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| {
                    std::fs::read_link(entry.path())
                        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Waits (at most [`HANG_LIMIT`]) until the process `pid` holds no more than `baseline`
/// sockets; panics with the count otherwise.
fn assert_sockets_back_to(pid: u32, baseline: usize, server: &mut Process) {
    let started = Instant::now();
    loop {
        let now = sockets_of(pid);
        if now <= baseline {
            return;
        }
        assert!(
            started.elapsed() < HANG_LIMIT,
            "the server still holds {now} sockets, {baseline} before the chaos: {}",
            server.printed_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The next line from `reader` without its `\n`; `None` at the end of stream.
fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            format!("a cut line: {:?}", String::from_utf8_lossy(&line)),
        ));
    }
    Ok(Some(line))
}

/// The next line must be `expected`.
fn expect_line(reader: &mut impl BufRead, expected: &str) -> Outcome {
    match read_line(reader) {
        Ok(Some(line)) if line == expected.as_bytes() => Ok(()),
        Ok(Some(line)) => Err(format!(
            "expected {expected:.80?}, got {:.80?}",
            String::from_utf8_lossy(&line)
        )),
        Ok(None) => Err(format!("expected {expected:.80?}, got the end")),
        Err(e) => Err(format!("expected {expected:.80?}, got {e}")),
    }
}

/// The connection must end (end of stream, or a reset) with nothing more; over TLS, the end
/// must be a `close_notify` (an end without one is an `UnexpectedEof` error).
fn expect_end(reader: &mut impl BufRead) -> Outcome {
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!(
            "more before the end: {:.80?}",
            String::from_utf8_lossy(&rest)
        )),
        Err(e) if e.kind() == ErrorKind::ConnectionReset && rest.is_empty() => Ok(()),
        Err(e) => Err(format!("no end: {e} after {} bytes", rest.len())),
    }
}

/// A random name of 0 to 40 characters, some of them not ASCII, none a line ending.
fn random_name(rng: &mut Rng) -> String {
    const CHARS: &[&str] = &["a", "b", "Z", "0", "7", " ", "-", "é", "日", "ß", "!", "\t"];
    let len = rng.below(41);
    (0..len)
        .map(|_| CHARS[rng.below(CHARS.len() as u64) as usize])
        .collect()
}

/// Runs `clients` (each with the seed it was made from, and what it is) on threads of their
/// own at once, and panics with every client that failed.
fn run_round(
    round: u64,
    clients: Vec<(String, Box<dyn FnOnce() -> Outcome + Send>)>,
    server: &mut Process,
) {
    let handles: Vec<_> = clients
        .into_iter()
        .map(|(what, client)| (what, std::thread::spawn(client)))
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .filter_map(|(what, handle)| match handle.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{what}: {e}")),
            Err(_) => Some(format!("{what}: panicked")),
        })
        .collect();
    if !failures.is_empty() {
        let printed = server.printed_so_far();
        let tail = &printed[printed.len().saturating_sub(6000)..];
        panic!("EXCHAOS_SEED={round}: {failures:#?}\nthe server printed, at the end: {tail}");
    }
}

// ----------------------------------------------------------------------------------------
// sockets-server

/// One client of `sockets-server`, of a kind the generator picks.
fn greeting_client(port: u16, seed: u64) -> (String, Box<dyn FnOnce() -> Outcome + Send>) {
    let mut rng = Rng::new(seed);
    let kind = rng.below(8);
    let what = format!("client {seed} of kind {kind}");
    let client = move || -> Outcome {
        let stream = connect(port)?;
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        match kind {
            // Polite: one line at a time, each answer awaited.
            0 => {
                expect_line(&mut reader, "Please enter your name")?;
                for _ in 0..rng.below(6) {
                    let name = random_name(&mut rng);
                    writer
                        .write_all(format!("{name}\n").as_bytes())
                        .map_err(|e| e.to_string())?;
                    expect_line(&mut reader, &format!("Hello, {name}!"))?;
                }
                writer.shutdown(Shutdown::Write).unwrap();
                expect_end(&mut reader)
            }
            // Pipelining: every line in one write, then the answers in order.
            1 | 2 => {
                let names: Vec<String> = (0..1 + rng.below(60))
                    .map(|_| random_name(&mut rng))
                    .collect();
                let all: String = names.iter().map(|n| format!("{n}\n")).collect();
                writer
                    .write_all(all.as_bytes())
                    .map_err(|e| e.to_string())?;
                let half_close_first = rng.chance(2);
                if half_close_first {
                    writer.shutdown(Shutdown::Write).unwrap();
                }
                expect_line(&mut reader, "Please enter your name")?;
                for name in &names {
                    expect_line(&mut reader, &format!("Hello, {name}!"))?;
                }
                if !half_close_first {
                    writer.shutdown(Shutdown::Write).unwrap();
                }
                expect_end(&mut reader)
            }
            // Over-long: a few good lines, then one over the limit (with or without its
            // newline): the good ones answered, the notice, the end.
            3 => {
                let names: Vec<String> = (0..rng.below(4)).map(|_| random_name(&mut rng)).collect();
                let mut all: Vec<u8> = names
                    .iter()
                    .flat_map(|n| format!("{n}\n").into_bytes())
                    .collect();
                let long = 8193 + rng.below(12_000) as usize;
                all.extend(std::iter::repeat_n(b'L', long));
                if rng.chance(2) {
                    all.push(b'\n');
                }
                writer.write_all(&all).map_err(|e| e.to_string())?;
                expect_line(&mut reader, "Please enter your name")?;
                for name in &names {
                    expect_line(&mut reader, &format!("Hello, {name}!"))?;
                }
                expect_line(
                    &mut reader,
                    "Line too long (limit 8192 bytes), closing the connection",
                )?;
                expect_end(&mut reader)
            }
            // Not UTF-8: answered with each bad byte replaced (U+FFFD).
            4 => {
                expect_line(&mut reader, "Please enter your name")?;
                let mut line: Vec<u8> = random_name(&mut rng).into_bytes();
                for _ in 0..1 + rng.below(5) {
                    let at = rng.below(line.len() as u64 + 1) as usize;
                    line.insert(at, [0xFF, 0xC3, 0x80 | 0x40, 0xE6][rng.below(4) as usize]);
                }
                let expected = format!("Hello, {}!", String::from_utf8_lossy(&line));
                line.push(b'\n');
                writer.write_all(&line).map_err(|e| e.to_string())?;
                expect_line(&mut reader, &expected)?;
                writer.shutdown(Shutdown::Write).unwrap();
                expect_end(&mut reader)
            }
            // Half-closes at once: the prompt, then the end.
            5 => {
                writer.shutdown(Shutdown::Write).unwrap();
                expect_line(&mut reader, "Please enter your name")?;
                expect_end(&mut reader)
            }
            // Resets after some lines, having read some of the answers or none.
            6 => {
                let lines: String = (0..rng.below(20))
                    .map(|_| format!("{}\n", random_name(&mut rng)))
                    .collect();
                writer
                    .write_all(lines.as_bytes())
                    .map_err(|e| e.to_string())?;
                if rng.chance(2) {
                    expect_line(&mut reader, "Please enter your name")?;
                }
                drop(reader);
                reset(writer);
                Ok(())
            }
            // Connects and never speaks, then leaves (closing or resetting); or sends much
            // and reads nothing until its writes stall, then resets.
            _ => {
                if rng.chance(2) {
                    std::thread::sleep(Duration::from_millis(rng.below(300)));
                } else {
                    writer
                        .set_write_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let chunk = "flood\n".repeat(10_000);
                    for _ in 0..100 {
                        if writer.write_all(chunk.as_bytes()).is_err() {
                            break;
                        }
                    }
                }
                drop(reader);
                if rng.chance(2) {
                    reset(writer);
                } else {
                    drop(writer);
                }
                Ok(())
            }
        }
    };
    (what, Box::new(client))
}

#[test]
fn sockets_server_serves_well_behaved_clients_among_hostile_ones_and_stops_cleanly() {
    let mut server = Process::start(SOCKETS_SERVER, ["127.0.0.1", "0", "--grace", "5"]);
    let port = server.listening_port();
    let pid = server.id();
    let baseline = sockets_of(pid);
    let mut sessions = 0;
    for round in seeds("EXCHAOS", DEFAULT_ROUNDS) {
        let mut rng = Rng::new(round);
        let clients: Vec<_> = (0..8 + rng.below(10))
            .map(|_| greeting_client(port, rng.below(u64::MAX)))
            .collect();
        sessions += clients.len();
        run_round(round, clients, &mut server);
    }
    assert_sockets_back_to(pid, baseline, &mut server);

    // The shutdown: idle clients, one with a request in the server's buffer, one that keeps
    // pipelining. Each gets whole answers, then the notice, then the end.
    let idle: Vec<_> = (0..3)
        .map(|_| {
            let stream = connect(port).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            expect_line(&mut reader, "Please enter your name").unwrap();
            (stream, reader)
        })
        .collect();
    let mut busy = connect(port).unwrap();
    let mut busy_reader = BufReader::new(busy.try_clone().unwrap());
    expect_line(&mut busy_reader, "Please enter your name").unwrap();
    busy.write_all(b"Zed\n").unwrap();
    // Long lines, more than the buffers hold, none read back until after the signal: the
    // server is in the middle of a reply when the signal comes.
    let names: Vec<String> = (0..300)
        .map(|n| format!("{n}-{}", "n".repeat(4000)))
        .collect();
    let pipeliner = connect(port).unwrap();
    let mut pipeliner_reader = BufReader::new(pipeliner.try_clone().unwrap());
    expect_line(&mut pipeliner_reader, "Please enter your name").unwrap();
    let writing = {
        let all: String = names.iter().map(|n| format!("{n}\n")).collect();
        let mut pipeliner = pipeliner;
        std::thread::spawn(move || {
            // Cut short when the server stops reading at the shutdown.
            let _ = pipeliner.write_all(all.as_bytes());
            pipeliner
        })
    };
    let open = idle.len() + 2;
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    server.signal("TERM");
    // Whole answers, in order, as many as the server read; then the notice; then the end.
    let mut answered = 0;
    loop {
        let line = read_line(&mut pipeliner_reader).unwrap().expect("a line");
        if line == b"Server is shutting down" {
            break;
        }
        assert_eq!(
            String::from_utf8(line).unwrap(),
            format!("Hello, {}!", names[answered]),
        );
        answered += 1;
    }
    expect_end(&mut pipeliner_reader).unwrap();
    drop((writing.join().unwrap(), pipeliner_reader));
    eprintln!(
        "{answered} of {} pipelined lines answered before the notice",
        names.len()
    );
    expect_line(&mut busy_reader, "Hello, Zed!").unwrap();
    expect_line(&mut busy_reader, "Server is shutting down").unwrap();
    expect_end(&mut busy_reader).unwrap();
    for (_, mut reader) in idle {
        expect_line(&mut reader, "Server is shutting down").unwrap();
        expect_end(&mut reader).unwrap();
    }
    drop((busy, busy_reader));
    let line = server.stdout_line_where("the shutdown line", |l| l.starts_with("Shutting down ("));
    assert_eq!(line, format!("Shutting down ({open} open)"));
    let finished = server.finish();
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(finished.stdout, ["Server stopped"], "{finished:?}");
    assert!(finished.stderr.is_empty(), "{:?}", finished.stderr);
    eprintln!("sockets-server: {sessions} sessions");
}

// ----------------------------------------------------------------------------------------
// tcp-proxy

/// An echo upstream on threads: each connection's bytes come back until its end, then a
/// half-close; with `proxy_v2`, each connection's PROXY v2 header is read first and its
/// source address recorded in `sources`.
fn echo_upstream(proxy_v2: bool, sources: Arc<Mutex<HashSet<SocketAddr>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let sources = Arc::clone(&sources);
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(HANG_LIMIT)).unwrap();
                stream.set_write_timeout(Some(HANG_LIMIT)).unwrap();
                if proxy_v2 {
                    let mut head = [0u8; 16];
                    if stream.read_exact(&mut head).is_err() {
                        return;
                    }
                    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n", "a PROXY v2 signature");
                    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
                    let mut body = vec![0; len];
                    stream.read_exact(&mut body).unwrap();
                    assert_eq!(head[13], 0x11, "TCP over IPv4");
                    let ip = std::net::Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                    let port = u16::from_be_bytes([body[8], body[9]]);
                    sources.lock().unwrap().insert(SocketAddr::from((ip, port)));
                }
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => {
                            let _ = stream.shutdown(Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            });
        }
    });
    port
}

/// What the proxy must print for one client: its exact byte counts, or only a line.
#[derive(Debug)]
enum Expected {
    Counts(usize, usize),
    AnyLine,
}

/// One client of `tcp-proxy`: its address, what the proxy must print for it, and the run.
fn proxy_client(
    port: u16,
    seed: u64,
    addresses: Arc<Mutex<HashMap<SocketAddr, Expected>>>,
) -> (String, Box<dyn FnOnce() -> Outcome + Send>) {
    let mut rng = Rng::new(seed);
    let kind = rng.below(5);
    let what = format!("proxy client {seed} of kind {kind}");
    let client = move || -> Outcome {
        let stream = connect(port)?;
        let me = stream.local_addr().unwrap();
        match kind {
            // Sends random bytes from one thread, half-closes, reads the echo to its end.
            0 | 1 => {
                let len = rng.below(300_000) as usize;
                let sent: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
                let mut writer = stream.try_clone().unwrap();
                let to_send = sent.clone();
                let writing = std::thread::spawn(move || {
                    writer.write_all(&to_send)?;
                    writer.shutdown(Shutdown::Write)
                });
                let mut echoed = Vec::new();
                let mut reader = stream;
                reader
                    .read_to_end(&mut echoed)
                    .map_err(|e| format!("{e} after {} bytes", echoed.len()))?;
                writing.join().unwrap().map_err(|e| e.to_string())?;
                if echoed != sent {
                    return Err(format!("{} bytes echoed of {len}", echoed.len()));
                }
                addresses
                    .lock()
                    .unwrap()
                    .insert(me, Expected::Counts(len, len));
                Ok(())
            }
            // Half-closes at once: the end comes back.
            2 => {
                stream.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                let mut reader = stream;
                reader.read_to_end(&mut rest).map_err(|e| e.to_string())?;
                if !rest.is_empty() {
                    return Err(format!("{} bytes from nowhere", rest.len()));
                }
                addresses.lock().unwrap().insert(me, Expected::Counts(0, 0));
                Ok(())
            }
            // Sends some, maybe reads a little, resets.
            3 => {
                let mut writer = stream;
                let _ = writer.write_all(&vec![b'r'; rng.below(100_000) as usize]);
                if rng.chance(2) {
                    let mut some = [0u8; 100];
                    let _ = writer.read(&mut some);
                }
                addresses.lock().unwrap().insert(me, Expected::AnyLine);
                reset(writer);
                Ok(())
            }
            // Never speaks, or floods without reading; then closes or resets.
            _ => {
                let mut writer = stream;
                if rng.chance(2) {
                    std::thread::sleep(Duration::from_millis(rng.below(300)));
                } else {
                    writer
                        .set_write_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let chunk = vec![b'f'; 64 * 1024];
                    for _ in 0..100 {
                        if writer.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                }
                addresses.lock().unwrap().insert(me, Expected::AnyLine);
                if rng.chance(2) {
                    reset(writer);
                } else {
                    drop(writer);
                }
                Ok(())
            }
        }
    };
    (what, Box::new(client))
}

/// One client of `tcp-proxy --tls-cert`, of a kind the generator picks.
fn tls_proxy_client(
    port: u16,
    seed: u64,
    addresses: Arc<Mutex<HashMap<SocketAddr, Expected>>>,
    config: Arc<rustls::ClientConfig>,
) -> (String, Box<dyn FnOnce() -> Outcome + Send>) {
    let mut rng = Rng::new(seed);
    let kind = rng.below(5);
    let what = format!("TLS proxy client {seed} of kind {kind}");
    let client = move || -> Outcome {
        let stream = connect(port)?;
        let me = stream.local_addr().unwrap();
        match kind {
            // Random bytes, then close_notify: the same bytes back, then a clean end.
            0 | 1 => {
                let len = rng.below(60_000) as usize;
                let sent: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
                let mut tls = tls_over(&config, stream);
                tls_send(&mut tls, &sent)?;
                tls_close(&mut tls)?;
                let mut echoed = Vec::new();
                tls.read_to_end(&mut echoed)
                    .map_err(|e| format!("{e} after {} bytes", echoed.len()))?;
                if echoed != sent {
                    return Err(format!("{} bytes echoed of {len}", echoed.len()));
                }
                addresses
                    .lock()
                    .unwrap()
                    .insert(me, Expected::Counts(len, len));
                Ok(())
            }
            // Vanishes in the middle of its ClientHello.
            2 => {
                let mut stream = stream;
                let hello = partial_client_hello(&config, rng.below(300) as usize);
                let _ = stream.write_all(&hello);
                addresses.lock().unwrap().insert(me, Expected::AnyLine);
                vanish(&mut rng, stream);
                Ok(())
            }
            // Garbage instead of TLS.
            3 => {
                let mut stream = stream;
                let garbage: Vec<u8> = (0..1 + rng.below(2000))
                    .map(|_| rng.below(256) as u8)
                    .collect();
                let _ = stream.write_all(&garbage);
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                addresses.lock().unwrap().insert(me, Expected::AnyLine);
                Ok(())
            }
            // The handshake, some bytes, a reset.
            _ => {
                let mut tls = tls_over(&config, stream);
                let _ = tls_send(&mut tls, &vec![b't'; rng.below(20_000) as usize]);
                addresses.lock().unwrap().insert(me, Expected::AnyLine);
                reset(tls.into_inner().sock);
                Ok(())
            }
        }
    };
    (what, Box::new(client))
}

fn proxy_under_chaos(proxy_v2: bool, tls: bool) {
    let sources = Arc::new(Mutex::new(HashSet::new()));
    let upstream = echo_upstream(proxy_v2, Arc::clone(&sources));
    let upstream_address = format!("127.0.0.1:{upstream}");
    let mut args = vec!["127.0.0.1:0".to_owned(), upstream_address.clone()];
    if proxy_v2 {
        args.push("--send-proxy-v2".to_owned());
    }
    let pki = Pki::with_server_names(&["localhost"]);
    let files = pki.temp_files();
    let config = rustls_client_config(&pki.ca, rustls::DEFAULT_VERSIONS);
    if tls {
        args.extend([
            "--tls-cert".to_owned(),
            path_arg(&files.server_chain).to_owned(),
            "--tls-key".to_owned(),
            path_arg(&files.server_key).to_owned(),
        ]);
    }
    let mut proxy = Process::start(PROXY, args);
    let port = proxy.listening_port_after_banner();
    let pid = proxy.id();
    let baseline = sockets_of(pid);
    let mut sessions = 0;
    for round in seeds("EXCHAOS", DEFAULT_ROUNDS) {
        let mut rng = Rng::new(round);
        let addresses = Arc::new(Mutex::new(HashMap::new()));
        let clients: Vec<_> = (0..6 + rng.below(8))
            .map(|_| {
                let seed = rng.below(u64::MAX);
                let addresses = Arc::clone(&addresses);
                if tls {
                    tls_proxy_client(port, seed, addresses, Arc::clone(&config))
                } else {
                    proxy_client(port, seed, addresses)
                }
            })
            .collect();
        sessions += clients.len();
        run_round(round, clients, &mut proxy);
        // One line per connection, with the exact counts where they are known.
        let mut expected = std::mem::take(&mut *addresses.lock().unwrap());
        while !expected.is_empty() {
            let line = proxy.stdout_line_where("a connection line", |l| l.contains(" -> "));
            let (remote, rest) = line.split_once(" -> ").unwrap();
            let remote: SocketAddr = remote.parse().unwrap();
            let Some(wanted) = expected.remove(&remote) else {
                panic!("EXCHAOS_SEED={round}: a line for no client of this round: {line}");
            };
            if let Expected::Counts(up, down) = wanted {
                assert_eq!(
                    rest,
                    format!("{upstream_address}: {up} bytes up, {down} bytes down"),
                    "EXCHAOS_SEED={round}"
                );
                if proxy_v2 {
                    assert!(
                        sources.lock().unwrap().contains(&remote),
                        "EXCHAOS_SEED={round}: no PROXY v2 header named {remote}"
                    );
                }
            }
        }
    }
    assert_sockets_back_to(pid, baseline, &mut proxy);
    // Relays open at the signal: counted, and both their sides reset (never a clean end).
    let open: Vec<Box<dyn Read>> = (0..3)
        .map(|_| {
            let mut client: Box<dyn Read> = if tls {
                let mut tls = tls_over(&config, connect(port).unwrap());
                tls_send(&mut tls, b"ping\n").unwrap();
                Box::new(tls)
            } else {
                let mut client = connect(port).unwrap();
                client.write_all(b"ping\n").unwrap();
                Box::new(client)
            };
            let mut pong = [0u8; 5];
            client.read_exact(&mut pong).unwrap();
            assert_eq!(&pong, b"ping\n");
            client
        })
        .collect();
    let signalled = Instant::now();
    proxy.signal("TERM");
    let line = proxy.stdout_line_where("the shutdown line", |l| l.starts_with("Shutting down ("));
    assert_eq!(line, format!("Shutting down ({} open)", open.len()));
    for mut client in open {
        let mut rest = Vec::new();
        let end = client.read_to_end(&mut rest);
        assert!(
            matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "{end:?} after {} bytes",
            rest.len()
        );
    }
    let finished = proxy.finish();
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout.last().map(String::as_str),
        Some("Proxy stopped")
    );
    assert_eq!(finished.stdout.len(), 4, "{finished:?}");
    assert!(finished.stderr.is_empty(), "{:?}", finished.stderr);
    eprintln!("tcp-proxy: {sessions} sessions");
}

#[test]
fn tcp_proxy_relays_exact_bytes_among_hostile_clients_and_stops_cleanly() {
    proxy_under_chaos(false, false);
}

#[test]
fn tcp_proxy_with_proxy_v2_names_each_client_among_hostile_ones() {
    proxy_under_chaos(true, false);
}

#[test]
fn tcp_proxy_terminating_tls_relays_exact_bytes_among_clients_that_vanish_mid_handshake() {
    proxy_under_chaos(false, true);
}

// ----------------------------------------------------------------------------------------
// chat-server

/// A member that has joined as `nick`: its writer and reader.
fn chat_join(port: u16, nick: &str) -> Result<(TcpStream, BufReader<TcpStream>), String> {
    let stream = connect(port)?;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    expect_line(&mut reader, "Your name?")?;
    writer
        .write_all(format!("{nick}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let welcome = read_line(&mut reader).map_err(|e| e.to_string())?;
    match welcome {
        Some(line) if line.starts_with(format!("* Welcome, {nick}.").as_bytes()) => {
            Ok((writer, reader))
        }
        other => Err(format!(
            "no welcome for {nick}: {:?}",
            other.map(|l| String::from_utf8_lossy(&l).into_owned())
        )),
    }
}

/// A misbehaving chat client, of a kind the generator picks.
fn chat_hostile(
    port: u16,
    nick: String,
    seed: u64,
) -> (String, Box<dyn FnOnce() -> Outcome + Send>) {
    let mut rng = Rng::new(seed);
    let kind = rng.below(6);
    let what = format!("chat client {nick} of kind {kind}");
    let client = move || -> Outcome {
        match kind {
            // Vanishes before its nick: a reset or a close.
            0 => {
                let stream = connect(port)?;
                if rng.chance(2) {
                    reset(stream);
                }
                Ok(())
            }
            // An over-long line: the notice, then the end.
            1 => {
                let (mut writer, mut reader) = chat_join(port, &nick)?;
                writer
                    .write_all(&vec![b'x'; 8193 + rng.below(5000) as usize])
                    .map_err(|e| e.to_string())?;
                loop {
                    let line = read_line(&mut reader).map_err(|e| e.to_string())?;
                    match line {
                        Some(l) if l == b"* Line too long (limit 8192 bytes), goodbye." => break,
                        Some(l) if l.starts_with(b"* ") || l.contains(&b':') => continue,
                        other => return Err(format!("no notice: {other:?}")),
                    }
                }
                expect_end(&mut reader)
            }
            // A line that is not UTF-8: refused, and the member stays.
            2 => {
                let (mut writer, mut reader) = chat_join(port, &nick)?;
                writer.write_all(b"caf\xE9\n").map_err(|e| e.to_string())?;
                loop {
                    let line = read_line(&mut reader).map_err(|e| e.to_string())?;
                    match line {
                        Some(l) if l == b"* Line not sent: it is not UTF-8." => break,
                        Some(_) => continue,
                        None => return Err("ended instead of the notice".into()),
                    }
                }
                writer.shutdown(Shutdown::Write).unwrap();
                Ok(())
            }
            // Joins, says a line, half-closes.
            3 => {
                let (mut writer, _reader) = chat_join(port, &nick)?;
                writer.write_all(b"bye all\n").map_err(|e| e.to_string())?;
                writer.shutdown(Shutdown::Write).unwrap();
                Ok(())
            }
            // Joins and never reads (the slow reader) for a while, then resets.
            4 => {
                let (writer, reader) = chat_join(port, &nick)?;
                std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
                drop(reader);
                reset(writer);
                Ok(())
            }
            // Connects and never speaks for a while.
            _ => {
                let stream = connect(port)?;
                std::thread::sleep(Duration::from_millis(rng.below(400)));
                drop(stream);
                Ok(())
            }
        }
    };
    (what, Box::new(client))
}

#[test]
fn chat_server_delivers_every_line_once_in_order_among_hostile_clients_and_stops_cleanly() {
    let mut server = Process::start(CHAT, ["127.0.0.1", "0", "--grace", "5"]);
    let port = server.listening_port();
    let pid = server.id();
    let baseline = sockets_of(pid);
    let mut sessions = 0;
    for round in seeds("EXCHAOS", DEFAULT_ROUNDS) {
        let mut rng = Rng::new(round);
        let members = 2 + rng.below(3) as usize;
        let lines = 20 + rng.below(200) as usize;
        let nicks: Vec<String> = (0..members).map(|i| format!("w{round}x{i}")).collect();
        // The well-behaved members join first, one after the other.
        let joined: Vec<_> = nicks
            .iter()
            .map(|nick| {
                chat_join(port, nick).unwrap_or_else(|e| panic!("EXCHAOS_SEED={round}: {e}"))
            })
            .collect();
        let mut clients: Vec<(String, Box<dyn FnOnce() -> Outcome + Send>)> = Vec::new();
        for (i, (mut writer, mut reader)) in joined.into_iter().enumerate() {
            let me = nicks[i].clone();
            let others: Vec<String> = nicks.iter().filter(|n| **n != me).cloned().collect();
            let pad = "p".repeat(rng.below(1500) as usize);
            clients.push((
                format!("member {me}"),
                Box::new(move || -> Outcome {
                    let sender = me.clone();
                    let sending = std::thread::spawn(move || -> std::io::Result<TcpStream> {
                        for n in 0..lines {
                            writer.write_all(format!("{sender} {n} {pad}\n").as_bytes())?;
                        }
                        Ok(writer)
                    });
                    // Every other member's lines, each exactly once and in order.
                    let mut next: HashMap<String, usize> =
                        others.iter().map(|o| (o.clone(), 0)).collect();
                    while next.values().any(|&n| n < lines) {
                        let line = read_line(&mut reader)
                            .map_err(|e| format!("{me}: {e}; at {next:?}"))?
                            .ok_or_else(|| format!("{me}: ended at {next:?}"))?;
                        let line = String::from_utf8(line).map_err(|e| e.to_string())?;
                        if line.starts_with("* ") {
                            continue;
                        }
                        let (from, text) = line
                            .split_once(": ")
                            .ok_or_else(|| format!("{me}: a bad line {line:.80}"))?;
                        if from == me {
                            return Err(format!("{me} got its own line {line:.80}"));
                        }
                        let Some(expected) = next.get_mut(from) else {
                            continue;
                        };
                        let number: usize = text
                            .strip_prefix(&format!("{from} "))
                            .and_then(|t| t.split(' ').next())
                            .and_then(|n| n.parse().ok())
                            .ok_or_else(|| format!("{me}: a bad line {line:.80}"))?;
                        if number != *expected {
                            return Err(format!(
                                "{me}: line {number} of {from} where {expected} was due"
                            ));
                        }
                        *expected += 1;
                    }
                    let writer = sending
                        .join()
                        .unwrap()
                        .map_err(|e| format!("{me} could not send: {e}"))?;
                    // Leaves by half-closing, then reads to the server's end: a close with
                    // lines unread would reset the connection, and the server could lose this
                    // member's last lines with it.
                    writer.shutdown(Shutdown::Write).unwrap();
                    loop {
                        match read_line(&mut reader) {
                            Ok(Some(_)) => continue,
                            Ok(None) => return Ok(()),
                            Err(e) => return Err(format!("{me}: no end after leaving: {e}")),
                        }
                    }
                }),
            ));
        }
        for i in 0..2 + rng.below(6) {
            clients.push(chat_hostile(
                port,
                format!("h{round}x{i}"),
                rng.below(u64::MAX),
            ));
        }
        sessions += clients.len();
        run_round(round, clients, &mut server);
    }
    assert_sockets_back_to(pid, baseline, &mut server);
    // Two members and one without a nick at the shutdown: each told, then the end.
    let mut open = Vec::new();
    for nick in ["last1", "last2"] {
        open.push(chat_join(port, nick).unwrap());
    }
    let anonymous = connect(port).unwrap();
    let mut anonymous_reader = BufReader::new(anonymous.try_clone().unwrap());
    expect_line(&mut anonymous_reader, "Your name?").unwrap();
    open.push((anonymous, anonymous_reader));
    server.stdout_line_where("last2 joined", |l| l.ends_with("joined as last2"));
    let signalled = Instant::now();
    server.signal("TERM");
    for (writer, mut reader) in open {
        loop {
            match read_line(&mut reader).unwrap() {
                Some(l) if l == b"Server is shutting down" => break,
                Some(l) if l.starts_with(b"* ") => continue,
                other => panic!("no goodbye: {other:?}"),
            }
        }
        expect_end(&mut reader).unwrap();
        drop((writer, reader));
    }
    let line = server.stdout_line_where("the shutdown line", |l| l.starts_with("Shutting down ("));
    assert_eq!(line, "Shutting down (3 open)");
    let finished = server.finish();
    // Everyone left when told: no wait for the grace period.
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert!(
        !finished.stdout.iter().any(|l| l.starts_with("Closed ")),
        "{finished:?}"
    );
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout.last().map(String::as_str),
        Some("Server stopped")
    );
    assert!(finished.stderr.is_empty(), "{:?}", finished.stderr);
    eprintln!("chat-server: {sessions} sessions");
}

// ----------------------------------------------------------------------------------------
// sockets-server-tls and starttls-server

const TLS_SERVER: &str = env!("CARGO_BIN_EXE_sockets-server-tls");
const STARTTLS_SERVER: &str = env!("CARGO_BIN_EXE_starttls-server");

/// A TLS client stream over `stream`, for `localhost`, trusting what `config` trusts.
type Tls = BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn tls_over(config: &Arc<rustls::ClientConfig>, stream: TcpStream) -> Tls {
    let connection = rustls::ClientConnection::new(Arc::clone(config), localhost()).unwrap();
    BufReader::new(rustls::StreamOwned::new(connection, stream))
}

/// Writes `bytes` over TLS at once.
fn tls_send(tls: &mut Tls, bytes: &[u8]) -> Outcome {
    let stream = tls.get_mut();
    stream.write_all(bytes).map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())
}

/// Ends our side of a TLS session: `close_notify`.
fn tls_close(tls: &mut Tls) -> Outcome {
    let stream = tls.get_mut();
    stream.conn.send_close_notify();
    stream.flush().map_err(|e| e.to_string())
}

/// The first `cut` bytes of a ClientHello for `localhost`, or all of it if shorter.
fn partial_client_hello(config: &Arc<rustls::ClientConfig>, cut: usize) -> Vec<u8> {
    let mut connection = rustls::ClientConnection::new(Arc::clone(config), localhost()).unwrap();
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).unwrap();
    hello.truncate(cut);
    hello
}

/// Leaves: a reset or a close, as the generator picks.
fn vanish(rng: &mut Rng, stream: TcpStream) {
    if rng.chance(2) {
        reset(stream);
    } else {
        drop(stream);
    }
}

/// A TLS server's stderr holds only its documented line per failed handshake (`No TLS with
/// CLIENT: REASON`).
fn assert_only_failed_handshakes(stderr: &[String]) {
    let others: Vec<&String> = stderr
        .iter()
        .filter(|l| !l.starts_with("No TLS with 127.0.0.1:"))
        .collect();
    assert!(others.is_empty(), "{others:#?}");
}

/// One client of `sockets-server-tls`, of a kind the generator picks.
fn tls_greeting_client(
    port: u16,
    seed: u64,
    config: Arc<rustls::ClientConfig>,
) -> (String, Box<dyn FnOnce() -> Outcome + Send>) {
    let mut rng = Rng::new(seed);
    let kind = rng.below(8);
    let what = format!("TLS client {seed} of kind {kind}");
    let client = move || -> Outcome {
        let stream = connect(port)?;
        match kind {
            // Polite or pipelining, then close_notify: every answer, then a clean end.
            0..=2 => {
                let mut tls = tls_over(&config, stream);
                let names: Vec<String> =
                    (0..rng.below(30)).map(|_| random_name(&mut rng)).collect();
                if kind == 0 {
                    expect_line(&mut tls, "Please enter your name")?;
                    for name in &names {
                        tls_send(&mut tls, format!("{name}\n").as_bytes())?;
                        expect_line(&mut tls, &format!("Hello, {name}!"))?;
                    }
                } else {
                    let all: String = names.iter().map(|n| format!("{n}\n")).collect();
                    tls_send(&mut tls, all.as_bytes())?;
                    if kind == 2 {
                        tls_close(&mut tls)?;
                    }
                    expect_line(&mut tls, "Please enter your name")?;
                    for name in &names {
                        expect_line(&mut tls, &format!("Hello, {name}!"))?;
                    }
                }
                if kind != 2 {
                    tls_close(&mut tls)?;
                }
                expect_end(&mut tls)
            }
            // Vanishes in the middle of its ClientHello.
            3 => {
                let mut stream = stream;
                let hello = partial_client_hello(&config, 1 + rng.below(300) as usize);
                let _ = stream.write_all(&hello);
                vanish(&mut rng, stream);
                Ok(())
            }
            // Garbage instead of TLS: the server ends the connection.
            4 => {
                let mut stream = stream;
                let garbage: Vec<u8> = (0..1 + rng.below(2000))
                    .map(|_| rng.below(256) as u8)
                    .collect();
                let _ = stream.write_all(&garbage);
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                Ok(())
            }
            // Completes the handshake, sends some lines, resets.
            5 => {
                let mut tls = tls_over(&config, stream);
                expect_line(&mut tls, "Please enter your name")?;
                let lines: String = (0..rng.below(20))
                    .map(|_| format!("{}\n", random_name(&mut rng)))
                    .collect();
                let _ = tls_send(&mut tls, lines.as_bytes());
                let stream = tls.into_inner().sock;
                reset(stream);
                Ok(())
            }
            // Never speaks for a while.
            6 => {
                std::thread::sleep(Duration::from_millis(rng.below(300)));
                vanish(&mut rng, stream);
                Ok(())
            }
            // A line over the limit after one that is not UTF-8: the answer, the notice, a
            // clean end.
            _ => {
                let mut tls = tls_over(&config, stream);
                let mut bytes = b"caf\xE9\n".to_vec();
                bytes.extend(std::iter::repeat_n(b'L', 8193 + rng.below(10_000) as usize));
                tls_send(&mut tls, &bytes)?;
                expect_line(&mut tls, "Please enter your name")?;
                expect_line(&mut tls, "Hello, caf\u{FFFD}!")?;
                expect_line(
                    &mut tls,
                    "Line too long (limit 8192 bytes), closing the connection",
                )?;
                expect_end(&mut tls)
            }
        }
    };
    (what, Box::new(client))
}

#[test]
fn sockets_server_tls_serves_well_behaved_clients_among_hostile_ones_and_stops_cleanly() {
    let pki = Pki::with_server_names(&["localhost"]);
    let files = pki.temp_files();
    let config = rustls_client_config(&pki.ca, rustls::DEFAULT_VERSIONS);
    let mut server = Process::start(
        TLS_SERVER,
        [
            "--cert",
            path_arg(&files.server_chain),
            "--key",
            path_arg(&files.server_key),
            "--grace",
            "5",
            "127.0.0.1",
            "0",
        ],
    );
    let port = server.listening_port_after_banner();
    let pid = server.id();
    let baseline = sockets_of(pid);
    let mut sessions = 0;
    for round in seeds("EXCHAOS", DEFAULT_ROUNDS) {
        let mut rng = Rng::new(round);
        let clients: Vec<_> = (0..6 + rng.below(8))
            .map(|_| tls_greeting_client(port, rng.below(u64::MAX), Arc::clone(&config)))
            .collect();
        sessions += clients.len();
        run_round(round, clients, &mut server);
    }
    assert_sockets_back_to(pid, baseline, &mut server);
    let mut open: Vec<Tls> = (0..3)
        .map(|_| {
            let mut tls = tls_over(&config, connect(port).unwrap());
            expect_line(&mut tls, "Please enter your name").unwrap();
            tls
        })
        .collect();
    server.signal("TERM");
    for tls in &mut open {
        expect_line(tls, "Server is shutting down").unwrap();
        expect_end(tls).unwrap();
        tls_close(tls).unwrap();
    }
    drop(open);
    let line = server.stdout_line_where("the shutdown line", |l| l.starts_with("Shutting down ("));
    assert_eq!(line, "Shutting down (3 open)");
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout.last().map(String::as_str),
        Some("Server stopped")
    );
    assert_only_failed_handshakes(&finished.stderr);
    assert!(
        !finished.stdout.iter().any(|l| l.starts_with("Closed ")),
        "{finished:?}"
    );
    eprintln!("sockets-server-tls: {sessions} sessions");
}

/// Reads one SMTP reply (its lines, `\r` kept) from `reader`: lines until one whose fourth
/// byte is not `-`.
fn smtp_reply(reader: &mut impl BufRead) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(reader)
            .map_err(|e| format!("{e} after {lines:?}"))?
            .ok_or_else(|| format!("the end after {lines:?}"))?;
        let line = String::from_utf8(line).map_err(|e| e.to_string())?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Ok(lines);
        }
    }
}

/// The next replies must be `expected`, line by line (without `\r\n`).
fn expect_smtp(reader: &mut impl BufRead, expected: &[&str]) -> Outcome {
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.extend(smtp_reply(reader)?);
    }
    let got: Vec<&str> = got.iter().map(|l| l.trim_end_matches('\r')).collect();
    if got == expected {
        Ok(())
    } else {
        Err(format!("expected {expected:?}, got {got:?}"))
    }
}

const EHLO_PLAIN: [&str; 3] = ["250-[127.0.0.1]", "250-PIPELINING", "250 STARTTLS"];

/// One client of `starttls-server`, of a kind the generator picks.
fn smtp_client(
    port: u16,
    seed: u64,
    config: Arc<rustls::ClientConfig>,
) -> (String, Box<dyn FnOnce() -> Outcome + Send>) {
    let mut rng = Rng::new(seed);
    let kind = rng.below(7);
    let what = format!("SMTP client {seed} of kind {kind}");
    let client = move || -> Outcome {
        let stream = connect(port)?;
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let send = |writer: &mut TcpStream, text: &str| {
            writer.write_all(text.as_bytes()).map_err(|e| e.to_string())
        };
        match kind {
            // The whole session, the plain part pipelined or not, then QUIT over TLS.
            0..=2 => {
                if kind == 0 {
                    send(
                        &mut writer,
                        "EHLO a.b\r\nNOOP\r\nMAIL FROM:<x@y>\r\nSTARTTLS\r\n",
                    )?;
                    expect_smtp(&mut reader, &["220 [127.0.0.1] ready"])?;
                } else {
                    expect_smtp(&mut reader, &["220 [127.0.0.1] ready"])?;
                    send(&mut writer, "EHLO a.b\r\n")?;
                    expect_smtp(&mut reader, &EHLO_PLAIN)?;
                    send(&mut writer, "NOOP\r\n")?;
                    expect_smtp(&mut reader, &["250 OK"])?;
                    send(&mut writer, "MAIL FROM:<x@y>\r\n")?;
                    expect_smtp(&mut reader, &["502 Command not implemented"])?;
                    send(&mut writer, "STARTTLS\r\n")?;
                }
                if kind == 0 {
                    let mut all = EHLO_PLAIN.to_vec();
                    all.extend([
                        "250 OK",
                        "502 Command not implemented",
                        "220 Ready to start TLS",
                    ]);
                    expect_smtp(&mut reader, &all)?;
                } else {
                    expect_smtp(&mut reader, &["220 Ready to start TLS"])?;
                }
                if !reader.buffer().is_empty() {
                    return Err("bytes after 220 Ready".into());
                }
                drop(reader);
                let mut tls = tls_over(&config, writer);
                if kind == 2 {
                    tls_send(&mut tls, b"EHLO a.b\r\nNOOP\r\nQUIT\r\n")?;
                    expect_smtp(
                        &mut tls,
                        &["250-[127.0.0.1]", "250 PIPELINING", "250 OK", "221 Bye"],
                    )?;
                } else {
                    tls_send(&mut tls, b"EHLO a.b\r\n")?;
                    expect_smtp(&mut tls, &["250-[127.0.0.1]", "250 PIPELINING"])?;
                    tls_send(&mut tls, b"NOOP\r\n")?;
                    expect_smtp(&mut tls, &["250 OK"])?;
                    tls_send(&mut tls, b"QUIT\r\n")?;
                    expect_smtp(&mut tls, &["221 Bye"])?;
                }
                expect_end(&mut tls)?;
                tls_close(&mut tls).or(Ok(()))
            }
            // Vanishes in the middle of the STARTTLS handshake.
            3 => {
                expect_smtp(&mut reader, &["220 [127.0.0.1] ready"])?;
                send(&mut writer, "STARTTLS\r\n")?;
                expect_smtp(&mut reader, &["220 Ready to start TLS"])?;
                let hello = partial_client_hello(&config, rng.below(400) as usize);
                let _ = writer.write_all(&hello);
                drop(reader);
                vanish(&mut rng, writer);
                Ok(())
            }
            // An over-long command: the notice, then the end.
            4 => {
                let long = "X".repeat(513 + rng.below(3000) as usize);
                send(&mut writer, &format!("NOOP\r\n{long}\r\n"))?;
                expect_smtp(&mut reader, &["220 [127.0.0.1] ready", "250 OK"])?;
                expect_smtp(&mut reader, &["500 Line too long, closing the connection"])?;
                expect_end(&mut reader)
            }
            // Half-closes after the greeting: the end.
            5 => {
                expect_smtp(&mut reader, &["220 [127.0.0.1] ready"])?;
                writer.shutdown(Shutdown::Write).unwrap();
                expect_end(&mut reader)
            }
            // Resets at a random point, or never speaks for a while.
            _ => {
                if rng.chance(2) {
                    let _ = send(&mut writer, "EHLO a.b\r\nNOOP\r\n");
                } else {
                    std::thread::sleep(Duration::from_millis(rng.below(300)));
                }
                drop(reader);
                vanish(&mut rng, writer);
                Ok(())
            }
        }
    };
    (what, Box::new(client))
}

#[test]
fn starttls_server_serves_well_behaved_sessions_among_hostile_ones_and_stops_cleanly() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let config = rustls_client_config(&pki.ca, rustls::DEFAULT_VERSIONS);
    let mut server = Process::start(
        STARTTLS_SERVER,
        [
            "127.0.0.1",
            "0",
            "--cert",
            path_arg(&files.server_chain),
            "--key",
            path_arg(&files.server_key),
            "--grace",
            "5",
        ],
    );
    let port = server.listening_port_after_banner();
    let pid = server.id();
    let baseline = sockets_of(pid);
    let mut sessions = 0;
    for round in seeds("EXCHAOS", DEFAULT_ROUNDS) {
        let mut rng = Rng::new(round);
        let clients: Vec<_> = (0..6 + rng.below(8))
            .map(|_| smtp_client(port, rng.below(u64::MAX), Arc::clone(&config)))
            .collect();
        sessions += clients.len();
        run_round(round, clients, &mut server);
    }
    assert_sockets_back_to(pid, baseline, &mut server);
    let mut open: Vec<_> = (0..3)
        .map(|_| {
            let stream = connect(port).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            expect_smtp(&mut reader, &["220 [127.0.0.1] ready"]).unwrap();
            (stream, reader)
        })
        .collect();
    server.signal("TERM");
    for (_, reader) in &mut open {
        expect_smtp(reader, &["421 [127.0.0.1] Server is shutting down"]).unwrap();
        expect_end(reader).unwrap();
    }
    drop(open);
    let line = server.stdout_line_where("the shutdown line", |l| l.starts_with("Shutting down ("));
    assert_eq!(line, "Shutting down (3 open)");
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout.last().map(String::as_str),
        Some("Server stopped")
    );
    assert_only_failed_handshakes(&finished.stderr);
    assert!(
        !finished.stdout.iter().any(|l| l.starts_with("Closed ")),
        "{finished:?}"
    );
    eprintln!("starttls-server: {sessions} sessions");
}

// ----------------------------------------------------------------------------------------
// A signal in the middle of the chaos

/// Starts `clients` against `server`, sends SIGTERM as soon as one is accepted, and
/// checks that the server stops as documented while they are all at work: exit 0, `stopped`
/// last, within the grace period (with a margin for a loaded machine), no panic. What each
/// client sees is not checked: the server left under it.
fn signal_in_the_middle(
    mut server: Process,
    clients: Vec<(String, Box<dyn FnOnce() -> Outcome + Send>)>,
    stopped: &str,
) {
    let pid = server.id();
    let baseline = sockets_of(pid);
    let running: Vec<_> = clients
        .into_iter()
        .map(|(_, client)| std::thread::spawn(client))
        .collect();
    // A first connection accepted: the server holds one more socket.
    let started = Instant::now();
    while sockets_of(pid) <= baseline {
        assert!(started.elapsed() < HANG_LIMIT, "no connection accepted");
        std::thread::sleep(Duration::from_millis(1));
    }
    let signalled = Instant::now();
    server.signal("TERM");
    let finished = server.finish();
    let took = signalled.elapsed();
    for client in running {
        let _ = client.join();
    }
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout.last().map(String::as_str),
        Some(stopped),
        "{finished:?}"
    );
    assert!(took < Duration::from_secs(2 + 5), "{took:?}: {finished:?}");
    assert!(
        finished
            .stdout
            .iter()
            .any(|l| l.starts_with("Shutting down (")),
        "{finished:?}"
    );
    assert_only_failed_handshakes(&finished.stderr);
}

#[test]
fn every_server_stops_cleanly_when_signalled_in_the_middle_of_the_chaos() {
    let pki = Pki::with_server_names(&["localhost"]);
    let files = pki.temp_files();
    let config = rustls_client_config(&pki.ca, rustls::DEFAULT_VERSIONS);
    let (chain, key) = (path_arg(&files.server_chain), path_arg(&files.server_key));
    let sources = Arc::new(Mutex::new(HashSet::new()));
    let upstream = format!("127.0.0.1:{}", echo_upstream(false, sources));
    // Five servers started per round: fewer rounds by default.
    for round in seeds("EXCHAOS", 2) {
        let mut rng = Rng::new(round);
        let count = 10 + rng.below(10);

        let mut server = Process::start(SOCKETS_SERVER, ["127.0.0.1", "0", "--grace", "5"]);
        let port = server.listening_port();
        let clients = (0..count).map(|_| greeting_client(port, rng.below(u64::MAX)));
        signal_in_the_middle(server, clients.collect(), "Server stopped");

        let mut server = Process::start(CHAT, ["127.0.0.1", "0", "--grace", "5"]);
        let port = server.listening_port();
        let clients = (0..count).map(|i| chat_hostile(port, format!("h{i}"), rng.below(u64::MAX)));
        signal_in_the_middle(server, clients.collect(), "Server stopped");

        let args = [
            "--cert",
            chain,
            "--key",
            key,
            "--grace",
            "5",
            "127.0.0.1",
            "0",
        ];
        let mut server = Process::start(TLS_SERVER, args);
        let port = server.listening_port_after_banner();
        let clients =
            (0..count).map(|_| tls_greeting_client(port, rng.below(u64::MAX), Arc::clone(&config)));
        signal_in_the_middle(server, clients.collect(), "Server stopped");

        let args = [
            "127.0.0.1",
            "0",
            "--cert",
            chain,
            "--key",
            key,
            "--grace",
            "5",
        ];
        let mut server = Process::start(STARTTLS_SERVER, args);
        let port = server.listening_port_after_banner();
        let clients =
            (0..count).map(|_| smtp_client(port, rng.below(u64::MAX), Arc::clone(&config)));
        signal_in_the_middle(server, clients.collect(), "Server stopped");

        let mut proxy = Process::start(PROXY, ["127.0.0.1:0", upstream.as_str()]);
        let port = proxy.listening_port_after_banner();
        let addresses = Arc::new(Mutex::new(HashMap::new()));
        let clients =
            (0..count).map(|_| proxy_client(port, rng.below(u64::MAX), Arc::clone(&addresses)));
        signal_in_the_middle(proxy, clients.collect(), "Proxy stopped");
    }
}
