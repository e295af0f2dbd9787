//! Applying a matched route's rules to one exchange: resolve actor, app, target and captured
//! details from the request and response facts, decide the outcome, and build the
//! [`AuditEvent`]. Pure: the proxy gathers the facts, this module only reads them.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use base64::Engine;

use super::redact::{self, Redactor};
use super::{Match, OutcomeRules, Source, StatusPattern, TokenLocation};
use crate::event::{
    Actor, Attributed, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target, TokenRef,
    TokenRole,
};
use crate::identity::{self, CheckedToken};

/// A token found in the exchange, already inspected (the token itself is not kept).
#[derive(Clone, Debug)]
pub struct SeenToken {
    pub location: TokenLocation,
    /// The key set it was checked with.
    pub keys: Option<String>,
    pub checked: CheckedToken,
}

/// What the proxy saw of the request (the body only up to the inspect limit).
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub body_truncated: bool,
    /// `body` as JSON or form, parsed on first use and then shared by every reader (token
    /// locations, sources, captures) for the rest of the exchange.
    pub parsed: &'a ParsedBody,
}

impl RequestFacts<'_> {
    fn parsed_body(&self) -> &Body {
        self.parsed
            .get(Some(self.headers), self.body, self.body_truncated)
    }
}

/// A body parsed at most once, on first use. Holds field values of the body: never printed.
#[derive(Default)]
pub struct ParsedBody(std::sync::OnceLock<Body>);

impl ParsedBody {
    fn get(&self, headers: Option<&HeaderMap>, bytes: &[u8], truncated: bool) -> &Body {
        self.0
            .get_or_init(|| Body::parse(headers, bytes, truncated))
    }
}

impl std::fmt::Debug for ParsedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedBody(..)")
    }
}

/// Why no (complete) response came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No response came back: the connection was refused, failed (TLS handshake, connect
    /// timeout), or closed or reset before a response head was complete.
    UpstreamUnreachable,
    /// The upstream answered, but not with HTTP: an unparsable or over-long response head, or
    /// a body whose framing is broken (an invalid chunk).
    UpstreamBadResponse,
    /// The upstream did not answer within `upstream_response`.
    UpstreamTimeout,
    /// The response body broke off midway (reset, closed short of its length, stalled).
    UpstreamAborted,
    /// The client went away before the response was delivered.
    ClientAborted,
    /// The client sent its body too slowly.
    ClientTimeout,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::UpstreamUnreachable => "upstream_unreachable",
            Failure::UpstreamBadResponse => "upstream_bad_response",
            Failure::UpstreamTimeout => "upstream_timeout",
            Failure::UpstreamAborted => "upstream_aborted",
            Failure::ClientAborted => "client_aborted",
            Failure::ClientTimeout => "client_timeout",
        }
    }
}

/// What the proxy saw of the response.
#[derive(Clone, Copy, Debug)]
pub struct ResponseFacts<'a> {
    pub status: Option<StatusCode>,
    pub headers: Option<&'a HeaderMap>,
    pub body: &'a [u8],
    pub body_truncated: bool,
    pub failure: Option<Failure>,
    /// `body`, parsed on first use (see [`RequestFacts::parsed`]).
    pub parsed: &'a ParsedBody,
}

impl ResponseFacts<'_> {
    fn parsed_body(&self) -> &Body {
        self.parsed
            .get(self.headers, self.body, self.body_truncated)
    }
}

/// Event fields that come from the proxy rather than the route.
#[derive(Clone, Debug)]
pub struct EventBase {
    pub id: Uuid,
    pub time: OffsetDateTime,
    pub request_id: String,
    pub client: ClientInfo,
    pub duration_ms: u64,
}

/// A request or response body read as JSON or as a form.
enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
    None,
}

impl Body {
    fn parse(headers: Option<&HeaderMap>, bytes: &[u8], truncated: bool) -> Body {
        if bytes.is_empty() || truncated {
            return Body::None;
        }
        let ct = headers
            .and_then(|h| h.get(http::header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.starts_with("application/x-www-form-urlencoded") {
            return Body::Form(form_urlencoded::parse(bytes).into_owned().collect());
        }
        let looks_json = ct.contains("json") || (ct.is_empty() && bytes.first() == Some(&b'{'));
        match looks_json.then(|| serde_json::from_slice(bytes)) {
            Some(Ok(v)) => Body::Json(v),
            _ => Body::None,
        }
    }

    fn pointer(&self, ptr: &str) -> Option<Value> {
        match self {
            Body::Json(v) => v.pointer(ptr).cloned(),
            Body::Form(fields) => {
                let name = ptr.strip_prefix('/')?;
                form_field(fields, name).map(Value::String)
            }
            Body::None => None,
        }
    }
}

fn form_field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// A request body field as text (JSON pointer, or `/field` of a form), for route conditions.
pub fn body_field(headers: &HeaderMap, bytes: &[u8], truncated: bool, ptr: &str) -> Option<String> {
    match Body::parse(Some(headers), bytes, truncated).pointer(ptr)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The raw token at a request-side location (`None` for response locations).
pub fn request_token(loc: &TokenLocation, req: &RequestFacts<'_>) -> Option<String> {
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let strip_bearer = |v: &str| {
        let v = v.trim();
        match v.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("bearer ") => v[7..].trim().to_string(),
            _ => v.to_string(),
        }
    };
    let token = match loc {
        TokenLocation::Bearer => {
            let v = header("authorization")?;
            let p = v.get(..7)?;
            p.eq_ignore_ascii_case("bearer ")
                .then(|| v[7..].trim().to_string())?
        }
        TokenLocation::Header(name) => strip_bearer(header(name)?),
        TokenLocation::Cookie(name) => req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim_matches('"').to_string())?,
        TokenLocation::Query(name) => form_urlencoded::parse(req.query?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())?,
        TokenLocation::RequestBody(ptr) => match req.parsed_body().pointer(ptr)? {
            Value::String(s) => s,
            _ => return None,
        },
        TokenLocation::Form(name) => match req.parsed_body() {
            Body::Form(fields) => form_field(fields, name)?,
            _ => return None,
        },
        TokenLocation::ResponseBody(_) => return None,
    };
    (!token.is_empty()).then_some(token)
}

/// The raw token at a response-body pointer.
pub fn response_token(ptr: &str, resp: &ResponseFacts<'_>) -> Option<String> {
    match resp.parsed_body().pointer(ptr)? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The user (client id) of `Authorization: Basic`; the password is never decoded into a string.
fn basic_auth_user(headers: &HeaderMap) -> Option<String> {
    let v = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let p = v.get(..6)?;
    if !p.eq_ignore_ascii_case("basic ") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v[6..].trim())
        .ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    // OAuth clients form-encode the id inside Basic (RFC 6749 §2.3.1).
    let user = form_urlencoded::parse(format!("u={user}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or(user);
    (!user.is_empty()).then_some(user)
}

/// Everything a source may read; each body is parsed once, when a source first reads it.
struct Ctx<'a> {
    m: &'a Match<'a>,
    req: &'a RequestFacts<'a>,
    resp: &'a ResponseFacts<'a>,
    redactor: &'a Redactor,
    tokens: &'a [SeenToken],
}

/// A resolved value: the text, the source label, whether it is proven.
type Resolved = (String, String, bool);

impl Ctx<'_> {
    fn raw(&self, source: &Source) -> Option<Value> {
        match source {
            Source::Path(name) => self
                .m
                .params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| Value::String(v.clone())),
            Source::Query(name) => self.req.query.and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| Value::String(v.into_owned()))
            }),
            Source::Header(name) => self
                .req
                .headers
                .get(name.as_str())
                .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())),
            Source::RequestBody(ptr) => self.req.parsed_body().pointer(ptr),
            Source::ResponseBody(ptr) => self.resp.parsed_body().pointer(ptr),
            Source::Form(name) => match self.req.parsed_body() {
                Body::Form(fields) => form_field(fields, name).map(Value::String),
                _ => None,
            },
            Source::Const(v) => Some(Value::String(v.clone())),
            Source::BasicAuthUser => basic_auth_user(self.req.headers).map(Value::String),
            // Claims are read through `claim`, which knows whether the token verified.
            Source::Claim { .. } => self.claim(source).map(|(v, _)| Value::String(v)),
        }
    }

    /// A claim of a verified token; an unverified or invalid token yields nothing.
    fn claim(&self, source: &Source) -> Option<(String, bool)> {
        let Source::Claim { claim, token, keys } = source else {
            return None;
        };
        let seen = self
            .tokens
            .iter()
            .find(|t| &t.location == token && &t.keys == keys)?;
        if !seen.checked.verified {
            return None;
        }
        seen.checked.claim_str(claim).map(|v| (v, true))
    }

    /// The first source that yields a non-empty scalar, as text, with its label.
    fn first_text(&self, sources: &[Source]) -> Option<Resolved> {
        sources.iter().find_map(|s| self.text(s))
    }

    /// Every source that yields a value, in order.
    fn all_texts(&self, sources: &[Source]) -> Vec<Resolved> {
        sources.iter().filter_map(|s| self.text(s)).collect()
    }

    fn text(&self, s: &Source) -> Option<Resolved> {
        {
            let verified = matches!(s, Source::Claim { .. });
            let text = match self.raw(s)? {
                Value::String(v) => v,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            let text = text.trim();
            if text.is_empty() || redact::looks_like_jwt(text) {
                return None;
            }
            Some((
                redact::truncate(text, redact::MAX_VALUE_CHARS),
                s.label(),
                verified,
            ))
        }
    }

    /// The first source that yields any value, scrubbed of secrets.
    fn first_value(&self, sources: &[Source]) -> Option<Value> {
        sources
            .iter()
            .find_map(|s| self.raw(s).filter(|v| !v.is_null()))
            .and_then(|v| self.redactor.scrub(v))
    }
}

/// Decide the outcome from the status (or its absence) and the body condition.
pub fn decide_outcome(
    rules: &OutcomeRules,
    status: Option<StatusCode>,
    body_ok: impl FnOnce() -> bool,
) -> Outcome {
    let Some(status) = status else {
        return Outcome::Error;
    };
    let code = status.as_u16();
    let lists = [
        (Outcome::Success, &rules.success),
        (Outcome::Failure, &rules.failure),
        (Outcome::Error, &rules.error),
    ];
    // An exact code beats a class: `success: [2xx]` with `failure: [202]` makes 202 a failure.
    let exact = lists
        .iter()
        .find(|(_, l)| l.contains(&StatusPattern::Code(code)));
    let class = || {
        lists
            .iter()
            .find(|(_, l)| l.contains(&StatusPattern::Class((code / 100) as u8)))
    };
    match exact.or_else(class).map(|(o, _)| *o) {
        Some(Outcome::Success) if rules.success_if.is_some() && !body_ok() => Outcome::Failure,
        Some(o) => o,
        None => Outcome::Unknown,
    }
}

/// Build the event for a matched exchange.
pub fn build_event(
    m: &Match<'_>,
    redactor: &Redactor,
    req: &RequestFacts<'_>,
    resp: &ResponseFacts<'_>,
    tokens: &[SeenToken],
    base: EventBase,
) -> AuditEvent {
    let route = m.route;
    let ctx = Ctx {
        m,
        req,
        resp,
        redactor,
        tokens,
    };

    let status = if resp
        .failure
        .is_some_and(|f| !matches!(f, Failure::ClientAborted | Failure::ClientTimeout))
    {
        None
    } else {
        resp.status
    };
    let outcome = decide_outcome(&route.outcome, status, || {
        route.outcome.success_if.as_ref().is_some_and(|c| {
            match (resp.parsed_body().pointer(&c.pointer), &c.equals) {
                (Some(v), Some(want)) => &v == want,
                (Some(v), None) => !v.is_null(),
                (None, _) => false,
            }
        })
    });
    let mut reason = reason(&ctx, &route.outcome, outcome, resp);
    let mut outcome = outcome;
    // A presented token that failed verification decides the outcome when the route says so.
    if let Some(forced) = route.outcome.on_invalid_token {
        let invalid = tokens
            .iter()
            .filter(|t| !t.location.is_issued())
            .find_map(|t| t.checked.invalid);
        if let (Some(why), false) = (invalid, outcome == Outcome::Error) {
            outcome = forced;
            reason = Some(format!("token_{why}"));
        }
    }

    let actor = match ctx.first_text(&route.actor) {
        Some((id, source, verified)) => Actor {
            id: Some(id),
            kind: route.actor_kind,
            display: None,
            verified,
            source: Some(source),
        },
        None => Actor::anonymous(),
    };
    let (app, app_conflict) = resolve_app(ctx.all_texts(&route.app));
    let target = route.target.as_ref().and_then(|t| {
        ctx.first_text(&t.from).map(|(id, source, _)| Target {
            kind: t.kind.clone(),
            id,
            display: ctx.first_text(&t.display).map(|(d, _, _)| d),
            source,
        })
    });
    let mut details = Map::new();
    for (name, sources) in &route.capture {
        if let Some(v) = ctx.first_value(sources) {
            details.insert(name.clone(), v);
        }
    }

    AuditEvent {
        id: base.id,
        seq: None,
        time: base.time,
        event_type: route.event.clone(),
        stage: Stage::Completed,
        outcome,
        reason,
        app,
        app_conflict,
        actor,
        target,
        tokens: token_refs(tokens),
        source: base.client,
        http: HttpInfo {
            method: req.method.to_string(),
            path: stored_path(m, redactor, req.path),
            route: route.id.clone(),
            status: resp.status.map(|s| s.as_u16()),
            duration_ms: base.duration_ms,
            request_id: base.request_id,
            body_truncated: req.body_truncated || resp.body_truncated,
        },
        details,
        chain: None,
    }
}

/// The app: the first verified value, else the first value; when sources disagree, every
/// distinct value is kept as the conflict.
fn resolve_app(values: Vec<Resolved>) -> (Option<Attributed>, Option<Vec<Attributed>>) {
    let chosen = values
        .iter()
        .find(|(_, _, verified)| *verified)
        .or(values.first())
        .map(|(value, source, verified)| Attributed {
            value: value.clone(),
            source: source.clone(),
            verified: *verified,
        });
    let Some(app) = chosen else {
        return (None, None);
    };
    if values.iter().all(|(v, _, _)| *v == app.value) {
        return (Some(app), None);
    }
    let mut conflict: Vec<Attributed> = Vec::new();
    for (value, source, verified) in values {
        if !conflict.iter().any(|c| c.value == value) {
            conflict.push(Attributed {
                value,
                source,
                verified,
            });
        }
    }
    (Some(app), Some(conflict))
}

/// The tokens of the exchange as recorded: by fingerprint, once each.
fn token_refs(tokens: &[SeenToken]) -> Vec<TokenRef> {
    let mut out: Vec<TokenRef> = Vec::new();
    for t in tokens {
        let c = &t.checked;
        if c.fingerprint.is_empty() || out.iter().any(|r| r.fingerprint == c.fingerprint) {
            continue;
        }
        let label = t.location.label();
        out.push(TokenRef {
            role: if t.location.is_issued() {
                TokenRole::Issued
            } else {
                TokenRole::Presented
            },
            kind: identity::token_kind(&label, c),
            source: label,
            fingerprint: c.fingerprint.clone(),
            jti: c.claim_str("jti").map(|v| redact::truncate(&v, 128)),
            sub: c
                .claim_str("sub")
                .map(|v| redact::truncate(&v, redact::MAX_VALUE_CHARS)),
            iat: c.claim_i64("iat"),
            exp: c.claim_i64("exp"),
            verified: c.verified,
            invalid: c.invalid.map(|i| i.as_str().to_string()),
        });
    }
    out
}

fn reason(
    ctx: &Ctx<'_>,
    rules: &OutcomeRules,
    outcome: Outcome,
    resp: &ResponseFacts<'_>,
) -> Option<String> {
    if let Some(f) = resp.failure {
        return Some(f.reason().to_string());
    }
    if outcome == Outcome::Success {
        return None;
    }
    let from_body =
        rules
            .reason
            .as_deref()
            .and_then(|ptr| match ctx.resp.parsed_body().pointer(ptr)? {
                Value::String(s) if !s.trim().is_empty() => Some(redact::truncate(s.trim(), 128)),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
    from_body.or_else(|| resp.status.map(|s| format!("http_{}", s.as_u16())))
}

/// The concrete path as stored: normalised, with the values of secret-named parameters
/// (`/verify/{code}`) replaced by their placeholder, and cut to a sane length.
fn stored_path(m: &Match<'_>, redactor: &Redactor, raw: &str) -> String {
    let mut segments = super::segments(raw);
    for (name, value) in &m.params {
        if redactor.is_secret(name) {
            for seg in segments.iter_mut().filter(|s| *s == value) {
                *seg = format!("{{{name}}}").into();
            }
        }
    }
    let mut path = String::with_capacity(raw.len() + 1);
    for seg in &segments {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() {
        path.push('/');
    }
    redact::truncate_owned(path, 512)
}
