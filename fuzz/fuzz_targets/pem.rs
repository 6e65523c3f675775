//! net-tls' PEM loading (`certificate_chain_pem` and `private_key_pem` on the server builder,
//! `add_root_certificates_pem` on the client's) on text built from PEM pieces — BEGIN and END
//! lines under every label the loaders treat apart (and arbitrary ones), base64 of a real
//! certificate and key, of one whole DER value or of the fuzzer's bytes, lines ended by LF,
//! CRLF or a lone CR, a byte order mark, OpenSSL's encryption header — and raw bytes:
//! - no panic; every error is `Error::Pem` naming "PEM bytes", kind `InvalidInput`, with a
//!   reason of bounded length however long the input (lines are quoted in part), which names
//!   the line of a character that cannot be in base64 (never the parser's number for it);
//! - a certificate under `TRUSTED CERTIFICATE` or `X509 CERTIFICATE`, or under `CERTIFICATE`
//!   written otherwise (blanks around it, lower case), which the PEM parser skips, is refused
//!   (never silently dropped) wherever its BEGIN line is, as the parser reads lines (ended by
//!   LF, CRLF or CR) and labels (the five dashes may have spaces after and among them);
//! - a BEGIN marker after other text on its line (two files joined without a newline, a byte
//!   order mark or blanks before it), which the parser skips, is refused by all three loaders;
//! - an accepted chain is every CERTIFICATE section the parser reads, in order, each after the
//!   leaf one whole DER value; accepted roots are every one of them; where a key is accepted
//!   the parser reads one;
//! - and what the docs take is taken: text the parser reads without a fault, with nothing the
//!   loaders refuse (a skipped certificate label, a BEGIN marker after text, UTF-16), gives the
//!   chain when its leaf is the real certificate and the others whole DER values, the roots
//!   when every certificate is the real one, and the key when the parser's first key is one of
//!   the real keys under its own label (PKCS#8 as `PRIVATE KEY`, SEC1 as `EC PRIVATE KEY`);
//! - the same outcome, reason included, with a byte order mark before the text, and with every
//!   LF turned into CRLF or into a lone CR (when the text has no CR of its own).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_tls::rustls::pki_types::pem::PemObject;
use net_tls::{CertificateDer, Error, PrivateKeyDer, TlsConfig, TlsServerConfig};

/// A throw-away self-signed P-256 certificate (`openssl req -x509 -newkey ec`), base64.
const CERTIFICATE: &str = "MIIBljCCATugAwIBAgIULUNYQ5JJVIF7kYtk4muRMATkrjswCgYIKoZIzj0EAwIwFDESMBAGA1UEAwwJZnV6ei50ZXN0MCAXDTI2MTIwNTEyMDkyMloYDzIxMjYxMTExMTIwOTIyWjAUMRIwEAYDVQQDDAlmdXp6LnRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARKuvnPPF3Nk5dx3oZmh7iLQmuE++uD1ATHAU8YTGD4bp8p328S4Zab76rICBjyg+Qq+8y9VTuv2/3nHwUOy0QLo2kwZzAdBgNVHQ4EFgQUETp8gs4cjh5O7GPVtOuvp8EjH8EwHwYDVR0jBBgwFoAUETp8gs4cjh5O7GPVtOuvp8EjH8EwDwYDVR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglmdXp6LnRlc3QwCgYIKoZIzj0EAwIDSQAwRgIhAO4OEP90wZvW4JGAyozIHoXD+8xS3m0F0azqn98WjvZZAiEAnSfgvgZ2U7svdzgPebRwa2YOWETHUMp6J7OvsMBsNhY=";

/// Its key, in PKCS#8 (`PRIVATE KEY`), base64.
const PKCS8_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggb/m+juobeDyr9XSnzgpFFiOnCeDLxjAbbx7AkwleAWhRANCAARKuvnPPF3Nk5dx3oZmh7iLQmuE++uD1ATHAU8YTGD4bp8p328S4Zab76rICBjyg+Qq+8y9VTuv2/3nHwUOy0QL";

/// Another P-256 key in SEC1 (`EC PRIVATE KEY`), base64.
const SEC1_KEY: &str = "MHcCAQEEILpq2vpaEbETWQArzN9oL+c21A+NQVya/qAomPjFSahuoAoGCCqGSM49AwEHoUQDQgAEE8LWyGHhZpnXF9YnHI+8DsWb/Lw+iBhFNSp9jHFNcCtsDAJ/f9U1QcTwKOFSwAenK0RtU3uIymoYHJZQoUQ3qA==";

/// Labels the loaders read, refuse or skip, and near misses.
const LABELS: &[&str] = &[
    "CERTIFICATE",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "TRUSTED CERTIFICATE",
    "X509 CERTIFICATE",
    "ENCRYPTED PRIVATE KEY",
    "PUBLIC KEY",
    "X509 CRL",
    "CERTIFICATE REQUEST",
    "CERTIFICATE ",
    " CERTIFICATE",
    "certificate",
    "TRUSTED CERTIFICATE ",
    "",
];

/// Whether the loaders refuse a certificate section under `label` (as the parser reads it):
/// OpenSSL's other certificate labels, and `CERTIFICATE` other than exactly so, up to case and
/// blanks.
fn refused(label: &[u8]) -> bool {
    let words: Vec<Vec<u8>> = label
        .split(|b| b.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .map(|word| word.to_ascii_uppercase())
        .collect();
    let normal = words.join(&b' ');
    label != b"CERTIFICATE"
        && [&b"CERTIFICATE"[..], b"TRUSTED CERTIFICATE", b"X509 CERTIFICATE"].contains(&&normal[..])
}

/// The ends of BEGIN and END lines: five dashes, with spaces after or among them.
const TRAILERS: &[&str] = &[
    "-----", "----- ", "-----  ", "--- --", "----", "------", "-----\t",
];

#[derive(Arbitrary, Debug)]
enum Piece {
    Begin {
        label: u8,
        trailer: u8,
    },
    End {
        label: u8,
        trailer: u8,
    },
    /// `-----BEGIN ` and arbitrary bytes.
    BeginRaw(Vec<u8>),
    /// The certificate's base64, in lines of `wrap` (64 when zero).
    Certificate {
        wrap: u8,
    },
    Pkcs8Key {
        wrap: u8,
    },
    Sec1Key {
        wrap: u8,
    },
    /// The base64 of one DER SEQUENCE holding the bytes (long or short form length).
    Der(Vec<u8>),
    /// The base64 of the bytes, cut short by `cut` characters.
    Base64 {
        bytes: Vec<u8>,
        cut: u8,
    },
    Bytes(Vec<u8>),
    Newline(u8),
    ProcType,
    Bom,
}

#[derive(Arbitrary, Debug)]
struct Case {
    pieces: Vec<Piece>,
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn wrapped(text: &str, wrap: u8, out: &mut Vec<u8>) {
    let wrap = if wrap == 0 { 64 } else { usize::from(wrap) };
    for line in text.as_bytes().chunks(wrap) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

fn build(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Begin { label, trailer } | Piece::End { label, trailer } => {
                let word = if matches!(piece, Piece::Begin { .. }) {
                    "BEGIN"
                } else {
                    "END"
                };
                let label = LABELS[usize::from(*label) % LABELS.len()];
                let trailer = TRAILERS[usize::from(*trailer) % TRAILERS.len()];
                out.extend_from_slice(format!("-----{word} {label}{trailer}\n").as_bytes());
            }
            Piece::BeginRaw(bytes) => {
                out.extend_from_slice(b"-----BEGIN ");
                out.extend_from_slice(bytes);
            }
            Piece::Certificate { wrap } => wrapped(CERTIFICATE, *wrap, &mut out),
            Piece::Pkcs8Key { wrap } => wrapped(PKCS8_KEY, *wrap, &mut out),
            Piece::Sec1Key { wrap } => wrapped(SEC1_KEY, *wrap, &mut out),
            Piece::Der(body) => {
                let mut der = vec![0x30];
                match body.len() {
                    n @ 0..0x80 => der.push(n as u8),
                    n @ 0x80..0x100 => der.extend_from_slice(&[0x81, n as u8]),
                    n => der.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
                }
                der.extend_from_slice(body);
                wrapped(&base64(&der), 64, &mut out);
            }
            Piece::Base64 { bytes, cut } => {
                let text = base64(bytes);
                let keep = text.len().saturating_sub(usize::from(*cut % 4));
                wrapped(&text[..keep], 64, &mut out);
            }
            Piece::Bytes(bytes) => out.extend_from_slice(bytes),
            Piece::Newline(n) => out.extend_from_slice(match n % 4 {
                0 => &b"\n"[..],
                1 => b"\r\n",
                2 => b"\r",
                _ => b" \n",
            }),
            Piece::ProcType => out.extend_from_slice(b"Proc-Type: 4,ENCRYPTED\n"),
            Piece::Bom => out.extend_from_slice("\u{feff}".as_bytes()),
        }
    }
    out
}

/// The labels of the BEGIN lines, as rustls-pki-types' parser reads lines (ended by LF or CR)
/// and labels (the five dashes that end the line may have spaces after and among them).
fn begin_labels(pem: &[u8]) -> Vec<&[u8]> {
    pem.split(|&b| b == b'\n' || b == b'\r')
        .filter_map(|line| {
            line.strip_prefix(b"-----BEGIN ")?;
            let mut dashes = 0;
            let mut first_dash = line.len();
            for (i, &b) in line.iter().enumerate().rev() {
                match b {
                    b'-' => {
                        dashes += 1;
                        first_dash = i;
                    }
                    b' ' => {}
                    _ => break,
                }
            }
            (dashes == 5).then(|| &line[11..first_dash])
        })
        .collect()
}

/// Whether `text` looks like UTF-16, which the loaders refuse: a UTF-16 byte order mark at its
/// start, or a BEGIN marker in UTF-16 (either byte order) anywhere.
fn utf16(text: &[u8]) -> bool {
    let marker = b"-----BEGIN";
    let little: Vec<u8> = marker.iter().flat_map(|&b| [b, 0]).collect();
    let big: Vec<u8> = marker.iter().flat_map(|&b| [0, b]).collect();
    text.starts_with(&[0xff, 0xfe])
        || text.starts_with(&[0xfe, 0xff])
        || text
            .windows(little.len())
            .any(|w| w == little.as_slice() || w == big.as_slice())
}

/// Whether `der` is one whole DER SEQUENCE (its length, short or long form, covers the rest).
fn one_der_value(der: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = der else {
        return false;
    };
    if *first < 0x80 {
        return usize::from(*first) == rest.len();
    }
    let octets = usize::from(first & 0x7f);
    if octets == 0 || octets > 4 || rest.len() < octets {
        return false;
    }
    let (length, body) = rest.split_at(octets);
    length.iter().fold(0usize, |n, &b| n << 8 | usize::from(b)) == body.len()
}

/// The outcome of the three loaders: the count they kept, or the error's reason.
#[derive(Debug, PartialEq)]
struct Outcome {
    chain: Result<usize, String>,
    key: Result<(), String>,
    roots: Result<usize, String>,
}

/// The reason of a PEM error, after checking that it is one, naming the bytes, of bounded
/// length.
fn reason(e: Error, pem: &[u8]) -> String {
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    let shown = e.to_string();
    match e {
        Error::Pem { origin, reason, .. } => {
            assert_eq!(origin, "PEM bytes");
            assert!(!reason.is_empty());
            assert!(
                reason.len() <= 600,
                "a reason of {} bytes for {} bytes of PEM: {reason}",
                reason.len(),
                pem.len()
            );
            assert_eq!(shown, format!("unusable pem in PEM bytes: {reason}"));
            // A character that cannot be in base64 is named with its line, never as a number.
            assert!(
                !reason.contains("InvalidCharacter"),
                "{reason} for {:?}",
                String::from_utf8_lossy(pem)
            );
            reason
        }
        e => panic!("not a PEM error: {e:?}"),
    }
}

fn outcome(pem: &[u8]) -> Outcome {
    let chain = match TlsServerConfig::builder().certificate_chain_pem(pem) {
        Ok(builder) => {
            let shown = format!("{builder:?}");
            let count = shown
                .split("certificates: ")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|n| n.parse::<usize>().ok())
                .expect("the builder's Debug shows its certificates");
            Ok(count)
        }
        Err(e) => Err(reason(e, pem)),
    };
    let key = TlsServerConfig::builder()
        .private_key_pem(pem)
        .map(drop)
        .map_err(|e| reason(e, pem));
    let roots = match TlsConfig::builder().add_root_certificates_pem(pem) {
        Ok(builder) => {
            let shown = format!("{builder:?}");
            let count = shown
                .split("custom_roots: ")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|n| n.parse::<usize>().ok())
                .expect("the builder's Debug shows its roots");
            Ok(count)
        }
        Err(e) => Err(reason(e, pem)),
    };
    Outcome { chain, key, roots }
}

fuzz_target!(|case: Case| {
    let pem = build(&case.pieces);
    let got = outcome(&pem);
    let text = pem.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&pem);

    // A certificate under a label the parser skips is refused, never dropped.
    if begin_labels(text)
        .iter()
        .any(|label| refused(label))
    {
        assert!(
            got.chain.is_err(),
            "{:?}: {got:?}",
            String::from_utf8_lossy(&pem)
        );
        assert!(
            got.roots.is_err(),
            "{:?}: {got:?}",
            String::from_utf8_lossy(&pem)
        );
    }
    // A BEGIN marker after other text on its line is refused, never skipped.
    if text
        .split(|&b| b == b'\n' || b == b'\r')
        .any(|line| line.windows(11).skip(1).any(|w| w == b"-----BEGIN "))
    {
        let reasons = [
            got.chain.as_ref().err(),
            got.key.as_ref().err(),
            got.roots.as_ref().err(),
        ];
        for reason in reasons {
            assert!(
                reason.is_some_and(|reason| reason.contains("after other text")),
                "{:?}: {got:?}",
                String::from_utf8_lossy(&pem)
            );
        }
    }
    // What is accepted is everything the parser reads.
    let certificates: Option<Vec<CertificateDer<'_>>> = CertificateDer::pem_slice_iter(text)
        .collect::<Result<_, _>>()
        .ok();
    if let Ok(count) = got.chain {
        let certificates = certificates
            .as_ref()
            .expect("a chain from PEM the parser refuses");
        assert_eq!(count, certificates.len());
        assert!(count > 0);
        for (i, cert) in certificates.iter().enumerate().skip(1) {
            assert!(one_der_value(cert), "certificate {} kept: {cert:?}", i + 1);
        }
    }
    if let Ok(count) = got.roots {
        let certificates = certificates
            .as_ref()
            .expect("roots from PEM the parser refuses");
        assert_eq!(count, certificates.len());
        assert!(count > 0);
    }
    if got.key.is_ok() {
        assert!(PrivateKeyDer::from_pem_slice(text).is_ok());
    }

    // And what the docs take is taken: text the parser reads without a fault, with no section
    // the loaders refuse (a certificate under a label the parser skips, a BEGIN marker after
    // other text, UTF-16), gives the chain when its leaf is the real certificate and every
    // other certificate one whole DER value, the roots when every certificate is the real one,
    // and the key when the parser's first key is one of the real ones.
    let refused = begin_labels(text)
        .iter()
        .any(|label| refused(label))
        || text
            .split(|&b| b == b'\n' || b == b'\r')
            .any(|line| line.windows(11).skip(1).any(|w| w == b"-----BEGIN "))
        || utf16(text);
    if let (false, Some(certificates)) = (refused, &certificates) {
        let real = |cert: &CertificateDer<'_>| base64(cert) == CERTIFICATE;
        let leaf_real = certificates.first().is_some_and(real);
        if leaf_real && certificates[1..].iter().all(|cert| one_der_value(cert)) {
            assert_eq!(
                got.chain,
                Ok(certificates.len()),
                "{:?}",
                String::from_utf8_lossy(&pem)
            );
        }
        if leaf_real && certificates.iter().all(real) {
            assert_eq!(
                got.roots,
                Ok(certificates.len()),
                "{:?}",
                String::from_utf8_lossy(&pem)
            );
        }
    }
    // A real key under its own label: PKCS#8 as `PRIVATE KEY`, SEC1 as `EC PRIVATE KEY`.
    let real_key = match PrivateKeyDer::from_pem_slice(text) {
        Ok(PrivateKeyDer::Pkcs8(key)) => base64(key.secret_pkcs8_der()) == PKCS8_KEY,
        Ok(PrivateKeyDer::Sec1(key)) => base64(key.secret_sec1_der()) == SEC1_KEY,
        _ => false,
    };
    if real_key && !refused {
        assert_eq!(got.key, Ok(()), "{:?}", String::from_utf8_lossy(&pem));
    }

    // A byte order mark before the text changes nothing.
    let mut with_bom = "\u{feff}".as_bytes().to_vec();
    with_bom.extend_from_slice(text);
    assert_eq!(
        outcome(&with_bom),
        got,
        "{:?} with a BOM",
        String::from_utf8_lossy(text)
    );

    // Neither do other line endings.
    if !pem.contains(&b'\r') {
        for newline in [&b"\r\n"[..], b"\r"] {
            let mut other = Vec::with_capacity(pem.len() * 2);
            for &b in &pem {
                if b == b'\n' {
                    other.extend_from_slice(newline);
                } else {
                    other.push(b);
                }
            }
            assert_eq!(
                outcome(&other),
                got,
                "{:?} with lines ended by {newline:?}",
                String::from_utf8_lossy(&pem)
            );
        }
    }
});
