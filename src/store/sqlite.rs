//! The SQLite backend: one file in WAL mode, one writer connection, a few readers. It owns the
//! `events` table and its migrations (`migrations/sqlite`); it turns a `Query` into bound SQL and
//! must never interpolate a value into a statement.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite};
use time::OffsetDateTime;

use super::{Error, EventStore, Query, TypeFilter};
use crate::event::{unix_millis, AuditEvent, Stage};

/// Embedded migrations, named like sqlx's `<version>_<description>.sql` files so the directory
/// also works with the `sqlx` CLI. Append only: a shipped migration never changes.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "events",
    include_str!("../../migrations/sqlite/0001_events.sql"),
)];

/// Read connections; SQLite in WAL mode lets them run beside the one writer.
const READERS: u32 = 4;
/// Columns written per event by `insert_batch`.
const COLUMNS: usize = 15;
/// Rows per multi-row INSERT. Batches are split into chunks of 64, 32, ..., 1 rows, so at most
/// seven distinct statements exist and each stays prepared in the connection's cache.
const CHUNK_SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];
/// Rows inserted between two `PRAGMA optimize` runs, which refresh the planner's statistics.
const OPTIMIZE_EVERY_ROWS: u64 = 100_000;
/// The most rows one query returns, whatever `Query::limit` asks.
const MAX_LIMIT: u32 = 10_000;
/// Rows returned when `Query::limit` is 0.
const DEFAULT_LIMIT: u32 = 100;

static INSERT_SQL: LazyLock<[Arc<str>; CHUNK_SIZES.len()]> =
    LazyLock::new(|| CHUNK_SIZES.map(|rows| Arc::from(insert_sql(rows))));

fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; COLUMNS].join(","));
    format!(
        "INSERT INTO events (id, time_ms, type, stage, outcome, reason, app, actor_id, \
         target_kind, target_id, route, status, ip, request_id, body) VALUES {} \
         ON CONFLICT(id) DO NOTHING",
        vec![row.as_str(); rows].join(",")
    )
}

/// An `EventStore` in one SQLite file.
///
/// Writes go through a single connection inside `BEGIN IMMEDIATE` transactions, so batches are
/// serialised and take the write lock up front instead of failing on a lock upgrade; reads use
/// their own small pool and never wait for a write.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    rows_since_optimize: Arc<AtomicU64>,
}

impl SqliteStore {
    /// Open (creating if missing) the database file at `path` and bring its schema up to date.
    ///
    /// `:memory:` gives a private in-memory database on a single connection (for tests).
    pub async fn open(path: &str) -> Result<SqliteStore, Error> {
        let in_memory = path == ":memory:";
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            // Keeps `PRAGMA optimize` to a sample of each index: milliseconds, whatever the size.
            .pragma("analysis_limit", "1000");

        // The writer connection lives as long as the store: it keeps the WAL and its index open
        // and its prepared INSERTs warm.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(Error::backend("open"))?;
        migrator().run(&writer).await?;
        // 0x10002: also look at tables this connection has not used yet (all of them, at open).
        optimize(&writer, "PRAGMA optimize=0x10002").await;

        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .connect_with(options)
                .await
                .map_err(Error::backend("open"))?
        };
        Ok(SqliteStore {
            writer,
            reader,
            rows_since_optimize: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Close both pools, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Refresh the planner's statistics where they are stale. The planner needs them to tell a
/// selective filter (one actor) from a broad one (a big app) when a query has both. Best effort:
/// stale statistics make queries slower, never wrong.
async fn optimize(writer: &SqlitePool, pragma: &'static str) {
    if let Err(e) = sqlx::query(pragma).execute(writer).await {
        tracing::warn!(error = %e, "sqlite store: optimize failed");
    }
}

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// The columns of one event, encoded before the write transaction starts.
struct EncodedRow<'a> {
    event: &'a AuditEvent,
    id: String,
    ip: Option<String>,
    body: String,
}

fn encode(event: &AuditEvent) -> Result<EncodedRow<'_>, Error> {
    // The body never carries seq: it is the store's, not the event's.
    let body = if event.seq.is_some() {
        let mut unstored = event.clone();
        unstored.seq = None;
        serde_json::to_string(&unstored)
    } else {
        serde_json::to_string(event)
    }
    .map_err(|e| Error::Backend {
        op: "insert",
        source: sqlx::Error::Encode(Box::new(e)),
    })?;
    Ok(EncodedRow {
        event,
        id: event.id.to_string(),
        ip: event.source.ip.map(|ip| ip.to_string()),
        body,
    })
}

fn stage_str(stage: Stage) -> &'static str {
    match stage {
        Stage::Attempt => "attempt",
        Stage::Completed => "completed",
    }
}

type SqliteQuery = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

fn bind_row(q: SqliteQuery, row: EncodedRow<'_>) -> SqliteQuery {
    let e = row.event;
    q.bind(row.id)
        .bind(unix_millis(e.time))
        .bind(e.event_type.as_str())
        .bind(stage_str(e.stage))
        .bind(e.outcome.as_str())
        .bind(e.reason.as_deref())
        .bind(e.app.as_ref().map(|a| a.value.as_str()))
        .bind(e.actor.id.as_deref())
        .bind(e.target.as_ref().map(|t| t.kind.as_str()))
        .bind(e.target.as_ref().map(|t| t.id.as_str()))
        .bind(e.http.route.as_str())
        .bind(e.http.status.map(i64::from))
        .bind(row.ip)
        .bind(e.http.request_id.as_str())
        .bind(row.body)
}

/// A value bound to a `?` of a query built at run time.
enum Arg {
    Text(String),
    Int(i64),
}

/// Milliseconds since the epoch, rounded up: for a millisecond-precision event time `t`,
/// `t >= bound` exactly when `millis(t) >= ceil_millis(bound)`, and the same for `<`.
fn ceil_millis(t: OffsetDateTime) -> i64 {
    let nanos = t.unix_timestamp_nanos();
    let ms = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0);
    ms as i64
}

/// The smallest string greater than every string that starts with `prefix`, or `None` when there
/// is none (the prefix is empty or made only of `char::MAX`). SQLite compares TEXT bytewise, and
/// UTF-8 byte order is code point order, so `prefix <= s < successor` is exactly "starts with".
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The SELECT for `q` and its arguments, in `?` order. `None` when nothing can match.
fn build_query(q: &Query) -> Option<(String, Vec<Arg>)> {
    let mut sql = String::from("SELECT seq, id, body FROM events");
    let mut args = Vec::new();
    let scope;
    let mut conds: Vec<&str> = Vec::new();

    let mut eq = |conds: &mut Vec<&str>, cond: &'static str, value: &Option<String>| {
        if let Some(v) = value {
            conds.push(cond);
            args.push(Arg::Text(v.clone()));
        }
    };
    eq(&mut conds, "app = ?", &q.app);
    eq(&mut conds, "actor_id = ?", &q.actor);
    eq(&mut conds, "target_id = ?", &q.target);
    eq(&mut conds, "route = ?", &q.route);
    eq(&mut conds, "request_id = ?", &q.request_id);

    match &q.event_type {
        Some(TypeFilter::Exact(t)) => {
            conds.push("type = ?");
            args.push(Arg::Text(t.clone()));
        }
        Some(TypeFilter::Prefix(p)) if !p.is_empty() => {
            conds.push("type >= ?");
            args.push(Arg::Text(p.clone()));
            if let Some(upper) = prefix_successor(p) {
                conds.push("type < ?");
                args.push(Arg::Text(upper));
            }
        }
        Some(TypeFilter::Prefix(_)) | None => {}
    }
    if let Some(outcome) = q.outcome {
        conds.push("outcome = ?");
        args.push(Arg::Text(outcome.as_str().to_string()));
    }
    if let Some(since) = q.since {
        conds.push("time_ms >= ?");
        args.push(Arg::Int(ceil_millis(since)));
    }
    if let Some(until) = q.until {
        conds.push("time_ms < ?");
        args.push(Arg::Int(ceil_millis(until)));
    }
    if let Some(apps) = &q.apps_scope {
        if apps.is_empty() {
            return None;
        }
        scope = format!("app IN ({})", vec!["?"; apps.len()].join(","));
        conds.push(&scope);
        args.extend(apps.iter().map(|a| Arg::Text(a.clone())));
    }
    if let Some(after) = q.after_seq {
        conds.push("seq > ?");
        args.push(Arg::Int(after));
    }
    if let Some(before) = q.before_seq {
        conds.push("seq < ?");
        args.push(Arg::Int(before));
    }

    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(if q.ascending {
        " ORDER BY seq ASC LIMIT ?"
    } else {
        " ORDER BY seq DESC LIMIT ?"
    });
    let limit = match q.limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    args.push(Arg::Int(i64::from(limit)));
    Some((sql, args))
}

fn decode(row: &SqliteRow) -> Result<AuditEvent, Error> {
    let seq: i64 = row.try_get(0).map_err(Error::backend("query"))?;
    let body: &str = row.try_get(2).map_err(Error::backend("query"))?;
    let mut event: AuditEvent = serde_json::from_str(body).map_err(|source| Error::Corrupt {
        id: row.try_get::<String, _>(1).unwrap_or_default(),
        source,
    })?;
    event.seq = Some(seq);
    Ok(event)
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn insert_batch(&self, events: &[AuditEvent]) -> Result<u64, Error> {
        if events.is_empty() {
            return Ok(0);
        }
        // Serialise before taking the write lock, so the lock is held for SQLite work only.
        let rows = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;

        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::backend("insert"))?;
        let mut inserted = 0;
        let mut rows = rows.into_iter();
        let mut left = events.len();
        while left > 0 {
            let size = CHUNK_SIZES.iter().position(|&n| n <= left).unwrap_or(0);
            let rows_in_chunk = CHUNK_SIZES[size];
            let mut q = sqlx::query(AssertSqlSafe(INSERT_SQL[size].clone()));
            for row in rows.by_ref().take(rows_in_chunk) {
                q = bind_row(q, row);
            }
            inserted += q
                .execute(&mut *tx)
                .await
                .map_err(Error::backend("insert"))?
                .rows_affected();
            left -= rows_in_chunk;
        }
        tx.commit().await.map_err(Error::backend("insert"))?;

        let since = self
            .rows_since_optimize
            .fetch_add(inserted, Ordering::Relaxed)
            + inserted;
        if since >= OPTIMIZE_EVERY_ROWS {
            self.rows_since_optimize.store(0, Ordering::Relaxed);
            optimize(&self.writer, "PRAGMA optimize").await;
        }
        Ok(inserted)
    }

    async fn query(&self, q: &Query) -> Result<Vec<AuditEvent>, Error> {
        let Some((sql, args)) = build_query(q) else {
            return Ok(Vec::new());
        };
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                Arg::Text(s) => query.bind(s),
                Arg::Int(n) => query.bind(n),
            };
        }
        let rows = query
            .fetch_all(&self.reader)
            .await
            .map_err(Error::backend("query"))?;
        rows.iter().map(decode).collect()
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<AuditEvent>, Error> {
        let row = sqlx::query("SELECT seq, id, body FROM events WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(Error::backend("get"))?;
        row.as_ref().map(decode).transpose()
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(Error::backend("ping"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn prefix_successor_increments_the_last_char() {
        assert_eq!(prefix_successor("auth.").as_deref(), Some("auth/"));
        assert_eq!(prefix_successor("a").as_deref(), Some("b"));
    }

    #[test]
    fn prefix_successor_skips_the_surrogate_gap() {
        assert_eq!(prefix_successor("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
    }

    #[test]
    fn prefix_successor_drops_chars_that_cannot_grow() {
        assert_eq!(prefix_successor("ab\u{10ffff}").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("\u{10ffff}"), None);
        assert_eq!(prefix_successor(""), None);
    }

    #[test]
    fn ceil_millis_rounds_up_only_partial_milliseconds() {
        assert_eq!(ceil_millis(datetime!(1970-01-01 00:00:01.000 UTC)), 1000);
        assert_eq!(
            ceil_millis(datetime!(1970-01-01 00:00:01.000_001 UTC)),
            1001
        );
        assert_eq!(ceil_millis(datetime!(1969-12-31 23:59:59.999_5 UTC)), 0);
    }

    #[test]
    fn empty_app_scope_matches_nothing() {
        let q = Query {
            apps_scope: Some(vec![]),
            ..Query::default()
        };
        assert!(build_query(&q).is_none());
    }

    #[test]
    fn values_are_bound_never_interpolated() {
        let q = Query {
            app: Some("x' OR 1=1 --".into()),
            apps_scope: Some(vec!["a".into(), "b".into()]),
            event_type: Some(TypeFilter::Prefix("auth.".into())),
            ..Query::default()
        };
        let (sql, args) = build_query(&q).unwrap();
        assert_eq!(
            sql,
            "SELECT seq, id, body FROM events WHERE app = ? AND type >= ? AND type < ? \
             AND app IN (?,?) ORDER BY seq DESC LIMIT ?"
        );
        assert_eq!(args.len(), 6);
    }

    #[test]
    fn insert_statements_fit_sqlite_variable_limit() {
        // SQLite's default SQLITE_MAX_VARIABLE_NUMBER is 32766.
        assert!(CHUNK_SIZES[0] * COLUMNS < 32_766);
        assert_eq!(insert_sql(2).matches('?').count(), 2 * COLUMNS);
    }
}
