//! `query`: recorded events, filtered and paged as the admin API does, as a table or JSON lines.

use std::io::Write;

use anyhow::Result;
use time::OffsetDateTime;

use super::{stdout, table, QueryArgs};
use crate::admin::filter::{self, Order, Params};
use crate::event::AuditEvent;
use crate::store::{self, Query};

pub async fn run(q: QueryArgs) -> Result<i32> {
    let cfg = super::load_read_only(&q.config)?;
    let query = build_query(&q, OffsetDateTime::now_utc())?;
    let store = store::open(&cfg.store.url).await?;
    let order = if q.asc { Order::Asc } else { Order::Desc };
    let limit = query_limit(&q.limit)?;
    let events = match q.filters.token.as_deref() {
        // A token's whole life, oldest first, followed through rotation.
        Some(token) => store::lineage::token_life(store.as_ref(), token, None).await?,
        None => {
            filter::fetch_page(store.as_ref(), &query, order, None, limit)
                .await?
                .events
        }
    };
    let mut out = stdout();
    if q.json {
        for ev in &events {
            writeln!(out, "{}", serde_json::to_string(ev)?)?;
        }
    } else {
        out.write_all(events_table(&events).as_bytes())?;
    }
    Ok(0)
}

/// The store query of `query`'s filters, parsed exactly as the admin API parses them (the CLI
/// reads the store directly, so it sees every app).
pub fn build_query(q: &QueryArgs, now: OffsetDateTime) -> Result<Query> {
    let params = Params::parse(q.filters.pairs(), false, &[], u32::MAX, now)?;
    Ok(params.filters.to_query(None))
}

/// `query --limit`, bounded and refused exactly as the admin API's `limit` parameter.
pub fn query_limit(value: &str) -> Result<u32> {
    let pairs = [("limit".to_string(), value.to_string())];
    let params = Params::parse(
        pairs,
        true,
        &[],
        filter::MAX_LIMIT,
        OffsetDateTime::now_utc(),
    )?;
    Ok(params.limit.unwrap_or(50))
}

/// Events as an aligned table, one row each.
pub fn events_table(events: &[AuditEvent]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                crate::event::rfc3339_millis::format(e.time),
                e.event_type.clone(),
                e.outcome.to_string(),
                e.reason.clone().unwrap_or_default(),
                e.app.as_ref().map(|a| a.value.clone()).unwrap_or_default(),
                e.actor.id.clone().unwrap_or_else(|| "-".into()),
                e.target
                    .as_ref()
                    .map(|t| format!("{}:{}", t.kind, t.id))
                    .unwrap_or_default(),
                e.http
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.http.route.clone(),
            ]
        })
        .collect();
    table(
        &[
            "TIME", "TYPE", "OUTCOME", "REASON", "APP", "ACTOR", "TARGET", "STATUS", "ROUTE",
        ],
        &rows,
    )
}
