//! `GET /metrics`: renders the Prometheus recorder ([`crate::metrics`]) after copying in what
//! the sidecar counts itself (pipeline, spool, taps, sinks, alerts, JWKS, TLS reloads and expiry,
//! retention). Merged into the admin router by the sidecar when a recorder is installed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use ::metrics::{counter, gauge};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::ops::OpsStats;
use crate::pipeline::Pipeline;
use crate::proxy::live::Live;

/// What `/metrics` reads besides the recorder.
pub struct ScrapeState {
    pub handle: PrometheusHandle,
    pub pipeline: Pipeline,
    pub ops: Arc<OpsStats>,
    /// Set once the proxy runs (for its key sets' JWKS counters).
    pub live: OnceLock<Arc<Live>>,
}

/// `GET /metrics`, to merge into the admin router.
pub fn router(state: Arc<ScrapeState>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

async fn scrape(State(s): State<Arc<ScrapeState>>) -> Response {
    collect(&s);
    s.handle.run_upkeep();
    let mut resp = s.handle.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Copy the counters the sidecar keeps itself into the recorder.
fn collect(s: &ScrapeState) {
    let p = s.pipeline.stats().snapshot();
    gauge!("authtrail_queue_depth").set(s.pipeline.queue_depth() as f64);
    gauge!("authtrail_spool_depth").set(p.spool_depth as f64);
    gauge!("authtrail_spool_bytes").set(p.spool_bytes as f64);
    counter!("authtrail_events_written_total").absolute(p.written);
    counter!("authtrail_events_dropped_total").absolute(p.dropped);
    counter!("authtrail_events_failed_total").absolute(p.failed);
    counter!("authtrail_events_spooled_total").absolute(p.spooled);
    counter!("authtrail_events_replayed_total").absolute(p.replayed);
    counter!("authtrail_events_duplicates_total").absolute(p.duplicates);
    counter!("authtrail_events_deferred_total").absolute(p.deferred);
    counter!("authtrail_wal_errors_total").absolute(p.wal_errors);
    counter!("authtrail_sync_failed_total").absolute(p.sync_failed);
    counter!("authtrail_checkpoints_total").absolute(p.checkpoints);

    for sink in &s.ops.sinks {
        let name = sink.name.clone();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        gauge!("authtrail_sink_queue_depth", "sink" => name.clone()).set(sink.tap.depth() as f64);
        counter!("authtrail_sink_events_sent_total", "sink" => name.clone())
            .absolute(get(&sink.sent));
        counter!("authtrail_sink_events_dropped_total", "sink" => name.clone())
            .absolute(get(&sink.tap.dropped));
        counter!("authtrail_sink_events_failed_total", "sink" => name.clone())
            .absolute(get(&sink.failed));
        counter!("authtrail_sink_requests_total", "sink" => name).absolute(get(&sink.requests));
    }
    if let Some(a) = &s.ops.alerts {
        gauge!("authtrail_alert_queue_depth").set(a.tap.depth() as f64);
        counter!("authtrail_alert_events_dropped_total")
            .absolute(a.tap.dropped.load(Ordering::Relaxed));
        for (rule, n) in &a.fired {
            counter!("authtrail_alerts_fired_total", "alert" => rule.clone())
                .absolute(n.load(Ordering::Relaxed));
        }
        for (sink, ok, failed) in &a.notified {
            counter!("authtrail_alert_notifications_total", "sink" => sink.clone(), "result" => "delivered")
                .absolute(ok.load(Ordering::Relaxed));
            counter!("authtrail_alert_notifications_total", "sink" => sink.clone(), "result" => "failed")
                .absolute(failed.load(Ordering::Relaxed));
        }
        counter!("authtrail_alert_notifications_total", "sink" => "_any", "result" => "dropped")
            .absolute(a.notify_dropped.load(Ordering::Relaxed));
    }
    if let Some(r) = &s.ops.retention {
        counter!("authtrail_purged_events_total").absolute(r.purged.load(Ordering::Relaxed));
        let runs = r.runs.load(Ordering::Relaxed);
        let failed = r.failures.load(Ordering::Relaxed);
        counter!("authtrail_purge_runs_total", "result" => "ok").absolute(runs - failed.min(runs));
        counter!("authtrail_purge_runs_total", "result" => "failed").absolute(failed);
    }
    if let Some(live) = s.live.get() {
        let cfg = live.config();
        if let Some(tls) = &cfg.tls {
            counter!("authtrail_tls_reloads_total", "result" => "ok")
                .absolute(tls.cert.reloads.load(Ordering::Relaxed));
            counter!("authtrail_tls_reloads_total", "result" => "failed")
                .absolute(tls.cert.reload_failures.load(Ordering::Relaxed));
            if let Some(t) = tls.cert.not_after() {
                gauge!("authtrail_tls_certificate_expiration_timestamp_seconds", "listener" => "proxy")
                    .set(t as f64);
            }
        }
        for (name, ks) in &cfg.identity.keysets {
            if let Some(cache) = ks.jwks() {
                counter!("authtrail_jwks_refreshes_total", "keys" => name.clone())
                    .absolute(cache.refreshes.load(Ordering::Relaxed));
                counter!("authtrail_jwks_failures_total", "keys" => name.clone())
                    .absolute(cache.failures.load(Ordering::Relaxed));
            }
        }
    }
    process();
}

/// The standard `process_*` metrics (as Prometheus client libraries export them), read from
/// `/proc/self` at scrape time: resident and virtual memory, open descriptors and their limit,
/// CPU seconds, and when the process started.
#[cfg(target_os = "linux")]
fn process() {
    let page = page_size();
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let mut f = statm
            .split_whitespace()
            .map(|v| v.parse::<f64>().unwrap_or(0.0));
        let (size, resident) = (f.next().unwrap_or(0.0), f.next().unwrap_or(0.0));
        gauge!("process_virtual_memory_bytes").set(size * page);
        gauge!("process_resident_memory_bytes").set(resident * page);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(fds.count() as f64);
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok())
        })
    {
        gauge!("process_max_fds").set(max);
    }
    // /proc/self/stat: fields after the command's closing parenthesis; utime and stime are the
    // 12th and 13th of those, starttime the 20th, in clock ticks (since boot for starttime).
    let ticks = clock_ticks();
    if let Some(fields) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_string();
            Some(
                after
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            )
        })
    {
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (field(11), field(12)) {
            // A gauge: counters here are whole numbers, CPU time is not.
            gauge!("process_cpu_seconds_total").set((u + s) / ticks);
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        });
        if let (Some(start), Some(boot)) = (field(19), boot) {
            gauge!("process_start_time_seconds").set(boot + start / ticks);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn process() {}

#[cfg(target_os = "linux")]
fn page_size() -> f64 {
    // SAFETY: sysconf reads a constant of the running system; no memory is touched.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as f64
    } else {
        4096.0
    }
}

#[cfg(target_os = "linux")]
fn clock_ticks() -> f64 {
    // SAFETY: as above.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as f64
    } else {
        100.0
    }
}
