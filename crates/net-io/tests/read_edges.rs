//! The read side at two edges an audit found: `read_fully` of nothing on a cancelled channel,
//! and what the flush-coalescing backlog says after a `read_fully` timed out.

mod support;

use net_io::{Backlog, ByteReadChannel, ByteWriteChannel, Error};
use support::{ChunkedReader, MockWriter, Step, guard, timeout};

/// `cancel`: "later reads fail with `Error::Cancelled`", reads of no bytes too, as
/// `read_bytes(0)` and `read_available(&mut [])` do. (Before, `read_fully(&mut [])` answered
/// `Ok(())`.)
#[tokio::test]
async fn read_fully_of_nothing_after_cancel_is_cancelled() {
    let mut input = ByteReadChannel::from_bytes(&b"abc"[..]);
    input.cancel();
    assert!(matches!(input.read_bytes(0).await, Err(Error::Cancelled)));
    assert!(matches!(
        input.read_available(&mut []).await,
        Err(Error::Cancelled)
    ));
    let read = input.read_fully(&mut []).await;
    assert!(matches!(read, Err(Error::Cancelled)), "{read:?}");
}

/// `Backlog`: "A reader that waits for more input has none pending, whatever part of a request
/// it holds." After a read that timed out waiting, an answer written then (an auto-flushed
/// "408") goes out at once, whichever read it was. (Before, `read_fully`'s timeout, which
/// buffers again the bytes it had copied, marked them pending, and the answer was held back
/// until the reader next read from its transport.)
#[tokio::test]
async fn an_answer_after_a_read_that_timed_out_is_not_held_back() {
    for read_fully in [false, true] {
        let backlog = Backlog::new();
        let mut input = ByteReadChannel::new(ChunkedReader::new([
            Step::Data(b"ab".to_vec()),
            Step::Fail(timeout()),
            Step::Data(b"cd".to_vec()),
        ]));
        input.share_backlog(backlog.clone());
        let writer = MockWriter::default();
        let mut output = ByteWriteChannel::new(writer.clone(), true);
        output.hold_while(backlog.clone());
        let read = if read_fully {
            let mut dst = [0; 4];
            guard(input.read_fully(&mut dst)).await
        } else {
            guard(input.read_bytes(4)).await.map(drop)
        };
        assert!(matches!(read, Err(Error::Timeout)), "{read:?}");
        assert_eq!(input.available_for_read(), 2);
        guard(output.write_string_utf8("408 timeout\n"))
            .await
            .unwrap();
        assert!(!backlog.is_pending(), "read_fully {read_fully}");
        assert_eq!(
            writer.accepted(),
            b"408 timeout\n",
            "read_fully {read_fully}: the answer was held back"
        );
        // The retry reads the same bytes.
        let mut dst = [0; 4];
        guard(input.read_fully(&mut dst)).await.unwrap();
        assert_eq!(&dst, b"abcd");
    }
}

/// `UnexpectedEof.needed` of a `read_until` is what the item needed: the bytes there and the
/// part of the delimiter missing after them, not the whole delimiter again when its first
/// bytes are already there (also for a delimiter that overlaps itself).
#[tokio::test]
async fn read_until_at_the_end_needs_only_the_missing_part_of_the_delimiter() {
    for (input, delimiter, needed) in [
        (&b"ab"[..], &b"\r\n\r\n"[..], 6),
        (b"ab\r", b"\r\n\r\n", 6),
        (b"ab\r\n\r", b"\r\n\r\n", 6),
        (b"xaa", b"aab", 4),
        (b"x", b"\n", 2),
    ] {
        let mut channel = ByteReadChannel::from_bytes(input.to_vec());
        match channel.read_until(delimiter, 64).await {
            Err(Error::UnexpectedEof {
                needed: n,
                available,
            }) => assert_eq!(
                (n, available),
                (needed, input.len()),
                "{input:?} until {delimiter:?}"
            ),
            other => panic!("{input:?} until {delimiter:?}: {other:?}"),
        }
    }
}
