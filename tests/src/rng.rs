//! A small deterministic generator for the seeded stress tests (xorshift64*): the same seed
//! gives the same rounds, so that a failing seed can be run again (`…_SEED`, `…_ROUNDS`).

/// The seeds a stress test runs: `{prefix}_ROUNDS` of them (`default_rounds` when it is not
/// set) from `{prefix}_SEED` on (1 when it is not set).
pub fn seeds(prefix: &str, default_rounds: u64) -> std::ops::Range<u64> {
    let var = |name: &str| -> Option<u64> {
        std::env::var(format!("{prefix}_{name}"))
            .ok()
            .and_then(|v| v.parse().ok())
    };
    let first = var("SEED").unwrap_or(1);
    first..first + var("ROUNDS").unwrap_or(default_rounds)
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number below `n` (which must not be 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    /// True one time in `one_in`, on average.
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}
