//! Where events rest: the `EventStore` trait and its backends (SQLite, PostgreSQL), chosen by the
//! store URL, with the hash chain and signed checkpoints that make the trail tamper-evident
//! ([`chain`], [`verify`]). A store knows events and queries; it never imports hyper or the
//! route map, and it never decides when to write (the pipeline does).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::event::{AuditEvent, Outcome};

pub mod chain;
pub mod lineage;
mod pages;
pub mod postgres;
mod query;
mod sql;
pub mod sqlite;
pub mod verify;

pub use chain::{
    Appended, ChainHead, Checkpoint, CheckpointKind, Gap, PurgeLink, PurgeReport, Signer,
};
pub use sql::{Columns, StoredRow};

/// Failures of a store. The message names the backend and the operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported store url \"{0}\": expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("no partition \"{0}\" in this store")]
    NoPartition(String),
    #[error("store {op}: {source}")]
    Backend {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored event {id} is unreadable: {source}")]
    Corrupt {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid chain instance id \"{0}\": use 1-64 characters of A-Z a-z 0-9 . _ : -")]
    InvalidInstance(String),
}

impl Error {
    pub(crate) fn backend(op: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Backend { op, source }
    }
}

/// Event type filter: exact (`auth.login`) or prefix (`auth.*` matches `auth.login`,
/// `auth.mfa.verify`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeFilter {
    Exact(String),
    Prefix(String),
}

impl TypeFilter {
    /// `auth.*` is a prefix filter on `auth.`; anything else is exact.
    pub fn parse(s: &str) -> TypeFilter {
        match s.strip_suffix('*') {
            Some(prefix) => TypeFilter::Prefix(prefix.to_string()),
            None => TypeFilter::Exact(s.to_string()),
        }
    }
}

/// Values an event must not have, checked by the store in the same statement as the filters
/// (so a page still holds `limit` events, and stats count what the pages list). Each list
/// excludes the events whose field is one of its values; an event without the field (no app, no
/// target, ...) is never excluded by it. Types are exact or prefixes, as in [`TypeFilter`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exclude {
    pub types: Vec<TypeFilter>,
    pub apps: Vec<String>,
    pub actors: Vec<String>,
    /// Target ids.
    pub targets: Vec<String>,
    pub routes: Vec<String>,
    pub request_ids: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
    pub reasons: Vec<String>,
}

impl Exclude {
    /// Whether nothing is excluded.
    pub fn is_empty(&self) -> bool {
        *self == Exclude::default()
    }

    /// Whether `e` is excluded: the rule the stores' SQL applies, for code that holds events.
    pub fn excludes(&self, e: &AuditEvent) -> bool {
        let has = |list: &[String], v: Option<&str>| v.is_some_and(|v| list.iter().any(|x| x == v));
        self.types.iter().any(|t| match t {
            TypeFilter::Exact(x) => *x == e.event_type,
            TypeFilter::Prefix(p) => e.event_type.starts_with(p.as_str()),
        }) || has(&self.apps, e.app.as_ref().map(|a| a.value.as_str()))
            || has(&self.actors, e.actor.id.as_deref())
            || has(&self.targets, e.target.as_ref().map(|t| t.id.as_str()))
            || has(&self.routes, Some(e.http.route.as_str()))
            || has(&self.request_ids, Some(e.http.request_id.as_str()))
            || has(&self.reasons, e.reason.as_deref())
            || e.source.ip.is_some_and(|ip| self.ips.contains(&ip))
    }
}

/// Which events a query returns. Every `None` means "any".
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub app: Option<String>,
    pub actor: Option<String>,
    /// Target id.
    pub target: Option<String>,
    pub event_type: Option<TypeFilter>,
    pub outcome: Option<Outcome>,
    pub route: Option<String>,
    pub request_id: Option<String>,
    /// Client IP, exact.
    pub ip: Option<std::net::IpAddr>,
    /// Case-insensitive substring of the event id, request id, actor id or display, target id
    /// or display, or details (keys and values). Scans: pair it with a selective filter.
    pub search: Option<String>,
    /// A token's fingerprint or jti: events that presented or issued it.
    pub token: Option<String>,
    /// The event's reason, exact (`invalid_credentials`, `claim_mismatch:role`).
    pub reason: Option<String>,
    /// Only events whose app sources disagreed (`app_conflict` present).
    pub app_conflict: bool,
    /// Inclusive lower bound on event time.
    pub since: Option<OffsetDateTime>,
    /// Exclusive upper bound on event time.
    pub until: Option<OffsetDateTime>,
    /// Tenancy scope: when `Some`, only events whose app is in the list are visible.
    pub apps_scope: Option<Vec<String>>,
    /// Events left out although they match the filters.
    pub exclude: Exclude,
    /// Newest first when false (the default), oldest first when true.
    pub ascending: bool,
    /// Only events with seq > after_seq (ascending) or seq < before_seq (descending) — the cursor.
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    /// At most this many events; the store caps it at 10,000.
    pub limit: u32,
}

/// One group of [`EventStore::stats`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatsRow {
    /// Start of the time bucket, Unix milliseconds.
    pub bucket_ms: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub outcome: String,
    pub app: Option<String>,
    pub count: u64,
}

/// Which columns besides the time bucket [`EventStore::stats_by`] groups by. A column left out is
/// summed over: its rows come back with an empty type or outcome, or no app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsBy {
    pub event_type: bool,
    pub outcome: bool,
    pub app: bool,
}

impl StatsBy {
    /// Bucket × type × outcome × app: what [`EventStore::stats`] returns.
    pub const ALL: StatsBy = StatsBy {
        event_type: true,
        outcome: true,
        app: true,
    };

    /// Bucket × outcome: what the viewer's timeline draws.
    pub const OUTCOME: StatsBy = StatsBy {
        event_type: false,
        outcome: true,
        app: false,
    };

    /// `row` with the columns this grouping leaves out blanked.
    fn blank(self, mut row: StatsRow) -> StatsRow {
        if !self.event_type {
            row.event_type.clear();
        }
        if !self.outcome {
            row.outcome.clear();
        }
        if !self.app {
            row.app = None;
        }
        row
    }
}

/// The contract every backend meets; a conformance suite runs it against each.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Events matching `q`, ordered by seq (descending unless `q.ascending`), `seq` filled in.
    async fn query(&self, q: &Query) -> Result<Vec<AuditEvent>, Error>;
    /// One event by id (`seq` filled in).
    async fn get(&self, id: uuid::Uuid) -> Result<Option<AuditEvent>, Error>;
    /// Event counts matching `q` (its order, cursor and limit are ignored), grouped by time bucket
    /// of `bucket_ms` milliseconds (aligned to the Unix epoch), type, outcome and app, ordered by
    /// bucket, type, outcome, app.
    ///
    /// The default pages through [`EventStore::query`] in constant memory (per group, not per
    /// event); backends override it with one aggregate query.
    async fn stats(&self, q: &Query, bucket_ms: i64) -> Result<Vec<StatsRow>, Error> {
        let bucket_ms = bucket_ms.max(1);
        let mut groups = std::collections::BTreeMap::<_, u64>::new();
        let mut page = Query {
            ascending: true,
            after_seq: None,
            before_seq: None,
            limit: 10_000,
            ..q.clone()
        };
        loop {
            let events = self.query(&page).await?;
            for e in &events {
                let bucket = crate::event::unix_millis(e.time).div_euclid(bucket_ms) * bucket_ms;
                let key = (
                    bucket,
                    e.event_type.clone(),
                    e.outcome.as_str(),
                    e.app.as_ref().map(|a| a.value.clone()),
                );
                *groups.entry(key).or_default() += 1;
            }
            match events.last().and_then(|e| e.seq) {
                Some(last) if events.len() == page.limit as usize => page.after_seq = Some(last),
                _ => break,
            }
        }
        Ok(groups
            .into_iter()
            .map(|((bucket_ms, event_type, outcome, app), count)| StatsRow {
                bucket_ms,
                event_type,
                outcome: outcome.to_string(),
                app,
                count,
            })
            .collect())
    }
    /// [`EventStore::stats`] grouped by the bucket and only the columns `by` names (the timeline
    /// wants bucket × outcome: a few hundred rows where the full grouping may give tens of
    /// thousands). Ordered the same way. The default folds [`EventStore::stats`]; backends
    /// override it with one aggregate query.
    async fn stats_by(
        &self,
        q: &Query,
        bucket_ms: i64,
        by: StatsBy,
    ) -> Result<Vec<StatsRow>, Error> {
        let rows = self.stats(q, bucket_ms).await?;
        Ok(sum_stats(rows.into_iter().map(|r| by.blank(r))))
    }
    /// Cheap liveness check used by `/readyz`.
    async fn ping(&self) -> Result<(), Error>;

    /// Append `events` to `instance`'s hash chain in one transaction: events whose id is already
    /// stored (or repeated in the batch) are skipped, the rest are linked after the chain's head
    /// in order and inserted, each getting a strictly increasing `seq`. Within a chain, seq order
    /// is link order. With `durable`, the commit survives power loss once this returns.
    async fn append(
        &self,
        instance: &str,
        events: &[AuditEvent],
        durable: bool,
    ) -> Result<Appended, Error>;
    /// [`EventStore::append`], given what the caller already encoded: `bodies[i]`, when there
    /// and `Some`, is `events[i]` as serde_json writes it (the write-ahead log's record), which
    /// a store may take as the event's body instead of encoding it again (`bodies` may be
    /// shorter than `events`, or empty). The default ignores them.
    async fn append_encoded(
        &self,
        instance: &str,
        events: &[AuditEvent],
        bodies: &[Option<&str>],
        durable: bool,
    ) -> Result<Appended, Error> {
        let _ = bodies;
        self.append(instance, events, durable).await
    }
    /// Sign and store a checkpoint of `instance`'s chain covering the links since its previous
    /// checkpoint; `None` (nothing written) when there are none.
    async fn checkpoint(
        &self,
        instance: &str,
        kind: CheckpointKind,
        signer: &Signer,
    ) -> Result<Option<Checkpoint>, Error>;
    /// [`EventStore::checkpoint`], numbered and linked after `after` (the newest checkpoint the
    /// caller signed itself) when the store's newest one is not that one any more: a deleted or
    /// replaced checkpoint then shows as a gap in the numbering. The default ignores `after`.
    async fn checkpoint_after(
        &self,
        instance: &str,
        kind: CheckpointKind,
        signer: &Signer,
        after: Option<&Checkpoint>,
    ) -> Result<Option<Checkpoint>, Error> {
        let _ = after;
        self.checkpoint(instance, kind, signer).await
    }
    /// Every stored checkpoint as (row id, JSON body), by chain then `to_n` then row id.
    async fn checkpoints(&self) -> Result<Vec<(i64, String)>, Error>;
    /// The instance ids of every chain with at least one stored link.
    async fn chains(&self) -> Result<Vec<String>, Error>;
    /// Up to `limit` rows of `instance`'s chain with link position above `after_n`, by position
    /// (then seq), exactly as stored.
    async fn chain_rows(
        &self,
        instance: &str,
        after_n: i64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, Error>;
    /// Up to `limit` rows without a chain link, by seq.
    async fn unchained_rows(&self, limit: u32) -> Result<Vec<StoredRow>, Error>;
    /// Delete the given links of `instance`'s chain (what a retention policy chose) in one
    /// transaction, sealed with signed checkpoints so `verify` still passes: a run continuing the
    /// purged prefix moves the `purge` boundary, the other runs become the gaps of a `retention`
    /// checkpoint. Fails without deleting anything when a link is no longer stored.
    async fn purge_links(
        &self,
        instance: &str,
        links: &[PurgeLink],
        signer: &Signer,
    ) -> Result<PurgeReport, Error>;
    /// The trail's time partitions, oldest first; empty for a store that keeps one table.
    async fn partitions(&self) -> Result<Vec<PartitionInfo>, Error> {
        Ok(Vec::new())
    }
    /// Up to `limit` rows of partition `name` with seq above `after_seq`, by seq, as stored.
    async fn partition_rows(
        &self,
        name: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, Error> {
        let _ = (after_seq, limit);
        Err(Error::NoPartition(name.to_string()))
    }
    /// Drop partition `name` whole — what a retention policy found entirely due — in one
    /// transaction, sealing each chain's links in it (`links`, by chain) with the signed
    /// checkpoints [`EventStore::purge_links`] writes, so `verify` still passes. Fails without
    /// dropping anything when the partition holds other rows than `links` lists.
    async fn drop_partition(
        &self,
        name: &str,
        links: &BTreeMap<String, Vec<PurgeLink>>,
        signer: &Signer,
    ) -> Result<PurgeReport, Error> {
        let _ = (links, signer);
        Err(Error::NoPartition(name.to_string()))
    }
}

/// `rows` with equal bucket, type, outcome and app summed into one, in that order.
pub(crate) fn sum_stats(rows: impl IntoIterator<Item = StatsRow>) -> Vec<StatsRow> {
    let mut groups = BTreeMap::<_, u64>::new();
    for r in rows {
        *groups
            .entry((r.bucket_ms, r.event_type, r.outcome, r.app))
            .or_default() += r.count;
    }
    groups
        .into_iter()
        .map(|((bucket_ms, event_type, outcome, app), count)| StatsRow {
            bucket_ms,
            event_type,
            outcome,
            app,
            count,
        })
        .collect()
}

/// A time partition of the trail: the events whose time (Unix ms) is in `[from_ms, to_ms)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub name: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// `url` fit for logs: a password in it is replaced by `***`.
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            // Query parameters may carry a password too.
            let tail = match tail.split_once('?') {
                Some((path, _)) => format!("{path}?..."),
                None => tail.to_string(),
            };
            format!("{scheme}://{user}{masked}@{host}{tail}")
        }
        None => match tail.split_once('?') {
            Some((path, _)) => format!("{scheme}://{authority}{path}?..."),
            None => url.to_string(),
        },
    }
}

/// Open the store named by `url` (`sqlite://PATH`, created if missing, or
/// `postgres://USER:PASSWORD@HOST:PORT/DB?...`), running migrations.
pub async fn open(url: &str) -> Result<Arc<dyn EventStore>, Error> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(sqlite::SqliteStore::open(path).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PostgresStore::open(url).await?));
    }
    Err(Error::UnsupportedUrl(url.to_string()))
}
