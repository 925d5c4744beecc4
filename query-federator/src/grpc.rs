//! The gRPC `aerie.query.v1.Query` service for other services (the alerter): the same
//! engine as the HTTP API; prost types stop here.

use std::sync::Arc;

use proto::common as pb;
use proto::query::{self as api, query_server::Query};
use query_lang::{Range, Value};
use tonic::{Request, Response, Status};

use crate::error::QueryError;
use crate::federate::{Answer, Federator, SpanPlan};
use crate::params;

/// The service.
#[derive(Debug, Clone)]
pub struct QueryService {
    fed: Arc<Federator>,
}

impl QueryService {
    /// Over `fed`.
    pub fn new(fed: Arc<Federator>) -> Self {
        QueryService { fed }
    }

    fn deadline<T>(&self, req: &Request<T>) -> tokio::time::Instant {
        let t = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(params::grpc_timeout);
        self.fed.deadline(t)
    }
}

fn key(k: &query_lang::SeriesKey) -> pb::SeriesKey {
    pb::SeriesKey {
        service: k.service.clone().unwrap_or_default(),
        source: k.source.clone().unwrap_or_default(),
        metric: k.metric.clone().unwrap_or_default(),
    }
}

fn response(a: Answer, range: Range) -> api::QueryResponse {
    let (result_type, series) = match &a.value {
        Value::Scalar(x) => (
            api::ResultType::Scalar,
            vec![api::SeriesResult {
                key: Some(pb::SeriesKey::default()),
                alias: String::new(),
                points: range
                    .times()
                    .map(|t| pb::Sample {
                        timestamp_ms: t,
                        value: *x,
                    })
                    .collect(),
            }],
        ),
        Value::Series(set) => (
            api::ResultType::Series,
            set.iter()
                .map(|s| api::SeriesResult {
                    key: Some(key(&s.key)),
                    alias: String::new(),
                    points: s
                        .points
                        .iter()
                        .map(|&(timestamp_ms, value)| pb::Sample {
                            timestamp_ms,
                            value,
                        })
                        .collect(),
                })
                .collect(),
        ),
    };
    api::QueryResponse {
        result_type: result_type as i32,
        series,
        warnings: a.warnings,
        missing_zones: a
            .missing
            .into_iter()
            .map(|m| api::MissingZone {
                zone: m.zone,
                reason: m.reason,
                range: Some(pb::TimeRange {
                    start_ms: m.range.0,
                    end_ms: m.range.1,
                }),
            })
            .collect(),
        stats: Some(api::QueryStats {
            series_touched: a.stats.series,
            samples_touched: a.stats.samples,
            spans_cached: a.stats.spans_cached,
            spans_computed: a.stats.spans_computed,
            elapsed_ms: a.stats.elapsed_ms,
        }),
    }
}

fn instant(fed: &Federator, r: &api::QueryRequest) -> Range {
    let t = if r.time_ms == 0 {
        params::now_ms()
    } else {
        r.time_ms
    };
    Range::new(t, t.saturating_add(1), fed.instant_step_ms)
}

fn ranged(r: &api::QueryRangeRequest) -> Result<Range, QueryError> {
    if r.step_ms <= 0 {
        return Err(QueryError::BadParam {
            param: "step_ms",
            reason: format!("must be positive, got {}", r.step_ms),
        });
    }
    if r.end_ms < r.start_ms {
        return Err(QueryError::BadParam {
            param: "end_ms",
            reason: "is before start_ms".into(),
        });
    }
    Ok(Range::new(
        r.start_ms,
        r.end_ms.saturating_add(1),
        r.step_ms,
    ))
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn query(
        &self,
        req: Request<api::QueryRequest>,
    ) -> Result<Response<api::QueryResponse>, Status> {
        let deadline = self.deadline(&req);
        let r = req.into_inner();
        let range = instant(&self.fed, &r);
        let a = self
            .fed
            .query(&r.query, range, deadline)
            .await
            .map_err(|e| e.status())?;
        let mut resp = response(a, range);
        // An instant answer has at most one point per series.
        for s in &mut resp.series {
            if s.points.len() > 1 {
                s.points.drain(..s.points.len() - 1);
            }
        }
        Ok(Response::new(resp))
    }

    async fn query_range(
        &self,
        req: Request<api::QueryRangeRequest>,
    ) -> Result<Response<api::QueryResponse>, Status> {
        let deadline = self.deadline(&req);
        let r = req.into_inner();
        let range = ranged(&r).map_err(|e| e.status())?;
        let a = self
            .fed
            .query(&r.query, range, deadline)
            .await
            .map_err(|e| e.status())?;
        Ok(Response::new(response(a, range)))
    }

    async fn explain(
        &self,
        req: Request<api::ExplainRequest>,
    ) -> Result<Response<api::ExplainResponse>, Status> {
        let deadline = self.deadline(&req);
        let (text, range) = match req.into_inner().request {
            Some(api::explain_request::Request::Instant(q)) => {
                let range = instant(&self.fed, &q);
                (q.query, range)
            }
            Some(api::explain_request::Request::Range(q)) => {
                let range = ranged(&q).map_err(|e| e.status())?;
                (q.query, range)
            }
            None => {
                return Err(QueryError::BadParam {
                    param: "request",
                    reason: "is required: an instant or a range query".into(),
                }
                .status());
            }
        };
        let x = self
            .fed
            .explain(&text, range, deadline)
            .await
            .map_err(|e| e.status())?;
        Ok(Response::new(api::ExplainResponse {
            rewritten: x.rewritten,
            fragments: x
                .fragments
                .into_iter()
                .map(|f| api::ZoneFragment {
                    zone: f.zone,
                    fragment: f.fragment,
                    resolution_ms: f.resolution_ms,
                    spans: f
                        .spans
                        .into_iter()
                        .map(|(a, b, plan)| api::SpanPlan {
                            range: Some(pb::TimeRange {
                                start_ms: a,
                                end_ms: b,
                            }),
                            cache: match plan {
                                SpanPlan::Hit => api::SpanCachePlan::Hit,
                                SpanPlan::Miss => api::SpanCachePlan::Miss,
                                SpanPlan::Mutable => api::SpanCachePlan::Mutable,
                                SpanPlan::Bypass => api::SpanCachePlan::Bypass,
                            } as i32,
                        })
                        .collect(),
                })
                .collect(),
            cost: Some(api::CostEstimate {
                series: x.cost.series,
                samples: x.cost.samples,
            }),
            refusal: x.refusal.unwrap_or_default(),
            text: x.text,
        }))
    }
}
