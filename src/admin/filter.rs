//! The query code shared by the admin API and the CLI: filters parsed from `name=value` pairs
//! (a query string, or the CLI's flags), turned into a store [`Query`] under an app scope, and
//! paged with an opaque cursor on `seq`.
//!
//! The cursor is what makes polling safe: pages are cut by `seq`, which the store assigns in
//! commit order, so a client walking forward (`order=asc`) with the cursor it was given never
//! skips an event committed while it was paging and never sees one twice. It knows nothing of
//! HTTP or credentials.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Error;
use crate::config::types;
use crate::event::{AuditEvent, Outcome};
use crate::store::{self, EventStore, Exclude, Query, TypeFilter};

/// Events per page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most events one API page returns.
pub const MAX_LIMIT: u32 = 1000;
/// Longest `q` accepted, in characters.
const MAX_SEARCH: usize = 200;

/// The filter parameters, as named in query strings.
pub const FILTER_PARAMS: &[&str] = &[
    "app",
    "actor",
    "target",
    "type",
    "outcome",
    "route",
    "request_id",
    "ip",
    "token",
    "reason",
    "conflict",
    "since",
    "until",
    "q",
];

/// Which events to return, before any app scope is applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filters {
    pub app: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub event_type: Option<TypeFilter>,
    pub outcome: Option<Outcome>,
    pub route: Option<String>,
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
    /// A token's fingerprint or jti.
    pub token: Option<String>,
    /// Inclusive.
    pub since: Option<OffsetDateTime>,
    /// Exclusive.
    pub until: Option<OffsetDateTime>,
    /// Substring of ids, display names and details.
    pub search: Option<String>,
    /// The event's reason, exact.
    pub reason: Option<String>,
    /// Only events whose app sources disagreed.
    pub conflict: bool,
}

/// Turn `24h` (that long before `now`) or an RFC 3339 time into an instant.
pub fn parse_time(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    match types::Duration::parse(s) {
        // `now - d` panics past year -9999 (`since=999999999d`): refuse such a duration instead.
        Ok(d) => time::Duration::try_from(d.0)
            .ok()
            .and_then(|d| now.checked_sub(d))
            .ok_or_else(|| "the duration reaches too far into the past".to_string()),
        Err(_) => Err("expected a duration like 24h or an RFC 3339 time".to_string()),
    }
}

fn text(name: &str, value: &str) -> Result<Option<String>, Error> {
    if value.is_empty() {
        // An empty form field means "any", as in the viewer's filter form.
        return Ok(None);
    }
    if value.chars().count() > 256 || value.chars().any(char::is_control) {
        return Err(Error::invalid(
            name,
            value,
            "must be at most 256 characters, without control characters",
        ));
    }
    Ok(Some(value.to_string()))
}

impl Filters {
    /// Set the filter called `name` from its text. `Ok(false)` when `name` is not a filter.
    /// An empty value leaves the filter unset.
    pub fn set(&mut self, name: &str, value: &str, now: OffsetDateTime) -> Result<bool, Error> {
        match name {
            "app" => self.app = text(name, value)?,
            "actor" => self.actor = text(name, value)?,
            "target" => self.target = text(name, value)?,
            "route" => self.route = text(name, value)?,
            "request_id" => self.request_id = text(name, value)?,
            "token" => self.token = text(name, value)?,
            "reason" => self.reason = text(name, value)?,
            "conflict" => {
                self.conflict = match value {
                    "" | "false" | "0" => false,
                    "true" | "1" => true,
                    v => return Err(Error::invalid(name, v, "expected true or false")),
                }
            }
            "type" => {
                self.event_type = text(name, value)?.map(|t| TypeFilter::parse(&t));
            }
            "outcome" => {
                self.outcome = match value {
                    "" => None,
                    v => Some(v.parse::<Outcome>().map_err(|_| {
                        Error::invalid(name, v, "expected success, failure, error or unknown")
                    })?),
                }
            }
            "ip" => {
                self.ip = match value {
                    "" => None,
                    v => Some(
                        v.parse::<IpAddr>()
                            .map_err(|_| Error::invalid(name, v, "expected an IP address"))?,
                    ),
                }
            }
            "since" | "until" => {
                let t = match value {
                    "" => None,
                    v => Some(parse_time(v, now).map_err(|why| Error::invalid(name, v, why))?),
                };
                if name == "since" {
                    self.since = t;
                } else {
                    self.until = t;
                }
            }
            "q" => {
                if value.chars().count() > MAX_SEARCH {
                    return Err(Error::invalid(
                        name,
                        value,
                        format!("must be at most {MAX_SEARCH} characters"),
                    ));
                }
                self.search = (!value.trim().is_empty()).then(|| value.trim().to_string());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The store query for these filters, seeing only `apps_scope` (`None`: every app). Order,
    /// cursor and limit are left at their defaults: see [`fetch_page`].
    pub fn to_query(&self, apps_scope: Option<Vec<String>>) -> Query {
        Query {
            app: self.app.clone(),
            actor: self.actor.clone(),
            target: self.target.clone(),
            event_type: self.event_type.clone(),
            outcome: self.outcome,
            route: self.route.clone(),
            request_id: self.request_id.clone(),
            ip: self.ip,
            token: self.token.clone(),
            search: self.search.clone(),
            reason: self.reason.clone(),
            app_conflict: self.conflict,
            since: self.since,
            until: self.until,
            apps_scope,
            ..Query::default()
        }
    }
}

/// Page order by `seq`: newest first (`desc`) or oldest first (`asc`, for polling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    /// Parse `asc` / `desc`.
    pub fn parse(s: &str) -> Result<Order, Error> {
        match s {
            "asc" => Ok(Order::Asc),
            "desc" => Ok(Order::Desc),
            other => Err(Error::invalid("order", other, "expected asc or desc")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// Where the next page starts: just after (asc) or before (desc) `seq`. Opaque to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub order: Order,
    pub seq: i64,
}

impl Cursor {
    /// The cursor's text form (URL-safe).
    pub fn encode(&self) -> String {
        let plain = format!("v1.{}.{}", self.order.as_str(), self.seq);
        URL_SAFE_NO_PAD.encode(plain)
    }

    /// Parse a cursor issued by [`Cursor::encode`] for a page in `order`.
    pub fn decode(s: &str, order: Order) -> Result<Cursor, Error> {
        let bad = || Error::invalid("cursor", s, "not a cursor this server issued");
        let plain = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let plain = std::str::from_utf8(&plain).map_err(|_| bad())?;
        let mut parts = plain.split('.');
        let (Some("v1"), Some(o), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let cursor_order = Order::parse(o).map_err(|_| bad())?;
        let seq: i64 = seq.parse().map_err(|_| bad())?;
        if seq < 0 {
            return Err(bad());
        }
        if cursor_order != order {
            return Err(Error::invalid(
                "cursor",
                s,
                format!("it pages order={}", cursor_order.as_str()),
            ));
        }
        Ok(Cursor { order, seq })
    }
}

/// One page's worth of events and where the next one starts.
#[derive(Clone, Debug)]
pub struct Page {
    pub events: Vec<AuditEvent>,
    /// `None` when a descending walk has reached the oldest event. An ascending page always has
    /// one (the last seq seen, or the cursor it started from), so a poller can keep asking.
    pub next: Option<Cursor>,
}

/// Fetch the page of `query` in `order` after `cursor`, at most `limit` events.
pub async fn fetch_page(
    store: &dyn EventStore,
    query: &Query,
    order: Order,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Page, store::Error> {
    let limit = limit.max(1);
    let mut q = query.clone();
    q.ascending = order == Order::Asc;
    q.limit = limit;
    match (order, cursor) {
        (Order::Asc, Some(c)) => q.after_seq = Some(c.seq),
        (Order::Desc, Some(c)) => q.before_seq = Some(c.seq),
        (_, None) => {}
    }
    let events = store.query(&q).await?;
    let last = events.last().and_then(|e| e.seq);
    let next = match order {
        Order::Asc => Some(Cursor {
            order,
            seq: last.or(cursor.map(|c| c.seq)).unwrap_or(0),
        }),
        Order::Desc if events.len() as u32 == limit => last.map(|seq| Cursor { order, seq }),
        Order::Desc => None,
    };
    Ok(Page { events, next })
}

/// A parsed query string: filters, paging, and the endpoint's own extra parameters.
#[derive(Clone, Debug)]
pub struct Params {
    pub filters: Filters,
    pub order: Option<Order>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Parameters the endpoint allowed beyond filters and paging (`format`, `bucket`).
    pub extra: Vec<(String, String)>,
    /// Every pair as sent, for the audit event and the `Link` header.
    pub raw: Vec<(String, String)>,
}

impl Params {
    /// Parse `name=value` pairs. `paging` allows `order`, `limit` and `cursor`; `extra` names the
    /// endpoint's own parameters; anything else, or any name given twice, is an error.
    pub fn parse(
        pairs: impl IntoIterator<Item = (String, String)>,
        paging: bool,
        extra: &[&str],
        max_limit: u32,
        now: OffsetDateTime,
    ) -> Result<Params, Error> {
        let mut p = Params {
            filters: Filters::default(),
            order: None,
            limit: None,
            cursor: None,
            extra: Vec::new(),
            raw: Vec::new(),
        };
        for (name, value) in pairs {
            if p.raw.iter().any(|(n, _)| *n == name) {
                return Err(Error::DuplicateParam(name));
            }
            if !p.filters.set(&name, &value, now)? {
                match name.as_str() {
                    "order" if paging => p.order = Some(Order::parse(&value)?),
                    "limit" if paging => {
                        let n = value
                            .parse::<u32>()
                            .ok()
                            .filter(|n| (1..=max_limit).contains(n))
                            .ok_or_else(|| {
                                Error::invalid(
                                    "limit",
                                    &value,
                                    format!("expected a number from 1 to {max_limit}"),
                                )
                            })?;
                        p.limit = Some(n);
                    }
                    "cursor" if paging => {
                        p.cursor = (!value.is_empty()).then(|| value.clone());
                    }
                    n if extra.contains(&n) => p.extra.push((name.clone(), value.clone())),
                    _ => return Err(Error::UnknownParam(name.chars().take(64).collect())),
                }
            }
            p.raw.push((name, value));
        }
        Ok(p)
    }

    /// Parse a raw query string (`a=1&b=2`, percent-encoded).
    pub fn from_query_string(
        query: Option<&str>,
        paging: bool,
        extra: &[&str],
        max_limit: u32,
        now: OffsetDateTime,
    ) -> Result<Params, Error> {
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()));
        Params::parse(pairs, paging, extra, max_limit, now)
    }

    /// The value of an extra parameter.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The decoded cursor, checked against `order`.
    pub fn cursor(&self, order: Order) -> Result<Option<Cursor>, Error> {
        self.cursor
            .as_deref()
            .map(|c| Cursor::decode(c, order))
            .transpose()
    }

    /// The query string with `cursor` set to `next` (for a `Link: rel="next"` header).
    pub fn with_cursor(&self, next: &Cursor) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (n, v) in self.raw.iter().filter(|(n, _)| n != "cursor") {
            s.append_pair(n, v);
        }
        s.append_pair("cursor", &next.encode());
        s.finish()
    }

    /// The pairs as a JSON object, for the `filters` detail of an audit event.
    pub fn as_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.raw
                .iter()
                .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    }
}

/// The exclusion parameters of `/v1/events` and `/v1/stats`: each a comma-separated list of
/// values an event must not have (`type_not=audit.*,token.verify`, `actor_not=alice`). Types take
/// prefixes (`audit.*`) like `type`; the others match exactly, as their positive filters do.
pub const EXCLUDE_PARAMS: &[&str] = &[
    "type_not",
    "app_not",
    "actor_not",
    "target_not",
    "route_not",
    "request_id_not",
    "ip_not",
    "reason_not",
];

/// Most values one exclusion parameter may list.
const MAX_EXCLUDED: usize = 32;

/// The exclusions among an endpoint's extra parameters ([`EXCLUDE_PARAMS`]; others are
/// ignored), for [`Query::exclude`]: the store leaves them out in the same statement as the
/// filters, so a page holds `limit` events and stats count what the pages list.
pub fn excludes_from_params(p: &Params) -> Result<Exclude, Error> {
    let mut x = Exclude::default();
    for (name, value) in &p.extra {
        if !EXCLUDE_PARAMS.contains(&name.as_str()) {
            continue;
        }
        let mut values = Vec::new();
        for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if let Some(v) = text(name, v)? {
                values.push(v);
            }
        }
        if values.len() > MAX_EXCLUDED {
            return Err(Error::invalid(
                name,
                value,
                format!("at most {MAX_EXCLUDED} comma-separated values"),
            ));
        }
        match name.as_str() {
            "type_not" => x.types = values.iter().map(|t| TypeFilter::parse(t)).collect(),
            "app_not" => x.apps = values,
            "actor_not" => x.actors = values,
            "target_not" => x.targets = values,
            "route_not" => x.routes = values,
            "request_id_not" => x.request_ids = values,
            "reason_not" => x.reasons = values,
            "ip_not" => {
                x.ips = values
                    .iter()
                    .map(|v| {
                        v.parse::<IpAddr>()
                            .map_err(|_| Error::invalid(name, v, "expected IP addresses"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => {}
        }
    }
    Ok(x)
}
