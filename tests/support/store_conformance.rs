//! The `EventStore` conformance suite: what every backend must do, written once against
//! `Arc<dyn EventStore>`. A backend's test file opens a fresh, empty store per test and expands
//! [`store_conformance_tests!`] (see tests/store_sqlite.rs).
#![allow(dead_code)] // each test binary uses its own part of the support module

use std::collections::HashSet;
use std::sync::Arc;

use authtrail::event::{
    Actor, ActorKind, Attributed, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target,
};
use authtrail::store::{EventStore, Query, TypeFilter};
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Expands to one `#[tokio::test]` per conformance check. `$open` is an async expression giving
/// `(Arc<dyn EventStore>, guard)` for a fresh, empty store; the guard (a temp dir, a schema) lives
/// until the test ends.
#[allow(unused_macros)]
macro_rules! store_conformance_tests {
    ($open:expr) => {
        $crate::support::store_conformance::store_conformance_tests!(@tests $open;
            seq_is_strictly_increasing_across_batches,
            insert_is_idempotent_on_id,
            duplicate_ids_within_one_batch_are_stored_once,
            event_reads_back_as_written,
            minimal_event_reads_back_as_written,
            stored_seq_is_the_stores_not_the_events,
            get_unknown_id_is_none,
            filter_app,
            filter_actor,
            filter_target,
            filter_type_exact,
            filter_type_prefix,
            filter_outcome,
            filter_route,
            filter_request_id,
            filter_since_is_inclusive,
            filter_until_is_exclusive,
            filter_since_and_until_round_sub_millisecond_bounds,
            filter_apps_scope,
            filter_empty_apps_scope_matches_nothing,
            filters_combine,
            order_is_newest_first_by_default,
            order_ascending,
            cursor_walk_descending_returns_every_event_once,
            cursor_walk_ascending_returns_every_event_once,
            cursor_walk_with_filter_returns_every_match_once,
            limit_takes_the_first_in_order,
            limit_zero_means_100,
            limit_is_capped_at_10000,
            ping_succeeds,
        );
    };
    (@tests $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $open.await;
                $crate::support::store_conformance::$name(store).await;
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use store_conformance_tests;

/// 2025-01-01 12:00:00 UTC, the fixture's first event.
pub const T0: OffsetDateTime = datetime!(2025-01-01 12:00:00.000 UTC);

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

/// An event with the fields queries filter on set from the arguments and the rest plausible.
/// `label` becomes the request id, so assertions can name events.
pub fn sample_event(
    label: &str,
    event_type: &str,
    app: Option<&str>,
    actor: Option<&str>,
    outcome: Outcome,
    time: OffsetDateTime,
) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        seq: None,
        time,
        event_type: event_type.to_string(),
        stage: Stage::Completed,
        outcome,
        reason: (outcome == Outcome::Failure).then(|| "invalid_credentials".to_string()),
        app: app.map(|a| Attributed {
            value: a.to_string(),
            source: "header:x-app-id".to_string(),
            verified: false,
        }),
        actor: match actor {
            Some(id) => Actor {
                id: Some(id.to_string()),
                kind: ActorKind::User,
                display: None,
                verified: true,
                source: Some("jwt:sub".to_string()),
            },
            None => Actor::anonymous(),
        },
        app_conflict: None,
        target: None,
        tokens: Vec::new(),
        source: ClientInfo {
            ip: Some("192.0.2.7".parse().unwrap()),
            user_agent: Some("test-agent/1.0".to_string()),
        },
        http: HttpInfo {
            method: "POST".to_string(),
            path: "/login".to_string(),
            route: "login".to_string(),
            status: Some(200),
            duration_ms: 3,
            request_id: label.to_string(),
            body_truncated: false,
        },
        details: Default::default(),
    }
}

/// label, type, app, actor, outcome, route, target (kind, id).
type FixtureRow = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Outcome,
    &'static str,
    Option<(&'static str, &'static str)>,
);

/// One second apart from T0, inserted in this order, so seq order is this order.
#[rustfmt::skip]
const FIXTURE: [FixtureRow; 8] = [
    ("login-alice",      "auth.login",         Some("a1"), Some("alice"),  Outcome::Success, "login",      Some(("user", "alice"))),
    ("login-bob-fail",   "auth.login",         Some("a1"), Some("bob"),    Outcome::Failure, "login",      None),
    ("mfa-alice-fail",   "auth.mfa.verify",    Some("a1"), Some("alice"),  Outcome::Failure, "mfa",        None),
    ("authx-alice",      "authx.foo",          Some("a2"), Some("alice"),  Outcome::Success, "custom",     None),
    ("issue-carol",      "token.issue",        Some("a2"), Some("carol"),  Outcome::Success, "token",      Some(("token", "tk1"))),
    ("deactivate-bob",   "account.deactivate", Some("a1"), Some("admin1"), Outcome::Success, "deactivate", Some(("user", "bob"))),
    ("login-anon-error", "auth.login",         None,       None,           Outcome::Error,   "login",      None),
    ("auth-bare",        "auth",               Some("a3"), Some("dave"),   Outcome::Unknown, "login",      None),
];

fn with_target(mut e: AuditEvent, kind: &str, id: &str) -> AuditEvent {
    e.target = Some(Target {
        kind: kind.to_string(),
        id: id.to_string(),
        display: None,
        source: "path:id".to_string(),
    });
    e
}

/// The eight [`FIXTURE`] events.
pub fn fixture() -> Vec<AuditEvent> {
    FIXTURE
        .iter()
        .zip(0..)
        .map(|(&(label, ty, app, actor, outcome, route, target), i)| {
            let mut e = sample_event(label, ty, app, actor, outcome, T0 + secs(i));
            e.http.route = route.to_string();
            match target {
                Some((kind, id)) => with_target(e, kind, id),
                None => e,
            }
        })
        .collect()
}

async fn seeded(store: &Arc<dyn EventStore>) -> Vec<AuditEvent> {
    let events = fixture();
    let n = store.insert_batch(&events).await.expect("insert fixture");
    assert_eq!(n, events.len() as u64);
    events
}

/// The labels (request ids) of what `q` returns, in returned order.
async fn labels(store: &Arc<dyn EventStore>, q: Query) -> Vec<String> {
    store
        .query(&q)
        .await
        .expect("query")
        .into_iter()
        .map(|e| e.http.request_id)
        .collect()
}

/// Labels as written, newest first (the default order).
fn newest_first(labels: &[&str]) -> Vec<String> {
    labels.iter().rev().map(|s| s.to_string()).collect()
}

fn all(ascending: bool) -> Query {
    Query {
        ascending,
        limit: 10_000,
        ..Query::default()
    }
}

pub fn many(n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            let app = ["a1", "a2", "a3"][i % 3];
            sample_event(
                &format!("e{i}"),
                "auth.login",
                Some(app),
                Some("user"),
                Outcome::Success,
                T0 + Duration::milliseconds(i as i64),
            )
        })
        .collect()
}

pub async fn seq_is_strictly_increasing_across_batches(store: Arc<dyn EventStore>) {
    let batches = [many(1), many(70), many(5), many(64)];
    let mut written = Vec::new();
    for batch in &batches {
        assert_eq!(store.insert_batch(batch).await.unwrap(), batch.len() as u64);
        written.extend(batch.iter().map(|e| e.id));
    }
    let read = store.query(&all(true)).await.unwrap();
    let ids: Vec<Uuid> = read.iter().map(|e| e.id).collect();
    assert_eq!(ids, written, "ascending seq order is insertion order");
    let seqs: Vec<i64> = read.iter().map(|e| e.seq.expect("seq filled in")).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq strictly increasing: {seqs:?}"
    );
}

pub async fn insert_is_idempotent_on_id(store: Arc<dyn EventStore>) {
    let e = sample_event(
        "once",
        "auth.login",
        Some("a1"),
        Some("alice"),
        Outcome::Success,
        T0,
    );
    let f = sample_event(
        "other",
        "auth.login",
        Some("a1"),
        Some("alice"),
        Outcome::Success,
        T0,
    );
    assert_eq!(
        store.insert_batch(std::slice::from_ref(&e)).await.unwrap(),
        1
    );
    let first = store.get(e.id).await.unwrap().unwrap();
    assert_eq!(
        store.insert_batch(std::slice::from_ref(&e)).await.unwrap(),
        0
    );
    assert_eq!(store.insert_batch(&[e.clone(), f]).await.unwrap(), 1);
    assert_eq!(labels(&store, all(true)).await, ["once", "other"]);
    assert_eq!(store.get(e.id).await.unwrap().unwrap().seq, first.seq);
}

pub async fn duplicate_ids_within_one_batch_are_stored_once(store: Arc<dyn EventStore>) {
    let e = sample_event("twice", "auth.login", None, None, Outcome::Success, T0);
    assert_eq!(store.insert_batch(&[e.clone(), e]).await.unwrap(), 1);
    assert_eq!(labels(&store, all(true)).await, ["twice"]);
}

pub async fn event_reads_back_as_written(store: Arc<dyn EventStore>) {
    let mut e = with_target(
        sample_event(
            "full",
            "account.deactivate",
            Some("a1"),
            Some("admin1"),
            Outcome::Failure,
            T0,
        ),
        "user",
        "bob",
    );
    e.stage = Stage::Attempt;
    e.reason = Some("forbidden".to_string());
    e.app.as_mut().unwrap().verified = true;
    e.actor.kind = ActorKind::Admin;
    e.actor.display = Some("Ada Admin".to_string());
    e.target.as_mut().unwrap().display = Some("Bob ✓".to_string());
    e.source.ip = Some("2001:db8::1".parse().unwrap());
    e.http.status = None;
    e.http.body_truncated = true;
    e.details
        .insert("org".to_string(), json!({"id": 42, "tags": ["a", "b"]}));
    e.details.insert(
        "note".to_string(),
        json!("quote ' and \" and \\ and ünïcødé"),
    );
    store.insert_batch(std::slice::from_ref(&e)).await.unwrap();

    let got = store.get(e.id).await.unwrap().expect("stored");
    assert!(got.seq.is_some());
    let listed = store.query(&all(false)).await.unwrap();
    assert_eq!(listed, vec![got.clone()]);
    assert_eq!(AuditEvent { seq: None, ..got }, e);
}

pub async fn minimal_event_reads_back_as_written(store: Arc<dyn EventStore>) {
    let mut e = sample_event("minimal", "auth.login", None, None, Outcome::Unknown, T0);
    e.source = ClientInfo::default();
    e.http = HttpInfo::default();
    store.insert_batch(std::slice::from_ref(&e)).await.unwrap();
    let got = store.get(e.id).await.unwrap().expect("stored");
    assert_eq!(AuditEvent { seq: None, ..got }, e);
}

pub async fn stored_seq_is_the_stores_not_the_events(store: Arc<dyn EventStore>) {
    let mut e = sample_event("preset", "auth.login", None, None, Outcome::Success, T0);
    e.seq = Some(1_000_000);
    store.insert_batch(std::slice::from_ref(&e)).await.unwrap();
    let got = store.get(e.id).await.unwrap().unwrap();
    assert_ne!(got.seq, Some(1_000_000));
    assert_eq!(
        AuditEvent { seq: None, ..got },
        AuditEvent { seq: None, ..e }
    );
}

pub async fn get_unknown_id_is_none(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    assert_eq!(store.get(Uuid::now_v7()).await.unwrap(), None);
}

pub async fn filter_app(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        app: Some("a2".into()),
        ..Query::default()
    };
    assert_eq!(
        labels(&store, q).await,
        newest_first(&["authx-alice", "issue-carol"])
    );
}

pub async fn filter_actor(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        actor: Some("alice".into()),
        ..Query::default()
    };
    assert_eq!(
        labels(&store, q).await,
        newest_first(&["login-alice", "mfa-alice-fail", "authx-alice"])
    );
}

pub async fn filter_target(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        target: Some("bob".into()),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["deactivate-bob"]);
}

pub async fn filter_type_exact(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        event_type: Some(TypeFilter::parse("auth.login")),
        ..Query::default()
    };
    assert_eq!(
        labels(&store, q).await,
        newest_first(&["login-alice", "login-bob-fail", "login-anon-error"])
    );
    let q = Query {
        event_type: Some(TypeFilter::parse("auth")),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["auth-bare"]);
}

pub async fn filter_type_prefix(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    // `auth.*` matches below `auth.` only: not `authx.foo`, not the bare `auth`.
    let q = Query {
        event_type: Some(TypeFilter::parse("auth.*")),
        ..Query::default()
    };
    assert_eq!(
        labels(&store, q).await,
        newest_first(&[
            "login-alice",
            "login-bob-fail",
            "mfa-alice-fail",
            "login-anon-error"
        ])
    );
    let q = Query {
        event_type: Some(TypeFilter::parse("auth.mfa.*")),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["mfa-alice-fail"]);
    let q = Query {
        event_type: Some(TypeFilter::parse("zzz.*")),
        ..Query::default()
    };
    assert!(labels(&store, q).await.is_empty());
}

pub async fn filter_outcome(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        outcome: Some(Outcome::Failure),
        ..Query::default()
    };
    assert_eq!(
        labels(&store, q).await,
        newest_first(&["login-bob-fail", "mfa-alice-fail"])
    );
    let q = Query {
        outcome: Some(Outcome::Error),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["login-anon-error"]);
}

pub async fn filter_route(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        route: Some("mfa".into()),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["mfa-alice-fail"]);
}

pub async fn filter_request_id(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        request_id: Some("issue-carol".into()),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["issue-carol"]);
}

pub async fn filter_since_is_inclusive(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        since: Some(T0 + secs(6)),
        ..Query::default()
    };
    assert_eq!(
        labels(&store, q).await,
        newest_first(&["login-anon-error", "auth-bare"])
    );
}

pub async fn filter_until_is_exclusive(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        until: Some(T0 + secs(1)),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["login-alice"]);
    let q = Query {
        since: Some(T0 + secs(1)),
        until: Some(T0 + secs(3)),
        ..Query::default()
    };
    assert_eq!(
        labels(&store, q).await,
        newest_first(&["login-bob-fail", "mfa-alice-fail"])
    );
}

pub async fn filter_since_and_until_round_sub_millisecond_bounds(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    // Event times are whole milliseconds: an event at T0+1s is before T0+1s+1µs.
    let q = Query {
        since: Some(T0 + secs(1) + Duration::microseconds(1)),
        until: Some(T0 + secs(3) + Duration::microseconds(1)),
        ..Query::default()
    };
    assert_eq!(
        labels(&store, q).await,
        newest_first(&["mfa-alice-fail", "authx-alice"])
    );
}

pub async fn filter_apps_scope(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        apps_scope: Some(vec!["a2".into(), "a3".into()]),
        ..Query::default()
    };
    assert_eq!(
        labels(&store, q).await,
        newest_first(&["authx-alice", "issue-carol", "auth-bare"])
    );
    // The scope wins over an app filter outside it.
    let q = Query {
        app: Some("a1".into()),
        apps_scope: Some(vec!["a2".into()]),
        ..Query::default()
    };
    assert!(labels(&store, q).await.is_empty());
}

pub async fn filter_empty_apps_scope_matches_nothing(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        apps_scope: Some(vec![]),
        ..Query::default()
    };
    assert!(labels(&store, q).await.is_empty());
}

pub async fn filters_combine(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        app: Some("a1".into()),
        actor: Some("alice".into()),
        since: Some(T0 + secs(1)),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["mfa-alice-fail"]);

    let q = Query {
        event_type: Some(TypeFilter::parse("auth.*")),
        outcome: Some(Outcome::Failure),
        route: Some("login".into()),
        apps_scope: Some(vec!["a1".into()]),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["login-bob-fail"]);

    let q = Query {
        app: Some("a1".into()),
        target: Some("bob".into()),
        event_type: Some(TypeFilter::parse("account.deactivate")),
        outcome: Some(Outcome::Success),
        request_id: Some("deactivate-bob".into()),
        until: Some(T0 + secs(6)),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["deactivate-bob"]);
}

pub async fn order_is_newest_first_by_default(store: Arc<dyn EventStore>) {
    let events = seeded(&store).await;
    let labels_written: Vec<&str> = events.iter().map(|e| e.http.request_id.as_str()).collect();
    assert_eq!(
        labels(&store, Query::default()).await,
        newest_first(&labels_written)
    );
}

pub async fn order_ascending(store: Arc<dyn EventStore>) {
    let events = seeded(&store).await;
    let labels_written: Vec<String> = events.iter().map(|e| e.http.request_id.clone()).collect();
    assert_eq!(labels(&store, all(true)).await, labels_written);
}

/// Page through `base` with `limit`-sized pages, following the seq cursor.
async fn walk(store: &Arc<dyn EventStore>, base: Query, limit: u32) -> Vec<AuditEvent> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let q = Query {
            limit,
            after_seq: if base.ascending { cursor } else { None },
            before_seq: if base.ascending { None } else { cursor },
            ..base.clone()
        };
        let page = store.query(&q).await.unwrap();
        assert!(page.len() <= limit as usize);
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        seen.extend(page);
    }
    seen
}

fn assert_each_once(seen: &[AuditEvent], expected: &[AuditEvent], ascending: bool) {
    let ids: Vec<Uuid> = seen.iter().map(|e| e.id).collect();
    let mut want: Vec<Uuid> = expected.iter().map(|e| e.id).collect();
    if !ascending {
        want.reverse();
    }
    assert_eq!(ids, want);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
}

pub async fn cursor_walk_descending_returns_every_event_once(store: Arc<dyn EventStore>) {
    let events = many(25);
    store.insert_batch(&events[..10]).await.unwrap();
    store.insert_batch(&events[10..]).await.unwrap();
    let seen = walk(&store, Query::default(), 4).await;
    assert_each_once(&seen, &events, false);
}

pub async fn cursor_walk_ascending_returns_every_event_once(store: Arc<dyn EventStore>) {
    let events = many(25);
    store.insert_batch(&events).await.unwrap();
    let base = Query {
        ascending: true,
        ..Query::default()
    };
    let seen = walk(&store, base, 4).await;
    assert_each_once(&seen, &events, true);
    // A cursor from the middle resumes after it.
    let q = Query {
        ascending: true,
        after_seq: seen[19].seq,
        limit: 100,
        ..Query::default()
    };
    assert_each_once(&store.query(&q).await.unwrap(), &events[20..], true);
}

pub async fn cursor_walk_with_filter_returns_every_match_once(store: Arc<dyn EventStore>) {
    let events = many(40);
    store.insert_batch(&events).await.unwrap();
    let a2: Vec<AuditEvent> = events
        .iter()
        .filter(|e| e.app.as_ref().unwrap().value == "a2")
        .cloned()
        .collect();
    for ascending in [false, true] {
        let base = Query {
            app: Some("a2".into()),
            since: Some(T0),
            ascending,
            ..Query::default()
        };
        let seen = walk(&store, base, 3).await;
        assert_each_once(&seen, &a2, ascending);
    }
}

pub async fn limit_takes_the_first_in_order(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let q = Query {
        limit: 2,
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["auth-bare", "login-anon-error"]);
    let q = Query {
        limit: 2,
        ascending: true,
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["login-alice", "login-bob-fail"]);
}

pub async fn limit_zero_means_100(store: Arc<dyn EventStore>) {
    store.insert_batch(&many(120)).await.unwrap();
    assert_eq!(store.query(&Query::default()).await.unwrap().len(), 100);
}

pub async fn limit_is_capped_at_10000(store: Arc<dyn EventStore>) {
    let events = many(10_001);
    for chunk in events.chunks(1000) {
        store.insert_batch(chunk).await.unwrap();
    }
    let q = Query {
        limit: u32::MAX,
        ..Query::default()
    };
    let got = store.query(&q).await.unwrap();
    assert_eq!(got.len(), 10_000);
    assert_eq!(got[0].id, events[10_000].id);
}

pub async fn ping_succeeds(store: Arc<dyn EventStore>) {
    store.ping().await.unwrap();
}
