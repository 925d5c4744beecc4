//! Concurrency limit with load shedding: at most N requests in flight; the next one
//! is answered at once (HTTP 503 / gRPC RESOURCE_EXHAUSTED) instead of queueing.
//!
//! tower's `ConcurrencyLimit` + `LoadShed` do the same but surface an error that
//! each stack (axum needs `Infallible`, tonic needs a `Status`) would have to convert;
//! answering with the protocol's own rejection here keeps both stacks infallible.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use super::{Protocol, grpc_error, http_error};

/// Layer of [`Shed`].
#[derive(Clone, Debug)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    protocol: Protocol,
    shed: Option<stats::Counter>,
}

impl ShedLayer {
    /// At most `limit` requests at once; shed requests are counted in `shed`.
    pub fn new(limit: usize, protocol: Protocol, shed: Option<stats::Counter>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            protocol,
            shed,
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module doc.
#[derive(Clone, Debug)]
pub struct Shed<S> {
    inner: S,
    layer: ShedLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResB> Service<Request<B>> for Shed<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<Either<ResB, Full<Bytes>>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let permit: Option<OwnedSemaphorePermit> =
            self.layer.permits.clone().try_acquire_owned().ok();
        match permit {
            Some(permit) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let res = fut.await;
                    drop(permit);
                    res.map(|r| r.map(Either::Left))
                })
            }
            None => {
                if let Some(c) = &self.layer.shed {
                    c.incr();
                }
                let msg = format!(
                    "server overloaded: {} requests in flight (max_concurrent_requests); retry later",
                    self.layer.limit
                );
                let resp = match self.layer.protocol {
                    Protocol::Http => {
                        http_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &msg)
                    }
                    Protocol::Grpc => grpc_error(tonic::Code::ResourceExhausted, &msg),
                };
                Box::pin(async move { Ok(resp.map(Either::Right)) })
            }
        }
    }
}
