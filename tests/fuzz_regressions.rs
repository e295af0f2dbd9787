//! Every crash the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found, replayed as a plain test so
//! it stays fixed. Each test names its target and the input that broke it.

use authtrail::admin::filter::{self, Params};
use authtrail::identity::Invalid;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
}

/// `admin_params`: `since=999999999d` subtracted 2.7 million years from now and panicked in
/// `time` ("overflow subtracting duration from date") — in every admin API handler that takes
/// filters, and in `authtrail query --since`.
#[test]
fn a_duration_reaching_past_year_minus_9999_is_an_error_not_a_panic() {
    let err = filter::parse_time("999999999d", now()).unwrap_err();
    assert_eq!(err, "the duration reaches too far into the past");
    // The fuzzer's input, as the API would receive it.
    let err = Params::from_query_string(
        Some("since=999999999d&u999m&until=2msiml9d&u999m&until=2msiml="),
        true,
        &["format", "bucket"],
        1000,
        now(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid since \"999999999d\": the duration reaches too far into the past"
    );
    // The largest duration the config syntax allows, too.
    assert!(filter::parse_time(&format!("{}ms", u64::MAX), now()).is_err());
    // Ordinary values still work.
    assert_eq!(
        filter::parse_time("24h", now()).unwrap(),
        now() - time::Duration::hours(24)
    );
}

const SECRET: &str = "fuzz-secret-0123456789abcdef";

fn hmac_keys() -> authtrail::config::Config {
    let yaml = format!(
        "upstream: http://127.0.0.1:9\nkeys:\n  hmac:\n    secret: {SECRET}\n    algorithms: [HS256]\n    \
         issuer: https://issuer.example\n    audience: [api]\n  open:\n    secret: {SECRET}\n    \
         algorithms: [HS256]\ndefaults: {{ keys: hmac }}\n"
    );
    authtrail::config::load_str(&yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn sign(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// `jwt`: a correctly signed token *without* an `iss` claim verified against a key set with
/// `issuer:` configured (jsonwebtoken compares issuer and audience only when the token has
/// them). docs/configuration.md promises both are checked when given; now a missing or
/// mistyped `iss` is `wrong_issuer` and a missing or mistyped `aud` is `wrong_audience`.
#[test]
fn a_configured_issuer_and_audience_must_be_in_the_token() {
    let cfg = hmac_keys();
    let ks = &cfg.identity.keysets["hmac"];
    let exp = 4_102_444_800_i64;
    let good =
        json!({"sub": "a", "exp": exp, "iss": "https://issuer.example", "aud": ["x", "api"]});
    assert!(ks.verify_cached(&sign(good)).is_ok());

    let cases = [
        (
            json!({"sub": "a", "exp": exp, "aud": "api"}),
            Invalid::WrongIssuer,
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": 5, "aud": "api"}),
            Invalid::WrongIssuer,
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": {"x": 1}, "aud": "api"}),
            Invalid::WrongIssuer,
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": "https://issuer.example"}),
            Invalid::WrongAudience,
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": "https://issuer.example", "aud": 7}),
            Invalid::WrongAudience,
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": "https://evil.example", "aud": "api"}),
            Invalid::WrongIssuer,
        ),
    ];
    for (claims, want) in cases {
        assert_eq!(
            ks.verify_cached(&sign(claims.clone())),
            Err(want),
            "{claims}"
        );
    }

    // The fuzzer's token: HS256, correctly signed, its `iss` key mangled so there is none.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","dki":"1"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        "{\"sub\":\"a\",\"exp\":4102444800,\"iss\u{fffd}\u{fffd}\u{fffd}\":\"https://isurse.example\",\
         \"aud\":[\"x\",\"api\"],\"fxt\":{\"app\":\"a1\"}}",
    );
    let input = format!("{header}.{claims}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref());
    let token = format!("{input}.{sig}");
    assert_eq!(ks.verify_cached(&token), Err(Invalid::WrongIssuer));
    let checked = cfg.identity.check_now(&token, Some("hmac"));
    assert!(!checked.verified);

    // A key set without issuer or audience rules still takes tokens without them.
    let open = &cfg.identity.keysets["open"];
    assert!(open
        .verify_cached(&sign(json!({"sub": "a", "exp": exp})))
        .is_ok());
}
