//! One reading of the request target: the upstream's. A request is routed by the route map only
//! when every way an upstream stack may read its method and path leads to the same route with
//! the same parameters.
//!
//! The primary reading is [`segments`](super::segments): split on `/`, percent-decode each
//! segment, drop empty and `.` segments, let `..` remove one. Upstream stacks differ from it in
//! known ways; each is a [`Variant`]:
//!
//! | variant | an upstream that… | example |
//! |---|---|---|
//! | `encoded_separator` | decodes `%2F` / `%5C` before splitting (WSGI, many CGI-style stacks) | `/v1/apps%2Fa%2Fusers/u1/x` |
//! | `backslash` | treats `\` as `/` (IIS, some node routers) | `/v1\apps\a` |
//! | `nul` | ends the path at a NUL (C string handling) | `/v1/x%00.json` |
//! | `encoded_dot` | resolves `.`/`..` before decoding, so `%2e%2e` is a name | `/v1/a/%2e%2e/b` |
//! | `double_encoding` | decodes twice | `/v1%252Fapps` |
//! | `matrix_params` | strips `;params` from segments (Java servlet containers) | `/x/deactivate;x=1` |
//! | `case` | routes case-insensitively | `/V1/Login` |
//! | `method_case` | upper-cases the method | `post /login` |
//! | `method_override` | honours `X-HTTP-Method-Override` and kin, or `?_method=` | `GET /x` + `X-HTTP-Method-Override: POST` |
//!
//! A variant that leads to a *different* route (or the same route with different parameters)
//! than the primary reading makes the request [`Routing::Ambiguous`]: the proxy refuses it or
//! forwards the canonical form, as the route's `path_policy` says — it never forwards it as an
//! unmapped request. A variant that leads to no route at all changes nothing: the primary
//! reading still applies (and its requirement is checked).
//!
//! Pure and allocation-free for ordinary requests: the variants are only computed when the
//! target or the headers contain what triggers them.

use std::borrow::Cow;

use http::{HeaderMap, Method};

use super::{segments, Match, RequestHead, Route, RouteMap};

/// Headers through which some frameworks let a client replace the request method.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The same, parsed once: looking a header up by `&str` parses and hashes the name on every
/// request, and every request is checked for these.
static METHOD_OVERRIDE_NAMES: [http::HeaderName; 3] = [
    http::HeaderName::from_static("x-http-method-override"),
    http::HeaderName::from_static("x-http-method"),
    http::HeaderName::from_static("x-method-override"),
];

/// What a route's ambiguous requests get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathPolicy {
    /// 400 `ambiguous_path`, recorded as `request.rejected` (the default).
    #[default]
    Reject,
    /// Forward the canonical form of the route's reading; the route's requirement and event
    /// apply to it.
    Normalize,
}

impl PathPolicy {
    pub fn parse(s: &str) -> Option<PathPolicy> {
        match s {
            "reject" => Some(PathPolicy::Reject),
            "normalize" | "normalise" => Some(PathPolicy::Normalize),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PathPolicy::Reject => "reject",
            PathPolicy::Normalize => "normalize",
        }
    }
}

/// How a route's literals compare with a request's segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathCase {
    /// Exact match; a case variant of the path that only matches this route ignoring case is
    /// ambiguous (the default: the upstream's behaviour is not known).
    #[default]
    Unknown,
    /// Exact match, and the upstream routes exactly: case variants are not this route.
    Sensitive,
    /// The upstream routes case-insensitively: so does the route.
    Insensitive,
}

/// One way an upstream may read a request differently from the primary reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    EncodedSeparator,
    Backslash,
    Nul,
    EncodedDot,
    DoubleEncoding,
    MatrixParams,
    /// Several path variants at once (`%2F` and `;` together, say).
    Combined,
    Case,
    MethodCase,
    MethodOverride,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::EncodedSeparator => "encoded_separator",
            Variant::Backslash => "backslash",
            Variant::Nul => "nul",
            Variant::EncodedDot => "encoded_dot",
            Variant::DoubleEncoding => "double_encoding",
            Variant::MatrixParams => "matrix_params",
            Variant::Combined => "combined",
            Variant::Case => "case",
            Variant::MethodCase => "method_case",
            Variant::MethodOverride => "method_override",
        }
    }
}

/// The route map's decision for one request head.
#[derive(Debug)]
pub enum Routing<'m> {
    /// No reading matches a route: forward untouched.
    Unmapped,
    /// Every reading that matches a route matches this one, with these parameters.
    Mapped(Match<'m>),
    /// A reading matches a route the primary reading does not (or with other parameters).
    Ambiguous(Ambiguity<'m>),
}

/// A request an upstream may route to `resembles` although the map's own reading does not.
#[derive(Debug)]
pub struct Ambiguity<'m> {
    /// The route (and parameters) of the variant reading.
    pub resembles: Match<'m>,
    /// The variants that lead there (one or two, e.g. `encoded_separator` + `case`).
    pub variants: Vec<Variant>,
    /// What the primary reading matched, if anything.
    pub primary: Option<Match<'m>>,
    /// The method of the variant reading.
    pub method: Method,
    /// The canonical path of the variant reading (the route's literals, the request's values).
    pub canonical_path: String,
}

impl Ambiguity<'_> {
    /// `encoded_separator+case`.
    pub fn label(&self) -> String {
        let names: Vec<&str> = self.variants.iter().map(|v| v.as_str()).collect();
        names.join("+")
    }
}

/// Route a request head: the primary reading, then every variant its target triggers.
pub fn route<'m>(
    map: &'m RouteMap,
    head: &RequestHead<'_>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Routing<'m> {
    let primary_segments = segments(head.path);
    let host = head.host.map(super::host_part);
    let primary = first_match(map, head.method, host, &primary_segments, false);

    let paths = path_variants(head.path);
    let methods = method_variants(head.method, headers, query);
    let case = needs_case_pass(head.path);
    if paths.is_empty() && methods.is_empty() && !case {
        return match primary {
            Some(m) => Routing::Mapped(m),
            None => Routing::Unmapped,
        };
    }

    let agrees = |m: &Option<Match<'m>>| match (m, &primary) {
        (None, _) => true,
        (Some(a), Some(p)) => a.index == p.index && a.params == p.params,
        (Some(_), None) => false,
    };
    // Every combination of a method reading, a path reading and (when the path has capitals)
    // case, primary first: at most 3 × 8 × 2 walks of the map, for a hostile target only.
    let mut method_list: Vec<(Option<Variant>, Cow<'_, Method>)> =
        vec![(None, Cow::Borrowed(head.method))];
    method_list.extend(methods.into_iter().map(|(v, m)| (Some(v), Cow::Owned(m))));
    let mut path_list: Vec<(Option<Variant>, Vec<Cow<'_, str>>)> =
        vec![(None, primary_segments.clone())];
    path_list.extend(paths.into_iter().map(|(v, s)| (Some(v), s)));
    for (mv, method) in &method_list {
        for (pv, segs) in &path_list {
            for ignore_case in [false, true] {
                if ignore_case && !case {
                    continue;
                }
                if mv.is_none() && pv.is_none() && !ignore_case {
                    continue; // the primary reading itself
                }
                let m = first_match(map, method, host, segs, ignore_case);
                if agrees(&m) {
                    continue;
                }
                let Some(resembles) = m else { continue };
                let variants: Vec<Variant> = [*mv, *pv, ignore_case.then_some(Variant::Case)]
                    .into_iter()
                    .flatten()
                    .collect();
                let canonical_path = resembles.route.path.canonical(segs);
                return Routing::Ambiguous(Ambiguity {
                    resembles,
                    variants,
                    primary,
                    method: method.clone().into_owned(),
                    canonical_path,
                });
            }
        }
    }
    match primary {
        Some(m) => Routing::Mapped(m),
        None => Routing::Unmapped,
    }
}

/// The first route that matches, honouring each route's `path_case`. With `ignore_case`, every
/// route but the `sensitive` ones compares literals ignoring case.
pub(super) fn first_match<'m, S: AsRef<str>>(
    map: &'m RouteMap,
    method: &Method,
    host: Option<&str>,
    segments: &[S],
    ignore_case: bool,
) -> Option<Match<'m>> {
    map.routes.iter().enumerate().find_map(|(index, route)| {
        head_matches(route, method, host)
            .then(|| {
                let ci = match route.path_case {
                    PathCase::Insensitive => true,
                    PathCase::Sensitive => false,
                    PathCase::Unknown => ignore_case,
                };
                route.path.matches_with(segments, ci)
            })
            .flatten()
            .map(|params| Match {
                route,
                index,
                params,
            })
    })
}

/// Method and host of a route (the path is checked by the caller).
pub(super) fn head_matches(route: &Route, method: &Method, host: Option<&str>) -> bool {
    if !route.methods.is_empty() && !route.methods.contains(method) {
        return false;
    }
    match &route.host {
        // `want` is lowercase already (see `host_only` in config validation).
        Some(want) => host.is_some_and(|h| h.eq_ignore_ascii_case(want)),
        None => true,
    }
}

fn needs_case_pass(path: &str) -> bool {
    path.split('?')
        .next()
        .is_some_and(|p| p.bytes().any(|b| b.is_ascii_uppercase()) || p.contains('%'))
}

/// `%2F`, `%2f`, … anywhere in `s`.
fn has_escape(s: &str, hex: &str) -> bool {
    let b = s.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%'
            && w[1..]
                .iter()
                .zip(hex.as_bytes())
                .all(|(x, y)| x.eq_ignore_ascii_case(y))
    })
}

/// Replace every `%XX` escape of `hex` (case-insensitively) with `with`.
fn replace_escape(s: &str, hex: &str, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match tail.get(1..3) {
            Some(h) if h.eq_ignore_ascii_case(hex) => {
                out.push_str(with);
                rest = &tail[3..];
            }
            _ => {
                out.push('%');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The path with `;parameters` cut from each segment.
fn strip_matrix(path: &str) -> String {
    path.split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// Segments read as a stack that resolves dot segments on the raw path, then decodes.
fn raw_dot_segments(path: &str) -> Vec<Cow<'static, str>> {
    let mut out: Vec<Cow<'static, str>> = Vec::new();
    for raw in path.split('/') {
        match raw {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(Cow::Owned(super::template::percent_decode(raw))),
        }
    }
    out
}

/// The path readings a target triggers, each as segments.
fn path_variants(path: &str) -> Vec<(Variant, Vec<Cow<'static, str>>)> {
    let path = path.split('?').next().unwrap_or("");
    // Every reading below starts from one of these bytes; a plain path (most) has none.
    if !path
        .bytes()
        .any(|b| matches!(b, b'%' | b'\\' | b';' | b'\0'))
    {
        return Vec::new();
    }
    let owned = |p: &str| -> Vec<Cow<'static, str>> {
        segments(p)
            .into_iter()
            .map(|c| Cow::Owned(c.into_owned()))
            .collect()
    };
    let mut out = Vec::new();
    let separator = has_escape(path, "2F") || has_escape(path, "5C");
    let nul = has_escape(path, "00") || path.contains('\0');
    let dot = has_escape(path, "2E");
    let double = has_escape(path, "25");
    let backslash = path.contains('\\');
    let matrix = path.contains(';') || has_escape(path, "3B");
    if separator {
        let p = replace_escape(&replace_escape(path, "2F", "/"), "5C", "/");
        out.push((Variant::EncodedSeparator, owned(&p)));
    }
    if backslash {
        out.push((Variant::Backslash, owned(&path.replace('\\', "/"))));
    }
    if nul {
        let cut = path.split('\0').next().unwrap_or("");
        let cut = match cut.to_ascii_lowercase().find("%00") {
            Some(i) => &cut[..i],
            None => cut,
        };
        out.push((Variant::Nul, owned(cut)));
    }
    if dot {
        out.push((Variant::EncodedDot, raw_dot_segments(path)));
    }
    if double {
        // Decoded twice, the second time before splitting.
        let once = super::template::percent_decode(path);
        let p = replace_escape(&replace_escape(&once, "2F", "/"), "5C", "/");
        out.push((Variant::DoubleEncoding, owned(&p)));
    }
    if matrix {
        let decoded_semicolons = replace_escape(path, "3B", ";");
        out.push((
            Variant::MatrixParams,
            owned(&strip_matrix(&decoded_semicolons)),
        ));
    }
    if out.len() > 1 {
        // All of them together: `%2F` hiding a separator and `;x` hiding a name, say.
        let mut p = path.to_string();
        if nul {
            let lower = p.to_ascii_lowercase();
            let end = [lower.find("%00"), p.find('\0')]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(p.len());
            p.truncate(end);
        }
        if double {
            p = super::template::percent_decode(&p);
        }
        p = replace_escape(&replace_escape(&p, "2F", "/"), "5C", "/").replace('\\', "/");
        p = strip_matrix(&replace_escape(&p, "3B", ";"));
        out.push((Variant::Combined, owned(&p)));
    }
    out
}

/// The method readings a request triggers.
fn method_variants(
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Vec<(Variant, Method)> {
    let mut out: Vec<(Variant, Method)> = Vec::new();
    let mut push = |v: Variant, name: &str| {
        let upper = name.trim().to_ascii_uppercase();
        if let Ok(m) = Method::from_bytes(upper.as_bytes()) {
            if m != *method && !out.iter().any(|(_, o)| *o == m) {
                out.push((v, m));
            }
        }
    };
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        push(Variant::MethodCase, method.as_str());
    }
    for name in &METHOD_OVERRIDE_NAMES {
        for v in headers.get_all(name) {
            if let Ok(v) = v.to_str() {
                push(Variant::MethodOverride, v);
            }
        }
    }
    if let Some(q) = query.filter(|q| q.contains("_method")) {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if k == "_method" {
                push(Variant::MethodOverride, &v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_found_and_replaced_in_either_case() {
        assert!(has_escape("/a%2fb", "2F"));
        assert!(has_escape("/a%2Fb", "2F"));
        assert!(!has_escape("/a%2", "2F"));
        assert_eq!(replace_escape("/a%2fb%2Fc%41", "2F", "/"), "/a/b/c%41");
        assert_eq!(replace_escape("%", "2F", "/"), "%");
    }

    #[test]
    fn matrix_parameters_are_cut_per_segment() {
        assert_eq!(strip_matrix("/a;x=1/b;jsessionid=2"), "/a/b");
    }

    #[test]
    fn raw_dot_resolution_keeps_encoded_dots_as_names() {
        let segs: Vec<String> = raw_dot_segments("/a/%2e%2e/b")
            .into_iter()
            .map(|c| c.into_owned())
            .collect();
        assert_eq!(segs, ["a", "..", "b"]);
    }
}
