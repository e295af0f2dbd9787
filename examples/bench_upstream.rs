//! A fast upstream for `scripts/bench.sh`: answers every request on 127.0.0.1 with the same
//! small JSON login response, so what the benchmark measures is the proxy in front of it.
//! A benchmark helper, not a test: build it in release mode.
//!
//! ```sh
//! cargo build --release --example bench_upstream
//! ./target/release/examples/bench_upstream 127.0.0.1:0   # prints "listening 127.0.0.1:PORT"
//! ```
//! The request body is read to its end and dropped; keep-alive HTTP/1.1 only.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[path = "support/bench_listen.rs"]
mod bench_listen;

/// What a typical JSON login endpoint answers (~200 bytes); the token is opaque on purpose: the
/// benchmarked route verifies the *presented* bearer token, and a static issued JWT would only
/// measure a cache hit.
const LOGIN_RESPONSE: &str = r#"{"access_token":"at_5f1d2c3b4a5968778695a4b3c2d1e0f1","refresh_token":"rt_0e1d2c3b4a59687786","token_type":"Bearer","expires_in":900,"user":{"id":"u-alice","email":"alice@example.com"}}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body to its end so the connection can be reused; its bytes are not needed.
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Full::new(Bytes::from_static(LOGIN_RESPONSE.as_bytes())));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let arg = std::env::args().nth(1);
    let addr = bench_listen::loopback(arg.as_deref().unwrap_or("127.0.0.1:0"), "listen")?;
    let listener = bench_listen::listen(addr).await?;
    loop {
        let stream = bench_listen::accept(&listener).await;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
