//! Connection-level limits: header read timeout, idle timeout, connection limit.
//! Every wait is bounded; no assertion depends on how fast the machine is.

mod support;

use std::time::Duration;

use support::harness;
use support::upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NO_ROUTES: &str = "  []\n";

/// Read until the peer closes; returns what was read. Panics if it stays open for 10s.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("connection was not closed within 10s")
        .ok();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn slow_request_head_is_cut_off() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, "timeouts: { header_read: 200ms }\n", NO_ROUTES).await;
    let mut s = TcpStream::connect(sc.addr).await.unwrap();
    s.write_all(b"GET /bytes HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    assert_eq!(up.requests(), 0);
    sc.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, "timeouts: { idle: 200ms }\n", NO_ROUTES).await;
    let mut s = TcpStream::connect(sc.addr).await.unwrap();
    s.write_all(b"GET /echo-headers HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    sc.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, "max_connections: 1\n", NO_ROUTES).await;
    let mut first = TcpStream::connect(sc.addr).await.unwrap();
    first
        .write_all(b"GET /echo-headers HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");

    let mut second = TcpStream::connect(sc.addr).await.unwrap();
    second
        .write_all(b"GET /echo-headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // While the first connection holds the only slot, the second is not served.
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "second connection was served beyond the limit"
    );
    assert_eq!(up.requests(), 1);
    drop(first);
    let got = read_to_close(&mut second).await;
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert_eq!(up.requests(), 2);
    sc.stop().await;
}
