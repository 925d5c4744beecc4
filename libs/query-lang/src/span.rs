//! Byte spans in the query text and diagnostics that point at them (line, column, snippet, caret).

use std::fmt;

/// A half-open byte range `[start, end)` in the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Where a diagnostic points: 1-based line and column (in characters), the
/// byte span, and the text of the line for the caret display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// The byte span in the whole text.
    pub span: Span,
    /// The line the span starts on, without its newline.
    pub line_text: String,
    /// Characters to underline on that line (at least 1).
    pub width: usize,
}

impl Location {
    /// Locates `span` in `src`. Spans past the end are clamped, so a
    /// location always lies within the input.
    pub fn of(src: &str, span: Span) -> Self {
        let start = floor_char(src, span.start.min(src.len()));
        let end = floor_char(src, span.end.clamp(start, src.len()));
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
        let line = src[..start].matches('\n').count() + 1;
        let col = src[line_start..start].chars().count() + 1;
        let width = src[start..end.min(line_end)].chars().count().max(1);
        Location {
            line,
            col,
            span: Span::new(start, end),
            line_text: src[line_start..line_end].to_string(),
            width,
        }
    }

    /// The snippet with a caret line under the span:
    ///
    /// ```text
    ///   |
    /// 1 | ts(web, *, http latency)
    ///   |                 ^^^^^^^
    /// ```
    pub fn snippet(&self) -> String {
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        // Keep tabs so that the caret lines up with the text above it.
        let lead: String = self
            .line_text
            .chars()
            .take(self.col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!(
            "{pad} |\n{num} | {}\n{pad} | {lead}{}",
            self.line_text,
            "^".repeat(self.width)
        )
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// An error of kind `K` located in the query text. `Display` shows
/// `line:col: message` followed by the snippet with a caret. Boxed, so
/// that results carrying it stay small.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<K> {
    inner: Box<(K, Location)>,
}

impl<K> Located<K> {
    /// Locates `kind` at `span` of `src`.
    pub fn new(kind: K, span: Span, src: &str) -> Self {
        Located {
            inner: Box::new((kind, Location::of(src, span))),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &K {
        &self.inner.0
    }

    /// Where.
    pub fn location(&self) -> &Location {
        &self.inner.1
    }

    /// 1-based line.
    pub fn line(&self) -> usize {
        self.inner.1.line
    }

    /// 1-based column.
    pub fn col(&self) -> usize {
        self.inner.1.col
    }

    /// Byte span in the query text.
    pub fn span(&self) -> Span {
        self.inner.1.span
    }
}

impl<K: fmt::Display> Located<K> {
    /// `line:col: message` on one line, without the snippet.
    pub fn message(&self) -> String {
        format!(
            "{}:{}: {}",
            self.location().line,
            self.location().col,
            self.kind()
        )
    }
}

impl<K: fmt::Display> fmt::Display for Located<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.message(), self.inner.1.snippet())
    }
}

// The message already includes the kind, so there is no separate source.
impl<K: std::error::Error + 'static> std::error::Error for Located<K> {}
