//! A peer that announces, after the handshake, a record longer than TLS allows (over
//! 2^14 + 2048 bytes of ciphertext): against a rustls server driven by hand on a raw TCP stream
//! (TLS 1.3 and TLS 1.2), which sends a line, then only the record's header, and stays open.
//!
//! Our client reads the line, then fails at once (decided by the header, never by waiting for
//! the length it announced): `InvalidData`, inner `rustls::Error::InvalidMessage(MessageTooLarge)`,
//! on that read and every later one; the peer gets our fatal alert though we never wrote, and
//! writes fail with the same error.

use std::io::Write as _;
use std::sync::Arc;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::{hand_server, provider, records, rustls_error};
use net_tests::within;
use net_tls::rustls::{self, AlertDescription, InvalidMessage};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Whether `e` is the typed error of a record over TLS's limit.
fn is_too_large(e: &net_io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
        && rustls_error(e)
            == Some(&rustls::Error::InvalidMessage(
                InvalidMessage::MessageTooLarge,
            ))
}

#[tokio::test]
async fn a_record_over_the_limit_fails_every_read_typed_at_once_after_the_data_before_it() {
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // 18,433: one byte over what TLS 1.2 allows (TLS 1.3 allows less); 65,535: the most a
        // header can say.
        for length in [0x4801u16, 0xffff] {
            let selector = SelectorManager::new();
            let ca = TestCa::new("oversized records");
            let leaf = ca.server(&["localhost"]);
            let config = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(leaf.chain_der().to_vec(), leaf.key_der())
                .unwrap();
            let (mut client, mut tcp, mut conn) =
                hand_server(&selector, &ca, Arc::new(config), None).await;
            let what = format!("{:?}, length {length}", client.protocol_version());
            let mut input = client.open_read_channel().unwrap();
            let mut output = client.open_write_channel(true).unwrap();
            conn.writer().write_all(b"hello\n").unwrap();
            let mut bytes = records(&mut conn);
            // Application data (23), TLS 1.2 on the wire (TLS 1.3's records say so too), and
            // the length: no byte of the body follows.
            bytes.extend([23, 3, 3]);
            bytes.extend(length.to_be_bytes());
            tcp.write_all(&bytes).await.unwrap();
            let line = within(input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("hello"), "{what}");
            for _ in 0..2 {
                let e = within(input.read_line(64, LineEnding::Default))
                    .await
                    .expect_err("a record over the limit");
                assert!(is_too_large(&e), "{what}: {e:?}");
            }
            // Our fatal alert reached the peer, though we never wrote.
            let mut buf = vec![0u8; 4096];
            let n = within(tcp.read(&mut buf)).await.unwrap();
            assert!(n > 0, "{what}: no alert");
            let mut alert = &buf[..n];
            conn.read_tls(&mut alert).unwrap();
            let seen = conn.process_new_packets().expect_err("our fatal alert");
            assert!(
                matches!(
                    seen,
                    rustls::Error::AlertReceived(AlertDescription::DecodeError)
                ),
                "{what}: {seen:?}"
            );
            // Nothing more can be written on the failed session.
            let e = within(output.write_string_utf8("after\n"))
                .await
                .expect_err("a write on a failed session");
            assert!(is_too_large(&e), "{what}: {e:?}");
            drop((input, output));
            drop(client);
            selector.close();
        }
    }
}
