//! Text a peer chooses, shown by `Display` (and so in `tracing` fields written with `%`): a
//! Unicode line or paragraph separator or a bidi control in it is escaped as a control
//! character is, so that a peer can neither start a line of its own in a log viewer that
//! breaks lines on U+2028 nor reorder what follows on an operator's screen (U+202E).

use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};

/// A local client binds to a path with U+2028 and U+202E in it; the server shows it as its
/// peer's address (its `connection` span's `remote`, its own logs) with both escaped.
#[test]
fn a_unix_peer_path_with_separators_and_bidi_controls_is_displayed_escaped() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let selector = SelectorManager::new();
            let dir = net_tests::TempDir::new("review-escape");
            let server_path = dir.join("server.sock");
            let listener = a_socket(&selector)
                .tcp()
                .bind(UnixSocketAddress::new(&server_path))
                .await
                .unwrap();
            let client_path = dir.join("c\u{2028}INFO forged\u{202e}kcos.\u{2069}");
            let _client = a_socket(&selector)
                .tcp()
                .local_address(UnixSocketAddress::new(&client_path))
                .connect(UnixSocketAddress::new(&server_path))
                .await
                .unwrap();
            let accepted = net_tests::within(listener.accept()).await.unwrap();
            let shown = accepted.remote_address().to_string();
            assert!(
                shown.ends_with("/c\\u{2028}INFO forged\\u{202e}kcos.\\u{2069}"),
                "{shown:?}"
            );
            assert!(
                !shown.contains(['\u{2028}', '\u{202e}', '\u{2069}']),
                "{shown:?}"
            );
        });
}
