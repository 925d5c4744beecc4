//! Monotonic counters: striped atomics that handles add to without locking.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::stripe;

/// A monotonically increasing count, shared by every handle with the same full name.
///
/// Cloning is cheap (one `Arc`). `incr` and `add` write the cell the calling
/// thread owns with a plain load and store, or, for threads beyond the owned
/// cells, atomically add to the thread's shared stripe (see the `stripe`
/// module): threads counting the same thing never fight over one cache line
/// and the common case takes no locked instruction. The count wraps
/// around on overflow of `u64`, which at a billion increments a second takes
/// over five centuries.
#[derive(Clone, Debug)]
pub struct Counter {
    /// `stripe::OWNED` owned cells, then `stripe::stripe_count()` shared
    /// ones (a power of two).
    cells: Arc<[CachePadded<AtomicU64>]>,
}

impl Default for Counter {
    fn default() -> Self {
        Self::detached()
    }
}

impl Counter {
    /// A counter that belongs to no registry (useful in tests and as a default).
    pub fn detached() -> Self {
        Counter {
            cells: (0..stripe::OWNED + stripe::stripe_count())
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Adds one.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        // Relaxed is enough: a counter orders nothing else, and readers only
        // need every increment to land eventually.
        match stripe::slot() {
            stripe::Slot::Owned(i) => {
                // Only this thread writes cell `i` while it owns it.
                let cell = &self.cells[i];
                cell.store(
                    cell.load(Ordering::Relaxed).wrapping_add(n),
                    Ordering::Relaxed,
                );
            }
            stripe::Slot::Shared(s) => {
                let shared = self.cells.len() - stripe::OWNED;
                self.cells[stripe::OWNED + (s & (shared - 1))].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The current count: the sum of the stripes. Increments made while this
    /// runs may or may not be included.
    pub fn get(&self) -> u64 {
        self.cells
            .iter()
            .fold(0u64, |sum, c| sum.wrapping_add(c.load(Ordering::Relaxed)))
    }

    /// Whether two handles share the same underlying count.
    pub fn same_as(&self, other: &Counter) -> bool {
        Arc::ptr_eq(&self.cells, &other.cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_shared_cells_add_up_exactly() {
        // Three waves of more threads than owned cells: some threads own a
        // cell, the rest share stripes, and exited threads' cells are reused.
        let c = Counter::detached();
        const THREADS: u64 = stripe::OWNED as u64 + 12;
        const PER_THREAD: u64 = 20_000;
        for _ in 0..3 {
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    let c = c.clone();
                    s.spawn(move || {
                        for _ in 0..PER_THREAD {
                            c.incr();
                        }
                        c.add(5);
                    });
                }
            });
        }
        assert_eq!(c.get(), 3 * THREADS * (PER_THREAD + 5));
    }
}
