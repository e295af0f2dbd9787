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

/// Token keys are written by the writer (migration 0006 dropped the insert trigger): one row per
/// fingerprint and jti, also across many chunks of one batch and a repeated append, and a
/// deletion still removes them (the delete trigger stays).
#[tokio::test]
async fn token_keys_come_from_the_writer_and_leave_with_their_event() {
    use authtrail::event::{Outcome, TokenRef, TokenRole};
    use sqlx::Row;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let token = |fp: String, jti: Option<String>| TokenRef {
        role: TokenRole::Issued,
        kind: "access".into(),
        source: "response_body:/access_token".into(),
        fingerprint: fp,
        jti,
        sub: None,
        app: None,
        iat: None,
        exp: None,
        verified: true,
        invalid: None,
    };
    // 100 events (chunks of 64, 32 and 4 rows): every third without tokens, the rest with two
    // tokens of which one has a jti.
    let events: Vec<_> = (0..100)
        .map(|i| {
            let mut e = support::store_conformance::sample_event(
                &format!("e{i}"),
                "token.issue",
                Some("a1"),
                None,
                Outcome::Success,
                time::OffsetDateTime::now_utc(),
            );
            if i % 3 != 0 {
                e.tokens
                    .push(token(format!("fp-{i}-a"), Some(format!("jti-{i}"))));
                e.tokens.push(token(format!("fp-{i}-b"), None));
            }
            e
        })
        .collect();
    store.append("tok", &events, false).await.unwrap();
    assert_eq!(
        store.append("tok", &events, false).await.unwrap().inserted,
        0
    );
    store.close().await;

    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // No trigger reads a body on insert: the partition's only trigger removes keys on delete;
    // the others route hand-made edits of the `events` view.
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
            .fetch_all(&db)
            .await
            .unwrap();
    let day = time::OffsetDateTime::now_utc().date();
    let part = format!(
        "events_{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    );
    assert_eq!(
        triggers,
        [
            format!("{part}_tokens_delete"),
            "events_delete".into(),
            "events_insert".into(),
            "events_update".into()
        ]
    );
    let rows = sqlx::query(
        "SELECT t.key, e.body ->> '$.http.request_id' FROM event_tokens t JOIN events e USING (seq)",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let with_tokens = (0..100).filter(|i| i % 3 != 0).count();
    assert_eq!(
        rows.len(),
        3 * with_tokens,
        "fingerprints and jtis, once each"
    );
    for r in &rows {
        let (key, label): (String, String) = (r.get(0), r.get(1));
        let i = label.trim_start_matches('e');
        assert!(
            [format!("fp-{i}-a"), format!("fp-{i}-b"), format!("jti-{i}")].contains(&key),
            "{key} belongs to {label}"
        );
    }
    sqlx::query("DELETE FROM events WHERE body ->> '$.http.request_id' IN ('e1', 'e2', 'e3')")
        .execute(&db)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM event_tokens")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left as usize, 3 * (with_tokens - 2));
}
