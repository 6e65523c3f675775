//! The PROXY protocol header parser of `net-sockets` (`proxy_protocol.rs`, whose rules are in its
//! module docs) on arbitrary bytes, and the encoders' headers read back:
//! - no panic;
//! - every prefix of the input is consistent with the whole: an answer other than `NeedMore`
//!   is final (every longer prefix, and the whole input, gives the same one), `NotProxy` comes
//!   exactly when the bytes differ from both signatures, `NeedMore` never comes at or past the
//!   limit of the header's version (`V1_MAX_HEADER`, `V2_MAX_HEADER`), never asks for bytes
//!   past the end of the header the whole input holds, nor past that limit, and is exact for
//!   v2 once the length field is in; errors are found at the byte the module docs name;
//! - answers agree with a reference parse written from the module docs apart from the parser
//!   ([`reference`]): every prefix that holds a v2 fixed part, or a v1 line with its CRLF
//!   within the limit, gets exactly the reference's answer (the header and its length, or the
//!   error with its fields; for v2 also the exact `NeedMore`), and a v1 error found before the
//!   CRLF is the one the line gets if it ends there;
//! - a complete header takes no more than the input and the limit, ends at the first CRLF
//!   (v1) or where its length field says (v2), and its addresses are what the encoders write;
//! - addresses from the input, encoded with `encode_v1` and `encode_v2`, parse back exactly
//!   (mixed families as IPv4-mapped IPv6, without flow information or scope), also from a v1
//!   line that writes IPv6 addresses in another form (all groups in full, a dotted IPv4 tail,
//!   upper case); `encode_v2_local` parses as `LOCAL`; the bytes after them (the fuzz input)
//!   are never consumed.
//!
//! The module depends on `std` only, so it is compiled into this target from its source file
//! (as the net-io targets include the reference model): nothing in `net-sockets` is made public
//! for the fuzzer.

#![no_main]

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

// The listener's items (and the unit tests' helpers) are not all used here.
#[allow(dead_code)]
#[path = "../../crates/net-sockets/src/proxy_protocol.rs"]
mod proxy_protocol;

use proxy_protocol::{
    Command, MAX_HEADER, Parse, ProxyAddresses, ProxyError, ProxyHeader, V1_MAX_HEADER,
    V2_MAX_HEADER, Version, encode_v1, encode_v2, encode_v2_local, parse,
};

/// The v1 signature, from the specification (not from the module under test).
const V1_SIGNATURE: &[u8] = b"PROXY";

/// The v2 signature, from the specification.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a v2 header: signature, version/command, family/transport, length.
const V2_FIXED: usize = 16;

/// A socket address from the input.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4([u8; 4], u16),
    /// Flow information and scope are not sent, so they do not come back.
    V6([u8; 16], u16, u32, u32),
    /// An IPv6 address of mostly zero groups (a group is kept where `keep` has its bit set),
    /// so that `::` lands anywhere in the text of a v1 line.
    V6Sparse(u8, [u16; 8], u16),
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d` in a v1 line).
    V6Mapped([u8; 4], u16),
}

impl Addr {
    fn get(self) -> SocketAddr {
        match self {
            Addr::V4(ip, port) => SocketAddr::from((ip, port)),
            Addr::V6(ip, port, flow, scope) => {
                SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope).into()
            }
            Addr::V6Sparse(keep, groups, port) => {
                let mut kept = [0u16; 8];
                for (i, group) in groups.iter().enumerate() {
                    if keep & (1 << i) != 0 {
                        kept[i] = *group;
                    }
                }
                SocketAddr::from((Ipv6Addr::from(kept), port))
            }
            Addr::V6Mapped(ip, port) => {
                SocketAddr::from((std::net::Ipv4Addr::from(ip).to_ipv6_mapped(), port))
            }
        }
    }
}

/// How a v1 line writes IPv6 addresses: the encoder's way, or another text form that the
/// parser reads (the module docs: what `std::net::Ipv6Addr` parses).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum V1Form {
    /// What `encode_v1` writes.
    Encoder,
    /// Eight groups of four digits, nothing left out.
    Full,
    /// Six groups of four digits and a dotted IPv4 address: the longest form, 45 characters.
    FullDotted,
    /// The encoder's text in upper case.
    Upper,
}

impl V1Form {
    /// The v1 line for the addresses (mixed families as `TCP6`, the IPv4 address mapped).
    fn line(self, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        let encoded = encode_v1(source, destination);
        if source.is_ipv4() && destination.is_ipv4() {
            return encoded.into_bytes();
        }
        let text = |a: SocketAddr| {
            let ip = mapped(a.ip());
            let groups = ip.segments().map(|g| format!("{g:04x}"));
            match self {
                V1Form::Encoder => ip.to_string(),
                V1Form::Full => groups.join(":"),
                V1Form::FullDotted => {
                    let o = ip.octets();
                    let dotted = format!("{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
                    format!("{}:{dotted}", groups[..6].join(":"))
                }
                V1Form::Upper => ip.to_string().to_uppercase(),
            }
        };
        let line = format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            text(source),
            text(destination),
            source.port(),
            destination.port()
        );
        if let V1Form::Encoder = self {
            assert_eq!(line, encoded);
        }
        line.into_bytes()
    }
}

/// What goes in front of the fuzzer's bytes, so that they reach the header parsers' depths.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Start {
    Nothing,
    V1Signature,
    Tcp4,
    Tcp6,
    Unknown,
    V2Signature,
    /// The signature and the version/command byte `0x21` (version 2, `PROXY`).
    V2Proxy,
    /// The signature, `0x21`, and a family/transport byte.
    V2Family(u8),
    /// The case's v1 line for its addresses, cut after this many bytes.
    EncodedV1(u8),
    /// The encoders' v2 header for the case's addresses, cut after this many bytes.
    EncodedV2(u8),
    /// The encoders' v2 header for the case's addresses with its length raised to cover the
    /// fuzzer's bytes, which are then its TLVs (whole or not).
    V2Tlvs,
    /// The encoders' v2 header for the case's addresses followed by whole TLVs made of the
    /// fuzzer's bytes (see [`whole_tlvs`]), its length covering them; the fuzzer's bytes then
    /// follow the header.
    V2WholeTlvs,
    /// The case's whole v1 line with one byte put in (or, with `replace`, over the one) at
    /// `at` (modulo its length plus one): a leading zero or a sign on a port, a second space,
    /// a stray character in an address, which the parser must refuse unless the line is still
    /// well-formed (`v1_fields_exact` checks every line accepted).
    EditedV1 { at: u8, byte: u8, replace: bool },
}

#[derive(Arbitrary, Debug)]
struct Case {
    source: Addr,
    destination: Addr,
    form: V1Form,
    start: Start,
    bytes: Vec<u8>,
}

/// Whether `prefix` matches `signature` as far as both go.
fn agrees(prefix: &[u8], signature: &[u8]) -> bool {
    let n = prefix.len().min(signature.len());
    prefix[..n] == signature[..n]
}

/// The limit of the header `input` can hold (by its first byte).
fn limit(input: &[u8]) -> usize {
    match input.first() {
        Some(b'P') => V1_MAX_HEADER,
        Some(b'\r') => V2_MAX_HEADER,
        _ => MAX_HEADER,
    }
}

/// The length of the v2 header whose fixed part `input` starts with.
fn v2_total(input: &[u8]) -> usize {
    V2_FIXED + usize::from(u16::from_be_bytes([input[14], input[15]]))
}

/// Checks `parse` on every prefix of `input` against `parse` on the whole; returns the latter.
fn check(input: &[u8]) -> Parse {
    let whole = parse(input);
    let limit = limit(input);
    let v2 = input.first() == Some(&b'\r');
    let mut decided_at = None;
    // Beyond MAX_HEADER bytes every prefix is decided (checked at cut MAX_HEADER), so equal to
    // the whole: the longer prefixes would only repeat the comparison.
    for cut in 0..=input.len().min(MAX_HEADER + 1) {
        let prefix = &input[..cut];
        let answer = parse(prefix);
        let differs =
            !prefix.is_empty() && !agrees(prefix, V1_SIGNATURE) && !agrees(prefix, V2_SIGNATURE);
        assert_eq!(
            answer == Parse::NotProxy,
            differs,
            "NotProxy at the first byte that differs from both signatures (cut at {cut}): \
             {answer:?}"
        );
        match answer {
            Parse::NeedMore { at_least } => {
                assert!(
                    decided_at.is_none(),
                    "NeedMore at {cut} after a decision at {decided_at:?}"
                );
                assert!(at_least >= 1, "NeedMore asks for nothing at {cut}");
                assert!(cut < limit, "NeedMore with {cut} bytes, limit {limit}");
                assert!(
                    cut + at_least <= limit,
                    "NeedMore with {cut} bytes asks for {at_least} more, past the limit {limit}"
                );
                if let Parse::Done { consumed, .. } = whole {
                    assert!(
                        cut + at_least <= consumed,
                        "NeedMore with {cut} bytes asks for {at_least} more, past the header's \
                         {consumed}"
                    );
                }
                if v2 && cut >= V2_FIXED {
                    assert_eq!(cut + at_least, v2_total(input), "v2 NeedMore is exact");
                }
            }
            ref decided => {
                decided_at.get_or_insert(cut);
                assert_eq!(*decided, whole, "a decision at {cut} is not final");
            }
        }
        if let Some(expected) = reference(prefix) {
            assert_eq!(answer, expected, "the reference parse of {prefix:?}");
        }
    }
    if let Some(at) = decided_at {
        where_decided(input, at, &whole);
    }
    if let Parse::Done { header, consumed } = &whole {
        check_done(input, header, *consumed);
    }
    whole
}

/// Checks that `answer`, first given with `at` bytes, came at the byte the module docs name.
fn where_decided(input: &[u8], at: usize, answer: &Parse) {
    use ProxyError::*;
    let expected = match answer {
        Parse::Done { consumed, .. } => *consumed,
        Parse::Invalid(V1TooLong) => V1_MAX_HEADER,
        Parse::Invalid(V2BadVersion(_) | V2BadCommand(_)) => 13,
        Parse::Invalid(V2BadFamily(_) | V2BadTransport(_)) => 14,
        Parse::Invalid(V2TooLong { .. } | V2AddressesTooShort { .. }) => V2_FIXED,
        Parse::Invalid(V2BadTlv) => {
            let total = v2_total(input);
            let block = address_block(input).expect("TLVs checked after an address block");
            assert!(
                !tlvs_whole(&input[V2_FIXED + block..total]),
                "valid TLVs rejected"
            );
            total
        }
        // v1 field errors: at the first byte that cannot belong to the field, or at the CRLF;
        // of the kind of the first wrong field, as the line would be if it ended there (the
        // field cut short is wrong whatever follows, as no field of its kind holds its bytes).
        Parse::Invalid(error) => {
            assert!(
                at > V1_SIGNATURE.len() && at <= V1_MAX_HEADER,
                "v1 error at {at}"
            );
            let ended = [&input[..at], b"\r\n"].concat();
            if let (false, Some(expected)) = (*error == V1TooLong, reference(&ended)) {
                assert_eq!(
                    *answer, expected,
                    "{error:?} at {at}, as if the line ended there"
                );
            }
            return;
        }
        Parse::NotProxy | Parse::NeedMore { .. } => return,
    };
    assert_eq!(at, expected, "{answer:?} decided at {at}");
}

/// What the module docs' rules answer for `input`, computed apart from the parser (whole
/// fields split at spaces, addresses and ports as `std` parses them), where they decide it
/// without following the parser byte by byte: a v2 header whose fixed part is in, a v1 line
/// whose CRLF is within the limit; `None` for anything else.
fn reference(input: &[u8]) -> Option<Parse> {
    if input.len() >= V2_FIXED && input.starts_with(V2_SIGNATURE) {
        return Some(reference_v2(input));
    }
    if !input.starts_with(V1_SIGNATURE) {
        return None;
    }
    let window = &input[..input.len().min(V1_MAX_HEADER)];
    let end = window.windows(2).position(|w| w == b"\r\n")?;
    Some(match reference_v1(&window[..end]) {
        Ok(addresses) => Parse::Done {
            header: ProxyHeader {
                version: Version::V1,
                command: Command::Proxy,
                addresses,
            },
            consumed: end + 2,
        },
        Err(e) => Parse::Invalid(e),
    })
}

/// A whole v1 line without its CRLF: `PROXY`, a space, the protocol up to the next space;
/// `UNKNOWN` takes anything after it; `TCP4` and `TCP6` take exactly four fields split by
/// single spaces, the first wrong one (in order) naming the error; any other protocol is
/// unknown.
fn reference_v1(line: &[u8]) -> Result<Option<ProxyAddresses>, ProxyError> {
    let rest = line
        .strip_prefix(b"PROXY ")
        .ok_or(ProxyError::V1Malformed)?;
    let (protocol, fields) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let tcp4 = match protocol {
        b"UNKNOWN" => return Ok(None),
        b"TCP4" => true,
        b"TCP6" => false,
        _ => return Err(ProxyError::V1UnknownProtocol),
    };
    let fields: Vec<&[u8]> = fields
        .ok_or(ProxyError::V1Malformed)?
        .split(|&b| b == b' ')
        .collect();
    let text = |field: &[u8]| String::from_utf8(field.to_vec()).ok();
    let ip = |field: &[u8]| -> Result<IpAddr, ProxyError> {
        let text = text(field).ok_or(ProxyError::V1BadAddress)?;
        let ip = if tcp4 {
            text.parse().map(IpAddr::V4).ok()
        } else {
            text.parse().map(IpAddr::V6).ok()
        };
        ip.ok_or(ProxyError::V1BadAddress)
    };
    // Decimal as `u16`'s `Display` writes it: no sign, no leading zero.
    let port = |field: &[u8]| -> Result<u16, ProxyError> {
        text(field)
            .and_then(|t| t.parse::<u16>().ok())
            .filter(|p| p.to_string().as_bytes() == field)
            .ok_or(ProxyError::V1BadPort)
    };
    let mut values = (None, None, 0, 0);
    for (i, field) in fields.iter().enumerate() {
        match i {
            0 => values.0 = Some(ip(field)?),
            1 => values.1 = Some(ip(field)?),
            2 => values.2 = port(field)?,
            3 => values.3 = port(field)?,
            _ => return Err(ProxyError::V1Malformed),
        }
    }
    match values {
        (Some(source), Some(destination), source_port, destination_port) if fields.len() == 4 => {
            Ok(Some(ProxyAddresses {
                source: SocketAddr::new(source, source_port),
                destination: SocketAddr::new(destination, destination_port),
            }))
        }
        _ => Err(ProxyError::V1Malformed),
    }
}

/// A v2 header from its fixed part on, by the specification's layout and the module docs'
/// limits: version 2; command `LOCAL` (0) or `PROXY` (1); for `PROXY`, a family of 0 to 3
/// and a transport of 0 to 2; a length within the limit and at least the family's addresses
/// (none without addresses); then the rest of the header, whose addresses (IPv4: two
/// addresses then two ports, 12 bytes; IPv6: the same in 36; Unix: two paths of 108) are
/// followed by whole TLVs.
fn reference_v2(input: &[u8]) -> Parse {
    use ProxyError::*;
    let version = input[12] >> 4;
    if version != 2 {
        return Parse::Invalid(V2BadVersion(version));
    }
    let command = match input[12] & 0x0F {
        0 => Command::Local,
        1 => Command::Proxy,
        other => return Parse::Invalid(V2BadCommand(other)),
    };
    let (family, transport) = (input[13] >> 4, input[13] & 0x0F);
    if command == Command::Proxy {
        if family > 3 {
            return Parse::Invalid(V2BadFamily(family));
        }
        if transport > 2 {
            return Parse::Invalid(V2BadTransport(transport));
        }
    }
    let read = command == Command::Proxy && transport != 0;
    let needed: u16 = match (read, family) {
        (true, 1) => 12,
        (true, 2) => 36,
        (true, 3) => 216,
        _ => 0,
    };
    let length = u16::from_be_bytes([input[14], input[15]]);
    let total = V2_FIXED + usize::from(length);
    if total > V2_MAX_HEADER {
        return Parse::Invalid(V2TooLong { length: total });
    }
    if length < needed {
        return Parse::Invalid(V2AddressesTooShort { length, needed });
    }
    if input.len() < total {
        return Parse::NeedMore {
            at_least: total - input.len(),
        };
    }
    let body = &input[V2_FIXED..total];
    if needed > 0 && !tlvs_whole(&body[usize::from(needed)..]) {
        return Parse::Invalid(V2BadTlv);
    }
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let addresses = match needed {
        12 => Some(ProxyAddresses {
            source: SocketAddr::from((<[u8; 4]>::try_from(&body[..4]).unwrap(), port(8))),
            destination: SocketAddr::from((<[u8; 4]>::try_from(&body[4..8]).unwrap(), port(10))),
        }),
        36 => Some(ProxyAddresses {
            source: SocketAddr::from((<[u8; 16]>::try_from(&body[..16]).unwrap(), port(32))),
            destination: SocketAddr::from((<[u8; 16]>::try_from(&body[16..32]).unwrap(), port(34))),
        }),
        _ => None,
    };
    Parse::Done {
        header: ProxyHeader {
            version: Version::V2,
            command,
            addresses,
        },
        consumed: total,
    }
}

/// Checks a complete header against the bytes it was read from.
fn check_done(input: &[u8], header: &ProxyHeader, consumed: usize) {
    assert!(
        consumed <= input.len(),
        "consumed {consumed} of {}",
        input.len()
    );
    let bytes = &input[..consumed];
    match header.version {
        Version::V1 => {
            assert!(consumed <= V1_MAX_HEADER, "v1 header of {consumed} bytes");
            assert!(bytes.starts_with(b"PROXY "));
            assert_eq!(header.command, Command::Proxy);
            let crlf = bytes.windows(2).position(|w| w == b"\r\n");
            assert_eq!(
                crlf,
                Some(consumed - 2),
                "a v1 header ends at its first CRLF"
            );
            match header.addresses {
                None => assert!(bytes.starts_with(b"PROXY UNKNOWN")),
                Some(a) => {
                    let tcp4 = bytes.starts_with(b"PROXY TCP4 ");
                    assert!(tcp4 || bytes.starts_with(b"PROXY TCP6 "));
                    assert_eq!(a.source.is_ipv4(), tcp4);
                    assert_eq!(a.destination.is_ipv4(), tcp4);
                    v1_fields_exact(&bytes[..consumed - 2], tcp4, &a);
                    // What the encoder writes for them reads back the same.
                    round_trip(a.source, a.destination, b"");
                }
            }
        }
        Version::V2 => {
            assert!(consumed <= V2_MAX_HEADER, "v2 header of {consumed} bytes");
            assert!(bytes.starts_with(V2_SIGNATURE));
            assert_eq!(
                consumed,
                v2_total(bytes),
                "a v2 header ends where its length says"
            );
            let command = match bytes[12] {
                0x20 => Command::Local,
                0x21 => Command::Proxy,
                other => panic!("v2 header accepted with version/command {other:#x}"),
            };
            assert_eq!(header.command, command);
            match header.addresses {
                None => assert!(
                    command == Command::Local
                        || matches!(bytes[13] >> 4, 0 | 3)
                        || bytes[13] & 0x0F == 0,
                    "no addresses for family/transport {:#x}",
                    bytes[13]
                ),
                Some(a) => {
                    // The address block is laid out as the encoder writes it.
                    let encoded = encode_v2(a.source, a.destination);
                    let block = &encoded[V2_FIXED..];
                    assert_eq!(&bytes[V2_FIXED..V2_FIXED + block.len()], block);
                    let family = if a.source.is_ipv4() { 1 } else { 2 };
                    assert_eq!(bytes[13] >> 4, family);
                    assert!(matches!(bytes[13] & 0x0F, 1 | 2));
                }
            }
            if let Some(block) = address_block(bytes) {
                assert!(
                    tlvs_whole(&bytes[V2_FIXED + block..]),
                    "a TLV that does not end within the header accepted"
                );
            }
        }
    }
}

/// An accepted `TCP4`/`TCP6` line (without its CRLF) is exactly the module docs' grammar,
/// checked apart from the parser: six fields split by single spaces; addresses that
/// `std::net` parses as the family's, and the ones reported; ports in decimal without sign or
/// leading zero, which is how `u16`'s `Display` writes them.
fn v1_fields_exact(line: &[u8], tcp4: bool, a: &ProxyAddresses) {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    assert_eq!(fields.len(), 6, "an accepted v1 line has six fields: {line:?}");
    assert_eq!(fields[0], b"PROXY");
    assert_eq!(fields[1], if tcp4 { &b"TCP4"[..] } else { b"TCP6" });
    let ip = |field: &[u8]| -> IpAddr {
        let text = std::str::from_utf8(field).expect("an accepted address is ASCII");
        if tcp4 {
            IpAddr::V4(text.parse().expect("an accepted TCP4 address"))
        } else {
            IpAddr::V6(text.parse().expect("an accepted TCP6 address"))
        }
    };
    assert_eq!(ip(fields[2]), a.source.ip(), "source address of {line:?}");
    assert_eq!(ip(fields[3]), a.destination.ip(), "destination address of {line:?}");
    assert_eq!(
        fields[4],
        a.source.port().to_string().as_bytes(),
        "source port of {line:?}"
    );
    assert_eq!(
        fields[5],
        a.destination.port().to_string().as_bytes(),
        "destination port of {line:?}"
    );
}

/// The size of the address block a v2 header's fixed part announces, if it is read: `PROXY`
/// with a known family and transport (`LOCAL` and `UNSPEC` blocks are skipped unread).
fn address_block(fixed: &[u8]) -> Option<usize> {
    if fixed[12] & 0x0F != 1 || fixed[13] & 0x0F == 0 {
        return None;
    }
    match fixed[13] >> 4 {
        1 => Some(12),
        2 => Some(36),
        3 => Some(216),
        _ => None,
    }
}

/// Whether `tlvs` is a sequence of whole TLVs: a type byte, a big-endian length, the value.
fn tlvs_whole(tlvs: &[u8]) -> bool {
    let mut at = 0;
    while at < tlvs.len() {
        if at + 3 > tlvs.len() {
            return false;
        }
        at += 3 + usize::from(tlvs[at + 1]) * 256 + usize::from(tlvs[at + 2]);
    }
    at == tlvs.len()
}

/// What a pair of addresses reads back as: both IPv6 (IPv4 ones mapped) if either is, and
/// without flow information or scope.
fn as_sent(source: SocketAddr, destination: SocketAddr) -> ProxyAddresses {
    if source.is_ipv4() && destination.is_ipv4() {
        return ProxyAddresses {
            source,
            destination,
        };
    }
    let v6 = |a: SocketAddr| SocketAddr::new(IpAddr::V6(mapped(a.ip())), a.port());
    ProxyAddresses {
        source: v6(source),
        destination: v6(destination),
    }
}

/// The address as IPv6, an IPv4 address mapped.
fn mapped(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    }
}

/// A v2 header's bytes with its length field raised by `tlvs.len()` (saturating); with
/// `append`, `tlvs` follows it (else the caller's bytes will).
fn with_tlvs(mut header: Vec<u8>, tlvs: &[u8], append: bool) -> Vec<u8> {
    let length = u16::from_be_bytes([header[14], header[15]]);
    let raised = length.saturating_add(u16::try_from(tlvs.len()).unwrap_or(u16::MAX));
    header[14..16].copy_from_slice(&raised.to_be_bytes());
    if append {
        header.extend_from_slice(tlvs);
    }
    header
}

/// Whole TLVs made of `bytes`: a type byte, two bytes of length `n` (the high one taken modulo
/// 16, so that a value fits in a header), then up to `n` bytes of value (as many as are left),
/// written as type, the value's length in two bytes, the value.
fn whole_tlvs(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let [kind, high, low, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([high % 16, *low])).min(tail.len());
        out.push(*kind);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&tail[..n]);
        rest = &tail[n..];
    }
    out
}

/// Encodes the addresses both ways and checks that they parse back, with `tail` after them.
fn round_trip(source: SocketAddr, destination: SocketAddr, tail: &[u8]) {
    let addresses = Some(as_sent(source, destination));
    let headers = [
        (Version::V1, encode_v1(source, destination).into_bytes()),
        (Version::V2, encode_v2(source, destination)),
    ];
    for (version, header) in headers {
        let input = [&header[..], tail].concat();
        let expected = Parse::Done {
            header: ProxyHeader {
                version,
                command: Command::Proxy,
                addresses,
            },
            consumed: header.len(),
        };
        assert_eq!(parse(&input), expected, "{source} -> {destination}");
    }
}

fuzz_target!(|case: Case| {
    let (source, destination) = (case.source.get(), case.destination.get());
    let start: Vec<u8> = match case.start {
        Start::Nothing => Vec::new(),
        Start::V1Signature => b"PROXY ".to_vec(),
        Start::Tcp4 => b"PROXY TCP4 ".to_vec(),
        Start::Tcp6 => b"PROXY TCP6 ".to_vec(),
        Start::Unknown => b"PROXY UNKNOWN".to_vec(),
        Start::V2Signature => V2_SIGNATURE.to_vec(),
        Start::V2Proxy => [V2_SIGNATURE, &[0x21]].concat(),
        Start::V2Family(family) => [V2_SIGNATURE, &[0x21, family]].concat(),
        Start::EncodedV1(cut) => {
            let mut line = case.form.line(source, destination);
            line.truncate(usize::from(cut));
            line
        }
        Start::EditedV1 { at, byte, replace } => {
            let mut line = case.form.line(source, destination);
            let at = usize::from(at) % (line.len() + 1);
            if replace && at < line.len() {
                line[at] = byte;
            } else {
                line.insert(at, byte);
            }
            line
        }
        Start::EncodedV2(cut) => {
            let mut header = encode_v2(source, destination);
            header.truncate(usize::from(cut));
            header
        }
        Start::V2Tlvs => with_tlvs(encode_v2(source, destination), &case.bytes, false),
        Start::V2WholeTlvs => {
            let tlvs = whole_tlvs(&case.bytes);
            let input = with_tlvs(encode_v2(source, destination), &tlvs, true);
            if input.len() <= V2_MAX_HEADER {
                // Whole TLVs within the limit: accepted, and nothing after them consumed.
                let expected = Parse::Done {
                    header: ProxyHeader {
                        version: Version::V2,
                        command: Command::Proxy,
                        addresses: Some(as_sent(source, destination)),
                    },
                    consumed: input.len(),
                };
                let whole = [&input[..], &case.bytes[..]].concat();
                assert_eq!(parse(&whole), expected, "whole TLVs {tlvs:?}");
            }
            input
        }
    };
    check(&[&start[..], &case.bytes[..]].concat());

    // The encoders' headers, and the v1 line in the case's form, with the fuzzer's bytes after
    // them.
    round_trip(source, destination, &case.bytes);
    let line = case.form.line(source, destination);
    let expected = if line.len() <= V1_MAX_HEADER {
        Parse::Done {
            header: ProxyHeader {
                version: Version::V1,
                command: Command::Proxy,
                addresses: Some(as_sent(source, destination)),
            },
            consumed: line.len(),
        }
    } else {
        // Two 45-character addresses and long ports: longer than the specification allows.
        Parse::Invalid(ProxyError::V1TooLong)
    };
    assert_eq!(parse(&[&line[..], &case.bytes[..]].concat()), expected);
    let local = [&encode_v2_local()[..], &case.bytes[..]].concat();
    let expected = Parse::Done {
        header: ProxyHeader {
            version: Version::V2,
            command: Command::Local,
            addresses: None,
        },
        consumed: V2_FIXED,
    };
    assert_eq!(parse(&local), expected);
    // Their prefixes are checked like any input (a short tail is enough for that).
    let tail = &case.bytes[..case.bytes.len().min(32)];
    for header in [line, encode_v2(source, destination), encode_v2_local()] {
        check(&[&header[..], tail].concat());
    }
});
