//! `coverage`: what the running sidecar saw and the map does not describe — the unmapped method
//! and path shapes (with counts and when last seen) and the mapped routes with no traffic —
//! read from its admin API (`GET /v1/coverage`). Only `admin.listen` is read from the config,
//! so no secret it names needs to be set.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{stdout, table};
use crate::config::types::substitute_env;

/// `coverage`: where the sidecar's admin listener is, and the credential to ask it with.
#[derive(Debug, clap::Args)]
pub struct CoverageArgs {
    /// The sidecar's config file (only `admin.listen` is read).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Admin base URL, instead of `admin.listen` (e.g. through a port-forward).
    #[arg(long)]
    pub admin: Option<String>,
    /// An admin bearer token with `read` on every app.
    #[arg(long, env = "AUTHTRAIL_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Print the API's JSON as it is.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(a: CoverageArgs) -> Result<i32> {
    let (_, v) = fetch(
        &a.config,
        a.admin.as_deref(),
        &a.token,
        "authtrail-coverage",
    )
    .await?;
    let mut out = stdout();
    if a.json {
        writeln!(out, "{v}")?;
        return Ok(0);
    }
    out.write_all(render(&v).as_bytes())?;
    Ok(0)
}

/// `GET /v1/coverage` of the sidecar `config` names (or at `admin`), asked with `token`: the
/// URL asked and the JSON answer.
pub(super) async fn fetch(
    config: &std::path::Path,
    admin: Option<&str>,
    token: &str,
    agent: &str,
) -> Result<(String, Value)> {
    let base = match admin {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", admin_addr(config)?),
    };
    let url = format!("{base}/v1/coverage");
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::get(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::USER_AGENT, agent)
        .body(Empty::new())?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
        .await
        .with_context(|| format!("{url}: no answer within 10s"))?
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "{url}: {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        );
    }
    let v: Value = serde_json::from_slice(&body).with_context(|| format!("{url}: not JSON"))?;
    Ok((url, v))
}

/// The admin listener from the config, without resolving anything else: `0.0.0.0` and `::`
/// (every interface) are asked on loopback.
fn admin_addr(config: &std::path::Path) -> Result<SocketAddr> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("config {}", config.display()))?;
    let v: Value =
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let listen = match v["admin"]["listen"].as_str() {
        Some(l) => substitute_env(l)
            .map_err(|e| anyhow::anyhow!("{}: admin.listen: {e}", config.display()))?,
        None => "127.0.0.1:9090".to_string(),
    };
    let mut addr: SocketAddr = listen.parse().with_context(|| {
        format!(
            "{}: admin.listen \"{listen}\" is not IP:PORT",
            config.display()
        )
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

/// The report as text: unmapped shapes, busiest first, then the routes with no traffic.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    if v["scope"] != "all" {
        out.push_str(
            "This credential sees some apps only; coverage is sidecar-wide and needs one that sees every app.\n",
        );
        return out;
    }
    let mut rows: Vec<(u64, Vec<String>)> = v["unmapped"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            let count = u["count"].as_u64().unwrap_or(0);
            let s = |k: &str| u[k].as_str().unwrap_or("").to_string();
            (
                count,
                vec![s("method"), s("path"), count.to_string(), s("last_seen")],
            )
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let rows: Vec<Vec<String>> = rows.into_iter().map(|(_, r)| r).collect();
    if rows.is_empty() {
        out.push_str("No unmapped traffic since the sidecar started.\n");
    } else {
        out.push_str(&format!("Unmapped requests ({} shapes):\n", rows.len()));
        out.push_str(&table(&["METHOD", "PATH", "COUNT", "LAST SEEN"], &rows));
    }
    if v["unmapped_overflow"].as_u64().unwrap_or(0) > 0 {
        out.push_str(&format!(
            "… and {} requests of shapes past the tracking limit.\n",
            v["unmapped_overflow"]
        ));
    }
    let idle: Vec<&str> = v["routes_without_traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if idle.is_empty() {
        out.push_str("Every mapped route has had traffic.\n");
    } else {
        out.push_str(&format!(
            "Mapped routes with no traffic: {}\n",
            idle.join(", ")
        ));
    }
    out
}
