//! The HTTP API in the Prometheus JSON envelope: `/api/v1/query_range`, `/api/v1/query`,
//! `/api/v1/series`, `/api/v1/metrics`, `/api/v1/explain` (GET or POST with a form;
//! `format=text` makes explain answer plain text for people), and what Prometheus
//! clients such as Grafana ask first: `/api/v1/labels`, `/api/v1/label/<name>/values`
//! (the key parts `service`, `source`, `metric`) and `/api/v1/status/buildinfo`.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::storage::IndexKind;
use query_lang::{Range, SeriesKey, Value};
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::error::QueryError;
use crate::federate::{Answer, Federator, Missing};
use crate::params;

/// The routes of the HTTP API.
pub fn router(fed: Arc<Federator>) -> Router {
    Router::new()
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/metrics", get(metrics).post(metrics))
        .route("/api/v1/explain", get(explain).post(explain))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .with_state(fed)
}

/// Request parameters from the URL and, for POST, the form body.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(
        url: Vec<(String, String)>,
        form: Result<Form<Vec<(String, String)>>, FormRejection>,
    ) -> Self {
        let mut all = url;
        if let Ok(Form(body)) = form {
            for kv in body {
                if !all.contains(&kv) {
                    all.push(kv);
                }
            }
        }
        Params(all)
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn required(&self, k: &'static str) -> Result<&str, QueryError> {
        self.get(k).ok_or(QueryError::BadParam {
            param: k,
            reason: "is required".into(),
        })
    }

    fn timeout(&self) -> Result<Option<std::time::Duration>, QueryError> {
        self.get("timeout")
            .map(|t| {
                params::duration("timeout", t).map(|ms| std::time::Duration::from_millis(ms as u64))
            })
            .transpose()
    }
}

type Url = Query<Vec<(String, String)>>;
type Body = Result<Form<Vec<(String, String)>>, FormRejection>;

fn error(e: &QueryError) -> Response {
    let (code, kind) = e.http();
    let mut body = json!({"status": "error", "errorType": kind, "error": e.to_string()});
    if let QueryError::Compile {
        line: Some(l),
        column: Some(c),
        ..
    } = e
    {
        body["line"] = json!(l);
        body["column"] = json!(c);
    }
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

/// The success envelope around `data`.
fn success(data: impl Serialize, warnings: &[String], missing: &[Missing]) -> Response {
    success_with(
        |out| serde_json::to_writer(out, &data),
        0,
        warnings,
        missing,
    )
}

/// The success envelope, with its `data` written by `write_data` straight into the
/// answer (a matrix of many points is never built as a JSON tree first); `capacity`
/// is what `data` is expected to take.
fn success_with(
    write_data: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    capacity: usize,
    warnings: &[String],
    missing: &[Missing],
) -> Response {
    let mut out = Vec::with_capacity(capacity + 256);
    out.extend_from_slice(br#"{"status":"success","data":"#);
    let written = write_data(&mut out).and_then(|()| {
        if !warnings.is_empty() {
            out.extend_from_slice(br#","warnings":"#);
            serde_json::to_writer(&mut out, warnings)?;
        }
        if !missing.is_empty() {
            let zones: Vec<Json> = missing
                .iter()
                .map(|m| {
                    json!({"zone": m.zone, "reason": m.reason,
                           "start": secs(m.range.0), "end": secs(m.range.1)})
                })
                .collect();
            out.extend_from_slice(br#","partial":true,"missingZones":"#);
            serde_json::to_writer(&mut out, &zones)?;
        }
        out.push(b'}');
        Ok(())
    });
    match written {
        Ok(()) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            out,
        )
            .into_response(),
        Err(e) => error(&QueryError::Internal(format!(
            "cannot encode the answer: {e}"
        ))),
    }
}

/// Unix seconds as a JSON number: an integer when whole.
pub fn secs(ms: i64) -> Json {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// A sample value as Prometheus writes it.
pub fn value_text(v: f64) -> String {
    with_value_text(v, str::to_owned)
}

/// Calls `f` with the text of `v` as Prometheus writes it (`NaN`, `+Inf`, `-Inf`,
/// else Go's plain shortest decimal, which is Rust's Display), built on the stack
/// for whole values and wherever ryu's text is Display's.
fn with_value_text<R>(v: f64, f: impl FnOnce(&str) -> R) -> R {
    if v.is_nan() {
        return f("NaN");
    }
    if v == f64::INFINITY {
        return f("+Inf");
    }
    if v == f64::NEG_INFINITY {
        return f("-Inf");
    }
    if v == v.trunc() && v.abs() < 1e15 && !(v == 0.0 && v.is_sign_negative()) {
        // Whole values (counters, most gauges) as integers: Display's text too.
        return f(itoa::Buffer::new().format(v as i64));
    }
    // ryu is several times faster than Display. Both write the shortest decimal that
    // reads back; they differ only on an exact tie between two such decimals. A tie
    // needs the exact binary value to have one digit more than the shortest text:
    // impossible with at most 15 digits (the shortest is unique) or when the exact
    // value has 19 digits or more. Otherwise, and where ryu writes an exponent,
    // Display's plain decimals are written.
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v);
    let digits = text
        .bytes()
        .skip_while(|b| matches!(b, b'-' | b'0' | b'.'))
        .filter(u8::is_ascii_digit)
        .count();
    if text.contains('e') || (digits > 15 && !long_exact(v)) {
        f(&v.to_string())
    } else {
        f(text.strip_suffix(".0").unwrap_or(text))
    }
}

/// Writes points as Prometheus does, `[[t,"v"],...]` with `t` in Unix seconds, without
/// a JSON tree (value texts need no escaping).
fn write_points(out: &mut Vec<u8>, points: &[(i64, f64)]) {
    out.reserve(points.len() * 24 + 2);
    out.push(b'[');
    for (i, &(t, v)) in points.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        if t % 1000 == 0 {
            out.extend_from_slice(itoa::Buffer::new().format(t / 1000).as_bytes());
        } else {
            // What serde_json writes for the f64 (always finite here).
            out.extend_from_slice(
                ryu::Buffer::new()
                    .format_finite(t as f64 / 1000.0)
                    .as_bytes(),
            );
        }
        out.extend_from_slice(b",\"");
        with_value_text(v, |text| out.extend_from_slice(text.as_bytes()));
        out.extend_from_slice(b"\"]");
    }
    out.push(b']');
}

/// Whether the exact decimal expansion of finite, normal `v` has at least 19
/// significant digits: `v = m / 2^k` with `m` odd and `k > 0` expands to the
/// digits of `m * 5^k`, at least `(bits(m) - 1) log10 2 + k log10 5` of them.
fn long_exact(v: f64) -> bool {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 || exp == 0x7ff {
        return false;
    }
    let mant = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let tz = mant.trailing_zeros() as i32;
    let k = 1075 - exp - tz;
    if k <= 0 {
        return false;
    }
    let m_bits = 64 - (mant >> tz).leading_zeros() as i32;
    f64::from(m_bits - 1) * std::f64::consts::LOG10_2 + f64::from(k) * 0.698_970_004_336_018_8
        >= 18.0
}

fn metric(k: &SeriesKey) -> Json {
    let mut m = serde_json::Map::new();
    for (name, v) in [
        ("service", &k.service),
        ("source", &k.source),
        ("metric", &k.metric),
    ] {
        if let Some(v) = v {
            m.insert(name.into(), json!(v));
        }
    }
    Json::Object(m)
}

/// Writes a range answer, `{"resultType":"matrix","result":[...]}`.
fn write_matrix(out: &mut Vec<u8>, answer: &Answer, range: Range) -> serde_json::Result<()> {
    fn one(
        out: &mut Vec<u8>,
        first: bool,
        metric: &Json,
        points: &[(i64, f64)],
    ) -> serde_json::Result<()> {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"metric":"#);
        serde_json::to_writer(&mut *out, metric)?;
        out.extend_from_slice(br#","values":"#);
        write_points(out, points);
        out.push(b'}');
        Ok(())
    }
    out.extend_from_slice(br#"{"resultType":"matrix","result":["#);
    match &answer.value {
        Value::Series(set) => {
            for (i, x) in set.iter().enumerate() {
                one(out, i == 0, &metric(&x.key), &x.points)?;
            }
        }
        Value::Scalar(x) => {
            let points: Vec<(i64, f64)> = range.times().map(|t| (t, *x)).collect();
            one(out, true, &json!({}), &points)?;
        }
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// What a range answer's JSON is expected to take, to write it without regrowing.
fn matrix_bytes(answer: &Answer, range: Range) -> usize {
    match &answer.value {
        Value::Series(set) => set.iter().map(|x| 64 + x.points.len() * 24).sum(),
        Value::Scalar(_) => 64 + range.times().count() * 24,
    }
}

async fn query_range(State(fed): State<Arc<Federator>>, Query(url): Url, body: Body) -> Response {
    let p = Params::new(url, body);
    match range_request(&p) {
        Ok((text, range)) => {
            let deadline = match p.timeout() {
                Ok(t) => fed.deadline(t),
                Err(e) => return error(&e),
            };
            match fed.query(text, range, deadline).await {
                Ok(a) => success_with(
                    |out| write_matrix(out, &a, range),
                    matrix_bytes(&a, range),
                    &a.warnings,
                    &a.missing,
                ),
                Err(e) => error(&e),
            }
        }
        Err(e) => error(&e),
    }
}

/// `query`, `start`, `end` (inclusive) and `step` of a range request.
fn range_request(p: &Params) -> Result<(&str, Range), QueryError> {
    let text = p.required("query")?;
    let start = params::time("start", p.required("start")?)?;
    let end = params::time("end", p.required("end")?)?;
    let step = params::duration("step", p.required("step")?)?;
    if end < start {
        return Err(QueryError::BadParam {
            param: "end",
            reason: "is before start".into(),
        });
    }
    let points = (end - start) / step + 1;
    if points > query_lang::eval::MAX_POINTS {
        return Err(QueryError::BadParam {
            param: "step",
            reason: format!(
                "{points} points per series; at most {}: use a larger step or a shorter range",
                query_lang::eval::MAX_POINTS
            ),
        });
    }
    Ok((text, Range::new(start, end.saturating_add(1), step)))
}

/// `query`, `time` (default now) and `step` (default the configured one) of an instant request.
fn instant_request<'a>(p: &'a Params, fed: &Federator) -> Result<(&'a str, Range), QueryError> {
    let text = p.required("query")?;
    let t = match p.get("time") {
        Some(t) => params::time("time", t)?,
        None => params::now_ms(),
    };
    let step = match p.get("step") {
        Some(s) => params::duration("step", s)?,
        None => fed.instant_step_ms,
    };
    Ok((text, Range::new(t, t.saturating_add(1), step)))
}

async fn query(State(fed): State<Arc<Federator>>, Query(url): Url, body: Body) -> Response {
    let p = Params::new(url, body);
    let (text, range) = match instant_request(&p, &fed) {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    let deadline = match p.timeout() {
        Ok(t) => fed.deadline(t),
        Err(e) => return error(&e),
    };
    match fed.query(text, range, deadline).await {
        Ok(a) => {
            let t = secs(range.start);
            let data = match &a.value {
                Value::Scalar(x) => json!({"resultType": "scalar", "result": [t, value_text(*x)]}),
                Value::Series(set) => json!({
                    "resultType": "vector",
                    "result": set.iter().filter_map(|s| s.points.last().map(|(pt, v)| json!({
                        "metric": metric(&s.key),
                        "value": [secs(*pt), value_text(*v)],
                    }))).collect::<Vec<_>>(),
                }),
            };
            success(data, &a.warnings, &a.missing)
        }
        Err(e) => error(&e),
    }
}

/// `start`/`end` of a discovery request; the last day by default.
fn window(p: &Params) -> Result<(i64, i64), QueryError> {
    let now = params::now_ms();
    let end = match p.get("end") {
        Some(e) => params::time("end", e)?,
        None => now,
    };
    let start = match p.get("start") {
        Some(s) => params::time("start", s)?,
        None => end - 86_400_000,
    };
    Ok((start, end.saturating_add(1)))
}

fn limit(p: &Params) -> Result<u32, QueryError> {
    p.get("limit")
        .map(|l| {
            l.parse::<u32>().map_err(|_| QueryError::BadParam {
                param: "limit",
                reason: format!("{l:?} is not a count"),
            })
        })
        .transpose()
        .map(|l| l.unwrap_or(0))
}

async fn series(State(fed): State<Arc<Federator>>, Query(url): Url, body: Body) -> Response {
    let p = Params::new(url, body);
    let run = async {
        let mut matches = p.all("match[]");
        matches.extend(p.all("match"));
        if matches.is_empty() {
            return Err(QueryError::BadParam {
                param: "match[]",
                reason: "is required: a selection such as ts(web, *, http/*)".into(),
            });
        }
        let (start, end) = window(&p)?;
        let limit = limit(&p)?;
        let deadline = fed.deadline(p.timeout()?);
        let mut keys = std::collections::BTreeSet::new();
        let mut missing = Vec::new();
        for m in matches {
            let a = fed
                .index(m, IndexKind::Series, start, end, limit, deadline)
                .await?;
            keys.extend(a.series);
            missing.extend(a.missing);
        }
        let data: Vec<Json> = keys.iter().map(metric).collect();
        Ok((Json::Array(data), missing))
    };
    match run.await {
        Ok((data, missing)) => success(data, &warnings_of(&missing), &missing),
        Err(e) => error(&e),
    }
}

fn warnings_of(missing: &[Missing]) -> Vec<String> {
    missing
        .iter()
        .map(|m| format!("partial answer: zone {} is missing ({})", m.zone, m.reason))
        .collect()
}

async fn metrics(State(fed): State<Arc<Federator>>, Query(url): Url, body: Body) -> Response {
    let p = Params::new(url, body);
    let run = async {
        let selection = p.get("match").unwrap_or("ts(*, *, *)");
        let kind = match p.get("list").unwrap_or("metrics") {
            "services" => IndexKind::Services,
            "sources" => IndexKind::Sources,
            "metrics" => IndexKind::Metrics,
            other => {
                return Err(QueryError::BadParam {
                    param: "list",
                    reason: format!("{other:?} is not one of services, sources, metrics"),
                });
            }
        };
        let (start, end) = window(&p)?;
        let limit = limit(&p)?;
        let deadline = fed.deadline(p.timeout()?);
        let a = fed
            .index(selection, kind, start, end, limit, deadline)
            .await?;
        Ok((json!(a.names), a.missing))
    };
    match run.await {
        Ok((data, missing)) => success(data, &warnings_of(&missing), &missing),
        Err(e) => error(&e),
    }
}

async fn explain(State(fed): State<Arc<Federator>>, Query(url): Url, body: Body) -> Response {
    let p = Params::new(url, body);
    let run = async {
        let (text, range) = if p.get("start").is_some() {
            range_request(&p)?
        } else {
            instant_request(&p, &fed)?
        };
        let deadline = fed.deadline(p.timeout()?);
        fed.explain(text, range, deadline).await
    };
    match run.await {
        Ok(x) if p.get("format") == Some("text") => x.text.into_response(),
        Ok(x) => {
            let fragments: Vec<Json> = x
                .fragments
                .iter()
                .map(|f| {
                    json!({
                        "zone": f.zone,
                        "fragment": f.fragment,
                        "resolutionMs": f.resolution_ms,
                        "spans": f.spans.iter().map(|(a, b, plan)| json!({
                            "start": secs(*a), "end": secs(*b), "cache": plan.name(),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let data = json!({
                "rewritten": x.rewritten,
                "fragments": fragments,
                "cost": {"series": x.cost.series, "samples": x.cost.samples},
                "refusal": x.refusal,
                "text": x.text,
            });
            success(data, &warnings_of(&x.missing), &x.missing)
        }
        Err(e) => error(&e),
    }
}

/// The labels of every series: the three key parts.
async fn labels() -> Response {
    success(json!(["metric", "service", "source"]), &[], &[])
}

/// The values of one key part (`__name__` is `metric`), from the name index.
async fn label_values(
    State(fed): State<Arc<Federator>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(url): Url,
) -> Response {
    let p = Params(url);
    let run = async {
        let kind = match name.as_str() {
            "service" => IndexKind::Services,
            "source" => IndexKind::Sources,
            "metric" | "__name__" => IndexKind::Metrics,
            _ => return Ok((json!([]), Vec::new())),
        };
        let (start, end) = window(&p)?;
        let limit = limit(&p)?;
        let deadline = fed.deadline(p.timeout()?);
        let a = fed
            .index("ts(*, *, *)", kind, start, end, limit, deadline)
            .await?;
        Ok((json!(a.names), a.missing))
    };
    match run.await {
        Ok((data, missing)) => success(data, &warnings_of(&missing), &missing),
        Err(e) => error(&e),
    }
}

async fn buildinfo() -> Response {
    success(
        json!({"application": "aerie", "version": env!("CARGO_PKG_VERSION")}),
        &[],
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written envelope is the JSON tree it stands for, escapes included.
    #[test]
    fn written_matrix_is_the_envelope_tree() {
        let key = |source: &str| SeriesKey {
            service: Some("web".into()),
            source: Some(source.into()),
            metric: Some("http/\"q\"\\count\n".into()),
        };
        let answer = Answer {
            value: Value::Series(vec![
                query_lang::Series {
                    key: key("h1"),
                    points: vec![(60_000, 1.0), (120_500, f64::NAN), (180_000, -0.25)],
                },
                query_lang::Series {
                    key: key("h2"),
                    points: vec![],
                },
            ]),
            missing: vec![Missing {
                zone: "dc2".into(),
                reason: "timed out".into(),
                range: (0, 1_500),
            }],
            warnings: vec!["partial answer: zone dc2 is missing (timed out)".into()],
            stats: Default::default(),
        };
        let range = Range {
            start: 60_000,
            end: 240_000,
            step: 60_000,
        };
        let resp = success_with(
            |out| write_matrix(out, &answer, range),
            matrix_bytes(&answer, range),
            &answer.warnings,
            &answer.missing,
        );
        let body =
            futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 1 << 20)).unwrap();
        let got: Json = serde_json::from_slice(&body).unwrap();
        let metric = |source: &str| json!({"service": "web", "source": source, "metric": "http/\"q\"\\count\n"});
        let want = json!({
            "status": "success",
            "data": {"resultType": "matrix", "result": [
                {"metric": metric("h1"), "values": [[60, "1"], [120.5, "NaN"], [180, "-0.25"]]},
                {"metric": metric("h2"), "values": []},
            ]},
            "warnings": answer.warnings,
            "partial": true,
            "missingZones": [{"zone": "dc2", "reason": "timed out", "start": 0, "end": 1.5}],
        });
        assert_eq!(got, want);
    }

    /// The fast paths write exactly what Display (Prometheus's plain decimals) writes.
    #[test]
    fn value_text_in_json_is_display_text() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut vals = vec![
            0.0,
            -0.0,
            1.0,
            -2.5,
            1e15,
            1e16,
            1e21,
            1.5e-7,
            0.1 + 0.2,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            123456789.125,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for i in 0..60_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vals.push(f64::from_bits(x));
            vals.push((x % 10_000_000) as f64 / 1000.0);
            // Few fractional bits: where ties between shortest decimals happen
            // (e.g. 1434683076444.40625).
            let m = (x >> 11) as f64;
            vals.push(m / f64::from(1u32 << (i % 12)) * 2f64.powi((i % 21) - 10));
        }
        vals.push(1_434_683_076_444.0 + 13.0 / 32.0);
        for v in vals {
            // The reference is Display itself, not the code under test.
            let display = match v {
                _ if v.is_nan() => "NaN".to_string(),
                f64::INFINITY => "+Inf".to_string(),
                f64::NEG_INFINITY => "-Inf".to_string(),
                _ => format!("{v}"),
            };
            let mut json = Vec::new();
            write_points(&mut json, &[(1_500, v)]);
            assert_eq!(
                String::from_utf8(json).unwrap(),
                format!("[[1.5,\"{display}\"]]"),
                "{v:e}"
            );
            assert_eq!(value_text(v), display, "{v:e}");
        }
    }
}
