//! The protobuf edge: conversions between `proto`'s storage messages and the
//! collector's domain types, the mapping of gRPC statuses to [`SinkError`], and the
//! collector's own gRPC service (`aerie.collector.v1.Collector`: Push, ListRoles).

use std::sync::Arc;

use proto::collector as pb;
use proto::common as cpb;
use proto::storage as spb;

use crate::discovery::TargetSet;
use crate::model::{Sample, Series, SeriesKey};
use crate::push::{PushError, PushMetric, PushTask, Pusher};
use crate::sink::{ItemRejection, SinkError, WriteOutcome};

/// The storage Write request of a batch. Samples of each series are put in time
/// order with one sample per timestamp (the last one given wins), as storage asks.
pub fn write_request(batch: &[Series]) -> spb::WriteRequest {
    spb::WriteRequest {
        series: batch
            .iter()
            .map(|s| cpb::Series {
                key: Some(cpb::SeriesKey {
                    service: s.key.service.clone(),
                    source: s.key.source.clone(),
                    metric: s.key.metric.clone(),
                }),
                samples: ordered_samples(&s.samples),
            })
            .collect(),
    }
}

fn ordered_samples(samples: &[Sample]) -> Vec<cpb::Sample> {
    let sorted = samples
        .windows(2)
        .all(|w| w[0].timestamp_ms < w[1].timestamp_ms);
    let mut out: Vec<cpb::Sample> = samples
        .iter()
        .map(|s| cpb::Sample {
            timestamp_ms: s.timestamp_ms,
            value: s.value,
        })
        .collect();
    if !sorted {
        // Stable sort keeps the given order among equal timestamps; keep the last.
        out.sort_by_key(|s| s.timestamp_ms);
        let mut dedup: Vec<cpb::Sample> = Vec::with_capacity(out.len());
        for s in out {
            match dedup.last_mut() {
                Some(last) if last.timestamp_ms == s.timestamp_ms => *last = s,
                _ => dedup.push(s),
            }
        }
        out = dedup;
    }
    out
}

/// The batch a Write request holds (the spill keeps batches as Write requests).
pub fn series_from_write_request(req: spb::WriteRequest) -> Vec<Series> {
    req.series
        .into_iter()
        .map(|s| {
            let key = s.key.unwrap_or_default();
            Series {
                key: SeriesKey::new(key.service, key.source, key.metric),
                samples: s
                    .samples
                    .into_iter()
                    .map(|x| Sample {
                        timestamp_ms: x.timestamp_ms,
                        value: x.value,
                    })
                    .collect(),
            }
        })
        .collect()
}

fn reason_name(reason: i32) -> String {
    cpb::RejectReason::try_from(reason)
        .map(|r| r.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("REJECT_REASON_{reason}"))
}

/// Storage's answer as a [`WriteOutcome`].
pub fn write_outcome(resp: spb::WriteResponse) -> WriteOutcome {
    WriteOutcome {
        accepted: resp.accepted,
        rejections: resp
            .rejections
            .into_iter()
            .map(|r| ItemRejection {
                index: r.index,
                sample_index: r.sample_index,
                reason: reason_name(r.reason),
                detail: r.detail,
            })
            .collect(),
    }
}

/// The outcome of a Write that stored the valid part of a batch and refused some
/// items: storage answers INVALID_ARGUMENT with the WriteResponse in the status
/// details. `None` for any other failure.
pub fn partial_outcome(status: &tonic::Status) -> Option<WriteOutcome> {
    use prost::Message;
    if status.code() != tonic::Code::InvalidArgument || status.details().is_empty() {
        return None;
    }
    let resp = spb::WriteResponse::decode(status.details()).ok()?;
    (!resp.rejections.is_empty()).then(|| write_outcome(resp))
}

/// A failed Write as a [`SinkError`]: whether re-sending may help decides the variant.
pub fn sink_error(endpoint: &str, status: tonic::Status) -> SinkError {
    use tonic::Code;
    let endpoint = endpoint.to_owned();
    let message = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        // Transient: the node is down, slow, overloaded or restarting.
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::FailedPrecondition => SinkError::Unavailable { endpoint, message },
        // The request itself is wrong: re-sending fails the same way.
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::NotFound
        | Code::AlreadyExists
        | Code::Unimplemented
        | Code::DataLoss
        | Code::Ok => SinkError::Refused { endpoint, message },
    }
}

/// A push error as a gRPC status.
fn push_status(e: PushError) -> tonic::Status {
    match &e {
        PushError::Invalid(_) => tonic::Status::invalid_argument(e.to_string()),
        PushError::Storage(s) if s.is_retryable() => tonic::Status::unavailable(e.to_string()),
        PushError::Storage(_) => tonic::Status::failed_precondition(e.to_string()),
    }
}

fn kind_of(kind: i32) -> Option<crate::push::Kind> {
    match pb::MetricKind::try_from(kind) {
        Ok(pb::MetricKind::Counter) => Some(crate::push::Kind::Counter),
        Ok(pb::MetricKind::Gauge) => Some(crate::push::Kind::Gauge),
        Ok(pb::MetricKind::Unspecified) | Err(_) => None,
    }
}

fn reason_code(reason: crate::hygiene::Reason) -> cpb::RejectReason {
    use crate::hygiene::Reason;
    match reason {
        Reason::InvalidName | Reason::ControlChar | Reason::JvmIdentity => {
            cpb::RejectReason::InvalidName
        }
        Reason::TooLong => cpb::RejectReason::NameTooLong,
        Reason::Uuid | Reason::HexId | Reason::IpAddress => cpb::RejectReason::CardinalityPattern,
        Reason::SeriesLimit => cpb::RejectReason::SeriesLimit,
        Reason::NonFinite => cpb::RejectReason::NonFiniteValue,
    }
}

/// The collector's gRPC API.
#[derive(Debug, Clone)]
pub struct CollectorApi {
    pub(crate) pusher: Arc<Pusher>,
    pub(crate) targets: Arc<TargetSet>,
}

#[tonic::async_trait]
impl pb::collector_server::Collector for CollectorApi {
    async fn push(
        &self,
        request: tonic::Request<pb::PushRequest>,
    ) -> Result<tonic::Response<pb::PushResponse>, tonic::Status> {
        let req = request.into_inner();
        let task = PushTask {
            service: req.service,
            task_id: req.task_id,
            interval_start_ms: req.interval_start_ms,
            interval_ms: req.interval_ms,
            metrics: req
                .metrics
                .into_iter()
                .map(|m| PushMetric {
                    metric: m.metric,
                    kind: kind_of(m.kind),
                    value: m.value,
                })
                .collect(),
        };
        let outcome = self.pusher.push(task).await.map_err(push_status)?;
        Ok(tonic::Response::new(pb::PushResponse {
            accepted: outcome.accepted,
            rejections: outcome
                .rejections
                .into_iter()
                .map(|r| cpb::Rejection {
                    index: r.index,
                    sample_index: None,
                    reason: reason_code(r.reason) as i32,
                    detail: r.detail,
                })
                .collect(),
        }))
    }

    async fn list_roles(
        &self,
        request: tonic::Request<pb::ListRolesRequest>,
    ) -> Result<tonic::Response<pb::ListRolesResponse>, tonic::Status> {
        let wanted = request.into_inner().roles;
        let roles = self
            .targets
            .roles()
            .into_values()
            .filter(|r| wanted.is_empty() || wanted.contains(&r.name))
            .map(|r| pb::Role {
                name: r.name,
                service: r.service,
                sources: r.sources,
            })
            .collect();
        Ok(tonic::Response::new(pb::ListRolesResponse { roles }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_request_orders_samples_and_round_trips() {
        let key = SeriesKey::new("web", "h:1", "m");
        let batch = vec![Series {
            key: key.clone(),
            samples: vec![
                Sample {
                    timestamp_ms: 20,
                    value: 2.0,
                },
                Sample {
                    timestamp_ms: 10,
                    value: 1.0,
                },
                Sample {
                    timestamp_ms: 20,
                    value: 3.0,
                },
            ],
        }];
        let req = write_request(&batch);
        let back = series_from_write_request(req);
        assert_eq!(back[0].key, key);
        let ts: Vec<(i64, f64)> = back[0]
            .samples
            .iter()
            .map(|s| (s.timestamp_ms, s.value))
            .collect();
        assert_eq!(ts, vec![(10, 1.0), (20, 3.0)]);
    }

    #[test]
    fn a_partly_refused_batch_is_an_outcome() {
        use prost::Message;
        let resp = spb::WriteResponse {
            accepted: 3,
            backfilled: 0,
            rejections: vec![cpb::Rejection {
                index: 1,
                sample_index: Some(0),
                reason: cpb::RejectReason::TooFarInFuture as i32,
                detail: "too far".into(),
            }],
            rejected: 1,
            rejections_truncated: false,
        };
        let status = tonic::Status::with_details(
            tonic::Code::InvalidArgument,
            "1 of 4 samples rejected",
            resp.encode_to_vec().into(),
        );
        let out = partial_outcome(&status).unwrap();
        assert_eq!(out.accepted, 3);
        assert_eq!(out.rejections[0].reason, "REJECT_REASON_TOO_FAR_IN_FUTURE");
        assert!(partial_outcome(&tonic::Status::invalid_argument("bad")).is_none());
    }

    #[test]
    fn statuses_split_into_retryable_and_final() {
        assert!(sink_error("s", tonic::Status::unavailable("down")).is_retryable());
        assert!(sink_error("s", tonic::Status::deadline_exceeded("slow")).is_retryable());
        assert!(!sink_error("s", tonic::Status::invalid_argument("bad")).is_retryable());
    }
}
