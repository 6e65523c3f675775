//! A TCP proxy: forwards every connection accepted at LISTEN to UPSTREAM, both ways, with
//! tokio's `copy_bidirectional` over the sockets as tokio streams (`socket.into_stream()`).
//!
//! ```text
//! cargo run -p examples --bin tcp-proxy -- LISTEN UPSTREAM       # each HOST:PORT
//!     [--tls-cert FILE --tls-key FILE]   # terminate TLS on the listening side
//!     [--send-proxy-v2]                  # tell UPSTREAM the client's address (PROXY protocol v2)
//!     [--max-connections N]              # accept no more while N are open
//!     [--idle-timeout SECS]              # close a connection nothing moves through this long (default 300)
//! ```
//!
//! When one side finishes sending (FIN, or TLS `close_notify` then FIN), the proxy half-closes
//! the other side's write direction and keeps forwarding the other way until that finishes
//! too, so a client that sends its request and shuts down its write side still gets the
//! whole response. A side that fails instead (a reset, a TLS session cut without
//! `close_notify`) is not passed on as a clean end, which would make a cut request or response
//! look complete: the proxy resets the other side too, as it resets a client whose upstream
//! cannot be reached. It prints one line per connection: `CLIENT -> UPSTREAM: N bytes up, M
//! bytes down` (up is client to upstream), or what went wrong, naming the side a failed read
//! or write was with (`CLIENT -> UPSTREAM: reading from the client: Connection reset by
//! peer`).
//!
//! A connection through which nothing moves, either way, for `--idle-timeout` seconds (no
//! byte from either side, none taken by either: a silent client with a silent upstream, or a
//! side that stops taking what is sent to it) is closed on both sides with a reset, as a
//! failure is, and reported as `CLIENT -> UPSTREAM: nothing moved for N s: timed out`. A
//! client that sent its request and only reads a long answer is not idle while the answer
//! moves. The TLS handshake has its own limit of 10 seconds.
//!
//! An UPSTREAM that is the proxy's own listening address (the same address, a name that
//! resolves to it, or an address of this host when the proxy listens on every address, such
//! as `0.0.0.0`, with the same port; `::` is every IPv4 address too, unless the host makes it
//! IPv6-only with `net.ipv6.bindv6only = 1`; `0.0.0.0` or `::` as UPSTREAM, which a connect
//! takes as 127.0.0.1 or `::1`; a link-local address of this host on the link its scope names)
//! is refused at start, exit status 1: every
//! connection would connect to the proxy again, and that one again, until the descriptors ran
//! out. (A name that resolves to it only later, or two proxies pointed at each other, are not
//! seen. An address this host can bind but does not have, as any is with
//! `net.ipv4.ip_nonlocal_bind = 1`, is another host's, and accepted.)
//! An UPSTREAM whose name does not resolve at start is reported then, `Upstream HOST:PORT does
//! not resolve now (ERROR): each connection tries again`, and the proxy serves on: each
//! connection resolves the name again (it may resolve later) and reports its own failure.
//!
//! On SIGINT or SIGTERM the proxy prints `Shutting down (N open)`, closes its listener, resets
//! both sides of every connection still open (a transfer cut by the stop is never passed on as
//! a clean end, which would make it look complete), reports each as `CLIENT -> UPSTREAM: the
//! proxy is stopping`, prints `Proxy stopped` and exits 0.

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples::shutdown::Signals;
use net_sockets::{SelectorManager, Socket, SocketAddress, SocketStream, a_socket};
use net_tls::{TlsExt, TlsServerConfig, TlsSocket, TlsStream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// How long connecting to UPSTREAM may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Forwards every connection accepted at LISTEN to UPSTREAM.
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Where to accept connections, HOST:PORT, an IPv6 address in brackets ([::1]:8080; port
    /// 0: any free port).
    #[arg(value_name = "LISTEN", value_parser = examples::address::host_port)]
    listen: (String, u16),
    /// Where to forward them, HOST:PORT ([::1]:8000 for an IPv6 address).
    #[arg(value_name = "UPSTREAM", value_parser = examples::address::destination_host_port)]
    upstream: (String, u16),
    /// Terminate TLS on the listening side with this certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Send UPSTREAM a PROXY protocol v2 header with the client's address first.
    #[arg(long)]
    send_proxy_v2: bool,
    /// Accept no new connection while this many are open [default: no cap] (a number beyond
    /// what can be open at once is no cap either).
    #[arg(long, value_name = "N", value_parser = examples::cli::at_least_one)]
    max_connections: Option<usize>,
    /// Close a connection through which nothing moves, either way, for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = examples::cli::at_least_one_second)]
    idle_timeout: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    examples::run("tcp-proxy", serve(args)).await
}

/// What every connection needs to know.
#[derive(Debug)]
struct Route {
    selector: SelectorManager,
    upstream: (String, u16),
    tls: Option<TlsServerConfig>,
    send_proxy_v2: bool,
    idle_timeout: Duration,
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let tls = match args.tls_cert.as_deref().zip(args.tls_key.as_deref()) {
        Some(files) => {
            let (builder, about) = examples::tls::server_identity(Some(files), "tcp-proxy")?;
            // Built before anything is printed: a key that is not the certificate's is one
            // line on stderr, not a description of a certificate that is not used.
            let config = examples::tls::build_server_config(builder, Some(files))?;
            for line in about {
                examples::say!("{line}");
            }
            Some(config)
        }
        None => None,
    };
    let selector = SelectorManager::new();
    let (host, port) = &args.listen;
    let server = a_socket(&selector)
        .tcp()
        .bind((host.as_str(), *port))
        .await
        .with_context(|| {
            let listen = examples::join_host_port(host, *port);
            format!("cannot listen at {listen}")
        })?;
    let (up_host, up_port) = &args.upstream;
    let upstream = examples::join_host_port(up_host, *up_port);
    // Resolved once at start, to refuse an upstream that is the proxy itself and to say at
    // once when the name does not resolve; every connection resolves it again.
    let resolved = resolve(&args.upstream).await;
    let listening = server.local_address().as_inet().map(|a| a.socket_addr());
    // `::` takes IPv4 clients too unless the host made it IPv6-only (`net.ipv6.bindv6only`).
    let ipv6_only = listening.is_some_and(|a| a.is_ipv6())
        && server.with_sock_ref(|s| s.only_v6()).unwrap_or(false);
    // Not a let-chain (`if let .. && let ..`): the libraries' Rust 1.85 has none.
    let looping = match (listening, &resolved) {
        (Some(own), Ok(addresses)) => addresses
            .iter()
            .find(|&&target| reaches(own, ipv6_only, target))
            .map(|&target| (target, own)),
        _ => None,
    };
    if let Some((target, own)) = looping {
        anyhow::bail!(
            "upstream {upstream} is this proxy's own listening address: every connection \
             would come back to the proxy ({target}, listening at {own})"
        );
    }
    let mut signals = Signals::install().context("cannot catch SIGINT and SIGTERM")?;
    examples::say!("Forwarding to {upstream}");
    if let Err(e) = &resolved {
        examples::say!(
            "Upstream {upstream} does not resolve now ({e}): each connection tries again"
        );
    }
    examples::say!("Proxy is listening at {}", server.local_address());

    // `Semaphore::new` panics above `MAX_PERMITS`; so many connections cannot be open at once
    // anyway, so a larger cap is clamped (as net-sockets' `max_connections` does), not refused.
    let limit = args
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))));
    let route = Arc::new(Route {
        selector: selector.clone(),
        upstream: args.upstream,
        tls,
        send_proxy_v2: args.send_proxy_v2,
        idle_timeout: args.idle_timeout,
    });
    // Every relay holds a receiver until it has ended: the sender learns when all are gone.
    let (stop, _) = watch::channel(false);
    loop {
        // With --max-connections, a place is taken before accepting: while every place is
        // held, new clients wait in the listen backlog.
        let next = async {
            let permit = match &limit {
                Some(limit) => Some(Arc::clone(limit).acquire_owned().await?),
                None => None,
            };
            let client = server.accept().await.context("accept failed")?;
            anyhow::Ok((permit, client))
        };
        let (permit, client) = tokio::select! {
            biased;
            () = signals.recv() => break,
            next = next => next?,
        };
        let route = Arc::clone(&route);
        let mut stopping = stop.subscribe();
        tokio::spawn(async move {
            let remote = client.remote_address();
            let upstream = examples::join_host_port(&route.upstream.0, route.upstream.1);
            match relay(client, &route, &mut stopping).await {
                Ok((up, down)) => {
                    examples::say!("{remote} -> {upstream}: {up} bytes up, {down} bytes down")
                }
                Err(e) => examples::say!("{remote} -> {upstream}: {e:#}"),
            }
            drop(permit);
            drop(stopping);
        });
    }
    // Stopping: no new connections; every relay still open resets both its sides (the
    // process's exit would otherwise end them with a FIN, a clean end) and reports.
    server.close();
    examples::say!("Shutting down ({} open)", stop.receiver_count());
    stop.send_replace(true);
    if tokio::time::timeout(STOP_TIME, stop.closed())
        .await
        .is_err()
    {
        examples::say!(
            "Gave up waiting for {} connection(s)",
            stop.receiver_count()
        );
    }
    examples::say!("Proxy stopped");
    Ok(())
}

/// The addresses `upstream` resolves to now (the system's resolver, on a blocking thread).
async fn resolve(upstream: &(String, u16)) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let (host, port) = upstream.clone();
    tokio::task::spawn_blocking(move || {
        (host.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Whether a connection to `target` reaches a listener bound to `listening`: the same address,
/// or, for a listener on every address (`0.0.0.0`, or `::`, which takes IPv4 too unless it is
/// `ipv6_only`, as `net.ipv6.bindv6only = 1` makes it), any address of this host with its
/// port (of its family, for an IPv6-only one). A connect to `0.0.0.0` reaches 127.0.0.1, and
/// one to `::` reaches `::1` (Linux), so an unspecified target is taken as that loopback.
fn reaches(listening: SocketAddr, ipv6_only: bool, target: SocketAddr) -> bool {
    let own = listening.ip().to_canonical();
    let ip = match target.ip().to_canonical() {
        IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let every = own.is_unspecified()
        && if listening.is_ipv6() {
            !ipv6_only || ip.is_ipv6()
        } else {
            ip.is_ipv4()
        };
    // A link-local address is this host's only on the link its scope names: `fe80::1` on
    // another link than the listener's is another host.
    let scope = |address: SocketAddr| match address {
        SocketAddr::V6(address) => address.scope_id(),
        SocketAddr::V4(_) => 0,
    };
    let same = ip == own && (scope(target) == scope(listening) || !is_link_local(ip));
    target.port() == listening.port() && (same || (every && is_local(ip, scope(target))))
}

/// Whether `ip` is an IPv6 link-local address (`fe80::/10`), which names a host only together
/// with its link.
fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Whether `ip` (with `scope`, the link of an IPv6 link-local address) is an address of this
/// host: one a socket can be bound to, and, unless it is a loopback address, the source address
/// the kernel picks to reach it (a UDP socket's connect sends nothing). Binding alone is not
/// enough: with `net.ipv4.ip_nonlocal_bind = 1` (or `net.ipv6.ip_nonlocal_bind`) any address
/// can be bound.
fn is_local(ip: IpAddr, scope: u32) -> bool {
    let at = |ip: IpAddr, port: u16| match ip {
        IpAddr::V4(v4) => SocketAddr::from((v4, port)),
        IpAddr::V6(v6) => std::net::SocketAddrV6::new(v6, port, 0, scope).into(),
    };
    if std::net::UdpSocket::bind(at(ip, 0)).is_err() {
        return false;
    }
    let unspecified: IpAddr = match ip {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    // An address of this host has a local route, whose source is the address itself (the
    // loopback's are all reached from 127.0.0.1).
    ip.is_loopback()
        || std::net::UdpSocket::bind((unspecified, 0))
            .and_then(|socket| {
                socket.connect(at(ip, 9))?;
                socket.local_addr()
            })
            .is_ok_and(|source| source.ip() == ip)
}

/// How long a stopping proxy waits for its relays to reset their connections and report.
const STOP_TIME: Duration = Duration::from_secs(5);

/// Returns once the proxy is stopping (or its sender is gone, which is the same).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// The error of a connection the proxy cut because it is stopping.
fn stopped() -> std::io::Error {
    std::io::Error::other("the proxy is stopping")
}

/// One connection: TLS (when terminating it), the upstream connection with the PROXY header
/// (when asked for), then both directions until both have finished. Returns the bytes copied
/// up and down.
async fn relay(
    client: Socket,
    route: &Route,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<(u64, u64)> {
    let header = route
        .send_proxy_v2
        .then(|| proxy_header(&client.remote_address(), &client.local_address()));
    match &route.tls {
        Some(config) => {
            // A stop during the handshake resets the client too: a handle of its own on the
            // socket outlives the handshake (and the socket it owns) to set that up (best
            // effort, as `reset_on_close` is: without a descriptor to spare, a plain close).
            let handle = client.with_sock_ref(|socket| socket.try_clone()).ok();
            let tls = tokio::select! {
                tls = client.tls_server(config) => tls.context("no TLS with the client")?,
                () = stopping(stop) => {
                    if let Some(handle) = &handle {
                        let _ = handle.set_linger(Some(Duration::ZERO));
                    }
                    return Err(stopped().into());
                }
            };
            drop(handle);
            let upstream = connect_upstream(route, header, stop)
                .await
                .inspect_err(|_| tls.reset_on_close())?;
            copy_both_ways(tls.into_stream()?, upstream, route.idle_timeout, stop).await
        }
        None => {
            let upstream = connect_upstream(route, header, stop)
                .await
                .inspect_err(|_| client.reset_on_close())?;
            copy_both_ways(client.into_stream()?, upstream, route.idle_timeout, stop).await
        }
    }
}

/// A connection that can be made to end with a reset (RST) instead of a clean end of stream.
trait ResetOnClose {
    /// Sets `SO_LINGER` 0, so that the close which follows sends RST and the peer cannot take
    /// the end for a clean one. Best effort: a socket that is closed already needs nothing.
    fn reset_on_close(&self);
}

/// [`ResetOnClose`] for the connections a relay holds, before and after `into_stream`.
macro_rules! reset_on_close {
    ($($connection:ty),*) => {$(
        impl ResetOnClose for $connection {
            fn reset_on_close(&self) {
                let _ = self.with_sock_ref(|socket| socket.set_linger(Some(Duration::ZERO)));
            }
        }
    )*};
}

reset_on_close!(Socket, TlsSocket, SocketStream, TlsStream);

/// Connects to UPSTREAM and sends `header` first (or gives up when the proxy stops).
async fn connect_upstream(
    route: &Route,
    header: Option<Vec<u8>>,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<SocketStream> {
    let (host, port) = &route.upstream;
    let connect = a_socket(&route.selector)
        .tcp()
        .connect_timeout(CONNECT_TIMEOUT)
        .connect((host.as_str(), *port));
    let upstream = tokio::select! {
        upstream = connect => upstream.context("cannot connect upstream")?,
        () = stopping(stop) => return Err(stopped().into()),
    };
    let mut upstream = upstream.into_stream()?;
    if let Some(header) = header {
        upstream
            .write_all(&header)
            .await
            .context("sending the PROXY header")?;
    }
    Ok(upstream)
}

/// Copies both ways until both directions have finished, half-closing each direction's
/// destination when its source ends. When either side fails (a reset, a TLS session cut
/// without `close_notify`), both are reset: a failure is never passed on as a clean end. So
/// are both when nothing moves, either way, for `idle_timeout`: no byte read from either side
/// and none taken by either (a side that takes nothing stops the copying towards it, and then
/// the reading from the other), and when the proxy stops.
async fn copy_both_ways(
    client: impl AsyncRead + AsyncWrite + Unpin + ResetOnClose,
    upstream: SocketStream,
    idle_timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<(u64, u64)> {
    let activity = Activity::new();
    let mut client = Watched::new(client, "the client", &activity);
    let mut upstream = Watched::new(upstream, "upstream", &activity);
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => copied,
        () = activity.silence(idle_timeout) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("nothing moved for {} s: timed out", idle_timeout.as_secs()),
        )),
        () = stopping(stop) => Err(stopped()),
    };
    copied.map_err(|e| {
        client.inner.reset_on_close();
        upstream.inner.reset_on_close();
        e.into()
    })
}

/// When bytes last moved through a relay, in either direction, for its idle timeout.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// When bytes last moved, in milliseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// Bytes moved (or a side ended): the relay is not idle now.
    fn note(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `limit` (never, for a limit too large for the clock).
    async fn silence(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let Some(due) = last.checked_add(limit) else {
                return std::future::pending().await;
            };
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// One side of a relay, noting in its [`Activity`] every read and write that completes, and
/// naming the side in its errors (`reading from the client: Connection reset by peer`): the
/// connection's line, `CLIENT -> UPSTREAM: ...`, would not say which peer failed.
struct Watched<'a, S> {
    inner: S,
    /// `the client` or `upstream`.
    side: &'static str,
    activity: &'a Activity,
}

impl<'a, S> Watched<'a, S> {
    fn new(inner: S, side: &'static str, activity: &'a Activity) -> Self {
        Watched {
            inner,
            side,
            activity,
        }
    }

    /// Notes `poll` in the activity when it completed; an error names the side and what was
    /// being done (`reading from`, `writing to`), its kind kept.
    fn noting<T>(&self, doing: &str, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.activity.note();
        }
        poll.map_err(|e| std::io::Error::new(e.kind(), format!("{doing} {}: {e}", self.side)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.noting("reading from", poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.noting("writing to", poll)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.noting("writing to", poll)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.noting("writing to", poll)
    }
}

/// The PROXY v2 header for a client at `client` that reached us at `local`; `LOCAL` (no
/// addresses) when they are not IP addresses.
fn proxy_header(client: &SocketAddress, local: &SocketAddress) -> Vec<u8> {
    let ip = |a: &SocketAddress| a.as_inet().map(|inet| inet.socket_addr());
    match (ip(client), ip(local)) {
        (Some(source), Some(destination)) => net_sockets::proxy_header::v2(source, destination),
        _ => net_sockets::proxy_header::v2_local(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn what_reaches_a_listener() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        let reaches = |listening, target| reaches(listening, false, target);
        assert!(reaches(at("127.0.0.1:80"), at("127.0.0.1:80")));
        assert!(!reaches(at("127.0.0.1:80"), at("127.0.0.1:81")));
        assert!(!reaches(at("127.0.0.1:80"), at("127.0.0.2:80")));
        assert!(reaches(at("0.0.0.0:80"), at("127.0.0.2:80")));
        assert!(!reaches(at("0.0.0.0:80"), at("[::1]:80")));
        assert!(reaches(at("[::]:80"), at("127.0.0.1:80")));
        assert!(reaches(at("[::ffff:127.0.0.1]:80"), at("127.0.0.1:80")));
        // TEST-NET-1: no address of this host.
        assert!(!reaches(at("0.0.0.0:80"), at("192.0.2.1:80")));
        // A connect to `0.0.0.0` reaches 127.0.0.1, one to `::` reaches `::1` (Linux).
        assert!(reaches(at("127.0.0.1:80"), at("0.0.0.0:80")));
        assert!(reaches(at("[::1]:80"), at("[::]:80")));
        assert!(reaches(
            at("[::ffff:127.0.0.1]:80"),
            at("[::ffff:0.0.0.0]:80")
        ));
        assert!(!reaches(at("127.0.0.2:80"), at("0.0.0.0:80")));
        assert!(!reaches(at("[::1]:80"), at("0.0.0.0:80")));
        assert!(!reaches(at("127.0.0.1:80"), at("[::]:80")));
        // `fe80::1` on another link (scope) than the listener's is another host.
        assert!(reaches(at("[fe80::1%2]:80"), at("[fe80::1%2]:80")));
        assert!(!reaches(at("[fe80::1%2]:80"), at("[fe80::1%3]:80")));
    }

    /// `::` made IPv6-only (`net.ipv6.bindv6only = 1`) takes no IPv4 client: an IPv4 upstream
    /// at its port is another server; an IPv6 one of this host is still the proxy.
    #[test]
    fn what_reaches_an_ipv6_only_listener() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(!reaches(at("[::]:80"), true, at("127.0.0.1:80")));
        assert!(!reaches(at("[::]:80"), true, at("[::ffff:127.0.0.1]:80")));
        assert!(reaches(at("[::]:80"), true, at("[::1]:80")));
        assert!(reaches(at("[::]:80"), true, at("[::]:80")));
    }

    #[test]
    fn unix_addresses_get_a_local_header() {
        let unix = SocketAddress::Unix(net_sockets::UnixSocketAddress::new("/tmp/x"));
        let inet = SocketAddress::Inet(net_sockets::InetSocketAddress::new(
            SocketAddr::from(([127, 0, 0, 1], 1)).ip(),
            1,
        ));
        assert_eq!(
            proxy_header(&unix, &inet),
            net_sockets::proxy_header::v2_local()
        );
        assert_eq!(proxy_header(&inet, &inet).len(), 28);
    }
}
