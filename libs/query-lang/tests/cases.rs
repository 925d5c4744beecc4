//! Runs the data-driven language tests in `tests/cases/*.txt`.
//!
//! A file holds cases separated by `=== name` lines. Lines before the first
//! case set file-wide defaults (`range:`, `role NAME:`, `series:`), which
//! every case inherits (a case's `range:` replaces the default; its series
//! and roles add to the defaults). Sections start at column 0:
//!
//! ```text
//! query: ts(web, *, requests) / 2      (further non-section lines continue the query)
//! range: START END STEP                (seconds; points at START + k*STEP < END)
//! role NAME: source source ...
//! series: service source metric | t:v t:v ...   (t in seconds)
//! expect:                              (then one line per series: key | t:v ..., or `scalar V`)
//! error:                               (then the exact error text, snippet included)
//! print: / rewrite: / type: / plan:    (normalised text, rewritten text, type, plan listing)
//! ```
//!
//! `expect:` is checked three ways: rewritten with fragment push-down, rewritten
//! without push-down, and neither rewritten nor pushed down; all must agree.

use std::collections::HashMap;
use std::fmt::Write;
use std::fs;
use std::path::Path;

use query_lang::{
    MemorySource, PlanOptions, Range, RawSeries, SeriesKey, Value, compile, compile_with, eval,
    parse, plan, print,
};

#[derive(Default, Clone)]
struct Case {
    name: String,
    file: String,
    line: usize,
    sections: Vec<(String, Vec<String>)>,
}

impl Case {
    fn get(&self, key: &str) -> Option<String> {
        self.sections
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.join("\n").trim_end().to_string())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.sections
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.iter().filter(|l| !l.trim().is_empty()).cloned())
            .collect()
    }
}

const KEYS: [&str; 9] = [
    "query", "range", "series", "expect", "error", "print", "rewrite", "plan", "type",
];

fn header(line: &str) -> Option<(String, String)> {
    let (k, rest) = line.split_once(':')?;
    if KEYS.contains(&k) || k.starts_with("role ") {
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        return Some((k.to_string(), rest.to_string()));
    }
    None
}

fn parse_file(path: &Path) -> (Case, Vec<Case>) {
    let text = fs::read_to_string(path).unwrap();
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let mut defaults = Case::default();
    let mut cases: Vec<Case> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(Case {
                name: name.trim().to_string(),
                file: file.clone(),
                line: i + 1,
                sections: Vec::new(),
            });
            continue;
        }
        let cur = cases.last_mut().unwrap_or(&mut defaults);
        // Comments are `#` alone or `# ...`; plan listings start with `#0`.
        if line == "#" || line.starts_with("# ") {
            continue;
        }
        if let Some((k, v)) = header(line) {
            let mut lines = Vec::new();
            if !v.is_empty() {
                lines.push(v);
            }
            cur.sections.push((k, lines));
        } else if let Some(last) = cur.sections.last_mut() {
            last.1.push(line.to_string());
        } else if !line.trim().is_empty() {
            panic!("{file}:{}: text outside a section: {line}", i + 1);
        }
    }
    (defaults, cases)
}

fn secs(s: &str) -> i64 {
    (s.parse::<f64>().unwrap_or_else(|_| panic!("bad time {s}")) * 1000.0).round() as i64
}

fn value(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or_else(|_| panic!("bad value {s}")),
    }
}

fn key_part(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_string())
}

fn source_of(defaults: &Case, case: &Case) -> MemorySource {
    let mut src = MemorySource::default();
    for c in [defaults, case] {
        for line in c.all("series") {
            let (key, pts) = line.split_once('|').expect("series: key | points");
            let parts: Vec<&str> = key.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "series key needs 3 parts: {line}");
            let samples = pts
                .split_whitespace()
                .map(|p| {
                    let (t, v) = p.split_once(':').expect("t:v");
                    (secs(t), value(v))
                })
                .collect();
            src.series.push(RawSeries {
                key: SeriesKey {
                    service: key_part(parts[0]),
                    source: key_part(parts[1]),
                    metric: key_part(parts[2]),
                },
                samples,
            });
        }
        for (k, v) in &c.sections {
            if let Some(role) = k.strip_prefix("role ") {
                let members = v.join(" ").split_whitespace().map(String::from).collect();
                src.roles.insert(role.trim().to_string(), members);
            }
        }
    }
    src
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

fn render(v: &Value) -> String {
    match v {
        Value::Scalar(x) => format!("scalar {}", fmt_num(*x)),
        Value::Series(set) => {
            let mut out = String::new();
            for s in set {
                let pts: Vec<String> = s
                    .points
                    .iter()
                    .map(|(t, v)| format!("{}:{}", fmt_num(*t as f64 / 1000.0), fmt_num(*v)))
                    .collect();
                let _ = writeln!(out, "{} | {}", s.key, pts.join(" "));
            }
            out.trim_end().to_string()
        }
    }
}

fn normalise_block(s: &str) -> String {
    s.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_case(defaults: &Case, case: &Case) -> Result<(), String> {
    let query = case.get("query").ok_or("case without query")?;
    let range = case
        .get("range")
        .or_else(|| defaults.get("range"))
        .unwrap_or_else(|| "0 300 60".into());
    let r: Vec<i64> = range.split_whitespace().map(secs).collect();
    let range = Range::new(r[0], r[1], r[2]);
    let src = source_of(defaults, case);

    let compiled = compile(&query);
    if let Ok(ast) = parse(&query) {
        let printed = print(&ast);
        match parse(&printed) {
            Ok(again) if again == ast => {}
            other => {
                return Err(format!(
                    "print does not round-trip: {printed:?} -> {other:?}"
                ));
            }
        }
        if let Some(p) = case.get("print")
            && p != printed
        {
            return Err(format!("print:\n  expected: {p}\n  actual:   {printed}"));
        }
    }
    let q = match compiled {
        Err(e) => {
            let actual = e.to_string();
            return match case.get("error") {
                Some(exp) if normalise_block(&exp) == normalise_block(&actual) => Ok(()),
                Some(exp) => Err(format!("error:\n--- expected\n{exp}\n--- actual\n{actual}")),
                None => Err(format!("unexpected error:\n{actual}")),
            };
        }
        Ok(q) => q,
    };
    if let Some(t) = case.get("type")
        && t != q.ty.to_string()
    {
        return Err(format!("type: expected {t}, actual {}", q.ty));
    }
    if let Some(rw) = case.get("rewrite")
        && rw != q.normalised()
    {
        return Err(format!(
            "rewrite:\n  expected: {rw}\n  actual:   {}",
            q.normalised()
        ));
    }
    if let Some(p) = case.get("plan")
        && normalise_block(&p) != normalise_block(&q.plan.explain())
    {
        return Err(format!(
            "plan:\n--- expected\n{p}\n--- actual\n{}",
            q.plan.explain()
        ));
    }
    let pushed = q.eval(&src, range).map(|v| render(&v));
    let plain = compile_with(&query, PlanOptions::PLAIN)
        .map_err(|e| e.to_string())?
        .eval(&src, range)
        .map(|v| render(&v));
    let raw_plan = plan(&q.ast, PlanOptions::PLAIN).map_err(|e| e.to_string())?;
    let raw = eval(&raw_plan, &src, range).map(|v| render(&v));
    if pushed != plain || pushed != raw {
        return Err(format!(
            "evaluation paths disagree:\n pushed down: {pushed:?}\n no push-down: {plain:?}\n not rewritten: {raw:?}"
        ));
    }
    match (pushed, case.get("expect"), case.get("error")) {
        (Ok(actual), Some(exp), _) => {
            if normalise_block(&exp) != normalise_block(&actual) {
                return Err(format!(
                    "expect:\n--- expected\n{exp}\n--- actual\n{actual}"
                ));
            }
        }
        (Err(e), _, Some(exp)) => {
            if normalise_block(&exp) != normalise_block(&e.to_string()) {
                return Err(format!("error:\n--- expected\n{exp}\n--- actual\n{e}"));
            }
        }
        (Ok(actual), None, Some(_)) => return Err(format!("expected an error, got:\n{actual}")),
        (Err(e), _, None) => return Err(format!("unexpected evaluation error: {e}")),
        (Ok(_), None, None) => {}
    }
    Ok(())
}

#[test]
fn language_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    let mut names: HashMap<String, usize> = HashMap::new();
    for p in &paths {
        let (defaults, cases) = parse_file(p);
        for c in &cases {
            count += 1;
            *names.entry(format!("{}:{}", c.file, c.name)).or_default() += 1;
            if let Err(e) = run_case(&defaults, c) {
                failures.push(format!("{}:{} `{}`\n{e}\n", c.file, c.line, c.name));
            }
        }
    }
    for (n, k) in &names {
        assert_eq!(*k, 1, "duplicate case name {n}");
    }
    assert!(count > 0, "no cases found");
    if !failures.is_empty() {
        panic!(
            "{} of {count} cases failed:\n\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    eprintln!("{count} language cases passed");
}
