//! twitter-server `/admin/metrics.json`: a flat JSON object of metric name -> number,
//! parsed strictly in one pass with no allocation per sample (names with escapes
//! excepted).
//!
//! Finagle publishes a histogram `h` as the flat keys `h.count`, `h.sum`, `h.avg`,
//! `h.min`, `h.max` and `h.p50` ... `h.p9999`; [`histogram_stat`] splits such a key.
//! The non-standard tokens `NaN`, `Infinity` and `-Infinity` that some JVM
//! serialisers write are read as the non-finite values they mean, so that hygiene
//! can count them; any other non-number value is an error.

use std::borrow::Cow;

use super::ParseError;

/// The statistic suffixes Finagle publishes for a histogram.
pub const HISTOGRAM_STATS: &[&str] = &[
    "count", "sum", "avg", "min", "max", "p50", "p90", "p95", "p99", "p999", "p9990", "p9999",
];

/// Splits a Finagle histogram key `base.stat` into `(base, stat)`.
pub fn histogram_stat(name: &str) -> Option<(&str, &str)> {
    let (base, stat) = name.rsplit_once('.')?;
    HISTOGRAM_STATS.contains(&stat).then_some((base, stat))
}

/// Whether a metrics.json value must be finite: counts, sums and counters.
pub fn must_be_finite(name: &str) -> bool {
    matches!(histogram_stat(name), Some((_, "count" | "sum")))
}

struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, at: usize, message: impl Into<String>) -> ParseError {
        ParseError::Json {
            offset: at,
            message: message.into(),
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn found(&self) -> String {
        match self.b.get(self.pos) {
            None => "end of input".into(),
            Some(c) if c.is_ascii_graphic() => format!("'{}'", *c as char),
            Some(c) => format!("byte 0x{c:02x}"),
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), ParseError> {
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(self.pos, format!("expected {what}, found {}", self.found())))
        }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let open = self.pos;
        self.expect(b'"', "'\"' to open a metric name")?;
        let start = self.pos;
        loop {
            match self.b.get(self.pos) {
                None => return Err(self.err(open, "unterminated string")),
                Some(b'"') => {
                    let v = &self.s[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(v));
                }
                Some(b'\\') => break,
                Some(c) if *c < 0x20 => {
                    return Err(self.err(self.pos, "control character inside a string"));
                }
                Some(_) => self.pos += 1,
            }
        }
        let mut out = String::from(&self.s[start..self.pos]);
        loop {
            match self.b.get(self.pos) {
                None => return Err(self.err(open, "unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    let at = self.pos;
                    let e = self.b.get(self.pos + 1).copied();
                    self.pos += 2;
                    match e {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let hi = self.hex4(at)?;
                            let c = if (0xd800..0xdc00).contains(&hi) {
                                if self.b.get(self.pos) != Some(&b'\\')
                                    || self.b.get(self.pos + 1) != Some(&b'u')
                                {
                                    return Err(self.err(at, "unpaired surrogate in \\u escape"));
                                }
                                self.pos += 2;
                                let lo = self.hex4(at)?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err(at, "unpaired surrogate in \\u escape"));
                                }
                                char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(c.ok_or_else(|| self.err(at, "invalid \\u escape"))?);
                        }
                        _ => return Err(self.err(at, "invalid escape in a string")),
                    }
                }
                Some(c) if *c < 0x20 => {
                    return Err(self.err(self.pos, "control character inside a string"));
                }
                Some(_) => {
                    let run = self.pos;
                    while let Some(c) = self.b.get(self.pos) {
                        if *c == b'"' || *c == b'\\' || *c < 0x20 {
                            break;
                        }
                        self.pos += 1;
                    }
                    out.push_str(&self.s[run..self.pos]);
                }
            }
        }
    }

    fn hex4(&mut self, at: usize) -> Result<u32, ParseError> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .and_then(|h| {
                u32::from_str_radix(h, 16)
                    .ok()
                    .filter(|_| h.bytes().all(|c| c.is_ascii_hexdigit()))
            })
            .ok_or_else(|| self.err(at, "invalid \\u escape"))?;
        self.pos += 4;
        Ok(h)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(c) = self.b.get(self.pos) {
            if c.is_ascii_digit() {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.pos - start
    }

    fn number(&mut self, name: &str) -> Result<f64, ParseError> {
        let start = self.pos;
        let rest = &self.b[self.pos..];
        for (token, value) in [
            (&b"NaN"[..], f64::NAN),
            (b"Infinity", f64::INFINITY),
            (b"-Infinity", f64::NEG_INFINITY),
        ] {
            if rest.starts_with(token) {
                self.pos += token.len();
                return Ok(value);
            }
        }
        let bad = |c: &Self| {
            let what = match c.b.get(start) {
                Some(b'"') => "a string",
                Some(b'{') => "an object",
                Some(b'[') => "an array",
                Some(b't' | b'f') => "a boolean",
                Some(b'n') => "null",
                None => "end of input",
                _ => "not a number",
            };
            c.err(
                start,
                format!("value of \"{name}\" is {what}; expected a number"),
            )
        };
        if self.b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.b.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(bad(self)),
        }
        if self.b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err(
                    self.pos,
                    format!("value of \"{name}\": expected digits after '.'"),
                ));
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.b.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err(
                    self.pos,
                    format!("value of \"{name}\": expected digits in the exponent"),
                ));
            }
        }
        let text = &self.s[start..self.pos];
        // Integers are by far the most common values: a fast path for them.
        if text.len() <= 15 && !text.contains(['.', 'e', 'E']) {
            let (neg, digits) = match text.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, text),
            };
            let mut v: i64 = 0;
            for d in digits.bytes() {
                v = v * 10 + i64::from(d - b'0');
            }
            return Ok(if neg { -(v as f64) } else { v as f64 });
        }
        text.parse::<f64>().map_err(|_| bad(self))
    }
}

/// Parses a metrics.json body, calling `f(name, value)` once per entry. Returns the
/// number of entries. Stops at the first error, which names the byte offset;
/// entries before it have already been passed to `f`.
pub fn parse(input: &str, mut f: impl FnMut(&str, f64)) -> Result<usize, ParseError> {
    let mut c = Cursor {
        s: input,
        b: input.as_bytes(),
        pos: 0,
    };
    c.ws();
    c.expect(b'{', "'{' to open the metrics object")?;
    c.ws();
    let mut count = 0;
    if c.b.get(c.pos) == Some(&b'}') {
        c.pos += 1;
    } else {
        loop {
            c.ws();
            let name = c.string()?;
            c.ws();
            c.expect(b':', "':' after a metric name")?;
            c.ws();
            let value = c.number(&name)?;
            f(&name, value);
            count += 1;
            c.ws();
            match c.b.get(c.pos) {
                Some(b',') => c.pos += 1,
                Some(b'}') => {
                    c.pos += 1;
                    break;
                }
                _ => {
                    return Err(c.err(
                        c.pos,
                        format!(
                            "expected ',' or '}}' after the value of \"{name}\", found {}",
                            c.found()
                        ),
                    ));
                }
            }
        }
    }
    c.ws();
    if c.pos != c.b.len() {
        return Err(c.err(c.pos, "unexpected text after the metrics object"));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &str) -> Result<Vec<(String, f64)>, ParseError> {
        let mut out = Vec::new();
        parse(input, |n, v| out.push((n.to_owned(), v)))?;
        Ok(out)
    }

    #[test]
    fn finagle_metrics() {
        let body = r#"{"jvm/uptime":12345,"srv/http/request_latency_ms.p99":4.5,
            "srv/http/request_latency_ms.count" : 10, "neg":-1.5e3, "esc\"\u00e9\ud83d\ude00":0}"#;
        let got = collect(body).unwrap();
        assert_eq!(got[0], ("jvm/uptime".into(), 12345.0));
        assert_eq!(got[1], ("srv/http/request_latency_ms.p99".into(), 4.5));
        assert_eq!(got[3], ("neg".into(), -1500.0));
        assert_eq!(got[4].0, "esc\"é😀");
        assert_eq!(collect(" {} ").unwrap(), vec![]);
        assert_eq!(histogram_stat("a/b.p9999"), Some(("a/b", "p9999")));
        assert_eq!(histogram_stat("a/b.c"), None);
        assert!(collect(r#"{"x":NaN}"#).unwrap()[0].1.is_nan());
    }

    #[test]
    fn errors_name_offset_and_cause() {
        let e = |s: &str| collect(s).unwrap_err().to_string();
        assert_eq!(
            e(r#"{"a":1,"b":"#),
            "byte 11: value of \"b\" is end of input; expected a number"
        );
        assert_eq!(
            e(r#"{"a":1"#),
            "byte 6: expected ',' or '}' after the value of \"a\", found end of input"
        );
        assert_eq!(
            e(r#"{"a":"1"}"#),
            "byte 5: value of \"a\" is a string; expected a number"
        );
        assert_eq!(
            e(r#"{"a":{"b":1}}"#),
            "byte 5: value of \"a\" is an object; expected a number"
        );
        assert_eq!(
            e(r#"{"a":01}"#),
            "byte 6: expected ',' or '}' after the value of \"a\", found '1'"
        );
        assert_eq!(
            e(r#"{"a":1.}"#),
            "byte 7: value of \"a\": expected digits after '.'"
        );
        assert_eq!(
            e(r#"{"a":1} x"#),
            "byte 8: unexpected text after the metrics object"
        );
        assert_eq!(
            e(r#"[1]"#),
            "byte 0: expected '{' to open the metrics object, found '['"
        );
        assert_eq!(
            e("{\"a\u{1}\":1}"),
            "byte 3: control character inside a string"
        );
    }
}
