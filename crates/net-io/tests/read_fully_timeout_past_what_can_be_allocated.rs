//! `read_fully` into a large destination whose transport times out before the last byte: the
//! read gives the bytes it copied back to the channel's buffer (so that a retry reads each
//! once), a second copy of them. Where the process may hold them once but not twice (a 32-bit
//! process, a limit on its memory, strict overcommit), that buffer cannot be allocated: the read
//! fails with an I/O error of kind `OutOfMemory`, `dst` holding the bytes, instead of the failed
//! allocation ending the process (before: "memory allocation of 629145599 bytes failed",
//! SIGABRT).
//!
//! The scenario runs in a child process (this test binary again, `NET_IO_READ_FULLY_CHILD`
//! set), its address space limited to 1 GiB (`ulimit -v`), so that an abort fails this test
//! instead of killing the whole run.

mod support;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use net_io::{ByteReadChannel, Error};
use tokio::io::{AsyncRead, ReadBuf};

const CHILD_ENV: &str = "NET_IO_READ_FULLY_CHILD";
const CHILD: &str = "child_read_fully_timeout_cannot_give_back";

/// Hands out `left` bytes of 7, then times out at every read.
struct ThenTimeout {
    left: usize,
}

impl AsyncRead for ThenTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, Error::Timeout)));
        }
        let n = self.left.min(buf.remaining());
        buf.initialize_unfilled_to(n).fill(7);
        buf.advance(n);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

/// 600 MiB less a byte arrive for a destination of 600 MiB, then the transport times out,
/// under a 1 GiB address space.
#[test]
fn a_read_fully_that_times_out_and_cannot_give_back_fails_without_ending_the_process() {
    support::child::run_child(CHILD_ENV, CHILD, Some(1024 * 1024));
}

#[test]
fn child_read_fully_timeout_cannot_give_back() {
    if !support::child::is_child(CHILD_ENV, CHILD) {
        return;
    }
    const SIZE: usize = 600 << 20;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut dst = vec![0u8; SIZE];
        let mut input = ByteReadChannel::new(ThenTimeout { left: SIZE - 1 });
        let e = input
            .read_fully(&mut dst)
            .await
            .expect_err("the last byte never comes");
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::OutOfMemory),
            "{e:?}"
        );
        // The bytes are in `dst`, consumed: the count says so, and the channel failed for good
        // (a retry would not read them), as after a transport error.
        assert_eq!((dst[0], dst[SIZE - 2], dst[SIZE - 1]), (7, 7, 0));
        assert_eq!(input.total_bytes_read(), (SIZE - 1) as u64);
        let again = input.read_u8().await.expect_err("the channel failed");
        assert!(
            matches!(&again, Error::Io(io) if io.kind() == io::ErrorKind::OutOfMemory),
            "{again:?}"
        );
    });
    println!("child {CHILD} passed");
}
