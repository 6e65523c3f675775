//! `peek(n)` with a count the peer sent, and the peer's bytes to fill it, where the process may
//! hold those bytes once but not twice (a 32-bit process, a limit on its memory, strict
//! overcommit): the copy `peek` returns cannot be allocated. The read fails with an I/O error of
//! kind `OutOfMemory`, as a read whose buffer cannot grow does, instead of the failed allocation
//! ending the process (before: "memory allocation of 629145600 bytes failed", SIGABRT).
//!
//! The scenario runs in a child process (this test binary again, `NET_IO_PEEK_CHILD` set), its
//! address space limited to 1 GiB (`ulimit -v`), so that an abort fails this test instead of
//! killing the whole run.

mod support;

use net_io::{ByteReadChannel, Error, LineEnding};

const CHILD_ENV: &str = "NET_IO_PEEK_CHILD";

/// A peek of 600 MiB, under a 1 GiB address space: the buffer holds them, the copy does not fit.
#[test]
// The buffer must grow past 512 MiB under 1 GiB of address space: glibc's `realloc` moves a
// large allocation without copying it (`mremap`); an allocator that copies needs the old and the
// new allocation at once, and stops short of that.
#[cfg_attr(
    not(target_env = "gnu"),
    ignore = "needs a realloc that grows a large buffer without a copy (glibc's)"
)]
fn a_peek_whose_copy_cannot_be_allocated_fails_without_ending_the_process() {
    support::child::run_child(CHILD_ENV, "child_peek_copy_fails", Some(1024 * 1024));
}

#[test]
fn child_peek_copy_fails() {
    if !support::child::is_child(CHILD_ENV, "child_peek_copy_fails") {
        return;
    }
    const COUNT: usize = 600 << 20;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut input = ByteReadChannel::new(tokio::io::repeat(7));
        let e = input
            .peek(COUNT)
            .await
            .expect_err("1 GiB of address space holds 600 MiB once, not twice");
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::OutOfMemory),
            "{e:?}"
        );
        // As after a transport error: the bytes received stay readable (without a copy), and a
        // read that needs more reports the failure again.
        assert!(input.available_for_read() >= COUNT);
        let whole = input.read_bytes(COUNT).await.expect("bytes received");
        assert_eq!((whole.len(), whole[0], whole[COUNT - 1]), (COUNT, 7, 7));
        drop(whole);
        let again = input
            .read_remaining(usize::MAX)
            .await
            .expect_err("the channel failed");
        assert!(
            matches!(&again, Error::Io(io) if io.kind() == std::io::ErrorKind::OutOfMemory),
            "{again:?}"
        );
        drop(input);
        let mut other = ByteReadChannel::new(&b"still here\n"[..]);
        let line = other
            .read_line(64, LineEnding::Default)
            .await
            .expect("another channel reads");
        assert_eq!(line.as_deref(), Some("still here"));
    });
    println!("child child_peek_copy_fails passed");
}
