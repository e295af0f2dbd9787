//! `retention`, `sinks` and `alerts`: keep durations, event type patterns, sink endpoints
//! (webhook, http and otlp URLs: https, plain http only for loopback hosts, no credentials in
//! them; syslog addresses and header fields), secrets and headers, the keys that apply to each
//! kind of sink, and the references between them (an alert notifies webhook sinks by name;
//! retention needs a checkpoint signing key).

use std::time::Duration;

use serde_saphyr::Spanned;

use super::keys::loopback_host;
use super::{valid_event_type, Checker};
use crate::classify::Route;
use crate::config::model::{File, HttpSink, Sink, SyslogSink};
use crate::config::types::{OneOrMany, Text};
use crate::config::StoreConfig;
use crate::event::Outcome;
use crate::ops::alerts::{self, GroupBy, Threshold};
use crate::ops::retention::{self, Keep, Policy};
use crate::ops::sinks::{BodyFormat, Endpoint, Format, HttpBody, SinkConfig, Target};
use crate::ops::syslog::{printusascii, Payload, SyslogConfig, Transport, FACILITIES};
use crate::ops::webhook::{Headers, Secret, WebhookConfig};
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

/// The sink targets, in the order the messages name them.
const SINK_KINDS: &[&str] = &["stdout", "webhook", "http", "otlp", "syslog"];
/// Sinks that send batches over HTTP.
const HTTP_KINDS: &[&str] = &["webhook", "http", "otlp"];
/// Sinks that connect somewhere.
const NETWORK_KINDS: &[&str] = &["webhook", "http", "otlp", "syslog"];

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A webhook, http or otlp URL: https, or http to a loopback host; no credentials in it.
fn endpoint_url(
    c: &mut Checker<'_>,
    url: &Spanned<Text>,
    path: &str,
    what: &str,
) -> Option<http::Uri> {
    match url.value.parse::<http::Uri>() {
        Ok(u)
            if u.authority().is_some()
                && (u.scheme_str() == Some("https")
                    || (u.scheme_str() == Some("http") && loopback_host(&u))) =>
        {
            if u.authority().is_some_and(|a| a.as_str().contains('@')) {
                // Never echo it: it holds a credential.
                c.err(
                    url,
                    path,
                    format!(
                        "{what} must not hold credentials (user:password@): send them in headers"
                    ),
                );
                return None;
            }
            Some(u)
        }
        _ => {
            let msg = format!(
                "invalid {what} \"{}\": expected https://… (http only for loopback hosts)",
                url.value
            );
            c.err(url, path, msg);
            None
        }
    }
}

/// Headers authtrail sets itself, which `headers` may not replace.
const OWN_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
];

fn headers(
    c: &mut Checker<'_>,
    raw: &crate::config::model::indexmap_lite::OrderedMap<
        Spanned<crate::config::model::HeaderText>,
    >,
    path: &str,
) -> Headers {
    let mut out = Vec::new();
    for (name, value) in &raw.0 {
        let at = format!("{path}.{name}");
        let Ok(n) = http::HeaderName::from_bytes(name.as_bytes()) else {
            c.err(value, at, format!("invalid header name \"{name}\""));
            continue;
        };
        if OWN_HEADERS.contains(&n.as_str()) {
            c.err(value, at, format!("header \"{name}\" is set by authtrail"));
            continue;
        }
        match http::HeaderValue::from_str(&value.value.0) {
            Ok(v) => out.push((n, v)),
            // Never echo it: header values are usually credentials.
            Err(_) => c.err(
                value,
                at,
                format!(
                    "header \"{name}\": invalid value (control characters or non-ASCII; not shown)"
                ),
            ),
        }
    }
    Headers::new(out)
}

/// The client settings every HTTP sink shares: timeout, retries, backoff, CA file.
fn client(
    c: &mut Checker<'_>,
    spec: &Spanned<Sink>,
    at: &dyn Fn(&str) -> String,
    url: http::Uri,
    secret: Option<Secret>,
) -> WebhookConfig {
    let s = &spec.value;
    WebhookConfig {
        url,
        secret,
        timeout: s.timeout.map_or(Duration::from_secs(5), |d| d.0),
        retries: s.retries.unwrap_or(3),
        backoff: s.backoff.map_or(Duration::from_millis(500), |d| d.0),
        ca_file: ca_file(c, spec, at),
    }
}

fn ca_file(
    c: &mut Checker<'_>,
    spec: &Spanned<Sink>,
    at: &dyn Fn(&str) -> String,
) -> Option<std::path::PathBuf> {
    let ca_file = spec
        .value
        .ca_file
        .as_ref()
        .map(|f| std::path::PathBuf::from(&f.0));
    if let Some(path) = &ca_file {
        if let Err(e) = std::fs::metadata(path) {
            let msg = format!("ca_file {}: {e}", path.display());
            c.err(spec, at("ca_file"), msg);
        }
    }
    ca_file
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
        let given = [
            s.stdout.is_some(),
            s.webhook.is_some(),
            s.http.is_some(),
            s.otlp.is_some(),
            s.syslog.is_some(),
        ];
        let kinds: Vec<&str> = SINK_KINDS
            .iter()
            .zip(given)
            .filter_map(|(k, g)| g.then_some(*k))
            .collect();
        let [kind] = kinds.as_slice() else {
            let msg = format!("a sink has exactly one of {}", SINK_KINDS.join(", "));
            c.err(spec, format!("sinks.{name}"), msg);
            continue;
        };
        let kind = *kind;
        // The keys beside the target apply to some kinds only.
        let beside: [(&str, bool, &[&str]); 8] = [
            ("secret", s.secret.is_some(), &["webhook"]),
            ("format", s.format.is_some(), HTTP_KINDS),
            ("batch", s.batch.is_some(), HTTP_KINDS),
            ("flush", s.flush.is_some(), HTTP_KINDS),
            ("timeout", s.timeout.is_some(), NETWORK_KINDS),
            ("retries", s.retries.is_some(), NETWORK_KINDS),
            ("backoff", s.backoff.is_some(), NETWORK_KINDS),
            ("ca_file", s.ca_file.is_some(), NETWORK_KINDS),
        ];
        for (key, given, kinds) in beside {
            if given && !kinds.contains(&kind) {
                let a = if matches!(kind, "http" | "otlp") {
                    "an"
                } else {
                    "a"
                };
                let msg = if key == "format" {
                    format!("format of {a} {kind} sink is {kind}.format")
                } else {
                    format!(
                        "{key} does not apply to {a} {kind} sink (it is for {} sinks)",
                        and_list(kinds)
                    )
                };
                c.err(spec, at(key), msg);
            }
        }
        let format = if HTTP_KINDS.contains(&kind) {
            format(c, &s.format, &at("format"))
        } else {
            Format::Json
        };
        let batch = s.batch.unwrap_or(100).max(1);
        let flush = s.flush.map_or(Duration::from_secs(1), |d| d.0);
        let target = match kind {
            "stdout" => {
                let stdout = s.stdout.as_ref().expect("kind stdout");
                let format = self::format(c, &stdout.format, &at("stdout.format"));
                out.push(SinkConfig {
                    name: name.clone(),
                    target: Target::Stdout,
                    format,
                    queue,
                    types,
                });
                continue;
            }
            "webhook" => {
                let target = s.webhook.as_ref().expect("kind webhook");
                let Some(uri) = endpoint_url(c, target, &at("webhook"), "webhook") else {
                    continue;
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
                Target::Webhook {
                    webhook: client(c, spec, &at, uri, secret),
                    batch,
                    flush,
                }
            }
            "http" => {
                let h = s.http.as_ref().expect("kind http");
                let Some(body) = http_body(c, h, &at, format) else {
                    continue;
                };
                let headers = headers(c, &h.value.headers, &at("http.headers"));
                let Some(uri) = endpoint_url(c, &h.value.url, &at("http.url"), "url") else {
                    continue;
                };
                Target::Http {
                    endpoint: Endpoint {
                        client: client(c, spec, &at, uri, None),
                        headers,
                        gzip: h.value.gzip.unwrap_or(false),
                    },
                    body,
                    batch,
                    flush,
                }
            }
            "otlp" => {
                let o = s.otlp.as_ref().expect("kind otlp");
                let headers = headers(c, &o.value.headers, &at("otlp.headers"));
                let Some(uri) = endpoint_url(c, &o.value.url, &at("otlp.url"), "url") else {
                    continue;
                };
                Target::Otlp {
                    endpoint: Endpoint {
                        client: client(c, spec, &at, uri, None),
                        headers,
                        gzip: o.value.gzip.unwrap_or(false),
                    },
                    batch,
                    flush,
                }
            }
            _ => {
                let y = s.syslog.as_ref().expect("kind syslog");
                match syslog(c, spec, y, &at) {
                    Some(cfg) => Target::Syslog(cfg),
                    None => continue,
                }
            }
        };
        out.push(SinkConfig {
            name: name.clone(),
            target,
            format,
            queue,
            types,
        });
    }
    out
}

/// `http.body` with its `index` and `host`.
fn http_body(
    c: &mut Checker<'_>,
    h: &Spanned<HttpSink>,
    at: &dyn Fn(&str) -> String,
    events: Format,
) -> Option<HttpBody> {
    let b = &h.value;
    let format = match b.body.value.0.as_str() {
        "splunk_hec" => BodyFormat::SplunkHec,
        "elasticsearch_bulk" => BodyFormat::ElasticsearchBulk,
        "loki" => BodyFormat::Loki,
        other => {
            let msg = format!(
                "unknown body \"{other}\": expected splunk_hec, elasticsearch_bulk or loki"
            );
            c.err(&b.body, at("http.body"), msg);
            return None;
        }
    };
    let index = b.index.as_ref().and_then(|i| {
        let v = i.value.0.as_str();
        match format {
            BodyFormat::Loki => {
                c.err(
                    i,
                    at("http.index"),
                    "index is only for splunk_hec and elasticsearch_bulk bodies",
                );
                None
            }
            BodyFormat::ElasticsearchBulk if !es_index(v) => {
                let msg = format!(
                    "invalid index \"{v}\": lowercase, without spaces or \\ / * ? \" < > | , #, not starting with - _ +"
                );
                c.err(i, at("http.index"), msg);
                None
            }
            _ if v.is_empty() => {
                c.err(i, at("http.index"), "index must not be empty");
                None
            }
            _ => Some(v.to_string()),
        }
    });
    let host = b.host.as_ref().and_then(|hs| {
        if format != BodyFormat::SplunkHec {
            c.err(hs, at("http.host"), "host is only for splunk_hec bodies");
            None
        } else if hs.value.trim().is_empty() {
            c.err(hs, at("http.host"), "host must not be empty");
            None
        } else {
            Some(hs.value.0.clone())
        }
    });
    Some(HttpBody {
        format,
        events,
        index,
        host,
    })
}

/// An Elasticsearch index or data stream name.
fn es_index(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v != "."
        && v != ".."
        && !v.starts_with(['-', '_', '+'])
        && !v.chars().any(|ch| {
            ch.is_uppercase()
                || ch.is_whitespace()
                || matches!(
                    ch,
                    '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':'
                )
        })
}

/// `HOST:PORT`, `[V6]:PORT`, or a host alone (the transport's default port).
fn host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | ':'));
    if !valid_host {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0)?,
    };
    Some((host.to_string(), port))
}

fn syslog(
    c: &mut Checker<'_>,
    spec: &Spanned<Sink>,
    y: &Spanned<SyslogSink>,
    at: &dyn Fn(&str) -> String,
) -> Option<SyslogConfig> {
    let v = &y.value;
    let transport = match v.transport.as_ref().map(|t| (t, t.value.0.as_str())) {
        None | Some((_, "tcp")) => Transport::Tcp,
        Some((_, "tls")) => Transport::Tls,
        Some((_, "udp")) => Transport::Udp,
        Some((t, other)) => {
            let msg = format!("unknown transport \"{other}\": expected tcp, tls or udp");
            c.err(t, at("syslog.transport"), msg);
            Transport::Tcp
        }
    };
    let payload = match v.format.as_ref().map(|f| (f, f.value.0.as_str())) {
        None | Some((_, "json")) => Payload::Json,
        Some((_, "cef")) => Payload::Cef,
        Some((f, other)) => {
            let msg = format!("unknown format \"{other}\": expected json or cef");
            c.err(f, at("syslog.format"), msg);
            Payload::Json
        }
    };
    let facility = match &v.facility {
        None => 4,
        Some(f) => match FACILITIES.iter().find(|(n, _)| *n == f.value.0) {
            Some((_, code)) => *code,
            None => {
                let msg = format!(
                    "unknown facility \"{}\": expected kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, security, console, solaris-cron or local0 to local7",
                    f.value
                );
                c.err(f, at("syslog.facility"), msg);
                4
            }
        },
    };
    let mut field = |v: &Option<Spanned<Text>>, key: &str, max: usize| -> Option<String> {
        let f = v.as_ref()?;
        if printusascii(&f.value, max) {
            Some(f.value.0.clone())
        } else {
            let msg = format!("{key} must be 1 to {max} printable ASCII characters, no spaces");
            c.err(f, at(&format!("syslog.{key}")), msg);
            None
        }
    };
    let app_name = field(&v.app_name, "app_name", 48).unwrap_or_else(|| "authtrail".into());
    let hostname = field(&v.hostname, "hostname", 255);
    let msgid = field(&v.msgid, "msgid", 32);
    if spec.value.ca_file.is_some() && transport != Transport::Tls {
        c.err(spec, at("ca_file"), "ca_file is only for transport tls");
    }
    let ca_file = ca_file(c, spec, at);
    let Some((host, port)) = host_port(&v.address.value, transport.default_port()) else {
        let msg = format!(
            "invalid address \"{}\": expected HOST:PORT (or [IPv6]:PORT)",
            v.address.value
        );
        c.err(&v.address, at("syslog.address"), msg);
        return None;
    };
    let s = &spec.value;
    Some(SyslogConfig {
        host,
        port,
        transport,
        payload,
        facility,
        app_name,
        hostname,
        msgid,
        ca_file,
        timeout: s.timeout.map_or(Duration::from_secs(5), |d| d.0),
        retries: s.retries.unwrap_or(3),
        backoff: s.backoff.map_or(Duration::from_millis(500), |d| d.0),
    })
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
