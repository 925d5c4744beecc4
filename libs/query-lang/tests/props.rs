//! Property tests: the parser never panics and always locates its errors inside the input;
//! printing round-trips; rewriting and fragment push-down preserve results on random data.

use proptest::prelude::*;

use query_lang::ast::{ArithOp, CmpOp, Selection};
use query_lang::check::check_query;
use query_lang::{
    Expr, ExprKind, KeyPart, MemorySource, Pattern, PlanOptions, Range, RawSeries, SeriesKey,
    Value, compile, compile_with, eval, parse, plan, print,
};

const TOKENS: &[&str] = &[
    "ts(",
    "web",
    ",",
    " ",
    "*",
    "h1",
    "a",
    ")",
    "(",
    "sum",
    "rate",
    "moving",
    "5m",
    "1h30m",
    "2",
    "0.5",
    "1e3",
    "+",
    "-",
    "/",
    "*",
    ">",
    ">=",
    "==",
    "!=",
    "<",
    "by",
    "(source)",
    "members(role.fe)",
    "/re/",
    "\"q\"",
    "'",
    "\"",
    "\\",
    "\n",
    "#c\n",
    "{",
    "}",
    "[",
    "]",
    "filter(",
    "timeshift(",
    "percentile(",
    "topk(",
    "downsample(",
    "avg",
    "last",
    "fill(",
    "alias(",
    "é",
    "\t",
    "=",
    "!",
    ".",
    "1.",
    "1e",
    "99999999999w",
    "$",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|v| v.concat())
}

fn small_source() -> MemorySource {
    let mut s = MemorySource::default();
    s.series.push(RawSeries {
        key: SeriesKey::new("web", "h1", "a"),
        samples: vec![(60_000, 1.0), (120_000, 2.0)],
    });
    s.roles.insert("fe".into(), vec!["h1".into()]);
    s
}

fn check_input(src: &str) {
    match parse(src) {
        Err(e) => {
            let sp = e.span();
            assert!(
                sp.start <= src.len() && sp.end <= src.len(),
                "span {sp:?} outside {src:?}"
            );
            assert!(sp.start <= sp.end);
            let lines = src.split('\n').count();
            assert!(
                e.line() >= 1 && e.line() <= lines,
                "line {} of {lines}",
                e.line()
            );
            assert!(e.col() >= 1);
            assert!(!e.to_string().is_empty());
        }
        Ok(ast) => {
            let printed = print(&ast);
            assert_eq!(parse(&printed).ok(), Some(ast), "round trip of {printed:?}");
        }
    }
    match compile(src) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(q) => {
            let _ = q.explain();
            let _ = q.eval(&small_source(), Range::new(0, 300_000, 60_000));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_never_panic(src in "\\PC{0,60}") {
        check_input(&src);
    }

    #[test]
    fn token_soup_never_panics(src in token_soup()) {
        check_input(&src);
    }
}

// ---------------------------------------------------------------------
// Round trip of printed trees.

fn e(kind: ExprKind) -> Expr {
    Expr::synthetic(kind)
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        Just(Pattern::Any),
        "[a-z][a-z0-9_/.:-]{0,8}".prop_map(Pattern::Literal),
        "\\PC{0,8}".prop_map(Pattern::Literal),
        Just(Pattern::Literal("*all*".into())),
        Just(Pattern::Literal("lat{path=\"/a,b\"}".into())),
        prop::sample::select(vec![
            "http/*",
            "web-??",
            "{a,b}",
            "h[12]",
            "l*{path=\"/a,b\"}"
        ])
        .prop_map(|s| Pattern::Glob(s.to_string())),
        prop::sample::select(vec!["web-\\d+", "a|b", "http\\/x", "[a-z]+"])
            .prop_map(|s| Pattern::Regex(s.to_string())),
        "[a-z][a-z0-9_.-]{0,6}".prop_map(Pattern::Members),
    ]
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}".prop_filter("not a keyword", |s| s != "ts" && s != "by")
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        prop_oneof![
            (0u32..1000).prop_map(f64::from),
            Just(0.5),
            Just(1e-7),
            Just(1e300),
            Just(123.25),
        ]
        .prop_map(|n| e(ExprKind::Number(n))),
        (1i64..10_000_000_000).prop_map(|d| e(ExprKind::Duration(d))),
        "\\PC{0,6}".prop_map(|s| e(ExprKind::Str(s))),
        ident().prop_map(|s| e(ExprKind::Name(s))),
        (pattern(), pattern(), pattern()).prop_map(|(a, b, c)| {
            e(ExprKind::Select(Selection {
                service: (a, Default::default()),
                source: (b, Default::default()),
                metric: (c, Default::default()),
            }))
        }),
    ]
}

fn tree() -> impl Strategy<Value = Expr> {
    let arith = prop::sample::select(vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div]);
    let cmp = prop::sample::select(vec![
        CmpOp::Gt,
        CmpOp::Ge,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Eq,
        CmpOp::Ne,
    ]);
    let part = prop::sample::select(vec![KeyPart::Service, KeyPart::Source, KeyPart::Metric]);
    leaf().prop_recursive(5, 40, 4, move |inner| {
        prop_oneof![
            inner.clone().prop_map(|x| e(ExprKind::Neg(Box::new(x)))),
            (arith.clone(), inner.clone(), inner.clone()).prop_map(|(o, a, b)| e(ExprKind::Arith(
                o,
                Box::new(a),
                Box::new(b)
            ))),
            (cmp.clone(), inner.clone(), inner.clone()).prop_map(|(o, a, b)| e(ExprKind::Cmp(
                o,
                Box::new(a),
                Box::new(b)
            ))),
            (
                ident(),
                prop::collection::vec(inner.clone(), 0..3),
                prop::option::of(prop::collection::vec(part.clone(), 1..3))
            )
                .prop_map(|(name, args, by)| e(ExprKind::Call {
                    name,
                    name_span: Default::default(),
                    args,
                    by: by.map(|v| v.into_iter().map(|p| (p, Default::default())).collect()),
                })),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn print_then_parse_is_identity(ast in tree()) {
        let printed = print(&ast);
        let back = parse(&printed);
        prop_assert!(back.is_ok(), "{printed:?} does not parse: {}", back.unwrap_err());
        prop_assert_eq!(back.unwrap(), ast, "printed as {:?}", printed);
    }
}

// ---------------------------------------------------------------------
// Rewrites and push-down preserve results on random data.

fn series_expr(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop::sample::select(vec![
        "ts(web, *, a)",
        "ts(web, h1, b)",
        "ts(*, *, *)",
        "ts(db, members(role.fe), {a,b})",
        "downsample(ts(web, *, a), avg)",
        "downsample(ts(*, *, b), count)",
        "timeshift(ts(web, *, a), 1m)",
    ])
    .prop_map(String::from)
    .boxed();
    if depth == 0 {
        return leaf;
    }
    let inner = series_expr(depth - 1);
    let scalar = prop::sample::select(vec![
        "0", "1", "2", "(1 + 1)", "-3", "0.5", "(2 * 0)", "--1",
    ]);
    let agg = prop::sample::select(vec!["sum", "avg", "min", "max", "count"]);
    let by = prop::sample::select(vec![
        "",
        " by (service)",
        " by (source)",
        " by (metric, source)",
    ]);
    let op = prop::sample::select(vec!["+", "-", "*", "/"]);
    let cmp = prop::sample::select(vec![">", "<", ">=", "!="]);
    prop_oneof![
        leaf,
        (agg, inner.clone(), by.clone()).prop_map(|(a, x, b)| format!("{a}({x}){b}")),
        (inner.clone(), op.clone(), scalar.clone()).prop_map(|(x, o, c)| format!("({x}) {o} {c}")),
        (scalar.clone(), op.clone(), inner.clone()).prop_map(|(c, o, x)| format!("{c} {o} ({x})")),
        (inner.clone(), op, inner.clone()).prop_map(|(x, o, y)| format!("({x}) {o} ({y})")),
        inner.clone().prop_map(|x| format!("-({x})")),
        (
            prop::sample::select(vec!["rate", "increase", "derivative", "integral"]),
            inner.clone()
        )
            .prop_map(|(f, x)| format!("{f}({x})")),
        (
            inner.clone(),
            prop::sample::select(vec!["1m", "3m", "90s"]),
            prop::sample::select(vec!["avg", "min", "max", "sum", "count"])
        )
            .prop_map(|(x, w, a)| format!("moving({x}, {w}, {a})")),
        (
            inner.clone(),
            prop::sample::select(vec!["1m", "2m", "150s"])
        )
            .prop_map(|(x, d)| format!("timeshift({x}, {d})")),
        (inner.clone(), scalar.clone()).prop_map(|(x, c)| format!("fill({x}, {c})")),
        (inner.clone(), scalar.clone()).prop_map(|(x, c)| format!("default({x}, {c})")),
        inner
            .clone()
            .prop_map(|x| format!("alias({x}, \"n-{{source}}\")")),
        (inner.clone(), cmp.clone(), scalar.clone())
            .prop_map(|(x, o, c)| format!("filter(({x}) {o} {c})")),
        (scalar.clone(), cmp, inner.clone()).prop_map(|(c, o, x)| format!("filter({c} {o} ({x}))")),
        (
            inner.clone(),
            prop::sample::select(vec!["percentile", "topk", "bottomk"]),
            by
        )
            .prop_map(|(x, f, b)| format!("{f}({x}, 2){b}")),
    ]
    .boxed()
}

fn data() -> impl Strategy<Value = MemorySource> {
    let key = (
        prop::sample::select(vec!["web", "db"]),
        prop::sample::select(vec!["h1", "h2", "h3"]),
        prop::sample::select(vec!["a", "b"]),
    );
    let samples = prop::collection::btree_map(0i64..1_200, -5i32..20, 0..25);
    prop::collection::vec((key, samples), 0..8).prop_map(|v| {
        let mut src = MemorySource::default();
        for ((svc, host, m), samples) in v {
            let key = SeriesKey::new(svc, host, m);
            if src.series.iter().any(|s| s.key == key) {
                continue;
            }
            src.series.push(RawSeries {
                key,
                samples: samples
                    .into_iter()
                    .map(|(t, v)| (t * 1000, f64::from(v)))
                    .collect(),
            });
        }
        src.roles
            .insert("fe".into(), vec!["h1".into(), "h3".into()]);
        src
    })
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Series(x), Value::Series(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(s, t)| {
                    s.key == t.key
                        && s.points.len() == t.points.len()
                        && s.points.iter().zip(&t.points).all(|(p, q)| {
                            p.0 == q.0 && (p.1 == q.1 || (p.1.is_nan() && q.1.is_nan()))
                        })
                })
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn rewrites_and_pushdown_preserve_results(
        q in series_expr(3),
        src in data(),
        start in 0i64..10,
        step in prop::sample::select(vec![30i64, 60, 90]),
        len in 1i64..20,
    ) {
        let range = Range::new(start * 60_000, (start + len) * 60_000, step * 1000);
        let compiled = compile(&q);
        prop_assert!(compiled.is_ok(), "{q}: {}", compiled.unwrap_err());
        let compiled = compiled.unwrap();
        // The rewritten query is still well typed, with the same type.
        prop_assert_eq!(check_query(&compiled.rewritten.expr).ok(), Some(compiled.ty));
        // And its normal form is a fixpoint: printing what it parses to gives it back.
        let normal = compiled.normalised();
        prop_assert_eq!(parse(&normal).map(|e| print(&e)).ok(), Some(normal.clone()));

        let original = plan(&compiled.ast, PlanOptions::PLAIN).unwrap();
        let reference = eval(&original, &src, range).unwrap();
        let rewritten_pushed = compiled.eval(&src, range).unwrap();
        let rewritten_plain = compile_with(&q, PlanOptions::PLAIN).unwrap().eval(&src, range).unwrap();
        let original_pushed = eval(&plan(&compiled.ast, PlanOptions::default()).unwrap(), &src, range).unwrap();
        prop_assert!(same(&reference, &rewritten_pushed), "{q}\nreference {reference:?}\nrewritten+pushdown {rewritten_pushed:?}\n{}", compiled.explain());
        prop_assert!(same(&reference, &rewritten_plain), "{q}\nreference {reference:?}\nrewritten {rewritten_plain:?}");
        prop_assert!(same(&reference, &original_pushed), "{q}\nreference {reference:?}\npushdown {original_pushed:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `delta_points` (which skips the grid test along runs of consecutive
    /// steps) answers as its definition: a value at every point of `out` one
    /// step after the point before it.
    #[test]
    fn delta_points_is_its_definition(
        raw in proptest::collection::vec((0i64..40, 0i64..6, -50.0f64..50.0), 0..40),
        phase in 0i64..3,
        lo in 0i64..10,
        len in 0i64..40,
    ) {
        // Mostly on a grid of 3, some points off it by 1 or 2.
        let mut points: Vec<(i64, f64)> = raw
            .iter()
            .map(|&(t, off, v)| (t * 3 + (off - 3).max(0), v))
            .collect();
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
        let out = Range::new(lo * 3 + phase, (lo + len) * 3, 3);
        for f in [query_lang::ops::Delta::Rate, query_lang::ops::Delta::Increase, query_lang::ops::Delta::Derivative] {
            let mut got = Vec::new();
            query_lang::ops::delta_points(&points, f, out, &mut got);
            let secs = 3.0 / 1000.0;
            let want: Vec<(i64, f64)> = points
                .windows(2)
                .filter(|w| w[1].0 - w[0].0 == 3 && out.contains(w[1].0))
                .map(|w| {
                    let d = w[1].1 - w[0].1;
                    let inc = if d < 0.0 { w[1].1 } else { d };
                    let v = match f {
                        query_lang::ops::Delta::Rate => inc / secs,
                        query_lang::ops::Delta::Increase => inc,
                        query_lang::ops::Delta::Derivative => d / secs,
                    };
                    (w[1].0, v)
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
