//! Request parameters as Prometheus-style APIs take them: times as Unix seconds or
//! RFC 3339, steps and timeouts as seconds or durations (`60s`, `5m`, `1h30m`).

use std::time::{Duration, UNIX_EPOCH};

use crate::error::QueryError;

/// A time in Unix ms from `s` (Unix seconds, possibly fractional, or RFC 3339).
pub fn time(param: &'static str, s: &str) -> Result<i64, QueryError> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 9.0e12 {
            return Err(bad(param, s, "is out of range"));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| {
        bad(
            param,
            s,
            "is neither Unix seconds nor an RFC 3339 time such as 2026-12-01T10:00:00Z",
        )
    })?;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Ok(d.as_millis() as i64),
        Err(e) => Ok(-(e.duration().as_millis() as i64)),
    }
}

/// A positive duration in ms from `s` (seconds, possibly fractional, or a duration).
pub fn duration(param: &'static str, s: &str) -> Result<i64, QueryError> {
    let s = s.trim();
    let ms = if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || !(0.0..=3.0e9).contains(&secs) {
            return Err(bad(param, s, "is out of range"));
        }
        (secs * 1000.0).round() as i64
    } else {
        let d: Duration = humantime::parse_duration(s).map_err(|_| {
            bad(
                param,
                s,
                "is neither seconds nor a duration such as 60s, 5m or 1h30m",
            )
        })?;
        i64::try_from(d.as_millis()).map_err(|_| bad(param, s, "is out of range"))?
    };
    if ms <= 0 {
        return Err(bad(param, s, "must be at least 1ms"));
    }
    Ok(ms)
}

fn bad(param: &'static str, s: &str, why: &str) -> QueryError {
    QueryError::BadParam {
        param,
        reason: format!("{s:?} {why}"),
    }
}

/// The current time in Unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A `grpc-timeout` header value (`100m`, `5S`, ...) as a duration.
pub fn grpc_timeout(v: &str) -> Option<Duration> {
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(time("t", "1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(time("t", "1700000000.5").unwrap(), 1_700_000_000_500);
        assert_eq!(
            time("t", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(time("t", "yesterday").is_err());
        assert!(time("t", "NaN").is_err());
        assert_eq!(duration("s", "60").unwrap(), 60_000);
        assert_eq!(duration("s", "0.5").unwrap(), 500);
        assert_eq!(duration("s", "5m").unwrap(), 300_000);
        assert_eq!(duration("s", "1h30m").unwrap(), 5_400_000);
        assert!(duration("s", "0").is_err());
        assert!(duration("s", "-5").is_err());
        assert!(duration("s", "fast").is_err());
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("x"), None);
        assert_eq!(grpc_timeout(""), None);
    }
}
