//! Command-line interface: `serve`, `check`, `explain`, `query`. Parses arguments with clap and
//! calls into the library; anyhow lives here and in `main.rs` only.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::classify::{self, RequestHead, Verdict};
use crate::config::{self, types, Config};
use crate::event::{AuditEvent, Outcome};
use crate::sidecar::{self, Listeners};
use crate::store::{self, Query, TypeFilter};

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
    },
    /// List recorded events, newest first.
    Query(QueryArgs),
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

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub config: ConfigArg,
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
    /// Relative (24h, 30m, 7d) or RFC 3339.
    #[arg(long)]
    pub since: Option<String>,
    /// Relative (1h = one hour ago) or RFC 3339; exclusive.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Run a parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(c) => serve(load(&c)?).await,
        Command::Check(c) => {
            let cfg = load(&c)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}: ok, {} routes", cfg.file, cfg.routes.routes.len())?;
            out.write_all(route_table(&cfg).as_bytes())?;
            Ok(0)
        }
        Command::Explain {
            config,
            method,
            path,
            host,
        } => {
            let cfg = load(&config)?;
            let text = explain(&cfg, &method, &path, host.as_deref())?;
            print!("{text}");
            Ok(0)
        }
        Command::Query(q) => {
            let cfg = load(&q.config)?;
            let query = build_query(&q, OffsetDateTime::now_utc())?;
            let store = store::open(&cfg.store.url).await?;
            let events = store.query(&query).await?;
            let mut out = std::io::stdout().lock();
            if q.json {
                for ev in &events {
                    writeln!(out, "{}", serde_json::to_string(ev)?)?;
                }
            } else {
                out.write_all(events_table(&events).as_bytes())?;
            }
            Ok(0)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHTRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn load(c: &ConfigArg) -> Result<Config> {
    config::load_file(&c.config).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn serve(cfg: Config) -> Result<i32> {
    let proxy = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let admin = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", cfg.admin_listen))?;
    let summary = sidecar::run(cfg, Listeners { proxy, admin }, shutdown_signal()).await?;
    Ok(if summary.events.dropped + summary.events.failed > 0 {
        1
    } else {
        0
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
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
                "async".into(),
            ]
        })
        .collect();
    table(
        &["ID", "METHODS", "HOST", "PATH", "EVENT", "DELIVERY"],
        &rows,
    )
}

/// The `explain` report.
pub fn explain(cfg: &Config, method: &str, path: &str, host: Option<&str>) -> Result<String> {
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("invalid method \"{method}\""))?;
    let head = RequestHead {
        method: &method,
        host,
        path,
    };
    let mut out = String::new();
    let verdicts = classify::explain(&cfg.routes, &head);
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
            Verdict::Method(why) | Verdict::Host(why) | Verdict::Path(why) => {
                format!("skip  {} (line {}): {why}", route.id, route.line)
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    if !matched {
        out.push_str(&format!(
            "no route matches {method} {path}: forwarded untouched, counted as unmapped\n"
        ));
    }
    Ok(out)
}

/// Turn `--since 24h` or an RFC 3339 time into an instant.
pub fn parse_time(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    match types::Duration::parse(s) {
        Ok(d) => Ok(now - d.0),
        Err(_) => bail!("invalid time \"{s}\": expected a duration like 24h or an RFC 3339 time"),
    }
}

pub fn build_query(q: &QueryArgs, now: OffsetDateTime) -> Result<Query> {
    Ok(Query {
        app: q.app.clone(),
        actor: q.actor.clone(),
        target: q.target.clone(),
        event_type: q.event_type.as_deref().map(TypeFilter::parse),
        outcome: q.outcome,
        route: q.route.clone(),
        request_id: q.request_id.clone(),
        since: q.since.as_deref().map(|s| parse_time(s, now)).transpose()?,
        until: q.until.as_deref().map(|s| parse_time(s, now)).transpose()?,
        limit: q.limit.clamp(1, 10_000),
        ..Query::default()
    })
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
