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
