//! Property test twin of the `writes` fuzz target: random writes, flushes, closes and cancels,
//! each driven to completion or dropped after a few polls, over a transport that takes random
//! amounts, pauses and fails (`support/writes.rs`, shared with the fuzz target), checked against
//! `ByteWriteChannel`'s documented contract after every step.

#[allow(dead_code)]
#[path = "support/writes.rs"]
mod writes;

use proptest::prelude::*;
use writes::{Case, NoMeter, Op, Step};

/// Short writes that fit the buffer, and writes larger than the room left.
fn len() -> impl Strategy<Value = usize> {
    prop_oneof![2 => 0usize..64, 1 => 0usize..4_000, 1 => 6_000usize..20_000]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => len().prop_map(Op::Fully),
        2 => any::<u8>().prop_map(Op::Fill),
        1 => (0usize..300).prop_map(Op::Str),
        2 => len().prop_map(Op::Write),
        3 => any::<u8>().prop_map(Op::Typed),
        2 => (len(), any::<bool>())
            .prop_map(|(n, ld)| Op::Frame(n, ld)),
        2 => Just(Op::Flush),
        1 => Just(Op::FlushAndClose),
        1 => Just(Op::Shutdown),
        1 => Just(Op::Cancel),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        op(),
        prop_oneof![1 => Just(None), 1 => (0u8..4).prop_map(Some)],
    )
        .prop_map(|(op, polls)| Step { op, polls })
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        // Pauses more often than the fuzz target's decoding alone gives: calls dropped while
        // the transport takes nothing.
        prop::collection::vec(prop_oneof![3 => any::<u8>(), 2 => 160u8..240], 0..256),
        prop::collection::vec(step(), 1..32),
    )
        .prop_map(|(auto_flush, script, steps)| Case {
            auto_flush,
            script,
            steps,
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Received bytes, clean ends, failures and buffering follow the documented contract
    /// (`# Failures`, `# Dropped writes`) whatever the transport does and wherever a call is
    /// dropped.
    #[test]
    fn writes_follow_contract(case in case()) {
        writes::run(&case, &NoMeter);
    }
}

/// A direct write cut part-way and dropped, then a close: the close must not shut the transport
/// down (the harness's own check that it sees a cut write).
#[test]
fn cut_write_then_close() {
    for auto_flush in [false, true] {
        writes::run(
            &Case {
                auto_flush,
                // Take 1 byte, then pause.
                script: vec![0, 200],
                steps: vec![
                    Step {
                        op: Op::Fully(20_000),
                        polls: Some(0),
                    },
                    Step {
                        op: Op::FlushAndClose,
                        polls: None,
                    },
                ],
            },
            &NoMeter,
        );
    }
}

/// Typed writes that do not fit the room left, dropped over and over against a transport that
/// takes nothing: the buffer never grows past its 8 KiB.
#[test]
fn dropped_typed_writes_at_buffer_edge() {
    let mut steps = vec![Step {
        op: Op::Fill(4),
        polls: None,
    }];
    steps.extend((0..16).map(|_| Step {
        op: Op::Typed(3),
        polls: Some(0),
    }));
    writes::run(
        &Case {
            auto_flush: false,
            script: vec![200; 64],
            steps,
        },
        &NoMeter,
    );
}
