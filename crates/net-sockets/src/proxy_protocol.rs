//! The PROXY protocol header (HAProxy's versions 1 and 2) as a pure parser over a byte buffer.
//!
//! A load balancer that relays TCP connections can prepend one header to each of them that says
//! whom it relays: the client's address and port, and the address the client connected to.
//! [`parse`] looks at the bytes received so far and answers: read more, here is the header and
//! how many bytes it took, this is not a PROXY header, or this is a broken one. It does no I/O
//! and never allocates. To resume, call it again with the grown buffer: a header is at most
//! [`MAX_HEADER`] bytes, so looking at it again from the start costs little.
//!
//! The format is HAProxy's `doc/proxy-protocol.txt`:
//! - v1 is one US-ASCII line, `PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n`, with `TCP4`,
//!   `TCP6`, or `UNKNOWN` followed by anything; at most 107 bytes with its CRLF.
//! - v2 is binary: a 12-byte signature, a version/command byte, a family/transport byte, a
//!   big-endian length, then that many bytes: the addresses, then TLVs.
//!
//! # Decisions
//!
//! - Not a header ([`Parse::NotProxy`]): the bytes differ from both signatures (`PROXY` and the
//!   12 v2 bytes), decided at the first byte that differs; `GET /` is decided after one byte.
//!   After a whole signature every fault is [`Parse::Invalid`].
//! - v1 is rejected at the first complete field that is wrong, and within a field at the first
//!   byte that no field of its kind holds (an address holds digits and `.`, or for `TCP6` hex
//!   digits, `:` and `.`, and no more bytes than the longest address; it is checked as an
//!   address once the space after it arrives, so `PROXY TCP4 256` waits for more); the last
//!   field is checked in full once the CRLF arrives. A
//!   line is rejected as soon as 107 bytes without a CRLF are there. A CR or LF that is not the
//!   CRLF is invalid in a `TCP4`/`TCP6` line; an `UNKNOWN` line may hold anything before the
//!   first CRLF, as the specification says. Ports and IPv4 numbers have no sign or leading
//!   zero. IPv6 addresses are what [`std::net::Ipv6Addr`] parses, so the `::ffff:192.0.2.1`
//!   form that `inet_ntop` writes for mapped addresses is accepted.
//! - v2 is rejected at byte 13 for a version other than 2 or a command other than `LOCAL` or
//!   `PROXY`, at byte 14 for an unknown family or transport, and at byte 16 for a length over
//!   the limit or shorter than the family's addresses; the TLVs after `AF_INET`, `AF_INET6` or
//!   `AF_UNIX` addresses are checked when the whole header is there: each must end within the
//!   header (their contents are skipped, `CRC32C` is not verified). The bytes after the fixed
//!   part of a header without addresses (`LOCAL`, `AF_UNSPEC`, transport `UNSPEC`) are
//!   skipped unread, TLVs or not.
//! - Addresses are reported for v1 `TCP4`/`TCP6` and for v2 `PROXY` with `AF_INET` or
//!   `AF_INET6` and `STREAM` or `DGRAM`. They are `None` for v1 `UNKNOWN`, for v2 `LOCAL` (a
//!   connection of the proxy's own, such as a health check; its family byte and address block
//!   are ignored, as the specification says), and for v2 `AF_UNSPEC`, transport `UNSPEC` or
//!   `AF_UNIX` (a Unix path is no use as a peer address of a TCP socket). `None` means: use the
//!   connection's own addresses.
//! - Only the header's bytes are consumed; what follows belongs to the application.
//!
//! # Limits
//!
//! v1: 107 bytes, CRLF included: the specification's longest line (`UNKNOWN` with two full
//! IPv6 addresses and ports). v2: [`V2_MAX_HEADER`], 4,096 bytes, fixed part included, enforced
//! when the length field arrives. The specification allows 65,551; what proxies send is far
//! less: addresses take at most 216 bytes (`AF_UNIX`), and the specification's TLVs other
//! than the client certificate (ALPN, an SNI authority of up to 255 bytes, a unique ID of up to
//! 128, an SSL block with version, cipher, algorithms and client CN, a CRC) come to well under
//! 1 KiB by our count; cloud load balancers add a few dozen bytes of their own TLVs. 4,096
//! leaves room for that several times over and keeps what a peer can make a server buffer
//! before it is accepted to one page. What can pass it: the SSL block's DER client
//! certificate (`PP2_SUBTYPE_SSL_CLIENT_CERT`, which some TLS-terminating proxies send, such as
//! Ghostunnel in its `tls-full` mode), typically 1–2 KiB but larger for a certificate with many
//! names, and custom TLVs of arbitrary size (HAProxy's `set-proxy-v2-tlv-fmt`). A header
//! longer than 4,096 bytes is refused as too long.
//!
//! # Reading a header
//!
//! Read into a buffer, call [`parse`] after each read. [`Parse::NeedMore`] says to read again;
//! its `at_least` is a number of bytes that reading exactly never reads past a valid header
//! nor past the limit of the header's version (for v2, once 16 bytes are in, it is exactly the
//! rest of the header), so a reader that must not take application bytes can read exactly
//! that many each time. [`Parse::Done`] gives the header; bytes past `consumed` are the
//! application's and must reach it first.
//! [`Parse::NotProxy`] means that a required header is missing, or, where the header is
//! optional, that all the bytes read are the application's. [`Parse::Invalid`] means drop the
//! connection. Reading more than [`MAX_HEADER`] bytes is never needed: by then the answer is
//! decided.

// Only `std` (and no `crate::` items): the fuzz target `fuzz/fuzz_targets/proxy_header.rs`
// compiles this file into itself.
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The longest v1 header, CRLF included.
pub(crate) const V1_MAX_HEADER: usize = 107;

/// The longest v2 header accepted: 16 fixed bytes, then addresses and TLVs.
pub(crate) const V2_MAX_HEADER: usize = 4096;

/// The most bytes any header takes: with this many bytes, [`parse`] never answers `NeedMore`.
#[allow(dead_code)] // For the listener's read buffer.
pub(crate) const MAX_HEADER: usize = if V1_MAX_HEADER > V2_MAX_HEADER {
    V1_MAX_HEADER
} else {
    V2_MAX_HEADER
};

/// The start of every v1 header.
const V1_SIGNATURE: &[u8] = b"PROXY";

/// The shortest v1 header: `PROXY UNKNOWN\r\n`.
const V1_MIN_HEADER: usize = 15;

/// The v1 protocol names.
const V1_PROTOCOLS: [&[u8]; 3] = [b"TCP4", b"TCP6", b"UNKNOWN"];

/// The longest IPv4 address in text: `255.255.255.255`.
const V1_MAX_IPV4: usize = 15;

/// The longest IPv6 address in text: eight groups, or six and a dotted IPv4 address.
const V1_MAX_IPV6: usize = 45;

/// The start of every v2 header.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The fixed part of a v2 header: signature, version/command, family/transport, length.
const V2_FIXED: usize = 16;

/// What the bytes received so far say.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(dead_code)] // For the listener's accept path.
pub(crate) enum Parse {
    /// Not decidable yet: read more, then parse the grown buffer again.
    NeedMore {
        /// Bytes that can be read without reading past a valid header or the limit of the
        /// header's version; at least 1.
        at_least: usize,
    },
    /// A whole, valid header.
    Done {
        /// What the header says.
        header: ProxyHeader,
        /// The header's length in bytes; the bytes after it belong to the application.
        consumed: usize,
    },
    /// The bytes cannot start a PROXY header (they differ from both signatures).
    NotProxy,
    /// A PROXY header that breaks the format or the limits.
    Invalid(ProxyError),
}

/// A parsed PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(dead_code)] // For the listener's accept path.
pub(crate) struct ProxyHeader {
    /// The protocol version the header was written in.
    pub(crate) version: Version,
    /// Whether the proxy relays a client (`Proxy`) or speaks for itself (`Local`).
    pub(crate) command: Command,
    /// The relayed connection's addresses; `None`: use the connection's own.
    pub(crate) addresses: Option<ProxyAddresses>,
}

/// The two ends of the connection a proxy relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(dead_code)] // For the listener's accept path.
pub(crate) struct ProxyAddresses {
    /// The client: where the relayed connection came from.
    pub(crate) source: SocketAddr,
    /// Where the client connected to (usually the proxy's listening address).
    pub(crate) destination: SocketAddr,
}

/// The version of the PROXY protocol a header was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Version {
    /// The text line.
    V1,
    /// The binary header.
    V2,
}

/// What the connection is, according to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Command {
    /// The proxy's own connection (a health check): its addresses are the real ones (v2 only).
    Local,
    /// A relayed connection (every v1 header, `UNKNOWN` included).
    Proxy,
}

/// Why a PROXY header is invalid.
///
/// The `Display` text is for logs; match on the variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ProxyError {
    /// A v1 line has no CRLF in its first 107 bytes.
    V1TooLong,
    /// A v1 line has a missing or extra field, or `PROXY` is not followed by a space.
    V1Malformed,
    /// A v1 line names a protocol other than `TCP4`, `TCP6` or `UNKNOWN`.
    V1UnknownProtocol,
    /// A v1 address is not an address of the line's family.
    V1BadAddress,
    /// A v1 port is not a decimal in `0..=65535` without sign or leading zero.
    V1BadPort,
    /// A v2 header's version (the high nibble of byte 13) is not 2.
    V2BadVersion(u8),
    /// A v2 header's command (the low nibble of byte 13) is neither `LOCAL` nor `PROXY`.
    V2BadCommand(u8),
    /// A v2 header's address family (the high nibble of byte 14) is unknown.
    V2BadFamily(u8),
    /// A v2 header's transport protocol (the low nibble of byte 14) is unknown.
    V2BadTransport(u8),
    /// A v2 header is longer than [`V2_MAX_HEADER`].
    V2TooLong {
        /// The header's length in bytes, as its length field says.
        length: usize,
    },
    /// A v2 header's address block is shorter than its family's addresses.
    V2AddressesTooShort {
        /// The length field.
        length: u16,
        /// The bytes the family's addresses take.
        needed: u16,
    },
    /// A v2 TLV does not end within the header.
    V2BadTlv,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::V1TooLong => write!(
                f,
                "proxy protocol v1 line has no CRLF in its first {V1_MAX_HEADER} bytes"
            ),
            ProxyError::V1Malformed => {
                f.write_str("proxy protocol v1 line has a missing or extra field")
            }
            ProxyError::V1UnknownProtocol => {
                f.write_str("proxy protocol v1 line names a protocol other than TCP4, TCP6 or UNKNOWN")
            }
            ProxyError::V1BadAddress => {
                f.write_str("proxy protocol v1 line has an address that does not fit its protocol")
            }
            ProxyError::V1BadPort => f.write_str(
                "proxy protocol v1 line has a port that is not a decimal in 0..=65535 without sign or leading zero",
            ),
            ProxyError::V2BadVersion(v) => {
                write!(f, "proxy protocol v2 header has version {v}, not 2")
            }
            ProxyError::V2BadCommand(c) => {
                write!(f, "proxy protocol v2 header has unknown command {c:#x}")
            }
            ProxyError::V2BadFamily(a) => {
                write!(f, "proxy protocol v2 header has unknown address family {a:#x}")
            }
            ProxyError::V2BadTransport(t) => {
                write!(f, "proxy protocol v2 header has unknown transport protocol {t:#x}")
            }
            ProxyError::V2TooLong { length } => write!(
                f,
                "proxy protocol v2 header of {length} bytes is over the limit of {V2_MAX_HEADER} bytes"
            ),
            ProxyError::V2AddressesTooShort { length, needed } => write!(
                f,
                "proxy protocol v2 address block of {length} bytes is shorter than the {needed} bytes of its family"
            ),
            ProxyError::V2BadTlv => {
                f.write_str("proxy protocol v2 header has a TLV that does not end within it")
            }
        }
    }
}

impl StdError for ProxyError {}

/// Parses the PROXY header at the start of `buf`, the bytes received so far.
///
/// Pure: the same bytes give the same answer, and once an answer other than
/// [`Parse::NeedMore`] is given, more bytes after `buf` do not change it.
#[allow(dead_code)] // For the listener's accept path.
pub(crate) fn parse(buf: &[u8]) -> Parse {
    match buf.first() {
        None => Parse::NeedMore {
            at_least: V1_MIN_HEADER.min(V2_FIXED),
        },
        Some(&b) if b == V1_SIGNATURE[0] => parse_v1(buf),
        Some(&b) if b == V2_SIGNATURE[0] => parse_v2(buf),
        Some(_) => Parse::NotProxy,
    }
}

/// Whether `buf` starts with a whole signature (`PROXY`, or the 12 bytes of v2): from there on
/// the bytes are a header (every fault is [`Parse::Invalid`]), and one cut short is a partial
/// header, which the specification says to reject, not the application's data.
pub(crate) fn has_signature(buf: &[u8]) -> bool {
    buf.starts_with(V1_SIGNATURE) || buf.starts_with(&V2_SIGNATURE)
}

/// A version 2 (binary) `PROXY` header for a TCP connection from `source` (the client, as the
/// proxy saw it) to `destination` (the address the client reached), without TLVs: 28 bytes
/// for two IPv4 addresses, 52 otherwise.
///
/// If one address is IPv4 and the other IPv6, the IPv4 one is sent as an IPv4-mapped IPv6
/// address. IPv6 flow information and scope IDs are not sent.
///
/// ```
/// use net_sockets::proxy_header;
///
/// let header = proxy_header::v2(
///     "192.0.2.1:51000".parse().unwrap(),
///     "198.51.100.7:443".parse().unwrap(),
/// );
/// assert_eq!(header.len(), 28);
/// assert!(header.starts_with(b"\r\n\r\n\0\r\nQUIT\n"));
/// ```
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11); // AF_INET, STREAM
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        (s, d) => {
            out.push(0x21); // AF_INET6, STREAM
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&ipv6(s.ip()).octets());
            out.extend_from_slice(&ipv6(d.ip()).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// A version 2 `LOCAL` header (16 bytes): a connection of the proxy's own (a health check), or
/// one whose addresses are not IP addresses (a Unix socket); the receiver uses the
/// connection's own addresses.
pub fn encode_v2_local() -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED);
    out.extend_from_slice(&V2_SIGNATURE);
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]); // version 2, LOCAL, AF_UNSPEC, length 0
    out
}

/// A version 1 (text) `PROXY` line for a TCP connection from `source` (the client) to
/// `destination` (the address the client reached), CRLF included: `TCP4` for two IPv4
/// addresses, otherwise `TCP6`, an IPv4 address mapped (`::ffff:192.0.2.1`). IPv6 flow
/// information and scope IDs are not sent, as in [`encode_v2`]: the line has no room for them
/// (`fe80::1%2` is written `fe80::1`).
///
/// ```
/// use net_sockets::proxy_header;
///
/// let line = proxy_header::v1(
///     "192.0.2.1:51000".parse().unwrap(),
///     "198.51.100.7:443".parse().unwrap(),
/// );
/// assert_eq!(line, "PROXY TCP4 192.0.2.1 198.51.100.7 51000 443\r\n");
/// ```
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> String {
    let (s, d) = (source.port(), destination.port());
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => format!("PROXY TCP4 {a} {b} {s} {d}\r\n"),
        (a, b) => format!("PROXY TCP6 {} {} {s} {d}\r\n", ipv6(a), ipv6(b)),
    }
}

/// The address as IPv6, an IPv4 address mapped.
fn ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// How a prefix of `buf` compares with `signature`.
enum Signature {
    /// `buf` differs from the signature.
    Differs,
    /// `buf` is shorter than the signature and matches it so far.
    Partial,
    /// `buf` starts with the whole signature.
    Matches,
}

/// Compares the start of `buf` with `signature`.
fn signature(buf: &[u8], signature: &[u8]) -> Signature {
    let n = buf.len().min(signature.len());
    if buf.get(..n) != signature.get(..n) {
        Signature::Differs
    } else if n < signature.len() {
        Signature::Partial
    } else {
        Signature::Matches
    }
}

/// Parses a buffer that starts with `P`: a v1 header, or not a header.
fn parse_v1(buf: &[u8]) -> Parse {
    match signature(buf, V1_SIGNATURE) {
        Signature::Differs => return Parse::NotProxy,
        Signature::Partial => return v1_need_more(buf),
        Signature::Matches => {}
    }
    let window = &buf[..buf.len().min(V1_MAX_HEADER)];
    if let Some(end) = window.windows(2).position(|w| w == b"\r\n") {
        let line = &window[..end];
        return match v1_line(line, true) {
            Ok(V1Line::Partial) => Parse::Invalid(ProxyError::V1Malformed), // not reached
            Ok(V1Line::Unknown) => v1_done(None, end + 2),
            Ok(V1Line::Tcp(addresses)) => v1_done(Some(addresses), end + 2),
            Err(e) => Parse::Invalid(e),
        };
    }
    // A trailing CR may be the CRLF's first half: it is not part of the line (yet).
    let line = window.strip_suffix(b"\r").unwrap_or(window);
    if let Err(e) = v1_line(line, false) {
        return Parse::Invalid(e);
    }
    if buf.len() >= V1_MAX_HEADER {
        return Parse::Invalid(ProxyError::V1TooLong);
    }
    v1_need_more(buf)
}

/// `NeedMore` for a v1 header without CRLF so far (and shorter than the limit): enough for
/// the shortest header, or for the CRLF, but never past the limit (after 106 bytes without a
/// CR no header can end, and the 107th byte decides it).
fn v1_need_more(buf: &[u8]) -> Parse {
    let crlf = if buf.ends_with(b"\r") { 1 } else { 2 };
    let room = V1_MAX_HEADER.saturating_sub(buf.len()).max(1);
    Parse::NeedMore {
        at_least: V1_MIN_HEADER.saturating_sub(buf.len()).max(crlf).min(room),
    }
}

/// A complete v1 header.
fn v1_done(addresses: Option<ProxyAddresses>, consumed: usize) -> Parse {
    Parse::Done {
        header: ProxyHeader {
            version: Version::V1,
            command: Command::Proxy,
            addresses,
        },
        consumed,
    }
}

/// What a v1 line (or the start of one) holds.
enum V1Line {
    /// The start of a line, valid so far.
    Partial,
    /// `PROXY UNKNOWN`, with anything after it.
    Unknown,
    /// `PROXY TCP4` or `PROXY TCP6` with its addresses.
    Tcp(ProxyAddresses),
}

/// The IP family of a v1 `TCP4` or `TCP6` line.
#[derive(Clone, Copy)]
enum Family {
    /// `TCP4`.
    V4,
    /// `TCP6`.
    V6,
}

/// Checks a v1 line without its CRLF; `line` starts with `PROXY`.
///
/// If `complete` is false, `line` is the start of a line: complete fields are checked in full
/// and the last one as the start of a field.
fn v1_line(line: &[u8], complete: bool) -> Result<V1Line, ProxyError> {
    let rest = line.get(V1_SIGNATURE.len()..).unwrap_or_default();
    let rest = match rest.split_first() {
        None if !complete => return Ok(V1Line::Partial),
        Some((b' ', rest)) => rest,
        _ => return Err(ProxyError::V1Malformed),
    };
    let (protocol, fields) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if fields.is_none() && !complete {
        return if V1_PROTOCOLS.iter().any(|p| p.starts_with(protocol)) {
            Ok(V1Line::Partial)
        } else {
            Err(ProxyError::V1UnknownProtocol)
        };
    }
    let family = match protocol {
        b"UNKNOWN" if complete => return Ok(V1Line::Unknown),
        b"UNKNOWN" => return Ok(V1Line::Partial),
        b"TCP4" => Family::V4,
        b"TCP6" => Family::V6,
        _ => return Err(ProxyError::V1UnknownProtocol),
    };
    let Some(fields) = fields else {
        return Err(ProxyError::V1Malformed);
    };
    // Four fields: source, destination, source port, destination port. They are checked in
    // order, so that the start of a line fails (if it does) the way the whole line fails.
    let last = fields.iter().filter(|&&b| b == b' ').count();
    let (mut source, mut destination, mut source_port, mut destination_port) = (None, None, 0, 0);
    for (i, field) in fields.split(|&b| b == b' ').enumerate() {
        let partial = !complete && i == last;
        match i {
            0 | 1 if partial => v1_address_start(field, family)?,
            0 => source = Some(v1_address(field, family)?),
            1 => destination = Some(v1_address(field, family)?),
            2 | 3 if partial => {
                v1_port_start(field)?;
            }
            2 => source_port = v1_port(field)?,
            3 => destination_port = v1_port(field)?,
            _ => return Err(ProxyError::V1Malformed),
        }
    }
    match (complete, source, destination) {
        (true, Some(source), Some(destination)) if last == 3 => Ok(V1Line::Tcp(ProxyAddresses {
            source: SocketAddr::new(source, source_port),
            destination: SocketAddr::new(destination, destination_port),
        })),
        (true, _, _) => Err(ProxyError::V1Malformed),
        (false, _, _) => Ok(V1Line::Partial),
    }
}

/// Parses a complete v1 address of `family`.
fn v1_address(field: &[u8], family: Family) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyError::V1BadAddress)?;
    let ip = match family {
        Family::V4 => text.parse::<Ipv4Addr>().map(IpAddr::V4),
        Family::V6 => text.parse::<Ipv6Addr>().map(IpAddr::V6),
    };
    ip.map_err(|_| ProxyError::V1BadAddress)
}

/// Checks that `field` can start a v1 address of `family`.
fn v1_address_start(field: &[u8], family: Family) -> Result<(), ProxyError> {
    let fits = match family {
        Family::V4 => {
            field.len() <= V1_MAX_IPV4 && field.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        }
        Family::V6 => {
            field.len() <= V1_MAX_IPV6
                && field
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
    };
    if fits {
        Ok(())
    } else {
        Err(ProxyError::V1BadAddress)
    }
}

/// Parses a complete v1 port.
fn v1_port(field: &[u8]) -> Result<u16, ProxyError> {
    if field.is_empty() {
        return Err(ProxyError::V1BadPort);
    }
    v1_port_start(field)
}

/// Checks that `field` can start a v1 port, and gives the value of its digits so far.
fn v1_port_start(field: &[u8]) -> Result<u16, ProxyError> {
    if field.len() > 5 || (field.len() > 1 && field[0] == b'0') {
        return Err(ProxyError::V1BadPort);
    }
    let mut value: u32 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return Err(ProxyError::V1BadPort);
        }
        value = value * 10 + u32::from(b - b'0');
    }
    u16::try_from(value).map_err(|_| ProxyError::V1BadPort)
}

/// Parses a buffer that starts with CR: a v2 header, or not a header.
fn parse_v2(buf: &[u8]) -> Parse {
    match signature(buf, &V2_SIGNATURE) {
        Signature::Differs => Parse::NotProxy,
        Signature::Partial | Signature::Matches => v2_header(buf).unwrap_or_else(Parse::Invalid),
    }
}

/// Parses a v2 header, given that `buf` matches the signature so far.
fn v2_header(buf: &[u8]) -> Result<Parse, ProxyError> {
    let need = |total: usize| Parse::NeedMore {
        at_least: total.saturating_sub(buf.len()).max(1),
    };
    let Some(&version_command) = buf.get(12) else {
        return Ok(need(V2_FIXED));
    };
    let version = version_command >> 4;
    if version != 2 {
        return Err(ProxyError::V2BadVersion(version));
    }
    let command = match version_command & 0x0F {
        0x0 => Command::Local,
        0x1 => Command::Proxy,
        other => return Err(ProxyError::V2BadCommand(other)),
    };
    let Some(&family_transport) = buf.get(13) else {
        return Ok(need(V2_FIXED));
    };
    let block = match command {
        Command::Local => AddressBlock::Ignored,
        Command::Proxy => AddressBlock::of(family_transport)?,
    };
    let Some(&[high, low]) = buf.get(14..16) else {
        return Ok(need(V2_FIXED));
    };
    let length = u16::from_be_bytes([high, low]);
    let total = V2_FIXED + usize::from(length);
    if total > V2_MAX_HEADER {
        return Err(ProxyError::V2TooLong { length: total });
    }
    let needed = block.size();
    if length < needed {
        return Err(ProxyError::V2AddressesTooShort { length, needed });
    }
    let Some(body) = buf.get(V2_FIXED..total) else {
        return Ok(need(total));
    };
    let addresses = block.decode(body)?;
    Ok(Parse::Done {
        header: ProxyHeader {
            version: Version::V2,
            command,
            addresses,
        },
        consumed: total,
    })
}

/// What the address block of a v2 header holds, as far as this parser reads it.
#[derive(Clone, Copy)]
enum AddressBlock {
    /// `LOCAL`, `AF_UNSPEC` or transport `UNSPEC`: the block is skipped unread.
    Ignored,
    /// IPv4 addresses and ports, then TLVs.
    Inet,
    /// IPv6 addresses and ports, then TLVs.
    Inet6,
    /// Unix paths (not reported), then TLVs.
    Unix,
}

impl AddressBlock {
    /// The block a `PROXY` header's family/transport byte announces.
    fn of(family_transport: u8) -> Result<Self, ProxyError> {
        let block = match family_transport >> 4 {
            0x0 => AddressBlock::Ignored,
            0x1 => AddressBlock::Inet,
            0x2 => AddressBlock::Inet6,
            0x3 => AddressBlock::Unix,
            other => return Err(ProxyError::V2BadFamily(other)),
        };
        match family_transport & 0x0F {
            0x0 => Ok(AddressBlock::Ignored),
            0x1 | 0x2 => Ok(block),
            other => Err(ProxyError::V2BadTransport(other)),
        }
    }

    /// The bytes the addresses take.
    fn size(self) -> u16 {
        match self {
            AddressBlock::Ignored => 0,
            AddressBlock::Inet => 2 * 4 + 2 * 2,
            AddressBlock::Inet6 => 2 * 16 + 2 * 2,
            AddressBlock::Unix => 2 * 108,
        }
    }

    /// Reads the addresses from `body` (the bytes after the fixed part) and checks the TLVs.
    fn decode(self, body: &[u8]) -> Result<Option<ProxyAddresses>, ProxyError> {
        let short = ProxyError::V2AddressesTooShort {
            length: u16::try_from(body.len()).unwrap_or(u16::MAX),
            needed: self.size(),
        };
        let mut rest = body;
        let addresses = match self {
            AddressBlock::Ignored => return Ok(None),
            AddressBlock::Inet => {
                let source = take::<4>(&mut rest).ok_or(short)?;
                let destination = take::<4>(&mut rest).ok_or(short)?;
                let (source_port, destination_port) = ports(&mut rest).ok_or(short)?;
                Some(ProxyAddresses {
                    source: SocketAddrV4::new(source.into(), source_port).into(),
                    destination: SocketAddrV4::new(destination.into(), destination_port).into(),
                })
            }
            AddressBlock::Inet6 => {
                let source = take::<16>(&mut rest).ok_or(short)?;
                let destination = take::<16>(&mut rest).ok_or(short)?;
                let (source_port, destination_port) = ports(&mut rest).ok_or(short)?;
                Some(ProxyAddresses {
                    source: SocketAddrV6::new(source.into(), source_port, 0, 0).into(),
                    destination: SocketAddrV6::new(destination.into(), destination_port, 0, 0)
                        .into(),
                })
            }
            AddressBlock::Unix => {
                take::<216>(&mut rest).ok_or(short)?;
                None
            }
        };
        skip_tlvs(rest)?;
        Ok(addresses)
    }
}

/// Takes the first `N` bytes off `bytes`, or `None` if there are fewer.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// Takes two big-endian ports (source, destination) off `bytes`.
fn ports(bytes: &mut &[u8]) -> Option<(u16, u16)> {
    let source = u16::from_be_bytes(take::<2>(bytes)?);
    let destination = u16::from_be_bytes(take::<2>(bytes)?);
    Some((source, destination))
}

/// Checks that `tlvs` is a sequence of whole TLVs (type, 2-byte length, value).
fn skip_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_kind, high, low] = take::<3>(&mut tlvs).ok_or(ProxyError::V2BadTlv)?;
        let length = usize::from(u16::from_be_bytes([high, low]));
        tlvs = tlvs.get(length..).ok_or(ProxyError::V2BadTlv)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A socket address from text.
    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    /// A relayed connection's header.
    fn relayed(version: Version, source: &str, destination: &str) -> ProxyHeader {
        ProxyHeader {
            version,
            command: Command::Proxy,
            addresses: Some(ProxyAddresses {
                source: addr(source),
                destination: addr(destination),
            }),
        }
    }

    /// A header without addresses.
    fn without_addresses(version: Version, command: Command) -> ProxyHeader {
        ProxyHeader {
            version,
            command,
            addresses: None,
        }
    }

    /// `Done` with `header`, having consumed `consumed` bytes.
    fn done(header: ProxyHeader, consumed: usize) -> Parse {
        Parse::Done { header, consumed }
    }

    /// A v2 header built by hand: signature, the two bytes, the length of `body`, `body`.
    fn v2(version_command: u8, family_transport: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(version_command);
        out.push(family_transport);
        out.extend_from_slice(&u16::try_from(body.len()).expect("short body").to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The v2 address block of 192.0.2.1:56324 -> 198.51.100.7:443.
    const INET_BLOCK: [u8; 12] = [192, 0, 2, 1, 198, 51, 100, 7, 0xDC, 0x04, 0x01, 0xBB];

    /// The v2 address block of [2001:db8::1]:56324 -> [2001:db8::2]:443.
    fn inet6_block() -> Vec<u8> {
        let mut block = vec![0x20, 0x01, 0x0D, 0xB8];
        block.extend_from_slice(&[0; 11]);
        block.push(1);
        block.extend_from_slice(&[0x20, 0x01, 0x0D, 0xB8]);
        block.extend_from_slice(&[0; 11]);
        block.push(2);
        block.extend_from_slice(&[0xDC, 0x04, 0x01, 0xBB]);
        block
    }

    /// TLVs as HAProxy sends them: ALPN, authority, an empty NOOP, an SSL block with subtypes.
    fn tlvs() -> Vec<u8> {
        let mut ssl = vec![0x01, 0, 0, 0, 0]; // client: SSL; verify: 0
        ssl.extend_from_slice(&[0x21, 0x00, 0x07]);
        ssl.extend_from_slice(b"TLSv1.3");
        ssl.extend_from_slice(&[0x23, 0x00, 0x16]);
        ssl.extend_from_slice(b"TLS_AES_128_GCM_SHA256");
        let mut out = vec![0x01, 0x00, 0x02];
        out.extend_from_slice(b"h2");
        out.extend_from_slice(&[0x02, 0x00, 0x0B]);
        out.extend_from_slice(b"example.com");
        out.extend_from_slice(&[0x04, 0x00, 0x00]);
        out.push(0x20);
        out.extend_from_slice(&u16::try_from(ssl.len()).expect("short").to_be_bytes());
        out.extend_from_slice(&ssl);
        out
    }

    /// `buf` with `more` appended.
    fn cat(buf: &[u8], more: &[u8]) -> Vec<u8> {
        let mut out = buf.to_vec();
        out.extend_from_slice(more);
        out
    }

    /// One valid header of each kind the parser knows.
    fn samples() -> Vec<Vec<u8>> {
        let group = "ffff:".repeat(7) + "ffff";
        vec![
            b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 0 65535\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            format!("PROXY UNKNOWN {group} {group} 65535 65535\r\n").into_bytes(),
            v2(0x21, 0x11, &INET_BLOCK),
            v2(0x21, 0x21, &inet6_block()),
            v2(0x21, 0x11, &cat(&INET_BLOCK, &tlvs())),
            v2(0x20, 0x00, &[]),
            v2(0x21, 0x00, b"ignored"),
            v2(0x21, 0x31, &cat(&[b'/'; 216], &tlvs())),
        ]
    }

    #[test]
    fn v1_tcp4() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n";
        assert_eq!(
            parse(line),
            done(
                relayed(Version::V1, "192.0.2.1:56324", "198.51.100.7:443"),
                line.len()
            )
        );
        let line = b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n";
        assert_eq!(
            parse(line),
            done(
                relayed(Version::V1, "0.0.0.0:0", "255.255.255.255:65535"),
                line.len()
            )
        );
    }

    #[test]
    fn v1_tcp6() {
        let cases = [
            (
                "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
                "[2001:db8::1]:56324",
                "[2001:db8::2]:443",
            ),
            (
                "PROXY TCP6 FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF :: 1 2\r\n",
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1",
                "[::]:2",
            ),
            // inet_ntop's form of a mapped IPv4 address.
            (
                "PROXY TCP6 ::ffff:192.0.2.1 ::1 80 8080\r\n",
                "[::ffff:192.0.2.1]:80",
                "[::1]:8080",
            ),
        ];
        for (line, source, destination) in cases {
            assert_eq!(
                parse(line.as_bytes()),
                done(relayed(Version::V1, source, destination), line.len()),
                "{line:?}"
            );
        }
    }

    #[test]
    fn v1_unknown_ignores_the_rest_of_the_line() {
        let unknown = without_addresses(Version::V1, Command::Proxy);
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), done(unknown, 15));
        let line = b"PROXY UNKNOWN ::1 ::2 not even \x00\xff\r ports\n\r\n";
        assert_eq!(parse(line), done(unknown, line.len()));
    }

    #[test]
    fn v1_longest_line_is_107_bytes() {
        let group = "ffff:".repeat(7) + "ffff";
        let line = format!("PROXY UNKNOWN {group} {group} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX_HEADER);
        let unknown = without_addresses(Version::V1, Command::Proxy);
        assert_eq!(parse(line.as_bytes()), done(unknown, 107));

        let line = format!("PROXY TCP6 {group} {group} 65535 65535\r\n");
        assert_eq!(line.len(), 104);
        assert!(matches!(
            parse(line.as_bytes()),
            Parse::Done { consumed: 104, .. }
        ));

        let line = format!("PROXY UNKNOWN {group} {group} 65535 655350\r\n");
        assert_eq!(
            parse(line.as_bytes()),
            Parse::Invalid(ProxyError::V1TooLong)
        );
    }

    #[test]
    fn v1_line_without_crlf_is_invalid_at_107_bytes() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(106, b'x');
        // The CRLF cannot fit any more: one byte, the last the limit allows, decides.
        assert_eq!(parse(&line), Parse::NeedMore { at_least: 1 });
        line.push(b'x');
        assert_eq!(parse(&line), Parse::Invalid(ProxyError::V1TooLong));

        // A CR as the 107th byte cannot start a CRLF in time.
        line[106] = b'\r';
        assert_eq!(parse(&line), Parse::Invalid(ProxyError::V1TooLong));
        // As the 106th, it can.
        line.truncate(105);
        line.push(b'\r');
        assert_eq!(parse(&line), Parse::NeedMore { at_least: 1 });
        line.push(b'\n');
        assert!(matches!(parse(&line), Parse::Done { consumed: 107, .. }));

        // A TCP4 line padded with a valid-looking field is rejected as soon as it is too long
        // for its field, long before 107 bytes.
        let mut line = b"PROXY TCP4 ".to_vec();
        line.resize(40, b'1');
        assert_eq!(parse(&line), Parse::Invalid(ProxyError::V1BadAddress));
    }

    #[test]
    fn v1_need_more_never_asks_past_the_limit() {
        // Lines without a CRLF yet, cut at every length, ending in a CR or not: a reader that
        // reads what `NeedMore` asks for never goes past the 107 bytes of the longest line.
        let mut unknown = b"PROXY UNKNOWN ".to_vec();
        unknown.resize(V1_MAX_HEADER, b'x');
        let mut with_cr = unknown.clone();
        for at in (20..V1_MAX_HEADER).step_by(3) {
            with_cr[at] = b'\r';
        }
        let tcp6 = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535";
        for line in [&unknown[..], &with_cr[..], &tcp6[..]] {
            for cut in 0..line.len().min(V1_MAX_HEADER) {
                if let Parse::NeedMore { at_least } = parse(&line[..cut]) {
                    assert!(
                        cut + at_least <= V1_MAX_HEADER,
                        "with {cut} bytes it asks for {at_least} more, past {V1_MAX_HEADER}"
                    );
                }
            }
        }
    }

    #[test]
    fn v1_malformed_lines_are_invalid() {
        use ProxyError::*;
        let cases: &[(&str, ProxyError)] = &[
            ("PROXY\r\n", V1Malformed),
            ("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", V1Malformed),
            ("PROXY \r\n", V1UnknownProtocol),
            ("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", V1UnknownProtocol),
            ("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", V1UnknownProtocol),
            ("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", V1UnknownProtocol),
            ("PROXY UNKNOWNX\r\n", V1UnknownProtocol),
            ("PROXY TCP4\r\n", V1Malformed),
            ("PROXY TCP4 \r\n", V1BadAddress),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", V1Malformed),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", V1Malformed),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", V1Malformed),
            ("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", V1BadAddress),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", V1BadPort),
            ("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", V1BadAddress),
            ("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", V1BadAddress),
            ("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", V1BadAddress),
            ("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", V1BadAddress),
            ("PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", V1BadAddress),
            ("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", V1BadAddress),
            ("PROXY TCP6 ::1%eth0 ::1 1 2\r\n", V1BadAddress),
            ("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", V1BadAddress),
            ("PROXY TCP6 12345::1 ::1 1 2\r\n", V1BadAddress),
            ("PROXY TCP6 ::1 ::1 ::1 2\r\n", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r\n", V1BadPort),
            ("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", V1BadAddress),
        ];
        for (line, error) in cases {
            assert_eq!(parse(line.as_bytes()), Parse::Invalid(*error), "{line:?}");
        }
    }

    #[test]
    fn v1_faults_are_found_before_the_crlf() {
        use ProxyError::*;
        let cases: &[(&str, ProxyError)] = &[
            ("PROXYX", V1Malformed),
            ("PROXY X", V1UnknownProtocol),
            ("PROXY TCP7", V1UnknownProtocol),
            ("PROXY UNKNOWNN", V1UnknownProtocol),
            ("PROXY TCP4 1.2.3.x", V1BadAddress),
            ("PROXY TCP4 1.2.3.400 ", V1BadAddress),
            ("PROXY TCP4 1111111111111111", V1BadAddress),
            ("PROXY TCP6 ::g", V1BadAddress),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 00", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 65536", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", V1Malformed),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", V1BadPort),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", V1BadPort),
        ];
        for (line, error) in cases {
            assert_eq!(parse(line.as_bytes()), Parse::Invalid(*error), "{line:?}");
        }
        // Valid starts stay undecided.
        for line in [
            "PROXY",
            "PROXY ",
            "PROXY T",
            "PROXY UNKNOWN",
            "PROXY UNKNOWN anything",
            "PROXY TCP4 ",
            "PROXY TCP4 1.2.3.4 5.6.7.8 0",
            "PROXY TCP4 1.2.3.4 5.6.7.8 65535 6553",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
            "PROXY TCP6 ::ffff:1.2.3.4",
        ] {
            assert!(
                matches!(parse(line.as_bytes()), Parse::NeedMore { .. }),
                "{line:?}"
            );
        }
    }

    #[test]
    fn v2_ipv4() {
        let header = v2(0x21, 0x11, &INET_BLOCK);
        assert_eq!(header.len(), 28);
        assert_eq!(
            parse(&header),
            done(
                relayed(Version::V2, "192.0.2.1:56324", "198.51.100.7:443"),
                28
            )
        );
    }

    #[test]
    fn v2_ipv6() {
        let header = v2(0x21, 0x21, &inet6_block());
        assert_eq!(header.len(), 52);
        assert_eq!(
            parse(&header),
            done(
                relayed(Version::V2, "[2001:db8::1]:56324", "[2001:db8::2]:443"),
                52
            )
        );
    }

    #[test]
    fn v2_datagram_addresses_are_reported_too() {
        let header = v2(0x21, 0x12, &INET_BLOCK);
        let expected = relayed(Version::V2, "192.0.2.1:56324", "198.51.100.7:443");
        assert_eq!(parse(&header), done(expected, 28));
        let header = v2(0x21, 0x22, &inet6_block());
        assert!(matches!(
            parse(&header),
            Parse::Done {
                header: ProxyHeader {
                    addresses: Some(_),
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn v2_local_ignores_family_and_addresses() {
        let local = without_addresses(Version::V2, Command::Local);
        assert_eq!(parse(&v2(0x20, 0x00, &[])), done(local, 16));
        assert_eq!(parse(&v2(0x20, 0x11, &INET_BLOCK)), done(local, 28));
        // The family byte of a LOCAL header is ignored, as the specification says.
        assert_eq!(parse(&v2(0x20, 0xFF, b"junk")), done(local, 20));
    }

    #[test]
    fn v2_unspec_has_no_addresses() {
        let unspec = without_addresses(Version::V2, Command::Proxy);
        assert_eq!(parse(&v2(0x21, 0x00, &[])), done(unspec, 16));
        assert_eq!(parse(&v2(0x21, 0x00, b"anything")), done(unspec, 24));
        // A known family with transport UNSPEC: the block is ignored, whatever its length.
        assert_eq!(parse(&v2(0x21, 0x10, &[1, 2, 3])), done(unspec, 19));
        assert_eq!(parse(&v2(0x21, 0x01, &[1, 2, 3])), done(unspec, 19));
    }

    #[test]
    fn v2_unix_has_no_addresses() {
        let mut paths = [0u8; 216];
        paths[..9].copy_from_slice(b"/run/a.so");
        paths[108..117].copy_from_slice(b"/run/b.so");
        let unix = without_addresses(Version::V2, Command::Proxy);
        for family in [0x31, 0x32] {
            assert_eq!(parse(&v2(0x21, family, &paths)), done(unix, 232));
            let header = v2(0x21, family, &cat(&paths, &tlvs()));
            assert_eq!(parse(&header), done(unix, header.len()));
        }
    }

    #[test]
    fn v2_bodies_without_addresses_are_skipped_unread() {
        // A TLV that would run past the header (type 0x04, 16 bytes announced, 1 sent): after
        // addresses it is refused; where the family gives none, the bytes are not read.
        let cut_tlv = [0x04, 0x00, 0x10, 0x00];
        let header = v2(0x21, 0x11, &cat(&INET_BLOCK, &cut_tlv));
        assert_eq!(parse(&header), Parse::Invalid(ProxyError::V2BadTlv));
        let local = without_addresses(Version::V2, Command::Local);
        let unspec = without_addresses(Version::V2, Command::Proxy);
        for (header, expected) in [
            (v2(0x20, 0x00, &cut_tlv), local),
            (v2(0x20, 0x11, &cat(&INET_BLOCK, &cut_tlv)), local),
            (v2(0x21, 0x00, &cut_tlv), unspec),
            (v2(0x21, 0x10, &cut_tlv), unspec),
        ] {
            assert_eq!(parse(&header), done(expected, header.len()), "{header:?}");
        }
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let header = v2(0x21, 0x11, &cat(&INET_BLOCK, &tlvs()));
        let expected = relayed(Version::V2, "192.0.2.1:56324", "198.51.100.7:443");
        assert_eq!(parse(&header), done(expected, header.len()));
        let header = v2(0x21, 0x21, &cat(&inet6_block(), &tlvs()));
        assert!(matches!(parse(&header), Parse::Done { consumed, .. } if consumed == header.len()));
    }

    #[test]
    fn v2_tlvs_must_end_within_the_header() {
        for bad in [
            &[0x01][..],
            &[0x01, 0x00],
            &[0x01, 0x00, 0x01],
            &[0x01, 0x00, 0x03, b'h', b'2'],
            &[0x04, 0x00, 0x00, 0x01],
            &[0x04, 0xFF, 0xFF],
        ] {
            let header = v2(0x21, 0x11, &cat(&INET_BLOCK, bad));
            assert_eq!(
                parse(&header),
                Parse::Invalid(ProxyError::V2BadTlv),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn v2_length_over_the_limit_is_invalid_at_16_bytes() {
        let fixed = |length: u16| {
            let mut out = V2_SIGNATURE.to_vec();
            out.extend_from_slice(&[0x21, 0x11]);
            out.extend_from_slice(&length.to_be_bytes());
            out
        };
        assert_eq!(
            parse(&fixed(4081)),
            Parse::Invalid(ProxyError::V2TooLong { length: 4097 })
        );
        assert_eq!(
            parse(&fixed(u16::MAX)),
            Parse::Invalid(ProxyError::V2TooLong { length: 65551 })
        );
        assert_eq!(parse(&fixed(4080)), Parse::NeedMore { at_least: 4080 });

        // The longest header accepted: addresses and one NOOP TLV filling it.
        let mut body = INET_BLOCK.to_vec();
        body.extend_from_slice(&[0x04, 0x0F, 0xE1]); // 4065 bytes of padding
        body.resize(V2_MAX_HEADER - V2_FIXED, 0);
        let header = v2(0x21, 0x11, &body);
        assert_eq!(header.len(), V2_MAX_HEADER);
        assert!(matches!(parse(&header), Parse::Done { consumed: 4096, .. }));
    }

    #[test]
    fn v2_address_block_shorter_than_its_family_is_invalid_at_16_bytes() {
        for (family, needed) in [(0x11, 12), (0x12, 12), (0x21, 36), (0x22, 36), (0x31, 216)] {
            let header = v2(0x21, family, &vec![0; usize::from(needed) - 1]);
            let error = ProxyError::V2AddressesTooShort {
                length: needed - 1,
                needed,
            };
            assert_eq!(parse(&header[..16]), Parse::Invalid(error));
            assert_eq!(parse(&header), Parse::Invalid(error));
        }
    }

    #[test]
    fn v2_bad_version_command_family_transport_are_found_at_their_byte() {
        use ProxyError::*;
        let cases: &[(u8, u8, ProxyError)] = &[
            (0x11, 0x11, V2BadVersion(1)),
            (0x31, 0x11, V2BadVersion(3)),
            (0x01, 0x11, V2BadVersion(0)),
            (0x22, 0x11, V2BadCommand(2)),
            (0x2F, 0x11, V2BadCommand(0xF)),
        ];
        for &(version_command, family, error) in cases {
            let header = v2(version_command, family, &INET_BLOCK);
            assert_eq!(parse(&header[..13]), Parse::Invalid(error));
            assert_eq!(parse(&header), Parse::Invalid(error));
        }
        let cases: &[(u8, ProxyError)] = &[
            (0x41, V2BadFamily(4)),
            (0xF1, V2BadFamily(0xF)),
            (0x40, V2BadFamily(4)),
            (0x13, V2BadTransport(3)),
            (0x03, V2BadTransport(3)),
            (0x1F, V2BadTransport(0xF)),
        ];
        for &(family, error) in cases {
            let header = v2(0x21, family, &INET_BLOCK);
            assert_eq!(parse(&header[..14]), Parse::Invalid(error));
            assert_eq!(parse(&header), Parse::Invalid(error));
        }
    }

    #[test]
    fn bytes_after_the_header_are_not_consumed() {
        for header in samples() {
            let input = cat(&header, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            match parse(&input) {
                Parse::Done { consumed, .. } => assert_eq!(consumed, header.len()),
                other => panic!("{header:?}: {other:?}"),
            }
        }
        // Even when what follows is another header.
        let twice = cat(b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN\r\n");
        assert!(matches!(parse(&twice), Parse::Done { consumed: 15, .. }));
    }

    #[test]
    fn every_header_fed_one_byte_at_a_time() {
        for header in samples() {
            let input = cat(&header, b"\r\n\r\nPROXY data");
            let fresh = parse(&input);
            assert!(matches!(fresh, Parse::Done { .. }), "{header:?}: {fresh:?}");
            for cut in 0..header.len() {
                match parse(&input[..cut]) {
                    Parse::NeedMore { at_least } => {
                        assert!(
                            at_least >= 1 && at_least <= header.len() - cut,
                            "{header:?}"
                        )
                    }
                    other => panic!("{header:?} cut at {cut}: {other:?}"),
                }
            }
            for cut in header.len()..=input.len() {
                assert_eq!(parse(&input[..cut]), fresh, "{header:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn v2_need_more_is_exact_from_the_fixed_part_on() {
        for header in samples().into_iter().filter(|h| h[0] == b'\r') {
            // From the first byte on (an empty buffer may still become a 15-byte v1 header).
            for cut in 1..header.len() {
                let expected = if cut < V2_FIXED {
                    V2_FIXED
                } else {
                    header.len()
                };
                assert_eq!(
                    parse(&header[..cut]),
                    Parse::NeedMore {
                        at_least: expected - cut
                    }
                );
            }
        }
    }

    #[test]
    fn not_proxy_is_decided_at_the_first_byte_that_differs() {
        assert_eq!(parse(b""), Parse::NeedMore { at_least: 15 });
        for other in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"SSH-2.0-OpenSSH",
            b"proxy TCP4",
            b"\x00",
        ] {
            assert_eq!(parse(&other[..1]), Parse::NotProxy, "{other:?}");
            assert_eq!(parse(other), Parse::NotProxy, "{other:?}");
        }
        assert_eq!(parse(b"PROX"), Parse::NeedMore { at_least: 11 });
        assert_eq!(parse(b"PROXZ"), Parse::NotProxy);
        assert_eq!(parse(b"POST / HTTP/1.1"[..2].as_ref()), Parse::NotProxy);
        // Blank lines: CR LF CR LF, then a CR where the signature has a zero byte.
        assert_eq!(parse(b"\r\n\r\n"), Parse::NeedMore { at_least: 12 });
        assert_eq!(parse(b"\r\n\r\n\r"), Parse::NotProxy);
        for i in 0..V2_SIGNATURE.len() {
            let mut other = V2_SIGNATURE[..=i].to_vec();
            other[i] ^= 0x80;
            assert_eq!(parse(&other), Parse::NotProxy, "differs at {i}");
            assert_eq!(
                parse(&V2_SIGNATURE[..=i]),
                Parse::NeedMore {
                    at_least: V2_FIXED - i - 1
                }
            );
        }
    }

    #[test]
    fn encoders_write_what_the_parser_reads() {
        let (source, destination) = (addr("192.0.2.1:56324"), addr("198.51.100.7:443"));
        assert_eq!(encode_v2(source, destination), v2(0x21, 0x11, &INET_BLOCK));
        assert_eq!(
            encode_v1(source, destination),
            "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"
        );
        let (source, destination) = (addr("[2001:db8::1]:56324"), addr("[2001:db8::2]:443"));
        assert_eq!(
            encode_v2(source, destination),
            v2(0x21, 0x21, &inet6_block())
        );
        assert_eq!(
            encode_v1(source, destination),
            "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"
        );

        // Mixed families: the IPv4 address is mapped.
        let (source, destination) = (addr("192.0.2.1:1"), addr("[::1]:2"));
        let expected = relayed(Version::V2, "[::ffff:192.0.2.1]:1", "[::1]:2");
        assert_eq!(parse(&encode_v2(source, destination)), done(expected, 52));
        let line = encode_v1(source, destination);
        assert_eq!(line, "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n");

        let local = without_addresses(Version::V2, Command::Local);
        assert_eq!(parse(&encode_v2_local()), done(local, 16));
    }

    #[test]
    fn a_whole_signature_makes_the_bytes_a_header() {
        // The listener asks this when a header stalls or ends: a whole signature makes it a
        // header cut short (refused), anything less leaves the bytes the application's.
        for header in [
            &b"PROXY"[..],
            b"PROXY TCP4 192.0.2",
            &V2_SIGNATURE,
            &encode_v2_local(),
        ] {
            assert!(has_signature(header), "{header:?}");
        }
        let partial_v2 = &V2_SIGNATURE[..11];
        for not in [
            &b""[..],
            b"PROX",
            b"proxy ",
            b"GET / HTTP/1.1\r\n",
            partial_v2,
        ] {
            assert!(!has_signature(not), "{not:?}");
        }
    }

    #[test]
    fn max_header_bytes_always_decide() {
        let mut v2_start = V2_SIGNATURE.to_vec();
        v2_start.extend_from_slice(&[0x21, 0x11, 0x0F, 0xF0]); // the longest length accepted
        for (start, fill) in [
            (b"PROXY UNKNOWN ".to_vec(), b'x'),
            (b"PROXY TCP6 ".to_vec(), b'1'),
            (v2_start, 0), // zero addresses, then empty TLVs of type 0
        ] {
            let mut buf = start;
            buf.resize(MAX_HEADER, fill);
            assert!(!matches!(parse(&buf), Parse::NeedMore { .. }), "{buf:?}");
        }
    }

    #[test]
    fn errors_read_in_lower_case() {
        use ProxyError::*;
        let errors = [
            V1TooLong,
            V1Malformed,
            V1UnknownProtocol,
            V1BadAddress,
            V1BadPort,
            V2BadVersion(1),
            V2BadCommand(2),
            V2BadFamily(4),
            V2BadTransport(3),
            V2TooLong { length: 4097 },
            V2AddressesTooShort {
                length: 11,
                needed: 12,
            },
            V2BadTlv,
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.starts_with("proxy protocol v"), "{text}");
            assert!(!text.ends_with('.'), "{text}");
            let _: &dyn StdError = &error;
        }
        assert_eq!(
            V2TooLong { length: 4097 }.to_string(),
            "proxy protocol v2 header of 4097 bytes is over the limit of 4096 bytes"
        );
    }

    /// Any IPv4 or IPv6 socket address (no flow information or scope).
    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
    }

    /// What a pair of addresses reads back as: both IPv6 if either is.
    fn as_sent(source: SocketAddr, destination: SocketAddr) -> ProxyAddresses {
        if source.is_ipv4() && destination.is_ipv4() {
            ProxyAddresses {
                source,
                destination,
            }
        } else {
            let v6 = |a: SocketAddr| SocketAddr::new(IpAddr::V6(ipv6(a.ip())), a.port());
            ProxyAddresses {
                source: v6(source),
                destination: v6(destination),
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
            // With a signature in front, the random bytes reach the header parsers.
            let _ = parse(&cat(b"PROXY ", &bytes));
            let _ = parse(&cat(b"PROXY TCP4 ", &bytes));
            let _ = parse(&cat(b"PROXY TCP6 ", &bytes));
            let _ = parse(&cat(&V2_SIGNATURE, &bytes));
        }

        #[test]
        fn any_addresses_round_trip(source in socket_addr(), destination in socket_addr()) {
            let expected = Some(as_sent(source, destination));
            let header = encode_v2(source, destination);
            match parse(&header) {
                Parse::Done { header: h, consumed } => {
                    prop_assert_eq!(consumed, header.len());
                    prop_assert_eq!(h.addresses, expected);
                    prop_assert_eq!((h.version, h.command), (Version::V2, Command::Proxy));
                }
                other => prop_assert!(false, "{:?}", other),
            }
            let line = encode_v1(source, destination);
            match parse(line.as_bytes()) {
                Parse::Done { header: h, consumed } => {
                    prop_assert_eq!(consumed, line.len());
                    prop_assert_eq!(h.addresses, expected);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        /// Valid headers with a few bytes changed: a decision made on a prefix is final, and
        /// `NeedMore` never asks for more than a valid header still has.
        #[test]
        fn decisions_on_a_prefix_are_final(
            sample in 0..10usize,
            source in socket_addr(),
            destination in socket_addr(),
            v1 in any::<bool>(),
            use_sample in any::<bool>(),
            changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut input = if use_sample {
                samples().swap_remove(sample)
            } else if v1 {
                encode_v1(source, destination).into_bytes()
            } else {
                encode_v2(source, destination)
            };
            for (at, byte) in changes {
                let at = at % input.len();
                input[at] = byte;
            }
            input.extend_from_slice(&tail);
            let whole = parse(&input);
            for cut in 0..=input.len() {
                match parse(&input[..cut]) {
                    Parse::NeedMore { at_least } => {
                        prop_assert!(at_least >= 1);
                        if let Parse::Done { consumed, .. } = whole {
                            prop_assert!(cut + at_least <= consumed);
                        }
                    }
                    decided => prop_assert_eq!(&decided, &whole, "cut at {}", cut),
                }
            }
        }
    }
}
