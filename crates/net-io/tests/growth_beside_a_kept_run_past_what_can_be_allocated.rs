//! A count-taking read after a run the application keeps: `read_bytes` hands a large run out
//! without a copy, sharing the buffer's allocation, and the bytes buffered after it still share
//! it. A later read that must grow the buffer (a count the peer sent) moved those bytes into an
//! allocation of their own with an allocation that could not fail: where the process could not
//! hold them a second time (a 32-bit process, a limit on its memory, strict overcommit), that
//! ended the process ("memory allocation of 490733568 bytes failed", SIGABRT). Now the read
//! fails with an I/O error of kind `OutOfMemory`, as one whose buffer cannot grow does.
//!
//! The scenario runs in a child process (this test binary again, `NET_IO_KEPT_RUN_CHILD` set),
//! its address space limited to 1 GiB (`ulimit -v`), so that an abort fails this test instead
//! of killing the whole run.

mod support;

use net_io::{ByteReadChannel, Error};

const CHILD_ENV: &str = "NET_IO_KEPT_RUN_CHILD";
const CHILD: &str = "child_growth_beside_a_kept_run";
const MIB: usize = 1 << 20;

/// 700 MiB buffered, 300 MiB of it handed out and kept, then a read of 500 MiB, under a 1 GiB
/// address space.
#[test]
// The buffer must grow past 512 MiB under 1 GiB of address space: glibc's `realloc` moves a
// large allocation without copying it (`mremap`); an allocator that copies needs the old and the
// new allocation at once, and stops short of that.
#[cfg_attr(
    not(target_env = "gnu"),
    ignore = "needs a realloc that grows a large buffer without a copy (glibc's)"
)]
fn a_read_that_must_grow_beside_a_kept_run_fails_without_ending_the_process() {
    support::child::run_child(CHILD_ENV, CHILD, Some(1024 * 1024));
}

#[test]
fn child_growth_beside_a_kept_run() {
    if !support::child::is_child(CHILD_ENV, CHILD) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut input = ByteReadChannel::new(tokio::io::repeat(7));
        assert!(input.await_content(700 * MIB).await.expect("700 MiB fit"));
        let kept = input.read_bytes(300 * MIB).await.expect("buffered");
        let left = input.available_for_read();
        assert!(left >= 400 * MIB, "{left}");
        let e = input
            .read_bytes(500 * MIB)
            .await
            .expect_err("1 GiB of address space holds no second copy of what is left");
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::OutOfMemory),
            "{e:?}"
        );
        // As after a transport error: the bytes received stay readable, in order.
        assert_eq!(input.available_for_read(), left);
        let next = input.read_bytes(left).await.expect("bytes received");
        assert_eq!((next[0], next[left - 1], kept[300 * MIB - 1]), (7, 7, 7));
    });
    println!("child {CHILD} passed");
}
