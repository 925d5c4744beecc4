//! The gRPC API of every Aerie service, as versioned protobuf packages.
//!
//! ```text
//!  proto/aerie/<service>/v1/*.proto
//!     --protox (pure Rust, no system protoc)--> FileDescriptorSet
//!     --tonic-prost-build--> prost messages + tonic clients and servers (OUT_DIR)
//!                        \-> encoded descriptor set   (FILE_DESCRIPTOR_SET)
//! ```
//!
//! | package              | service     | used by |
//! |----------------------|-------------|---------|
//! | `aerie.common.v1`    | —           | everyone: series keys, samples, matchers, partial aggregates |
//! | `aerie.storage.v1`   | `Storage`   | collector (writes), query-federator (reads, index, fragments, epochs) |
//! | `aerie.collector.v1` | `Collector` | ephemeral tasks (push), query-federator (roles) |
//! | `aerie.query.v1`     | `Query`     | alerter, CLI, other services |
//! | `aerie.alerter.v1`   | `Alerter`   | deploy tooling (deploy gate), operators |
//! | `aerie.tracer.v1`    | `Tracer`    | Zipkin-shaped span ingest and queries |
//!
//! Each package is reachable by its full path (`aerie::storage::v1`) and by a
//! short alias (`storage`). Clients live in `<service>_client` and servers in
//! `<service>_server` inside each package, e.g.
//! [`storage::storage_client::StorageClient`] and
//! [`storage::storage_server::StorageServer`].
//!
//! These types stay at the edge: services convert them to their own domain
//! types in their `grpc` module. Times are Unix milliseconds and ranges are
//! half-open `[start_ms, end_ms)` unless a field says otherwise. Field numbers
//! never change meaning; a breaking change is a new `v2` package.

pub mod codec;

/// The generated packages, nested as their protobuf package names.
pub mod aerie {
    /// `aerie.common.v1`.
    pub mod common {
        /// Types shared by every Aerie API.
        pub mod v1 {
            tonic::include_proto!("aerie.common.v1");
        }
    }
    /// `aerie.storage.v1`.
    pub mod storage {
        /// The storage service: writes, reads, the name index, fragments, epochs.
        pub mod v1 {
            tonic::include_proto!("aerie.storage.v1");
        }
    }
    /// `aerie.collector.v1`.
    pub mod collector {
        /// The collector service: pushes from ephemeral tasks and roles.
        pub mod v1 {
            tonic::include_proto!("aerie.collector.v1");
        }
    }
    /// `aerie.query.v1`.
    pub mod query {
        /// The query service: instant and range queries, explain.
        pub mod v1 {
            tonic::include_proto!("aerie.query.v1");
        }
    }
    /// `aerie.alerter.v1`.
    pub mod alerter {
        /// The alerter service: rules, alerts, silences, the deploy gate.
        pub mod v1 {
            tonic::include_proto!("aerie.alerter.v1");
        }
    }
    /// `aerie.tracer.v1`.
    pub mod tracer {
        /// The tracer service: span ingest, trace lookup and search, dependencies.
        pub mod v1 {
            tonic::include_proto!("aerie.tracer.v1");
        }
    }
}

pub use aerie::alerter::v1 as alerter;
pub use aerie::collector::v1 as collector;
pub use aerie::common::v1 as common;
pub use aerie::query::v1 as query;
pub use aerie::storage::v1 as storage;
pub use aerie::tracer::v1 as tracer;

/// The encoded `google.protobuf.FileDescriptorSet` of every package above,
/// with source info (comments), e.g. for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/aerie_descriptor.bin"));

/// The protobuf package names, in the order of the table above.
pub const PACKAGES: &[&str] = &[
    "aerie.common.v1",
    "aerie.storage.v1",
    "aerie.collector.v1",
    "aerie.query.v1",
    "aerie.alerter.v1",
    "aerie.tracer.v1",
];
