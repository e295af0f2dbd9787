//! The PostgreSQL backend: the shared store when many sidecars write one trail. Same tables,
//! indexes and queries as SQLite (its own migrations in `migrations/postgres`; the query builder
//! is shared, with `$n` placeholders); values are always bound, never interpolated.
//!
//! Ascending reads stop at a commit-ordered high-water mark, so a poller never skips an event.
//! An identity column hands out values when rows are inserted, not when they commit: writer A
//! may hold seq 10 uncommitted while writer B commits seq 11, and a cursor reader that saw 11
//! would skip 10 forever. Writers do not serialise against each other for this (a fleet of
//! sidecars would share one commit stream): an append, checkpoint or purge takes only the
//! advisory lock of its own chain (one writer per chain, so a chain never forks), a two-key lock
//! whose first key marks it as an authtrail chain lock. An ascending read first notes the
//! sequence's last value `L`, then lists the chain locks held at that moment (`pg_locks`) and
//! takes each *shared* for an instant: granted once that chain's running append has committed
//! or rolled back. Any append that drew a seq up to `L` held its chain lock when `L` was read,
//! so after this every seq up to `L` is settled, and the read takes only `seq <= L`. Chains not
//! appending are not waited for, and no append waits for another chain's. Descending pages and
//! single-event reads take no lock. The sequence must not cache values per session (`CACHE 1`,
//! migration 0006).
//!
//! `events` is partitioned by range of `time_ms`, one partition per UTC day (`events_YYYYMMDD`,
//! migration 0006; the rows stored before it are the partition `events_legacy`). A day's
//! partition is created on demand, before the first append that writes into it (see
//! `PostgresStore::ensure_partitions`); queries read `events` and PostgreSQL finds the
//! partitions. A page reads only the days whose seqs can reach it, newest first (`day_seqs`,
//! migration 0007, kept by a trigger; the order and the stop are `super::pages`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row as _};

use super::chain::{self, ChainTx, Segment};
use super::pages::{self, Page, Partition};
use super::query::{build_query_planned, stats_query, Arg, Dialect, PrefixPlan, SeqBound};
use super::sql::{self, dollar_placeholders, Row};
use super::{
    Appended, ChainHead, Checkpoint, CheckpointKind, Columns, Error, EventStore, PartitionInfo,
    PurgeLink, PurgeReport, Query, Signer, StatsBy, StatsRow, StoredRow,
};
use crate::event::{unix_millis, AuditEvent};
use time::OffsetDateTime;

/// Embedded migrations; versions match the SQLite ones that make the same change.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "events",
        include_str!("../../migrations/postgres/0001_events.sql"),
    ),
    (
        2,
        "chain",
        include_str!("../../migrations/postgres/0002_chain.sql"),
    ),
    (
        3,
        "query_plans",
        include_str!("../../migrations/postgres/0003_query_plans.sql"),
    ),
    (
        4,
        "event_tokens",
        include_str!("../../migrations/postgres/0004_event_tokens.sql"),
    ),
    (
        5,
        "time_index",
        include_str!("../../migrations/postgres/0005_time_index.sql"),
    ),
    // SQLite's 6 is another change, and its partitions are its 7: each store has its own
    // migration table, so the numbers need not agree from here on.
    (
        6,
        "partitions",
        include_str!("../../migrations/postgres/0006_partitions.sql"),
    ),
    (
        7,
        "day_seqs",
        include_str!("../../migrations/postgres/0007_day_seqs.sql"),
    ),
    (
        8,
        "token_days",
        include_str!("../../migrations/postgres/0008_token_days.sql"),
    ),
];

/// Connections for queries (the admin API, exports, verify).
const READERS: u32 = 8;
/// How long a query waits for a connection before failing (the store is down or saturated).
const READ_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections for writes: appends, checkpoints, purges. Their own pool, so queries never
/// starve the writer, and a short wait, so an outage is noticed (and the spool used) quickly:
/// while the server refuses connections, sqlx retries until this runs out.
const WRITERS: u32 = 2;
const WRITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// Taken at the start of every append, checkpoint and purge: the chain's lock ($1: the chain
/// instance), keyed (authtrail chain locks of this `events` table, hash of the instance).
const APPEND_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(\
     hashtext('authtrail.chain:' || 'events'::regclass::oid::text), hashtext($1))";
/// Wait for every append running now: take each chain lock held at this moment, shared.
const SETTLE_SQL: &str =
    "SELECT count(pg_advisory_xact_lock_shared(l.classid::int4, l.objid::int4)) \
     FROM pg_locks l \
     WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND l.classid = hashtext('authtrail.chain:' || 'events'::regclass::oid::text)::oid";
/// The last seq handed out (NULL before the first).
const LAST_SEQ_SQL: &str =
    "SELECT pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')::regclass)";
/// Longest an ascending read waits for running appends to finish before it fails.
const HIGH_WATER_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

const INSERT_SQL: &str = "INSERT INTO events (id, time_ms, type, stage, outcome, reason, app, \
     actor_id, target_kind, target_id, route, status, ip, request_id, chain_instance, chain_n, \
     chain_hash, body) \
     SELECT id, time_ms, type, stage, outcome, reason, app, actor_id, target_kind, target_id, \
     route, status, ip, request_id, chain_instance, chain_n, chain_hash, body::jsonb \
     FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::text[], \
     $14::text[], $15::text[], $16::int8[], $17::text[], $18::text[]) WITH ORDINALITY \
     AS u(id, time_ms, type, stage, outcome, reason, app, actor_id, target_kind, target_id, \
     route, status, ip, request_id, chain_instance, chain_n, chain_hash, body, ord) \
     ORDER BY ord ON CONFLICT (id, time_ms) DO NOTHING";

/// The seqs of a token's key ($2) on the days $1 (`event_tokens`, migration 0008).
const TOKEN_SEQS_SQL: &str =
    "SELECT seq FROM event_tokens WHERE day = ANY($1) AND key = hashtextextended($2, 0)";

/// Token keys deleted per statement after a partition is dropped.
const TOKEN_KEYS_DELETE_BATCH: i64 = 10_000;

// One partition of `events` per UTC day (`DAY_MS`, in milliseconds).
use super::query::DAY_MS;
/// Taken by whoever creates a partition, so sidecars that find the same day missing at once
/// create it once: keyed by this `events` table (one bigint key; chain locks take two).
const PARTITION_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(\
     hashtext('authtrail.partitions:' || 'events'::regclass::oid::text))";
/// Every partition of `events`: its name and bound (`FOR VALUES FROM (...) TO (...)`).
const PARTITIONS_SQL: &str = "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) \
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
     WHERE i.inhparent = 'events'::regclass";
/// How long creating a partition waits for the table lock it needs (`SHARE UPDATE EXCLUSIVE` on
/// `events`: it does not wait for reads or appends, only for DDL, `ANALYZE` or vacuum).
const PARTITION_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '10s'";

/// An `EventStore` in a PostgreSQL database (the schema first on the connection's
/// `search_path`).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    writer: PgPool,
    reader: PgPool,
    /// The time ranges `events` has partitions for, as last read from the catalog or created.
    partitions: Arc<Mutex<Partitions>>,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=...`) and bring the schema
    /// up to date.
    pub async fn open(url: &str) -> Result<PostgresStore, Error> {
        let options = PgConnectOptions::from_str(url).map_err(Error::backend("open"))?;
        PostgresStore::connect(options).await
    }

    /// Connect with explicit options (e.g. a `search_path` per test) and migrate.
    pub async fn connect(options: PgConnectOptions) -> Result<PostgresStore, Error> {
        let writer = PgPoolOptions::new()
            .max_connections(WRITERS)
            .acquire_timeout(WRITE_ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(Error::backend("open"))?;
        migrator().run(&writer).await?;
        // Readers plan every statement for its values: a page reads its partitions through
        // `events` bounded by time, which PostgreSQL prunes while planning; a generic plan keeps
        // every partition and guesses the selectivity of its filters. At 10M events, with the
        // default `auto` (which may go generic after five runs) an absent type prefix took
        // 600 ms at p95, and with generic plans forced a token's events took 1.5 s; planned for
        // their values, 4 and 6 ms.
        let reader = PgPoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(READ_ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.options([("plan_cache_mode", "force_custom_plan")]));
        let store = PostgresStore {
            writer,
            reader,
            partitions: Arc::default(),
        };
        // Today's and tomorrow's partitions now, so the first appends (and the first after
        // midnight) find theirs. Not fatal: an append creates what it needs anyway.
        let mut conn = store
            .writer
            .acquire()
            .await
            .map_err(Error::backend("open"))?;
        let today = unix_millis(OffsetDateTime::now_utc());
        if let Err(e) = store
            .ensure_partitions(&mut conn, [today, today.saturating_add(DAY_MS)])
            .await
        {
            tracing::warn!(error = %e, "postgres store: creating today's partitions failed");
        }
        Ok(store)
    }

    /// Make sure a partition of `events` holds each of `times` (Unix ms), creating the missing
    /// days' partitions.
    ///
    /// Known ranges are kept in memory, so the usual call (every day already there) runs no
    /// SQL. Otherwise, in a short transaction of its own before the append's: take the
    /// partition lock, read the partitions from the catalog again (another sidecar may have
    /// created the day meanwhile), and create each missing day as a table that is then
    /// attached (`ATTACH PARTITION` takes `SHARE UPDATE EXCLUSIVE` on `events`, so neither
    /// reads nor appends wait for it, where `CREATE TABLE ... PARTITION OF` would take
    /// `ACCESS EXCLUSIVE` and queue every query behind the longest running one). A day is
    /// clamped to what no partition covers yet (the legacy partition ends at a day boundary, so
    /// in practice days are whole).
    ///
    /// There is no DEFAULT partition: every event's day is created before it is written, any
    /// time at all (an old spool replay, a skewed clock); and a DEFAULT partition would have to
    /// be scanned, under an exclusive lock, by every later attach. If a partition vanishes
    /// behind the store's back (dropped by hand), the insert fails with "no partition", and
    /// [`EventStore::append`] forgets what it knew and creates it again.
    async fn ensure_partitions(
        &self,
        conn: &mut sqlx::PgConnection,
        times: impl IntoIterator<Item = i64>,
    ) -> Result<(), Error> {
        let mut missing: Vec<i64> = {
            let known = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            times.into_iter().filter(|&t| !known.covers(t)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        let op = "create partition";
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(Error::backend(op))?;
        sqlx::query(PARTITION_LOCK_TIMEOUT)
            .execute(&mut *tx)
            .await
            .map_err(Error::backend(op))?;
        sqlx::query(PARTITION_LOCK_SQL)
            .execute(&mut *tx)
            .await
            .map_err(Error::backend(op))?;
        let mut known = load_partitions(&mut tx).await?;
        for t in missing {
            if known.covers(t) {
                continue;
            }
            let (lo, hi) = known.free_day_around(t);
            let mut name = partition_name(t.div_euclid(DAY_MS));
            // A table of that name that is not a partition (detached by hand, say): not ours
            // to attach.
            for i in 1.. {
                let taken: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(&name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(Error::backend(op))?;
                if !taken {
                    break;
                }
                name = format!("{}_{i}", partition_name(t.div_euclid(DAY_MS)));
            }
            // `name` is `events_` and digits; the bounds are integers.
            for ddl in [
                format!("CREATE TABLE {name} (LIKE events)"),
                format!(
                    "ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({}) TO ({})",
                    bound_sql(lo),
                    bound_sql(hi)
                ),
            ] {
                sqlx::query(AssertSqlSafe(ddl))
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::backend(op))?;
            }
            known.insert(lo, hi);
        }
        tx.commit().await.map_err(Error::backend(op))?;
        *self.partitions.lock().unwrap_or_else(|e| e.into_inner()) = known;
        Ok(())
    }

    /// The partitions of `events` by time, each with the seq bounds of its days (`day_seqs`,
    /// migration 0007), as a page reads them. The partitions' ranges are the ones known to the
    /// store, read again from the catalog when a day with events falls in none of them (another
    /// sidecar created it). A partition dropped meanwhile is harmless: its range reads nothing.
    async fn page_partitions(
        &self,
        conn: &mut sqlx::PgConnection,
    ) -> Result<(Vec<Partition>, Vec<i64>), Error> {
        let days: Vec<(i64, i64, i64)> = sqlx::query_as("SELECT day, lo_seq, hi_seq FROM day_seqs")
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::backend("query"))?;
        let day_ms = |day: i64| day.saturating_mul(DAY_MS);
        let mut known = self
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if days.iter().any(|&(day, ..)| !known.covers(day_ms(day))) {
            known = load_partitions(conn).await?;
            *self.partitions.lock().unwrap_or_else(|e| e.into_inner()) = known.clone();
        }
        let mut parts: Vec<Partition> = known
            .ranges
            .into_iter()
            .map(|(from_ms, to_ms)| Partition {
                name: String::new(),
                from_ms,
                to_ms,
                seqs: None,
            })
            .collect();
        parts.sort_by_key(|p| p.from_ms);
        for &(day, lo, hi) in &days {
            if let Some(i) = pages::find_index(&parts, day_ms(day)) {
                let p = &mut parts[i];
                p.seqs = Some(p.seqs.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))));
            }
        }
        Ok((parts, days.into_iter().map(|(day, ..)| day).collect()))
    }

    /// Delete the token keys of days `first..=last` with seqs `lo..=hi` (a dropped partition's),
    /// [`TOKEN_KEYS_DELETE_BATCH`] rows a statement, each committed on its own: no lock is
    /// held long, and appends go on between them.
    async fn delete_token_keys(
        &self,
        first: i64,
        last: i64,
        lo: i64,
        hi: i64,
    ) -> Result<(), Error> {
        loop {
            let deleted = sqlx::query(
                "DELETE FROM event_tokens WHERE (day, key, seq) IN (SELECT day, key, seq \
                 FROM event_tokens WHERE day >= $1 AND day <= $2 AND seq >= $3 AND seq <= $4 \
                 LIMIT $5)",
            )
            .bind(first)
            .bind(last)
            .bind(lo)
            .bind(hi)
            .bind(TOKEN_KEYS_DELETE_BATCH)
            .execute(&self.writer)
            .await
            .map_err(Error::backend("purge"))?
            .rows_affected();
            if deleted < TOKEN_KEYS_DELETE_BATCH as u64 {
                return Ok(());
            }
        }
    }

    /// Forget the partitions known, so the next append reads them from the catalog again.
    fn forget_partitions(&self) {
        *self.partitions.lock().unwrap_or_else(|e| e.into_inner()) = Partitions::default();
    }

    /// Close the pools, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// A transaction holding the append locks of `instance`'s chain.
    async fn begin_chain(&self, instance: &str, op: &'static str) -> Result<PgTx<'static>, Error> {
        let mut tx = self.writer.begin().await.map_err(Error::backend(op))?;
        sqlx::query(APPEND_LOCK_SQL)
            .bind(instance)
            .execute(&mut *tx)
            .await
            .map_err(Error::backend(op))?;
        Ok(PgTx(tx, Vec::new()))
    }

    /// The commit-ordered high-water mark: a seq at or below which every event is committed or
    /// will never be (see the module docs).
    async fn high_water(&self) -> Result<i64, Error> {
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(Error::backend("query"))?;
        let last: Option<i64> = sqlx::query_scalar(LAST_SEQ_SQL)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::backend("query"))?;
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(Error::backend("query"))?;
        sqlx::query(HIGH_WATER_LOCK_TIMEOUT)
            .execute(&mut *tx)
            .await
            .map_err(Error::backend("query"))?;
        sqlx::query(SETTLE_SQL)
            .execute(&mut *tx)
            .await
            .map_err(Error::backend("query"))?;
        tx.commit().await.map_err(Error::backend("query"))?;
        Ok(last.unwrap_or(0))
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

type PgQuery = sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>;

/// The shared builder's `?` SQL, made PostgreSQL's: `$n` placeholders, and the jsonb body read
/// back as text.
fn bind_args(sql: String, args: Vec<Arg>) -> PgQuery {
    let sql = dollar_placeholders(&sql).replacen(
        "SELECT seq, id, body FROM",
        "SELECT seq, id, body::text FROM",
        1,
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for arg in args {
        query = match arg {
            Arg::Text(s) => query.bind(s),
            Arg::Int(n) => query.bind(n),
        };
    }
    query
}

fn decode(row: &PgRow) -> Result<AuditEvent, Error> {
    let seq: i64 = row.try_get(0).map_err(Error::backend("query"))?;
    let body: &str = row.try_get(2).map_err(Error::backend("query"))?;
    let mut event: AuditEvent = serde_json::from_str(body).map_err(|source| Error::Corrupt {
        id: row.try_get::<String, _>(1).unwrap_or_default(),
        source,
    })?;
    event.seq = Some(seq);
    Ok(event)
}

/// Insert `rows` with one UNNEST statement, in order; returns the rows newly written.
async fn insert_rows(conn: &mut sqlx::PgConnection, rows: Vec<Row>) -> Result<u64, Error> {
    macro_rules! col {
        ($field:ident) => {
            rows.iter()
                .map(|r| r.columns.$field.clone())
                .collect::<Vec<_>>()
        };
    }
    let q = sqlx::query(INSERT_SQL)
        .bind(col!(id))
        .bind(col!(time_ms))
        .bind(col!(event_type))
        .bind(col!(stage))
        .bind(col!(outcome))
        .bind(col!(reason))
        .bind(col!(app))
        .bind(col!(actor_id))
        .bind(col!(target_kind))
        .bind(col!(target_id))
        .bind(col!(route))
        .bind(col!(status))
        .bind(col!(ip))
        .bind(col!(request_id))
        .bind(col!(chain_instance))
        .bind(col!(chain_n))
        .bind(col!(chain_hash))
        .bind(rows.iter().map(|r| r.body.clone()).collect::<Vec<_>>());
    Ok(q.execute(&mut *conn)
        .await
        .map_err(Error::backend("insert"))?
        .rows_affected())
}

/// The columns `verify` reads, in [`stored_row`]'s order.
const STORED_COLUMNS: &str = "seq, id, time_ms, type, stage, outcome, reason, app, actor_id, \
     target_kind, target_id, route, status, ip, request_id, chain_instance, chain_n, chain_hash, \
     body::text";

fn stored_row(r: &PgRow) -> Result<StoredRow, Error> {
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

#[async_trait]
impl EventStore for PostgresStore {
    async fn query(&self, q: &Query) -> Result<Vec<AuditEvent>, Error> {
        let bound = if q.ascending {
            Some(SeqBound::AtMost(self.high_water().await?))
        } else {
            None
        };
        let page_sql = |within| {
            build_query_planned(q, Dialect::Postgres, PrefixPlan::TypeIndex, bound, within)
        };
        if page_sql(None).is_none() {
            return Ok(Vec::new());
        }
        // Each partition is read through `events` bounded by its time range: PostgreSQL plans
        // that one partition, and every partition's read is the same prepared statement. No
        // transaction: the seq bounds are read first, and they cover every event committed by
        // then (an event and its day's bound commit together, and bounds only widen). So an
        // ascending page, bounded by a high-water mark settled before, misses nothing; a
        // descending page may leave out an event committed while it is read, as a page read a
        // moment earlier would.
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(Error::backend("query"))?;
        let (parts, days) = self.page_partitions(&mut conn).await?;
        let mut page = Page::new(q);
        let mut candidates = pages::candidates(&parts, q, bound);
        // A token's events: the seqs of its key's hash on every day (`event_tokens`, one index
        // descent per day; a hash may also find another token's, which the page's own check of
        // the body leaves out), then only the partitions whose seqs hold them.
        if let Some(token) = q.token.as_deref().filter(|t| !t.is_empty()) {
            let seqs: Vec<i64> = sqlx::query_scalar(TOKEN_SEQS_SQL)
                .bind(days)
                .bind(token)
                .fetch_all(&mut *conn)
                .await
                .map_err(Error::backend("query"))?;
            candidates.retain(|(_, (lo, hi))| seqs.iter().any(|s| (*lo..=*hi).contains(s)));
        }
        for g in pages::doubling_ranges(&candidates) {
            if !page.reaches(g.lo, g.hi) {
                break;
            }
            let Some((sql, args)) = page_sql(Some((g.from_ms, g.to_ms))) else {
                break;
            };
            let rows = bind_args(sql, args)
                .fetch_all(&mut *conn)
                .await
                .map_err(Error::backend("query"))?;
            page.add(rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?);
        }
        Ok(page.into_events())
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
        let Some((sql, args)) = stats_query(q, bucket_ms.max(1), by, Dialect::Postgres) else {
            return Ok(Vec::new());
        };
        let rows = bind_args(sql, args)
            .fetch_all(&self.reader)
            .await
            .map_err(Error::backend("stats"))?;
        sql::stats_rows(&rows)
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<AuditEvent>, Error> {
        let row = sqlx::query("SELECT seq, id, body::text FROM events WHERE id = $1")
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
        // Every commit waits for its WAL flush (synchronous_commit's default).
        _durable: bool,
    ) -> Result<Appended, Error> {
        let encoded = chain::encode_for_append(instance, events, bodies)?;
        let mut times: Vec<i64> = encoded.iter().map(|e| e.columns.time_ms).collect();
        times.sort_unstable();
        times.dedup();
        // Tomorrow's too, so the first append after midnight finds its partition ready.
        let tomorrow = unix_millis(OffsetDateTime::now_utc()).saturating_add(DAY_MS);
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(Error::backend("append"))?;
        let mut result;
        let mut attempt = 0;
        loop {
            attempt += 1;
            result = async {
                // Outside the append's transaction: partition DDL is held only for its own
                // short transaction, never while this chain's lock is.
                self.ensure_partitions(&mut conn, times.iter().copied().chain([tomorrow]))
                    .await?;
                let tx = sqlx::Connection::begin(&mut *conn)
                    .await
                    .map_err(Error::backend("append"))?;
                let mut tx = PgTx(tx, times.clone());
                sqlx::query(APPEND_LOCK_SQL)
                    .bind(instance)
                    .execute(&mut *tx.0)
                    .await
                    .map_err(Error::backend("append"))?;
                let appended = chain::append(&mut tx, instance, &encoded).await?;
                tx.0.commit().await.map_err(Error::backend("append"))?;
                Ok::<_, Error>(appended)
            }
            .await;
            // A partition known here was dropped behind the store's back: read them again and
            // create it anew, once.
            if attempt == 1 && matches!(&result, Err(e) if no_partition(e)) {
                self.forget_partitions();
                continue;
            }
            break;
        }
        if matches!(&result, Err(e) if read_only(e)) {
            conn.close_on_drop();
        }
        result
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
        let mut tx = self.begin_chain(instance, "checkpoint").await?;
        let cp = chain::checkpoint(&mut tx, instance, kind, signer, after).await?;
        tx.0.commit().await.map_err(Error::backend("checkpoint"))?;
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
        let rows = sqlx::query(
            "SELECT DISTINCT chain_instance FROM events WHERE chain_instance IS NOT NULL \
             ORDER BY chain_instance",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(Error::backend("chains"))?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::backend("chains"))
    }

    async fn chain_rows(
        &self,
        instance: &str,
        after_n: i64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, Error> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {STORED_COLUMNS} FROM events WHERE chain_instance = $1 AND chain_n > $2 \
             ORDER BY chain_n, seq LIMIT $3"
        )))
        .bind(instance.to_string())
        .bind(after_n)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(Error::backend("verify"))?;
        rows.iter().map(stored_row).collect()
    }

    async fn unchained_rows(&self, limit: u32) -> Result<Vec<StoredRow>, Error> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {STORED_COLUMNS} FROM events WHERE chain_instance IS NULL \
             ORDER BY seq LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(Error::backend("verify"))?;
        rows.iter().map(stored_row).collect()
    }

    async fn purge_links(
        &self,
        instance: &str,
        links: &[PurgeLink],
        signer: &Signer,
    ) -> Result<PurgeReport, Error> {
        let mut tx = self.begin_chain(instance, "purge").await?;
        let report = chain::purge_links(&mut tx, instance, links, signer).await?;
        tx.0.commit().await.map_err(Error::backend("purge"))?;
        Ok(report)
    }

    async fn partitions(&self) -> Result<Vec<PartitionInfo>, Error> {
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(Error::backend("partitions"))?;
        partition_infos(&mut conn).await
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
        let Some(p) = partition_infos(&mut conn)
            .await?
            .into_iter()
            .find(|p| p.name == name)
        else {
            return Err(Error::NoPartition(name.to_string()));
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {STORED_COLUMNS} FROM {} WHERE seq > $1 ORDER BY seq LIMIT $2",
            p.name
        )))
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::backend("partitions"))?;
        rows.iter().map(stored_row).collect()
    }

    /// Takes the chain lock of every chain in `links` (in name order, as every other holder
    /// takes one at a time), so no append, checkpoint or purge of those chains runs meanwhile;
    /// then `DROP TABLE` of the partition, which holds `ACCESS EXCLUSIVE` on `events` for the
    /// rest of this short transaction (queries wait; an append of that day creates the
    /// partition again afterwards).
    async fn drop_partition(
        &self,
        name: &str,
        links: &BTreeMap<String, Vec<PurgeLink>>,
        signer: &Signer,
    ) -> Result<PurgeReport, Error> {
        let op = "purge";
        let mut tx = PgTx(
            self.writer.begin().await.map_err(Error::backend(op))?,
            Vec::new(),
        );
        for instance in links.keys() {
            sqlx::query(APPEND_LOCK_SQL)
                .bind(instance)
                .execute(&mut *tx.0)
                .await
                .map_err(Error::backend(op))?;
        }
        let Some(part) = partition_infos(&mut tx.0)
            .await?
            .into_iter()
            .find(|p| p.name == name)
        else {
            return Err(Error::NoPartition(name.to_string()));
        };
        // `name` is a partition of `events` (just checked), so an identifier of ours.
        let (part_lo, part_hi): (Option<i64>, Option<i64>) = sqlx::query_as(AssertSqlSafe(
            format!("SELECT min(seq), max(seq) FROM {name}"),
        ))
        .fetch_one(&mut *tx.0)
        .await
        .map_err(Error::backend(op))?;
        let report = chain::drop_partition(&mut tx, name, links, signer).await?;
        // Its days' seq bounds go with it (a day written again starts a new bound).
        sqlx::query("DELETE FROM day_seqs WHERE day >= $1 AND day < $2")
            .bind(part.from_ms.div_euclid(DAY_MS))
            .bind(part.to_ms.saturating_add(DAY_MS - 1).div_euclid(DAY_MS))
            .execute(&mut *tx.0)
            .await
            .map_err(Error::backend(op))?;
        tx.0.commit().await.map_err(Error::backend(op))?;
        self.forget_partitions();
        // Its events' token keys: a dropped table fires no delete trigger. Deleted after the
        // drop, outside its transaction: a day's keys (~1.4 per event) deleted inside it would
        // keep `events` locked while they go. Meanwhile they are never read (pages look keys up
        // only on the days of `day_seqs`, whose rows for these days went with the drop, and a
        // day written again gets higher seqs than these). Only this partition's seqs, so the
        // keys of other partitions' events of the same days stay.
        if let (Some(lo), Some(hi)) = (part_lo, part_hi) {
            let (first, last) = super::query::token_days(part.from_ms, part.to_ms);
            if let Err(e) = self.delete_token_keys(first, last, lo, hi).await {
                tracing::warn!(partition = %name, error = %e, "postgres store: the dropped partition's token keys were not all deleted (they are never read)");
            }
        }
        tracing::info!(partition = %name, events = report.deleted, "postgres store: partition dropped by retention");
        Ok(report)
    }
}

/// The partitions of `events` by time, named (a DEFAULT partition, which the store never
/// creates, is left out).
async fn partition_infos(conn: &mut sqlx::PgConnection) -> Result<Vec<PartitionInfo>, Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(PARTITIONS_SQL)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::backend("partitions"))?;
    let mut parts: Vec<PartitionInfo> = rows
        .into_iter()
        .filter_map(|(name, bound)| {
            parse_bound(&bound).map(|(from_ms, to_ms)| PartitionInfo {
                name,
                from_ms,
                to_ms,
            })
        })
        .collect();
    parts.sort_by_key(|p| p.from_ms);
    Ok(parts)
}

/// SQLSTATE 25006: a session that is read-only (`default_transaction_read_only`, or a standby).
/// A session keeps the default it started with, so a writer connection that saw this would
/// refuse every write even once the database takes writes again: it is closed rather than
/// reused, and the next write opens a fresh session.
fn read_only(e: &Error) -> bool {
    matches!(e, Error::Backend { source: sqlx::Error::Database(db), .. }
        if db.code().as_deref() == Some("25006"))
}

/// SQLSTATE 23514 from an insert: "no partition of relation \"events\" found for row".
fn no_partition(e: &Error) -> bool {
    matches!(e, Error::Backend { source: sqlx::Error::Database(db), .. }
        if db.code().as_deref() == Some("23514") && db.message().starts_with("no partition"))
}

/// The time ranges `[lo, hi)` that partitions of `events` hold, in Unix ms (`i64::MIN`:
/// `MINVALUE`; `i64::MAX`: `MAXVALUE`, inclusive), not overlapping.
#[derive(Clone, Debug, Default)]
struct Partitions {
    ranges: Vec<(i64, i64)>,
}

impl Partitions {
    fn covers(&self, t: i64) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| lo <= t && (t < hi || hi == i64::MAX))
    }

    fn insert(&mut self, lo: i64, hi: i64) {
        self.ranges.push((lo, hi));
    }

    /// The UTC day of `t` (which no partition covers), cut to what no partition covers.
    fn free_day_around(&self, t: i64) -> (i64, i64) {
        let day = t.div_euclid(DAY_MS);
        let mut lo = day.checked_mul(DAY_MS).unwrap_or(i64::MIN);
        let mut hi = day
            .checked_add(1)
            .and_then(|d| d.checked_mul(DAY_MS))
            .unwrap_or(i64::MAX);
        for &(plo, phi) in &self.ranges {
            if phi <= t && phi > lo {
                lo = phi;
            }
            if plo > t && plo < hi {
                hi = plo;
            }
        }
        (lo, hi)
    }
}

/// The partitions of `events` from the catalog.
async fn load_partitions(conn: &mut sqlx::PgConnection) -> Result<Partitions, Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(PARTITIONS_SQL)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::backend("partitions"))?;
    Ok(Partitions {
        ranges: rows
            .iter()
            .filter_map(|(_, bound)| parse_bound(bound))
            .collect(),
    })
}

/// `FOR VALUES FROM (MINVALUE) TO ('1700438400000')` as `(i64::MIN, 1700438400000)`; `None`
/// for anything else (`DEFAULT`).
fn parse_bound(bound: &str) -> Option<(i64, i64)> {
    fn value(s: &str) -> Option<i64> {
        match s.trim().trim_matches('\'') {
            "MINVALUE" => Some(i64::MIN),
            "MAXVALUE" => Some(i64::MAX),
            v => v.parse().ok(),
        }
    }
    let rest = bound.strip_prefix("FOR VALUES FROM (")?;
    let (from, rest) = rest.split_once(')')?;
    let to = rest.trim_start().strip_prefix("TO (")?.strip_suffix(')')?;
    Some((value(from)?, value(to)?))
}

/// A bound as SQL.
fn bound_sql(v: i64) -> String {
    match v {
        i64::MIN => "MINVALUE".into(),
        i64::MAX => "MAXVALUE".into(),
        v => v.to_string(),
    }
}

/// `events_YYYYMMDD` for UTC day `day` (days since 1970-01-01); `events_d<day>` (`m` for a
/// minus) outside years 0-9999.
fn partition_name(day: i64) -> String {
    let date = day
        .checked_mul(86_400)
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .filter(|d| (0..=9999).contains(&d.year()));
    match date {
        Some(d) => format!(
            "events_{:04}{:02}{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        ),
        None => format!("events_d{}", day.to_string().replace('-', "m")),
    }
}

/// The chain steps on a PostgreSQL transaction that holds the append lock, and the event times
/// of the batch being appended, sorted (empty outside an append).
struct PgTx<'c>(sqlx::Transaction<'c, Postgres>, Vec<i64>);

#[async_trait]
impl ChainTx for PgTx<'_> {
    async fn existing_ids(&mut self, ids: &[uuid::Uuid]) -> Result<HashSet<uuid::Uuid>, Error> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        // A stored copy of an event has its time (it never changes), so only the partitions
        // between the batch's first and last times are looked in (pruned at run time in a
        // generic plan too), one probe of the `(id, time_ms)` index per id. Joined to the ids
        // rather than `id = ANY($1) AND time_ms = ANY($2)`: on a day's partition without
        // statistics yet the planner chose a scan that compared every row with every array
        // element — 15 s for a batch of 5,000 against 300,000 rows.
        let query = match (self.1.first(), self.1.last()) {
            (Some(&min), Some(&max)) => sqlx::query_scalar(
                "SELECT e.id FROM unnest($1::text[]) AS u(id) JOIN events e ON e.id = u.id \
                 WHERE e.time_ms BETWEEN $2 AND $3",
            )
            .bind(ids)
            .bind(min)
            .bind(max),
            _ => sqlx::query_scalar("SELECT id FROM events WHERE id = ANY($1)").bind(ids),
        };
        let found: Vec<String> = query
            .fetch_all(&mut *self.0)
            .await
            .map_err(Error::backend("append"))?;
        Ok(found
            .iter()
            .filter_map(|s| uuid::Uuid::parse_str(s).ok())
            .collect())
    }

    async fn head(&mut self, instance: &str) -> Result<Option<ChainHead>, Error> {
        // The newest stored link, or the newest link a checkpoint pinned when that is higher: a
        // purge may have deleted the newest links, and the chain must go on after them.
        let row = sqlx::query(
            "SELECT n, h FROM (SELECT chain_n AS n, chain_hash AS h FROM events \
             WHERE chain_instance = $1 ORDER BY chain_n DESC LIMIT 1) AS l \
             UNION ALL SELECT n, h FROM (SELECT to_n AS n, body::jsonb ->> 'head_hash' AS h \
             FROM checkpoints WHERE instance = $1 ORDER BY to_n DESC LIMIT 1) AS c \
             ORDER BY n DESC LIMIT 1",
        )
        .bind(instance.to_string())
        .fetch_optional(&mut *self.0)
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

    async fn insert_rows(&mut self, rows: Vec<Row>) -> Result<u64, Error> {
        let expected = rows.len() as u64;
        let inserted = insert_rows(&mut self.0, rows).await?;
        if inserted != expected {
            return Err(Error::Backend {
                op: "append",
                source: sqlx::Error::Protocol(format!(
                    "{} of {expected} linked events were not inserted",
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
            "SELECT MAX(to_n) FROM checkpoints WHERE instance = $1 AND kind = 'purge'"
        } else {
            "SELECT MAX(to_n) FROM checkpoints WHERE instance = $1"
        };
        sqlx::query_scalar(sql)
            .bind(instance.to_string())
            .fetch_one(&mut *self.0)
            .await
            .map_err(Error::backend("checkpoint"))
    }

    async fn segment(&mut self, instance: &str, from_n: i64, to_n: i64) -> Result<Segment, Error> {
        let r = sqlx::query(
            "SELECT count(*), MIN(time_ms), MAX(time_ms) FROM events \
             WHERE chain_instance = $1 AND chain_n > $2 AND chain_n <= $3",
        )
        .bind(instance.to_string())
        .bind(from_n)
        .bind(to_n)
        .fetch_one(&mut *self.0)
        .await
        .map_err(Error::backend("checkpoint"))?;
        let seg = || -> Result<Segment, sqlx::Error> {
            Ok(Segment {
                count: r.try_get(0)?,
                min_time_ms: r.try_get(1)?,
                max_time_ms: r.try_get(2)?,
            })
        };
        seg().map_err(Error::backend("checkpoint"))
    }

    async fn link_at(&mut self, instance: &str, n: i64) -> Result<Option<(String, String)>, Error> {
        let row = sqlx::query(
            "SELECT id, chain_hash FROM events WHERE chain_instance = $1 AND chain_n = $2 LIMIT 1",
        )
        .bind(instance.to_string())
        .bind(n)
        .fetch_optional(&mut *self.0)
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
            "INSERT INTO checkpoints (instance, to_n, kind, created_ms, body) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(cp.instance.clone())
        .bind(cp.to_n)
        .bind(cp.kind.as_str())
        .bind(cp.created_ms)
        .bind(body)
        .execute(&mut *self.0)
        .await
        .map_err(Error::backend("checkpoint"))?;
        Ok(())
    }

    async fn last_checkpoint(&mut self, instance: &str) -> Result<Option<String>, Error> {
        sqlx::query_scalar(
            "SELECT body FROM checkpoints WHERE instance = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(instance.to_string())
        .fetch_optional(&mut *self.0)
        .await
        .map_err(Error::backend("checkpoint"))
    }

    async fn delete_links(&mut self, instance: &str, ns: &[i64]) -> Result<u64, Error> {
        Ok(
            sqlx::query("DELETE FROM events WHERE chain_instance = $1 AND chain_n = ANY($2)")
                .bind(instance.to_string())
                .bind(ns.to_vec())
                .execute(&mut *self.0)
                .await
                .map_err(Error::backend("purge"))?
                .rows_affected(),
        )
    }

    async fn partition_counts(&mut self, name: &str) -> Result<(i64, i64), Error> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT count(*), count(chain_n) FROM {name}"
        )))
        .fetch_one(&mut *self.0)
        .await
        .map_err(Error::backend("purge"))
    }

    /// `DROP TABLE` holds `ACCESS EXCLUSIVE` on `events` for the rest of the transaction; it
    /// waits for running queries at most [`PARTITION_LOCK_TIMEOUT`].
    async fn drop_partition_table(&mut self, name: &str) -> Result<(), Error> {
        sqlx::query(PARTITION_LOCK_TIMEOUT)
            .execute(&mut *self.0)
            .await
            .map_err(Error::backend("purge"))?;
        sqlx::query(AssertSqlSafe(format!("DROP TABLE {name}")))
            .execute(&mut *self.0)
            .await
            .map_err(Error::backend("purge"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_bounds_parse_as_the_catalog_writes_them() {
        assert_eq!(
            parse_bound("FOR VALUES FROM (MINVALUE) TO ('1700438400000')"),
            Some((i64::MIN, 1_700_438_400_000))
        );
        assert_eq!(
            parse_bound("FOR VALUES FROM ('-86400000') TO (MAXVALUE)"),
            Some((-86_400_000, i64::MAX))
        );
        assert_eq!(parse_bound("DEFAULT"), None);
    }

    #[test]
    fn a_day_is_named_and_cut_to_what_no_partition_holds() {
        assert_eq!(partition_name(0), "events_19700101");
        assert_eq!(partition_name(20_061), "events_20241204");
        assert_eq!(partition_name(-1), "events_19691231");
        assert_eq!(partition_name(3_000_000), "events_d3000000");
        let mut p = Partitions::default();
        p.insert(i64::MIN, DAY_MS + 5);
        assert!(p.covers(-7) && p.covers(DAY_MS + 4) && !p.covers(DAY_MS + 5));
        // The legacy partition ends inside day 1: day 1's partition starts where it ends.
        assert_eq!(p.free_day_around(DAY_MS + 9), (DAY_MS + 5, 2 * DAY_MS));
        p.insert(3 * DAY_MS, i64::MAX);
        assert!(p.covers(i64::MAX));
        assert_eq!(p.free_day_around(2 * DAY_MS + 1), (2 * DAY_MS, 3 * DAY_MS));
        assert_eq!(Partitions::default().free_day_around(-1), (-DAY_MS, 0));
        assert_eq!(
            Partitions::default().free_day_around(i64::MAX - 1).1,
            i64::MAX
        );
    }
}
