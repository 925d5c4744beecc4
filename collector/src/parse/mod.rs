//! Strict, allocation-light parsers of the two scrape formats: twitter-server
//! `/admin/metrics.json` and Prometheus text / OpenMetrics.
//!
//! ```text
//!  body bytes --(gzip? inflate)--> &str --json::parse / text::parse--> callback per sample
//! ```
//!
//! Both parsers call back once per sample with borrowed names, so a scrape costs no
//! allocation per sample unless a name has escapes. Errors name the line and column
//! (text) or byte offset (JSON) and what was expected there.

pub mod json;
pub mod text;

use std::io::Read;

/// Which exposition format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// twitter-server `/admin/metrics.json`: a flat JSON object of name -> number.
    MetricsJson,
    /// Prometheus text exposition 0.0.4 (timestamps in ms).
    PrometheusText,
    /// OpenMetrics 1.0 text (timestamps in seconds, `# EOF` required).
    OpenMetrics,
}

impl Format {
    /// The format a response's `Content-Type` and the request path say.
    pub fn detect(content_type: Option<&str>, path: &str) -> Self {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.starts_with("application/openmetrics-text") {
            Format::OpenMetrics
        } else if ct.starts_with("application/json") || path.ends_with(".json") {
            Format::MetricsJson
        } else {
            Format::PrometheusText
        }
    }

    /// The name used in stats and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::MetricsJson => "metrics_json",
            Format::PrometheusText => "prometheus_text",
            Format::OpenMetrics => "openmetrics",
        }
    }
}

/// Why a body could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}, column {column}: {message}")]
    Text {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("byte {offset}: {message}")]
    Json { offset: usize, message: String },
    #[error("body is not valid UTF-8 at byte {offset}")]
    Utf8 { offset: usize },
    #[error("body is not valid gzip: {message}")]
    Gzip { message: String },
    #[error("body exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

/// Inflates `body` when it starts with the gzip magic, refusing to grow past `limit`.
pub fn maybe_gunzip(body: &[u8], limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, ParseError> {
    if body.len() < 2 || body[0] != 0x1f || body[1] != 0x8b {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    let mut decoder = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| ParseError::Gzip {
            message: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(ParseError::TooLarge { limit });
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// `body` as UTF-8, or an error naming the first bad byte.
pub fn utf8(body: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(body).map_err(|e| ParseError::Utf8 {
        offset: e.valid_up_to(),
    })
}
