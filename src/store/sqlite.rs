//! The SQLite backend: one file in WAL mode, one writer connection, a few readers. It owns the
//! `events` table and its migrations (`migrations/sqlite`); it runs the SQL that `store/query.rs`
//! builds, binding every value, and must never interpolate a value into a statement.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, AssertSqlSafe, Row, Sqlite};

mod partitions;

use self::partitions::Partition;
use super::chain::{self, ChainTx, Segment};
use super::pages::{self, window_ms, Page};
use super::query::{
    build_query_planned, ceil_millis, effective_limit, outcome_counts_apply, outcome_counts_query,
    stats_query, Arg, Dialect, PrefixPlan, SeqBound,
};
use super::sql;
use super::{
    Appended, ChainHead, Checkpoint, CheckpointKind, Columns, Error, EventStore, PartitionInfo,
    PurgeLink, PurgeReport, Query, Signer, StatsBy, StatsRow, StoredRow, TypeFilter,
};
use crate::event::AuditEvent;

/// Embedded migrations, named like sqlx's `<version>_<description>.sql` files so the directory
/// also works with the `sqlx` CLI. Append only: a shipped migration never changes.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "events",
        include_str!("../../migrations/sqlite/0001_events.sql"),
    ),
    (
        2,
        "chain",
        include_str!("../../migrations/sqlite/0002_chain.sql"),
    ),
    (
        3,
        "query_plans",
        include_str!("../../migrations/sqlite/0003_query_plans.sql"),
    ),
    (
        4,
        "event_tokens",
        include_str!("../../migrations/sqlite/0004_event_tokens.sql"),
    ),
    (
        5,
        "time_index",
        include_str!("../../migrations/sqlite/0005_time_index.sql"),
    ),
    (
        6,
        "token_keys_from_the_writer",
        include_str!("../../migrations/sqlite/0006_token_keys_from_the_writer.sql"),
    ),
    (
        7,
        "partitions",
        include_str!("../../migrations/sqlite/0007_partitions.sql"),
    ),
];

/// Read connections; SQLite in WAL mode lets them run beside the one writer.
const READERS: u32 = 4;
/// Prepared statements each read connection keeps (sqlx's default is 100): a query shape is a
/// statement per partition.
const READER_STATEMENTS: usize = 1_000;
/// Columns written per event (every insert: `append`, through `ChainTx::insert_rows`).
const COLUMNS: usize = 19;
/// Rows per multi-row INSERT. Batches are split into chunks of 64, 32, ..., 1 rows, so at most
/// seven distinct statements exist per partition and each stays prepared in the connection's
/// cache.
const CHUNK_SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];
/// Rows inserted between two refreshes of the planner's statistics ([`SqliteStore::refresh_stats`]).
/// Often enough that a new day's partition is analyzed while it is small (at ~10,000 rows, and
/// again at ~100,000: SQLite asks for it at each tenfold growth); a refresh that finds nothing
/// to do costs SQLite's size estimate of each table (no scan).
const OPTIMIZE_EVERY_ROWS: u64 = 10_000;
/// Largest table whose statistics are (re)computed. `ANALYZE` counts every entry of every index
/// of its table exactly (`analysis_limit` bounds only the sample it reads for the rest) while it
/// holds the write lock: on a partition of 7.9M events it stopped the writer for 90 s in a
/// saturation run (docs/benchmarks.md, "Statistics that stopped the writer").
/// At 102,656 rows it stayed under the 1 s at which sqlx logs a slow statement (a 150 s run
/// there); the limit is twice that. A bigger table keeps the statistics it had, which describe
/// its shape (how selective each index is), only not its size.
const ANALYZE_MAX_ROWS: i64 = 200_000;

/// The INSERT of `rows` events into partition `table`, each with its `seq`.
///
/// `OR IGNORE`: a row that breaks a constraint (a duplicate id, seq or chain position; none can
/// happen under the write lock, with ids already looked up) is skipped, and the caller refuses
/// the batch when fewer rows went in than it gave (the transaction is rolled back). An insert
/// that could instead abort halfway (SQLite's default, `ABORT`) makes SQLite copy every page the
/// multi-row statement changes into a statement journal first, so that it can undo just that
/// statement: ~0.5 pages of 4 KiB per event, written to a temporary file once past 64 KiB
/// (docs/benchmarks.md, "Fewer checkpoints, no statement journal").
fn insert_sql(table: &str, rows: usize) -> String {
    let row = format!("({})", vec!["?"; COLUMNS].join(","));
    format!(
        "INSERT OR IGNORE INTO {table} (seq, id, time_ms, type, stage, outcome, reason, app, \
         actor_id, target_kind, target_id, route, status, ip, request_id, chain_instance, \
         chain_n, chain_hash, body) VALUES {}",
        vec![row.as_str(); rows].join(",")
    )
}

/// `rows` (key, seq) pairs into partition `table`'s token keys.
fn token_keys_sql(table: &str, rows: usize) -> String {
    format!(
        "INSERT OR IGNORE INTO {table}_tokens (key, seq) VALUES {}",
        vec!["(?,?)"; rows].join(",")
    )
}

/// The index into [`CHUNK_SIZES`] of the largest chunk that fits in `left` rows.
fn chunk_size(left: usize) -> usize {
    CHUNK_SIZES.iter().position(|&n| n <= left).unwrap_or(0)
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
    /// The partitions as of a schema version (see [`SqliteStore::partitions`]).
    parts: Arc<Mutex<(i64, Arc<Vec<Partition>>)>>,
    stats: Arc<StatsState>,
    /// [`ANALYZE_MAX_ROWS`] (smaller in tests).
    analyze_max_rows: i64,
}

/// What [`SqliteStore::refresh_stats`] keeps between runs.
#[derive(Debug, Default)]
struct StatsState {
    /// A refresh is under way (one at a time).
    running: std::sync::atomic::AtomicBool,
    /// Tables found bigger than the limit: not counted again while this store is open.
    too_big: Mutex<HashSet<String>>,
}

impl StatsState {
    fn too_big(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.too_big.lock().unwrap_or_else(|e| e.into_inner())
    }
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
            // `ANALYZE` samples 1,000 rows of each index (it still counts them all: see
            // ANALYZE_MAX_ROWS).
            .pragma("analysis_limit", "1000")
            // Checkpoint every 10,000 WAL pages (~40 MiB), not SQLite's 1,000: a checkpoint
            // writes each page once, however many commits changed it, and the pages every batch
            // changes (the ends of the table and its indexes) are the same few. Measured:
            // ~+20 % appended events/s (docs/benchmarks.md, "Fewer checkpoints, no statement
            // journal"). Durability is the same (commits are in the WAL either way); recovery
            // after a crash reads at most that much WAL.
            .pragma("wal_autocheckpoint", "10000")
            // A WAL that a long read made grow past this is cut back to it after the next
            // checkpoint, instead of keeping its largest size on disk.
            .pragma("journal_size_limit", "67108864");

        // The writer connection lives as long as the store: it keeps the WAL and its index open
        // and its prepared INSERTs warm.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            // A commit that fails (SQLITE_FULL, SQLITE_IOERR) can leave the connection with a
            // transaction sqlx still counts: every later BEGIN then fails ("non-zero transaction
            // depth") and the store never recovers. Such a connection is replaced, not reused.
            .after_release(|conn, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            })
            .connect_with(options.clone())
            .await
            .map_err(Error::backend("open"))?;
        migrator().run(&writer).await?;

        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                // A query runs once per partition it reads, each its own prepared statement.
                .connect_with(options.statement_cache_capacity(READER_STATEMENTS))
                .await
                .map_err(Error::backend("open"))?
        };
        let store = SqliteStore {
            writer,
            reader,
            rows_since_optimize: Arc::new(AtomicU64::new(0)),
            parts: Arc::new(Mutex::new((-1, Arc::new(Vec::new())))),
            stats: Arc::new(StatsState::default()),
            analyze_max_rows: ANALYZE_MAX_ROWS,
        };
        store.prepare_partitions().await?;
        // A file never analyzed (new, or just migrated) gets its statistics before it is used:
        // its tables are small, or the count bounds the work. An existing one is refreshed in
        // the background: on a long trail that may count a few tables, and neither serving nor a
        // CLI command waits for it.
        let analyzed: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'",
        )
        .fetch_one(&store.writer)
        .await
        .map_err(Error::backend("open"))?;
        if analyzed {
            let refresh = store.clone();
            tokio::spawn(async move { refresh.refresh_stats().await });
        } else {
            store.refresh_stats().await;
        }
        Ok(store)
    }

    /// At open: drop the legacy partition if it is empty, make sure today's partition exists,
    /// and build the views if they are missing (just after migration 0007).
    async fn prepare_partitions(&self) -> Result<(), Error> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::backend("open"))?;
        let mut parts = partitions::load(&mut tx).await?;
        let views: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name = 'events'",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::backend("open"))?;
        let mut rebuild = views == 0;
        if parts.iter().any(|p| p.name == "events_legacy") {
            let empty: Option<i64> = sqlx::query_scalar("SELECT seq FROM events_legacy LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::backend("open"))?;
            if empty.is_none() {
                sqlx::raw_sql(
                    "DROP TABLE events_legacy; DROP TABLE events_legacy_tokens; \
                     DELETE FROM partitions WHERE name = 'events_legacy';",
                )
                .execute(&mut *tx)
                .await
                .map_err(Error::backend("open"))?;
                parts.retain(|p| p.name != "events_legacy");
                rebuild = true;
            }
        }
        let today = crate::event::unix_millis(crate::event::now_millis());
        if !partitions::ensure(&mut tx, &mut parts, [today]).await? && rebuild {
            partitions::rebuild_views(&mut tx, &parts).await?;
        }
        tx.commit().await.map_err(Error::backend("open"))?;
        Ok(())
    }

    /// The partitions, read again only when the schema changed since they were last read.
    async fn cached_partitions(
        &self,
        conn: &mut SqliteConnection,
    ) -> Result<Arc<Vec<Partition>>, Error> {
        let version = partitions::schema_version(conn).await?;
        {
            let cached = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            if cached.0 == version {
                return Ok(cached.1.clone());
            }
        }
        let parts = Arc::new(partitions::load(conn).await?);
        *self.parts.lock().unwrap_or_else(|e| e.into_inner()) = (version, parts.clone());
        Ok(parts)
    }

    /// A read transaction (one snapshot) with the partitions as it sees them (their seq bounds
    /// may be stale: reads that need them load the catalog in the transaction).
    async fn read_tx(
        &self,
        op: &'static str,
    ) -> Result<(sqlx::Transaction<'static, Sqlite>, Arc<Vec<Partition>>), Error> {
        let mut tx = self.reader.begin().await.map_err(Error::backend(op))?;
        let parts = self.cached_partitions(&mut tx).await?;
        Ok((tx, parts))
    }

    /// A write transaction (`BEGIN IMMEDIATE`) with the partitions as it sees them.
    async fn write_tx<'c>(
        &self,
        mut tx: sqlx::Transaction<'c, Sqlite>,
    ) -> Result<SqliteTx<'c>, Error> {
        let parts = self.cached_partitions(&mut tx).await?;
        Ok(SqliteTx {
            tx,
            parts,
            times: std::collections::HashMap::new(),
        })
    }

    /// Close both pools, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// SQLITE_READONLY (any extended code). SQLite silently opens a file it cannot write read-only
/// (made immutable, on a read-only mount, after a failed write made the pool reconnect): such a
/// writer connection refuses every write even once the file is writable again, so it is closed
/// rather than reused, and the next write reconnects.
fn read_only(e: &Error) -> bool {
    match e {
        Error::Backend {
            source: sqlx::Error::Database(db),
            ..
        } => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == 8),
        _ => false,
    }
}

/// The table an `ANALYZE "schema"."table"` statement of `PRAGMA optimize`'s listing names.
fn analyzed_table(statement: &str) -> Option<String> {
    let (_, quoted) = statement.rsplit_once("\".\"")?;
    let name = quoted.strip_suffix('"')?;
    Some(name.replace("\"\"", "\""))
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

type SqliteQuery = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

fn bind_row(q: SqliteQuery, row: sql::Row) -> SqliteQuery {
    let c = row.columns;
    q.bind(c.id)
        .bind(c.time_ms)
        .bind(c.event_type)
        .bind(c.stage)
        .bind(c.outcome)
        .bind(c.reason)
        .bind(c.app)
        .bind(c.actor_id)
        .bind(c.target_kind)
        .bind(c.target_id)
        .bind(c.route)
        .bind(c.status)
        .bind(c.ip)
        .bind(c.request_id)
        .bind(c.chain_instance)
        .bind(c.chain_n)
        .bind(c.chain_hash)
        .bind(row.body)
}

/// Insert `rows` (in link order) on `conn`, in the write transaction: each gets the next `seq`
/// and goes to the partition of its time (created when missing), in chunks of [`CHUNK_SIZES`],
/// with its token keys beside it. Returns the rows newly written.
///
/// The keys come from the encoder (`Row::token_keys`), not from a trigger re-reading each body's
/// JSON. A row skipped (see [`insert_sql`]) leaves its seq unused; the caller refuses such a batch.
async fn insert_rows(
    conn: &mut SqliteConnection,
    parts: &mut Arc<Vec<Partition>>,
    rows: Vec<sql::Row>,
) -> Result<u64, Error> {
    // The list is shared with the store's cache: copied only when a day is missing.
    let times: Vec<i64> = rows.iter().map(|r| r.columns.time_ms).collect();
    if times.iter().any(|&t| partitions::find(parts, t).is_none()) {
        partitions::ensure(conn, Arc::make_mut(parts), times).await?;
    }
    let last: i64 = sqlx::query_scalar("SELECT last FROM seq_counter")
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::backend("insert"))?;
    let count = rows.len() as i64;
    // Rows by partition, each group in seq order (nearly always one group).
    let mut groups: Vec<(String, Vec<(i64, sql::Row)>)> = Vec::new();
    for (seq, row) in (last + 1..).zip(rows) {
        let table = partitions::find(parts, row.columns.time_ms)
            .map(|p| p.name.clone())
            .ok_or_else(|| Error::Backend {
                op: "insert",
                source: sqlx::Error::Protocol(format!(
                    "no partition holds time {}",
                    row.columns.time_ms
                )),
            })?;
        match groups.iter_mut().find(|(t, _)| *t == table) {
            Some((_, g)) => g.push((seq, row)),
            None => {
                // Nearly always the only group: room for every row at once.
                let mut group =
                    Vec::with_capacity(if groups.is_empty() { count as usize } else { 1 });
                group.push((seq, row));
                groups.push((table, group));
            }
        }
    }
    let mut inserted = 0;
    for (table, group) in groups {
        let (lo, hi) = (group[0].0, group[group.len() - 1].0);
        partitions::note_seqs(conn, &table, lo, hi).await?;
        let mut token_rows: Vec<(String, i64)> = Vec::new();
        let mut left = group.len();
        let mut group = group.into_iter();
        while left > 0 {
            let size = chunk_size(left);
            // Room for every value of the chunk at once, not grown one bind at a time.
            let mut args = SqliteArguments::default();
            args.reserve(COLUMNS * CHUNK_SIZES[size], 0);
            let mut q =
                sqlx::query_with(AssertSqlSafe(insert_sql(&table, CHUNK_SIZES[size])), args);
            for (seq, mut row) in group.by_ref().take(CHUNK_SIZES[size]) {
                token_rows.extend(
                    std::mem::take(&mut row.token_keys)
                        .into_iter()
                        .map(|k| (k, seq)),
                );
                q = bind_row(q.bind(seq), row);
            }
            inserted += q
                .execute(&mut *conn)
                .await
                .map_err(Error::backend("insert"))?
                .rows_affected();
            left -= CHUNK_SIZES[size];
        }
        insert_token_keys(conn, &table, token_rows).await?;
    }
    sqlx::query("UPDATE seq_counter SET last = ?")
        .bind(last + count)
        .execute(&mut *conn)
        .await
        .map_err(Error::backend("insert"))?;
    Ok(inserted)
}

/// `(key, seq)` rows into partition `table`'s token keys, in chunks of [`CHUNK_SIZES`].
async fn insert_token_keys(
    conn: &mut SqliteConnection,
    table: &str,
    token_rows: Vec<(String, i64)>,
) -> Result<(), Error> {
    let mut left = token_rows.len();
    let mut token_rows = token_rows.into_iter();
    while left > 0 {
        let size = chunk_size(left);
        let mut q = sqlx::query(AssertSqlSafe(token_keys_sql(table, CHUNK_SIZES[size])));
        for (key, seq) in token_rows.by_ref().take(CHUNK_SIZES[size]) {
            q = q.bind(key).bind(seq);
        }
        q.execute(&mut *conn)
            .await
            .map_err(Error::backend("insert token keys"))?;
        left -= CHUNK_SIZES[size];
    }
    Ok(())
}

/// Rows at the newest end of the table (or just after an ascending cursor) in which a type
/// prefix with no other indexed filter is looked for first. Reading them costs ~10 ms at most.
const PREFIX_WINDOW: i64 = 20_000;

fn bind_args(sql: String, args: Vec<Arg>) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for arg in args {
        query = match arg {
            Arg::Text(s) => query.bind(s),
            Arg::Int(n) => query.bind(n),
        };
    }
    query
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

impl SqliteStore {
    /// Count inserted rows towards the next statistics refresh, which runs as a task of its own:
    /// a batch is reported once committed, never held up (or timed out) by the refresh.
    async fn note_inserted(&self, inserted: u64) {
        let since = self
            .rows_since_optimize
            .fetch_add(inserted, Ordering::Relaxed)
            + inserted;
        if since >= OPTIMIZE_EVERY_ROWS {
            self.rows_since_optimize.store(0, Ordering::Relaxed);
            let store = self.clone();
            tokio::spawn(async move { store.refresh_stats().await });
        }
    }

    /// Refresh the planner's statistics where they are missing or stale, for tables of at most
    /// `analyze_max_rows` rows. The planner needs them to tell a selective filter (one actor)
    /// from a broad one (a big app) when a query has both. SQLite's own `PRAGMA optimize` picks
    /// the tables (no statistics yet, or ten times bigger or smaller than they say, by its
    /// estimate of their size: no scan), here only listed (mask `0x10003`); each is counted up
    /// to the limit through a covering index and analyzed only if it is within it. Best effort:
    /// stale statistics make queries slower, never wrong. Returns the tables analyzed.
    async fn refresh_stats(&self) -> Vec<String> {
        use std::sync::atomic::Ordering::{AcqRel, Release};
        if self.stats.running.swap(true, AcqRel) {
            return Vec::new();
        }
        let result = self.refresh_stats_now().await;
        self.stats.running.store(false, Release);
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "sqlite store: statistics not refreshed");
            Vec::new()
        })
    }

    async fn refresh_stats_now(&self) -> Result<Vec<String>, sqlx::Error> {
        let listed: Vec<String> = sqlx::query_scalar("PRAGMA optimize=0x10003")
            .fetch_all(&self.writer)
            .await?;
        let mut analyzed = Vec::new();
        for table in listed.iter().filter_map(|s| analyzed_table(s)) {
            if self.stats.too_big().contains(&table) {
                continue;
            }
            // Each statement on its own: appends take the connection in between.
            let quoted = table.replace('"', "\"\"");
            let limit = self.analyze_max_rows;
            let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM (SELECT 1 FROM \"{quoted}\" LIMIT {})",
                limit + 1
            )))
            .fetch_one(&self.writer)
            .await?;
            if rows > limit {
                tracing::debug!(table = %table, limit, "sqlite store: statistics kept (table above the limit)");
                self.stats.too_big().insert(table);
                continue;
            }
            sqlx::query(AssertSqlSafe(format!("ANALYZE \"{quoted}\"")))
                .execute(&self.writer)
                .await?;
            analyzed.push(table);
        }
        Ok(analyzed)
    }
}

impl SqliteStore {
    /// Bucket × outcome counts of `q` (which has a window: see [`outcome_counts_apply`]), one
    /// aggregate per bucket over its slice of the time index. SQLite has no hash aggregate: a
    /// `GROUP BY bucket, outcome` sorts every event of the window, and at 10M events the default
    /// 24-hour timeline spent ~140 ms of CPU in that sort against ~25 ms reading the index.
    async fn outcome_timeline(&self, q: &Query, bucket_ms: i64) -> Result<Vec<StatsRow>, Error> {
        let (Some(since), Some(until)) = (q.since, q.until) else {
            return Ok(Vec::new());
        };
        let (since_ms, until_ms) = (ceil_millis(since), ceil_millis(until));
        let mut rows = Vec::new();
        let mut start = since_ms - since_ms.rem_euclid(bucket_ms);
        // One read transaction: every bucket counts the same snapshot of the trail.
        let (mut tx, parts) = self.read_tx("stats").await?;
        while start < until_ms {
            let end = start.saturating_add(bucket_ms);
            let bound = |ms: i64| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            };
            let slice = Query {
                since: bound(start.max(since_ms)),
                until: bound(end.min(until_ms)),
                ..q.clone()
            };
            if let Some((sql, args)) = outcome_counts_query(&slice, Dialect::Sqlite) {
                let (mut all, mut success, mut failure, mut error) = (0u64, 0u64, 0u64, 0u64);
                let (lo, hi) = (start.max(since_ms), end.min(until_ms));
                for p in parts.iter().filter(|p| p.overlaps(Some(lo), Some(hi))) {
                    let row = bind_args(partitions::on_partition(&sql, &p.name), args.clone())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(Error::backend("stats"))?;
                    let get = |i: usize| -> Result<u64, Error> {
                        let n: i64 = row.try_get(i).map_err(Error::backend("stats"))?;
                        Ok(u64::try_from(n).unwrap_or(0))
                    };
                    all += get(0)?;
                    success += get(1)?;
                    failure += get(2)?;
                    error += get(3)?;
                }
                let unknown = all.saturating_sub(success + failure + error);
                for (outcome, count) in [
                    ("error", error),
                    ("failure", failure),
                    ("success", success),
                    ("unknown", unknown),
                ] {
                    if count > 0 {
                        rows.push(StatsRow {
                            bucket_ms: start,
                            event_type: String::new(),
                            outcome: outcome.to_string(),
                            app: None,
                            count,
                        });
                    }
                }
            }
            start = end;
        }
        Ok(rows)
    }

    async fn select(
        &self,
        q: &Query,
        prefix: PrefixPlan,
        seq_bound: Option<SeqBound>,
    ) -> Result<Vec<AuditEvent>, Error> {
        let Some((sql, args)) = build_query_planned(q, Dialect::Sqlite, prefix, seq_bound, None)
        else {
            return Ok(Vec::new());
        };
        // Partition by partition (`pages`), in one read transaction: one snapshot.
        let mut tx = self.reader.begin().await.map_err(Error::backend("query"))?;
        let parts = partitions::load(&mut tx).await?;
        let mut candidates = pages::candidates(&parts, q, seq_bound);
        // A token's events: its keys' seqs from every partition in one statement (the
        // `event_tokens` view), then only the partitions whose seqs hold them.
        if let Some(token) = &q.token {
            let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM event_tokens WHERE key = ?")
                .bind(token.clone())
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::backend("query"))?;
            candidates.retain(|(_, (lo, hi))| seqs.iter().any(|s| (*lo..=*hi).contains(s)));
        }
        let mut page = Page::new(q);
        for (p, (lo, hi)) in candidates {
            if !page.reaches(lo, hi) {
                break;
            }
            let rows = bind_args(partitions::on_partition(&sql, &p.name), args.clone())
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::backend("query"))?;
            page.add(rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?);
        }
        Ok(page.into_events())
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    /// A type prefix is planned by hand (see [`PrefixPlan`]): with a filter that has an index in
    /// seq order (app, actor, target, outcome, request id, ip), that index is walked and the
    /// prefix checked on the way. Without one, the newest [`PREFIX_WINDOW`] rows (or those just
    /// after an ascending cursor) are read first; a full page there is the answer, since every
    /// row outside the window is further down the order. Otherwise the prefix is rare, and the
    /// type index finds its few rows to sort.
    async fn query(&self, q: &Query) -> Result<Vec<AuditEvent>, Error> {
        let prefix = matches!(&q.event_type, Some(TypeFilter::Prefix(p)) if !p.is_empty());
        if !prefix {
            return self.select(q, PrefixPlan::TypeIndex, None).await;
        }
        let walkable = q.app.is_some()
            || q.actor.is_some()
            || q.target.is_some()
            || q.outcome.is_some()
            || q.request_id.is_some()
            || q.ip.is_some()
            || q.apps_scope.as_ref().is_some_and(|a| a.len() == 1);
        if walkable {
            return self.select(q, PrefixPlan::SeqOrder, None).await;
        }
        let bound = if q.ascending {
            SeqBound::AtMost(q.after_seq.unwrap_or(0).saturating_add(PREFIX_WINDOW))
        } else {
            let top = match q.before_seq {
                Some(b) => b,
                None => {
                    let max: Option<i64> =
                        sqlx::query_scalar("SELECT max(max_seq) FROM partitions")
                            .fetch_one(&self.reader)
                            .await
                            .map_err(Error::backend("query"))?;
                    max.unwrap_or(0).saturating_add(1)
                }
            };
            SeqBound::Above(top.saturating_sub(PREFIX_WINDOW + 1))
        };
        let recent = self.select(q, PrefixPlan::SeqOrder, Some(bound)).await?;
        if recent.len() == effective_limit(q) as usize {
            return Ok(recent);
        }
        self.select(q, PrefixPlan::TypeIndex, None).await
    }

    async fn stats(&self, q: &Query, bucket_ms: i64) -> Result<Vec<StatsRow>, Error> {
        self.stats_by(q, bucket_ms, StatsBy::ALL).await
    }

    async fn stats_by(
        &self,
        q: &Query,
        bucket_ms: i64,
        by: StatsBy,
    ) -> Result<Vec<StatsRow>, Error> {
        let bucket_ms = bucket_ms.max(1);
        if by == StatsBy::OUTCOME && outcome_counts_apply(q) {
            return self.outcome_timeline(q, bucket_ms).await;
        }
        let Some((sql, args)) = stats_query(q, bucket_ms, by, Dialect::Sqlite) else {
            return Ok(Vec::new());
        };
        // Partition by partition (each reads its covering time index; an aggregate over the view
        // would read every row), summed; one read transaction, so one snapshot.
        let (mut tx, parts) = self.read_tx("stats").await?;
        let (since, until) = window_ms(q);
        let mut rows = Vec::new();
        for p in parts.iter().filter(|p| p.overlaps(since, until)) {
            let got = bind_args(partitions::on_partition(&sql, &p.name), args.clone())
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::backend("stats"))?;
            rows.extend(sql::stats_rows(&got)?);
        }
        Ok(super::sum_stats(rows))
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

    async fn append(
        &self,
        instance: &str,
        events: &[AuditEvent],
        durable: bool,
    ) -> Result<Appended, Error> {
        self.append_encoded(instance, events, &[], durable).await
    }

    async fn append_encoded(
        &self,
        instance: &str,
        events: &[AuditEvent],
        bodies: &[Option<&str>],
        durable: bool,
    ) -> Result<Appended, Error> {
        let encoded = chain::encode_for_append(instance, events, bodies)?;
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(Error::backend("append"))?;
        if durable {
            // WAL with synchronous=NORMAL survives a crashed process but may lose the last
            // commits on power loss; FULL syncs the WAL on this commit.
            set_synchronous(&mut conn, "FULL").await?;
        }
        let result = async {
            let tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
                .await
                .map_err(Error::backend("append"))?;
            let mut tx = self.write_tx(tx).await?;
            tx.times = events
                .iter()
                .map(|e| (e.id, crate::event::unix_millis(e.time)))
                .collect();
            let appended = chain::append(&mut tx, instance, &encoded).await?;
            tx.tx.commit().await.map_err(Error::backend("append"))?;
            Ok::<_, Error>(appended)
        }
        .await;
        if matches!(&result, Err(e) if read_only(e)) {
            conn.close_on_drop();
        }
        if durable {
            set_synchronous(&mut conn, "NORMAL").await?;
        }
        drop(conn);
        let appended = result?;
        self.note_inserted(appended.inserted).await;
        Ok(appended)
    }

    async fn checkpoint(
        &self,
        instance: &str,
        kind: CheckpointKind,
        signer: &Signer,
    ) -> Result<Option<Checkpoint>, Error> {
        self.checkpoint_after(instance, kind, signer, None).await
    }

    async fn checkpoint_after(
        &self,
        instance: &str,
        kind: CheckpointKind,
        signer: &Signer,
        after: Option<&Checkpoint>,
    ) -> Result<Option<Checkpoint>, Error> {
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::backend("checkpoint"))?;
        let mut tx = self.write_tx(tx).await?;
        let cp = chain::checkpoint(&mut tx, instance, kind, signer, after).await?;
        tx.tx.commit().await.map_err(Error::backend("checkpoint"))?;
        Ok(cp)
    }

    async fn checkpoints(&self) -> Result<Vec<(i64, String)>, Error> {
        let rows = sqlx::query("SELECT id, body FROM checkpoints ORDER BY instance, to_n, id")
            .fetch_all(&self.reader)
            .await
            .map_err(Error::backend("checkpoints"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::backend("checkpoints"))
    }

    async fn chains(&self) -> Result<Vec<String>, Error> {
        // Partition by partition, each from its chain index alone.
        let (mut tx, parts) = self.read_tx("chains").await?;
        let mut chains = std::collections::BTreeSet::new();
        for p in parts.iter() {
            let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT DISTINCT chain_instance FROM {} WHERE chain_instance IS NOT NULL",
                p.name
            )))
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::backend("chains"))?;
            chains.extend(rows);
        }
        Ok(chains.into_iter().collect())
    }

    async fn chain_rows(
        &self,
        instance: &str,
        after_n: i64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, Error> {
        // Partition by partition in the order of their first link above `after_n`, stopping
        // once `limit` rows are in hand and the next partition's first link comes after them
        // (a chain's links follow time, so a page is read from one or two partitions).
        let (mut tx, parts) = self.read_tx("verify").await?;
        let mut firsts: Vec<(i64, &Partition)> = Vec::new();
        for p in parts.iter() {
            let first: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT min(chain_n) FROM {} WHERE chain_instance = ? AND chain_n > ?",
                p.name
            )))
            .bind(instance.to_string())
            .bind(after_n)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::backend("verify"))?;
            if let Some(first) = first {
                firsts.push((first, p));
            }
        }
        firsts.sort_by_key(|(first, _)| *first);
        let limit_rows = limit as usize;
        let mut page: Vec<StoredRow> = Vec::new();
        for (first, p) in firsts {
            if page.len() >= limit_rows
                && page[limit_rows - 1]
                    .columns
                    .chain_n
                    .is_some_and(|n| first > n)
            {
                break;
            }
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {STORED_COLUMNS} FROM {} WHERE chain_instance = ? AND chain_n > ? \
                 ORDER BY chain_n, seq LIMIT ?",
                p.name
            )))
            .bind(instance.to_string())
            .bind(after_n)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::backend("verify"))?;
            for r in &rows {
                page.push(stored_row(r)?);
            }
            page.sort_by_key(|r| (r.columns.chain_n, r.seq));
            page.truncate(limit_rows);
        }
        Ok(page)
    }

    async fn unchained_rows(&self, limit: u32) -> Result<Vec<StoredRow>, Error> {
        // Partition by partition in seq order, stopping once `limit` rows are in hand and the
        // next partition's seqs all come after them.
        let mut tx = self
            .reader
            .begin()
            .await
            .map_err(Error::backend("verify"))?;
        let mut parts: Vec<(i64, Partition)> = partitions::load(&mut tx)
            .await?
            .into_iter()
            .filter_map(|p| p.seqs.map(|(lo, _)| (lo, p)))
            .collect();
        parts.sort_by_key(|(lo, _)| *lo);
        let limit_rows = limit as usize;
        let mut page: Vec<StoredRow> = Vec::new();
        for (lo, p) in &parts {
            if page.len() >= limit_rows && *lo > page[limit_rows - 1].seq {
                break;
            }
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {STORED_COLUMNS} FROM {} WHERE chain_instance IS NULL ORDER BY seq LIMIT ?",
                p.name
            )))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::backend("verify"))?;
            for r in &rows {
                page.push(stored_row(r)?);
            }
            page.sort_by_key(|r| r.seq);
            page.truncate(limit_rows);
        }
        Ok(page)
    }

    async fn purge_links(
        &self,
        instance: &str,
        links: &[PurgeLink],
        signer: &Signer,
    ) -> Result<PurgeReport, Error> {
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::backend("purge"))?;
        let mut tx = self.write_tx(tx).await?;
        let report = chain::purge_links(&mut tx, instance, links, signer).await?;
        tx.tx.commit().await.map_err(Error::backend("purge"))?;
        Ok(report)
    }

    async fn partitions(&self) -> Result<Vec<PartitionInfo>, Error> {
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(Error::backend("partitions"))?;
        Ok(self
            .cached_partitions(&mut conn)
            .await?
            .iter()
            .map(|p| PartitionInfo {
                name: p.name.clone(),
                from_ms: p.from_ms,
                to_ms: p.to_ms,
            })
            .collect())
    }

    async fn partition_rows(
        &self,
        name: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, Error> {
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(Error::backend("partitions"))?;
        // Only a name from the catalog is ever put into the statement.
        let parts = self.cached_partitions(&mut conn).await?;
        let Some(p) = parts.iter().find(|p| p.name == name) else {
            return Err(Error::NoPartition(name.to_string()));
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {STORED_COLUMNS} FROM {} WHERE seq > ? ORDER BY seq LIMIT ?",
            p.name
        )))
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::backend("partitions"))?;
        rows.iter().map(stored_row).collect()
    }

    async fn drop_partition(
        &self,
        name: &str,
        links: &BTreeMap<String, Vec<PurgeLink>>,
        signer: &Signer,
    ) -> Result<PurgeReport, Error> {
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::backend("purge"))?;
        let mut tx = self.write_tx(tx).await?;
        if !tx.parts.iter().any(|p| p.name == name) {
            return Err(Error::NoPartition(name.to_string()));
        }
        let report = chain::drop_partition(&mut tx, name, links, signer).await?;
        tx.tx.commit().await.map_err(Error::backend("purge"))?;
        tracing::info!(partition = %name, events = report.deleted, "sqlite store: partition dropped by retention");
        Ok(report)
    }
}

/// The columns `verify` reads, in [`stored_row`]'s order.
const STORED_COLUMNS: &str = "seq, id, time_ms, type, stage, outcome, reason, app, actor_id, \
     target_kind, target_id, route, status, ip, request_id, chain_instance, chain_n, chain_hash, \
     body";

fn stored_row(r: &SqliteRow) -> Result<StoredRow, Error> {
    let get = || -> Result<StoredRow, sqlx::Error> {
        Ok(StoredRow {
            seq: r.try_get(0)?,
            columns: Columns {
                id: r.try_get(1)?,
                time_ms: r.try_get(2)?,
                event_type: r.try_get(3)?,
                stage: r.try_get(4)?,
                outcome: r.try_get(5)?,
                reason: r.try_get(6)?,
                app: r.try_get(7)?,
                actor_id: r.try_get(8)?,
                target_kind: r.try_get(9)?,
                target_id: r.try_get(10)?,
                route: r.try_get(11)?,
                status: r.try_get(12)?,
                ip: r.try_get(13)?,
                request_id: r.try_get(14)?,
                chain_instance: r.try_get(15)?,
                chain_n: r.try_get(16)?,
                chain_hash: r.try_get(17)?,
            },
            body: r.try_get(18)?,
        })
    };
    get().map_err(Error::backend("verify"))
}

async fn set_synchronous(conn: &mut SqliteConnection, mode: &'static str) -> Result<(), Error> {
    let sql = match mode {
        "FULL" => "PRAGMA synchronous = FULL",
        _ => "PRAGMA synchronous = NORMAL",
    };
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map_err(Error::backend("append"))?;
    Ok(())
}

/// The chain steps on a SQLite write transaction (`BEGIN IMMEDIATE`: it holds the write lock).
struct SqliteTx<'c> {
    tx: sqlx::Transaction<'c, Sqlite>,
    /// The partitions, as this transaction sees (and extends) them.
    parts: Arc<Vec<Partition>>,
    /// The time (Unix ms) of each event being appended, by id: an id can only be stored in the
    /// partition of its event's time.
    times: std::collections::HashMap<uuid::Uuid, i64>,
}

#[async_trait]
impl ChainTx for SqliteTx<'_> {
    async fn existing_ids(&mut self, ids: &[uuid::Uuid]) -> Result<HashSet<uuid::Uuid>, Error> {
        // Each id is looked for in the partition of its event's time only (an id whose time is
        // unknown, in all of them): one index probe per id, however many partitions there are.
        let mut by_table: Vec<(String, Vec<uuid::Uuid>)> = Vec::new();
        for id in ids {
            let table = match self.times.get(id) {
                Some(&t) => match partitions::find(&self.parts, t) {
                    Some(p) => p.name.clone(),
                    None => continue,
                },
                None => "events".to_string(),
            };
            match by_table.iter_mut().find(|(t, _)| *t == table) {
                Some((_, g)) => g.push(*id),
                None => by_table.push((table, vec![*id])),
            }
        }
        let mut found = HashSet::new();
        for (table, ids) in by_table {
            for chunk in ids.chunks(500) {
                let sql = format!(
                    "SELECT id FROM {table} WHERE id IN ({})",
                    vec!["?"; chunk.len()].join(",")
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(id.to_string());
                }
                let rows = q
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(Error::backend("append"))?;
                for r in rows {
                    let id: String = r.try_get(0).map_err(Error::backend("append"))?;
                    if let Ok(id) = uuid::Uuid::parse_str(&id) {
                        found.insert(id);
                    }
                }
            }
        }
        Ok(found)
    }

    async fn head(&mut self, instance: &str) -> Result<Option<ChainHead>, Error> {
        // The newest stored link, or the newest link a checkpoint pinned when that is higher: a
        // purge may have deleted the newest links, and the chain must go on after them.
        let row = sqlx::query(
            "SELECT n, h FROM (SELECT chain_n AS n, chain_hash AS h FROM events \
             WHERE chain_instance = ? ORDER BY chain_n DESC LIMIT 1) AS l \
             UNION ALL SELECT n, h FROM (SELECT to_n AS n, body ->> '$.head_hash' AS h \
             FROM checkpoints WHERE instance = ? ORDER BY to_n DESC LIMIT 1) AS c \
             ORDER BY n DESC LIMIT 1",
        )
        .bind(instance.to_string())
        .bind(instance.to_string())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::backend("chain head"))?;
        row.map(|r| {
            Ok(ChainHead {
                n: r.try_get(0)?,
                hash: r.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
            })
        })
        .transpose()
        .map_err(Error::backend("chain head"))
    }

    async fn insert_rows(&mut self, rows: Vec<sql::Row>) -> Result<u64, Error> {
        let expected = rows.len() as u64;
        let inserted = insert_rows(&mut self.tx, &mut self.parts, rows).await?;
        if inserted != expected {
            return Err(Error::Backend {
                op: "append",
                source: sqlx::Error::Protocol(format!(
                    "{} of {expected} linked events were not inserted (a constraint \
                     refused them: duplicate id, seq or chain position)",
                    expected - inserted
                )),
            });
        }
        Ok(inserted)
    }

    async fn max_checkpoint_to(
        &mut self,
        instance: &str,
        purge_only: bool,
    ) -> Result<Option<i64>, Error> {
        let sql = if purge_only {
            "SELECT MAX(to_n) FROM checkpoints WHERE instance = ? AND kind = 'purge'"
        } else {
            "SELECT MAX(to_n) FROM checkpoints WHERE instance = ?"
        };
        sqlx::query_scalar(sql)
            .bind(instance.to_string())
            .fetch_one(&mut *self.tx)
            .await
            .map_err(Error::backend("checkpoint"))
    }

    async fn segment(&mut self, instance: &str, from_n: i64, to_n: i64) -> Result<Segment, Error> {
        // Partition by partition: each reads its chain index alone (the view would read rows).
        let mut seg = Segment {
            count: 0,
            min_time_ms: None,
            max_time_ms: None,
        };
        for p in self.parts.iter() {
            let r = sqlx::query(AssertSqlSafe(format!(
                "SELECT count(*), MIN(time_ms), MAX(time_ms) FROM {} \
                 WHERE chain_instance = ? AND chain_n > ? AND chain_n <= ?",
                p.name
            )))
            .bind(instance.to_string())
            .bind(from_n)
            .bind(to_n)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(Error::backend("checkpoint"))?;
            let part = || -> Result<(i64, Option<i64>, Option<i64>), sqlx::Error> {
                Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
            };
            let (count, min, max) = part().map_err(Error::backend("checkpoint"))?;
            seg.count += count;
            seg.min_time_ms = seg.min_time_ms.into_iter().chain(min).min();
            seg.max_time_ms = seg.max_time_ms.into_iter().chain(max).max();
        }
        Ok(seg)
    }

    async fn link_at(&mut self, instance: &str, n: i64) -> Result<Option<(String, String)>, Error> {
        let row = sqlx::query(
            "SELECT id, chain_hash FROM events WHERE chain_instance = ? AND chain_n = ? LIMIT 1",
        )
        .bind(instance.to_string())
        .bind(n)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::backend("checkpoint"))?;
        row.map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
            ))
        })
        .transpose()
        .map_err(Error::backend("checkpoint"))
    }

    async fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), Error> {
        let body = serde_json::to_string(cp).map_err(sql::encode_error)?;
        sqlx::query(
            "INSERT INTO checkpoints (instance, to_n, kind, created_ms, body) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(cp.instance.clone())
        .bind(cp.to_n)
        .bind(cp.kind.as_str())
        .bind(cp.created_ms)
        .bind(body)
        .execute(&mut *self.tx)
        .await
        .map_err(Error::backend("checkpoint"))?;
        Ok(())
    }

    async fn last_checkpoint(&mut self, instance: &str) -> Result<Option<String>, Error> {
        sqlx::query_scalar(
            "SELECT body FROM checkpoints WHERE instance = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(instance.to_string())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::backend("checkpoint"))
    }

    async fn delete_links(&mut self, instance: &str, ns: &[i64]) -> Result<u64, Error> {
        let mut deleted = 0;
        for p in self.parts.iter() {
            for chunk in ns.chunks(500) {
                let sql = format!(
                    "DELETE FROM {} WHERE chain_instance = ? AND chain_n IN ({})",
                    p.name,
                    vec!["?"; chunk.len()].join(",")
                );
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(instance.to_string());
                for n in chunk {
                    q = q.bind(*n);
                }
                deleted += q
                    .execute(&mut *self.tx)
                    .await
                    .map_err(Error::backend("purge"))?
                    .rows_affected();
            }
        }
        Ok(deleted)
    }
    async fn partition_counts(&mut self, name: &str) -> Result<(i64, i64), Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT count(*), count(chain_n) FROM {name}"
        )))
        .fetch_one(&mut *self.tx)
        .await
        .map_err(Error::backend("purge"))
    }

    /// The table, its token keys (and their trigger), its catalog row; the views without it.
    async fn drop_partition_table(&mut self, name: &str) -> Result<(), Error> {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP TABLE {name}; DROP TABLE {name}_tokens;"
        )))
        .execute(&mut *self.tx)
        .await
        .map_err(Error::backend("purge"))?;
        sqlx::query("DELETE FROM partitions WHERE name = ?")
            .bind(name.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(Error::backend("purge"))?;
        Arc::make_mut(&mut self.parts).retain(|p| p.name != name);
        partitions::rebuild_views(&mut self.tx, &self.parts).await
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::store::query::build_query;

    /// The one partition of a fresh store (today's).
    async fn only_partition(store: &SqliteStore) -> String {
        let mut conn = store.writer.acquire().await.unwrap();
        let parts = store.cached_partitions(&mut conn).await.unwrap();
        assert_eq!(parts.len(), 1, "{parts:?}");
        parts[0].name.clone()
    }

    /// SQLite's plan for `sql` as the store runs it (an aggregate on each partition, a page on
    /// the view): the `detail` column of `EXPLAIN QUERY PLAN`, one line a step, with the
    /// partition's index names written `events_*`.
    async fn plan(store: &SqliteStore, sql: &str, args: Vec<Arg>) -> String {
        let part = only_partition(store).await;
        let sql = if sql.contains("count(*)") {
            partitions::on_partition(sql, &part)
        } else {
            sql.to_string()
        };
        let rows = bind_args(format!("EXPLAIN QUERY PLAN {sql}"), args)
            .fetch_all(&store.writer)
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                r.get::<String, _>(3)
                    .replace(&format!("{part}_"), "events_")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A fresh store whose planner believes `stats` (`(index, sqlite_stat1 row)`, the index
    /// named `events_*` for the partition's): the plans of a big trail without filling one.
    async fn store_with_stats(stats: &[(&str, &str)]) -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        let part = only_partition(&store).await;
        for (index, stat) in stats {
            sqlx::query("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)")
                .bind(part.clone())
                .bind(index.replacen("events_", &format!("{part}_"), 1))
                .bind(*stat)
                .execute(&store.writer)
                .await
                .unwrap();
        }
        sqlx::query("ANALYZE sqlite_schema")
            .execute(&store.writer)
            .await
            .unwrap();
        (store, dir)
    }

    #[tokio::test]
    async fn stats_read_the_time_index_and_pages_do_not() {
        // Statistics of a big trail (10M events, a time value per event, 20 apps), as ANALYZE
        // would write them: they make a time window look cheap to read from the time index.
        // The type, outcome and (outcome, type) indexes are rated as if a failed login were rare.
        let (store, _dir) = store_with_stats(&[
            ("events_time", "10000000 1 1 1 1"),
            ("events_app", "10000000 500000 1 1"),
            ("events_type", "10000000 1 1 1"),
            ("events_outcome_type", "10000000 1 1"),
            ("events_outcome_seq", "10000000 1 1 1"),
        ])
        .await;
        let window = Query {
            since: Some(datetime!(2026-01-01 00:00 UTC)),
            until: Some(datetime!(2026-01-02 00:00 UTC)),
            ..Query::default()
        };
        let (sql, args) = stats_query(&window, 3_600_000, StatsBy::ALL, Dialect::Sqlite).unwrap();
        let stats = plan(&store, &sql, args).await;
        assert!(
            stats.contains("COVERING INDEX events_time"),
            "stats over a window: {stats}"
        );
        // The viewer's default exclusions are checked in that index too, without the rows.
        let excluding = Query {
            exclude: crate::store::Exclude {
                types: vec![TypeFilter::Prefix("audit.".into())],
                apps: vec!["app-b".into()],
                ..Default::default()
            },
            ..window.clone()
        };
        let (sql, args) = stats_query(
            &excluding,
            3_600_000,
            StatsBy {
                event_type: false,
                app: false,
                outcome: true,
            },
            Dialect::Sqlite,
        )
        .unwrap();
        let stats = plan(&store, &sql, args).await;
        assert!(
            stats.contains("COVERING INDEX events_time"),
            "stats over a window with exclusions: {stats}"
        );
        // Beside type, outcome and app filters too (all three are in that index), whatever the
        // statistics say of their own indexes.
        let filtered = Query {
            event_type: Some(TypeFilter::Exact("auth.login".into())),
            outcome: Some(crate::event::Outcome::Failure),
            app: Some("app-a".into()),
            apps_scope: Some(vec!["app-a".into(), "app-b".into()]),
            ..excluding.clone()
        };
        for by in [StatsBy::ALL, StatsBy::OUTCOME] {
            let (sql, args) = stats_query(&filtered, 3_600_000, by, Dialect::Sqlite).unwrap();
            let stats = plan(&store, &sql, args).await;
            assert!(
                stats.contains("COVERING INDEX events_time"),
                "filtered stats: {stats}"
            );
        }
        let prefixed = Query {
            event_type: Some(TypeFilter::Prefix("auth.".into())),
            ..filtered.clone()
        };
        let (sql, args) = stats_query(&prefixed, 3_600_000, StatsBy::ALL, Dialect::Sqlite).unwrap();
        let stats = plan(&store, &sql, args).await;
        assert!(stats.contains("COVERING INDEX events_time"), "{stats}");
        // The timeline's per-bucket counts read their slice of that index, and sort nothing.
        assert!(outcome_counts_apply(&excluding));
        let (sql, args) = outcome_counts_query(&excluding, Dialect::Sqlite).unwrap();
        let counts = plan(&store, &sql, args).await;
        assert!(
            counts.contains("COVERING INDEX events_time") && !counts.contains("TEMP B-TREE"),
            "bucket counts: {counts}"
        );
        for q in [
            window.clone(),
            Query {
                app: Some("app-a".into()),
                ..window.clone()
            },
            excluding.clone(),
            Query {
                app: Some("app-a".into()),
                ..excluding.clone()
            },
        ] {
            let (sql, args) = build_query(&q, Dialect::Sqlite).unwrap();
            let page = plan(&store, &sql, args).await;
            assert!(!page.contains("events_time"), "page {q:?}: {page}");
            assert!(!page.contains("TEMP B-TREE"), "page sorts: {page}");
        }
    }

    #[tokio::test]
    async fn actor_and_ip_walk_the_actor_index() {
        // Statistics that rate an address as rarer than an actor (as sampled ones may).
        let (store, _dir) = store_with_stats(&[
            ("events_ip", "10000000 2"),
            ("events_actor", "10000000 100 1 1"),
        ])
        .await;
        let q = Query {
            actor: Some("alice".into()),
            ip: Some("10.0.0.1".parse().unwrap()),
            ..Query::default()
        };
        let (sql, args) = build_query(&q, Dialect::Sqlite).unwrap();
        let page = plan(&store, &sql, args).await;
        assert!(page.contains("INDEX events_actor"), "{page}");
        // Alone, an address still has its index.
        let q = Query {
            ip: Some("10.0.0.1".parse().unwrap()),
            ..Query::default()
        };
        let (sql, args) = build_query(&q, Dialect::Sqlite).unwrap();
        let page = plan(&store, &sql, args).await;
        assert!(page.contains("INDEX events_ip"), "{page}");
    }

    #[test]
    fn insert_statements_fit_sqlite_variable_limit() {
        // SQLite's default SQLITE_MAX_VARIABLE_NUMBER is 32766.
        assert!(CHUNK_SIZES[0] * COLUMNS < 32_766);
        assert_eq!(insert_sql("events_x", 2).matches('?').count(), 2 * COLUMNS);
    }

    #[tokio::test]
    async fn a_row_a_constraint_refuses_fails_its_whole_batch() {
        // The insert skips a conflicting row (`OR IGNORE`) instead of aborting; the batch must
        // still fail as a whole, with nothing of it stored.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conflict.db");
        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        append_now(&store, 3).await;
        // The next batch's first seq is one that is taken (as a broken counter would give).
        sqlx::query("UPDATE seq_counter SET last = 2")
            .execute(&store.writer)
            .await
            .unwrap();
        let now = crate::event::now_millis();
        let batch: Vec<AuditEvent> = (0..70).map(|i| event_at(&format!("b{i}"), now)).collect();
        let err = store.append("c", &batch, false).await.unwrap_err();
        assert!(
            format!("{err:?}").contains("1 of 70 linked events were not inserted"),
            "{err:?}"
        );
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(stored, 3, "nothing of the refused batch stays");
        // With the counter right again the same batch goes in whole, its chain unbroken.
        sqlx::query("UPDATE seq_counter SET last = 3")
            .execute(&store.writer)
            .await
            .unwrap();
        assert_eq!(store.append("c", &batch, false).await.unwrap().inserted, 70);
        let links: Vec<i64> = sqlx::query_scalar("SELECT chain_n FROM events ORDER BY seq")
            .fetch_all(&store.writer)
            .await
            .unwrap();
        assert_eq!(links, (1..=73).collect::<Vec<i64>>());
    }

    /// An event of `time` for the migration test.
    fn event_at(label: &str, time: time::OffsetDateTime) -> AuditEvent {
        let mut e: AuditEvent = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::now_v7(), "time": "2025-01-01T00:00:00Z", "type": "auth.login",
            "stage": "completed", "outcome": "success",
            "actor": {"kind": "user", "id": "alice", "verified": true},
            "source": {"ip": "192.0.2.1"},
            "http": {"method": "POST", "path": "/login", "route": "login", "status": 200,
                     "duration_ms": 1, "request_id": label},
        }))
        .unwrap();
        e.time = time;
        e
    }

    /// `sqlite_stat1`'s row count for `table` (the first number of its rows), if it has any.
    async fn stat_rows(store: &SqliteStore, table: &str) -> Option<i64> {
        let stat: Option<String> =
            sqlx::query_scalar("SELECT stat FROM sqlite_stat1 WHERE tbl = ? LIMIT 1")
                .bind(table)
                .fetch_optional(&store.writer)
                .await
                .unwrap();
        stat.map(|s| s.split(' ').next().unwrap().parse().unwrap())
    }

    async fn append_now(store: &SqliteStore, n: usize) {
        let now = crate::event::now_millis();
        let events: Vec<AuditEvent> = (0..n).map(|i| event_at(&format!("r{i}"), now)).collect();
        assert_eq!(
            store.append("c", &events, false).await.unwrap().inserted,
            n as u64
        );
    }

    #[tokio::test]
    async fn statistics_are_refreshed_only_for_tables_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.db");
        let mut store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        store.analyze_max_rows = 100;
        let part = only_partition(&store).await;
        let tokens = format!("{part}_tokens");

        // No statistics yet: SQLite lists the partition, which is within the limit.
        append_now(&store, 30).await;
        let analyzed = store.refresh_stats().await;
        assert!(analyzed.contains(&part), "{analyzed:?}");
        assert_eq!(stat_rows(&store, &part).await, Some(30));
        // Nothing changed enough: nothing to do.
        assert_eq!(store.refresh_stats().await, Vec::<String>::new());

        // More than ten times bigger than its statistics say (400 against 30; SQLite estimates
        // the size from the b-tree's shape), but above the limit: listed by SQLite, counted,
        // kept as it was, and not counted again.
        append_now(&store, 370).await;
        let listed: Vec<String> = sqlx::query_scalar("PRAGMA optimize=0x10003")
            .fetch_all(&store.writer)
            .await
            .unwrap();
        assert!(
            listed
                .iter()
                .any(|s| analyzed_table(s).as_deref() == Some(part.as_str())),
            "{listed:?}"
        );
        let analyzed = store.refresh_stats().await;
        assert!(!analyzed.contains(&part), "{analyzed:?}");
        assert_eq!(stat_rows(&store, &part).await, Some(30));
        assert!(store.stats.too_big().contains(&part));
        // The token keys table has no rows (these events carry no token): never analyzed.
        assert_eq!(stat_rows(&store, &tokens).await, None);

        // Within a larger limit, the same refresh brings the count up to date.
        store.analyze_max_rows = 1_000;
        store.stats.too_big().clear();
        assert!(store.refresh_stats().await.contains(&part));
        assert_eq!(stat_rows(&store, &part).await, Some(400));
    }

    #[test]
    fn the_table_of_an_analyze_statement() {
        assert_eq!(
            analyzed_table(r#"ANALYZE "main"."events_20261205""#).as_deref(),
            Some("events_20261205")
        );
        assert_eq!(
            analyzed_table(r#"ANALYZE "main"."a""b""#).as_deref(),
            Some("a\"b")
        );
        assert_eq!(analyzed_table("ANALYZE main.t"), None);
    }

    #[tokio::test]
    async fn a_trail_from_before_partitions_becomes_the_legacy_partition() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        // The schema of migrations 1-6, with three linked events written as that version did.
        let old = SqlitePool::connect(&url).await.unwrap();
        let mut migrator = migrator();
        migrator.migrations = Cow::Owned(migrator.migrations[..6].to_vec());
        migrator.run(&old).await.unwrap();
        let t_old = datetime!(2025-03-01 10:00 UTC);
        let old_events: Vec<AuditEvent> = (0..3)
            .map(|i| event_at(&format!("old-{i}"), t_old + time::Duration::minutes(i)))
            .collect();
        let mut prev = chain::GENESIS.to_string();
        for (n, e) in (1..).zip(chain::encode_for_append("c", &old_events, &[]).unwrap()) {
            let hash = chain::link_hash("c", n, &prev, e.canonical());
            let row = e
                .linked(crate::event::ChainLink {
                    instance: "c".into(),
                    n,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                })
                .unwrap();
            let sql = "INSERT INTO events (id, time_ms, type, stage, outcome, reason, app, \
                 actor_id, target_kind, target_id, route, status, ip, request_id, \
                 chain_instance, chain_n, chain_hash, body) \
                 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
            bind_row(sqlx::query(sql), row).execute(&old).await.unwrap();
            prev = hash;
        }
        old.close().await;

        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        let mut conn = store.writer.acquire().await.unwrap();
        let parts = store.cached_partitions(&mut conn).await.unwrap();
        drop(conn);
        assert_eq!(parts[0].name, "events_legacy");
        assert_eq!(parts[0].from_ms, i64::MIN);
        // Up to the end of the day of its newest event.
        assert_eq!(
            parts[0].to_ms,
            crate::event::unix_millis(datetime!(2025-03-02 00:00 UTC))
        );
        let opts = crate::store::verify::Options::default();
        let report = crate::store::verify::verify(&store, &opts).await.unwrap();
        assert!(report.ok(), "{}", report.render());

        // The chain goes on across partitions; seq goes on after the old rows.
        let later = vec![
            event_at("new-0", datetime!(2025-03-01 23:00 UTC)),
            event_at("new-1", datetime!(2025-03-05 08:00 UTC)),
        ];
        let appended = store.append("c", &later, false).await.unwrap();
        assert_eq!((appended.inserted, appended.head.unwrap().n), (2, 5));
        // Replays of old and new events are refused in their partitions.
        let again: Vec<AuditEvent> = old_events.iter().chain(&later).cloned().collect();
        assert_eq!(store.append("c", &again, false).await.unwrap().inserted, 0);
        let page = store
            .query(&Query {
                ascending: true,
                limit: 10,
                ..Query::default()
            })
            .await
            .unwrap();
        let seen: Vec<(i64, &str)> = page
            .iter()
            .map(|e| (e.seq.unwrap(), e.http.request_id.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, "old-0"),
                (2, "old-1"),
                (3, "old-2"),
                (4, "new-0"),
                (5, "new-1")
            ]
        );
        // "new-0" is of the legacy partition's last day: it is stored there.
        let legacy: i64 = sqlx::query_scalar("SELECT count(*) FROM events_legacy")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!(legacy, 4);
        let parts: Vec<String> = sqlx::query_scalar("SELECT name FROM partitions ORDER BY from_ms")
            .fetch_all(&store.reader)
            .await
            .unwrap();
        assert!(parts.contains(&"events_20250305".to_string()), "{parts:?}");
        let report = crate::store::verify::verify(&store, &opts).await.unwrap();
        assert!(report.ok(), "{}", report.render());
        store.close().await;
    }
}
