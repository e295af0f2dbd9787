//! From the raw model to [`Config`]: parse every value with syntax, apply defaults, and run the
//! cross-field checks, collecting every problem before giving up.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use serde_saphyr::Spanned;

use super::model::File;
use super::types::{OneOrMany, Text};
use super::{AdminCredential, AppScope, Config, Diagnostic, Permission, StoreConfig, Timeouts};
use crate::classify::redact::{Redactor, SECRET_HEADERS};
use crate::classify::{
    host_only, BodyCondition, Delivery, OutcomeRules, PathCase, PathPolicy, PathTemplate,
    ReasonRule, Route, RouteMap, SessionRule, Source, StatusPattern, TargetRule,
};
use crate::pipeline::{CheckpointPolicy, PipelineConfig};

mod attribution;
mod keys;
mod ops;
mod require;
mod tls;

struct Checker<'f> {
    file: &'f str,
    errors: Vec<Diagnostic>,
    /// `lookups`, by name, for sources with `map: NAME`.
    lookups: std::collections::HashMap<String, crate::classify::Lookup>,
    /// Whether `trust.fingerprint_key` is set (a `request_cookie` source needs it).
    fingerprint_key: bool,
}

impl Checker<'_> {
    fn err<T>(&mut self, at: &Spanned<T>, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: self.file.to_string(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            path: path.into(),
            message: message.into(),
        });
    }

    fn addr(&mut self, v: &Option<Spanned<Text>>, path: &str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default.parse().unwrap_or(([127, 0, 0, 1], 0).into());
        let Some(v) = v else { return fallback };
        match v.value.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let msg = format!("invalid address \"{}\": expected IP:PORT", v.value);
                self.err(v, path, msg);
                fallback
            }
        }
    }

    /// Check a source list against the route's template and the secret rules.
    fn sources(
        &mut self,
        list: &Spanned<OneOrMany<Source>>,
        path: &str,
        template: Option<&PathTemplate>,
        redactor: &Redactor,
    ) -> Vec<Source> {
        let mut out = Vec::new();
        for (i, src) in list.value.0.iter().enumerate() {
            let at = format!("{path}[{i}]");
            // A mapped source: its table must exist; the inner source is checked as any other.
            let mut src = src.clone();
            if let Source::Mapped { map, table, .. } = &mut src {
                match self.lookups.get(map.as_str()) {
                    Some(t) => *table = t.clone(),
                    None => {
                        let mut known: Vec<&str> =
                            self.lookups.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        let msg = format!(
                            "unknown lookup \"{map}\": {}",
                            if known.is_empty() {
                                "define it under lookups".to_string()
                            } else {
                                format!("lookups are {}", known.join(", "))
                            }
                        );
                        self.err(list, format!("{at}.map"), msg);
                        continue;
                    }
                }
            }
            let ok = match src.base() {
                Source::Path(name) => match template {
                    Some(t) if !t.has_param(name) => {
                        let known: Vec<&str> = t.params().collect();
                        let msg = format!(
                            "unknown path parameter \"{name}\": template \"{t}\" has {}",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        );
                        self.err(list, &at, msg);
                        false
                    }
                    None => {
                        self.err(
                            list,
                            &at,
                            "path parameters are only available inside a route",
                        );
                        false
                    }
                    Some(_) => true,
                },
                Source::RequestBody(p) | Source::ResponseBody(p)
                    if !(p.is_empty() || p.starts_with('/')) =>
                {
                    let msg =
                        format!("invalid JSON pointer \"{p}\": must be empty or start with \"/\"");
                    self.err(list, &at, msg);
                    false
                }
                Source::Header(h) | Source::ResponseHeader { name: h, .. }
                    if HeaderName::from_bytes(h.as_bytes()).is_err() =>
                {
                    self.err(list, &at, format!("invalid header name \"{h}\""));
                    false
                }
                Source::ResponseHeader { param: Some(p), .. } if p.trim().is_empty() => {
                    self.err(list, &at, "empty URL parameter name in query");
                    false
                }
                Source::RequestCookie(name)
                    if name.is_empty()
                        || name.bytes().any(|b| b <= b' ' || b"=;,\"".contains(&b)) =>
                {
                    self.err(list, &at, format!("invalid cookie name \"{name}\""));
                    false
                }
                Source::RequestCookie(_) if !self.fingerprint_key => {
                    let msg = "request_cookie records a cookie by keyed fingerprint only: set trust.fingerprint_key";
                    self.err(list, &at, msg);
                    false
                }
                _ => true,
            };
            if !ok {
                continue;
            }
            if let Some(field) = src.field_name() {
                let is_header = matches!(
                    src.base(),
                    Source::Header(_) | Source::ResponseHeader { param: None, .. }
                );
                let rule =
                    if is_header && SECRET_HEADERS.contains(&field.to_ascii_lowercase().as_str()) {
                        Some(field.to_ascii_lowercase())
                    } else {
                        redactor.secret_rule(field)
                    };
                if let Some(rule) = rule {
                    let msg = format!(
                        "\"{field}\" is a secret field (matches \"{rule}\") and is never recorded"
                    );
                    self.err(list, &at, msg);
                    continue;
                }
            }
            out.push(src);
        }
        out
    }

    fn statuses(
        &mut self,
        v: &Option<Spanned<Vec<Text>>>,
        path: &str,
        default: Vec<StatusPattern>,
    ) -> Vec<StatusPattern> {
        let Some(v) = v else { return default };
        let mut out = Vec::new();
        for (i, s) in v.value.iter().enumerate() {
            match StatusPattern::parse(s) {
                Ok(p) => out.push(p),
                Err(e) => self.err(v, format!("{path}[{i}]"), e),
            }
        }
        out
    }

    fn path_policy(&mut self, v: &Spanned<Text>, path: &str) -> Option<PathPolicy> {
        let p = PathPolicy::parse(&v.value);
        if p.is_none() {
            let msg = format!(
                "invalid path_policy \"{}\": expected reject or normalize",
                v.value
            );
            self.err(v, path, msg);
        }
        p
    }

    fn pointer(&mut self, v: &Spanned<Text>, path: &str) -> Option<String> {
        if v.value.is_empty() || v.value.starts_with('/') {
            Some(v.value.0.clone())
        } else {
            let msg = format!(
                "invalid JSON pointer \"{}\": must be empty or start with \"/\"",
                v.value
            );
            self.err(v, path, msg);
            None
        }
    }
}

/// `admin.credentials`: unique names, a SHA-256 (never a token), a non-empty app scope and known
/// permissions.
fn admin_credentials(
    c: &mut Checker<'_>,
    raw: &[super::model::AdminCredential],
) -> Vec<AdminCredential> {
    let mut out: Vec<AdminCredential> = Vec::new();
    for (i, cred) in raw.iter().enumerate() {
        let at = |field: &str| format!("admin.credentials[{i}].{field}");
        let name = cred.name.value.trim().to_string();
        if name.is_empty() {
            c.err(&cred.name, at("name"), "credential name must not be empty");
        } else if out.iter().any(|o| o.name == name) {
            let msg = format!("duplicate credential name \"{name}\"");
            c.err(&cred.name, at("name"), msg);
        }
        let token_sha256 = match parse_sha256(&cred.token_sha256.value) {
            Some(h) => h,
            None => {
                // Never echo the value: it may be the token itself, pasted by mistake.
                c.err(
                    &cred.token_sha256,
                    at("token_sha256"),
                    "expected the SHA-256 of the token as 64 hex digits \
                     (printf %s \"$TOKEN\" | sha256sum), never the token itself",
                );
                [0; 32]
            }
        };
        let apps: Vec<String> = cred.apps.value.iter().map(|a| a.0.clone()).collect();
        let apps = if apps.is_empty() {
            c.err(
                &cred.apps,
                at("apps"),
                "app scope must not be empty: list apps or use [\"*\"]",
            );
            AppScope::Apps(Vec::new())
        } else if apps.iter().any(|a| a == "*") {
            if apps.len() > 1 {
                c.err(
                    &cred.apps,
                    at("apps"),
                    "\"*\" already means every app: list no other app beside it",
                );
            }
            AppScope::All
        } else {
            if let Some(bad) = apps.iter().find(|a| a.trim().is_empty()) {
                let msg = format!("invalid app \"{bad}\": must not be empty");
                c.err(&cred.apps, at("apps"), msg);
            }
            AppScope::Apps(apps)
        };
        let mut permissions = Vec::new();
        for (j, p) in cred.permissions.value.iter().enumerate() {
            let perm = match p.0.as_str() {
                "read" => Permission::Read,
                "export" => Permission::Export,
                "reload" => Permission::Reload,
                other => {
                    let msg =
                        format!("unknown permission \"{other}\": expected read, export or reload");
                    c.err(
                        &cred.permissions,
                        format!("{}[{j}]", at("permissions")),
                        msg,
                    );
                    continue;
                }
            };
            if !permissions.contains(&perm) {
                permissions.push(perm);
            }
        }
        if cred.permissions.value.is_empty() {
            c.err(
                &cred.permissions,
                at("permissions"),
                "permissions must not be empty: use read, export or reload",
            );
        }
        out.push(AdminCredential {
            name,
            token_sha256,
            apps,
            permissions,
        });
    }
    out
}

/// 64 hex digits (either case) → 32 bytes.
fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn valid_event_type(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        let mut chars = part.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return false;
        }
    }
    parts >= 2
}

thread_local! {
    /// Set by [`super::load_file_for_verify`] while it checks a config: a checkpoint signing key
    /// whose `${ENV}` is unset is passed over when `public_key` names the key to trust.
    pub(super) static VERIFY_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `store:` with its defaults: the URL, the spool, the chain instance and checkpoint keys.
fn store_config(c: &mut Checker<'_>, raw: &super::model::Store) -> StoreConfig {
    let url = match &raw.url {
        None => "sqlite://authtrail.db".to_string(),
        // Read-only commands take stand-ins for unset secrets, never for the store they read.
        Some(u) if super::types::unset_name(&u.value).is_some() => {
            let name = super::types::unset_name(&u.value).unwrap_or_default();
            let msg = format!("environment variable \"{name}\" is not set");
            c.err(u, "store.url", msg);
            String::new()
        }
        Some(u)
            if ["sqlite://", "postgres://", "postgresql://"]
                .iter()
                .any(|p| u.value.starts_with(p) && u.value.len() > p.len()) =>
        {
            u.value.0.clone()
        }
        Some(u) => {
            // Never echo the value: a database URL may carry a password.
            let scheme = u.value.split_once("://").map_or("", |(s, _)| s);
            let msg = format!(
                "unsupported store url (scheme \"{scheme}\"): expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB"
            );
            c.err(u, "store.url", msg);
            String::new()
        }
    };
    let instance_id = raw.instance_id.as_ref().and_then(|id| {
        if crate::store::chain::valid_instance_id(&id.value) {
            Some(id.value.0.clone())
        } else {
            let msg = format!(
                "invalid instance id \"{}\": use 1-64 characters of A-Z a-z 0-9 . _ : -",
                id.value
            );
            c.err(id, "store.instance_id", msg);
            None
        }
    });
    let spool_dir = match &raw.spool.dir {
        Some(d) if !d.value.is_empty() => std::path::PathBuf::from(&d.value.0),
        Some(d) => {
            c.err(d, "store.spool.dir", "spool directory must not be empty");
            std::path::PathBuf::new()
        }
        None => match url.strip_prefix("sqlite://") {
            Some(path) if path != ":memory:" => std::path::PathBuf::from(format!("{path}-spool")),
            _ => std::path::PathBuf::from("authtrail-spool"),
        },
    };
    let fsync_interval = match &raw.spool.fsync_interval {
        None => Duration::from_millis(100),
        Some(d) if (Duration::from_millis(1)..=Duration::from_secs(10)).contains(&d.value.0) => {
            d.value.0
        }
        Some(d) => {
            c.err(
                d,
                "store.spool.fsync_interval",
                "fsync_interval must be between 1ms and 10s",
            );
            Duration::from_millis(100)
        }
    };
    let checkpoint = raw.checkpoint.as_ref().and_then(|cp| {
        let key = &cp.signing_key.0;
        let public_key = cp.public_key.as_ref().and_then(|k| {
            let hex = k.value.trim().to_ascii_lowercase();
            if crate::hex::decode(&hex).is_some_and(|b| b.len() == 32) {
                Some(hex)
            } else {
                let msg = format!("invalid public key \"{}\": expected 64 hex characters", k.value);
                c.err(k, "store.checkpoint.public_key", msg);
                None
            }
        });
        // In a read-only load an unset `${ENV}` reads as a stand-in: the same as unset here.
        let seed: Result<&str, String> = match &key.value.0 {
            Ok(v) => match super::types::unset_name(v) {
                Some(name) => Err(format!("environment variable \"{name}\" is not set")),
                None => Ok(v.as_str()),
            },
            Err(e) => Err(e.clone()),
        };
        let signer = match &seed {
            Ok(seed) => match crate::store::Signer::from_hex_seed(seed) {
                Ok(s) => Some(s),
                Err(why) => {
                    c.err(
                        key,
                        "store.checkpoint.signing_key",
                        format!("invalid signing key: {why}"),
                    );
                    None
                }
            },
            // `verify` only reads: a stand-in key that never signs, the public key to trust.
            Err(_) if VERIFY_ONLY.with(std::cell::Cell::get) && public_key.is_some() => {
                crate::store::Signer::generate().ok().map(|(_, s)| s)
            }
            // `query` and `export` never sign or check checkpoints.
            Err(_)
                if super::types::is_read_only() && !VERIFY_ONLY.with(std::cell::Cell::get) =>
            {
                crate::store::Signer::generate().ok().map(|(_, s)| s)
            }
            Err(why) => {
                let hint = if VERIFY_ONLY.with(std::cell::Cell::get) {
                    " (verify needs only store.checkpoint.public_key: set it to verify without the signing key)"
                } else {
                    ""
                };
                c.err(key, "store.checkpoint.signing_key", format!("{why}{hint}"));
                None
            }
        };
        if let (Some(s), Some(pk), Some(at), Ok(_)) =
            (&signer, &public_key, &cp.public_key, &seed)
        {
            if s.public_key_hex() != pk {
                let msg = format!(
                    "public key {pk} is not signing_key's (that is {})",
                    s.public_key_hex()
                );
                c.err(at, "store.checkpoint.public_key", msg);
            }
        }
        let mut trusted_keys = Vec::new();
        for (i, k) in cp.trusted_keys.iter().enumerate() {
            let hex = k.value.trim().to_ascii_lowercase();
            if crate::hex::decode(&hex).is_some_and(|b| b.len() == 32) {
                trusted_keys.push(hex);
            } else {
                let msg = format!(
                    "invalid public key \"{}\": expected 64 hex characters",
                    k.value
                );
                c.err(k, format!("store.checkpoint.trusted_keys[{i}]"), msg);
            }
        }
        let witness = cp.witness.as_ref().and_then(|w| {
            if w.value.trim().is_empty() {
                c.err(
                    w,
                    "store.checkpoint.witness",
                    "witness file must not be empty",
                );
                None
            } else {
                Some(std::path::PathBuf::from(&w.value.0))
            }
        });
        signer.map(|signer| CheckpointPolicy {
            public_key: public_key.unwrap_or_else(|| signer.public_key_hex().to_string()),
            signer,
            every_events: cp.events.unwrap_or(1000).max(1),
            interval: cp.interval.map_or(Duration::from_secs(300), |d| d.0),
            trusted_keys,
            witness,
        })
    });
    StoreConfig {
        url,
        pipeline: PipelineConfig {
            queue_capacity: raw.queue_capacity.unwrap_or(10_000).max(1),
            batch_size: raw.batch_size.unwrap_or(256).max(1),
            flush_interval: raw
                .flush_interval
                .map_or(Duration::from_millis(100), |d| d.0),
            instance_id,
            checkpoint,
        },
        queue_wait: raw.queue_wait.map_or(Duration::from_secs(1), |d| d.0),
        sync_timeout: raw.sync_timeout.map_or(Duration::from_secs(2), |d| d.0),
        spool: crate::pipeline::SpoolConfig {
            dir: spool_dir,
            max_bytes: raw.spool.max_bytes.map_or(256 * 1024 * 1024, |b| b.0),
            write_ahead: raw.spool.write_ahead.unwrap_or(true),
            fsync_interval,
        },
    }
}

pub(super) fn compile(raw: File, file: &str) -> Result<Config, Vec<Diagnostic>> {
    let mut c = Checker {
        file,
        errors: Vec::new(),
        lookups: Default::default(),
        fingerprint_key: raw.trust.fingerprint_key.is_some(),
    };
    c.lookups = attribution::lookups(&mut c, &raw);
    let global_reasons = attribution::reason_rules(&mut c, &raw.reasons, "reasons");
    let redactor = Redactor::new(raw.redact.fields.iter().map(|t| t.0.clone()));

    let listen = c.addr(&raw.listen, "listen", "0.0.0.0:8080");
    let admin_listen = c.addr(&raw.admin.listen, "admin.listen", "127.0.0.1:9090");
    let admin_credentials = admin_credentials(&mut c, &raw.admin.credentials);
    let upstream = upstream(&mut c, &raw.upstream);
    let request_id_header = request_id_header(&mut c, raw.request_id_header.as_ref());
    let timeouts = timeouts(&raw.timeouts);
    let store = store_config(&mut c, &raw.store);
    let defaults = route_defaults(&mut c, &raw, &redactor, global_reasons);
    let (tls, upstream_tls) = tls::tls(&mut c, &raw);
    let identity = keys::identity(&mut c, &raw);
    let requirements = require::requirements(&mut c, &raw, &identity);
    let routes = routes(
        &mut c,
        &raw,
        &RouteContext {
            defaults: &defaults,
            redactor: &redactor,
            identity: &identity,
            requirements: &requirements,
        },
    );
    let ops = ops::ops(&mut c, &raw, &store, &routes);
    let map_policy = raw
        .path_policy
        .as_ref()
        .and_then(|p| c.path_policy(p, "path_policy"))
        .unwrap_or_default();

    if !c.errors.is_empty() {
        c.errors.sort_by_key(|d| (d.line, d.column));
        return Err(c.errors);
    }
    let warnings = path_warnings(file, &raw, &routes);
    Ok(Config {
        warnings,
        file: file.to_string(),
        listen,
        upstream,
        inspect_limit: raw.inspect_limit.map_or(64 * 1024, |b| b.0 as usize),
        request_id_header,
        max_connections: raw.max_connections.unwrap_or(10_000).max(1),
        timeouts,
        admin_listen,
        admin_credentials,
        admin_unauthenticated_window: raw
            .admin
            .unauthenticated_window
            .map_or(Duration::from_secs(60), |d| d.0)
            .max(Duration::from_millis(1)),
        tls,
        upstream_tls,
        identity,
        store,
        redactor,
        routes: RouteMap {
            routes: routes.into_iter().map(std::sync::Arc::new).collect(),
            path_policy: map_policy,
        },
        ops,
    })
}

/// `upstream`: scheme and authority only.
fn upstream(c: &mut Checker<'_>, raw: &Spanned<Text>) -> http::Uri {
    match raw.value.parse::<http::Uri>() {
        Ok(u)
            if matches!(u.scheme_str(), Some("http") | Some("https"))
                && u.authority().is_some()
                && matches!(u.path(), "" | "/")
                && u.query().is_none() =>
        {
            u
        }
        _ => {
            let msg = format!(
                "invalid upstream \"{}\": expected http(s)://HOST:PORT with no path",
                raw.value
            );
            c.err(raw, "upstream", msg);
            http::Uri::from_static("http://127.0.0.1")
        }
    }
}

/// `request_id_header`, default `x-request-id`.
fn request_id_header(c: &mut Checker<'_>, raw: Option<&Spanned<Text>>) -> HeaderName {
    match raw {
        None => HeaderName::from_static("x-request-id"),
        Some(h) => HeaderName::from_bytes(h.value.as_bytes()).unwrap_or_else(|_| {
            let msg = format!("invalid header name \"{}\"", h.value);
            c.err(h, "request_id_header", msg);
            HeaderName::from_static("x-request-id")
        }),
    }
}

/// `timeouts:` with their defaults.
fn timeouts(raw: &super::model::Timeouts) -> Timeouts {
    let secs =
        |d: Option<super::types::Duration>, dflt: u64| d.map_or(Duration::from_secs(dflt), |d| d.0);
    Timeouts {
        header_read: secs(raw.header_read, 10),
        body_read: secs(raw.body_read, 30),
        upstream_connect: secs(raw.upstream_connect, 5),
        upstream_response: secs(raw.upstream_response, 30),
        idle: secs(raw.idle, 60),
        shutdown_grace: secs(raw.shutdown_grace, 20),
    }
}

/// What a route without its own `actor`, `app` or `reasons` takes: `defaults:` and the file's
/// `reasons`.
struct RouteDefaults {
    actor: Vec<Source>,
    app: Vec<Source>,
    reasons: Vec<ReasonRule>,
    /// `defaults.session.cookies`.
    session_cookies: Vec<String>,
}

fn route_defaults(
    c: &mut Checker<'_>,
    raw: &File,
    redactor: &Redactor,
    reasons: Vec<ReasonRule>,
) -> RouteDefaults {
    let mut default = |list: &Option<Spanned<OneOrMany<Source>>>, path: &str| {
        list.as_ref()
            .map(|l| c.sources(l, path, None, redactor))
            .unwrap_or_default()
    };
    let actor = default(&raw.defaults.actor, "defaults.actor");
    let app = default(&raw.defaults.app, "defaults.app");
    let session_cookies = match &raw.defaults.session {
        Some(s) => {
            if s.value.ends.is_some() {
                let msg = "ends belongs to a route (a logout), not to defaults";
                c.err(s, "defaults.session.ends", msg);
            }
            session_cookies(c, s, "defaults.session")
        }
        None => Vec::new(),
    };
    RouteDefaults {
        actor,
        app,
        reasons,
        session_cookies,
    }
}

/// `session.cookies`: valid cookie names, recorded by fingerprint (so the key must be set).
fn session_cookies(
    c: &mut Checker<'_>,
    s: &Spanned<super::model::Session>,
    at: &str,
) -> Vec<String> {
    if !c.fingerprint_key && !s.value.cookies.is_empty() {
        let msg =
            "session cookies are recorded by keyed fingerprint only: set trust.fingerprint_key";
        c.err(s, format!("{at}.cookies"), msg);
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, name) in s.value.cookies.iter().enumerate() {
        if name.0.is_empty() || name.0.bytes().any(|b| b <= b' ' || b"=;,\"".contains(&b)) {
            c.err(
                s,
                format!("{at}.cookies[{i}]"),
                format!("invalid cookie name \"{name}\""),
            );
        } else if !out.contains(&name.0) {
            out.push(name.0.clone());
        }
    }
    out
}

/// What checking a route needs from the rest of the file.
struct RouteContext<'a> {
    defaults: &'a RouteDefaults,
    redactor: &'a Redactor,
    identity: &'a crate::identity::Identity,
    requirements: &'a require::Requirements,
}

/// `routes:` in file order: unique ids, each route checked, none shadowed by an earlier one.
fn routes(c: &mut Checker<'_>, raw: &File, cx: &RouteContext<'_>) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    let mut ids: Vec<(&str, u64)> = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        if let Some((_, line)) = ids.iter().find(|(id, _)| *id == r.id.value.0) {
            let msg = format!(
                "duplicate route id \"{}\" (first defined at line {line})",
                r.id.value
            );
            c.err(&r.id, format!("routes[{i}].id"), msg);
            continue;
        }
        ids.push((&r.id.value.0, r.id.referenced.line()));
        let Some(route) = route(c, i, r, cx) else {
            continue;
        };
        keys::check_claim_sources(c, r, &route, &format!("routes[{i}]"), cx.identity);
        if let Some(prev) = routes.iter().find(|p| p.shadows(&route)) {
            let msg = format!(
                "route \"{}\" can never match: route \"{}\" (line {}) takes every request it would",
                route.id, prev.id, prev.line
            );
            c.err(&r.matcher.path, format!("routes[{i}].match"), msg);
        }
        routes.push(route);
    }
    routes
}

/// One route, `routes[i]`; `None` when its path template is invalid (reported).
fn route(
    c: &mut Checker<'_>,
    i: usize,
    r: &super::model::Route,
    cx: &RouteContext<'_>,
) -> Option<Route> {
    let at = |field: &str| format!("routes[{i}].{field}");
    if r.id.value.is_empty() {
        c.err(&r.id, at("id"), "route id must not be empty");
    }
    let template = match PathTemplate::parse(&r.matcher.path.value) {
        Ok(t) => Some(t),
        Err(e) => {
            let msg = format!("invalid path template \"{}\": {e}", r.matcher.path.value);
            c.err(&r.matcher.path, at("match.path"), msg);
            None
        }
    };
    let methods = methods(c, i, &r.matcher);
    let host = r.matcher.host.as_ref().map(|h| host_only(&h.value));
    if !valid_event_type(&r.event.value) {
        let msg = format!(
            "invalid event type \"{}\": expected dotted lowercase words like auth.login",
            r.event.value
        );
        c.err(&r.event, at("event"), msg);
    }
    let outcome = outcome_rules(c, &r.outcome, &at);
    let t = template.as_ref();
    let actor = match &r.actor {
        Some(l) => c.sources(l, &at("actor"), t, cx.redactor),
        None => cx.defaults.actor.clone(),
    };
    let app = match &r.app {
        Some(l) => c.sources(l, &at("app"), t, cx.redactor),
        None => cx.defaults.app.clone(),
    };
    let target = r
        .target
        .as_ref()
        .map(|tg| target_rule(c, tg, &at, t, cx.redactor));
    let capture = captures(c, r, &at, t, cx.redactor);
    let delivery = delivery(c, r.delivery.as_ref(), &at);
    let actor_kind = actor_kind(c, r.actor_kind.as_ref(), &at);
    let tokens = keys::token_rule(c, r, &at("tokens"), cx.identity);
    let require = r.require.as_ref().and_then(|spec| {
        require::route_requirement(
            c,
            spec,
            &at("require"),
            &r.id.value,
            template.as_ref(),
            cx.requirements,
            cx.identity,
        )
    });
    let path_case = path_case(c, r.matcher.path_case.as_ref(), &at);
    let path_policy = r
        .matcher
        .path_policy
        .as_ref()
        .and_then(|p| c.path_policy(p, &at("match.path_policy")));
    let mut reasons = attribution::reason_rules(c, &r.reasons, &at("reasons"));
    reasons.extend(cx.defaults.reasons.iter().cloned());
    let session = SessionRule {
        cookies: match &r.session {
            Some(s) if !s.value.cookies.is_empty() => session_cookies(c, s, &at("session")),
            _ => cx.defaults.session_cookies.clone(),
        },
        ends: r
            .session
            .as_ref()
            .and_then(|s| s.value.ends)
            .unwrap_or(r.event.value.0 == "auth.logout"),
    };
    let path = template?;
    Some(Route {
        id: r.id.value.0.clone(),
        line: r.id.referenced.line(),
        methods,
        host,
        path,
        event: r.event.value.0.clone(),
        outcome,
        actor,
        app,
        target,
        capture,
        delivery,
        actor_kind,
        tokens,
        require,
        path_case,
        path_policy,
        reasons,
        body: body_matchers(c, &r.matcher, &at),
        session,
        token_reads_memo: std::sync::OnceLock::new(),
    })
}

/// `match.method`: upper-cased, without repeats.
fn methods(c: &mut Checker<'_>, i: usize, m: &super::model::Match) -> Vec<Method> {
    let mut methods = Vec::new();
    if let Some(m) = &m.method {
        for (j, name) in m.value.0.iter().enumerate() {
            let upper = name.to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if !methods.contains(&method) => methods.push(method),
                Ok(_) => {}
                Err(_) => c.err(
                    m,
                    format!("routes[{i}].match.method[{j}]"),
                    format!("invalid method \"{name}\""),
                ),
            }
        }
    }
    methods
}

/// `outcome:` status classes, body condition, reason pointer and `on_invalid_token`.
fn outcome_rules(
    c: &mut Checker<'_>,
    o: &super::model::Outcome,
    at: &impl Fn(&str) -> String,
) -> OutcomeRules {
    OutcomeRules {
        success: c.statuses(
            &o.success,
            &at("outcome.success"),
            OutcomeRules::default().success,
        ),
        failure: c.statuses(
            &o.failure,
            &at("outcome.failure"),
            OutcomeRules::default().failure,
        ),
        error: c.statuses(
            &o.error,
            &at("outcome.error"),
            OutcomeRules::default().error,
        ),
        success_if: o.success_if.as_ref().and_then(|s| {
            c.pointer(&s.pointer, &at("outcome.success_if.pointer"))
                .map(|pointer| BodyCondition {
                    pointer,
                    equals: s.equals.clone(),
                })
        }),
        reason: o
            .reason
            .as_ref()
            .and_then(|p| c.pointer(p, &at("outcome.reason"))),
        redirect_error: match &o.redirect_error {
            None => OutcomeRules::default().redirect_error,
            Some(p) if p.value.0 == "off" => None,
            Some(p) => {
                let name = p.value.0.trim();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'&' && b != b'=')
                {
                    let msg = format!(
                        "invalid redirect_error \"{}\": expected a URL parameter name like error, or off",
                        p.value
                    );
                    c.err(p, at("outcome.redirect_error"), msg);
                    None
                } else {
                    Some(name.to_string())
                }
            }
        },
        on_invalid_token: o.on_invalid_token.as_ref().and_then(|o| {
            match o.value.0.parse::<crate::event::Outcome>() {
                Ok(crate::event::Outcome::Success) | Err(_) => {
                    let msg = format!(
                        "invalid on_invalid_token \"{}\": expected failure, error or unknown",
                        o.value
                    );
                    c.err(o, at("outcome.on_invalid_token"), msg);
                    None
                }
                Ok(outcome) => Some(outcome),
            }
        }),
    }
}

/// `target:`: a lowercase kind and its sources.
fn target_rule(
    c: &mut Checker<'_>,
    tg: &super::model::Target,
    at: &impl Fn(&str) -> String,
    t: Option<&PathTemplate>,
    redactor: &Redactor,
) -> TargetRule {
    let kind = tg.kind.value.to_ascii_lowercase();
    if kind.is_empty()
        || !kind
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    {
        let msg = format!(
            "invalid target kind \"{}\": use a lowercase word like user",
            tg.kind.value
        );
        c.err(&tg.kind, at("target.kind"), msg);
    }
    TargetRule {
        kind,
        from: c.sources(&tg.from, &at("target.from"), t, redactor),
        display: tg
            .display
            .as_ref()
            .map(|d| c.sources(d, &at("target.display"), t, redactor))
            .unwrap_or_default(),
    }
}

/// `capture:` by name; a secret field's name is an error (it is never recorded).
fn captures(
    c: &mut Checker<'_>,
    r: &super::model::Route,
    at: &impl Fn(&str) -> String,
    t: Option<&PathTemplate>,
    redactor: &Redactor,
) -> Vec<(String, Vec<Source>)> {
    let mut capture = Vec::new();
    for (name, sources) in &r.capture.0 {
        let path = at(&format!("capture.{name}"));
        if let Some(rule) = redactor.secret_rule(name) {
            let msg =
                format!("\"{name}\" is a secret field (matches \"{rule}\") and is never recorded");
            c.err(sources, path, msg);
            continue;
        }
        capture.push((name.clone(), c.sources(sources, &path, t, redactor)));
    }
    capture
}

/// `delivery:` async (default) or sync.
fn delivery(
    c: &mut Checker<'_>,
    d: Option<&Spanned<Text>>,
    at: &impl Fn(&str) -> String,
) -> Delivery {
    match d {
        None => Delivery::Async,
        Some(d) if d.value.0 == "async" => Delivery::Async,
        Some(d) if d.value.0 == "sync" => Delivery::Sync,
        Some(d) => {
            let msg = format!(
                "unsupported delivery \"{}\": expected async or sync",
                d.value
            );
            c.err(d, at("delivery"), msg);
            Delivery::Async
        }
    }
}

/// `actor_kind:` user (default), admin or service.
fn actor_kind(
    c: &mut Checker<'_>,
    k: Option<&Spanned<Text>>,
    at: &impl Fn(&str) -> String,
) -> crate::event::ActorKind {
    match k.map(|k| (k, k.value.0.as_str())) {
        None | Some((_, "user")) => crate::event::ActorKind::User,
        Some((_, "admin")) => crate::event::ActorKind::Admin,
        Some((_, "service")) => crate::event::ActorKind::Service,
        Some((k, other)) => {
            let msg = format!("invalid actor_kind \"{other}\": expected user, admin or service");
            c.err(k, at("actor_kind"), msg);
            crate::event::ActorKind::User
        }
    }
}

/// `match.path_case:` insensitive, sensitive, or unknown when not given.
fn path_case(
    c: &mut Checker<'_>,
    pc: Option<&Spanned<Text>>,
    at: &impl Fn(&str) -> String,
) -> PathCase {
    match pc.map(|c| (c, c.value.0.as_str())) {
        None => PathCase::Unknown,
        Some((_, "insensitive")) => PathCase::Insensitive,
        Some((_, "sensitive")) => PathCase::Sensitive,
        Some((pc, other)) => {
            let msg = format!("invalid path_case \"{other}\": expected insensitive or sensitive");
            c.err(pc, at("match.path_case"), msg);
            PathCase::Unknown
        }
    }
}

/// `match.body:` JSON pointers and the values each may hold.
fn body_matchers(
    c: &mut Checker<'_>,
    m: &super::model::Match,
    at: &impl Fn(&str) -> String,
) -> Vec<(String, Vec<String>)> {
    m.body
        .0
        .iter()
        .filter_map(|(ptr, allowed)| {
            if !ptr.starts_with('/') {
                let msg = format!("invalid JSON pointer \"{ptr}\": must start with \"/\"");
                c.err(allowed, at("match.body"), msg);
                return None;
            }
            Some((
                ptr.clone(),
                allowed.value.0.iter().map(|t| t.0.clone()).collect(),
            ))
        })
        .collect()
}

/// What `check` warns about: ways a route could be reached by a request the map does not take
/// as that route (see docs/request-targets.md). Called on an error-free map, so `routes[i]` is
/// `raw.routes[i]`.
fn path_warnings(file: &str, raw: &File, routes: &[Route]) -> Vec<Diagnostic> {
    use crate::identity::require::Mode;
    let mut out = Vec::new();
    let mut warn = |i: usize, message: String| {
        let at = &raw.routes[i].matcher.path;
        out.push(Diagnostic {
            file: file.to_string(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            path: format!("routes[{i}].match.path"),
            message,
        });
    };
    let enforcing = |r: &Route| r.require.as_ref().is_some_and(|q| q.mode == Mode::Enforce);
    for (i, r) in routes.iter().enumerate() {
        if let (true, Some(host)) = (enforcing(r), &r.host) {
            let guarded_elsewhere = routes
                .iter()
                .any(|o| o.host.is_none() && enforcing(o) && o.path.covers(&r.path));
            if !guarded_elsewhere {
                warn(i, format!(
                    "route \"{}\" enforces its requirement only for host {host}: the same path with another Host (an IP address, another name) is forwarded unchecked unless the upstream routes by host"
                , r.id));
            }
        }
        if enforcing(r) && r.path_case == PathCase::Sensitive {
            warn(i, format!(
                "route \"{}\" is path_case: sensitive: if the upstream routes ignoring case, {} in other capitals reaches it unchecked",
                r.id, r.path
            ));
        }
        for (j, o) in routes.iter().enumerate().skip(i + 1) {
            let same_ignoring_case = r.path.as_str().eq_ignore_ascii_case(o.path.as_str())
                && r.path.as_str() != o.path.as_str();
            if same_ignoring_case && r.path_case == PathCase::Unknown {
                warn(j, format!(
                    "routes \"{}\" and \"{}\" differ only in case: requests for either in other capitals are refused as ambiguous; say path_case: sensitive on both if the upstream routes exactly",
                    r.id, o.id
                ));
            }
        }
    }
    out
}
