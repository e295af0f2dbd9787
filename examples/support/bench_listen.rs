//! The listening side of the benchmark servers (`bench_upstream`, `bare_proxy`): included by
//! path.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// `arg` as a socket address on the loopback interface (`what` names it in errors): the
/// benchmarks send traffic to 127.0.0.1 only.
pub fn loopback(arg: &str, what: &str) -> std::io::Result<SocketAddr> {
    let addr: SocketAddr = arg
        .parse()
        .map_err(|e| std::io::Error::other(format!("{what} address: {e}")))?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "{what} address {addr}: 127.0.0.1 only"
        )));
    }
    Ok(addr)
}

/// Bind `addr` and print `listening ADDR`, the line scripts/bench.sh waits for.
pub async fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    println!("listening {}", listener.local_addr()?);
    Ok(listener)
}

/// The next connection, with `TCP_NODELAY`. A failed accept (EMFILE and friends) is printed and
/// tried again 20 ms later, not spun on.
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
