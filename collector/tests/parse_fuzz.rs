//! Property tests of the scrape parsers: arbitrary input never panics, errors always
//! name a position inside the input, and well-formed bodies parse back to the model
//! they were printed from.

use collector::parse::{ParseError, json, maybe_gunzip, text, utf8};
use proptest::prelude::*;

fn text_like() -> impl Strategy<Value = String> {
    // Mostly characters that matter to the grammar, so the fuzzer gets deep.
    proptest::collection::vec(
        prop_oneof![
            Just("a".to_owned()),
            Just("_".to_owned()),
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("=".to_owned()),
            Just("\"".to_owned()),
            Just(",".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("#".to_owned()),
            Just("\\".to_owned()),
            Just("1".to_owned()),
            Just(".".to_owned()),
            Just("e".to_owned()),
            Just("-".to_owned()),
            Just("NaN".to_owned()),
            Just("+Inf".to_owned()),
            Just("# TYPE ".to_owned()),
            Just("# EOF".to_owned()),
            Just(":".to_owned()),
            Just("[".to_owned()),
            Just("é".to_owned()),
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..64,
    )
    .prop_map(|v| v.concat())
}

fn check_position(input: &str, e: &ParseError) {
    match e {
        ParseError::Text { line, column, .. } => {
            let lines = input.split('\n').count();
            assert!(*line >= 1 && *line <= lines, "line {line} of {lines}");
            assert!(*column >= 1);
        }
        ParseError::Json { offset, .. } => assert!(*offset <= input.len()),
        other => panic!("unexpected error {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn text_parser_never_panics(input in text_like(), om in any::<bool>()) {
        let mut n = 0;
        match text::parse(&input, om, |_| n += 1) {
            Ok(count) => prop_assert_eq!(count, n),
            Err(e) => check_position(&input, &e),
        }
    }

    #[test]
    fn json_parser_never_panics(input in "[{}\":,0-9a-z.eE+\\-\\\\u \\n]{0,64}") {
        if let Err(e) = json::parse(&input, |_, _| {}) {
            check_position(&input, &e);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(body) = maybe_gunzip(&bytes, 1 << 20)
            && let Ok(s) = utf8(&body)
        {
            let _ = text::parse(s, false, |_| {});
            let _ = text::parse(s, true, |_| {});
            let _ = json::parse(s, |_, _| {});
        }
    }

    #[test]
    fn printed_text_parses_back(
        samples in proptest::collection::vec(
            ("[a-z_][a-z0-9_]{0,8}", proptest::collection::btree_map("[a-z][a-z0-9_]{0,5}", "[ -~]{0,8}", 0..4), any::<f64>(), proptest::option::of(any::<i64>())),
            0..20)
    ) {
        let mut body = String::new();
        for (name, labels, value, ts) in &samples {
            body.push_str(name);
            if !labels.is_empty() {
                body.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 { body.push(','); }
                    let esc = v.replace('\\', "\\\\").replace('"', "\\\"");
                    body.push_str(&format!("{k}=\"{esc}\""));
                }
                body.push('}');
            }
            let v = if value.is_nan() { "NaN".to_owned() } else if *value == f64::INFINITY { "+Inf".to_owned() } else if *value == f64::NEG_INFINITY { "-Inf".to_owned() } else { format!("{value:e}") };
            body.push_str(&format!(" {v}"));
            if let Some(ts) = ts { body.push_str(&format!(" {ts}")); }
            body.push('\n');
        }
        let mut got = Vec::new();
        text::parse(&body, false, |s| {
            let labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            got.push((s.name.to_owned(), labels, s.value, s.timestamp_ms));
        }).unwrap();
        prop_assert_eq!(got.len(), samples.len());
        for (g, (name, labels, value, ts)) in got.iter().zip(&samples) {
            prop_assert_eq!(&g.0, name);
            let want: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(&g.1, &want);
            prop_assert!(g.2 == *value || (g.2.is_nan() && value.is_nan()));
            prop_assert_eq!(g.3, *ts);
        }
    }

    #[test]
    fn printed_json_parses_back(entries in proptest::collection::vec(("[ -~é]{1,12}", any::<f64>().prop_filter("finite", |v| v.is_finite())), 0..20)) {
        let map: std::collections::BTreeMap<String, f64> = entries.iter().cloned().collect();
        let body = serde_json::to_string(&map).unwrap();
        let mut got = std::collections::BTreeMap::new();
        json::parse(&body, |k, v| { got.insert(k.to_owned(), v); }).unwrap();
        prop_assert_eq!(got, map);
    }
}

#[test]
fn gzip_bodies_are_inflated_with_a_limit() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"a 1\n").unwrap();
    let gz = enc.finish().unwrap();
    assert_eq!(&*maybe_gunzip(&gz, 100).unwrap(), b"a 1\n");
    assert!(matches!(
        maybe_gunzip(&gz, 2),
        Err(ParseError::TooLarge { limit: 2 })
    ));
    assert!(matches!(
        maybe_gunzip(&gz[..10], 100),
        Err(ParseError::Gzip { .. })
    ));
}
