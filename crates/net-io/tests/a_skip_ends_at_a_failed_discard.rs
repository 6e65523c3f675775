//! `read_line`'s "Over-long lines": a read of one byte or more that finds nothing buffered and
//! fails ends the skip of an over-long line, whichever read it is. `docs_asserted` checks that
//! for `read_bytes`, `read_available`, `read_fully` and tokio's `poll_read`; mutation testing
//! (cargo-mutants) found `discard`'s and `read_remaining`'s own end of the skip checked by no
//! test: with it kept due, the next line read threw away the line that came after the timeout.

mod support;

use net_io::{ByteReadChannel, Error, LineEnding};
use support::{ChunkedReader, Step, guard, timeout};

#[tokio::test]
async fn a_discard_or_read_remaining_that_fails_with_nothing_buffered_ends_the_skip() {
    for read in ["discard", "discard_exact", "read_remaining"] {
        let mut input = ByteReadChannel::new(ChunkedReader::new([
            Step::Data(b"abcdef".to_vec()),
            Step::Fail(timeout()),
            Step::Fail(timeout()),
            Step::Data(b"gh\nok\n".to_vec()),
        ]));
        assert!(matches!(
            guard(input.read_line(5, LineEnding::Default)).await,
            Err(Error::TooLongLine { limit: 5 })
        ));
        // The skip takes what is buffered of the long line, then times out: still due.
        assert!(matches!(
            guard(input.read_line(5, LineEnding::Default)).await,
            Err(Error::Timeout)
        ));
        assert_eq!(input.available_for_read(), 0);
        let e = match read {
            "discard" => guard(input.discard(10)).await.map(drop),
            "discard_exact" => guard(input.discard_exact(10)).await,
            _ => guard(input.read_remaining(10)).await.map(drop),
        };
        assert!(matches!(e, Err(Error::Timeout)), "{read}: {e:?}");
        assert_eq!(
            guard(input.read_line(10, LineEnding::Default))
                .await
                .unwrap()
                .as_deref(),
            Some("gh"),
            "{read}: the line after the timeout was skipped"
        );
    }
}
