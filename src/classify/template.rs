//! Path templates: `/v1/apps/{app}/users/{user_id}/deactivate`, where `{name}` matches exactly
//! one segment and a final `*` matches the rest of the path (zero or more segments).
//!
//! Requests are matched on a *normalised* path (see [`normalize`]), so `//v1/./sessions/` cannot
//! slip past a route for `/v1/sessions` that the upstream would still serve.

use std::borrow::Cow;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parsed path template.
#[derive(Clone, PartialEq, Eq)]
pub struct PathTemplate {
    raw: String,
    segments: Vec<Segment>,
    tail: bool,
}

impl fmt::Debug for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PathTemplate({:?})", self.raw)
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Why a template was rejected; the message completes `invalid path template "...": `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must start with \"/\"")]
    NoLeadingSlash,
    #[error("unclosed brace")]
    UnclosedBrace,
    #[error("unexpected \"}}\"")]
    StrayBrace,
    #[error("empty parameter name")]
    EmptyParam,
    #[error("parameter \"{0}\": names use letters, digits and \"_\"")]
    BadParamName(String),
    #[error("parameter \"{0}\" appears twice")]
    DuplicateParam(String),
    #[error("a parameter must be a whole segment, not part of \"{0}\"")]
    PartialSegment(String),
    #[error("\"*\" is only allowed as the last segment")]
    InnerWildcard,
    #[error("query strings are not part of a path template")]
    QueryString,
}

impl PathTemplate {
    pub fn parse(raw: &str) -> Result<PathTemplate, TemplateError> {
        if raw.contains('?') {
            return Err(TemplateError::QueryString);
        }
        let rest = raw.strip_prefix('/').ok_or(TemplateError::NoLeadingSlash)?;
        let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut tail = false;
        for (i, part) in parts.iter().enumerate() {
            if *part == "*" {
                if i + 1 != parts.len() {
                    return Err(TemplateError::InnerWildcard);
                }
                tail = true;
                continue;
            }
            if part.contains('*') {
                return Err(TemplateError::InnerWildcard);
            }
            if let Some(inner) = part.strip_prefix('{') {
                let name = inner.strip_suffix('}').ok_or_else(|| {
                    if inner.contains('}') {
                        TemplateError::PartialSegment((*part).to_string())
                    } else {
                        TemplateError::UnclosedBrace
                    }
                })?;
                if name.contains('{') || name.contains('}') {
                    return Err(TemplateError::PartialSegment((*part).to_string()));
                }
                if name.is_empty() {
                    return Err(TemplateError::EmptyParam);
                }
                if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(TemplateError::BadParamName(name.to_string()));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(p) if p == name))
                {
                    return Err(TemplateError::DuplicateParam(name.to_string()));
                }
                segments.push(Segment::Param(name.to_string()));
            } else if part.contains('{') {
                return Err(if part.contains('}') {
                    TemplateError::PartialSegment((*part).to_string())
                } else {
                    TemplateError::UnclosedBrace
                });
            } else if part.contains('}') {
                return Err(TemplateError::StrayBrace);
            } else {
                segments.push(Segment::Literal(percent_decode(part)));
            }
        }
        Ok(PathTemplate {
            raw: raw.to_string(),
            segments,
            tail,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Parameter names, in template order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(p.as_str()),
            Segment::Literal(_) => None,
        })
    }

    pub fn has_param(&self, name: &str) -> bool {
        self.params().any(|p| p == name)
    }

    /// Match normalised segments (see [`normalize`], [`segments`]); on success the parameter
    /// values in template order. Allocates nothing unless it matches (then only the values).
    pub fn matches<S: AsRef<str>>(&self, segments: &[S]) -> Option<Vec<(String, String)>> {
        self.matches_with(segments, false)
    }

    /// [`matches`](Self::matches), comparing literals without regard to ASCII case when
    /// `ignore_case` (for upstreams that route `/V1/Login` like `/v1/login`).
    pub fn matches_with<S: AsRef<str>>(
        &self,
        segments: &[S],
        ignore_case: bool,
    ) -> Option<Vec<(String, String)>> {
        let n = self.segments.len();
        if segments.len() < n || (!self.tail && segments.len() > n) {
            return None;
        }
        let literals_match = self
            .segments
            .iter()
            .zip(segments)
            .all(|(tpl, seg)| match tpl {
                Segment::Literal(lit) if ignore_case => lit.eq_ignore_ascii_case(seg.as_ref()),
                Segment::Literal(lit) => lit == seg.as_ref(),
                Segment::Param(_) => true,
            });
        if !literals_match {
            return None;
        }
        Some(
            self.segments
                .iter()
                .zip(segments)
                .filter_map(|(tpl, seg)| match tpl {
                    Segment::Param(name) => Some((name.clone(), seg.as_ref().to_string())),
                    Segment::Literal(_) => None,
                })
                .collect(),
        )
    }

    /// Like [`matches`](Self::matches), but on failure says why, for `explain`.
    pub fn explain<S: AsRef<str>>(&self, segments: &[S]) -> Result<Vec<(String, String)>, String> {
        if segments.len() < self.segments.len() {
            return Err(format!(
                "path has {} segments, template needs {}",
                segments.len(),
                self.segments.len()
            ));
        }
        if !self.tail && segments.len() > self.segments.len() {
            return Err(format!(
                "path has {} segments, template has {} and no \"*\"",
                segments.len(),
                self.segments.len()
            ));
        }
        let mut params = Vec::new();
        for (i, (tpl, seg)) in self.segments.iter().zip(segments).enumerate() {
            let seg = seg.as_ref();
            match tpl {
                Segment::Literal(lit) if lit == seg => {}
                Segment::Literal(lit) => {
                    return Err(format!(
                        "segment {} is \"{seg}\", template wants \"{lit}\"",
                        i + 1
                    ))
                }
                Segment::Param(name) => params.push((name.clone(), seg.to_string())),
            }
        }
        Ok(params)
    }

    /// The canonical spelling of `segments` (which this template matches): the template's own
    /// literals, the request's parameter values and tail, each segment percent-encoded where
    /// it needs to be. This is the path forwarded when an ambiguous request is normalised.
    pub fn canonical<S: AsRef<str>>(&self, segments: &[S]) -> String {
        let mut out = String::new();
        for (i, seg) in segments.iter().enumerate() {
            out.push('/');
            match self.segments.get(i) {
                Some(Segment::Literal(lit)) => encode_segment(lit, &mut out),
                _ => encode_segment(seg.as_ref(), &mut out),
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// Literal segments, for the coverage report and `check`'s warnings.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Literal(l) => Some(l.as_str()),
            Segment::Param(_) => None,
        })
    }

    /// True when every path this template's match set contains is also matched by `self`
    /// (used to reject routes an earlier route makes unreachable).
    pub fn covers(&self, other: &PathTemplate) -> bool {
        if other.tail && !self.tail {
            return false;
        }
        if self.segments.len() > other.segments.len() {
            return false;
        }
        if !self.tail && self.segments.len() != other.segments.len() {
            return false;
        }
        self.segments
            .iter()
            .zip(&other.segments)
            .all(|(a, b)| match (a, b) {
                (Segment::Param(_), _) => true,
                (Segment::Literal(x), Segment::Literal(y)) => x == y,
                (Segment::Literal(_), Segment::Param(_)) => false,
            })
    }
}

/// The segments a request path is matched on: the query is dropped, each segment is
/// percent-decoded, empty and `.` segments are skipped and `..` removes the previous one —
/// the same reading most servers give a path, so an odd spelling cannot evade a route.
pub fn normalize(path: &str) -> Vec<String> {
    segments(path).into_iter().map(Cow::into_owned).collect()
}

/// [`normalize`] without copying: segments without escapes borrow from `path` (the classifier's
/// hot path, once per request).
pub fn segments(path: &str) -> Vec<Cow<'_, str>> {
    let path = path.split('?').next().unwrap_or("");
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(8);
    for raw in path.split('/') {
        let seg = decode_cow(raw);
        match &*seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(seg),
        }
    }
    out
}

fn decode_cow(s: &str) -> Cow<'_, str> {
    if s.contains('%') {
        Cow::Owned(percent_decode(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// Decode `%XX` escapes; invalid escapes and invalid UTF-8 are kept as written / replaced.
pub fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Append `seg` to `out` as one path segment: RFC 3986 `pchar`s stay, except `;` (a matrix
/// parameter to some servers); everything else is `%XX`-escaped, `/` and `\\` included.
fn encode_segment(seg: &str, out: &mut String) {
    for b in seg.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}
