//! Splitting a fragment's grid into aligned time spans (3h, 30m, 5m, 1m; the coarsest
//! that fits at each point), deciding which may be cached, their FNV-1a keys, a span's
//! partial cells as the cache holds them ([`SpanCells`]) and their byte encoding.
//!
//! ```text
//!   grid [lo, hi) -- edge --|-- 5m --|-- 30m --|---- 3h ---- ... --|-- 30m --|-- edge, mutable tail
//!                   computed  cached if it ends before mutable_after   computed every time
//! ```
//! A span `[a, b)` holds the grid points `t` with `a <= t < b`; they read samples in
//! `(t - step, t]`, so all of them lie before `b`. A span that ends at or before
//! `mutable_after_ms` reads only immutable data until a backfill bumps the epoch of one
//! of its (service, day)s, and the epochs are part of its key.

use std::hash::Hasher;
use std::sync::Arc;

use query_lang::SeriesKey;

use crate::cache::Cached;
use crate::storage::{Cell, Cells, Epochs, Groups, add_sorted_cells, normalise_cells};

/// Span widths, coarsest first (ms).
pub const WIDTHS: [i64; 4] = [3 * 3_600_000, 30 * 60_000, 5 * 60_000, 60_000];

const DAY: i64 = 86_400_000;

/// One piece of a grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Start (ms; not necessarily a grid point).
    pub start: i64,
    /// End (ms, exclusive).
    pub end: i64,
    /// An aligned span of immutable time: it may be served from the cache.
    pub cacheable: bool,
}

/// The first grid point at or after `t` on the grid of `phase` (mod `step`).
pub fn align_up(t: i64, step: i64, phase: i64) -> i64 {
    let r = (t - phase).rem_euclid(step);
    if r == 0 { t } else { t + (step - r) }
}

/// Splits `[lo, hi)` (`lo` a grid point) into pieces. Widths that are not a multiple of
/// `step` are not used; adjacent computed pieces are merged.
pub fn split(lo: i64, hi: i64, step: i64, mutable_after_ms: i64) -> Vec<Piece> {
    let widths: Vec<i64> = WIDTHS.iter().copied().filter(|w| w % step == 0).collect();
    let mut out: Vec<Piece> = Vec::new();
    let push = |p: Piece, out: &mut Vec<Piece>| {
        if let Some(last) = out.last_mut()
            && !last.cacheable
            && !p.cacheable
        {
            last.end = p.end;
            return;
        }
        out.push(p);
    };
    let Some(&finest) = widths.last() else {
        if lo < hi {
            out.push(Piece {
                start: lo,
                end: hi,
                cacheable: false,
            });
        }
        return out;
    };
    let mut pos = lo;
    while pos < hi {
        let fit = widths.iter().copied().find(|&w| {
            pos.rem_euclid(w) == 0
                && pos
                    .checked_add(w)
                    .is_some_and(|e| e <= hi && e <= mutable_after_ms)
        });
        if let Some(w) = fit {
            push(
                Piece {
                    start: pos,
                    end: pos + w,
                    cacheable: true,
                },
                &mut out,
            );
            pos += w;
            continue;
        }
        let next = pos - pos.rem_euclid(finest) + finest;
        if next > mutable_after_ms || next >= hi {
            // Nothing after this can be cached (or nothing is left): one computed piece.
            push(
                Piece {
                    start: pos,
                    end: hi,
                    cacheable: false,
                },
                &mut out,
            );
            break;
        }
        push(
            Piece {
                start: pos,
                end: next,
                cacheable: false,
            },
            &mut out,
        );
        pos = next;
    }
    out
}

/// `[lo, hi)` widened to whole spans of the finest width usable with `step`, within
/// `[min, max)` and, at the end, not past `mutable_after_ms`: the points added lie off
/// the query's grid range and are trimmed after merging, but the edge spans become
/// cacheable (a Prometheus range ends on its `end`, inclusive, so it would otherwise
/// always end with an unaligned piece).
pub fn widen(lo: i64, hi: i64, step: i64, min: i64, max: i64, mutable_after_ms: i64) -> (i64, i64) {
    let Some(&w) = WIDTHS.iter().rev().find(|w| *w % step == 0) else {
        return (lo, hi);
    };
    let a = lo - lo.rem_euclid(w);
    let a = if a >= min { a } else { lo };
    let r = hi.rem_euclid(w);
    let b = if r == 0 { hi } else { hi.saturating_add(w - r) };
    let b = if b <= max && b <= mutable_after_ms {
        b
    } else {
        hi
    };
    (a, b)
}

/// The FNV-1a key of a cached span: the zone, the normalised fragment, the grid, the
/// span and the epochs of every (service, day) whose samples it reads (`lookback` ms
/// more before the span for an over-time function).
pub fn key(
    zone: &str,
    fragment: &str,
    step: i64,
    lookback: i64,
    piece: Piece,
    epochs: &Epochs,
) -> String {
    let mut h = fnv::FnvHasher::default();
    let mut put = |s: &[u8]| {
        h.write(&(s.len() as u64).to_le_bytes());
        h.write(s);
    };
    put(b"aerie-span-v1");
    put(zone.as_bytes());
    put(fragment.as_bytes());
    put(&step.to_le_bytes());
    put(&piece.start.to_le_bytes());
    put(&piece.end.to_le_bytes());
    // Samples read lie in [start - lookback - step + 1, end).
    let first = piece.start.saturating_sub(step - 1 + lookback);
    let d0 = first - first.rem_euclid(DAY);
    let d1 = piece.end - 1 - (piece.end - 1).rem_euclid(DAY);
    for ((service, day), epoch) in &epochs.epochs {
        if *day >= d0 && *day <= d1 && *epoch > 0 {
            put(service.as_bytes());
            put(&day.to_le_bytes());
            put(&epoch.to_le_bytes());
        }
    }
    format!("aerie:span:{:016x}", h.finish())
}

/// A span's groups and their cells (each ascending, one cell per time), decoded once
/// and shared: what the in-process tier holds, and what memcached holds encoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanCells(pub Arc<Vec<(SeriesKey, Cells)>>);

impl Cached for SpanCells {
    fn encode(&self) -> Vec<u8> {
        encode(&self.0)
    }
    fn decode(bytes: Vec<u8>) -> Option<Self> {
        decode_cells(&bytes).map(|groups| SpanCells(Arc::new(groups)))
    }
    fn weight(&self) -> u64 {
        let key = |k: &SeriesKey| {
            [&k.service, &k.source, &k.metric]
                .iter()
                .map(|p| 24 + p.as_ref().map_or(0, String::len))
                .sum::<usize>()
        };
        let cell = std::mem::size_of::<(i64, Cell)>();
        self.0
            .iter()
            .map(|(k, cells)| (key(k) + 24 + cells.len() * cell) as u64)
            .sum()
    }
}

/// The groups' cells with times in `[start, end)`.
pub fn slice(groups: &Groups, start: i64, end: i64) -> SpanCells {
    let mut out = Vec::new();
    for (k, cells) in groups {
        let lo = cells.partition_point(|c| c.0 < start);
        let hi = cells.partition_point(|c| c.0 < end).max(lo);
        if hi > lo {
            out.push((k.clone(), cells[lo..hi].to_vec()));
        }
    }
    SpanCells(Arc::new(out))
}

const VERSION: u8 = 1;

/// Encodes a span's cells.
pub fn encode(groups: &[(SeriesKey, Cells)]) -> Vec<u8> {
    let cells: usize = groups.iter().map(|(_, c)| c.len()).sum();
    let mut b = Vec::with_capacity(5 + groups.len() * 64 + cells * 56);
    b.push(VERSION);
    b.extend((groups.len() as u32).to_le_bytes());
    for (k, cells) in groups {
        for part in [&k.service, &k.source, &k.metric] {
            match part {
                None => b.push(0),
                Some(s) => {
                    b.push(1);
                    b.extend((s.len() as u32).to_le_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b.extend((cells.len() as u32).to_le_bytes());
        for (t, c) in cells {
            b.extend(t.to_le_bytes());
            b.extend(c.count.to_le_bytes());
            for v in [c.sum, c.min, c.max, c.last] {
                b.extend(v.to_bits().to_le_bytes());
            }
            b.extend(c.last_ts.to_le_bytes());
        }
    }
    b
}

/// Decodes what [`encode`] wrote, without building maps, each group's cells put in
/// time order with one cell per time. `None` for anything else (treated as a miss).
pub fn decode_cells(b: &[u8]) -> Option<Vec<(SeriesKey, Cells)>> {
    let mut r = Reader { b, at: 0 };
    if r.take(1)?[0] != VERSION {
        return None;
    }
    let n = r.u32()?;
    let mut out = Vec::with_capacity((n as usize).min(b.len() / 8));
    for _ in 0..n {
        let mut parts: [Option<String>; 3] = [None, None, None];
        for p in &mut parts {
            *p = match r.take(1)?[0] {
                0 => None,
                1 => {
                    let len = r.u32()? as usize;
                    Some(String::from_utf8(r.take(len)?.to_vec()).ok()?)
                }
                _ => return None,
            };
        }
        let [service, source, metric] = parts;
        let m = r.u32()?;
        // At most what the bytes can hold: a junk count allocates nothing.
        let mut cells = Vec::with_capacity((m as usize).min(b.len() / 56));
        for _ in 0..m {
            let t = r.i64()?;
            let count = r.u64()?;
            let sum = f64::from_bits(r.u64()?);
            let min = f64::from_bits(r.u64()?);
            let max = f64::from_bits(r.u64()?);
            let last = f64::from_bits(r.u64()?);
            let last_ts = r.i64()?;
            cells.push((
                t,
                Cell {
                    count,
                    sum,
                    min,
                    max,
                    last,
                    last_ts,
                },
            ));
        }
        out.push((
            SeriesKey {
                service,
                source,
                metric,
            },
            normalise_cells(cells),
        ));
    }
    (r.at == b.len()).then_some(out)
}

/// Adds a span's cells to `into`: appended when, as usual, spans come in time order;
/// cells of equal times merge.
pub fn gather(into: &mut Groups, span: &SpanCells) {
    for (k, cells) in span.0.iter() {
        add_sorted_cells(into, k, cells);
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const H: i64 = 60 * MIN;

    #[test]
    fn coarsest_spans_tile_and_edges_are_computed() {
        let lo = 2 * MIN;
        let hi = 7 * H + 3 * MIN;
        let p = split(lo, hi, MIN, i64::MAX);
        assert_eq!(p.first().unwrap().start, lo);
        assert_eq!(p.last().unwrap().end, hi);
        for w in p.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        let widths: Vec<i64> = p.iter().map(|x| x.end - x.start).collect();
        assert_eq!(
            widths,
            [
                [MIN; 3].as_slice(),
                &[5 * MIN; 5],
                &[30 * MIN; 5],
                &[3 * H],
                &[30 * MIN; 2],
                &[MIN; 3]
            ]
            .concat()
        );
        assert!(p.iter().all(|x| x.cacheable));
    }

    #[test]
    fn nothing_after_mutable_after_is_cached() {
        let p = split(0, 10 * H, 5 * MIN, 4 * H + 7 * MIN);
        let last = p.last().unwrap();
        assert!(!last.cacheable);
        assert_eq!(last.start, 4 * H + 5 * MIN);
        assert_eq!(last.end, 10 * H);
        assert!(
            p.iter()
                .filter(|x| x.cacheable)
                .all(|x| x.end <= 4 * H + 7 * MIN)
        );
    }

    #[test]
    fn edges_widen_to_whole_spans_only_within_bounds() {
        assert_eq!(
            widen(7 * MIN, H + 1, MIN, 0, i64::MAX, i64::MAX),
            (7 * MIN, H + MIN)
        );
        assert_eq!(
            widen(7 * MIN, H + 1, 5 * MIN, 0, i64::MAX, i64::MAX),
            (5 * MIN, H + 5 * MIN)
        );
        assert_eq!(
            widen(7 * MIN, H + 1, 5 * MIN, 6 * MIN, H, i64::MAX),
            (7 * MIN, H + 1)
        );
        assert_eq!(
            widen(7 * MIN, H + 1, 5 * MIN, 0, i64::MAX, H),
            (5 * MIN, H + 1)
        );
        assert_eq!(
            widen(7 * MIN, H + 1, 7 * MIN, 0, i64::MAX, i64::MAX),
            (7 * MIN, H + 1)
        );
    }

    #[test]
    fn steps_that_divide_no_width_are_not_cached() {
        let p = split(0, 10 * H, 7 * MIN, i64::MAX);
        assert_eq!(
            p,
            vec![Piece {
                start: 0,
                end: 10 * H,
                cacheable: false
            }]
        );
    }

    #[test]
    fn gathered_spans_build_the_groups_merge_groups_would() {
        let cell = |v: f64, ts: i64| Cell {
            count: 1,
            sum: v,
            min: v,
            max: v,
            last: v,
            last_ts: ts,
        };
        let key = |src: &str| SeriesKey {
            service: Some("web".into()),
            source: Some(src.into()),
            metric: None,
        };
        let span = |src: &str, pts: &[(i64, f64)]| -> Groups {
            let mut g = Groups::new();
            g.insert(
                key(src),
                pts.iter().map(|&(t, v)| (t, cell(v, t))).collect(),
            );
            g
        };
        // In order, out of order, and overlapping (equal times merge).
        let spans = [
            span("a", &[(1, 1.0), (2, 2.0)]),
            span("b", &[(1, 5.0)]),
            span("a", &[(3, 3.0)]),
            span("a", &[(0, 0.5), (2, 7.0)]),
        ];
        let mut built = Groups::new();
        let mut merged = Groups::new();
        for g in &spans {
            let cells: Vec<(SeriesKey, Cells)> = g.clone().into_iter().collect();
            gather(&mut built, &SpanCells::decode(encode(&cells)).unwrap());
            crate::storage::merge_groups(&mut merged, g.clone());
        }
        assert_eq!(built, merged);
        let a = &built[&key("a")];
        assert_eq!(a.iter().find(|c| c.0 == 2).unwrap().1.count, 2);
        assert_eq!(built[&key("a")].len(), 4);
    }

    #[test]
    fn encoding_round_trips_and_rejects_junk() {
        let mut g = Groups::new();
        let cells = vec![(
            60_000,
            Cell {
                count: 2,
                sum: 3.5,
                min: -0.0,
                max: f64::NAN,
                last: f64::INFINITY,
                last_ts: 59_999,
            },
        )];
        g.insert(
            SeriesKey {
                service: Some("web".into()),
                source: None,
                metric: Some("m".into()),
            },
            cells,
        );
        let span = slice(&g, i64::MIN, i64::MAX);
        let b = span.encode();
        let back = SpanCells::decode(b.clone()).unwrap();
        assert_eq!(back.encode(), b);
        let mut gathered = Groups::new();
        gather(&mut gathered, &back);
        assert_eq!(slice(&gathered, i64::MIN, i64::MAX).encode(), b);
        assert!(decode_cells(&b[..b.len() - 1]).is_none());
        assert!(decode_cells(&[9, 0, 0]).is_none());
        assert!(decode_cells(&[]).is_none());
    }

    #[test]
    fn epochs_of_the_span_days_change_the_key() {
        let piece = Piece {
            start: 3 * H,
            end: 6 * H,
            cacheable: true,
        };
        let mut e = Epochs::default();
        let k0 = key("local", "f", MIN, 0, piece, &e);
        e.epochs.insert(("web".into(), DAY), 1);
        assert_eq!(key("local", "f", MIN, 0, piece, &e), k0, "another day");
        e.epochs.insert(("web".into(), 0), 1);
        assert_ne!(key("local", "f", MIN, 0, piece, &e), k0);
        assert_ne!(key("other", "f", MIN, 0, piece, &Epochs::default()), k0);

        // A span starting a minute into a day reads the day before only through the
        // lookback of an over-time function.
        let piece = Piece {
            start: DAY + MIN,
            end: DAY + 3 * H,
            cacheable: true,
        };
        let mut e = Epochs::default();
        let (plain, rate) = (
            key("z", "f", MIN, 0, piece, &e),
            key("z", "f", MIN, MIN, piece, &e),
        );
        e.epochs.insert(("web".into(), 0), 1);
        assert_eq!(key("z", "f", MIN, 0, piece, &e), plain);
        assert_ne!(key("z", "f", MIN, MIN, piece, &e), rate);
    }
}
