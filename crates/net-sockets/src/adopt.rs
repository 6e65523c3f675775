//! Adopting sockets made elsewhere: `std` sockets handed over by a supervisor or another library,
//! and the listening sockets systemd passes to a socket-activated service.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, SockRef, Socket as RawSocket, Type};

use crate::{Error, Result};

mod sealed {
    /// Keeps [`StdListener`](super::StdListener) and [`StdStream`](super::StdStream)
    /// implemented by this crate only.
    pub trait Sealed {}
}

/// A listening `std` socket [`ServerSocket::from_std`](crate::ServerSocket::from_std) can adopt:
/// [`std::net::TcpListener`] or [`std::os::unix::net::UnixListener`].
pub trait StdListener: sealed::Sealed {
    /// The socket, and whether it is a Unix socket.
    #[doc(hidden)]
    fn into_parts(self) -> (OwnedFd, bool);
}

/// A connected `std` stream [`Socket::from_std`](crate::Socket::from_std) can adopt:
/// [`std::net::TcpStream`] or [`std::os::unix::net::UnixStream`].
pub trait StdStream: sealed::Sealed {
    /// The socket, and whether it is a Unix socket.
    #[doc(hidden)]
    fn into_parts(self) -> (OwnedFd, bool);
}

macro_rules! std_socket {
    ($trait:ident: $($ty:ty => $unix:expr),*) => {$(
        impl sealed::Sealed for $ty {}

        impl $trait for $ty {
            fn into_parts(self) -> (OwnedFd, bool) {
                (OwnedFd::from(self), $unix)
            }
        }
    )*};
}

std_socket!(StdListener: std::net::TcpListener => false, std::os::unix::net::UnixListener => true);
std_socket!(StdStream: std::net::TcpStream => false, std::os::unix::net::UnixStream => true);

/// Refuses to adopt `socket` unless it is of type `ty` and of one of `families` (a `std` wrapper
/// holds whatever descriptor it was made from: `From<OwnedFd>` is safe code). `what` names what
/// was expected, for the error.
///
/// # Errors
///
/// [`Error::Io`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput) when it is not, also
/// when it is not a socket at all (a pipe, a file: `ENOTSOCK`, which has no kind of its own,
/// kept as the source); another OS error as it is.
pub(crate) fn check_kind(
    socket: &SockRef<'_>,
    ty: Type,
    families: &[Domain],
    what: &str,
) -> Result<()> {
    let refused = |why: &str| {
        Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the socket to adopt is not a {what}{why}"),
        )))
    };
    let socket_type = match socket.r#type() {
        Ok(socket_type) => socket_type,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            // `ENOTSOCK` has no kind of its own: `InvalidInput`, the OS error kept as the
            // source.
            return Err(Error::Io(crate::error::Described::error(
                io::ErrorKind::InvalidInput,
                format!("the socket to adopt is not a {what}: the descriptor is not a socket"),
                e,
            )));
        }
        Err(e) => return Err(Error::Io(e)),
    };
    let domain = family(socket)?;
    if socket_type != ty || !families.contains(&domain) {
        return refused("");
    }
    if domain != Domain::UNIX {
        if let Some(protocol) = other_protocol(socket, ty)? {
            return refused(&format!(": its IP protocol is {protocol}"));
        }
    }
    Ok(())
}

/// The IP protocol of an IP socket of type `ty` when it is not the one the type stands for
/// here (UDP for a datagram socket; TCP, or Multipath TCP, which TCP peers reach, for a
/// stream): UDP-Lite, SCTP, ICMP echo sockets share the types, and no UDP or TCP peer reaches
/// them. `None` where the OS does not report the protocol.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn other_protocol(socket: &SockRef<'_>, ty: Type) -> Result<Option<i32>> {
    /// `IPPROTO_MPTCP`.
    const MPTCP: i32 = 262;
    let Some(protocol) = socket.protocol()? else {
        return Ok(None);
    };
    let ours = if ty == Type::DGRAM {
        protocol == socket2::Protocol::UDP
    } else {
        protocol == socket2::Protocol::TCP || protocol == socket2::Protocol::from(MPTCP)
    };
    Ok((!ours).then(|| i32::from(protocol)))
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn other_protocol(_socket: &SockRef<'_>, _ty: Type) -> Result<Option<i32>> {
    Ok(None)
}

/// The IP families.
pub(crate) const INET: &[Domain] = &[Domain::IPV4, Domain::IPV6];

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// A socket's address family: `SO_DOMAIN` where the OS has it (Linux, Android), else
/// [`family_by_address`].
pub(crate) fn family(socket: &SockRef<'_>) -> io::Result<Domain> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        socket.domain()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        family_by_address(socket)
    }
}

/// A socket's address family as its own address (`getsockname`) gives it, which every socket
/// has, bound or not (an unnamed Unix socket's is `AF_UNIX` with no path): where the OS has no
/// `SO_DOMAIN` (macOS, the BSDs). Built on Linux too, for its test.
#[cfg(any(test, not(any(target_os = "linux", target_os = "android"))))]
fn family_by_address(socket: &SockRef<'_>) -> io::Result<Domain> {
    Ok(socket.local_addr()?.domain())
}

/// Whether a socket listens (`SO_ACCEPTCONN`): through socket2 where it offers the option
/// (Linux, Android, FreeBSD), else [`listens_by_getsockopt`].
pub(crate) fn listens(socket: &SockRef<'_>) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        socket.is_listener()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        listens_by_getsockopt(socket)
    }
}

/// `SO_ACCEPTCONN` by `getsockopt` itself: macOS and the other BSDs have the option, which
/// socket2 does not offer there. Built on Linux too, for its test.
#[cfg(any(
    test,
    not(any(target_os = "linux", target_os = "android", target_os = "freebsd"))
))]
fn listens_by_getsockopt(socket: &SockRef<'_>) -> io::Result<bool> {
    Ok(int_option(socket, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0)
}

/// An `int` socket option by `getsockopt`, for the options socket2 does not read on the
/// platform at hand. Built wherever [`listens_by_getsockopt`] is (Apple's systems included).
#[cfg(any(
    test,
    not(any(target_os = "linux", target_os = "android", target_os = "freebsd"))
))]
fn int_option(
    socket: &SockRef<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes `len` says, and the
    // descriptor is borrowed for the call.
    #[allow(unsafe_code)]
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if done == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Makes a send on `socket` fail with `EPIPE` rather than raise `SIGPIPE` where the send itself
/// does not ask that (on Apple's systems this crate's sends pass no `MSG_NOSIGNAL`: the
/// socket's `SO_NOSIGPIPE` does it, as socket2 and std have it there). The sockets this crate
/// makes have it (socket2 sets it), and so do the connections its listeners accept (they
/// inherit it); a socket made elsewhere may not (a C library's, one from `socketpair`), nor a
/// connection an adopted listener queued before its adoption. Asked first, and set only where
/// missing (setting it fails on a connection that is gone). Nothing to do elsewhere: sends
/// pass `MSG_NOSIGNAL` (see `stream.rs`).
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "tvos",
    target_os = "watchos",
    target_os = "visionos"
))]
pub(crate) fn ensure_no_sigpipe(socket: &SockRef<'_>) -> io::Result<()> {
    if int_option(socket, libc::SOL_SOCKET, libc::SO_NOSIGPIPE)? == 0 {
        socket.set_nosigpipe(true)?;
    }
    Ok(())
}

/// See the Apple version: elsewhere each send passes `MSG_NOSIGNAL`, or the platform is not
/// one this crate is built for.
#[cfg(not(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "tvos",
    target_os = "watchos",
    target_os = "visionos"
)))]
#[inline]
pub(crate) fn ensure_no_sigpipe(_socket: &SockRef<'_>) -> io::Result<()> {
    Ok(())
}

/// Set once the descriptors systemd passed were taken: each may have one owner only.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The listening sockets systemd passed to this process (socket activation: `LISTEN_PID`,
/// `LISTEN_FDS`, `LISTEN_FDNAMES`), each with its name (`FileDescriptorName=` of the socket
/// unit; `unknown` when none was given), in the order systemd passed them.
///
/// # Errors
///
/// [`Error::Io`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput) when the variables are
/// malformed (among them a `LISTEN_FDNAMES` that does not name each descriptor once), the
/// descriptors were taken already (each may be taken once per process), or one is not a
/// listening TCP or Unix stream socket; [`NotFound`](io::ErrorKind::NotFound) when the
/// variables are not set for this process (and its descriptors were not taken: once taken,
/// whatever the variables say since). Every descriptor is checked before any is taken: on
/// error, none is (they stay open where systemd put them).
pub(crate) fn systemd_listen_fds() -> Result<Vec<(String, RawSocket)>> {
    let invalid = |what: String| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, what));
    let taken_already =
        || invalid("the descriptors of socket activation were taken already".into());
    // Taken, they stay taken whatever the variables say since: a service may remove them once
    // it took its listeners (as `sd_listen_fds(1)` does), and was socket-activated all the same.
    if TAKEN.load(Ordering::Acquire) {
        return Err(taken_already());
    }
    let var = |name: &str| std::env::var(name).ok();
    let (Some(pid), Some(count)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::NotFound,
            "no socket activation: LISTEN_PID and LISTEN_FDS are not set",
        )));
    };
    let pid: u32 = pid
        .parse()
        .map_err(|_| invalid(format!("LISTEN_PID={pid:?} is not a process id")))?;
    if pid != std::process::id() {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::NotFound,
            "no socket activation: LISTEN_PID names another process",
        )));
    }
    let count: RawFd = count
        .parse()
        .ok()
        .filter(|n| (0..=4096).contains(n))
        .ok_or_else(|| invalid(format!("LISTEN_FDS={count:?} is not a descriptor count")))?;
    // One name for each descriptor, as systemd sets them: a list that names more or fewer
    // cannot be matched to them (taken by position, a name may be another socket's), and
    // `sd_listen_fds_with_names` fails on it too. An empty list names none.
    let names: Option<Vec<String>> = var("LISTEN_FDNAMES").map(|names| match names.as_str() {
        "" => Vec::new(),
        names => names.split(':').map(str::to_owned).collect(),
    });
    if let Some(names) = names
        .as_ref()
        .filter(|n| count > 0 && n.len() != count as usize)
    {
        return Err(invalid(format!(
            "LISTEN_FDNAMES={:?} names {} descriptors, LISTEN_FDS counts {count}",
            names.join(":"),
            names.len()
        )));
    }
    let names = names.unwrap_or_default();
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Err(taken_already());
    }
    // All checked first: one that is not a listening TCP or Unix stream socket (a datagram
    // socket of the same unit) leaves them all where systemd put them, none closed.
    if let Some(fd) =
        (LISTEN_FDS_START..LISTEN_FDS_START + count).find(|&fd| !is_inherited_listener(fd))
    {
        TAKEN.store(false, Ordering::Release);
        return Err(invalid(format!(
            "descriptor {fd} of socket activation is not a listening TCP or Unix stream socket"
        )));
    }
    // Taken as they are (systemd passes them without close-on-exec): the caller adopts
    // duplicates, made close-on-exec, and closes these once all are adopted, or gives them back.
    let sockets = (0..count)
        .map(|i| {
            let fd = LISTEN_FDS_START + i;
            // SAFETY: counted by `LISTEN_FDS`, checked just above, and taken once: `TAKEN`
            // makes sure of that, so each gets exactly one owner.
            #[allow(unsafe_code)]
            let socket = RawSocket::from(unsafe { take_inherited(fd) });
            let name = names.get(i as usize).cloned();
            (name.unwrap_or_else(|| "unknown".into()), socket)
        })
        .collect();
    Ok(sockets)
}

/// Gives back the descriptors [`systemd_listen_fds`] took, none of them adopted: each is left
/// open where systemd put it, for a later call to take.
pub(crate) fn give_back(sockets: Vec<(String, RawSocket)>) {
    for (_, socket) in sockets {
        // Open, and owned by nobody again until taken anew.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(socket);
    }
    TAKEN.store(false, Ordering::Release);
}

/// Whether a descriptor systemd passed is an open, listening TCP or Unix stream socket, one
/// that `ServerSocket::adopt` takes (its protocol too). Checked through a borrow: a
/// `LISTEN_FDS` that counts more descriptors than were passed must not make this process take
/// one it does not own (closing it would close what another part of the process owns, such as
/// the runtime's own descriptors, and closing one that is not open aborts a debug build).
#[allow(unsafe_code)]
fn is_inherited_listener(fd: RawFd) -> bool {
    // SAFETY: `F_GETFD` only reads the descriptor table; any integer is a valid argument.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return false;
    }
    // SAFETY: the descriptor is open (checked just above), and the borrow ends in this
    // function, before anything here could close it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = SockRef::from(&borrowed);
    let families = [Domain::IPV4, Domain::IPV6, Domain::UNIX];
    check_kind(
        &socket,
        Type::STREAM,
        &families,
        "TCP or Unix stream socket",
    )
    .is_ok()
        && listens(&socket).unwrap_or(false)
}

/// Takes ownership of a descriptor systemd passed.
///
/// # Safety
///
/// `fd` is one of those `LISTEN_FDS` counts, found open and listening by
/// [`is_inherited_listener`], and not taken before.
#[allow(unsafe_code)]
unsafe fn take_inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: socket activation hands this process descriptors LISTEN_FDS_START ..
    // LISTEN_FDS_START + LISTEN_FDS, open and owned by nobody else in it (LISTEN_PID names this
    // process), and this one is the listening socket it promised (the caller checked).
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod platform_tests {
    use super::*;

    /// A descriptor that is not open (one a `LISTEN_FDS` counting more than systemd passed
    /// names) is no inherited listener: found out by `fcntl` alone, never borrowed. (Miri
    /// runs this test: the `unsafe` check is reached without a socket.)
    #[test]
    fn a_descriptor_that_is_not_open_is_no_inherited_listener() {
        // No process has a descriptor this high (past any `RLIMIT_NOFILE`).
        assert!(!is_inherited_listener(RawFd::MAX));
    }

    /// What the other platforms' ways find (the family by `getsockname`, `SO_ACCEPTCONN` by
    /// `getsockopt`) agrees with Linux's (`SO_DOMAIN`, socket2's), on every kind of socket
    /// adoption meets: unbound, bound, listening, connected and accepted, TCP over IPv4 and
    /// IPv6, and Unix, named and not.
    #[test]
    fn the_other_platforms_ways_agree_with_linuxs() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v4_client = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let v4_accepted = v4.accept().unwrap().0;
        let mut sockets: Vec<RawSocket> = vec![
            RawSocket::new(Domain::IPV4, Type::STREAM, None).unwrap(),
            RawSocket::new(Domain::UNIX, Type::STREAM, None).unwrap(),
            RawSocket::from(std::os::fd::OwnedFd::from(v4)),
            RawSocket::from(std::os::fd::OwnedFd::from(v4_client)),
            RawSocket::from(std::os::fd::OwnedFd::from(v4_accepted)),
        ];
        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            sockets.push(RawSocket::new(Domain::IPV6, Type::STREAM, None).unwrap());
            sockets.push(RawSocket::from(std::os::fd::OwnedFd::from(v6)));
        }
        let dir = std::env::temp_dir().join(format!("adopt-platforms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let unix_client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let unix_accepted = unix.accept().unwrap().0;
        let (pair_a, _pair_b) = std::os::unix::net::UnixStream::pair().unwrap();
        for fd in [
            std::os::fd::OwnedFd::from(unix),
            std::os::fd::OwnedFd::from(unix_client),
            std::os::fd::OwnedFd::from(unix_accepted),
            std::os::fd::OwnedFd::from(pair_a),
        ] {
            sockets.push(RawSocket::from(fd));
        }
        assert!(sockets.len() >= 9);
        for socket in &sockets {
            let socket = SockRef::from(socket);
            assert_eq!(
                family_by_address(&socket).unwrap(),
                socket.domain().unwrap(),
                "{socket:?}"
            );
            assert_eq!(
                listens_by_getsockopt(&socket).unwrap(),
                socket.is_listener().unwrap(),
                "{socket:?}"
            );
        }
        let listening = sockets
            .iter()
            .filter(|s| SockRef::from(*s).is_listener().unwrap())
            .count();
        assert!(listening >= 2, "both kinds of listener were asked");
        drop(sockets);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
