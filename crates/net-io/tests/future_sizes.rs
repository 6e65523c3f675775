//! The futures of the calls a connection's task awaits stay small: a task holds the largest
//! future it awaits for its whole life, so their size is memory per connection, and bytes
//! copied each time the task's future moves (into its task, when spawned).
//!
//! The bounds leave room for the compiler's layout; each is well under what the calls took
//! when they were written as nested `async` bodies (136 bytes for a write).

use net_io::{ByteChannel, LineEnding};

/// Fails with the size when `future` is larger than `limit` bytes.
fn at_most<F: Future>(what: &str, future: F, limit: usize) {
    let size = std::mem::size_of_val(&future);
    assert!(
        size <= limit,
        "{what}'s future is {size} bytes, over {limit}"
    );
}

#[test]
fn writes_and_line_reads_are_small_futures() {
    let (mut output, mut input) = ByteChannel::new(true);
    at_most("write_fully", output.write_fully(b"x"), 64);
    at_most("write_string_utf8", output.write_string_utf8("x"), 64);
    at_most("write_bytes", output.write_bytes(bytes::Bytes::new()), 80);
    at_most("write_u8", output.write_u8(1), 64);
    at_most("write_f64", output.write_f64(1.0), 64);
    at_most("flush", output.flush(), 64);
    let mut line = String::new();
    at_most(
        "read_line_to",
        input.read_line_to(&mut line, 80, LineEnding::Default),
        64,
    );
}

/// The channels themselves live in the task of every connection that reads and writes: a
/// failure a channel keeps, and the rest of an over-long line it owes a skip, are rare, and
/// boxed (they took 24 bytes each in every channel: 128 and 112 bytes before). Where a line
/// read stopped scanning a partial line (so that one started again after a cancel goes on from
/// there) is boxed too, with a flag in the channel: 96 bytes before it, 104 with it.
#[test]
fn channels_are_small() {
    use net_io::{ByteReadChannel, ByteWriteChannel};
    let read = std::mem::size_of::<ByteReadChannel>();
    let write = std::mem::size_of::<ByteWriteChannel>();
    assert!(read <= 104, "ByteReadChannel is {read} bytes, over 104");
    assert!(write <= 96, "ByteWriteChannel is {write} bytes, over 96");
}
