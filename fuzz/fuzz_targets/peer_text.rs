//! `PeerText` (the escaping of text a peer chose for logs and terminals, `net_io::PeerText`)
//! against a model written from its docs, not from its code: every control character (C0, DEL,
//! C1), the line and paragraph separators, the bidi embedding, override and isolate controls
//! and the three direction marks are shown as Rust escapes them (`\n`, `\u{1b}`), and every
//! other character as it is; `PeerText::escapes` says exactly that of each character; padding
//! and precision apply to the escaped text (a precision may cut an escape short, never letting
//! the character itself through).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_io::PeerText;

/// Characters at the edges of the escaped ranges, which random code points seldom hit.
const EDGES: &[char] = &[
    '\0', '\t', '\n', '\r', '\u{1b}', '\u{1f}', ' ', '~', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}',
    '\u{a0}', '\u{61b}', '\u{61c}', '\u{61d}', '\u{200b}', '\u{200d}', '\u{200e}', '\u{200f}',
    '\u{2010}', '\u{2027}', '\u{2028}', '\u{2029}', '\u{202a}', '\u{202e}', '\u{202f}',
    '\u{2065}', '\u{2066}', '\u{2069}', '\u{206a}', '\u{feff}', '\\', '"', '\'', '\u{301}',
    '\u{5d0}', '\u{10ffff}',
];

#[derive(Arbitrary, Debug)]
enum Piece {
    Char(char),
    Edge(u8),
    Ascii(u8),
}

#[derive(Arbitrary, Debug)]
struct Case {
    pieces: Vec<Piece>,
    width: Option<u8>,
    precision: Option<u8>,
}

/// The characters the docs say are escaped.
fn escaped(c: char) -> bool {
    let n = u32::from(c);
    n < 0x20
        || (0x7f..=0x9f).contains(&n)
        || matches!(n, 0x2028 | 0x2029 | 0x202a..=0x202e | 0x2066..=0x2069 | 0x200e | 0x200f | 0x61c)
}

/// How Rust escapes such a character (`char::escape_debug`'s forms for these).
fn escape(c: char) -> String {
    match c {
        '\t' => "\\t".to_owned(),
        '\r' => "\\r".to_owned(),
        '\n' => "\\n".to_owned(),
        '\0' => "\\0".to_owned(),
        c => format!("\\u{{{:x}}}", u32::from(c)),
    }
}

fuzz_target!(|case: Case| {
    let text: String = case
        .pieces
        .iter()
        .map(|p| match *p {
            Piece::Char(c) => c,
            Piece::Edge(i) => EDGES[usize::from(i) % EDGES.len()],
            Piece::Ascii(b) => char::from(b & 0x7f),
        })
        .collect();
    let mut want = String::new();
    for c in text.chars() {
        assert_eq!(PeerText::escapes(c), escaped(c), "escapes({c:?})");
        if escaped(c) {
            want.push_str(&escape(c));
        } else {
            want.push(c);
        }
    }
    let shown = PeerText(&text).to_string();
    assert_eq!(shown, want, "{text:?}");
    assert!(!shown.chars().any(escaped), "{shown:?}");
    // Padding and precision: as for the escaped text.
    let (w, p) = (case.width.map(usize::from), case.precision.map(usize::from));
    let got = match (w, p) {
        (Some(w), Some(p)) => format!("{:>w$.p$}", PeerText(&text)),
        (Some(w), None) => format!("{:<w$}", PeerText(&text)),
        (None, Some(p)) => format!("{:.p$}", PeerText(&text)),
        (None, None) => format!("{}", PeerText(&text)),
    };
    let expected = match (w, p) {
        (Some(w), Some(p)) => format!("{:>w$.p$}", want),
        (Some(w), None) => format!("{:<w$}", want),
        (None, Some(p)) => format!("{:.p$}", want),
        (None, None) => want.clone(),
    };
    assert_eq!(got, expected, "{text:?} with width {w:?}, precision {p:?}");
    assert!(!got.chars().any(escaped), "{got:?}");
});
