//! The accept loop of the tests' own HTTP servers (upstreams, an OAuth server, a webhook
//! receiver): every connection served by hyper (HTTP/1.1 or HTTP/2) with `handle(state, req)`.

use std::convert::Infallible;
use std::future::Future;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Serve `listener` until the runtime ends.
pub fn spawn<S, F, Fut, B>(listener: TcpListener, state: S, handle: F)
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
