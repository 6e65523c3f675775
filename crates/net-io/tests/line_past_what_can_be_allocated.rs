//! A line read whose limit lets a peer's line through (here `usize::MAX`) returns the line in
//! a `String` of its own, a second copy of the bytes buffered. Where the process may hold the
//! line once but not twice (a 32-bit process, a limit on its memory, strict overcommit), that
//! copy cannot be allocated: the read fails with an I/O error of kind `OutOfMemory`, as a read
//! whose buffer cannot grow does (the line stays buffered), instead of the failed allocation
//! ending the process (before: "memory allocation of 629145600 bytes failed", SIGABRT). The
//! same for `read_line_strict` and `read_line_to`.
//!
//! Each scenario runs in a child process (this test binary again, `NET_IO_LINE_CHILD` naming
//! it), its address space limited to 1 GiB (`ulimit -v`), so that an abort fails its test
//! instead of killing the whole run.

mod support;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use net_io::{ByteReadChannel, Error, LineEnding};
use tokio::io::{AsyncRead, ReadBuf};

const CHILD_ENV: &str = "NET_IO_LINE_CHILD";
/// The line's content: 600 MiB.
const LINE: usize = 600 << 20;

/// Hands out `left` bytes of `a`, then a LF, then ends.
struct OneLine {
    left: usize,
    ended: bool,
}

impl AsyncRead for OneLine {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 {
            if !self.ended {
                self.ended = true;
                buf.put_slice(b"\n");
            }
            return Poll::Ready(Ok(()));
        }
        let n = self.left.min(buf.remaining());
        buf.initialize_unfilled_to(n).fill(b'a');
        buf.advance(n);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

/// Runs the child scenario `name` under a 1 GiB address space; it must pass.
fn run_child(name: &str) {
    support::child::run_child(CHILD_ENV, name, Some(1024 * 1024));
}

/// Reads the 600 MiB line with `read`, which must fail with `OutOfMemory`; then the line is
/// still buffered, and the channel has failed for good.
fn child_scenario(name: &str, read: fn(&mut ByteReadChannel) -> Result<(), Error>) {
    if !support::child::is_child(CHILD_ENV, name) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut input = ByteReadChannel::new(OneLine {
        left: LINE,
        ended: false,
    });
    runtime.block_on(async {
        assert!(
            input
                .await_content(LINE + 1)
                .await
                .expect("the line arrives")
        );
    });
    let e = read(&mut input).expect_err("1 GiB of address space holds 600 MiB once, not twice");
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::OutOfMemory),
        "{e:?}"
    );
    assert_eq!(
        input.available_for_read(),
        LINE + 1,
        "the line stays buffered"
    );
    assert_eq!(input.total_bytes_read(), 0);
    runtime.block_on(async {
        let head = input.read_bytes(4).await.expect("bytes received");
        assert_eq!(&head[..], b"aaaa");
    });
    println!("child {name} passed");
}

#[test]
// The buffer must grow past 512 MiB under 1 GiB of address space: glibc's `realloc` moves a
// large allocation without copying it (`mremap`); an allocator that copies needs the old and the
// new allocation at once, and stops short of that.
#[cfg_attr(
    not(target_env = "gnu"),
    ignore = "needs a realloc that grows a large buffer without a copy (glibc's)"
)]
fn a_line_whose_string_cannot_be_allocated_fails_without_ending_the_process() {
    run_child("child_read_line");
    run_child("child_read_line_strict");
    run_child("child_read_line_to");
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn child_read_line() {
    child_scenario("child_read_line", |input| {
        block_on(input.read_line(usize::MAX, LineEnding::Default)).map(drop)
    });
}

#[test]
fn child_read_line_strict() {
    child_scenario("child_read_line_strict", |input| {
        block_on(input.read_line_strict(usize::MAX, LineEnding::Lenient)).map(drop)
    });
}

#[test]
fn child_read_line_to() {
    child_scenario("child_read_line_to", |input| {
        let mut line = String::from("kept");
        let read = block_on(input.read_line_to(&mut line, usize::MAX, LineEnding::Default));
        assert_eq!(line, "kept", "read_line_to touched its string");
        read.map(drop)
    });
}
