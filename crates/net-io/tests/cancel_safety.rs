//! Cancel safety (SPEC §2.1): dropping a pending read future after part of its item arrived
//! loses nothing; the next read sees every byte.

mod support;

use bytes::Bytes;
use net_io::{ByteChannel, ByteReadChannel, LineEnding};
use support::{ChunkedReader, Step, guard, poll_once};

/// A read_line (any variant) dropped mid-line loses nothing: the next call returns the whole line.
#[tokio::test]
async fn dropped_read_line_mid_line_loses_nothing() {
    for ending in [LineEnding::Default, LineEnding::Lenient] {
        let (mut w, mut r) = ByteChannel::new(true);
        w.write_fully(b"hel").await.unwrap();
        assert!(poll_once(r.read_line(100, ending)).await.is_none());
        assert_eq!(
            r.available_for_read(),
            3,
            "the dropped read had not received the bytes"
        );
        w.write_fully(b"lo\nnext").await.unwrap();
        assert_eq!(
            guard(r.read_line(100, ending)).await.unwrap().as_deref(),
            Some("hello"),
            "{ending:?}"
        );
        assert!(poll_once(r.read_line_strict(100, ending)).await.is_none());
        w.write_fully(b" one\r\n").await.unwrap();
        assert_eq!(
            guard(r.read_line_strict(100, ending))
                .await
                .unwrap()
                .as_deref(),
            Some("next one"),
            "{ending:?}"
        );
        w.write_fully(b"\xe2\x82").await.unwrap();
        assert!(poll_once(r.read_utf8_line(100)).await.is_none());
        w.write_fully(b"\xac\n").await.unwrap();
        assert_eq!(
            guard(r.read_utf8_line(100)).await.unwrap().as_deref(),
            Some("\u{20ac}")
        );
    }
}

/// A read_line dropped while waiting on a trailing CR loses nothing and adds no empty line.
#[tokio::test]
async fn dropped_read_line_waiting_on_cr_loses_nothing() {
    for ending in [LineEnding::Default, LineEnding::Lenient] {
        let (mut w, mut r) = ByteChannel::new(true);
        w.write_fully(b"abc\r").await.unwrap();
        assert!(poll_once(r.read_line(100, ending)).await.is_none());
        w.write_fully(b"\nx\n").await.unwrap();
        w.flush_and_close().await.unwrap();
        assert_eq!(
            guard(r.read_line(100, ending)).await.unwrap().as_deref(),
            Some("abc")
        );
        assert_eq!(
            guard(r.read_line(100, ending)).await.unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(guard(r.read_line(100, ending)).await.unwrap(), None);
    }
}

/// A dropped read_line_to leaves the String untouched; the next call appends the whole line.
#[tokio::test]
async fn dropped_read_line_to_does_not_modify_string() {
    for ending in [LineEnding::Default, LineEnding::Lenient] {
        let (mut w, mut r) = ByteChannel::new(true);
        let mut out = String::from("keep:");
        w.write_fully("par\u{e9}".as_bytes()).await.unwrap();
        assert!(
            poll_once(r.read_line_to(&mut out, 100, ending))
                .await
                .is_none()
        );
        assert_eq!(out, "keep:", "the dropped read_line_to modified the string");
        w.write_fully(b"tial\r\n").await.unwrap();
        assert_eq!(
            guard(r.read_line_to(&mut out, 100, ending)).await.unwrap(),
            Some(9)
        );
        assert_eq!(out, "keep:par\u{e9}tial");
    }
}

/// A read_u64 dropped after 3 of 8 bytes (and read_i32_le after 1 of 4) loses nothing.
#[tokio::test]
async fn dropped_typed_read_loses_nothing() {
    let value = 0x0102_0304_0506_0708u64;
    let bytes = value.to_be_bytes();
    let (mut w, mut r) = ByteChannel::new(true);
    w.write_fully(&bytes[..3]).await.unwrap();
    assert!(poll_once(r.read_u64()).await.is_none());
    assert_eq!(
        r.available_for_read(),
        3,
        "the dropped read had not received the bytes"
    );
    w.write_fully(&bytes[3..]).await.unwrap();
    assert_eq!(guard(r.read_u64()).await.unwrap(), value);

    let le = (-123_456i32).to_le_bytes();
    w.write_fully(&le[..1]).await.unwrap();
    assert!(poll_once(r.read_i32_le()).await.is_none());
    w.write_fully(&le[1..]).await.unwrap();
    assert_eq!(guard(r.read_i32_le()).await.unwrap(), -123_456);
}

/// A read_bytes(5) dropped after 2 bytes arrived loses nothing: the next call returns all 5.
#[tokio::test]
async fn dropped_read_bytes_loses_nothing() {
    let (mut w, mut r) = ByteChannel::new(true);
    w.write_fully(b"ab").await.unwrap();
    assert!(poll_once(r.read_bytes(5)).await.is_none());
    w.write_fully(b"cde").await.unwrap();
    assert_eq!(
        guard(r.read_bytes(5)).await.unwrap(),
        Bytes::from_static(b"abcde")
    );
}

/// Dropped peek, await_content, skip_if_found (partial match) and read_remaining lose nothing.
#[tokio::test]
async fn dropped_lookahead_and_read_remaining_lose_nothing() {
    let (mut w, mut r) = ByteChannel::new(true);
    w.write_fully(b"ab").await.unwrap();
    assert!(poll_once(r.peek(4)).await.is_none());
    assert!(poll_once(r.await_content(4)).await.is_none());
    assert!(poll_once(r.skip_if_found(b"abc")).await.is_none());
    assert_eq!(r.available_for_read(), 2);
    w.write_fully(b"cd").await.unwrap();
    assert_eq!(
        guard(r.peek(4)).await.unwrap(),
        Some(Bytes::from_static(b"abcd"))
    );
    assert!(guard(r.skip_if_found(b"abc")).await.unwrap());
    assert!(poll_once(r.read_remaining(100)).await.is_none());
    w.write_fully(b"ef").await.unwrap();
    w.flush_and_close().await.unwrap();
    assert_eq!(
        guard(r.read_remaining(100)).await.unwrap(),
        Bytes::from_static(b"def")
    );
}

/// Over a plain AsyncRead, line and typed reads dropped after a partial chunk lose nothing.
#[tokio::test]
async fn dropped_read_over_async_read_loses_nothing() {
    let mut r = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"hel".to_vec()),
        Step::Pending,
        Step::Data(b"lo\n".to_vec()),
        Step::Data(vec![0, 0, 1]),
        Step::Pending,
        Step::Data(vec![0]),
    ]));
    assert!(
        poll_once(r.read_line(100, LineEnding::Default))
            .await
            .is_none()
    );
    assert_eq!(
        guard(r.read_line(100, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("hello")
    );
    assert!(poll_once(r.read_u32()).await.is_none());
    assert_eq!(guard(r.read_u32()).await.unwrap(), 256);
}

/// A read_line that loses a tokio::select! race loses no bytes of its line.
#[tokio::test]
async fn read_line_losing_a_select_race_loses_nothing() {
    let (mut w, mut r) = ByteChannel::new(true);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    w.write_fully(b"first ha").await.unwrap();
    tx.send(()).unwrap();
    tokio::select! {
        biased;
        line = r.read_line(100, LineEnding::Default) => panic!("line completed early: {line:?}"),
        _ = rx.recv() => {}
    }
    w.write_fully(b"lf\n").await.unwrap();
    assert_eq!(
        guard(r.read_line(100, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("first half")
    );
}

/// A cancel-safe read that waits and is dropped before it took a byte (a lost `select!`
/// branch, a timeout) leaves the skip of an over-long line due, as `read_available` does: the
/// next line read still skips the rest of that line, and does not return its tail as a line.
/// Here the skip has already begun (a line read dropped mid-skip), so the buffer starts in the
/// middle of the over-long line: a lost skip would hand its tail ("QUIT") to the server as a
/// line of its own.
#[tokio::test]
async fn a_dropped_read_keeps_the_skip_of_an_over_long_line() {
    use tokio_util::codec::LinesCodec;
    for read in [
        "read_u32",
        "read_u16_le",
        "read_bytes",
        "read_remaining",
        "skip_if_found",
        "read_frame",
    ] {
        let (mut w, mut r) = ByteChannel::new(true);
        w.write_fully(b"toolong").await.unwrap();
        assert!(matches!(
            r.read_line(4, LineEnding::Default).await,
            Err(net_io::Error::TooLongLine { limit: 4 })
        ));
        // A line read skips what arrived of the over-long line, then waits: dropped there.
        assert!(
            poll_once(r.read_line(100, LineEnding::Default))
                .await
                .is_none()
        );
        assert_eq!(r.available_for_read(), 0);
        let mut codec = LinesCodec::new();
        let pending = match read {
            "read_u32" => poll_once(r.read_u32()).await.is_none(),
            "read_u16_le" => poll_once(r.read_u16_le()).await.is_none(),
            "read_bytes" => poll_once(r.read_bytes(4)).await.is_none(),
            "read_remaining" => poll_once(r.read_remaining(4)).await.is_none(),
            "skip_if_found" => poll_once(r.skip_if_found(b"QU")).await.is_none(),
            _ => poll_once(r.read_frame(&mut codec)).await.is_none(),
        };
        assert!(pending, "{read} waits");
        w.write_fully(b"QUIT\nnext\n").await.unwrap();
        assert_eq!(
            guard(r.read_line(100, LineEnding::Default))
                .await
                .unwrap()
                .as_deref(),
            Some("next"),
            "after a dropped {read}"
        );
    }
}
