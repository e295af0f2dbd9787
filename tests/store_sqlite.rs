//! The store conformance suite on SQLite files, plus what only a file-backed store can show.

mod support;

use std::sync::Arc;

use authtrail::store::sqlite::SqliteStore;
use authtrail::store::{self, EventStore, Query};
use support::fixtures::AppendFixtures;
use support::store_conformance::{many, store_conformance_tests};
use tempfile::TempDir;

/// A fresh store in its own temp dir; the dir is removed when the guard drops.
async fn open_fresh() -> (Arc<dyn EventStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(path.to_str().unwrap())
        .await
        .expect("open sqlite store");
    (Arc::new(store), dir)
}

store_conformance_tests!(open_fresh());

#[tokio::test]
async fn events_survive_reopen_and_seq_keeps_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let path = path.to_str().unwrap();
    let first = many(10);
    {
        let store = SqliteStore::open(path).await.unwrap();
        assert_eq!(store.append_fixtures(&first).await.unwrap(), 10);
        store.close().await;
    }

    let store = SqliteStore::open(path).await.unwrap();
    let before = store.query(&Query::default()).await.unwrap();
    assert_eq!(before.len(), 10);
    let max_seq = before[0].seq.unwrap();
    // Re-inserting after reopen is still idempotent, and new events continue the sequence.
    assert_eq!(store.append_fixtures(&first).await.unwrap(), 0);
    let second = many(3);
    assert_eq!(store.append_fixtures(&second).await.unwrap(), 3);
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
async fn open_by_url_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub.db");
    let store = store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn open_fails_on_an_unopenable_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("audit.db");
    let err = SqliteStore::open(path.to_str().unwrap())
        .await
        .expect_err("parent dir does not exist");
    assert!(
        err.to_string().starts_with("store open: "),
        "unexpected error: {err}"
    );
}

#[tokio::test]
async fn in_memory_store_works() {
    let store = SqliteStore::open(":memory:").await.unwrap();
    assert_eq!(store.append_fixtures(&many(3)).await.unwrap(), 3);
    assert_eq!(store.query(&Query::default()).await.unwrap().len(), 3);
}

#[tokio::test]
async fn readers_see_commits_while_the_writer_is_busy() {
    let (store, _dir) = open_fresh().await;
    let writes = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for chunk in many(2000).chunks(100) {
                store.append_fixtures(chunk).await.unwrap();
            }
        })
    };
    let mut last = 0;
    while !writes.is_finished() {
        let n = store
            .query(&Query {
                limit: 10_000,
                ..Query::default()
            })
            .await
            .unwrap()
            .len();
        assert!(n >= last && n % 100 == 0, "saw a partial batch: {n}");
        last = n;
    }
    writes.await.unwrap();
}
