//! The SQLite store's hand-made query plans give exactly the answers of the plain ones: a type
//! prefix looked for in the newest rows first (then through the type index), walked in seq order
//! beside another filter, and tokens found through their side table, kept by triggers even
//! across a purge.

mod support;

use std::sync::Arc;

use authtrail::event::{AuditEvent, Outcome, TokenRef, TokenRole};
use authtrail::store::sqlite::SqliteStore;
use authtrail::store::verify::all_chain_rows;
use authtrail::store::{EventStore, Exclude, PurgeLink, Query, TypeFilter};
use support::fixtures::{AppendFixtures, FIXTURE_CHAIN};
use support::store_conformance::{sample_event, T0};
use time::Duration;

/// More rows than the prefix window (20,000), so both of its outcomes are exercised.
const ROWS: usize = 25_000;

async fn store() -> (Arc<dyn EventStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    (Arc::new(s), dir)
}

/// Row `i`'s type: rare `auth.*` rows at both ends, a frequent `token.*` every third row, noise
/// in between.
fn type_of(i: usize) -> &'static str {
    if !(7..ROWS - 5).contains(&i) {
        "auth.login"
    } else if i % 3 == 0 {
        "token.refresh"
    } else {
        "noise.thing"
    }
}

async fn seeded() -> (Arc<dyn EventStore>, tempfile::TempDir, Vec<AuditEvent>) {
    let (store, dir) = store().await;
    let events: Vec<AuditEvent> = (0..ROWS)
        .map(|i| {
            let outcome = if i % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            let app = if i % 5 == 0 { "app-a" } else { "app-b" };
            sample_event(
                &format!("r{i}"),
                type_of(i),
                Some(app),
                Some("u"),
                outcome,
                T0 + Duration::milliseconds(i as i64),
            )
        })
        .collect();
    for chunk in events.chunks(5000) {
        store.append_fixtures(chunk).await.unwrap();
    }
    (store, dir, events)
}

/// Walk every page of `q` (by seq cursor) and return the labels in order.
async fn walk(store: &Arc<dyn EventStore>, mut q: Query) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let page = store.query(&q).await.unwrap();
        let Some(last) = page.last().and_then(|e| e.seq) else {
            break;
        };
        out.extend(page.iter().map(|e| e.http.request_id.clone()));
        if q.ascending {
            q.after_seq = Some(last);
        } else {
            q.before_seq = Some(last);
        }
    }
    out
}

fn expected(
    events: &[AuditEvent],
    keep: impl Fn(&AuditEvent) -> bool,
    ascending: bool,
) -> Vec<String> {
    let mut v: Vec<String> = events
        .iter()
        .filter(|e| keep(e))
        .map(|e| e.http.request_id.clone())
        .collect();
    if !ascending {
        v.reverse();
    }
    v
}

#[tokio::test]
async fn prefix_pages_match_a_plain_filter_in_both_orders() {
    let (store, _dir, events) = seeded().await;
    for (prefix, limit) in [
        ("auth.", 3),
        ("auth.", 100),
        ("token.", 1000),
        ("noise.", 1000),
        ("nothing.", 10),
    ] {
        for ascending in [false, true] {
            let q = Query {
                event_type: Some(TypeFilter::Prefix(prefix.into())),
                ascending,
                limit,
                ..Query::default()
            };
            let got = walk(&store, q).await;
            let want = expected(&events, |e| e.event_type.starts_with(prefix), ascending);
            assert_eq!(
                got.len(),
                want.len(),
                "{prefix} ascending={ascending} limit={limit}"
            );
            assert_eq!(got, want, "{prefix} ascending={ascending} limit={limit}");
        }
    }
}

#[tokio::test]
async fn prefix_beside_other_filters_matches_a_plain_filter() {
    let (store, _dir, events) = seeded().await;
    let q = Query {
        event_type: Some(TypeFilter::Prefix("auth.".into())),
        outcome: Some(Outcome::Failure),
        limit: 4,
        ..Query::default()
    };
    let want = expected(
        &events,
        |e| e.event_type.starts_with("auth.") && e.outcome == Outcome::Failure,
        false,
    );
    assert_eq!(walk(&store, q).await, want);
    let q = Query {
        event_type: Some(TypeFilter::Prefix("token.".into())),
        apps_scope: Some(vec!["app-a".into()]),
        since: Some(T0 + Duration::seconds(5)),
        ascending: true,
        limit: 500,
        ..Query::default()
    };
    let want = expected(
        &events,
        |e| {
            e.event_type.starts_with("token.")
                && e.app.as_ref().unwrap().value == "app-a"
                && e.time >= T0 + Duration::seconds(5)
        },
        true,
    );
    assert_eq!(walk(&store, q).await, want);
}

#[tokio::test]
async fn prefix_pages_with_exclusions_match_a_plain_filter() {
    // The prefix window (the newest 20,000 rows first) and the type index fallback both carry
    // the exclusions: `token.*` without `token.refresh` is the rare `auth.*`-like case, and
    // excluding the frequent `token.refresh` and `noise.*` leaves only the rare rows.
    let (store, _dir, events) = seeded().await;
    let cases: [(Option<&str>, Exclude, usize); 3] = [
        (
            Some("auth."),
            Exclude {
                apps: vec!["app-b".into()],
                ..Exclude::default()
            },
            3,
        ),
        (
            None,
            Exclude {
                types: vec![
                    TypeFilter::Prefix("noise.".into()),
                    TypeFilter::Exact("token.refresh".into()),
                ],
                ..Exclude::default()
            },
            5,
        ),
        (
            Some("token."),
            Exclude {
                types: vec![TypeFilter::Prefix("auth.".into())],
                actors: vec!["nobody".into()],
                ..Exclude::default()
            },
            1000,
        ),
    ];
    for (prefix, exclude, limit) in cases {
        for ascending in [false, true] {
            let q = Query {
                event_type: prefix.map(|p| TypeFilter::Prefix(p.into())),
                exclude: exclude.clone(),
                ascending,
                limit: limit as u32,
                ..Query::default()
            };
            let want = expected(
                &events,
                |e| prefix.is_none_or(|p| e.event_type.starts_with(p)) && !exclude.excludes(e),
                ascending,
            );
            assert!(!want.is_empty());
            assert_eq!(
                walk(&store, q).await,
                want,
                "{prefix:?} {exclude:?} ascending={ascending}"
            );
        }
    }
}

fn with_token(mut e: AuditEvent, fp: &str, jti: Option<&str>) -> AuditEvent {
    e.tokens.push(TokenRef {
        role: TokenRole::Issued,
        kind: "refresh".into(),
        source: "response_body:/refresh_token".into(),
        fingerprint: fp.into(),
        jti: jti.map(str::to_string),
        sub: None,
        app: None,
        iat: None,
        exp: None,
        verified: false,
        invalid: None,
    });
    e
}

#[tokio::test]
async fn tokens_are_found_by_fingerprint_and_jti_until_purged() {
    let (store, _dir) = store().await;
    let ev = |label: &str, secs: i64| {
        sample_event(
            label,
            "token.refresh",
            Some("a"),
            Some("u"),
            Outcome::Success,
            T0 + Duration::seconds(secs),
        )
    };
    let events = vec![
        with_token(ev("old", 0), "fp-1", Some("jti-1")),
        with_token(
            with_token(ev("rotate", 10), "fp-1", Some("jti-1")),
            "fp-2",
            None,
        ),
        ev("none", 20),
        with_token(ev("quoted", 30), "fp-\"odd\" %_", Some("jti-%")),
    ];
    store.append_fixtures(&events).await.unwrap();
    let find = |key: &'static str| {
        let store = store.clone();
        async move {
            let q = Query {
                token: Some(key.into()),
                ascending: true,
                limit: 100,
                ..Query::default()
            };
            store
                .query(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.http.request_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find("fp-1").await, ["old", "rotate"]);
    assert_eq!(find("jti-1").await, ["old", "rotate"]);
    assert_eq!(find("fp-2").await, ["rotate"]);
    assert_eq!(find("fp-\"odd\" %_").await, ["quoted"]);
    assert_eq!(find("jti-%").await, ["quoted"]);
    assert!(
        find("fp-").await.is_empty(),
        "keys match whole, never by prefix"
    );
    assert!(find("jti").await.is_empty());

    // Retention purges "old" (the chain's first link).
    let (_, signer) = authtrail::store::Signer::generate().unwrap();
    let rows = all_chain_rows(store.as_ref(), FIXTURE_CHAIN).await.unwrap();
    let first = &rows[0].columns;
    assert_eq!(first.request_id.as_deref(), Some("old"));
    let old = PurgeLink {
        n: 1,
        id: first.id.clone(),
        hash: first.chain_hash.clone().unwrap(),
        time_ms: first.time_ms,
    };
    store
        .purge_links(FIXTURE_CHAIN, &[old], &signer)
        .await
        .unwrap();
    assert_eq!(find("fp-1").await, ["rotate"]);
}
