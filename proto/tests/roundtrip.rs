//! Every message of every package survives encode -> decode unchanged, with
//! every field set to a non-default value; a check against the descriptor set
//! makes sure no message is left out when the protos grow.

use std::collections::{BTreeSet, HashMap};

use prost::Message;
use proto::{alerter, collector, common, query, storage, tracer};

/// Round-trips `value` and records its full protobuf name.
fn check<M: Message + Default + PartialEq + std::fmt::Debug>(
    seen: &mut BTreeSet<String>,
    full_name: &str,
    value: M,
) {
    let bytes = value.encode_to_vec();
    assert_eq!(bytes.len(), value.encoded_len(), "{full_name}");
    let back = M::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{full_name}: {e}"));
    assert_eq!(back, value, "{full_name}");
    // Length-delimited framing, as on a gRPC stream, too.
    let framed = value.encode_length_delimited_to_vec();
    assert_eq!(
        M::decode_length_delimited(framed.as_slice()).unwrap(),
        value,
        "{full_name}"
    );
    assert!(
        seen.insert(full_name.to_owned()),
        "{full_name} checked twice"
    );
}

/// Same, for messages that have fields: the value must not be the default,
/// so that the round trip really carried data.
fn check_set<M: Message + Default + PartialEq + std::fmt::Debug>(
    seen: &mut BTreeSet<String>,
    full_name: &str,
    value: M,
) {
    assert_ne!(value, M::default(), "{full_name}: fill in its fields");
    check(seen, full_name, value);
}

fn key() -> common::SeriesKey {
    common::SeriesKey {
        service: "cuckoo".into(),
        source: "host-1:9990".into(),
        metric: "srv/http/request_latency_ms.p99".into(),
    }
}

fn sample() -> common::Sample {
    common::Sample {
        timestamp_ms: 1_700_000_060_000,
        value: -12.5,
    }
}

fn series() -> common::Series {
    common::Series {
        key: Some(key()),
        samples: vec![
            sample(),
            common::Sample {
                timestamp_ms: 1_700_000_120_000,
                value: 3.0,
            },
        ],
    }
}

fn range() -> common::TimeRange {
    common::TimeRange {
        start_ms: 1_700_000_000_000,
        end_ms: 1_700_003_600_000,
    }
}

fn glob(p: &str) -> common::Pattern {
    common::Pattern {
        kind: Some(common::pattern::Kind::Glob(p.into())),
    }
}

fn matcher() -> common::Matcher {
    use common::pattern::Kind;
    common::Matcher {
        service: Some(common::Pattern {
            kind: Some(Kind::Exact("cuckoo".into())),
        }),
        source: Some(common::Pattern {
            kind: Some(Kind::Members("role.cuckoo_frontend".into())),
        }),
        metric: Some(common::Pattern {
            kind: Some(Kind::Regex("jvm_.*".into())),
        }),
    }
}

fn cell() -> common::PartialCell {
    common::PartialCell {
        timestamp_ms: 1_700_000_060_000,
        count: 3,
        sum: 6.0,
        min: 1.0,
        max: 3.0,
        last: 2.0,
        last_timestamp_ms: 1_700_000_059_000,
    }
}

fn rejection() -> common::Rejection {
    common::Rejection {
        index: 2,
        sample_index: Some(0),
        reason: common::RejectReason::TooFarInFuture.into(),
        detail: "sample at 4102444800000 is 30 days ahead".into(),
    }
}

fn labels() -> HashMap<String, String> {
    HashMap::from([
        ("team".into(), "storage".into()),
        ("service".into(), "cuckoo".into()),
    ])
}

fn common_messages(seen: &mut BTreeSet<String>) {
    use common::pattern::{Kind, Names};
    check_set(seen, "aerie.common.v1.SeriesKey", key());
    check_set(seen, "aerie.common.v1.Sample", sample());
    check_set(seen, "aerie.common.v1.Series", series());
    check_set(seen, "aerie.common.v1.TimeRange", range());
    check_set(seen, "aerie.common.v1.Pattern", glob("http/*"));
    check_set(
        seen,
        "aerie.common.v1.Pattern.Names",
        Names {
            names: vec!["a:1".into(), "b:2".into()],
        },
    );
    check_set(seen, "aerie.common.v1.Matcher", matcher());
    check_set(seen, "aerie.common.v1.PartialCell", cell());
    check_set(seen, "aerie.common.v1.Rejection", rejection());

    // Every variant of the oneof, and the empty list that matches nothing.
    for kind in [
        Kind::Exact("x".into()),
        Kind::Glob("*".into()),
        Kind::Regex("a|b".into()),
        Kind::Members("role.x".into()),
        Kind::AnyOf(Names {
            names: vec!["h1".into()],
        }),
        Kind::AnyOf(Names { names: vec![] }),
    ] {
        let p = common::Pattern { kind: Some(kind) };
        assert_eq!(
            common::Pattern::decode(p.encode_to_vec().as_slice()).unwrap(),
            p
        );
    }
    // An unset sample index (the whole series rejected) stays unset; index 0 stays 0.
    let whole = common::Rejection {
        sample_index: None,
        ..rejection()
    };
    let first = common::Rejection {
        sample_index: Some(0),
        ..rejection()
    };
    assert_ne!(whole.encode_to_vec(), first.encode_to_vec());
    assert_eq!(
        common::Rejection::decode(whole.encode_to_vec().as_slice()).unwrap(),
        whole
    );
}

fn storage_messages(seen: &mut BTreeSet<String>) {
    use storage::*;
    let group = FragmentGroup {
        key: Some(common::SeriesKey {
            service: "web".into(),
            ..Default::default()
        }),
        cells: vec![
            cell(),
            common::PartialCell {
                timestamp_ms: 1_700_000_120_000,
                ..cell()
            },
        ],
    };
    let stats = FragmentStats {
        series_touched: 10_000,
        samples_touched: 100_800_000,
        resolution_ms: 300_000,
    };
    check_set(
        seen,
        "aerie.storage.v1.WriteRequest",
        WriteRequest {
            series: vec![series(), series()],
        },
    );
    check_set(
        seen,
        "aerie.storage.v1.WriteResponse",
        WriteResponse {
            accepted: 3,
            backfilled: 1,
            rejections: vec![rejection()],
            rejected: 1,
            rejections_truncated: true,
        },
    );
    check_set(
        seen,
        "aerie.storage.v1.ReadRequest",
        ReadRequest {
            matcher: Some(matcher()),
            range: Some(range()),
            max_series: 10,
            max_samples: 1000,
        },
    );
    check_set(
        seen,
        "aerie.storage.v1.ReadResponse",
        ReadResponse {
            series: vec![series()],
        },
    );
    check_set(
        seen,
        "aerie.storage.v1.IndexRequest",
        IndexRequest {
            kind: IndexKind::Metrics.into(),
            matcher: Some(matcher()),
            range: Some(range()),
            limit: 100,
        },
    );
    check_set(
        seen,
        "aerie.storage.v1.IndexResponse",
        IndexResponse {
            names: vec!["http/a".into()],
            series: vec![key()],
            total: 7,
            truncated: true,
        },
    );
    let over_time = OverTime {
        function: OverTimeFunction::MovingAvg.into(),
        window_ms: 600_000,
    };
    let cross = CrossSeries {
        aggregator: common::Aggregator::Sum.into(),
        group_by: vec![
            common::KeyPart::Service.into(),
            common::KeyPart::Metric.into(),
        ],
    };
    check_set(seen, "aerie.storage.v1.OverTime", over_time);
    check_set(seen, "aerie.storage.v1.CrossSeries", cross.clone());
    check_set(
        seen,
        "aerie.storage.v1.ExecuteFragmentRequest",
        ExecuteFragmentRequest {
            matchers: vec![
                matcher(),
                common::Matcher {
                    metric: Some(glob("http*")),
                    ..Default::default()
                },
            ],
            range: Some(range()),
            step_ms: 60_000,
            step_aggregator: common::Aggregator::Last.into(),
            over_time: Some(OverTime {
                function: OverTimeFunction::Rate.into(),
                window_ms: 0,
            }),
            cross_series: Some(cross),
            max_series: 1,
            max_samples: 2,
        },
    );
    check_set(seen, "aerie.storage.v1.FragmentGroup", group.clone());
    check_set(seen, "aerie.storage.v1.FragmentStats", stats);
    check_set(
        seen,
        "aerie.storage.v1.ExecuteFragmentResponse",
        ExecuteFragmentResponse {
            groups: vec![group],
            stats: Some(stats),
        },
    );
    check_set(
        seen,
        "aerie.storage.v1.EpochsRequest",
        EpochsRequest {
            service: Some(glob("cu*")),
            range: Some(range()),
        },
    );
    let epoch = ServiceDayEpoch {
        service: "cuckoo".into(),
        day_start_ms: 1_699_920_000_000,
        epoch: 4,
    };
    check_set(seen, "aerie.storage.v1.ServiceDayEpoch", epoch.clone());
    check_set(
        seen,
        "aerie.storage.v1.EpochsResponse",
        EpochsResponse {
            epochs: vec![epoch.clone()],
            mutable_after_ms: 1_700_000_000_000,
        },
    );
    check(
        seen,
        "aerie.storage.v1.WatchEpochsRequest",
        WatchEpochsRequest {},
    );
    check_set(
        seen,
        "aerie.storage.v1.EpochsUpdate",
        EpochsUpdate {
            snapshot: true,
            epochs: vec![epoch],
            now_ms: 1_700_000_000_000,
            ooo_window_ms: 600_000,
        },
    );
}

fn collector_messages(seen: &mut BTreeSet<String>) {
    use collector::*;
    let metric = PushedMetric {
        metric: "jobs/processed".into(),
        kind: MetricKind::Counter.into(),
        value: 42.0,
    };
    let role = Role {
        name: "role.cuckoo_frontend".into(),
        service: "cuckoo".into(),
        sources: vec!["h1:1".into()],
    };
    check_set(seen, "aerie.collector.v1.PushedMetric", metric.clone());
    check_set(
        seen,
        "aerie.collector.v1.PushRequest",
        PushRequest {
            service: "batch".into(),
            task_id: "batch-42/attempt-1".into(),
            interval_start_ms: 1_700_000_000_000,
            interval_ms: 60_000,
            metrics: vec![
                metric,
                PushedMetric {
                    kind: MetricKind::Gauge.into(),
                    ..Default::default()
                },
            ],
        },
    );
    check_set(
        seen,
        "aerie.collector.v1.PushResponse",
        PushResponse {
            accepted: 1,
            rejections: vec![common::Rejection {
                sample_index: None,
                ..rejection()
            }],
        },
    );
    check_set(
        seen,
        "aerie.collector.v1.ListRolesRequest",
        ListRolesRequest {
            roles: vec!["role.x".into()],
        },
    );
    check_set(seen, "aerie.collector.v1.Role", role.clone());
    check_set(
        seen,
        "aerie.collector.v1.ListRolesResponse",
        ListRolesResponse { roles: vec![role] },
    );
}

fn query_messages(seen: &mut BTreeSet<String>) {
    use query::*;
    let instant = QueryRequest {
        query: "ts(cuckoo, *, jvm_gc_msec)".into(),
        time_ms: 1_700_000_000_000,
    };
    let ranged = QueryRangeRequest {
        query: "max(rate(ts(web, *, http*latency.p9999)))".into(),
        start_ms: 1_700_000_000_000,
        end_ms: 1_700_086_400_000,
        step_ms: 300_000,
    };
    let result = SeriesResult {
        key: Some(key()),
        alias: "gc".into(),
        points: vec![sample()],
    };
    let missing = MissingZone {
        zone: "dc2".into(),
        reason: "deadline exceeded after 5s".into(),
        range: Some(range()),
    };
    let stats = QueryStats {
        series_touched: 1,
        samples_touched: 2,
        spans_cached: 3,
        spans_computed: 4,
        elapsed_ms: 5,
    };
    let span = SpanPlan {
        range: Some(range()),
        cache: SpanCachePlan::Hit.into(),
    };
    let fragment = ZoneFragment {
        zone: "dc1".into(),
        fragment: "sum(ts(web,*,x)) step=5m".into(),
        resolution_ms: 300_000,
        spans: vec![
            span,
            SpanPlan {
                range: Some(range()),
                cache: SpanCachePlan::Mutable.into(),
            },
        ],
    };
    let cost = CostEstimate {
        series: 10_000,
        samples: 20_160_000,
    };
    check_set(seen, "aerie.query.v1.QueryRequest", instant.clone());
    check_set(seen, "aerie.query.v1.QueryRangeRequest", ranged.clone());
    check_set(seen, "aerie.query.v1.SeriesResult", result.clone());
    check_set(seen, "aerie.query.v1.MissingZone", missing.clone());
    check_set(seen, "aerie.query.v1.QueryStats", stats);
    check_set(
        seen,
        "aerie.query.v1.QueryResponse",
        QueryResponse {
            result_type: ResultType::Series.into(),
            series: vec![result],
            warnings: vec!["rate() of a gauge".into()],
            missing_zones: vec![missing],
            stats: Some(stats),
        },
    );
    check_set(
        seen,
        "aerie.query.v1.ExplainRequest",
        ExplainRequest {
            request: Some(explain_request::Request::Range(ranged)),
        },
    );
    let instant_explain = ExplainRequest {
        request: Some(explain_request::Request::Instant(instant)),
    };
    assert_eq!(
        ExplainRequest::decode(instant_explain.encode_to_vec().as_slice()).unwrap(),
        instant_explain
    );
    check_set(seen, "aerie.query.v1.SpanPlan", span);
    check_set(seen, "aerie.query.v1.ZoneFragment", fragment.clone());
    check_set(seen, "aerie.query.v1.CostEstimate", cost);
    check_set(
        seen,
        "aerie.query.v1.ExplainResponse",
        ExplainResponse {
            rewritten: "sum(ts(web, *, x))".into(),
            fragments: vec![fragment],
            cost: Some(cost),
            refusal: "estimated 20160000 samples exceeds the limit of 10000000".into(),
            text: "plan\n  zone dc1".into(),
        },
    );
}

fn alerter_messages(seen: &mut BTreeSet<String>) {
    use alerter::*;
    let rule = Rule {
        name: "HighErrorRate".into(),
        query: "ts(web, *, http/errors) / ts(web, *, http/requests)".into(),
        predicate: "> 0.05".into(),
        for_ms: 300_000,
        severity: Severity::Critical.into(),
        labels: labels(),
        annotations: HashMap::from([("summary".into(), "errors above 5%".into())]),
        route: "pager".into(),
        min_failing_fraction: 0.25,
        interval_ms: 60_000,
        file: "rules/web.toml".into(),
    };
    let alert = Alert {
        rule: "HighErrorRate".into(),
        labels: labels(),
        annotations: HashMap::from([("summary".into(), "errors at 7%".into())]),
        state: AlertState::Firing.into(),
        severity: Severity::Critical.into(),
        active_since_ms: 1_700_000_000_000,
        firing_since_ms: 1_700_000_300_000,
        resolved_at_ms: 0,
        value: 0.07,
        silenced_by: vec!["s-1".into()],
        fingerprint: "9f2c".into(),
    };
    let matcher = LabelMatcher {
        name: "service".into(),
        value: "cu.*".into(),
        r#type: MatchType::Regex.into(),
    };
    let silence = Silence {
        id: "s-1".into(),
        matchers: vec![matcher.clone()],
        starts_at_ms: 1_700_000_000_000,
        ends_at_ms: 1_700_003_600_000,
        created_by: "oncall".into(),
        comment: "maintenance".into(),
        state: SilenceState::Active.into(),
    };
    check(
        seen,
        "aerie.alerter.v1.ListRulesRequest",
        ListRulesRequest {},
    );
    check_set(seen, "aerie.alerter.v1.Rule", rule.clone());
    check_set(
        seen,
        "aerie.alerter.v1.ListRulesResponse",
        ListRulesResponse { rules: vec![rule] },
    );
    check_set(seen, "aerie.alerter.v1.Alert", alert.clone());
    check_set(
        seen,
        "aerie.alerter.v1.ListAlertsRequest",
        ListAlertsRequest {
            states: vec![AlertState::Pending.into(), AlertState::Firing.into()],
            rule: "HighErrorRate".into(),
            matchers: vec![matcher.clone()],
        },
    );
    check_set(
        seen,
        "aerie.alerter.v1.ListAlertsResponse",
        ListAlertsResponse {
            alerts: vec![alert.clone()],
        },
    );
    check_set(seen, "aerie.alerter.v1.LabelMatcher", matcher);
    check_set(seen, "aerie.alerter.v1.Silence", silence.clone());
    check_set(
        seen,
        "aerie.alerter.v1.CreateSilenceRequest",
        CreateSilenceRequest {
            silence: Some(silence.clone()),
        },
    );
    check_set(
        seen,
        "aerie.alerter.v1.CreateSilenceResponse",
        CreateSilenceResponse {
            silence: Some(silence.clone()),
        },
    );
    check_set(
        seen,
        "aerie.alerter.v1.ListSilencesRequest",
        ListSilencesRequest {
            include_expired: true,
        },
    );
    check_set(
        seen,
        "aerie.alerter.v1.ListSilencesResponse",
        ListSilencesResponse {
            silences: vec![silence.clone()],
        },
    );
    check_set(
        seen,
        "aerie.alerter.v1.ExpireSilenceRequest",
        ExpireSilenceRequest { id: "s-1".into() },
    );
    check_set(
        seen,
        "aerie.alerter.v1.ExpireSilenceResponse",
        ExpireSilenceResponse {
            silence: Some(silence),
        },
    );
    check_set(
        seen,
        "aerie.alerter.v1.DeployGateRequest",
        DeployGateRequest {
            service: "web".into(),
        },
    );
    check_set(
        seen,
        "aerie.alerter.v1.DeployGateResponse",
        DeployGateResponse {
            blocked: true,
            alerts: vec![alert],
            reason: "blocked: 1 critical alert firing (HighErrorRate)".into(),
            evaluated_at_ms: 1_700_000_360_000,
        },
    );
}

fn tracer_messages(seen: &mut BTreeSet<String>) {
    use tracer::*;
    let local = Endpoint {
        service_name: "web".into(),
        ipv4: vec![10, 0, 0, 1],
        ipv6: vec![0; 16],
        port: 8080,
    };
    let annotation = Annotation {
        timestamp_us: 1_700_000_000_000_123,
        value: "ws".into(),
    };
    let span = Span {
        trace_id: vec![0xab; 16],
        parent_id: vec![1; 8],
        id: vec![2; 8],
        kind: SpanKind::Server.into(),
        name: "get /api".into(),
        timestamp_us: 1_700_000_000_000_000,
        duration_us: 1_500,
        local_endpoint: Some(local.clone()),
        remote_endpoint: Some(Endpoint {
            service_name: "db".into(),
            ..Default::default()
        }),
        annotations: vec![annotation.clone()],
        tags: HashMap::from([("http.method".into(), "GET".into())]),
        debug: true,
        shared: true,
    };
    let trace = Trace {
        spans: vec![span.clone()],
    };
    let link = DependencyLink {
        parent: "web".into(),
        child: "db".into(),
        call_count: 10,
        error_count: 1,
    };
    check_set(seen, "aerie.tracer.v1.Endpoint", local);
    check_set(seen, "aerie.tracer.v1.Annotation", annotation);
    check_set(seen, "aerie.tracer.v1.Span", span.clone());
    check_set(
        seen,
        "aerie.tracer.v1.IngestRequest",
        IngestRequest { spans: vec![span] },
    );
    let rejected = SpanRejection {
        index: 1,
        reason: "trace_id has 5 bytes, expected 8 or 16".into(),
    };
    check_set(seen, "aerie.tracer.v1.SpanRejection", rejected.clone());
    check_set(
        seen,
        "aerie.tracer.v1.IngestResponse",
        IngestResponse {
            accepted: 1,
            sampled_out: 2,
            rejections: vec![rejected],
        },
    );
    check_set(
        seen,
        "aerie.tracer.v1.GetTraceRequest",
        GetTraceRequest {
            trace_id: vec![0xab; 16],
        },
    );
    check_set(seen, "aerie.tracer.v1.Trace", trace.clone());
    check_set(
        seen,
        "aerie.tracer.v1.GetTraceResponse",
        GetTraceResponse {
            trace: Some(trace.clone()),
        },
    );
    check_set(
        seen,
        "aerie.tracer.v1.SearchTracesRequest",
        SearchTracesRequest {
            service_name: "web".into(),
            span_name: "get /api".into(),
            remote_service_name: "db".into(),
            annotation_query: "error and http.method=GET".into(),
            min_duration_us: 1_000,
            max_duration_us: 2_000_000,
            range: Some(range()),
            limit: 10,
        },
    );
    check_set(
        seen,
        "aerie.tracer.v1.SearchTracesResponse",
        SearchTracesResponse {
            traces: vec![trace],
        },
    );
    check_set(
        seen,
        "aerie.tracer.v1.DependenciesRequest",
        DependenciesRequest {
            range: Some(range()),
        },
    );
    check_set(seen, "aerie.tracer.v1.DependencyLink", link.clone());
    check_set(
        seen,
        "aerie.tracer.v1.DependenciesResponse",
        DependenciesResponse { links: vec![link] },
    );
    check(
        seen,
        "aerie.tracer.v1.ServiceNamesRequest",
        ServiceNamesRequest {},
    );
    check_set(
        seen,
        "aerie.tracer.v1.ServiceNamesResponse",
        ServiceNamesResponse {
            names: vec!["web".into()],
        },
    );
    check_set(
        seen,
        "aerie.tracer.v1.SpanNamesRequest",
        SpanNamesRequest {
            service_name: "web".into(),
        },
    );
    check_set(
        seen,
        "aerie.tracer.v1.SpanNamesResponse",
        SpanNamesResponse {
            names: vec!["get /api".into()],
        },
    );
}

/// Full names of every message the descriptor set declares, nested ones
/// included, except the entries protoc synthesizes for `map<,>` fields.
fn declared_messages() -> BTreeSet<String> {
    fn walk(prefix: &str, msgs: &[prost_types::DescriptorProto], out: &mut BTreeSet<String>) {
        for m in msgs {
            if m.options.as_ref().is_some_and(|o| o.map_entry()) {
                continue;
            }
            let name = format!("{prefix}.{}", m.name());
            walk(&name, &m.nested_type, out);
            out.insert(name);
        }
    }
    let fds = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = BTreeSet::new();
    for file in &fds.file {
        walk(file.package(), &file.message_type, &mut out);
    }
    out
}

#[test]
fn every_message_round_trips() {
    let mut seen = BTreeSet::new();
    common_messages(&mut seen);
    storage_messages(&mut seen);
    collector_messages(&mut seen);
    query_messages(&mut seen);
    alerter_messages(&mut seen);
    tracer_messages(&mut seen);

    let declared = declared_messages();
    let missing: Vec<_> = declared.difference(&seen).collect();
    let unknown: Vec<_> = seen.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "messages without a round-trip check: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "checked names the protos do not declare: {unknown:?}"
    );
}

#[test]
fn sample_values_round_trip_bit_exact() {
    // PartialEq cannot see NaN payloads; compare bits.
    let quiet_nan_with_payload = f64::from_bits(0x7ff8_0000_dead_beef);
    for value in [
        f64::NAN,
        -f64::NAN,
        quiet_nan_with_payload,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        f64::MAX,
        5e-324,
    ] {
        let s = common::Sample {
            timestamp_ms: -1,
            value,
        };
        let back = common::Sample::decode(s.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.value.to_bits(), value.to_bits(), "{value}");
        assert_eq!(back.timestamp_ms, -1);
    }
    // The one documented exception: proto3 omits a double equal to zero, and
    // -0.0 == 0.0, so the sign of a negative zero does not cross the wire.
    let s = common::Sample {
        timestamp_ms: 0,
        value: -0.0,
    };
    assert!(s.encode_to_vec().is_empty());
    let back = common::Sample::decode(s.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.value.to_bits(), 0.0f64.to_bits());
}

#[test]
fn enums_decode_unknown_values_without_losing_them() {
    // A newer peer may send an enum value this build does not know: the raw
    // number survives a round trip and the typed getter falls back to the
    // default, so old servers can still answer (and report) it.
    let req = storage::IndexRequest {
        kind: 99,
        ..Default::default()
    };
    let back = storage::IndexRequest::decode(req.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.kind, 99);
    assert_eq!(back.kind(), storage::IndexKind::Unspecified);
}
