//! Key sets: the keys a token may be verified with, the algorithms it may use, and the claims
//! checks (issuer, audience, leeway). An HMAC secret is never tried for an asymmetric token and
//! a public key never used as an HMAC secret: each key set holds keys of one kind, and only
//! algorithms of that kind are allowed. `none` is never allowed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use super::{Invalid, MAX_TOKEN_LEN};

/// Where a key set's keys come from.
pub enum KeySource {
    /// Fixed keys (an HMAC secret or a PEM public key); `kid` is not consulted.
    Static(DecodingKey),
    /// A JWKS document, fetched and refreshed, keys chosen by `kid`.
    Jwks(Arc<JwksCache>),
}

/// One named key set from the config.
pub struct KeySet {
    pub name: String,
    pub source: KeySource,
    pub algorithms: Vec<Algorithm>,
    /// Prepared validation per allowed algorithm.
    validations: HashMap<Algorithm, Validation>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("name", &self.name)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Claims checks shared by every algorithm of a key set.
#[derive(Clone, Debug, Default)]
pub struct ClaimRules {
    pub issuer: Option<Vec<String>>,
    pub audience: Option<Vec<String>>,
    pub leeway: Duration,
}

/// The family of an algorithm: keys of one family never verify another's.
pub fn family(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "hmac",
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => "rsa",
        Algorithm::ES256 | Algorithm::ES384 => "ec",
        Algorithm::EdDSA => "okp",
        // An algorithm this code does not know verifies nothing.
        _ => "unknown",
    }
}

impl KeySet {
    pub fn new(
        name: String,
        source: KeySource,
        algorithms: Vec<Algorithm>,
        rules: &ClaimRules,
    ) -> KeySet {
        let validations = algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = rules.leeway.as_secs();
                v.validate_nbf = true;
                match &rules.audience {
                    Some(aud) => v.set_audience(aud),
                    None => v.validate_aud = false,
                }
                if let Some(iss) = &rules.issuer {
                    v.set_issuer(iss);
                }
                (*alg, v)
            })
            .collect();
        KeySet {
            name,
            source,
            algorithms,
            validations,
        }
    }

    pub fn jwks(&self) -> Option<&Arc<JwksCache>> {
        match &self.source {
            KeySource::Jwks(c) => Some(c),
            KeySource::Static(_) => None,
        }
    }

    /// Verify signature and claims; for a JWKS key set, refresh once (rate-limited) when the
    /// token names a key the cache does not hold.
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, Invalid> {
        match self.verify_cached(token) {
            Err(Invalid::UnknownKey | Invalid::KeysUnavailable) if self.jwks().is_some() => {
                if let Some(cache) = self.jwks() {
                    cache.refresh_if_due().await;
                }
                self.verify_cached(token)
            }
            other => other,
        }
    }

    /// Verify against the keys held now, without waiting.
    pub fn verify_cached(&self, token: &str) -> Result<Map<String, Value>, Invalid> {
        let header = read_header(token)?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(Invalid::Malformed)?;
        let alg: Algorithm = alg_name.parse().map_err(|_| Invalid::AlgNotAllowed)?;
        if !self.algorithms.contains(&alg) {
            return Err(Invalid::AlgNotAllowed);
        }
        let validation = self.validations.get(&alg).ok_or(Invalid::AlgNotAllowed)?;
        match &self.source {
            KeySource::Static(key) => decode(token, key, validation),
            KeySource::Jwks(cache) => {
                let Some(set) = cache.current() else {
                    cache.refresh_in_background();
                    return Err(Invalid::KeysUnavailable);
                };
                let kid = header.get("kid").and_then(Value::as_str);
                match set.find(kid, alg) {
                    Some(key) => decode(token, key, validation),
                    None => {
                        cache.refresh_in_background();
                        Err(Invalid::UnknownKey)
                    }
                }
            }
        }
    }
}

/// The JOSE header, size-checked. `jku`, `x5u`, `jwk` and `x5c` are never followed: keys come
/// from the config only.
fn read_header(token: &str) -> Result<Map<String, Value>, Invalid> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Invalid::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| Invalid::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Invalid::Malformed),
    }
}

fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Map<String, Value>, Invalid> {
    use jsonwebtoken::errors::ErrorKind;
    match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::ExpiredSignature => Invalid::Expired,
            ErrorKind::ImmatureSignature => Invalid::NotYetValid,
            ErrorKind::InvalidSignature => Invalid::BadSignature,
            ErrorKind::InvalidIssuer => Invalid::WrongIssuer,
            ErrorKind::InvalidAudience => Invalid::WrongAudience,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::MissingAlgorithm => Invalid::AlgNotAllowed,
            // A key of the wrong kind for the token's algorithm.
            ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_) => Invalid::BadSignature,
            _ => Invalid::Malformed,
        }),
    }
}

/// A PEM public key and the algorithms its kind allows by default.
pub fn pem_key(pem: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Ok((k, vec![Algorithm::RS256]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        return Ok((k, vec![Algorithm::ES256]));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        return Ok((k, vec![Algorithm::EdDSA]));
    }
    Err("not a PEM RSA, EC or Ed25519 public key".to_string())
}

/// The family of a PEM key (for checking configured algorithms against it).
pub fn pem_family(pem: &[u8]) -> Option<&'static str> {
    if DecodingKey::from_rsa_pem(pem).is_ok() {
        Some("rsa")
    } else if DecodingKey::from_ec_pem(pem).is_ok() {
        Some("ec")
    } else if DecodingKey::from_ed_pem(pem).is_ok() {
        Some("okp")
    } else {
        None
    }
}
