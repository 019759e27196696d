//! Random number generation: a Philox 4x32-10 stream per generator, advanced by the
//! number of 4-value blocks each draw consumes, so a draw is reproducible from
//! (seed, offset) on any device and a checkpointed (seed, offset) resumes the stream.

use scorch_ops::philox::blocks_used;
use std::sync::atomic::{AtomicU64, Ordering};

/// A seeded counter-based generator. Cheap to share across threads.
#[derive(Debug)]
pub struct Generator {
    seed: AtomicU64,
    offset: AtomicU64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator { seed: AtomicU64::new(seed), offset: AtomicU64::new(0) }
    }
    /// Restores a state saved by [`Generator::state`].
    pub fn from_state(seed: u64, offset: u64) -> Self {
        Generator { seed: AtomicU64::new(seed), offset: AtomicU64::new(offset) }
    }
    /// (seed, offset) to save in a checkpoint.
    pub fn state(&self) -> (u64, u64) {
        (self.seed.load(Ordering::SeqCst), self.offset.load(Ordering::SeqCst))
    }
    /// Restores (seed, offset), e.g. from a checkpoint, on a shared generator.
    pub fn set_state(&self, seed: u64, offset: u64) {
        self.seed.store(seed, Ordering::SeqCst);
        self.offset.store(offset, Ordering::SeqCst);
    }
    pub fn manual_seed(&self, seed: u64) {
        self.seed.store(seed, Ordering::SeqCst);
        self.offset.store(0, Ordering::SeqCst);
    }
    /// Reserves the blocks for `n` values; returns the (seed, offset) to draw them from.
    pub fn reserve(&self, n: usize) -> (u64, u64) {
        let off = self.offset.fetch_add(blocks_used(n), Ordering::SeqCst);
        (self.seed.load(Ordering::SeqCst), off)
    }
}

impl Clone for Generator {
    fn clone(&self) -> Self {
        let (s, o) = self.state();
        Generator::from_state(s, o)
    }
}
