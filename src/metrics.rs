//! Prometheus metrics: the recorder and the counters the request path and the pipeline update.
//! The scrape (`GET /metrics` on the admin listener) is `admin::metrics`, which reads the
//! pipeline, ops and proxy; this module imports none of them, so they can all count here.
//!
//! Two kinds. On the request path, counters and histograms go through the `metrics` facade with
//! handles registered up front, one set per route when a route map is loaded ([`ProxyMetrics`]),
//! so a request costs a few atomic operations and no allocation. Everything the sidecar already
//! counts (pipeline, spool, taps, sinks, alerts, JWKS, TLS reloads, retention) is copied into the recorder
//! when `/metrics` is scraped. Label values are bounded: route ids, event types and outcomes of
//! the map, sink, alert and key set names of the config — never raw paths or ids.
//!
//! The recorder is process-global (the `metrics` facade has one); [`install`] sets it once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics::{gauge, Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::classify::RouteMap;
use crate::event::{AuditEvent, Outcome};

/// Histogram buckets, seconds: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Distinct (route, type) pairs counted by `authtrail_events_total` before the rest are
/// counted under `route="_other"`.
const MAX_EVENT_SERIES: usize = 2_000;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Install the Prometheus recorder (once per process) and return its handle; `None` when
/// another recorder was installed first (metrics are then that recorder's business).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "metrics: invalid buckets");
                    return None;
                }
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    ENABLED.store(true, Ordering::Release);
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: another recorder is installed; /metrics stays empty");
                    None
                }
            }
        })
        .clone()
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn describe() {
    describe_counter!(
        "authtrail_requests_total",
        "Requests received, by route id (\"unmapped\" for requests no route describes)."
    );
    describe_counter!(
        "authtrail_events_total",
        "Audit events handed to the pipeline, by route, event type and outcome."
    );
    describe_histogram!(
        "authtrail_upstream_latency_seconds",
        Unit::Seconds,
        "Time from forwarding a request until the upstream's response head, by route."
    );
    describe_histogram!(
        "authtrail_proxy_added_latency_seconds",
        Unit::Seconds,
        "Time the sidecar adds to a request (everything but the upstream's wait), by route."
    );
    describe_counter!(
        "authtrail_upstream_errors_total",
        "Requests with no upstream response, by route and kind (unreachable, timeout)."
    );
    describe_histogram!(
        "authtrail_store_write_seconds",
        Unit::Seconds,
        "Duration of one batch append to the store."
    );
    describe_gauge!(
        "authtrail_queue_depth",
        "Events waiting for the store writer."
    );
    describe_gauge!(
        "authtrail_spool_depth",
        "Events waiting in the local spool for the store."
    );
    describe_gauge!("authtrail_spool_bytes", "Bytes of the spool's files.");
    describe_counter!("authtrail_events_written_total", "Events newly stored.");
    describe_counter!(
        "authtrail_events_dropped_total",
        "Events refused by the pipeline (queue full or closed). Must stay 0."
    );
    describe_counter!(
        "authtrail_events_failed_total",
        "Events neither stored nor spooled."
    );
    describe_counter!(
        "authtrail_events_spooled_total",
        "Events spooled while the store was unavailable."
    );
    describe_counter!(
        "authtrail_events_replayed_total",
        "Events replayed from the spool into the store."
    );
    describe_counter!(
        "authtrail_events_duplicates_total",
        "Events found already stored when written again (read back from the log after a crash, \
         or a batch whose commit outlived its timeout): kept once, counted here instead of written."
    );
    describe_counter!(
        "authtrail_sync_failed_total",
        "Sync-route attempt events not committed (their requests got 503)."
    );
    describe_counter!("authtrail_checkpoints_total", "Signed checkpoints written.");
    describe_gauge!("authtrail_sink_queue_depth", "Events waiting for a sink.");
    describe_counter!(
        "authtrail_sink_events_sent_total",
        "Events a sink delivered."
    );
    describe_counter!(
        "authtrail_sink_events_dropped_total",
        "Events a sink's full queue refused."
    );
    describe_counter!(
        "authtrail_sink_events_failed_total",
        "Events a sink gave up on after its retries."
    );
    describe_gauge!(
        "authtrail_alert_queue_depth",
        "Events waiting for alert evaluation."
    );
    describe_counter!(
        "authtrail_alert_events_dropped_total",
        "Events the alert queue refused (full)."
    );
    describe_counter!("authtrail_alerts_fired_total", "Alert firings, by rule.");
    describe_counter!(
        "authtrail_alert_notifications_total",
        "Alert webhook notifications, by sink and result (delivered, failed, dropped)."
    );
    describe_counter!(
        "authtrail_jwks_refreshes_total",
        "Successful JWKS fetches, by key set."
    );
    describe_counter!(
        "authtrail_jwks_failures_total",
        "Failed JWKS fetches, by key set."
    );
    describe_counter!(
        "authtrail_tls_reloads_total",
        "Renewed listener certificates, by result (ok; failed: the files did not load or the key \
         is not the certificate's, and the previous certificate stays)."
    );
    describe_gauge!(
        "authtrail_tls_certificate_expiration_timestamp_seconds",
        "When the certificate a TLS listener serves expires (its notAfter), in Unix seconds, by \
         listener; updated on every certificate reload."
    );
    describe_counter!(
        "authtrail_purged_events_total",
        "Events deleted by the retention purge."
    );
    describe_counter!(
        "authtrail_purge_runs_total",
        "Retention purge runs, by result (ok, failed)."
    );
    describe_counter!(
        "authtrail_upstream_responses_total",
        "Responses from the upstream, by route and status class (1xx to 5xx)."
    );
    describe_gauge!(
        "authtrail_requests_in_flight",
        "Requests received whose response head has not been sent yet."
    );
    describe_counter!(
        "authtrail_exchanges_abandoned_total",
        "Mapped requests whose client hung up before its response, by when: followed (to the upstream's answer, in a task of its own), unfollowed (forwarded, but max_connections were already followed), before_forwarding (never sent): each has its event, reason client_aborted; before_admission (while its body's head was read or it waited for a queue place; never sent, no event)."
    );
    describe_counter!(
        "authtrail_reloads_total",
        "Config reloads (SIGHUP or the admin API), by result (ok, rejected)."
    );
    describe_gauge!(
        "authtrail_build_info",
        "Always 1; the labels name the running build."
    );
    gauge!("authtrail_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// A request in flight, counted in `authtrail_requests_in_flight` until dropped.
pub struct InFlight(Option<&'static Gauge>);

impl InFlight {
    pub fn enter() -> InFlight {
        if !ENABLED.load(Ordering::Acquire) {
            return InFlight(None);
        }
        let g = IN_FLIGHT.get_or_init(|| gauge!("authtrail_requests_in_flight"));
        g.increment(1.0);
        InFlight(Some(g))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            g.decrement(1.0);
        }
    }
}

static IN_FLIGHT: OnceLock<Gauge> = OnceLock::new();

/// A mapped exchange whose client hung up: `followed`, `unfollowed` or `before_forwarding`.
pub fn abandoned(when: &'static str) {
    counter!("authtrail_exchanges_abandoned_total", "when" => when).increment(1);
}

/// A config reload was applied (`ok`) or rejected.
pub fn reload(ok: bool) {
    counter!("authtrail_reloads_total", "result" => if ok { "ok" } else { "rejected" })
        .increment(1);
}

/// The request-path instruments of one route (or of unmapped traffic).
#[derive(Debug)]
pub struct RouteMetrics {
    requests: Counter,
    upstream: Histogram,
    added: Histogram,
    unreachable: Counter,
    timeout: Counter,
    /// The upstream's answers by status class, 1xx to 5xx.
    responses: [Counter; 5],
}

impl RouteMetrics {
    fn new(route: &str) -> RouteMetrics {
        let r = route.to_string();
        RouteMetrics {
            requests: counter!("authtrail_requests_total", "route" => r.clone()),
            upstream: histogram!("authtrail_upstream_latency_seconds", "route" => r.clone()),
            added: histogram!("authtrail_proxy_added_latency_seconds", "route" => r.clone()),
            unreachable: counter!("authtrail_upstream_errors_total", "route" => r.clone(), "kind" => "unreachable"),
            timeout: counter!("authtrail_upstream_errors_total", "route" => r.clone(), "kind" => "timeout"),
            responses: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
                counter!("authtrail_upstream_responses_total", "route" => r.clone(), "class" => class)
            }),
        }
    }

    /// The upstream answered with `status`.
    pub fn response(&self, status: u16) {
        if let Some(c) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.responses.get(usize::from(i)))
        {
            c.increment(1);
        }
    }

    /// A request arrived.
    pub fn request(&self) {
        self.requests.increment(1);
    }

    /// The upstream's response head arrived `waited` after forwarding.
    pub fn upstream(&self, waited: Duration) {
        self.upstream.record(waited.as_secs_f64());
    }

    /// The sidecar's own share of a request's time to its response head.
    pub fn added(&self, added: Duration) {
        self.added.record(added.as_secs_f64());
    }

    /// No response: the upstream was unreachable, or (`timed_out`) did not answer in time.
    pub fn upstream_error(&self, timed_out: bool) {
        if timed_out {
            self.timeout.increment(1);
        } else {
            self.unreachable.increment(1);
        }
    }
}

/// Request-path instruments of a route map: registered once per map, indexed like its routes.
#[derive(Debug)]
pub struct ProxyMetrics {
    routes: Box<[RouteMetrics]>,
    unmapped: RouteMetrics,
}

impl ProxyMetrics {
    pub fn new(map: &RouteMap) -> ProxyMetrics {
        ProxyMetrics {
            routes: map
                .routes
                .iter()
                .map(|r| RouteMetrics::new(&r.id))
                .collect(),
            unmapped: RouteMetrics::new("unmapped"),
        }
    }

    /// The instruments of route `index` (of unmapped traffic when out of range).
    pub fn route(&self, index: usize) -> &RouteMetrics {
        self.routes.get(index).unwrap_or(&self.unmapped)
    }

    pub fn unmapped(&self) -> &RouteMetrics {
        &self.unmapped
    }
}

/// `authtrail_events_total` counters, by route, then type, then outcome.
type EventSeries = HashMap<String, HashMap<String, [Counter; 4]>>;
static EVENT_SERIES: OnceLock<RwLock<EventSeries>> = OnceLock::new();

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::Error => 2,
        Outcome::Unknown => 3,
    }
}

/// Count an event handed to the pipeline. A read lock and an atomic add once its (route, type)
/// has been seen; registering a new pair allocates once.
pub fn count_event(e: &AuditEvent) {
    if !enabled() {
        return;
    }
    let series = EVENT_SERIES.get_or_init(Default::default);
    let i = outcome_index(e.outcome);
    {
        let map = series.read().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&e.http.route).and_then(|t| t.get(&e.event_type)) {
            c[i].increment(1);
            return;
        }
    }
    let mut map = series.write().unwrap_or_else(|p| p.into_inner());
    let size: usize = map.values().map(HashMap::len).sum();
    let (route, event_type) = if size >= MAX_EVENT_SERIES {
        ("_other".to_string(), "_other".to_string())
    } else {
        (e.http.route.clone(), e.event_type.clone())
    };
    let counters = map
        .entry(route.clone())
        .or_default()
        .entry(event_type.clone())
        .or_insert_with(|| {
            ["success", "failure", "error", "unknown"].map(|o| {
                counter!("authtrail_events_total", "route" => route.clone(), "type" => event_type.clone(), "outcome" => o)
            })
        });
    counters[i].increment(1);
}

/// Record one store append's duration.
pub fn store_write(took: Duration) {
    if !enabled() {
        return;
    }
    static H: OnceLock<Histogram> = OnceLock::new();
    H.get_or_init(|| histogram!("authtrail_store_write_seconds"))
        .record(took.as_secs_f64());
}

/// Run the recorder's upkeep (drain histogram samples) every `every` until aborted.
pub fn spawn_upkeep(handle: PrometheusHandle, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            handle.run_upkeep();
        }
    })
}
