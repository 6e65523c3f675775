//! Text from a peer, shown so that it cannot forge or reorder lines.

use std::fmt;

/// Shows text that a peer chose (a line it sent, a name, a path) with the characters that could
/// change how a log or a terminal shows the text around it escaped as Rust escapes them:
/// control characters (C0 with tab, CR and LF, DEL, C1 with NEL U+0085: `\n`, `\u{1b}`,
/// `\u{85}`), the Unicode line and paragraph separators (`\u{2028}`, `\u{2029}`: some log
/// viewers break lines on them), the bidi embedding, override and isolate controls (U+202A
/// to U+202E, U+2066 to U+2069: they reorder what follows them on screen, as in "Trojan
/// Source") and the invisible direction marks (U+200E, U+200F, U+061C: they reorder the
/// digits and punctuation around them). Other text, right-to-left letters included, is shown
/// as it is; so is a backslash.
///
/// The crates use it wherever they show peer text (a Unix peer's path, a TLS handshake's
/// reason); use it to log what a peer sent. Padding (`{:>20}`) and precision (`{:.40}`) apply
/// to the escaped text: a precision may cut an escape short (`\u{1b}` to `\u{`), never
/// letting the character itself through.
///
/// # Examples
///
/// ```
/// use net_io::PeerText;
///
/// let line = "hi\u{2028}INFO forged \u{202e}txet";
/// assert_eq!(
///     PeerText(line).to_string(),
///     "hi\\u{2028}INFO forged \\u{202e}txet"
/// );
/// assert!(PeerText::escapes('\u{1b}') && !PeerText::escapes('\u{5d0}'));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerText<'a>(pub &'a str);

impl PeerText<'_> {
    /// Whether `PeerText` shows `c` escaped: a control character, a line or paragraph
    /// separator, a bidi embedding, override or isolate control, or a direction mark.
    pub fn escapes(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{2028}'
                    | '\u{2029}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{200e}'
                    | '\u{200f}'
                    | '\u{61c}'
            )
    }

    fn write_to(self, out: &mut impl fmt::Write) -> fmt::Result {
        for part in self.0.split_inclusive(Self::escapes) {
            let mut chars = part.chars();
            match chars.next_back() {
                Some(c) if Self::escapes(c) => {
                    out.write_str(chars.as_str())?;
                    write!(out, "{}", c.escape_debug())?;
                }
                _ => out.write_str(part)?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() || f.precision().is_some() {
            let mut shown = String::new();
            self.write_to(&mut shown)?;
            return f.pad(&shown);
        }
        self.write_to(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_separators_and_bidi_controls_are_escaped_and_nothing_else() {
        assert_eq!(
            PeerText("a\nb\r\t\0\u{1b}[2J\u{7f}\u{85}\u{9b}").to_string(),
            "a\\nb\\r\\t\\0\\u{1b}[2J\\u{7f}\\u{85}\\u{9b}"
        );
        assert_eq!(
            PeerText("\u{2028}\u{2029}\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}").to_string(),
            "\\u{2028}\\u{2029}\\u{202a}\\u{202b}\\u{202c}\\u{202d}\\u{202e}"
        );
        assert_eq!(
            PeerText("\u{2066}\u{2067}\u{2068}\u{2069}").to_string(),
            "\\u{2066}\\u{2067}\\u{2068}\\u{2069}"
        );
        // The implicit direction marks (LRM, RLM, ALM): invisible, and they change the order
        // in which the neutral characters around them (digits, punctuation) are shown.
        assert_eq!(
            PeerText("1\u{200e}2\u{200f}3\u{61c}").to_string(),
            "1\\u{200e}2\\u{200f}3\\u{61c}"
        );
        // Everything else as it is: letters of any script, quotes, a backslash, neighbours of
        // the escaped ranges.
        let plain = "\u{e9}\u{5d0}\u{627} \"q\" 'q' \\ \u{2027}\u{202f}\u{2065}\u{206a}\u{a0}\
                     \u{200d}\u{2010}\u{61b}\u{61d}";
        assert_eq!(PeerText(plain).to_string(), plain);
        assert_eq!(PeerText("").to_string(), "");
    }

    /// What `escape_debug` would escape but `escapes` does not name (a quote, a backslash, a
    /// combining mark) is shown as it is, at the end of the text too, where no escaped
    /// character follows it.
    #[test]
    fn text_ending_in_a_character_not_escaped_is_shown_as_it_is() {
        for text in ["a\\", "say \"hi\"", "it's", "e\u{301}", "\u{301}", "\n\\"] {
            let shown = PeerText(text).to_string();
            assert_eq!(shown, text.replace('\n', "\\n"), "{text:?}");
        }
    }

    #[test]
    fn padding_applies_to_the_escaped_text() {
        assert_eq!(
            format!("{:>6}|{:<4}|", PeerText("a\n"), PeerText("b")),
            "   a\\n|b   |"
        );
        // Precision too: it may cut an escape short, never letting the character through.
        assert_eq!(format!("{:.4}", PeerText("a\u{1b}b")), "a\\u{");
    }
}
