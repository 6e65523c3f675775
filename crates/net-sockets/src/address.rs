//! Socket addresses, and the [`ToSocketAddress`] conversion that `bind` and `connect` accept.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};

use net_io::PeerText;

use crate::{Error, Result};

/// The address of a socket: an IP address and port, or a Unix domain socket path.
///
/// `Display` prints `127.0.0.1:9002`, `[::1]:9002`, or the Unix path (its control characters
/// escaped: see [`UnixSocketAddress`]'s `Display`).
///
/// # Examples
///
/// ```
/// use net_sockets::SocketAddress;
///
/// let address = SocketAddress::from("[::1]:9002".parse::<std::net::SocketAddr>().unwrap());
/// assert_eq!(address.port(), Some(9002));
/// assert_eq!(address.to_string(), "[::1]:9002");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SocketAddress {
    /// An IPv4 or IPv6 address and port.
    Inet(InetSocketAddress),
    /// A Unix domain socket path.
    Unix(UnixSocketAddress),
}

impl SocketAddress {
    /// The port, or `None` for a Unix socket.
    pub fn port(&self) -> Option<u16> {
        match self {
            SocketAddress::Inet(a) => Some(a.port()),
            SocketAddress::Unix(_) => None,
        }
    }

    /// The IP socket address, or `None` for a Unix socket.
    pub fn as_inet(&self) -> Option<&InetSocketAddress> {
        match self {
            SocketAddress::Inet(a) => Some(a),
            SocketAddress::Unix(_) => None,
        }
    }

    /// The Unix socket address, or `None` for an IP socket.
    pub fn as_unix(&self) -> Option<&UnixSocketAddress> {
        match self {
            SocketAddress::Unix(a) => Some(a),
            SocketAddress::Inet(_) => None,
        }
    }
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Inet(a) => fmt::Display::fmt(a, f),
            SocketAddress::Unix(a) => fmt::Display::fmt(a, f),
        }
    }
}

impl From<SocketAddr> for SocketAddress {
    fn from(a: SocketAddr) -> Self {
        SocketAddress::Inet(InetSocketAddress::from(a))
    }
}

impl From<InetSocketAddress> for SocketAddress {
    fn from(a: InetSocketAddress) -> Self {
        SocketAddress::Inet(a)
    }
}

impl From<UnixSocketAddress> for SocketAddress {
    fn from(a: UnixSocketAddress) -> Self {
        SocketAddress::Unix(a)
    }
}

/// An IPv4 or IPv6 address and a port.
///
/// # Examples
///
/// ```
/// use net_sockets::InetSocketAddress;
///
/// let address = InetSocketAddress::new([127, 0, 0, 1], 9002);
/// assert_eq!(address.to_string(), "127.0.0.1:9002");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InetSocketAddress {
    address: SocketAddr,
}

impl InetSocketAddress {
    /// An address from an IP address (or anything that converts into one) and a port.
    pub fn new(ip: impl Into<IpAddr>, port: u16) -> Self {
        InetSocketAddress {
            address: SocketAddr::new(ip.into(), port),
        }
    }

    /// The IP address.
    pub fn ip(&self) -> IpAddr {
        self.address.ip()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The address as a [`std::net::SocketAddr`].
    pub fn socket_addr(&self) -> SocketAddr {
        self.address
    }
}

impl fmt::Display for InetSocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.address, f)
    }
}

impl From<SocketAddr> for InetSocketAddress {
    fn from(address: SocketAddr) -> Self {
        InetSocketAddress { address }
    }
}

impl From<InetSocketAddress> for SocketAddr {
    fn from(a: InetSocketAddress) -> Self {
        a.address
    }
}

impl From<SocketAddrV4> for InetSocketAddress {
    fn from(address: SocketAddrV4) -> Self {
        SocketAddr::V4(address).into()
    }
}

impl From<SocketAddrV6> for InetSocketAddress {
    fn from(address: SocketAddrV6) -> Self {
        SocketAddr::V6(address).into()
    }
}

impl From<SocketAddrV4> for SocketAddress {
    fn from(address: SocketAddrV4) -> Self {
        SocketAddr::V4(address).into()
    }
}

impl From<SocketAddrV6> for SocketAddress {
    fn from(address: SocketAddrV6) -> Self {
        SocketAddr::V6(address).into()
    }
}

impl std::str::FromStr for InetSocketAddress {
    type Err = std::net::AddrParseError;

    /// Parses an IP address and port as [`SocketAddr`] does (`127.0.0.1:80`, `[::1]:80`); a
    /// host name is not resolved (give it to `connect` as `"host:port"`).
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        text.parse::<SocketAddr>().map(InetSocketAddress::from)
    }
}

/// The path of a Unix domain socket.
///
/// A listener bound to a path creates the socket file, and removes it when it is closed; so
/// does a connecting socket given a path as its
/// [`local_address`](crate::TcpSocketBuilder::local_address), when it closes or its connect
/// fails or is dropped. Either removes the file only while it is still the one it made.
/// The file is made as `bind(2)` makes it, with mode `0777` less the process's umask (`0755`
/// under the usual `022`); a client needs write permission on it to connect. Nothing here
/// changes the mode: to keep other users out, set the umask before `bind`, or bind in a
/// directory they cannot reach (a `chmod` after `bind` leaves a moment when they can connect).
///
/// A path holds at most 107 bytes on Linux (103 on macOS and FreeBSD; this crate's limit, as
/// std's and socket2's: room for a terminating NUL), and no NUL byte: `bind` and `connect`
/// refuse a longer one, or one with a NUL byte, with [`Error::Io`] of kind
/// [`InvalidInput`](std::io::ErrorKind::InvalidInput), never cutting it short. (Linux also
/// binds a path of 108 bytes without the NUL, which a client made another way may have: a
/// listener accepts it, and reports its path.) A name in
/// Linux's abstract namespace is a NUL byte and then any bytes, NUL bytes included (each one
/// counts: `"\0svc\0a"` is not `"\0svc"`), none at all included (`"\0"`), 108 bytes in all
/// at most; other systems have no such names, and `bind` and `connect` refuse them there
/// the same way. A path that begins with `@` is a file's (relative) path, not an abstract
/// name, though `Display` shows both alike, as `ss` does (`"@svc"` and `"\0svc"` show as `@svc`):
/// what `Display` shows is for reading, not for giving back to [`new`](Self::new). A relative
/// path is the OS's: resolved against the working directory when the socket is bound or
/// connected, and reported as it was given; the file it made is removed there, though the
/// working directory changed since.
///
/// Two paths are equal (and hash and order alike) as [`Path`]s are, component by component
/// (`"/tmp/x.sock"` and `"/tmp//x.sock"` name one file); two names in the abstract namespace
/// only when every byte is (`"\0svc"` and `"\0svc/"` are two sockets).
///
/// # Examples
///
/// ```
/// use net_sockets::UnixSocketAddress;
///
/// let address = UnixSocketAddress::new("/tmp/x.sock");
/// assert_eq!(address.to_string(), "/tmp/x.sock");
/// assert_ne!(UnixSocketAddress::new("\0svc"), UnixSocketAddress::new("\0svc/"));
/// ```
#[derive(Clone, Debug)]
pub struct UnixSocketAddress {
    path: PathBuf,
}

/// What tells two Unix socket addresses apart.
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Identity<'a> {
    /// A name in the abstract namespace: every byte is its own (no `/` separates anything).
    Abstract(&'a [u8]),
    /// A path, or the empty path of an unnamed socket: as `Path` compares it.
    Path(&'a Path),
}

impl UnixSocketAddress {
    fn identity(&self) -> Identity<'_> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = self.path.as_os_str().as_bytes();
        match bytes.first() {
            Some(0) => Identity::Abstract(bytes),
            _ => Identity::Path(&self.path),
        }
    }
}

impl PartialEq for UnixSocketAddress {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for UnixSocketAddress {}

impl std::hash::Hash for UnixSocketAddress {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl PartialOrd for UnixSocketAddress {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for UnixSocketAddress {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.identity().cmp(&other.identity())
    }
}

impl UnixSocketAddress {
    /// An address for the socket file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        UnixSocketAddress { path: path.into() }
    }

    /// The socket file's path (empty for an unnamed socket, such as a connecting client's that
    /// was given no `local_address`; a NUL byte and the name for a socket in Linux's abstract
    /// namespace).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The address the OS reports for a Unix socket: its path, a NUL byte and its name for a
    /// socket in the abstract namespace, or the empty path for an unnamed socket.
    pub(crate) fn reported(address: &std::os::unix::net::SocketAddr) -> UnixSocketAddress {
        if let Some(path) = address.as_pathname() {
            return UnixSocketAddress::new(path);
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            if let Some(name) = address.as_abstract_name() {
                return UnixSocketAddress::abstract_name(name);
            }
        }
        UnixSocketAddress::new(PathBuf::new())
    }

    /// As [`reported`](Self::reported), from a socket2 address.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn reported_raw(address: &socket2::SockAddr) -> UnixSocketAddress {
        if let Some(path) = address.as_pathname() {
            return UnixSocketAddress::new(path);
        }
        match address.as_abstract_namespace() {
            Some(name) => UnixSocketAddress::abstract_name(name),
            None => UnixSocketAddress::new(PathBuf::new()),
        }
    }

    /// As [`reported`](Self::reported), from a socket2 address: see
    /// [`reported_up_to_nul`](Self::reported_up_to_nul).
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn reported_raw(address: &socket2::SockAddr) -> UnixSocketAddress {
        UnixSocketAddress::reported_up_to_nul(address)
    }

    /// A Unix socket's address where the kernel reports it with the length its binder passed
    /// (macOS, the BSDs; Linux counts the path's terminating NUL itself): the path is the
    /// bytes within that length up to the first NUL. socket2 (as std) takes the last byte in
    /// the length for a NUL, so a path bound with `SUN_LEN` (no NUL counted, the BSDs' own
    /// idiom) would lose its last byte, and one bound with the whole structure's size would
    /// keep the NUL bytes after it. No path (an unnamed socket, whose path is zeroed there):
    /// the empty path. Built on Linux too, for its test.
    #[cfg(any(test, not(any(target_os = "linux", target_os = "android"))))]
    fn reported_up_to_nul(address: &socket2::SockAddr) -> UnixSocketAddress {
        use std::os::unix::ffi::OsStrExt;
        if address.family() != libc::AF_UNIX as libc::sa_family_t {
            return UnixSocketAddress::new(PathBuf::new());
        }
        let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        let capacity = std::mem::size_of::<libc::sockaddr_un>() - offset;
        let len = (address.len() as usize)
            .saturating_sub(offset)
            .min(capacity);
        // SAFETY: the storage behind a `SockAddr` is a `sockaddr_storage`, larger than a
        // `sockaddr_un` and aligned for it, and every byte of it is initialized; `len` bytes
        // of the path are within it.
        #[allow(unsafe_code)]
        let bytes =
            unsafe { std::slice::from_raw_parts(address.as_ptr().cast::<u8>().add(offset), len) };
        let path = bytes.split(|&b| b == 0).next().unwrap_or_default();
        UnixSocketAddress::new(std::ffi::OsStr::from_bytes(path))
    }

    /// The socket address for this path, as `bind` and `connect` give it to the OS.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`], naming the path, when it does not fit in a socket
    /// address as this crate makes one (107 bytes on Linux, the terminating NUL taking the last
    /// of 108, as std and socket2 have it, though Linux takes 108 without it; an abstract
    /// name, which has none, may take all 108 with its leading NUL), or when a path that is not
    /// an abstract name holds a NUL byte: the OS would read the path only up to it, so a
    /// different path would be bound or reached, and its file would never be removed (where
    /// the OS has no abstract names, also when the NUL byte comes first).
    pub(crate) fn sock_addr(&self) -> io::Result<socket2::SockAddr> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = self.path.as_os_str().as_bytes();
        let capacity = std::mem::size_of::<libc::sockaddr_un>()
            - std::mem::offset_of!(libc::sockaddr_un, sun_path);
        // Elsewhere the OS would read the name only up to its leading NUL: the empty path.
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        if bytes.first() == Some(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "Unix socket name {:?} is in Linux's abstract namespace (a NUL byte \
                     first), which this OS does not have",
                    self.path
                ),
            ));
        }
        let (is_abstract, limit) = match bytes.first() {
            Some(0) => (true, capacity),
            _ => (false, capacity - 1),
        };
        if !is_abstract && bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "Unix socket path {:?} holds a NUL byte (only an abstract name starts \
                     with one): the OS would take the path only up to it",
                    self.path
                ),
            ));
        }
        if bytes.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "Unix socket path {:?} is {} bytes; a socket address holds at most {limit}",
                    self.path,
                    bytes.len()
                ),
            ));
        }
        socket2::SockAddr::unix(&self.path)
    }

    /// A name in the abstract namespace, written as the path that binds it: a NUL byte first.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn abstract_name(name: &[u8]) -> UnixSocketAddress {
        use std::os::unix::ffi::OsStringExt;
        let mut bytes = Vec::with_capacity(name.len() + 1);
        bytes.push(0);
        bytes.extend_from_slice(name);
        UnixSocketAddress::new(std::ffi::OsString::from_vec(bytes))
    }
}

/// A path as its file's name; a name in the abstract namespace as `ss` and systemd write it,
/// `@` then the name (it may hold any byte, NUL included); `(unnamed)` for the empty path of an
/// unnamed socket. Both are shown as [`net_io::PeerText`] shows text: control characters
/// (`\n`, `\u{1b}`), line separators (`\u{2028}`) and bidi controls (`\u{202e}`) escaped. A
/// client picks its own path or name, and a server shows it as its peer's address, so a
/// newline, a terminal escape or a right-to-left override in it never reaches a log raw.
impl fmt::Display for UnixSocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() || f.precision().is_some() {
            // Padded as a whole, as an IP address is (`{:>20}`).
            let mut text = String::new();
            self.write_shown(&mut text)?;
            return f.pad(&text);
        }
        self.write_shown(f)
    }
}

impl UnixSocketAddress {
    /// A bind's error at this address, with the address named when it is in use: the OS's own
    /// message ("Address already in use") says neither where nor why, and the usual cause is a
    /// socket file left behind by a process that ended without removing it. The OS error is
    /// kept, as the source of the message. A path is named as `Display` shows it, its control
    /// characters escaped: a message goes to logs as a peer's address does.
    pub(crate) fn in_use(&self, e: io::Error) -> io::Error {
        if e.kind() != io::ErrorKind::AddrInUse {
            return e;
        }
        let is_abstract = self.path.as_os_str().as_encoded_bytes().first() == Some(&0);
        let message = if is_abstract {
            format!("the abstract Unix socket name {:?} is in use", self.path)
        } else {
            use std::os::unix::fs::FileTypeExt;
            // What is there decides the advice: only a socket file can be left behind.
            match std::fs::symlink_metadata(&self.path).map(|m| m.file_type()) {
                Ok(kind) if kind.is_dir() => format!(
                    "a directory is at Unix socket path {}: a socket needs a path of its own \
                     (name a file inside it)",
                    self
                ),
                Ok(kind) if !kind.is_socket() => format!(
                    "a file that is not a socket is at Unix socket path {} (remove it, or \
                     choose another path)",
                    self
                ),
                _ => format!(
                    "a file exists at Unix socket path {}: another socket's, or one left behind \
                     by a process that ended without removing it (remove it once no process \
                     uses it)",
                    self
                ),
            }
        };
        crate::error::Described::error(io::ErrorKind::AddrInUse, message, e)
    }

    /// Writes what `Display` shows.
    fn write_shown(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let bytes = self.path.as_os_str().as_encoded_bytes();
        let shown = match bytes.split_first() {
            None => return out.write_str("(unnamed)"),
            Some((0, name)) => {
                out.write_str("@")?;
                name
            }
            Some(_) => bytes,
        };
        write!(out, "{}", PeerText(&String::from_utf8_lossy(shown)))
    }
}

/// What `bind` and `connect` were given: an address, or a host name still to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SocketTarget {
    /// A literal address (an IP literal given as a host is one).
    Address(SocketAddress),
    /// A host name, resolved by `connect` (every address tried) or `bind` (the first).
    Host { host: String, port: u16 },
}

impl SocketTarget {
    fn host(host: &str, port: u16) -> SocketTarget {
        // Brackets make an IPv6 literal (as in `"[::1]:80"`), never an IPv4 one.
        let literal = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            // The resolver takes the address without its brackets.
            Some(inner) if named_scope(inner) => {
                return SocketTarget::Host {
                    host: inner.to_owned(),
                    port,
                };
            }
            Some(inner) => ipv6_literal(inner, port),
            None => host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, port))
                .or_else(|| ipv6_literal(host, port)),
        };
        match literal {
            Some(address) => SocketTarget::Address(address.into()),
            None => SocketTarget::Host {
                host: host.to_owned(),
                port,
            },
        }
    }
}

/// An IPv6 address, with a numeric scope if it has one (`fe80::1%2`), as `std` parses it in
/// `"[fe80::1%2]:80"`.
fn ipv6_literal(text: &str, port: u16) -> Option<SocketAddr> {
    if text.contains('%') {
        format!("[{text}]:{port}")
            .parse::<SocketAddrV6>()
            .ok()
            .map(SocketAddr::V6)
    } else {
        let ip = text.parse::<Ipv6Addr>().ok()?;
        Some(SocketAddr::new(IpAddr::V6(ip), port))
    }
}

/// Whether the kernel keeps a scope id (an interface) with `ip`: a link-local unicast address,
/// or a multicast one of interface-local or link-local scope.
pub(crate) fn needs_scope(ip: &Ipv6Addr) -> bool {
    ip.is_unicast_link_local() || matches!(ip.segments()[0] & 0xff0f, 0xff01 | 0xff02)
}

/// The error of a bind or connect to `address` that failed with `e`: where the address is
/// link-local and has no scope, and the OS refused it for that (`EINVAL`: on Linux, a socket
/// bound to no interface cannot bind or reach such an address), an error of kind
/// `InvalidInput` that names the address and says what it lacks, with the OS error as its
/// source (the OS's own message, "Invalid argument", says neither); else `e`.
pub(crate) fn unscoped(address: SocketAddr, e: io::Error) -> io::Error {
    match address {
        SocketAddr::V6(v6)
            if v6.scope_id() == 0
                && needs_scope(v6.ip())
                && e.raw_os_error() == Some(libc::EINVAL) =>
        {
            let (ip, port) = (v6.ip(), v6.port());
            crate::error::Described::error(
                io::ErrorKind::InvalidInput,
                format!(
                    "{address} is a link-local address without a scope: give the interface \
                     it is reached on, by name or by index (as in [{ip}%eth0]:{port} or \
                     [{ip}%2]:{port})"
                ),
                e,
            )
        }
        _ => e,
    }
}

/// Whether `text` is an IPv6 address with a scope that names an interface (`fe80::1%eth0`),
/// which `std` does not parse (its scope is a number) and the system resolver looks up.
fn named_scope(text: &str) -> bool {
    text.split_once('%').is_some_and(|(ip, scope)| {
        ip.parse::<Ipv6Addr>().is_ok()
            && !scope.is_empty()
            && !scope.bytes().all(|b| b.is_ascii_digit())
    })
}

mod sealed {
    /// Keeps [`ToSocketAddress`](super::ToSocketAddress) implemented by this crate only.
    pub trait Sealed {}
}

/// Anything `bind` and `connect` accept as an address: `("host", port)`, `"host:port"`, a
/// [`SocketAddr`] (and its V4/V6 forms), `(IpAddr, port)`, an [`InetSocketAddress`], a
/// [`UnixSocketAddress`], a [`SocketAddress`] — and a reference to any of these.
///
/// A host that is an IP literal (`"127.0.0.1"`, `"::1"`, `"[::1]"`: brackets go only around an
/// IPv6 address, which may have a numeric scope, `"fe80::1%2"`) is used as it is; any other
/// host name is resolved when the socket is bound or connected. So is an IPv6 address whose
/// scope names an interface (`"fe80::1%eth0"`, with or without its brackets, in either form:
/// `("[fe80::1%eth0]", 80)`, `"[fe80::1%eth0]:80"`), given to the resolver without its
/// brackets (glibc's takes an interface's name as the scope of a link-local address only).
/// The resolver gets the host as it is, nothing trimmed (`" localhost"` is a name of its
/// own) or converted (an internationalized name goes as UTF-8, not in its IDNA form
/// `xn--…`: give that form; glibc refuses it without asking DNS, with an
/// [`Error::Resolve`](crate::Error::Resolve) whose source says "Name or service not known",
/// as it refuses a host with a port or brackets in it, `("localhost:80", 80)`). A fully
/// qualified name's trailing dot is kept: glibc 2.36 does not find `localhost.` in
/// `/etc/hosts`, and asks DNS; it finds names there without regard to case (`LOCALHOST`).
/// The system resolver reads the host as the system's does: glibc's, for one, also reads
/// the numeric forms of `inet_aton`, which `std` refuses, as IPv4 addresses (`"127.1"`,
/// `"0x7f.1"` and `"2130706433"` reach `127.0.0.1`), on a blocking thread as for any name.
///
/// A link-local IPv6 address (`fe80::…`) needs its scope, the interface it is on: without
/// one, a `bind` or `connect` to it (or a connect's local address) fails with
/// [`Error::Io`](crate::Error::Io) of kind [`InvalidInput`](std::io::ErrorKind::InvalidInput)
/// that names the address and says so, the OS's `EINVAL` as its source (a socket on no
/// interface cannot use such an address).
///
/// In a `"host:port"` string an IPv6 literal takes brackets (`"[::1]:80"`): without them
/// (`"::1:80"`, itself an IPv6 address) the string is ambiguous and refused with
/// [`Error::Io`](crate::Error::Io) of kind [`InvalidInput`](std::io::ErrorKind::InvalidInput),
/// as `std` refuses it; so is a string whose bracketed host is not an IPv6 address
/// (`"[localhost]:80"`, `"[127.0.0.1]:80"`) or whose port is not all digits or over 65535,
/// and one with a colon too many after a host that is not an IPv6 address (`"host:80:90"`).
/// An empty host (`":80"`, `("", 80)`) is refused the same way: it is neither "every
/// interface" (that is `"0.0.0.0"` or `"::"`) nor a name for the resolver.
///
/// The trait is sealed: the conversions are the ones listed here.
pub trait ToSocketAddress: sealed::Sealed {
    /// The address, or the host name to resolve.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn to_socket_target(&self) -> Result<SocketTarget>;
}

macro_rules! to_socket_address {
    ($($ty:ty => |$v:ident| $body:expr;)*) => {$(
        impl sealed::Sealed for $ty {}

        impl ToSocketAddress for $ty {
            #[allow(private_interfaces)]
            fn to_socket_target(&self) -> Result<SocketTarget> {
                let $v = self;
                $body
            }
        }
    )*};
}

to_socket_address! {
    SocketAddress => |a| Ok(SocketTarget::Address(a.clone()));
    InetSocketAddress => |a| Ok(SocketTarget::Address((*a).into()));
    UnixSocketAddress => |a| Ok(SocketTarget::Address(a.clone().into()));
    SocketAddr => |a| Ok(SocketTarget::Address((*a).into()));
    SocketAddrV4 => |a| SocketAddr::V4(*a).to_socket_target();
    SocketAddrV6 => |a| SocketAddr::V6(*a).to_socket_target();
    (IpAddr, u16) => |a| SocketAddr::new(a.0, a.1).to_socket_target();
    (Ipv4Addr, u16) => |a| SocketAddr::new(a.0.into(), a.1).to_socket_target();
    (Ipv6Addr, u16) => |a| SocketAddr::new(a.0.into(), a.1).to_socket_target();
    (&str, u16) => |a| host_and_port(a.0, a.1);
    (String, u16) => |a| host_and_port(&a.0, a.1);
    str => |a| parse_host_port(a);
    String => |a| parse_host_port(a);
}

impl<T: ToSocketAddress + ?Sized> sealed::Sealed for &T {}

impl<T: ToSocketAddress + ?Sized> ToSocketAddress for &T {
    #[allow(private_interfaces)]
    fn to_socket_target(&self) -> Result<SocketTarget> {
        (**self).to_socket_target()
    }
}

/// `(host, port)`; an empty host is refused, as in `":80"`.
fn host_and_port(host: &str, port: u16) -> Result<SocketTarget> {
    if host.is_empty() {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid socket address (\"\", {port}): the host is empty (every interface \
                 is \"0.0.0.0\" or \"::\")"
            ),
        )));
    }
    Ok(SocketTarget::host(host, port))
}

/// Parses `"host:port"` (`"[::1]:80"` for IPv6 literals, which need their brackets).
fn parse_host_port(text: &str) -> Result<SocketTarget> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(SocketTarget::Address(address.into()));
    }
    let invalid = || {
        Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid socket address {text:?}: expected host:port"),
        ))
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    if let Some(bracketed) = host.strip_prefix('[') {
        // `SocketAddr` took every IPv6 literal in brackets with a port: refused with one, it
        // is the port that is wrong.
        let inner = bracketed.strip_suffix(']').ok_or_else(invalid)?;
        if named_scope(inner) {
            // `std` parses a numeric scope only: an interface's name is the resolver's.
            let port = port_number(port).ok_or_else(invalid)?;
            return Ok(SocketTarget::host(host, port));
        }
        if ipv6_literal(inner, 0).is_some() {
            return Err(invalid());
        }
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid socket address {text:?}: {inner:?} is not an IPv6 address (brackets \
                 go around one, with or without a scope: \"[fe80::1%2]:80\", \
                 \"[fe80::1%eth0]:80\")"
            ),
        )));
    }
    if host.contains(':') {
        // An IPv6 literal without brackets (`::1:80` is also an address of its own) gets the
        // hint; a host with a colon that is no IPv6 address (`host:80:90`) is no host:port.
        let ipv6 = |t: &str| named_scope(t) || ipv6_literal(t, 0).is_some();
        if !ipv6(host) && !ipv6(text) {
            return Err(invalid());
        }
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid socket address {text:?}: an IPv6 address takes brackets before its \
                 port, as in \"[::1]:80\""
            ),
        )));
    }
    let port = port_number(port).ok_or_else(invalid)?;
    if host.is_empty() {
        return Err(invalid());
    }
    Ok(SocketTarget::host(host, port))
}

/// A port: digits only (`u16`'s parser also takes a sign), at most 65535.
fn port_number(text: &str) -> Option<u16> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the kernel reports a Unix address with its binder's length (macOS, the BSDs), the
    /// path is read up to its first NUL within that length: bound with `SUN_LEN` (no NUL
    /// counted) it keeps its last byte, bound with the whole structure's size it gets no NUL
    /// bytes after it; with the NUL counted, and unnamed, it reads as socket2 reads it.
    #[test]
    fn a_unix_address_is_read_up_to_its_nul_within_the_reported_length() {
        let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        let with_length = |len: usize| {
            let mut address = socket2::SockAddr::unix("/tmp/abc").unwrap();
            // SAFETY: within the storage, every byte of which is initialized.
            #[allow(unsafe_code)]
            unsafe {
                address.set_length(len as libc::socklen_t)
            };
            address
        };
        let sun_len = with_length(offset + "/tmp/abc".len());
        let whole = with_length(std::mem::size_of::<libc::sockaddr_un>());
        for address in [&sun_len, &whole] {
            assert_eq!(
                UnixSocketAddress::reported_up_to_nul(address).path(),
                Path::new("/tmp/abc"),
                "length {}",
                address.len()
            );
        }
        let usual = socket2::SockAddr::unix("/tmp/abc").unwrap();
        let unnamed = with_length(offset);
        for address in [&usual, &unnamed] {
            assert_eq!(
                UnixSocketAddress::reported_up_to_nul(address),
                UnixSocketAddress::reported_raw(address),
                "length {}",
                address.len()
            );
        }
    }

    /// A reported length beyond the path's room (up to the whole storage a `SockAddr` has, as
    /// a kernel may report for a truncated address), shorter than the family, or of the family
    /// alone (an unnamed socket), reads no byte outside the path's room, and never panics: a
    /// path that fills the room without a NUL is read whole, a length without a path is the
    /// empty path.
    #[test]
    fn a_unix_address_of_an_odd_reported_length_is_read_within_the_path() {
        let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        let room = std::mem::size_of::<libc::sockaddr_un>() - offset;
        let storage_len = std::mem::size_of::<libc::sockaddr_storage>();
        let with = |fill: u8, len: usize| {
            let mut storage = socket2::SockAddrStorage::zeroed();
            // The bytes past the path's room too: a read beyond the room would show them.
            // SAFETY: a byte array of the storage's size, every byte of which is initialized.
            #[allow(unsafe_code)]
            let all =
                unsafe { storage.view_as::<[u8; std::mem::size_of::<libc::sockaddr_storage>()]>() };
            all.fill(fill);
            // SAFETY: the storage is larger than a `sockaddr_un` and aligned for it.
            #[allow(unsafe_code)]
            let un = unsafe { storage.view_as::<libc::sockaddr_un>() };
            un.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for b in un.sun_path.iter_mut() {
                *b = fill as libc::c_char;
            }
            // SAFETY: `len` is within the storage, every byte of which is initialized.
            #[allow(unsafe_code)]
            unsafe {
                socket2::SockAddr::new(storage, len as libc::socklen_t)
            }
        };
        let whole = "a".repeat(room);
        for len in [offset + room, storage_len] {
            assert_eq!(
                UnixSocketAddress::reported_up_to_nul(&with(b'a', len)).path(),
                Path::new(&whole),
                "length {len}"
            );
        }
        for len in [0, 1, std::mem::size_of::<libc::sa_family_t>(), offset] {
            assert_eq!(
                UnixSocketAddress::reported_up_to_nul(&with(b'a', len)).path(),
                Path::new(""),
                "length {len}"
            );
        }
    }

    /// On Linux the socket address takes a path of 107 bytes (not 108) and an abstract name of
    /// 108 with its leading NUL, whatever the other systems' limits (103 bytes, no abstract
    /// names) are.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_socket_address_limits_are_linuxs_on_linux() {
        use std::os::unix::ffi::OsStringExt;
        let name = |first: u8, len: usize| {
            let mut bytes = vec![b'a'; len];
            bytes[0] = first;
            UnixSocketAddress::new(std::ffi::OsString::from_vec(bytes))
        };
        assert!(name(b'/', 107).sock_addr().is_ok());
        let e = name(b'/', 108).sock_addr().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        // Refused here, naming the limit, not by socket2 after.
        assert!(
            e.to_string()
                .ends_with("is 108 bytes; a socket address holds at most 107"),
            "{e}"
        );
        assert!(name(0, 108).sock_addr().is_ok());
        assert!(name(0, 1).sock_addr().is_ok());
        let e = name(0, 109).sock_addr().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(
            e.to_string()
                .ends_with("is 109 bytes; a socket address holds at most 108"),
            "{e}"
        );
    }

    /// A name in Linux's abstract namespace displays as `ss` and systemd write it, `@` then the
    /// name (control characters escaped), never with a raw NUL byte; an unnamed socket (the
    /// empty path) displays as such rather than as nothing.
    #[test]
    fn abstract_and_unnamed_addresses_display_readably() {
        let abstract_name = UnixSocketAddress::new("\0net-sockets\0x\n");
        assert_eq!(abstract_name.to_string(), "@net-sockets\\0x\\n");
        assert_eq!(
            SocketAddress::Unix(UnixSocketAddress::new("\0a")).to_string(),
            "@a"
        );
        assert_eq!(UnixSocketAddress::new("").to_string(), "(unnamed)");
        assert_eq!(
            UnixSocketAddress::new("/tmp/x.sock").to_string(),
            "/tmp/x.sock"
        );
        // Padded as a whole, as a path was before its control characters were escaped.
        assert_eq!(
            format!(
                "{:>14}|{:<4}|",
                UnixSocketAddress::new("/tmp/\n"),
                UnixSocketAddress::new("\0a")
            ),
            "       /tmp/\\n|@a  |"
        );
    }

    /// A peer picks its own path: a Unicode line or paragraph separator or a bidi control in it
    /// (a log viewer may break the line, or reorder what follows) is escaped as a control
    /// character is, in a path as in an abstract name.
    #[test]
    fn line_separators_and_bidi_controls_in_a_path_are_escaped() {
        assert_eq!(
            UnixSocketAddress::new("/tmp/a\u{2028}b\u{202e}c\u{2067}d\u{85}.sock").to_string(),
            "/tmp/a\\u{2028}b\\u{202e}c\\u{2067}d\\u{85}.sock"
        );
        assert_eq!(
            UnixSocketAddress::new("\0x\u{2029}\u{202a}").to_string(),
            "@x\\u{2029}\\u{202a}"
        );
    }

    #[test]
    fn strings_parse_into_targets() {
        let t = "127.0.0.1:80".to_socket_target().unwrap();
        assert_eq!(
            t,
            SocketTarget::Address("127.0.0.1:80".parse::<SocketAddr>().unwrap().into())
        );
        let t = "localhost:80".to_socket_target().unwrap();
        assert_eq!(
            t,
            SocketTarget::Host {
                host: "localhost".into(),
                port: 80
            }
        );
        let t = ("::1", 80).to_socket_target().unwrap();
        assert_eq!(t, (&&("::1", 80)).to_socket_target().unwrap());
        assert_eq!(
            t,
            SocketTarget::Address("[::1]:80".parse::<SocketAddr>().unwrap().into())
        );
        assert!("nonsense".to_socket_target().is_err());
        // An IPv6 literal without brackets is ambiguous (`::1:80` is also an address of its
        // own): refused, as `std` refuses it, with a hint.
        for ambiguous in ["::1:80", "fe80::1:443", "2001:db8::1:8080"] {
            let e = ambiguous.to_socket_target().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{ambiguous}");
            assert!(e.to_string().contains("[::1]:80"), "{ambiguous}: {e}");
        }
        assert!("host:99999".to_socket_target().is_err());
    }

    #[test]
    fn a_bracketed_host_must_be_an_ipv6_address_and_a_port_digits() {
        // With its brackets, the hint about brackets is wrong: say what is.
        for (text, says) in [
            ("[localhost%eth0]:80", "is not an IPv6 address"),
            ("[fe80::1%]:80", "is not an IPv6 address"),
            ("[127.0.0.1]:80", "is not an IPv6 address"),
            ("[localhost]:80", "is not an IPv6 address"),
            ("[::1]", "expected host:port"),
            ("[::1:80", "expected host:port"),
            ("host:+80", "expected host:port"),
            ("host:", "expected host:port"),
            ("host: 80", "expected host:port"),
        ] {
            let e = text.to_socket_target().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{text}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        // The `(host, port)` form agrees: brackets make an IPv6 literal, never an IPv4 one.
        assert!(matches!(
            ("[127.0.0.1]", 80).to_socket_target().unwrap(),
            SocketTarget::Host { .. }
        ));
        assert_eq!(
            ("[::1]", 80).to_socket_target().unwrap(),
            SocketTarget::Address("[::1]:80".parse::<SocketAddr>().unwrap().into())
        );
        // A numeric scope is std's and works.
        let t = "[fe80::1%2]:80".to_socket_target().unwrap();
        assert_eq!(
            t,
            SocketTarget::Address("[fe80::1%2]:80".parse::<SocketAddr>().unwrap().into())
        );
    }

    /// A bracketed IPv6 address with a bad port (out of range, signed, empty) is refused for
    /// its port, never for its address. (Before, `"[::1]:99999"` was refused with "\"::1\" is
    /// not an IPv6 address", which sent the user looking at the wrong half.)
    #[test]
    fn a_bracketed_ipv6_address_with_a_bad_port_is_refused_for_the_port() {
        for text in [
            "[::1]:99999",
            "[::1]:65536",
            "[::1]:",
            "[::1]:+80",
            "[::1]:-1",
            "[fe80::1%2]:99999",
        ] {
            let e = text.to_socket_target().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{text}");
            let message = e.to_string();
            assert!(message.contains("expected host:port"), "{text}: {e}");
            assert!(!message.contains("not an IPv6 address"), "{text}: {e}");
        }
    }

    /// A scoped IPv6 literal (`fe80::1%2`: the scope is a number) in the `(host, port)` form is
    /// the same address as in the `"host:port"` form, with or without its brackets. (With them
    /// it was taken for a host name, which no resolver knows, and failed with a resolve error;
    /// without them it went to the resolver, on a blocking thread.)
    #[test]
    fn a_scoped_ipv6_literal_is_an_address_in_every_form() {
        let scoped = SocketTarget::Address("[fe80::1%2]:80".parse::<SocketAddr>().unwrap().into());
        assert_eq!("[fe80::1%2]:80".to_socket_target().unwrap(), scoped);
        assert_eq!(("[fe80::1%2]", 80).to_socket_target().unwrap(), scoped);
        assert_eq!(("fe80::1%2", 80).to_socket_target().unwrap(), scoped);
        assert_eq!(
            (String::from("[fe80::1%2]"), 80)
                .to_socket_target()
                .unwrap(),
            scoped
        );
        // A scope that is a name is the resolver's to look up (it knows interface names), in
        // every form, given without brackets (before, a bracketed one was refused, or given to
        // the resolver with its brackets, which no resolver takes).
        let named = SocketTarget::Host {
            host: "fe80::1%eth0".into(),
            port: 80,
        };
        assert_eq!(("fe80::1%eth0", 80).to_socket_target().unwrap(), named);
        assert_eq!(("[fe80::1%eth0]", 80).to_socket_target().unwrap(), named);
        assert_eq!("[fe80::1%eth0]:80".to_socket_target().unwrap(), named);
        for bad in [
            "[fe80::1%eth0]:99999",
            "[fe80::1%eth0]:+80",
            "[fe80::1%eth0]",
        ] {
            let e = bad.to_socket_target().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("expected host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn display_matches_ktor() {
        let v4 = SocketAddress::from("127.0.0.1:9002".parse::<SocketAddr>().unwrap());
        let v6 = SocketAddress::from("[::1]:9002".parse::<SocketAddr>().unwrap());
        let unix = SocketAddress::from(UnixSocketAddress::new("/tmp/s.sock"));
        assert_eq!(v4.to_string(), "127.0.0.1:9002");
        assert_eq!(v6.to_string(), "[::1]:9002");
        assert_eq!(unix.to_string(), "/tmp/s.sock");
        assert_eq!(unix.port(), None);
        assert_eq!(v6.port(), Some(9002));
    }

    /// Unix addresses are equal, hash alike and order as their identity says: paths as
    /// `Path`s (a doubled or trailing `/` names the same file), names in the abstract
    /// namespace byte for byte (`"\0svc/"` is not `"\0svc"`); different ones order one way.
    #[test]
    fn unix_addresses_compare_as_paths_or_as_bytes() {
        use std::cmp::Ordering;
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        for (a, b) in [
            ("/tmp/x.sock", "/tmp//x.sock"),
            ("/tmp/x.sock", "/tmp/x.sock/"),
        ] {
            let (a, b) = (UnixSocketAddress::new(a), UnixSocketAddress::new(b));
            assert_eq!(a, b);
            assert_eq!(hasher.hash_one(&a), hasher.hash_one(&b), "{a:?} {b:?}");
            assert_eq!(a.partial_cmp(&b), Some(Ordering::Equal), "{a:?} {b:?}");
        }
        for (a, b) in [
            ("\0svc", "\0svc/"),
            ("\0svc", "\0svc\0"),
            ("/tmp/a.sock", "/tmp/b.sock"),
            ("\0a", "/a"),
        ] {
            let (a, b) = (UnixSocketAddress::new(a), UnixSocketAddress::new(b));
            assert_ne!(a, b);
            assert_ne!(hasher.hash_one(&a), hasher.hash_one(&b), "{a:?} {b:?}");
            let order = a.cmp(&b);
            assert_ne!(order, Ordering::Equal, "{a:?} {b:?}");
            assert_eq!(b.cmp(&a), order.reverse(), "{a:?} {b:?}");
            assert_eq!(a.partial_cmp(&b), Some(order), "{a:?} {b:?}");
        }
    }

    /// An address in use is told by what is at its path: a directory, a file that is not a
    /// socket, a socket file (or nothing there now), or a name in the abstract namespace;
    /// another error is kept as it is.
    #[test]
    fn an_address_in_use_is_told_by_what_is_there() {
        let dir = std::env::temp_dir().join(format!("knet-in-use-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a-directory")).unwrap();
        std::fs::write(dir.join("a-file"), b"kept").unwrap();
        let socket = dir.join("a.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let in_use = || io::Error::from(io::ErrorKind::AddrInUse);
        for (path, told) in [
            (
                dir.join("a-directory"),
                "a directory is at Unix socket path ",
            ),
            (
                dir.join("a-file"),
                "a file that is not a socket is at Unix socket path ",
            ),
            (socket.clone(), "a file exists at Unix socket path "),
            (dir.join("gone.sock"), "a file exists at Unix socket path "),
            (
                PathBuf::from("\0knet-in-use"),
                "the abstract Unix socket name ",
            ),
        ] {
            let e = UnixSocketAddress::new(&path).in_use(in_use());
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
            assert!(e.to_string().starts_with(told), "{path:?}: {e}");
        }
        let other =
            UnixSocketAddress::new(&socket).in_use(io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(other.raw_os_error(), Some(libc::EACCES));
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `EINVAL` of a link-local address without a scope is told as such; with a scope, of a
    /// global address, or another error, the OS's error is kept as it is.
    #[test]
    fn an_unscoped_link_local_address_is_named() {
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        let told = unscoped("[fe80::1]:80".parse().unwrap(), einval());
        assert_eq!(told.kind(), io::ErrorKind::InvalidInput);
        assert!(
            told.to_string()
                .starts_with("[fe80::1]:80 is a link-local address without a scope"),
            "{told}"
        );
        for (address, e) in [
            ("[fe80::1%2]:80", einval()),
            ("[2001:db8::1]:80", einval()),
            ("127.0.0.1:80", einval()),
            ("[fe80::1]:80", io::Error::from_raw_os_error(libc::EACCES)),
        ] {
            let os = e.raw_os_error();
            let kept = unscoped(address.parse().unwrap(), e);
            assert_eq!(kept.raw_os_error(), os, "{address}: {kept}");
        }
    }
}
