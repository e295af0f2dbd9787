//! The read endpoints of `/v1`: events (a filtered, paged list, and one by id), a token's life,
//! stats and coverage. Each handler checks the caller's permission, applies its app scope to the
//! store query, answers, and records the read as an `audit.query` event — whatever the outcome.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::audit::{self, Ending, Kind, Read};
use super::auth::Caller;
use super::filter::{
    excludes_from_params, fetch_page, Cursor, Order, Page, Params, DEFAULT_LIMIT, EXCLUDE_PARAMS,
    MAX_LIMIT,
};
use super::{AdminState, Error};
use crate::config::{types, AppScope, Permission};
use crate::event::{rfc3339_millis, unix_millis, AuditEvent, Target};
use crate::store;

/// Default width of a `/v1/stats` bucket.
const DEFAULT_BUCKET: time::Duration = time::Duration::HOUR;
/// Most buckets one stats answer may span.
const MAX_BUCKETS: i64 = 1000;
/// Longest token key (fingerprint or jti) accepted, in characters.
const MAX_TOKEN_KEY: usize = 256;

/// A successful answer and what its audit event records.
struct Answer {
    resp: Response,
    count: Option<u64>,
}

/// The query string as sent, as a JSON object, for the audit event even when it does not parse.
fn raw_filters(uri: &Uri) -> Value {
    Value::Object(
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    )
}

/// Record the read and turn its result into the response.
fn finish(
    state: &AdminState,
    caller: &Caller,
    endpoint: &'static str,
    uri: &Uri,
    target: Option<Target>,
    result: Result<Answer, Error>,
) -> Response {
    let read = Read {
        kind: Kind::Query,
        endpoint,
        path: uri.path(),
        filters: raw_filters(uri),
        result_count: result.as_ref().ok().and_then(|a| a.count),
        target,
    };
    let ending = Ending::of(result.as_ref().map(|a| a.resp.status().as_u16()));
    audit::record(state, caller, read, ending);
    match result {
        Ok(a) => a.resp,
        Err(e) => e.into_response(),
    }
}

/// The JSON body of a page (with `extra`'s members first), and its `Link` header when there is
/// a next page.
fn page_response(
    path: &str,
    params: &Params,
    (order, limit): (Order, u32),
    page: Page,
    extra: Map<String, Value>,
) -> Answer {
    let count = page.events.len() as u64;
    let next = page.next.map(|c| c.encode());
    let mut body = extra;
    body.insert("events".into(), json!(page.events));
    body.insert("next_cursor".into(), json!(next));
    body.insert("order".into(), json!(order.as_str()));
    body.insert("limit".into(), json!(limit));
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    if let Some(c) = page.next {
        let link = format!("<{path}?{}>; rel=\"next\"", params.with_cursor(&c));
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Answer {
        resp,
        count: Some(count),
    }
}

/// `GET /v1/events`: filtered events, newest first unless `order=asc`, paged by cursor.
pub(super) async fn list_events(State(s): State<AdminState>, caller: Caller, uri: Uri) -> Response {
    let result = async {
        caller.require(Permission::Read)?;
        let p =
            Params::from_query_string(uri.query(), true, EXCLUDE_PARAMS, MAX_LIMIT, caller.time)?;
        let order = p.order.unwrap_or(Order::Desc);
        let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
        let cursor = p.cursor(order)?;
        let query = store::Query {
            exclude: excludes_from_params(&p)?,
            ..p.filters.to_query(caller.apps_scope())
        };
        let page = fetch_page(s.store.as_ref(), &query, order, cursor, limit).await?;
        // The newest page also says where to follow from: an ascending cursor after its newest
        // event, so a live tail starts exactly where this page ends.
        let mut extra = Map::new();
        if order == Order::Desc && cursor.is_none() {
            let seq = page.events.first().and_then(|e| e.seq).unwrap_or(0);
            let tail = Cursor {
                order: Order::Asc,
                seq,
            };
            extra.insert("tail_cursor".into(), json!(tail.encode()));
        }
        Ok(page_response(uri.path(), &p, (order, limit), page, extra))
    }
    .await;
    finish(&s, &caller, "/v1/events", &uri, None, result)
}

/// `GET /v1/events/{id}`: one event, if the caller's scope includes it.
pub(super) async fn get_event(
    State(s): State<AdminState>,
    caller: Caller,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let target = Target {
        kind: "event".into(),
        id: id.chars().take(64).collect(),
        display: None,
        source: "path:id".into(),
    };
    let result = async {
        caller.require(Permission::Read)?;
        if let Some(q) = uri.query().filter(|q| !q.is_empty()) {
            let name = q.split(['=', '&']).next().unwrap_or(q);
            return Err(Error::UnknownParam(name.chars().take(64).collect()));
        }
        let uuid = uuid::Uuid::parse_str(&id)
            .map_err(|_| Error::invalid("event id", &id, "expected a UUID"))?;
        let event = s
            .store
            .get(uuid)
            .await?
            .filter(|e| caller.sees(e))
            .ok_or(Error::NotFound("event"))?;
        Ok(Answer {
            resp: (StatusCode::OK, Json(event)).into_response(),
            count: Some(1),
        })
    }
    .await;
    finish(&s, &caller, "/v1/events/{id}", &uri, Some(target), result)
}

/// What the events of one token say about it.
fn token_summary(key: &str, events: &[AuditEvent]) -> Value {
    let mut fingerprints = BTreeSet::new();
    let mut jtis = BTreeSet::new();
    let mut subs = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut apps = BTreeSet::new();
    let mut exp = None;
    let mut revoked = false;
    for e in events {
        if let Some(a) = &e.app {
            apps.insert(a.value.clone());
        }
        for t in &e.tokens {
            if t.fingerprint != key && t.jti.as_deref() != Some(key) {
                continue;
            }
            fingerprints.insert(t.fingerprint.clone());
            jtis.extend(t.jti.clone());
            subs.extend(t.sub.clone());
            kinds.insert(t.kind.clone());
            exp = exp.or(t.exp);
        }
        // A revocation, or a logout that consumed a token of the life (the end of a refresh
        // chain), ends it.
        let consumed = e.event_type == "auth.logout"
            && e.tokens
                .iter()
                .any(|t| t.role == crate::event::TokenRole::Presented);
        if (e.event_type == "token.revoke" || consumed)
            && e.outcome == crate::event::Outcome::Success
        {
            revoked = true;
        }
    }
    json!({
        "fingerprints": fingerprints,
        "jti": jtis,
        "sub": subs,
        "kinds": kinds,
        "apps": apps,
        "exp": exp,
        "first_seen": events.first().map(|e| rfc3339_millis::format(e.time)),
        "last_seen": events.last().map(|e| rfc3339_millis::format(e.time)),
        "revoked": revoked,
    })
}

/// `GET /v1/tokens/{key}`: the life of the token with this fingerprint or jti, oldest first —
/// every event that presented or issued it, followed through rotation
/// ([`store::lineage::token_life`]), within the caller's scope.
pub(super) async fn token_life(
    State(s): State<AdminState>,
    caller: Caller,
    uri: Uri,
    Path(key): Path<String>,
) -> Response {
    let target = Target {
        kind: "token".into(),
        id: key.chars().take(MAX_TOKEN_KEY).collect(),
        display: None,
        source: "path:key".into(),
    };
    let result = async {
        caller.require(Permission::Read)?;
        if key.is_empty()
            || key.chars().count() > MAX_TOKEN_KEY
            || key.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "token",
                &key,
                "expected a fingerprint or a jti of at most 256 characters",
            ));
        }
        let p = Params::from_query_string(uri.query(), false, &[], MAX_LIMIT, caller.time)?;
        if let Some((name, _)) = p.raw.first() {
            return Err(Error::UnknownParam(name.chars().take(64).collect()));
        }
        let events =
            store::lineage::token_life(s.store.as_ref(), &key, caller.apps_scope()).await?;
        if events.is_empty() {
            return Err(Error::NotFound("token"));
        }
        let count = events.len() as u64;
        let body = json!({
            "token": key,
            "summary": token_summary(&key, &events),
            "truncated": events.len() >= store::lineage::MAX_EVENTS,
            "events": events,
        });
        Ok(Answer {
            resp: (StatusCode::OK, Json(body)).into_response(),
            count: Some(count),
        })
    }
    .await;
    finish(&s, &caller, "/v1/tokens/{key}", &uri, Some(target), result)
}

/// `GET /v1/stats`: counts by time bucket × type × outcome × app over `since`..`until` (default:
/// the last 24 hours, in 1-hour buckets).
pub(super) async fn stats(State(s): State<AdminState>, caller: Caller, uri: Uri) -> Response {
    let result = async {
        caller.require(Permission::Read)?;
        let extras: Vec<&str> = ["bucket", "group"]
            .into_iter()
            .chain(EXCLUDE_PARAMS.iter().copied())
            .collect();
        let p = Params::from_query_string(uri.query(), false, &extras, MAX_LIMIT, caller.time)?;
        let exclude = excludes_from_params(&p)?;
        let by = stats_group(p.extra("group").unwrap_or(""))?;
        let bucket = match p.extra("bucket") {
            None | Some("") => DEFAULT_BUCKET,
            Some(b) => {
                let d = types::Duration::parse(b)
                    .ok()
                    .map(|d| d.0)
                    .filter(|d| d.as_secs() >= 1)
                    .ok_or_else(|| {
                        Error::invalid("bucket", b, "expected a duration of at least 1s, like 1h")
                    })?;
                time::Duration::try_from(d).map_err(|_| Error::invalid("bucket", b, "too long"))?
            }
        };
        let mut filters = p.filters.clone();
        let until = filters.until.unwrap_or(caller.time);
        let since = filters.since.unwrap_or(until - time::Duration::DAY);
        filters.since = Some(since);
        filters.until = Some(until);
        let bucket_ms = bucket.whole_milliseconds().max(1) as i64;
        let span = (unix_millis(until) - unix_millis(since)).max(0);
        if span / bucket_ms > MAX_BUCKETS {
            return Err(Error::invalid(
                "bucket",
                p.extra("bucket").unwrap_or("1h"),
                format!(
                    "{} buckets between since and until, at most {MAX_BUCKETS}",
                    span / bucket_ms
                ),
            ));
        }
        let query = store::Query {
            exclude,
            ..filters.to_query(caller.apps_scope())
        };
        let rows = s.store.stats_by(&query, bucket_ms, by).await?;
        let total: u64 = rows.iter().map(|r| r.count).sum();
        let rows: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                let start =
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.bucket_ms) * 1_000_000)
                        .map(rfc3339_millis::format)
                        .unwrap_or_default();
                let mut row = Map::new();
                row.insert("bucket".into(), json!(start));
                if by.event_type {
                    row.insert("type".into(), json!(r.event_type));
                }
                if by.outcome {
                    row.insert("outcome".into(), json!(r.outcome));
                }
                if by.app {
                    row.insert("app".into(), json!(r.app));
                }
                row.insert("count".into(), json!(r.count));
                Value::Object(row)
            })
            .collect();
        let group: Vec<&str> = [
            by.event_type.then_some("type"),
            by.outcome.then_some("outcome"),
            by.app.then_some("app"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let body = json!({
            "since": rfc3339_millis::format(since),
            "until": rfc3339_millis::format(until),
            "bucket_ms": bucket_ms,
            "group": group,
            "total": total,
            "rows": rows,
        });
        Ok(Answer {
            resp: (StatusCode::OK, Json(body)).into_response(),
            count: Some(total),
        })
    }
    .await;
    finish(&s, &caller, "/v1/stats", &uri, None, result)
}

/// The `group` parameter of `/v1/stats`: which of type, outcome and app the counts are split by
/// besides the bucket (comma-separated; empty or absent: all three).
fn stats_group(value: &str) -> Result<store::StatsBy, Error> {
    if value.is_empty() {
        return Ok(store::StatsBy::ALL);
    }
    let mut by = store::StatsBy {
        event_type: false,
        outcome: false,
        app: false,
    };
    for part in value.split(',') {
        match part.trim() {
            "type" => by.event_type = true,
            "outcome" => by.outcome = true,
            "app" => by.app = true,
            "" => {}
            _ => {
                return Err(Error::invalid(
                    "group",
                    value,
                    "expected a comma-separated list of type, outcome and app",
                ))
            }
        }
    }
    Ok(by)
}

/// `GET /v1/coverage`: unmapped method + path shapes the proxy saw (with counts, last seen and
/// the evidence of their exchanges: status classes and names, never values), and mapped routes
/// with no traffic, since the sidecar started.
///
/// These counters are sidecar-wide: unmapped traffic has no app by definition, and route hits
/// are not split by app. A credential scoped to some apps therefore sees empty lists.
pub(super) async fn coverage(State(s): State<AdminState>, caller: Caller, uri: Uri) -> Response {
    let result = async {
        caller.require(Permission::Read)?;
        Params::from_query_string(uri.query(), false, &[], MAX_LIMIT, caller.time).and_then(
            |p| match p.raw.first() {
                Some((name, _)) => Err(Error::UnknownParam(name.chars().take(64).collect())),
                None => Ok(()),
            },
        )?;
        let ms = |t: i64| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
                .map(rfc3339_millis::format)
                .unwrap_or_default()
        };
        let config = (s.config)();
        let route_ids: Vec<&str> = config.routes.routes.iter().map(|r| r.id.as_str()).collect();
        let body = if caller.sees_all() {
            let (unmapped, overflow) = s.coverage.report();
            let hits = s.coverage.route_report();
            let routes: Vec<Value> = route_ids
                .iter()
                .map(|&id| {
                    let h = hits.iter().find(|h| h.route == id);
                    json!({
                        "id": id,
                        "hits": h.map_or(0, |h| h.count),
                        "last_seen": h.map(|h| ms(h.last_seen_ms)),
                    })
                })
                .collect();
            let idle: Vec<&str> = route_ids
                .iter()
                .copied()
                .filter(|&id| !hits.iter().any(|h| h.route == id))
                .collect();
            let unmapped: Vec<Value> = unmapped
                .iter()
                .map(|u| {
                    json!({
                        "method": u.method,
                        "path": u.path,
                        "count": u.count,
                        "last_seen": ms(u.last_seen_ms),
                        "evidence": u.evidence,
                    })
                })
                .collect();
            json!({
                "scope": "all",
                "unmapped": unmapped,
                "unmapped_overflow": overflow,
                "routes": routes,
                "routes_without_traffic": idle,
            })
        } else {
            json!({
                "scope": "apps",
                "note": "coverage counters are sidecar-wide; only credentials with apps [\"*\"] see them",
                "unmapped": [],
                "unmapped_overflow": 0,
                "routes": [],
                "routes_without_traffic": [],
            })
        };
        let count = body["unmapped"].as_array().map_or(0, Vec::len) as u64;
        Ok(Answer {
            resp: (StatusCode::OK, Json(body)).into_response(),
            count: Some(count),
        })
    }
    .await;
    finish(&s, &caller, "/v1/coverage", &uri, None, result)
}

/// `POST /v1/reload`: re-read the config file, as SIGHUP does. Needs the `reload` permission
/// and an app scope of `*` (a reload changes every app's routes). 200 with what changed, or
/// 422 with every config error while the running config stays.
pub(super) async fn reload(State(state): State<AdminState>, caller: Caller) -> Response {
    if let Err(e) = caller
        .require(Permission::Reload)
        .and_then(|()| match caller.credential.apps {
            AppScope::All => Ok(()),
            AppScope::Apps(_) => Err(Error::Forbidden {
                credential: caller.credential.name.clone(),
                permission: "reload (with apps: [\"*\"])",
            }),
        })
    {
        return e.into_response();
    }
    let Some(reload) = state.reload.clone() else {
        return Error::NotFound("reload").into_response();
    };
    match reload().await {
        Ok(summary) => {
            tracing::info!(credential = %caller.credential.name, "config reloaded through the admin API");
            (StatusCode::OK, Json(summary)).into_response()
        }
        Err(errors) => {
            tracing::warn!(credential = %caller.credential.name, count = errors.len(), "config reload through the admin API rejected");
            let body = json!({ "error": "invalid_config", "errors": errors });
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
    }
}

/// `GET /v1/whoami`: the calling credential's name, app scope and permissions (so the viewer can
/// say who is signed in and offer only what the credential may do). Reads nothing from the trail.
pub(super) async fn whoami(caller: Caller) -> Response {
    let apps = match &caller.credential.apps {
        AppScope::All => json!(["*"]),
        AppScope::Apps(list) => json!(list),
    };
    let permissions: Vec<&str> = caller
        .credential
        .permissions
        .iter()
        .map(|p| p.as_str())
        .collect();
    let body = json!({
        "name": caller.credential.name,
        "apps": apps,
        "permissions": permissions,
    });
    (StatusCode::OK, Json(body)).into_response()
}
