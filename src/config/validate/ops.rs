//! `retention`, `sinks` and `alerts`: keep durations, event type patterns, webhook URLs (https;
//! plain http only for loopback hosts) and secrets, and the references between them (an alert
//! notifies webhook sinks by name; retention needs a checkpoint signing key).

use std::time::Duration;

use serde_saphyr::Spanned;

use super::keys::loopback_host;
use super::{valid_event_type, Checker};
use crate::classify::Route;
use crate::config::model::File;
use crate::config::types::{OneOrMany, Text};
use crate::config::StoreConfig;
use crate::event::Outcome;
use crate::ops::alerts::{self, GroupBy, Threshold};
use crate::ops::retention::{self, Keep, Policy};
use crate::ops::sinks::{Format, SinkConfig, Target};
use crate::ops::webhook::{Secret, WebhookConfig};
use crate::ops::OpsConfig;
use crate::store::TypeFilter;

/// The checked `retention`, `sinks` and `alerts`.
pub(super) fn ops(
    c: &mut Checker<'_>,
    raw: &File,
    store: &StoreConfig,
    routes: &[Route],
) -> OpsConfig {
    let sinks = sinks(c, raw);
    let alerts = alert_rules(c, raw, &sinks, routes);
    OpsConfig {
        retention: retention(c, raw, store),
        sinks,
        alerts,
    }
}

/// `auth.login` (exact), `auth.*` (prefix) or `*` (any).
fn type_filter<T>(c: &mut Checker<'_>, at: &Spanned<T>, path: &str, s: &str) -> Option<TypeFilter> {
    let s = s.trim();
    if s == "*" {
        return Some(TypeFilter::Prefix(String::new()));
    }
    let ok = match s.strip_suffix(".*") {
        Some(prefix) => prefix.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|ch| ch.is_ascii_lowercase())
                && chars.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        }),
        None => valid_event_type(s),
    };
    if !ok {
        let msg = format!(
            "invalid event type \"{s}\": expected dotted lowercase words like auth.login, or a prefix like auth.*"
        );
        c.err(at, path, msg);
        return None;
    }
    Some(TypeFilter::parse(s))
}

fn retention(c: &mut Checker<'_>, raw: &File, store: &StoreConfig) -> Option<Policy> {
    let spec = raw.retention.as_ref()?;
    let r = &spec.value;
    let keep = |c: &mut Checker<'_>, v: &Spanned<Text>, path: &str| match Keep::parse(&v.value) {
        Ok(k) => k,
        Err(e) => {
            c.err(v, path, e);
            Keep::Forever
        }
    };
    let default = match &r.default {
        Some(d) => keep(c, d, "retention.default"),
        None => Keep::Forever,
    };
    let mut rules = Vec::new();
    for (i, rule) in r.rules.iter().enumerate() {
        let at = |f: &str| format!("retention.rules[{i}].{f}");
        let event_type = rule
            .event
            .as_ref()
            .and_then(|e| type_filter(c, e, &at("event"), &e.value));
        let app = rule.app.as_ref().map(|a| {
            if a.value.trim().is_empty() {
                c.err(a, at("app"), "app must not be empty");
            }
            a.value.0.clone()
        });
        let k = keep(c, &rule.keep, &at("keep"));
        rules.push(retention::Rule {
            event_type,
            app,
            keep: k,
        });
    }
    let mut legal_hold = Vec::new();
    for (i, app) in r.legal_hold.iter().enumerate() {
        if app.value.trim().is_empty() {
            c.err(
                app,
                format!("retention.legal_hold[{i}]"),
                "app must not be empty",
            );
        } else {
            legal_hold.push(app.value.0.clone());
        }
    }
    if store.pipeline.checkpoint.is_none() {
        c.err(
            spec,
            "retention",
            "retention needs store.checkpoint.signing_key: every purge is sealed with a signed \
             checkpoint so that verify still passes",
        );
    }
    let interval = r.interval.map_or(Duration::from_secs(3600), |d| d.0);
    if interval.is_zero() {
        c.err(spec, "retention.interval", "interval must be longer than 0");
    }
    Some(Policy {
        default,
        rules,
        legal_hold,
        interval,
        batch: r.batch.unwrap_or(1000).max(1),
    })
}

fn format(c: &mut Checker<'_>, v: &Option<Spanned<Text>>, path: &str) -> Format {
    match v.as_ref().map(|f| (f, f.value.0.as_str())) {
        None | Some((_, "json")) => Format::Json,
        Some((_, "ocsf")) => Format::Ocsf,
        Some((f, other)) => {
            let msg = format!("unknown format \"{other}\": expected json or ocsf");
            c.err(f, path, msg);
            Format::Json
        }
    }
}

fn sinks(c: &mut Checker<'_>, raw: &File) -> Vec<SinkConfig> {
    let mut out: Vec<SinkConfig> = Vec::new();
    for (name, spec) in &raw.sinks.0 {
        let at = |f: &str| format!("sinks.{name}.{f}");
        let s = &spec.value;
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        {
            let msg = format!("invalid sink name \"{name}\": use letters, digits, - _ .");
            c.err(spec, format!("sinks.{name}"), msg);
        }
        let types = s.events.as_ref().map(|list| {
            list.value
                .iter()
                .enumerate()
                .filter_map(|(i, t)| type_filter(c, list, &format!("{}[{i}]", at("events")), t))
                .collect::<Vec<_>>()
        });
        let queue = s.queue.unwrap_or(10_000).max(1);
        let target = match (&s.stdout, &s.webhook) {
            (Some(stdout), None) => {
                let webhook_only = [
                    ("secret", s.secret.is_some()),
                    ("format", s.format.is_some()),
                    ("batch", s.batch.is_some()),
                    ("flush", s.flush.is_some()),
                    ("timeout", s.timeout.is_some()),
                    ("retries", s.retries.is_some()),
                    ("backoff", s.backoff.is_some()),
                    ("ca_file", s.ca_file.is_some()),
                ];
                for (key, given) in webhook_only {
                    if given {
                        let msg = format!("{key} is only for webhook sinks (stdout takes format)");
                        c.err(spec, at(key), msg);
                    }
                }
                let format = format(c, &stdout.format, &at("stdout.format"));
                out.push(SinkConfig {
                    name: name.clone(),
                    target: Target::Stdout,
                    format,
                    queue,
                    types,
                });
                continue;
            }
            (None, Some(url)) => url,
            _ => {
                c.err(
                    spec,
                    format!("sinks.{name}"),
                    "a sink has exactly one of stdout, webhook",
                );
                continue;
            }
        };
        let uri = match target.value.parse::<http::Uri>() {
            Ok(u)
                if u.authority().is_some()
                    && (u.scheme_str() == Some("https")
                        || (u.scheme_str() == Some("http") && loopback_host(&u))) =>
            {
                u
            }
            _ => {
                let msg = format!(
                    "invalid webhook \"{}\": expected https://… (http only for loopback hosts)",
                    target.value
                );
                c.err(target, at("webhook"), msg);
                continue;
            }
        };
        let secret = s.secret.as_ref().and_then(|k| {
            if k.0.value.len() < 16 {
                // Never echo the value: it is a secret.
                c.err(
                    &k.0,
                    at("secret"),
                    "webhook secret must be at least 16 bytes",
                );
                None
            } else {
                Some(Secret::new(k.0.value.as_bytes()))
            }
        });
        let ca_file = s.ca_file.as_ref().map(|f| std::path::PathBuf::from(&f.0));
        if let Some(path) = &ca_file {
            if let Err(e) = std::fs::metadata(path) {
                let msg = format!("ca_file {}: {e}", path.display());
                c.err(spec, at("ca_file"), msg);
            }
        }
        let format = format(c, &s.format, &at("format"));
        out.push(SinkConfig {
            name: name.clone(),
            target: Target::Webhook {
                webhook: WebhookConfig {
                    url: uri,
                    secret,
                    timeout: s.timeout.map_or(Duration::from_secs(5), |d| d.0),
                    retries: s.retries.unwrap_or(3),
                    backoff: s.backoff.map_or(Duration::from_millis(500), |d| d.0),
                    ca_file,
                },
                batch: s.batch.unwrap_or(100).max(1),
                flush: s.flush.map_or(Duration::from_secs(1), |d| d.0),
            },
            format,
            queue,
            types,
        });
    }
    out
}

fn texts(v: &Option<Spanned<OneOrMany<Text>>>) -> Vec<String> {
    v.as_ref()
        .map(|l| l.value.0.iter().map(|t| t.0.clone()).collect())
        .unwrap_or_default()
}

fn alert_rules(
    c: &mut Checker<'_>,
    raw: &File,
    sinks: &[SinkConfig],
    routes: &[Route],
) -> Vec<alerts::Rule> {
    let mut out: Vec<alerts::Rule> = Vec::new();
    for (i, a) in raw.alerts.iter().enumerate() {
        let at = |f: &str| format!("alerts[{i}].{f}");
        let id = a.id.value.0.clone();
        if id.is_empty() {
            c.err(&a.id, at("id"), "alert id must not be empty");
        } else if out.iter().any(|r| r.id == id) {
            c.err(&a.id, at("id"), format!("duplicate alert id \"{id}\""));
        }
        let w = &a.when.value;
        let mut types = Vec::new();
        if let Some(list) = &w.event {
            for (j, t) in list.value.0.iter().enumerate() {
                if let Some(f) = type_filter(c, list, &format!("{}[{j}]", at("when.event")), t) {
                    types.push(f);
                }
            }
        }
        let mut outcomes = Vec::new();
        if let Some(list) = &w.outcome {
            for (j, o) in list.value.0.iter().enumerate() {
                match o.0.parse::<Outcome>() {
                    Ok(o) => outcomes.push(o),
                    Err(_) => {
                        let msg = format!(
                            "invalid outcome \"{o}\": expected success, failure, error or unknown"
                        );
                        c.err(list, format!("{}[{j}]", at("when.outcome")), msg);
                    }
                }
            }
        }
        let route_ids = texts(&w.route);
        if let Some(list) = &w.route {
            for (j, r) in route_ids.iter().enumerate() {
                if !r.starts_with("admin:") && !routes.iter().any(|x| x.id == *r) {
                    let msg = format!("unknown route \"{r}\"");
                    c.err(list, format!("{}[{j}]", at("when.route")), msg);
                }
            }
        }
        let threshold = a.threshold.as_ref().map(|t| {
            let th = &t.value;
            if th.count == 0 {
                c.err(t, at("threshold.count"), "count must be at least 1");
            }
            if th.window.0.is_zero() {
                c.err(t, at("threshold.window"), "window must be longer than 0");
            }
            let group_by = match &th.group_by {
                None => None,
                Some(g) => match GroupBy::parse(&g.value) {
                    Some(by) => Some(by),
                    None => {
                        let msg = format!(
                            "invalid group_by \"{}\": expected actor, ip, target or app",
                            g.value
                        );
                        c.err(g, at("threshold.group_by"), msg);
                        None
                    }
                },
            };
            Threshold {
                count: th.count.max(1),
                window: th.window.0,
                group_by,
            }
        });
        let mut notify = Vec::new();
        for (j, n) in a.notify.iter().enumerate() {
            match sinks.iter().find(|s| s.name == n.value.0) {
                Some(SinkConfig {
                    target: Target::Webhook { .. },
                    ..
                }) => notify.push(n.value.0.clone()),
                Some(_) => {
                    let msg = format!("sink \"{}\" is not a webhook", n.value);
                    c.err(n, format!("{}[{j}]", at("notify")), msg);
                }
                None => {
                    let msg = format!("unknown sink \"{}\"", n.value);
                    c.err(n, format!("{}[{j}]", at("notify")), msg);
                }
            }
        }
        out.push(alerts::Rule {
            id,
            types,
            outcomes,
            apps: texts(&w.app),
            routes: route_ids,
            threshold,
            notify,
        });
    }
    out
}
