//! The filter SQL both backends share: a [`Query`] becomes one `SELECT` (a page of events, or
//! the groups of [`EventStore::stats`]) and its arguments, in `?` order, for either dialect.
//! Values are always bound, never interpolated; it holds no connection and runs no statement.
//!
//! [`EventStore::stats`]: super::EventStore::stats

use time::OffsetDateTime;

use super::{Exclude, Query, StatsBy, TypeFilter};

/// The most rows one query returns, whatever `Query::limit` asks.
const MAX_LIMIT: u32 = 10_000;
/// Rows returned when `Query::limit` is 0.
const DEFAULT_LIMIT: u32 = 100;

/// Which SQL the shared query builder writes: the same conditions, but JSON is TEXT in SQLite
/// and `jsonb` in PostgreSQL. (Placeholders are `?` either way; PostgreSQL's are renumbered.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a `?` of a query built at run time.
#[derive(Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// Milliseconds since the epoch, rounded up: for a millisecond-precision event time `t`,
/// `t >= bound` exactly when `millis(t) >= ceil_millis(bound)`, and the same for `<`.
pub(crate) fn ceil_millis(t: OffsetDateTime) -> i64 {
    let nanos = t.unix_timestamp_nanos();
    let ms = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0);
    ms as i64
}

/// The smallest string greater than every string that starts with `prefix`, or `None` when there
/// is none (the prefix is empty or made only of `char::MAX`). SQLite compares TEXT bytewise, and
/// UTF-8 byte order is code point order, so `prefix <= s < successor` is exactly "starts with".
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
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

/// How SQLite's planner may read a type-prefix range (PostgreSQL plans prefixes well by itself).
///
/// A range on `type` comes out of the type index sorted by type, so SQLite must sort every match
/// to find the newest: over a second for `auth.*` on a million events. Written `+type`, the range
/// cannot use an index, and the planner walks another index (app, actor, outcome, ...) or the
/// table itself in seq order instead, stopping at `limit`. See `SqliteStore::query`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrefixPlan {
    /// The planner may use the type index for the range (then sorts the matches).
    TypeIndex,
    /// `+type`: the range is checked row by row, in seq order.
    SeqOrder,
}

/// The page size `build_query` uses for `q`.
pub(crate) fn effective_limit(q: &Query) -> u32 {
    match q.limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    }
}

/// The SELECT for `q` and its arguments, in `?` order. `None` when nothing can match.
#[cfg(test)]
pub(crate) fn build_query(q: &Query, dialect: Dialect) -> Option<(String, Vec<Arg>)> {
    build_query_planned(q, dialect, PrefixPlan::TypeIndex, None, None)
}

/// An extra bound on a page's seqs, beside its cursor: the prefix window, a high-water mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SeqBound {
    /// `seq > n`
    Above(i64),
    /// `seq <= n`
    AtMost(i64),
}

impl SeqBound {
    /// Whether a seq in `lo..=hi` can satisfy the bound.
    pub(crate) fn reaches(self, lo: i64, hi: i64) -> bool {
        match self {
            SeqBound::Above(n) => hi > n,
            SeqBound::AtMost(n) => lo <= n,
        }
    }
}

/// [`build_query`] with a plan for a type prefix, an extra seq bound, and `within`: a time range
/// `[from_ms, to_ms)` to read (one partition's, so PostgreSQL prunes the others when it plans;
/// every partition's page is then the same statement with other values).
pub(crate) fn build_query_planned(
    q: &Query,
    dialect: Dialect,
    prefix: PrefixPlan,
    seq_bound: Option<SeqBound>,
    within: Option<(i64, i64)>,
) -> Option<(String, Vec<Arg>)> {
    let mut sql = String::from("SELECT seq, id, body FROM events");
    let mut args = Vec::new();
    // A token's events are few and found by their keys (`event_tokens`); asked for a page in seq
    // order with a limit, PostgreSQL may instead walk the seq indexes newest first and check
    // each row (with the GIN index this replaced, a token whose 100 events lay weeks apart took
    // 3 s over 31 day partitions). Found first (MATERIALIZED keeps the planner from folding it
    // back), the rows are then filtered, sorted and cut like any page.
    let token_first = dialect == Dialect::Postgres && has_token(q);
    let unsearched;
    let q = if token_first {
        let mut token_conds = Vec::new();
        push_within(within, &mut token_conds, &mut args);
        push_token_cond(q, dialect, within, &mut token_conds, &mut args);
        sql = format!(
            "WITH t AS MATERIALIZED (SELECT * FROM events WHERE {}) SELECT seq, id, body FROM t",
            token_conds.join(" AND ")
        );
        unsearched = Query {
            token: None,
            ..q.clone()
        };
        &unsearched
    } else {
        q
    };
    let (mut conds, filter_args) =
        filter_conds_planned(q, dialect, prefix, page_time_column(dialect))?;
    args.extend(filter_args);
    if !token_first {
        push_within(within, &mut conds, &mut args);
    }
    if let Some(bound) = seq_bound {
        let (cond, v) = match bound {
            SeqBound::Above(n) => ("seq > ?", n),
            SeqBound::AtMost(n) => ("seq <= ?", n),
        };
        conds.push(cond.into());
        args.push(Arg::Int(v));
    }
    if let Some(after) = q.after_seq {
        conds.push("seq > ?".into());
        args.push(Arg::Int(after));
    }
    if let Some(before) = q.before_seq {
        conds.push("seq < ?".into());
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
    args.push(Arg::Int(i64::from(effective_limit(q))));
    Some((sql, args))
}

/// `LIKE` pattern for "contains `s`", lowercased, with `\` escaping the wildcards.
fn contains_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The conditions of `q`'s filters (not its cursor) and their arguments, in `?` order. `None`
/// when nothing can match.
/// Time bounds here may use the time index (`events_time`, migration 0005): what stats want.
fn filter_conds(q: &Query, dialect: Dialect) -> Option<(Vec<String>, Vec<Arg>)> {
    filter_conds_planned(q, dialect, PrefixPlan::TypeIndex, "time_ms")
}

/// The conditions of a stats query over a window. In SQLite the type, outcome and app conditions
/// are written `+column`, so they are checked inside the time index (which holds all three)
/// instead of walking their own index: `type=auth.login&outcome=failure` over the last 24 hours
/// of 10M events otherwise walked the (outcome, type) index through every failed login of the
/// trail (760,000 rows and their lookups, 2 s) to keep the 3% in the window. Read through the
/// window, the cost stays bounded by the window. The parties (actor, target, request id, ip,
/// token) keep their indexes: they are selective, and the time index does not hold them.
fn stats_conds(q: &Query, dialect: Dialect) -> Option<(Vec<String>, Vec<Arg>)> {
    let windowed = q.since.is_some() || q.until.is_some();
    if dialect == Dialect::Sqlite && windowed {
        filter_conds_with(q, dialect, PrefixPlan::SeqOrder, "time_ms", "+")
    } else {
        filter_conds(q, dialect)
    }
}

/// The column a page's time bounds are written on. A page is read in seq order and stops at its
/// limit, so SQLite must not start from the time index (it would read the whole window and
/// sort it): `+time_ms` keeps the planner off it. PostgreSQL weighs both with its statistics.
fn page_time_column(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "+time_ms",
        Dialect::Postgres => "time_ms",
    }
}

fn filter_conds_planned(
    q: &Query,
    dialect: Dialect,
    prefix: PrefixPlan,
    time_column: &'static str,
) -> Option<(Vec<String>, Vec<Arg>)> {
    filter_conds_with(q, dialect, prefix, time_column, "")
}

/// [`filter_conds_planned`], with `covered` (`""` or `"+"`) written before the app, type and
/// outcome columns: `+` keeps SQLite's planner off their indexes (see [`stats_conds`]).
fn filter_conds_with(
    q: &Query,
    dialect: Dialect,
    prefix: PrefixPlan,
    time_column: &'static str,
    covered: &'static str,
) -> Option<(Vec<String>, Vec<Arg>)> {
    let mut args = Vec::new();
    let mut conds: Vec<String> = Vec::new();

    let mut eq = |conds: &mut Vec<String>, cond: &str, value: &Option<String>| {
        if let Some(v) = value {
            conds.push(cond.into());
            args.push(Arg::Text(v.clone()));
        }
    };
    eq(&mut conds, &format!("{covered}app = ?"), &q.app);
    eq(&mut conds, "actor_id = ?", &q.actor);
    eq(&mut conds, "target_id = ?", &q.target);
    eq(&mut conds, "route = ?", &q.route);
    eq(&mut conds, "request_id = ?", &q.request_id);
    // An address is shared (NAT, a proxy, an office) where an actor, target or request id is
    // one party: beside one of those, SQLite must walk that index and check the address, not
    // the reverse (its sampled statistics, `analysis_limit`, often rate the two alike).
    let ip_column = match dialect {
        Dialect::Sqlite if q.actor.is_some() || q.target.is_some() || q.request_id.is_some() => {
            "+ip = ?"
        }
        Dialect::Sqlite | Dialect::Postgres => "ip = ?",
    };
    eq(&mut conds, ip_column, &q.ip.map(|ip| ip.to_string()));
    eq(&mut conds, "reason = ?", &q.reason);
    if q.app_conflict {
        // `->` reads the same in SQLite (3.38+) and PostgreSQL (jsonb): NULL when absent.
        conds.push("(body -> 'app_conflict') IS NOT NULL".into());
    }

    match &q.event_type {
        Some(TypeFilter::Exact(t)) => {
            conds.push(format!("{covered}type = ?"));
            args.push(Arg::Text(t.clone()));
        }
        Some(TypeFilter::Prefix(p)) if !p.is_empty() => {
            let column = match (dialect, prefix) {
                (Dialect::Sqlite, PrefixPlan::SeqOrder) => "+type",
                (Dialect::Sqlite, PrefixPlan::TypeIndex) | (Dialect::Postgres, _) => "type",
            };
            conds.push(format!("{column} >= ?"));
            args.push(Arg::Text(p.clone()));
            if let Some(upper) = prefix_successor(p) {
                conds.push(format!("{column} < ?"));
                args.push(Arg::Text(upper));
            }
        }
        Some(TypeFilter::Prefix(_)) | None => {}
    }
    if let Some(outcome) = q.outcome {
        conds.push(format!("{covered}outcome = ?"));
        args.push(Arg::Text(outcome.as_str().to_string()));
    }
    if let Some(since) = q.since {
        conds.push(format!("{time_column} >= ?"));
        args.push(Arg::Int(ceil_millis(since)));
    }
    if let Some(until) = q.until {
        conds.push(format!("{time_column} < ?"));
        args.push(Arg::Int(ceil_millis(until)));
    }
    if let Some(apps) = &q.apps_scope {
        if apps.is_empty() {
            return None;
        }
        conds.push(format!(
            "{covered}app IN ({})",
            vec!["?"; apps.len()].join(",")
        ));
        args.extend(apps.iter().map(|a| Arg::Text(a.clone())));
    }
    exclude_conds(&q.exclude, &mut conds, &mut args);
    if let Some(text) = q.search.as_deref().filter(|t| !t.is_empty()) {
        // `->` and `->>` with plain labels read the same in SQLite (3.38+) and PostgreSQL (jsonb).
        let fields = [
            "request_id",
            "actor_id",
            "target_id",
            "body -> 'actor' ->> 'display'",
            "body -> 'target' ->> 'display'",
            "body ->> 'details'",
        ];
        let mut any: Vec<String> = fields
            .iter()
            .map(|f| format!("lower({f}) LIKE ? ESCAPE '\\'"))
            .collect();
        let pattern = contains_pattern(text);
        args.extend(fields.iter().map(|_| Arg::Text(pattern.clone())));
        if let Ok(id) = uuid::Uuid::parse_str(text.trim()) {
            any.push("id = ?".into());
            args.push(Arg::Text(id.to_string()));
        }
        conds.push(format!("({})", any.join(" OR ")));
    }
    push_token_cond(q, dialect, None, &mut conds, &mut args);
    Some((conds, args))
}

/// The conditions of a page's time range to read (see [`build_query_planned`]).
fn push_within(within: Option<(i64, i64)>, conds: &mut Vec<String>, args: &mut Vec<Arg>) {
    if let Some((from_ms, to_ms)) = within {
        conds.push("time_ms >= ?".into());
        conds.push("time_ms < ?".into());
        args.push(Arg::Int(from_ms));
        args.push(Arg::Int(to_ms));
    }
}

/// Whether `q` filters on a token.
fn has_token(q: &Query) -> bool {
    q.token.as_deref().is_some_and(|t| !t.is_empty())
}

/// The condition of `q`'s token filter, if it has one; `within` (a page's time range to read)
/// narrows the days PostgreSQL looks the token up in.
fn push_token_cond(
    q: &Query,
    dialect: Dialect,
    within: Option<(i64, i64)>,
    conds: &mut Vec<String>,
    args: &mut Vec<Arg>,
) {
    let Some(token) = q.token.as_deref().filter(|t| !t.is_empty()) else {
        return;
    };
    if dialect == Dialect::Sqlite {
        // The token side table of each partition (migrations/sqlite/0004), written by the
        // writer beside the event (0006).
        conds.push("seq IN (SELECT seq FROM event_tokens WHERE key = ?)".into());
        args.push(Arg::Text(token.to_string()));
        return;
    }
    // The token keys by day (migrations/postgres/0008, kept by triggers): keyed (day, hash of
    // the key, seq), so the days to look in come first, one index descent each. Listed as an
    // array (the days that hold events, of the range when there is one): with `day BETWEEN`
    // the key cannot position the scan, which then reads every key of those days (50 ms for
    // one day at 10M events).
    let days = match within {
        Some((from_ms, to_ms)) => {
            let (first, last) = token_days(from_ms, to_ms);
            args.push(Arg::Int(first));
            args.push(Arg::Int(last));
            "SELECT day FROM day_seqs WHERE day >= ? AND day <= ?"
        }
        None => "SELECT day FROM day_seqs",
    };
    args.push(Arg::Text(token.to_string()));
    // The keys are hashed, so the body is checked too (jsonb containment: exact on a token's
    // fingerprint or jti, whatever the key order), on the few rows the hash found.
    conds.push(format!(
        "seq IN (SELECT seq FROM event_tokens WHERE day = ANY(ARRAY({days})) \
         AND key = hashtextextended(?, 0)) \
         AND (body -> 'tokens' @> ?::jsonb OR body -> 'tokens' @> ?::jsonb)"
    ));
    for key in ["fingerprint", "jti"] {
        let probe = serde_json::json!([{ key: token }]);
        args.push(Arg::Text(probe.to_string()));
    }
}

/// One UTC day in Unix milliseconds: both stores keep one partition per day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The first and last `event_tokens.day` of the events in `[from_ms, to_ms)`: PostgreSQL's
/// `time_ms / 86400000`, which truncates, as Rust's `/` does (and is monotonic, so the bounds
/// of the range bound every day in it).
pub(crate) fn token_days(from_ms: i64, to_ms: i64) -> (i64, i64) {
    (from_ms / DAY_MS, to_ms.saturating_sub(1) / DAY_MS)
}

/// The conditions of `x`, appended to `conds` and `args`. Negations never use an index, so they
/// leave the plan to the filters: a page still walks seq order and stops at its limit, stats
/// still read the time index (which holds type and app, the usual exclusions, without the row).
/// A column may be NULL (no app, no target): such an event is kept, as `NOT IN` alone would not.
fn exclude_conds(x: &Exclude, conds: &mut Vec<String>, args: &mut Vec<Arg>) {
    let mut not_in = |column: &str, nullable: bool, values: Vec<String>| {
        if values.is_empty() {
            return;
        }
        let marks = vec!["?"; values.len()].join(",");
        conds.push(if nullable {
            format!("({column} IS NULL OR {column} NOT IN ({marks}))")
        } else {
            format!("{column} NOT IN ({marks})")
        });
        args.extend(values.into_iter().map(Arg::Text));
    };
    let exact: Vec<String> = x
        .types
        .iter()
        .filter_map(|t| match t {
            TypeFilter::Exact(t) => Some(t.clone()),
            TypeFilter::Prefix(_) => None,
        })
        .collect();
    not_in("type", false, exact);
    not_in("app", true, x.apps.clone());
    not_in("actor_id", true, x.actors.clone());
    not_in("target_id", true, x.targets.clone());
    not_in("route", true, x.routes.clone());
    not_in("request_id", true, x.request_ids.clone());
    not_in("ip", true, x.ips.iter().map(ToString::to_string).collect());
    not_in("reason", true, x.reasons.clone());
    for t in &x.types {
        let TypeFilter::Prefix(p) = t else { continue };
        // The same bytewise range as a prefix filter (`type` is "C"-collated in PostgreSQL).
        match prefix_successor(p) {
            Some(upper) => {
                conds.push("NOT (type >= ? AND type < ?)".into());
                args.push(Arg::Text(p.clone()));
                args.push(Arg::Text(upper));
            }
            None => {
                conds.push("NOT (type >= ?)".into());
                args.push(Arg::Text(p.clone()));
            }
        }
    }
}

/// `SELECT` of [`EventStore::stats_by`] for `q` and its arguments; `None` when nothing can
/// match. A column `by` leaves out is selected as a constant (`''`, or NULL for the app) and not
/// grouped on, so the rows keep one shape.
///
/// [`EventStore::stats_by`]: super::EventStore::stats_by
pub(crate) fn stats_query(
    q: &Query,
    bucket_ms: i64,
    by: StatsBy,
    dialect: Dialect,
) -> Option<(String, Vec<Arg>)> {
    let (conds, mut where_args) = stats_conds(q, dialect)?;
    let pick =
        |on: bool, column: &'static str, blank: &'static str| if on { column } else { blank };
    let mut sql = format!(
        "SELECT (time_ms - ((time_ms % ?) + ?) % ?) AS bucket, {} AS type, {} AS outcome, {} AS app, \
         count(*) FROM events",
        pick(by.event_type, "type", "''"),
        pick(by.outcome, "outcome", "''"),
        pick(by.app, "app", "CAST(NULL AS TEXT)"),
    );
    let mut args: Vec<Arg> = (0..3).map(|_| Arg::Int(bucket_ms)).collect();
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    let groups: Vec<&str> = [
        Some("1"),
        by.event_type.then_some("2"),
        by.outcome.then_some("3"),
        by.app.then_some("4"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let groups = groups.join(", ");
    sql.push_str(&format!(" GROUP BY {groups} ORDER BY {groups}"));
    args.append(&mut where_args);
    Some((sql, args))
}

/// Whether [`outcome_counts_query`] may answer `q`'s stats bucket by bucket: a time window and
/// no other filter, only type and app exclusions (which the time index holds, and which no index
/// serves), so that the window is the one indexable condition and each bucket's query reads its
/// slice of the time index and nothing else. (Beside a filter the planner may walk that filter's
/// index instead, once per bucket; the grouped query then reads the matches once.)
pub(crate) fn outcome_counts_apply(q: &Query) -> bool {
    let x = &q.exclude;
    q.since.is_some()
        && q.until.is_some()
        && q.event_type.is_none()
        && q.outcome.is_none()
        && q.app.is_none()
        && q.actor.is_none()
        && q.target.is_none()
        && q.route.is_none()
        && q.request_id.is_none()
        && q.ip.is_none()
        && q.search.is_none()
        && q.token.is_none()
        && q.reason.is_none()
        && !q.app_conflict
        && q.apps_scope.is_none()
        && x.actors.is_empty()
        && x.targets.is_empty()
        && x.routes.is_empty()
        && x.request_ids.is_empty()
        && x.ips.is_empty()
        && x.reasons.is_empty()
}

/// The counts of `q`'s events by outcome, without grouping: one row of four sums. Run once per
/// time bucket (with `q`'s window narrowed to it), this gives the timeline's bucket × outcome
/// counts without the sort a `GROUP BY` over the whole window costs in SQLite (five times the
/// scan itself over 333,000 events). `None` when nothing can match.
pub(crate) fn outcome_counts_query(q: &Query, dialect: Dialect) -> Option<(String, Vec<Arg>)> {
    let (conds, args) = stats_conds(q, dialect)?;
    let mut sql = String::from(
        "SELECT count(*), \
         coalesce(sum(CASE WHEN outcome = 'success' THEN 1 ELSE 0 END), 0), \
         coalesce(sum(CASE WHEN outcome = 'failure' THEN 1 ELSE 0 END), 0), \
         coalesce(sum(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END), 0) \
         FROM events",
    );
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    Some((sql, args))
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
        assert!(build_query(&q, Dialect::Sqlite).is_none());
    }

    #[test]
    fn exclusions_are_negations_in_the_same_statement() {
        let q = Query {
            exclude: Exclude {
                types: vec![
                    TypeFilter::Prefix("audit.".into()),
                    TypeFilter::Exact("token.refresh".into()),
                ],
                apps: vec!["app-b".into(), "app-c".into()],
                ips: vec!["10.0.0.1".parse().unwrap()],
                ..Exclude::default()
            },
            apps_scope: Some(vec!["app-a".into()]),
            ..Query::default()
        };
        let (sql, args) = build_query(&q, Dialect::Sqlite).unwrap();
        assert_eq!(
            sql,
            "SELECT seq, id, body FROM events WHERE app IN (?) AND type NOT IN (?) \
             AND (app IS NULL OR app NOT IN (?,?)) AND (ip IS NULL OR ip NOT IN (?)) \
             AND NOT (type >= ? AND type < ?) ORDER BY seq DESC LIMIT ?"
        );
        assert_eq!(args.len(), 8);
    }

    #[test]
    fn values_are_bound_never_interpolated() {
        let q = Query {
            app: Some("x' OR 1=1 --".into()),
            apps_scope: Some(vec!["a".into(), "b".into()]),
            event_type: Some(TypeFilter::Prefix("auth.".into())),
            ..Query::default()
        };
        let (sql, args) = build_query(&q, Dialect::Sqlite).unwrap();
        assert_eq!(
            sql,
            "SELECT seq, id, body FROM events WHERE app = ? AND type >= ? AND type < ? \
             AND app IN (?,?) ORDER BY seq DESC LIMIT ?"
        );
        assert_eq!(args.len(), 6);
    }

    #[test]
    fn token_days_bound_every_day_in_the_range_as_postgres_divides() {
        const D: i64 = 86_400_000;
        assert_eq!(token_days(0, D), (0, 0));
        assert_eq!(token_days(D - 1, D + 1), (0, 1));
        // The legacy partition's open lower end, and negative times (truncated, like SQL's /).
        assert_eq!(token_days(i64::MIN, D).1, 0);
        assert_eq!(token_days(-D, 0), (-1, 0));
        assert!(token_days(-D, 0).1 >= -1 / D);
    }

    #[test]
    fn a_postgres_token_page_finds_the_tokens_rows_first_within_its_range() {
        let q = Query {
            token: Some("fp".into()),
            app: Some("a".into()),
            ..Query::default()
        };
        let (sql, args) = build_query_planned(
            &q,
            Dialect::Postgres,
            PrefixPlan::TypeIndex,
            None,
            Some((86_400_000, 3 * 86_400_000)),
        )
        .unwrap();
        assert_eq!(
            sql,
            "WITH t AS MATERIALIZED (SELECT * FROM events WHERE time_ms >= ? AND time_ms < ? \
             AND seq IN (SELECT seq FROM event_tokens WHERE day = ANY(ARRAY(\
             SELECT day FROM day_seqs WHERE day >= ? AND day <= ?)) \
             AND key = hashtextextended(?, 0)) \
             AND (body -> 'tokens' @> ?::jsonb OR body -> 'tokens' @> ?::jsonb)) \
             SELECT seq, id, body FROM t WHERE app = ? ORDER BY seq DESC LIMIT ?"
        );
        assert_eq!(args.len(), 9);
        // Days 1 and 2: the range ends before day 3 begins.
        assert!(matches!(args[2..4], [Arg::Int(1), Arg::Int(2)]));
        assert!(matches!(&args[4], Arg::Text(p) if p == "fp"));
        assert!(matches!(&args[5], Arg::Text(p) if p == r#"[{"fingerprint":"fp"}]"#));
        // Without a range (stats), the days come from day_seqs.
        let (sql, _) = build_query(&q, Dialect::Postgres).unwrap();
        assert!(
            sql.contains(
                "day = ANY(ARRAY(SELECT day FROM day_seqs)) AND key = hashtextextended(?, 0)"
            ),
            "{sql}"
        );
        // SQLite keeps its side table, in the one statement.
        let (sql, _) = build_query(&q, Dialect::Sqlite).unwrap();
        assert!(
            sql.contains("seq IN (SELECT seq FROM event_tokens WHERE key = ?)"),
            "{sql}"
        );
    }
}
