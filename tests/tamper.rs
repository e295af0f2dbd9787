//! The tamper suite, on SQLite and PostgreSQL: edit the trail behind the store's back the way an
//! attacker with database access would — update a field, delete a row, swap two rows, insert a
//! forged row, truncate the tail past a checkpoint — and check that `verify` fails and names the
//! event; and cut the tail together with the checkpoints after it, or delete a checkpoint from
//! the middle, and check that the numbering, the age limit and a witness name it. PostgreSQL cases skip (with a message) when `AUTHTRAIL_TEST_PG_URL` is unset outside CI.

mod support;

use std::sync::Arc;

use authtrail::store::sqlite::SqliteStore;
use std::time::Duration;

use authtrail::store::verify::{self, all_chain_rows, ProblemKind, Report, Witness};
use authtrail::store::{Checkpoint, CheckpointKind, EventStore, StoredRow};
use support::pg;
use support::store_conformance::{many, test_signer, trusted};
use time::OffsetDateTime;

/// A way to run raw SQL on the store's own database.
enum Db {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Db {
    async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Db::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Db::Pg(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }
}

/// A store with chain "t" of 20 events, checkpoints at #10 and #20, and raw access to it.
struct Trail {
    store: Arc<dyn EventStore>,
    db: Db,
    rows: Vec<StoredRow>,
    _guard: Box<dyn std::any::Any + Send>,
}

impl Trail {
    fn id(&self, n: i64) -> String {
        self.rows[(n - 1) as usize].columns.id.clone()
    }
    fn seq(&self, n: i64) -> i64 {
        self.rows[(n - 1) as usize].seq
    }

    async fn verify(&self) -> Report {
        verify::verify(self.store.as_ref(), &trusted())
            .await
            .unwrap()
    }

    async fn verify_with(&self, opts: verify::Options) -> Report {
        verify::verify(self.store.as_ref(), &opts).await.unwrap()
    }

    /// The stored checkpoints as a witness file holds them: one record a line.
    async fn witness(&self) -> Witness {
        let mut text = String::new();
        for (_, body) in self.store.checkpoints().await.unwrap() {
            let cp: Checkpoint = serde_json::from_str(&body).unwrap();
            text.push_str(&cp.record().to_string());
            text.push('\n');
        }
        let w = Witness::parse("witness.jsonl", &text);
        assert!(w.unreadable.is_empty(), "{:?}", w.unreadable);
        w
    }
}

async fn seed(store: Arc<dyn EventStore>, db: Db, guard: Box<dyn std::any::Any + Send>) -> Trail {
    let signer = test_signer();
    let events = many(20);
    for (i, chunk) in events.chunks(5).enumerate() {
        store.append("t", chunk, false).await.unwrap();
        if i % 2 == 1 {
            store
                .checkpoint("t", CheckpointKind::Periodic, &signer)
                .await
                .unwrap()
                .unwrap();
        }
    }
    let rows = all_chain_rows(store.as_ref(), "t").await.unwrap();
    assert_eq!(rows.len(), 20);
    let trail = Trail {
        store,
        db,
        rows,
        _guard: guard,
    };
    let clean = trail.verify().await;
    assert!(clean.ok(), "{:?}", clean.problems);
    trail
}

async fn sqlite_trail() -> Option<Trail> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    Some(seed(Arc::new(store), Db::Sqlite(pool), Box::new(dir)).await)
}

async fn pg_trail() -> Option<Trail> {
    let (store, schema) = pg::fresh().await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_with(schema.options())
        .await
        .unwrap();
    Some(seed(Arc::new(store), Db::Pg(pool), Box::new(schema)).await)
}

/// The first problem, checked to be of `kind` and to name event `id`.
fn assert_first(report: &Report, kind: ProblemKind, id: &str) {
    assert!(!report.ok(), "verify passed a tampered trail");
    let first = &report.problems[0];
    assert_eq!(first.kind, kind, "{:#?}", report.problems);
    assert_eq!(first.event.as_deref(), Some(id), "{:#?}", report.problems);
    assert!(first.message.contains(id), "{}", first.message);
}

async fn update_a_column(t: Trail) {
    t.db.exec("UPDATE events SET outcome = 'failure' WHERE chain_n = 7")
        .await;
    let r = t.verify().await;
    assert_first(&r, ProblemKind::Edited, &t.id(7));
    assert!(
        r.problems[0]
            .message
            .ends_with("was edited: column outcome holds \"failure\", its body says \"success\""),
        "{}",
        r.problems[0].message
    );
}

async fn update_the_body(t: Trail) {
    let sql = if t.db.is_pg() {
        "UPDATE events SET body = jsonb_set(body, '{source,user_agent}', '\"evil/1.0\"') WHERE chain_n = 3"
    } else {
        "UPDATE events SET body = json_set(body, '$.source.user_agent', 'evil/1.0') WHERE chain_n = 3"
    };
    t.db.exec(sql).await;
    let r = t.verify().await;
    assert_first(&r, ProblemKind::Edited, &t.id(3));
    assert!(r.problems[0]
        .message
        .ends_with("its content does not match its hash"));
}

async fn delete_a_row(t: Trail) {
    t.db.exec("DELETE FROM events WHERE chain_n = 5").await;
    let r = t.verify().await;
    // Named at the event that follows the hole, with the missing position.
    assert_first(&r, ProblemKind::Deleted, &t.id(6));
    assert_eq!(r.problems[0].n, Some(5));
    assert!(r.problems[0]
        .message
        .starts_with("chain \"t\": #5 is missing (deleted): event "));
}

async fn swap_two_rows(t: Trail) {
    // Give #8 the seq of #9 and the other way round: same rows, other order.
    let (s8, s9) = (t.seq(8), t.seq(9));
    let cols = "id, time_ms, type, stage, outcome, reason, app, actor_id, target_kind, target_id, \
                route, status, ip, request_id, chain_instance, chain_n, chain_hash, body";
    let overriding = if t.db.is_pg() {
        "OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    t.db.exec(&format!(
        "CREATE TEMP TABLE sw AS SELECT seq, {cols} FROM events WHERE seq IN ({s8}, {s9}); \
         DELETE FROM events WHERE seq IN ({s8}, {s9}); \
         INSERT INTO events (seq, {cols}) {overriding} \
           SELECT CASE WHEN seq = {s8} THEN {s9} ELSE {s8} END, {cols} FROM sw;"
    ))
    .await;
    let r = t.verify().await;
    assert_first(&r, ProblemKind::Reordered, &t.id(9));
    assert!(r.problems[0]
        .message
        .contains("is out of order: it is stored before #8"));
}

async fn insert_a_forged_row(t: Trail) {
    // The attacker drops the index that keeps one event per chain position, then slips a copy
    // of #12 with another id and actor into position #12. (SQLite keeps one such index per
    // partition.)
    match &t.db {
        Db::Sqlite(p) => {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name GLOB 'events_*_chain'",
            )
            .fetch_all(p)
            .await
            .unwrap();
            for name in names {
                t.db.exec(&format!("DROP INDEX {name}")).await;
            }
        }
        Db::Pg(_) => t.db.exec("DROP INDEX events_chain").await,
    }
    let forged_id = uuid::Uuid::now_v7().to_string();
    let mut body: serde_json::Value = serde_json::from_str(&t.rows[11].body).unwrap();
    body["id"] = forged_id.clone().into();
    body["actor"]["id"] = "mallory".into();
    let body = body.to_string().replace('\'', "''");
    let cast = if t.db.is_pg() { "::jsonb" } else { "" };
    t.db.exec(&format!(
        "INSERT INTO events (id, time_ms, type, stage, outcome, reason, app, actor_id, target_kind, \
           target_id, route, status, ip, request_id, chain_instance, chain_n, chain_hash, body) \
         SELECT '{forged_id}', time_ms, type, stage, outcome, reason, app, 'mallory', target_kind, \
           target_id, route, status, ip, request_id, chain_instance, chain_n, chain_hash, '{body}'{cast} \
         FROM events WHERE chain_n = 12"
    ))
    .await;
    let r = t.verify().await;
    assert!(!r.ok());
    assert_eq!(
        r.problems[0].event.as_deref(),
        Some(forged_id.as_str()),
        "{:#?}",
        r.problems
    );
    let inserted = r
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Inserted)
        .unwrap_or_else(|| panic!("no inserted-row problem: {:#?}", r.problems));
    assert_eq!(inserted.event.as_deref(), Some(forged_id.as_str()));
    assert!(inserted
        .message
        .contains(&format!("position #12 is already held by {}", t.id(12))));
}

/// A copy of `row` as a raw INSERT under another id, with the chain link `link` (`None`: no
/// link, in the columns or the body).
async fn insert_copy(t: &Trail, row: &StoredRow, link: Option<serde_json::Value>) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let mut body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
    body["id"] = id.clone().into();
    let (instance, n, hash) = match link {
        Some(link) => {
            let cols = (
                format!("'{}'", link["instance"].as_str().unwrap()),
                link["n"].as_i64().unwrap().to_string(),
                format!("'{}'", link["hash"].as_str().unwrap()),
            );
            body["chain"] = link;
            cols
        }
        None => {
            body.as_object_mut().unwrap().remove("chain");
            ("NULL".into(), "NULL".into(), "NULL".into())
        }
    };
    let body = body.to_string().replace('\'', "''");
    let cast = if t.db.is_pg() { "::jsonb" } else { "" };
    t.db.exec(&format!(
        "INSERT INTO events (id, time_ms, type, stage, outcome, reason, app, actor_id, target_kind, \
           target_id, route, status, ip, request_id, chain_instance, chain_n, chain_hash, body) \
         SELECT '{id}', time_ms, type, stage, outcome, reason, app, actor_id, target_kind, \
           target_id, route, status, ip, request_id, {instance}, {n}, {hash}, '{body}'{cast} \
         FROM events WHERE seq = {}",
        row.seq
    ))
    .await;
    id
}

async fn append_a_forged_link_and_an_unlinked_row(t: Trail) {
    // A row made to look like the next link, with a made-up hash; and one with no link at all.
    let head = &t.rows[19];
    let link = serde_json::json!({
        "instance": "t",
        "n": 21,
        "prev_hash": head.columns.chain_hash.clone().unwrap(),
        "hash": "ab".repeat(32),
    });
    let forged = insert_copy(&t, head, Some(link)).await;
    let bare = insert_copy(&t, &t.rows[4], None).await;
    let r = t.verify().await;
    assert_first(&r, ProblemKind::Edited, &forged);
    assert!(
        r.problems[0]
            .message
            .ends_with("its content does not match its hash"),
        "{}",
        r.problems[0].message
    );
    let unlinked = r
        .problems
        .iter()
        .find(|p| p.event.as_deref() == Some(bare.as_str()))
        .unwrap_or_else(|| panic!("unlinked row not named: {:#?}", r.problems));
    assert_eq!(unlinked.kind, ProblemKind::Inserted);
    assert!(
        unlinked
            .message
            .ends_with("has no chain link: it was inserted outside the writer"),
        "{}",
        unlinked.message
    );
}

async fn truncate_the_tail_past_a_checkpoint(t: Trail) {
    t.db.exec("DELETE FROM events WHERE chain_n > 15").await;
    let r = t.verify().await;
    // The checkpoint at #20 pinned the event that is gone.
    assert_first(&r, ProblemKind::Truncated, &t.id(20));
    assert_eq!(r.problems[0].n, Some(16));
    assert!(
        r.problems[0].message.contains("it ends at #15")
            && r.problems[0].message.ends_with("#16..#20 are missing"),
        "{}",
        r.problems[0].message
    );
}

async fn forge_a_checkpoint(t: Trail) {
    t.db.exec(r#"UPDATE checkpoints SET body = replace(body, '"count":10', '"count":11')"#)
        .await;
    let r = t.verify().await;
    assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
    assert_eq!(
        r.problems[0].kind,
        ProblemKind::Checkpoint,
        "{:#?}",
        r.problems
    );
    assert!(r.problems[0]
        .message
        .ends_with("has an invalid signature: it was edited or forged"));
}

/// The newest events deleted together with the checkpoints signed after them: the store alone
/// is consistent, but its newest checkpoint grows stale, and a witness names the cut.
async fn cut_the_tail_with_its_checkpoints(t: Trail) {
    let witness = t.witness().await;
    assert_eq!(witness.checkpoints.len(), 2);
    t.db.exec("DELETE FROM events WHERE chain_n > 10").await;
    t.db.exec("DELETE FROM checkpoints WHERE to_n > 10").await;

    // Once a checkpoint is overdue: stale, naming the newest checkpoint left.
    let r = t
        .verify_with(verify::Options {
            max_checkpoint_age: Some(Duration::from_secs(11 * 60)),
            now: Some(OffsetDateTime::now_utc() + time::Duration::hours(1)),
            ..trusted()
        })
        .await;
    assert!(!r.ok());
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    let stale = &r.problems[0];
    assert_eq!(stale.kind, ProblemKind::Stale);
    assert_eq!(stale.event.as_deref(), Some(t.id(10).as_str()));
    assert!(
        stale.message.contains("chain \"t\" is stale")
            && stale
                .message
                .contains("periodic checkpoint #1 of chain \"t\"")
            && stale.message.contains("pinning #10"),
        "{}",
        stale.message
    );

    // Against the witness: the missing checkpoint, and the events that are gone.
    let r = t
        .verify_with(verify::Options {
            witness: Some(witness),
            ..trusted()
        })
        .await;
    assert!(!r.ok());
    let missing = r
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Deleted)
        .unwrap_or_else(|| panic!("no missing checkpoint: {:#?}", r.problems));
    assert!(
        missing
            .message
            .contains("the witnessed periodic checkpoint #2 of chain \"t\"")
            && missing.message.contains("witness.jsonl line 2")
            && missing.message.contains("is not in the store"),
        "{}",
        missing.message
    );
    let cut = r
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Truncated)
        .unwrap_or_else(|| panic!("no cut named: {:#?}", r.problems));
    assert_eq!(cut.n, Some(11));
    assert_eq!(cut.event.as_deref(), Some(t.id(20).as_str()));
    assert!(
        cut.message.contains("chain \"t\" was cut")
            && cut.message.contains("stored chain ends at #10")
            && cut.message.ends_with("events #11..#20 are gone"),
        "{}",
        cut.message
    );
    assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
}

/// A checkpoint row deleted from between two others leaves a hole in the numbering.
async fn delete_a_middle_checkpoint(t: Trail) {
    t.store
        .checkpoint("t", CheckpointKind::Heartbeat, &test_signer())
        .await
        .unwrap()
        .unwrap();
    assert!(t.verify().await.ok());
    t.db.exec("DELETE FROM checkpoints WHERE to_n = 20 AND kind = 'periodic'")
        .await;
    let r = t.verify().await;
    assert!(!r.ok());
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    let p = &r.problems[0];
    assert_eq!(p.kind, ProblemKind::Deleted);
    assert!(
        p.message
            .contains("chain \"t\": checkpoint #2 is missing (deleted)")
            && p.message.contains("the heartbeat checkpoint #3")
            && p.message.contains("follows the periodic checkpoint #1"),
        "{}",
        p.message
    );
}

/// The tail cut under a running writer: the writer links its next checkpoint after the one it
/// signed last, so the hole shows in the store even though the chain goes on seamlessly.
async fn cut_under_a_running_writer(t: Trail) {
    let (_, body) = t.store.checkpoints().await.unwrap().pop().unwrap();
    let known: Checkpoint = serde_json::from_str(&body).unwrap();
    assert_eq!((known.checkpoint_n, known.to_n), (Some(2), 20));
    t.db.exec("DELETE FROM events WHERE chain_n > 10").await;
    t.db.exec("DELETE FROM checkpoints WHERE to_n > 10").await;
    t.store.append("t", &many(3), false).await.unwrap();
    let next = t
        .store
        .checkpoint_after("t", CheckpointKind::Periodic, &test_signer(), Some(&known))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.checkpoint_n, next.to_n), (Some(3), 13));
    assert_eq!(next.prev_checkpoint, Some(known.digest()));
    let r = t.verify().await;
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    assert_eq!(r.problems[0].kind, ProblemKind::Deleted);
    assert!(
        r.problems[0].message.contains(
            "chain \"t\": checkpoint #2 is missing (deleted): the periodic checkpoint #3"
        ),
        "{}",
        r.problems[0].message
    );
    // Without a gap to report, `after` changes nothing.
    let again = t
        .store
        .checkpoint_after("t", CheckpointKind::Heartbeat, &test_signer(), Some(&next))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.checkpoint_n, Some(4));
    assert_eq!(again.prev_checkpoint, Some(next.digest()));
}

/// An untouched trail passes against its witness and a generous age limit.
async fn a_clean_trail_passes_its_witness_and_age_limit(t: Trail) {
    let witness = t.witness().await;
    let r = t
        .verify_with(verify::Options {
            witness: Some(witness),
            max_checkpoint_age: Some(Duration::from_secs(11 * 60)),
            ..trusted()
        })
        .await;
    assert!(r.ok(), "{:#?}", r.problems);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

/// A witness line that was edited (or forged) is named, not trusted.
async fn a_forged_witness_line_is_named(t: Trail) {
    let mut witness = t.witness().await;
    witness.checkpoints[1].1.to_n = 25;
    let r = t
        .verify_with(verify::Options {
            witness: Some(witness),
            ..trusted()
        })
        .await;
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    assert_eq!(r.problems[0].kind, ProblemKind::Checkpoint);
    assert!(
        r.problems[0].message.contains("witness.jsonl line 2")
            && r.problems[0]
                .message
                .ends_with("has an invalid signature: it was edited or forged"),
        "{}",
        r.problems[0].message
    );
}

macro_rules! tamper_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let t = super::sqlite_trail().await.unwrap();
                    super::$name(t).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(t) = super::pg_trail().await else { return };
                    super::$name(t).await;
                }
            )*
        }
    };
}

tamper_tests!(
    update_a_column,
    update_the_body,
    delete_a_row,
    swap_two_rows,
    insert_a_forged_row,
    append_a_forged_link_and_an_unlinked_row,
    truncate_the_tail_past_a_checkpoint,
    forge_a_checkpoint,
    cut_the_tail_with_its_checkpoints,
    delete_a_middle_checkpoint,
    cut_under_a_running_writer,
    a_clean_trail_passes_its_witness_and_age_limit,
    a_forged_witness_line_is_named,
);
