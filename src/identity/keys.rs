//! Key sets: the keys a token may be verified with, the algorithms it may use, and the claims
//! checks (issuer, audience, leeway). An HMAC secret is never tried for an asymmetric token and
//! a public key never used as an HMAC secret: each key set holds keys of one kind, and only
//! algorithms of that kind are allowed. `none` is never allowed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwks::{JwkKeys, JwksCache};
use super::{Invalid, MAX_TOKEN_LEN};

/// Most verdicts a key set remembers (two generations of half as many each).
pub const VERDICT_CACHE_ENTRIES: usize = 4096;

/// Where a key set's keys come from.
#[derive(Clone)]
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
    /// The claim naming the token's subject (`subject_claim`, default `sub`).
    pub subject_claim: String,
    /// The claim naming the token's app (`app_claim`), if the key set names one.
    pub app_claim: Option<String>,
    /// The same keys with the expectations of ID tokens (`id_token_audience`): ID tokens are
    /// addressed to the client, not the API. `None`: ID tokens are checked like any other.
    pub id_token: Option<Arc<KeySet>>,
    /// Prepared validation per allowed algorithm.
    validations: HashMap<Algorithm, Validation>,
    /// Seconds a token is still accepted after its `exp`.
    leeway: u64,
    /// Verdicts of tokens already checked, by token key (see [`KeySet::cached`]).
    verdicts: Mutex<VerdictCache>,
}

/// What verification said about one token, as remembered: the token's claims (verified ones
/// when `invalid` is `None`, else what it claimed) and the reason it failed.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub claims: Map<String, Value>,
    pub invalid: Option<Invalid>,
}

struct Remembered {
    verdict: Verdict,
    /// Unix seconds after which the verdict may have changed (a verified token expires).
    until: u64,
    /// The JWKS generation it was reached with; a verdict of another generation is stale.
    jwks: Option<Weak<JwkKeys>>,
}

/// A bounded, roughly least-recently-used map: lookups promote an entry into `young`; when
/// `young` is full the older generation is dropped whole. O(1) and never more than
/// [`VERDICT_CACHE_ENTRIES`] entries.
#[derive(Default)]
struct VerdictCache {
    young: HashMap<[u8; 32], Remembered>,
    old: HashMap<[u8; 32], Remembered>,
}

impl VerdictCache {
    fn get(&mut self, key: &[u8; 32]) -> Option<&Remembered> {
        if !self.young.contains_key(key) {
            let promoted = self.old.remove(key)?;
            self.insert(*key, promoted);
        }
        self.young.get(key)
    }

    fn insert(&mut self, key: [u8; 32], value: Remembered) {
        if self.young.len() >= VERDICT_CACHE_ENTRIES / 2 && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    fn remove(&mut self, key: &[u8; 32]) {
        self.young.remove(key);
        self.old.remove(key);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    /// Required `aud` of ID tokens (one of); `None`: `audience` applies to them too.
    pub id_token_audience: Option<Vec<String>>,
    /// Claim holding the subject; `None`: `sub`.
    pub subject_claim: Option<String>,
    /// Claim holding the app (tenant), if any.
    pub app_claim: Option<String>,
}

impl KeySet {
    pub fn new(
        name: String,
        source: KeySource,
        algorithms: Vec<Algorithm>,
        rules: &ClaimRules,
    ) -> KeySet {
        let id_token = rules.id_token_audience.as_ref().map(|aud| {
            let id_rules = ClaimRules {
                audience: Some(aud.clone()),
                id_token_audience: None,
                ..rules.clone()
            };
            Arc::new(KeySet::new(
                format!("{name}#id_token"),
                source.clone(),
                algorithms.clone(),
                &id_rules,
            ))
        });
        let validations = algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = rules.leeway.as_secs();
                v.validate_nbf = true;
                // A configured issuer or audience must be present in the token (and of the
                // right type): jsonwebtoken only compares them when they are there.
                let mut required = vec!["exp"];
                match &rules.audience {
                    Some(aud) => {
                        v.set_audience(aud);
                        required.push("aud");
                    }
                    None => v.validate_aud = false,
                }
                if let Some(iss) = &rules.issuer {
                    v.set_issuer(iss);
                    required.push("iss");
                }
                v.set_required_spec_claims(&required);
                (*alg, v)
            })
            .collect();
        KeySet {
            name,
            source,
            algorithms,
            subject_claim: rules.subject_claim.clone().unwrap_or_else(|| "sub".into()),
            app_claim: rules.app_claim.clone(),
            id_token,
            validations,
            leeway: rules.leeway.as_secs(),
            verdicts: Mutex::new(VerdictCache::default()),
        }
    }

    /// The key material in force now: a verdict reached with other keys does not apply.
    fn current_jwks(&self) -> Option<Arc<JwkKeys>> {
        self.jwks().and_then(|c| c.current())
    }

    /// The remembered verdict for the token whose keyed hash is `key`, if it still holds: same
    /// JWKS generation, and (for a verified token) not past `exp` plus leeway — exactly when
    /// verifying again would say the same.
    pub fn cached(&self, key: &[u8; 32]) -> Option<Verdict> {
        let jwks = self.current_jwks();
        let mut cache = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        let hit = cache.get(key)?;
        let same_keys = match (&hit.jwks, &jwks) {
            (None, None) => true,
            (Some(w), Some(now)) => std::ptr::eq(w.as_ptr(), Arc::as_ptr(now)),
            _ => false,
        };
        if same_keys && unix_now() <= hit.until {
            return Some(hit.verdict.clone());
        }
        cache.remove(key);
        None
    }

    /// The key generation to pass to [`remember`](Self::remember): taken *before* verifying,
    /// so a verdict is never filed under keys it was not reached with.
    pub fn key_generation(&self) -> KeyGeneration {
        KeyGeneration(self.current_jwks().map(|g| Arc::downgrade(&g)))
    }

    /// Keep a verdict for later requests presenting the same token. Only verdicts that cannot
    /// change while the key material stays the same are kept: a verified token (until its
    /// `exp` plus leeway) and an expired one. Failures anyone can mint (bad signature, garbage),
    /// verdicts that change with time (`not_yet_valid`) or with a key fetch (`unknown_key`,
    /// `keys_unavailable`) are never cached.
    pub fn remember(&self, key: [u8; 32], at: KeyGeneration, verdict: &Verdict) {
        let until = match verdict.invalid {
            None => match verdict.claims.get("exp").and_then(Value::as_u64) {
                Some(exp) => exp.saturating_add(self.leeway),
                None => return,
            },
            // A signature that verified, on a token past its expiry: that stays so.
            Some(Invalid::Expired) => u64::MAX,
            Some(_) => return,
        };
        if self.jwks().is_some() && at.0.is_none() {
            return;
        }
        let mut cache = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(
            key,
            Remembered {
                verdict: verdict.clone(),
                until,
                jwks: at.0,
            },
        );
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

/// The key generation a verification started with (see [`KeySet::remember_token`]).
pub struct KeyGeneration(Option<Weak<JwkKeys>>);

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
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => Invalid::WrongIssuer,
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => Invalid::WrongAudience,
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
