//! Wire smoke test: the real `scylla` driver against `kassandra-tester`, an
//! in-process CQL v4 server. It shows that the store's DDL runs, that its
//! statements prepare, that a prepared chunk insert reads back through a
//! paged partition read and decodes, and that service-minute rows go out as
//! unlogged single-partition batches. It is NOT evidence of semantics: that
//! server ignores range predicates, ordering, TTL and compaction, and it
//! cannot parse `UPDATE ... USING TTL ? SET s = s + ?` (the name-index
//! writes), so `ScyllaStore::connect` itself cannot run against it. The
//! store's behaviour is tested against a real cluster in `tests/cluster.rs`.

use futures::StreamExt;
use kassandra_tester::KassandraTester;
use kassandra_tester::kassandra::KassandraSession;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use scylla_store::rows::{
    MAX_BATCH_ROWS, ServiceMinuteRow, StoredChunk, merge_chunks, partition_batches, plan_write,
};
use scylla_store::{ScyllaConfig, cql, schema};
use tsdb::SampleRow;

const NOW: i64 = 1_700_000_000_000;

/// Statements the test server cannot parse (checked: they fail to prepare
/// there, and only there).
const UNSUPPORTED_BY_TEST_SERVER: [&str; 4] =
    ["add_service", "add_metric", "add_source", "add_series"];

/// The statement without its `USING` clause and range predicates.
fn test_server_form(cql: &str) -> String {
    let cql = cql.split(" USING ").next().unwrap_or(cql);
    match cql.split_once(" WHERE ") {
        Some((head, preds)) => {
            let eq: Vec<&str> = preds
                .split(" AND ")
                .filter(|p| p.ends_with(" = ?"))
                .collect();
            format!("{head} WHERE {}", eq.join(" AND "))
        }
        None => cql.to_string(),
    }
}

async fn smoke(session: &Session, config: &ScyllaConfig) -> Result<(), String> {
    let ks = &config.keyspace;
    session
        .query_unpaged(schema::create_keyspace(config), ())
        .await
        .map_err(|e| format!("create keyspace: {e}"))?;
    for ddl in schema::create_tables(config) {
        session
            .query_unpaged(ddl.clone(), ())
            .await
            .map_err(|e| format!("{ddl}: {e}"))?;
    }
    println!("smoke: {} tables created", schema::TABLES.len());

    let mut prepared = std::collections::BTreeMap::new();
    for s in cql::ALL {
        match session.prepare(s.cql(ks)).await {
            Ok(p) if p.get_variable_col_specs().len() != s.template.matches('?').count() => {
                // The test server drops the bind markers of `USING TTL ? AND
                // TIMESTAMP ?` and of range predicates; run the statement
                // without them.
                let reduced = test_server_form(&s.cql(ks));
                println!(
                    "smoke: {} reduced for the test server to: {reduced}",
                    s.name
                );
                let mut p = session
                    .prepare(reduced)
                    .await
                    .map_err(|e| format!("prepare reduced {}: {e}", s.name))?;
                p.set_page_size(2);
                prepared.insert(s.name, (p, false));
            }
            Ok(mut p) => {
                p.set_is_idempotent(s.idempotent);
                p.set_page_size(2);
                prepared.insert(s.name, (p, true));
            }
            Err(e) if UNSUPPORTED_BY_TEST_SERVER.contains(&s.name) => {
                println!("smoke: {} does not prepare on the test server: {e}", s.name);
            }
            Err(e) => return Err(format!("prepare {}: {e}", s.name)),
        }
    }
    for name in UNSUPPORTED_BY_TEST_SERVER {
        if prepared.contains_key(name) {
            println!("smoke: {name} now prepares on the test server; update this test");
        }
    }

    // Prepared inserts of the sub-chunks a real batch produces.
    let rows: Vec<SampleRow<'_>> = (0..5)
        .map(|i| SampleRow {
            service: "web",
            source: "h1",
            metric: "cpu",
            ts: NOW - 300_000 + i * 60_000,
            value: i as f64 * 1.5,
        })
        .collect();
    let plan = plan_write(&rows, NOW, 1, config);
    assert_eq!(plan.chunks.len(), 1);
    let c = &plan.chunks[0];
    let (insert_chunk, with_using) = &prepared["insert_chunk"];
    let key = (
        "web",
        "h1",
        "cpu",
        c.window_start,
        c.first_ts,
        c.digest,
        c.last_ts,
    );
    let cols = (c.samples, c.written_at, c.chunk.as_slice());
    let r = if *with_using {
        let v = (
            key.0, key.1, key.2, key.3, key.4, key.5, key.6, cols.0, cols.1, cols.2, c.ttl,
        );
        session.execute_unpaged(insert_chunk, v).await
    } else {
        let v = (
            key.0, key.1, key.2, key.3, key.4, key.5, key.6, cols.0, cols.1, cols.2,
        );
        session.execute_unpaged(insert_chunk, v).await
    };
    r.map_err(|e| format!("insert_chunk: {e}"))?;
    let (insert_minute, with_using) = &prepared["insert_service_minute"];
    // As the store sends them: unlogged batches, one partition each.
    for rows in partition_batches(&plan.minutes, |r| r.hour, MAX_BATCH_ROWS) {
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.set_is_idempotent(true);
        for _ in &rows {
            batch.append_statement(insert_minute.clone());
        }
        let base = |m: &ServiceMinuteRow| {
            (
                m.service.clone(),
                m.metric.clone(),
                m.hour,
                m.minute,
                m.source.clone(),
                m.value,
            )
        };
        let r = if *with_using {
            let v: Vec<_> = rows
                .iter()
                .map(|m| {
                    let b = base(m);
                    (b.0, b.1, b.2, b.3, b.4, b.5, m.ttl, m.timestamp_us)
                })
                .collect();
            session.batch(&batch, v).await
        } else {
            let v: Vec<_> = rows.iter().map(|m| base(m)).collect();
            session.batch(&batch, v).await
        };
        r.map_err(|e| format!("batch of insert_service_minute: {e}"))?;
    }

    // Paged partition read of the window, decoded by the store's merge.
    let mut stream = session
        .execute_iter(
            prepared["select_chunks"].0.clone(),
            ("web", "h1", "cpu", c.window_start),
        )
        .await
        .map_err(|e| format!("select_chunks: {e}"))?
        .rows_stream::<(i64, i64, i64, i32, i64, Vec<u8>)>()
        .map_err(|e| format!("select_chunks types: {e}"))?;
    let mut stored = Vec::new();
    while let Some(r) = stream.next().await {
        let (first_ts, digest, last_ts, samples, written_at, chunk) =
            r.map_err(|e| format!("select_chunks row: {e}"))?;
        stored.push(StoredChunk {
            first_ts,
            digest,
            last_ts,
            samples,
            written_at,
            chunk,
        });
    }
    let samples = merge_chunks(&stored, 0, i64::MAX).map_err(|(_, e)| e.to_string())?;
    let got: Vec<(i64, f64)> = samples.iter().map(|s| (s.ts, s.value)).collect();
    let want: Vec<(i64, f64)> = rows.iter().map(|r| (r.ts, r.value)).collect();
    assert_eq!(got, want);
    println!(
        "smoke: chunk of {} samples written and read back",
        got.len()
    );

    let mut n = 0;
    for m in &plan.minutes {
        let mut s = session
            .execute_iter(
                prepared["select_service_minutes"].0.clone(),
                ("web", "cpu", m.hour),
            )
            .await
            .map_err(|e| format!("select_service_minutes: {e}"))?
            .rows_stream::<(i64, String, f64)>()
            .map_err(|e| format!("select_service_minutes types: {e}"))?;
        while let Some(r) = s.next().await {
            r.map_err(|e| format!("service minute row: {e}"))?;
            n += 1;
        }
    }
    assert!(n >= plan.minutes.len());
    println!(
        "smoke: {} service-minute rows read back",
        plan.minutes.len()
    );

    // Schema version row: written once, read back, accepted by the check.
    session
        .execute_unpaged(
            &prepared["insert_version"].0,
            (schema::SCHEMA_COMPONENT, schema::SCHEMA_VERSION, NOW),
        )
        .await
        .map_err(|e| format!("insert_version: {e}"))?;
    let version = session
        .execute_unpaged(&prepared["select_version"].0, (schema::SCHEMA_COMPONENT,))
        .await
        .map_err(|e| format!("select_version: {e}"))?
        .into_rows_result()
        .map_err(|e| format!("select_version rows: {e}"))?
        .maybe_first_row::<(Option<i32>,)>()
        .map_err(|e| format!("select_version row: {e}"))?
        .and_then(|r| r.0);
    assert_eq!(version, Some(schema::SCHEMA_VERSION));
    assert_eq!(
        schema::check_version(ks, version, false).map_err(|e| e.to_string())?,
        schema::SchemaAction::Use
    );
    println!("smoke: schema version {version:?} recorded and accepted");
    Ok(())
}

#[tokio::test]
async fn ddl_prepared_insert_and_partition_read_over_the_wire() {
    let outcome = std::sync::Arc::new(std::sync::Mutex::new(None));
    let out = outcome.clone();
    KassandraTester::new(KassandraSession::new())
        .in_scope(move |addr| {
            let out = out.clone();
            async move {
                let config = ScyllaConfig {
                    nodes: vec![addr.to_string()],
                    keyspace: "smoke".into(),
                    ..ScyllaConfig::default()
                };
                let r = async {
                    let session = SessionBuilder::new()
                        .known_node(addr.to_string())
                        .auto_await_schema_agreement(false)
                        .build()
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    smoke(&session, &config).await
                }
                .await;
                *out.lock().unwrap() = Some(r);
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    let r = outcome.lock().unwrap().take().expect("smoke test ran");
    r.unwrap();
}
