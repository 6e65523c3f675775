//! Once a read of a `TlsStream` reported the session's failure (the peer's fatal alert, or a
//! record of the peer's that does not decrypt), a write of nothing (single or vectored) fails
//! with that error, as a write of bytes, a flush and the shutdown do, every time (and as a
//! plain stream's write of nothing fails once a read reported the peer's reset). Before, it
//! returned `Ok(0)`, as if the session could still carry bytes.

use std::io::{ErrorKind, IoSlice};

use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::{manual_pair, records};
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A record no key decrypts.
const CORRUPTED: &[u8] = b"\x17\x03\x03\x00\x20corrupted record, not decryptable";

/// How the session fails.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// The peer sends its fatal alert (for a record of ours it could not decrypt).
    PeersAlert,
    /// The peer sends a record we cannot decrypt.
    OurDecryption,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_of_nothing_after_a_read_reported_the_sessions_failure_fails_with_it() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("writes of nothing after the failure ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    for failure in [Failure::PeersAlert, Failure::OurDecryption] {
        let (server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
        let mut stream = server.into_stream().unwrap();
        // A write of nothing on the healthy session: nothing to report.
        assert_eq!(within(stream.write(b"")).await.unwrap(), 0, "{failure:?}");
        match failure {
            Failure::PeersAlert => {
                conn.read_tls(&mut &CORRUPTED[..]).unwrap();
                assert!(conn.process_new_packets().is_err());
                tcp.write_all(&records(&mut conn)).await.unwrap();
            }
            Failure::OurDecryption => tcp.write_all(CORRUPTED).await.unwrap(),
        }
        let mut buf = [0u8; 64];
        let read = within(stream.read(&mut buf))
            .await
            .expect_err("the failure");
        assert_eq!(read.kind(), ErrorKind::InvalidData, "{failure:?}: {read:?}");
        let wanted = read.to_string();
        let nothing = [IoSlice::new(b""), IoSlice::new(b"")];
        for round in 0..2 {
            let written = within(stream.write(b"")).await;
            let vectored = within(stream.write_vectored(&nothing)).await;
            let bytes = within(stream.write(b"x")).await;
            for (what, result) in [
                ("a write of nothing", written),
                ("a vectored write of nothing", vectored),
                ("a write of a byte", bytes),
            ] {
                assert!(
                    matches!(&result, Err(e) if e.kind() == ErrorKind::InvalidData
                        && e.to_string() == wanted),
                    "{failure:?}, round {round}: {what}: {result:?}, not the read's {read:?}"
                );
            }
        }
        drop(tcp);
    }
    selector.close();
}
