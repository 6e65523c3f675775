//! Error conversions across the three crates, typed reads, encoders.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use net_io::{ByteChannel, ByteReadChannel, LineEnding};
use tokio::io::{AsyncRead, ReadBuf};

/// A transport that fails every read with the error `make` returns.
struct Failing<F>(F);
impl<F: Fn() -> io::Error + Unpin> AsyncRead for Failing<F> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err((self.0)()))
    }
}

fn net_io_variants() -> Vec<net_io::Error> {
    NET_IO_VARIANTS.iter().map(|make| make()).collect()
}

#[test]
fn net_io_variants_round_trip_twice_through_io_error() {
    for e in net_io_variants() {
        let want = format!("{e:?}");
        let kind = e.kind();
        let io1 = io::Error::from(e);
        assert_eq!(io1.kind(), kind);
        let e1 = net_io::Error::from(io1);
        assert_eq!(format!("{e1:?}"), want);
        let e2 = net_io::Error::from(io::Error::from(e1));
        assert_eq!(format!("{e2:?}"), want);
        // And through net_sockets and back.
        let s = net_sockets::Error::from(e2);
        let e3 = net_io::Error::from(io::Error::from(s));
        assert_eq!(format!("{e3:?}"), want, "through net_sockets");
    }
}

/// Each `net_io` variant, made afresh (for a transport that fails every read with it).
const NET_IO_VARIANTS: [fn() -> net_io::Error; 5] = [
    || net_io::Error::TooLongLine { limit: 9 },
    || net_io::Error::UnexpectedEof {
        needed: 4,
        available: 3,
    },
    || net_io::Error::ClosedForWrite,
    || net_io::Error::Cancelled,
    || net_io::Error::Timeout,
];

#[tokio::test]
async fn a_channel_reports_an_io_error_carrying_a_net_io_error_as_that_variant_every_time() {
    for make in NET_IO_VARIANTS {
        let want = format!("{:?}", make());
        let mut input = ByteReadChannel::new(Failing(move || io::Error::other(make())));
        for round in 0..3 {
            // A timeout leaves the channel usable; the others are reported again.
            let got = input.read_u32().await.unwrap_err();
            assert_eq!(format!("{got:?}"), want, "round {round}");
            let back = net_io::Error::from(io::Error::from(got));
            assert_eq!(format!("{back:?}"), want, "round {round}");
        }
    }
}

#[tokio::test]
async fn net_sockets_variants_inside_a_channel_failure_come_back() {
    use net_sockets::Error as S;
    type Make = fn() -> S;
    let cases: [(Make, &str); 5] = [
        (|| S::Closed, "Closed"),
        (|| S::SelectorClosed, "SelectorClosed"),
        (|| S::Timeout, "Timeout"),
        (|| S::ChannelAlreadyOpen, "ChannelAlreadyOpen"),
        (|| S::DatagramTooLarge { size: 70000 }, "DatagramTooLarge"),
    ];
    let mut lost = Vec::new();
    for (make, name) in cases {
        let mut input = ByteReadChannel::new(Failing(move || io::Error::from(make())));
        for round in 0..2 {
            let got = input.read_line(80, LineEnding::Default).await.unwrap_err();
            let s = S::from(got);
            let dbg = format!("{s:?}");
            if !dbg.starts_with(name) {
                lost.push(format!("{name} round {round}: {dbg}"));
            }
        }
    }
    assert!(lost.is_empty(), "{lost:#?}");
}

#[test]
fn display_and_source_chain_print_each_message_once() {
    #[derive(Debug)]
    struct Inner;
    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("inner-msg")
        }
    }
    impl std::error::Error for Inner {}
    let chain = |e: &dyn std::error::Error| {
        let mut s = e.to_string();
        let mut cur = e.source();
        while let Some(c) = cur {
            s.push_str(" / ");
            s.push_str(&c.to_string());
            cur = c.source();
        }
        s
    };
    let io = io::Error::other(Inner);
    let e = net_io::Error::from(io);
    assert_eq!(chain(&e).matches("inner-msg").count(), 1, "{}", chain(&e));
    let s = net_sockets::Error::from(e);
    assert_eq!(chain(&s).matches("inner-msg").count(), 1, "{}", chain(&s));
    let t = net_tls::Error::from(s);
    assert_eq!(chain(&t).matches("inner-msg").count(), 1, "{}", chain(&t));
    let io = io::Error::from(t);
    assert_eq!(chain(&io).matches("inner-msg").count(), 1, "{}", chain(&io));
    for v in net_io_variants() {
        let io = io::Error::from(v);
        let c = chain(&io);
        assert!(!c.contains(" / "), "{c}");
    }
}

#[tokio::test]
async fn nan_payloads_and_partial_values() {
    let (mut out, mut input) = ByteChannel::new(true);
    let nan32 = f32::from_bits(0x7fa0_0001);
    let nan64 = f64::from_bits(0xfff0_0000_dead_beef);
    out.write_f32(nan32).await.unwrap();
    out.write_f64_le(nan64).await.unwrap();
    out.write_u8(1).await.unwrap();
    out.write_u8(2).await.unwrap();
    out.write_u8(3).await.unwrap();
    out.flush_and_close().await.unwrap();
    assert_eq!(input.read_f32().await.unwrap().to_bits(), 0x7fa0_0001);
    assert_eq!(
        input.read_f64_le().await.unwrap().to_bits(),
        0xfff0_0000_dead_beef
    );
    let e = input.read_u32_le().await.unwrap_err();
    assert!(
        matches!(
            e,
            net_io::Error::UnexpectedEof {
                needed: 4,
                available: 3
            }
        ),
        "{e:?}"
    );
    assert_eq!(input.read_u16().await.unwrap(), 0x0102);
    assert_eq!(input.read_u8().await.unwrap(), 3);
}

struct HalfThenFail;
impl tokio_util::codec::Encoder<usize> for HalfThenFail {
    type Error = io::Error;
    fn encode(&mut self, n: usize, dst: &mut BytesMut) -> io::Result<()> {
        dst.reserve(n);
        dst.extend_from_slice(b"partial");
        Err(io::Error::new(io::ErrorKind::InvalidInput, "nope"))
    }
}

struct Empty;
impl tokio_util::codec::Encoder<()> for Empty {
    type Error = io::Error;
    fn encode(&mut self, _: (), _: &mut BytesMut) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failing_and_empty_encoders() {
    let (mut out, mut input) = ByteChannel::new(false);
    out.write_u8(b'a').await.unwrap();
    let e = out
        .write_frame(&mut HalfThenFail, 64 << 20)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    out.write_frame(&mut Empty, ()).await.unwrap();
    out.write_u8(b'b').await.unwrap();
    out.flush_and_close().await.unwrap();
    let all = input.read_remaining(1 << 20).await.unwrap();
    assert_eq!(&all[..], b"ab");
}

/// A transport that fails its first read with `net_sockets::Error::Timeout` (as an `io::Error`)
/// and then delivers `b"ok"` and ends.
struct TimeoutThenData(u8);
impl AsyncRead for TimeoutThenData {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0 += 1;
        match self.0 {
            1 => Poll::Ready(Err(net_sockets::Error::Timeout.into())),
            2 => {
                buf.put_slice(b"ok");
                Poll::Ready(Ok(()))
            }
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[tokio::test]
async fn a_net_sockets_timeout_from_a_transport_is_a_channel_timeout_not_a_failure() {
    let mut input = ByteReadChannel::new(TimeoutThenData(0));
    let e = input.read_u16().await.unwrap_err();
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    assert_eq!(input.read_u16().await.unwrap(), u16::from_be_bytes(*b"ok"));
}

/// `read_fully` at the end of the stream: the bytes that did arrive are in `dst`, consumed (as
/// `Error::UnexpectedEof` says), not buffered again as they are after a typed read or
/// `read_bytes`.
#[tokio::test]
async fn read_fully_at_the_end_leaves_the_partial_bytes_in_dst_not_in_the_channel() {
    let mut input = ByteReadChannel::new(&b"abc"[..]);
    let mut dst = [0u8; 4];
    let e = input.read_fully(&mut dst).await.unwrap_err();
    assert!(
        matches!(
            e,
            net_io::Error::UnexpectedEof {
                needed: 4,
                available: 3
            }
        ),
        "{e:?}"
    );
    assert_eq!(&dst[..3], b"abc");
    assert_eq!(input.read_remaining(16).await.unwrap().len(), 0);

    let mut input = ByteReadChannel::new(&b"abc"[..]);
    input.read_bytes(4).await.unwrap_err();
    assert_eq!(&input.read_remaining(16).await.unwrap()[..], b"abc");
}
