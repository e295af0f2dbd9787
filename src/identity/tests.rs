//! The verification matrix: every way a token can be good or bad, and the reason each bad one
//! is given.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::json;

use super::jwks::{JwksCache, JwksSource};
use super::keys::{pem_key, ClaimRules, KeySource};
use super::*;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
const SECRET: &[u8] = b"unit-test-hmac-secret-0123456789";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIX}{name}")).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims() -> serde_json::Value {
    json!({"sub": "u-1", "iss": "https://issuer.test", "aud": "api", "exp": now() + 600, "iat": now(), "jti": "j-1"})
}

fn sign(
    alg: Algorithm,
    key: &EncodingKey,
    claims: &serde_json::Value,
    kid: Option<&str>,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, claims, key).unwrap()
}

fn rules() -> ClaimRules {
    ClaimRules {
        issuer: Some(vec!["https://issuer.test".into()]),
        audience: Some(vec!["api".into()]),
        leeway: Duration::from_secs(5),
        ..ClaimRules::default()
    }
}

fn hmac_set() -> KeySet {
    KeySet::new(
        "hs".into(),
        KeySource::Static(DecodingKey::from_secret(SECRET)),
        vec![Algorithm::HS256],
        &rules(),
    )
}

fn pem_set(pub_file: &str, algs: Vec<Algorithm>) -> KeySet {
    let (key, _) = pem_key(&fixture(pub_file)).unwrap();
    KeySet::new("pem".into(), KeySource::Static(key), algs, &rules())
}

fn rsa_private(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture(name)).unwrap()
}

#[test]
fn valid_tokens_of_every_family_verify() {
    let hs = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET),
        &claims(),
        None,
    );
    assert_eq!(hmac_set().verify_cached(&hs).unwrap()["sub"], "u-1");

    let rs = pem_set("rsa1.pub.pem", vec![Algorithm::RS256, Algorithm::PS256]);
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let t = sign(alg, &rsa_private("rsa1.key.pem"), &claims(), None);
        assert_eq!(rs.verify_cached(&t).unwrap()["jti"], "j-1", "{alg:?}");
    }
    let es = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(&fixture("ec256.key.pem")).unwrap(),
        &claims(),
        None,
    );
    assert!(pem_set("ec256.pub.pem", vec![Algorithm::ES256])
        .verify_cached(&es)
        .is_ok());
    let ed = sign(
        Algorithm::EdDSA,
        &EncodingKey::from_ed_pem(&fixture("ed25519.key.pem")).unwrap(),
        &claims(),
        None,
    );
    assert!(pem_set("ed25519.pub.pem", vec![Algorithm::EdDSA])
        .verify_cached(&ed)
        .is_ok());
}

#[test]
fn time_and_audience_checks_name_the_reason() {
    let key = EncodingKey::from_secret(SECRET);
    let mut c = claims();
    c["exp"] = json!(now() - 120);
    assert_eq!(
        hmac_set().verify_cached(&sign(Algorithm::HS256, &key, &c, None)),
        Err(Invalid::Expired)
    );
    let mut c = claims();
    c["nbf"] = json!(now() + 3600);
    assert_eq!(
        hmac_set().verify_cached(&sign(Algorithm::HS256, &key, &c, None)),
        Err(Invalid::NotYetValid)
    );
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    assert_eq!(
        hmac_set().verify_cached(&sign(Algorithm::HS256, &key, &c, None)),
        Err(Invalid::WrongIssuer)
    );
    let mut c = claims();
    c["aud"] = json!("other-api");
    assert_eq!(
        hmac_set().verify_cached(&sign(Algorithm::HS256, &key, &c, None)),
        Err(Invalid::WrongAudience)
    );
    let t = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-entirely-000000"),
        &claims(),
        None,
    );
    assert_eq!(hmac_set().verify_cached(&t), Err(Invalid::BadSignature));
}

#[test]
fn alg_none_is_never_allowed() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64.encode(claims().to_string());
    for t in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.c2ln"),
    ] {
        assert_eq!(hmac_set().verify_cached(&t), Err(Invalid::AlgNotAllowed));
        assert_eq!(
            pem_set("rsa1.pub.pem", vec![Algorithm::RS256]).verify_cached(&t),
            Err(Invalid::AlgNotAllowed)
        );
    }
}

#[test]
fn key_confusion_is_refused() {
    // An HS256 token "signed" with the RSA public key's PEM as an HMAC secret.
    let public_pem = fixture("rsa1.pub.pem");
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &claims(),
        None,
    );
    assert_eq!(
        pem_set("rsa1.pub.pem", vec![Algorithm::RS256]).verify_cached(&forged),
        Err(Invalid::AlgNotAllowed)
    );
    // And an RS256 token against an HMAC key set.
    let rs = sign(
        Algorithm::RS256,
        &rsa_private("rsa1.key.pem"),
        &claims(),
        None,
    );
    assert_eq!(hmac_set().verify_cached(&rs), Err(Invalid::AlgNotAllowed));
}

#[test]
fn garbage_and_truncated_tokens_are_malformed() {
    let good = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET),
        &claims(),
        None,
    );
    let cut = &good[..good.len() / 2];
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    for t in [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "!!!.???.###",
        cut,
        huge.as_str(),
    ] {
        assert_eq!(
            hmac_set().verify_cached(t),
            Err(Invalid::Malformed),
            "{t:.40}"
        );
    }
}

#[test]
fn jwks_file_picks_keys_by_kid_and_reports_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let jwk1: serde_json::Value = serde_json::from_slice(&fixture("rsa1.jwk.json")).unwrap();
    std::fs::write(&path, json!({"keys": [jwk1]}).to_string()).unwrap();
    let cache = Arc::new(JwksCache::new(
        "j".into(),
        JwksSource::File(path.clone()),
        Duration::from_secs(600),
        Duration::ZERO,
    ));
    let set = KeySet::new(
        "j".into(),
        KeySource::Jwks(cache.clone()),
        vec![Algorithm::RS256],
        &rules(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t1 = sign(
            Algorithm::RS256,
            &rsa_private("rsa1.key.pem"),
            &claims(),
            Some("rsa1"),
        );
        // Nothing fetched yet: not the token's fault.
        assert_eq!(set.verify_cached(&t1), Err(Invalid::KeysUnavailable));
        assert!(cache.refresh().await);
        assert!(set.verify_cached(&t1).is_ok());
        let t2 = sign(
            Algorithm::RS256,
            &rsa_private("rsa2.key.pem"),
            &claims(),
            Some("rsa2"),
        );
        assert_eq!(set.verify(&t2).await, Err(Invalid::UnknownKey));
        // Rotate: the file now has rsa2; an unknown kid triggers a refresh (min interval 0).
        let jwk2: serde_json::Value = serde_json::from_slice(&fixture("rsa2.jwk.json")).unwrap();
        std::fs::write(&path, json!({"keys": [jwk2]}).to_string()).unwrap();
        assert!(set.verify(&t2).await.is_ok());
        // A failed refresh keeps the last good set.
        std::fs::remove_file(&path).unwrap();
        assert!(!cache.refresh().await);
        assert!(set.verify_cached(&t2).is_ok());
    });
}

#[test]
fn fingerprints_are_keyed_and_stable() {
    let a = Fingerprinter::new(b"key-one-0123456789");
    let b = Fingerprinter::new(b"key-two-0123456789");
    assert_eq!(a.fingerprint("tok"), a.fingerprint("tok"));
    assert_ne!(a.fingerprint("tok"), b.fingerprint("tok"));
    assert_eq!(a.fingerprint("tok").len(), 64);
    assert!(!a.fingerprint("tok").contains("tok"));
}

#[test]
fn claims_by_name_and_pointer() {
    let t = CheckedToken {
        fingerprint: String::new(),
        claims: json!({"sub": "u", "ext": {"app": "a1"}, "aud": ["x", "y"]})
            .as_object()
            .unwrap()
            .clone(),
        is_jwt: true,
        verified: true,
        invalid: None,
        names: Default::default(),
    };
    assert_eq!(t.claim_str("sub").as_deref(), Some("u"));
    assert_eq!(t.claim_str("/ext/app").as_deref(), Some("a1"));
    assert_eq!(t.claim_str("aud").as_deref(), Some("x"));
    assert_eq!(t.claim_str("missing"), None);
}
