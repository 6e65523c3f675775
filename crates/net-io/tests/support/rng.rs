//! A small deterministic generator (xorshift64) for the seeded tests: a seed gives the same run
//! every time, so a failing seed can be run again.

/// The generator's state; any nonzero seed (`seed | 1`) starts it.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (not 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
