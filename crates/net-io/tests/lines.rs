//! Line reading per SPEC §2.1: delimiters per `LineEnding`, the byte limit, EOF rules, a CR
//! that ends the buffer, and UTF-8 decoding across chunk boundaries.

mod support;

use net_io::{ByteChannel, ByteReadChannel, Error, LineEnding};
use support::{ChunkedReader, guard, poll_once};

/// Which public line-reading method a check goes through.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `read_line(limit, ending)`.
    Line(LineEnding),
    /// `read_utf8_line(limit)`.
    Utf8,
    /// `read_line_to(&mut String, limit, ending)`, checked to append exactly what it reports.
    LineTo(LineEnding),
}

const DEFAULT_VIAS: [Via; 2] = [
    Via::Line(LineEnding::Default),
    Via::LineTo(LineEnding::Default),
];
const LENIENT_VIAS: [Via; 3] = [
    Via::Line(LineEnding::Lenient),
    Via::Utf8,
    Via::LineTo(LineEnding::Lenient),
];
const ALL_VIAS: [Via; 5] = [
    Via::Line(LineEnding::Default),
    Via::LineTo(LineEnding::Default),
    Via::Line(LineEnding::Lenient),
    Via::Utf8,
    Via::LineTo(LineEnding::Lenient),
];

impl Via {
    /// Reads one line through this method.
    async fn read(self, ch: &mut ByteReadChannel, limit: usize) -> net_io::Result<Option<String>> {
        match self {
            Via::Line(ending) => guard(ch.read_line(limit, ending)).await,
            Via::Utf8 => guard(ch.read_utf8_line(limit)).await,
            Via::LineTo(ending) => {
                const PREFIX: &str = "prefix\u{e9}";
                let mut out = String::from(PREFIX);
                let r = guard(ch.read_line_to(&mut out, limit, ending)).await;
                assert!(
                    out.starts_with(PREFIX),
                    "read_line_to clobbered the buffer: {out:?}"
                );
                match r {
                    Ok(Some(n)) => {
                        assert_eq!(
                            n,
                            out.len() - PREFIX.len(),
                            "read_line_to returned {n} but appended {:?}",
                            &out[PREFIX.len()..]
                        );
                        Ok(Some(out[PREFIX.len()..].to_owned()))
                    }
                    Ok(None) => {
                        assert_eq!(out, PREFIX, "read_line_to appended at end of input");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Reads lines until `None`, panicking on an error or on an endless stream of lines.
    async fn collect(self, ch: &mut ByteReadChannel, limit: usize) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..100_000 {
            match self.read(ch, limit).await {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => return lines,
                Err(e) => panic!("{self:?}: unexpected error {e:?} after lines {lines:?}"),
            }
        }
        panic!("{self:?}: 100000 lines and no end of input (endless lines?)")
    }
}

/// All lines of `input` (held in memory) read through `via` with a generous limit.
async fn lines_of(input: &[u8], via: Via) -> Vec<String> {
    let mut ch = ByteReadChannel::from_bytes(input.to_vec());
    via.collect(&mut ch, 1 << 20).await
}

/// All lines of `input` delivered in `chunks` (with a pause before each) read through `via`.
async fn lines_of_chunks(chunks: &[&[u8]], via: Via) -> Vec<String> {
    let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses(chunks.iter()));
    via.collect(&mut ch, 1 << 20).await
}

/// Asserts that the next read through `via` fails with `TooLongLine { limit }`.
async fn assert_too_long(ch: &mut ByteReadChannel, via: Via, limit: usize, what: &str) {
    match via.read(ch, limit).await {
        Err(Error::TooLongLine { limit: l }) => {
            assert_eq!(
                l, limit,
                "{via:?} {what}: TooLongLine carries the wrong limit"
            )
        }
        other => panic!("{via:?} {what}: expected TooLongLine {{ limit: {limit} }}, got {other:?}"),
    }
}

/// Lenient reads (read_line, read_utf8_line, read_line_to) end lines at LF, CRLF and lone CR.
#[tokio::test]
async fn lenient_ends_lines_at_lf_crlf_and_lone_cr() {
    for via in LENIENT_VIAS {
        assert_eq!(
            lines_of(b"a\nb\r\nc\rd", via).await,
            ["a", "b", "c", "d"],
            "{via:?}"
        );
    }
}

/// LineEnding::Default ends lines at LF and CRLF only; a lone CR is content.
#[tokio::test]
async fn default_ends_lines_at_lf_and_crlf_and_keeps_lone_cr() {
    for via in DEFAULT_VIAS {
        assert_eq!(
            lines_of(b"a\nb\r\nc\rd\n\re\r\n", via).await,
            ["a", "b", "c\rd", "\re"],
            "{via:?}"
        );
    }
}

/// A CR right before EOF is content in Default mode and a delimiter in Lenient mode.
#[tokio::test]
async fn trailing_cr_at_eof_is_content_in_default_and_delimiter_in_lenient() {
    for via in DEFAULT_VIAS {
        assert_eq!(lines_of(b"abc\r", via).await, ["abc\r"], "{via:?}");
    }
    for via in LENIENT_VIAS {
        assert_eq!(lines_of(b"abc\r", via).await, ["abc"], "{via:?}");
    }
}

/// A lone CR then CRLF is two delimiters in Lenient mode and content-then-CRLF in Default.
#[tokio::test]
async fn lone_cr_followed_by_crlf() {
    for via in LENIENT_VIAS {
        assert_eq!(lines_of(b"a\r\r\nb", via).await, ["a", "", "b"], "{via:?}");
        assert_eq!(lines_of(b"\r\r", via).await, ["", ""], "{via:?}");
        assert_eq!(lines_of(b"\n\r", via).await, ["", ""], "{via:?}");
        assert_eq!(lines_of(b"\r\n\r\n", via).await, ["", ""], "{via:?}");
        assert_eq!(lines_of(b"\n\r\n\r", via).await, ["", "", ""], "{via:?}");
    }
    for via in DEFAULT_VIAS {
        assert_eq!(lines_of(b"a\r\r\nb", via).await, ["a\r", "b"], "{via:?}");
        assert_eq!(lines_of(b"\r\r", via).await, ["\r\r"], "{via:?}");
        assert_eq!(lines_of(b"\n\r", via).await, ["", "\r"], "{via:?}");
        assert_eq!(lines_of(b"\r\n\r\n", via).await, ["", ""], "{via:?}");
    }
}

/// KTOR-2868: a trailing lone CR yields one line, then None forever (no endless empty lines).
#[tokio::test]
async fn lone_cr_at_end_gives_one_line_then_none_repeatedly() {
    for via in ALL_VIAS {
        let mut ch = ByteReadChannel::from_bytes(&b"Hello\r"[..]);
        let first = via.read(&mut ch, 100).await.unwrap();
        match via {
            Via::Line(LineEnding::Default) | Via::LineTo(LineEnding::Default) => {
                assert_eq!(first.as_deref(), Some("Hello\r"), "{via:?}")
            }
            _ => assert_eq!(first.as_deref(), Some("Hello"), "{via:?}"),
        }
        for _ in 0..5 {
            assert_eq!(via.read(&mut ch, 100).await.unwrap(), None, "{via:?}");
        }
    }
}

/// An empty line is Some(""), distinct from the end of input.
#[tokio::test]
async fn empty_line_is_some_empty_string() {
    for via in ALL_VIAS {
        let mut ch = ByteReadChannel::from_bytes(&b"\n\r\nx\n"[..]);
        assert_eq!(
            via.read(&mut ch, 10).await.unwrap().as_deref(),
            Some(""),
            "{via:?}"
        );
        assert_eq!(
            via.read(&mut ch, 10).await.unwrap().as_deref(),
            Some(""),
            "{via:?}"
        );
        assert_eq!(
            via.read(&mut ch, 10).await.unwrap().as_deref(),
            Some("x"),
            "{via:?}"
        );
        assert_eq!(via.read(&mut ch, 10).await.unwrap(), None, "{via:?}");
    }
}

/// None comes only when the input is exhausted before a line's first byte, and keeps coming.
#[tokio::test]
async fn none_only_when_exhausted() {
    for via in ALL_VIAS {
        let mut empty = ByteReadChannel::from_bytes(&b""[..]);
        assert_eq!(via.read(&mut empty, 10).await.unwrap(), None, "{via:?}");
        assert_eq!(via.read(&mut empty, 10).await.unwrap(), None, "{via:?}");

        // A reader that pauses before reporting EOF: still None, not an empty line.
        let mut paused = ByteReadChannel::new(ChunkedReader::new([
            support::Step::Pending,
            support::Step::Pending,
        ]));
        assert_eq!(via.read(&mut paused, 10).await.unwrap(), None, "{via:?}");

        // A writer dropped without writing is EOF too.
        let (w, mut r) = ByteChannel::new(true);
        drop(w);
        assert_eq!(via.read(&mut r, 10).await.unwrap(), None, "{via:?}");
    }
}

/// A partial last line without delimiter is returned at EOF by the non-strict reads.
#[tokio::test]
async fn partial_last_line_at_eof_is_returned() {
    for via in ALL_VIAS {
        assert_eq!(lines_of(b"one\ntwo", via).await, ["one", "two"], "{via:?}");
        assert_eq!(
            lines_of_chunks(&[b"on", b"e\ntw", b"o"], via).await,
            ["one", "two"],
            "{via:?}"
        );
    }
}

/// read_line_strict: whole lines, None when exhausted, UnexpectedEof for a partial last line.
#[tokio::test]
async fn strict_rejects_partial_line_at_eof() {
    for ending in [LineEnding::Default, LineEnding::Lenient] {
        let mut ch = ByteReadChannel::from_bytes(&b"one\r\ntwo"[..]);
        assert_eq!(
            guard(ch.read_line_strict(10, ending))
                .await
                .unwrap()
                .as_deref(),
            Some("one")
        );
        let r = guard(ch.read_line_strict(10, ending)).await;
        assert!(
            matches!(r, Err(Error::UnexpectedEof { .. })),
            "{ending:?}: expected UnexpectedEof, got {r:?}"
        );

        let mut ch = ByteReadChannel::from_bytes(&b"one\n"[..]);
        assert_eq!(
            guard(ch.read_line_strict(10, ending))
                .await
                .unwrap()
                .as_deref(),
            Some("one")
        );
        assert_eq!(guard(ch.read_line_strict(10, ending)).await.unwrap(), None);

        let mut ch = ByteReadChannel::from_bytes(&b""[..]);
        assert_eq!(guard(ch.read_line_strict(10, ending)).await.unwrap(), None);
    }

    let mut ch = ByteReadChannel::from_bytes(&b"abc\r"[..]);
    assert_eq!(
        guard(ch.read_line_strict(10, LineEnding::Lenient))
            .await
            .unwrap()
            .as_deref(),
        Some("abc")
    );
    assert_eq!(
        guard(ch.read_line_strict(10, LineEnding::Lenient))
            .await
            .unwrap(),
        None
    );

    let mut ch = ByteReadChannel::from_bytes(&b"abc\r"[..]);
    let r = guard(ch.read_line_strict(10, LineEnding::Default)).await;
    assert!(
        matches!(r, Err(Error::UnexpectedEof { .. })),
        "Default, \"abc\\r\" at EOF: expected UnexpectedEof, got {r:?}"
    );
}

/// A CR ending a chunk waits for the next chunk: CRLF split across reads is one delimiter.
#[tokio::test]
async fn cr_at_end_of_chunk_waits_for_next_byte() {
    for via in ALL_VIAS {
        assert_eq!(
            lines_of_chunks(&[b"abc\r", b"\ndef\r", b"\n"], via).await,
            ["abc", "def"],
            "{via:?}"
        );
        assert_eq!(
            lines_of_chunks(&[b"abc\r", b"\n", b"\r", b"\n"], via).await,
            ["abc", ""],
            "{via:?}"
        );
    }
    for via in LENIENT_VIAS {
        assert_eq!(
            lines_of_chunks(&[b"abc\r", b"x\n"], via).await,
            ["abc", "x"],
            "{via:?}"
        );
        assert_eq!(lines_of_chunks(&[b"abc\r"], via).await, ["abc"], "{via:?}");
        assert_eq!(
            lines_of_chunks(&[b"\r", b"\r", b"\r"], via).await,
            ["", "", ""],
            "{via:?}"
        );
    }
    for via in DEFAULT_VIAS {
        assert_eq!(
            lines_of_chunks(&[b"abc\r", b"x\n"], via).await,
            ["abc\rx"],
            "{via:?}"
        );
        assert_eq!(
            lines_of_chunks(&[b"abc\r"], via).await,
            ["abc\r"],
            "{via:?}"
        );
    }
}

/// After "abc\r" the read stays pending; "\n" then gives exactly one line, EOF then None.
#[tokio::test]
async fn cr_as_last_buffered_byte_is_pending_until_next_byte() {
    for ending in [LineEnding::Default, LineEnding::Lenient] {
        let (mut w, mut r) = ByteChannel::new(true);
        w.write_fully(b"abc\r").await.unwrap();
        assert!(
            poll_once(r.read_line(100, ending)).await.is_none(),
            "{ending:?}: read_line completed before the byte after CR arrived"
        );
        w.write_fully(b"\n").await.unwrap();
        assert_eq!(
            guard(r.read_line(100, ending)).await.unwrap().as_deref(),
            Some("abc"),
            "{ending:?}"
        );
        w.flush_and_close().await.unwrap();
        assert_eq!(
            guard(r.read_line(100, ending)).await.unwrap(),
            None,
            "{ending:?}"
        );
    }
}

/// "abc\r" then "\n" is one line; in Lenient mode "abc\r" then "x" is "abc" and "x".
#[tokio::test]
async fn cr_then_later_write_through_byte_channel() {
    for via in ALL_VIAS {
        let (mut w, mut r) = ByteChannel::new(true);
        let writer = tokio::spawn(async move {
            w.write_fully(b"abc\r").await.unwrap();
            tokio::task::yield_now().await;
            w.write_fully(b"\n").await.unwrap();
            w.flush_and_close().await.unwrap();
        });
        assert_eq!(via.collect(&mut r, 100).await, ["abc"], "{via:?}");
        writer.await.unwrap();
    }
    for via in LENIENT_VIAS {
        let (mut w, mut r) = ByteChannel::new(true);
        let writer = tokio::spawn(async move {
            w.write_fully(b"abc\r").await.unwrap();
            tokio::task::yield_now().await;
            w.write_fully(b"x").await.unwrap();
            w.flush_and_close().await.unwrap();
        });
        assert_eq!(via.collect(&mut r, 100).await, ["abc", "x"], "{via:?}");
        writer.await.unwrap();
    }
}

/// Exactly `limit` content bytes before LF, CRLF, lenient CR or EOF are accepted.
#[tokio::test]
async fn exact_limit_is_accepted() {
    for via in ALL_VIAS {
        for input in [&b"abc\n"[..], b"abc\r\n", b"abc"] {
            let mut ch = ByteReadChannel::from_bytes(input);
            assert_eq!(
                via.read(&mut ch, 3).await.unwrap().as_deref(),
                Some("abc"),
                "{via:?} {input:?}"
            );
            assert_eq!(
                via.read(&mut ch, 3).await.unwrap(),
                None,
                "{via:?} {input:?}"
            );
        }
        let mut ch = ByteReadChannel::from_bytes(&b"abc\n"[..]);
        assert_eq!(
            via.read(&mut ch, usize::MAX).await.unwrap().as_deref(),
            Some("abc"),
            "{via:?}"
        );
    }
    for via in LENIENT_VIAS {
        let mut ch = ByteReadChannel::from_bytes(&b"abc\rdef\r"[..]);
        assert_eq!(
            via.read(&mut ch, 3).await.unwrap().as_deref(),
            Some("abc"),
            "{via:?}"
        );
        assert_eq!(
            via.read(&mut ch, 3).await.unwrap().as_deref(),
            Some("def"),
            "{via:?}"
        );
        assert_eq!(via.read(&mut ch, 3).await.unwrap(), None, "{via:?}");
    }
    // Default: a lone CR is content and counts toward the limit.
    for via in DEFAULT_VIAS {
        let mut ch = ByteReadChannel::from_bytes(&b"ab\rc\nabc\r"[..]);
        assert_eq!(
            via.read(&mut ch, 4).await.unwrap().as_deref(),
            Some("ab\rc"),
            "{via:?}"
        );
        assert_eq!(
            via.read(&mut ch, 4).await.unwrap().as_deref(),
            Some("abc\r"),
            "{via:?}"
        );
        assert_eq!(via.read(&mut ch, 4).await.unwrap(), None, "{via:?}");
    }
}

/// One content byte past the limit is TooLongLine { limit } for every ending and EOF.
#[tokio::test]
async fn one_byte_past_limit_is_too_long_line() {
    for via in ALL_VIAS {
        for input in [&b"abcd\n"[..], b"abcd\r\n", b"abcd"] {
            let mut ch = ByteReadChannel::from_bytes(input);
            assert_too_long(&mut ch, via, 3, &format!("{input:?}")).await;
        }
    }
    for via in LENIENT_VIAS {
        for input in [&b"abcd\r"[..], b"abcd\rx"] {
            let mut ch = ByteReadChannel::from_bytes(input);
            assert_too_long(&mut ch, via, 3, &format!("{input:?}")).await;
        }
    }
    for via in DEFAULT_VIAS {
        // The lone CR is the fourth content byte.
        for input in [&b"ab\rc\n"[..], b"abc\r", b"abc\rx\n"] {
            let mut ch = ByteReadChannel::from_bytes(input);
            assert_too_long(&mut ch, via, 3, &format!("{input:?}")).await;
        }
    }
    for ending in [LineEnding::Default, LineEnding::Lenient] {
        let mut ch = ByteReadChannel::from_bytes(&b"abcd\n"[..]);
        let r = guard(ch.read_line_strict(3, ending)).await;
        assert!(
            matches!(r, Err(Error::TooLongLine { limit: 3 })),
            "read_line_strict {ending:?}: expected TooLongLine {{ limit: 3 }}, got {r:?}"
        );
    }
}

/// A zero limit accepts only empty lines: "\n" is Some(""), "a\n" is TooLongLine.
#[tokio::test]
async fn zero_limit() {
    for via in ALL_VIAS {
        for input in [&b"\n"[..], b"\r\n"] {
            let mut ch = ByteReadChannel::from_bytes(input);
            assert_eq!(
                via.read(&mut ch, 0).await.unwrap().as_deref(),
                Some(""),
                "{via:?}"
            );
            assert_eq!(via.read(&mut ch, 0).await.unwrap(), None, "{via:?}");
        }
        for input in [&b"a\n"[..], b"a"] {
            let mut ch = ByteReadChannel::from_bytes(input);
            assert_too_long(&mut ch, via, 0, &format!("{input:?}")).await;
        }
    }
    for via in LENIENT_VIAS {
        let mut ch = ByteReadChannel::from_bytes(&b"\r"[..]);
        assert_eq!(
            via.read(&mut ch, 0).await.unwrap().as_deref(),
            Some(""),
            "{via:?}"
        );
        assert_eq!(via.read(&mut ch, 0).await.unwrap(), None, "{via:?}");
    }
    for via in DEFAULT_VIAS {
        let mut ch = ByteReadChannel::from_bytes(&b"\r"[..]);
        assert_too_long(&mut ch, via, 0, "lone CR at EOF").await;
    }
}

/// TooLongLine comes as soon as limit + 1 content bytes arrived, without delimiter or EOF.
#[tokio::test]
async fn too_long_is_reported_without_waiting_for_delimiter() {
    for via in ALL_VIAS {
        let (mut w, mut r) = ByteChannel::new(true);
        w.write_fully(b"abcd").await.unwrap();
        assert_too_long(&mut r, via, 3, "abcd, channel still open").await;
        drop(w);
    }
    for ending in [LineEnding::Default, LineEnding::Lenient] {
        let (mut w, mut r) = ByteChannel::new(true);
        w.write_fully(b"abc\r").await.unwrap();
        assert!(
            poll_once(r.read_line(3, ending)).await.is_none(),
            "{ending:?}: \"abc\\r\" with limit 3 decided before the byte after CR"
        );
        w.write_fully(b"x").await.unwrap();
        let r1 = guard(r.read_line(3, ending)).await;
        match ending {
            LineEnding::Lenient => assert_eq!(r1.unwrap().as_deref(), Some("abc")),
            _ => assert!(
                matches!(r1, Err(Error::TooLongLine { limit: 3 })),
                "Default: \"abc\\rx\" with limit 3: expected TooLongLine, got {r1:?}"
            ),
        }
    }
}

/// After TooLongLine the next line read skips the rest of the over-long line through its
/// delimiter and returns the following line (SPEC §4.2, as tokio-util's LinesCodec).
#[tokio::test]
async fn too_long_line_is_skipped_by_the_next_line_read() {
    for via in ALL_VIAS {
        for input in [&b"abcdef\nxy\n"[..], b"abcdef\r\nxy\n"] {
            let mut ch = ByteReadChannel::from_bytes(input);
            assert_too_long(&mut ch, via, 3, "abcdef").await;
            assert_eq!(
                via.read(&mut ch, 3).await.unwrap().as_deref(),
                Some("xy"),
                "{via:?} {input:?}"
            );
            assert_eq!(via.read(&mut ch, 3).await.unwrap(), None, "{via:?}");
        }
        // The delimiter of the over-long line arrives later, one byte at a time.
        let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(b"abcdefgh\r\nxy\n"));
        assert_too_long(&mut ch, via, 3, "abcdefgh").await;
        assert_eq!(
            via.read(&mut ch, 3).await.unwrap().as_deref(),
            Some("xy"),
            "{via:?} bytewise"
        );
        // An over-long last line without a delimiter is skipped to the end of the stream.
        let mut ch = ByteReadChannel::from_bytes(&b"ok\nabcdef"[..]);
        assert_eq!(via.read(&mut ch, 3).await.unwrap().as_deref(), Some("ok"));
        assert_too_long(&mut ch, via, 3, "abcdef at EOF").await;
        assert_eq!(via.read(&mut ch, 3).await.unwrap(), None, "{via:?}");
    }
    // Lenient: a lone CR ends the over-long line; a CRLF split after the CR is one delimiter.
    for ending in [LineEnding::Lenient] {
        let mut ch = ByteReadChannel::from_bytes(&b"abcdef\rxy\n"[..]);
        assert!(matches!(
            ch.read_line(3, ending).await,
            Err(Error::TooLongLine { limit: 3 })
        ));
        assert_eq!(
            ch.read_line(3, ending).await.unwrap().as_deref(),
            Some("xy")
        );
        let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses([
            &b"abcdef\r"[..],
            b"\nxy\n",
        ]));
        assert!(matches!(
            guard(ch.read_line(3, ending)).await,
            Err(Error::TooLongLine { limit: 3 })
        ));
        assert_eq!(
            guard(ch.read_line(3, ending)).await.unwrap().as_deref(),
            Some("xy")
        );
        assert_eq!(guard(ch.read_line(3, ending)).await.unwrap(), None);
    }
}

/// A read other than a line read after TooLongLine sees the over-long line's bytes as they
/// are, and the skip is dropped.
#[tokio::test]
async fn other_reads_after_too_long_line_see_its_bytes() {
    let mut ch = ByteReadChannel::from_bytes(&b"abcdef\nxy\n"[..]);
    assert!(matches!(
        ch.read_line(3, LineEnding::Default).await,
        Err(Error::TooLongLine { limit: 3 })
    ));
    assert_eq!(ch.read_u8().await.unwrap(), b'a');
    assert_eq!(
        ch.read_line(10, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("bcdef")
    );
    assert_eq!(
        ch.read_line(10, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("xy")
    );
}

/// 2-, 3- and 4-byte UTF-8 split across reads at every byte boundary decodes correctly.
#[tokio::test]
async fn multibyte_utf8_split_at_every_boundary() {
    let text = "a\u{e9}\u{20ac}\u{1f600}z\n\u{3c0}\u{1f600}\r\n\u{e9}";
    let bytes = text.as_bytes();
    let expected = ["a\u{e9}\u{20ac}\u{1f600}z", "\u{3c0}\u{1f600}", "\u{e9}"];
    for via in ALL_VIAS {
        for split in 1..bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(
                lines_of_chunks(&[a, b], via).await,
                expected,
                "{via:?} split {split}"
            );
        }
        let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(bytes));
        assert_eq!(
            via.collect(&mut ch, 100).await,
            expected,
            "{via:?} bytewise"
        );
    }
}

/// Invalid or truncated UTF-8 becomes U+FFFD exactly as String::from_utf8_lossy, split or not.
#[tokio::test]
async fn invalid_utf8_is_replaced_like_from_utf8_lossy() {
    let cases: [&[u8]; 12] = [
        b"a\xffb",
        b"\xe2\x82",
        b"\xe2\x82z",
        b"\xf0\x9f\x98",
        b"\xf0\x9f\x98x\xf0",
        b"\xc3\xc3\xa9",
        b"\xc3",
        b"\x80\x80\x80",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82\xac\xe2",
    ];
    for via in ALL_VIAS {
        for content in cases {
            let expected = String::from_utf8_lossy(content).into_owned();
            for terminated in [true, false] {
                let mut input = content.to_vec();
                if terminated {
                    input.extend_from_slice(b"\r\n");
                }
                assert_eq!(
                    lines_of(&input, via).await,
                    [expected.as_str()],
                    "{via:?} {input:?}"
                );
                for split in 1..input.len() {
                    let (a, b) = input.split_at(split);
                    assert_eq!(
                        lines_of_chunks(&[a, b], via).await,
                        [expected.as_str()],
                        "{via:?} {input:?} split {split}"
                    );
                }
            }
        }
    }
}

/// The limit counts raw bytes received, before UTF-8 decoding.
#[tokio::test]
async fn limit_counts_raw_bytes() {
    let cases: [(&[u8], usize, &str); 4] = [
        ("\u{e9}\n".as_bytes(), 1, "\u{e9}"),
        ("\u{1f600}\n".as_bytes(), 3, "\u{1f600}"),
        (b"\xff\xfe\xff\n", 2, "\u{fffd}\u{fffd}\u{fffd}"),
        (b"\xe2\x82\n", 1, "\u{fffd}"),
    ];
    for via in ALL_VIAS {
        for (input, too_small, decoded) in cases {
            let mut ch = ByteReadChannel::from_bytes(input.to_vec());
            assert_too_long(&mut ch, via, too_small, decoded).await;
            let mut ch = ByteReadChannel::from_bytes(input.to_vec());
            assert_eq!(
                via.read(&mut ch, too_small + 1).await.unwrap().as_deref(),
                Some(decoded),
                "{via:?}"
            );
        }
    }
}

/// read_line_to appends to the String, returns the bytes appended, and None leaves it untouched.
#[tokio::test]
async fn read_line_to_appends_and_returns_byte_count() {
    for ending in [LineEnding::Default, LineEnding::Lenient] {
        let mut input = "abc\n\u{3c0}\r\n\n".as_bytes().to_vec();
        input.extend_from_slice(b"\xff\n");
        let mut ch = ByteReadChannel::from_bytes(input);
        let mut out = String::from("prefix:");
        assert_eq!(
            guard(ch.read_line_to(&mut out, 10, ending)).await.unwrap(),
            Some(3)
        );
        assert_eq!(out, "prefix:abc");
        assert_eq!(
            guard(ch.read_line_to(&mut out, 10, ending)).await.unwrap(),
            Some(2)
        );
        assert_eq!(out, "prefix:abc\u{3c0}");
        assert_eq!(
            guard(ch.read_line_to(&mut out, 10, ending)).await.unwrap(),
            Some(0)
        );
        assert_eq!(out, "prefix:abc\u{3c0}");
        out.clear();
        assert_eq!(
            guard(ch.read_line_to(&mut out, 10, ending)).await.unwrap(),
            Some(3)
        );
        assert_eq!(out, "\u{fffd}");
        assert_eq!(
            guard(ch.read_line_to(&mut out, 10, ending)).await.unwrap(),
            None
        );
        assert_eq!(out, "\u{fffd}");
    }
}

/// A line far longer than the pipe and any internal buffer is read whole when within the limit.
#[tokio::test]
async fn line_longer_than_buffers_within_limit() {
    let content: String = (0..200_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    for via in ALL_VIAS {
        let (mut w, mut r) = ByteChannel::new(false);
        let payload = format!("{content}\r\nnext\n");
        let writer = tokio::spawn(async move {
            w.write_string_utf8(&payload).await.unwrap();
            w.flush_and_close().await.unwrap();
        });
        let line = via.read(&mut r, content.len()).await.unwrap().unwrap();
        assert!(
            line == content,
            "{via:?}: long line corrupted (len {})",
            line.len()
        );
        assert_eq!(via.read(&mut r, 10).await.unwrap().as_deref(), Some("next"));
        guard(writer).await.unwrap();

        let mut ch = ByteReadChannel::from_bytes(format!("{content}\n"));
        assert_too_long(&mut ch, via, content.len() - 1, "200 000-byte line").await;
    }
}

/// Many lines of varied length and ending, written in odd-sized pieces through a `ByteChannel`,
/// come out exactly as written (lines straddle every internal buffer boundary).
#[tokio::test]
async fn many_lines_through_byte_channel() {
    let endings = ["\n", "\r\n"];
    let lines: Vec<String> = (0..20_000usize)
        .map(|i| {
            let len = i * 37 % 301;
            (0..len)
                .map(|j| if (i + j) % 97 == 0 { '\u{e9}' } else { 'x' })
                .collect()
        })
        .collect();
    let mut data = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        data.extend_from_slice(l.as_bytes());
        data.extend_from_slice(endings[i % 2].as_bytes());
    }
    for via in ALL_VIAS {
        let (mut w, mut r) = ByteChannel::new(false);
        let payload = data.clone();
        let writer = tokio::spawn(async move {
            let mut pos = 0;
            let mut size = 1;
            while pos < payload.len() {
                let end = (pos + size).min(payload.len());
                w.write_fully(&payload[pos..end]).await.unwrap();
                pos = end;
                size = size * 7 % 5003 + 1;
            }
            w.flush_and_close().await.unwrap();
        });
        let got = via.collect(&mut r, 1000).await;
        assert_eq!(got.len(), lines.len(), "{via:?}");
        for (i, (g, e)) in got.iter().zip(&lines).enumerate() {
            assert_eq!(g, e, "{via:?}: line {i}");
        }
        guard(writer).await.unwrap();
    }
}

/// Looking ahead (`await_content`, `peek`) after `TooLongLine` does not cancel the skip: the
/// next line read still skips the rest of the over-long line.
#[tokio::test]
async fn look_ahead_keeps_the_skip_of_an_over_long_line() {
    let mut input = ByteReadChannel::from_bytes("much too long\nnext\n");
    assert!(matches!(
        input.read_line(4, LineEnding::Default).await,
        Err(Error::TooLongLine { limit: 4 })
    ));
    assert!(input.await_content(1).await.unwrap());
    assert!(input.peek(1).await.unwrap().is_some());
    assert_eq!(
        input
            .read_line(4, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("next")
    );
}

/// A read of no bytes (`read_bytes(0)`, `discard(0)`, `discard_exact(0)`, `read_remaining(0)`,
/// `skip_if_found(b"")`, `copy_to(.., 0)`, `read_fully(&mut [])`) takes nothing, so it leaves
/// the skip of an over-long line due, as a read into an empty buffer does: the next line read
/// skips the rest of the over-long line, whose bytes are not read as a line.
#[tokio::test]
async fn a_zero_length_read_keeps_the_skip_of_an_over_long_line() {
    for read in 0..7 {
        let mut input = ByteReadChannel::from_bytes("much too long\nnext\n");
        assert!(matches!(
            input.read_line(4, LineEnding::Default).await,
            Err(Error::TooLongLine { limit: 4 })
        ));
        match read {
            0 => assert!(input.read_bytes(0).await.unwrap().is_empty()),
            1 => assert_eq!(input.discard(0).await.unwrap(), 0),
            2 => input.discard_exact(0).await.unwrap(),
            3 => assert!(input.read_remaining(0).await.unwrap().is_empty()),
            4 => assert!(input.skip_if_found(b"").await.unwrap()),
            5 => {
                let (mut sink, _peer) = ByteChannel::new(false);
                assert_eq!(input.copy_to(&mut sink, 0).await.unwrap(), 0);
            }
            _ => input.read_fully(&mut []).await.unwrap(),
        }
        assert_eq!(input.total_bytes_read(), 0, "read {read}");
        assert_eq!(
            input
                .read_line(64, LineEnding::Default)
                .await
                .unwrap()
                .as_deref(),
            Some("next"),
            "read {read}"
        );
    }
}

/// `skip_if_found` that finds nothing took nothing: it only looked, as `peek` does, and leaves
/// the skip of an over-long line due. Before the fix it dropped the skip whatever it found, so
/// a loop that checks for an optional prefix before each line read (and answers "line too
/// long" and goes on) read the same over-long line again and again: one hostile line, and the
/// loop never ended, nor yielded (each round was served from the buffer).
#[tokio::test]
async fn skip_if_found_that_finds_nothing_keeps_the_skip_of_an_over_long_line() {
    let mut input = ByteReadChannel::from_bytes("much too long\nnext\n");
    assert!(matches!(
        input.read_line(4, LineEnding::Default).await,
        Err(Error::TooLongLine { limit: 4 })
    ));
    assert!(!input.skip_if_found(b"PING").await.unwrap());
    assert_eq!(
        input
            .read_line(64, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("next")
    );

    // The loop: an optional prefix, then a line; an over-long line is answered and skipped.
    let (mut peer, mut input) = ByteChannel::new(false);
    peer.write_fully(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nQUIT\r\n")
        .await
        .unwrap();
    peer.flush().await.unwrap();
    let mut too_long = 0;
    let served = poll_once(async {
        for _ in 0..100 {
            let _prefix = input.skip_if_found(b"PROXY ").await.unwrap();
            match input.read_line(16, LineEnding::Default).await {
                Err(Error::TooLongLine { .. }) => too_long += 1,
                Ok(line) => return line,
                Err(e) => panic!("{e:?}"),
            }
        }
        None
    })
    .await;
    assert_eq!(
        served,
        Some(Some("QUIT".to_owned())),
        "{too_long} TooLongLine"
    );
    assert_eq!(too_long, 1);
}
