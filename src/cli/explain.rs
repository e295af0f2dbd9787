//! `explain`: which route a request matches and why the routes before it did not, and — with
//! `--token` — whether the route's requirement would let it through.

use std::io::{Read, Write};

use anyhow::{Context, Result};

use super::{stdout, ExplainArgs};
use crate::classify::{self, RequestHead, Verdict};
use crate::config::Config;

pub async fn run(a: ExplainArgs) -> Result<i32> {
    let cfg = super::load(&a.config)?;
    let host = a.host.as_deref();
    let mut text = explain(&cfg, &a.method, &a.path, host, a.body.as_deref())?;
    let token = match a.token {
        Some(t) if t == "-" => {
            let mut buf = String::new();
            std::io::stdin().take(64 * 1024).read_to_string(&mut buf)?;
            Some(buf.trim().to_string())
        }
        other => other,
    };
    text.push_str(
        &explain_requirement(&cfg, &a.method, &a.path, host, token.as_deref(), &a.headers).await?,
    );
    stdout().write_all(text.as_bytes())?;
    Ok(0)
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
    let Some(requirement) = &m.route.require else {
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
        requirement.name,
        requirement.mode.as_str(),
        requirement.token.label()
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
            let checked = cfg
                .identity
                .check(token.trim(), requirement.keys.as_deref())
                .await;
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
    match require::evaluate(requirement, checked.as_ref(), &m.params, &map) {
        Decision::Allow => out.push_str("PASS: the request would be forwarded\n"),
        Decision::AllowFlagged { reason } => out.push_str(&format!(
            "PASS (flagged {reason}): forwarded and recorded as access.would_deny\n"
        )),
        Decision::Deny(d) => {
            let verb = match requirement.mode {
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
