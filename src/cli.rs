//! Command-line interface: the clap definitions of every command and the dispatch to its file
//! under `cli/` (`serve`, `check`, `coverage`, `suggest`, `presets` and `init`, `explain`, `fingerprint`, `query`,
//! `export`, `verify`, `keygen`, `purge`, `generate`). Each command calls into the library (`query` and `export` run
//! the admin API's query code); anyhow lives here and in `main.rs` only.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;

use crate::admin::filter;
use crate::config::{self, Config};
use crate::event::Outcome;

mod check;
mod coverage;
mod explain;
mod export;
mod fingerprint;
pub mod generate;
mod keygen;
mod presets;
mod purge;
mod query;
mod serve;
mod suggest;
mod verify;

pub use check::route_table;
pub use explain::{explain, explain_requirement};
pub use query::{build_query, events_table, query_limit};
pub use serve::shutdown_signal;

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
    /// Ask the running sidecar (its admin API) which requests no route maps and which routes
    /// had no traffic.
    Coverage(coverage::CoverageArgs),
    /// Draft routes for the unmapped endpoints that look like auth actions, from what the
    /// running sidecar saw (status classes and key names, never values): a YAML draft to
    /// review, each route with its evidence and a confidence, checked against the config.
    Suggest(suggest::SuggestArgs),
    /// List the built-in route maps of well-known auth servers.
    Presets,
    /// Write a starter config from a preset: the upstream set, an admin credential (its token
    /// printed once), checked as `check` would.
    Init(presets::InitArgs),
    /// Show which route a request matches, and why the routes before it did not.
    Explain(ExplainArgs),
    /// Print a token's fingerprint under the config's `trust.fingerprint_key`, to look it up
    /// with `query --token` (the token is read from stdin when not given or `-`).
    Fingerprint(FingerprintArgs),
    /// List recorded events, newest first.
    Query(QueryArgs),
    /// Write the filtered events as NDJSON, CSV or OCSF JSON lines, oldest first.
    Export(ExportArgs),
    /// Fill the configured store with synthetic events (for benchmarks).
    Generate(GenerateArgs),
    /// Check every hash chain and signed checkpoint of the trail, naming the first event that was
    /// edited, deleted, inserted or reordered; exit 1 on any problem.
    Verify(VerifyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), e.g. `authtrail man > /usr/local/share/man/man1/authtrail.1`.
    Man,
    /// Print a new checkpoint signing key (for `store.checkpoint.signing_key`) and its public key.
    Keygen,
    /// Delete the events the config's `retention` policy says are due (as the sidecar's
    /// background purge does), sealed with signed checkpoints so `verify` still passes.
    Purge(PurgeArgs),
}

/// `explain`: a request as the route map would see it.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// HTTP method, e.g. POST.
    pub method: String,
    /// Request path, e.g. /v1/sessions.
    pub path: String,
    /// Host header of the request.
    #[arg(long)]
    pub host: Option<String>,
    /// Request body, for routes with body conditions (JSON, or a form if it does not start
    /// with `{`).
    #[arg(long)]
    pub body: Option<String>,
    /// A token to check against the matched route's requirement (`-` reads stdin).
    #[arg(long)]
    pub token: Option<String>,
    /// A request header, `Name: value` (repeatable), e.g. for tenancy by header.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
}

/// `fingerprint`: the config (for its key) and the token.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    pub token: Option<String>,
}

/// `verify`: where to start, how old a checkpoint may be, and a witness file.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Start each chain at its newest checkpoint before this (24h, 7d or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Fail when a chain's newest checkpoint is older than this (e.g. 11m), or `off`.
    /// Default, with `store.checkpoint`: 2 × its interval + 1m; without: off.
    #[arg(long, value_name = "DURATION|off")]
    pub max_checkpoint_age: Option<String>,
    /// A file of published checkpoints (`store.checkpoint.witness`, or a sink's output):
    /// each must be in the store, and its chain must reach the event it pinned.
    #[arg(long, value_name = "FILE")]
    pub witness: Option<PathBuf>,
}

/// `purge`: the config (for its retention policy), and whether only to count.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only show what would be deleted, by app and event type.
    #[arg(long)]
    pub dry_run: bool,
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
        Command::Serve(c) => serve::run(&c).await,
        Command::Check(c) => check::run(&c),
        Command::Coverage(a) => coverage::run(a).await,
        Command::Suggest(a) => suggest::run(a).await,
        Command::Presets => presets::list(),
        Command::Init(a) => presets::init(a),
        Command::Explain(a) => explain::run(a).await,
        Command::Fingerprint(a) => fingerprint::run(a),
        Command::Query(q) => query::run(q).await,
        Command::Export(x) => export::run(x).await,
        Command::Verify(a) => verify::run(a).await,
        Command::Purge(a) => purge::run(a).await,
        Command::Keygen => keygen::run(),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "authtrail", &mut out);
            stdout().write_all(&out)?;
            Ok(0)
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            stdout().write_all(&out)?;
            Ok(0)
        }
        Command::Generate(g) => generate::run(g).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHTRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log line that cannot be written (stderr on a full disk, a closed pipe) is lost, and
    // nothing else: by default tracing-subscriber reports it with `eprintln!`, which panics
    // when stderr fails too, in whichever task was logging (the audit writer, once).
    // Colours only for a person at a terminal: never into a file, a pipe or a log collector,
    // and never with NO_COLOR set (no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn load(c: &ConfigArg) -> Result<Config> {
    config::load_file(&c.config).map_err(|e| anyhow::anyhow!("{e}"))
}

/// [`load`] for commands that only read the store: secrets they never use may be unset.
fn load_read_only(c: &ConfigArg) -> Result<Config> {
    config::load_file_read_only(&c.config).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Turn `--since 24h` or an RFC 3339 time into an instant (the admin API's parser).
pub fn parse_time(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    filter::parse_time(s, now).map_err(|why| anyhow::anyhow!("invalid time \"{s}\": {why}"))
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
