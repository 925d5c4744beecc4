//! Prometheus text exposition (0.0.4) and OpenMetrics 1.0 text, parsed strictly in one
//! pass with no allocation per sample (label values with escapes excepted).
//!
//! Grammar accepted, per line:
//! ```text
//!  ""                                   (empty: ignored; Prometheus text only)
//!  "# HELP" name text | "# TYPE" name type | "# UNIT" name unit | "# EOF" | "#" comment
//!  name [ "{" label="value" ("," label="value")* [","] "}" ] value [ timestamp ] [ "#" exemplar ]
//! ```
//! Prometheus text timestamps are integer milliseconds; OpenMetrics ones are seconds
//! (with a fraction), converted to milliseconds. OpenMetrics bodies must end with
//! `# EOF`, which catches truncated bodies.

use std::borrow::Cow;

use super::ParseError;

/// The declared type of a metric family (`# TYPE`); `Untyped` when undeclared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
    Info,
    StateSet,
    GaugeHistogram,
}

impl MetricType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" | "unknown" => Self::Untyped,
            "info" => Self::Info,
            "stateset" => Self::StateSet,
            "gaugehistogram" => Self::GaugeHistogram,
            _ => return None,
        })
    }
}

/// A label of a sample; the value is borrowed unless it had escapes.
pub type Label<'a> = (&'a str, Cow<'a, str>);

/// One parsed sample.
#[derive(Debug)]
pub struct TextSample<'a, 'b> {
    /// The sample's metric name (with its `_total`, `_bucket`, ... suffix).
    pub name: &'a str,
    /// Its labels in the order written.
    pub labels: &'b [Label<'a>],
    /// The series as written: the name and the label set, up to the blank before the
    /// value. Consecutive samples of one series written alike have equal texts.
    pub series: &'a str,
    /// Its value.
    pub value: f64,
    /// Its timestamp in Unix ms, if the line had one.
    pub timestamp_ms: Option<i64>,
    /// The type declared for its family.
    pub kind: MetricType,
}

impl TextSample<'_, '_> {
    /// Whether the value is a count or sum that must be finite: counters, and the
    /// `_count`, `_sum`, `_bucket` series of histograms and summaries.
    pub fn must_be_finite(&self) -> bool {
        match self.kind {
            MetricType::Counter => true,
            MetricType::Histogram | MetricType::Summary | MetricType::GaugeHistogram => {
                self.name.ends_with("_count")
                    || self.name.ends_with("_bucket")
                    || self.name.ends_with("_sum")
                    || self.name.ends_with("_gcount")
                    || self.name.ends_with("_gsum")
            }
            _ => self.name.ends_with("_total"),
        }
    }
}

/// Writes the canonical metric name `name{a="1",b="2"}` (labels sorted by name,
/// values escaped as in the exposition format) of `name` and `labels` into `out`,
/// leaving out labels whose name `skip` returns true for.
pub fn canonical_metric(
    name: &str,
    labels: &mut [Label<'_>],
    skip: impl Fn(&str) -> bool,
    out: &mut String,
) {
    out.push_str(name);
    if labels.iter().all(|(n, _)| skip(n)) {
        return;
    }
    if !labels.windows(2).all(|w| w[0].0 <= w[1].0) {
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    out.push('{');
    let mut first = true;
    for (n, v) in labels.iter() {
        if skip(n) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(n);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    line: usize,
    line_start: usize,
}

impl<'a> Cursor<'a> {
    /// After a sample's series and the `blanks` that followed it: its value and
    /// timestamp, up to the end of the line.
    fn value_and_timestamp(
        &mut self,
        name: &str,
        blanks: usize,
        openmetrics: bool,
    ) -> Result<(f64, Option<i64>), ParseError> {
        if blanks == 0 {
            return Err(if self.at_eol() {
                self.err(self.pos, format!("expected a value after \"{name}\""))
            } else {
                self.err(
                    self.pos,
                    format!(
                        "expected a space before the value, found {}",
                        show(self.b[self.pos])
                    ),
                )
            });
        }
        let at = self.pos;
        let vt = self.token();
        if vt.is_empty() {
            return Err(self.err(at, "expected a value"));
        }
        let value =
            parse_value(vt).ok_or_else(|| self.err(at, format!("invalid value \"{vt}\"")))?;
        let mut timestamp_ms = None;
        if self.skip_blanks() > 0 && !self.at_eol() && self.peek() != Some(b'#') {
            let at = self.pos;
            let tt = self.token();
            timestamp_ms = Some(
                if openmetrics {
                    parse_seconds(tt)
                } else {
                    tt.parse::<i64>().ok()
                }
                .ok_or_else(|| self.err(at, format!("invalid timestamp \"{tt}\"")))?,
            );
            self.skip_blanks();
        }
        if self.peek() == Some(b'#') && openmetrics {
            // An exemplar; not stored.
            self.rest_of_line();
        }
        if !self.at_eol() {
            return Err(self.err(self.pos, "unexpected text after the sample"));
        }
        Ok((value, timestamp_ms))
    }

    fn err(&self, at: usize, message: impl Into<String>) -> ParseError {
        ParseError::Text {
            line: self.line,
            column: at - self.line_start + 1,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) -> usize {
        let start = self.pos;
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n'))
    }

    /// A token up to a blank or the end of the line.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\t' || c == b'\n' {
                break;
            }
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn name(&mut self, what: &str, colon: bool) -> Result<&'a str, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == b'_' || (colon && c == b':') => {
                self.pos += 1
            }
            Some(c) => {
                return Err(self.err(start, format!("expected a {what}, found {}", show(c))));
            }
            None => return Err(self.err(start, format!("expected a {what}, found end of input"))),
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'_' || (colon && c == b':') {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(&self.s[start..self.pos])
    }

    fn rest_of_line(&mut self) -> &'a str {
        let start = self.pos;
        match memchr_nl(&self.b[self.pos..]) {
            Some(i) => self.pos += i,
            None => self.pos = self.b.len(),
        }
        &self.s[start..self.pos]
    }

    fn label_value(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let open = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.err(open, "expected '\"' to open a label value"));
        }
        self.pos += 1;
        let start = self.pos;
        // Fast path: no escapes.
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    let v = &self.s[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(v));
                }
                b'\\' => break,
                b'\n' => return Err(self.err(self.pos, "newline inside a label value")),
                _ => self.pos += 1,
            }
        }
        if self.peek().is_none() {
            return Err(self.err(open, "unterminated label value"));
        }
        let mut owned = String::from(&self.s[start..self.pos]);
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err(open, "unterminated label value"));
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(Cow::Owned(owned));
                }
                b'\\' => {
                    let esc = self.b.get(self.pos + 1).copied();
                    match esc {
                        Some(b'\\') => owned.push('\\'),
                        Some(b'"') => owned.push('"'),
                        Some(b'n') => owned.push('\n'),
                        Some(other) => {
                            return Err(self.err(
                                self.pos,
                                format!("invalid escape \\{} in a label value", show(other)),
                            ));
                        }
                        None => return Err(self.err(open, "unterminated label value")),
                    }
                    self.pos += 2;
                }
                b'\n' => return Err(self.err(self.pos, "newline inside a label value")),
                _ => {
                    // Copy a run of plain bytes at once (UTF-8 sequences stay whole).
                    let run = self.pos;
                    while let Some(c) = self.peek() {
                        if c == b'"' || c == b'\\' || c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                    owned.push_str(&self.s[run..self.pos]);
                }
            }
        }
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn show(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("'{}'", c as char)
    } else if c == b' ' {
        "a space".into()
    } else {
        format!("byte 0x{c:02x}")
    }
}

fn family_type(name: &str, fam: &str, ty: MetricType) -> MetricType {
    if fam.is_empty() || !name.starts_with(fam) {
        return MetricType::Untyped;
    }
    match &name[fam.len()..] {
        "" | "_total" | "_count" | "_sum" | "_bucket" | "_created" | "_gcount" | "_gsum"
        | "_info" => ty,
        _ => MetricType::Untyped,
    }
}

/// Parses a Prometheus text (`openmetrics == false`) or OpenMetrics body, calling `f`
/// once per sample. Returns the number of samples. Stops at the first error, which
/// names the line and column; samples before it have already been passed to `f`.
pub fn parse<'a>(
    input: &'a str,
    openmetrics: bool,
    mut f: impl FnMut(&mut TextSample<'a, '_>),
) -> Result<usize, ParseError> {
    let mut c = Cursor {
        s: input,
        b: input.as_bytes(),
        pos: 0,
        line: 1,
        line_start: 0,
    };
    let mut labels: Vec<Label<'a>> = Vec::with_capacity(8);
    let (mut prev_name, mut prev_series): (&'a str, &'a str) = ("", "");
    let mut fam: &'a str = "";
    let mut fam_type = MetricType::Untyped;
    let mut count = 0usize;
    let mut saw_eof = false;
    while c.pos < c.b.len() {
        if saw_eof {
            return Err(c.err(c.pos, "content after # EOF"));
        }
        let line_begin = c.pos;
        match c.peek() {
            Some(b'\n') => {
                if openmetrics {
                    return Err(c.err(c.pos, "empty line (not allowed in OpenMetrics)"));
                }
            }
            Some(b'#') => {
                c.pos += 1;
                let had_blank = c.skip_blanks() > 0;
                let word = if had_blank { c.token() } else { "" };
                match word {
                    "TYPE" => {
                        if c.skip_blanks() == 0 {
                            return Err(c.err(c.pos, "expected a metric name after # TYPE"));
                        }
                        let name = c.name("metric name", true)?;
                        if c.skip_blanks() == 0 {
                            return Err(c.err(c.pos, "expected a type after the metric name"));
                        }
                        let at = c.pos;
                        let t = c.token();
                        let ty = MetricType::parse(t)
                            .ok_or_else(|| c.err(at, format!("unknown metric type \"{t}\"")))?;
                        c.skip_blanks();
                        if !c.at_eol() {
                            return Err(c.err(c.pos, "unexpected text after the metric type"));
                        }
                        fam = name;
                        fam_type = ty;
                    }
                    "EOF" if openmetrics => {
                        c.skip_blanks();
                        if !c.at_eol() {
                            return Err(c.err(c.pos, "unexpected text after # EOF"));
                        }
                        saw_eof = true;
                    }
                    "HELP" | "UNIT" => {
                        if c.skip_blanks() == 0 {
                            return Err(
                                c.err(c.pos, format!("expected a metric name after # {word}"))
                            );
                        }
                        c.name("metric name", true)?;
                        c.rest_of_line();
                    }
                    _ => {
                        if openmetrics {
                            return Err(c.err(line_begin, "unknown comment (OpenMetrics allows only HELP, TYPE, UNIT and EOF)"));
                        }
                        c.rest_of_line();
                    }
                }
            }
            // The series of the line before, written the same way (a backfill writes
            // one series' samples in a row): its name and labels stand.
            _ if !prev_series.is_empty()
                && c.b[c.pos..].starts_with(prev_series.as_bytes())
                && matches!(c.b.get(c.pos + prev_series.len()), Some(b' ' | b'\t')) =>
            {
                c.pos += prev_series.len();
                let blanks = c.skip_blanks();
                let (value, timestamp_ms) =
                    c.value_and_timestamp(prev_name, blanks, openmetrics)?;
                f(&mut TextSample {
                    name: prev_name,
                    labels: &labels,
                    series: prev_series,
                    value,
                    timestamp_ms,
                    kind: family_type(prev_name, fam, fam_type),
                });
                count += 1;
            }
            _ => {
                let series_begin = c.pos;
                let name = c.name("metric name", true)?;
                labels.clear();
                let mut blanks = c.skip_blanks();
                let mut series_end = series_begin + name.len();
                if c.peek() == Some(b'{') {
                    c.pos += 1;
                    loop {
                        c.skip_blanks();
                        if c.peek() == Some(b'}') {
                            c.pos += 1;
                            break;
                        }
                        let at = c.pos;
                        let lname = c.name("label name", false)?;
                        if labels.iter().any(|(n, _)| *n == lname) {
                            return Err(c.err(at, format!("duplicate label \"{lname}\"")));
                        }
                        c.skip_blanks();
                        if c.peek() != Some(b'=') {
                            return Err(
                                c.err(c.pos, format!("expected '=' after label name \"{lname}\""))
                            );
                        }
                        c.pos += 1;
                        c.skip_blanks();
                        let value = c.label_value()?;
                        labels.push((lname, value));
                        c.skip_blanks();
                        match c.peek() {
                            Some(b',') => c.pos += 1,
                            Some(b'}') => {
                                c.pos += 1;
                                break;
                            }
                            Some(other) => {
                                return Err(c.err(
                                    c.pos,
                                    format!(
                                        "expected ',' or '}}' after a label, found {}",
                                        show(other)
                                    ),
                                ));
                            }
                            None => {
                                return Err(c.err(
                                    c.pos,
                                    "expected ',' or '}' after a label, found end of input",
                                ));
                            }
                        }
                    }
                    series_end = c.pos;
                    blanks = c.skip_blanks();
                }
                let series = &c.s[series_begin..series_end];
                let (value, timestamp_ms) = c.value_and_timestamp(name, blanks, openmetrics)?;
                f(&mut TextSample {
                    name,
                    labels: &labels,
                    series,
                    value,
                    timestamp_ms,
                    kind: family_type(name, fam, fam_type),
                });
                (prev_name, prev_series) = (name, series);
                count += 1;
            }
        }
        // Step over the newline ending this line.
        match c.peek() {
            Some(b'\n') => {
                c.pos += 1;
                c.line += 1;
                c.line_start = c.pos;
            }
            None => {}
            Some(_) => return Err(c.err(c.pos, "unexpected text at the end of the line")),
        }
    }
    if openmetrics && !saw_eof {
        return Err(c.err(
            c.pos,
            "missing # EOF at the end of an OpenMetrics body (truncated?)",
        ));
    }
    Ok(count)
}

/// A Prometheus value: a decimal float, `NaN`, `+Inf` or `-Inf` (Go's spellings).
fn parse_value(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    let first = *b.first()?;
    if first.is_ascii_digit()
        || first == b'.'
        || ((first == b'-' || first == b'+')
            && b.len() > 1
            && (b[1].is_ascii_digit() || b[1] == b'.'))
    {
        // Rust's float grammar is Go's decimal grammar; reject anything else.
        return t.parse::<f64>().ok();
    }
    match t {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// OpenMetrics timestamp: seconds with an optional fraction, to ms.
fn parse_seconds(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.is_empty()
        || !b
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'e' | b'E' | b'+'))
    {
        return None;
    }
    let s: f64 = t.parse().ok()?;
    let ms = (s * 1000.0).round();
    if !ms.is_finite() || ms.abs() > 9.0e15 {
        return None;
    }
    Some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &str, om: bool) -> Result<Vec<(String, f64, Option<i64>)>, ParseError> {
        let mut out = Vec::new();
        parse(input, om, |s| {
            let mut m = String::new();
            let mut labels = s.labels.to_vec();
            canonical_metric(s.name, &mut labels, |_| false, &mut m);
            out.push((m, s.value, s.timestamp_ms));
        })?;
        Ok(out)
    }

    fn err(input: &str, om: bool) -> String {
        collect(input, om).unwrap_err().to_string()
    }

    #[test]
    fn samples_labels_and_timestamps() {
        let text = "# HELP http_requests_total The total.\n# TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{code=\"400\", method=\"post\",} 3\n\
                    \n# a free comment\nmetric_without_labels 12.47\n\
                    esc{path=\"C:\\\\dir\\\"q\\n\"} -Inf\nnan NaN\n";
        let got = collect(text, false).unwrap();
        assert_eq!(
            got[0],
            (
                "http_requests_total{code=\"200\",method=\"post\"}".into(),
                1027.0,
                Some(1395066363000)
            )
        );
        assert_eq!(
            got[1],
            (
                "http_requests_total{code=\"400\",method=\"post\"}".into(),
                3.0,
                None
            )
        );
        assert_eq!(got[2], ("metric_without_labels".into(), 12.47, None));
        assert_eq!(got[3].0, "esc{path=\"C:\\\\dir\\\"q\\n\"}");
        assert_eq!(got[3].1, f64::NEG_INFINITY);
        assert!(got[4].1.is_nan());
    }

    #[test]
    fn openmetrics_seconds_exemplars_and_eof() {
        let text = "# TYPE a counter\n# UNIT a seconds\na_total 1 1700000000.5 # {trace_id=\"x\"} 1\n# EOF\n";
        let got = collect(text, true).unwrap();
        assert_eq!(got, vec![("a_total".into(), 1.0, Some(1_700_000_000_500))]);
        assert!(err("a 1\n", true).contains("missing # EOF"));
        assert!(err("a 1\n# EOF\nb 2\n", true).contains("line 3, column 1: content after # EOF"));
    }

    #[test]
    fn repeated_series_lines_parse_like_any_other() {
        let text = "a{x=\"1\",y=\"q\\\"\"} 1 1000\n\
                    a{x=\"1\",y=\"q\\\"\"}\t2 2000\n\
                    a{x=\"1\",y=\"q\\\"\"}  3\n\
                    a 4\n\
                    a 5 5000\n\
                    ab 6\n\
                    a{x=\"1\"} 7\n";
        let got = collect(text, false).unwrap();
        let q = "a{x=\"1\",y=\"q\\\"\"}";
        assert_eq!(
            got,
            vec![
                (q.to_owned(), 1.0, Some(1000)),
                (q.to_owned(), 2.0, Some(2000)),
                (q.to_owned(), 3.0, None),
                ("a".to_owned(), 4.0, None),
                ("a".to_owned(), 5.0, Some(5000)),
                ("ab".to_owned(), 6.0, None),
                ("a{x=\"1\"}".to_owned(), 7.0, None),
            ]
        );
        let mut series = Vec::new();
        parse(text, false, |s| series.push(s.series)).unwrap();
        assert_eq!(series[0], series[1]);
        assert_eq!(series[3], "a");
        // A repeated series still needs its blank, value and a clean end of line.
        assert!(err("a{x=\"1\"} 1\na{x=\"1\"}2\n", false).contains("line 2"));
        assert!(err("a 1\na x\n", false).contains("invalid value"));
        assert!(err("a 1\na 1 2 3\n", false).contains("line 2"));
    }

    #[test]
    fn errors_name_line_column_and_cause() {
        assert_eq!(
            err("ok 1\nbad{a=\"1\" 2\n", false),
            "line 2, column 11: expected ',' or '}' after a label, found '2'"
        );
        assert_eq!(
            err("x 1\ny\n", false),
            "line 2, column 2: expected a value after \"y\""
        );
        assert_eq!(
            err("x abc\n", false),
            "line 1, column 3: invalid value \"abc\""
        );
        assert_eq!(
            err("x 1 12.5\n", false),
            "line 1, column 5: invalid timestamp \"12.5\""
        );
        assert_eq!(
            err("x{a=\"1\",a=\"2\"} 1\n", false),
            "line 1, column 9: duplicate label \"a\""
        );
        assert_eq!(
            err("x{a=\"\\t\"} 1\n", false),
            "line 1, column 6: invalid escape \\'t' in a label value"
        );
        assert_eq!(
            err("x{a=\"1} 1\n", false),
            "line 1, column 10: newline inside a label value"
        );
        assert_eq!(
            err("9x 1\n", false),
            "line 1, column 1: expected a metric name, found '9'"
        );
        assert_eq!(
            err("# TYPE x foo\n", false),
            "line 1, column 10: unknown metric type \"foo\""
        );
        assert_eq!(
            err("x 1 2 3\n", false),
            "line 1, column 7: unexpected text after the sample"
        );
        assert!(err("x 0x10\n", false).contains("invalid value"));
    }

    #[test]
    fn types_apply_to_family_suffixes() {
        let text = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_count 3\nh_sum 1.5\nother 1\n";
        let mut kinds = Vec::new();
        parse(text, false, |s| {
            kinds.push((s.name.to_owned(), s.kind, s.must_be_finite()))
        })
        .unwrap();
        assert_eq!(kinds[0], ("h_bucket".into(), MetricType::Histogram, true));
        assert_eq!(kinds[3], ("other".into(), MetricType::Untyped, false));
    }
}
