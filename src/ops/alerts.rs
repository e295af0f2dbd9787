//! Alert rules, evaluated off the request path: the pipeline offers each event to the alert
//! task through its own bounded tap (full → the copy is dropped and counted), the task matches
//! it against every rule — on each match, or on a threshold of matches of one group (actor, ip,
//! target, app) within a sliding window — and a firing is logged, recorded as an `alert.fired`
//! event through the pipeline, and POSTed to the rule's webhook sinks (signed, retried, failures
//! counted) by tasks of their own, so a slow webhook never holds up evaluation.
//!
//! [`Engine`] is the pure part (events in, firings out; event times, no clock) and is what the
//! unit tests drive. `alert.fired` events never match a rule, so an alert cannot feed itself.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use super::webhook::Webhook;
use crate::event::{
    self, Actor, ActorKind, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target,
};
use crate::pipeline::tap::{self, type_matches, Tap, TapStats};
use crate::pipeline::Pipeline;
use crate::store::TypeFilter;

/// The event type of a firing.
pub const FIRED: &str = "alert.fired";
/// Events waiting for the alert task.
const QUEUE: usize = 10_000;
/// Groups tracked per rule; past it, new groups are not counted until old ones expire.
const MAX_GROUPS: usize = 100_000;
/// Notifications being delivered at once; past it, further ones are dropped and counted.
const MAX_IN_FLIGHT: usize = 64;
/// Longest shutdown waits for notifications still being delivered.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The field a threshold counts separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Actor,
    Ip,
    Target,
    App,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "actor" => Some(GroupBy::Actor),
            "ip" => Some(GroupBy::Ip),
            "target" => Some(GroupBy::Target),
            "app" => Some(GroupBy::App),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Actor => "actor",
            GroupBy::Ip => "ip",
            GroupBy::Target => "target",
            GroupBy::App => "app",
        }
    }

    /// The event's value of this field, if it has one.
    fn of(self, e: &AuditEvent) -> Option<String> {
        match self {
            GroupBy::Actor => e.actor.id.clone(),
            GroupBy::Ip => e.source.ip.map(|ip| ip.to_string()),
            GroupBy::Target => e.target.as_ref().map(|t| format!("{}:{}", t.kind, t.id)),
            GroupBy::App => e.app.as_ref().map(|a| a.value.clone()),
        }
    }
}

/// `threshold:` of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Threshold {
    pub count: u32,
    pub window: Duration,
    /// `None`: every matching event in one group.
    pub group_by: Option<GroupBy>,
}

/// A checked alert rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// Any of these types; any type when empty.
    pub types: Vec<TypeFilter>,
    /// Any of these outcomes; any when empty.
    pub outcomes: Vec<Outcome>,
    /// Any of these apps; any (or none) when empty.
    pub apps: Vec<String>,
    /// Any of these route ids; any when empty.
    pub routes: Vec<String>,
    /// `None`: fire on every match.
    pub threshold: Option<Threshold>,
    /// Names of webhook sinks to notify.
    pub notify: Vec<String>,
}

impl Rule {
    /// Whether `e` counts for this rule.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        e.event_type != FIRED
            && (self.types.is_empty() || self.types.iter().any(|t| type_matches(t, &e.event_type)))
            && (self.outcomes.is_empty() || self.outcomes.contains(&e.outcome))
            && (self.apps.is_empty()
                || e.app.as_ref().is_some_and(|a| self.apps.contains(&a.value)))
            && (self.routes.is_empty() || self.routes.contains(&e.http.route))
    }
}

/// One firing of a rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Firing {
    /// Index of the rule.
    pub rule: usize,
    /// The group's value (for a threshold with `group_by`).
    pub group: Option<String>,
    /// Matching events counted (1 without a threshold).
    pub count: u32,
    /// Event times of the first and last counted event, Unix milliseconds.
    pub first_ms: i64,
    pub last_ms: i64,
    /// The event that completed the firing.
    pub trigger: Arc<AuditEvent>,
}

/// Rule state: per rule, per group, the times of recent matches.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    windows: Vec<HashMap<Option<String>, VecDeque<i64>>>,
    /// Matches not counted because a rule tracked too many groups.
    pub overflow: u64,
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Engine {
        let windows = rules.iter().map(|_| HashMap::new()).collect();
        Engine {
            rules,
            windows,
            overflow: 0,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Count `e` against every rule; the firings it completes. A threshold firing empties its
    /// group's window, so the next firing needs `count` new matches.
    pub fn observe(&mut self, e: &Arc<AuditEvent>) -> Vec<Firing> {
        let now = event::unix_millis(e.time);
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches(e) {
                continue;
            }
            let Some(th) = &rule.threshold else {
                out.push(Firing {
                    rule: i,
                    group: None,
                    count: 1,
                    first_ms: now,
                    last_ms: now,
                    trigger: e.clone(),
                });
                continue;
            };
            let group = match th.group_by {
                Some(by) => match by.of(e) {
                    Some(v) => Some(v),
                    None => continue,
                },
                None => None,
            };
            let window_ms = i64::try_from(th.window.as_millis()).unwrap_or(i64::MAX);
            let groups = &mut self.windows[i];
            if !groups.contains_key(&group) && groups.len() >= MAX_GROUPS {
                groups.retain(|_, times| times.back().is_some_and(|t| now - t < window_ms));
                if groups.len() >= MAX_GROUPS {
                    self.overflow += 1;
                    continue;
                }
            }
            let times = groups.entry(group.clone()).or_default();
            times.push_back(now);
            while times.front().is_some_and(|t| now - t >= window_ms) {
                times.pop_front();
            }
            if times.len() >= th.count as usize {
                let first_ms = times.front().copied().unwrap_or(now);
                let count = times.len() as u32;
                groups.remove(&group);
                out.push(Firing {
                    rule: i,
                    group,
                    count,
                    first_ms,
                    last_ms: now,
                    trigger: e.clone(),
                });
            }
        }
        out
    }
}

/// What the alert task did, for the metrics.
#[derive(Debug)]
pub struct AlertStats {
    /// Its queue: depth, and events dropped because it was full.
    pub tap: Arc<TapStats>,
    /// Firings per rule, in rule order.
    pub fired: Vec<(String, AtomicU64)>,
    /// Per notified sink: notifications delivered and given up.
    pub notified: Vec<(String, AtomicU64, AtomicU64)>,
    /// Notifications dropped because too many were being delivered.
    pub notify_dropped: AtomicU64,
}

/// The running alert task.
pub struct Alerts {
    pub stats: Arc<AlertStats>,
    pub(super) task: JoinHandle<()>,
}

/// The alert tap and its task. `hooks` are the webhook sinks rules may notify, by name; the
/// task runs until `stop` turns true, then evaluates what is queued, waits (briefly) for
/// notifications in flight, and ends.
pub fn start(
    rules: Vec<Rule>,
    hooks: HashMap<String, Webhook>,
    pipeline_slot: Arc<std::sync::OnceLock<Pipeline>>,
    stop: watch::Receiver<bool>,
) -> (Tap, Alerts) {
    // The tap takes only types some rule could match.
    let types = if rules.iter().any(|r| r.types.is_empty()) {
        None
    } else {
        Some(rules.iter().flat_map(|r| r.types.clone()).collect())
    };
    let (tap, rx) = tap::tap("alerts", QUEUE, types);
    let mut notified: Vec<String> = rules.iter().flat_map(|r| r.notify.clone()).collect();
    notified.sort();
    notified.dedup();
    let stats = Arc::new(AlertStats {
        tap: tap.stats().clone(),
        fired: rules
            .iter()
            .map(|r| (r.id.clone(), AtomicU64::new(0)))
            .collect(),
        notified: notified
            .into_iter()
            .map(|n| (n, AtomicU64::new(0), AtomicU64::new(0)))
            .collect(),
        notify_dropped: AtomicU64::new(0),
    });
    let task = tokio::spawn(run(
        Engine::new(rules),
        rx,
        hooks,
        pipeline_slot,
        stats.clone(),
        stop,
    ));
    (tap, Alerts { stats, task })
}

async fn run(
    mut engine: Engine,
    mut rx: mpsc::Receiver<Arc<AuditEvent>>,
    hooks: HashMap<String, Webhook>,
    pipeline: Arc<std::sync::OnceLock<Pipeline>>,
    stats: Arc<AlertStats>,
    mut stop: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut deliveries = JoinSet::new();
    loop {
        let ev = if *stop.borrow() {
            rx.try_recv().ok()
        } else {
            tokio::select! {
                ev = rx.recv() => ev,
                _ = stop.changed() => continue,
            }
        };
        let Some(ev) = ev else { break };
        while deliveries.try_join_next().is_some() {}
        for firing in engine.observe(&ev) {
            let rule = &engine.rules()[firing.rule];
            stats.fired[firing.rule].1.fetch_add(1, Ordering::Relaxed);
            let fired = fired_event(rule, &firing);
            tracing::warn!(
                alert = %rule.id,
                group_by = rule.threshold.as_ref().and_then(|t| t.group_by).map(GroupBy::as_str),
                group = firing.group.as_deref(),
                count = firing.count,
                event_type = %firing.trigger.event_type,
                trigger_event = %firing.trigger.id,
                alert_event = %fired.id,
                "alert fired"
            );
            let body = Bytes::from(notification(rule, &firing, &fired).to_string());
            if let Some(p) = pipeline.get() {
                p.submit(fired);
            }
            for name in &rule.notify {
                let Some(hook) = hooks.get(name).cloned() else {
                    continue;
                };
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    stats.notify_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(alert = %rule.id, sink = %name, "alert notification dropped: too many in flight");
                    continue;
                };
                let (stats, name, body, id) =
                    (stats.clone(), name.clone(), body.clone(), rule.id.clone());
                deliveries.spawn(async move {
                    let _permit = permit;
                    let result = hook.post(body).await;
                    let Some((_, ok, failed)) = stats.notified.iter().find(|(n, _, _)| *n == name)
                    else {
                        return;
                    };
                    match result {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(alert = %id, sink = %name, error = %e, "alert notification failed");
                        }
                    }
                });
            }
        }
    }
    let waited = tokio::time::timeout(SHUTDOWN_WAIT, async {
        while deliveries.join_next().await.is_some() {}
    })
    .await;
    if waited.is_err() {
        tracing::warn!("shutdown: alert notifications still in flight were abandoned");
    }
}

/// The `alert.fired` event of a firing.
pub fn fired_event(rule: &Rule, f: &Firing) -> AuditEvent {
    let trigger = &f.trigger;
    let mut details = Map::new();
    details.insert("alert".into(), rule.id.clone().into());
    details.insert("count".into(), f.count.into());
    details.insert("trigger_event".into(), trigger.id.to_string().into());
    details.insert("trigger_type".into(), trigger.event_type.clone().into());
    details.insert("first_ms".into(), f.first_ms.into());
    details.insert("last_ms".into(), f.last_ms.into());
    let target = match (rule.threshold.as_ref(), &f.group) {
        (Some(th), Some(group)) => {
            let by = th.group_by.map_or("group", GroupBy::as_str);
            details.insert("group_by".into(), by.into());
            details.insert(
                "window_ms".into(),
                u64::try_from(th.window.as_millis())
                    .unwrap_or(u64::MAX)
                    .into(),
            );
            Some(Target {
                kind: by.to_string(),
                id: group.clone(),
                display: None,
                source: "alert".to_string(),
            })
        }
        (Some(th), None) => {
            details.insert(
                "window_ms".into(),
                u64::try_from(th.window.as_millis())
                    .unwrap_or(u64::MAX)
                    .into(),
            );
            trigger.target.clone()
        }
        (None, _) => trigger.target.clone(),
    };
    AuditEvent {
        id: Uuid::now_v7(),
        seq: None,
        time: event::now_millis(),
        event_type: FIRED.to_string(),
        stage: Stage::Completed,
        outcome: Outcome::Success,
        reason: Some(rule.id.clone()),
        app: trigger.app.clone(),
        actor: Actor {
            id: Some("authtrail".to_string()),
            kind: ActorKind::Service,
            display: None,
            verified: true,
            source: Some("alert".to_string()),
        },
        app_conflict: None,
        target,
        tokens: Vec::new(),
        source: ClientInfo {
            ip: trigger.source.ip,
            user_agent: None,
        },
        http: HttpInfo {
            method: String::new(),
            path: String::new(),
            route: format!("alert:{}", rule.id),
            status: None,
            duration_ms: 0,
            request_id: trigger.http.request_id.clone(),
            body_truncated: false,
        },
        details,
        chain: None,
    }
}

/// The webhook body of a firing.
pub fn notification(rule: &Rule, f: &Firing, fired: &AuditEvent) -> Value {
    let th = rule.threshold.as_ref();
    json!({
        "kind": "alert",
        "alert": rule.id,
        "fired_at": event::rfc3339_millis::format(fired.time),
        "event_id": fired.id,
        "count": f.count,
        "group_by": th.and_then(|t| t.group_by).map(GroupBy::as_str),
        "group": f.group,
        "window_ms": th.map(|t| u64::try_from(t.window.as_millis()).unwrap_or(u64::MAX)),
        "first_at": time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(f.first_ms) * 1_000_000)
            .ok()
            .map(event::rfc3339_millis::format),
        "trigger": &*f.trigger,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Attributed;

    fn ev(t: &str, outcome: Outcome, actor: Option<&str>, ms: i64) -> Arc<AuditEvent> {
        let time =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
        let mut actor_ = Actor::anonymous();
        actor_.id = actor.map(str::to_string);
        Arc::new(AuditEvent {
            id: Uuid::now_v7(),
            seq: None,
            time,
            event_type: t.to_string(),
            stage: Stage::Completed,
            outcome,
            reason: None,
            app: Some(Attributed {
                value: "app-a".into(),
                source: "const".into(),
                verified: false,
            }),
            actor: actor_,
            app_conflict: None,
            target: None,
            tokens: Vec::new(),
            source: ClientInfo {
                ip: None,
                user_agent: None,
            },
            http: HttpInfo {
                method: "POST".into(),
                path: "/login".into(),
                route: "login".into(),
                status: Some(401),
                duration_ms: 1,
                request_id: "r".into(),
                body_truncated: false,
            },
            details: Map::new(),
            chain: None,
        })
    }

    fn brute_force() -> Rule {
        Rule {
            id: "brute-force".into(),
            types: vec![TypeFilter::Exact("auth.login".into())],
            outcomes: vec![Outcome::Failure],
            apps: vec![],
            routes: vec![],
            threshold: Some(Threshold {
                count: 3,
                window: Duration::from_secs(60),
                group_by: Some(GroupBy::Actor),
            }),
            notify: vec![],
        }
    }

    #[test]
    fn threshold_fires_per_group_within_the_window() {
        let mut e = Engine::new(vec![brute_force()]);
        let f = Outcome::Failure;
        assert!(e.observe(&ev("auth.login", f, Some("alice"), 0)).is_empty());
        assert!(e
            .observe(&ev("auth.login", f, Some("bob"), 1_000))
            .is_empty());
        assert!(e
            .observe(&ev("auth.login", f, Some("alice"), 2_000))
            .is_empty());
        // A success and another type do not count.
        assert!(e
            .observe(&ev("auth.login", Outcome::Success, Some("alice"), 2_500))
            .is_empty());
        assert!(e
            .observe(&ev("auth.logout", f, Some("alice"), 2_600))
            .is_empty());
        let fired = e.observe(&ev("auth.login", f, Some("alice"), 3_000));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].group.as_deref(), Some("alice"));
        assert_eq!(
            (fired[0].count, fired[0].first_ms, fired[0].last_ms),
            (3, 0, 3_000)
        );
        // The window starts over after a firing.
        assert!(e
            .observe(&ev("auth.login", f, Some("alice"), 4_000))
            .is_empty());
    }

    #[test]
    fn matches_outside_the_window_expire() {
        let mut e = Engine::new(vec![brute_force()]);
        let f = Outcome::Failure;
        e.observe(&ev("auth.login", f, Some("alice"), 0));
        e.observe(&ev("auth.login", f, Some("alice"), 30_000));
        // 60s after the first: it has left the window.
        assert!(e
            .observe(&ev("auth.login", f, Some("alice"), 60_000))
            .is_empty());
        assert_eq!(
            e.observe(&ev("auth.login", f, Some("alice"), 61_000)).len(),
            1
        );
    }

    #[test]
    fn events_without_the_group_field_are_not_counted() {
        let mut e = Engine::new(vec![brute_force()]);
        for i in 0..5 {
            assert!(e
                .observe(&ev("auth.login", Outcome::Failure, None, i))
                .is_empty());
        }
    }

    #[test]
    fn every_match_fires_without_a_threshold_and_prefixes_match() {
        let rule = Rule {
            id: "provider-change".into(),
            types: vec![TypeFilter::Prefix("provider.".into())],
            outcomes: vec![],
            apps: vec!["app-a".into()],
            routes: vec![],
            threshold: None,
            notify: vec![],
        };
        let mut e = Engine::new(vec![rule]);
        assert_eq!(
            e.observe(&ev("provider.add", Outcome::Success, None, 0))
                .len(),
            1
        );
        assert_eq!(
            e.observe(&ev("provider.remove", Outcome::Failure, None, 1))
                .len(),
            1
        );
        assert!(e
            .observe(&ev("providers", Outcome::Success, None, 2))
            .is_empty());
        // Its own events never match.
        assert!(e.observe(&ev(FIRED, Outcome::Success, None, 3)).is_empty());
    }

    #[test]
    fn fired_event_names_rule_group_and_trigger() {
        let rule = brute_force();
        let trigger = ev("auth.login", Outcome::Failure, Some("alice"), 5);
        let f = Firing {
            rule: 0,
            group: Some("alice".into()),
            count: 3,
            first_ms: 1,
            last_ms: 5,
            trigger: trigger.clone(),
        };
        let fired = fired_event(&rule, &f);
        assert_eq!(fired.event_type, FIRED);
        assert_eq!(fired.http.route, "alert:brute-force");
        let t = fired.target.as_ref().unwrap();
        assert_eq!((t.kind.as_str(), t.id.as_str()), ("actor", "alice"));
        assert_eq!(fired.details["trigger_event"], trigger.id.to_string());
        assert_eq!(fired.app.as_ref().unwrap().value, "app-a");
        let body = notification(&rule, &f, &fired);
        assert_eq!(body["alert"], "brute-force");
        assert_eq!(body["group"], "alice");
        assert_eq!(body["trigger"]["id"], trigger.id.to_string());
    }
}
