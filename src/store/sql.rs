//! What both SQL backends share: the columns an event is stored as (copies of the fields queries
//! filter on, plus its chain link), the row they make with its body, and the placeholder rewrite
//! from `?` to `$n`. It holds no connection and runs no statement, and knows nothing of the chain
//! (`chain.rs` encodes events into rows).

use super::{Error, StatsRow};
use crate::event::{unix_millis, AuditEvent, Stage};

/// The indexed columns of one stored event, as written (from [`Columns::of`]) or as read back.
/// `verify` compares the two, so an edit to a column that queries filter on is caught even when
/// the event body was left alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    pub id: String,
    pub time_ms: i64,
    pub event_type: String,
    pub stage: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub app: Option<String>,
    pub actor_id: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub route: Option<String>,
    pub status: Option<i64>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub chain_instance: Option<String>,
    pub chain_n: Option<i64>,
    pub chain_hash: Option<String>,
}

impl Columns {
    /// The columns `event` is stored with.
    pub fn of(e: &AuditEvent) -> Columns {
        Columns {
            id: e.id.to_string(),
            time_ms: unix_millis(e.time),
            event_type: e.event_type.clone(),
            stage: Some(stage_str(e.stage).to_string()),
            outcome: e.outcome.as_str().to_string(),
            reason: e.reason.clone(),
            app: e.app.as_ref().map(|a| a.value.clone()),
            actor_id: e.actor.id.clone(),
            target_kind: e.target.as_ref().map(|t| t.kind.clone()),
            target_id: e.target.as_ref().map(|t| t.id.clone()),
            route: Some(e.http.route.clone()),
            status: e.http.status.map(i64::from),
            ip: e.source.ip.map(|ip| ip.to_string()),
            request_id: Some(e.http.request_id.clone()),
            chain_instance: e.chain.as_ref().map(|c| c.instance.clone()),
            chain_n: e.chain.as_ref().map(|c| c.n),
            chain_hash: e.chain.as_ref().map(|c| c.hash.clone()),
        }
    }

    /// The first column whose value differs from `other`'s: (name, self's value, other's value).
    pub fn first_difference(&self, other: &Columns) -> Option<(&'static str, String, String)> {
        fn show<T: std::fmt::Debug>(v: &T) -> String {
            format!("{v:?}")
        }
        macro_rules! cmp {
            ($($field:ident => $name:literal),* $(,)?) => {
                $(
                    if self.$field != other.$field {
                        return Some(($name, show(&self.$field), show(&other.$field)));
                    }
                )*
            };
        }
        cmp!(
            id => "id", time_ms => "time_ms", event_type => "type", stage => "stage",
            outcome => "outcome", reason => "reason", app => "app", actor_id => "actor_id",
            target_kind => "target_kind", target_id => "target_id", route => "route",
            status => "status", ip => "ip", request_id => "request_id",
            chain_instance => "chain_instance", chain_n => "chain_n", chain_hash => "chain_hash",
        );
        None
    }
}

/// One stored event exactly as the table holds it, for `verify`.
#[derive(Clone, Debug)]
pub struct StoredRow {
    pub seq: i64,
    pub columns: Columns,
    /// The stored JSON body (what queries return).
    pub body: String,
}

pub(crate) fn stage_str(stage: Stage) -> &'static str {
    match stage {
        Stage::Attempt => "attempt",
        Stage::Completed => "completed",
    }
}

/// A row ready to insert: its columns and its JSON body.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub columns: Columns,
    pub body: String,
    /// The keys the event is found under by token (fingerprints and jtis); SQLite writes them
    /// to `event_tokens` beside the row, PostgreSQL's index reads them from the body.
    pub token_keys: Vec<String>,
}

pub(crate) fn encode_error(e: serde_json::Error) -> Error {
    Error::Backend {
        op: "insert",
        source: sqlx::Error::Encode(Box::new(e)),
    }
}

/// The rows of a stats query (`bucket, type, outcome, app, count`, as `stats_query` in
/// src/store/query.rs selects them) as [`StatsRow`]s, whichever backend read them.
pub(crate) fn stats_rows<R>(rows: &[R]) -> Result<Vec<StatsRow>, Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|row| {
            let count: i64 = row.try_get(4)?;
            Ok(StatsRow {
                bucket_ms: row.try_get(0)?,
                event_type: row.try_get(1)?,
                outcome: row.try_get(2)?,
                app: row.try_get(3)?,
                count: u64::try_from(count).unwrap_or(0),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::backend("stats"))
}

/// Rewrite `?` placeholders to PostgreSQL's `$1, $2, ...`. The SQL this crate builds never holds
/// a `?` anywhere else (values are bound, never interpolated; JSON operators are `->`/`->>`).
pub(crate) fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            dollar_placeholders("a = ? AND b IN (?,?) LIMIT ?"),
            "a = $1 AND b IN ($2,$3) LIMIT $4"
        );
    }
}
