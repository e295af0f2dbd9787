//! Applying a matched route's rules to one exchange: resolve actor, app, target and captured
//! details from the request and response facts, decide the outcome, and build the
//! [`AuditEvent`]. Pure: the proxy gathers the facts, this module only reads them.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::redact::{self, Redactor};
use super::{Match, OutcomeRules, Source, StatusPattern};
use crate::event::{
    Actor, ActorKind, Attributed, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target,
};

/// What the proxy saw of the request (the body only up to the inspect limit).
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub body_truncated: bool,
}

/// Why no (complete) response came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The upstream could not be reached (connection refused, reset before a response).
    UpstreamUnreachable,
    /// The upstream did not answer within `upstream_response`.
    UpstreamTimeout,
    /// The response body broke off midway.
    UpstreamAborted,
    /// The client went away before the response was delivered.
    ClientAborted,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::UpstreamUnreachable => "upstream_unreachable",
            Failure::UpstreamTimeout => "upstream_timeout",
            Failure::UpstreamAborted => "upstream_aborted",
            Failure::ClientAborted => "client_aborted",
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

/// Everything a source may read, parsed once per exchange.
struct Ctx<'a> {
    m: &'a Match<'a>,
    req: &'a RequestFacts<'a>,
    req_body: Body,
    resp_body: Body,
    redactor: &'a Redactor,
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
            Source::RequestBody(ptr) => self.req_body.pointer(ptr),
            Source::ResponseBody(ptr) => self.resp_body.pointer(ptr),
            Source::Form(name) => match &self.req_body {
                Body::Form(fields) => form_field(fields, name).map(Value::String),
                _ => None,
            },
            Source::Const(v) => Some(Value::String(v.clone())),
        }
    }

    /// The first source that yields a non-empty scalar, as text, with its label.
    fn first_text(&self, sources: &[Source]) -> Option<(String, String)> {
        sources.iter().find_map(|s| {
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
            Some((redact::truncate(text, redact::MAX_VALUE_CHARS), s.label()))
        })
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
    base: EventBase,
) -> AuditEvent {
    let route = m.route;
    let ctx = Ctx {
        m,
        req,
        req_body: Body::parse(Some(req.headers), req.body, req.body_truncated),
        resp_body: Body::parse(resp.headers, resp.body, resp.body_truncated),
        redactor,
    };

    let status = if resp.failure.is_some_and(|f| f != Failure::ClientAborted) {
        None
    } else {
        resp.status
    };
    let outcome = decide_outcome(&route.outcome, status, || {
        route.outcome.success_if.as_ref().is_some_and(|c| {
            match (ctx.resp_body.pointer(&c.pointer), &c.equals) {
                (Some(v), Some(want)) => &v == want,
                (Some(v), None) => !v.is_null(),
                (None, _) => false,
            }
        })
    });
    let reason = reason(&ctx, &route.outcome, outcome, resp);

    let actor = match ctx.first_text(&route.actor) {
        Some((id, source)) => Actor {
            id: Some(id),
            kind: ActorKind::User,
            display: None,
            verified: false,
            source: Some(source),
        },
        None => Actor::anonymous(),
    };
    let app = ctx
        .first_text(&route.app)
        .map(|(value, source)| Attributed {
            value,
            source,
            verified: false,
        });
    let target = route.target.as_ref().and_then(|t| {
        ctx.first_text(&t.from).map(|(id, source)| Target {
            kind: t.kind.clone(),
            id,
            display: ctx.first_text(&t.display).map(|(d, _)| d),
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
        app_conflict: None,
        actor,
        target,
        tokens: Vec::new(),
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
    }
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
    let from_body = rules
        .reason
        .as_deref()
        .and_then(|ptr| match ctx.resp_body.pointer(ptr)? {
            Value::String(s) if !s.trim().is_empty() => Some(redact::truncate(s.trim(), 128)),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    from_body.or_else(|| resp.status.map(|s| format!("http_{}", s.as_u16())))
}

/// The concrete path as stored: normalised, with the values of secret-named parameters
/// (`/verify/{code}`) replaced by their placeholder, and cut to a sane length.
fn stored_path(m: &Match<'_>, redactor: &Redactor, raw: &str) -> String {
    let mut segments = super::normalize(raw);
    for (name, value) in &m.params {
        if redactor.is_secret(name) {
            for seg in segments.iter_mut().filter(|s| *s == value) {
                *seg = format!("{{{name}}}");
            }
        }
    }
    redact::truncate(&format!("/{}", segments.join("/")), 512)
}
