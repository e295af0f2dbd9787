//! JWT header and claims parsing and verification against HMAC, RSA and EC key sets, plus JWKS
//! documents. Byte 0 picks the mode:
//! - 0: the rest is a token, as presented;
//! - 1: `HEADER_JSON \n CLAIMS_JSON`, encoded and signed with the HMAC key set's secret, so the
//!   fuzzer reaches the claims checks (exp, nbf, iss, aud of every JSON type);
//! - 2: like 1 with an empty signature (`alg: none` style);
//! - 3: the rest is a JWKS document.
//!
//! Besides never panicking: a token verifies only with an algorithm its key set allows (never
//! `none`), its verified claims are the ones it carries, and issuer, audience and expiry hold.
#![no_main]

use std::sync::OnceLock;

use authtrail::config::Config;
use authtrail::identity::{self, jwks};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";

fn config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let indent = |pem: &str| {
            pem.lines()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        };
        let yaml = format!(
            "upstream: http://127.0.0.1:9\n\
             trust: {{ fingerprint_key: fuzz-fingerprint-key-0123 }}\n\
             defaults: {{ keys: hmac }}\n\
             keys:\n\
             \x20 hmac:\n    secret: {secret}\n    algorithms: [HS256, HS384, HS512]\n    \
             issuer: https://issuer.example\n    audience: [api]\n\
             \x20 hmac_open:\n    secret: {secret}\n    algorithms: [HS256]\n\
             \x20 rsa:\n    algorithms: [RS256, PS256]\n    public_key_pem: |\n{rsa}\
             \x20 ec:\n    algorithms: [ES256]\n    public_key_pem: |\n{ec}",
            secret = std::str::from_utf8(SECRET).unwrap(),
            rsa = indent(include_str!("../../tests/fixtures/rsa1.pub.pem")),
            ec = indent(include_str!("../../tests/fixtures/ec256.pub.pem")),
        );
        authtrail::config::load_str(&yaml, "fuzz.yaml").unwrap_or_else(|e| panic!("{e}"))
    })
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 4 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        m @ (1 | 2) => {
            let text = String::from_utf8_lossy(rest);
            let (h, p) = text.split_once('\n').unwrap_or((&text, "{}"));
            let signing_input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(h),
                URL_SAFE_NO_PAD.encode(p)
            );
            let sig = if m == 1 {
                URL_SAFE_NO_PAD.encode(hmac_sha256(SECRET, signing_input.as_bytes()))
            } else {
                String::new()
            };
            format!("{signing_input}.{sig}")
        }
        _ => {
            if let Ok(set) = jwks::parse_jwks(rest) {
                for k in &set.keys {
                    for alg in [
                        Algorithm::HS256,
                        Algorithm::RS256,
                        Algorithm::ES256,
                        Algorithm::EdDSA,
                    ] {
                        let _ = set.find(k.kid.as_deref(), alg);
                        let _ = set.find(None, alg);
                    }
                }
            }
            return;
        }
    };

    let unverified = identity::unverified_claims(&token);
    let header: Option<serde_json::Map<String, Value>> = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let alg = header
        .as_ref()
        .and_then(|h| h.get("alg"))
        .and_then(Value::as_str)
        .map(str::to_string);

    let cfg = config();
    for (name, ks) in &cfg.identity.keysets {
        let result = ks.verify_cached(&token);
        let checked = cfg.identity.check_now(&token, Some(name));
        assert_eq!(checked.verified, result.is_ok());
        let Ok(claims) = result else {
            continue;
        };
        let alg = alg.as_deref().expect("a verified token names its alg");
        assert_ne!(alg.to_ascii_lowercase(), "none");
        assert!(
            ks.algorithms.iter().any(|a| format!("{a:?}") == alg),
            "{name}: verified with {alg}, not in {:?}",
            ks.algorithms
        );
        assert_eq!(
            Some(&claims),
            unverified.as_ref(),
            "{name}: verified claims differ"
        );
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .expect("exp is required");
        assert!(exp as i64 >= now() - 120, "{name}: expired token verified");
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64) {
            assert!(nbf as i64 <= now() + 120, "{name}: immature token verified");
        }
        if name == "hmac" {
            assert_eq!(
                claims.get("iss"),
                Some(&Value::from("https://issuer.example"))
            );
            let aud_ok = match claims.get("aud") {
                Some(Value::String(s)) => s == "api",
                Some(Value::Array(a)) => a.iter().any(|v| v == "api"),
                _ => false,
            };
            assert!(
                aud_ok,
                "{name}: wrong audience verified: {:?}",
                claims.get("aud")
            );
        }
        let _ = checked.claim_str("/ext/app");
        let _ = identity::token_kind("bearer", &checked);
    }
});
