//! Socket addresses of `net-sockets` (`address.rs`) from strings and bytes a user or a peer
//! chose, against what [`ToSocketAddress`]'s and the address types' docs say:
//! - `"host:port"`: std's `SocketAddr` forms are that address; otherwise the text is split at
//!   its last colon, and it is a host name to resolve only when the port is all digits and at
//!   most 65535, the host is not empty, holds no colon and is not in brackets (or is an IPv6
//!   address whose scope names an interface, in brackets, given without them); an IP literal
//!   host is an address, never a name. Everything else is refused with `Error::Io` of kind
//!   `InvalidInput`, the message naming the text and saying why as the docs do: brackets for an
//!   IPv6 address given without them, "not an IPv6 address" for brackets around anything else,
//!   "expected host:port" for the rest (`host:80:90` among them);
//! - `(host, port)`: refused exactly when the host is empty (`Error::Io`, `InvalidInput`,
//!   "the host is empty"); an address exactly when the host is an IP literal (an IPv6 one
//!   possibly in brackets, with a numeric scope), and the same target as the `"host:port"`
//!   string that writes it (in brackets for an IPv6 host);
//! - round trips: what `Display` prints for an address (and `"host:port"` for a name) parses
//!   back to the same target, and `InetSocketAddress`'s `FromStr` reads its own `Display`;
//! - Unix paths: `sock_addr` refuses, with `InvalidInput`, exactly a path over 107 bytes (108
//!   for an abstract name) or a NUL byte in a path that is not an abstract name, and the
//!   address it makes is reported back as the same address; `Display` never shows a character
//!   `PeerText` escapes, and equality follows `Path` for paths (a doubled `/` is the same file)
//!   and every byte for abstract names.
//!
//! The module is compiled into this target from its source file (as `proxy_header` compiles
//! the PROXY protocol's), with `net-sockets`' own `Error`: nothing in `net-sockets` is made
//! public for the fuzzer.

#![no_main]

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_io::PeerText;
// The module's `crate::{Error, Result}`: net-sockets' own.
use net_sockets::{Error, Result};

// The listener's helpers (and the unit tests' items) are not all used here.
#[allow(dead_code)]
#[path = "../../crates/net-sockets/src/address.rs"]
mod address;

#[path = "../../crates/net-sockets/src/described.rs"]
mod described;

/// Where `address.rs` finds `Described` in net-sockets.
mod error {
    pub(crate) use crate::described::Described;
}

use address::{InetSocketAddress, SocketAddress, SocketTarget, ToSocketAddress, UnixSocketAddress};

/// Pieces of addresses, which random characters seldom make.
const TOKENS: &[&str] = &[
    ":",
    "[",
    "]",
    "%",
    "::",
    ".",
    "::1",
    "127.0.0.1",
    "0.0.0.0",
    "1.2.3.4",
    "fe80::1",
    "::ffff:",
    "2001:db8::",
    "eth0",
    "2",
    "4294967295",
    "4294967296",
    "0",
    "00",
    "08",
    "80",
    "65535",
    "65536",
    "99999",
    "+",
    "-",
    " ",
    "\t",
    "\n",
    "\0",
    "localhost",
    "host",
    "ab%cd",
    "[::1]",
    "[fe80::1%2]",
    "[fe80::1%eth0]",
    "]:",
    ":80",
    ":0",
    "0x7f",
    "127.1",
    "\u{202e}",
    "é",
];

#[derive(Arbitrary, Debug)]
enum Piece {
    Token(u8),
    Ascii(u8),
    Char(char),
}

/// An IP socket address (flow information zero: `Display` does not print it).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4([u8; 4], u16),
    V6([u8; 16], u16, u32),
    /// Mostly zero groups (a group kept where `keep` has its bit set), so that `::` lands
    /// anywhere.
    V6Sparse(u8, [u16; 8], u16, u32),
    V6Mapped([u8; 4], u16),
}

impl Addr {
    fn get(self) -> SocketAddr {
        match self {
            Addr::V4(ip, port) => SocketAddrV4::new(ip.into(), port).into(),
            Addr::V6(ip, port, scope) => SocketAddrV6::new(ip.into(), port, 0, scope).into(),
            Addr::V6Sparse(keep, groups, port, scope) => {
                let mut kept = [0u16; 8];
                for (i, group) in groups.iter().enumerate() {
                    if keep & (1 << i) != 0 {
                        kept[i] = *group;
                    }
                }
                SocketAddrV6::new(Ipv6Addr::from(kept), port, 0, scope).into()
            }
            Addr::V6Mapped(ip, port) => {
                SocketAddr::from((std::net::Ipv4Addr::from(ip).to_ipv6_mapped(), port))
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Case {
    /// A `"host:port"` string.
    text: Vec<Piece>,
    /// A host for the `(host, port)` form.
    host: Vec<Piece>,
    port: u16,
    addr: Addr,
    /// A Unix path: its bytes, and whether to start it with a NUL (an abstract name).
    unix: Vec<u8>,
    unix_abstract: bool,
    /// Repeats of the path's bytes, to reach the length limits.
    unix_repeat: u8,
}

fn text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match *p {
            Piece::Token(i) => TOKENS[usize::from(i) % TOKENS.len()].to_owned(),
            Piece::Ascii(b) => char::from(b & 0x7f).to_string(),
            Piece::Char(c) => c.to_string(),
        })
        .collect()
}

/// An IPv6 address as std reads one in brackets: with a numeric scope or none.
fn std_ipv6(text: &str) -> bool {
    format!("[{text}]:0").parse::<SocketAddrV6>().is_ok()
}

/// An IPv6 address whose scope is not a number (an interface's name), which the resolver
/// reads.
fn named_scope_ipv6(text: &str) -> bool {
    match text.split_once('%') {
        Some((ip, scope)) => {
            ip.parse::<Ipv6Addr>().is_ok()
                && !scope.is_empty()
                && !scope.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// A port as the docs have it: all digits, at most 65535.
fn port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// What the docs say of a `"host:port"` string.
#[derive(Debug, PartialEq)]
enum Expected {
    Target(SocketTarget),
    /// Refused with this reason (the end of the message).
    Refused(&'static str),
}

const EXPECTED_HOST_PORT: &str = "expected host:port";
const NOT_IPV6: &str = "is not an IPv6 address";
const TAKES_BRACKETS: &str = "an IPv6 address takes brackets";

fn expected(text: &str) -> Expected {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Expected::Target(SocketTarget::Address(a.into()));
    }
    let Some((host, port_text)) = text.rsplit_once(':') else {
        return Expected::Refused(EXPECTED_HOST_PORT);
    };
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Expected::Refused(EXPECTED_HOST_PORT);
        };
        if named_scope_ipv6(inner) {
            return match port(port_text) {
                Some(port) => Expected::Target(SocketTarget::Host {
                    host: inner.to_owned(),
                    port,
                }),
                None => Expected::Refused(EXPECTED_HOST_PORT),
            };
        }
        // std took every IPv6 literal in brackets with a good port.
        if std_ipv6(inner) {
            return Expected::Refused(EXPECTED_HOST_PORT);
        }
        return Expected::Refused(NOT_IPV6);
    }
    if host.contains(':') {
        let ipv6 = |t: &str| std_ipv6(t) || named_scope_ipv6(t);
        if ipv6(host) || ipv6(text) {
            return Expected::Refused(TAKES_BRACKETS);
        }
        return Expected::Refused(EXPECTED_HOST_PORT);
    }
    let Some(port) = port(port_text) else {
        return Expected::Refused(EXPECTED_HOST_PORT);
    };
    if host.is_empty() {
        return Expected::Refused(EXPECTED_HOST_PORT);
    }
    Expected::Target(pair_target(host, port))
}

/// What the docs say of the `(host, port)` form.
fn pair_target(host: &str, port: u16) -> SocketTarget {
    let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) if named_scope_ipv6(inner) => {
            return SocketTarget::Host {
                host: inner.to_owned(),
                port,
            };
        }
        // Brackets go around an IPv6 address only.
        Some(inner) => format!("[{inner}]:{port}")
            .parse::<SocketAddrV6>()
            .ok()
            .map(SocketAddr::V6),
        None => host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port))
            .or_else(|| {
                format!("[{host}]:{port}")
                    .parse::<SocketAddrV6>()
                    .ok()
                    .map(SocketAddr::V6)
            }),
    };
    match ip {
        Some(a) => SocketTarget::Address(a.into()),
        None => SocketTarget::Host {
            host: host.to_owned(),
            port,
        },
    }
}

/// The string that gives `target` back.
fn written(target: &SocketTarget) -> String {
    match target {
        SocketTarget::Address(a) => a.to_string(),
        SocketTarget::Host { host, port } if host.contains(':') => format!("[{host}]:{port}"),
        SocketTarget::Host { host, port } => format!("{host}:{port}"),
    }
}

fn check_text(text: &str) {
    let got = text.to_socket_target();
    match (expected(text), &got) {
        (Expected::Target(want), Ok(target)) => {
            assert_eq!(*target, want, "{text:?}");
            if let SocketTarget::Address(a) = target {
                assert!(a.as_inet().is_some(), "{text:?}: {a:?}");
            }
            let again = written(target);
            assert_eq!(
                again.to_socket_target().ok().as_ref(),
                Some(target),
                "{text:?} gave {target:?}, written {again:?}"
            );
        }
        (Expected::Refused(why), Err(e)) => {
            let Error::Io(io_error) = e else {
                panic!("{text:?}: not an I/O error: {e:?}");
            };
            assert_eq!(
                io_error.kind(),
                io::ErrorKind::InvalidInput,
                "{text:?}: {e}"
            );
            let message = e.to_string();
            let start = format!("invalid socket address {text:?}: ");
            assert!(message.starts_with(&start), "{text:?}: {message}");
            assert!(
                message.contains(why),
                "{text:?}: {message} (expected {why:?})"
            );
            for other in [EXPECTED_HOST_PORT, NOT_IPV6, TAKES_BRACKETS] {
                if other != why {
                    assert!(
                        !message[start.len()..].contains(other),
                        "{text:?}: {message} (expected only {why:?})"
                    );
                }
            }
        }
        (want, got) => panic!("{text:?}: expected {want:?}, got {got:?}"),
    }
    // The `String` form is the `str` form.
    assert_eq!(
        format!("{:?}", text.to_owned().to_socket_target()),
        format!("{got:?}")
    );
}

fn check_pair(host: &str, port: u16) {
    if host.is_empty() {
        for refused in [
            (host, port).to_socket_target(),
            (host.to_owned(), port).to_socket_target(),
        ] {
            match refused {
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::InvalidInput => {
                    assert!(e.to_string().contains("the host is empty"), "{e}");
                }
                other => panic!("(\"\", {port}) is not refused: {other:?}"),
            }
        }
        return;
    }
    let want = pair_target(host, port);
    let got = (host, port)
        .to_socket_target()
        .expect("the (host, port) form is refused only for an empty host");
    assert_eq!(got, want, "({host:?}, {port})");
    assert_eq!(
        (host.to_owned(), port).to_socket_target().ok(),
        Some(got.clone())
    );
    // The same target as the string that writes it.
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let string = match bare {
        Some(inner) if std_ipv6(inner) || named_scope_ipv6(inner) => Some(format!("{host}:{port}")),
        Some(_) => None,
        None if std_ipv6(host) || named_scope_ipv6(host) => Some(format!("[{host}]:{port}")),
        None if host.contains(':') || host.starts_with('[') => None,
        None => Some(format!("{host}:{port}")),
    };
    // (A host with a colon that is no IPv6 address is a name only in this form: no string
    // writes it.)
    if let Some(string) = string {
        assert_eq!(
            string.to_socket_target().ok(),
            Some(got.clone()),
            "({host:?}, {port}) and {string:?}"
        );
        let again = written(&got);
        assert_eq!(again.to_socket_target().ok(), Some(got), "{again:?}");
    }
}

fn check_addr(addr: SocketAddr) {
    let inet = InetSocketAddress::from(addr);
    let shown = inet.to_string();
    assert_eq!(shown, addr.to_string());
    assert_eq!(
        shown.parse::<InetSocketAddress>().ok(),
        Some(inet),
        "{shown}"
    );
    let address = SocketAddress::from(inet);
    assert_eq!(address.to_string(), shown);
    assert_eq!(address.port(), Some(addr.port()));
    assert_eq!(
        shown.to_socket_target().ok(),
        Some(SocketTarget::Address(address.clone())),
        "{shown}"
    );
    assert_eq!(
        address.to_socket_target().ok(),
        Some(SocketTarget::Address(address.clone()))
    );
    // The `(ip, port)` form, and the IP's own text as a host.
    assert_eq!(
        (addr.ip(), addr.port())
            .to_socket_target()
            .ok()
            .map(|t| written(&t).parse::<SocketAddr>().ok()),
        Some(Some(SocketAddr::new(addr.ip(), addr.port())))
    );
    if let SocketAddr::V6(v6) = addr {
        let host = if v6.scope_id() == 0 {
            v6.ip().to_string()
        } else {
            format!("{}%{}", v6.ip(), v6.scope_id())
        };
        assert_eq!(
            (host.as_str(), addr.port()).to_socket_target().ok(),
            Some(SocketTarget::Address(address.clone())),
            "{host}"
        );
        assert_eq!(
            (format!("[{host}]"), addr.port()).to_socket_target().ok(),
            Some(SocketTarget::Address(address))
        );
    }
}

/// The limit of a Unix path, as the docs say: 107 bytes, 108 for an abstract name.
fn check_unix(bytes: Vec<u8>) {
    let address = UnixSocketAddress::new(OsString::from_vec(bytes.clone()));
    let is_abstract = bytes.first() == Some(&0);
    let fits = if is_abstract {
        bytes.len() <= 108
    } else {
        bytes.len() <= 107 && !bytes.contains(&0)
    };
    match address.sock_addr() {
        Ok(raw) => {
            assert!(fits, "{bytes:?} ({} bytes) was accepted", bytes.len());
            let back = UnixSocketAddress::reported_raw(&raw);
            assert_eq!(back, address, "{bytes:?}");
            assert_eq!(
                back.path().as_os_str().as_encoded_bytes(),
                &bytes[..],
                "{bytes:?}"
            );
        }
        Err(e) => {
            assert!(!fits, "{bytes:?} ({} bytes): {e}", bytes.len());
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bytes:?}: {e}");
        }
    }
    let shown = address.to_string();
    assert!(
        !shown.chars().any(PeerText::escapes),
        "{bytes:?} shown as {shown:?}"
    );
    match bytes.first() {
        None => assert_eq!(shown, "(unnamed)"),
        Some(0) => assert!(shown.starts_with('@'), "{shown:?}"),
        Some(_) => {}
    }
    assert_eq!(
        format!("{:>200}", address).chars().count(),
        shown.chars().count().max(200)
    );
    // A path names its file component by component; an abstract name is every byte.
    if let Some(slash) = bytes.iter().position(|&b| b == b'/') {
        let mut doubled = bytes.clone();
        doubled.insert(slash, b'/');
        let other = UnixSocketAddress::new(OsString::from_vec(doubled));
        assert_eq!(other == address, !is_abstract, "{bytes:?}");
        assert_eq!(
            other.cmp(&address) == std::cmp::Ordering::Equal,
            !is_abstract
        );
        if other == address {
            assert_eq!(hash(&other), hash(&address), "{bytes:?}");
        }
    }
}

fn hash(a: &UnixSocketAddress) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(a)
}

fuzz_target!(|case: Case| {
    check_text(&text(&case.text));
    check_pair(&text(&case.host), case.port);
    check_addr(case.addr.get());
    let mut path = Vec::new();
    if case.unix_abstract {
        path.push(0);
    }
    for _ in 0..=usize::from(case.unix_repeat % 8) {
        path.extend_from_slice(&case.unix);
    }
    check_unix(path);
});
