//! One scrape: HTTP GET of a target with a timeout and a body limit, parse by format,
//! hygiene per name, and the scrape's own series (`up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped`, `scrape_samples_rejected{reason=...}`).

use std::time::{Duration, Instant};

use serde::Serialize;
use stats::{Counter, Histogram, StatsReceiver};

use crate::discovery::Target;
use crate::hygiene::{Limits, RejectStats, RejectedName, SourceGuard};
use crate::model::{Series, SeriesKey, now_ms};
use crate::parse::{self, Format, ParseError, json, text};

/// What the collector asks targets for, best first.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.8,application/json;q=0.7,*/*;q=0.1";

/// Bodies larger than this are parsed off the async threads.
const BLOCKING_PARSE_BYTES: usize = 1 << 20;

/// Why a scrape failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScrapeError {
    #[error("scrape of {url} timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("scrape of {url} failed: {message}")]
    Connect { url: String, message: String },
    #[error("scrape of {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("scrape of {url}: body exceeds {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("scrape of {url}: {format} body rejected: {source}")]
    Parse {
        url: String,
        format: &'static str,
        #[source]
        source: ParseError,
    },
}

impl ScrapeError {
    /// The error's kind in stats.
    pub fn kind(&self) -> &'static str {
        match self {
            ScrapeError::Timeout { .. } => "timeout",
            ScrapeError::Connect { .. } => "connect",
            ScrapeError::Status { .. } => "http_status",
            ScrapeError::TooLarge { .. } => "too_large",
            ScrapeError::Parse { .. } => "parse",
        }
    }
}

/// The state of one target as the admin endpoint shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// The target.
    pub target: Target,
    /// Start of the last scrape, Unix ms; 0 before the first.
    pub last_scrape_ms: i64,
    /// Whether the last scrape succeeded.
    pub up: bool,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// Samples it parsed.
    pub samples_scraped: u64,
    /// Samples hygiene rejected.
    pub samples_rejected: u64,
    /// Why it failed, if it did.
    pub last_error: Option<String>,
    /// Distinct metrics counted against the series limit.
    pub series: usize,
    /// The last rejected names, oldest first.
    pub rejected: Vec<RejectedName>,
}

#[derive(Debug, Clone)]
struct ScrapeStats {
    stats: StatsReceiver,
    scrapes: Counter,
    requests: Counter,
    success: Counter,
    samples: Counter,
    duration: Histogram,
}

/// Scrapes targets; shared by every target task.
#[derive(Debug, Clone)]
pub struct Scraper {
    http: reqwest::Client,
    max_body: usize,
    limits: Limits,
    rejects: RejectStats,
    stats: ScrapeStats,
}

/// One scrape's result.
#[derive(Debug)]
pub struct Scrape {
    /// Samples and the scrape's own series.
    pub series: Vec<Series>,
    /// What the admin endpoint shows.
    pub status: TargetStatus,
}

impl Scraper {
    /// A scraper registering its stats under `stats` (scoped `scrape/` and `rejected/`).
    pub fn new(max_body: usize, limits: Limits, stats: &StatsReceiver) -> Self {
        let scope = stats.scope("scrape");
        Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(4)
                .tcp_nodelay(true)
                .build()
                .expect("the HTTP client builds with static settings"),
            max_body,
            limits,
            rejects: RejectStats::new(stats),
            stats: ScrapeStats {
                scrapes: stats.counter("scrapes"),
                requests: scope.counter("requests"),
                success: scope.counter("success"),
                samples: scope.counter("samples"),
                duration: scope.histogram("duration_ms"),
                stats: scope,
            },
        }
    }

    /// A fresh hygiene guard for a new target.
    pub fn guard(&self) -> SourceGuard {
        SourceGuard::new(self.limits)
    }

    /// The collector-wide rejection counters.
    pub fn reject_stats(&self) -> &RejectStats {
        &self.rejects
    }

    async fn fetch(&self, target: &Target) -> Result<(bytes::Bytes, Option<String>), ScrapeError> {
        let url = &target.url;
        let connect = |e: reqwest::Error| ScrapeError::Connect {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut resp = self
            .http
            .get(url)
            .header(http::header::ACCEPT, ACCEPT)
            .send()
            .await
            .map_err(connect)?;
        if !resp.status().is_success() {
            return Err(ScrapeError::Status {
                url: url.clone(),
                status: resp.status().as_u16(),
            });
        }
        let too_large = || ScrapeError::TooLarge {
            url: url.clone(),
            limit: self.max_body,
        };
        if resp
            .content_length()
            .is_some_and(|n| n as usize > self.max_body)
        {
            return Err(too_large());
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(connect)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body.freeze(), content_type))
    }

    /// Scrapes `target` once, with `guard` its hygiene state.
    pub async fn scrape(&self, target: &Target, guard: &mut SourceGuard) -> Scrape {
        let started = Instant::now();
        let start_ms = now_ms();
        self.stats.scrapes.incr();
        self.stats.requests.incr();
        guard.begin();
        let fetched = match tokio::time::timeout(target.timeout, self.fetch(target)).await {
            Ok(r) => r,
            Err(_) => Err(ScrapeError::Timeout {
                url: target.url.clone(),
                after: target.timeout,
            }),
        };
        let result = match fetched {
            Ok((body, content_type)) => {
                let path = target.url.split('?').next().unwrap_or_default();
                let format = Format::detect(content_type.as_deref(), path);
                if body.len() > BLOCKING_PARSE_BYTES {
                    let (target2, mut g, this) = (
                        target.clone(),
                        std::mem::replace(guard, self.guard()),
                        self.clone(),
                    );
                    let (r, g) = tokio::task::spawn_blocking(move || {
                        let r = this.parse(&target2, format, &body, start_ms, &mut g);
                        (r, g)
                    })
                    .await
                    .expect("the parse task does not panic");
                    *guard = g;
                    r
                } else {
                    self.parse(target, format, &body, start_ms, guard)
                }
            }
            Err(e) => Err(e),
        };
        let elapsed = started.elapsed();
        self.stats.duration.add(elapsed.as_millis() as u64);
        let (mut series, scraped, error) = match result {
            Ok((series, scraped)) => {
                self.stats.success.incr();
                self.stats.samples.add(scraped);
                (series, scraped, None)
            }
            Err(e) => {
                self.stats.stats.scope("errors").counter(e.kind()).incr();
                tracing::warn!(service = %target.service, source = %target.source, error = %e, "scrape failed");
                (Vec::new(), 0, Some(e.to_string()))
            }
        };
        let rejected: u64 = guard.round_counts().map(|(_, n)| n).sum();
        let up = error.is_none();
        let meta = |metric: String, value: f64| {
            Series::one(
                SeriesKey::new(target.service.clone(), target.source.clone(), metric),
                start_ms,
                value,
            )
        };
        series.push(meta("up".into(), if up { 1.0 } else { 0.0 }));
        series.push(meta(
            "scrape_duration_seconds".into(),
            elapsed.as_secs_f64(),
        ));
        series.push(meta("scrape_samples_scraped".into(), scraped as f64));
        series.push(meta("scrape_samples_rejected".into(), rejected as f64));
        for (reason, n) in guard.round_counts() {
            series.push(meta(
                format!("scrape_samples_rejected{{reason=\"{}\"}}", reason.as_str()),
                n as f64,
            ));
        }
        Scrape {
            series,
            status: TargetStatus {
                target: target.clone(),
                last_scrape_ms: start_ms,
                up,
                duration_ms: elapsed.as_millis() as u64,
                samples_scraped: scraped,
                samples_rejected: rejected,
                last_error: error,
                series: guard.series(),
                rejected: guard.rejected(),
            },
        }
    }

    fn parse(
        &self,
        target: &Target,
        format: Format,
        body: &[u8],
        start_ms: i64,
        guard: &mut SourceGuard,
    ) -> Result<(Vec<Series>, u64), ScrapeError> {
        let perr = |source| ScrapeError::Parse {
            url: target.url.clone(),
            format: format.as_str(),
            source,
        };
        let body = parse::maybe_gunzip(body, self.max_body).map_err(|e| match e {
            ParseError::TooLarge { .. } => ScrapeError::TooLarge {
                url: target.url.clone(),
                limit: self.max_body,
            },
            e => perr(e),
        })?;
        let body = parse::utf8(&body).map_err(perr)?;
        let mut out = Vec::new();
        let mut push = |metric: String, value: f64, ts: Option<i64>| {
            out.push(Series::one(
                SeriesKey::new(target.service.clone(), target.source.clone(), metric),
                ts.unwrap_or(start_ms),
                value,
            ));
        };
        let scraped = match format {
            Format::MetricsJson => json::parse(body, |name, value| {
                if guard
                    .admit(name, value, json::must_be_finite(name), &self.rejects)
                    .is_ok()
                {
                    push(name.to_owned(), value, None);
                }
            }),
            Format::PrometheusText | Format::OpenMetrics => {
                let mut labels = Vec::new();
                text::parse(body, format == Format::OpenMetrics, |s| {
                    let mut name = String::with_capacity(s.name.len() + 16 * s.labels.len());
                    labels.clear();
                    labels.extend_from_slice(s.labels);
                    text::canonical_metric(s.name, &mut labels, |_| false, &mut name);
                    if guard
                        .admit(&name, s.value, s.must_be_finite(), &self.rejects)
                        .is_ok()
                    {
                        push(name, s.value, s.timestamp_ms);
                    }
                })
            }
        }
        .map_err(perr)?;
        Ok((out, scraped as u64))
    }
}
