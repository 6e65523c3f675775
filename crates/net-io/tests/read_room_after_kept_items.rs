//! The room a channel offers its transport once its buffer was made anew: after it handed out
//! a run without a copy (`read_bytes` of 1 KiB or more, sharing the buffer's allocation) that
//! the application keeps, and after a `read_fully` that timed out gave its bytes back.
//! `ByteReadChannel`'s docs say that reads from the transport go "into a buffer of 8 KiB or
//! more" (after the first, of at most 1 KiB).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use net_io::ByteReadChannel;
use tokio::io::{AsyncRead, ReadBuf};

/// An endless transport that records the room each read is offered; its first reads return
/// at most the sizes given (0: a timeout instead), the later ones fill all the room.
struct Recording {
    offered: Arc<Mutex<Vec<usize>>>,
    sizes: Vec<usize>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.offered.lock().unwrap().push(buf.remaining());
        let n = if self.sizes.is_empty() {
            buf.remaining()
        } else {
            self.sizes.remove(0).min(buf.remaining())
        };
        if n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                net_io::Error::Timeout,
            )));
        }
        buf.put_slice(&vec![7; n]);
        Poll::Ready(Ok(()))
    }
}

/// A message of 8,092 bytes (in reads of 1,000 and 7,092 bytes) handed out without a copy and
/// kept, leaving 100 bytes of room in the allocation it shares; then items of 512 bytes, each
/// read from the transport finding the buffer empty. Those reads were offered 4 KiB, for as
/// long as the connection lived (the buffer made for them was 4 KiB, which an emptied buffer
/// keeps): twice the reads, and system calls, that the documented 8 KiB take.
#[tokio::test]
async fn reads_after_a_kept_run_are_offered_a_buffer_of_8_kib() {
    let offered = Arc::new(Mutex::new(Vec::new()));
    let mut input = ByteReadChannel::new(Recording {
        offered: Arc::clone(&offered),
        sizes: vec![1000, 7092],
    });
    let kept: Bytes = input.read_bytes(8092).await.unwrap();
    let before = offered.lock().unwrap().len();
    for _ in 0..64 {
        input.read_bytes(512).await.unwrap();
    }
    let later = offered.lock().unwrap()[before..].to_vec();
    assert!(!later.is_empty());
    assert!(
        later.iter().all(|&room| room >= 8 * 1024),
        "rooms offered after a kept run of {} bytes: {later:?}",
        kept.len()
    );
}

/// The same with bytes of the next item buffered when the room runs out: a run handed out
/// without a copy and kept, then small items that leave a few bytes buffered before each read
/// from the transport. The buffer made for them was those bytes and 4 KiB.
#[tokio::test]
async fn reads_after_a_kept_run_with_bytes_left_are_offered_8_kib() {
    let offered = Arc::new(Mutex::new(Vec::new()));
    let mut input = ByteReadChannel::new(Recording {
        offered: Arc::clone(&offered),
        sizes: vec![1024, 7168],
    });
    // 2,000 bytes without a copy, kept; then items of 500 bytes, so that each read from the
    // transport finds part of an item buffered.
    let kept: Bytes = input.read_bytes(2000).await.unwrap();
    let before = offered.lock().unwrap().len();
    for _ in 0..64 {
        input.read_bytes(500).await.unwrap();
    }
    let later = offered.lock().unwrap()[before..].to_vec();
    assert!(!later.is_empty());
    // A buffer of 8 KiB holds less than one item (500 bytes) besides the room.
    assert!(
        later.iter().all(|&room| room >= 8 * 1024 - 500),
        "rooms offered after a kept run of {} bytes: {later:?}",
        kept.len()
    );
}

/// `read_fully` gives the bytes it took back to the buffer when it times out (a retry reads
/// them again); the buffer it made for them held exactly those bytes. Those few, then emptied
/// by the reads after, left the channel reading into that much (5,000 bytes here) for as long
/// as it lived.
#[tokio::test]
async fn reads_after_a_read_fully_that_timed_out_are_offered_8_kib() {
    let offered = Arc::new(Mutex::new(Vec::new()));
    let mut input = ByteReadChannel::new(Recording {
        offered: Arc::clone(&offered),
        sizes: vec![1000, 4000, 0],
    });
    let mut dst = [0; 6000];
    let timed_out = input.read_fully(&mut dst).await;
    assert!(
        matches!(timed_out, Err(net_io::Error::Timeout)),
        "{timed_out:?}"
    );
    assert_eq!(input.available_for_read(), 5000);
    let before = offered.lock().unwrap().len();
    for _ in 0..64 {
        input.read_bytes(500).await.unwrap();
    }
    let later = offered.lock().unwrap()[before..].to_vec();
    assert!(!later.is_empty());
    assert!(
        later.iter().all(|&room| room >= 8 * 1024 - 500),
        "rooms offered after a read_fully that timed out: {later:?}"
    );
}
