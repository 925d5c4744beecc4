//! Protobuf <-> domain conversions of the storage API: matchers to engine
//! selectors, enums to engine enums, partial aggregates to cells. Every
//! malformed field is named by its path in the request.

use proto::common as pb;
use tsdb::{KeyPart, Matcher, Partial, Selector, SeriesKey, StepAgg};

use crate::error::RequestError;

/// `[start_ms, end_ms)` of a required time range.
pub fn range(r: Option<&pb::TimeRange>, field: &str) -> Result<(i64, i64), RequestError> {
    let r = r.ok_or_else(|| RequestError::invalid(field, "is required"))?;
    if r.end_ms < r.start_ms {
        return Err(RequestError::invalid(
            field,
            format!("end_ms {} is before start_ms {}", r.end_ms, r.start_ms),
        ));
    }
    Ok((r.start_ms, r.end_ms))
}

/// The engine matcher of one pattern; unset matches everything.
pub fn pattern(p: Option<&pb::Pattern>, field: &str) -> Result<Matcher, RequestError> {
    use pb::pattern::Kind;
    let Some(kind) = p.and_then(|p| p.kind.as_ref()) else {
        return Ok(Matcher::Any);
    };
    let bad =
        |sub: &str, e: tsdb::Error| RequestError::invalid(format!("{field}.{sub}"), e.to_string());
    match kind {
        Kind::Exact(name) => Ok(Matcher::literal(name)),
        Kind::Glob(g) if g == "*" => Ok(Matcher::Any),
        Kind::Glob(g) => Matcher::glob(g).map_err(|e| bad("glob", e)),
        Kind::Regex(r) => Matcher::regex(r).map_err(|e| bad("regex", e)),
        Kind::AnyOf(names) => {
            if names.names.is_empty() {
                return Err(RequestError::invalid(
                    format!("{field}.any_of"),
                    "lists no names",
                ));
            }
            let alternatives: Vec<String> = names.names.iter().map(|n| regex::escape(n)).collect();
            Matcher::regex(&alternatives.join("|")).map_err(|e| bad("any_of", e))
        }
        Kind::Members(role) => Err(RequestError::invalid(
            format!("{field}.members"),
            format!(
                "role {role:?} must be resolved to its members by the caller (the query-federator asks discovery); storage knows no roles"
            ),
        )),
    }
}

/// The engine selector of a matcher; unset parts match everything.
pub fn selector(m: Option<&pb::Matcher>, field: &str) -> Result<Selector, RequestError> {
    let default = pb::Matcher::default();
    let m = m.unwrap_or(&default);
    Ok(Selector {
        service: pattern(m.service.as_ref(), &format!("{field}.service"))?,
        source: pattern(m.source.as_ref(), &format!("{field}.source"))?,
        metric: pattern(m.metric.as_ref(), &format!("{field}.metric"))?,
    })
}

/// The per-step aggregator; unspecified is LAST.
pub fn step_agg(value: i32, field: &str) -> Result<StepAgg, RequestError> {
    use pb::Aggregator as A;
    match A::try_from(value) {
        Ok(A::Unspecified | A::Last) => Ok(StepAgg::Last),
        Ok(A::Sum) => Ok(StepAgg::Sum),
        Ok(A::Avg) => Ok(StepAgg::Avg),
        Ok(A::Min) => Ok(StepAgg::Min),
        Ok(A::Max) => Ok(StepAgg::Max),
        Ok(A::Count) => Ok(StepAgg::Count),
        Err(_) => Err(RequestError::invalid(
            field,
            format!("unknown aggregator {value}"),
        )),
    }
}

/// A key part; unspecified is an error.
pub fn key_part(value: i32, field: &str) -> Result<KeyPart, RequestError> {
    use pb::KeyPart as K;
    match K::try_from(value) {
        Ok(K::Service) => Ok(KeyPart::Service),
        Ok(K::Source) => Ok(KeyPart::Source),
        Ok(K::Metric) => Ok(KeyPart::Metric),
        Ok(K::Unspecified) => Err(RequestError::invalid(field, "key part is unspecified")),
        Err(_) => Err(RequestError::invalid(
            field,
            format!("unknown key part {value}"),
        )),
    }
}

/// The wire form of a series key.
pub fn key_to_pb(k: &SeriesKey) -> pb::SeriesKey {
    pb::SeriesKey {
        service: k.service.clone(),
        source: k.source.clone(),
        metric: k.metric.clone(),
    }
}

/// The wire form of one partial aggregate at step `t`.
pub fn cell(t: i64, p: &Partial) -> pb::PartialCell {
    pb::PartialCell {
        timestamp_ms: t,
        count: p.count,
        sum: p.sum,
        min: p.min,
        max: p.max,
        last: p.last,
        last_timestamp_ms: p.last_ts,
    }
}

/// The wire reason of an engine rejection.
pub fn reason(r: tsdb::RejectReason) -> pb::RejectReason {
    match r {
        tsdb::RejectReason::BeyondRetention => pb::RejectReason::BeyondRetention,
        tsdb::RejectReason::TooFarInFuture => pb::RejectReason::TooFarInFuture,
        tsdb::RejectReason::InvalidName => pb::RejectReason::InvalidName,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(kind: pb::pattern::Kind) -> Option<pb::Pattern> {
        Some(pb::Pattern { kind: Some(kind) })
    }

    #[test]
    fn patterns_become_matchers() {
        use pb::pattern::Kind;
        let any_of = pat(Kind::AnyOf(pb::pattern::Names {
            names: vec!["a.b".into(), "c+d".into()],
        }));
        let m = pattern(any_of.as_ref(), "m").unwrap();
        assert!(m.matches("a.b") && m.matches("c+d"));
        assert!(!m.matches("axb") && !m.matches("a.bc"));
        assert!(matches!(pattern(None, "m").unwrap(), Matcher::Any));
        let g = pattern(pat(Kind::Glob("http/*".into())).as_ref(), "m").unwrap();
        assert!(g.matches("http/requests") && !g.matches("jvm/gc"));
    }

    #[test]
    fn bad_patterns_name_the_field() {
        use pb::pattern::Kind;
        let e = pattern(pat(Kind::Regex("(".into())).as_ref(), "matchers[1].metric")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("matchers[1].metric.regex:"), "{e}");
        let e = pattern(
            pat(Kind::Members("role.web".into())).as_ref(),
            "matcher.source",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("matcher.source.members") && e.contains("role.web"),
            "{e}"
        );
        let e = range(None, "range").unwrap_err().to_string();
        assert_eq!(e, "range: is required");
        let e = key_part(0, "cross_series.group_by[0]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("group_by[0]"), "{e}");
    }
}
