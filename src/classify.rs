//! The route map: which requests are auth actions, and how an exchange becomes an event.
//!
//! [`classify`] is a pure, synchronous function from the compiled [`RouteMap`] and a request head
//! to the first matching route; [`extract`] applies that route's rules to the request and
//! response facts the proxy gathered. Nothing here does I/O or knows about the store.

use http::Method;
use serde::Deserialize;

pub mod extract;
pub mod redact;
pub mod template;

pub use template::{normalize, PathTemplate, TemplateError};

/// Where a value (actor, app, target, captured detail) is read from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
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
}

impl Source {
    /// How the source is named on events: `path:user_id`, `request_body:/username`, ...
    pub fn label(&self) -> String {
        match self {
            Source::Path(p) => format!("path:{p}"),
            Source::Query(q) => format!("query:{q}"),
            Source::Header(h) => format!("header:{}", h.to_ascii_lowercase()),
            Source::RequestBody(p) => format!("request_body:{p}"),
            Source::ResponseBody(p) => format!("response_body:{p}"),
            Source::Form(f) => format!("form:{f}"),
            Source::Const(_) => "const".to_string(),
        }
    }

    /// The field name a source reads, for the secret check (`None` for constants and params).
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Source::Query(n) | Source::Header(n) | Source::Form(n) => Some(n),
            Source::RequestBody(p) | Source::ResponseBody(p) => {
                p.rsplit('/').next().filter(|s| !s.is_empty())
            }
            Source::Path(_) | Source::Const(_) => None,
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
}

impl Default for OutcomeRules {
    fn default() -> Self {
        OutcomeRules {
            success: vec![StatusPattern::Class(2), StatusPattern::Class(3)],
            failure: vec![StatusPattern::Class(4)],
            error: vec![StatusPattern::Class(5)],
            success_if: None,
            reason: None,
        }
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
}

impl Route {
    /// True when every request this route's successor `other` matches is matched here first.
    pub fn shadows(&self, other: &Route) -> bool {
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
    pub routes: Vec<Route>,
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
    pub fn from_parts(parts: &'a http::request::Parts) -> RequestHead<'a> {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()));
        RequestHead {
            method: &parts.method,
            host,
            path: parts.uri.path(),
        }
    }
}

/// Lowercase host without port (`Auth.Example.com:8443` → `auth.example.com`).
pub fn host_only(host: &str) -> String {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    h.to_ascii_lowercase()
}

/// Why a route did or did not match, for `explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Matched(Vec<(String, String)>),
    Method(String),
    Host(String),
    Path(String),
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
    match route.path.explain(segments) {
        Ok(params) => Verdict::Matched(params),
        Err(why) => Verdict::Path(why),
    }
}

/// The first route that matches the request, with its path parameters.
pub fn classify<'m>(map: &'m RouteMap, head: &RequestHead<'_>) -> Option<Match<'m>> {
    let segments = normalize(head.path);
    map.routes
        .iter()
        .enumerate()
        .find_map(|(index, route)| match check(route, head, &segments) {
            Verdict::Matched(params) => Some(Match {
                route,
                index,
                params,
            }),
            _ => None,
        })
}

/// Every route up to and including the first match, each with its verdict.
pub fn explain<'m>(map: &'m RouteMap, head: &RequestHead<'_>) -> Vec<(&'m Route, Verdict)> {
    let segments = normalize(head.path);
    let mut out = Vec::new();
    for route in &map.routes {
        let v = check(route, head, &segments);
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
