//! Bulk export of a filtered trail as NDJSON, CSV or OCSF 1.3 JSON lines, streamed in constant
//! memory: the store is paged by `seq` cursor, each page is encoded into one chunk and sent
//! before the next is read, whatever the number of events. The HTTP handler and the CLI's
//! `export` command share [`stream`].
//!
//! CSV cells are quoted per RFC 4180 and text cells that a spreadsheet would run as a formula
//! (starting with `=`, `+`, `-`, `@`, tab or CR) get a leading `'`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::audit::{self, Ending, Kind, Read};
use super::auth::Caller;
use super::filter::{fetch_page, Cursor, Order, Params};
use super::{AdminState, Error};
use crate::config::Permission;
use crate::event::ocsf::to_ocsf;
use crate::event::{rfc3339_millis, ActorKind, AuditEvent, Outcome};
use crate::store::{self, EventStore, Query};

/// Events read from the store per page (and encoded per chunk).
const PAGE: u32 = 500;

/// An export encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One event per line, as the API returns it.
    Ndjson,
    /// A header row, then one row per event.
    Csv,
    /// One OCSF 1.3 event per line: Authentication (3002), Account Change (3001) or API Activity
    /// (6003).
    Ocsf,
}

impl Format {
    /// Parse `ndjson`, `csv` or `ocsf`.
    pub fn parse(s: &str) -> Result<Format, Error> {
        match s {
            "ndjson" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            "ocsf" => Ok(Format::Ocsf),
            other => Err(Error::invalid(
                "format",
                other,
                "expected ndjson, csv or ocsf",
            )),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson | Format::Ocsf => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Format::Ndjson => "authtrail-events.ndjson",
            Format::Csv => "authtrail-events.csv",
            Format::Ocsf => "authtrail-events.ocsf.ndjson",
        }
    }
}

/// One encoded piece of an export.
#[derive(Debug)]
pub struct Chunk {
    pub bytes: Bytes,
    /// Events encoded in `bytes`.
    pub events: u64,
    /// The export is complete (this chunk is empty).
    pub last: bool,
}

struct ExportState {
    store: Arc<dyn EventStore>,
    query: Query,
    format: Format,
    order: Order,
    cursor: Option<Cursor>,
    remaining: Option<u64>,
    header_sent: bool,
    done: bool,
}

/// The events of `query` in `order` (after `cursor`, at most `limit`), encoded as `format`,
/// one chunk per store page, ending with an empty chunk marked `last`. A store error ends the
/// stream after yielding it.
pub fn stream(
    store: Arc<dyn EventStore>,
    query: Query,
    format: Format,
    order: Order,
    cursor: Option<Cursor>,
    limit: Option<u64>,
) -> impl Stream<Item = Result<Chunk, store::Error>> + Send + 'static {
    let state = ExportState {
        store,
        query,
        format,
        order,
        cursor,
        remaining: limit,
        header_sent: false,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let mut buf = Vec::new();
        if !st.header_sent && st.format == Format::Csv {
            buf.extend_from_slice(csv_header().as_bytes());
        }
        st.header_sent = true;
        let want = st.remaining.map_or(PAGE, |r| r.min(u64::from(PAGE)) as u32);
        if want == 0 {
            st.done = true;
            return Some((
                Ok(Chunk {
                    bytes: Bytes::from(buf),
                    events: 0,
                    last: true,
                }),
                st,
            ));
        }
        let page = match fetch_page(st.store.as_ref(), &st.query, st.order, st.cursor, want).await {
            Ok(p) => p,
            Err(e) => {
                st.done = true;
                return Some((Err(e), st));
            }
        };
        let n = page.events.len() as u64;
        for e in &page.events {
            encode(st.format, e, &mut buf);
        }
        if let Some(r) = &mut st.remaining {
            *r -= n.min(*r);
        }
        st.cursor = page.events.last().and_then(|e| e.seq).map(|seq| Cursor {
            order: st.order,
            seq,
        });
        let last = n < u64::from(want) || st.remaining == Some(0);
        st.done = last;
        Some((
            Ok(Chunk {
                bytes: Bytes::from(buf),
                events: n,
                last,
            }),
            st,
        ))
    })
}

fn encode(format: Format, e: &AuditEvent, buf: &mut Vec<u8>) {
    match format {
        Format::Ndjson => {
            // Serialising an AuditEvent cannot fail: every map key is a string.
            let _ = serde_json::to_writer(&mut *buf, e);
            buf.push(b'\n');
        }
        Format::Ocsf => {
            let _ = serde_json::to_writer(&mut *buf, &to_ocsf(e));
            buf.push(b'\n');
        }
        Format::Csv => buf.extend_from_slice(csv_row(e).as_bytes()),
    }
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "seq",
    "id",
    "time",
    "type",
    "stage",
    "outcome",
    "reason",
    "app",
    "actor_id",
    "actor_kind",
    "actor_display",
    "actor_verified",
    "target_kind",
    "target_id",
    "target_display",
    "ip",
    "user_agent",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "request_id",
    "tokens",
    "details",
];

fn csv_header() -> String {
    let mut s = CSV_COLUMNS.join(",");
    s.push_str("\r\n");
    s
}

/// One CSV text cell: neutralised against formula injection, then quoted if needed.
pub fn csv_cell(value: &str) -> String {
    let mut v = String::with_capacity(value.len() + 3);
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        v.push('\'');
    }
    v.push_str(value);
    let needs_quotes = v.contains([',', '"', '\n', '\r'])
        || v.starts_with(char::is_whitespace)
        || v.ends_with(char::is_whitespace);
    if needs_quotes {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn actor_kind(k: ActorKind) -> &'static str {
    match k {
        ActorKind::User => "user",
        ActorKind::Admin => "admin",
        ActorKind::Service => "service",
        ActorKind::Anonymous => "anonymous",
    }
}

fn csv_row(e: &AuditEvent) -> String {
    let text = |s: Option<&str>| csv_cell(s.unwrap_or(""));
    let tokens: Vec<&str> = e.tokens.iter().map(|t| t.fingerprint.as_str()).collect();
    let details = if e.details.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&e.details).unwrap_or_default()
    };
    let cells = [
        e.seq.map(|s| s.to_string()).unwrap_or_default(),
        e.id.to_string(),
        rfc3339_millis::format(e.time),
        csv_cell(&e.event_type),
        match e.stage {
            crate::event::Stage::Attempt => "attempt".into(),
            crate::event::Stage::Completed => "completed".into(),
        },
        e.outcome.as_str().to_string(),
        text(e.reason.as_deref()),
        text(e.app.as_ref().map(|a| a.value.as_str())),
        text(e.actor.id.as_deref()),
        actor_kind(e.actor.kind).to_string(),
        text(e.actor.display.as_deref()),
        e.actor.verified.to_string(),
        text(e.target.as_ref().map(|t| t.kind.as_str())),
        text(e.target.as_ref().map(|t| t.id.as_str())),
        text(e.target.as_ref().and_then(|t| t.display.as_deref())),
        e.source.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        text(e.source.user_agent.as_deref()),
        csv_cell(&e.http.method),
        csv_cell(&e.http.path),
        csv_cell(&e.http.route),
        e.http.status.map(|s| s.to_string()).unwrap_or_default(),
        e.http.duration_ms.to_string(),
        csv_cell(&e.http.request_id),
        csv_cell(&tokens.join(" ")),
        csv_cell(&details),
    ];
    let mut row = cells.join(",");
    row.push_str("\r\n");
    row
}

/// Records the `audit.export` event once the stream ends, however it ends.
struct ExportAudit {
    state: AdminState,
    caller: Caller,
    path: String,
    filters: Value,
    count: u64,
    /// `None` until the last chunk was produced (`Ok`) or the store failed (`Err`).
    ending: Option<Result<(), ()>>,
}

impl Drop for ExportAudit {
    fn drop(&mut self) {
        // The status line (200) went out before the first chunk, whatever happened next.
        let ending = match self.ending {
            Some(Ok(())) => Ending::of(Ok(200)),
            Some(Err(())) => Ending {
                outcome: Outcome::Error,
                reason: Some("store_unavailable"),
                status: 200,
            },
            None => Ending {
                outcome: Outcome::Error,
                reason: Some("client_aborted"),
                status: 200,
            },
        };
        let read = Read {
            kind: Kind::Export,
            endpoint: "/v1/export",
            path: &self.path,
            filters: std::mem::take(&mut self.filters),
            result_count: Some(self.count),
            target: None,
        };
        audit::record(&self.state, &self.caller, read, ending);
    }
}

/// `GET /v1/export`: the filtered events as `format` (default `ndjson`), oldest first unless
/// `order=desc`, all of them unless `limit` is given.
pub(super) async fn handler(State(s): State<AdminState>, caller: Caller, uri: Uri) -> Response {
    let filters_json = Value::Object(
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    );
    let prepared = (|| {
        caller.require(Permission::Export)?;
        let p = Params::from_query_string(uri.query(), true, &["format"], u32::MAX, caller.time)?;
        let format = Format::parse(p.extra("format").unwrap_or("ndjson"))?;
        let order = p.order.unwrap_or(Order::Asc);
        let cursor = p.cursor(order)?;
        let query = p.filters.to_query(caller.apps_scope());
        Ok::<_, Error>((format, order, cursor, p.limit.map(u64::from), query))
    })();
    let (format, order, cursor, limit, query) = match prepared {
        Ok(v) => v,
        Err(e) => {
            let read = Read {
                kind: Kind::Export,
                endpoint: "/v1/export",
                path: uri.path(),
                filters: filters_json,
                result_count: None,
                target: None,
            };
            audit::record(&s, &caller, read, Ending::of(Err(&e)));
            return e.into_response();
        }
    };
    let mut guard = ExportAudit {
        state: s.clone(),
        caller,
        path: uri.path().to_string(),
        filters: filters_json,
        count: 0,
        ending: None,
    };
    let chunks = stream(s.store.clone(), query, format, order, cursor, limit).map(move |item| {
        // Borrow the whole guard, so the closure owns it (and drops it with the body).
        let guard = &mut guard;
        match item {
            Ok(chunk) => {
                guard.count += chunk.events;
                if chunk.last {
                    guard.ending = Some(Ok(()));
                }
                Ok(chunk.bytes)
            }
            Err(e) => {
                // Headers are gone already: breaking the body off is how the client learns.
                tracing::error!(error = %e, "admin: export failed mid-stream");
                guard.ending = Some(Err(()));
                Err(std::io::Error::other("event store failed during export"))
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(chunks));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", format.file_name()))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp.into_response()
}
