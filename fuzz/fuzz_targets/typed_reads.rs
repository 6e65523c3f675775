//! Typed reads and byte-run reads against a cursor over the same bytes, with the input cut into
//! chunks chosen by the fuzzer: every value is assembled across chunk boundaries correctly, and
//! a read that runs out of input fails with `UnexpectedEof` and consumes nothing.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_io::{ByteReadChannel, Error};

include!("../common.rs");

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    U8,
    I16,
    U16Le,
    U32,
    I32Le,
    U64,
    U64Le,
    F32,
    F64Le,
    Bytes(u16),
    Peek(u8),
    Discard(u16),
    SkipIfFound(Vec<u8>),
    AwaitContent(u8),
}

#[derive(Arbitrary, Debug)]
struct Case {
    ops: Vec<Op>,
    chunks: Vec<Vec<u8>>,
}

/// What the model says an operation yields: the bytes it returns, and how many it consumes.
fn expected(op: &Op, rest: &[u8]) -> (Result<Vec<u8>, usize>, usize) {
    let take = |n: usize| {
        if rest.len() >= n {
            (Ok(rest[..n].to_vec()), n)
        } else {
            (Err(n), 0)
        }
    };
    match op {
        Op::U8 => take(1),
        Op::I16 | Op::U16Le => take(2),
        Op::U32 | Op::I32Le | Op::F32 => take(4),
        Op::U64 | Op::U64Le | Op::F64Le => take(8),
        Op::Bytes(n) => take(usize::from(*n)),
        Op::Peek(n) => match take(usize::from(*n)) {
            (Ok(bytes), _) => (Ok(bytes), 0),
            other => other,
        },
        Op::Discard(n) => {
            let n = usize::from(*n).min(rest.len());
            (Ok(rest[..n].to_vec()), n)
        }
        Op::SkipIfFound(pattern) => {
            if rest.starts_with(pattern) {
                (Ok(pattern.clone()), pattern.len())
            } else {
                (Ok(Vec::new()), 0)
            }
        }
        Op::AwaitContent(n) => {
            let n = usize::from(*n);
            (Ok(rest[..n.min(rest.len())].to_vec()), 0)
        }
    }
}

/// Runs `op`; returns the bytes it stands for (a value's encoding, what was skipped) or the
/// `needed` of an `UnexpectedEof`.
async fn run(channel: &mut ByteReadChannel, op: &Op, rest: &[u8]) -> Result<Vec<u8>, usize> {
    let eof = |e: Error| match e {
        Error::UnexpectedEof { needed, available } => {
            assert!(available < needed, "{e:?}");
            assert_eq!(available, rest.len(), "everything left stays buffered");
            needed
        }
        e => panic!("unexpected error {e:?}"),
    };
    match op {
        Op::U8 => channel.read_u8().await.map(|v| vec![v]).map_err(eof),
        Op::I16 => channel
            .read_i16()
            .await
            .map(|v| v.to_be_bytes().to_vec())
            .map_err(eof),
        Op::U16Le => channel
            .read_u16_le()
            .await
            .map(|v| v.to_le_bytes().to_vec())
            .map_err(eof),
        Op::U32 => channel
            .read_u32()
            .await
            .map(|v| v.to_be_bytes().to_vec())
            .map_err(eof),
        Op::I32Le => channel
            .read_i32_le()
            .await
            .map(|v| v.to_le_bytes().to_vec())
            .map_err(eof),
        Op::U64 => channel
            .read_u64()
            .await
            .map(|v| v.to_be_bytes().to_vec())
            .map_err(eof),
        Op::U64Le => channel
            .read_u64_le()
            .await
            .map(|v| v.to_le_bytes().to_vec())
            .map_err(eof),
        Op::F32 => channel
            .read_f32()
            .await
            .map(|v| v.to_bits().to_be_bytes().to_vec())
            .map_err(eof),
        Op::F64Le => channel
            .read_f64_le()
            .await
            .map(|v| v.to_bits().to_le_bytes().to_vec())
            .map_err(eof),
        Op::Bytes(n) => channel
            .read_bytes(usize::from(*n))
            .await
            .map(|b| b.to_vec())
            .map_err(eof),
        Op::Peek(n) => match channel.peek(usize::from(*n)).await {
            Ok(Some(bytes)) => Ok(bytes.to_vec()),
            Ok(None) => Err(usize::from(*n)),
            Err(e) => panic!("peek failed: {e:?}"),
        },
        Op::Discard(n) => {
            let skipped = channel.discard(u64::from(*n)).await.expect("discard");
            Ok(rest[..usize::try_from(skipped).unwrap()].to_vec())
        }
        Op::SkipIfFound(pattern) => {
            if channel.skip_if_found(pattern).await.expect("skip_if_found") {
                Ok(pattern.clone())
            } else {
                Ok(Vec::new())
            }
        }
        Op::AwaitContent(n) => {
            let n = usize::from(*n);
            let enough = channel.await_content(n).await.expect("await_content");
            assert_eq!(enough, rest.len() >= n);
            assert!(channel.available_for_read() >= n.min(rest.len()));
            Ok(rest[..n.min(rest.len())].to_vec())
        }
    }
}

fuzz_target!(|case: Case| {
    let input: Vec<u8> = case.chunks.concat();
    let mut channel = ByteReadChannel::new(ChunkedReader::new(case.chunks));
    let mut position = 0;
    drive(async {
        for op in &case.ops {
            let rest = &input[position..];
            let (want, consumed) = expected(op, rest);
            let got = run(&mut channel, op, rest).await;
            assert_eq!(got, want, "{op:?} at byte {position}");
            position += consumed;
        }
        // Whatever is left is still there, in order.
        let left = channel
            .read_remaining(usize::MAX)
            .await
            .expect("read_remaining");
        assert_eq!(&left[..], &input[position..]);
    });
});
