//! The ScyllaDB/Cassandra storage backend: schema, chunked sample tables, name index and service aggregates.
//!
//! [`ScyllaStore`] speaks the embedded engine's types (`tsdb::SampleRow`,
//! `AppendReport`, `Selector`, `Fragment`, `FragmentResult`, ...) so the
//! storage frontend wraps it in its backend trait with a thin adapter.
//!
//! ```text
//!  write(&[SampleRow])                               read_range / scan / select / names
//!    | reject: beyond retention (= TTL), future,       | name index: day -> hours present
//!    |         bad name (counted by reason)            v
//!    v                                               names_services (day) -> service
//!  plan_write (pure, deterministic)                  names_metrics  (service, day) -> metric
//!    |-- per (series, window): one sub-chunk          names_series   (service, metric, day) -> source
//!    |     samples ((service,source,metric,window_start), first_ts, digest)
//!    |-- per (series, minute): last value             samples: one partition per (series, window),
//!    |     service_minutes ((service,metric,hour), minute, source)   sub-chunks merged on read
//!    |-- index: set<int> hours += {h} (4 tables)       |
//!    v  all at write consistency, concurrently        v
//!  acknowledged  --> then epochs (service, day)      fold: one value per step (t - step, t]
//!                    for backfilled samples             -> Partial{count,sum,min,max,last} per group
//! ```
//!
//! # Storage layout
//! See [`schema`] for the DDL and [`cql`] for every statement. Samples are
//! stored as compressed chunks ([`chunk`]: the embedded engine's codec),
//! one partition per (series, `chunk_window_ms` window, default 2 h), so a
//! range read is one sequential partition scan per window. All time-series
//! tables use `TimeWindowCompactionStrategy` and a `default_time_to_live`;
//! each write also sets a TTL computed from the data's own timestamp, so a
//! late (backfilled) sample still expires at `ts + ttl` and whole SSTables
//! expire together. Nothing is deleted.
//!
//! # Write strategy for an open window
//! A window receives many batches while it is open. Rather than
//! read-modify-write of one chunk per window (a race between writers and a
//! read on every write), every batch writes its own **sub-chunk** per
//! (series, window), keyed by `(first_ts, digest)` where `digest` is the
//! FNV-1a hash of the encoded bytes. Reads merge the sub-chunks of a
//! window; on equal timestamps the sub-chunk with the larger
//! `(written_at, digest)` wins (`written_at` is a per-process strictly
//! increasing stamp), which is "last write wins" as in the embedded engine.
//! A re-delivered batch encodes to the same bytes, hence the same primary
//! key and cells: the insert is idempotent and is marked so, letting the
//! driver retry it. A batch split differently on re-delivery yields other
//! sub-chunks holding the same samples, which the merge deduplicates.
//!
//! Service aggregates are stored per (service, metric, minute, source) as
//! that source's last value in the minute, written with `USING TIMESTAMP`
//! = the sample's time, so the latest sample wins whatever the arrival
//! order and a replay rewrites identical cells; sum/count/min/max over
//! sources are computed when read. No counters anywhere: nothing double
//! counts. (On equal sample timestamps Scylla breaks the tie by the larger
//! value, not by arrival.)
//!
//! The name index keeps, per day, the set of hours in which a name had
//! data; adding to a `set` is a union, so index writes are idempotent too.
//! A per-process cache skips index writes already made. Epochs per
//! (service, day) are set to a fresh stamp after the backfilled samples of
//! a batch are stored.
//!
//! Rows that share a partition (service-minute rows of one (service,
//! metric, hour); name-index updates of one index partition) go out as
//! unlogged single-partition batches of at most
//! [`rows::MAX_BATCH_ROWS`] rows: one mutation per partition, routed to its
//! replicas, idempotent like the statements inside. Sub-chunks each have a
//! partition of their own and go out as single statements, in parallel
//! (`write_concurrency`).
//!
//! # Driver settings
//! Token-aware load balancing (`DefaultPolicy` with token awareness,
//! preferring `local_datacenter` when set), the default retry policy, which
//! retries only statements marked idempotent, every statement prepared,
//! reads paged (`page_size` rows per page), per-statement consistency
//! (`write_consistency`, `read_consistency`; `ANY` is not accepted because
//! a hint is not durable).
//!
//! # Running against a real cluster
//! Nothing here needs a server to build or to run its unit tests. To run
//! the integration tests against ScyllaDB or Cassandra (4.0 or newer):
//!
//! ```text
//! docker run --rm -d -p 9042:9042 scylladb/scylla --smp 1 --developer-mode 1
//! AERIE_SCYLLA_NODES=127.0.0.1:9042 cargo test -p scylla-store --test cluster -- --nocapture
//! ```
//!
//! Each run creates its own keyspace (`aerie_test_<pid>_<nanos>`, SimpleStrategy,
//! factor 1) and drops it afterwards. Without `AERIE_SCYLLA_NODES` the tests
//! print `SKIPPED: scylla integration tests (set AERIE_SCYLLA_NODES=host:9042)`
//! and pass. In production set at least:
//!
//! ```toml
//! nodes = ["scylla-0.scylla:9042", "scylla-1.scylla:9042"]
//! keyspace = "aerie"
//! replication = { class = "NetworkTopologyStrategy", datacenters = { dc1 = 3 } }
//! write_consistency = "local_quorum"
//! read_consistency = "local_quorum"
//! local_datacenter = "dc1"
//! ttl_secs = 2592000
//! ```
//!
//! The `wire_smoke` test runs the real driver against `kassandra-tester`, an
//! in-process CQL v4 server: it shows that the statements parse, prepare
//! and travel over the wire, not that the semantics (ranges, ordering, TTL,
//! compaction) are right — that server ignores them.

pub mod chunk;
pub mod config;
pub mod cql;
mod error;
pub mod fold;
pub mod rows;
pub mod schema;
mod store;

pub use config::{ConfigError, Consistency, Replication, ScyllaConfig};
pub use error::{Error, Result};
pub use schema::SCHEMA_VERSION;
pub use store::ScyllaStore;
