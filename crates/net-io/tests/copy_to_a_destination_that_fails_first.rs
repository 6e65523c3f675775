//! `copy_to` whose destination fails on the bytes the caller wrote before the copy: the
//! copy writes those out before it reads the source (so that a wait for them does not count
//! against the source's deadline), and no test had that write fail (found by a coverage run:
//! the error branch of that flush ran 0 times). The copy reports the destination's error,
//! typed, and takes nothing of the source, whose bytes a later read gets whole; the
//! destination stays failed with the same error.

mod support;

use std::io;

use net_io::{ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use support::{Act, ChunkedReader, MockWriter, Step, guard};

fn reset() -> io::Error {
    io::Error::from_raw_os_error(libc::ECONNRESET)
}

fn is_reset(e: &Error) -> bool {
    matches!(e, Error::Io(io) if io.raw_os_error() == Some(libc::ECONNRESET))
}

#[tokio::test]
async fn a_copy_whose_earlier_bytes_fail_to_leave_takes_nothing_of_the_source() {
    for fail_on_flush in [false, true] {
        let mut source = ByteReadChannel::new(ChunkedReader::new([
            Step::Data(b"first line\nsecond".to_vec()),
            Step::Data(b" line\n".to_vec()),
        ]));
        let mock = MockWriter::default();
        if fail_on_flush {
            mock.on_write([Act::Take(usize::MAX)]);
            mock.on_flush([Act::Fail(reset())]);
        } else {
            mock.on_write([Act::Fail(reset())]);
        }
        let mut dst = ByteWriteChannel::new(mock.clone(), false);
        dst.write_fully(b"written before the copy").await.unwrap();

        let e = guard(source.copy_to(&mut dst, u64::MAX)).await.unwrap_err();
        assert!(is_reset(&e), "on flush {fail_on_flush}: {e:?}");
        assert_eq!(source.total_bytes_read(), 0, "on flush {fail_on_flush}");
        for expected in ["first line", "second line"] {
            let line = guard(source.read_line(80, LineEnding::Default))
                .await
                .unwrap();
            assert_eq!(line.as_deref(), Some(expected), "on flush {fail_on_flush}");
        }
        let again = guard(dst.write_fully(b"more")).await;
        let again = match again {
            Ok(()) => guard(dst.flush()).await,
            failed => failed,
        };
        assert!(
            again.as_ref().is_err_and(is_reset),
            "on flush {fail_on_flush}: the destination after its failure: {again:?}"
        );
    }
}
