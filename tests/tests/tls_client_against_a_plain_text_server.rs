//! Our TLS client connected to a server that speaks plain text on that port (a mail server's
//! banner, a web server's answer to bytes it cannot parse): the client's handshake fails at
//! once, typed (`Handshake(InvalidMessage(InvalidContentType))`, kind `InvalidData`), never
//! by the handshake timeout; the server reads our ClientHello, then our fatal `decode_error`
//! alert, then the end of the stream. One byte of plain text is enough. (Guard of the
//! guarantees row; the server's side of a plain-text peer is the row "Garbage instead of a
//! ClientHello".)

use std::io::ErrorKind;
use std::time::Duration;

use net_sockets::SelectorManager;
use net_tests::HANG_LIMIT;
use net_tests::pki::TestCa;
use net_tests::tls::connect;
use net_tests::within;
use net_tls::{Error, rustls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The TLS records in `bytes`, each as its content type and its body (after the 5 bytes of its
/// header: the type, the version and the length).
fn records(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        let end = (5 + len).min(bytes.len());
        out.push((bytes[0], bytes[5..end].to_vec()));
        bytes = &bytes[end..];
    }
    out
}

/// What the plain-text server says first, if anything, and what it answers to what it read.
async fn plain_server(
    greeting: &'static [u8],
    answer: &'static [u8],
) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(greeting).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => {
                    if seen.is_empty() && !answer.is_empty() {
                        let _ = stream.write_all(answer).await;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
            }
        }
    });
    (port, served)
}

#[tokio::test]
async fn our_client_meeting_a_plain_text_server_fails_typed_at_once() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("plain text ca");
    let cases: [(&str, &'static [u8], &'static [u8]); 2] = [
        ("a banner", b"220 mail.example ESMTP ready\r\n", b""),
        (
            "an answer to the ClientHello",
            b"",
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (case, greeting, answer) in cases {
        let (port, served) = plain_server(greeting, answer).await;
        // Longer than the hang safety net: a failure by the timeout would hang the test.
        let config = ca
            .client_config()
            .server_name("localhost")
            .handshake_timeout(HANG_LIMIT + Duration::from_secs(10))
            .build()
            .unwrap();
        let e = within(connect(&selector, "127.0.0.1", port, config))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Handshake(rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::InvalidContentType
                ))
            ),
            "{case}: {e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{case}: {e:?}");
        let seen = within(served).await.unwrap();
        let seen = records(&seen);
        let types: Vec<u8> = seen.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            types,
            [22, 21],
            "{case}: a ClientHello, then an alert: {seen:?}"
        );
        assert_eq!(seen[1].1, [2, 50], "{case}: fatal decode_error");
    }
}

/// One byte of plain text, then silence, is enough: rustls refuses a record by its first byte,
/// its content type, without waiting for the rest of its header.
#[tokio::test]
async fn a_single_byte_of_plain_text_fails_the_handshake_at_once() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("plain text ca");
    let (port, _served) = plain_server(b"2", b"").await;
    let config = ca
        .client_config()
        .server_name("localhost")
        .handshake_timeout(HANG_LIMIT + Duration::from_secs(10))
        .build()
        .unwrap();
    let e = within(connect(&selector, "127.0.0.1", port, config))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Handshake(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            ))
        ),
        "{e:?}"
    );
}
