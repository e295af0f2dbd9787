//! The store conformance suite on PostgreSQL, each test in a fresh schema of the server named by
//! `AUTHTRAIL_TEST_PG_URL`. Without it the tests print "skipped: AUTHTRAIL_TEST_PG_URL not set"
//! and pass — except in CI (`CI` set), where they fail.

mod support;

use std::sync::Arc;

use authtrail::store::postgres::PostgresStore;
use authtrail::store::{self, EventStore, Query};
use support::fixtures::AppendFixtures;
use support::pg;
use support::store_conformance::{many, store_conformance_tests};

async fn open_fresh() -> Option<(Arc<dyn EventStore>, pg::Schema)> {
    let (store, schema) = pg::fresh().await?;
    Some((Arc::new(store), schema))
}

store_conformance_tests!(open_fresh());

#[tokio::test]
async fn events_survive_reopen_and_seq_keeps_increasing() {
    let Some(url) = pg::url() else { return };
    let schema = pg::schema(&url).await;
    let first = many(10);
    {
        let store = PostgresStore::connect(schema.options()).await.unwrap();
        assert_eq!(store.append_fixtures(&first).await.unwrap(), 10);
        store.close().await;
    }
    // Migrations run again on open and change nothing.
    let store = PostgresStore::connect(schema.options()).await.unwrap();
    let before = store.query(&Query::default()).await.unwrap();
    assert_eq!(before.len(), 10);
    let max_seq = before[0].seq.unwrap();
    assert_eq!(store.append_fixtures(&first).await.unwrap(), 0);
    let second = many(3);
    store.append("x", &second, false).await.unwrap();
    let after = store
        .query(&Query {
            after_seq: Some(max_seq),
            ascending: true,
            ..Query::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = after.iter().map(|e| e.id).collect();
    assert_eq!(ids, second.iter().map(|e| e.id).collect::<Vec<_>>());
}

#[tokio::test]
async fn open_by_url_works_and_a_bad_url_is_an_error_without_the_password() {
    let Some(url) = pg::url() else { return };
    let schema = pg::schema(&url).await;
    let store = store::open(&schema.store_url()).await.unwrap();
    store.ping().await.unwrap();
    store.append("u", &many(2), false).await.unwrap();
    assert_eq!(store.query(&Query::default()).await.unwrap().len(), 2);

    let err = store::open("postgres://someone:hunter2@127.0.0.1:1/nodb")
        .await
        .err()
        .expect("nothing listens on port 1");
    let msg = err.to_string();
    assert!(msg.starts_with("store open: "), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn seq_order_is_commit_order_for_concurrent_writers() {
    // Two independent pools (as two sidecars would have) append at once while a reader polls
    // with a seq cursor: it must never skip an event that commits later with a lower seq.
    let Some(url) = pg::url() else { return };
    let schema = pg::schema(&url).await;
    let a: Arc<dyn EventStore> = Arc::new(PostgresStore::connect(schema.options()).await.unwrap());
    let b: Arc<dyn EventStore> = Arc::new(PostgresStore::connect(schema.options()).await.unwrap());
    let writers: Vec<_> = [(a.clone(), "a"), (b.clone(), "b")]
        .into_iter()
        .map(|(store, inst)| {
            tokio::spawn(async move {
                for chunk in many(400).chunks(5) {
                    store.append(inst, chunk, false).await.unwrap();
                }
            })
        })
        .collect();
    let mut cursor = 0;
    let mut seen = std::collections::HashSet::new();
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let page = a
            .query(&Query {
                ascending: true,
                after_seq: Some(cursor),
                limit: 10_000,
                ..Query::default()
            })
            .await
            .unwrap();
        for e in &page {
            assert!(seen.insert(e.id));
            cursor = e.seq.unwrap();
        }
        if done && page.is_empty() {
            break;
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(
        seen.len(),
        800,
        "the cursor walk saw every event exactly once"
    );
}

/// Fleet scale: four writers (each its own pool, as four sidecars are) append on their own
/// chains at once — no writer waits for another's commit — while a poller walks the trail in
/// ascending pages by cursor. The poller sees every event exactly once, each chain in order: an
/// ascending read stops at the commit-ordered high-water mark, so a seq committed after a
/// higher one is never stepped over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poller_sees_every_event_once_while_four_writers_append_side_by_side() {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let Some(url) = pg::url() else { return };
    let schema = pg::schema(&url).await;
    const WRITERS: usize = 4;
    const BATCHES: usize = 60;
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    let mut all = HashSet::new();
    for w in 0..WRITERS {
        let store = PostgresStore::connect(schema.options()).await.unwrap();
        let batches: Vec<_> = (0..BATCHES).map(|b| many(1 + (w + b) % 4)).collect();
        all.extend(batches.iter().flatten().map(|e| e.id));
        let done = done.clone();
        writers.push(tokio::spawn(async move {
            for batch in batches {
                store
                    .append(&format!("fleet-{w}"), &batch, false)
                    .await
                    .unwrap();
            }
            done.fetch_add(1, Ordering::SeqCst);
            store.close().await;
        }));
    }
    let reader = PostgresStore::connect(schema.options()).await.unwrap();
    let (mut seen, mut cursor) = (Vec::new(), 0i64);
    let mut polls = 0;
    loop {
        let finished = done.load(Ordering::SeqCst) == WRITERS;
        let page = reader
            .query(&Query {
                ascending: true,
                after_seq: Some(cursor),
                limit: 7,
                ..Query::default()
            })
            .await
            .unwrap();
        polls += 1;
        if let Some(last) = page.last() {
            cursor = last.seq.unwrap();
        }
        let empty = page.is_empty();
        seen.extend(page);
        if finished && empty {
            break;
        }
        assert!(polls < 100_000, "the poller never caught up");
    }
    for w in writers {
        w.await.unwrap();
    }
    let ids: Vec<_> = seen.iter().map(|e| e.id).collect();
    let unique: HashSet<_> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event was read twice");
    assert_eq!(unique, all, "the poller missed events");
    let mut last_n: HashMap<String, i64> = HashMap::new();
    for e in &seen {
        let link = e.chain.as_ref().expect("chained");
        let prev = last_n.insert(link.instance.clone(), link.n);
        assert!(prev.is_none_or(|p| p < link.n), "chain out of order");
    }
    eprintln!(
        "{} events from {WRITERS} writers read in {polls} polls",
        ids.len()
    );
}

// ---- time partitions (migration 0006) ----

use authtrail::event::{AuditEvent, Outcome};
use authtrail::ops::retention::{self, Keep, Policy};
use support::store_conformance::{sample_event, test_signer, trusted};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const DAY_MS: i64 = 86_400_000;

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The partition a time's events belong in: `events_YYYYMMDD` of its UTC day.
fn day_partition(t: OffsetDateTime) -> String {
    let d = t.to_offset(time::UtcOffset::UTC).date();
    format!(
        "events_{:04}{:02}{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// A pool on the schema, for raw SQL.
async fn raw(schema: &pg::Schema) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(schema.options())
        .await
        .unwrap()
}

/// Each stored event's id and the partition it is in (`tableoid`).
async fn partition_of_each(pool: &sqlx::PgPool) -> std::collections::HashMap<String, String> {
    sqlx::query_as::<_, (String, String)>("SELECT id, tableoid::regclass::text FROM events")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Every partition of `events` and its bound, from the catalog.
async fn partitions(pool: &sqlx::PgPool) -> std::collections::BTreeMap<String, String> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Every event, page by page with a seq cursor, in `ascending` or descending order.
async fn walk_pages(store: &PostgresStore, ascending: bool, limit: u32) -> Vec<AuditEvent> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(&Query {
                ascending,
                limit,
                after_seq: if ascending { cursor } else { None },
                before_seq: if ascending { None } else { cursor },
                ..Query::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        seen.extend(page);
    }
    seen
}

/// Cursor walks both ways, `limit` a page, see exactly `want` (in seq order) once each.
async fn assert_walks_both_ways(store: &PostgresStore, limit: u32, want: &[uuid::Uuid]) {
    let up: Vec<_> = walk_pages(store, true, limit)
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(up, want);
    let mut down: Vec<_> = walk_pages(store, false, limit)
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    down.reverse();
    assert_eq!(down, want);
}

fn at(label: &str, app: &str, t: OffsetDateTime) -> AuditEvent {
    sample_event(
        label,
        "auth.login",
        Some(app),
        Some("user"),
        Outcome::Success,
        t,
    )
}

async fn assert_verifies(store: &PostgresStore) -> authtrail::store::verify::Report {
    let report = authtrail::store::verify::verify(store, &trusted())
        .await
        .unwrap();
    assert!(report.ok(), "{:#?}", report.problems);
    report
}

#[tokio::test]
async fn events_land_in_their_utc_days_partition_and_read_back_across_them() {
    let Some((store, schema)) = pg::fresh().await else {
        return;
    };
    let pool = raw(&schema).await;
    // Five UTC days, one of them 2001's, and the edges of a day: out of time order within and
    // across batches, so seq order is not time order.
    let times = [
        datetime!(2025-01-02 23:59:59.999 UTC),
        datetime!(2001-09-09 01:46:40 UTC),
        datetime!(2025-01-03 00:00:00 UTC),
        datetime!(2025-01-01 00:00:00 UTC),
        OffsetDateTime::now_utc(),
        datetime!(2025-01-02 00:00:00.001 UTC),
    ];
    let events: Vec<AuditEvent> = (0..36)
        .map(|i| {
            at(
                &format!("e{i}"),
                ["a1", "a2"][i % 2],
                times[i % times.len()],
            )
        })
        .collect();
    for batch in events.chunks(7) {
        assert_eq!(
            store.append("p", batch, false).await.unwrap().inserted,
            batch.len() as u64
        );
    }

    // Each event is in its day's partition, and each partition holds exactly its day.
    let stored = partition_of_each(&pool).await;
    assert_eq!(stored.len(), events.len());
    for e in &events {
        assert_eq!(
            stored[&e.id.to_string()],
            day_partition(e.time),
            "{}",
            e.time
        );
    }
    let parts = partitions(&pool).await;
    for t in times {
        let lo = unix_ms(t).div_euclid(DAY_MS) * DAY_MS;
        assert_eq!(
            parts[&day_partition(t)],
            format!("FOR VALUES FROM ('{lo}') TO ('{}')", lo + DAY_MS)
        );
    }
    // Tomorrow's is made ahead; the (empty) legacy partition holds no time >= 0.
    let tomorrow = OffsetDateTime::now_utc() + Duration::days(1);
    assert!(parts.contains_key(&day_partition(tomorrow)), "{parts:?}");
    assert_eq!(
        parts["events_legacy"],
        "FOR VALUES FROM (MINVALUE) TO ('0')"
    );

    // Cursor walks both ways see every event exactly once, in seq (= append) order.
    let want: Vec<_> = events.iter().map(|e| e.id).collect();
    assert_walks_both_ways(&store, 5, &want).await;
    // A filtered page reads across the partitions too.
    let a2 = store
        .query(&Query {
            app: Some("a2".into()),
            limit: 1000,
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(a2.len(), events.len() / 2);

    // A replayed event (same id, same time) is not stored again, alone or beside new ones.
    assert_eq!(
        store
            .append("p", &events[..7], false)
            .await
            .unwrap()
            .inserted,
        0
    );
    let new = at("new", "a1", times[1]);
    let mixed = [events[1].clone(), new.clone(), events[8].clone()];
    assert_eq!(store.append("p", &mixed, false).await.unwrap().inserted, 1);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, events.len() as i64 + 1);
    let old = store.get(events[1].id).await.unwrap().unwrap();
    assert_eq!(old.time, times[1]);
    assert_eq!(old.seq, Some(2));

    let report = assert_verifies(&store).await;
    assert_eq!(report.events, events.len() as u64 + 1);
    pool.close().await;
    store.close().await;
}

#[tokio::test]
async fn a_retention_purge_across_partitions_keeps_verify_passing() {
    let Some((store, schema)) = pg::fresh().await else {
        return;
    };
    let pool = raw(&schema).await;
    let now = OffsetDateTime::now_utc();
    let ages = [1000, 400, 45, 31, 29, 3, 0];
    let mut events = Vec::new();
    for (i, age) in ages.iter().cycle().take(28).enumerate() {
        events.push(at(&format!("e{i}"), "a1", now - Duration::days(*age)));
    }
    for batch in events.chunks(5) {
        store.append("r", batch, false).await.unwrap();
    }
    let signer = test_signer();
    store
        .checkpoint("r", authtrail::store::CheckpointKind::Periodic, &signer)
        .await
        .unwrap();
    let before = partitions(&pool).await.len();
    assert!(before > ages.len(), "{before}");

    let policy = Policy {
        default: Keep::For(std::time::Duration::from_secs(30 * 86_400)),
        rules: Vec::new(),
        legal_hold: Vec::new(),
        interval: std::time::Duration::from_secs(3600),
        batch: 3,
    };
    let done = retention::purge(&store, &policy, Some(&signer), now, false)
        .await
        .unwrap();
    let due = events
        .iter()
        .filter(|e| now - e.time > Duration::days(30))
        .count();
    assert_eq!(done.deleted, due as u64);
    let left = partition_of_each(&pool).await;
    assert_eq!(left.len(), events.len() - due);
    assert!(left.values().all(|p| [29, 3, 0]
        .iter()
        .any(|a| *p == day_partition(now - Duration::days(*a)))));
    let report = assert_verifies(&store).await;
    assert_eq!(report.events, (events.len() - due) as u64);
    // The chain goes on after the purge.
    store
        .append("r", &[at("after", "a1", now)], false)
        .await
        .unwrap();
    assert_verifies(&store).await;
    pool.close().await;
    store.close().await;
}

/// Migrations 0001-0005 only: the schema of a trail from before partitions.
async fn migrate_to_5(pool: &sqlx::PgPool) {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let files = [
        (
            1,
            "events",
            include_str!("../migrations/postgres/0001_events.sql"),
        ),
        (
            2,
            "chain",
            include_str!("../migrations/postgres/0002_chain.sql"),
        ),
        (
            3,
            "query_plans",
            include_str!("../migrations/postgres/0003_query_plans.sql"),
        ),
        (
            4,
            "event_tokens",
            include_str!("../migrations/postgres/0004_event_tokens.sql"),
        ),
        (
            5,
            "time_index",
            include_str!("../migrations/postgres/0005_time_index.sql"),
        ),
    ];
    let migrator = Migrator::with_migrations(
        files
            .into_iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    v,
                    d.into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    );
    migrator.run(pool).await.unwrap();
}

#[tokio::test]
async fn a_trail_from_before_partitions_stays_queryable_and_verifiable() {
    let Some(url) = pg::url() else { return };
    // The old trail's rows are made by a store of today (so they are properly chained and
    // checkpointed) and copied, in seq order, into a schema at migration 5.
    let source = pg::schema(&url).await;
    let old = pg::schema(&url).await;
    let now = OffsetDateTime::now_utc();
    let times = [
        now - Duration::days(800),
        now - Duration::days(2),
        now - Duration::days(1),
        now,
    ];
    // Every third event carries a token (its keys must be found after the migrations).
    let events: Vec<AuditEvent> = (0..20)
        .map(|i| {
            let e = at(
                &format!("o{i}"),
                ["a1", "a2"][i % 2],
                times[i % times.len()],
            );
            if i % 3 == 0 {
                with_token(e, "fp-old", Some(&format!("j{i}")))
            } else {
                e
            }
        })
        .collect();
    {
        let store = PostgresStore::connect(source.options()).await.unwrap();
        let signer = test_signer();
        for batch in events.chunks(6) {
            store.append("old", batch, false).await.unwrap();
            store
                .checkpoint("old", authtrail::store::CheckpointKind::Periodic, &signer)
                .await
                .unwrap();
        }
        store.close().await;
    }
    let pool = raw(&old).await;
    migrate_to_5(&pool).await;
    let cols = "id, time_ms, type, stage, outcome, reason, app, actor_id, target_kind, \
                target_id, route, status, ip, request_id, chain_instance, chain_n, chain_hash, \
                body";
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO events ({cols}) SELECT {cols} FROM {src}.events ORDER BY seq; \
         INSERT INTO checkpoints (instance, to_n, kind, created_ms, body) \
           SELECT instance, to_n, kind, created_ms, body FROM {src}.checkpoints ORDER BY id; \
         ANALYZE events;",
        src = source.name
    )))
    .execute(&pool)
    .await
    .unwrap();
    let identity = sqlx::query_scalar::<_, String>(
        "SELECT attidentity::text FROM pg_attribute \
         WHERE attrelid = 'events'::regclass AND attname = 'seq'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(identity, "a", "the old schema: seq is an identity");

    // Open it: migration 0006 runs.
    let store = PostgresStore::connect(old.options()).await.unwrap();
    let parts = partitions(&pool).await;
    let upper = (unix_ms(now).div_euclid(DAY_MS) + 1) * DAY_MS;
    assert_eq!(
        parts["events_legacy"],
        format!("FOR VALUES FROM (MINVALUE) TO ('{upper}')")
    );
    // Today is the legacy partition's (its newest event is today's): no day partition
    // overlaps it; tomorrow's is there.
    assert!(!parts.contains_key(&day_partition(now)), "{parts:?}");
    assert!(parts.contains_key(&day_partition(now + Duration::days(1))));
    let stored = partition_of_each(&pool).await;
    assert!(stored.values().all(|p| p == "events_legacy"), "{stored:?}");

    // Every old event reads back, in the old seq order, and verifies.
    let want: Vec<_> = events.iter().map(|e| e.id).collect();
    let up: Vec<_> = walk_pages(&store, true, 3)
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(up, want);
    assert_eq!(store.get(events[4].id).await.unwrap().unwrap().seq, Some(5));
    let report = assert_verifies(&store).await;
    assert_eq!(report.events, 20);
    // Their token keys were filled in by migration 0008.
    let by_token = |token: &str| {
        let store = &store;
        let token = token.to_string();
        async move {
            store
                .query(&Query {
                    token: Some(token),
                    ascending: true,
                    ..Query::default()
                })
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        by_token("fp-old").await,
        events.iter().step_by(3).map(|e| e.id).collect::<Vec<_>>()
    );
    assert_eq!(by_token("j9").await, vec![events[9].id]);

    // The chain and seq go on: new events (today's go to the legacy partition, tomorrow's and
    // an old replay's to theirs), read after the old ones by an ascending cursor.
    let tomorrow = now + Duration::days(1);
    let long_ago = now - Duration::days(3000);
    let new = vec![
        at("n0", "a1", now),
        at("n1", "a2", tomorrow),
        at("n2", "a1", long_ago),
    ];
    let appended = store.append("old", &new, false).await.unwrap();
    assert_eq!(appended.inserted, 3);
    assert_eq!(appended.head.unwrap().n, 23);
    assert_eq!(
        store.append("old", &events, false).await.unwrap().inserted,
        0
    );
    let after = store
        .query(&Query {
            ascending: true,
            after_seq: Some(20),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|e| (e.id, e.seq)).collect::<Vec<_>>(),
        vec![
            (new[0].id, Some(21)),
            (new[1].id, Some(22)),
            (new[2].id, Some(23))
        ]
    );
    let stored = partition_of_each(&pool).await;
    assert_eq!(stored[&new[0].id.to_string()], "events_legacy");
    assert_eq!(stored[&new[1].id.to_string()], day_partition(tomorrow));
    assert_eq!(stored[&new[2].id.to_string()], "events_legacy");
    let report = assert_verifies(&store).await;
    assert_eq!(report.events, 23);
    // Reopening changes nothing.
    store.close().await;
    let store = PostgresStore::connect(old.options()).await.unwrap();
    assert_eq!(walk_pages(&store, false, 50).await.len(), 23);
    store.close().await;
    pool.close().await;
}

/// The page the viewer and the admin API ask most: one app's newest 50. Across day partitions
/// it must be a Merge Append of each partition's (app, seq) index read backwards, stopping
/// after 50 rows, never a sort of every matching row.
#[tokio::test]
async fn a_page_by_app_is_a_merge_append_of_index_scans() {
    let Some((store, schema)) = pg::fresh().await else {
        return;
    };
    let pool = raw(&schema).await;
    // Four days' partitions, then 40,000 rows in them (raw: the plan, not the chain, is under
    // test), 21 apps spread over the days.
    let day0 = datetime!(2025-03-01 00:00 UTC);
    let seed: Vec<_> = (0..4)
        .map(|d| at(&format!("d{d}"), "a0", day0 + Duration::days(d)))
        .collect();
    store.append("plan", &seed, false).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO events (id, time_ms, type, outcome, app, actor_id, route, request_id, body) \
         SELECT 'r' || g, {t0} + (g % 4) * {DAY_MS} + g, 'auth.login', 'success', \
           'app' || (g % 21), 'user' || (g % 997), '/login', 'q' || g, '{{}}'::jsonb \
         FROM generate_series(1, 40000) g; \
         ANALYZE events;",
        t0 = unix_ms(day0)
    )))
    .execute(&pool)
    .await
    .unwrap();

    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(
        "PREPARE page(text, bigint) AS SELECT seq, id, body::text FROM events \
         WHERE app = $1 ORDER BY seq DESC LIMIT $2",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE page('app7', 50)")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        eprintln!("{mode}:\n{plan}");
        assert!(plan.contains("Limit"), "{plan}");
        assert!(plan.contains("Merge Append"), "{plan}");
        assert!(plan.contains("Sort Key: events.seq DESC"), "{plan}");
        let scans = plan.matches("Index Scan Backward using").count()
            + plan.matches("Index Only Scan Backward using").count();
        assert!(scans >= 4, "one index scan per day partition: {plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(!plan.contains("->  Sort"), "no sort of the matches: {plan}");
        assert!(!plan.contains("Bitmap"), "{plan}");
    }
    // And it answers: app7's newest 50, newest first.
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, id FROM events WHERE app = 'app7' ORDER BY seq DESC LIMIT 50")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), 50);
    assert!(rows.windows(2).all(|w| w[0].0 > w[1].0));
    assert_eq!(rows[0].1, "r39991");
    drop(conn);
    pool.close().await;
    store.close().await;
}

/// Four sidecars find the same six days missing at once: each day gets one partition (the
/// partition lock), no append fails, and every event is in its day's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sidecars_that_need_the_same_new_days_at_once_create_each_once() {
    let Some(url) = pg::url() else { return };
    let schema = pg::schema(&url).await;
    let days: Vec<OffsetDateTime> = (0..6)
        .map(|d| datetime!(2024-06-01 12:00 UTC) + Duration::days(d))
        .collect();
    let mut writers = Vec::new();
    let mut all = Vec::new();
    for w in 0..4 {
        let store = PostgresStore::connect(schema.options()).await.unwrap();
        let events: Vec<AuditEvent> = days
            .iter()
            .enumerate()
            .map(|(i, t)| at(&format!("w{w}-{i}"), "a1", *t))
            .collect();
        all.extend(events.clone());
        writers.push(tokio::spawn(async move {
            for batch in events.chunks(2) {
                store.append(&format!("w{w}"), batch, false).await.unwrap();
            }
            store.close().await;
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let pool = raw(&schema).await;
    let parts = partitions(&pool).await;
    for t in &days {
        assert!(parts.contains_key(&day_partition(*t)), "{parts:?}");
    }
    // Each day once, plus today's, tomorrow's and the legacy one.
    assert!(parts.len() <= days.len() + 3, "{parts:?}");
    let stored = partition_of_each(&pool).await;
    assert_eq!(stored.len(), all.len());
    for e in &all {
        assert_eq!(stored[&e.id.to_string()], day_partition(e.time));
    }
    let store = PostgresStore::connect(schema.options()).await.unwrap();
    assert_verifies(&store).await;
    store.close().await;
    pool.close().await;
}

/// A partition the store knew of is dropped by hand: the next append into that day makes it
/// again instead of failing for ever.
#[tokio::test]
async fn a_partition_dropped_behind_the_stores_back_is_made_again() {
    let Some((store, schema)) = pg::fresh().await else {
        return;
    };
    let pool = raw(&schema).await;
    let t = datetime!(2024-02-29 08:00 UTC);
    store
        .append("d", &[at("first", "a1", t)], false)
        .await
        .unwrap();
    sqlx::raw_sql("DROP TABLE events_20240229")
        .execute(&pool)
        .await
        .unwrap();
    let second = at("second", "a1", t + Duration::hours(1));
    let appended = store
        .append("d", std::slice::from_ref(&second), false)
        .await
        .unwrap();
    assert_eq!(appended.inserted, 1);
    let stored = partition_of_each(&pool).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[&second.id.to_string()], "events_20240229");
    pool.close().await;
    store.close().await;
}

/// The seq bounds of each day (`day_seqs`) by day.
async fn day_bounds(pool: &sqlx::PgPool) -> std::collections::BTreeMap<i64, (i64, i64, String)> {
    sqlx::query_as::<_, (i64, i64, i64, String)>(
        "SELECT day, lo_seq, hi_seq, xmin::text FROM day_seqs",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(day, lo, hi, xmin)| (day, (lo, hi, xmin)))
    .collect()
}

/// Pages read only the days whose seqs can reach them (`day_seqs`, kept by a trigger): each
/// day's bound covers its events, is written once per reserve rather than by every append, and
/// moves when an event lands outside it, so an event appended late into an old day, or moved
/// to another day by hand, is still found by pages both ways.
#[tokio::test]
async fn pages_read_the_days_that_reach_them_and_late_events_still_show() {
    let Some((store, schema)) = pg::fresh().await else {
        return;
    };
    let pool = raw(&schema).await;
    let day_a = datetime!(2025-05-01 12:00 UTC);
    let days = [day_a, day_a + Duration::days(1), day_a + Duration::days(2)];
    let mut events = Vec::new();
    for (d, t) in days.iter().enumerate() {
        let batch: Vec<_> = (0..10)
            .map(|i| at(&format!("d{d}-{i}"), "a1", *t + Duration::seconds(i)))
            .collect();
        store.append("p", &batch, false).await.unwrap();
        events.extend(batch);
    }
    let day_of = |t: OffsetDateTime| unix_ms(t).div_euclid(DAY_MS);
    let seqs_of =
        |d: usize| -> Vec<i64> { (0..10).map(|i| (d * 10 + i + 1) as i64).collect::<Vec<_>>() };
    let bounds = day_bounds(&pool).await;
    assert_eq!(bounds.len(), 3, "{bounds:?}");
    for (d, t) in days.iter().enumerate() {
        let (lo, hi, _) = &bounds[&day_of(*t)];
        let seqs = seqs_of(d);
        assert!(*lo <= seqs[0] && *hi >= seqs[9], "day {d}: {lo}..{hi}");
    }
    // Another append into the newest day, inside its reserve: its bound is not written again.
    let more = at("more", "a1", days[2] + Duration::minutes(5));
    store
        .append("p", std::slice::from_ref(&more), false)
        .await
        .unwrap();
    assert_eq!(
        day_bounds(&pool).await[&day_of(days[2])],
        bounds[&day_of(days[2])]
    );
    events.push(more);

    // The sequence moves far past every reserve (other days' events, say); then an event of
    // the oldest day arrives (a spool replayed late).
    sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'seq'), 100000)")
        .execute(&pool)
        .await
        .unwrap();
    let late = at("late", "a1", days[0] + Duration::minutes(30));
    store
        .append("p", std::slice::from_ref(&late), false)
        .await
        .unwrap();
    let (_, hi_a, _) = day_bounds(&pool).await[&day_of(days[0])].clone();
    assert!(hi_a >= 100_001, "the oldest day's bound moved: {hi_a}");
    let newest = store
        .query(&Query {
            limit: 3,
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(
        newest[0].id, late.id,
        "the late event heads the newest page"
    );
    assert_eq!(newest[0].seq, Some(100_001));
    assert_eq!(newest[1].id, events[30].id);
    let after_all = store
        .query(&Query {
            ascending: true,
            after_seq: Some(31),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(
        after_all.iter().map(|e| e.id).collect::<Vec<_>>(),
        [late.id]
    );

    // By hand, an event of the middle day moves to the newest day: that day's bound reaches
    // down to it, and an ascending page from just before it finds it there.
    let moved = &events[12];
    sqlx::query("UPDATE events SET time_ms = $1 WHERE id = $2")
        .bind(unix_ms(days[2]) + 1)
        .bind(moved.id.to_string())
        .execute(&pool)
        .await
        .unwrap();
    let (lo_c, _, _) = day_bounds(&pool).await[&day_of(days[2])].clone();
    assert!(lo_c <= 13, "{lo_c}");
    let page = store
        .query(&Query {
            ascending: true,
            after_seq: Some(12),
            limit: 2,
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [Some(13), Some(14)]
    );
    assert_eq!(page[0].id, moved.id);
    // Every event once, both ways.
    let mut want: Vec<_> = events.iter().map(|e| e.id).collect();
    want.push(late.id);
    assert_walks_both_ways(&store, 4, &want).await;
    pool.close().await;
    store.close().await;
}

fn with_token(mut e: AuditEvent, fingerprint: &str, jti: Option<&str>) -> AuditEvent {
    e.tokens.push(authtrail::event::TokenRef {
        role: authtrail::event::TokenRole::Presented,
        kind: "access".into(),
        source: "bearer".into(),
        fingerprint: fingerprint.into(),
        jti: jti.map(str::to_string),
        sub: None,
        app: None,
        iat: None,
        exp: None,
        verified: true,
        invalid: None,
    });
    e
}

/// The ids of the events of `token`, by page of `limit`, newest first or oldest first.
async fn token_walk(
    store: &PostgresStore,
    token: &str,
    ascending: bool,
    limit: u32,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(&Query {
                token: Some(token.into()),
                ascending,
                limit,
                after_seq: if ascending { cursor } else { None },
                before_seq: if ascending { None } else { cursor },
                ..Query::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        seen.extend(page.iter().map(|e| e.details["label"].to_string()));
    }
    seen
}

/// The rows of `event_tokens` under `key` (hashed, as stored).
async fn token_keys(pool: &sqlx::PgPool, key: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM event_tokens WHERE key = hashtextextended($1, 0)")
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A token's events are found through `event_tokens` (migration 0008: its keys by day), and
/// the keys follow the events whoever writes them: the store's appends, an insert, update or
/// delete through `events` by hand (what a sidecar of the previous version does during a
/// rolling upgrade), a purge and a retention drop of a whole day.
#[tokio::test]
async fn a_tokens_keys_follow_its_events_through_appends_edits_and_drops() {
    let Some((store, schema)) = pg::fresh().await else {
        return;
    };
    let pool = raw(&schema).await;
    let now = OffsetDateTime::now_utc();
    let labelled = |label: &str, t: OffsetDateTime| {
        let mut e = at(label, "a1", t);
        e.details.insert("label".into(), label.into());
        e
    };
    let events = vec![
        with_token(
            labelled("a-old", now - Duration::days(40)),
            "fp-a",
            Some("j-a"),
        ),
        labelled("x-old", now - Duration::days(40)),
        with_token(labelled("a-mid", now - Duration::days(10)), "fp-a", None),
        with_token(labelled("b", now - Duration::days(1)), "fp-b", Some("j-b")),
        labelled("x-new", now - Duration::days(1)),
        with_token(labelled("a-new1", now), "fp-a", Some("j-a")),
        with_token(
            with_token(labelled("a-new2", now), "fp-a", None),
            "fp-e",
            None,
        ),
    ];
    store.append("t", &events, false).await.unwrap();
    let q = |l: &[&str]| l.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>();
    let newest_first = q(&["a-new2", "a-new1", "a-mid", "a-old"]);
    for limit in [1, 2, 100] {
        assert_eq!(token_walk(&store, "fp-a", false, limit).await, newest_first);
        let mut oldest_first = newest_first.clone();
        oldest_first.reverse();
        assert_eq!(token_walk(&store, "fp-a", true, limit).await, oldest_first);
    }
    assert_eq!(
        token_walk(&store, "j-a", false, 100).await,
        q(&["a-new1", "a-old"])
    );
    assert_eq!(token_walk(&store, "fp-b", false, 100).await, q(&["b"]));
    assert!(token_walk(&store, "nobody", false, 100).await.is_empty());
    let stats = store
        .stats(
            &Query {
                token: Some("fp-a".into()),
                ..Query::default()
            },
            86_400_000 * 1000,
        )
        .await
        .unwrap();
    assert_eq!(stats.iter().map(|r| r.count).sum::<u64>(), 4);
    assert_eq!(token_keys(&pool, "fp-a").await, 4);
    assert_eq!(token_keys(&pool, "j-a").await, 2);
    // An event with no token has no key.
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM event_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(all, 4 + 2 + 2 + 1);

    // A key whose hash collides with another event's (forged here: the hash of "fp-z" filed
    // under event "b"): the body is checked, so "b" is not an event of "fp-z".
    sqlx::query(
        "INSERT INTO event_tokens (day, key, seq) \
         SELECT time_ms / 86400000, hashtextextended('fp-z', 0), seq FROM events WHERE id = $1",
    )
    .bind(events[3].id.to_string())
    .execute(&pool)
    .await
    .unwrap();
    assert!(token_walk(&store, "fp-z", false, 10).await.is_empty());
    let collided = store
        .stats(
            &Query {
                token: Some("fp-z".into()),
                ..Query::default()
            },
            86_400_000 * 1000,
        )
        .await
        .unwrap();
    assert_eq!(collided.iter().map(|r| r.count).sum::<u64>(), 0);
    sqlx::query("DELETE FROM event_tokens WHERE key = hashtextextended('fp-z', 0)")
        .execute(&pool)
        .await
        .unwrap();

    // By hand, through `events`: an insert brings its keys, an update moves them, a delete
    // takes them.
    let hand = with_token(labelled("hand", now), "fp-c", None);
    sqlx::query(
        "INSERT INTO events (id, time_ms, type, outcome, body) \
         VALUES ($1, $2, 'auth.login', 'success', $3::jsonb)",
    )
    .bind(hand.id.to_string())
    .bind(unix_ms(now))
    .bind(serde_json::to_string(&hand).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(token_walk(&store, "fp-c", false, 10).await, q(&["hand"]));
    sqlx::query(
        "UPDATE events SET body = jsonb_set(body, '{tokens,0,fingerprint}', '\"fp-d\"') \
         WHERE id = $1",
    )
    .bind(hand.id.to_string())
    .execute(&pool)
    .await
    .unwrap();
    assert!(token_walk(&store, "fp-c", false, 10).await.is_empty());
    assert_eq!(token_walk(&store, "fp-d", false, 10).await, q(&["hand"]));
    sqlx::query("DELETE FROM events WHERE id = $1")
        .bind(hand.id.to_string())
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(token_keys(&pool, "fp-d").await, 0);

    // Retention at 30 days drops the 40-day-old partition: its events' keys go with it.
    let signer = test_signer();
    store
        .checkpoint("t", authtrail::store::CheckpointKind::Periodic, &signer)
        .await
        .unwrap();
    let policy = Policy {
        default: Keep::For(std::time::Duration::from_secs(30 * 86_400)),
        rules: Vec::new(),
        legal_hold: Vec::new(),
        interval: std::time::Duration::from_secs(3600),
        batch: 100,
    };
    let done = retention::purge(&store, &policy, Some(&signer), now, false)
        .await
        .unwrap();
    assert_eq!(done.deleted, 2);
    assert!(!partitions(&pool)
        .await
        .contains_key(&day_partition(now - Duration::days(40))));
    assert_eq!(token_keys(&pool, "fp-a").await, 3);
    assert_eq!(token_keys(&pool, "j-a").await, 1);
    assert_eq!(
        token_walk(&store, "fp-a", true, 1).await,
        q(&["a-mid", "a-new1", "a-new2"])
    );
    assert_verifies(&store).await;
    pool.close().await;
    store.close().await;
}
