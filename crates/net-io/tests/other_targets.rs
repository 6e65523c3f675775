//! What differs on targets other than x86_64 Linux: where `usize` has 32 bits (i686, armv7),
//! counts that a 64-bit `usize` never reaches are a read away.
//!
//! On x86_64 these tests are compiled out; `cargo xtask ci` runs them built for
//! `i686-unknown-linux-gnu` (its step "other targets"), or by hand:
//! `cargo test --target i686-unknown-linux-gnu -p knet-io --test other_targets`. The pure
//! pieces they rest on have unit tests that run everywhere (`grown_capacity` in `src/read.rs`).

/// Where `usize` has 32 bits, a read buffer that holds 1 GiB grows past it: a `read_remaining`
/// with a limit past 1 GiB returns all of it. (The buffer used to double to 2 GiB, one byte more
/// than a `Vec` may hold there, and the read panicked with "capacity overflow".)
#[cfg(target_pointer_width = "32")]
#[test]
fn a_read_buffer_grows_past_1_gib_where_usize_has_32_bits() {
    use net_io::ByteReadChannel;

    const GIB: usize = 1 << 30;
    let limit = GIB + (1 << 20);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = runtime.block_on(async {
        let mut input = ByteReadChannel::new(tokio::io::repeat(7));
        input.read_remaining(limit).await.unwrap()
    });
    assert_eq!(bytes.len(), limit);
    assert_eq!((bytes[0], bytes[GIB], bytes[limit - 1]), (7, 7, 7));
}
