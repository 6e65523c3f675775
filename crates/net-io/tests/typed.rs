//! Typed reads and writes, byte-run reads and the look-ahead helpers of `ByteReadChannel`.

mod support;

use bytes::Bytes;
use net_io::{ByteChannel, ByteReadChannel, Error};
use support::{ChunkedReader, guard, poll_once};

/// The reference encoding of the value sequence used by the typed-read tests, big-endian part
/// followed by the little-endian part.
fn typed_fixture() -> Vec<u8> {
    let mut v = Vec::new();
    v.push(0xab);
    v.extend_from_slice(&(-2i8).to_be_bytes());
    v.extend_from_slice(&0x0102u16.to_be_bytes());
    v.extend_from_slice(&(-3i16).to_be_bytes());
    v.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    v.extend_from_slice(&(-5i32).to_be_bytes());
    v.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    v.extend_from_slice(&(-7i64).to_be_bytes());
    v.extend_from_slice(&1.5f32.to_be_bytes());
    v.extend_from_slice(&(-2.25f64).to_be_bytes());
    v.extend_from_slice(&0xa1a2u16.to_le_bytes());
    v.extend_from_slice(&(-300i16).to_le_bytes());
    v.extend_from_slice(&0xb1b2_b3b4u32.to_le_bytes());
    v.extend_from_slice(&(-70_000i32).to_le_bytes());
    v.extend_from_slice(&0xc1c2_c3c4_c5c6_c7c8u64.to_le_bytes());
    v.extend_from_slice(&(-5_000_000_000i64).to_le_bytes());
    v.extend_from_slice(&(-0.375f32).to_le_bytes());
    v.extend_from_slice(&1e300f64.to_le_bytes());
    v
}

/// Reads the [`typed_fixture`] sequence back and checks every value.
async fn read_typed_fixture(ch: &mut ByteReadChannel) {
    assert_eq!(guard(ch.read_u8()).await.unwrap(), 0xab);
    assert_eq!(guard(ch.read_i8()).await.unwrap(), -2);
    assert_eq!(guard(ch.read_u16()).await.unwrap(), 0x0102);
    assert_eq!(guard(ch.read_i16()).await.unwrap(), -3);
    assert_eq!(guard(ch.read_u32()).await.unwrap(), 0x0102_0304);
    assert_eq!(guard(ch.read_i32()).await.unwrap(), -5);
    assert_eq!(guard(ch.read_u64()).await.unwrap(), 0x0102_0304_0506_0708);
    assert_eq!(guard(ch.read_i64()).await.unwrap(), -7);
    assert_eq!(guard(ch.read_f32()).await.unwrap(), 1.5);
    assert_eq!(guard(ch.read_f64()).await.unwrap(), -2.25);
    assert_eq!(guard(ch.read_u16_le()).await.unwrap(), 0xa1a2);
    assert_eq!(guard(ch.read_i16_le()).await.unwrap(), -300);
    assert_eq!(guard(ch.read_u32_le()).await.unwrap(), 0xb1b2_b3b4);
    assert_eq!(guard(ch.read_i32_le()).await.unwrap(), -70_000);
    assert_eq!(
        guard(ch.read_u64_le()).await.unwrap(),
        0xc1c2_c3c4_c5c6_c7c8
    );
    assert_eq!(guard(ch.read_i64_le()).await.unwrap(), -5_000_000_000);
    assert_eq!(guard(ch.read_f32_le()).await.unwrap(), -0.375);
    assert_eq!(guard(ch.read_f64_le()).await.unwrap(), 1e300);
}

/// Every typed read (u8..f64, BE and LE) decodes correctly from an in-memory channel.
#[tokio::test]
async fn typed_reads_from_bytes() {
    let mut ch = ByteReadChannel::from_bytes(typed_fixture());
    read_typed_fixture(&mut ch).await;
    assert!(matches!(
        guard(ch.read_u8()).await,
        Err(Error::UnexpectedEof {
            needed: 1,
            available: 0
        })
    ));
}

/// Every typed read decodes correctly with one byte per read and a pause before each (KTOR-7571).
#[tokio::test]
async fn typed_reads_one_byte_per_read() {
    let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(&typed_fixture()));
    read_typed_fixture(&mut ch).await;
    assert_eq!(
        guard(ch.read_remaining(usize::MAX)).await.unwrap(),
        Bytes::new()
    );
}

/// Every typed read decodes correctly at every two-chunk split of the input.
#[tokio::test]
async fn typed_reads_at_every_split() {
    let data = typed_fixture();
    for split in 1..data.len() {
        let (a, b) = data.split_at(split);
        let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses([a, b]));
        read_typed_fixture(&mut ch).await;
    }
}

/// Typed writes emit to_be/to_le_bytes and round-trip through a ByteChannel.
#[tokio::test]
async fn typed_writes_round_trip_through_byte_channel() {
    for auto_flush in [false, true] {
        let (mut w, mut r) = ByteChannel::new(auto_flush);
        let writer = tokio::spawn(async move {
            w.write_u8(0xab).await.unwrap();
            w.write_i8(-2).await.unwrap();
            w.write_u16(0x0102).await.unwrap();
            w.write_i16(-3).await.unwrap();
            w.write_u32(0x0102_0304).await.unwrap();
            w.write_i32(-5).await.unwrap();
            w.write_u64(0x0102_0304_0506_0708).await.unwrap();
            w.write_i64(-7).await.unwrap();
            w.write_f32(1.5).await.unwrap();
            w.write_f64(-2.25).await.unwrap();
            w.write_u16_le(0xa1a2).await.unwrap();
            w.write_i16_le(-300).await.unwrap();
            w.write_u32_le(0xb1b2_b3b4).await.unwrap();
            w.write_i32_le(-70_000).await.unwrap();
            w.write_u64_le(0xc1c2_c3c4_c5c6_c7c8).await.unwrap();
            w.write_i64_le(-5_000_000_000).await.unwrap();
            w.write_f32_le(-0.375).await.unwrap();
            w.write_f64_le(1e300).await.unwrap();
            w.flush_and_close().await.unwrap();
        });
        let all = guard(r.read_remaining(usize::MAX)).await.unwrap();
        assert_eq!(&all[..], &typed_fixture()[..], "auto_flush={auto_flush}");
        writer.await.unwrap();

        let (mut w, mut r) = ByteChannel::new(auto_flush);
        let writer = tokio::spawn(async move {
            for i in 0..10_000u32 {
                w.write_u32(i.wrapping_mul(2_654_435_761)).await.unwrap();
                w.write_i16_le(-(i as i16)).await.unwrap();
                w.write_f64(f64::from(i) / 3.0).await.unwrap();
            }
            w.flush_and_close().await.unwrap();
        });
        for i in 0..10_000u32 {
            assert_eq!(
                guard(r.read_u32()).await.unwrap(),
                i.wrapping_mul(2_654_435_761)
            );
            assert_eq!(guard(r.read_i16_le()).await.unwrap(), -(i as i16));
            assert_eq!(guard(r.read_f64()).await.unwrap(), f64::from(i) / 3.0);
        }
        assert!(guard(r.read_u8()).await.is_err());
        writer.await.unwrap();
    }
}

/// EOF mid-integer is UnexpectedEof { needed, available } and the partial bytes stay readable.
#[tokio::test]
async fn eof_mid_integer_is_unexpected_eof_and_keeps_bytes() {
    let mut ch = ByteReadChannel::from_bytes(&[1u8, 2, 3][..]);
    let r = guard(ch.read_u32()).await;
    assert!(
        matches!(
            r,
            Err(Error::UnexpectedEof {
                needed: 4,
                available: 3
            })
        ),
        "got {r:?}"
    );
    let r = guard(ch.read_u64_le()).await;
    assert!(
        matches!(
            r,
            Err(Error::UnexpectedEof {
                needed: 8,
                available: 3
            })
        ),
        "got {r:?}"
    );
    let mut buf = [0u8; 8];
    assert_eq!(guard(ch.read_available(&mut buf)).await.unwrap(), 3);
    assert_eq!(&buf[..3], &[1, 2, 3]);
    assert_eq!(guard(ch.read_available(&mut buf)).await.unwrap(), 0);

    // Same when the partial bytes arrived over several reads.
    let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(&[9, 8, 7, 6, 5]));
    let r = guard(ch.read_f64()).await;
    assert!(
        matches!(
            r,
            Err(Error::UnexpectedEof {
                needed: 8,
                available: 5
            })
        ),
        "got {r:?}"
    );
    assert_eq!(ch.available_for_read(), 5);
    assert_eq!(guard(ch.read_u16()).await.unwrap(), 0x0908);
    let r = guard(ch.read_i32()).await;
    assert!(
        matches!(
            r,
            Err(Error::UnexpectedEof {
                needed: 4,
                available: 3
            })
        ),
        "got {r:?}"
    );
    assert_eq!(&guard(ch.read_bytes(3)).await.unwrap()[..], &[7, 6, 5]);

    let mut empty = ByteReadChannel::from_bytes(&b""[..]);
    let r = guard(empty.read_i16()).await;
    assert!(
        matches!(
            r,
            Err(Error::UnexpectedEof {
                needed: 2,
                available: 0
            })
        ),
        "got {r:?}"
    );
}

/// read_fully fills the slice exactly across reads, or fails with UnexpectedEof.
#[tokio::test]
async fn read_fully_fills_exactly_or_fails() {
    let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses([
        &b"hel"[..],
        b"lo wo",
        b"rld",
    ]));
    let mut buf = [0u8; 7];
    guard(ch.read_fully(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"hello w");
    let mut empty: [u8; 0] = [];
    guard(ch.read_fully(&mut empty)).await.unwrap();
    let mut buf = [0u8; 5];
    let r = guard(ch.read_fully(&mut buf)).await;
    assert!(matches!(r, Err(Error::UnexpectedEof { .. })), "got {r:?}");
}

/// read_available waits for a byte, copies what is buffered, and is Ok(0) only at EOF/empty slice.
#[tokio::test]
async fn read_available_semantics() {
    let mut ch = ByteReadChannel::from_bytes(&b"abc"[..]);
    let mut none: [u8; 0] = [];
    assert_eq!(guard(ch.read_available(&mut none)).await.unwrap(), 0);
    assert_eq!(ch.available_for_read(), 3, "empty read consumed bytes");
    let mut two = [0u8; 2];
    assert_eq!(guard(ch.read_available(&mut two)).await.unwrap(), 2);
    assert_eq!(&two, b"ab");
    assert_eq!(guard(ch.read_available(&mut two)).await.unwrap(), 1);
    assert_eq!(two[0], b'c');
    assert_eq!(guard(ch.read_available(&mut two)).await.unwrap(), 0);
    assert_eq!(guard(ch.read_available(&mut two)).await.unwrap(), 0);

    // On a live channel it waits for data rather than returning 0.
    let (mut w, mut r) = ByteChannel::new(true);
    let mut buf = [0u8; 16];
    assert!(
        poll_once(r.read_available(&mut buf)).await.is_none(),
        "read_available returned with nothing written"
    );
    w.write_fully(b"hi").await.unwrap();
    assert_eq!(guard(r.read_available(&mut none)).await.unwrap(), 0);
    assert_eq!(guard(r.read_available(&mut buf)).await.unwrap(), 2);
    assert_eq!(&buf[..2], b"hi");
    w.flush_and_close().await.unwrap();
    assert_eq!(guard(r.read_available(&mut buf)).await.unwrap(), 0);
}

/// read_bytes(n) returns exactly n bytes across reads, or UnexpectedEof when the input is short.
#[tokio::test]
async fn read_bytes_exact_or_unexpected_eof() {
    let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(b"hello world"));
    assert_eq!(guard(ch.read_bytes(0)).await.unwrap(), Bytes::new());
    assert_eq!(
        guard(ch.read_bytes(5)).await.unwrap(),
        Bytes::from_static(b"hello")
    );
    assert_eq!(
        guard(ch.read_bytes(1)).await.unwrap(),
        Bytes::from_static(b" ")
    );
    let r = guard(ch.read_bytes(6)).await;
    assert!(matches!(r, Err(Error::UnexpectedEof { .. })), "got {r:?}");

    let mut ch = ByteReadChannel::from_bytes(&b"xyz"[..]);
    assert_eq!(
        guard(ch.read_bytes(3)).await.unwrap(),
        Bytes::from_static(b"xyz")
    );
    let r = guard(ch.read_bytes(1)).await;
    assert!(matches!(r, Err(Error::UnexpectedEof { .. })), "got {r:?}");
}

/// read_remaining(limit) returns everything up to EOF but at most `limit` bytes.
#[tokio::test]
async fn read_remaining_respects_limit() {
    let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses([
        &b"hel"[..],
        b"lo wo",
        b"rld",
    ]));
    assert_eq!(
        guard(ch.read_remaining(5)).await.unwrap(),
        Bytes::from_static(b"hello")
    );
    assert_eq!(guard(ch.read_remaining(0)).await.unwrap(), Bytes::new());
    assert_eq!(
        guard(ch.read_remaining(100)).await.unwrap(),
        Bytes::from_static(b" world")
    );
    assert_eq!(guard(ch.read_remaining(100)).await.unwrap(), Bytes::new());

    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut w, mut r) = ByteChannel::new(false);
    let payload = big.clone();
    let writer = tokio::spawn(async move {
        w.write_fully(&payload).await.unwrap();
        w.flush_and_close().await.unwrap();
    });
    assert_eq!(
        &guard(r.read_remaining(usize::MAX)).await.unwrap()[..],
        &big[..]
    );
    writer.await.unwrap();
}

/// discard(max) skips up to max and counts; discard_exact(n) skips n or fails with UnexpectedEof.
#[tokio::test]
async fn discard_and_discard_exact() {
    let mut ch = ByteReadChannel::from_bytes(&b"abcdef"[..]);
    assert_eq!(guard(ch.discard(2)).await.unwrap(), 2);
    assert_eq!(guard(ch.read_u8()).await.unwrap(), b'c');
    assert_eq!(guard(ch.discard(0)).await.unwrap(), 0);
    assert_eq!(guard(ch.discard(100)).await.unwrap(), 3);
    assert_eq!(guard(ch.discard(1)).await.unwrap(), 0);

    let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(b"0123456789"));
    guard(ch.discard_exact(7)).await.unwrap();
    assert_eq!(guard(ch.read_u8()).await.unwrap(), b'7');
    guard(ch.discard_exact(0)).await.unwrap();
    let r = guard(ch.discard_exact(3)).await;
    assert!(matches!(r, Err(Error::UnexpectedEof { .. })), "got {r:?}");
}

/// await_content(min) is true once min bytes are buffered (consuming none), false at EOF.
#[tokio::test]
async fn await_content_semantics() {
    let mut ch = ByteReadChannel::from_bytes(&b"abc"[..]);
    assert!(guard(ch.await_content(0)).await.unwrap());
    assert!(guard(ch.await_content(3)).await.unwrap());
    assert!(!guard(ch.await_content(4)).await.unwrap());
    assert_eq!(ch.available_for_read(), 3);
    assert_eq!(
        guard(ch.read_bytes(3)).await.unwrap(),
        Bytes::from_static(b"abc")
    );
    assert!(!guard(ch.await_content(1)).await.unwrap());

    let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(b"wxyz"));
    assert!(guard(ch.await_content(4)).await.unwrap());
    assert!(ch.available_for_read() >= 4);
    assert_eq!(
        guard(ch.read_u32()).await.unwrap(),
        u32::from_be_bytes(*b"wxyz")
    );
}

/// peek(n) returns the next n bytes without consuming them, None at EOF with fewer.
#[tokio::test]
async fn peek_looks_ahead_without_consuming() {
    let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(b"abc"));
    assert_eq!(
        guard(ch.peek(2)).await.unwrap(),
        Some(Bytes::from_static(b"ab"))
    );
    assert_eq!(
        guard(ch.peek(3)).await.unwrap(),
        Some(Bytes::from_static(b"abc"))
    );
    assert_eq!(guard(ch.peek(4)).await.unwrap(), None);
    assert_eq!(guard(ch.peek(0)).await.unwrap(), Some(Bytes::new()));
    assert_eq!(guard(ch.read_u8()).await.unwrap(), b'a');
    assert_eq!(
        guard(ch.peek(2)).await.unwrap(),
        Some(Bytes::from_static(b"bc"))
    );
    assert_eq!(
        guard(ch.read_bytes(2)).await.unwrap(),
        Bytes::from_static(b"bc")
    );
}

/// skip_if_found consumes the pattern only when the next bytes match it.
#[tokio::test]
async fn skip_if_found_consumes_only_a_match() {
    let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(b"abcdef"));
    assert!(!guard(ch.skip_if_found(b"abd")).await.unwrap());
    assert!(!guard(ch.skip_if_found(b"xyz")).await.unwrap());
    assert!(guard(ch.skip_if_found(b"abc")).await.unwrap());
    assert!(guard(ch.skip_if_found(b"")).await.unwrap());
    assert!(
        !guard(ch.skip_if_found(b"defg")).await.unwrap(),
        "pattern longer than the rest"
    );
    assert_eq!(
        guard(ch.read_remaining(100)).await.unwrap(),
        Bytes::from_static(b"def")
    );
}

/// available_for_read counts buffered bytes; is_closed_for_read needs EOF and an empty buffer.
#[tokio::test]
async fn available_and_closed_state() {
    let mut ch = ByteReadChannel::from_bytes(&b"ab"[..]);
    assert_eq!(ch.available_for_read(), 2);
    assert!(!ch.is_closed_for_read());
    assert_eq!(guard(ch.read_u8()).await.unwrap(), b'a');
    assert_eq!(ch.available_for_read(), 1);
    assert!(!ch.is_closed_for_read());
    assert_eq!(guard(ch.read_u8()).await.unwrap(), b'b');
    assert_eq!(ch.available_for_read(), 0);
    assert!(ch.is_closed_for_read());

    let (mut w, mut r) = ByteChannel::new(true);
    assert!(!r.is_closed_for_read());
    w.write_fully(b"xy").await.unwrap();
    assert!(guard(r.await_content(2)).await.unwrap());
    assert_eq!(r.available_for_read(), 2);
    w.flush_and_close().await.unwrap();
    assert!(
        !r.is_closed_for_read(),
        "closed while bytes are still buffered"
    );
    assert_eq!(
        guard(r.read_u16()).await.unwrap(),
        u16::from_be_bytes(*b"xy")
    );
    assert!(!guard(r.await_content(1)).await.unwrap());
    assert!(r.is_closed_for_read());
}

/// from_bytes holds exactly the given bytes (any Into<Bytes>) and is already at EOF.
#[tokio::test]
async fn from_bytes_holds_exactly_those_bytes() {
    let mut a = ByteReadChannel::from_bytes(vec![1u8, 2, 3]);
    assert_eq!(a.available_for_read(), 3);
    assert_eq!(
        guard(a.read_remaining(usize::MAX)).await.unwrap(),
        Bytes::from_static(&[1, 2, 3])
    );
    assert!(a.is_closed_for_read());

    let mut b = ByteReadChannel::from_bytes("text");
    assert_eq!(
        guard(b.read_remaining(usize::MAX)).await.unwrap(),
        Bytes::from_static(b"text")
    );
    let mut c = ByteReadChannel::from_bytes(String::from("owned"));
    assert_eq!(
        guard(c.read_remaining(usize::MAX)).await.unwrap(),
        Bytes::from_static(b"owned")
    );
    let mut d = ByteReadChannel::from_bytes(Bytes::from_static(b"bytes"));
    assert_eq!(
        guard(d.read_remaining(usize::MAX)).await.unwrap(),
        Bytes::from_static(b"bytes")
    );

    let e = ByteReadChannel::from_bytes(Bytes::new());
    assert_eq!(e.available_for_read(), 0);
    assert!(e.is_closed_for_read());
}
