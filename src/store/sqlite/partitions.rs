//! Time partitions of the SQLite trail: one table per UTC day of event time, so the indexes an
//! append writes stay the size of a day, not of the whole trail.
//!
//! Seven of an event's index keys are random (its id, actor, target, address, request id, token
//! keys): once those indexes outgrow the page cache, every insert reads and dirties pages all
//! over the file, and the append rate falls as the trail grows. A day's partition keeps them
//! small; older partitions are only read.
//!
//! The tables: `partitions` lists each partition (`name`, `[from_ms, to_ms)` of event time);
//! each partition `P` has the columns and indexes `events` had (`P_app`, `P_time`, ...), its
//! token keys in `P_tokens` and the trigger that removes them with their event. `seq` stays one
//! sequence over all of them: the writer hands it out from `seq_counter` (never reused, like
//! AUTOINCREMENT). A trail from before partitions is one partition, `events_legacy`, holding
//! every time up to the end of the day of its newest event.
//!
//! Reads see one relation: the view `events` is the `UNION ALL` of the partitions (and
//! `event_tokens` of their token tables), rebuilt whenever a partition is added, so SQL written
//! against `events` keeps working. The store itself runs its queries partition by partition, each
//! with the plan of a single table (see `select` in `sqlite.rs`): through the view, SQLite merges
//! the partitions' index walks but copies every row up one merge level per partition, and a
//! view's aggregate reads every row instead of the covering index.
//! SQLite refuses a compound SELECT of more than 500 terms, so past [`GROUP`] partitions the view
//! unions views of [`GROUP`] each. `INSTEAD OF` triggers route an INSERT, UPDATE or DELETE on
//! the view to the partitions, for whoever edits the trail by hand.
//!
//! An event's partition follows from its time alone, and its time never changes: a replayed
//! event lands where its first copy is, so each partition's `UNIQUE (id)` still refuses a
//! duplicate. One position per chain is unique within a partition; across partitions the single
//! writer (one `BEGIN IMMEDIATE` transaction at a time) links each event after the chain's head,
//! and `verify` reports a forked position anyway.

use std::fmt::Write as _;

use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::store::Error;

// The period of a partition: one UTC day.
pub(crate) use crate::store::query::DAY_MS;
/// Partitions per group view (SQLite's limit on compound SELECT terms is 500).
const GROUP: usize = 100;

/// The columns of every partition, in the order the `events` view lists them.
pub(crate) const COLUMNS: &str = "seq, id, time_ms, type, stage, outcome, reason, app, actor_id, \
     target_kind, target_id, route, status, ip, request_id, chain_instance, chain_n, chain_hash, \
     body";
const COLUMN_NAMES: [&str; 19] = [
    "seq",
    "id",
    "time_ms",
    "type",
    "stage",
    "outcome",
    "reason",
    "app",
    "actor_id",
    "target_kind",
    "target_id",
    "route",
    "status",
    "ip",
    "request_id",
    "chain_instance",
    "chain_n",
    "chain_hash",
    "body",
];

pub(crate) use crate::store::pages::Partition;

/// The partition holding `time_ms` among `parts` (sorted by `from_ms`, disjoint).
pub(crate) fn find(parts: &[Partition], time_ms: i64) -> Option<&Partition> {
    crate::store::pages::find_index(parts, time_ms).map(|i| &parts[i])
}

/// The partitions, by time.
pub(crate) async fn load(conn: &mut SqliteConnection) -> Result<Vec<Partition>, Error> {
    let rows = sqlx::query(
        "SELECT name, from_ms, to_ms, min_seq, max_seq FROM partitions ORDER BY from_ms",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::backend("partitions"))?;
    rows.iter()
        .map(|r| {
            let (min, max): (Option<i64>, Option<i64>) = (r.try_get(3)?, r.try_get(4)?);
            Ok(Partition {
                name: r.try_get(0)?,
                from_ms: r.try_get(1)?,
                to_ms: r.try_get(2)?,
                seqs: min.zip(max),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::backend("partitions"))
}

/// Widen partition `name`'s seq bounds to hold `[lo, hi]`.
pub(crate) async fn note_seqs(
    conn: &mut SqliteConnection,
    name: &str,
    lo: i64,
    hi: i64,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE partitions SET min_seq = min(coalesce(min_seq, ?1), ?1), \
         max_seq = max(coalesce(max_seq, ?2), ?2) WHERE name = ?3",
    )
    .bind(lo)
    .bind(hi)
    .bind(name.to_string())
    .execute(&mut *conn)
    .await
    .map_err(Error::backend("insert"))?;
    Ok(())
}

/// The schema's version number: it changes whenever any connection changes the schema (a
/// partition added), so a cached list of partitions is reloaded only then.
pub(crate) async fn schema_version(conn: &mut SqliteConnection) -> Result<i64, Error> {
    sqlx::query_scalar("PRAGMA schema_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::backend("partitions"))
}

/// Create the partitions that hold `times` (Unix ms) where none does yet, and rebuild the views
/// over them. Runs in the caller's write transaction. Returns whether anything was created.
pub(crate) async fn ensure(
    conn: &mut SqliteConnection,
    parts: &mut Vec<Partition>,
    times: impl IntoIterator<Item = i64>,
) -> Result<bool, Error> {
    let mut created = false;
    for t in times {
        if find(parts, t).is_some() {
            continue;
        }
        let day = t - t.rem_euclid(DAY_MS);
        // Clamped to its neighbours: a partition of another span (the legacy one) may already
        // hold part of the day.
        let i = parts.partition_point(|p| p.from_ms <= t);
        let from = i.checked_sub(1).map_or(day, |j| day.max(parts[j].to_ms));
        let to = parts.get(i).map_or(day.saturating_add(DAY_MS), |p| {
            day.saturating_add(DAY_MS).min(p.from_ms)
        });
        let mut name = name_of(day);
        if from != day || parts.iter().any(|p| p.name == name) {
            name = format!("events_t{}", from.to_string().replace('-', "m"));
        }
        sqlx::raw_sql(AssertSqlSafe(table_ddl(&name, from, to)))
            .execute(&mut *conn)
            .await
            .map_err(Error::backend("create partition"))?;
        tracing::debug!(partition = %name, from_ms = from, to_ms = to, "sqlite store: partition created");
        parts.insert(
            i,
            Partition {
                name,
                from_ms: from,
                to_ms: to,
                seqs: None,
            },
        );
        created = true;
    }
    if created {
        rebuild_views(conn, parts).await?;
    }
    Ok(created)
}

/// `events_YYYYMMDD` for the day starting at `day_ms`; `events_dN` (N days from the epoch,
/// `m` for minus) outside years 0–9999.
fn name_of(day_ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(day_ms.div_euclid(1000)) {
        Ok(d) if (0..=9999).contains(&d.year()) => format!(
            "events_{:04}{:02}{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        ),
        _ => format!(
            "events_d{}",
            day_ms.div_euclid(DAY_MS).to_string().replace('-', "m")
        ),
    }
}

/// The table, indexes, token keys and their trigger of partition `n`, and its catalog row.
/// The same shapes as migrations 0001–0006 gave `events` (see there for why each index).
fn table_ddl(n: &str, from_ms: i64, to_ms: i64) -> String {
    format!(
        "CREATE TABLE {n} (
            seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, time_ms INTEGER NOT NULL,
            type TEXT NOT NULL, stage TEXT, outcome TEXT NOT NULL, reason TEXT, app TEXT,
            actor_id TEXT, target_kind TEXT, target_id TEXT, route TEXT, status INTEGER, ip TEXT,
            request_id TEXT, chain_instance TEXT, chain_n INTEGER, chain_hash TEXT,
            body TEXT NOT NULL);
        CREATE INDEX {n}_app ON {n} (app, seq, time_ms);
        CREATE INDEX {n}_actor ON {n} (actor_id, seq, time_ms);
        CREATE INDEX {n}_target ON {n} (target_id, seq, time_ms);
        CREATE INDEX {n}_type ON {n} (type, seq, time_ms);
        CREATE INDEX {n}_outcome_type ON {n} (outcome, type);
        CREATE INDEX {n}_outcome_seq ON {n} (outcome, seq, type);
        CREATE INDEX {n}_request_id ON {n} (request_id);
        CREATE INDEX {n}_ip ON {n} (ip);
        CREATE INDEX {n}_time ON {n} (time_ms, type, outcome, app);
        CREATE UNIQUE INDEX {n}_chain ON {n} (chain_instance, chain_n);
        CREATE TABLE {n}_tokens (key TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (key, seq))
            WITHOUT ROWID;
        CREATE TRIGGER {n}_tokens_delete AFTER DELETE ON {n}
        WHEN instr(OLD.body, '\"tokens\":[') > 0
        BEGIN
            DELETE FROM {n}_tokens WHERE seq = OLD.seq AND key IN (
                SELECT k.value FROM json_each(OLD.body, '$.tokens') AS t,
                    json_each(json_array(t.value ->> 'fingerprint', t.value ->> 'jti')) AS k);
        END;
        INSERT INTO partitions (name, from_ms, to_ms) VALUES ('{n}', {from_ms}, {to_ms});"
    )
}

/// `SELECT ... UNION ALL ...` of `select(part)` over `parts`, grouped by [`GROUP`] into views
/// named `{group_prefix}N` (returned as the DDL that creates them).
fn union(
    parts: &[Partition],
    group_prefix: &str,
    select: impl Fn(&str) -> String,
    groups_ddl: &mut String,
) -> String {
    if parts.len() <= GROUP {
        return parts
            .iter()
            .map(|p| select(&p.name))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
    }
    let mut arms = Vec::new();
    for (g, chunk) in parts.chunks(GROUP).enumerate() {
        let body = chunk
            .iter()
            .map(|p| select(&p.name))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let _ = writeln!(groups_ddl, "CREATE VIEW {group_prefix}{g} AS {body};");
        arms.push(format!("SELECT * FROM {group_prefix}{g}"));
    }
    arms.join(" UNION ALL ")
}

/// Drop and create the `events` and `event_tokens` views (and their groups and triggers) over
/// `parts`.
pub(crate) async fn rebuild_views(
    conn: &mut SqliteConnection,
    parts: &[Partition],
) -> Result<(), Error> {
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'view' \
         AND (name IN ('events', 'event_tokens') OR name GLOB 'events_view_*')",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::backend("partitions"))?;
    let mut sql = String::new();
    for v in &old {
        let _ = writeln!(sql, "DROP VIEW {v};");
    }
    let mut groups = String::new();
    let (events, tokens) = if parts.is_empty() {
        let nulls = COLUMN_NAMES
            .iter()
            .map(|c| format!("NULL AS {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        (
            format!("SELECT {nulls} WHERE 0"),
            "SELECT NULL AS key, NULL AS seq WHERE 0".to_string(),
        )
    } else {
        (
            union(
                parts,
                "events_view_e",
                |p| format!("SELECT {COLUMNS} FROM {p}"),
                &mut groups,
            ),
            union(
                parts,
                "events_view_t",
                |p| format!("SELECT key, seq FROM {p}_tokens"),
                &mut groups,
            ),
        )
    };
    sql.push_str(&groups);
    let _ = writeln!(sql, "CREATE VIEW events AS {events};");
    let _ = writeln!(sql, "CREATE VIEW event_tokens AS {tokens};");
    sql.push_str(&triggers(parts));
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(Error::backend("partitions"))?;
    Ok(())
}

/// `INSTEAD OF` triggers on the `events` view: an INSERT goes to the partition of its time (a
/// `seq` left out is the next one), an UPDATE or DELETE to the partition holding the row.
fn triggers(parts: &[Partition]) -> String {
    let new_cols = COLUMN_NAMES
        .iter()
        .map(|c| {
            if *c == "seq" {
                "coalesce(NEW.seq, (SELECT last FROM seq_counter))".to_string()
            } else {
                format!("NEW.{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let set = COLUMN_NAMES
        .iter()
        .map(|c| format!("{c} = NEW.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut insert = String::from(
        "CREATE TRIGGER events_insert INSTEAD OF INSERT ON events BEGIN\n\
         SELECT RAISE(ABORT, 'no partition holds this time_ms') WHERE NOT EXISTS \
         (SELECT 1 FROM partitions WHERE NEW.time_ms >= from_ms AND NEW.time_ms < to_ms);\n\
         UPDATE seq_counter SET last = CASE WHEN NEW.seq IS NULL THEN last + 1 \
         WHEN NEW.seq > last THEN NEW.seq ELSE last END;\n",
    );
    let mut update =
        String::from("CREATE TRIGGER events_update INSTEAD OF UPDATE ON events BEGIN\n");
    let mut delete =
        String::from("CREATE TRIGGER events_delete INSTEAD OF DELETE ON events BEGIN\n");
    for p in parts {
        let n = &p.name;
        let _ = writeln!(
            insert,
            "INSERT INTO {n} ({COLUMNS}) SELECT {new_cols} \
             WHERE NEW.time_ms >= {} AND NEW.time_ms < {};",
            p.from_ms, p.to_ms
        );
        let _ = writeln!(
            update,
            "UPDATE {n} SET {set} WHERE seq = OLD.seq;\n\
             UPDATE partitions SET min_seq = min(coalesce(min_seq, NEW.seq), NEW.seq), \
             max_seq = max(coalesce(max_seq, NEW.seq), NEW.seq) \
             WHERE name = '{n}' AND EXISTS (SELECT 1 FROM {n} WHERE seq = NEW.seq);"
        );
        let _ = writeln!(delete, "DELETE FROM {n} WHERE seq = OLD.seq;");
    }
    if parts.is_empty() {
        update.push_str("SELECT 1;\n");
        delete.push_str("SELECT 1;\n");
    }
    // The inserted row's partition (found by its time) widens its seq bounds.
    insert.push_str(
        "UPDATE partitions SET \
         min_seq = min(coalesce(min_seq, coalesce(NEW.seq, (SELECT last FROM seq_counter))), \
         coalesce(NEW.seq, (SELECT last FROM seq_counter))), \
         max_seq = max(coalesce(max_seq, coalesce(NEW.seq, (SELECT last FROM seq_counter))), \
         coalesce(NEW.seq, (SELECT last FROM seq_counter))) \
         WHERE NEW.time_ms >= from_ms AND NEW.time_ms < to_ms;\n",
    );
    format!("{insert}END;\n{update}END;\n{delete}END;\n")
}

/// `sql` (built against `events`) reading only `table` instead.
pub(crate) fn on_table(sql: &str, table: &str) -> String {
    sql.replacen(" FROM events", &format!(" FROM {table}"), 1)
}

/// `sql` (built against `events`) reading only partition `table` and its token keys.
pub(crate) fn on_partition(sql: &str, table: &str) -> String {
    on_table(sql, table).replace(" FROM event_tokens", &format!(" FROM {table}_tokens"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, from_ms: i64, to_ms: i64) -> Partition {
        Partition {
            name: name.into(),
            from_ms,
            to_ms,
            seqs: None,
        }
    }

    #[test]
    fn names_are_days() {
        assert_eq!(name_of(0), "events_19700101");
        assert_eq!(name_of(1_764_806_400_000), "events_20251204");
        assert_eq!(name_of(-DAY_MS), "events_19691231");
        assert_eq!(name_of(300_000 * 365 * DAY_MS), "events_d109500000");
    }

    #[test]
    fn find_uses_half_open_ranges() {
        let parts = vec![
            part("a", i64::MIN, 0),
            part("b", 0, DAY_MS),
            part("c", 3 * DAY_MS, 4 * DAY_MS),
        ];
        assert_eq!(find(&parts, -1).unwrap().name, "a");
        assert_eq!(find(&parts, 0).unwrap().name, "b");
        assert_eq!(find(&parts, DAY_MS - 1).unwrap().name, "b");
        assert!(find(&parts, DAY_MS).is_none());
        assert_eq!(find(&parts, 3 * DAY_MS).unwrap().name, "c");
        assert!(find(&parts, 4 * DAY_MS).is_none());
        assert!(find(&[], 5).is_none());
    }

    #[test]
    fn overlap_of_windows() {
        let p = part("b", 10, 20);
        assert!(p.overlaps(None, None));
        assert!(p.overlaps(Some(19), None));
        assert!(!p.overlaps(Some(20), None));
        assert!(p.overlaps(None, Some(11)));
        assert!(!p.overlaps(None, Some(10)));
    }

    #[test]
    fn queries_are_pointed_at_tables() {
        let sql = "SELECT seq, id, body FROM events WHERE seq IN (SELECT seq FROM event_tokens)";
        assert_eq!(
            on_table(sql, "events_20260101"),
            "SELECT seq, id, body FROM events_20260101 WHERE seq IN (SELECT seq FROM event_tokens)"
        );
        assert_eq!(
            on_partition(sql, "events_20260101"),
            "SELECT seq, id, body FROM events_20260101 WHERE seq IN \
             (SELECT seq FROM events_20260101_tokens)"
        );
    }
}
