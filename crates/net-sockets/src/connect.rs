//! Connecting stream sockets: one address, or every address of a host name raced Happy
//! Eyeballs style (RFC 8305).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket as RawSocket, Type};
use tokio::net::{TcpStream, UnixStream};

use crate::address::{SocketTarget, unscoped};
use crate::core::Owner;
use crate::listener::SocketFile;
use crate::options::{Kind, SocketOptions};
use crate::selector::{SelectorInner, SelectorSleep};
use crate::stream::{Conn, Origin, Stream};
use crate::transport::Link;
use crate::{Error, Result, Socket, SocketAddress, UnixSocketAddress};

/// How long an attempt runs alone before the next address is tried in parallel.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Whether a non-blocking `connect(2)` is under way rather than failed.
///
/// `EINPROGRESS` is the usual answer; a Unix socket whose listener's backlog is full answers
/// `EAGAIN`, which is a failure (the connection was not queued), so only TCP treats it as
/// pending (tokio's `WouldBlock` mapping would otherwise hide it).
fn in_progress(e: &io::Error, tcp: bool) -> bool {
    e.raw_os_error() == Some(libc::EINPROGRESS) || (tcp && e.kind() == io::ErrorKind::WouldBlock)
}

/// Resolves a host name into IP addresses (in the resolver's order), on a blocking thread of
/// `handle`'s runtime.
///
/// # Errors
///
/// [`Error::Resolve`] with the resolver's error as its source (an empty answer is a
/// [`NotFound`](io::ErrorKind::NotFound) source); [`Error::Io`] with the OS's `EMFILE` or
/// `ENFILE` when the lookup failed with the process or the system out of descriptors (see
/// [`out_of_descriptors`]).
pub(crate) async fn resolve(
    handle: &tokio::runtime::Handle,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let name = host.to_owned();
    let found = handle
        .spawn_blocking(move || {
            (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>)
                .map_err(|e| out_of_descriptors(&e).ok_or(e))
        })
        .await
        .unwrap_or_else(|e| Err(Err(io::Error::other(e))));
    let failed = |source| Error::Resolve {
        host: host.to_owned(),
        source,
    };
    match found {
        Ok(addresses) if addresses.is_empty() => Err(failed(io::Error::new(
            io::ErrorKind::NotFound,
            "the name resolved to no address",
        ))),
        Ok(addresses) => Ok(addresses),
        Err(Ok(exhausted)) => Err(Error::Io(exhausted)),
        Err(Err(e)) => Err(failed(e)),
    }
}

/// The OS's `EMFILE` or `ENFILE` when a lookup that failed with `e` failed for want of a
/// descriptor: the system resolver could open neither `/etc/hosts` nor a socket to a DNS
/// server, and glibc then answers as for a name that does not exist ("Name or service not
/// known"), a failure nobody retries, though the name is good and the same call to an IP
/// address fails with `EMFILE`. Either the lookup says so itself (`EAI_SYSTEM`), or a
/// descriptor made right after it cannot be had either.
fn out_of_descriptors(e: &io::Error) -> Option<io::Error> {
    let exhausted = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    if exhausted(e) {
        return Some(io::Error::from_raw_os_error(e.raw_os_error()?));
    }
    RawSocket::new(Domain::IPV4, Type::DGRAM, None)
        .err()
        .filter(exhausted)
}

/// Keeps the addresses a socket bound to `local` reaches (see [`reaches`]); with
/// `dual_stack_to_ipv4` (a UDP socket, which sends to an IPv4 address as it is), also the IPv4
/// addresses when `local` is dual-stack (`::`, or IPv4-mapped).
///
/// # Errors
///
/// [`Error::Resolve`] for `host` when none is left.
fn keep_family(
    host: &str,
    addresses: &mut Vec<SocketAddr>,
    local: SocketAddr,
    dual_stack_to_ipv4: bool,
) -> Result<()> {
    let dual_stack = dual_stack_to_ipv4 && crate::datagram::dual_stack(local);
    addresses.retain(|&a| reaches(local, a) || (dual_stack && a.is_ipv4()));
    if addresses.is_empty() {
        let family = family(local);
        return Err(Error::Resolve {
            host: host.to_owned(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("the name has no {family} address, the local address's family"),
            ),
        });
    }
    Ok(())
}

/// The target itself, or the first address its host name resolves to (for `bind`); with
/// `local` (a UDP `connect_from`), the first a UDP socket bound to `local` reaches: of its
/// family, or any for a dual-stack `local`.
pub(crate) async fn resolve_first(
    selector: &SelectorInner,
    target: SocketTarget,
    local: Option<&SocketAddress>,
) -> Result<SocketAddress> {
    match target {
        SocketTarget::Address(address) => Ok(address),
        SocketTarget::Host { host, port } => {
            // Resolved on a blocking thread of the selector's runtime, which a closed selector
            // may have lost (its end cancels the resolution): closed, before or meanwhile, the
            // selector fails it as it fails an address, at once (a lookup under way runs on to
            // its end on its blocking thread, as when the future is dropped).
            selector.check_open()?;
            let resolved = tokio::select! {
                biased;
                () = selector.token().cancelled() => return Err(Error::SelectorClosed),
                resolved = resolve(selector.handle(), &host, port) => resolved,
            };
            selector.check_open()?;
            let mut addresses = resolved?;
            if let Some(SocketAddress::Inet(local)) = local {
                keep_family(&host, &mut addresses, local.socket_addr(), true)?;
            }
            Ok(SocketAddress::from(addresses[0]))
        }
    }
}

pub(crate) async fn connect(
    selector: &Arc<SelectorInner>,
    target: SocketTarget,
    options: &SocketOptions,
) -> Result<Socket> {
    let (stream, host, file) = match target {
        SocketTarget::Address(SocketAddress::Unix(unix)) => {
            if let Some(SocketAddress::Inet(local)) = &options.local_address {
                return Err(other_kind(
                    format!("{local}, an IP address"),
                    format!("{unix}, a Unix socket"),
                ));
            }
            let raw = RawSocket::new(Domain::UNIX, Type::STREAM, None)?;
            options.apply(&raw, Kind::Unix, false)?;
            let file = match &options.local_address {
                Some(SocketAddress::Unix(local)) => {
                    raw.bind(&local.sock_addr()?).map_err(|e| {
                        if e.kind() == io::ErrorKind::AddrInUse {
                            local.in_use(e)
                        } else {
                            LocalBindFailed::error(local.clone(), unix.clone(), e)
                        }
                    })?;
                    Some(SocketFile::record(local.path()))
                }
                _ => None,
            };
            // From here on the file is ours: removed when the connect fails or its future is
            // dropped, else with the socket.
            let file = Unclaimed(file);
            tracing::debug!(address = %unix, "connect attempt");
            let stream = connect_unix(selector, raw, &unix).await?;
            (Stream::Unix(stream), None, file)
        }
        SocketTarget::Address(SocketAddress::Inet(inet)) => {
            let address = inet.socket_addr();
            match &options.local_address {
                Some(SocketAddress::Unix(local)) => {
                    return Err(other_kind(
                        format!("{local}, a Unix path"),
                        format!("{inet}, an IP address"),
                    ));
                }
                Some(SocketAddress::Inet(local)) => {
                    check_family(local.socket_addr(), address)?;
                }
                None => {}
            }
            tracing::debug!(%address, "connect attempt");
            let stream = connect_one(selector, address, options).await?;
            (
                Stream::Tcp(stream),
                Some(address.ip().to_string()),
                Unclaimed(None),
            )
        }
        SocketTarget::Host { host, port } => {
            if let Some(SocketAddress::Unix(_)) = &options.local_address {
                // A name resolves to IP addresses only.
                return Err(Error::Resolve {
                    host,
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        "a host name has no Unix address, the local address's family",
                    ),
                });
            }
            let mut addresses = resolve(selector.handle(), &host, port).await?;
            if let Some(SocketAddress::Inet(local)) = &options.local_address {
                keep_family(&host, &mut addresses, local.socket_addr(), false)?;
            }
            let addresses = interleave(addresses);
            let stream = race(selector, &addresses, options).await?;
            (Stream::Tcp(stream), Some(host), Unclaimed(None))
        }
    };
    #[cfg(test)]
    tests::before_the_addresses(&stream);
    let (local, remote) = match &stream {
        Stream::Tcp(s) => (
            SocketAddress::from(s.local_addr()?),
            SocketAddress::from(tcp_peer(s)?),
        ),
        Stream::Unix(s) => {
            let sock = socket2::SockRef::from(s);
            (
                sock_addr_to_address(&sock.local_addr()?),
                sock_addr_to_address(&sock.peer_addr()?),
            )
        }
    };
    if let Stream::Tcp(s) = &stream {
        // Only now, on the attempt kept, which the socket closes from here on: a lingering
        // close of one dropped before (it lost, or the connect's future was dropped) would wait
        // for the peer on this thread.
        options.apply_linger(&socket2::SockRef::from(s))?;
    }
    let conn = Conn::open(
        selector,
        stream,
        local,
        remote,
        options,
        Origin::Connected {
            host,
            file: file.claim(),
        },
        // Made here: it lingers only with the builder's `linger`.
        options.linger.is_some(),
    )?;
    tracing::debug!(parent: conn.core().span(), "connected");
    Ok(Socket::new(Link { conn }))
}

/// A connect whose local address (`local`: the address and its kind) cannot be bound by a
/// socket that reaches its target (`target`, named alike).
fn other_kind(local: String, target: String) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the local address is {local}, the target {target}: \
             no socket binds one and reaches the other"
        ),
    ))
}

/// Whether a socket bound to `local` reaches `target` (of the same `SocketAddr` family: a
/// socket is of one). An IPv6 socket bound to `::` reaches every IPv6 address, IPv4-mapped ones
/// (`::ffff:a.b.c.d`) included; one bound to an IPv4-mapped address is IPv4 in effect and
/// reaches IPv4-mapped addresses only; one bound to another IPv6 address, which the kernel
/// makes IPv6-only, reaches no IPv4-mapped address.
pub(crate) fn reaches(local: SocketAddr, target: SocketAddr) -> bool {
    match (local, target) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => true,
        (SocketAddr::V6(local), SocketAddr::V6(target)) => {
            local.ip().is_unspecified()
                || local.ip().to_ipv4_mapped().is_some() == target.ip().to_ipv4_mapped().is_some()
        }
        _ => false,
    }
}

/// The family an address is of in effect: `IPv4`, `IPv4-mapped` (an IPv6 address that is an
/// IPv4 one) or `IPv6`.
pub(crate) fn family(address: SocketAddr) -> &'static str {
    match address {
        SocketAddr::V4(_) => "IPv4",
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => "IPv4-mapped",
        SocketAddr::V6(_) => "IPv6",
    }
}

/// Fails when a socket bound to `local` cannot reach `target` (see [`reaches`]): of the other
/// IP family, or, both IPv6, one IPv4-mapped and the other not (unless `local` is `::`).
///
/// # Errors
///
/// [`Error::Io`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput), naming both.
pub(crate) fn check_family(local: SocketAddr, target: SocketAddr) -> Result<()> {
    if reaches(local, target) {
        return Ok(());
    }
    Err(Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the local address {local} is an {} address, the target {target} an {} address: \
             the socket is of one family",
            family(local),
            family(target)
        ),
    )))
}

/// The socket file a connecting Unix socket bound to, until the socket that owns it is made:
/// dropped before (the connect failed, or its future was dropped mid-way), it removes the file.
struct Unclaimed(Option<SocketFile>);

impl Unclaimed {
    /// The file, now the socket's to remove.
    fn claim(mut self) -> Option<SocketFile> {
        self.0.take()
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(file) = self.0.take() {
            file.remove();
        }
    }
}

/// Connects `raw`, a Unix stream socket, to `target`, registered with the selector's runtime.
async fn connect_unix(
    selector: &Arc<SelectorInner>,
    raw: RawSocket,
    target: &UnixSocketAddress,
) -> Result<UnixStream> {
    raw.set_nonblocking(true)?;
    if let Err(e) = raw.connect(&target.sock_addr()?) {
        if !in_progress(&e, false) {
            return Err(Error::Io(e));
        }
    }
    let stream = {
        let _runtime = selector.handle().enter();
        UnixStream::from_std(raw.into())?
    };
    stream.writable().await?;
    if let Some(e) = stream.take_error()? {
        return Err(Error::Io(e));
    }
    Ok(stream)
}

/// A socket2 address as ours (an unnamed Unix peer is the empty path).
fn sock_addr_to_address(address: &SockAddr) -> SocketAddress {
    match address.as_socket() {
        Some(inet) => inet.into(),
        None => UnixSocketAddress::reported_raw(address).into(),
    }
}

/// One non-blocking TCP connect, registered with the selector's runtime.
async fn connect_one(
    selector: &Arc<SelectorInner>,
    address: SocketAddr,
    options: &SocketOptions,
) -> io::Result<TcpStream> {
    let raw = RawSocket::new(Domain::for_address(address), Type::STREAM, None)?;
    options
        .apply(&raw, Kind::TcpStream, address.is_ipv6())
        .map_err(io::Error::from)?;
    if address.is_ipv6() && address.ip().to_canonical().is_ipv4() {
        // An IPv4 peer in its IPv4-mapped form is reached by a dual-stack socket, also where
        // `net.ipv6.bindv6only = 1` makes IPv6 sockets IPv6-only (as the JDK under Ktor makes
        // every socket dual-stack): there the OS's `ENETUNREACH` would read as a routing fault.
        raw.set_only_v6(false)?;
    }
    if let Some(SocketAddress::Inet(local)) = &options.local_address {
        raw.bind(&local.socket_addr().into()).map_err(|source| {
            let source = unscoped(local.socket_addr(), source);
            LocalBindFailed::error(*local, address, source)
        })?;
    }
    raw.set_nonblocking(true)?;
    if let Err(e) = raw.connect(&address.into()) {
        if !in_progress(&e, true) {
            return Err(unscoped(address, e));
        }
    }
    let stream = {
        let _runtime = selector.handle().enter();
        TcpStream::from_std(raw.into())?
    };
    stream.writable().await?;
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    // A connect that failed without a pending error still has no peer.
    tcp_peer(&stream)?;
    Ok(stream)
}

/// A connect's `local_address` that could not be bound: the error names it, and says it is the
/// local address that failed. The OS's own message names neither, and reads as the target's
/// failure: "Cannot assign requested address" is also what a TCP connect reports when the
/// ephemeral ports towards its target are spent, "No such file or directory" what a Unix
/// connect to a path where no socket is reports. Carried by an `io::Error` of the OS error's
/// kind; the OS error is its source.
#[derive(Debug)]
struct LocalBindFailed {
    local: SocketAddress,
    target: SocketAddress,
    source: io::Error,
}

impl LocalBindFailed {
    /// The error of a bind to `local`, before a connect to `target`, that failed with `source`.
    fn error(
        local: impl Into<SocketAddress>,
        target: impl Into<SocketAddress>,
        source: io::Error,
    ) -> io::Error {
        io::Error::new(
            source.kind(),
            LocalBindFailed {
                local: local.into(),
                target: target.into(),
                source,
            },
        )
    }
}

impl std::fmt::Display for LocalBindFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "could not bind the local address {} to connect to {}",
            self.local, self.target
        )
    }
}

impl std::error::Error for LocalBindFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The peer of a connected TCP stream. Without one, the error the kernel holds for the
/// connection when there is one (a reset that came since the connect: `ECONNRESET`), else
/// `getpeername`'s own (`ENOTCONN`, which says only that there is no connection).
fn tcp_peer(stream: &TcpStream) -> io::Result<SocketAddr> {
    stream
        .peer_addr()
        .or_else(|e| Err(stream.take_error()?.unwrap_or(e)))
}

/// Orders addresses so that the families alternate, starting with the resolver's first.
fn interleave(addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addresses.first() else {
        return addresses;
    };
    let first_v6 = first.is_ipv6();
    let (mut preferred, mut other): (Vec<_>, Vec<_>) =
        addresses.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(preferred.len() + other.len());
    preferred.reverse();
    other.reverse();
    loop {
        match (preferred.pop(), other.pop()) {
            (None, None) => break,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
    out
}

type Attempt<'a> = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send + 'a>>;

/// Races connects to `addresses`: the next starts after [`ATTEMPT_DELAY`] or as soon as one
/// fails; the first to connect wins and the others are dropped (their descriptors closed, at
/// once: the attempts have no `linger` yet, see `Kind::TcpStream`). When every attempt fails,
/// the error is the last one's, but an address this host cannot use (see [`unusable`]) does
/// not hide the error of one it could.
///
/// With a fixed local port the attempts cannot overlap (a second one could not bind the port
/// the first holds): the next starts only when the one before failed.
async fn race(
    selector: &Arc<SelectorInner>,
    addresses: &[SocketAddr],
    options: &SocketOptions,
) -> Result<TcpStream> {
    let one_at_a_time = matches!(
        &options.local_address,
        Some(SocketAddress::Inet(local)) if local.socket_addr().port() != 0
    );
    // Each attempt with its address.
    let mut attempts: Vec<(SocketAddr, Attempt<'_>)> = Vec::new();
    let mut next = 0;
    let mut start_now = true;
    // The error to report, and whether its address is one this host cannot use.
    let mut last_error: Option<(io::Error, bool)> = None;
    // A sleep of the selector's runtime, which fails with `SelectorClosed` once the selector
    // is closed (also by the end of that runtime, whose timer cannot be polled then).
    let mut delay = SelectorSleep::new(selector, ATTEMPT_DELAY);
    std::future::poll_fn(|cx| {
        loop {
            let due = start_now || (!one_at_a_time && poll_elapsed(&mut delay, cx)?);
            if next < addresses.len() && due {
                let address = addresses[next];
                tracing::debug!(%address, "connect attempt");
                attempts.push((address, Box::pin(connect_one(selector, address, options))));
                next += 1;
                start_now = false;
                // From "now" on the delay's clock, the selector runtime's: the task polling may
                // run on another runtime, whose clock may be paused, ahead or behind.
                delay.reset_after(ATTEMPT_DELAY);
            }
            let mut i = 0;
            while i < attempts.len() {
                let (address, attempt) = &mut attempts[i];
                match attempt.as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => return Poll::Ready(Ok(stream)),
                    Poll::Ready(Err(e)) => {
                        // The error reported is the last attempt's, unless that attempt's
                        // address was one this host cannot use and an earlier one's was not.
                        let unusable = unusable(&e, *address);
                        if !(unusable && last_error.as_ref().is_some_and(|(_, u)| !u)) {
                            last_error = Some((e, unusable));
                        }
                        drop(attempts.swap_remove(i));
                        start_now = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            if next >= addresses.len() {
                if attempts.is_empty() {
                    let error = last_error
                        .take()
                        .map(|(e, _)| e)
                        .unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound));
                    return Poll::Ready(Err(Error::from(error)));
                }
                return Poll::Pending;
            }
            if start_now || (!one_at_a_time && poll_elapsed(&mut delay, cx)?) {
                continue;
            }
            return Poll::Pending;
        }
    })
    .await
}

/// Whether a connect to `address` failed because this host cannot use the address at all:
/// `EADDRNOTAVAIL` (no source address of its family: `::1` with IPv6 disabled),
/// `EAFNOSUPPORT` (no IPv6 in the kernel), `ENETUNREACH` (no route), and a UDP socket's
/// connect to it (which sends nothing and needs no TCP port) fails with one of them too.
/// Such an error says nothing of the peer, and would hide one that does (`ECONNREFUSED` from
/// another address of the same name). The same errors where the host has a route and a
/// source address are the peer's or this host's state, and are reported: `EADDRNOTAVAIL`
/// when the ephemeral ports towards the address are spent, `ENETUNREACH` from a router on the
/// way.
fn unusable(e: &io::Error, address: SocketAddr) -> bool {
    let of_this_host = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT | libc::ENETUNREACH)
        )
    };
    of_this_host(e)
        && RawSocket::new(Domain::for_address(address), Type::DGRAM, None)
            .and_then(|probe| probe.connect(&address.into()))
            .is_err_and(|probe| of_this_host(&probe))
}

/// Whether `delay` elapsed; the close error once the selector is closed.
fn poll_elapsed(delay: &mut SelectorSleep, cx: &mut Context<'_>) -> Result<bool> {
    match Pin::new(delay).poll(cx) {
        Poll::Ready(elapsed) => elapsed.map(|()| true),
        Poll::Pending => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SelectorManager;

    /// An address whose SYNs go unanswered: a listener with a full backlog that never accepts.
    fn black_hole() -> (RawSocket, Vec<std::net::TcpStream>, SocketAddr) {
        let listener = RawSocket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        listener.listen(0).unwrap();
        let address = listener.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        while let Ok(s) = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100))
        {
            fillers.push(s);
            assert!(fillers.len() < 64, "backlog never filled");
        }
        (listener, fillers, address)
    }

    #[tokio::test]
    async fn a_stalled_address_does_not_stall_the_connect() {
        let selector = SelectorManager::new();
        let (_hole, _fillers, stalled) = black_hole();
        let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good_address = good.local_addr().unwrap();
        let started = std::time::Instant::now();
        let stream = race(
            selector.inner(),
            &[stalled, good_address],
            &SocketOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_address);
        // The second attempt started after the attempt delay, not after a connect timeout.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= ATTEMPT_DELAY && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
    }

    /// Each attempt waits its own attempt delay after the one before: behind two stalled
    /// addresses, the third starts two delays after the first, not together with the second.
    #[tokio::test]
    async fn each_attempt_starts_an_attempt_delay_after_the_one_before() {
        let selector = SelectorManager::new();
        let (_first_hole, _first_fillers, first) = black_hole();
        let (_second_hole, _second_fillers, second) = black_hole();
        let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good_address = good.local_addr().unwrap();
        let started = std::time::Instant::now();
        let stream = race(
            selector.inner(),
            &[first, second, good_address],
            &SocketOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_address);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= 2 * ATTEMPT_DELAY && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
    }

    /// The attempt delay is a timer of the selector's runtime, and runs on its clock, whatever
    /// polls the connect: here a runtime whose (paused) clock is an hour ahead. (Before, each
    /// attempt reset the delay to the polling runtime's "now" plus 250 ms, which on the
    /// selector's clock was an hour away: the next address waited for the stalled one's SYN
    /// retries to give up, minutes, instead of 250 ms.)
    #[test]
    fn the_attempt_delay_runs_on_the_selectors_clock_whatever_polls() {
        let selector = SelectorManager::builder()
            .worker_threads(1)
            .build()
            .unwrap();
        let (_hole, _fillers, stalled) = black_hole();
        let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good_address = good.local_addr().unwrap();
        let ahead = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let (done, connected) = std::sync::mpsc::channel();
        let polling = selector.clone();
        std::thread::spawn(move || {
            ahead.block_on(async {
                tokio::time::advance(Duration::from_secs(3600)).await;
                let stream = race(
                    polling.inner(),
                    &[stalled, good_address],
                    &SocketOptions::default(),
                )
                .await;
                let _ = done.send(stream.map(|s| s.peer_addr().unwrap()));
            });
        });
        let peer = connected
            .recv_timeout(Duration::from_secs(10))
            .expect("the second address was not tried after the attempt delay")
            .unwrap();
        assert_eq!(peer, good_address);
        selector.close();
    }

    #[tokio::test]
    async fn a_failed_attempt_starts_the_next_at_once() {
        let selector = SelectorManager::new();
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good_address = good.local_addr().unwrap();
        let started = std::time::Instant::now();
        let stream = race(
            selector.inner(),
            &[refused, good_address],
            &SocketOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_address);
        assert!(started.elapsed() < ATTEMPT_DELAY, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn all_attempts_failing_reports_the_last_error() {
        let selector = SelectorManager::new();
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = race(
            selector.inner(),
            &[refused, refused],
            &SocketOptions::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    /// Guard: a name that resolves to both loopbacks (`localhost` on many hosts) where only one
    /// family listens connects to that one, whichever the resolver gave first, at once (a
    /// refused attempt starts the next); when neither listens, the last attempt's error.
    #[tokio::test]
    async fn a_refused_address_of_one_family_falls_back_to_the_other() {
        if std::net::UdpSocket::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 loopback: skipping");
            return;
        }
        let selector = SelectorManager::new();
        let refused = |address: &str| {
            let l = std::net::TcpListener::bind(address).unwrap();
            l.local_addr().unwrap()
        };
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        for (addresses, listening) in [
            ([refused("[::1]:0"), v4.local_addr().unwrap()], &v4),
            ([refused("127.0.0.1:0"), v6.local_addr().unwrap()], &v6),
        ] {
            let started = std::time::Instant::now();
            let stream = race(selector.inner(), &addresses, &SocketOptions::default())
                .await
                .unwrap();
            assert_eq!(stream.peer_addr().unwrap(), listening.local_addr().unwrap());
            assert!(started.elapsed() < ATTEMPT_DELAY, "{:?}", started.elapsed());
        }
        let err = race(
            selector.inner(),
            &[refused("[::1]:0"), refused("127.0.0.1:0")],
            &SocketOptions::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
    }

    /// A fixed local port: a later attempt cannot bind it while an earlier one still holds it,
    /// so the attempts must not overlap; the next address is tried when the one before fails.
    #[tokio::test]
    async fn with_a_fixed_local_port_the_next_address_is_tried_after_a_slow_failure() {
        let selector = SelectorManager::new();
        // Stalled at first (SYNs unanswered), refused once the hole closes: a slow failure.
        let (hole, fillers, slow) = black_hole();
        let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good_address = good.local_addr().unwrap();
        let local = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let options = SocketOptions {
            local_address: Some(local.into()),
            ..SocketOptions::default()
        };
        let addresses = [slow, good_address];
        let connect = race(selector.inner(), &addresses, &options);
        let close_hole = async {
            // Well after a raced second attempt would have started.
            tokio::time::sleep(ATTEMPT_DELAY * 2).await;
            drop((hole, fillers));
            std::future::pending::<()>().await
        };
        let stream = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::select! {
                stream = connect => stream,
                () = close_hole => unreachable!(),
            }
        })
        .await
        .expect("connect hung")
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_address);
        assert_eq!(stream.local_addr().unwrap(), local);
    }

    #[test]
    fn interleave_alternates_families() {
        let a: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "1.1.1.1:1", "2.2.2.2:1", "3.3.3.3:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let out: Vec<String> = interleave(a).iter().map(ToString::to_string).collect();
        assert_eq!(
            out,
            ["[::1]:1", "1.1.1.1:1", "[::2]:1", "2.2.2.2:1", "3.3.3.3:1"]
        );
    }

    /// A step run with the connected stream.
    type Step = Box<dyn FnOnce(&TcpStream)>;

    thread_local! {
        /// What runs on this thread in `connect`, once the connection is made and before its
        /// addresses are read (the peer acting in that moment).
        static BEFORE_ADDRESSES: std::cell::RefCell<Option<Step>> = std::cell::RefCell::new(None);
    }

    pub(super) fn before_the_addresses(stream: &Stream) {
        if let Stream::Tcp(s) = stream {
            if let Some(step) = BEFORE_ADDRESSES.with(|b| b.borrow_mut().take()) {
                step(s);
            }
        }
    }

    /// A connection its peer resets once it is made, before `connect` reads its addresses,
    /// fails the connect with the reset, the error the kernel holds for it. (Before, with
    /// `getpeername`'s `ENOTCONN`: kind `NotConnected`, "Transport endpoint is not
    /// connected", as if no connection had been made.)
    #[tokio::test]
    async fn a_connection_reset_before_its_addresses_are_read_fails_with_the_reset() {
        let selector = SelectorManager::new();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = server.local_addr().unwrap();
        BEFORE_ADDRESSES.with(|b| {
            *b.borrow_mut() = Some(Box::new(move |client: &TcpStream| {
                let (accepted, _) = server.accept().unwrap();
                socket2::SockRef::from(&accepted)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(accepted);
                // Bounded: the reset crosses the loopback at once.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while client.peer_addr().is_ok() {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the reset never arrived"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
            }))
        });
        let e = connect(
            selector.inner(),
            SocketTarget::Address(address.into()),
            &SocketOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::ConnectionReset),
            "{e:?}"
        );
    }
}
