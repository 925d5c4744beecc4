//! Export in the Prometheus text exposition format, version 0.0.4.
//!
//! Each metric becomes one family with `# HELP` (holding the original name) and
//! `# TYPE` lines:
//! - counters are `counter`, gauges `gauge` (NaN and infinities written as
//!   `NaN`, `+Inf`, `-Inf`);
//! - histograms are `summary`: one sample per quantile
//!   (`quantile="0.5"`, `"0.9"`, `"0.95"`, `"0.99"`, `"0.999"`, `"0.9999"`),
//!   plus `<name>_sum` and `<name>_count`, cumulative since start.
//!
//! # Names
//!
//! Prometheus names must match `[a-zA-Z_:][a-zA-Z0-9_:]*`. A name is
//! sanitised by replacing every character outside `[a-zA-Z0-9_:]` with `_`
//! (one `_` per character, so `srv/http/latency_ms.p99` would be
//! `srv_http_latency_ms_p99`), then prefixing `_` if it starts with a digit
//! or is empty.
//!
//! Distinct names may sanitise to the same string (`a/b` and `a.b`), and a
//! summary `x` also owns the names `x_sum` and `x_count`. So that no sample
//! name is ever written by two families, names are handed out in the byte
//! order of the original names (counters before gauges before histograms for
//! one original name): each family takes its sanitised name if that and, for a
//! summary, its `_sum` and `_count` names are still free, and otherwise the
//! first of `<name>_2`, `<name>_3`, ... that is. The `# HELP` line keeps the
//! original name, so the renamed family can still be traced back.

use std::collections::HashSet;
use std::fmt::Write;

use crate::HistogramSnapshot;
use crate::histogram::QUANTILES;
use crate::receiver::RegistrySnapshot;

/// A name made valid for Prometheus, as described in the module doc.
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
    out
}

enum Data<'a> {
    Counter(u64),
    Gauge(f64),
    Summary(&'a HistogramSnapshot),
}

impl Data<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Data::Counter(_) => "counter",
            Data::Gauge(_) => "gauge",
            Data::Summary(_) => "summary",
        }
    }
}

struct Family<'a> {
    original: &'a str,
    name: String,
    data: Data<'a>,
}

/// Renders a registry snapshot as exposition text (one trailing newline,
/// families sorted by their Prometheus name).
pub(crate) fn render(snap: &RegistrySnapshot) -> String {
    let mut families: Vec<Family<'_>> = Vec::new();
    families.extend(snap.counters.iter().map(|(n, v)| Family {
        original: n,
        name: String::new(),
        data: Data::Counter(*v),
    }));
    families.extend(snap.gauges.iter().map(|(n, v)| Family {
        original: n,
        name: String::new(),
        data: Data::Gauge(*v),
    }));
    families.extend(snap.histograms.iter().map(|(n, h)| Family {
        original: n,
        name: String::new(),
        data: Data::Summary(h),
    }));
    // Stable sort: for one original name, counters, gauges, histograms.
    families.sort_by(|a, b| a.original.cmp(b.original));
    assign_names(&mut families);
    families.sort_by(|a, b| a.name.cmp(&b.name));

    let mut out = String::new();
    for f in &families {
        write_family(&mut out, f);
    }
    out
}

/// Gives every family a distinct sanitised name (see the module doc).
fn assign_names(families: &mut [Family<'_>]) {
    let mut taken: HashSet<String> = HashSet::new();
    for f in families {
        let base = sanitize_name(f.original);
        let owned = |name: &str| -> Vec<String> {
            match f.data {
                Data::Summary(_) => {
                    vec![
                        name.to_owned(),
                        format!("{name}_sum"),
                        format!("{name}_count"),
                    ]
                }
                _ => vec![name.to_owned()],
            }
        };
        let mut candidate = base.clone();
        let mut n = 1u64;
        while owned(&candidate).iter().any(|s| taken.contains(s)) {
            n += 1;
            candidate = format!("{base}_{n}");
        }
        taken.extend(owned(&candidate));
        f.name = candidate;
    }
}

fn write_family(out: &mut String, f: &Family<'_>) {
    let name = &f.name;
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {}", escape_help(f.original));
    let _ = writeln!(out, "# TYPE {name} {}", f.data.type_name());
    match &f.data {
        Data::Counter(v) => {
            let _ = writeln!(out, "{name} {v}");
        }
        Data::Gauge(v) => {
            let _ = writeln!(out, "{name} {}", format_float(*v));
        }
        Data::Summary(h) => {
            for (q, _, label) in QUANTILES {
                let _ = writeln!(out, "{name}{{quantile=\"{label}\"}} {}", h.percentile(q));
            }
            let _ = writeln!(out, "{name}_sum {}", h.sum);
            let _ = writeln!(out, "{name}_count {}", h.count);
        }
    }
}

/// HELP text escaping: backslash and line feed.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as Prometheus (Go's `ParseFloat`) reads it.
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        // Display gives the shortest string that reads back to the same f64.
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StatsReceiver;
    use regex::Regex;
    use std::collections::HashMap;

    /// Checks `text` against the 0.0.4 exposition grammar and its rules:
    /// every line is a HELP, TYPE or sample line; each family has at most one
    /// HELP and one TYPE, placed before its samples; a family's samples are
    /// contiguous and named after it (with `_sum`/`_count` for summaries);
    /// no series appears twice. Returns the samples by series.
    fn validate(text: &str) -> HashMap<String, String> {
        const NAME: &str = r"[a-zA-Z_:][a-zA-Z0-9_:]*";
        let help = Regex::new(&format!(r"^# HELP ({NAME}) (?:[^\\\n]|\\\\|\\n)*$")).unwrap();
        let ty = Regex::new(&format!(
            r"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$"
        ))
        .unwrap();
        let sample = Regex::new(&format!(
            r#"^({NAME})(\{{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*")(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*")*,?\}})? (NaN|[+-]Inf|[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?: -?[0-9]+)?$"#
        ))
        .unwrap();

        assert!(text.is_empty() || text.ends_with('\n'), "no final newline");
        let mut helped = HashSet::new();
        let mut types: HashMap<String, String> = HashMap::new();
        let mut finished: HashSet<String> = HashSet::new();
        let mut current: Option<String> = None;
        let mut series = HashMap::new();
        let mut sampled: HashSet<String> = HashSet::new();
        for line in text.lines() {
            let family = if let Some(c) = help.captures(line) {
                assert!(helped.insert(c[1].to_owned()), "second HELP: {line}");
                c[1].to_owned()
            } else if let Some(c) = ty.captures(line) {
                let name = c[1].to_owned();
                assert!(!types.contains_key(&name), "second TYPE: {line}");
                assert!(!sampled.contains(&name), "TYPE after samples: {line}");
                types.insert(name.clone(), c[2].to_owned());
                name
            } else if let Some(c) = sample.captures(line) {
                let name = &c[1];
                let family = current.clone().unwrap_or_else(|| name.to_owned());
                let owned = match types.get(&family).map(String::as_str) {
                    Some("summary") => {
                        name == family
                            || name == format!("{family}_sum")
                            || name == format!("{family}_count")
                    }
                    _ => name == family,
                };
                assert!(owned, "sample {name} outside its family {family}");
                sampled.insert(family.clone());
                let key = format!("{}{}", name, c.get(2).map_or("", |m| m.as_str()));
                let value = c[3].to_owned();
                assert!(
                    series.insert(key, value).is_none(),
                    "duplicate series: {line}"
                );
                family
            } else {
                panic!("line does not match the exposition grammar: {line:?}");
            };
            if current.as_deref() != Some(&family[..]) {
                if let Some(prev) = current.take() {
                    finished.insert(prev);
                }
                assert!(!finished.contains(&family), "family {family} is split");
                current = Some(family);
            }
        }
        series
    }

    #[test]
    fn sanitising() {
        assert_eq!(sanitize_name("srv/http/requests"), "srv_http_requests");
        assert_eq!(sanitize_name("jvm:gc.msec"), "jvm:gc_msec");
        assert_eq!(sanitize_name("9lives"), "_9lives");
        assert_eq!(sanitize_name(""), "_");
        assert_eq!(sanitize_name("héllo wörld"), "h_llo_w_rld");
        assert_eq!(sanitize_name("Ok_Name:1"), "Ok_Name:1");
    }

    #[test]
    fn every_kind_is_exported() {
        let root = StatsReceiver::new();
        root.scope("srv").scope("http").counter("requests").add(3);
        let h = root.scope("srv").scope("http").histogram("latency_ms");
        for v in 1..=100 {
            h.add(v);
        }
        let _g = root.gauge("jvm/heap_mb", || 1.5);
        let text = root.prometheus_text();
        let series = validate(&text);
        let expected = "\
# HELP jvm_heap_mb jvm/heap_mb
# TYPE jvm_heap_mb gauge
jvm_heap_mb 1.5
# HELP srv_http_latency_ms srv/http/latency_ms
# TYPE srv_http_latency_ms summary
srv_http_latency_ms{quantile=\"0.5\"} 50
srv_http_latency_ms{quantile=\"0.9\"} 90
srv_http_latency_ms{quantile=\"0.95\"} 95
srv_http_latency_ms{quantile=\"0.99\"} 99
srv_http_latency_ms{quantile=\"0.999\"} 100
srv_http_latency_ms{quantile=\"0.9999\"} 100
srv_http_latency_ms_sum 5050
srv_http_latency_ms_count 100
# HELP srv_http_requests srv/http/requests
# TYPE srv_http_requests counter
srv_http_requests 3
";
        assert_eq!(text, expected);
        assert_eq!(series.len(), 10);
    }

    #[test]
    fn an_empty_registry_is_empty_text() {
        assert_eq!(StatsReceiver::new().prometheus_text(), "");
    }

    #[test]
    fn an_empty_histogram_is_a_valid_summary() {
        let root = StatsReceiver::new();
        let _h = root.histogram("h");
        let series = validate(&root.prometheus_text());
        assert_eq!(series["h_count"], "0");
        assert_eq!(series["h{quantile=\"0.99\"}"], "0");
    }

    #[test]
    fn non_finite_gauges() {
        let root = StatsReceiver::new();
        let _a = root.gauge("nan", || f64::NAN);
        let _b = root.gauge("pos", || f64::INFINITY);
        let _c = root.gauge("neg", || f64::NEG_INFINITY);
        let _d = root.gauge("tiny", || 1e-300);
        let _e = root.gauge("huge", || -1e300);
        let series = validate(&root.prometheus_text());
        assert_eq!(series["nan"], "NaN");
        assert_eq!(series["pos"], "+Inf");
        assert_eq!(series["neg"], "-Inf");
        assert_eq!(series["tiny"].parse::<f64>().unwrap(), 1e-300);
        assert_eq!(series["huge"].parse::<f64>().unwrap(), -1e300);
    }

    #[test]
    fn colliding_names_get_distinct_suffixes() {
        let root = StatsReceiver::new();
        root.counter("a/b").add(1);
        root.counter("a.b").add(2);
        root.counter("a_b").add(3);
        root.counter("a_b_2").add(4);
        let _g = root.gauge("a:b", || 5.0);
        let text = root.prometheus_text();
        let series = validate(&text);
        // Byte order of the originals: "a.b" < "a/b" < "a:b" < "a_b" < "a_b_2".
        assert_eq!(series["a_b"], "2");
        assert_eq!(series["a_b_2"], "1");
        assert_eq!(series["a:b"], "5");
        assert_eq!(series["a_b_3"], "3");
        assert_eq!(series["a_b_2_2"], "4");
        assert!(text.contains("# HELP a_b_2 a/b\n"));
    }

    #[test]
    fn summaries_own_their_sum_and_count_names() {
        let root = StatsReceiver::new();
        root.histogram("rpc").add(10);
        root.counter("rpc_count").add(99);
        root.counter("rpc.sum").add(98);
        // Same original name across kinds: counter first, then the summary.
        root.counter("x").add(1);
        root.histogram("x").add(1);
        let series = validate(&root.prometheus_text());
        assert_eq!(series["rpc_count"], "1");
        assert_eq!(series["rpc_sum"], "10");
        assert_eq!(series["rpc_sum_2"], "98");
        assert_eq!(series["rpc_count_2"], "99");
        assert_eq!(series["x"], "1");
        assert_eq!(series["x_2_count"], "1");
    }

    #[test]
    fn odd_original_names_stay_valid() {
        let root = StatsReceiver::new();
        root.counter("line\nbreak\\slash \"q\"").incr();
        root.counter("").incr();
        root.counter("0starts/with/digit").incr();
        root.histogram("über/größe").add(5);
        let text = root.prometheus_text();
        let series = validate(&text);
        assert_eq!(series.len(), 3 + 8);
        assert!(text.contains("# HELP line_break_slash__q_ line\\nbreak\\\\slash \"q\"\n"));
    }

    #[test]
    fn the_validator_rejects_bad_text() {
        for bad in [
            "srv/http 1\n",
            "x 1\nx 2\n",
            "# TYPE x counter\n# TYPE x counter\nx 1\n",
            "x one\n",
            "x{quantile=0.5} 1\n",
            "# TYPE x counter\nx_sum 1\n",
            "a 1\nb 1\na 2\n",
            "x 1\n# TYPE x counter\n",
            "# HELP x a\nraw\n",
        ] {
            let r = std::panic::catch_unwind(|| validate(bad));
            assert!(r.is_err(), "accepted {bad:?}");
        }
    }
}
