//! The YAML that Prometheus `file_sd` files use, read into a JSON value so that both
//! forms share one decoder: block sequences and mappings by indentation, flow lists
//! `['a:1', "b:2"]` and maps `{job: web}`, quoted and plain scalars, `#` comments and
//! a leading `---`. Every scalar is read as a string (label values are strings).
//! Anchors, tags, multi-line scalars and multiple documents are refused with an
//! error naming the line.

use serde_json::{Map, Value};

#[derive(Debug, Clone)]
struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

type Result<T> = std::result::Result<T, String>;

fn err<T>(line: usize, message: impl std::fmt::Display) -> Result<T> {
    Err(format!("line {line}: {message}"))
}

/// Cuts a `#` comment that is not inside quotes.
fn strip_comment(s: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && prev_space => return &s[..i],
            None => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    s
}

/// Reads `text` as JSON.
pub fn to_json(text: &str) -> Result<Value> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        if raw[..raw.len() - raw.trim_start().len()].contains('\t') {
            return err(number, "tabs are not allowed for indentation");
        }
        let s = strip_comment(raw).trim_end();
        let content = s.trim_start();
        if content.is_empty() {
            continue;
        }
        if content == "---" && lines.is_empty() {
            continue;
        }
        if content == "---" || content == "..." {
            return err(number, "only one YAML document is supported");
        }
        if content.starts_with(['&', '*', '!', '|', '>']) {
            return err(number, "anchors, tags and block scalars are not supported");
        }
        lines.push(Line {
            number,
            indent: s.len() - content.len(),
            text: content,
        });
    }
    if lines.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let mut i = 0;
    let indent = lines[0].indent;
    let v = block(&mut lines, &mut i, indent)?;
    if let Some(l) = lines.get(i) {
        return err(l.number, "unexpected indentation");
    }
    Ok(v)
}

fn is_item(s: &str) -> bool {
    s == "-" || s.starts_with("- ")
}

fn block(lines: &mut [Line<'_>], i: &mut usize, indent: usize) -> Result<Value> {
    if is_item(lines[*i].text) {
        seq(lines, i, indent)
    } else if split_key(lines[*i].text).is_some() {
        map(lines, i, indent)
    } else {
        let l = &lines[*i];
        *i += 1;
        flow_value(l.text, l.number)
    }
}

fn seq(lines: &mut [Line<'_>], i: &mut usize, indent: usize) -> Result<Value> {
    let mut items = Vec::new();
    while *i < lines.len() && lines[*i].indent == indent && is_item(lines[*i].text) {
        let l = lines[*i].clone();
        let rest = l.text[1..].trim_start();
        if rest.is_empty() {
            *i += 1;
            match lines.get(*i) {
                Some(next) if next.indent > indent => {
                    let ind = next.indent;
                    items.push(block(lines, i, ind)?);
                }
                _ => items.push(Value::Null),
            }
        } else if split_key(rest).is_some() {
            // "- key: value": a mapping whose keys line up with `key`.
            let ind = indent + (l.text.len() - rest.len());
            lines[*i] = Line {
                number: l.number,
                indent: ind,
                text: rest,
            };
            items.push(map(lines, i, ind)?);
        } else {
            *i += 1;
            items.push(flow_value(rest, l.number)?);
        }
    }
    Ok(Value::Array(items))
}

fn map(lines: &mut [Line<'_>], i: &mut usize, indent: usize) -> Result<Value> {
    let mut out = Map::new();
    while *i < lines.len() && lines[*i].indent == indent && !is_item(lines[*i].text) {
        let l = lines[*i].clone();
        let Some((key, rest)) = split_key(l.text) else {
            return err(l.number, "expected \"key: value\"");
        };
        let key = scalar(key, l.number)?;
        *i += 1;
        let value = if rest.is_empty() {
            match lines.get(*i) {
                Some(next) if next.indent > indent => {
                    let ind = next.indent;
                    block(lines, i, ind)?
                }
                // A sequence may sit at its key's indentation.
                Some(next) if next.indent == indent && is_item(next.text) => seq(lines, i, indent)?,
                _ => Value::Null,
            }
        } else {
            flow_value(rest, l.number)?
        };
        if out.insert(key.clone(), value).is_some() {
            return err(l.number, format!("key {key:?} appears twice"));
        }
    }
    Ok(Value::Object(out))
}

/// Splits `key: rest` at the first `:` outside quotes that ends the text or is
/// followed by a space.
fn split_key(s: &str) -> Option<(&str, &str)> {
    if s.starts_with(['[', '{']) {
        return None;
    }
    let b = s.as_bytes();
    let mut quote = None;
    for (i, &c) in b.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if i == 0 && (c == b'\'' || c == b'"') => quote = Some(c),
            None if c == b':' && (i + 1 == b.len() || b[i + 1] == b' ') => {
                return Some((s[..i].trim_end(), s[i + 1..].trim()));
            }
            None => {}
        }
    }
    None
}

fn scalar(s: &str, line: usize) -> Result<String> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('"') {
        let Some(inner) = inner.strip_suffix('"') else {
            return err(line, format!("unterminated string {s}"));
        };
        // A double-quoted YAML scalar reads like a JSON string for what file_sd uses.
        return serde_json::from_str::<String>(&format!("\"{inner}\""))
            .or_else(|e| err(line, format!("bad string {s}: {e}")));
    }
    if let Some(inner) = s.strip_prefix('\'') {
        let Some(inner) = inner.strip_suffix('\'') else {
            return err(line, format!("unterminated string {s}"));
        };
        return Ok(inner.replace("''", "'"));
    }
    Ok(s.to_owned())
}

fn flow_value(s: &str, line: usize) -> Result<Value> {
    let s = s.trim();
    if s.starts_with('[') || s.starts_with('{') {
        let mut p = Flow { s, at: 0, line };
        let v = p.value()?;
        p.space();
        if p.at != s.len() {
            return err(
                line,
                format!("unexpected {:?} after a flow collection", &s[p.at..]),
            );
        }
        return Ok(v);
    }
    if s == "~" || s == "null" {
        return Ok(Value::Null);
    }
    Ok(Value::String(scalar(s, line)?))
}

struct Flow<'a> {
    s: &'a str,
    at: usize,
    line: usize,
}

impl Flow<'_> {
    fn space(&mut self) {
        while self.s[self.at..].starts_with(' ') {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<Value> {
        self.space();
        let rest = &self.s[self.at..];
        if rest.starts_with('[') {
            self.at += 1;
            let mut items = Vec::new();
            loop {
                self.space();
                if self.s[self.at..].starts_with(']') {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                items.push(self.value()?);
                self.space();
                match self.s[self.at..].chars().next() {
                    Some(',') => self.at += 1,
                    Some(']') => {}
                    _ => return err(self.line, "expected ',' or ']' in a flow list"),
                }
            }
        }
        if rest.starts_with('{') {
            self.at += 1;
            let mut out = Map::new();
            loop {
                self.space();
                if self.s[self.at..].starts_with('}') {
                    self.at += 1;
                    return Ok(Value::Object(out));
                }
                let key = self.scalar_token(true)?;
                self.space();
                if !self.s[self.at..].starts_with(':') {
                    return err(
                        self.line,
                        format!("expected ':' after key {key:?} in a flow map"),
                    );
                }
                self.at += 1;
                let v = self.value()?;
                out.insert(key, v);
                self.space();
                match self.s[self.at..].chars().next() {
                    Some(',') => self.at += 1,
                    Some('}') => {}
                    _ => return err(self.line, "expected ',' or '}' in a flow map"),
                }
            }
        }
        Ok(Value::String(self.scalar_token(false)?))
    }

    fn scalar_token(&mut self, key: bool) -> Result<String> {
        self.space();
        let rest = &self.s[self.at..];
        if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let mut end = 1;
            let b = rest.as_bytes();
            while end < b.len() {
                if b[end] == b'\\' && q == '"' {
                    end += 2;
                    continue;
                }
                if b[end] == q as u8 {
                    if q == '\'' && b.get(end + 1) == Some(&b'\'') {
                        end += 2;
                        continue;
                    }
                    break;
                }
                end += 1;
            }
            if end >= b.len() {
                return err(self.line, "unterminated string in a flow collection");
            }
            self.at += end + 1;
            return scalar(&rest[..=end], self.line);
        }
        let stop: &[char] = if key {
            &[',', '}', ']', ':']
        } else {
            &[',', '}', ']']
        };
        let end = rest.find(stop).unwrap_or(rest.len());
        self.at += end;
        Ok(rest[..end].trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_gives_a_value_or_an_error(text in "[-\\[\\]{}:,'\" #a-z0-9\n\t~]{0,80}") {
            let _ = to_json(&text);
        }
    }

    #[test]
    fn file_sd_shapes_read_as_json() {
        let text = "---\n# targets\n- targets:\n  - 'a:1'\n  - b:2   # second\n  labels:\n    job: web\n    __metrics_path__: \"/admin/metrics.json\"\n- targets: ['c:3', \"d:4\"]\n  labels: {job: x, port: 9100}\n- labels:\n    job: y\n  targets:\n  - e:5\n";
        let v = to_json(text).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"targets": ["a:1", "b:2"], "labels": {"job": "web", "__metrics_path__": "/admin/metrics.json"}},
                {"targets": ["c:3", "d:4"], "labels": {"job": "x", "port": "9100"}},
                {"labels": {"job": "y"}, "targets": ["e:5"]},
            ])
        );
        assert_eq!(to_json("# nothing\n").unwrap(), serde_json::json!([]));
    }

    #[test]
    fn unsupported_or_broken_yaml_names_the_line() {
        assert!(
            to_json("- targets: &a ['x']\n").is_ok(),
            "an & inside a value is a plain scalar"
        );
        assert_eq!(
            to_json("- targets:\n  - a:1\n   - b:2\n").unwrap_err(),
            "line 3: unexpected indentation"
        );
        assert!(
            to_json("- targets: ['a:1'\n")
                .unwrap_err()
                .starts_with("line 1:")
        );
        assert!(to_json("- a: 1\n  a: 2\n").unwrap_err().contains("twice"));
        assert!(
            to_json("- x\n---\n- y\n")
                .unwrap_err()
                .contains("one YAML document")
        );
    }
}
