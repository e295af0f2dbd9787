//! The route map: which requests are auth actions, and how an exchange becomes an event.
//!
//! [`classify`] is a pure, synchronous function from the compiled [`RouteMap`] and a request head
//! to the first matching route; [`extract`] applies that route's rules to the request and
//! response facts the proxy gathered. Nothing here does I/O or knows about the store.

use http::Method;
use serde::Deserialize;

pub mod extract;
pub mod inspect;
pub mod interpret;
pub mod redact;
pub mod template;

pub use interpret::{route as route_request, Ambiguity, PathCase, PathPolicy, Routing, Variant};

pub use template::{normalize, segments, PathTemplate, TemplateError};

/// Where a token is read from: owned by [`crate::identity`], which reads and checks tokens.
pub use crate::identity::TokenLocation;

/// A lookup table (`lookups.NAME`): value → mapped value. Shared by every source that names it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Lookup(pub std::sync::Arc<std::collections::HashMap<String, String>>);

impl Lookup {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lookup({} entries)", self.0.len())
    }
}

/// Where a value (actor, app, target, captured detail) is read from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SourceSpec")]
pub enum Source {
    /// A `{param}` of the route's path template.
    Path(String),
    /// A query-string parameter.
    Query(String),
    /// A request header (never `Authorization` or `Cookie`).
    Header(String),
    /// A JSON pointer into the request body (for form bodies, `/field` names the field).
    RequestBody(String),
    /// A JSON pointer into the response body.
    ResponseBody(String),
    /// A field of an `application/x-www-form-urlencoded` request body.
    Form(String),
    /// A fixed value.
    Const(String),
    /// A claim (name or JSON pointer) of a token, only when the token verifies against `keys`.
    Claim {
        claim: String,
        token: TokenLocation,
        keys: Option<String>,
    },
    /// The user part of `Authorization: Basic` (an OAuth client id); the password is never read.
    BasicAuthUser,
    /// A response header (never `Set-Cookie`); with `param`, that parameter of the URL it holds
    /// (query first, then fragment), e.g. `error` of `Location: https://app/cb?error=...`.
    /// The whole value of a URL header is stored with its secret-named parameters masked.
    ResponseHeader { name: String, param: Option<String> },
    /// The keyed fingerprint of a request cookie (its presence and which session it was); the
    /// value itself is never read into an event.
    RequestCookie(String),
    /// Who the token at `token` was issued to, by lineage (`{ lineage: actor, form: token }`):
    /// the actor (or app) of the event that issued it. Names the owner of a token being revoked.
    Lineage { of: LineageOf, token: TokenLocation },
    /// Another source's value mapped through the lookup table `map` (`map: NAME` on a source);
    /// a value not in the table yields nothing. The table is filled in when the config is
    /// compiled.
    Mapped {
        source: Box<Source>,
        map: String,
        table: Lookup,
    },
}

/// Which value of the issuing event a lineage source reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineageOf {
    Actor,
    App,
}

/// A source as written in YAML: one key naming where to read, or `claim` with a token location.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    path: Option<String>,
    query: Option<String>,
    header: Option<String>,
    request_body: Option<String>,
    response_body: Option<String>,
    form: Option<String>,
    #[serde(rename = "const")]
    constant: Option<String>,
    cookie: Option<String>,
    claim: Option<String>,
    issued_token: Option<String>,
    keys: Option<String>,
    basic_auth: Option<String>,
    response_header: Option<String>,
    request_cookie: Option<String>,
    lineage: Option<String>,
    map: Option<String>,
}

impl TryFrom<SourceSpec> for Source {
    type Error = String;

    fn try_from(mut s: SourceSpec) -> Result<Source, String> {
        let map = s.map.take();
        let source = Source::unmapped(s)?;
        Ok(match map {
            Some(map) => Source::Mapped {
                source: Box::new(source),
                map,
                table: Lookup::default(),
            },
            None => source,
        })
    }
}

impl Source {
    fn unmapped(mut s: SourceSpec) -> Result<Source, String> {
        if let Some(of) = s.lineage.take() {
            let of = match of.as_str() {
                "actor" => LineageOf::Actor,
                "app" => LineageOf::App,
                other => {
                    return Err(format!(
                        "lineage: \"{other}\" is not readable: expected actor or app"
                    ))
                }
            };
            if s.claim.is_some() {
                return Err("a source is either a claim or a lineage, not both".into());
            }
            return match Source::unmapped(SourceSpec {
                claim: Some(String::new()),
                ..s
            })? {
                Source::Claim { token, .. } if token.is_issued() => {
                    Err("lineage reads a presented token: a token the response issues has no issuer yet".into())
                }
                Source::Claim { token, keys, .. } => {
                    if keys.is_some() {
                        return Err("keys only applies to claim sources".into());
                    }
                    Ok(Source::Lineage { of, token })
                }
                _ => Err("lineage reads a token: name it with header, cookie, query, request_body or form (default: the bearer token)".into()),
            };
        }
        if let Some(claim) = s.claim {
            let mut locations = Vec::new();
            if let Some(h) = s.header {
                locations.push(TokenLocation::Header(h));
            }
            if let Some(c) = s.cookie {
                locations.push(TokenLocation::Cookie(c));
            }
            if let Some(q) = s.query {
                locations.push(TokenLocation::Query(q));
            }
            if let Some(p) = s.request_body {
                locations.push(TokenLocation::RequestBody(p));
            }
            if let Some(f) = s.form {
                locations.push(TokenLocation::Form(f));
            }
            if let Some(p) = s.issued_token.or(s.response_body) {
                locations.push(TokenLocation::ResponseBody(p));
            }
            if s.path.is_some()
                || s.constant.is_some()
                || s.basic_auth.is_some()
                || s.response_header.is_some()
                || s.request_cookie.is_some()
            {
                return Err("a claim is read from a token: name it with header, cookie, query, request_body, form or issued_token (default: the bearer token)".into());
            }
            if locations.len() > 1 {
                return Err("a claim source names one token location, not several".into());
            }
            return Ok(Source::Claim {
                claim,
                token: locations.pop().unwrap_or(TokenLocation::Bearer),
                keys: s.keys,
            });
        }
        if s.issued_token.is_some() {
            return Err(
                "issued_token needs a claim, e.g. { issued_token: /access_token, claim: sub }"
                    .into(),
            );
        }
        if s.keys.is_some() {
            return Err("keys only applies to claim sources".into());
        }
        if s.cookie.is_some() {
            return Err("cookie values are secrets: read a claim of a token cookie with { claim: sub, cookie: NAME }, or the cookie's fingerprint with { request_cookie: NAME }".into());
        }
        let mut found = Vec::new();
        if let Some(name) = s.response_header {
            // `query` names the parameter of the URL the header holds.
            found.push(Source::ResponseHeader {
                name,
                param: s.query.take(),
            });
        }
        if let Some(name) = s.request_cookie {
            found.push(Source::RequestCookie(name));
        }
        if let Some(v) = s.path {
            found.push(Source::Path(v));
        }
        if let Some(v) = s.query {
            found.push(Source::Query(v));
        }
        if let Some(v) = s.header {
            found.push(Source::Header(v));
        }
        if let Some(v) = s.request_body {
            found.push(Source::RequestBody(v));
        }
        if let Some(v) = s.response_body {
            found.push(Source::ResponseBody(v));
        }
        if let Some(v) = s.form {
            found.push(Source::Form(v));
        }
        if let Some(v) = s.constant {
            found.push(Source::Const(v));
        }
        if let Some(v) = s.basic_auth {
            if v != "user" {
                return Err(format!("basic_auth: \"{v}\" is not readable: only the user (client id) is, never the password"));
            }
            found.push(Source::BasicAuthUser);
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err("empty source: expected one of path, query, header, request_body, response_body, response_header, form, const, claim, basic_auth, request_cookie".into()),
            _ => Err("a source reads from one place; use a list for fallbacks".into()),
        }
    }
}

impl Source {
    /// How the source is named on events: `path:user_id`, `request_body:/username`,
    /// `claim:sub@bearer`, ...
    pub fn label(&self) -> String {
        // Built by concatenation, not `format!`: every attributed event names its sources.
        let lower = |prefix: &str, name: &str| {
            let mut s = [prefix, name].concat();
            s.make_ascii_lowercase();
            s
        };
        match self {
            Source::Path(p) => ["path:", p].concat(),
            Source::Query(q) => ["query:", q].concat(),
            Source::Header(h) => lower("header:", h),
            Source::RequestBody(p) => ["request_body:", p].concat(),
            Source::ResponseBody(p) => ["response_body:", p].concat(),
            Source::Form(f) => ["form:", f].concat(),
            Source::Const(_) => "const".to_string(),
            Source::Claim { claim, token, .. } => ["claim:", claim, "@", &token.label()].concat(),
            Source::BasicAuthUser => "basic_auth:user".to_string(),
            Source::ResponseHeader { name, param } => {
                let mut s = lower("response_header:", name);
                if let Some(p) = param {
                    s.push('?');
                    s.push_str(p);
                }
                s
            }
            Source::RequestCookie(c) => ["request_cookie:", c].concat(),
            Source::Lineage { of, token } => {
                let of = match of {
                    LineageOf::Actor => "actor",
                    LineageOf::App => "app",
                };
                ["lineage:", of, "@", &token.label()].concat()
            }
            Source::Mapped { source, map, .. } => {
                ["lookup:", map, "(", &source.label(), ")"].concat()
            }
        }
    }

    /// The source a value is first read from (the inner source of a mapped one).
    pub fn base(&self) -> &Source {
        match self {
            Source::Mapped { source, .. } => source.base(),
            other => other,
        }
    }

    /// The field name a source reads, for the secret check (`None` for constants, params and
    /// claims — a claim source reads a token's claim, never stores the token).
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Source::Query(n) | Source::Header(n) | Source::Form(n) => Some(n),
            Source::RequestBody(p) | Source::ResponseBody(p) => {
                p.rsplit('/').next().filter(|s| !s.is_empty())
            }
            Source::ResponseHeader { name, param } => Some(param.as_deref().unwrap_or(name)),
            // A fingerprint is never a secret, whatever the cookie is called.
            Source::Path(_)
            | Source::Const(_)
            | Source::Claim { .. }
            | Source::BasicAuthUser
            | Source::RequestCookie(_)
            | Source::Lineage { .. } => None,
            Source::Mapped { source, .. } => source.field_name(),
        }
    }
}

/// A status pattern in an outcome list: an exact code (`401`) or a class (`4xx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusPattern {
    Code(u16),
    Class(u8),
}

impl StatusPattern {
    pub fn parse(s: &str) -> Result<StatusPattern, String> {
        let s = s.trim();
        if let Some(d) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            if let Ok(c @ 1..=5) = d.parse::<u8>() {
                return Ok(StatusPattern::Class(c));
            }
        } else if let Ok(code @ 100..=599) = s.parse::<u16>() {
            return Ok(StatusPattern::Code(code));
        }
        Err(format!(
            "invalid status \"{s}\": expected a code 100-599 or a class like 4xx"
        ))
    }
}

/// A condition on the response body that a success must also meet, e.g. `{"ok": true}`.
#[derive(Clone, Debug, PartialEq)]
pub struct BodyCondition {
    pub pointer: String,
    /// The value the pointer must hold; when `None`, it must merely exist (and not be null).
    pub equals: Option<serde_json::Value>,
}

/// Which responses count as success, failure or error, and where the reason is read from.
#[derive(Clone, Debug, PartialEq)]
pub struct OutcomeRules {
    pub success: Vec<StatusPattern>,
    pub failure: Vec<StatusPattern>,
    pub error: Vec<StatusPattern>,
    pub success_if: Option<BodyCondition>,
    /// JSON pointer into the response body for the reason code.
    pub reason: Option<String>,
    /// When a presented token failed verification, the outcome becomes this (reason
    /// `token_<why>`), unless the exchange already ended in `error`.
    pub on_invalid_token: Option<crate::event::Outcome>,
    /// The parameter of a redirect's `Location` (query or fragment) that names an OAuth error
    /// (RFC 6749 §4.1.2.1): a 3xx carrying it is a failure with that error as its reason.
    /// Default `error`; `None` when the route turns it off.
    pub redirect_error: Option<String>,
}

impl Default for OutcomeRules {
    fn default() -> Self {
        OutcomeRules {
            success: vec![StatusPattern::Class(2), StatusPattern::Class(3)],
            failure: vec![StatusPattern::Class(4)],
            error: vec![StatusPattern::Class(5)],
            success_if: None,
            reason: None,
            on_invalid_token: None,
            redirect_error: Some("error".to_string()),
        }
    }
}

/// One `reasons` entry: when every condition given holds, the reason becomes `code` (the text
/// is kept in `details.reason_text`).
#[derive(Clone, Debug)]
pub struct ReasonRule {
    pub text: Option<TextMatch>,
    pub status: Option<StatusPattern>,
    pub code: String,
}

/// How a reason rule compares the reason text.
#[derive(Clone, Debug)]
pub enum TextMatch {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

impl ReasonRule {
    /// Whether the rule applies to this reason text and status.
    pub fn matches(&self, text: Option<&str>, status: Option<u16>) -> bool {
        let text_ok = match (&self.text, text) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(TextMatch::Exact(want)), Some(t)) => t == want,
            (Some(TextMatch::Prefix(p)), Some(t)) => t.starts_with(p.as_str()),
            (Some(TextMatch::Regex(re)), Some(t)) => re.is_match(t),
        };
        let status_ok = match (&self.status, status) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(StatusPattern::Code(c)), Some(s)) => *c == s,
            (Some(StatusPattern::Class(c)), Some(s)) => u16::from(*c) == s / 100,
        };
        text_ok && status_ok
    }
}

/// Where a route's target comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRule {
    pub kind: String,
    pub from: Vec<Source>,
    pub display: Vec<Source>,
}

/// How a route's events travel to the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Queued off the request path; never slows the response.
    #[default]
    Async,
    /// An `attempt` event is committed before the request is forwarded; when that fails within
    /// `store.sync_timeout` the client gets 503 and the upstream never sees the request.
    Sync,
}

/// One compiled route.
#[derive(Clone, Debug)]
pub struct Route {
    pub id: String,
    /// Line of the route in its config file, for messages.
    pub line: u64,
    /// Empty means any method.
    pub methods: Vec<Method>,
    /// Lowercase host without port; `None` means any host.
    pub host: Option<String>,
    pub path: PathTemplate,
    pub event: String,
    pub outcome: OutcomeRules,
    pub actor: Vec<Source>,
    pub app: Vec<Source>,
    pub target: Option<TargetRule>,
    pub capture: Vec<(String, Vec<Source>)>,
    pub delivery: Delivery,
    /// Kind given to a resolved actor.
    pub actor_kind: crate::event::ActorKind,
    /// Request-body conditions: JSON pointer (or `/field` of a form) → allowed values.
    pub body: Vec<(String, Vec<String>)>,
    /// The verified token this route requires (authenticating mode).
    pub require: Option<std::sync::Arc<crate::identity::require::Requirement>>,
    pub tokens: TokenRule,
    /// How literals compare with the request's segments (`match.path_case`).
    pub path_case: PathCase,
    /// Stable codes for reason texts: the route's `reasons`, then the file's.
    pub reasons: Vec<ReasonRule>,
    /// What ambiguous requests resembling this route get; the map's policy when `None`.
    pub path_policy: Option<PathPolicy>,
    /// Session cookies: recorded by fingerprint, bound to the actor of the event that set them.
    pub session: SessionRule,
    /// [`Route::token_reads`], worked out on first use: a built route does not change, and
    /// every request of it asks.
    pub token_reads_memo: std::sync::OnceLock<Vec<(TokenLocation, Option<String>)>>,
}

/// A route's browser session cookies (`session: { cookies: [...] }`): a `Set-Cookie` of one
/// on a successful event binds its fingerprint to that event's actor and app; a later request
/// presenting it inherits them (source `session:<cookie>`) until a route with `ends` succeeds
/// with it, or it expires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionRule {
    pub cookies: Vec<String>,
    /// A success of this route ends the bindings of the session cookies it was sent (logout).
    pub ends: bool,
}

/// Which tokens of an exchange are recorded (by fingerprint and claims).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRule {
    /// Where the request carries tokens (refresh, revoke, logout): body pointers or form fields.
    pub presented: Vec<TokenLocation>,
    /// Where the response carries issued tokens.
    pub issued: Vec<TokenLocation>,
    /// Record the `Authorization: Bearer` token too (default true).
    pub bearer: bool,
    /// Key set to verify them with; the default key set when `None`.
    pub keys: Option<String>,
}

impl Route {
    /// Every source of the route: actor, app, target (and its display) and captures.
    fn sources(&self) -> impl Iterator<Item = &Source> {
        let target = self
            .target
            .iter()
            .flat_map(|t| t.from.iter().chain(&t.display));
        let captures = self.capture.iter().flat_map(|(_, s)| s.iter());
        self.actor
            .iter()
            .chain(&self.app)
            .chain(target)
            .chain(captures)
    }

    /// The cookies this route records by fingerprint (`request_cookie` sources).
    pub fn cookie_reads(&self) -> impl Iterator<Item = &str> {
        self.sources().filter_map(|s| match s.base() {
            Source::RequestCookie(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Every token location this route reads: recorded tokens and claim sources, with the key
    /// set each is verified with.
    pub fn token_reads(&self) -> &[(TokenLocation, Option<String>)] {
        self.token_reads_memo
            .get_or_init(|| self.find_token_reads())
    }

    fn find_token_reads(&self) -> Vec<(TokenLocation, Option<String>)> {
        let mut out: Vec<(TokenLocation, Option<String>)> = Vec::new();
        let mut add = |loc: &TokenLocation, keys: &Option<String>| {
            let keys = loc.keys_for(keys);
            if !out.iter().any(|(l, k)| l == loc && *k == keys) {
                out.push((loc.clone(), keys));
            }
        };
        if self.tokens.bearer {
            add(&TokenLocation::Bearer, &self.tokens.keys);
        }
        if let Some(r) = &self.require {
            add(&r.token, &r.keys);
        }
        for l in self.tokens.presented.iter().chain(&self.tokens.issued) {
            add(l, &self.tokens.keys);
        }
        for s in self.sources() {
            match s.base() {
                Source::Claim { token, keys, .. } => add(token, keys),
                Source::Lineage { token, .. } => add(token, &self.tokens.keys),
                _ => {}
            }
        }
        out
    }

    /// True when every request this route's successor `other` matches is matched here first.
    pub fn shadows(&self, other: &Route) -> bool {
        // A route with body conditions takes only some of its requests.
        if !self.body.is_empty() && self.body != other.body {
            return false;
        }
        let methods = self.methods.is_empty()
            || (!other.methods.is_empty()
                && other.methods.iter().all(|m| self.methods.contains(m)));
        let host = match (&self.host, &other.host) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        methods && host && self.path.covers(&other.path)
    }
}

/// The compiled route map, in file order: the first matching route wins.
#[derive(Clone, Debug, Default)]
pub struct RouteMap {
    /// Shared, so an exchange holds its route for as long as it lasts.
    pub routes: Vec<std::sync::Arc<Route>>,
    /// `path_policy:` of the file: what ambiguous requests get unless their route says.
    pub path_policy: PathPolicy,
}

impl RouteMap {
    /// The policy for requests that resemble `route`.
    pub fn policy_for(&self, route: &Route) -> PathPolicy {
        route.path_policy.unwrap_or(self.path_policy)
    }
}

/// A request's route and the values of its path parameters.
#[derive(Clone, Debug)]
pub struct Match<'a> {
    pub route: &'a Route,
    /// Position of the route in the map.
    pub index: usize,
    pub params: Vec<(String, String)>,
}

/// The parts of a request head the route map looks at.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// Host header or URI authority, possibly with a port.
    pub host: Option<&'a str>,
    /// The request path (a query string, if present, is ignored).
    pub path: &'a str,
}

impl<'a> RequestHead<'a> {
    /// The head of a parsed request. The host is the URI's authority when the request has one
    /// (absolute form, HTTP/2 `:authority`: RFC 9112 §3.2.2 has it win over `Host`), else `Host`.
    pub fn from_parts(parts: &'a http::request::Parts) -> RequestHead<'a> {
        let host = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        RequestHead {
            method: &parts.method,
            host,
            path: parts.uri.path(),
        }
    }
}

/// Lowercase host without port or trailing dot (`Auth.Example.com.:8443` → `auth.example.com`).
pub fn host_only(host: &str) -> String {
    host_part(host).to_ascii_lowercase()
}

/// The host of a `Host` value without its port and without the trailing dot of a fully
/// qualified name (`admin.example.test.` names the same host), as written (not lowercased).
fn host_part(host: &str) -> &str {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    h.trim_end_matches('.')
}

/// Why a route did or did not match, for `explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Matched(Vec<(String, String)>),
    Method(String),
    Host(String),
    Path(String),
    /// Method, host and path match; a body field does not (or no body was given).
    Body(String),
}

/// The head of a request body, for routes with `match.body` conditions.
#[derive(Clone, Copy, Debug)]
pub struct BodyView<'a> {
    pub headers: &'a http::HeaderMap,
    pub bytes: &'a [u8],
    pub truncated: bool,
}

/// Check the route's body conditions; `None` body means "not read yet".
fn check_body(route: &Route, body: Option<&BodyView<'_>>) -> Result<(), String> {
    if route.body.is_empty() {
        return Ok(());
    }
    let Some(b) = body else {
        let want: Vec<String> = route
            .body
            .iter()
            .map(|(ptr, allowed)| format!("{ptr} = {}", allowed.join("|")))
            .collect();
        return Err(format!("needs a body with {}", want.join(", ")));
    };
    for (ptr, allowed) in &route.body {
        let got = extract::body_field(b.headers, b.bytes, b.truncated, ptr);
        match got {
            Some(v) if allowed.contains(&v) => {}
            Some(v) => return Err(format!("body {ptr} is \"{v}\", not {}", allowed.join("|"))),
            None => return Err(format!("body has no {ptr}")),
        }
    }
    Ok(())
}

fn check(route: &Route, head: &RequestHead<'_>, segments: &[String]) -> Verdict {
    if !route.methods.is_empty() && !route.methods.contains(head.method) {
        let want: Vec<&str> = route.methods.iter().map(Method::as_str).collect();
        return Verdict::Method(format!(
            "method {} is not {}",
            head.method,
            want.join(" or ")
        ));
    }
    if let Some(want) = &route.host {
        let got = head.host.map(host_only);
        if got.as_deref() != Some(want.as_str()) {
            return Verdict::Host(format!(
                "host {} is not {want}",
                got.as_deref().unwrap_or("(none)")
            ));
        }
    }
    let explained = if route.path_case == PathCase::Insensitive {
        route
            .path
            .matches_with(segments, true)
            .ok_or_else(|| "path differs from the template even ignoring case".to_string())
    } else {
        route.path.explain(segments)
    };
    match explained {
        Ok(params) => Verdict::Matched(params),
        Err(why) => Verdict::Path(why),
    }
}

/// [`check`] for the request path: the same rules, but no reasons, so a route that does not
/// match costs no allocation (every request walks the map).
fn check_fast<S: AsRef<str>>(
    route: &Route,
    head: &RequestHead<'_>,
    host: Option<&str>,
    segments: &[S],
) -> Option<Vec<(String, String)>> {
    if !interpret::head_matches(route, head.method, host) {
        return None;
    }
    route
        .path
        .matches_with(segments, route.path_case == PathCase::Insensitive)
}

/// The first route that matches the request head, with its path parameters. Body conditions
/// are not checked: when the returned route has any, read the body's head and decide with
/// [`classify_body`].
pub fn classify<'m>(map: &'m RouteMap, head: &RequestHead<'_>) -> Option<Match<'m>> {
    let segments = segments(head.path);
    let host = head.host.map(host_part);
    interpret::first_match(map, head.method, host, &segments, false)
}

/// Every route whose method, host and path match the head, body conditions aside, in map order
/// (the first is the most specific): the routes a request with an unreadable body may be.
pub fn head_candidates<'m>(map: &'m RouteMap, head: &RequestHead<'_>) -> Vec<Match<'m>> {
    let segments = segments(head.path);
    let host = head.host.map(host_part);
    map.routes
        .iter()
        .enumerate()
        .filter_map(|(index, route)| {
            check_fast(route, head, host, &segments).map(|params| Match {
                route,
                index,
                params,
            })
        })
        .collect()
}

/// The first route that matches the request head and its body conditions.
pub fn classify_body<'m>(
    map: &'m RouteMap,
    head: &RequestHead<'_>,
    body: &BodyView<'_>,
) -> Option<Match<'m>> {
    let segments = segments(head.path);
    let host = head.host.map(host_part);
    map.routes.iter().enumerate().find_map(|(index, route)| {
        check_fast(route, head, host, &segments)
            .filter(|_| check_body(route, Some(body)).is_ok())
            .map(|params| Match {
                route,
                index,
                params,
            })
    })
}

/// Every route up to and including the first match, each with its verdict. Without a body,
/// routes with body conditions are reported as needing one and the walk goes on.
pub fn explain<'m>(
    map: &'m RouteMap,
    head: &RequestHead<'_>,
    body: Option<&BodyView<'_>>,
) -> Vec<(&'m Route, Verdict)> {
    let segments = normalize(head.path);
    let mut out = Vec::new();
    for route in map.routes.iter().map(std::sync::Arc::as_ref) {
        let v = match check(route, head, &segments) {
            Verdict::Matched(params) => match check_body(route, body) {
                Ok(()) => Verdict::Matched(params),
                Err(why) => Verdict::Body(why),
            },
            other => other,
        };
        let done = matches!(v, Verdict::Matched(_));
        out.push((route, v));
        if done {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests;
