//! Cost of recording: ns per counter increment and per histogram add, alone and
//! with two threads hitting the same counter or histogram.
//!
//! Read the figures off the criterion lines `record/counter_incr/1_thread`,
//! `record/counter_incr/2_threads`, `record/histogram_add/1_thread` and
//! `record/histogram_add/2_threads`. For the two-thread cases each of the two
//! threads performs `iters` operations at once, and the time reported per
//! iteration is the wall time divided by `iters`: the cost one caller sees per
//! operation while another thread contends for the same cache lines.
//!
//! The `baseline` group gives the same machine's reference points: a lone
//! shared `AtomicU64` (what counter striping is measured against) and two
//! threads recording into separate histograms (the floor for the shared one).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use stats::{Histogram, StatsReceiver};

/// Latency-like values in ms: most between 1 and 50, one in sixteen up to 64
/// times slower. Concentrated like real latencies, so two threads often hit
/// the same buckets.
fn values() -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = 1 + x % 50;
            if (x >> 32).is_multiple_of(16) {
                base * (1 + (x >> 40) % 64)
            } else {
                base
            }
        })
        .collect()
}

/// Runs `op(i)` for `i in 0..iters` on `threads` threads at once, each thread
/// starting `i` at its own offset (different requests, not one replayed in
/// lockstep); returns the longest thread's time from a common start.
fn contended(threads: usize, iters: u64, op: &(dyn Fn(u64) + Sync)) -> Duration {
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    let offset = t as u64 * 1_000;
                    start.wait();
                    let t = Instant::now();
                    for i in offset..offset + iters {
                        op(i);
                    }
                    t.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

/// 0 for the first thread that asks, 1 for the next, and so on modulo 2.
fn stripe_of_thread() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % 2;
    }
    MINE.with(|m| *m)
}

fn record(c: &mut Criterion) {
    let stats = StatsReceiver::new().scope("srv").scope("http");
    let counter = stats.counter("requests");
    let histogram = stats.histogram("latency_ms");
    let values = values();
    let mask = values.len() - 1;

    let mut g = c.benchmark_group("record");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));

    g.bench_function("counter_incr/1_thread", |b| {
        b.iter(|| black_box(&counter).incr())
    });
    g.bench_function("counter_incr/2_threads", |b| {
        b.iter_custom(|iters| contended(2, iters, &|_| black_box(&counter).incr()))
    });

    g.bench_function("histogram_add/1_thread", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & mask;
            black_box(&histogram).add(values[i]);
        })
    });
    g.bench_function("histogram_add/2_threads", |b| {
        b.iter_custom(|iters| {
            contended(2, iters, &|i| {
                black_box(&histogram).add(values[i as usize & mask]);
            })
        })
    });
    g.finish();

    // What a lone shared atomic costs on this machine, for comparison: the
    // counter stripes exist to beat the 2-thread figure.
    let atomic = std::sync::atomic::AtomicU64::new(0);
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let mut g = c.benchmark_group("baseline");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("atomic_fetch_add/1_thread", |b| {
        b.iter(|| black_box(&atomic).fetch_add(1, relaxed))
    });
    g.bench_function("atomic_fetch_add/2_threads", |b| {
        b.iter_custom(|iters| {
            contended(2, iters, &|_| {
                black_box(&atomic).fetch_add(1, relaxed);
            })
        })
    });
    // Two threads each recording into a histogram of its own: the floor for
    // `record/histogram_add/2_threads`, which shares one.
    let own = [Histogram::detached(), Histogram::detached()];
    g.bench_function("histogram_add/2_threads_separate", |b| {
        b.iter_custom(|iters| {
            contended(2, iters, &|i| {
                let h = &own[stripe_of_thread()];
                black_box(h).add(values[i as usize & mask]);
            })
        })
    });
    g.finish();

    // Keep the recorded data observable so nothing above is optimised away.
    black_box(counter.get());
    black_box(histogram.snapshot().count);
}

criterion_group!(benches, record);
criterion_main!(benches);
