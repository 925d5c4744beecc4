//! Export in the shape of twitter-server's `/admin/metrics.json`.
//!
//! One flat JSON object, keys sorted (byte order), values numbers:
//! - a counter `c` is `"c": <integer>`;
//! - a gauge `g` is `"g": <float>`; a gauge reading NaN or infinity is left
//!   out, since JSON has no way to write it;
//! - a histogram `h` is `"h.count"`, `"h.sum"`, `"h.min"`, `"h.max"` and the
//!   percentiles `"h.p50"`, `"h.p90"`, `"h.p95"`, `"h.p99"`, `"h.p9990"`,
//!   `"h.p9999"` as integers, and `"h.avg"` as a float. An empty histogram
//!   exports zeros. Histograms are cumulative since start (see the histogram
//!   module doc).
//!
//! Should two metrics produce the same key (a counter `a.count` next to a
//! histogram `a`, or a counter and a gauge with one name), counters win over
//! gauges, and gauges over histogram statistics, so the output stays one valid
//! object.

use std::collections::BTreeMap;

use serde_json::{Number, Value};

use crate::histogram::QUANTILES;
use crate::receiver::RegistrySnapshot;

/// Renders a registry snapshot as one JSON object.
pub(crate) fn render(snap: &RegistrySnapshot) -> String {
    // A BTreeMap of our own rather than serde_json::Map, whose order depends
    // on a cargo feature any crate in the build may turn on.
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (name, v) in &snap.counters {
        out.entry(name.clone()).or_insert(Value::from(*v));
    }
    for (name, v) in &snap.gauges {
        if let Some(n) = Number::from_f64(*v) {
            out.entry(name.clone()).or_insert(Value::Number(n));
        }
    }
    for (name, h) in &snap.histograms {
        let avg = Number::from_f64(h.avg()).unwrap_or_else(|| Number::from(0));
        let mut stats: Vec<(&str, Value)> = vec![
            ("count", h.count.into()),
            ("sum", h.sum.into()),
            ("avg", Value::Number(avg)),
            ("min", h.min.into()),
            ("max", h.max.into()),
        ];
        for (q, suffix, _) in QUANTILES {
            stats.push((suffix, h.percentile(q).into()));
        }
        for (suffix, v) in stats {
            out.entry(format!("{name}.{suffix}")).or_insert(v);
        }
    }
    serde_json::to_string(&out).expect("a map of strings to numbers always serialises")
}

#[cfg(test)]
mod tests {
    use crate::StatsReceiver;
    use serde_json::Value;

    fn parse(stats: &StatsReceiver) -> serde_json::Map<String, Value> {
        match serde_json::from_str(&stats.metrics_json()).expect("valid JSON") {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn shape_of_every_kind() {
        let root = StatsReceiver::new();
        let srv = root.scope("srv").scope("http");
        srv.counter("requests").add(7);
        let h = srv.histogram("latency_ms");
        for v in 1..=100 {
            h.add(v);
        }
        let _g = root.scope("jvm").gauge("heap_mb", || 12.5);

        let text = root.metrics_json();
        let m = parse(&root);
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec![
                "jvm/heap_mb",
                "srv/http/latency_ms.avg",
                "srv/http/latency_ms.count",
                "srv/http/latency_ms.max",
                "srv/http/latency_ms.min",
                "srv/http/latency_ms.p50",
                "srv/http/latency_ms.p90",
                "srv/http/latency_ms.p95",
                "srv/http/latency_ms.p99",
                "srv/http/latency_ms.p9990",
                "srv/http/latency_ms.p9999",
                "srv/http/latency_ms.sum",
                "srv/http/requests",
            ]
        );
        // Keys appear sorted in the text itself, not only after parsing.
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");

        assert_eq!(m["srv/http/requests"].as_u64(), Some(7));
        assert_eq!(m["jvm/heap_mb"].as_f64(), Some(12.5));
        assert_eq!(m["srv/http/latency_ms.count"].as_u64(), Some(100));
        assert_eq!(m["srv/http/latency_ms.sum"].as_u64(), Some(5050));
        assert_eq!(m["srv/http/latency_ms.avg"].as_f64(), Some(50.5));
        assert_eq!(m["srv/http/latency_ms.min"].as_u64(), Some(1));
        assert_eq!(m["srv/http/latency_ms.max"].as_u64(), Some(100));
        assert_eq!(m["srv/http/latency_ms.p50"].as_u64(), Some(50));
        assert_eq!(m["srv/http/latency_ms.p90"].as_u64(), Some(90));
        assert_eq!(m["srv/http/latency_ms.p99"].as_u64(), Some(99));
        assert_eq!(m["srv/http/latency_ms.p9999"].as_u64(), Some(100));
    }

    #[test]
    fn the_whole_registry_is_exported_from_any_scope() {
        let root = StatsReceiver::new();
        root.scope("a").counter("x").incr();
        root.scope("b").counter("y").incr();
        let m = parse(&root.scope("a"));
        assert!(m.contains_key("a/x") && m.contains_key("b/y"));
    }

    #[test]
    fn an_empty_histogram_exports_zeros() {
        let root = StatsReceiver::new();
        let _h = root.histogram("h");
        let m = parse(&root);
        assert_eq!(m.len(), 11);
        for (k, v) in &m {
            assert!(k.starts_with("h."));
            assert_eq!(v.as_f64(), Some(0.0), "{k}");
        }
        assert_eq!(m["h.count"].as_u64(), Some(0));
    }

    #[test]
    fn an_empty_registry_is_an_empty_object() {
        assert_eq!(StatsReceiver::new().metrics_json(), "{}");
    }

    #[test]
    fn non_finite_gauges_are_left_out() {
        let root = StatsReceiver::new();
        let _a = root.gauge("nan", || f64::NAN);
        let _b = root.gauge("inf", || f64::INFINITY);
        let _c = root.gauge("ok", || -1.0);
        let m = parse(&root);
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["ok"]);
    }

    #[test]
    fn colliding_keys_keep_one_value() {
        let root = StatsReceiver::new();
        root.counter("a.count").add(42);
        root.histogram("a").add(1);
        root.counter("same").add(1);
        let _g = root.gauge("same", || 2.0);
        let text = root.metrics_json();
        assert_eq!(text.matches("\"a.count\"").count(), 1);
        let m = parse(&root);
        assert_eq!(m["a.count"].as_u64(), Some(42));
        assert_eq!(m["same"].as_u64(), Some(1));
    }

    #[test]
    fn names_needing_escapes_stay_valid_json() {
        let root = StatsReceiver::new();
        root.counter("quote\"back\\slash\nnewline").incr();
        let m = parse(&root);
        assert_eq!(m["quote\"back\\slash\nnewline"].as_u64(), Some(1));
    }
}
