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
