//! Striping of hot atomics: each thread writes its own cache line.
//!
//! Two cores adding to one atomic pass its cache line back and forth on every
//! add, which costs several times an uncontended add (the `record` bench shows
//! it). So counters and histogram totals keep one cache-padded cell per stripe,
//! writers pick the stripe of their thread, and readers sum the stripes.
//! Threads get stripes round-robin on first use, so the first
//! [`stripe_count`] threads (a runtime's workers, typically) never share one.
//!
//! Counters go one step further: the first [`OWNED`] threads alive each own a
//! cell outright ([`slot`]) and add to it with a plain load and store, which
//! costs a fraction of a locked atomic add; other threads use the stripes.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Upper bound on stripes per metric: at most 16 shared cache lines (2 KiB
/// with 128-byte padding) per metric, whatever the core count.
const MAX_STRIPES: usize = 16;

/// Stripes per metric: the available parallelism rounded up to a power of two,
/// capped at [`MAX_STRIPES`].
pub(crate) fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .min(MAX_STRIPES)
    })
}

/// The calling thread's stripe number (not reduced modulo a stripe count).
#[inline]
pub(crate) fn this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, Ordering::Relaxed) & (MAX_STRIPES - 1);
            s.set(v);
        }
        v
    })
}

/// Cells a counter keeps for threads that own one outright. A thread claims
/// one of these on its first add and gives it back when it exits; while it
/// owns cell `i`, no other thread writes cell `i` of any counter, so adding
/// is a plain load and store instead of a locked read-modify-write. Threads
/// beyond these share the striped cells and add atomically.
pub(crate) const OWNED: usize = 16;

/// Where the calling thread records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Its own cell: plain load and store.
    Owned(usize),
    /// A shared stripe (not reduced modulo a stripe count): atomic add.
    Shared(usize),
}

/// Bit `i` set: owned cell `i` is taken.
static CLAIMED: AtomicU32 = AtomicU32::new(0);

/// A thread's claim on an owned cell, released when the thread exits.
struct Owner(Option<usize>);

impl Owner {
    fn claim() -> Self {
        let all = (1u32 << OWNED) - 1;
        let mut cur = CLAIMED.load(Ordering::Relaxed);
        loop {
            let free = !cur & all;
            if free == 0 {
                return Owner(None);
            }
            let bit = free.trailing_zeros();
            // Acquire: the previous owner's writes to cell `bit` are visible
            // before this thread reads the cell to add to it.
            match CLAIMED.compare_exchange_weak(
                cur,
                cur | (1 << bit),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Owner(Some(bit as usize)),
                Err(c) => cur = c,
            }
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            // Release: this thread's last writes to cell `i` happen before the
            // next owner's.
            CLAIMED.fetch_and(!(1u32 << i), Ordering::Release);
        }
    }
}

/// The calling thread's slot. A thread whose thread-locals are being torn
/// down records through a shared stripe.
#[inline]
pub(crate) fn slot() -> Slot {
    thread_local! {
        static OWNER: Owner = Owner::claim();
    }
    match OWNER.try_with(|o| o.0) {
        Ok(Some(i)) => Slot::Owned(i),
        _ => Slot::Shared(this_thread()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_count_is_a_small_power_of_two() {
        let n = stripe_count();
        assert!(n.is_power_of_two() && n <= MAX_STRIPES);
    }

    #[test]
    fn owned_slots_are_exclusive_and_come_back() {
        use std::collections::HashSet;
        use std::sync::{Arc, Barrier, Mutex};
        // More threads at once than owned cells: no cell has two owners.
        let n = OWNED + 8;
        let barrier = Arc::new(Barrier::new(n));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (barrier, seen) = (barrier.clone(), seen.clone());
                std::thread::spawn(move || {
                    let s = slot();
                    assert_eq!(slot(), s, "a thread keeps its slot");
                    seen.lock().unwrap().push(s);
                    barrier.wait();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let seen = seen.lock().unwrap();
        let owned: Vec<usize> = seen
            .iter()
            .filter_map(|s| match s {
                Slot::Owned(i) => Some(*i),
                Slot::Shared(_) => None,
            })
            .collect();
        let distinct: HashSet<usize> = owned.iter().copied().collect();
        assert_eq!(distinct.len(), owned.len(), "{owned:?}");
        assert!(owned.iter().all(|&i| i < OWNED));
        // Exited threads gave their cells back.
        let later = std::thread::spawn(slot).join().unwrap();
        assert!(matches!(later, Slot::Owned(_)), "{later:?}");
    }

    #[test]
    fn a_thread_keeps_its_stripe() {
        assert_eq!(this_thread(), this_thread());
        assert!(this_thread() < MAX_STRIPES);
    }
}
