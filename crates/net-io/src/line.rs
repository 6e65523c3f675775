//! Ktor's line rules, and `read_until`'s, as plain functions over a byte buffer, with no I/O.
//!
//! The async line reads of [`ByteReadChannel`](crate::ByteReadChannel) are a thin loop around
//! [`scan_line`] (and `read_until` around [`scan_until`]): scan what is buffered, and if the
//! answer is "need more", read more and scan again from where the last scan stopped.

use memchr::memmem::Finder;
use memchr::{memchr, memchr2};

/// Which byte sequences end a line.
///
/// In both modes the delimiter is never part of the returned line.
///
/// # Examples
///
/// ```
/// use net_io::{ByteReadChannel, LineEnding};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
/// let mut input = ByteReadChannel::from_bytes("a\rb\r\nc");
/// // Default: a lone CR is content.
/// assert_eq!(input.read_line(100, LineEnding::Default).await?.as_deref(), Some("a\rb"));
///
/// let mut input = ByteReadChannel::from_bytes("a\rb\r\nc");
/// // Lenient: a lone CR ends a line too.
/// assert_eq!(input.read_line(100, LineEnding::Lenient).await?.as_deref(), Some("a"));
/// assert_eq!(input.read_line(100, LineEnding::Lenient).await?.as_deref(), Some("b"));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LineEnding {
    /// LF or CRLF ends a line; a CR not followed by LF is part of the line.
    #[default]
    Default,
    /// LF, CRLF or a lone CR ends a line (Ktor's `readUTF8Line`).
    Lenient,
}

/// The outcome of scanning a buffer for one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A line: its content is `buf[..content]`; `consumed` bytes (content and delimiter) make it.
    Line {
        /// Length of the content in bytes.
        content: usize,
        /// Bytes to consume, delimiter included.
        consumed: usize,
        /// Whether a delimiter ended the line (false: the stream ended).
        delimited: bool,
    },
    /// Not decidable yet: read more, then scan again starting at `from`.
    NeedMore {
        /// Where the next scan may start; everything before it holds no delimiter.
        from: usize,
    },
    /// The content already exceeds the limit.
    TooLong,
    /// The stream ended before the first byte of a line.
    Exhausted,
}

/// Scans `buf` for one line of at most `limit` content bytes.
///
/// `eof` says that no more bytes will follow `buf`. `from` is a position that an earlier scan of
/// the same (grown) buffer returned in [`Scan::NeedMore`]; pass 0 when unsure.
pub(crate) fn scan_line(
    buf: &[u8],
    limit: usize,
    ending: LineEnding,
    eof: bool,
    from: usize,
) -> Scan {
    if buf.is_empty() && eof {
        return Scan::Exhausted;
    }
    match ending {
        LineEnding::Default => scan_default(buf, limit, eof, from),
        LineEnding::Lenient => scan_lenient(buf, limit, eof, from),
    }
}

// Bytes the scans of this thread looked at (unit tests count them: a line read started again
// after a cancel goes on where the last scan stopped).
#[cfg(test)]
thread_local! {
    pub(crate) static SCANNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `n` bytes scanned (unit tests only).
#[inline(always)]
fn count_scanned(_n: usize) {
    #[cfg(test)]
    SCANNED.with(|scanned| scanned.set(scanned.get() + _n));
}

/// Below this many bytes a plain loop finds a byte sooner than `memchr`'s vector code (a short
/// request line, or the empty rest of a buffer that a read is about to fill).
const SHORT: usize = 32;

/// The first LF in `hay`.
fn find_lf(hay: &[u8]) -> Option<usize> {
    if hay.len() < SHORT {
        return hay.iter().position(|&b| b == b'\n');
    }
    // A short line among others buffered (pipelined requests) ends within the first two
    // words: found there without `memchr`'s set-up, which costs more than such a line's scan.
    let (head, rest) = hay.split_at(16);
    let (w0, w1) = head.split_at(8);
    lf_in_word(w0)
        .or_else(|| lf_in_word(w1).map(|i| 8 + i))
        .or_else(|| memchr(b'\n', rest).map(|i| 16 + i))
}

/// The index of the first LF in `word` (8 bytes).
#[inline]
fn lf_in_word(word: &[u8]) -> Option<usize> {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(word);
    // Zero where the byte is LF; the lowest byte flagged below is the first zero byte
    // (a borrow can only flag bytes above it).
    let x = u64::from_le_bytes(bytes) ^ 0x0a0a_0a0a_0a0a_0a0a;
    let flags = x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080;
    (flags != 0).then(|| flags.trailing_zeros() as usize / 8)
}

/// The first CR or LF in `hay`.
fn find_cr_or_lf(hay: &[u8]) -> Option<usize> {
    if hay.len() < SHORT {
        hay.iter().position(|&b| b == b'\n' || b == b'\r')
    } else {
        memchr2(b'\n', b'\r', hay)
    }
}

fn scan_default(buf: &[u8], limit: usize, eof: bool, from: usize) -> Scan {
    // Content plus CR plus LF: a delimiter past this window means a too-long line.
    let window = &buf[..buf.len().min(limit.saturating_add(2))];
    let from = from.min(window.len());
    count_scanned(window.len() - from);
    if let Some(i) = find_lf(&window[from..]).map(|i| from + i) {
        let content = if i > 0 && buf[i - 1] == b'\r' {
            i - 1
        } else {
            i
        };
        return if content > limit {
            Scan::TooLong
        } else {
            Scan::Line {
                content,
                consumed: i + 1,
                delimited: true,
            }
        };
    }
    let len = buf.len();
    if eof {
        // A trailing lone CR is content in this mode.
        return if len > limit {
            Scan::TooLong
        } else {
            Scan::Line {
                content: len,
                consumed: len,
                delimited: false,
            }
        };
    }
    // Without an LF so far, only a CR at index `limit` can still end the line in time.
    if len > limit.saturating_add(1) || (len == limit.saturating_add(1) && buf[limit] != b'\r') {
        return Scan::TooLong;
    }
    Scan::NeedMore { from: window.len() }
}

fn scan_lenient(buf: &[u8], limit: usize, eof: bool, from: usize) -> Scan {
    let window = &buf[..buf.len().min(limit.saturating_add(1))];
    let from = from.min(window.len());
    count_scanned(window.len() - from);
    let len = buf.len();
    if let Some(i) = find_cr_or_lf(&window[from..]).map(|i| from + i) {
        if buf[i] == b'\n' {
            return Scan::Line {
                content: i,
                consumed: i + 1,
                delimited: true,
            };
        }
        // A CR: CRLF if the next byte is LF; undecided while the CR is the last byte.
        return match buf.get(i + 1) {
            Some(b'\n') => Scan::Line {
                content: i,
                consumed: i + 2,
                delimited: true,
            },
            Some(_) => Scan::Line {
                content: i,
                consumed: i + 1,
                delimited: true,
            },
            None if eof => Scan::Line {
                content: i,
                consumed: i + 1,
                delimited: true,
            },
            None => Scan::NeedMore { from: i },
        };
    }
    if len > limit {
        return Scan::TooLong;
    }
    if eof {
        return Scan::Line {
            content: len,
            consumed: len,
            delimited: false,
        };
    }
    Scan::NeedMore { from: window.len() }
}

/// The outcome of scanning a buffer for one item ended by a delimiter (`read_until`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Until {
    /// The item is `buf[..content]`; the delimiter follows it.
    Found {
        /// Length of the item in bytes.
        content: usize,
    },
    /// Not decidable yet: read more, then scan again starting at `from`.
    NeedMore {
        /// Where the next scan may start; no delimiter starts before it.
        from: usize,
    },
    /// The item already exceeds the limit.
    TooLong,
    /// The stream ended after some bytes and no delimiter.
    Unterminated,
    /// The stream ended before the first byte of an item.
    Exhausted,
}

/// Scans `buf` for an item of at most `limit` bytes ended by `finder`'s delimiter (not empty).
///
/// Exactly `limit` bytes and then the delimiter is an item; a byte more is [`Until::TooLong`],
/// decided as soon as no delimiter can start at or before index `limit` any more (at once for
/// a one-byte delimiter; a multi-byte one whose first bytes end the buffer there waits for the
/// rest). At the end of the stream, leftover bytes are [`Until::TooLong`] past the limit and
/// [`Until::Unterminated`] within it. `from` is as for [`scan_line`].
pub(crate) fn scan_until(
    buf: &[u8],
    finder: &Finder<'_>,
    limit: usize,
    eof: bool,
    from: usize,
) -> Until {
    let delimiter = finder.needle();
    if buf.is_empty() && eof {
        return Until::Exhausted;
    }
    // A delimiter that starts at or before `limit` ends within this window.
    let window = &buf[..buf.len().min(limit.saturating_add(delimiter.len()))];
    let from = from.min(window.len());
    count_scanned(window.len() - from);
    if let Some(i) = finder.find(&window[from..]) {
        return Until::Found { content: from + i };
    }
    let len = buf.len();
    // A delimiter not wholly here may start where fewer than its length of bytes are left.
    let partial_from = len.saturating_sub(delimiter.len().saturating_sub(1));
    let next = Until::NeedMore {
        from: window
            .len()
            .saturating_sub(delimiter.len().saturating_sub(1)),
    };
    if len > limit {
        // Only a delimiter that starts at or before `limit` keeps the item within the limit.
        let may_start = !eof && (partial_from..=limit).any(|p| delimiter.starts_with(&buf[p..]));
        return if may_start { next } else { Until::TooLong };
    }
    if eof { Until::Unterminated } else { next }
}

/// Lines longer than this are decoded into room reserved first, fallibly (see
/// [`try_push_lossy`]): a line read whose limit lets a peer's line through may be asked for
/// more than the process can allocate once the line is buffered.
const LARGE_LINE: usize = 64 * 1024;

/// How many bytes [`push_lossy`] appends for `bytes`: each malformed sequence becomes U+FFFD,
/// three bytes. Saturated: where `usize` has 32 bits, a line of 2 GiB less a byte, all of it
/// malformed, would make three times that.
fn lossy_len(bytes: &[u8]) -> usize {
    bytes.utf8_chunks().fold(0, |len: usize, chunk| {
        let replaced = if chunk.invalid().is_empty() { 0 } else { 3 };
        len.saturating_add(chunk.valid().len() + replaced)
    })
}

/// As [`push_lossy`], but a large line's room is reserved first without aborting the process
/// where it cannot be allocated: then `false`, and `out` is left as it was.
#[inline]
pub(crate) fn try_push_lossy(out: &mut String, bytes: &[u8]) -> bool {
    if bytes.len() > LARGE_LINE && out.try_reserve_exact(lossy_len(bytes)).is_err() {
        return false;
    }
    push_lossy(out, bytes);
    true
}

/// A line's bytes as a `String`, as [`String::from_utf8_lossy`] makes it; `None` where a large
/// line's room cannot be allocated (see [`try_push_lossy`]).
#[inline]
pub(crate) fn try_lossy_string(bytes: &[u8]) -> Option<String> {
    if bytes.len() <= LARGE_LINE {
        return Some(String::from_utf8_lossy(bytes).into_owned());
    }
    let mut line = String::new();
    try_push_lossy(&mut line, bytes).then_some(line)
}

/// Lines up to this long are checked with [`std::str::from_utf8`] first: cheaper than the lossy
/// decoder's set-up for a short request line (on longer text the lossy decoder's own scan is
/// the faster check).
const SHORT_TEXT: usize = 16;

/// Appends a line's bytes to `out` as text, each malformed sequence replaced by U+FFFD exactly
/// as [`String::from_utf8_lossy`] does.
#[inline]
pub(crate) fn push_lossy(out: &mut String, bytes: &[u8]) {
    if bytes.len() <= SHORT_TEXT {
        if let Ok(text) = std::str::from_utf8(bytes) {
            out.push_str(text);
            return;
        }
    }
    // The lossy decoder's own pieces, appended as they come: `String::from_utf8_lossy` would
    // build a `String` for text with a malformed sequence, which a peer chooses to send.
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LineEnding::{Default as D, Lenient as L};

    fn line(content: usize, consumed: usize) -> Scan {
        Scan::Line {
            content,
            consumed,
            delimited: true,
        }
    }

    #[test]
    fn default_mode_delimiters() {
        assert_eq!(scan_line(b"ab\ncd", 10, D, false, 0), line(2, 3));
        assert_eq!(scan_line(b"ab\r\ncd", 10, D, false, 0), line(2, 4));
        assert_eq!(scan_line(b"a\rb\n", 10, D, false, 0), line(3, 4));
        // An empty line: the LF at index 0 has no byte before it to be a CR.
        assert_eq!(scan_line(b"\nab", 10, D, false, 0), line(0, 1));
        assert_eq!(scan_line(b"\r\nab", 10, D, false, 0), line(0, 2));
        assert_eq!(
            scan_line(b"ab\r", 10, D, false, 0),
            Scan::NeedMore { from: 3 }
        );
        assert_eq!(
            scan_line(b"ab\r", 10, D, true, 0),
            Scan::Line {
                content: 3,
                consumed: 3,
                delimited: false
            }
        );
    }

    #[test]
    fn lenient_mode_delimiters() {
        assert_eq!(scan_line(b"ab\rcd", 10, L, false, 0), line(2, 3));
        assert_eq!(scan_line(b"ab\r\ncd", 10, L, false, 0), line(2, 4));
        assert_eq!(
            scan_line(b"ab\r", 10, L, false, 0),
            Scan::NeedMore { from: 2 }
        );
        assert_eq!(scan_line(b"ab\r", 10, L, true, 0), line(2, 3));
        assert_eq!(scan_line(b"\n", 0, L, false, 0), line(0, 1));
    }

    #[test]
    fn limit_is_exact() {
        for mode in [D, L] {
            assert_eq!(scan_line(b"abc\n", 3, mode, false, 0), line(3, 4));
            assert_eq!(scan_line(b"abc\r\n", 3, mode, false, 0), line(3, 5));
            assert_eq!(scan_line(b"abcd\n", 3, mode, false, 0), Scan::TooLong);
            assert_eq!(scan_line(b"abcd", 3, mode, false, 0), Scan::TooLong);
            assert_eq!(scan_line(b"abcd", 3, mode, true, 0), Scan::TooLong);
            assert_eq!(
                scan_line(b"abc", 3, mode, true, 0),
                Scan::Line {
                    content: 3,
                    consumed: 3,
                    delimited: false
                }
            );
            assert_eq!(scan_line(b"a\n", 0, mode, false, 0), Scan::TooLong);
        }
        // Default mode: "abc\r" may still become "abc\r\n".
        assert_eq!(
            scan_line(b"abc\r", 3, D, false, 0),
            Scan::NeedMore { from: 4 }
        );
        assert_eq!(scan_line(b"abc\rx", 3, D, false, 0), Scan::TooLong);
    }

    #[test]
    fn exhausted_only_when_empty_at_eof() {
        assert_eq!(scan_line(b"", 5, D, true, 0), Scan::Exhausted);
        assert_eq!(scan_line(b"", 5, D, false, 0), Scan::NeedMore { from: 0 });
    }

    #[test]
    fn resumed_scan_matches_fresh_scan() {
        let input = b"hello\r\nworld\rx\n";
        for mode in [D, L] {
            for cut in 0..input.len() {
                if let Scan::NeedMore { from } = scan_line(&input[..cut], 100, mode, false, 0) {
                    assert_eq!(
                        scan_line(input, 100, mode, false, from),
                        scan_line(input, 100, mode, false, 0)
                    );
                }
            }
        }
    }

    fn until(buf: &[u8], delimiter: &[u8], limit: usize, eof: bool) -> Until {
        scan_until(buf, &Finder::new(delimiter), limit, eof, 0)
    }

    #[test]
    fn until_finds_single_and_multi_byte_delimiters() {
        assert_eq!(
            until(b"ab;cd", b";", 10, false),
            Until::Found { content: 2 }
        );
        assert_eq!(
            until(b"ab\r\ncd", b"\r\n", 10, false),
            Until::Found { content: 2 }
        );
        assert_eq!(until(b";", b";", 0, false), Until::Found { content: 0 });
        assert_eq!(
            until(b"ab\r", b"\r\n", 10, false),
            Until::NeedMore { from: 2 }
        );
        assert_eq!(until(b"ab", b"--", 10, true), Until::Unterminated);
        assert_eq!(until(b"", b"--", 10, true), Until::Exhausted);
        assert_eq!(until(b"", b"--", 10, false), Until::NeedMore { from: 0 });
    }

    #[test]
    fn until_limit_is_exact() {
        assert_eq!(until(b"abc;", b";", 3, false), Until::Found { content: 3 });
        assert_eq!(until(b"abcd", b";", 3, false), Until::TooLong);
        assert_eq!(until(b"abcd;", b";", 3, false), Until::TooLong);
        assert_eq!(until(b"abcd", b";", 3, true), Until::TooLong);
        assert_eq!(until(b"abc", b";", 3, true), Until::Unterminated);
        // The delimiter's first byte right at the limit: wait for the rest.
        assert_eq!(
            until(b"abc\r", b"\r\n", 3, false),
            Until::NeedMore { from: 3 }
        );
        assert_eq!(
            until(b"abc\r\n", b"\r\n", 3, false),
            Until::Found { content: 3 }
        );
        assert_eq!(until(b"abc\rx", b"\r\n", 3, false), Until::TooLong);
        assert_eq!(until(b"abcd\r", b"\r\n", 3, false), Until::TooLong);
        assert_eq!(until(b"abc\r", b"\r\n", 3, true), Until::TooLong);
        assert_eq!(
            until(b"x", b";", usize::MAX, false),
            Until::NeedMore { from: 1 }
        );
    }

    #[test]
    fn resumed_until_scan_matches_fresh_scan() {
        let input = b"one\r\n\r\ntwo\r\r\n";
        for delimiter in [&b"\r\n"[..], b"\r\n\r\n", b"\n", b"o\r"] {
            let finder = Finder::new(delimiter);
            for cut in 0..input.len() {
                if let Until::NeedMore { from } = scan_until(&input[..cut], &finder, 100, false, 0)
                {
                    assert_eq!(
                        scan_until(input, &finder, 100, false, from),
                        scan_until(input, &finder, 100, false, 0),
                        "{delimiter:?} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn find_lf_finds_the_first_lf_wherever_it_is() {
        // Every position in and around the two words checked before `memchr`, in buffers
        // shorter and longer than the cut-over, with LF-like bytes (0x0b, 0x8a, 0x09) around.
        for len in [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 40, 100] {
            for fill in [b'a', 0x0b, 0x8a, 0x09, 0x00, 0xff] {
                let mut hay = vec![fill; len];
                assert_eq!(find_lf(&hay), None, "{len} {fill}");
                for at in 0..len {
                    hay[at] = b'\n';
                    if at + 1 < len {
                        hay[at + 1] = b'\n';
                    }
                    assert_eq!(find_lf(&hay), Some(at), "{len} {fill} {at}");
                    hay.fill(fill);
                }
            }
        }
    }

    #[test]
    fn push_lossy_is_from_utf8_lossy() {
        let cases: [&[u8]; 10] = [
            b"",
            b"Alice",
            b"sixteen bytes!!!",
            b"seventeen bytes!!",
            "caf\u{e9} \u{20ac}".as_bytes(),
            b"\xff",
            b"a\xc3",
            b"ok\xed\xa0\x80ok",
            b"\xf0\x9f\x98\x80\xf0\x9f",
            b"mixed \xc3\xa9 and \x80 bad, and longer than sixteen bytes",
        ];
        for bytes in cases {
            let mut out = String::from("before|");
            push_lossy(&mut out, bytes);
            assert_eq!(
                out,
                format!("before|{}", String::from_utf8_lossy(bytes)),
                "{bytes:?}"
            );
        }
    }

    /// Bytes from an alphabet that stresses the word check: LF, bytes one off it, bytes that
    /// differ from it only in the high bit, zero, CR, and any byte.
    fn lf_hay() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let byte = prop_oneof![
            Just(b'\n'),
            Just(0x0b),
            Just(0x09),
            Just(0x8a),
            Just(0x00),
            Just(b'\r'),
            any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..80)
    }

    /// Bytes that stress the lossy decoder: pieces of valid multi-byte sequences, lone
    /// continuation and lead bytes, surrogates, ASCII.
    fn text_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            proptest::collection::vec(b'a'..=b'z', 1..4),
            Just("\u{e9}".as_bytes().to_vec()),
            Just("\u{20ac}".as_bytes().to_vec()),
            Just("\u{1f600}".as_bytes().to_vec()),
            Just(vec![0xc3]),
            Just(vec![0xe2, 0x82]),
            Just(vec![0xf0, 0x9f, 0x98]),
            Just(vec![0x80]),
            Just(vec![0xed, 0xa0, 0x80]),
            Just(vec![0xc0, 0xaf]),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2048,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// `find_lf` is the plain search for the first LF, on any bytes.
        #[test]
        fn find_lf_is_the_first_lf_on_any_bytes(hay in lf_hay()) {
            proptest::prop_assert_eq!(find_lf(&hay), hay.iter().position(|&b| b == b'\n'));
        }

        /// `push_lossy` appends what `String::from_utf8_lossy` makes of any bytes.
        #[test]
        fn push_lossy_is_from_utf8_lossy_on_any_bytes(bytes in text_bytes()) {
            let mut out = String::from("|");
            push_lossy(&mut out, &bytes);
            proptest::prop_assert_eq!(out, format!("|{}", String::from_utf8_lossy(&bytes)));
        }

        /// The room a large line reserves is what `push_lossy` appends, exactly; the fallible
        /// decoders append what it does (and `try_lossy_string` makes the same string).
        #[test]
        fn fallible_decoding_reserves_what_push_lossy_appends(bytes in text_bytes()) {
            let lossy = String::from_utf8_lossy(&bytes);
            proptest::prop_assert_eq!(lossy_len(&bytes), lossy.len());
            let mut out = String::from("|");
            proptest::prop_assert!(try_push_lossy(&mut out, &bytes));
            proptest::prop_assert_eq!(&out[1..], &lossy[..]);
            let line = try_lossy_string(&bytes);
            proptest::prop_assert_eq!(line.as_deref(), Some(&lossy[..]));
        }
    }

    /// A large line (past `LARGE_LINE`) decodes through the reserved room: the same text, in
    /// one allocation of exactly its length.
    #[test]
    fn a_large_line_decodes_into_room_reserved_for_it() {
        let mut bytes = b"\xff".repeat(LARGE_LINE / 2);
        bytes.extend_from_slice("caf\u{e9}".repeat(LARGE_LINE / 4).as_bytes());
        bytes.push(0xc3);
        let lossy = String::from_utf8_lossy(&bytes);
        let line = try_lossy_string(&bytes).expect("room for the line");
        assert_eq!(line, lossy);
        assert_eq!(line.capacity(), lossy.len());
        let mut out = String::from("kept ");
        assert!(try_push_lossy(&mut out, &bytes));
        assert_eq!(&out[5..], &lossy[..]);
    }
}
