//! The lexer: tokens of expressions, plus a separate mode for the raw patterns inside `ts(...)`.
//!
//! The parser drives the lexer: in expression mode it asks for the next
//! token; right after `ts(` and after each `,` inside it, it asks for a
//! pattern instead, because metric names (`srv/http/latency.p99`,
//! `name{a="1"}`) are not made of expression tokens.

use thiserror::Error;

use crate::ast::Pattern;
use crate::span::Span;

/// Largest duration accepted (about 100 years), so time arithmetic never overflows.
pub const MAX_DURATION_MS: i64 = 100 * 366 * 24 * 3_600_000;

/// Lexical and syntax errors, one variant per cause.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseErrorKind {
    /// A character that starts no token.
    #[error("unexpected character `{0}`{hint}", hint = char_hint(*.0))]
    UnexpectedChar(char),
    /// A string without its closing quote.
    #[error("unterminated string: expected a closing `{0}`")]
    UnterminatedString(char),
    /// An escape other than `\\`, `\"`, `\'`, `\n`, `\t`.
    #[error("unknown escape `\\{0}` in string; expected one of \\\\ \\\" \\' \\n \\t")]
    BadEscape(char),
    /// `/regex` without the closing slash.
    #[error("unterminated regex: expected a closing `/`")]
    UnterminatedRegex,
    /// A regex the regex engine rejects.
    #[error("invalid regex /{pattern}/: {reason}")]
    InvalidRegex {
        /// The regex text.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A glob the glob engine rejects.
    #[error("invalid glob `{pattern}`: {reason}")]
    InvalidGlob {
        /// The glob text.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A number too large to represent.
    #[error("number `{0}` is out of range")]
    NumberOutOfRange(String),
    /// A malformed number (`1e`, `1.`).
    #[error("malformed number `{0}`: expected digits")]
    BadNumber(String),
    /// A duration with an unknown unit.
    #[error("unknown duration unit `{0}`; expected one of ms, s, m, h, d, w")]
    UnknownDurationUnit(String),
    /// A duration with a fraction (`1.5h`).
    #[error("durations take whole numbers; write `1h30m` rather than `1.5h`")]
    FractionalDuration,
    /// A duration longer than [`MAX_DURATION_MS`].
    #[error("duration `{0}` is too long; at most 100 years")]
    DurationOutOfRange(String),
    /// `members(...)` without a role.
    #[error("expected a role like `role.frontend` inside members(), found {0}")]
    BadRole(String),
    /// The main syntax error: what the parser expected and what it found.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What would have been accepted.
        expected: String,
        /// What was there.
        found: String,
    },
    /// `a > b > c`.
    #[error("comparisons do not chain; a comparison is a predicate and cannot be compared again")]
    ChainedComparison,
    /// Nesting beyond the parser's limit.
    #[error("query nests too deeply; at most {0} levels")]
    TooDeep(usize),
}

fn char_hint(c: char) -> &'static str {
    match c {
        '=' => "; did you mean `==`?",
        '!' => "; did you mean `!=`?",
        '.' => "; numbers start with a digit (`0.5`)",
        _ => "",
    }
}

/// A token of expression mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A non-negative number.
    Number(f64),
    /// A duration in milliseconds.
    Duration(i64),
    /// A quoted string (unescaped).
    Str(String),
    /// An identifier.
    Ident(String),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    EqEq,
    /// `!=`
    Ne,
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self, text: &str) -> String {
        match self {
            Tok::Eof => "end of query".to_string(),
            Tok::Number(_) => format!("number `{text}`"),
            Tok::Duration(_) => format!("duration `{text}`"),
            Tok::Str(_) => format!("string {text}"),
            Tok::Ident(_) => format!("`{text}`"),
            _ => format!("`{text}`"),
        }
    }
}

/// A token with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its bytes in the query text.
    pub span: Span,
}

/// The lexer over one query text.
#[derive(Debug)]
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

/// An error at a span, before it is located in the text.
pub type LexError = (ParseErrorKind, Span);

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    /// The whole text.
    pub fn src(&self) -> &'a str {
        self.src
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_char_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Skips whitespace and `#` comments (to the end of the line).
    fn skip_trivia(&mut self, comments: bool) {
        while let Some(c) = self.peek_char() {
            if c.is_whitespace() {
                self.bump();
            } else if comments && c == '#' {
                while let Some(c) = self.peek_char() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    /// The next expression token.
    pub fn next_token(&mut self) -> Result<Token, LexError> {
        self.skip_trivia(true);
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok(Token {
                tok: Tok::Eof,
                span: Span::new(start, start),
            });
        };
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '+' => Tok::Plus,
            '-' => Tok::Minus,
            '*' => Tok::Star,
            '/' => Tok::Slash,
            '>' | '<' | '=' | '!' => {
                let eq = self.peek_char() == Some('=');
                if eq {
                    self.bump();
                }
                match (c, eq) {
                    ('>', false) => Tok::Gt,
                    ('>', true) => Tok::Ge,
                    ('<', false) => Tok::Lt,
                    ('<', true) => Tok::Le,
                    ('=', true) => Tok::EqEq,
                    ('!', true) => Tok::Ne,
                    _ => {
                        return Err((
                            ParseErrorKind::UnexpectedChar(c),
                            Span::new(start, self.pos),
                        ));
                    }
                }
            }
            '"' | '\'' => Tok::Str(self.string_body(c, start)?),
            c if c.is_ascii_digit() => return self.number(start),
            c if c.is_ascii_alphabetic() || c == '_' => {
                while matches!(self.peek_char(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
                    self.bump();
                }
                Tok::Ident(self.src[start..self.pos].to_string())
            }
            c => {
                return Err((
                    ParseErrorKind::UnexpectedChar(c),
                    Span::new(start, self.pos),
                ));
            }
        };
        Ok(Token {
            tok,
            span: Span::new(start, self.pos),
        })
    }

    /// Reads a string body after its opening quote.
    fn string_body(&mut self, quote: char, start: usize) -> Result<String, LexError> {
        let mut out = String::new();
        loop {
            let esc_start = self.pos;
            match self.bump() {
                None => {
                    return Err((
                        ParseErrorKind::UnterminatedString(quote),
                        Span::new(start, self.pos),
                    ));
                }
                Some(c) if c == quote => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('\\') => out.push('\\'),
                    Some('"') => out.push('"'),
                    Some('\'') => out.push('\''),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c) => {
                        return Err((ParseErrorKind::BadEscape(c), Span::new(esc_start, self.pos)));
                    }
                    None => {
                        return Err((
                            ParseErrorKind::UnterminatedString(quote),
                            Span::new(start, self.pos),
                        ));
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let s = self.pos;
        while matches!(self.peek_char(), Some(c) if c.is_ascii_digit()) {
            self.bump();
        }
        self.pos - s
    }

    /// A number or a duration; the first digit is consumed.
    fn number(&mut self, start: usize) -> Result<Token, LexError> {
        self.digits();
        let mut integral = true;
        if self.peek_char() == Some('.') {
            integral = false;
            self.bump();
            if self.digits() == 0 {
                return Err((
                    ParseErrorKind::BadNumber(self.src[start..self.pos].to_string()),
                    Span::new(start, self.pos),
                ));
            }
        }
        if matches!(self.peek_char(), Some('e' | 'E'))
            && matches!(self.peek_char_at(1), Some(c) if c.is_ascii_digit() || c == '+' || c == '-')
        {
            integral = false;
            self.bump();
            if matches!(self.peek_char(), Some('+' | '-')) {
                self.bump();
            }
            if self.digits() == 0 {
                return Err((
                    ParseErrorKind::BadNumber(self.src[start..self.pos].to_string()),
                    Span::new(start, self.pos),
                ));
            }
        }
        if matches!(self.peek_char(), Some(c) if c.is_ascii_alphabetic()) {
            if !integral {
                while matches!(self.peek_char(), Some(c) if c.is_ascii_alphanumeric()) {
                    self.bump();
                }
                return Err((
                    ParseErrorKind::FractionalDuration,
                    Span::new(start, self.pos),
                ));
            }
            self.pos = start;
            return self.duration(start);
        }
        let text = &self.src[start..self.pos];
        let span = Span::new(start, self.pos);
        let v: f64 = text
            .parse()
            .map_err(|_| (ParseErrorKind::BadNumber(text.to_string()), span))?;
        if !v.is_finite() {
            return Err((ParseErrorKind::NumberOutOfRange(text.to_string()), span));
        }
        Ok(Token {
            tok: Tok::Number(v),
            span,
        })
    }

    /// A duration: one or more `<digits><unit>` groups (`1h30m`).
    fn duration(&mut self, start: usize) -> Result<Token, LexError> {
        let mut total: i64 = 0;
        let too_long = |l: &Self| {
            let mut end = l.pos;
            while matches!(l.src[end..].chars().next(), Some(c) if c.is_ascii_alphanumeric()) {
                end += 1;
            }
            (
                ParseErrorKind::DurationOutOfRange(l.src[start..end].to_string()),
                Span::new(start, end),
            )
        };
        while matches!(self.peek_char(), Some(c) if c.is_ascii_digit()) {
            let ds = self.pos;
            self.digits();
            let n: i64 = match self.src[ds..self.pos].parse() {
                Ok(n) => n,
                Err(_) => return Err(too_long(self)),
            };
            let us = self.pos;
            while matches!(self.peek_char(), Some(c) if c.is_ascii_alphabetic()) {
                self.bump();
            }
            let unit = &self.src[us..self.pos];
            let ms: i64 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                "" => {
                    let (found, span) = match self.peek_char() {
                        None => ("end of query".to_string(), Span::new(us, us)),
                        Some(c) => (format!("`{c}`"), Span::new(us, us + c.len_utf8())),
                    };
                    return Err((
                        ParseErrorKind::Expected {
                            expected: "a duration unit (ms, s, m, h, d, w)".into(),
                            found,
                        },
                        span,
                    ));
                }
                _ => {
                    return Err((
                        ParseErrorKind::UnknownDurationUnit(unit.to_string()),
                        Span::new(us, self.pos),
                    ));
                }
            };
            total = match n.checked_mul(ms).and_then(|v| total.checked_add(v)) {
                Some(t) if t <= MAX_DURATION_MS => t,
                _ => return Err(too_long(self)),
            };
        }
        Ok(Token {
            tok: Tok::Duration(total),
            span: Span::new(start, self.pos),
        })
    }

    /// Skips whitespace; then the next character, if any, without consuming it.
    pub fn peek_after_space(&mut self) -> Option<char> {
        self.skip_trivia(false);
        self.peek_char()
    }

    /// Consumes `c` if it is next (after whitespace).
    pub fn eat_char(&mut self, c: char) -> Option<Span> {
        if self.peek_after_space() == Some(c) {
            let s = self.pos;
            self.bump();
            Some(Span::new(s, self.pos))
        } else {
            None
        }
    }

    /// Describes what lies next (for errors in pattern mode).
    pub fn describe_next(&mut self) -> (String, Span) {
        self.skip_trivia(false);
        let s = self.pos;
        match self.peek_char() {
            None => ("end of query".into(), Span::new(s, s)),
            Some(c) => (format!("`{c}`"), Span::new(s, s + c.len_utf8())),
        }
    }

    /// A pattern argument of `ts(...)`: `*`, `/regex/`, a quoted literal,
    /// `members(role.x)` or bare text (a literal, or a glob when it holds
    /// `*?[{`). Bare text runs to the next `,` or `)` outside brackets,
    /// braces and quotes, or to whitespace.
    pub fn pattern(&mut self, what: &str) -> Result<(Pattern, Span), LexError> {
        self.skip_trivia(false);
        let start = self.pos;
        let expected =
            || format!("{what} (a name, glob, /regex/, quoted string or members(role.x))");
        match self.peek_char() {
            None | Some(',' | ')') => {
                let (found, span) = self.describe_next();
                return Err((
                    ParseErrorKind::Expected {
                        expected: expected(),
                        found,
                    },
                    span,
                ));
            }
            Some(q @ ('"' | '\'')) => {
                self.bump();
                let s = self.string_body(q, start)?;
                return Ok((Pattern::Literal(s), Span::new(start, self.pos)));
            }
            Some('/') => {
                self.bump();
                loop {
                    match self.bump() {
                        None => {
                            return Err((
                                ParseErrorKind::UnterminatedRegex,
                                Span::new(start, self.pos),
                            ));
                        }
                        Some('\\') => {
                            if self.bump().is_none() {
                                return Err((
                                    ParseErrorKind::UnterminatedRegex,
                                    Span::new(start, self.pos),
                                ));
                            }
                        }
                        Some('/') => break,
                        Some(_) => {}
                    }
                }
                let span = Span::new(start, self.pos);
                let re = self.src[start + 1..self.pos - 1].to_string();
                if let Err(reason) = check_regex(&re) {
                    return Err((
                        ParseErrorKind::InvalidRegex {
                            pattern: re,
                            reason,
                        },
                        span,
                    ));
                }
                return Ok((Pattern::Regex(re), span));
            }
            _ => {}
        }
        if self.src[self.pos..].starts_with("members") {
            let save = self.pos;
            self.pos += "members".len();
            if self.eat_char('(').is_some() {
                return self.members(start);
            }
            self.pos = save;
        }
        let mut depth = 0usize;
        while let Some(c) = self.peek_char() {
            match c {
                ',' | ')' if depth == 0 => break,
                c if c.is_whitespace() => break,
                '{' | '[' | '(' => depth += 1,
                '}' | ']' | ')' => depth = depth.saturating_sub(1),
                '"' | '\'' => {
                    let qs = self.pos;
                    self.bump();
                    self.string_body(c, qs)?;
                    continue;
                }
                c if c.is_control() => {
                    return Err((
                        ParseErrorKind::UnexpectedChar(c),
                        Span::new(self.pos, self.pos + c.len_utf8()),
                    ));
                }
                _ => {}
            }
            self.bump();
        }
        let span = Span::new(start, self.pos);
        let text = &self.src[start..self.pos];
        Ok((classify_bare(text).map_err(|k| (k, span))?, span))
    }

    /// The rest of `members(` ... `)`.
    fn members(&mut self, start: usize) -> Result<(Pattern, Span), LexError> {
        self.skip_trivia(false);
        let rs = self.pos;
        while matches!(self.peek_char(), Some(c) if is_role_char(c)) {
            self.bump();
        }
        let text = &self.src[rs..self.pos];
        let role = text.strip_prefix("role.").filter(|r| !r.is_empty());
        let Some(role) = role else {
            let (found, span) = if text.is_empty() {
                self.describe_next()
            } else {
                (format!("`{text}`"), Span::new(rs, self.pos))
            };
            return Err((ParseErrorKind::BadRole(found), span));
        };
        let role = role.to_string();
        if self.eat_char(')').is_none() {
            let (found, span) = self.describe_next();
            return Err((
                ParseErrorKind::Expected {
                    expected: "`)` after the role".into(),
                    found,
                },
                span,
            ));
        }
        Ok((Pattern::Members(role), Span::new(start, self.pos)))
    }
}

/// Characters of a role name (`role.cuckoo_frontend`).
pub fn is_role_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

/// Glob metacharacters; bare text holding one is a glob.
pub const GLOB_CHARS: [char; 4] = ['*', '?', '[', '{'];

/// The reserved source of service aggregates, always a literal.
pub const ALL_SOURCES: &str = "*all*";

/// Byte ranges of Prometheus-style label blocks (`{a="1",b="2"}`: a `{`
/// followed by `name=`) in bare text. Their braces and commas are part of
/// the metric name, not glob syntax.
fn label_blocks(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let named = j > i + 1 && !b[i + 1].is_ascii_digit();
            if named && j < b.len() && (b[j] == b'=' || b[j] == b'!' || b[j] == b'~') {
                // Find the closing brace outside quotes.
                let mut k = j;
                let mut quoted = false;
                while k < b.len() {
                    match b[k] {
                        b'\\' if quoted => k += 1,
                        b'"' => quoted = !quoted,
                        b'}' if !quoted => break,
                        _ => {}
                    }
                    k += 1;
                }
                if k < b.len() {
                    out.push((i, k + 1));
                    i = k + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// Whether bare text holds glob characters outside label blocks.
fn has_glob_chars(text: &str) -> bool {
    let blocks = label_blocks(text);
    text.char_indices()
        .any(|(i, c)| GLOB_CHARS.contains(&c) && !blocks.iter().any(|&(s, e)| i >= s && i < e))
}

/// The text given to the glob engine: label blocks escaped so that they match literally.
pub fn glob_source(text: &str) -> String {
    let blocks = label_blocks(text);
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.char_indices() {
        let inside = blocks.iter().any(|&(s, e)| i >= s && i < e);
        if inside && matches!(c, '{' | '}' | '[' | ']' | '*' | '?' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Turns bare pattern text into a pattern.
pub fn classify_bare(text: &str) -> Result<Pattern, ParseErrorKind> {
    if text == "*" {
        return Ok(Pattern::Any);
    }
    if text == ALL_SOURCES {
        return Ok(Pattern::Literal(text.to_string()));
    }
    if has_glob_chars(text) {
        if let Err(reason) = check_glob(text) {
            return Err(ParseErrorKind::InvalidGlob {
                pattern: text.to_string(),
                reason,
            });
        }
        return Ok(Pattern::Glob(text.to_string()));
    }
    Ok(Pattern::Literal(text.to_string()))
}

/// Whether a literal prints bare and reads back as the same literal
/// (apart from the characters the printer checks itself).
pub fn literal_reads_back(text: &str) -> bool {
    !has_glob_chars(text)
}

/// Compiles a glob the way selections do, returning why it fails.
pub fn check_glob(text: &str) -> Result<(), String> {
    compile_glob(text).map(|_| ())
}

/// Compiles a glob (label blocks match literally; `*` also matches `/`).
pub fn compile_glob(text: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(&glob_source(text))
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

/// Compiles an anchored regex, returning a one-line reason on failure.
pub fn check_regex(text: &str) -> Result<(), String> {
    match regex::Regex::new(&format!("^(?:{text})$")) {
        Ok(_) => Ok(()),
        Err(regex::Error::Syntax(s)) => Err(s
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or("syntax error")
            .to_string()),
        Err(e) => Err(e.to_string()),
    }
}
