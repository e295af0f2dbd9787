//! Reading values out of request and response bodies: JSON pointers, form fields, token
//! locations (bearer, header, cookie, query, body, form), Basic auth, and a whole event built
//! from a route that reads every kind of source. Layout: byte 0 picks the content type, byte 1
//! the truncation flag, then `POINTER \n BODY`.
#![no_main]

use std::sync::OnceLock;

use authtrail::classify::extract::{
    self, EventBase, Failure, ParsedBody, RequestFacts, ResponseFacts,
};
use authtrail::classify::{self, RequestHead, TokenLocation};
use authtrail::config::Config;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
upstream: http://127.0.0.1:9
routes:
  - id: everything
    match: { path: "/v1/apps/{app}/users/{user_id}" }
    event: account.update
    actor: [ { request_body: /user/name }, { form: username }, { basic_auth: user }, { header: X-User } ]
    app: [ { path: app }, { query: app }, { response_body: /app }, { request_body: /app } ]
    target: { kind: user, from: [ { response_body: /user/id }, { path: user_id } ], display: { response_body: /user/email } }
    outcome: { success: [2xx], failure: [4xx], reason: /error, success_if: { pointer: /ok, equals: true } }
    capture:
      whole: { request_body: "" }
      nested: { response_body: /details }
      form_field: { form: reason }
"#;

fn config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| authtrail::config::load_str(CONFIG, "fuzz.yaml").expect("fuzz config"))
}

const TYPES: &[&str] = &[
    "application/json",
    "application/x-www-form-urlencoded",
    "",
    "text/plain",
    "application/x-www-form-urlencoded; charset=utf-8",
    "APPLICATION/JSON; charset=latin1",
    "application/problem+json",
    "multipart/form-data; boundary=x",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let ct = TYPES[usize::from(data[0]) % TYPES.len()];
    let truncated = data[1] & 1 == 1;
    let rest = &data[2..];
    let (ptr, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&rest[..i]).into_owned(),
            &rest[i + 1..],
        ),
        None => (String::new(), rest),
    };

    let mut headers = HeaderMap::new();
    if !ct.is_empty() {
        headers.insert("content-type", HeaderValue::from_static(ct));
    }
    // The body doubles as every header-borne value, when it is a valid header value.
    if let Ok(v) = HeaderValue::from_bytes(body) {
        for name in ["authorization", "cookie", "x-token", "x-user"] {
            headers.insert(name, v.clone());
        }
    }
    let query = String::from_utf8_lossy(body);
    let path = format!("/v1/apps/{ptr}/users/{query}");
    let (req_parsed, resp_parsed) = (ParsedBody::default(), ParsedBody::default());
    let req = RequestFacts {
        method: &Method::POST,
        path: &path,
        query: Some(&query),
        headers: &headers,
        body,
        body_truncated: truncated,
        parsed: &req_parsed,
        cookies: &[],
    };

    let _ = extract::body_field(&headers, body, truncated, &ptr);
    for loc in [
        TokenLocation::Bearer,
        TokenLocation::Header("x-token".into()),
        TokenLocation::Cookie(ptr.clone()),
        TokenLocation::Query(ptr.clone()),
        TokenLocation::RequestBody(ptr.clone()),
        TokenLocation::Form(ptr.clone()),
        TokenLocation::ResponseBody(ptr.clone()),
    ] {
        if let Some(t) = extract::request_token(&loc, &req) {
            assert!(!t.is_empty());
        }
    }
    let resp = ResponseFacts {
        status: Some(StatusCode::from_u16(200 + u16::from(data[1] >> 1) % 400).unwrap()),
        headers: Some(&headers),
        body,
        body_truncated: truncated,
        failure: (data[1] & 0x80 != 0).then_some(Failure::UpstreamAborted),
        parsed: &resp_parsed,
    };
    let _ = extract::response_token(&ptr, &resp);

    // A whole event from a route that reads every kind of source.
    let cfg = config();
    let head = RequestHead {
        method: &Method::POST,
        host: None,
        path: &path,
    };
    if let Some(m) = classify::classify(&cfg.routes, &head) {
        let base = EventBase {
            id: uuid_from(data),
            time: time::OffsetDateTime::UNIX_EPOCH,
            request_id: "fuzz".into(),
            client: Default::default(),
            duration_ms: 1,
        };
        let event = extract::build_event(&m, &cfg.redactor, &req, &resp, &[], base);
        let json = serde_json::to_string(&event).expect("an event serialises");
        let back: authtrail::event::AuditEvent =
            serde_json::from_str(&json).expect("an event reads back");
        assert_eq!(
            authtrail::store::chain::canonical_event(&back).unwrap(),
            authtrail::store::chain::canonical_event(&event).unwrap()
        );
        for v in [
            &event.actor.id,
            &event.target.as_ref().map(|t| t.id.clone()),
        ]
        .into_iter()
        .flatten()
        {
            // 256 characters, then `…` when something was cut.
            assert!(v.chars().count() <= 257, "values are cut to 256 characters");
        }
    }
});

fn uuid_from(data: &[u8]) -> uuid::Uuid {
    let mut b = [0u8; 16];
    for (i, x) in data.iter().take(16).enumerate() {
        b[i] = *x;
    }
    uuid::Uuid::from_bytes(b)
}
