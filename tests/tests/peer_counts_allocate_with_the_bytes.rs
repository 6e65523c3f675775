//! Memory follows bytes received, never a number the peer sent (SPEC §4.1, §4.6), over each
//! transport (TCP, Unix, TLS): a read told a count that the peer chose (a length prefix saying
//! 4 GiB) while the peer sends a few bytes and then waits, or ends, makes no allocation larger
//! than what a few bytes ask for. A counting allocator records the largest single allocation
//! of the process while each read runs (the scenarios run one at a time). `read_fully` takes
//! no count but a destination, which its caller allocates (here 1 MiB, before the measure):
//! the read itself adds nothing of that size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_tests::pairs::{self, Kind, SKIPPED, Setup};
use net_tests::pki::Pki;
use net_tests::{pending_after_one_poll, within};
use tokio::io::AsyncWriteExt;

/// The system allocator, recording the largest single allocation while `WATCHING`.
struct Largest;

static WATCHING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn record(size: usize) {
    if WATCHING.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every call goes to `System` unchanged; recording touches only atomics.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// The most one allocation may take while a read waits on a few bytes: a read buffer of a few
/// chunks (the usual 8 KiB, a step of 64 KiB), a TLS record, a runtime's own structures.
const MOST: usize = 256 * 1024;

/// Counts a peer may send as a length prefix.
const COUNTS: [u64; 3] = [u32::MAX as u64, 4 << 30, u64::MAX];

/// `n` as a `usize`, `usize::MAX` where it does not fit (a 32-bit target).
fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The reads told `n`, by name.
const READS: [&str; 10] = [
    "read_bytes",
    "peek",
    "await_content",
    "discard_exact",
    "read_remaining",
    "read_line",
    "read_until",
    "skip_if_found",
    "copy_to",
    "read_fully",
];

/// What a read needs besides the count, made before the measured window.
struct Extras {
    /// A pattern of 1 MiB that starts with the bytes the peer sends.
    pattern: Vec<u8>,
    /// A destination that takes everything.
    sink: ByteWriteChannel,
    /// `read_fully`'s destination, of 1 MiB: the caller's memory, not the channel's.
    dst: Vec<u8>,
}

impl Extras {
    fn new() -> Extras {
        let mut pattern = SENT.to_vec();
        pattern.resize(1 << 20, b'x');
        Extras {
            pattern,
            sink: ByteWriteChannel::new(tokio::io::sink(), true),
            dst: vec![0; 1 << 20],
        }
    }
}

/// What the peer sends: no delimiter, far fewer bytes than any count.
const SENT: &[u8] = b"abcde";

async fn read(input: &mut ByteReadChannel, extras: &mut Extras, what: &str, n: u64) {
    // Each fails or ends short, or waits: only the memory it takes counts here.
    match what {
        "read_bytes" => drop(input.read_bytes(clamp(n)).await),
        "peek" => drop(input.peek(clamp(n)).await),
        "await_content" => drop(input.await_content(clamp(n)).await),
        "discard_exact" => drop(input.discard_exact(n).await),
        "read_remaining" => drop(input.read_remaining(clamp(n)).await),
        "read_line" => drop(input.read_line(clamp(n), LineEnding::Default).await),
        "skip_if_found" => drop(input.skip_if_found(&extras.pattern).await),
        "copy_to" => drop(input.copy_to(&mut extras.sink, n).await),
        "read_fully" => drop(input.read_fully(&mut extras.dst).await),
        _ => drop(input.read_until(b"\r\n", clamp(n)).await),
    }
}

/// Runs `scenario`, recording the largest allocation meanwhile.
async fn largest_during<F: Future<Output = ()>>(scenario: F) -> usize {
    LARGEST.store(0, Ordering::Relaxed);
    WATCHING.store(true, Ordering::Relaxed);
    scenario.await;
    WATCHING.store(false, Ordering::Relaxed);
    LARGEST.load(Ordering::Relaxed)
}

/// One connection of `kind`: the peer sends [`SENT`], then waits or (`end`) ends, and `what`
/// is told `n`; the largest allocation while it runs (`None`: a TLS handshake timed out).
async fn one(kind: Kind, pki: &Pki, what: &str, n: u64, end: bool) -> Option<usize> {
    let pair = match pairs::connect(kind, pki, Setup::default()).await {
        Ok(pair) => pair,
        Err(e) if e == SKIPPED => return None,
        Err(e) => panic!("{kind:?}: {e}"),
    };
    let pairs::Pair {
        selector: _selector,
        listener: _listener,
        mut peer,
        mut ours,
        dir: _dir,
    } = pair;
    let (mut input, _output) = ours.channels(true);
    let mut extras = Extras::new();
    within(peer.write_all(SENT)).await.unwrap();
    within(peer.flush()).await.unwrap();
    let largest = if end {
        within(peer.shutdown()).await.unwrap();
        largest_during(async { within(read(&mut input, &mut extras, what, n)).await }).await
    } else {
        // The bytes are in before the read starts, which must then wait on the transport.
        assert!(within(input.await_content(SENT.len())).await.unwrap());
        largest_during(async {
            let mut reading = pin!(read(&mut input, &mut extras, what, n));
            for _ in 0..3 {
                assert!(
                    pending_after_one_poll(reading.as_mut()).await,
                    "{kind:?} {what}({n}): the read ended while the peer waits"
                );
            }
        })
        .await
    };
    drop(peer);
    Some(largest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_told_a_peers_count_allocate_with_the_bytes_over_every_transport() {
    let pki = Pki::generate();
    let mut failures = Vec::new();
    for kind in [Kind::Tcp, Kind::Unix, Kind::Tls] {
        for what in READS {
            for n in COUNTS {
                for end in [false, true] {
                    let Some(largest) = one(kind, &pki, what, n, end).await else {
                        continue;
                    };
                    if largest > MOST {
                        failures.push(format!(
                            "{kind:?} {what}({n}), peer {}: {largest} bytes at once",
                            if end { "ended" } else { "waits" }
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
