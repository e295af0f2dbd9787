//! Retention: policies by app and event type with a default and a legal hold, purged in bounded
//! batches on SQLite and PostgreSQL with `verify` still passing afterwards (gaps inside chains,
//! moved prefixes, deleted heads, new links after them); a tampered link is never purged and a
//! real deletion is not hidden by a purge; the sidecar's background purge records `audit.purge`;
//! `authtrail purge --dry-run` shows what would go and `purge` deletes it.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use authtrail::event::{AuditEvent, Outcome};
use authtrail::ops::retention::{self, Keep, Policy, Rule};
use authtrail::store::sqlite::SqliteStore;
use authtrail::store::verify::{self, ProblemKind};
use authtrail::store::{CheckpointKind, EventStore, Query, TypeFilter};
use support::pg;
use support::store_conformance::{sample_event, test_signer, trusted};
use time::{Duration, OffsetDateTime};

const BIN: &str = env!("CARGO_BIN_EXE_authtrail");
const DAY: i64 = 86_400;

fn days(d: i64) -> StdDuration {
    StdDuration::from_secs((d * DAY) as u64)
}

/// 400 days by default; app-a's logins 7 days, other `auth.*` 60 days; account deletions
/// forever; app-x on legal hold. Batches of 3, so one run takes many transactions.
fn policy() -> Policy {
    Policy {
        default: Keep::For(days(400)),
        rules: vec![
            Rule {
                event_type: Some(TypeFilter::Exact("auth.login".into())),
                app: Some("app-a".into()),
                keep: Keep::For(days(7)),
            },
            Rule {
                event_type: Some(TypeFilter::Prefix("auth.".into())),
                app: None,
                keep: Keep::For(days(60)),
            },
            Rule {
                event_type: Some(TypeFilter::Exact("account.delete".into())),
                app: None,
                keep: Keep::Forever,
            },
        ],
        legal_hold: vec!["app-x".into()],
        interval: StdDuration::from_secs(3600),
        batch: 3,
    }
}

/// What the policy above says, written out by hand.
fn expect_due(event_type: &str, app: Option<&str>, age_days: i64) -> bool {
    if app == Some("app-x") {
        return false;
    }
    match (event_type, app) {
        ("auth.login", Some("app-a")) => age_days > 7,
        (t, _) if t.starts_with("auth.") => age_days > 60,
        ("account.delete", _) => false,
        _ => age_days > 400,
    }
}

const TYPES: [&str; 5] = [
    "auth.login",
    "token.refresh",
    "auth.logout",
    "account.delete",
    "auth.login",
];
const APPS: [Option<&str>; 4] = [Some("app-a"), Some("app-b"), Some("app-x"), None];
const AGES: [i64; 4] = [500, 100, 30, 3];

/// 80 events over two chains, every mix of type, app and age, with periodic checkpoints. Returns
/// the ids that the policy should purge and those it should keep.
async fn seed(
    store: &Arc<dyn EventStore>,
    now: OffsetDateTime,
) -> (HashSet<String>, HashSet<String>) {
    let signer = test_signer();
    let (mut due, mut kept) = (HashSet::new(), HashSet::new());
    let mut batch: Vec<(String, AuditEvent)> = Vec::new();
    for i in 0..80usize {
        let (t, app, age) = (TYPES[i % 5], APPS[(i / 5) % 4], AGES[(i / 20) % 4]);
        let time = now - Duration::days(age) + Duration::milliseconds(i as i64);
        let e = sample_event(&format!("e{i}"), t, app, Some("u"), Outcome::Success, time);
        if expect_due(t, app, age) {
            due.insert(e.id.to_string());
        } else {
            kept.insert(e.id.to_string());
        }
        batch.push((["c1", "c2"][i % 2].to_string(), e));
        if batch.len() == 8 {
            for chain in ["c1", "c2"] {
                let evs: Vec<AuditEvent> = batch
                    .iter()
                    .filter(|(c, _)| c == chain)
                    .map(|(_, e)| e.clone())
                    .collect();
                store.append(chain, &evs, false).await.unwrap();
                if i % 16 == 15 {
                    store
                        .checkpoint(chain, CheckpointKind::Periodic, &signer)
                        .await
                        .unwrap();
                }
            }
            batch.clear();
        }
    }
    assert!(
        due.len() > 10 && kept.len() > 10,
        "{} {}",
        due.len(),
        kept.len()
    );
    (due, kept)
}

async fn stored_ids(store: &Arc<dyn EventStore>) -> HashSet<String> {
    store
        .query(&Query {
            limit: 10_000,
            ..Query::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.to_string())
        .collect()
}

async fn assert_verifies(store: &Arc<dyn EventStore>) -> verify::Report {
    let report = verify::verify(store.as_ref(), &trusted()).await.unwrap();
    assert!(report.ok(), "{}", report.render());
    report
}

/// The heads of chains `c1` and `c2` (newest link positions).
async fn head_n(store: &Arc<dyn EventStore>, chain: &str) -> i64 {
    verify::all_chain_rows(store.as_ref(), chain)
        .await
        .unwrap()
        .last()
        .and_then(|r| r.columns.chain_n)
        .unwrap_or(0)
}

async fn purge_across_apps_and_types(store: Arc<dyn EventStore>) {
    let now = OffsetDateTime::now_utc();
    let (due, kept) = seed(&store, now).await;
    let signer = test_signer();
    let p = policy();

    // A dry run counts exactly what is due and deletes nothing.
    let dry = retention::purge(store.as_ref(), &p, Some(&signer), now, true)
        .await
        .unwrap();
    assert_eq!(dry.due_total(), due.len() as u64);
    assert_eq!(dry.deleted, 0);
    assert_eq!(stored_ids(&store).await.len(), due.len() + kept.len());
    let app_a_logins = dry
        .due
        .get(&(Some("app-a".to_string()), "auth.login".to_string()))
        .map_or(0, |t| t.count);
    assert!(app_a_logins > 0);
    assert!(!dry
        .due
        .keys()
        .any(|(app, _)| app.as_deref() == Some("app-x")));
    assert!(!dry.due.keys().any(|(_, t)| t == "account.delete"));

    let heads = (head_n(&store, "c1").await, head_n(&store, "c2").await);
    let done = retention::purge(store.as_ref(), &p, Some(&signer), now, false)
        .await
        .unwrap();
    assert_eq!(done.deleted, due.len() as u64);
    assert_eq!(done.chains, 2);
    // Batches of 3: many sealed transactions.
    assert!(done.checkpoints as u64 >= due.len() as u64 / 3, "{done:?}");
    assert_eq!(stored_ids(&store).await, kept);
    let report = assert_verifies(&store).await;
    assert_eq!(report.events, kept.len() as u64);

    let kinds: Vec<CheckpointKind> = store
        .checkpoints()
        .await
        .unwrap()
        .iter()
        .map(|(_, body)| {
            serde_json::from_str::<authtrail::store::Checkpoint>(body)
                .unwrap()
                .kind
        })
        .collect();
    assert!(kinds.contains(&CheckpointKind::Retention), "{kinds:?}");

    // Nothing more is due; new links go on after the old heads and still verify.
    let again = retention::purge(store.as_ref(), &p, Some(&signer), now, false)
        .await
        .unwrap();
    assert_eq!(again.deleted, 0);
    for (chain, head) in [("c1", heads.0), ("c2", heads.1)] {
        let a = store
            .append(
                chain,
                &[sample_event(
                    "new",
                    "auth.login",
                    Some("app-b"),
                    None,
                    Outcome::Failure,
                    now,
                )],
                false,
            )
            .await
            .unwrap();
        assert_eq!(a.head.unwrap().n, head + 1, "chain {chain}");
    }
    assert_verifies(&store).await;
}

async fn purged_heads_and_whole_chains(store: Arc<dyn EventStore>) {
    let now = OffsetDateTime::now_utc();
    let signer = test_signer();
    let old = now - Duration::days(1000);
    let recent = now - Duration::days(1);
    // Chain "h": four recent events, then an old one as its head. Chain "d": all old (a sidecar
    // that is gone).
    let mut h: Vec<AuditEvent> = (0..4)
        .map(|i| {
            sample_event(
                &format!("h{i}"),
                "token.refresh",
                Some("app-b"),
                None,
                Outcome::Success,
                recent,
            )
        })
        .collect();
    h.push(sample_event(
        "h-old",
        "token.refresh",
        Some("app-b"),
        None,
        Outcome::Success,
        old,
    ));
    store.append("h", &h, false).await.unwrap();
    store
        .checkpoint("h", CheckpointKind::Periodic, &signer)
        .await
        .unwrap();
    let d: Vec<AuditEvent> = (0..5)
        .map(|i| {
            sample_event(
                &format!("d{i}"),
                "token.refresh",
                None,
                None,
                Outcome::Success,
                old,
            )
        })
        .collect();
    store.append("d", &d, false).await.unwrap();

    let done = retention::purge(store.as_ref(), &policy(), Some(&signer), now, false)
        .await
        .unwrap();
    assert_eq!(done.deleted, 6);
    assert_verifies(&store).await;
    // The chain goes on after its purged head; a purged-away chain starts after its boundary.
    let a = store
        .append(
            "h",
            &[sample_event(
                "h5",
                "auth.login",
                None,
                None,
                Outcome::Success,
                now,
            )],
            false,
        )
        .await
        .unwrap();
    assert_eq!(a.head.unwrap().n, 6);
    let b = store
        .append(
            "d",
            &[sample_event(
                "d5",
                "auth.login",
                None,
                None,
                Outcome::Success,
                now,
            )],
            false,
        )
        .await
        .unwrap();
    assert_eq!(b.head.unwrap().n, 6);
    let report = assert_verifies(&store).await;
    assert_eq!(report.events, 6);
}

#[tokio::test]
async fn sqlite_retention_across_apps_and_types_keeps_verify_passing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap())
        .await
        .unwrap();
    purge_across_apps_and_types(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_retention_across_apps_and_types_keeps_verify_passing() {
    let Some((store, _schema)) = pg::fresh().await else {
        return;
    };
    purge_across_apps_and_types(Arc::new(store)).await;
}

#[tokio::test]
async fn sqlite_purged_heads_and_chains_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap())
        .await
        .unwrap();
    purged_heads_and_whole_chains(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_purged_heads_and_chains_go_on() {
    let Some((store, _schema)) = pg::fresh().await else {
        return;
    };
    purged_heads_and_whole_chains(Arc::new(store)).await;
}

/// A day every event of which is due goes whole (one `DROP TABLE`, both chains' links in it
/// sealed); a day holding an event on legal hold is purged event by event; `verify` passes, and a
/// late event of the dropped day is stored again.
async fn due_days_are_dropped_whole(store: Arc<dyn EventStore>) {
    let now = OffsetDateTime::now_utc();
    let signer = test_signer();
    let policy = Policy {
        default: Keep::For(days(30)),
        rules: Vec::new(),
        legal_hold: vec!["app-x".into()],
        interval: StdDuration::from_secs(3600),
        batch: 50,
    };
    let at_one = |age: i64| (now - Duration::days(age)).replace_time(time::macros::time!(01:00));
    let (old, mid, recent) = (at_one(100), at_one(50), at_one(1));
    let ms = |t: OffsetDateTime| authtrail::event::unix_millis(t);
    let event = |label: String, app: &str, t: OffsetDateTime| {
        sample_event(
            &label,
            "auth.login",
            Some(app),
            Some("u"),
            Outcome::Success,
            t,
        )
    };
    for chain in ["c1", "c2"] {
        let mut evs: Vec<AuditEvent> = (0..6)
            .map(|i| {
                event(
                    format!("{chain}-old-{i}"),
                    "app-a",
                    old + Duration::minutes(i),
                )
            })
            .collect();
        evs.push(event(format!("{chain}-mid-a"), "app-a", mid));
        evs.push(event(
            format!("{chain}-mid-x"),
            "app-x",
            mid + Duration::minutes(1),
        ));
        evs.push(event(format!("{chain}-recent"), "app-a", recent));
        store.append(chain, &evs, false).await.unwrap();
        store
            .checkpoint(chain, CheckpointKind::Periodic, &signer)
            .await
            .unwrap();
    }
    let holding = |parts: &[authtrail::store::PartitionInfo], t: OffsetDateTime| {
        parts
            .iter()
            .find(|p| p.from_ms <= ms(t) && ms(t) < p.to_ms)
            .map(|p| p.name.clone())
    };
    let before = store.partitions().await.unwrap();
    let old_part = holding(&before, old).expect("a partition of the old day");
    let mid_part = holding(&before, mid).expect("a partition of the middle day");

    let summary = retention::purge(store.as_ref(), &policy, Some(&signer), now, false)
        .await
        .unwrap();
    assert_eq!(summary.partitions, 1, "{summary:?}");
    assert_eq!(summary.deleted, 12 + 2, "{summary:?}");
    assert_eq!(summary.due_total(), 14);
    assert_eq!(summary.chains, 2);
    let after = store.partitions().await.unwrap();
    assert!(after.iter().all(|p| p.name != old_part), "{after:?}");
    assert!(after.iter().any(|p| p.name == mid_part), "{after:?}");
    let left: HashSet<String> = store
        .query(&Query {
            limit: 100,
            ..Query::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.http.request_id)
        .collect();
    let want: HashSet<String> = ["c1-mid-x", "c1-recent", "c2-mid-x", "c2-recent"]
        .map(String::from)
        .into();
    assert_eq!(left, want);
    assert_verifies(&store).await;

    // A late event of the dropped day (an old spool replayed) is stored in a new partition.
    let late = event("late".into(), "app-a", old + Duration::hours(2));
    assert_eq!(
        store.append("c1", &[late], false).await.unwrap().inserted,
        1
    );
    assert!(holding(&store.partitions().await.unwrap(), old).is_some());
    assert_verifies(&store).await;
}

#[tokio::test]
async fn sqlite_due_days_are_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap())
        .await
        .unwrap();
    due_days_are_dropped_whole(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_due_days_are_dropped_whole() {
    let Some((store, _schema)) = pg::fresh().await else {
        return;
    };
    due_days_are_dropped_whole(Arc::new(store)).await;
}

#[tokio::test]
async fn a_tampered_link_is_kept_and_a_real_deletion_is_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(path.to_str().unwrap()).await.unwrap());
    let now = OffsetDateTime::now_utc();
    let old = now - Duration::days(1000);
    let recent = now - Duration::days(1);
    // #1..#3 old, #4..#8 recent, #9 old, #10 recent.
    let mut evs = Vec::new();
    for i in 0..10 {
        let t = if i < 3 || i == 8 { old } else { recent };
        evs.push(sample_event(
            &format!("e{i}"),
            "token.refresh",
            Some("app-b"),
            None,
            Outcome::Success,
            t,
        ));
    }
    store.append("t", &evs, false).await.unwrap();
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // Someone edited #2's body: purging it would launder the edit.
    let edit = format!(
        "UPDATE events SET body = replace(body, 'test-agent/1.0', 'forged-agent') WHERE id = '{}'",
        evs[1].id
    );
    sqlx::query(sqlx::AssertSqlSafe(edit))
        .execute(&raw)
        .await
        .unwrap();
    let done = retention::purge(store.as_ref(), &policy(), Some(&test_signer()), now, false)
        .await
        .unwrap();
    assert_eq!((done.deleted, done.tampered), (3, 1));
    let report = verify::verify(store.as_ref(), &trusted()).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{}", report.render());
    assert_eq!(report.problems[0].kind, ProblemKind::Edited);
    assert_eq!(
        report.problems[0].event.as_deref(),
        Some(evs[1].id.to_string().as_str())
    );

    // A row deleted behind the store's back is still named, purge gaps or not.
    let del = format!("DELETE FROM events WHERE id = '{}'", evs[5].id);
    sqlx::query(sqlx::AssertSqlSafe(del))
        .execute(&raw)
        .await
        .unwrap();
    let report = verify::verify(store.as_ref(), &trusted()).await.unwrap();
    let deleted = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Deleted)
        .unwrap_or_else(|| panic!("{}", report.render()));
    assert_eq!(deleted.n, Some(6));
    raw.close().await;
}

const SEED: &str = "4242424242424242424242424242424242424242424242424242424242424242";

/// Old events of app-a (due) and app-x (on hold), and recent ones, in chain "old".
async fn seed_file(db: &std::path::Path) -> (usize, usize) {
    let store = SqliteStore::open(db.to_str().unwrap()).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let mut evs = Vec::new();
    for i in 0..12 {
        let (app, age) = match i % 3 {
            0 => ("app-a", 40),
            1 => ("app-x", 40),
            _ => ("app-a", 1),
        };
        let time = now - Duration::days(age);
        evs.push(sample_event(
            &format!("s{i}"),
            "auth.login",
            Some(app),
            Some("u"),
            Outcome::Failure,
            time,
        ));
    }
    store.append("old", &evs, false).await.unwrap();
    store.close().await;
    (4, 8)
}

fn retention_yaml(db: &std::path::Path, interval: &str) -> String {
    format!(
        "store:\n  url: sqlite://{}\n  flush_interval: 20ms\n  checkpoint: {{ signing_key: \"{SEED}\" }}\n\
         retention:\n  default: 30d\n  interval: {interval}\n  legal_hold: [app-x]\n  rules:\n    - {{ event: \"account.*\", keep: forever }}\n",
        db.display()
    )
}

#[tokio::test]
async fn the_sidecar_purges_in_the_background_and_records_audit_purge() {
    let up = support::upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let (due, kept) = seed_file(&db).await;
    let yaml = format!(
        "upstream: http://{}\n{}routes: []\n",
        up.addr,
        retention_yaml(&db, "200ms")
    );
    let cfg = authtrail::config::load_str(&yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    let mut sc = support::harness::start_config(cfg, db.clone(), dir).await;
    let mut purge_event = None;
    for _ in 0..300 {
        if let Some(e) = sc
            .events()
            .await
            .into_iter()
            .find(|e| e.event_type == "audit.purge")
        {
            purge_event = Some(e);
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let purge_event = purge_event.expect("an audit.purge event within 6s");
    assert_eq!(purge_event.outcome, Outcome::Success);
    assert_eq!(purge_event.details["deleted"], due as u64);
    assert_eq!(purge_event.details["by_type"]["auth.login"], due as u64);
    assert_eq!(
        purge_event.details["legal_hold"],
        serde_json::json!(["app-x"])
    );
    assert_eq!(purge_event.http.route, "retention");
    sc.stop().await;

    let events = sc.events().await;
    let old: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.event_type == "auth.login")
        .collect();
    assert_eq!(old.len(), kept);
    let recent = OffsetDateTime::now_utc() - Duration::days(2);
    assert!(old
        .iter()
        .all(|e| e.app.as_ref().unwrap().value == "app-x" || e.time > recent));
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(db.to_str().unwrap()).await.unwrap());
    assert_verifies(&store).await;
}

#[tokio::test]
async fn purge_command_dry_run_shows_what_would_go_then_purges() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let (due, kept) = seed_file(&db).await;
    let config = dir.path().join("authtrail.yaml");
    std::fs::write(
        &config,
        format!(
            "upstream: http://127.0.0.1:9\n{}",
            retention_yaml(&db, "1h")
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&["purge", "--config", cfg, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("APP    TYPE        EVENTS  OLDEST"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("app-a  auth.login  {due}       ")),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[2], format!("dry run: {due} events would be purged"));
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(db.to_str().unwrap()).await.unwrap());
    assert_eq!(stored_ids(&store).await.len(), due + kept);

    let (code, out, err) = run(&["purge", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.ends_with(&format!(
            "purged {due} events (1 chains, 2 signed checkpoints, 0 partitions dropped whole)\n"
        )),
        "{out}"
    );
    let (code, out, _) = run(&["verify", "--config", cfg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 2 chains"), "{out}");
    let events = store
        .query(&Query {
            limit: 100,
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), kept + 1);
    assert_eq!(events[0].event_type, "audit.purge");
    assert_eq!(events[0].details["deleted"], due as u64);

    let (code, out, _) = run(&["purge", "--config", cfg, "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.ends_with("dry run: 0 events would be purged\n"),
        "{out}"
    );
}
