//! A Unix path in use is named in the error's message as `UnixSocketAddress`'s `Display` shows
//! it: a newline, a terminal escape or a bidi control in the path is escaped, never written
//! into the message (and so into a log) raw.

use std::io::ErrorKind;

use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::TempDir;

/// Whether `message` holds a character that `Display` escapes in a path.
fn holds_a_raw_control(message: &str) -> bool {
    message
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{202e}')
}

/// A listener's path, a directory and a plain file at a path with control characters in its
/// name, then a connecting socket's `local_address` there: each `AddrInUse` error names the
/// path escaped, as `Display` shows it. (Before, the message held the path as
/// `Path::display` writes it: the newline split the message in two lines, and the escape and
/// the right-to-left override went out raw.)
#[tokio::test]
async fn a_unix_path_in_use_is_named_with_its_control_characters_escaped() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-in-use-escaped");
    let name = "a\nb\u{1b}[31mc\u{202e}d";
    let listened = dir.join(&format!("{name}.sock"));
    let directory = dir.join(&format!("{name}.dir"));
    let plain = dir.write(&format!("{name}.txt"), b"not a socket");
    std::fs::create_dir(&directory).unwrap();
    let _listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&listened))
        .await
        .unwrap();
    for path in [&listened, &directory, &plain] {
        let address = UnixSocketAddress::new(path);
        let shown = address.to_string();
        assert!(!holds_a_raw_control(&shown), "{shown:?}");
        let bound = a_socket(&selector).tcp().bind(address.clone()).await;
        let e = bound.expect_err("the path is in use");
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        let message = e.to_string();
        assert!(!holds_a_raw_control(&message), "{message:?}");
        assert!(message.contains(&shown), "{message:?} names {shown:?}");
        let connected = a_socket(&selector)
            .tcp()
            .local_address(address)
            .connect(UnixSocketAddress::new(&listened))
            .await;
        let e = connected.expect_err("the local address is in use");
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        let message = e.to_string();
        assert!(!holds_a_raw_control(&message), "{message:?}");
        assert!(message.contains(&shown), "{message:?} names {shown:?}");
    }
}
