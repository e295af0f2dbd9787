//! Where events rest: the `EventStore` trait and its backends (SQLite now, PostgreSQL later),
//! chosen by the store URL. A store knows events and queries; it never imports hyper or the
//! route map.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::event::{AuditEvent, Outcome};

pub mod sqlite;

/// Failures of a store. The message names the backend and the operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported store url \"{0}\": expected sqlite://PATH")]
    UnsupportedUrl(String),
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
    /// Inclusive lower bound on event time.
    pub since: Option<OffsetDateTime>,
    /// Exclusive upper bound on event time.
    pub until: Option<OffsetDateTime>,
    /// Tenancy scope: when `Some`, only events whose app is in the list are visible.
    pub apps_scope: Option<Vec<String>>,
    /// Newest first when false (the default), oldest first when true.
    pub ascending: bool,
    /// Only events with seq > after_seq (ascending) or seq < before_seq (descending) — the cursor.
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    /// At most this many events; the store caps it at 10,000.
    pub limit: u32,
}

/// The contract every backend meets; a conformance suite runs it against each.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Insert events in one transaction, assigning each a strictly increasing `seq`. An event
    /// whose `id` is already stored is skipped (inserting is idempotent). Returns how many rows
    /// were newly written.
    async fn insert_batch(&self, events: &[AuditEvent]) -> Result<u64, Error>;
    /// Events matching `q`, ordered by seq (descending unless `q.ascending`), `seq` filled in.
    async fn query(&self, q: &Query) -> Result<Vec<AuditEvent>, Error>;
    /// One event by id (`seq` filled in).
    async fn get(&self, id: uuid::Uuid) -> Result<Option<AuditEvent>, Error>;
    /// Cheap liveness check used by `/readyz`.
    async fn ping(&self) -> Result<(), Error>;
}

/// Open the store named by `url` (`sqlite://PATH`, created if missing), running migrations.
pub async fn open(url: &str) -> Result<Arc<dyn EventStore>, Error> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(sqlite::SqliteStore::open(path).await?));
    }
    Err(Error::UnsupportedUrl(url.to_string()))
}
