//! Applying a matched route's rules to one exchange: resolve actor, app, target and captured
//! details from the request and response facts, decide the outcome, and build the
//! [`AuditEvent`]. Pure: the proxy gathers the facts, this module only reads them.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use base64::Engine;

use super::redact::{self, Redactor};
use super::{LineageOf, Match, OutcomeRules, Source, StatusPattern, TokenLocation};
use crate::event::{
    Actor, Attributed, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target, TokenRef,
    TokenRole,
};
use crate::identity::lineage::Lineage;
use crate::identity::{self, CheckedToken};

/// A token found in the exchange, already inspected (the token itself is not kept).
#[derive(Clone, Debug)]
pub struct SeenToken {
    pub location: TokenLocation,
    /// The key set it was checked with.
    pub keys: Option<String>,
    pub checked: CheckedToken,
    /// A session cookie of the route's `session.cookies` (recorded with kind `session`).
    pub session: bool,
    /// When it stops being valid, if the exchange said (a `Set-Cookie`'s `Max-Age` or
    /// `Expires`), for tokens whose claims do not.
    pub expires: Option<i64>,
    /// Who it was issued to, when it was looked up (presented tokens that did not verify, and
    /// session cookies).
    pub lineage: Option<Lineage>,
}

impl SeenToken {
    /// A token found at `location`, not yet looked up.
    pub fn new(location: TokenLocation, keys: Option<String>, checked: CheckedToken) -> SeenToken {
        SeenToken {
            location,
            keys,
            checked,
            session: false,
            expires: None,
            lineage: None,
        }
    }

    /// Whether its issuer is worth looking up: presented, fingerprinted, and not already
    /// proven by a verified signature (a session cookie always).
    pub fn wants_lineage(&self) -> bool {
        !self.location.is_issued()
            && !self.checked.fingerprint.is_empty()
            && (self.session || !self.checked.verified)
    }
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
    /// Keyed fingerprints of the cookies the route reads (`request_cookie`), by cookie name:
    /// the proxy computes them; the cookie values never reach this module.
    pub cookies: &'a [(String, String)],
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
            Body::Json(v) => json_pointer(v, ptr).cloned(),
            Body::Form(fields) => {
                let name = ptr.strip_prefix('/')?;
                form_field(fields, name).map(Value::String)
            }
            Body::None => None,
        }
    }
}

/// What `value.pointer(ptr)` finds (RFC 6901), without serde_json's two new strings for every
/// token: a token is unescaped (`~1` → `/`, `~0` → `~`) only when it holds a `~`. Every mapped
/// request reads its routes' fields this way, several times.
pub(crate) fn json_pointer<'a>(value: &'a Value, ptr: &str) -> Option<&'a Value> {
    if ptr.is_empty() {
        return Some(value);
    }
    let mut target = value;
    for token in ptr.strip_prefix('/')?.split('/') {
        let unescaped;
        let token = if token.contains('~') {
            unescaped = token.replace("~1", "/").replace("~0", "~");
            unescaped.as_str()
        } else {
            token
        };
        target = match target {
            Value::Object(map) => map.get(token)?,
            Value::Array(list) => list.get(array_index(token)?)?,
            _ => return None,
        };
    }
    Some(target)
}

/// An array index token as serde_json reads one: digits, no sign, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
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
        TokenLocation::Cookie(name) => request_cookie(req.headers, name)?.to_string(),
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
        TokenLocation::ResponseBody(_)
        | TokenLocation::Redirect(_)
        | TokenLocation::SetCookie(_) => return None,
    };
    (!token.is_empty()).then_some(token)
}

/// The value of parameter `param` of the URL `url`: from its query, else from its fragment (an
/// implicit-flow redirect carries its parameters there).
pub fn url_param(url: &str, param: &str) -> Option<String> {
    let (_, query, fragment) = redact::url_parts(url);
    query.into_iter().chain(fragment).find_map(|part| {
        form_urlencoded::parse(part.as_bytes())
            .find(|(k, _)| k == param)
            .map(|(_, v)| v.into_owned())
    })
}

/// The cookie `name` of the request's `Cookie` headers (the first one sent).
pub fn request_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// The keyed fingerprints of the cookies `route` records (`request_cookie`), for
/// [`RequestFacts::cookies`]; none without a fingerprinter.
pub fn cookie_prints(
    route: &super::Route,
    headers: &HeaderMap,
    fingerprinter: Option<&identity::Fingerprinter>,
) -> Vec<(String, String)> {
    let Some(f) = fingerprinter else {
        return Vec::new();
    };
    route
        .cookie_reads()
        .filter_map(|name| {
            let value = request_cookie(headers, name)?;
            Some((name.to_string(), f.fingerprint(value)))
        })
        .collect()
}

/// The raw token at a response-body pointer.
pub fn response_token(ptr: &str, resp: &ResponseFacts<'_>) -> Option<String> {
    match resp.parsed_body().pointer(ptr)? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The raw token the response issued at a body or redirect location, with its expiry when the
/// response states one (`expires_in`); `None` for the rest (session cookies are read with
/// [`set_cookie`]).
pub fn issued_token(
    loc: &TokenLocation,
    resp: &ResponseFacts<'_>,
) -> Option<(String, Option<i64>)> {
    match loc {
        TokenLocation::ResponseBody(ptr) => {
            let token = response_token(ptr, resp)?;
            // RFC 6749 §5.1: `expires_in` beside `access_token` is the access token's lifetime,
            // which an opaque token cannot say itself.
            let expires = ptr
                .strip_suffix("/access_token")
                .and_then(|parent| resp.parsed_body().pointer(&format!("{parent}/expires_in")))
                .and_then(|v| v.as_i64())
                .map(|s| OffsetDateTime::now_utc().unix_timestamp().saturating_add(s));
            Some((token, expires))
        }
        TokenLocation::Redirect(param) => {
            if !resp.status?.is_redirection() {
                return None;
            }
            let location = resp.headers?.get(http::header::LOCATION)?.to_str().ok()?;
            url_param(location, param)
                .filter(|v| !v.is_empty())
                .map(|t| (t, None))
        }
        _ => None,
    }
}

/// The value a response sets for cookie `name` and when it expires (Unix seconds). A cookie
/// being cleared (empty, `Max-Age=0` or an `Expires` in the past) is no issuance.
pub fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    now: OffsetDateTime,
) -> Option<(String, Option<i64>)> {
    for v in headers.get_all(http::header::SET_COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        let mut parts = v.split(';');
        let Some((k, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
            continue;
        };
        if k.trim() != name {
            continue;
        }
        let value = value.trim().trim_matches('"');
        let mut expires: Option<i64> = None;
        let mut max_age = None;
        for attr in parts {
            let (k, v) = attr.trim().split_once('=').unwrap_or((attr.trim(), ""));
            if k.eq_ignore_ascii_case("max-age") {
                max_age = v.trim().parse::<i64>().ok();
            } else if k.eq_ignore_ascii_case("expires") {
                expires = httpdate::parse_http_date(v.trim()).ok().map(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64)
                });
            }
        }
        // Max-Age wins over Expires (RFC 6265 §5.3).
        let expires = match max_age {
            Some(s) => Some(now.unix_timestamp().saturating_add(s)),
            None => expires,
        };
        // A cookie cleared here may be set again by a later header (a new path or value).
        if value.is_empty() || expires.is_some_and(|e| e <= now.unix_timestamp()) {
            continue;
        }
        return Some((value.to_string(), expires));
    }
    None
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

/// A resolved value and where it came from.
#[derive(Clone, Debug)]
struct Resolved {
    value: String,
    /// The source label (`claim:sub@bearer`, `claimed:user_id@bearer`, `lookup:apps(...)`).
    source: String,
    /// A claim of a token that verified (possibly mapped through a lookup).
    verified: bool,
    /// A claim of a token that did not verify: what it says, never proof.
    claimed: bool,
    /// A `const` source: a fallback, never a competing value.
    constant: bool,
}

impl Resolved {
    fn attributed(self) -> Attributed {
        Attributed {
            value: self.value,
            source: self.source,
            verified: self.verified,
        }
    }
}

/// A scalar as text.
fn scalar_text(v: Value) -> Option<String> {
    match v {
        Value::String(v) => Some(v),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value fit for actor, app or target: trimmed, non-empty, not a token, cut to size.
fn clean(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || redact::looks_like_jwt(text) {
        return None;
    }
    Some(redact::truncate(text, redact::MAX_VALUE_CHARS))
}

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
            Source::ResponseHeader { name, param } => {
                let v = self.resp.headers?.get(name.as_str())?;
                let v = String::from_utf8_lossy(v.as_bytes());
                match param {
                    Some(p) => url_param(&v, p).map(Value::String),
                    None => Some(Value::String(self.redactor.mask_url(&v))),
                }
            }
            Source::RequestCookie(name) => self
                .req
                .cookies
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, fp)| Value::String(fp.clone())),
            Source::Lineage { .. } => self.text(source).map(|r| Value::String(r.value)),
            // Claims are read through `claim`, which knows whether the token verified.
            Source::Claim { claim, .. } => self
                .seen(source)
                .filter(|t| t.checked.verified)
                .and_then(|t| t.checked.claim_str(claim))
                .map(Value::String),
            Source::Mapped { source, table, .. } => {
                let key = scalar_text(self.raw(source)?)?;
                table.get(key.trim()).map(|v| Value::String(v.to_string()))
            }
        }
    }

    /// The token a claim source reads (checked with the key set the route reads it with).
    fn seen(&self, source: &Source) -> Option<&SeenToken> {
        let Source::Claim { token, keys, .. } = source else {
            return None;
        };
        let keys = token.keys_for(keys);
        self.tokens
            .iter()
            .find(|t| &t.location == token && t.keys == keys)
    }

    /// Every source that yields a value, in order; a claim of a token that did not verify
    /// yields its claimed value, marked so.
    fn all_texts(&self, sources: &[Source]) -> Vec<Resolved> {
        sources.iter().filter_map(|s| self.text(s)).collect()
    }

    fn text(&self, s: &Source) -> Option<Resolved> {
        match s {
            Source::Mapped { source, map, table } => {
                let inner = self.text(source)?;
                let value = clean(table.get(&inner.value)?)?;
                Some(Resolved {
                    value,
                    source: format!("lookup:{map}({})", inner.source),
                    ..inner
                })
            }
            Source::Claim { claim, token, .. } => {
                let seen = self.seen(s)?;
                let value = clean(&seen.checked.claim_str(claim)?)?;
                if seen.checked.verified {
                    Some(Resolved {
                        value,
                        source: s.label(),
                        verified: true,
                        claimed: false,
                        constant: false,
                    })
                } else {
                    Some(Resolved {
                        value,
                        source: claimed_label(claim, token),
                        verified: false,
                        claimed: true,
                        constant: false,
                    })
                }
            }
            Source::Lineage { of, token } => {
                let t = self.tokens.iter().find(|t| &t.location == token)?;
                self.inherited(t, *of)
            }
            other => Some(Resolved {
                value: clean(&scalar_text(self.raw(other)?)?)?,
                source: other.label(),
                verified: false,
                claimed: false,
                constant: matches!(other, Source::Const(_)),
            }),
        }
    }

    /// The first source that yields any value, scrubbed of secrets.
    fn first_value(&self, sources: &[Source]) -> Option<Value> {
        sources
            .iter()
            .find_map(|s| self.raw(s).filter(|v| !v.is_null()))
            .and_then(|v| self.redactor.scrub(v))
    }

    /// The token the route's requirement checks, when it is a JWT.
    fn required_token(&self) -> Option<(&SeenToken, &crate::identity::require::Requirement)> {
        let requirement = self.m.route.require.as_deref()?;
        let keys = requirement.token.keys_for(&requirement.keys);
        self.tokens
            .iter()
            .find(|t| t.location == requirement.token && t.keys == keys && t.checked.is_jwt)
            .map(|t| (t, requirement))
    }

    /// The subject (key set `subject_claim`) of the requirement's token: verified when the
    /// token is, else claimed.
    fn required_subject(&self) -> Option<Resolved> {
        let (t, requirement) = self.required_token()?;
        let claim = t.checked.names.subject();
        self.token_claim(t, claim, &requirement.token)
    }

    /// The app of the requirement's token: the key set's `app_claim`, else the requirement's
    /// own when it checks tenancy.
    fn required_app(&self) -> Option<Resolved> {
        let (t, req) = self.required_token()?;
        let claim = match &t.checked.names.app {
            Some(c) => c.as_str(),
            None if req.app_matches.is_some() => req.app_claim.as_str(),
            None => return None,
        };
        self.token_claim(t, claim, &req.token)
    }

    fn token_claim(&self, t: &SeenToken, claim: &str, at: &TokenLocation) -> Option<Resolved> {
        let value = clean(&t.checked.claim_str(claim)?)?;
        let verified = t.checked.verified;
        Some(Resolved {
            value,
            source: if verified {
                format!("claim:{claim}@{}", at.label())
            } else {
                claimed_label(claim, at)
            },
            verified,
            claimed: !verified,
            constant: false,
        })
    }
}

impl Ctx<'_> {
    /// The actor or app `t` inherits from the event that issued it: source `lineage:<event>`,
    /// or `session:<cookie>` for a session cookie; as verified as it was there.
    fn inherited(&self, t: &SeenToken, of: LineageOf) -> Option<Resolved> {
        let Some(Lineage::Found(i)) = &t.lineage else {
            return None;
        };
        let (value, verified) = match of {
            LineageOf::Actor => (i.actor.as_deref()?, i.actor_verified),
            LineageOf::App => (i.app.as_deref()?, i.app_verified),
        };
        let source = match (&t.location, t.session) {
            (TokenLocation::Cookie(name), true) => format!("session:{name}"),
            _ => format!("lineage:{}", i.event),
        };
        Some(Resolved {
            value: clean(value)?,
            source,
            verified,
            claimed: false,
            constant: false,
        })
    }

    /// The first inherited value among the presented tokens: a token's before a session's.
    fn lineage(&self, of: LineageOf) -> Option<Resolved> {
        let by = |session: bool| {
            self.tokens
                .iter()
                .filter(|t| t.session == session)
                .find_map(|t| self.inherited(t, of))
        };
        by(false).or_else(|| by(true))
    }
}

/// How a claimed (unverified) value is labelled: `claimed:user_id@bearer`.
fn claimed_label(claim: &str, token: &TokenLocation) -> String {
    format!("claimed:{claim}@{}", token.label())
}

/// The actor or target among the values the sources yielded, in source order: when any source
/// yields a verified value, the first value that is not merely claimed; otherwise the first
/// value, a claimed one included.
fn pick(values: Vec<Resolved>) -> Option<Resolved> {
    if values.iter().any(|v| v.verified) {
        return values.into_iter().find(|v| !v.claimed);
    }
    values.into_iter().next()
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
    // An OAuth error sent back in a redirect (`302 Location: …?error=access_denied`) is a
    // failure whatever the status lists say: the redirect is how the server answers "no".
    let redirect_error = match (outcome, resp.failure) {
        (Outcome::Success, None) => redirect_error(&route.outcome, resp),
        _ => None,
    };
    let (outcome, mut reason) = match redirect_error {
        Some(error) => (Outcome::Failure, Some(error)),
        None => (outcome, reason(&ctx, &route.outcome, outcome, resp)),
    };
    // Stable codes for the upstream's reason texts; the text itself is kept in details.
    let mut reason_text = None;
    if resp.failure.is_none() && reason.is_some() {
        let status = resp.status.map(|s| s.as_u16());
        if let Some(rule) = route
            .reasons
            .iter()
            .find(|r| r.matches(reason.as_deref(), status))
        {
            if reason.as_deref() != Some(rule.code.as_str()) {
                reason_text = reason.take();
            }
            reason = Some(rule.code.clone());
        }
    }
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

    // The route's sources name the actor; without a value from them that is more than a
    // claim or a constant, the requirement's verified token does, then lineage (who the
    // presented token, code or session was issued to), then the claim or constant, then the
    // requirement's token as it claims.
    let actor_values = ctx.all_texts(&route.actor);
    let actor = pick(actor_values.clone())
        .filter(|r| !r.claimed && !r.constant)
        .or_else(|| ctx.required_subject().filter(|r| r.verified))
        .or_else(|| ctx.lineage(LineageOf::Actor))
        .or_else(|| pick(actor_values))
        .or_else(|| ctx.required_subject());
    let actor = match actor {
        Some(r) => Actor {
            id: Some(r.value),
            kind: route.actor_kind,
            display: None,
            verified: r.verified,
            source: Some(r.source),
        },
        None => Actor::anonymous(),
    };
    // Lineage's app competes with the route's values like any other source.
    let mut app_values = ctx.all_texts(&route.app);
    let lineage_app = ctx.lineage(LineageOf::App);
    let (app, app_conflict) = if app_values.is_empty() {
        match ctx.required_app() {
            Some(r) if r.verified => (Some(r.attributed()), None),
            required => (lineage_app.or(required).map(Resolved::attributed), None),
        }
    } else {
        app_values.extend(lineage_app);
        resolve_app(app_values)
    };
    let target = route.target.as_ref().and_then(|t| {
        pick(ctx.all_texts(&t.from)).map(|r| Target {
            kind: t.kind.clone(),
            id: r.value,
            display: pick(ctx.all_texts(&t.display)).map(|d| d.value),
            source: r.source,
        })
    });
    let mut details = Map::new();
    for (name, sources) in &route.capture {
        if let Some(v) = ctx.first_value(sources) {
            details.insert(name.clone(), v);
        }
    }
    if let Some(text) = reason_text {
        details.entry("reason_text").or_insert(Value::String(text));
    }
    // Each lookup of who a presented token was issued to, found or not.
    let mut described: Vec<&str> = Vec::new();
    let lineage: Map<String, Value> = tokens
        .iter()
        .filter_map(|t| {
            let l = t.lineage.as_ref()?;
            if described.contains(&t.checked.fingerprint.as_str()) {
                return None;
            }
            described.push(&t.checked.fingerprint);
            Some((t.location.label(), l.describe()))
        })
        .collect();
    if !lineage.is_empty() {
        details.insert("lineage".into(), Value::Object(lineage));
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

/// The app: the first verified value, else the first value that is not a constant, else the
/// constant (a fallback, never a competing value). When the values that are not constants
/// disagree, every distinct one is kept as the conflict.
fn resolve_app(values: Vec<Resolved>) -> (Option<Attributed>, Option<Vec<Attributed>>) {
    let chosen = values
        .iter()
        .find(|v| v.verified)
        .or_else(|| values.iter().find(|v| !v.constant))
        .or(values.first())
        .cloned();
    let Some(app) = chosen else {
        return (None, None);
    };
    let competing: Vec<Resolved> = values.into_iter().filter(|v| !v.constant).collect();
    if competing.iter().all(|v| v.value == app.value) {
        return (Some(app.attributed()), None);
    }
    let mut conflict: Vec<Attributed> = Vec::new();
    for v in competing {
        if !conflict.iter().any(|c| c.value == v.value) {
            conflict.push(v.attributed());
        }
    }
    (Some(app.attributed()), Some(conflict))
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
            kind: if t.session {
                "session".to_string()
            } else {
                identity::token_kind(&label, c)
            },
            source: label,
            fingerprint: c.fingerprint.clone(),
            jti: c.claim_str("jti").map(|v| redact::truncate(&v, 128)),
            sub: c
                .subject()
                .map(|v| redact::truncate(&v, redact::MAX_VALUE_CHARS)),
            app: c
                .app()
                .map(|v| redact::truncate(&v, redact::MAX_VALUE_CHARS)),
            iat: c.claim_i64("iat"),
            exp: c.claim_i64("exp").or(t.expires),
            verified: c.verified,
            invalid: c.invalid.map(|i| i.as_str().to_string()),
        });
    }
    out
}

/// The OAuth error (the route's `redirect_error` parameter) of a 3xx response's `Location`.
/// A parameter without a value (Spring Security's failed form login: `/login?error`) is a
/// failure too: its reason is the parameter's name.
fn redirect_error(rules: &OutcomeRules, resp: &ResponseFacts<'_>) -> Option<String> {
    let param = rules.redirect_error.as_deref()?;
    if !resp.status?.is_redirection() {
        return None;
    }
    let location = resp.headers?.get(http::header::LOCATION)?.to_str().ok()?;
    let error = url_param(location, param)?;
    let error = error.trim();
    Some(redact::truncate(
        if error.is_empty() { param } else { error },
        128,
    ))
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

/// The path as stored: as the upstream received it (trailing slash, encoding and all; the query
/// dropped), with each segment holding the value of a secret-named parameter (`/verify/{code}`)
/// replaced by its placeholder, and cut to a sane length. Normalisation is for matching only.
///
/// A segment is masked when its decoded form holds the value anywhere, so a value hidden inside
/// another segment (`verify%2F<code>`, read by a variant of the target) is masked as well.
pub(crate) fn stored_path(m: &Match<'_>, redactor: &Redactor, raw: &str) -> String {
    let raw = raw.split('?').next().unwrap_or("");
    let secrets: Vec<(&str, &str)> = m
        .params
        .iter()
        .filter(|(name, value)| !value.is_empty() && redactor.is_secret(name))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut path = String::with_capacity(raw.len() + 1);
    for (i, seg) in raw.split('/').enumerate() {
        if i > 0 {
            path.push('/');
        }
        let secret = (!secrets.is_empty())
            .then(|| super::template::percent_decode(seg))
            .and_then(|decoded| {
                secrets
                    .iter()
                    .find(|(_, v)| *v == decoded || (v.len() >= 4 && decoded.contains(v)))
            });
        match secret {
            Some((name, _)) => {
                path.push('{');
                path.push_str(name);
                path.push('}');
            }
            None => path.push_str(seg),
        }
    }
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    redact::truncate_owned(path, 512)
}

#[cfg(test)]
mod tests;
