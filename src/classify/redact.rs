//! Secret redaction: which field names are never captured, and scrubbing of captured values.
//!
//! The rule is applied twice: at config load (a route that names a secret field is rejected)
//! and at run time (captured objects lose their secret keys; values shaped like JWTs are
//! dropped). Header values of `Authorization`, `Cookie` and `Set-Cookie` are never read at all.

use serde_json::Value;

/// Substrings that make a field name secret wherever they appear (`newPassword`,
/// `client_secret`, `refresh_token`).
const DENY_SUBSTRINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "cookie",
    "authorization",
    "credential",
    "apikey",
    "privatekey",
];

/// Words that make a field name secret when they stand as a whole word (`code`, `reset_code`,
/// `otpCode`), but not inside other words (`country` is not `code`... but `zip_code` is).
const DENY_WORDS: &[&str] = &[
    "code",
    "otp",
    "pin",
    "pwd",
    "pass",
    "key",
    "jwt",
    "assertion",
    "signature",
    "cvv",
    "ssn",
];

/// Headers whose values are never stored or logged.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Decides which field names are secret: the built-in list plus the config's own.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    extra: Vec<String>,
}

impl Redactor {
    /// `extra` names are matched like the built-in words (whole words, case-insensitive).
    pub fn new(extra: impl IntoIterator<Item = String>) -> Redactor {
        Redactor {
            extra: extra.into_iter().map(|s| s.to_ascii_lowercase()).collect(),
        }
    }

    /// The deny rule that makes `name` secret, if any.
    pub fn secret_rule(&self, name: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        let squashed: String = lower
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        if let Some(s) = DENY_SUBSTRINGS.iter().find(|s| squashed.contains(*s)) {
            return Some((*s).to_string());
        }
        if SECRET_HEADERS.contains(&lower.as_str()) {
            return Some(lower);
        }
        let words = words(name);
        for w in &words {
            if let Some(d) = DENY_WORDS.iter().find(|d| *d == w) {
                return Some((*d).to_string());
            }
            if let Some(d) = self.extra.iter().find(|d| *d == w) {
                return Some(d.clone());
            }
        }
        // An extra rule may also be a multi-word name like `national_id`.
        self.extra
            .iter()
            .find(|d| squashed.contains(&d.replace(|c: char| !c.is_ascii_alphanumeric(), "")))
            .cloned()
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.secret_rule(name).is_some()
    }

    /// A URL (a `Location` header) with the value of every secret-named parameter of its query
    /// and fragment replaced by `{name}`, the placeholder `http.path` uses: `…/cb?code={code}&state=s1`.
    pub fn mask_url(&self, url: &str) -> String {
        self.mask_url_depth(url, 3)
    }

    /// [`mask_url`](Self::mask_url), also inside the URLs that parameters carry
    /// (`/login?next=/authorize%3Fcode_challenge%3D…`), `depth` levels down.
    fn mask_url_depth(&self, url: &str, depth: u8) -> String {
        let (base, query, fragment) = url_parts(url);
        let mask = |part: &str| -> String {
            part.split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) => {
                        let name: String = form_urlencoded::parse(k.as_bytes())
                            .next()
                            .map(|(n, _)| n.into_owned())
                            .unwrap_or_default();
                        if self.is_secret(&name) {
                            return format!("{k}={{{name}}}");
                        }
                        // A value that is itself a URL with parameters is masked too.
                        let value = pair.split_once('=').map_or("", |(_, v)| v);
                        let decoded: String =
                            form_urlencoded::parse(format!("v={value}").as_bytes())
                                .next()
                                .map(|(_, v)| v.into_owned())
                                .unwrap_or_default();
                        if depth > 0 && decoded.contains(['?', '#']) {
                            let masked = self.mask_url_depth(&decoded, depth - 1);
                            if masked != decoded {
                                let enc: String =
                                    form_urlencoded::byte_serialize(masked.as_bytes()).collect();
                                return format!("{k}={enc}");
                            }
                        }
                        pair.to_string()
                    }
                    None => pair.to_string(),
                })
                .collect::<Vec<_>>()
                .join("&")
        };
        let mut out = base.to_string();
        if let Some(q) = query {
            out.push('?');
            out.push_str(&mask(q));
        }
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(&mask(f));
        }
        out
    }

    /// Remove secret keys from objects (recursively) and drop strings shaped like JWTs.
    /// Returns `None` when the value itself must not be kept.
    pub fn scrub(&self, value: Value) -> Option<Value> {
        match value {
            Value::String(s) if looks_like_jwt(&s) => None,
            Value::String(s) => Some(Value::String(truncate(&s, MAX_VALUE_CHARS))),
            Value::Object(map) => Some(Value::Object(
                map.into_iter()
                    .filter(|(k, _)| !self.is_secret(k))
                    .filter_map(|(k, v)| self.scrub(v).map(|v| (k, v)))
                    .collect(),
            )),
            Value::Array(items) => Some(Value::Array(
                items.into_iter().filter_map(|v| self.scrub(v)).collect(),
            )),
            other => Some(other),
        }
    }
}

/// A URL's parts: what comes before its `?`, its query and its fragment.
pub fn url_parts(url: &str) -> (&str, Option<&str>, Option<&str>) {
    let (head, fragment) = match url.split_once('#') {
        Some((h, f)) => (h, Some(f)),
        None => (url, None),
    };
    match head.split_once('?') {
        Some((base, query)) => (base, Some(query), fragment),
        None => (head, None, fragment),
    }
}

/// Longest string value kept on an event, in characters.
pub const MAX_VALUE_CHARS: usize = 256;

/// Cut `s` to at most `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((idx, _)) => format!("{}…", &s[..idx]),
        None => s.to_string(),
    }
}

/// [`truncate`] for an owned string: returned as is (no copy) when short enough.
pub fn truncate_owned(mut s: String, max: usize) -> String {
    if let Some((idx, _)) = s.char_indices().nth(max) {
        s.truncate(idx);
        s.push('…');
    }
    s
}

/// `eyJ…`-style compact JWS: three base64url parts, the first decoding to a JSON object.
pub fn looks_like_jwt(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    h.starts_with("eyJ")
        && !p.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Split a field name into lowercase words at `_`, `-`, `.`, spaces and camelCase boundaries.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn mask_url_masks_secret_parameters_also_inside_nested_urls() {
        let r = Redactor::default();
        assert_eq!(
            r.mask_url("https://app/cb?code=abc&state=s1#access_token=t&x=1"),
            "https://app/cb?code={code}&state=s1#access_token={access_token}&x=1"
        );
        // Django's login redirect carries the authorization request in `next`.
        let masked = r.mask_url(
            "/accounts/login/?next=/o/authorize/%3Fclient_id%3Dweb%26code_challenge%3DX9y%26state%3Ds",
        );
        assert!(!masked.contains("X9y"), "{masked}");
        assert!(masked.contains("client_id%3Dweb"), "{masked}");
        // Nothing to mask: the URL stays byte for byte.
        let plain = "/accounts/login/?next=/o/authorize/%3Fclient_id%3Dweb";
        assert_eq!(r.mask_url(plain), plain);
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_names_are_secret() {
        let r = Redactor::default();
        for name in [
            "password",
            "newPassword",
            "new_password",
            "client_secret",
            "refresh_token",
            "accessToken",
            "code",
            "reset_code",
            "otpCode",
            "pin",
            "Authorization",
            "Cookie",
            "set-cookie",
            "x-api-key",
        ] {
            assert!(r.is_secret(name), "{name} should be secret");
        }
        for name in [
            "username", "email", "country", "user_id", "app", "reason", "spinner",
        ] {
            assert!(!r.is_secret(name), "{name} should not be secret");
        }
    }

    #[test]
    fn config_extends_the_list() {
        let r = Redactor::new(["ssn_last4".to_string(), "birthdate".to_string()]);
        assert!(r.is_secret("birthdate"));
        assert!(r.is_secret("user.birthDate"));
        assert!(r.is_secret("ssn_last4"));
        assert!(!r.is_secret("email"));
    }

    #[test]
    fn scrub_removes_secret_keys_and_jwts() {
        let r = Redactor::default();
        let v = json!({"user": {"id": "u1", "password": "pw"}, "access_token": "x",
                       "note": "eyJhbGciOi.eyJzdWIiOiJ1MSJ9.c2ln"});
        assert_eq!(r.scrub(v), Some(json!({"user": {"id": "u1"}})));
    }
}
