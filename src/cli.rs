//! Command-line interface: `serve`, `check`, `explain`, `query`, `export`, `generate`. Parses
//! arguments with clap and calls into the library (`query` and `export` run the admin API's query
//! code); anyhow lives here and in `main.rs` only.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use time::OffsetDateTime;

use crate::admin::filter::{self, Order, Params};
use crate::admin::{export, generate};
use crate::classify::{self, RequestHead, Verdict};
use crate::config::{self, Config};
use crate::event::{AuditEvent, Outcome};
use crate::sidecar::{self, Listeners};
use crate::store::{self, Query};

/// authtrail: an audit-logging reverse-proxy sidecar for auth servers.
#[derive(Debug, Parser)]
#[command(name = "authtrail", version, about)]
pub struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "AUTHTRAIL_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy and the admin listener.
    Serve(ConfigArg),
    /// Validate the config and print the route table.
    Check(ConfigArg),
    /// Show which route a request matches, and why the routes before it did not.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// HTTP method, e.g. POST.
        method: String,
        /// Request path, e.g. /v1/sessions.
        path: String,
        /// Host header of the request.
        #[arg(long)]
        host: Option<String>,
        /// Request body, for routes with body conditions (JSON, or a form if it does not start
        /// with `{`).
        #[arg(long)]
        body: Option<String>,
        /// A token to check against the matched route's requirement (`-` reads stdin).
        #[arg(long)]
        token: Option<String>,
        /// A request header, `Name: value` (repeatable), e.g. for tenancy by header.
        #[arg(long = "header", value_name = "NAME:VALUE")]
        headers: Vec<String>,
    },
    /// Print a token's fingerprint under the config's `trust.fingerprint_key`, to look it up
    /// with `query --token` (the token is read from stdin when not given or `-`).
    Fingerprint {
        #[command(flatten)]
        config: ConfigArg,
        token: Option<String>,
    },
    /// List recorded events, newest first.
    Query(QueryArgs),
    /// Write the filtered events as NDJSON, CSV or OCSF JSON lines, oldest first.
    Export(ExportArgs),
    /// Fill the configured store with synthetic events (for benchmarks).
    Generate(GenerateArgs),
    /// Check every hash chain and signed checkpoint of the trail, naming the first event that was
    /// edited, deleted, inserted or reordered; exit 1 on any problem.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Start each chain at its newest checkpoint before this (24h, 7d or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Fail when a chain's newest checkpoint is older than this (e.g. 11m), or `off`.
        /// Default, with `store.checkpoint`: 2 × its interval + 1m; without: off.
        #[arg(long, value_name = "DURATION|off")]
        max_checkpoint_age: Option<String>,
        /// A file of published checkpoints (`store.checkpoint.witness`, or a sink's output):
        /// each must be in the store, and its chain must reach the event it pinned.
        #[arg(long, value_name = "FILE")]
        witness: Option<PathBuf>,
    },
    /// Print a new checkpoint signing key (for `store.checkpoint.signing_key`) and its public key.
    Keygen,
    /// Delete the events the config's `retention` policy says are due (as the sidecar's
    /// background purge does), sealed with signed checkpoints so `verify` still passes.
    Purge {
        #[command(flatten)]
        config: ConfigArg,
        /// Only show what would be deleted, by app and event type.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path to the YAML config.
    #[arg(
        long,
        short,
        env = "AUTHTRAIL_CONFIG",
        default_value = "authtrail.yaml"
    )]
    pub config: PathBuf,
}

/// The event filters `query` and `export` share with the admin API (same names, same parsing).
#[derive(Debug, Default, Args)]
pub struct FilterArgs {
    #[arg(long)]
    pub app: Option<String>,
    /// Actor id.
    #[arg(long)]
    pub actor: Option<String>,
    /// Target id.
    #[arg(long)]
    pub target: Option<String>,
    /// Event type, exact (auth.login) or prefix (auth.*).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// success, failure, error or unknown.
    #[arg(long)]
    pub outcome: Option<Outcome>,
    /// Route id.
    #[arg(long)]
    pub route: Option<String>,
    #[arg(long)]
    pub request_id: Option<String>,
    /// Client IP.
    #[arg(long)]
    pub ip: Option<String>,
    /// A token's fingerprint (see `fingerprint`) or jti.
    #[arg(long)]
    pub token: Option<String>,
    /// Case-insensitive substring of ids, display names and details.
    #[arg(long, visible_alias = "q")]
    pub search: Option<String>,
    /// The event's reason, exact (e.g. invalid_credentials, claim_mismatch:role).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only events whose app sources disagreed (app_conflict).
    #[arg(long)]
    pub conflicts: bool,
    /// Relative (24h, 30m, 7d) or RFC 3339.
    #[arg(long)]
    pub since: Option<String>,
    /// Relative (1h = one hour ago) or RFC 3339; exclusive.
    #[arg(long)]
    pub until: Option<String>,
}

impl FilterArgs {
    /// The filters as the admin API's `name=value` pairs.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let outcome = self.outcome.map(|o| o.to_string());
        let conflict = self.conflicts.then(|| "true".to_string());
        [
            ("app", &self.app),
            ("actor", &self.actor),
            ("target", &self.target),
            ("type", &self.event_type),
            ("outcome", &outcome),
            ("route", &self.route),
            ("request_id", &self.request_id),
            ("ip", &self.ip),
            ("token", &self.token),
            ("reason", &self.reason),
            ("conflict", &conflict),
            ("q", &self.search),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n.to_string(), v.clone())))
        .collect()
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Most events shown: 1 to 1000, as the admin API's `limit`.
    #[arg(long, default_value = "50", allow_hyphen_values = true)]
    pub limit: String,
    /// Oldest first instead of newest first.
    #[arg(long)]
    pub asc: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// ndjson, csv or ocsf.
    #[arg(long, default_value = "ndjson")]
    pub format: String,
    /// Newest first instead of oldest first.
    #[arg(long)]
    pub desc: bool,
    /// At most this many events (default: all).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Events to add.
    #[arg(long)]
    pub events: u64,
    /// Distinct apps.
    #[arg(long, default_value_t = 20)]
    pub apps: u32,
    /// Distinct actors (users).
    #[arg(long, default_value_t = 100_000)]
    pub actors: u32,
    /// The events spread evenly over this many days up to now.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Seed of the pseudo-random choices, so runs are repeatable.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Standard output as the commands write it: a reader that went away (`authtrail check | head
/// -1`) surfaces as [`StdoutClosed`], which `main` turns into a quiet exit with code 0.
pub struct Stdout(std::io::Stdout);

/// The error of a write to a standard output nobody reads any more (`EPIPE`).
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

pub fn stdout() -> Stdout {
    Stdout(std::io::stdout())
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

fn closed(e: std::io::Error) -> std::io::Error {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => std::io::Error::new(e.kind(), StdoutClosed),
        _ => e,
    }
}

/// Whether a command failed only because its standard output was closed.
pub fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// Run a parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(c) => serve(load(&c)?).await,
        Command::Check(c) => {
            let cfg = load(&c)?;
            let mut out = stdout();
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            writeln!(out, "{}: ok, {} routes", cfg.file, cfg.routes.routes.len())?;
            out.write_all(route_table(&cfg).as_bytes())?;
            Ok(0)
        }
        Command::Explain {
            config,
            method,
            path,
            host,
            body,
            token,
            headers,
        } => {
            let cfg = load(&config)?;
            let mut text = explain(&cfg, &method, &path, host.as_deref(), body.as_deref())?;
            let token = match token {
                Some(t) if t == "-" => {
                    let mut buf = String::new();
                    std::io::stdin().take(64 * 1024).read_to_string(&mut buf)?;
                    Some(buf.trim().to_string())
                }
                other => other,
            };
            let host = host.as_deref();
            text.push_str(
                &explain_requirement(&cfg, &method, &path, host, token.as_deref(), &headers)
                    .await?,
            );
            stdout().write_all(text.as_bytes())?;
            Ok(0)
        }
        Command::Fingerprint { config, token } => {
            let cfg = load(&config)?;
            let Some(f) = cfg.identity.fingerprinter.as_ref() else {
                bail!("{}: trust.fingerprint_key is not set", cfg.file);
            };
            let token = match token.as_deref() {
                Some(t) if t != "-" => t.to_string(),
                _ => {
                    let mut buf = String::new();
                    std::io::stdin().take(64 * 1024).read_to_string(&mut buf)?;
                    buf
                }
            };
            let token = token.trim();
            let token = token
                .strip_prefix("Bearer ")
                .or_else(|| token.strip_prefix("bearer "))
                .unwrap_or(token);
            if token.is_empty() {
                bail!("no token given");
            }
            writeln!(stdout(), "{}", f.fingerprint(token))?;
            Ok(0)
        }
        Command::Query(q) => {
            let cfg = load(&q.config)?;
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
        Command::Export(x) => export(x).await,
        Command::Verify {
            config,
            since,
            max_checkpoint_age,
            witness,
        } => {
            // Read-only: the checkpoint signing key's variable may be unset here.
            let cfg =
                config::load_file_for_verify(&config.config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let since = since
                .as_deref()
                .map(|s| parse_time(s, OffsetDateTime::now_utc()))
                .transpose()?;
            let max_checkpoint_age = match max_checkpoint_age.as_deref().map(str::trim) {
                Some("off") => None,
                Some(d) => Some(
                    config::types::Duration::parse(d)
                        .map_err(|why| {
                            anyhow::anyhow!("invalid --max-checkpoint-age \"{d}\": {why}")
                        })?
                        .0,
                ),
                None => cfg
                    .store
                    .pipeline
                    .checkpoint
                    .as_ref()
                    .map(|c| c.interval.saturating_mul(2) + std::time::Duration::from_secs(60)),
            };
            let witness = witness
                .map(|path| {
                    store::verify::Witness::read(&path)
                        .with_context(|| format!("cannot read witness {}", path.display()))
                })
                .transpose()?;
            let store = store::open(&cfg.store.url).await?;
            let mut trusted_keys = Vec::new();
            if let Some(cp) = &cfg.store.pipeline.checkpoint {
                trusted_keys.push(cp.public_key.clone());
                trusted_keys.extend(cp.trusted_keys.iter().cloned());
            }
            let opts = store::verify::Options {
                trusted_keys,
                since,
                max_checkpoint_age,
                now: None,
                witness,
            };
            let report = store::verify::verify(store.as_ref(), &opts).await?;
            stdout().write_all(report.render().as_bytes())?;
            Ok(if report.ok() { 0 } else { 1 })
        }
        Command::Purge { config, dry_run } => purge(load(&config)?, dry_run).await,
        Command::Keygen => {
            let (seed, signer) = store::Signer::generate().map_err(anyhow::Error::msg)?;
            let mut out = stdout();
            writeln!(out, "signing_key: {seed}")?;
            writeln!(out, "public_key:  {}", signer.public_key_hex())?;
            Ok(0)
        }
        Command::Generate(g) => {
            let cfg = load(&g.config)?;
            let store = store::open(&cfg.store.url).await?;
            let opts = generate::Options {
                events: g.events,
                apps: g.apps.max(1),
                actors: g.actors.max(1),
                days: g.days.max(1),
                seed: g.seed,
            };
            let started = std::time::Instant::now();
            let n = generate::fill(store.as_ref(), &opts, |done| {
                eprintln!("generate: {done} events");
            })
            .await?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "generate: added {n} events in {secs:.1}s ({:.0} events/s)",
                n as f64 / secs.max(1e-9)
            );
            Ok(0)
        }
    }
}

/// `export`: the same filters and paging as `GET /v1/export`, written to stdout or a file.
async fn export(x: ExportArgs) -> Result<i32> {
    let cfg = load(&x.config)?;
    let now = OffsetDateTime::now_utc();
    let params = Params::parse(x.filters.pairs(), false, &[], u32::MAX, now)?;
    let format = export::Format::parse(&x.format)?;
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHTRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log line that cannot be written (stderr on a full disk, a closed pipe) is lost, and
    // nothing else: by default tracing-subscriber reports it with `eprintln!`, which panics
    // when stderr fails too, in whichever task was logging (the audit writer, once).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn load(c: &ConfigArg) -> Result<Config> {
    config::load_file(&c.config).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn serve(cfg: Config) -> Result<i32> {
    let shutdown = shutdown_signal();
    let proxy = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let admin = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", cfg.admin_listen))?;
    let summary = sidecar::run(cfg, Listeners { proxy, admin }, shutdown).await?;
    Ok(if summary.events.dropped + summary.events.failed > 0 {
        1
    } else {
        0
    })
}

/// `purge`: run the retention policy once (or, with `dry_run`, only count what is due), print
/// what went by app and type, and record an `audit.purge` event for what was deleted.
async fn purge(cfg: Config, dry_run: bool) -> Result<i32> {
    use crate::ops::retention;
    let Some(policy) = &cfg.ops.retention else {
        bail!("{}: no retention policy (`retention:`) to apply", cfg.file);
    };
    let store = store::open(&cfg.store.url).await?;
    let signer = cfg.store.pipeline.checkpoint.as_ref().map(|c| &c.signer);
    let now = OffsetDateTime::now_utc();
    let (summary, error) =
        match retention::purge(store.as_ref(), policy, signer, now, dry_run).await {
            Ok(s) => (s, None),
            Err((e, s)) => (s, Some(e)),
        };
    let ms = |t: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
            .map(crate::event::rfc3339_millis::format)
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = summary
        .due
        .iter()
        .map(|((app, t), tally)| {
            vec![
                app.clone().unwrap_or_else(|| "-".into()),
                t.clone(),
                tally.count.to_string(),
                ms(tally.oldest_ms),
                ms(tally.newest_ms),
            ]
        })
        .collect();
    let mut out = stdout();
    out.write_all(table(&["APP", "TYPE", "EVENTS", "OLDEST", "NEWEST"], &rows).as_bytes())?;
    if dry_run {
        writeln!(
            out,
            "dry run: {} events would be purged",
            summary.due_total()
        )?;
    } else {
        writeln!(
            out,
            "purged {} events ({} chains, {} signed checkpoints)",
            summary.deleted, summary.chains, summary.checkpoints
        )?;
    }
    if summary.tampered > 0 {
        writeln!(
            out,
            "kept {} due events whose content does not match their hash: run verify",
            summary.tampered
        )?;
    }
    if !dry_run && (summary.deleted > 0 || error.is_some()) {
        let why = error.as_ref().map(ToString::to_string);
        let event = retention::purge_event(&summary, policy, why.as_deref());
        store.append("authtrail-cli", &[event], true).await?;
    }
    match error {
        Some(e) => bail!("purge stopped early: {e}"),
        None => Ok(0),
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives during startup still drains.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT");
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The `check` route table.
pub fn route_table(cfg: &Config) -> String {
    let rows: Vec<Vec<String>> = cfg
        .routes
        .routes
        .iter()
        .map(|r| {
            let methods = if r.methods.is_empty() {
                "*".to_string()
            } else {
                r.methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                r.id.clone(),
                methods,
                r.host.clone().unwrap_or_else(|| "*".into()),
                r.path.to_string(),
                r.event.clone(),
                match r.delivery {
                    classify::Delivery::Async => "async".into(),
                    classify::Delivery::Sync => "sync".into(),
                },
            ]
        })
        .collect();
    table(
        &["ID", "METHODS", "HOST", "PATH", "EVENT", "DELIVERY"],
        &rows,
    )
}

/// The `explain` report.
pub fn explain(
    cfg: &Config,
    method: &str,
    path: &str,
    host: Option<&str>,
    body: Option<&str>,
) -> Result<String> {
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("invalid method \"{method}\""))?;
    let head = RequestHead {
        method: &method,
        host,
        path,
    };
    let mut out = String::new();
    let mut headers = http::HeaderMap::new();
    let ct = if body.is_some_and(|b| b.trim_start().starts_with('{')) {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ct),
    );
    let view = body.map(|b| classify::BodyView {
        headers: &headers,
        bytes: b.as_bytes(),
        truncated: false,
    });
    let query = path.split_once('?').map(|(_, q)| q);
    if let classify::Routing::Ambiguous(a) =
        classify::route_request(&cfg.routes, &head, &http::HeaderMap::new(), query)
    {
        let action = match cfg.routes.policy_for(a.resembles.route) {
            classify::PathPolicy::Reject => {
                "refused with 400 ambiguous_path and recorded as request.rejected".to_string()
            }
            classify::PathPolicy::Normalize => format!(
                "forwarded as {} {} under route {}",
                a.method, a.canonical_path, a.resembles.route.id
            ),
        };
        out.push_str(&format!(
            "AMBIGUOUS: read as {} ({}), the target is {} {} of route {} (line {}): {action}\n",
            a.label(),
            "see docs/request-targets.md",
            a.method,
            a.canonical_path,
            a.resembles.route.id,
            a.resembles.route.line,
        ));
    }
    let verdicts = classify::explain(&cfg.routes, &head, view.as_ref());
    let mut matched = false;
    for (route, v) in &verdicts {
        let line = match v {
            Verdict::Matched(params) => {
                matched = true;
                let p: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "MATCH {} (line {}) → event {}{}",
                    route.id,
                    route.line,
                    route.event,
                    if p.is_empty() {
                        String::new()
                    } else {
                        format!(", params {}", p.join(" "))
                    }
                )
            }
            Verdict::Method(why) | Verdict::Host(why) | Verdict::Path(why) | Verdict::Body(why) => {
                format!("skip  {} (line {}): {why}", route.id, route.line)
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    if !matched && !out.starts_with("AMBIGUOUS") {
        out.push_str(&format!(
            "no route matches {method} {path}: forwarded untouched, counted as unmapped\n"
        ));
    } else if !matched {
        out.push_str(&format!(
            "no route matches {method} {path} as written; see AMBIGUOUS above\n"
        ));
    }
    Ok(out)
}

/// For `explain`: which requirement the matched route applies to this token (or to no token:
/// `missing_token`) and headers, and whether it would pass.
pub async fn explain_requirement(
    cfg: &Config,
    method: &str,
    path: &str,
    host: Option<&str>,
    token: Option<&str>,
    headers: &[String],
) -> Result<String> {
    use crate::identity::require::{self, Decision};
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("invalid method \"{method}\""))?;
    let mut map = http::HeaderMap::new();
    for h in headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("invalid header \"{h}\": expected Name: value"))?;
        let name = http::HeaderName::from_bytes(k.trim().as_bytes())
            .with_context(|| format!("invalid header name \"{k}\""))?;
        let value = http::HeaderValue::from_str(v.trim())
            .with_context(|| format!("invalid header value for {k}"))?;
        map.append(name, value);
    }
    let head = RequestHead {
        method: &method,
        host,
        path,
    };
    let Some(m) = classify::classify(&cfg.routes, &head) else {
        return Ok(String::new());
    };
    let Some(req) = &m.route.require else {
        return Ok(match token {
            Some(_) => format!(
                "route {} requires no token: it is only recorded\n",
                m.route.id
            ),
            None => String::new(),
        });
    };
    let mut out = format!(
        "requirement {} ({}), token from {}: ",
        req.name,
        req.mode.as_str(),
        req.token.label()
    );
    let checked = match token {
        None => {
            out.push_str("none given (--token)\n");
            None
        }
        Some(token) => {
            for ks in cfg.identity.keysets.values() {
                if let Some(cache) = ks.jwks() {
                    cache.refresh().await;
                }
            }
            let checked = cfg.identity.check(token.trim(), req.keys.as_deref()).await;
            match (checked.verified, checked.invalid) {
                (true, _) => out.push_str(&format!(
                    "verified, sub {}\n",
                    checked.claim_str("sub").unwrap_or_else(|| "-".into())
                )),
                (false, Some(why)) => out.push_str(&format!("invalid ({why})\n")),
                (false, None) => out.push_str("not a verifiable JWT\n"),
            }
            Some(checked)
        }
    };
    match require::evaluate(req, checked.as_ref(), &m.params, &map) {
        Decision::Allow => out.push_str("PASS: the request would be forwarded\n"),
        Decision::AllowFlagged { reason } => out.push_str(&format!(
            "PASS (flagged {reason}): forwarded and recorded as access.would_deny\n"
        )),
        Decision::Deny(d) => {
            let verb = match req.mode {
                require::Mode::Enforce => "DENY",
                require::Mode::Observe => {
                    "WOULD DENY (observe: forwarded, recorded as access.would_deny)"
                }
            };
            out.push_str(&format!(
                "{verb}: {} {} ({}): {}\n",
                d.status,
                d.error.unwrap_or("unauthorized"),
                d.reason,
                d.description
            ));
        }
    }
    Ok(out)
}

/// Turn `--since 24h` or an RFC 3339 time into an instant (the admin API's parser).
pub fn parse_time(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    filter::parse_time(s, now).map_err(|why| anyhow::anyhow!("invalid time \"{s}\": {why}"))
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

/// Printable form of a cell: control characters escaped so a value cannot forge lines.
fn cell(s: &str) -> String {
    s.chars()
        .flat_map(char::escape_default)
        .collect::<String>()
        .replace("\\'", "'")
        .replace("\\\"", "\"")
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cell(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = *w));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}
