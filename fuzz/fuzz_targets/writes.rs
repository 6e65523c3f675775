//! The write side: `ByteWriteChannel` against its documented contract (the `# Failures` and
//! `# Dropped writes` sections of its docs), with the checks of
//! `crates/net-io/tests/support/writes.rs` (shared with the property test
//! `crates/net-io/tests/writes_property.rs`). The fuzzer picks `auto_flush`, the transport's
//! script (take up to k bytes, `Pending`, `BrokenPipe`, a plain `TimedOut`, `Error::Timeout`)
//! and the operations (`write_fully`, `write_string_utf8`, `AsyncWriteExt::write`, typed writes, `write_frame` with
//! `LengthDelimitedCodec` or `BytesCodec`, `flush`, `flush_and_close`, `shutdown`, `cancel`),
//! each driven to completion or polled a few times and dropped. Received bytes are the calls'
//! bytes in order, none duplicated (a dropped call contributes what the docs allow); a clean
//! shutdown only with every call whole; a failed channel reports its failure to every later
//! call and its transport sees nothing more; `total_bytes_written` counts what the calls
//! accepted (while the channel is open: the bytes sent plus those buffered); memory the channel
//! holds, after every operation, and its peak between those points, stays within [`SLACK`] plus
//! twice the largest frame.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/net-io/tests/support/writes.rs"]
mod writes;

include!("../common.rs");

/// The most the channel may hold beyond twice the largest frame: its 8 KiB buffer, the 16 KiB
/// it may grow to (a small frame meeting the end of the buffer; both live while it grows),
/// and small allocations (the channel's state, a recorded failure).
const SLACK: isize = 8 * 1024 + 16 * 1024 + 8 * 1024;

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    Fully(u16),
    Fill(u8),
    Str(u16),
    Write(u16),
    Typed(u8),
    Frame(u16, bool),
    Flush,
    FlushAndClose,
    Shutdown,
    Cancel,
}

#[derive(Arbitrary, Debug)]
struct Step {
    op: Op,
    /// Dropped after `polls % 4 + 1` polls, or (`None`) driven to completion.
    polls: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    auto_flush: bool,
    script: Vec<u8>,
    steps: Vec<Step>,
}

/// Lengths up to 24 KiB: within the buffer, past the room left, past the buffer.
fn len(n: u16) -> usize {
    usize::from(n) % (24 * 1024)
}

struct Allocator;

impl writes::Meter for Allocator {
    fn outside<T>(&self, f: impl FnOnce() -> T) -> T {
        outside(f)
    }

    fn check(&self, largest_frame: usize, at: &dyn Fn() -> String) {
        check_memory(0, SLACK + 2 * largest_frame as isize, 0, at);
    }
}

fuzz_target!(|input: Input| {
    let case = writes::Case {
        auto_flush: input.auto_flush,
        script: input.script,
        steps: input
            .steps
            .iter()
            .take(64)
            .map(|s| writes::Step {
                op: match s.op {
                    Op::Fully(n) => writes::Op::Fully(len(n)),
                    Op::Fill(k) => writes::Op::Fill(k),
                    Op::Str(n) => writes::Op::Str(len(n)),
                    Op::Write(n) => writes::Op::Write(len(n)),
                    Op::Typed(t) => writes::Op::Typed(t),
                    Op::Frame(n, ld) => writes::Op::Frame(len(n), ld),
                    Op::Flush => writes::Op::Flush,
                    Op::FlushAndClose => writes::Op::FlushAndClose,
                    Op::Shutdown => writes::Op::Shutdown,
                    Op::Cancel => writes::Op::Cancel,
                },
                polls: s.polls.map(|p| p % 4),
            })
            .collect(),
    };
    start_measuring();
    writes::run(&case, &Allocator);
    stop_measuring();
});
