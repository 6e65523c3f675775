//! The names net-tls takes as strings: a client's `server_name` (checked by `build`) and a
//! server's SNI names (`sni_certificate_der`), on text made of name pieces (labels, dots,
//! hyphens, digits, IP literals, brackets, scopes, wildcards, non-ASCII), against their docs:
//! - a refused server name is `Error::InvalidServerName` naming exactly the text given (kind
//!   `InvalidInput`); an accepted one is the configuration's name;
//! - an IP literal is an IP address; an IPv6 literal in brackets is the same name as without
//!   them, and nothing else may stand in brackets; an IPv6 literal's scope is dropped (the
//!   name is the address without it); any other text that is not ASCII is refused;
//! - a refused SNI name is `Error::InvalidSniName` naming the text: every IP address, wildcard,
//!   name that is not ASCII or that ends with more than one dot; an SNI name that is taken is
//!   one a client can ask for (a server name `build` accepts, as a DNS name), and every DNS
//!   name a client can ask for, with at most one trailing dot, is taken.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_tls::rustls::pki_types::{PrivateKeyDer, ServerName};
use net_tls::{Error, TlsConfig, TlsServerConfig};

/// Pieces of names, which random characters seldom make.
const TOKENS: &[&str] = &[
    ".",
    "..",
    "-",
    "_",
    "*",
    "*.",
    "a",
    "example",
    "com",
    "xn--bcher-kva",
    "localhost",
    "0",
    "1",
    "09",
    "0x1f",
    "255",
    "256",
    "1.2.3.4",
    "127.0.0.1",
    "::",
    ":",
    "::1",
    "fe80::1",
    "::ffff:1.2.3.4",
    "%",
    "%eth0",
    "%2",
    "%en0.1",
    "[",
    "]",
    "[::1]",
    " ",
    "é",
    "\u{0}",
    "\u{202e}",
    "A",
    "Z",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

#[derive(Arbitrary, Debug)]
enum Piece {
    Token(u8),
    Ascii(u8),
    Char(char),
}

#[derive(Arbitrary, Debug)]
struct Case {
    name: Vec<Piece>,
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

/// The server name a client configuration was built with, or the reason it was refused.
fn server_name(name: &str) -> Result<String, ()> {
    match TlsConfig::builder().server_name(name).build() {
        Ok(config) => {
            let shown = format!("{config:?}");
            let start =
                shown.find("server_name: Some(").expect("a name") + "server_name: Some(".len();
            let end = shown.find(", verification").expect("the fields in order");
            Ok(shown[start..end - 1].to_owned())
        }
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{name:?}: {e}");
            match e {
                Error::InvalidServerName { name: given, .. } => {
                    assert_eq!(given, name);
                    Err(())
                }
                e => panic!("{name:?}: not InvalidServerName: {e:?}"),
            }
        }
    }
}

/// Whether the server takes `name` as an SNI name (its certificate is then refused: there is
/// none).
fn sni_taken(name: &str) -> bool {
    let key = PrivateKeyDer::Pkcs8(Vec::new().into());
    match TlsServerConfig::builder().sni_certificate_der(name, [], key) {
        Ok(_) => panic!("{name:?}: an SNI certificate without a certificate was taken"),
        Err(Error::InvalidSniName { name: given, .. }) => {
            assert_eq!(given, name);
            false
        }
        Err(Error::Config(_)) => true,
        Err(e) => panic!("{name:?}: {e:?}"),
    }
}

fuzz_target!(|case: Case| {
    let name = text(&case.name);
    let got = server_name(&name);

    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        let want = format!("{:?}", ServerName::IpAddress(ip.into()));
        assert_eq!(got.as_deref(), Ok(want.as_str()), "{name:?}");
    }
    let (address, scope) = match name.split_once('%') {
        Some((address, scope)) => (address, Some(scope)),
        None => (name.as_str(), None),
    };
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        // Brackets around an IPv6 literal only (once), which is then the same name.
        if inner.contains(['[', ']']) {
            assert_eq!(got, Err(()), "{name:?}");
        } else if inner.contains(':') {
            assert_eq!(got, server_name(inner), "{name:?}");
        } else {
            assert_eq!(got, Err(()), "{name:?}");
        }
    } else if name.starts_with('[') || name.ends_with(']') {
        assert_eq!(got, Err(()), "{name:?}");
    } else if scope.is_some() && got.is_ok() {
        // The scope of an IPv6 literal is dropped; nothing else has one.
        let ip = address
            .parse::<std::net::Ipv6Addr>()
            .expect("a scope only after IPv6");
        let want = format!(
            "{:?}",
            ServerName::IpAddress(std::net::IpAddr::V6(ip).into())
        );
        assert_eq!(got.as_deref(), Ok(want.as_str()), "{name:?}");
    } else if !name.is_ascii() {
        assert_eq!(got, Err(()), "{name:?}");
    }
    if name.is_empty() {
        assert_eq!(got, Err(()));
    }

    let taken = sni_taken(&name);
    let bare = name.strip_suffix('.').unwrap_or(&name);
    if taken {
        assert!(
            name.is_ascii() && !name.contains('*') && !bare.ends_with('.'),
            "{name:?}"
        );
        assert!(bare.parse::<std::net::IpAddr>().is_err(), "{name:?}");
        let client = server_name(bare).expect("an SNI name a client cannot ask for");
        assert!(client.starts_with("DnsName("), "{name:?}: {client}");
    } else if let Ok(client) = server_name(bare)
        && client.starts_with("DnsName(")
        && !bare.ends_with('.')
        && !bare.contains('*')
        && !bare.is_empty()
    {
        panic!("{name:?}: refused as an SNI name, though a client asks for it ({client})");
    }
});
