//! Where samples go: the [`Sink`] trait (one storage-frontend) and its gRPC
//! implementation over `proto`'s generated Storage client.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use proto::storage::storage_client::StorageClient;
use tonic::transport::{Channel, Endpoint};

use crate::grpc;
use crate::model::Series;

/// One item storage refused, final (re-sending fails the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRejection {
    /// Position of the series in the batch.
    pub index: u32,
    /// Position of the sample in the series; `None`: the whole series.
    pub sample_index: Option<u32>,
    /// Storage's reason, as its protobuf enum name (`REJECT_REASON_...`).
    pub reason: String,
    /// Storage's message.
    pub detail: String,
}

/// What storage did with a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    /// Samples stored.
    pub accepted: u64,
    /// Items refused.
    pub rejections: Vec<ItemRejection>,
}

/// Why a write failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Storage could not be reached or did not answer in time; safe to retry.
    #[error("storage {endpoint} unavailable: {message}")]
    Unavailable { endpoint: String, message: String },
    /// Storage refused the batch as malformed; the valid part was stored, the
    /// rest fails the same way when re-sent.
    #[error("storage {endpoint} refused the batch: {message}")]
    Refused { endpoint: String, message: String },
}

impl SinkError {
    /// Whether re-sending may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Unavailable { .. } => true,
            SinkError::Refused { .. } => false,
        }
    }
}

/// A boxed write future.
pub type WriteFuture = Pin<Box<dyn Future<Output = Result<WriteOutcome, SinkError>> + Send>>;

/// One storage-frontend, as the router sees it.
pub trait Sink: Send + Sync + 'static {
    /// Its name in stats and logs (its endpoint).
    fn name(&self) -> &str;
    /// Writes a batch; resolves once storage has stored the accepted part.
    fn write(&self, batch: &[Series]) -> WriteFuture;
}

/// A storage-frontend reached over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcSink {
    endpoint: String,
    client: StorageClient<Channel>,
    timeout: Duration,
}

impl GrpcSink {
    /// A lazily connecting client of `endpoint` (`http://host:port`).
    pub fn new(
        endpoint: &str,
        timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<Self, SinkError> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| SinkError::Refused {
                endpoint: endpoint.to_owned(),
                message: format!("bad endpoint: {e}"),
            })?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            // Storage lists refused items in the status details (a trailer); a batch
            // with thousands of them needs far more than h2's 16 KiB default.
            .http2_max_header_list_size(64 << 20)
            .connect_lazy();
        Ok(Self {
            endpoint: endpoint.to_owned(),
            client: StorageClient::new(channel)
                .max_encoding_message_size(max_message_bytes.max(4 << 20))
                .max_decoding_message_size(max_message_bytes.max(4 << 20)),
            timeout,
        })
    }
}

impl Sink for GrpcSink {
    fn name(&self) -> &str {
        &self.endpoint
    }

    fn write(&self, batch: &[Series]) -> WriteFuture {
        let mut request = tonic::Request::new(grpc::write_request(batch));
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        let endpoint = self.endpoint.clone();
        Box::pin(async move {
            match client.write(request).await {
                Ok(response) => Ok(grpc::write_outcome(response.into_inner())),
                Err(status) => grpc::partial_outcome(&status)
                    .ok_or_else(|| grpc::sink_error(&endpoint, status)),
            }
        })
    }
}

/// A sink that keeps what it is given in memory, and can be made unavailable: for
/// tests and the bench. Like storage, it stores a re-sent sample once (last write wins).
#[derive(Debug, Default)]
pub struct MemorySink {
    name: String,
    store: parking_lot::Mutex<
        std::collections::BTreeMap<crate::model::SeriesKey, std::collections::BTreeMap<i64, f64>>,
    >,
    /// Samples received, re-sent ones included.
    received: std::sync::atomic::AtomicU64,
    down: std::sync::atomic::AtomicBool,
    /// Keep nothing, only count (the bench).
    count_only: bool,
}

impl MemorySink {
    /// An empty sink named `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Default::default()
        }
    }

    /// A sink that only counts the samples it is given.
    pub fn counting(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            count_only: true,
            ..Default::default()
        }
    }

    /// Makes writes fail as `Unavailable` (true) or succeed again (false).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Samples received, re-sent ones included.
    pub fn received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Distinct samples stored.
    pub fn stored(&self) -> usize {
        self.store.lock().values().map(|s| s.len()).sum()
    }

    /// The samples of one series, in time order.
    pub fn series(&self, key: &crate::model::SeriesKey) -> Vec<(i64, f64)> {
        self.store
            .lock()
            .get(key)
            .map(|s| s.iter().map(|(t, v)| (*t, *v)).collect())
            .unwrap_or_default()
    }

    /// Every series key stored.
    pub fn keys(&self) -> Vec<crate::model::SeriesKey> {
        self.store.lock().keys().cloned().collect()
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&self, batch: &[Series]) -> WriteFuture {
        let result = if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(SinkError::Unavailable {
                endpoint: self.name.clone(),
                message: "down".into(),
            })
        } else {
            let n = crate::model::sample_count(batch) as u64;
            self.received
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            if !self.count_only {
                let mut store = self.store.lock();
                for s in batch {
                    let e = store.entry(s.key.clone()).or_default();
                    for x in &s.samples {
                        e.insert(x.timestamp_ms, x.value);
                    }
                }
            }
            Ok(WriteOutcome {
                accepted: n,
                rejections: Vec::new(),
            })
        };
        Box::pin(async move { result })
    }
}
