//! Who acted, in which app, proven. This module owns JWT verification against the configured
//! key sets (HMAC secrets, PEM public keys, JWKS), token fingerprints, and the client address
//! as seen through trusted proxies.
//!
//! It never stores or logs a token: callers get a [`CheckedToken`] with a keyed fingerprint and
//! the claims, and the raw token stays with the request that carried it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value};

use crate::hex;

pub mod client_ip;
pub mod jwks;
pub mod keys;
pub mod lineage;
pub mod require;

pub use client_ip::TrustedProxies;
pub use keys::KeySet;

/// Where a token is read from, for claim sources and token recording.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenLocation {
    /// `Authorization: Bearer …`.
    Bearer,
    /// A request header (a `Bearer ` prefix is removed).
    Header(String),
    Cookie(String),
    Query(String),
    /// A JSON pointer into the request body (for form bodies, `/field` names the field).
    RequestBody(String),
    Form(String),
    /// A JSON pointer into the response body: a token the upstream issued.
    ResponseBody(String),
    /// A parameter of the response's `Location` URL (query or fragment): an authorization code
    /// (or implicit-flow token) the upstream issued in a redirect.
    Redirect(String),
    /// A cookie the response sets (`Set-Cookie: NAME=…`): a session the upstream issued.
    SetCookie(String),
}

impl TokenLocation {
    pub fn label(&self) -> String {
        match self {
            TokenLocation::Bearer => "bearer".to_string(),
            TokenLocation::Header(h) => {
                let mut s = ["header:", h].concat();
                s.make_ascii_lowercase();
                s
            }
            TokenLocation::Cookie(c) => ["cookie:", c].concat(),
            TokenLocation::Query(q) => ["query:", q].concat(),
            TokenLocation::RequestBody(p) => ["request_body:", p].concat(),
            TokenLocation::Form(f) => ["form:", f].concat(),
            TokenLocation::ResponseBody(p) => ["response_body:", p].concat(),
            TokenLocation::Redirect(p) => ["location:", p].concat(),
            TokenLocation::SetCookie(c) => ["set_cookie:", c].concat(),
        }
    }

    /// True for tokens the upstream hands out (read from the response).
    pub fn is_issued(&self) -> bool {
        matches!(
            self,
            TokenLocation::ResponseBody(_)
                | TokenLocation::Redirect(_)
                | TokenLocation::SetCookie(_)
        )
    }

    /// True for an ID token: a request or response body field (or form field) named `id_token`.
    pub fn is_id_token(&self) -> bool {
        match self {
            TokenLocation::RequestBody(p) | TokenLocation::ResponseBody(p) => {
                p.rsplit('/').next() == Some("id_token")
            }
            TokenLocation::Form(f) => f == "id_token",
            _ => false,
        }
    }

    /// The key set a token here is verified with: for an ID token, the set's ID-token variant
    /// (`NAME#id_token`, see [`crate::identity::Identity::keyset`]), which applies the set's
    /// `id_token_audience`.
    pub fn keys_for(&self, keys: &Option<String>) -> Option<String> {
        if self.is_id_token() {
            Some(format!(
                "{}{}",
                keys.as_deref().unwrap_or(""),
                crate::identity::ID_TOKEN_KEYS
            ))
        } else {
            keys.clone()
        }
    }
}

/// Suffix of a key set name that selects its ID-token variant (see [`Identity::keyset`]).
pub const ID_TOKEN_KEYS: &str = "#id_token";

/// Longest token we look at; anything longer is `malformed` without being parsed.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invalid {
    Expired,
    NotYetValid,
    BadSignature,
    UnknownKey,
    WrongIssuer,
    WrongAudience,
    Malformed,
    AlgNotAllowed,
    /// The key set could not be loaded (JWKS unreachable and nothing cached): not the token's fault.
    KeysUnavailable,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Expired => "expired",
            Invalid::NotYetValid => "not_yet_valid",
            Invalid::BadSignature => "bad_signature",
            Invalid::UnknownKey => "unknown_key",
            Invalid::WrongIssuer => "wrong_issuer",
            Invalid::WrongAudience => "wrong_audience",
            Invalid::Malformed => "malformed",
            Invalid::AlgNotAllowed => "alg_not_allowed",
            Invalid::KeysUnavailable => "keys_unavailable",
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token after inspection. Holds no part of the token itself.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedToken {
    /// HMAC-SHA-256 of the token under the fingerprint key, lowercase hex.
    pub fingerprint: String,
    /// The claims: verified when `verified`, else as the token claims them (or empty when the
    /// token is opaque or unreadable).
    pub claims: Map<String, Value>,
    pub is_jwt: bool,
    pub verified: bool,
    /// Set when the token is a JWT that failed verification.
    pub invalid: Option<Invalid>,
    /// Which claims name the subject and the app (from the key set it was checked with).
    pub names: ClaimNames,
}

/// The claims a key set names for the subject (`subject_claim`, default `sub`) and the app
/// (`app_claim`, none by default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimNames {
    /// `None`: `sub`.
    pub subject: Option<String>,
    pub app: Option<String>,
}

impl ClaimNames {
    pub fn of(ks: &KeySet) -> ClaimNames {
        ClaimNames {
            subject: (ks.subject_claim != "sub").then(|| ks.subject_claim.clone()),
            app: ks.app_claim.clone(),
        }
    }

    pub fn subject(&self) -> &str {
        self.subject.as_deref().unwrap_or("sub")
    }
}

impl CheckedToken {
    /// A claim by name (`sub`) or JSON pointer (`/ext/app`).
    pub fn claim(&self, name: &str) -> Option<&Value> {
        if let Some(pointer) = name.strip_prefix('/') {
            let mut cur: Option<&Value> = None;
            for (i, part) in pointer.split('/').enumerate() {
                let part = part.replace("~1", "/").replace("~0", "~");
                cur = if i == 0 {
                    self.claims.get(&part)
                } else {
                    cur.and_then(|v| v.get(&part))
                };
            }
            cur
        } else {
            self.claims.get(name)
        }
    }

    pub fn claim_str(&self, name: &str) -> Option<String> {
        match self.claim(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Array(a) => a.first().and_then(|v| v.as_str()).map(str::to_string),
            _ => None,
        }
    }

    /// The subject as the token states it (its key set's `subject_claim`), verified or not.
    pub fn subject(&self) -> Option<String> {
        self.claim_str(self.names.subject())
    }

    /// The app as the token states it (its key set's `app_claim`), verified or not.
    pub fn app(&self) -> Option<String> {
        self.names.app.as_deref().and_then(|c| self.claim_str(c))
    }

    pub fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(Value::as_i64)
    }
}

/// Keyed fingerprints: HMAC-SHA-256, so a fingerprint cannot be reversed or brute-forced without
/// the key, yet anyone holding the key and a token can compute its fingerprint.
#[derive(Clone)]
pub struct Fingerprinter {
    key: aws_lc_rs::hmac::Key,
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter(..)")
    }
}

impl Fingerprinter {
    pub fn new(key: &[u8]) -> Fingerprinter {
        Fingerprinter {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        }
    }

    pub fn fingerprint(&self, token: &str) -> String {
        hex::encode(&self.tag(token))
    }

    fn tag(&self, token: &str) -> [u8; 32] {
        let tag = aws_lc_rs::hmac::sign(&self.key, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag.as_ref()[..32]);
        out
    }
}

/// The verified-identity configuration the proxy runs with.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub keysets: HashMap<String, Arc<KeySet>>,
    /// Key set used where a source or route names none.
    pub default_keys: Option<String>,
    pub fingerprinter: Option<Fingerprinter>,
    pub trusted: TrustedProxies,
    /// Issuances remembered in memory for identity by lineage (`trust.lineage_cache`).
    pub lineage_cache: usize,
}

/// Issued tokens, codes and session cookies remembered in memory by default. Each entry holds
/// a fingerprint (64 hex digits, twice: map key and eviction order), an event id and the
/// actor's and app's names (not measured; size it with `trust.lineage_cache`).
pub const DEFAULT_LINEAGE_CACHE: usize = 50_000;

impl Identity {
    /// The key set named `name`, or the default one. `NAME#id_token` (or `#id_token` for the
    /// default set) is the set's variant for ID tokens, when it has one (`id_token_audience`).
    pub fn keyset(&self, name: Option<&str>) -> Option<&Arc<KeySet>> {
        if let Some(base) = name.and_then(|n| n.strip_suffix(ID_TOKEN_KEYS)) {
            let base = Some(base).filter(|b| !b.is_empty());
            let ks = self.keysets.get(base.or(self.default_keys.as_deref())?)?;
            return Some(ks.id_token.as_ref().unwrap_or(ks));
        }
        self.keysets.get(name.or(self.default_keys.as_deref())?)
    }

    /// Inspect a token: fingerprint, claims, and (with a key set) verification. Waits for a
    /// JWKS refresh when the token names a key the cache does not have.
    ///
    /// A token the key set has already verified (or found expired) is answered from its
    /// verdict cache, keyed by the token's keyed hash, until the token expires.
    pub async fn check(&self, token: &str, keys: Option<&str>) -> CheckedToken {
        let ks = self.keyset(keys);
        let (fingerprint, key) = self.keys_of(token, ks.is_some());
        let (Some(ks), Some(key)) = (ks, key) else {
            return inspect(fingerprint, token, ks);
        };
        if let Some(v) = ks.cached(&key) {
            return from_verdict(fingerprint, v, ks);
        }
        let generation = ks.key_generation();
        let mut checked = inspect(fingerprint, token, Some(ks));
        if checked.is_jwt {
            apply(&mut checked, ks.verify(token).await);
            remember(ks, key, generation, &checked);
        }
        checked
    }

    /// Like [`check`](Self::check) without waiting: an unknown key triggers a background
    /// refresh and is reported as `unknown_key`.
    pub fn check_now(&self, token: &str, keys: Option<&str>) -> CheckedToken {
        let ks = self.keyset(keys);
        let (fingerprint, key) = self.keys_of(token, ks.is_some());
        let (Some(ks), Some(key)) = (ks, key) else {
            return inspect(fingerprint, token, ks);
        };
        if let Some(v) = ks.cached(&key) {
            return from_verdict(fingerprint, v, ks);
        }
        let generation = ks.key_generation();
        let mut checked = inspect(fingerprint, token, Some(ks));
        if checked.is_jwt {
            apply(&mut checked, ks.verify_cached(token));
            remember(ks, key, generation, &checked);
        }
        checked
    }

    /// A value recorded by fingerprint only, never parsed or verified: a session cookie.
    pub fn opaque(&self, value: &str) -> CheckedToken {
        CheckedToken {
            fingerprint: self
                .fingerprinter
                .as_ref()
                .map(|f| f.fingerprint(value))
                .unwrap_or_default(),
            claims: Map::new(),
            is_jwt: false,
            verified: false,
            invalid: None,
            names: ClaimNames::default(),
        }
    }

    /// The token's fingerprint (empty without a fingerprint key) and, when a key set will
    /// verify it, its verdict-cache key: the fingerprint's HMAC tag, else a SHA-256 of the token.
    fn keys_of(&self, token: &str, verifying: bool) -> (String, Option<[u8; 32]>) {
        match &self.fingerprinter {
            Some(f) => {
                let tag = f.tag(token);
                (hex::encode(&tag), Some(tag))
            }
            None if verifying => {
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
                let mut key = [0u8; 32];
                key.copy_from_slice(&d.as_ref()[..32]);
                (String::new(), Some(key))
            }
            None => (String::new(), None),
        }
    }
}

fn inspect(fingerprint: String, token: &str, ks: Option<&Arc<KeySet>>) -> CheckedToken {
    let claims = unverified_claims(token);
    CheckedToken {
        fingerprint,
        is_jwt: claims.is_some(),
        claims: claims.unwrap_or_default(),
        verified: false,
        invalid: None,
        names: ks.map(|k| ClaimNames::of(k)).unwrap_or_default(),
    }
}

/// A checked token from a remembered verdict (only JWTs that reached a verdict are remembered).
fn from_verdict(fingerprint: String, v: keys::Verdict, ks: &KeySet) -> CheckedToken {
    CheckedToken {
        fingerprint,
        claims: v.claims,
        is_jwt: true,
        verified: v.invalid.is_none(),
        invalid: v.invalid,
        names: ClaimNames::of(ks),
    }
}

fn remember(ks: &KeySet, key: [u8; 32], generation: keys::KeyGeneration, checked: &CheckedToken) {
    if checked.invalid.is_some_and(|i| i != Invalid::Expired) {
        return;
    }
    let verdict = keys::Verdict {
        claims: checked.claims.clone(),
        invalid: checked.invalid,
    };
    ks.remember(key, generation, &verdict);
}

fn apply(checked: &mut CheckedToken, result: Result<Map<String, Value>, Invalid>) {
    match result {
        Ok(claims) => {
            checked.claims = claims;
            checked.verified = true;
        }
        Err(why) => checked.invalid = Some(why),
    }
}

/// The payload of a compact JWS read without checking anything — for recording what an invalid
/// token claimed (marked unverified), never for trusting it. `None` for anything not shaped
/// like a JWT.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&b64.decode(h).ok()?).ok()?;
    header.get("alg")?;
    match serde_json::from_slice(&b64.decode(p).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Token kind from where it was found (`/refresh_token` → refresh) or its own claims.
pub fn token_kind(location: &str, checked: &CheckedToken) -> String {
    let l = location.to_ascii_lowercase();
    for (needle, kind) in [
        ("refresh", "refresh"),
        ("id_token", "id"),
        ("access", "access"),
        ("code", "code"),
    ] {
        if l.contains(needle) {
            return kind.to_string();
        }
    }
    for claim in ["token_type", "typ", "token_use"] {
        if let Some(v) = checked.claim_str(claim) {
            let v = v.to_ascii_lowercase();
            if v.contains("refresh") {
                return "refresh".into();
            }
            if v.contains("access") || v == "at+jwt" {
                return "access".into();
            }
            if v == "id" {
                return "id".into();
            }
        }
    }
    if l == "bearer" {
        return "access".into();
    }
    "token".into()
}

#[cfg(test)]
mod tests;
