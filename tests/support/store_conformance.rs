//! The `EventStore` conformance suite: what every backend must do, written once against
//! `Arc<dyn EventStore>`. A backend's test file opens a fresh, empty store per test and expands
//! [`store_conformance_tests!`] (see tests/store_sqlite.rs).
#![allow(dead_code)] // each test binary uses its own part of the support module

use std::collections::HashSet;
use std::sync::Arc;

use authtrail::event::{
    Actor, ActorKind, Attributed, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target,
};
use authtrail::store::{EventStore, Exclude, Query, StatsBy, TypeFilter};
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::fixtures::AppendFixtures;

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
            append_links_each_event_to_the_one_before,
            append_skips_stored_ids_without_leaving_a_hole,
            chains_are_per_instance_and_seq_is_shared,
            append_rejects_an_invalid_instance_id,
            checkpoint_covers_only_new_links,
            checkpoints_are_numbered_linked_and_signed_when_idle,
            verify_passes_on_an_untouched_trail,
            verify_names_a_checkpoint_signed_by_an_untrusted_key,
            purge_links_keeps_verify_passing,
            concurrent_appends_never_collide,
            filter_token_by_fingerprint_or_jti,
            filter_ip_and_search,
            stats_count_every_match_once,
            filter_reason_and_app_conflict,
            exclusions_leave_out_each_field,
            exclusions_keep_pages_full_and_the_cursor_exact,
            stats_with_exclusions_count_what_the_pages_list,
            stats_by_sum_the_columns_left_out,
        );
    };
    (@tests $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                use $crate::support::store_conformance::Opened as _;
                let Some((store, _guard)) = $open.await.opened() else {
                    return;
                };
                $crate::support::store_conformance::$name(store).await;
            }
        )*
    };
}

/// What a backend's `$open` gives: a store and its guard, or `None` when the backend is not
/// available here (the test then returns, having said why).
pub trait Opened {
    type Guard;
    fn opened(self) -> Option<(Arc<dyn EventStore>, Self::Guard)>;
}

impl<G> Opened for (Arc<dyn EventStore>, G) {
    type Guard = G;
    fn opened(self) -> Option<(Arc<dyn EventStore>, G)> {
        Some(self)
    }
}

impl<G> Opened for Option<(Arc<dyn EventStore>, G)> {
    type Guard = G;
    fn opened(self) -> Option<(Arc<dyn EventStore>, G)> {
        self
    }
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
        chain: None,
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
    let n = store
        .append_fixtures(&events)
        .await
        .expect("insert fixture");
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
        assert_eq!(
            store.append_fixtures(batch).await.unwrap(),
            batch.len() as u64
        );
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
        store
            .append_fixtures(std::slice::from_ref(&e))
            .await
            .unwrap(),
        1
    );
    let first = store.get(e.id).await.unwrap().unwrap();
    assert_eq!(
        store
            .append_fixtures(std::slice::from_ref(&e))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.append_fixtures(&[e.clone(), f]).await.unwrap(), 1);
    assert_eq!(labels(&store, all(true)).await, ["once", "other"]);
    assert_eq!(store.get(e.id).await.unwrap().unwrap().seq, first.seq);
}

pub async fn duplicate_ids_within_one_batch_are_stored_once(store: Arc<dyn EventStore>) {
    let e = sample_event("twice", "auth.login", None, None, Outcome::Success, T0);
    assert_eq!(store.append_fixtures(&[e.clone(), e]).await.unwrap(), 1);
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
    store
        .append_fixtures(std::slice::from_ref(&e))
        .await
        .unwrap();

    let got = store.get(e.id).await.unwrap().expect("stored");
    assert!(got.seq.is_some());
    let listed = store.query(&all(false)).await.unwrap();
    assert_eq!(listed, vec![got.clone()]);
    assert!(got.chain.is_some(), "appended with its link");
    assert_eq!(
        AuditEvent {
            seq: None,
            chain: None,
            ..got
        },
        e
    );
}

pub async fn minimal_event_reads_back_as_written(store: Arc<dyn EventStore>) {
    let mut e = sample_event("minimal", "auth.login", None, None, Outcome::Unknown, T0);
    e.source = ClientInfo::default();
    e.http = HttpInfo::default();
    store
        .append_fixtures(std::slice::from_ref(&e))
        .await
        .unwrap();
    let got = store.get(e.id).await.unwrap().expect("stored");
    assert_eq!(
        AuditEvent {
            seq: None,
            chain: None,
            ..got
        },
        e
    );
}

pub async fn stored_seq_is_the_stores_not_the_events(store: Arc<dyn EventStore>) {
    let mut e = sample_event("preset", "auth.login", None, None, Outcome::Success, T0);
    e.seq = Some(1_000_000);
    store
        .append_fixtures(std::slice::from_ref(&e))
        .await
        .unwrap();
    let got = store.get(e.id).await.unwrap().unwrap();
    assert_ne!(got.seq, Some(1_000_000));
    assert_eq!(
        AuditEvent {
            seq: None,
            chain: None,
            ..got
        },
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
    store.append_fixtures(&events[..10]).await.unwrap();
    store.append_fixtures(&events[10..]).await.unwrap();
    let seen = walk(&store, Query::default(), 4).await;
    assert_each_once(&seen, &events, false);
}

pub async fn cursor_walk_ascending_returns_every_event_once(store: Arc<dyn EventStore>) {
    let events = many(25);
    store.append_fixtures(&events).await.unwrap();
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
    store.append_fixtures(&events).await.unwrap();
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
    store.append_fixtures(&many(120)).await.unwrap();
    assert_eq!(store.query(&Query::default()).await.unwrap().len(), 100);
}

pub async fn limit_is_capped_at_10000(store: Arc<dyn EventStore>) {
    let events = many(10_001);
    for chunk in events.chunks(1000) {
        store.append_fixtures(chunk).await.unwrap();
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

// ---- hash chain, checkpoints, purge ----

use authtrail::store::chain::{canonical_event, link_hash, GENESIS};
use authtrail::store::verify::{self, ProblemKind};
use authtrail::store::{CheckpointKind, PurgeLink, Signer};

/// A fixed test key (never a production one).
pub fn test_signer() -> Signer {
    Signer::from_hex_seed(&"42".repeat(32)).unwrap()
}

pub fn trusted() -> verify::Options {
    verify::Options {
        trusted_keys: vec![test_signer().public_key_hex().to_string()],
        ..verify::Options::default()
    }
}

/// Verify with the test key; panics with the problems when `want_ok` disagrees.
pub async fn verified(store: &Arc<dyn EventStore>) -> verify::Report {
    verify::verify(store.as_ref(), &trusted())
        .await
        .expect("verify runs")
}

pub async fn append_links_each_event_to_the_one_before(store: Arc<dyn EventStore>) {
    let events = many(5);
    let a = store.append("inst-a", &events[..3], false).await.unwrap();
    assert_eq!(a.inserted, 3);
    assert_eq!(a.head.as_ref().unwrap().n, 3);
    let b = store.append("inst-a", &events[3..], true).await.unwrap();
    assert_eq!((b.inserted, b.head.as_ref().unwrap().n), (2, 5));

    let read = store.query(&all(true)).await.unwrap();
    let mut prev = GENESIS.to_string();
    for (i, (got, sent)) in read.iter().zip(&events).enumerate() {
        assert_eq!(got.id, sent.id);
        let link = got.chain.as_ref().expect("linked");
        assert_eq!(link.instance, "inst-a");
        assert_eq!(link.n, i as i64 + 1);
        assert_eq!(link.prev_hash, prev);
        let canonical = canonical_event(got).unwrap();
        assert_eq!(link.hash, link_hash("inst-a", link.n, &prev, &canonical));
        assert_eq!(
            AuditEvent {
                seq: None,
                chain: None,
                ..got.clone()
            },
            *sent
        );
        prev = link.hash.clone();
    }
    assert_eq!(b.head.unwrap().hash, prev);
    let report = verified(&store).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.chains, report.events), (1, 5));
}

pub async fn append_skips_stored_ids_without_leaving_a_hole(store: Arc<dyn EventStore>) {
    let events = many(4);
    store.append("i", &events[..2], false).await.unwrap();
    // A replay of a batch that did commit, with new events behind it and a repeat inside it.
    let again = [
        events[1].clone(),
        events[2].clone(),
        events[2].clone(),
        events[3].clone(),
    ];
    let a = store.append("i", &again, false).await.unwrap();
    assert_eq!((a.inserted, a.head.unwrap().n), (2, 4));
    let ns: Vec<i64> = store
        .query(&all(true))
        .await
        .unwrap()
        .iter()
        .map(|e| e.chain.as_ref().unwrap().n)
        .collect();
    assert_eq!(ns, [1, 2, 3, 4]);
    assert!(verified(&store).await.ok());
    // Nothing new: no insert, the head is unchanged.
    let none = store.append("i", &events, false).await.unwrap();
    assert_eq!((none.inserted, none.head.unwrap().n), (0, 4));
}

pub async fn chains_are_per_instance_and_seq_is_shared(store: Arc<dyn EventStore>) {
    let events = many(6);
    store.append("a", &events[0..2], false).await.unwrap();
    store.append("b", &events[2..4], false).await.unwrap();
    store.append("a", &events[4..6], false).await.unwrap();
    let read = store.query(&all(true)).await.unwrap();
    let links: Vec<(String, i64)> = read
        .iter()
        .map(|e| {
            let c = e.chain.as_ref().unwrap();
            (c.instance.clone(), c.n)
        })
        .collect();
    let want = [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("a", 3), ("a", 4)];
    assert_eq!(
        links,
        want.iter()
            .map(|(i, n)| (i.to_string(), *n))
            .collect::<Vec<_>>()
    );
    let mut chains = store.chains().await.unwrap();
    chains.sort();
    assert_eq!(chains, ["a", "b"]);
    assert!(verified(&store).await.ok());
}

pub async fn append_rejects_an_invalid_instance_id(store: Arc<dyn EventStore>) {
    let err = store.append("bad id", &many(1), false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid chain instance id \"bad id\": use 1-64 characters of A-Z a-z 0-9 . _ : -"
    );
}

pub async fn checkpoint_covers_only_new_links(store: Arc<dyn EventStore>) {
    let signer = test_signer();
    assert!(store
        .checkpoint("c", CheckpointKind::Periodic, &signer)
        .await
        .unwrap()
        .is_none());
    let events = many(5);
    store.append("c", &events[..3], false).await.unwrap();
    let cp = store
        .checkpoint("c", CheckpointKind::Periodic, &signer)
        .await
        .unwrap()
        .expect("new links");
    assert_eq!((cp.from_n, cp.to_n, cp.count), (0, 3, 3));
    assert_eq!(cp.head_id, events[2].id.to_string());
    assert_eq!(
        cp.first_time_ms,
        Some(authtrail::event::unix_millis(events[0].time))
    );
    assert_eq!(
        cp.last_time_ms,
        Some(authtrail::event::unix_millis(events[2].time))
    );
    assert!(cp.signature_valid());
    assert!(store
        .checkpoint("c", CheckpointKind::Periodic, &signer)
        .await
        .unwrap()
        .is_none());
    store.append("c", &events[3..], false).await.unwrap();
    let cp = store
        .checkpoint("c", CheckpointKind::Shutdown, &signer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((cp.from_n, cp.to_n, cp.count), (3, 5, 2));
    assert_eq!(store.checkpoints().await.unwrap().len(), 2);
}

/// Heartbeat and shutdown checkpoints are written over an unchanged head (and an empty chain);
/// every checkpoint of a chain, whatever its kind, is numbered and linked to the one before.
pub async fn checkpoints_are_numbered_linked_and_signed_when_idle(store: Arc<dyn EventStore>) {
    let signer = test_signer();
    let empty = store
        .checkpoint("i", CheckpointKind::Heartbeat, &signer)
        .await
        .unwrap()
        .expect("a heartbeat over an empty chain");
    assert_eq!(
        (empty.to_n, empty.count, empty.checkpoint_n),
        (0, 0, Some(1))
    );
    assert_eq!(empty.prev_checkpoint, None);
    let events = many(3);
    store.append("i", &events, false).await.unwrap();
    let periodic = store
        .checkpoint("i", CheckpointKind::Periodic, &signer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((periodic.from_n, periodic.to_n, periodic.count), (0, 3, 3));
    assert_eq!(periodic.checkpoint_n, Some(2));
    assert_eq!(periodic.prev_checkpoint, Some(empty.digest()));
    let heartbeat = store
        .checkpoint("i", CheckpointKind::Heartbeat, &signer)
        .await
        .unwrap()
        .expect("a heartbeat over an unchanged head");
    assert_eq!(
        (heartbeat.from_n, heartbeat.to_n, heartbeat.count),
        (3, 3, 0)
    );
    assert_eq!(heartbeat.head_hash, periodic.head_hash);
    assert_eq!(heartbeat.checkpoint_n, Some(3));
    assert_eq!(heartbeat.prev_checkpoint, Some(periodic.digest()));
    assert!(heartbeat.signature_valid());
    let shutdown = store
        .checkpoint("i", CheckpointKind::Shutdown, &signer)
        .await
        .unwrap()
        .expect("a shutdown checkpoint over an unchanged head");
    assert_eq!(shutdown.checkpoint_n, Some(4));
    // Numbering is per chain.
    store.append("j", &many(1), false).await.unwrap();
    let other = store
        .checkpoint("j", CheckpointKind::Periodic, &signer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.checkpoint_n, Some(1));
    // What the store returns is what was signed.
    let stored: Vec<authtrail::store::Checkpoint> = store
        .checkpoints()
        .await
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_str(body).unwrap())
        .collect();
    assert!(stored.contains(&heartbeat) && stored.contains(&empty));
    let report = verified(&store).await;
    assert!(report.ok(), "{:?}", report.problems);
    // Fresh checkpoints pass an age limit; the same trail an hour later does not.
    let fresh = verify::Options {
        max_checkpoint_age: Some(std::time::Duration::from_secs(60)),
        ..trusted()
    };
    let r = verify::verify(store.as_ref(), &fresh).await.unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    let later = verify::Options {
        now: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
        ..fresh
    };
    let r = verify::verify(store.as_ref(), &later).await.unwrap();
    assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
    assert!(r
        .problems
        .iter()
        .all(|p| p.kind == ProblemKind::Stale && p.message.contains("is stale")));
}

pub async fn verify_passes_on_an_untouched_trail(store: Arc<dyn EventStore>) {
    let signer = test_signer();
    let events = many(30);
    for chunk in events.chunks(7) {
        store.append("v", chunk, false).await.unwrap();
        store
            .checkpoint("v", CheckpointKind::Periodic, &signer)
            .await
            .unwrap();
    }
    store.append("w", &many(3), true).await.unwrap();
    let report = verified(&store).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        (report.chains, report.events, report.checkpoints),
        (2, 33, 5)
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // `since` starts at a checkpoint and still passes.
    let since = verify::Options {
        since: Some(events[20].time),
        ..trusted()
    };
    let r = verify::verify(store.as_ref(), &since).await.unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert!(r.events < 33);
}

pub async fn verify_names_a_checkpoint_signed_by_an_untrusted_key(store: Arc<dyn EventStore>) {
    store.append("k", &many(2), false).await.unwrap();
    let (_, other) = Signer::generate().unwrap();
    store
        .checkpoint("k", CheckpointKind::Periodic, &other)
        .await
        .unwrap();
    let report = verified(&store).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].kind, ProblemKind::Checkpoint);
    assert!(report.problems[0]
        .message
        .contains("is signed by an untrusted key"));
}

pub async fn purge_links_keeps_verify_passing(store: Arc<dyn EventStore>) {
    let signer = test_signer();
    store.append("p", &many(6), false).await.unwrap();
    store
        .checkpoint("p", CheckpointKind::Periodic, &signer)
        .await
        .unwrap();
    store.append("p", &many(4), false).await.unwrap();
    let rows = verify::all_chain_rows(store.as_ref(), "p").await.unwrap();
    let links = |ns: &[i64]| -> Vec<PurgeLink> {
        ns.iter()
            .map(|&n| {
                let c = &rows[(n - 1) as usize].columns;
                PurgeLink {
                    n,
                    id: c.id.clone(),
                    hash: c.chain_hash.clone().unwrap(),
                    time_ms: c.time_ms,
                }
            })
            .collect()
    };
    // The chain's first links move its purge boundary; a run inside it becomes a gap.
    let report = store
        .purge_links("p", &links(&[1, 2, 3, 4, 7, 8]), &signer)
        .await
        .unwrap();
    assert_eq!(report.deleted, 6);
    let sealed: Vec<_> = report
        .boundaries
        .iter()
        .map(|b| (b.kind, b.from_n, b.to_n, b.count, b.gaps.len()))
        .collect();
    assert_eq!(
        sealed,
        [
            (CheckpointKind::Purge, 0, 4, 4, 0),
            (CheckpointKind::Retention, 6, 8, 2, 1)
        ]
    );
    let left: Vec<i64> = store
        .query(&all(true))
        .await
        .unwrap()
        .iter()
        .map(|e| e.chain.as_ref().unwrap().n)
        .collect();
    assert_eq!(left, [5, 6, 9, 10]);
    let r = verified(&store).await;
    assert!(r.ok(), "{:?}", r.problems);
    // A link no longer stored: nothing is deleted.
    assert!(store
        .purge_links("p", &links(&[4, 5]), &signer)
        .await
        .is_err());
    assert_eq!(store.query(&all(true)).await.unwrap().len(), 4);
    // New links still verify.
    store.append("p", &many(2), false).await.unwrap();
    let r = verified(&store).await;
    assert!(r.ok(), "{:?}", r.problems);
}

pub async fn concurrent_appends_never_collide(store: Arc<dyn EventStore>) {
    let tasks: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let instance = format!("w{w}");
                let events = many(60);
                for chunk in events.chunks(7) {
                    store.append(&instance, chunk, false).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let read = store.query(&all(true)).await.unwrap();
    assert_eq!(read.len(), 240);
    let report = verified(&store).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.chains, 4);
}

pub async fn filter_token_by_fingerprint_or_jti(store: Arc<dyn EventStore>) {
    use authtrail::event::{TokenRef, TokenRole};
    let mut with = sample_event(
        "with-token",
        "token.issue",
        Some("a1"),
        None,
        Outcome::Success,
        T0,
    );
    with.tokens.push(TokenRef {
        role: TokenRole::Issued,
        kind: "access".into(),
        source: "response_body:/access_token".into(),
        fingerprint: "fp-0123".into(),
        jti: Some("jti-9".into()),
        sub: None,
        app: None,
        iat: None,
        exp: None,
        verified: true,
        invalid: None,
    });
    let without = sample_event(
        "no-token",
        "token.issue",
        Some("a1"),
        None,
        Outcome::Success,
        T0,
    );
    store.append("tok", &[with, without], false).await.unwrap();
    for (token, want) in [
        ("fp-0123", vec!["with-token"]),
        ("jti-9", vec!["with-token"]),
        ("fp-01", vec![]),
    ] {
        let q = Query {
            token: Some(token.to_string()),
            ..Query::default()
        };
        assert_eq!(labels(&store, q).await, want, "token {token}");
    }
}

pub async fn filter_ip_and_search(store: Arc<dyn EventStore>) {
    let mut a = sample_event(
        "ada",
        "account.update",
        Some("a1"),
        Some("u-1"),
        Outcome::Success,
        T0,
    );
    a.source.ip = Some("198.51.100.1".parse().unwrap());
    a.actor.display = Some("Ada Lovelace".into());
    a.details
        .insert("note".into(), json!("Reset by Helpdesk 50%"));
    let b = sample_event(
        "bob",
        "account.update",
        Some("a1"),
        Some("u-2"),
        Outcome::Success,
        T0,
    );
    store.append("s", &[a.clone(), b], false).await.unwrap();
    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        q
    };
    assert_eq!(
        labels(&store, q(|q| q.ip = Some("198.51.100.1".parse().unwrap()))).await,
        ["ada"]
    );
    assert_eq!(
        labels(&store, q(|q| q.search = Some("LOVELACE".into()))).await,
        ["ada"]
    );
    assert_eq!(
        labels(&store, q(|q| q.search = Some("helpdesk 50%".into()))).await,
        ["ada"]
    );
    assert!(labels(&store, q(|q| q.search = Some("0%x".into())))
        .await
        .is_empty());
    let by_id = Query {
        search: Some(a.id.to_string()),
        ..Query::default()
    };
    assert_eq!(labels(&store, by_id).await, ["ada"]);
}

pub async fn stats_count_every_match_once(store: Arc<dyn EventStore>) {
    seeded(&store).await;
    let rows = store.stats(&Query::default(), 3_600_000).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 8);
    let logins: u64 = rows
        .iter()
        .filter(|r| r.event_type == "auth.login")
        .map(|r| r.count)
        .sum();
    assert_eq!(logins, 3);
    let q = Query {
        app: Some("a2".into()),
        ..Query::default()
    };
    let rows = store.stats(&q, 1000).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.app.as_deref() == Some("a2") && r.count == 1));
}

pub async fn filter_reason_and_app_conflict(store: Arc<dyn EventStore>) {
    let now = OffsetDateTime::now_utc();
    let mut conflicted = sample_event(
        "conflicted",
        "account.update",
        Some("app-a"),
        Some("u1"),
        Outcome::Failure,
        now,
    );
    conflicted.reason = Some("claim_mismatch:role".into());
    conflicted.app_conflict = Some(vec![
        Attributed {
            value: "app-a".into(),
            source: "claim:app_id@bearer".into(),
            verified: true,
        },
        Attributed {
            value: "app-b".into(),
            source: "header:x-app-id".into(),
            verified: false,
        },
    ]);
    let plain = sample_event(
        "plain",
        "account.update",
        Some("app-a"),
        Some("u1"),
        Outcome::Failure,
        now,
    );
    store
        .append_fixtures(&[conflicted, plain])
        .await
        .expect("insert");
    let q = Query {
        app_conflict: true,
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["conflicted"]);
    let q = Query {
        reason: Some("claim_mismatch:role".into()),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["conflicted"]);
    let q = Query {
        reason: Some("invalid_credentials".into()),
        ..Query::default()
    };
    assert_eq!(labels(&store, q).await, ["plain"]);
}

/// The labels of the fixture events `x` keeps, newest first: what the store must return.
fn kept(events: &[AuditEvent], x: &Exclude) -> Vec<String> {
    events
        .iter()
        .rev()
        .filter(|e| !x.excludes(e))
        .map(|e| e.http.request_id.clone())
        .collect()
}

pub async fn exclusions_leave_out_each_field(store: Arc<dyn EventStore>) {
    let events = seeded(&store).await;
    let ip = |s: &str| s.parse().unwrap();
    let cases = [
        Exclude {
            types: vec![TypeFilter::Prefix("auth.".into())],
            ..Exclude::default()
        },
        Exclude {
            types: vec![
                TypeFilter::Exact("auth".into()),
                TypeFilter::Exact("token.issue".into()),
            ],
            ..Exclude::default()
        },
        // An event with no app (login-anon-error) is never excluded by app.
        Exclude {
            apps: vec!["a1".into()],
            ..Exclude::default()
        },
        Exclude {
            actors: vec!["alice".into(), "bob".into()],
            ..Exclude::default()
        },
        Exclude {
            targets: vec!["bob".into()],
            ..Exclude::default()
        },
        Exclude {
            routes: vec!["login".into()],
            ..Exclude::default()
        },
        Exclude {
            request_ids: vec!["issue-carol".into()],
            ..Exclude::default()
        },
        Exclude {
            reasons: vec!["invalid_credentials".into()],
            ..Exclude::default()
        },
        Exclude {
            ips: vec![ip("192.0.2.7")],
            ..Exclude::default()
        },
        Exclude {
            ips: vec![ip("2001:db8::1")],
            ..Exclude::default()
        },
        // Everything: the empty prefix.
        Exclude {
            types: vec![TypeFilter::Prefix(String::new())],
            ..Exclude::default()
        },
        Exclude {
            types: vec![TypeFilter::Prefix("token.".into())],
            apps: vec!["a3".into()],
            actors: vec!["admin1".into()],
            ..Exclude::default()
        },
    ];
    for x in cases {
        let want = kept(&events, &x);
        let q = Query {
            exclude: x.clone(),
            ..Query::default()
        };
        assert_eq!(labels(&store, q).await, want, "{x:?}");
        // With a filter and an app scope too: exclusions only ever narrow.
        let q = Query {
            exclude: x.clone(),
            event_type: Some(TypeFilter::Prefix("auth".into())),
            apps_scope: Some(vec!["a1".into(), "a3".into()]),
            ..Query::default()
        };
        let want: Vec<String> = events
            .iter()
            .rev()
            .filter(|e| !x.excludes(e) && e.event_type.starts_with("auth"))
            .filter(|e| e.app.as_ref().is_some_and(|a| a.value != "a2"))
            .map(|e| e.http.request_id.clone())
            .collect();
        assert_eq!(labels(&store, q).await, want, "scoped {x:?}");
    }
}

/// Every event a cursor walk of `q` returns, page by page (`limit` each), checking that every
/// page but the last is full.
async fn walk_full(store: &Arc<dyn EventStore>, q: &Query, limit: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut page = Query { limit, ..q.clone() };
    loop {
        let events = store.query(&page).await.expect("page");
        let last = events.last().and_then(|e| e.seq);
        let full = events.len() == limit as usize;
        out.extend(events.into_iter().map(|e| e.http.request_id));
        match last {
            Some(seq) if full => {
                if page.ascending {
                    page.after_seq = Some(seq);
                } else {
                    page.before_seq = Some(seq);
                }
            }
            _ => return out,
        }
    }
}

/// 300 events, two in three the trail's own reads (`audit.query`) and every fifth of app `a2`.
fn mostly_audit() -> Vec<AuditEvent> {
    (0..300)
        .map(|i| {
            let ty = if i % 3 == 0 {
                "auth.login"
            } else {
                "audit.query"
            };
            let app = if i % 5 == 0 { "a2" } else { "a1" };
            sample_event(
                &format!("m{i:03}"),
                ty,
                Some(app),
                Some("user"),
                Outcome::Success,
                T0 + Duration::milliseconds(i),
            )
        })
        .collect()
}

pub async fn exclusions_keep_pages_full_and_the_cursor_exact(store: Arc<dyn EventStore>) {
    let events = mostly_audit();
    store.append_fixtures(&events).await.expect("insert");
    let x = Exclude {
        types: vec![TypeFilter::Prefix("audit.".into())],
        ..Exclude::default()
    };
    let want = kept(&events, &x);
    assert_eq!(want.len(), 100);
    let q = Query {
        exclude: x.clone(),
        ..Query::default()
    };
    // A page is `limit` events although most rows in its seq range are excluded.
    let first = store
        .query(&Query {
            limit: 30,
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 30);
    assert_eq!(walk_full(&store, &q, 30).await, want, "descending");
    let ascending = Query {
        ascending: true,
        ..q.clone()
    };
    let mut oldest_first = want.clone();
    oldest_first.reverse();
    assert_eq!(
        walk_full(&store, &ascending, 7).await,
        oldest_first,
        "ascending"
    );
    // Under an app scope, with an app excluded too: the scope still holds.
    let x = Exclude {
        types: vec![TypeFilter::Prefix("audit.".into())],
        apps: vec!["a1".into()],
        ..Exclude::default()
    };
    let scoped = Query {
        exclude: x.clone(),
        apps_scope: Some(vec!["a1".into(), "a2".into()]),
        ..Query::default()
    };
    let want = kept(&events, &x);
    assert_eq!(want.len(), 20);
    assert_eq!(walk_full(&store, &scoped, 6).await, want);
    let only_a1 = Query {
        apps_scope: Some(vec!["a1".into()]),
        ..scoped
    };
    assert!(walk_full(&store, &only_a1, 6).await.is_empty());
}

pub async fn stats_with_exclusions_count_what_the_pages_list(store: Arc<dyn EventStore>) {
    let mut events = mostly_audit();
    events.extend(fixture());
    store.append_fixtures(&events).await.expect("insert");
    let cases = [
        Exclude {
            types: vec![TypeFilter::Prefix("audit.".into())],
            ..Exclude::default()
        },
        Exclude {
            types: vec![TypeFilter::Prefix("audit.".into())],
            apps: vec!["a2".into()],
            actors: vec!["alice".into()],
            ..Exclude::default()
        },
        Exclude {
            reasons: vec!["invalid_credentials".into()],
            routes: vec!["custom".into()],
            ..Exclude::default()
        },
    ];
    for x in cases {
        let q = Query {
            exclude: x.clone(),
            ..Query::default()
        };
        let listed = walk_full(&store, &q, 1000).await;
        assert_eq!(listed, kept(&events, &x), "{x:?}");
        let rows = store.stats(&q, 3_600_000).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.count).sum::<u64>(),
            listed.len() as u64,
            "{x:?}"
        );
        for r in &rows {
            let by_type = events
                .iter()
                .filter(|e| !x.excludes(e) && e.event_type == r.event_type)
                .filter(|e| e.outcome.as_str() == r.outcome)
                .filter(|e| e.app.as_ref().map(|a| a.value.as_str()) == r.app.as_deref())
                .count() as u64;
            assert_eq!(r.count, by_type, "{x:?} {r:?}");
        }
    }
}

pub async fn stats_by_sum_the_columns_left_out(store: Arc<dyn EventStore>) {
    let mut events = mostly_audit();
    events.extend(fixture());
    store.append_fixtures(&events).await.expect("insert");
    let q = Query {
        exclude: Exclude {
            types: vec![TypeFilter::Prefix("audit.".into())],
            ..Exclude::default()
        },
        ..Query::default()
    };
    // Without a window, and with one that cuts the first and last buckets (the viewer's
    // timeline: bucket x outcome over since..until).
    let windowed = Query {
        since: Some(T0 + Duration::milliseconds(150)),
        until: Some(T0 + Duration::milliseconds(4_300)),
        ..q.clone()
    };
    for q in [q, windowed] {
        stats_by_match_the_full_grouping(&store, &q).await;
    }
}

async fn stats_by_match_the_full_grouping(store: &Arc<dyn EventStore>, q: &Query) {
    let all = store.stats(q, 1000).await.unwrap();
    assert!(!all.is_empty());
    for by in [
        StatsBy {
            event_type: false,
            outcome: true,
            app: false,
        },
        StatsBy {
            event_type: true,
            outcome: true,
            app: false,
        },
        StatsBy {
            event_type: false,
            outcome: false,
            app: true,
        },
        StatsBy {
            event_type: false,
            outcome: false,
            app: false,
        },
        StatsBy::ALL,
    ] {
        let rows = store.stats_by(q, 1000, by).await.unwrap();
        // What the full grouping gives, folded by hand.
        let mut want = std::collections::BTreeMap::<_, u64>::new();
        for r in &all {
            let key = (
                r.bucket_ms,
                if by.event_type {
                    r.event_type.clone()
                } else {
                    String::new()
                },
                if by.outcome {
                    r.outcome.clone()
                } else {
                    String::new()
                },
                if by.app { r.app.clone() } else { None },
            );
            *want.entry(key).or_default() += r.count;
        }
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    (
                        r.bucket_ms,
                        r.event_type.clone(),
                        r.outcome.clone(),
                        r.app.clone(),
                    ),
                    r.count,
                )
            })
            .collect();
        assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{by:?}");
    }
}
