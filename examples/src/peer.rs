//! What the example clients print of what a server sent, shown as [`net_io::PeerText`] shows
//! peer text, so that a hostile or broken server cannot forge what the user's terminal shows:
//! an escape sequence (`ESC [2J` clears the screen, OSC 52 writes the clipboard), a bare CR or a
//! backspace (which write over what was printed), a bidi control (which reorders what follows
//! it) or a line or paragraph separator is printed escaped (`\u{1b}[2J`, `\r`, `\u{202e}`,
//! `\u{2028}`). A tab stays a tab: it cannot write over anything, and `chat-server` relays it
//! as ordinary text. Everything else, letters of any script included, prints as it came.

use std::fmt::{self, Write};

use net_io::PeerText;

/// One line from a peer (without its line ending), as [`PeerText`] shows it but with its tabs
/// kept.
///
/// # Examples
///
/// ```
/// use examples::peer::PeerLine;
///
/// assert_eq!(PeerLine("Hello, Zo\u{eb}!").to_string(), "Hello, Zo\u{eb}!");
/// assert_eq!(PeerLine("a\tb").to_string(), "a\tb");
/// assert_eq!(
///     PeerLine("\u{1b}[2Jx\ry\u{202e}z").to_string(),
///     "\\u{1b}[2Jx\\ry\\u{202e}z"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLine<'a>(pub &'a str);

impl fmt::Display for PeerLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.split('\t').enumerate() {
            if i > 0 {
                f.write_char('\t')?;
            }
            write!(f, "{}", PeerText(part))?;
        }
        Ok(())
    }
}

/// A stream of bytes from a peer (an HTTP response) shown as it comes, piece by piece, as
/// [`PeerLine`] shows a line, except that its line endings stay: a LF, and a CR right before a
/// LF (a CRLF). A bare CR is escaped (`\r`). Bytes that are not UTF-8 are shown as U+FFFD. A
/// character or a CRLF cut between two pieces is shown whole: what could still become one waits
/// for the next piece (at most a CR and three bytes).
///
/// # Examples
///
/// ```
/// use examples::peer::PeerBytes;
///
/// let mut shown = String::new();
/// let mut stream = PeerBytes::default();
/// stream.push(b"HTTP/1.1 200 OK\r", &mut shown);
/// stream.push(b"\nx: \x1b[2J\rcaf\xc3", &mut shown);
/// stream.push(b"\xa9 \xff\r", &mut shown);
/// stream.finish(&mut shown);
/// assert_eq!(shown, "HTTP/1.1 200 OK\r\nx: \\u{1b}[2J\\rcaf\u{e9} \u{fffd}\\r");
/// ```
#[derive(Clone, Debug, Default)]
pub struct PeerBytes {
    /// What waits for the next piece: a CR, the start of a character, or both.
    pending: Vec<u8>,
}

impl PeerBytes {
    /// Appends to `out` what `bytes`, coming after the pieces pushed so far, show.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(bytes);
        let mut rest = &data[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    if show(text, true, out) {
                        self.pending.push(b'\r');
                    }
                    return;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    let text = std::str::from_utf8(valid).unwrap_or_default();
                    match e.error_len() {
                        Some(bad) => {
                            show(text, false, out);
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // The start of a character the next piece may complete.
                        None => {
                            show(text, false, out);
                            self.pending.extend_from_slice(after);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Appends to `out` what was waiting for a next piece that will not come: a CR that no LF
    /// followed is escaped, an unfinished character is U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        let pending = std::mem::take(&mut self.pending);
        show(&String::from_utf8_lossy(&pending), false, out);
    }
}

/// Appends `text` to `out` as [`PeerBytes`] shows it. With `hold_last_cr`, a CR that ends
/// `text` is not shown and `true` returned: the next piece may start with its LF.
fn show(text: &str, hold_last_cr: bool, out: &mut String) -> bool {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let keep = match c {
            '\n' | '\t' => true,
            '\r' => match chars.peek() {
                Some('\n') => true,
                None if hold_last_cr => return true,
                _ => false,
            },
            c => !PeerText::escapes(c),
        };
        if keep {
            out.push(c);
        } else {
            // Escaped exactly as PeerText escapes it.
            let _ = write!(out, "{}", PeerText(c.encode_utf8(&mut [0; 4])));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(pieces: &[&[u8]]) -> String {
        let mut out = String::new();
        let mut stream = PeerBytes::default();
        for piece in pieces {
            stream.push(piece, &mut out);
        }
        stream.finish(&mut out);
        out
    }

    #[test]
    fn any_cut_shows_the_same_as_one_piece() {
        let mut whole = "a\r\nb\rc\u{e9}\u{202e}\u{1F600}\t\x1b[H\r\r\n\u{2028}end\r"
            .as_bytes()
            .to_vec();
        // A byte that is never UTF-8, and a character cut short by the end.
        whole.extend([0xff, b'z', 0xe2, 0x80]);
        let expected =
            "a\r\nb\\rc\u{e9}\\u{202e}\u{1F600}\t\\u{1b}[H\\r\r\n\\u{2028}end\\r\u{fffd}z\u{fffd}";
        assert_eq!(shown(&[&whole]), expected);
        for cut in 0..=whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(shown(&[a, b]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(shown(&bytes), expected);
    }

    #[test]
    fn a_line_keeps_its_tabs_and_nothing_else() {
        assert_eq!(
            PeerLine("\tx\u{7}\t\u{2029}\t").to_string(),
            "\tx\\u{7}\t\\u{2029}\t"
        );
    }
}
