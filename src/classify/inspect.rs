//! Whether a request body can decide a route's `match.body` conditions at all.
//!
//! A body-conditioned route (an OAuth `grant_type`, an admin `op`) is only as strong as the
//! reading of its body. When the sidecar cannot read the body the way the upstream will — it is
//! longer than `inspect_limit`, compressed, of a type the sidecar does not parse, broken, or it
//! names a field twice (the upstream may take either copy) — the conditions are *uninspectable*
//! and the request still belongs to its method and path: the proxy fails closed (see
//! `proxy.rs`). Pure: bytes and headers in, a verdict out.

use std::collections::HashSet;

use http::{HeaderMap, StatusCode};
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

/// Why a body's conditions could not be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uninspectable {
    /// Longer than `inspect_limit` (however it was split into writes).
    TooLarge,
    /// A `Content-Encoding` other than `identity`.
    Encoded,
    /// Neither JSON nor a form (`text/plain`, multipart, ...).
    UnsupportedType,
    /// Claims to be JSON but does not parse.
    Unparsable,
    /// A JSON key or a form field appears twice.
    DuplicateField,
}

impl Uninspectable {
    pub fn as_str(self) -> &'static str {
        match self {
            Uninspectable::TooLarge => "too_large",
            Uninspectable::Encoded => "content_encoding",
            Uninspectable::UnsupportedType => "unsupported_type",
            Uninspectable::Unparsable => "unparsable",
            Uninspectable::DuplicateField => "duplicate_field",
        }
    }

    /// The status of a refusal: 413, 415 or 400.
    pub fn status(self) -> StatusCode {
        match self {
            Uninspectable::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Uninspectable::Encoded | Uninspectable::UnsupportedType => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Uninspectable::Unparsable | Uninspectable::DuplicateField => StatusCode::BAD_REQUEST,
        }
    }

    /// For the client's error body.
    pub fn message(self) -> &'static str {
        match self {
            Uninspectable::TooLarge => "request body is larger than this route may carry",
            Uninspectable::Encoded => "this route does not accept an encoded request body",
            Uninspectable::UnsupportedType => "this route accepts a JSON or form request body only",
            Uninspectable::Unparsable => "request body is not valid JSON",
            Uninspectable::DuplicateField => "request body names a field more than once",
        }
    }
}

/// Can `bytes` (the body's head: `truncated` when the body went on past it) be read the one way
/// the upstream will read it?
pub fn inspectable(
    headers: &HeaderMap,
    bytes: &[u8],
    truncated: bool,
) -> Result<(), Uninspectable> {
    if truncated {
        return Err(Uninspectable::TooLarge);
    }
    let encoded = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| {
            !v.to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity"))
        });
    if encoded {
        return Err(Uninspectable::Encoded);
    }
    if bytes.is_empty() {
        return Ok(()); // no fields: a clean "condition not met"
    }
    let types: Vec<String> = headers
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .collect();
    if types.len() > 1 {
        return Err(Uninspectable::UnsupportedType);
    }
    let ct = types.first().map_or("", String::as_str);
    if ct.starts_with("application/x-www-form-urlencoded") {
        let mut seen = HashSet::new();
        for (k, _) in form_urlencoded::parse(bytes) {
            if !seen.insert(k) {
                return Err(Uninspectable::DuplicateField);
            }
        }
        return Ok(());
    }
    let json = ct.contains("json") || (ct.is_empty() && bytes.first() == Some(&b'{'));
    if !json {
        return Err(Uninspectable::UnsupportedType);
    }
    match serde_json::from_slice::<NoDuplicates>(bytes) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(Uninspectable::DuplicateField),
        Err(_) => Err(Uninspectable::Unparsable),
    }
}

/// Of the routes a request with an uninspectable body may be, the first whose conditions the
/// readable part of a form body meets: the complete `name=value` pairs before the cut of a body
/// over the limit, or the first value of each field of a body with duplicates. Only a guess,
/// for the event's route (it stays flagged `body_uninspected`): never used to allow anything.
pub fn best_effort<'a, 'm>(
    candidates: &'a [super::Match<'m>],
    headers: &HeaderMap,
    bytes: &[u8],
) -> Option<&'a super::Match<'m>> {
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form {
        return None;
    }
    // Whole pairs only: the last one may have been cut.
    let whole = match bytes.iter().rposition(|b| *b == b'&') {
        Some(i) => &bytes[..i],
        None => return None,
    };
    let fields: Vec<(String, String)> = form_urlencoded::parse(whole).into_owned().collect();
    candidates.iter().find(|m| {
        !m.route.body.is_empty()
            && m.route.body.iter().all(|(ptr, allowed)| {
                let name = ptr.strip_prefix('/').unwrap_or(ptr);
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .is_some_and(|(_, v)| allowed.contains(v))
            })
    })
}

const DUPLICATE: &str = "duplicate key";

/// A JSON value read only to find a key that appears twice in one object.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_none<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut keys = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !keys.insert(k) {
                return Err(A::Error::custom(DUPLICATE));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn json_and_form_bodies_are_inspectable() {
        let json = headers(&[("content-type", "application/json")]);
        assert_eq!(
            inspectable(&json, br#"{"op":"delete","a":{"b":1}}"#, false),
            Ok(())
        );
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(
            inspectable(&form, b"grant_type=password&username=a", false),
            Ok(())
        );
        assert_eq!(inspectable(&HeaderMap::new(), b"", false), Ok(()));
    }

    #[test]
    fn what_cannot_be_read_one_way_is_named() {
        let json = headers(&[("content-type", "application/json")]);
        assert_eq!(
            inspectable(&json, b"{}", true),
            Err(Uninspectable::TooLarge)
        );
        assert_eq!(
            inspectable(&json, br#"{"op":"list","op":"delete"}"#, false),
            Err(Uninspectable::DuplicateField)
        );
        assert_eq!(
            inspectable(&json, br#"{"x":{"op":1,"op":2}}"#, false),
            Err(Uninspectable::DuplicateField)
        );
        assert_eq!(
            inspectable(&json, br#"{"op":"del"#, false),
            Err(Uninspectable::Unparsable)
        );
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(
            inspectable(
                &form,
                b"grant_type=password&grant_type=client_credentials",
                false
            ),
            Err(Uninspectable::DuplicateField)
        );
        let gz = headers(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ]);
        assert_eq!(
            inspectable(&gz, b"\x1f\x8b", false),
            Err(Uninspectable::Encoded)
        );
        let text = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            inspectable(&text, br#"{"op":"delete"}"#, false),
            Err(Uninspectable::UnsupportedType)
        );
        let multi = headers(&[("content-type", "multipart/form-data; boundary=x")]);
        assert_eq!(
            inspectable(&multi, b"--x\r\n", false),
            Err(Uninspectable::UnsupportedType)
        );
    }
}
