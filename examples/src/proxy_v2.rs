//! The PROXY protocol version 2 header that `tcp-proxy --send-proxy-v2` sends upstream before
//! the client's bytes, so that the upstream server learns the client's address.
//!
//! The layout (from the PROXY protocol specification, section 2.2), all numbers big-endian:
//!
//! | bytes | content |
//! |---|---|
//! | 12 | the signature `\r\n\r\n\0\r\nQUIT\n` |
//! | 1 | version 2 in the high nibble, command in the low one: `0x21` PROXY (relayed), `0x20` LOCAL (the proxy's own connection, addresses to be ignored) |
//! | 1 | address family in the high nibble, transport in the low one: `0x11` TCP over IPv4, `0x21` TCP over IPv6, `0x00` unspecified |
//! | 2 | the length of what follows |
//! | 12 or 36 | IPv4: source address (4), destination address (4), source port (2), destination port (2); IPv6: the same with 16-byte addresses |
//!
//! "Source" is the client as the proxy saw it, "destination" the address the client connected
//! to (the proxy's listening address). No TLVs are sent.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The 12 bytes every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The header for a connection from `source` (the client) to `destination` (the address the
/// client reached): `PROXY` over TCP/IPv4 when both are IPv4, otherwise TCP/IPv6 (an IPv4
/// address then in its IPv4-mapped form, `::ffff:a.b.c.d`).
pub fn header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(0x11); // TCP over IPv4
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            out.push(0x21); // TCP over IPv6
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(src).octets());
            out.extend_from_slice(&v6(dst).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// The header for a connection whose addresses are not IP addresses (a Unix socket): `LOCAL`,
/// unspecified family, no addresses; the receiver uses the connection's own addresses.
pub fn local_header() -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_byte_for_byte() {
        let header = header(
            "192.0.2.1:51000".parse().unwrap(),
            "198.51.100.7:443".parse().unwrap(),
        );
        let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
        expected.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7]);
        expected.extend_from_slice(&[0xC7, 0x38, 0x01, 0xBB]); // 51000, 443
        assert_eq!(header, expected);
        assert_eq!(header.len(), 28);
    }

    #[test]
    fn ipv6_and_mixed_headers() {
        let header6 = header(
            "[2001:db8::1]:1".parse().unwrap(),
            "[::1]:2".parse().unwrap(),
        );
        assert_eq!(&header6[12..16], &[0x21, 0x21, 0x00, 0x24]);
        assert_eq!(header6.len(), 16 + 36);
        assert_eq!(header6[16], 0x20);
        assert_eq!(header6[16 + 31], 1); // last byte of ::1
        assert_eq!(&header6[48..52], &[0, 1, 0, 2]);

        let mixed = header("10.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap());
        assert_eq!(mixed[13], 0x21);
        assert_eq!(
            &mixed[16..32],
            &"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets()
        );
    }

    #[test]
    fn local_header_has_no_addresses() {
        let local = local_header();
        assert_eq!(local.len(), 16);
        assert_eq!(&local[12..], &[0x20, 0x00, 0x00, 0x00]);
    }
}
