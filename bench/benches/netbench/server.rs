//! The servers under test, one process each:
//! `netbench serve --impl ours|raw|tuned|go --role ROLE [--go-flush idle|each] [--busy-poll US]`.
//!
//! Each binds 127.0.0.1 on a port the OS picks, prints `PORT <n> PID <pid>` on stdout (its own
//! process id, which differs from the one the driver started when `NETBENCH_WRAP` runs it
//! under a profiler; see `bench::Announcement`), and serves until its stdin closes (the driver
//! holds the other end) or it is killed. The runtime is tokio's
//! default multi-threaded one, as `#[tokio::main]` gives a user.
//!
//! - `raw`: the plainest good tokio / tokio-rustls code a user writes by hand (every role);
//!   `TCP_NODELAY` on, as ours has it by default.
//! - `tuned`: the ping-pong protocol (plain, or over tokio-rustls) hand-tuned for pipelining:
//!   replies collect in a buffer that is written and flushed only when the `BufReader` holds no
//!   complete request line (over TLS, one record per burst).
//! - `go`: the ping-pong protocol in Go (`bench/go/server.go`, see [`crate::go`]); `serve
//!   --impl go` builds it and runs it in this process's place (the driver starts the Go
//!   executable itself).
//! - `ours`: the same servers written with net-sockets, net-io channels and net-tls; the
//!   ping-pong one is `sockets-server` as shipped (`examples::greet`, with that program's
//!   default idle timeout and connection caps).

use std::io::{self, Write as _};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tls::{TlsExt, TlsServerConfig};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::go;

/// The greeting of the sample protocol.
pub(crate) const GREETING: &str = "Please enter your name\n";
/// The line limit our TLS handshake server reads with (the baseline has none).
const LINE_LIMIT: usize = 1024;
/// `sockets-server`'s default `--idle-timeout` (`examples/src/bin/sockets-server.rs`).
const SHIPPED_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// `sockets-server`'s default `--max-connections`.
const SHIPPED_MAX_CONNECTIONS: usize = 10_000;
/// `sockets-server`'s default `--max-per-ip`.
pub(crate) const SHIPPED_MAX_PER_IP: usize = 1_000;
/// `sockets-server`'s default `--busy-poll` (`SelectorManager::with_busy_poll`).
const SHIPPED_BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(200);
/// The baseline's echo buffer.
const ECHO_BUFFER: usize = 64 * 1024;

/// Which implementation a server process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impl {
    Ours,
    Raw,
    Tuned,
    Go,
}

impl Impl {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::Raw => "raw",
            Impl::Tuned => "tuned",
            Impl::Go => "go",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Impl> {
        Ok(match s {
            "ours" => Impl::Ours,
            "raw" => Impl::Raw,
            "tuned" => Impl::Tuned,
            "go" => Impl::Go,
            _ => bail!("unknown impl {s} (ours, raw, tuned or go)"),
        })
    }
}

/// What a server process does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The sample protocol: greet, then answer each line `name` with `Hello, name!`.
    PingPong,
    /// Echo every byte back until the client's FIN.
    Echo,
    /// TLS, then echo.
    TlsEcho,
    /// TLS, then greet, then wait for the client to leave.
    TlsHandshake,
    /// TLS, then the sample protocol.
    TlsPingPong,
    /// Echo every datagram to its sender.
    Udp,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::PingPong => "pingpong",
            Role::Echo => "echo",
            Role::TlsEcho => "tls-echo",
            Role::TlsHandshake => "tls-handshake",
            Role::TlsPingPong => "tls-pingpong",
            Role::Udp => "udp",
        }
    }

    fn parse(s: &str) -> Result<Role> {
        Ok(match s {
            "pingpong" => Role::PingPong,
            "echo" => Role::Echo,
            "tls-echo" => Role::TlsEcho,
            "tls-handshake" => Role::TlsHandshake,
            "tls-pingpong" => Role::TlsPingPong,
            "udp" => Role::Udp,
            _ => bail!("unknown role {s}"),
        })
    }
}

/// `serve --impl ours|raw|tuned|go --role ROLE [--chain PEM --key PEM] [--go-flush idle|each]
/// [--busy-poll MICROS]` (the last for ours' TCP roles: `SelectorManager::with_busy_poll`, 0 for
/// off; without it, the ping-pong server busy-polls as `sockets-server` does by default and the
/// other roles do not).
pub(crate) fn main(args: &[String]) -> Result<()> {
    let mut busy_poll = None;
    let mut imp = None;
    let mut role = None;
    let mut chain = None;
    let mut key = None;
    let mut go_flush = go::Flush::Idle;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().context("missing value");
        match a.as_str() {
            "--impl" => imp = Some(Impl::parse(&value()?)?),
            "--role" => role = Some(Role::parse(&value()?)?),
            "--chain" => chain = Some(PathBuf::from(value()?)),
            "--key" => key = Some(PathBuf::from(value()?)),
            "--go-flush" => go_flush = go::Flush::parse(&value()?)?,
            "--busy-poll" => {
                let micros = value()?.parse().context("--busy-poll MICROS")?;
                busy_poll = Some(std::time::Duration::from_micros(micros));
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let (Some(imp), Some(role)) = (imp, role) else {
        bail!("serve needs --impl and --role");
    };
    if imp == Impl::Go && role != Role::PingPong {
        bail!("--impl go serves only --role pingpong");
    }
    if imp == Impl::Tuned && !matches!(role, Role::PingPong | Role::TlsPingPong) {
        bail!("--impl tuned serves only --role pingpong and tls-pingpong");
    }
    if imp == Impl::Go {
        return serve_go(go_flush);
    }
    // Leave when the driver goes away, whatever the server is doing.
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let tls = || -> Result<(PathBuf, PathBuf)> {
            Ok((
                chain.clone().context("TLS needs --chain")?,
                key.clone().context("TLS needs --key")?,
            ))
        };
        match (imp, role) {
            (Impl::Ours, Role::PingPong) => ours_tcp(Role::PingPong, None, busy_poll).await,
            (Impl::Ours, Role::Echo) => ours_tcp(Role::Echo, None, busy_poll).await,
            (Impl::Ours, Role::TlsEcho | Role::TlsHandshake | Role::TlsPingPong) => {
                let (chain, key) = tls()?;
                let config = TlsServerConfig::builder()
                    .certificate_chain_pem_file(&chain)?
                    .private_key_pem_file(&key)?
                    .build()?;
                ours_tcp(role, Some(config), busy_poll).await
            }
            (Impl::Ours, Role::Udp) => ours_udp().await,
            (Impl::Tuned, _) => {
                let acceptor = match role {
                    Role::TlsPingPong => {
                        let (chain, key) = tls()?;
                        Some(tokio_rustls::TlsAcceptor::from(
                            crate::pki::raw_server_config(&chain, &key)?,
                        ))
                    }
                    _ => None,
                };
                tuned_tcp(acceptor).await
            }
            (Impl::Go, _) => unreachable!("handled above"),
            (Impl::Raw, Role::Udp) => raw_udp().await,
            (Impl::Raw, _) => {
                let acceptor = match role {
                    Role::TlsEcho | Role::TlsHandshake | Role::TlsPingPong => {
                        let (chain, key) = tls()?;
                        Some(tokio_rustls::TlsAcceptor::from(
                            crate::pki::raw_server_config(&chain, &key)?,
                        ))
                    }
                    _ => None,
                };
                raw_tcp(role, acceptor).await
            }
        }
    })
}

/// Tells the driver where this server listens, and its own process id (see
/// `bench::Announcement`).
fn announce(port: u16) -> Result<()> {
    let line = bench::Announcement {
        port,
        pid: Some(std::process::id()),
    }
    .line();
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

// ----- ours ----------------------------------------------------------------------------------

async fn ours_tcp(
    role: Role,
    tls: Option<TlsServerConfig>,
    busy_poll: Option<std::time::Duration>,
) -> Result<()> {
    // The ping-pong server is `sockets-server` as shipped, so it gets that program's default
    // options: its selector's busy polling, and (its `listener`) the 300 s idle timeout
    // (`socket_timeout`, a timer on every wait) and the connection caps. The other roles
    // measure the library with its defaults.
    let shipped = if role == Role::PingPong {
        SHIPPED_BUSY_POLL
    } else {
        std::time::Duration::ZERO
    };
    let selector = SelectorManager::with_busy_poll(busy_poll.unwrap_or(shipped));
    let builder = a_socket(&selector).tcp();
    let builder = if role == Role::PingPong {
        builder
            .socket_timeout(SHIPPED_IDLE_TIMEOUT)
            .max_connections(SHIPPED_MAX_CONNECTIONS)
            .max_connections_per_ip(SHIPPED_MAX_PER_IP)
    } else {
        builder
    };
    let server = builder.bind(("127.0.0.1", 0)).await?;
    announce(server.port().context("no port")?)?;
    loop {
        let Ok(socket) = server.accept().await else {
            continue;
        };
        // Each role is a task of its own size: the idle scenario measures what a ping-pong
        // connection costs, not the largest role's future. The connection's future is the
        // task, as `sockets-server` spawns it (`tokio::spawn(greet(socket))`): no wrapper
        // future keeping a second slot for the socket.
        if role == Role::PingPong {
            tokio::spawn(ours_pingpong(socket));
            continue;
        }
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = ours_connection(role, socket, tls).await;
        });
    }
}

/// A connection of `sockets-server` as shipped (its `greet` and `converse`): the shutdown
/// signal, an auto-flushed write channel and the conversation itself, `examples::greet`
/// (`read_line_to` into a reused `String` beside the shutdown signal, the reply built in a
/// reused `String`). Only the `Accepted …` line the program prints per connection is left out.
async fn ours_pingpong(mut socket: net_sockets::Socket) -> Result<()> {
    let stop = socket.shutdown_signal();
    let mut input = socket.open_read_channel()?;
    let mut output = socket.open_write_channel(true)?;
    examples::greet(&mut input, &mut output, &stop).await?;
    socket.close();
    Ok(())
}

async fn ours_connection(
    role: Role,
    mut socket: net_sockets::Socket,
    tls: Option<TlsServerConfig>,
) -> Result<()> {
    match role {
        Role::PingPong => ours_pingpong(socket).await?,
        Role::Echo => {
            let mut input = socket.open_read_channel()?;
            let mut output = socket.open_write_channel(false)?;
            input.copy_to(&mut output, u64::MAX).await?;
            output.flush_and_close().await?;
        }
        Role::TlsEcho => {
            let mut tls = socket.tls_server(&tls.context("no TLS config")?).await?;
            let mut input = tls.open_read_channel()?;
            let mut output = tls.open_write_channel(false)?;
            input.copy_to(&mut output, u64::MAX).await?;
            output.flush_and_close().await?;
        }
        Role::TlsHandshake => {
            let mut tls = socket.tls_server(&tls.context("no TLS config")?).await?;
            let mut input = tls.open_read_channel()?;
            let mut output = tls.open_write_channel(true)?;
            output.write_string_utf8(GREETING).await?;
            // The client leaves (with a reset) once it has the greeting.
            let _ = input.read_line(LINE_LIMIT, LineEnding::Default).await;
            tls.close();
        }
        Role::TlsPingPong => {
            // `sockets-server-tls`'s conversation (its `greet`), with the library's defaults.
            let mut tls = socket.tls_server(&tls.context("no TLS config")?).await?;
            let stop = tls.shutdown_signal();
            let mut input = tls.open_read_channel()?;
            let mut output = tls.open_write_channel(true)?;
            examples::greet(&mut input, &mut output, &stop).await?;
            tls.close();
        }
        Role::Udp => unreachable!(),
    }
    Ok(())
}

async fn ours_udp() -> Result<()> {
    let selector = SelectorManager::new();
    let socket = a_socket(&selector).udp().bind(("127.0.0.1", 0)).await?;
    announce(socket.local_address().port().context("no port")?)?;
    loop {
        let datagram = socket.receive().await?;
        socket.send(datagram).await?;
    }
}

// ----- the baselines -------------------------------------------------------------------------

async fn raw_tcp(role: Role, acceptor: Option<tokio_rustls::TlsAcceptor>) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    announce(listener.local_addr()?.port())?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Our sockets default to TCP_NODELAY; a careful user sets it too.
        stream.set_nodelay(true)?;
        if role == Role::PingPong {
            tokio::spawn(raw_pingpong(stream, false));
            continue;
        }
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = raw_connection(role, stream, acceptor).await;
        });
    }
}

/// The seed's server loop as a user writes it with tokio: a `BufReader`, `read_line` into a
/// reused `String`, the reply built in a reused `String` (as ours builds it) and sent with
/// `write_all`, one `send` per reply; over tokio-rustls (`flush`) each reply is flushed too (one
/// record each). Returns the stream at the client's end, for a TLS shutdown.
async fn raw_pingpong<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    flush: bool,
) -> io::Result<BufReader<S>> {
    let mut stream = BufReader::new(stream);
    stream.write_all(GREETING.as_bytes()).await?;
    if flush {
        stream.flush().await?;
    }
    let (mut line, mut reply) = (String::new(), String::new());
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            break;
        }
        let name = line.trim_end_matches(['\r', '\n']);
        reply.clear();
        reply.push_str("Hello, ");
        reply.push_str(name);
        reply.push_str("!\n");
        stream.write_all(reply.as_bytes()).await?;
        if flush {
            stream.flush().await?;
        }
    }
    Ok(stream)
}

async fn raw_connection(
    role: Role,
    stream: tokio::net::TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> io::Result<()> {
    match role {
        Role::PingPong => drop(raw_pingpong(stream, false).await?),
        Role::Echo => {
            let mut stream = stream;
            let (mut reader, mut writer) = stream.split();
            let mut buf = vec![0u8; ECHO_BUFFER];
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                writer.write_all(&buf[..n]).await?;
            }
            writer.shutdown().await?;
        }
        Role::TlsEcho => {
            let acceptor = acceptor.expect("TLS acceptor");
            let mut tls = acceptor.accept(stream).await?;
            let mut buf = vec![0u8; ECHO_BUFFER];
            loop {
                let n = tls.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                tls.write_all(&buf[..n]).await?;
                tls.flush().await?;
            }
            tls.shutdown().await?;
        }
        Role::TlsHandshake => {
            let acceptor = acceptor.expect("TLS acceptor");
            let mut tls = BufReader::new(acceptor.accept(stream).await?);
            tls.write_all(GREETING.as_bytes()).await?;
            tls.flush().await?;
            let mut line = String::new();
            let _ = tls.read_line(&mut line).await;
        }
        Role::TlsPingPong => {
            let acceptor = acceptor.expect("TLS acceptor");
            let mut tls = raw_pingpong(acceptor.accept(stream).await?, true).await?;
            tls.shutdown().await?;
        }
        Role::Udp => unreachable!(),
    }
    Ok(())
}

async fn raw_udp() -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    announce(socket.local_addr()?.port())?;
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        socket.send_to(&buf[..n], from).await?;
    }
}

// ----- the hand-tuned baseline ---------------------------------------------------------------

async fn tuned_tcp(acceptor: Option<tokio_rustls::TlsAcceptor>) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    announce(listener.local_addr()?.port())?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        stream.set_nodelay(true)?;
        match &acceptor {
            None => drop(tokio::spawn(tuned_connection(stream))),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let tls = acceptor.accept(stream).await?;
                    tuned_tls_connection(tls).await
                });
            }
        }
    }
}

/// The ping-pong protocol, tuned for pipelined clients: every reply goes into a `BufWriter`,
/// which is flushed only when the next `read_line` would wait for the network, that is when the
/// `BufReader` holds no complete line. A burst of requests that arrived together is answered
/// with one `send`; a lone request is answered at once.
async fn tuned_connection(mut stream: TcpStream) -> io::Result<()> {
    let (reader, writer) = stream.split();
    let mut reader = BufReader::new(reader);
    let mut writer = BufWriter::new(writer);
    writer.write_all(GREETING.as_bytes()).await?;
    writer.flush().await?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            break;
        }
        let name = line.trim_end_matches(['\r', '\n']);
        writer.write_all(b"Hello, ").await?;
        writer.write_all(name.as_bytes()).await?;
        writer.write_all(b"!\n").await?;
        if !reader.buffer().contains(&b'\n') {
            writer.flush().await?;
        }
    }
    writer.flush().await
}

/// [`tuned_connection`] over tokio-rustls: the replies collect in a buffer that is written to
/// the session, and flushed, only when the `BufReader` holds no complete line, so a burst's
/// replies are one record and one send.
async fn tuned_tls_connection(tls: tokio_rustls::server::TlsStream<TcpStream>) -> io::Result<()> {
    let mut tls = BufReader::new(tls);
    tls.write_all(GREETING.as_bytes()).await?;
    tls.flush().await?;
    let (mut line, mut replies) = (String::new(), Vec::new());
    loop {
        line.clear();
        if tls.read_line(&mut line).await? == 0 {
            break;
        }
        let name = line.trim_end_matches(['\r', '\n']);
        replies.extend_from_slice(b"Hello, ");
        replies.extend_from_slice(name.as_bytes());
        replies.extend_from_slice(b"!\n");
        if !tls.buffer().contains(&b'\n') {
            tls.write_all(&replies).await?;
            tls.flush().await?;
            replies.clear();
        }
    }
    tls.shutdown().await
}

// ----- Go ------------------------------------------------------------------------------------

/// Builds the Go server and runs it with this process's stdin and stdout (so it announces its
/// port and leaves with its stdin as ours would), for starting one by hand.
fn serve_go(flush: go::Flush) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("netbench-go-{}", std::process::id()));
    let server = go::build(&dir)?.context("no `go` tool found (set NETBENCH_GO or install Go)")?;
    eprintln!(
        "netbench: Go server {} ({}), -flush {}",
        server.path.display(),
        server.version,
        flush.name()
    );
    let status = std::process::Command::new(&server.path)
        .args(["-flush", flush.name()])
        .status()
        .context("starting the Go server")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("the Go server exited with {status}");
    }
    Ok(())
}
