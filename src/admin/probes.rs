//! Admin requests that fail authentication — no credential, a malformed `Authorization` header or
//! a token that matches no credential — become `audit.query` events with outcome `failure` and
//! reason `unauthenticated`, carrying the client's address and user agent, never anything of the
//! credential presented.
//!
//! Bursts are aggregated so a guessing attack cannot flood the trail: the first failure from an
//! address opens a window and is written at once; further failures from that address within the
//! window are only counted, and written as one aggregate event (`details.count`,
//! `window_start`, `window_end`) once the window has closed — by [`spawn_flusher`], by the
//! address's next failure after it, or at shutdown ([`Probes::drain`]). At most
//! [`MAX_TRACKED`] addresses are tracked; failures from further addresses are counted in one
//! overflow bucket, reported the same way (`details.overflow: true`, no address).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::event::{self, Actor, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage};
use crate::pipeline::Pipeline;

/// Most client addresses with an open window; failures from others go to the overflow bucket.
pub const MAX_TRACKED: usize = 10_000;

/// Default aggregation window (`admin.unauthenticated_window`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// The reason on every event this module writes.
pub const REASON: &str = "unauthenticated";

/// How the request failed to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not `Bearer TOKEN`.
    Malformed,
    /// A bearer token that matches no credential.
    Invalid,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Missing => "missing_credential",
            Failure::Malformed => "malformed_credential",
            Failure::Invalid => "invalid_credential",
        }
    }
}

/// One refused request: what its event needs, and nothing of the credential.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub failure: Failure,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub method: String,
    /// The endpoint as routed (`/v1/events/{id}`), never the concrete path.
    pub endpoint: String,
    pub request_id: String,
    pub time: OffsetDateTime,
}

/// The failures of one address (or of the overflow) since its window opened, beyond the first.
#[derive(Debug)]
struct Bucket {
    opened: Instant,
    window_start: OffsetDateTime,
    /// Failures after the first (which had its own event).
    count: u64,
    last_seen: OffsetDateTime,
    /// Counts by failure kind and by endpoint: both bounded by the router's endpoint list.
    failures: BTreeMap<Failure, u64>,
    endpoints: BTreeMap<String, u64>,
    last: Option<Attempt>,
}

impl Bucket {
    fn open(now: Instant, at: OffsetDateTime) -> Bucket {
        Bucket {
            opened: now,
            window_start: at,
            count: 0,
            last_seen: at,
            failures: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            last: None,
        }
    }

    fn add(&mut self, a: Attempt) {
        self.count += 1;
        self.last_seen = a.time;
        *self.failures.entry(a.failure).or_default() += 1;
        if self.endpoints.len() < 32 || self.endpoints.contains_key(&a.endpoint) {
            *self.endpoints.entry(a.endpoint.clone()).or_default() += 1;
        }
        self.last = Some(a);
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_addr: HashMap<Option<IpAddr>, Bucket>,
    overflow: Option<Bucket>,
}

/// Per-address windows of authentication failures, shared by the admin handlers and the flusher.
#[derive(Debug)]
pub struct Probes {
    window: Duration,
    max_tracked: usize,
    inner: Mutex<Inner>,
}

impl Default for Probes {
    fn default() -> Self {
        Probes::new(DEFAULT_WINDOW, MAX_TRACKED)
    }
}

impl Probes {
    /// Windows of `window` (at least 1 ms), at most `max_tracked` addresses at once.
    pub fn new(window: Duration, max_tracked: usize) -> Probes {
        Probes {
            window: window.max(Duration::from_millis(1)),
            max_tracked,
            inner: Mutex::default(),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Count `a`; returns the events to write now: its own when it opens a window, preceded by
    /// the aggregate of the address's previous window if that one closed unreported.
    pub fn failed(&self, a: Attempt) -> Vec<AuditEvent> {
        self.failed_at(a, Instant::now())
    }

    fn failed_at(&self, a: Attempt, now: Instant) -> Vec<AuditEvent> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        if let Some(b) = inner.by_addr.get_mut(&a.ip) {
            if now.duration_since(b.opened) < self.window {
                b.add(a);
                return out;
            }
            let closed = inner.by_addr.remove(&a.ip);
            out.extend(closed.and_then(|b| self.aggregate(b, a.ip, false)));
        }
        if inner.by_addr.len() >= self.max_tracked {
            if let Some(b) = inner.overflow.take() {
                if now.duration_since(b.opened) < self.window {
                    inner.overflow = Some(b);
                } else {
                    out.extend(self.aggregate(b, None, true));
                }
            }
            inner
                .overflow
                .get_or_insert_with(|| Bucket::open(now, a.time))
                .add(a);
            return out;
        }
        inner.by_addr.insert(a.ip, Bucket::open(now, a.time));
        out.push(single(&a));
        out
    }

    /// The aggregate events of every window closed by now (every window, when `all`: at
    /// shutdown), whose buckets are dropped.
    pub fn due(&self, all: bool) -> Vec<AuditEvent> {
        self.due_at(Instant::now(), all)
    }

    fn due_at(&self, now: Instant, all: bool) -> Vec<AuditEvent> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let closed = |b: &Bucket| all || now.duration_since(b.opened) >= self.window;
        let mut out = Vec::new();
        let ips: Vec<Option<IpAddr>> = inner
            .by_addr
            .iter()
            .filter(|(_, b)| closed(b))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in ips {
            if let Some(b) = inner.by_addr.remove(&ip) {
                out.extend(self.aggregate(b, ip, false));
            }
        }
        if inner.overflow.as_ref().is_some_and(closed) {
            if let Some(b) = inner.overflow.take() {
                out.extend(self.aggregate(b, None, true));
            }
        }
        out
    }

    /// Write every open window's aggregate now (at shutdown, before the pipeline closes).
    pub fn drain(&self, pipeline: &Pipeline) {
        for e in self.due(true) {
            pipeline.submit(e);
        }
    }

    /// Addresses with an open window (for tests and bounds).
    pub fn tracked(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_addr
            .len()
    }

    /// The aggregate event of a closed bucket; none when nothing followed the first failure.
    fn aggregate(&self, b: Bucket, ip: Option<IpAddr>, overflow: bool) -> Option<AuditEvent> {
        let last = b.last?;
        let end = time::Duration::try_from(self.window)
            .ok()
            .and_then(|w| b.window_start.checked_add(w))
            .unwrap_or(b.last_seen)
            .min(event::now_millis());
        let mut e = base(&last, if overflow { None } else { ip });
        e.time = event::now_millis();
        let d = &mut e.details;
        d.insert("aggregate".into(), true.into());
        d.insert("count".into(), b.count.into());
        d.insert("window_start".into(), rfc3339(b.window_start).into());
        d.insert("window_end".into(), rfc3339(end.max(b.last_seen)).into());
        d.insert("last_seen".into(), rfc3339(b.last_seen).into());
        d.insert(
            "failures".into(),
            Value::Object(
                b.failures
                    .iter()
                    .map(|(f, n)| (f.as_str().to_string(), Value::from(*n)))
                    .collect(),
            ),
        );
        d.insert(
            "endpoints".into(),
            Value::Object(
                b.endpoints
                    .iter()
                    .map(|(p, n)| (p.clone(), Value::from(*n)))
                    .collect(),
            ),
        );
        if overflow {
            d.insert("overflow".into(), true.into());
        }
        Some(e)
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The event of the failure that opened a window.
fn single(a: &Attempt) -> AuditEvent {
    let mut e = base(a, a.ip);
    let d = &mut e.details;
    d.insert("aggregate".into(), false.into());
    d.insert("count".into(), 1.into());
    d.insert("window_start".into(), rfc3339(a.time).into());
    d.insert("window_end".into(), rfc3339(a.time).into());
    e
}

/// What both kinds of event share, in the shape of the other `audit.query` events.
fn base(a: &Attempt, ip: Option<IpAddr>) -> AuditEvent {
    let mut details = Map::new();
    details.insert("endpoint".into(), a.endpoint.clone().into());
    details.insert("failure".into(), a.failure.as_str().into());
    AuditEvent {
        id: Uuid::now_v7(),
        seq: None,
        time: a.time,
        event_type: "audit.query".to_string(),
        stage: Stage::Completed,
        outcome: Outcome::Failure,
        reason: Some(REASON.to_string()),
        app: None,
        actor: Actor::anonymous(),
        app_conflict: None,
        target: None,
        tokens: Vec::new(),
        source: ClientInfo {
            ip,
            user_agent: a.user_agent.clone(),
        },
        http: HttpInfo {
            method: a.method.clone(),
            path: a.endpoint.clone(),
            route: format!("admin:{}", a.endpoint),
            status: Some(401),
            duration_ms: 0,
            request_id: a.request_id.clone(),
            body_truncated: false,
        },
        details,
        chain: None,
    }
}

/// Write the aggregates of closed windows as they close (checked every quarter window, at most
/// every second), until aborted.
pub fn spawn_flusher(probes: Arc<Probes>, pipeline: Pipeline) -> JoinHandle<()> {
    let tick = (probes.window / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            for e in probes.due(false) {
                pipeline.submit(e);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(ip: &str, failure: Failure) -> Attempt {
        Attempt {
            failure,
            ip: Some(ip.parse().unwrap()),
            user_agent: Some("curl/8".into()),
            method: "GET".into(),
            endpoint: "/v1/events".into(),
            request_id: "r1".into(),
            time: event::now_millis(),
        }
    }

    fn count(events: &[AuditEvent]) -> u64 {
        events
            .iter()
            .map(|e| e.details["count"].as_u64().unwrap())
            .sum()
    }

    #[test]
    fn first_failure_is_written_at_once_and_the_rest_once_the_window_closes() {
        let p = Probes::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let first = p.failed_at(attempt("192.0.2.1", Failure::Missing), t0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].reason.as_deref(), Some(REASON));
        assert_eq!(first[0].outcome, Outcome::Failure);
        assert_eq!(first[0].event_type, "audit.query");
        assert_eq!(first[0].details["failure"], "missing_credential");
        assert_eq!(first[0].details["count"], 1);
        for i in 0..49 {
            let f = if i % 2 == 0 {
                Failure::Invalid
            } else {
                Failure::Malformed
            };
            let t = t0 + Duration::from_millis(i);
            assert!(p.failed_at(attempt("192.0.2.1", f), t).is_empty());
        }
        assert!(p.due_at(t0 + Duration::from_secs(59), false).is_empty());
        let agg = p.due_at(t0 + Duration::from_secs(60), false);
        assert_eq!(agg.len(), 1);
        assert_eq!(count(&first) + count(&agg), 50);
        let d = &agg[0].details;
        assert_eq!(d["aggregate"], true);
        assert_eq!(d["failures"]["invalid_credential"], 25);
        assert_eq!(d["failures"]["malformed_credential"], 24);
        assert_eq!(d["endpoints"]["/v1/events"], 49);
        assert_eq!(agg[0].source.ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(p.tracked(), 0);
        // A single failure has no aggregate.
        p.failed_at(attempt("192.0.2.2", Failure::Missing), t0);
        assert!(p.due_at(t0 + Duration::from_secs(61), false).is_empty());
    }

    #[test]
    fn a_failure_after_the_window_reports_the_old_one_and_opens_a_new_one() {
        let p = Probes::new(Duration::from_secs(1), 10);
        let t0 = Instant::now();
        p.failed_at(attempt("192.0.2.1", Failure::Invalid), t0);
        p.failed_at(attempt("192.0.2.1", Failure::Invalid), t0);
        let out = p.failed_at(
            attempt("192.0.2.1", Failure::Invalid),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].details["aggregate"], true);
        assert_eq!(out[0].details["count"], 1);
        assert_eq!(out[1].details["aggregate"], false);
        let rest = p.due_at(t0, true);
        assert!(
            rest.is_empty(),
            "the new window holds only its first failure"
        );
    }

    #[test]
    fn addresses_are_bounded_and_the_excess_is_reported_as_overflow() {
        let p = Probes::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let mut written = Vec::new();
        for i in 0..10 {
            written.extend(p.failed_at(attempt(&format!("192.0.2.{i}"), Failure::Invalid), t0));
        }
        assert_eq!(written.len(), 3);
        assert_eq!(p.tracked(), 3);
        let rest = p.due_at(t0, true);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].details["overflow"], true);
        assert_eq!(rest[0].details["count"], 7);
        assert_eq!(rest[0].source.ip, None);
        assert_eq!(count(&written) + count(&rest), 10);
    }
}
