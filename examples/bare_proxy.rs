//! The floor of the requested stack for `scripts/bench.sh` (case h): the least an HTTP/1.1
//! reverse proxy built on hyper and tokio does per request, with nothing of authtrail in it. No
//! route map, no header rewriting, no metrics, no timeouts, no pool: each client connection gets
//! its own upstream connection, opened when the client connects, and every request is forwarded
//! as it came (its URI is already origin-form). A benchmark helper, not a proxy to run: it has
//! no error handling beyond closing the connection. Build it in release mode.
//!
//! ```sh
//! cargo build --release --example bare_proxy
//! ./target/release/examples/bare_proxy 127.0.0.1:0 127.0.0.1:UPSTREAM_PORT [spawn|inline]
//! ```
//! Prints `listening 127.0.0.1:PORT`. Its runtime is a current-thread one, as authtrail's is on
//! one CPU. `spawn` (the default) drives each upstream connection on a task of its own, as
//! hyper's client and authtrail's pool do; `inline` drives it on the client connection's task,
//! which shows what the hop between the two tasks costs.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

#[path = "support/bench_listen.rs"]
mod bench_listen;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = |what: &str| match args.next() {
        Some(a) => bench_listen::loopback(&a, what),
        None => Err(std::io::Error::other(format!("missing {what} address"))),
    };
    let listen = addr("listen")?;
    let upstream = addr("upstream")?;
    let inline = match args.next().as_deref() {
        None | Some("spawn") => false,
        Some("inline") => true,
        Some(other) => return Err(std::io::Error::other(format!("unknown mode {other}"))),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, upstream, inline))
}

async fn serve(listen: SocketAddr, upstream: SocketAddr, inline: bool) -> std::io::Result<()> {
    let listener = bench_listen::listen(listen).await?;
    loop {
        let stream = bench_listen::accept(&listener).await;
        tokio::spawn(async move {
            if let Err(e) = connection(stream, upstream, inline).await {
                eprintln!("connection: {e}");
            }
        });
    }
}

/// One client connection and its upstream connection, until either ends.
async fn connection(stream: TcpStream, upstream: SocketAddr, inline: bool) -> anyhow::Result<()> {
    let up = TcpStream::connect(upstream).await?;
    let _ = up.set_nodelay(true);
    let (sender, conn) = client::handshake::<_, Incoming>(TokioIo::new(up)).await?;
    let sender = Arc::new(Mutex::new(sender));
    let service = service_fn(move |req: Request<Incoming>| {
        let sender = sender.clone();
        async move {
            let mut sender = sender.lock().await;
            sender.ready().await?;
            sender.send_request(req).await
        }
    });
    let served = server::Builder::new().serve_connection(TokioIo::new(stream), service);
    if inline {
        tokio::select! {
            r = served => r?,
            r = conn => r?,
        }
    } else {
        tokio::spawn(conn);
        served.await?;
    }
    Ok(())
}
