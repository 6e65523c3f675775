//! Memory follows bytes received, never a number the peer sent (SPEC §4.1, §4.6), and an
//! over-long line is skipped in bounded memory (SPEC §4.2).
//!
//! Each scenario runs in a child process (this test binary again, with `NET_IO_MEMORY_CHILD`
//! naming the scenario), so that its peak resident set is its own, and so that an abort (an
//! allocation of 2^40 bytes) fails one test instead of killing the whole run. The parent test
//! checks that the child passed.

mod support;

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel, Error, LineEnding};

const CHILD_ENV: &str = "NET_IO_MEMORY_CHILD";
/// The most the peak resident set may grow in a scenario.
const MAX_GROWTH_KIB: u64 = 16 * 1024;

/// Runs the scenario `name` (a `#[test]` of this binary) in a child process; returns its output.
fn run_child(name: &str) -> String {
    run_child_limited(name, None)
}

/// As [`run_child`], the child's address space limited to `limit_kib` KiB (`ulimit -v`) if
/// given.
fn run_child_limited(name: &str, limit_kib: Option<u64>) -> String {
    let text = support::child::run_child(CHILD_ENV, name, limit_kib);
    for line in text.lines().filter(|l| l.contains("KiB")) {
        eprintln!("{name}: {line}");
    }
    text
}

/// Whether this process is the child for `name`.
fn is_child(name: &str) -> bool {
    support::child::is_child(CHILD_ENV, name)
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Memory use from the start of a scenario: the peak resident set (reset at the start where the
/// kernel allows) and the address space.
struct Meter {
    rss: u64,
    hwm: u64,
    peak_reset: bool,
    size: u64,
}

impl Meter {
    fn start() -> Meter {
        let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        Meter {
            rss: proc_status_kib("VmRSS"),
            hwm: proc_status_kib("VmHWM"),
            peak_reset,
            size: proc_status_kib("VmSize"),
        }
    }

    /// Growth of the peak resident set, and of the address space now, in KiB.
    fn growth(&self) -> (u64, u64) {
        let base = if self.peak_reset { self.rss } else { self.hwm };
        let hwm = proc_status_kib("VmHWM").saturating_sub(base);
        let size = proc_status_kib("VmSize").saturating_sub(self.size);
        (hwm, size)
    }

    /// Prints the growth and asserts both stay under [`MAX_GROWTH_KIB`].
    fn check(&self, what: &str) {
        let (hwm, size) = self.growth();
        println!(
            "{what}: peak RSS grew by {hwm} KiB, address space by {size} KiB (peak reset: {})",
            self.peak_reset
        );
        assert!(hwm < MAX_GROWTH_KIB, "{what}: peak RSS grew by {hwm} KiB");
        assert!(
            size < MAX_GROWTH_KIB,
            "{what}: address space grew by {size} KiB"
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `fut` a few times (the pipe wakes the task at once whenever it has something); true
/// if it is still pending, that is, waiting for bytes that are not coming.
async fn stays_pending<F: Future>(fut: std::pin::Pin<&mut F>) -> bool {
    let mut fut = fut;
    for _ in 0..10 {
        let ready = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
        if ready {
            return false;
        }
        tokio::task::yield_now().await;
    }
    true
}

/// A pipe that holds a 4-byte length prefix and three bytes of the body, writer still open.
async fn prefixed(length: u32) -> (ByteWriteChannel, ByteReadChannel) {
    let (mut w, r) = ByteChannel::new(true);
    w.write_u32(length).await.unwrap();
    w.write_fully(b"abc").await.unwrap();
    (w, r)
}

/// Reads `n` bytes after the prefix: pending while the writer is silent, bounded memory, then
/// `UnexpectedEof` once the writer leaves.
async fn hostile_read_bytes(n: usize, what: &str) {
    let (w, mut r) = prefixed(0xFFFF_FFFF).await;
    let meter = Meter::start();
    r.read_u32().await.unwrap();
    {
        let mut read = pin!(r.read_bytes(n));
        assert!(
            stays_pending(read.as_mut()).await,
            "{what}: completed early"
        );
        meter.check(what);
        drop(w);
        match read.await {
            Err(Error::UnexpectedEof { needed, available }) => {
                assert_eq!((needed, available), (n, 3), "{what}");
            }
            other => panic!("{what}: expected UnexpectedEof, got {other:?}"),
        }
    }
    // The three bytes are still there.
    assert_eq!(r.read_bytes(3).await.unwrap(), &b"abc"[..]);
}

/// SPEC §4.6: `read_bytes(u32::MAX as usize)` after a 4-byte prefix and then silence grows the
/// peak resident set (and the address space) by less than 16 MiB.
#[test]
fn read_bytes_u32_max_after_prefix_stays_small() {
    run_child("child_u32_max");
}

#[test]
fn child_u32_max() {
    if !is_child("child_u32_max") {
        return;
    }
    runtime().block_on(hostile_read_bytes(0xFFFF_FFFF, "read_bytes(u32::MAX)"));
    println!("child child_u32_max passed");
}

/// `read_bytes(1 << 40)` does not abort the process ("memory allocation failed"). (Where
/// `usize` has 32 bits the count is `usize::MAX`, the largest there is.)
#[test]
fn read_bytes_2_pow_40_does_not_abort() {
    run_child("child_2_pow_40");
}

#[test]
fn child_2_pow_40() {
    if !is_child("child_2_pow_40") {
        return;
    }
    let n = usize::try_from(1u64 << 40).unwrap_or(usize::MAX);
    runtime().block_on(hostile_read_bytes(n, "read_bytes(1 << 40)"));
    println!("child child_2_pow_40 passed");
}

/// `read_bytes(usize::MAX)` does not panic ("capacity overflow"): it waits for bytes, and at the
/// end of the stream is `UnexpectedEof`. The other count-taking reads neither.
#[test]
fn usize_max_counts_neither_panic_nor_abort() {
    run_child("child_usize_max");
}

#[test]
fn child_usize_max() {
    if !is_child("child_usize_max") {
        return;
    }
    runtime().block_on(async {
        hostile_read_bytes(usize::MAX, "read_bytes(usize::MAX)").await;

        let meter = Meter::start();
        let (w, mut r) = prefixed(0).await;
        {
            let mut peek = pin!(r.peek(usize::MAX));
            assert!(stays_pending(peek.as_mut()).await, "peek(usize::MAX)");
        }
        {
            let mut wait = pin!(r.await_content(usize::MAX));
            assert!(
                stays_pending(wait.as_mut()).await,
                "await_content(usize::MAX)"
            );
        }
        {
            let mut skip = pin!(r.discard_exact(u64::MAX));
            assert!(
                stays_pending(skip.as_mut()).await,
                "discard_exact(u64::MAX)"
            );
        }
        meter.check("peek, await_content and discard_exact with hostile counts");
        drop(w);

        let (w, mut r) = prefixed(0).await;
        drop(w);
        assert_eq!(r.peek(usize::MAX).await.unwrap(), None);
        assert!(!r.await_content(usize::MAX).await.unwrap());
        let two_pow_40 = usize::try_from(1u64 << 40).unwrap_or(usize::MAX);
        assert!(!r.await_content(two_pow_40).await.unwrap());
        assert_eq!(r.available_for_read(), 7);
        assert!(matches!(
            r.discard_exact(u64::MAX).await,
            Err(Error::UnexpectedEof { available: 7, .. })
        ));
    });
    println!("child child_usize_max passed");
}

/// SPEC §4.1: a count-taking read grows its buffer as bytes arrive, never toward the count:
/// with 2 MiB received of a hostile count, memory follows the 2 MiB.
#[test]
fn hostile_counts_with_bytes_arriving_grow_with_the_bytes() {
    run_child("child_bytes_arriving");
}

/// Bytes the writer sends before the hostile read has its count: 2 MiB.
const ARRIVING: usize = 2 * 1024 * 1024;

/// Feeds `ARRIVING` zero bytes into `w` while `read` waits; panics if `read` completes.
async fn feed_while_pending<F: Future>(w: &mut ByteWriteChannel, read: std::pin::Pin<&mut F>) {
    static CHUNK: [u8; 16 * 1024] = [0; 16 * 1024];
    let mut read = read;
    let feed = async {
        for _ in 0..ARRIVING / CHUNK.len() {
            w.write_fully(&CHUNK).await.unwrap();
        }
        w.flush().await.unwrap();
    };
    tokio::select! {
        biased;
        _ = read.as_mut() => panic!("completed early"),
        () = feed => {}
    }
    // The last bytes the writer handed over reach the reader.
    assert!(stays_pending(read).await, "completed early");
}

#[test]
fn child_bytes_arriving() {
    if !is_child("child_bytes_arriving") {
        return;
    }
    runtime().block_on(async {
        let what = [
            "read_bytes(u32::MAX)",
            "peek(1 << 30)",
            "await_content(usize::MAX)",
            "discard_exact(u64::MAX)",
        ];
        for (i, what) in what.into_iter().enumerate() {
            let (mut w, mut r) = ByteChannel::new(true);
            let meter = Meter::start();
            match i {
                0 => feed_while_pending(&mut w, pin!(r.read_bytes(0xFFFF_FFFF))).await,
                1 => feed_while_pending(&mut w, pin!(r.peek(1 << 30))).await,
                2 => feed_while_pending(&mut w, pin!(r.await_content(usize::MAX))).await,
                _ => feed_while_pending(&mut w, pin!(r.discard_exact(u64::MAX))).await,
            }
            meter.check(what);
            if i < 3 {
                // Nothing was consumed: the bytes that arrived are all there.
                assert_eq!(r.available_for_read(), ARRIVING, "{what}");
            }
        }
    });
    println!("child child_bytes_arriving passed");
}

/// SPEC §4.2: after `TooLongLine`, the next line read skips a 100 MiB line through its
/// delimiter in bounded memory and returns the following line.
#[test]
fn a_100_mib_line_is_skipped_in_bounded_memory() {
    run_child("child_100_mib_line");
}

#[test]
fn child_100_mib_line() {
    if !is_child("child_100_mib_line") {
        return;
    }
    const HUGE: usize = 100 * 1024 * 1024;
    runtime().block_on(async {
        let (mut w, mut r) = ByteChannel::new(false);
        let meter = Meter::start();
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            w.write_fully(b"first\n").await?;
            for _ in 0..HUGE / chunk.len() {
                w.write_fully(&chunk).await?;
            }
            w.write_fully(b"\r\nnext\n").await?;
            w.flush_and_close().await
        });
        assert_eq!(
            r.read_line(8192, LineEnding::Default)
                .await
                .unwrap()
                .as_deref(),
            Some("first")
        );
        assert!(matches!(
            r.read_line(8192, LineEnding::Default).await,
            Err(Error::TooLongLine { limit: 8192 })
        ));
        assert_eq!(
            r.read_line(8192, LineEnding::Default)
                .await
                .unwrap()
                .as_deref(),
            Some("next")
        );
        assert_eq!(r.read_line(8192, LineEnding::Default).await.unwrap(), None);
        writer.await.unwrap().unwrap();
        meter.check("a 100 MiB line skipped");
    });
    println!("child child_100_mib_line passed");
}

/// A read that the peer fills past what the process may allocate fails with an I/O error of
/// kind `OutOfMemory`, as after a transport error (the bytes received stay readable; a later read
/// that needs more fails the same); the process goes on, and another channel reads as before. (Before, the failed allocation aborted the process: "memory
/// allocation of … bytes failed".) The child's address space is limited to 1 GiB (`ulimit -v`),
/// as strict overcommit (`vm.overcommit_memory = 2`), a container's limit or a 32-bit process
/// would bound it.
#[test]
fn a_read_past_what_can_be_allocated_fails_without_ending_the_process() {
    run_child_limited("child_allocation_fails", Some(1024 * 1024));
}

#[test]
fn child_allocation_fails() {
    if !is_child("child_allocation_fails") {
        return;
    }
    runtime().block_on(async {
        let mut input = ByteReadChannel::new(tokio::io::repeat(7));
        let e = input
            .read_remaining(usize::MAX)
            .await
            .expect_err("1 GiB of address space holds no more than 1 GiB");
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::OutOfMemory),
            "{e:?}"
        );
        // As after a transport error: the bytes received stay readable, and a read that needs
        // more reports the failure again.
        assert_eq!(
            input.read_bytes(3).await.expect("bytes received").as_ref(),
            [7; 3]
        );
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
            .read_line(64, LineEnding::Lenient)
            .await
            .expect("another channel reads");
        assert_eq!(line.as_deref(), Some("still here"));
    });
    println!("child child_allocation_fails passed");
}
