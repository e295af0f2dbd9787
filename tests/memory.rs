//! The shipped binary's memory: thousands of idle keep-alive connections cost little once they
//! park, because the allocator (jemalloc, configured in src/main.rs) hands the pages their
//! request buffers used back to the OS. Measured on the binary as a child process (its own
//! allocator; the test harness's in-process sidecar runs on the system allocator). Every wait
//! is bounded; the assertions are on memory, not on time.
#![cfg(target_os = "linux")]

mod support;

use std::time::Duration;

use support::upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections opened by the test, each after one request.
const CONNECTIONS: usize = 4_000;
/// What one parked connection may keep resident, on average: its socket, its task and the
/// allocator's slack. Measured here (the debug build): ~2.9 KiB; ~16 KiB when the allocator
/// keeps freed pages (`_RJEM_MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1`). The release
/// build in docs/benchmarks.md: ~1.4 KiB on jemalloc, ~5.8 KiB on glibc with `malloc_trim`.
const KIB_PER_PARKED: u64 = 5;

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Raise this process's open-file limit (the child inherits it): the test holds one socket per
/// connection and the sidecar two (its side and, for a while, the upstream's).
fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed, nothing else.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
    }
    assert!(
        lim.rlim_cur >= want,
        "the open-file limit is {} (hard {}), the test needs {want}",
        lim.rlim_cur,
        lim.rlim_max
    );
}

/// One GET on `s`, read to the end of its response (headers and Content-Length body).
async fn one_request(s: &mut TcpStream) {
    s.write_all(b"GET /echo-headers HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("no response within 10 s")
            .unwrap();
        assert!(n > 0, "closed before the response ended");
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("a Content-Length");
        if got.len() >= end + 4 + len {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_give_their_request_memory_back() {
    raise_fd_limit(3 * CONNECTIONS as u64 + 512);
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::child::config_file(
        dir.path(),
        &format!(
            "upstream: http://{}\nstore: {{ url: \"sqlite://{}\" }}\n\
             timeouts: {{ header_read: 3s, idle: 120s }}\nmax_connections: 10000\nroutes: []\n",
            up.addr,
            dir.path().join("trail.db").display()
        ),
    );
    let (mut child, addr, stderr) = support::child::serve(&cfg);
    support::child::drain(stderr);
    let pid = child.id();

    // The allocator and its options are the binary's: jemalloc's purging thread runs.
    let mut names = Vec::new();
    for _ in 0..50 {
        names = thread_names(pid);
        if names.iter().any(|n| n == "jemalloc_bg_thd") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        names.iter().any(|n| n == "jemalloc_bg_thd"),
        "no jemalloc background thread among {names:?}"
    );

    // Warm up (the upstream pool, the first allocations), then the baseline.
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        for _ in 0..10 {
            one_request(&mut s).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = status_kib(pid, "VmRSS:");

    // All at once, well within the header-read timeout, as a burst of clients would.
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let addr = addr.clone();
        opening.spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            one_request(&mut s).await;
            s
        });
    }
    let mut open = opening.join_all().await;
    // The connections cost memory until they parked (hyper's two 8 KiB buffers each): the
    // measurement sees them.
    let peak = status_kib(pid, "VmHWM:");
    assert!(
        peak > base + CONNECTIONS as u64 * 8,
        "peak {peak} KiB, baseline {base} KiB"
    );

    // Parked after the 3 s header-read timeout; the allocator's decay is about a second. The
    // first sample after both, then more while it is still over the budget (a slow machine).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let budget = base + CONNECTIONS as u64 * KIB_PER_PARKED;
    let mut rss = status_kib(pid, "VmRSS:");
    for _ in 0..80 {
        if rss <= budget {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss = status_kib(pid, "VmRSS:");
    }
    eprintln!(
        "baseline {base} KiB, peak {peak} KiB, {CONNECTIONS} parked {rss} KiB ({:.2} KiB each)",
        (rss.saturating_sub(base)) as f64 / CONNECTIONS as f64
    );
    assert!(
        rss <= budget,
        "{CONNECTIONS} parked connections: RSS {rss} KiB, over the baseline {base} KiB + \
         {KIB_PER_PARKED} KiB each"
    );

    // Still served after parking.
    for s in open.iter_mut().take(10) {
        one_request(s).await;
    }
    drop(open);
    let _ = child.kill();
    let _ = child.wait();
}
