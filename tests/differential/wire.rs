//! Clients that put exact bytes on the wire, where hyper's client would normalise: raw
//! HTTP/1.1 over a `TcpStream` (any method, request-target, header list and write pattern), and
//! HTTP/2 with prior knowledge over hyper's connection-level client (any `:authority`, any
//! `:path`). Every read and write is bounded by [`IO_TIMEOUT`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What came back: the status (0 when there was no answer) and a short note (body head or error).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub note: String,
}

fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(80)]);
    s.chars().filter(|c| !c.is_control()).collect()
}

/// Write `head` then `body` (at once, or in `chunk`-byte writes 5 ms apart), then read until
/// the server closes (the head carries `Connection: close`).
pub async fn raw(addr: SocketAddr, head: &[u8], body: &[u8], chunk: Option<usize>) -> Answer {
    let io = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        // A server may answer (and close) before the whole body is written: a failed write is
        // not an error here, the answer is still read.
        let _ = async {
            match chunk {
                None => {
                    let mut all = head.to_vec();
                    all.extend_from_slice(body);
                    s.write_all(&all).await
                }
                Some(n) => {
                    s.write_all(head).await?;
                    for part in body.chunks(n) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        s.write_all(part).await?;
                    }
                    Ok(())
                }
            }
        }
        .await;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        Ok::<Vec<u8>, String>(buf)
    };
    match tokio::time::timeout(IO_TIMEOUT, io).await {
        Err(_) => Answer {
            status: 0,
            note: "no answer within 10s".into(),
        },
        Ok(Err(e)) => Answer { status: 0, note: e },
        Ok(Ok(buf)) => {
            let text = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
            let status = text
                .strip_prefix("HTTP/1.")
                .and_then(|r| r.get(2..5))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let body = buf
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(&buf[..0], |i| &buf[i + 4..]);
            Answer {
                status,
                note: if status == 0 {
                    format!("no HTTP answer: {:?}", snippet(&buf))
                } else {
                    snippet(body)
                },
            }
        }
    }
}

/// One HTTP/2 request with prior knowledge on a fresh connection to `addr`, with the given
/// `:method`, `:authority` and `:path` as written.
pub async fn h2(
    addr: SocketAddr,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Answer {
    let io = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
        let driver = tokio::spawn(conn);
        let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{authority}{path}"));
        for (k, v) in headers {
            req = req.header(k.to_ascii_lowercase(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("h2: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        driver.abort();
        Ok::<(u16, Bytes), String>((status, body))
    };
    match tokio::time::timeout(IO_TIMEOUT, io).await {
        Err(_) => Answer {
            status: 0,
            note: "no answer within 10s".into(),
        },
        Ok(Err(e)) => Answer { status: 0, note: e },
        Ok(Ok((status, body))) => Answer {
            status,
            note: snippet(&body),
        },
    }
}

/// CRC-32 (IEEE), bit by bit: small inputs only.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `data` as a gzip member of one stored (uncompressed) deflate block: valid gzip that every
/// inflater reads, without a compression crate. `data` must be under 64 KiB.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("gzip_stored takes less than 64 KiB");
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.push(1); // BFINAL = 1, BTYPE = 00 (stored)
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[test]
fn crc32_of_the_check_string() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}
