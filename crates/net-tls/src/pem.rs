//! PEM parsing of certificates and private keys, with errors that name their origin.

use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

/// The private keys the crate's crypto provider signs with, as [`private_key`]'s error says.
#[cfg(feature = "aws-lc-rs")]
const SIGNS_WITH: &str = "`aws-lc-rs` signs with RSA of 2048 to 8192 bits, ECDSA on P-256, \
     P-384 or P-521, or Ed25519 or ML-DSA in PKCS#8";
/// The private keys the crate's crypto provider signs with, as [`private_key`]'s error says.
#[cfg(not(feature = "aws-lc-rs"))]
const SIGNS_WITH: &str = "`ring` signs with RSA of 2048 to 4096 bits, ECDSA on P-256 or P-384 \
     with its public key included, or Ed25519 in PKCS#8";

/// Where PEM input came from, for error messages.
pub(crate) const BYTES: &str = "PEM bytes";

/// Reads a PEM file; the operating system's error is kept, as the source of
/// [`Error::ReadFile`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// `pem` without the UTF-8 byte order mark that some Windows tools write before a file's text
/// (PowerShell's `-Encoding UTF8`, older Notepad): the PEM parser takes a BEGIN line only at the
/// start of a line, so it would skip the first section as text before the PEM, and without an
/// error when others follow (a CA bundle would lose its first CA, a chain its leaf).
fn without_bom(pem: &[u8]) -> &[u8] {
    pem.strip_prefix("\u{feff}".as_bytes()).unwrap_or(pem)
}

/// Every certificate in `pem`, in order; at least one.
fn certificates(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = without_bom(pem);
    refuse_sections_after_text(pem, origin)?;
    refuse_utf16(pem, origin)?;
    refuse_other_certificate_labels(pem, origin)?;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable(pem, origin, bad(pem, origin, e)))?;
    if certs.is_empty() {
        return Err(Error::Pem {
            origin: origin.into(),
            reason: "no CERTIFICATE section found".into(),
        });
    }
    Ok(certs)
}

/// The labels OpenSSL also reads certificates under, which the PEM parser skips as sections of
/// another kind: `TRUSTED CERTIFICATE` (a certificate followed by OpenSSL's own trust settings,
/// as `openssl x509 -trustout` writes it) and the old `X509 CERTIFICATE`.
const OTHER_CERTIFICATE_LABELS: [&str; 2] = ["TRUSTED CERTIFICATE", "X509 CERTIFICATE"];

/// Refuses `pem` when one of its sections is a certificate under a label the PEM parser does
/// not read certificates from: one of [`OTHER_CERTIFICATE_LABELS`], or `CERTIFICATE` written
/// otherwise (a blank before the closing dashes, two after BEGIN, lower case). Skipped, it
/// would be missing without an error when ordinary certificates surround it (a CA bundle that
/// loads without one of its CAs, whose servers then fail with an unknown issuer). Ignoring a
/// `TRUSTED CERTIFICATE`'s trust settings (which may reject purposes) to read its certificate
/// would trust it more than OpenSSL does: refused. Labels are compared up to case and blanks;
/// other labels (`CERTIFICATE REQUEST`, `X509 CRL`) are left to the parser, which skips them.
///
/// Lines and labels are found as the PEM parser finds them: a line ends at an LF, a CR or a
/// CRLF (counted as one line), and the label is all before the five dashes that end the line,
/// which may have spaces after and among them (`-----BEGIN X--- --` begins a section `X`).
fn refuse_other_certificate_labels(pem: &[u8], origin: &str) -> Result<()> {
    let refused = lines(pem).enumerate().find_map(|(at, line)| {
        let label = parsed_label(line.strip_prefix(b"-----BEGIN ")?)?;
        if label == b"CERTIFICATE" {
            return None;
        }
        let words = label
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let mut normal = Vec::with_capacity(label.len());
        for word in words {
            if !normal.is_empty() {
                normal.push(b' ');
            }
            normal.extend(word.iter().map(u8::to_ascii_uppercase));
        }
        let line = at + 1;
        if let Some(other) = OTHER_CERTIFICATE_LABELS
            .into_iter()
            .find(|other| normal == other.as_bytes())
        {
            return Some(format!(
                "line {line} begins a {other} section, which is not read (only CERTIFICATE \
                 sections are): write it as a plain certificate first, e.g. with \
                 `openssl x509 -in FILE -out PLAIN`"
            ));
        }
        (normal == b"CERTIFICATE").then(|| {
            format!(
                "line {line} begins a section labelled \"{}\", which is not read as a \
                 certificate (the label must be CERTIFICATE exactly, in capitals, without \
                 blanks around it): write \"-----BEGIN CERTIFICATE-----\" and \"-----END \
                 CERTIFICATE-----\"",
                String::from_utf8_lossy(label)
            )
        })
    });
    match refused {
        None => Ok(()),
        Some(reason) => Err(Error::Pem {
            origin: origin.into(),
            reason,
        }),
    }
}

/// The label the PEM parser reads from a BEGIN line (`rest` is what follows `-----BEGIN `):
/// all before the run of dashes and blanks that ends the line, blanks before the dashes
/// included; `None` when that run has other than five dashes (the parser refuses the line).
fn parsed_label(rest: &[u8]) -> Option<&[u8]> {
    let (mut dashes, mut start) = (0, rest.len());
    for (at, &b) in rest.iter().enumerate().rev() {
        match b {
            b'-' => {
                dashes += 1;
                start = at;
            }
            b' ' | b'\r' | b'\n' => {}
            _ => break,
        }
    }
    (dashes == 5).then(|| &rest[..start])
}

/// Refuses `pem` when one of its lines has a BEGIN marker after other text: the PEM parser
/// takes a BEGIN line only at the start of a line, and skips the section as text, without an
/// error when another section came before it. So a chain would lose a certificate after its
/// leaf, a CA bundle a CA, and a key be "not found", in files joined by `cat` from one that
/// lacked its last newline (`-----END CERTIFICATE----------BEGIN CERTIFICATE-----`, which
/// OpenSSL refuses: "bad end line"), with a byte order mark in the middle (two files saved with
/// one, then joined; only a file's first is skipped) or a section indented as in a YAML file.
fn refuse_sections_after_text(pem: &[u8], origin: &str) -> Result<()> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    /// The most bytes of the line before the marker, and after it, that the error quotes.
    const AROUND: usize = 24;
    let found = lines(pem).enumerate().find_map(|(at, line)| {
        let begin = line.windows(BEGIN.len()).skip(1).position(|w| w == BEGIN)? + 1;
        Some((at + 1, line, begin))
    });
    let Some((line, text, begin)) = found else {
        return Ok(());
    };
    let from = begin.saturating_sub(AROUND);
    let to = text.len().min(begin + BEGIN.len() + AROUND);
    let quoted = format!(
        "{}{:?}{}",
        if from > 0 { "..." } else { "" },
        String::from_utf8_lossy(&text[from..to]),
        if to < text.len() { "..." } else { "" }
    );
    Err(Error::Pem {
        origin: origin.into(),
        reason: format!(
            "line {line} has a BEGIN line after other text ({quoted}), and a section is read only \
             from a BEGIN at the start of its own line: put it on a line of its own (were two \
             files joined without a newline between them?)"
        ),
    })
}

/// Where the PEM parser meets a byte that cannot be in base64: its line in `pem` (counting
/// from 1), and the byte. Sections are found as the parser finds them: a BEGIN line at the
/// start of a line opens one (its label ends at the first of the five dashes that end the
/// line; the blanks after and among them are skipped); a BEGIN line inside a section opens
/// another, whose END decodes both; the END line under the section's label closes it, and its
/// base64 is decoded if the label is of a kind the parser reads, thrown away if not. Blanks
/// and line ends may be in base64, and so may `=`.
fn not_base64(pem: &[u8]) -> Option<(usize, u8)> {
    let mut label: Option<&[u8]> = None;
    // The first byte that cannot be in base64 among the lines the next END decodes.
    let mut first_bad = None;
    for (at, line) in lines(pem).enumerate() {
        if let Some(rest) = line.strip_prefix(b"-----BEGIN ") {
            let mut end = rest.len();
            for (i, &b) in rest.iter().enumerate().rev() {
                match b {
                    b'-' => end = i,
                    b' ' => {}
                    _ => break,
                }
            }
            label = Some(&rest[..end]);
            continue;
        }
        let Some(open) = label else { continue };
        let closes = line
            .strip_prefix(b"-----END ")
            .and_then(|rest| rest.strip_prefix(open))
            .is_some_and(|rest| rest.starts_with(b"-----"));
        if closes {
            label = None;
            if pem::SectionKind::try_from(open).is_ok() && first_bad.is_some() {
                return first_bad;
            }
            first_bad = None;
        } else if first_bad.is_none() {
            let bad = line.iter().find(|&&b| {
                !(b.is_ascii_alphanumeric()
                    || matches!(b, b'+' | b'/' | b'=' | b' ' | b'\t'..=b'\r'))
            });
            first_bad = bad.map(|&bad| (at + 1, bad));
        }
    }
    None
}

/// Refuses `pem` in UTF-16 (two bytes a character, as Windows PowerShell 5's `>` and
/// `Out-File` write text): its byte order mark, or a BEGIN marker in UTF-16 anywhere. The PEM
/// parser reads ASCII, and finds no section in it: "no CERTIFICATE section found" of a file
/// that shows one in any editor, or, after ASCII text, a section lost without an error.
fn refuse_utf16(pem: &[u8], origin: &str) -> Result<()> {
    const MARKER: &[u8] = b"-----BEGIN";
    let little: Vec<u8> = MARKER.iter().flat_map(|&b| [b, 0]).collect();
    let big: Vec<u8> = MARKER.iter().flat_map(|&b| [0, b]).collect();
    let utf16 = pem.starts_with(&[0xff, 0xfe])
        || pem.starts_with(&[0xfe, 0xff])
        || pem
            .windows(little.len())
            .any(|w| w == little.as_slice() || w == big.as_slice());
    if !utf16 {
        return Ok(());
    }
    Err(Error::Pem {
        origin: origin.into(),
        reason: "it is in UTF-16 (two bytes a character, as Windows PowerShell's `>` and \
                 `Out-File` write text), and PEM is read in ASCII: save it as ASCII or UTF-8 \
                 (`Out-File -Encoding ascii`, or `iconv -f UTF-16 -t ASCII FILE`)"
            .into(),
    })
}

/// The lines of `pem`, each ended by an LF, a CR or a CRLF (as the PEM parser ends them).
fn lines(pem: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(pem);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(end) => {
                let crlf = text[end..].starts_with(b"\r\n");
                rest = Some(&text[end + 1 + usize::from(crlf)..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// A certificate chain in `pem`, leaf first: as [`certificates`], and the leaf must parse as a
/// certificate (rustls parses it when the configuration is built, to match it with its key,
/// and its error there could not name `origin`). Only the leaf: rustls sends the others as
/// they are, and a peer may accept what it would not parse. Each of the others must still be
/// one whole DER value ([`one_der_value`]): a PEM section that lost a whole base64 line, or
/// whose END line is missing (its base64 then runs on into the next section's) and that ends
/// without `=` padding, decodes without a base64 error, into bytes no peer takes for a
/// certificate, which rustls would send to every client.
pub(crate) fn chain(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>> {
    let chain = certificates(pem, origin)?;
    if let Err(e) = rustls::server::ParsedCertificate::try_from(&chain[0]) {
        return Err(Error::Pem {
            origin: origin.into(),
            reason: format!(
                "the first certificate (the leaf) is not a certificate: {} (is the file \
                 corrupted?)",
                reason(e)
            ),
        });
    }
    if let Some(place) = chain.iter().skip(1).position(|cert| !one_der_value(cert)) {
        return Err(Error::Pem {
            origin: origin.into(),
            reason: format!(
                "certificate {} is not one whole DER value: cut short or run together with \
                 what follows (a base64 line lost, or its END line missing?)",
                place + 2
            ),
        });
    }
    Ok(chain)
}

/// Whether `der` is exactly one DER value of tag SEQUENCE, as every certificate is: its
/// length field, in the short or long form, covers the bytes after its header, no more and no
/// fewer.
fn one_der_value(der: &[u8]) -> bool {
    /// The tag of a constructed SEQUENCE.
    const SEQUENCE: u8 = 0x30;
    let [SEQUENCE, first, rest @ ..] = der else {
        return false;
    };
    let (length, body) = match usize::from(*first) {
        short @ 0..0x80 => (short, rest),
        long => {
            let octets = long & 0x7f;
            if octets == 0 || octets > std::mem::size_of::<u32>() || rest.len() < octets {
                return false;
            }
            let (length, body) = rest.split_at(octets);
            let length = length
                .iter()
                .fold(0usize, |length, &octet| length << 8 | usize::from(octet));
            (length, body)
        }
    };
    length == body.len()
}

/// A rustls error about a certificate, in words: the reason alone, without rustls's "invalid
/// peer certificate" (these certificates are our own).
fn reason(e: rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(reason) => format!("{reason:?}"),
        // Without rustls's "unexpected error: ": these refusals are expected.
        rustls::Error::General(reason) => reason,
        other => other.to_string(),
    }
}

/// Adds every certificate in `pem` to `roots` as a trust anchor; one that cannot be is an
/// error naming `origin` and the certificate's place in it, counting from 1.
pub(crate) fn add_roots(roots: &mut rustls::RootCertStore, pem: &[u8], origin: &str) -> Result<()> {
    for (place, cert) in certificates(pem, origin)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| Error::Pem {
            origin: origin.into(),
            reason: format!(
                "certificate {} cannot be a trust anchor: {}",
                place + 1,
                reason(e)
            ),
        })?;
    }
    Ok(())
}

/// The first private key in `pem`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), and one that rustls's
/// provider can sign with (it loads the key when the configuration is built, and its error
/// there could not name `origin`).
pub(crate) fn private_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>> {
    let pem = without_bom(pem);
    refuse_sections_after_text(pem, origin)?;
    refuse_utf16(pem, origin)?;
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        let e = match e {
            pem::Error::NoItemsFound => Error::Pem {
                origin: origin.into(),
                reason:
                    "no private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section) found"
                        .into(),
            },
            e => bad(pem, origin, e),
        };
        unusable(pem, origin, e)
    })?;
    if let Err(e) = crate::provider()
        .key_provider
        .load_private_key(key.clone_key())
    {
        return Err(Error::Pem {
            origin: origin.into(),
            reason: format!(
                "the private key cannot be used: {} ({SIGNS_WITH}; is the file corrupted, or \
                 the key of another kind?)",
                reason(e)
            ),
        });
    }
    Ok(key)
}

/// `e`, or, when `pem` holds an encrypted private key, an error saying so: the PEM parser skips
/// a PKCS#8 `ENCRYPTED PRIVATE KEY` section (its own error would be "no private key found") and
/// fails on the headers of OpenSSL's traditional encrypted format (a base64 error).
fn unusable(pem: &[u8], origin: &str, e: Error) -> Error {
    let encrypted = [
        &b"-----BEGIN ENCRYPTED PRIVATE KEY-----"[..],
        b"Proc-Type: 4,ENCRYPTED",
    ];
    if encrypted
        .iter()
        .any(|marker| pem.windows(marker.len()).any(|w| w == *marker))
    {
        return Error::Pem {
            origin: origin.into(),
            reason: "the private key is encrypted, and only unencrypted keys can be read \
                     (decrypt it first, e.g. with `openssl pkey -in KEY -out PLAIN`)"
                .into(),
        };
    }
    e
}

/// The start of a section's label in `text` (what follows `-----BEGIN `): the longest prefix of
/// the characters labels are made of (capitals, digits, spaces), without trailing spaces; and
/// how many bytes follow it (after trailing whitespace is dropped). The bytes after a label are
/// never quoted: a PEM whose newlines were lost has its base64 there, a key's included.
fn label_of(text: &[u8]) -> (&[u8], usize) {
    let end = text
        .iter()
        .position(|&b| !(b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' '))
        .unwrap_or(text.len());
    let label = text[..end].trim_ascii_end();
    (label, text.trim_ascii_end().len() - label.len())
}

/// The parser's error in words: its own text shows the PEM lines it quotes as lists of byte
/// values, and quotes a line whole, however long; a character that cannot be in base64 it
/// shows as a number, without its line (found in `pem` here).
fn bad(pem: &[u8], origin: &str, e: pem::Error) -> Error {
    /// The most bytes of a line an error quotes.
    const QUOTED: usize = 64;
    let reason = match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            let (label, rest) = label_of(&end_marker);
            let label = &label[..label.len().min(QUOTED)];
            if rest == 0 {
                format!(
                    "no \"-----END {}-----\" line (is the file cut short?)",
                    String::from_utf8_lossy(label)
                )
            } else {
                format!(
                    "no \"-----END {0}-----\" line: the line of \"-----BEGIN {0}\" goes on \
                     with {rest} more bytes, not shown (they may be a key's; were the PEM's \
                     newlines lost?)",
                    String::from_utf8_lossy(label)
                )
            }
        }
        pem::Error::IllegalSectionStart { line } => {
            let marker = line.strip_prefix(b"-----BEGIN ").unwrap_or_default();
            let (label, _) = label_of(marker);
            let dashes = marker[label.len()..]
                .iter()
                .take_while(|&&b| b == b'-')
                .count();
            let shown = &marker[..(label.len() + dashes).min(QUOTED)];
            let rest = marker.trim_ascii_end().len().saturating_sub(shown.len());
            let more = if rest == 0 {
                String::new()
            } else {
                format!(
                    ", then {rest} more bytes on its line, not shown (they may be a key's; \
                     were the PEM's newlines lost?)"
                )
            };
            format!(
                "malformed section start \"-----BEGIN {}\"{more} (expected \
                 \"-----BEGIN LABEL-----\" alone on its line)",
                String::from_utf8_lossy(shown)
            )
        }
        // Its text is `InvalidCharacter(byte)`: shown with the line it is on, when found.
        pem::Error::Base64Decode(text) => match not_base64(pem) {
            Some((line, byte)) if text == format!("InvalidCharacter({byte})") => {
                let shown = if byte.is_ascii_graphic() {
                    format!("'{}'", char::from(byte))
                } else {
                    format!("the byte 0x{byte:02x}")
                };
                format!(
                    "line {line} has {shown}, which cannot be in a section's base64 (a \
                     character changed, or text put into the section?)"
                )
            }
            _ => pem::Error::Base64Decode(text).to_string(),
        },
        e => e.to_string(),
    };
    Error::Pem {
        origin: origin.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway ECDSA key on P-521 (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-521`): `aws-lc-rs` signs with it, `ring` does not.
    const P521_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIHuAgEAMBAGByqGSM49AgEGBSuBBAAjBIHWMIHTAgEBBEIBTMCuaCwcTl3i+8t0
b9xZpPod0NGOIyGblYpCA296l1uETcYipSOg9kfy3vk633OShvf2UlA9PLEADK1f
4J3aUO6hgYkDgYYABACUfjywjDYD07VU4SKWDW2qNHeBk5lxAHpCn65HFnhanu47
GrwxdoUlyc9rmf/8zOSv2YxiCTczuN8tsHIN5dY3BQEtbAtqvXwC9Uh+tDBwb7Lw
rVAxfLCu/HSMhu90nyfJxEBxO0X6KDNYlXWD9JBxH1eJFZ10Mhjs9A+qVa/a1Z6r
jA==
-----END PRIVATE KEY-----
";

    /// The keys accepted are the crypto provider's, and a refusal names that provider and
    /// what it signs with.
    #[test]
    fn a_key_is_taken_if_the_crypto_provider_signs_with_it() {
        let taken = private_key(P521_KEY.as_bytes(), "p521.pem");
        if cfg!(feature = "aws-lc-rs") {
            assert!(taken.is_ok(), "{:?}", taken.err());
        } else {
            let e = taken.unwrap_err().to_string();
            assert!(e.contains("p521.pem"), "{e}");
            assert!(
                e.contains("`ring` signs with RSA of 2048 to 4096 bits, ECDSA on P-256 or P-384"),
                "{e}"
            );
        }
    }

    #[test]
    fn empty_and_garbage_pem_are_errors_naming_the_origin() {
        for input in [&b""[..], b"hello", b"-----BEGIN CERTIFICATE-----\nAAAA"] {
            let e = certificates(input, "ca.pem").unwrap_err();
            assert!(
                matches!(&e, Error::Pem { origin, .. } if origin == "ca.pem"),
                "{e}"
            );
            assert!(private_key(input, "key.pem").is_err());
        }
    }

    /// A throw-away P-256 key, encrypted by `openssl pkcs8 -topk8` (PKCS#8).
    const ENCRYPTED_PKCS8: &str = "\
-----BEGIN ENCRYPTED PRIVATE KEY-----\n\
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgSNzNs5ghBYQICCAAw\n\
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEJ4aH0b1xgu/CdN/TRdbjAcEgZDr\n\
05fzsiAb2tSegbLZ8YXgmaDK0aAsbn5yKbs1br6rvOUFI7dRwMbOCpNVqHLyr11A\n\
nFuWdJ3JI9YjsXF4iBAyVbhzFMNGyMJugIQVmb9ItFCnAq91ivne4wSMT2SX40X8\n\
f3NvzK7vMg6uwsKG8YKNqoxg2AFdIieH2pL8QJ8/2XY0U17wn3tRGDK091A9kvo=\n\
-----END ENCRYPTED PRIVATE KEY-----\n\
";

    /// The same kind of key, encrypted by `openssl ec -aes256` (OpenSSL's traditional format).
    const ENCRYPTED_TRADITIONAL: &str = "\
-----BEGIN EC PRIVATE KEY-----\n\
Proc-Type: 4,ENCRYPTED\n\
DEK-Info: AES-256-CBC,85E5B1ECF940A93834AFF3BBB0F6489A\n\
\n\
f2Zf29w3ign1MRocxBBYIkbHUo6GHrbq6yHKlbQp2PJBy0ujuarMmtUYnXXl3Kex\n\
jkMxvLBi6lm0eA9X3T4XntS+zU+/G06cyNpX0BIIXvJs0Zbg14OStm84WPpUdsjy\n\
PAFf949od6diBPMB2tC8ls10C719spfNfKApIlwZ56k=\n\
-----END EC PRIVATE KEY-----\n\
";

    /// The reason of a PEM error, which must name its origin.
    fn reason(e: Error, expected_origin: &str) -> String {
        match e {
            Error::Pem { origin, reason } if origin == expected_origin => reason,
            e => panic!("not a PEM error naming {expected_origin}: {e:?}"),
        }
    }

    #[test]
    fn an_encrypted_key_is_reported_as_encrypted() {
        for pem in [ENCRYPTED_PKCS8, ENCRYPTED_TRADITIONAL] {
            let e = private_key(pem.as_bytes(), "key.pem").unwrap_err();
            let reason = reason(e, "key.pem");
            assert!(reason.contains("encrypted"), "{reason}");
        }
        // A file with the certificate and an encrypted traditional key: the certificate cannot
        // be read past the key's headers either, and the error says why.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let combined = format!("{}{ENCRYPTED_TRADITIONAL}", cert.pem());
        let e = certificates(combined.as_bytes(), "both.pem").unwrap_err();
        let reason = reason(e, "both.pem");
        assert!(reason.contains("encrypted"), "{reason}");
        // A plain key beside an encrypted one is found.
        let both = format!("{ENCRYPTED_PKCS8}{}", key.serialize_pem());
        assert!(private_key(both.as_bytes(), "key.pem").is_ok());
    }

    /// A file cut short (no END line) or a BEGIN line without its closing dashes: the reason
    /// quotes the PEM text, not a list of byte values, and a huge line is not quoted whole.
    #[test]
    fn malformed_sections_are_told_in_text() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        let cut = &cert[..cert.find("-----END").unwrap()];
        let told = reason(
            certificates(cut.as_bytes(), "cut.pem").unwrap_err(),
            "cut.pem",
        );
        assert!(told.contains("-----END CERTIFICATE-----"), "{told}");
        let key_pem = key.serialize_pem();
        let cut = &key_pem[..key_pem.find("-----END").unwrap()];
        let told = reason(
            private_key(cut.as_bytes(), "key.pem").unwrap_err(),
            "key.pem",
        );
        assert!(told.contains("-----END PRIVATE KEY-----"), "{told}");

        let no_dashes = cert.replacen("-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE", 1);
        let told = reason(
            certificates(no_dashes.as_bytes(), "x.pem").unwrap_err(),
            "x.pem",
        );
        assert!(told.contains("\"-----BEGIN CERTIFICATE"), "{told}");

        let mut huge = b"-----BEGIN ".to_vec();
        huge.resize(1 << 20, b'A');
        let told = reason(certificates(&huge, "huge.pem").unwrap_err(), "huge.pem");
        assert!(told.contains("-----BEGIN AAA"), "{told}");
        assert!(told.len() < 300, "{} bytes of reason", told.len());
    }

    /// A byte order mark before the first BEGIN line made the parser skip the first section:
    /// a chain lost its leaf (its CA was taken for the leaf), a key file had "no private key".
    #[test]
    fn a_byte_order_mark_hides_no_section() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca.test".into()])
            .unwrap()
            .self_signed(&ca_key)
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("\u{feff}{}{}", leaf.pem(), ca.pem());
        let chain = chain(pem.as_bytes(), "chain.pem").unwrap();
        assert_eq!(chain, [leaf.der().clone(), ca.der().clone()]);
        let key_pem = format!("\u{feff}{}", key.serialize_pem());
        let read = private_key(key_pem.as_bytes(), "key.pem").unwrap();
        assert_eq!(read.secret_der(), key.serialize_der());
    }

    /// A BEGIN line joined to the END line before it (`cat` of a file without its last
    /// newline) is refused, quoting the joint, also on a long line: the section was skipped.
    #[test]
    fn a_begin_line_after_other_text_is_quoted() {
        let joined = "-----BEGIN X-----\nAAAA\n-----END X----------BEGIN CERTIFICATE-----\n";
        let told = reason(
            certificates(joined.as_bytes(), "a.pem").unwrap_err(),
            "a.pem",
        );
        assert!(
            told.starts_with(
                "line 3 has a BEGIN line after other text \
                 (\"-----END X----------BEGIN CERTIFICATE-----\")"
            ),
            "{told}"
        );
        let long = format!(
            "{}-----BEGIN PRIVATE KEY-----{}",
            "x".repeat(1000),
            "y".repeat(1000)
        );
        let told = reason(private_key(long.as_bytes(), "k.pem").unwrap_err(), "k.pem");
        assert!(
            told.contains(&format!(
                "(...\"{}-----BEGIN PRIVATE KEY-----{}\"...)",
                "x".repeat(24),
                "y".repeat(8)
            )),
            "{told}"
        );
        assert!(told.len() < 300, "{} bytes of reason", told.len());
        // Control characters, each quoted in six: the reason stays short.
        let controls = format!("{0}-----BEGIN {0}", "\u{1}".repeat(100));
        let told = reason(
            certificates(controls.as_bytes(), "c.pem").unwrap_err(),
            "c.pem",
        );
        assert!(told.len() < 600, "{} bytes of reason: {told}", told.len());
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = read_file(Path::new("/nonexistent/cert.pem")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e:?}");
    }

    /// A DER header's length, in the short form or the long form of one to four octets,
    /// must cover exactly the bytes after it: the bounds of each form are taken or refused
    /// as `one_der_value` says (no length octets, five, or fewer than announced: refused).
    #[test]
    fn one_der_value_takes_each_length_form_at_its_bounds() {
        let with_body = |header: &[u8], body: usize| {
            let mut der = header.to_vec();
            der.resize(header.len() + body, 0xaa);
            der
        };
        for (der, whole) in [
            (vec![0x30, 0x00], true),
            (vec![0x31, 0x00], false),
            (vec![0x30, 0x81, 0x00], true),
            (vec![0x30, 0x84, 0, 0, 0, 1, 0xaa], true),
            (vec![0x30, 0x85, 0, 0, 0, 0, 0], false),
            (vec![0x30, 0x80], false),
            (vec![0x30, 0x82, 0x01], false),
            (with_body(&[0x30, 0x82, 0x01, 0x00], 256), true),
            (with_body(&[0x30, 0x82, 0x01, 0x00], 255), false),
            (with_body(&[0x30, 0x82, 0x01, 0x00], 257), false),
        ] {
            assert_eq!(
                one_der_value(&der),
                whole,
                "{:02x?}",
                &der[..der.len().min(8)]
            );
        }
    }

    /// UTF-16 is told by its byte order mark, in either byte order, whatever follows it, and
    /// by a BEGIN marker in UTF-16 without a byte order mark; ASCII PEM is not UTF-16.
    #[test]
    fn utf16_is_told_by_its_byte_order_mark_or_a_begin_marker() {
        let utf16 = |text: &str, little: bool| -> Vec<u8> {
            text.encode_utf16()
                .flat_map(|u| {
                    if little {
                        u.to_le_bytes()
                    } else {
                        u.to_be_bytes()
                    }
                })
                .collect()
        };
        for little in [true, false] {
            for text in ["\u{feff}no PEM here", "-----BEGIN CERTIFICATE-----\n"] {
                let e = refuse_utf16(&utf16(text, little), "u.pem").unwrap_err();
                let told = reason(e, "u.pem");
                assert!(told.contains("UTF-16"), "{text:?}, little {little}: {told}");
            }
        }
        assert!(refuse_utf16(b"-----BEGIN CERTIFICATE-----\nMAA=\n", "a.pem").is_ok());
    }

    /// Lines end at an LF, a CR or a CRLF (one end, not two), as the PEM parser ends them.
    #[test]
    fn lines_end_at_lf_cr_or_crlf() {
        let split = |text: &'static [u8]| lines(text).take(8).collect::<Vec<_>>();
        assert_eq!(split(b"a\nb\rc\r\nd"), [&b"a"[..], b"b", b"c", b"d"]);
        assert_eq!(split(b"a\r\n\r\nb\n"), [&b"a"[..], b"", b"b", b""]);
    }

    /// A section without its END line says whether the file looks cut short (nothing after
    /// the label) or its newlines lost (bytes after it, counted, not shown); a BEGIN line
    /// whose dashes are wrong is quoted up to them, and what follows it counted.
    #[test]
    fn section_errors_say_what_follows_the_label() {
        let told = |pem: &str| reason(certificates(pem.as_bytes(), "s.pem").unwrap_err(), "s.pem");
        let cut = told("-----BEGIN CERTIFICATE-----\nMAA=\n");
        assert_eq!(
            cut,
            "no \"-----END CERTIFICATE-----\" line (is the file cut short?)"
        );
        // The label the parser reads is all up to the last five dashes: 29 bytes follow
        // `CERTIFICATE` in it.
        let one_line = told("-----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----");
        assert!(
            one_line.starts_with(
                "no \"-----END CERTIFICATE-----\" line: the line of \"-----BEGIN CERTIFICATE\" \
                 goes on with 29 more bytes, not shown"
            ),
            "{one_line}"
        );
        let three_dashes = told("-----BEGIN CERTIFICATE---\nMAA=\n-----END CERTIFICATE-----\n");
        assert!(
            three_dashes.starts_with("malformed section start \"-----BEGIN CERTIFICATE---\" ("),
            "{three_dashes}"
        );
        let escaped = told("-----BEGIN CERTIFICATE-----\\nMAA=\\n-----END CERTIFICATE-----\\n");
        assert!(
            escaped.starts_with(
                "malformed section start \"-----BEGIN CERTIFICATE-----\", then 35 more bytes \
                 on its line, not shown"
            ),
            "{escaped}"
        );
    }

    /// A character that cannot be in base64 is located also in a section whose BEGIN line has
    /// blanks after its dashes (the parser's label ends at them); and it is not named when
    /// the parser failed on something else first (`=` padding too early).
    #[test]
    fn a_bad_base64_character_is_located_only_when_the_parser_met_it() {
        let told = |pem: &str| reason(certificates(pem.as_bytes(), "b.pem").unwrap_err(), "b.pem");
        let spaced = told("-----BEGIN CERTIFICATE----- \nMAA=\nMA!=\n-----END CERTIFICATE-----\n");
        assert!(spaced.starts_with("line 3 has '!', "), "{spaced}");
        let padded =
            told("-----BEGIN CERTIFICATE-----\nMA==MA==AAAA\n!!!!\n-----END CERTIFICATE-----\n");
        assert!(!padded.contains("'!'"), "{padded}");
        assert!(padded.contains("PrematurePadding"), "{padded}");
    }

    /// A leaf that is one DER value but no certificate is refused with rustls's reason, in
    /// words.
    #[test]
    fn a_leaf_that_is_no_certificate_is_refused_with_the_reason() {
        let pem = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let told = reason(chain(pem.as_bytes(), "l.pem").unwrap_err(), "l.pem");
        assert_eq!(
            told,
            "the first certificate (the leaf) is not a certificate: BadEncoding (is the file \
             corrupted?)"
        );
    }

    /// The label is what the parser reads: blanks before the closing dashes kept, blanks and
    /// line ends among and after them dropped; a line without exactly five dashes has none.
    #[test]
    fn the_parsed_label_keeps_blanks_before_the_dashes() {
        assert_eq!(parsed_label(b"CERTIFICATE-----"), Some(&b"CERTIFICATE"[..]));
        assert_eq!(
            parsed_label(b"CERTIFICATE -----"),
            Some(&b"CERTIFICATE "[..])
        );
        assert_eq!(parsed_label(b"X--- -- \r\n"), Some(&b"X"[..]));
        assert_eq!(parsed_label(b"CERTIFICATE----"), None);
        assert_eq!(parsed_label(b"CERTIFICATE------"), None);
        assert_eq!(parsed_label(b"CERTIFICATE-----\t"), None);
        assert_eq!(parsed_label(b"-----"), Some(&b""[..]));
        let refused = |label: &str| {
            let pem = format!("-----BEGIN {label}-----\nMAA=\n-----END {label}-----\n");
            refuse_other_certificate_labels(pem.as_bytes(), "a.pem").is_err()
        };
        for label in ["CERTIFICATE\t", "trusted  certificate ", "X509 CERTIFICATE"] {
            assert!(refused(label), "{label:?}");
        }
        for label in [
            "CERTIFICATE",
            "CER TIFICATE",
            "CERTIFICATE REQUEST",
            "X509 CRL",
        ] {
            assert!(!refused(label), "{label:?}");
        }
    }
}
