//! The SQLite trail in time partitions (one table per UTC day of event time): events land in the
//! partition of their day whatever order they arrive in, and read back as one trail — cursors
//! walk across partitions in seq order exactly once, windows and stats span them, a replay is
//! refused where its first copy is, and retention and `verify` work across them.

mod support;

use std::collections::BTreeMap;

use authtrail::event::{AuditEvent, Outcome, TokenRef, TokenRole};
use authtrail::store::sqlite::SqliteStore;
use authtrail::store::verify::{self, all_chain_rows};
use authtrail::store::{EventStore, PurgeLink, Query, StatsBy};
use support::store_conformance::{sample_event, test_signer, trusted, T0};
use time::{Duration, OffsetDateTime};

/// `events_YYYYMMDD` of `t`'s UTC day.
fn partition_of(t: OffsetDateTime) -> String {
    let d = t.date();
    format!(
        "events_{:04}{:02}{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// Five days (one 400 days back) with three apps, appended in batches that jump between days,
/// so seq order is not time order: labels are `d{day}-{i}`.
fn trail() -> Vec<AuditEvent> {
    let days = [
        T0 - Duration::days(400),
        T0,
        T0 + Duration::days(1),
        T0 + Duration::days(2),
        T0 + Duration::days(3),
    ];
    let mut events = Vec::new();
    for round in 0..4 {
        for (d, day) in days.iter().enumerate().rev() {
            for i in 0..3 {
                let n = round * 3 + i;
                let mut e = sample_event(
                    &format!("d{d}-{n}"),
                    if n % 2 == 0 {
                        "auth.login"
                    } else {
                        "token.refresh"
                    },
                    Some(["a1", "a2", "a3"][n % 3]),
                    Some("alice"),
                    if n % 4 == 0 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    },
                    *day + Duration::minutes(n as i64),
                );
                if d == 0 && n == 0 {
                    e.tokens.push(TokenRef {
                        role: TokenRole::Issued,
                        kind: "access".into(),
                        source: "response_body:/access_token".into(),
                        fingerprint: "fp-old".into(),
                        jti: Some("jti-old".into()),
                        sub: None,
                        app: None,
                        iat: None,
                        exp: None,
                        verified: true,
                        invalid: None,
                    });
                }
                events.push(e);
            }
        }
    }
    events
}

fn labels(events: &[AuditEvent]) -> Vec<String> {
    events.iter().map(|e| e.http.request_id.clone()).collect()
}

/// Every event matching `q`, page by page with a cursor of `page` events.
async fn walk(store: &SqliteStore, q: &Query, page: u32) -> Vec<AuditEvent> {
    let mut all: Vec<AuditEvent> = Vec::new();
    loop {
        let mut q = Query {
            limit: page,
            ..q.clone()
        };
        if let Some(last) = all.last() {
            if q.ascending {
                q.after_seq = last.seq;
            } else {
                q.before_seq = last.seq;
            }
        }
        let got = store.query(&q).await.unwrap();
        let done = got.len() < page as usize;
        all.extend(got);
        if done {
            return all;
        }
    }
}

#[tokio::test]
async fn days_land_in_their_partitions_and_read_back_as_one_trail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parts.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let events = trail();
    for batch in events.chunks(10) {
        store.append("p", batch, false).await.unwrap();
    }
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();

    // Each day's events in that day's table, and nowhere else.
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM partitions ORDER BY from_ms")
        .fetch_all(&db)
        .await
        .unwrap();
    let mut by_day: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &events {
        by_day
            .entry(partition_of(e.time))
            .or_default()
            .push(e.http.request_id.clone());
    }
    for (name, want) in &by_day {
        assert!(names.contains(name), "{name} not in {names:?}");
        let mut got: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT request_id FROM {name}"
        )))
        .fetch_all(&db)
        .await
        .unwrap();
        got.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(by_day.len(), 5);

    // Cursors in both directions, with and without a filter, cross partitions exactly once.
    let appended = labels(&events);
    let asc = walk(
        &store,
        &Query {
            ascending: true,
            ..Query::default()
        },
        7,
    )
    .await;
    assert_eq!(labels(&asc), appended);
    let seqs: Vec<i64> = asc.iter().map(|e| e.seq.unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let desc = walk(&store, &Query::default(), 4).await;
    let mut reversed = appended.clone();
    reversed.reverse();
    assert_eq!(labels(&desc), reversed);
    let a2 = walk(
        &store,
        &Query {
            app: Some("a2".into()),
            ..Query::default()
        },
        3,
    )
    .await;
    let want: Vec<String> = events
        .iter()
        .rev()
        .filter(|e| e.app.as_ref().unwrap().value == "a2")
        .map(|e| e.http.request_id.clone())
        .collect();
    assert_eq!(labels(&a2), want);

    // A window reads its days; stats over all partitions count every event once.
    let day1 = Query {
        since: Some(T0 - Duration::hours(12)),
        until: Some(T0 + Duration::hours(12)),
        ..Query::default()
    };
    let in_day1 = walk(&store, &day1, 5).await;
    assert_eq!(in_day1.len(), 12);
    assert!(labels(&in_day1).iter().all(|l| l.starts_with("d1-")));
    let stats = store
        .stats_by(&Query::default(), 86_400_000, StatsBy::OUTCOME)
        .await
        .unwrap();
    assert_eq!(stats.iter().map(|r| r.count).sum::<u64>(), 60);
    assert_eq!(stats.len(), 10, "5 days × 2 outcomes: {stats:?}");
    let windowed = store
        .stats_by(&day1, 3_600_000, StatsBy::ALL)
        .await
        .unwrap();
    assert_eq!(windowed.iter().map(|r| r.count).sum::<u64>(), 12);

    // A token of the oldest day, by fingerprint and jti; an event of it, by id.
    for key in ["fp-old", "jti-old"] {
        let found = store
            .query(&Query {
                token: Some(key.into()),
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(labels(&found), ["d0-0"], "{key}");
    }
    let oldest = events.iter().find(|e| e.http.request_id == "d0-5").unwrap();
    assert_eq!(
        store.get(oldest.id).await.unwrap().unwrap().http.request_id,
        "d0-5"
    );

    // A replay is refused in the partition of its first copy.
    assert_eq!(store.append("p", &events, false).await.unwrap().inserted, 0);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(total, 60);
    let report = verify::verify(&store, &trusted()).await.unwrap();
    assert!(report.ok(), "{}", report.render());

    // Purging the oldest day empties its partition; the chain still verifies.
    let old_ms = authtrail::event::unix_millis(T0 - Duration::days(399));
    let due: Vec<PurgeLink> = all_chain_rows(&store, "p")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.columns.time_ms < old_ms)
        .map(|r| PurgeLink {
            n: r.columns.chain_n.unwrap(),
            id: r.columns.id,
            hash: r.columns.chain_hash.unwrap(),
            time_ms: r.columns.time_ms,
        })
        .collect();
    assert_eq!(due.len(), 12);
    let report = store.purge_links("p", &due, &test_signer()).await.unwrap();
    assert_eq!(report.deleted, 12);
    let old_table = partition_of(T0 - Duration::days(400));
    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {old_table}"
    )))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(left, 0);
    let tokens: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {old_table}_tokens"
    )))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(tokens, 0, "token keys leave with their event");
    let report = verify::verify(&store, &trusted()).await.unwrap();
    assert!(report.ok(), "{}", report.render());
    assert_eq!(walk(&store, &Query::default(), 50).await.len(), 48);
    db.close().await;
    store.close().await;
}

#[tokio::test]
async fn edits_by_hand_reach_the_partitions_through_the_view() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let events = trail();
    store.append("p", &events[..15], false).await.unwrap();
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let exec = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::raw_sql(sql).execute(&db).await.unwrap() }
    };
    // An INSERT without a seq takes the next one; one for a time no partition holds is refused.
    exec(
        "INSERT INTO events (id, time_ms, type, stage, outcome, reason, app, actor_id, \
         target_kind, target_id, route, status, ip, request_id, chain_instance, chain_n, \
         chain_hash, body) SELECT 'copy', time_ms, type, stage, outcome, reason, app, actor_id, \
         target_kind, target_id, route, status, ip, 'copy', NULL, NULL, NULL, body \
         FROM events WHERE request_id = 'd2-0'",
    )
    .await;
    let (seq, time_ms): (i64, i64) =
        sqlx::query_as("SELECT seq, time_ms FROM events WHERE request_id = 'copy'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(seq, 16);
    let day2 = partition_of(T0 + Duration::days(1));
    let there: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {day2} WHERE seq = 16 AND time_ms = {time_ms}"
    )))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(there, 1);
    let refused = sqlx::raw_sql(
        "INSERT INTO events (id, time_ms, type, outcome, body) VALUES ('x', 5, 't', 'success', '{}')",
    )
    .execute(&db)
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("no partition holds"),
        "{refused}"
    );
    // The writer's next seq is after the hand-made row's.
    let next = vec![sample_event(
        "next",
        "auth.login",
        Some("a1"),
        None,
        Outcome::Success,
        T0,
    )];
    store.append("p", &next, false).await.unwrap();
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM events WHERE request_id = 'next'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(seq, 17);
    // UPDATE and DELETE find the row's partition.
    exec("UPDATE events SET outcome = 'failure' WHERE request_id = 'copy'").await;
    let outcome: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT outcome FROM {day2} WHERE seq = 16"
    )))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(outcome, "failure");
    exec("DELETE FROM events WHERE request_id = 'copy'").await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 16);
    db.close().await;
    store.close().await;
}
