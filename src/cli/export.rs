//! `export`: the filtered events as NDJSON, CSV or OCSF JSON lines, oldest first.

use std::io::Write;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use time::OffsetDateTime;

use super::{stdout, ExportArgs};
use crate::admin::export::{self, Format};
use crate::admin::filter::{Order, Params};
use crate::store;

/// `export`: the same filters and paging as `GET /v1/export`, written to stdout or a file.
pub async fn run(x: ExportArgs) -> Result<i32> {
    let cfg = super::load_read_only(&x.config)?;
    let now = OffsetDateTime::now_utc();
    let params = Params::parse(x.filters.pairs(), false, &[], u32::MAX, now)?;
    let format = Format::parse(&x.format)?;
    let order = if x.desc { Order::Desc } else { Order::Asc };
    let query = params.filters.to_query(None);
    let store = store::open(&cfg.store.url).await?;
    let mut out: Box<dyn Write> = match &x.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(stdout()),
    };
    let mut out = std::io::BufWriter::new(&mut out);
    let mut chunks = std::pin::pin!(export::stream(store, query, format, order, None, x.limit));
    let mut count = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        count += chunk.events;
        out.write_all(&chunk.bytes)?;
    }
    out.flush()?;
    if x.output.is_some() {
        eprintln!("export: {count} events");
    }
    Ok(0)
}
