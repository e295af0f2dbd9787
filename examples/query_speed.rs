//! Query speed: how long the admin API's filtered pages take on a big store. A benchmark, not a
//! test: fill a store with `authtrail generate`, then run this in release mode against it.
//!
//! ```sh
//! cargo run --release -- generate --config bench.yaml --events 1000000
//! cargo run --release --example query_speed -- sqlite:///tmp/bench-1m.db [RUNS]
//! cargo run --release --example query_speed -- postgres://USER@127.0.0.1:5432/bench [RUNS]
//! ```
//!
//! The token looked up is the newest refreshed two weeks before now, so it changes with the
//! clock; `QUERY_SPEED_TOKEN=FINGERPRINT QUERY_SPEED_JTI=JTI` pins one to compare runs.
//!
//! Every query goes through the API's own code (`admin::filter::Params` → `Filters::to_query` →
//! `fetch_page`), so what is timed is what `GET /v1/events` runs, minus HTTP and JSON. Each
//! query runs a few times to warm the cache, then `RUNS` times (default 50); the report gives
//! the median, the 95th and 99th percentiles and the worst run, and the rows the page returned.

use std::time::{Duration, Instant};

use authtrail::admin::filter::{fetch_page, Cursor, Order, Params};
use authtrail::store::{self, EventStore};
use time::OffsetDateTime;

const WARMUP: usize = 3;

async fn page(
    store: &dyn EventStore,
    query: &str,
    cursor: Option<Cursor>,
    now: OffsetDateTime,
) -> (Duration, usize, Option<Cursor>) {
    // `scope=a,b` stands for a credential scoped to those apps.
    let mut scope = None;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .filter(|(k, v)| {
            if k == "scope" {
                scope = Some(v.split(',').map(str::to_string).collect());
            }
            k != "scope"
        })
        .collect();
    let p = Params::parse(pairs, true, &[], 1000, now).expect("query parses");
    let order = p.order.unwrap_or(Order::Desc);
    let q = p.filters.to_query(scope);
    let start = Instant::now();
    let page = fetch_page(store, &q, order, cursor, p.limit.unwrap_or(100))
        .await
        .expect("query runs");
    (start.elapsed(), page.events.len(), page.next)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `p50 | p95 | p99 | max` of `times` (nearest rank), in milliseconds.
fn percentiles(mut times: Vec<Duration>) -> String {
    times.sort();
    let p = |f: f64| {
        let rank = (times.len() as f64 * f).ceil() as usize;
        times[rank.clamp(1, times.len()) - 1]
    };
    format!(
        "{} | {} | {} | {}",
        ms(p(0.5)),
        ms(p(0.95)),
        ms(p(0.99)),
        ms(*times.last().unwrap())
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: query_speed STORE_URL [RUNS]");
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(50);
    let store = store::open(&url).await.expect("open store");
    let now = OffsetDateTime::now_utc();

    // Real values from the data: an actor of app-03 active in the last week, and a token seen
    // about two weeks ago.
    let (_, _, _) = page(store.as_ref(), "limit=1", None, now).await;
    let recent = store
        .query(
            &Params::parse(
                [
                    ("app".to_string(), "app-03".to_string()),
                    ("type".into(), "auth.login".into()),
                ],
                true,
                &[],
                1000,
                now,
            )
            .unwrap()
            .filters
            .to_query(None),
        )
        .await
        .unwrap();
    let actor = recent
        .iter()
        .filter_map(|e| e.actor.id.clone())
        .nth(50)
        .expect("an actor of app-03");
    let mut old = Params::parse(
        [
            ("type".to_string(), "token.refresh".to_string()),
            ("until".into(), "14d".into()),
        ],
        true,
        &[],
        1000,
        now,
    )
    .unwrap()
    .filters
    .to_query(None);
    old.limit = 1;
    let mut token = store.query(&old).await.unwrap()[0].tokens[0].clone();
    // Which token that is moves with the clock; to compare runs, pin one (and its jti).
    if let Ok(fingerprint) = std::env::var("QUERY_SPEED_TOKEN") {
        token.fingerprint = fingerprint;
        token.jti = std::env::var("QUERY_SPEED_JTI").ok();
    }

    let queries: Vec<(&str, String)> = vec![
        (
            "app + actor + last 7 days",
            format!("app=app-03&actor={actor}&since=7d"),
        ),
        (
            "app + actor + a day 10 days back",
            format!("app=app-03&actor={actor}&since=11d&until=10d"),
        ),
        (
            "type + outcome (failed logins)",
            "type=auth.login&outcome=failure".into(),
        ),
        (
            "type prefix + outcome (auth.* failures)",
            "type=auth.*&outcome=failure".into(),
        ),
        (
            "type + outcome + app, oldest first",
            "type=auth.login&outcome=failure&app=app-07&order=asc".into(),
        ),
        (
            "token by fingerprint",
            format!("token={}", token.fingerprint),
        ),
        (
            "token by jti",
            format!("token={}", token.jti.clone().unwrap_or_default()),
        ),
        ("app, last 24 hours", "app=app-00&since=24h".into()),
        (
            "rare app + outcome error",
            "app=app-19&outcome=error".into(),
        ),
        ("actor, ip", format!("actor={actor}&ip=10.0.0.1")),
        ("prefix only (`auth.*`)", "type=auth.*".into()),
        ("rare prefix only (`provider.*`)", "type=provider.*".into()),
        ("absent prefix (`nothing.*`)", "type=nothing.*".into()),
        ("prefix + last 24 hours", "type=token.*&since=24h".into()),
        (
            "scoped to 2 apps: failed logins",
            "scope=app-03,app-07&type=auth.login&outcome=failure".into(),
        ),
        ("scoped to 2 apps: everything", "scope=app-03,app-07".into()),
        ("everything, newest page", String::new()),
    ];

    println!("store: {url}");
    println!("runs per query: {runs} (after {WARMUP} warm-up runs); page limit 100");
    println!();
    println!("| query | rows | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, q) in &queries {
        let mut times = Vec::with_capacity(runs);
        let mut rows = 0;
        for i in 0..WARMUP + runs {
            let (t, n, _) = page(store.as_ref(), q, None, now).await;
            rows = n;
            if i >= WARMUP {
                times.push(t);
            }
        }
        println!("| {name} (`{q}`) | {rows} | {} |", percentiles(times));
    }

    // `/v1/stats` as the API runs it: hourly buckets over a window ending now.
    for (name, window, apps) in [
        ("stats, last 24 hours, all apps", time::Duration::DAY, None),
        (
            "stats, last 7 days, all apps",
            time::Duration::DAY * 7,
            None,
        ),
        (
            "stats, last 24 hours, scoped to 2 apps",
            time::Duration::DAY,
            Some(vec!["app-03".to_string(), "app-07".to_string()]),
        ),
    ] {
        let q = store::Query {
            since: Some(now - window),
            until: Some(now),
            apps_scope: apps,
            ..store::Query::default()
        };
        let mut times = Vec::with_capacity(runs);
        let mut rows = 0;
        for i in 0..WARMUP + runs {
            let start = Instant::now();
            let stats = store.stats(&q, 3_600_000).await.expect("stats run");
            if i >= WARMUP {
                times.push(start.elapsed());
            }
            rows = stats.iter().map(|r| r.count).sum::<u64>();
        }
        println!(
            "| {name} (events counted: {rows}) | | {} |",
            percentiles(times)
        );
    }

    // Walking deep: 20 pages of failed logins by cursor, each page timed. The first walk comes
    // straight after the stats, which read millions of index entries: where the machine's file
    // cache cannot hold the store, the walk's rows are read from storage again (shown by the
    // bytes this process read from storage, Linux only). Then warm, as the queries above are.
    let q = "type=auth.login&outcome=failure";
    for walk in 0..=WARMUP {
        let read_before = storage_read_bytes();
        let mut cursor = None;
        let mut worst = Duration::ZERO;
        let mut total = Duration::ZERO;
        for _ in 0..20 {
            let (t, _, next) = page(store.as_ref(), q, cursor, now).await;
            worst = worst.max(t);
            total += t;
            cursor = next;
        }
        let read = match (read_before, storage_read_bytes()) {
            (Some(a), Some(b)) => format!(", {} KiB read from storage", (b - a) / 1024),
            _ => String::new(),
        };
        let which = if walk == 0 {
            "first walk, after the stats"
        } else {
            "walked again"
        };
        println!(
            "| 20 pages of `{q}` by cursor ({which}{read}) | 2000 | {} (mean) | | | {} |",
            ms(total / 20),
            ms(worst)
        );
    }
}

/// Bytes this process has caused to be read from storage (`read_bytes` of `/proc/self/io`).
fn storage_read_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/io")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("read_bytes:"))?
        .trim()
        .parse()
        .ok()
}
