//! The admin API's OpenAPI document (`src/admin/openapi.json`, served at `/v1/openapi.json`)
//! against the server that serves it.
//!
//! - The document is valid OpenAPI 3.1 (openapi-spec-validator).
//! - A real sidecar (127.0.0.1:0, real SQLite store behind a switch that can fail its reads, a
//!   real upstream, events from proxied traffic and from a fixture) answers every documented
//!   operation with every documented status: each real response's status must be documented
//!   for its operation, its content type must be one the document gives for that status, its
//!   required headers must be there, and its body must be valid against the schema the
//!   document gives (every `$ref` resolved, formats asserted: openapi-schema-validator's
//!   OpenAPI 3.1 dialect). The reverse holds too: an operation or status the document
//!   promises and this test never saw fails the test.
//!
//! The structural checks (status, content type, headers, both directions) run everywhere; the
//! two validators come from PyPI (tests/openapi/requirements.txt, installed by `.ci/run` into
//! tests/openapi/py-deps): without them those parts are skipped, or fail under `CI=true`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use authtrail::admin::auth::token_sha256_hex;
use authtrail::store::sqlite::SqliteStore;
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use support::admin::{fixture, t0};
use support::fault::{FaultStore, Running};
use support::fixtures::AppendFixtures;
use support::harness::{send, Reply};
use support::{thirdparty, upstream};

/// Sees every app; may read, export and reload.
const TOKEN_ALL: &str = "oa-all-5d1e9c7b3a";
/// Sees app-a; may read and reload (a reload needs apps ["*"]: refused).
const TOKEN_ALPHA: &str = "oa-alpha-8e2f4a6c1d";
/// Sees every app; may export only.
const TOKEN_SIEM: &str = "oa-siem-2b7d5f9e4c";
/// Matches no credential.
const TOKEN_WRONG: &str = "oa-wrong-0000000000";

const DOCUMENT: &str = include_str!("../src/admin/openapi.json");

/// Documented (method, path, status) that no real request can produce, each with the reason.
/// Empty: every promise of the document is exercised below.
const UNEXERCISED: &[(&str, &str, &str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn py_deps() -> PathBuf {
    root().join("tests/openapi/py-deps")
}

/// Run tests/openapi/check.py on `doc` (and `bodies`, when given); `None` when its packages
/// are not installed (skipped; a panic under `CI=true`).
fn run_checker(doc: &Path, bodies: Option<&Path>) -> Option<(bool, String)> {
    let needs = [
        py_deps().join("openapi_spec_validator"),
        py_deps().join("openapi_schema_validator"),
    ];
    if thirdparty::skip_unless_installed("openapi-spec-validator", &needs).is_some() {
        return None;
    }
    let mut c = std::process::Command::new("python3");
    c.arg(root().join("tests/openapi/check.py"))
        .arg(doc)
        .env("PYTHONPATH", py_deps());
    if let Some(b) = bodies {
        c.arg(b);
    }
    let out = c.output().expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("openapi.json");
    std::fs::write(&doc, DOCUMENT).unwrap();
    if let Some((ok, out)) = run_checker(&doc, None) {
        assert!(ok, "openapi-spec-validator:\n{out}");
    }
}

/// `~` and `/` escaped for a JSON pointer segment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The document, and what the test saw of it.
struct Recorder {
    doc: Value,
    /// (method, path template, status) answered.
    seen: BTreeSet<(String, String, String)>,
    /// `{label, schema, body}` for the schema validator.
    bodies: Vec<Value>,
    failures: Vec<String>,
    admin: std::net::SocketAddr,
}

impl Recorder {
    /// The document's object at `pointer` (`#/...`), following one `$ref` if it is one.
    fn resolve(&self, pointer: &str) -> (String, &Value) {
        let v = self
            .doc
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{pointer} is not in the document"));
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => (r.to_string(), self.resolve(r).1),
            None => (pointer.to_string(), v),
        }
    }

    /// Send a request to the admin listener and check its answer against the document's
    /// operation `method template`. `uri` is the path and query actually sent.
    async fn call(
        &mut self,
        method: Method,
        template: &str,
        uri: &str,
        token: Option<&str>,
    ) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("user-agent", "openapi-test/1.0")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let url = format!("http://{}{uri}", self.admin);
        let reply = send(method.clone(), &url, &headers, Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
        let m = method.as_str().to_lowercase();
        let status = reply.status.as_str().to_string();
        let label = format!("{method} {uri} -> {status}");
        self.seen
            .insert((m.clone(), template.to_string(), status.clone()));

        let op = format!("#/paths/{}/{m}", escape(template));
        if self.doc.pointer(op.trim_start_matches('#')).is_none() {
            self.failures.push(format!(
                "{label}: operation {m} {template} is not documented"
            ));
            return reply;
        }
        let at = format!("{op}/responses/{status}");
        if self.doc.pointer(at.trim_start_matches('#')).is_none() {
            self.failures.push(format!(
                "{label}: status {status} is not documented for {m} {template}: {}",
                String::from_utf8_lossy(&reply.body)
            ));
            return reply;
        }
        let (at, response) = self.resolve(&at);
        let response = response.clone();

        for (name, h) in response["headers"].as_object().into_iter().flatten() {
            if h["required"] == true && !reply.headers.contains_key(name.as_str()) {
                self.failures
                    .push(format!("{label}: the required header {name} is missing"));
            }
        }
        let content = response["content"].as_object().cloned().unwrap_or_default();
        let media = reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_lowercase());
        let Some(media) = media else {
            if !content.is_empty() || !reply.body.is_empty() {
                self.failures.push(format!(
                    "{label}: no content type, the document gives {:?}",
                    content.keys().collect::<Vec<_>>()
                ));
            }
            return reply;
        };
        if !content.contains_key(&media) {
            self.failures.push(format!(
                "{label}: content type {media} is not documented (the document gives {:?})",
                content.keys().collect::<Vec<_>>()
            ));
            return reply;
        }
        let schema = format!("{at}/content/{}/schema", escape(&media));
        let has_schema = self.doc.pointer(schema.trim_start_matches('#')).is_some();
        if media == "application/json" {
            match serde_json::from_slice::<Value>(&reply.body) {
                Ok(body) if has_schema => self.bodies.push(json!({
                    "label": label, "schema": schema, "body": body,
                })),
                Ok(_) => {}
                Err(e) => self
                    .failures
                    .push(format!("{label}: the body is not JSON: {e}")),
            }
        } else if has_schema {
            // Text media types (NDJSON, CSV) are documented as strings.
            let text = String::from_utf8_lossy(&reply.body).into_owned();
            self.bodies.push(json!({
                "label": label, "schema": schema, "body": text,
            }));
        }
        reply
    }

    /// Every documented (method, path, status) the test did not see, less [`UNEXERCISED`].
    fn unexercised(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let Some(responses) = op["responses"].as_object() else {
                    continue;
                };
                for status in responses.keys() {
                    let key = (method.clone(), path.clone(), status.clone());
                    let excepted = UNEXERCISED
                        .iter()
                        .any(|(m, p, s, _)| (*m, *p, *s) == (method, path, status));
                    if !self.seen.contains(&key) && !excepted {
                        missing.push(format!("{method} {path} {status}"));
                    }
                }
            }
        }
        missing
    }
}

fn config(upstream: std::net::SocketAddr, dir: &Path, routes: &str) -> String {
    format!(
        "upstream: http://{upstream}\nstore:\n  url: sqlite://{db}\n  flush_interval: 20ms\n  \
         spool: {{ dir: {spool} }}\nadmin:\n  credentials:\n\
         \x20   - {{ name: security, token_sha256: {all}, apps: [\"*\"], permissions: [read, export, reload] }}\n\
         \x20   - {{ name: support-alpha, token_sha256: {alpha}, apps: [app-a], permissions: [read, reload] }}\n\
         \x20   - {{ name: siem, token_sha256: {siem}, apps: [\"*\"], permissions: [export] }}\n\
         routes:\n{routes}",
        db = dir.join("trail.db").display(),
        spool = dir.join("spool").display(),
        all = token_sha256_hex(TOKEN_ALL),
        alpha = token_sha256_hex(TOKEN_ALPHA),
        siem = token_sha256_hex(TOKEN_SIEM),
    )
}

const ROUTES: &str =
    "  - id: echo\n    match: { path: /echo-headers }\n    event: account.update\n  \
     - id: login\n    match: { method: POST, path: /v1/sessions }\n    event: auth.login\n";

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authtrail.yaml");
    std::fs::write(&file, config(up.addr, dir.path(), ROUTES)).unwrap();
    let inner = SqliteStore::open(dir.path().join("trail.db").to_str().unwrap())
        .await
        .unwrap();
    let store = FaultStore::new(Arc::new(inner));
    store.inner.append_fixtures(&fixture(t0())).await.unwrap();
    let cfg = authtrail::config::load_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let sc = Running::start_config(cfg, store.clone()).await;

    // Real traffic through the proxy: mapped (events) and unmapped (coverage evidence).
    let proxy = |path: &str| format!("http://{}{path}", sc.addr);
    for (method, path, body) in [
        (Method::GET, "/echo-headers", ""),
        (Method::POST, "/v1/sessions", "{\"username\":\"alice\"}"),
        (
            Method::POST,
            "/upload",
            "{\"email\":\"a@example.com\",\"code\":1}",
        ),
        (Method::GET, "/redirect?to=/done%3Fstate%3Dx", ""),
    ] {
        let headers = [("content-type", "application/json")];
        send(method, &proxy(path), &headers, Bytes::from(body))
            .await
            .unwrap();
    }

    let mut r = Recorder {
        doc: serde_json::from_str(DOCUMENT).unwrap(),
        seen: BTreeSet::new(),
        bodies: Vec::new(),
        failures: Vec::new(),
        admin: sc.admin,
    };
    // Wait for the proxied events, and the audit.query events of these reads, to be written
    // (the writer flushes every 20 ms).
    let has = |page: &Value, ty: &str| {
        page["events"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["type"] == ty))
    };
    let mut all = Value::Null;
    for _ in 0..300 {
        all = r
            .call(
                Method::GET,
                "/v1/events",
                "/v1/events?limit=1000",
                Some(TOKEN_ALL),
            )
            .await
            .json();
        if has(&all, "account.update") && has(&all, "audit.query") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        has(&all, "account.update") && has(&all, "audit.query"),
        "{all}"
    );

    let (get, post) = (Method::GET, Method::POST);

    // GET /v1/events
    let ev = "/v1/events";
    let first = r
        .call(
            get.clone(),
            ev,
            "/v1/events?order=asc&limit=2",
            Some(TOKEN_ALL),
        )
        .await;
    let cursor = first.json()["next_cursor"].as_str().unwrap().to_string();
    assert!(first.headers.contains_key("link"));
    r.call(
        get.clone(),
        ev,
        &format!("/v1/events?order=asc&limit=2&cursor={cursor}"),
        Some(TOKEN_ALL),
    )
    .await;
    r.call(get.clone(), ev, "/v1/events", Some(TOKEN_ALPHA))
        .await;
    r.call(
        get.clone(),
        ev,
        "/v1/events?type_not=audit.*&q=alice",
        Some(TOKEN_ALL),
    )
    .await;
    r.call(get.clone(), ev, "/v1/events?outcome=maybe", Some(TOKEN_ALL))
        .await;
    r.call(get.clone(), ev, "/v1/events?limit=0", Some(TOKEN_ALL))
        .await;
    r.call(get.clone(), ev, "/v1/events?nope=1", Some(TOKEN_ALL))
        .await;
    r.call(get.clone(), ev, "/v1/events", None).await;
    r.call(get.clone(), ev, "/v1/events", Some(TOKEN_WRONG))
        .await;
    r.call(get.clone(), ev, "/v1/events", Some(TOKEN_SIEM))
        .await;

    // GET /v1/events/{id}
    let one = "/v1/events/{id}";
    let events = all["events"].as_array().unwrap().clone();
    let id_of = |pred: &dyn Fn(&Value) -> bool| {
        let e = events.iter().find(|e| pred(e));
        let e = e.unwrap_or_else(|| panic!("no such event in {all}"));
        e["id"].as_str().unwrap().to_string()
    };
    let real = id_of(&|e| e["type"] == "account.update");
    let app_b = id_of(&|e| e["app"]["value"] == "app-b");
    let audit = id_of(&|e| e["type"] == "audit.query");
    for id in [&real, &app_b, &audit] {
        r.call(
            get.clone(),
            one,
            &format!("/v1/events/{id}"),
            Some(TOKEN_ALL),
        )
        .await;
    }
    r.call(get.clone(), one, "/v1/events/not-a-uuid", Some(TOKEN_ALL))
        .await;
    r.call(
        get.clone(),
        one,
        &format!("/v1/events/{real}?x=1"),
        Some(TOKEN_ALL),
    )
    .await;
    r.call(get.clone(), one, &format!("/v1/events/{real}"), None)
        .await;
    r.call(
        get.clone(),
        one,
        &format!("/v1/events/{real}"),
        Some(TOKEN_SIEM),
    )
    .await;
    r.call(
        get.clone(),
        one,
        "/v1/events/0190f5d2-0000-7000-8000-000000000000",
        Some(TOKEN_ALL),
    )
    .await;
    // Another app's event is exactly as absent as one that does not exist.
    r.call(
        get.clone(),
        one,
        &format!("/v1/events/{app_b}"),
        Some(TOKEN_ALPHA),
    )
    .await;

    // GET /v1/tokens/{key}
    let tok = "/v1/tokens/{key}";
    r.call(get.clone(), tok, "/v1/tokens/fp-a1", Some(TOKEN_ALL))
        .await;
    r.call(get.clone(), tok, "/v1/tokens/jti-a2", Some(TOKEN_ALPHA))
        .await;
    r.call(
        get.clone(),
        tok,
        &format!("/v1/tokens/{}", "k".repeat(257)),
        Some(TOKEN_ALL),
    )
    .await;
    r.call(
        get.clone(),
        tok,
        "/v1/tokens/fp-a1?limit=1",
        Some(TOKEN_ALL),
    )
    .await;
    r.call(get.clone(), tok, "/v1/tokens/fp-a1", None).await;
    r.call(get.clone(), tok, "/v1/tokens/fp-a1", Some(TOKEN_SIEM))
        .await;
    r.call(get.clone(), tok, "/v1/tokens/fp-unknown", Some(TOKEN_ALL))
        .await;
    r.call(get.clone(), tok, "/v1/tokens/fp-b1", Some(TOKEN_ALPHA))
        .await;

    // GET /v1/stats
    let st = "/v1/stats";
    r.call(get.clone(), st, "/v1/stats", Some(TOKEN_ALL)).await;
    r.call(
        get.clone(),
        st,
        "/v1/stats?since=3h&bucket=10m&app_not=app-b",
        Some(TOKEN_ALPHA),
    )
    .await;
    r.call(get.clone(), st, "/v1/stats?bucket=0s", Some(TOKEN_ALL))
        .await;
    r.call(
        get.clone(),
        st,
        "/v1/stats?bucket=1s&since=30d",
        Some(TOKEN_ALL),
    )
    .await;
    r.call(get.clone(), st, "/v1/stats", Some(TOKEN_WRONG))
        .await;
    r.call(get.clone(), st, "/v1/stats", Some(TOKEN_SIEM)).await;

    // GET /v1/coverage
    let cov = "/v1/coverage";
    let c = r
        .call(get.clone(), cov, "/v1/coverage", Some(TOKEN_ALL))
        .await
        .json();
    assert!(!c["unmapped"].as_array().unwrap().is_empty(), "{c}");
    r.call(get.clone(), cov, "/v1/coverage", Some(TOKEN_ALPHA))
        .await;
    r.call(get.clone(), cov, "/v1/coverage?x=1", Some(TOKEN_ALL))
        .await;
    r.call(get.clone(), cov, "/v1/coverage", None).await;
    r.call(get.clone(), cov, "/v1/coverage", Some(TOKEN_SIEM))
        .await;

    // GET /v1/export
    let ex = "/v1/export";
    let nd = r
        .call(get.clone(), ex, "/v1/export", Some(TOKEN_SIEM))
        .await;
    // NDJSON is one event per line, as the API returns it: each line is an Event.
    for (i, line) in String::from_utf8_lossy(&nd.body).lines().enumerate() {
        r.bodies.push(json!({
            "label": format!("GET /v1/export line {}", i + 1),
            "schema": "#/components/schemas/Event",
            "body": serde_json::from_str::<Value>(line).unwrap(),
        }));
    }
    r.call(
        get.clone(),
        ex,
        "/v1/export?format=csv&app=app-a",
        Some(TOKEN_ALL),
    )
    .await;
    r.call(
        get.clone(),
        ex,
        "/v1/export?format=ocsf&limit=3&order=desc",
        Some(TOKEN_ALL),
    )
    .await;
    r.call(get.clone(), ex, "/v1/export?format=xml", Some(TOKEN_ALL))
        .await;
    r.call(
        get.clone(),
        ex,
        "/v1/export?type_not=audit.*",
        Some(TOKEN_ALL),
    )
    .await;
    r.call(get.clone(), ex, "/v1/export", None).await;
    r.call(get.clone(), ex, "/v1/export", Some(TOKEN_ALPHA))
        .await;

    // GET /v1/whoami
    let who = "/v1/whoami";
    for token in [TOKEN_ALL, TOKEN_ALPHA, TOKEN_SIEM] {
        r.call(get.clone(), who, "/v1/whoami", Some(token)).await;
    }
    r.call(get.clone(), who, "/v1/whoami", None).await;

    // GET /v1/openapi.json
    let doc = r
        .call(get.clone(), "/v1/openapi.json", "/v1/openapi.json", None)
        .await;
    assert_eq!(doc.body, DOCUMENT.as_bytes());

    // POST /v1/reload: applied, refused, and a file that does not load.
    let rl = "/v1/reload";
    r.call(post.clone(), rl, "/v1/reload", Some(TOKEN_ALL))
        .await;
    r.call(post.clone(), rl, "/v1/reload", None).await;
    r.call(post.clone(), rl, "/v1/reload", Some(TOKEN_SIEM))
        .await;
    r.call(post.clone(), rl, "/v1/reload", Some(TOKEN_ALPHA))
        .await;
    let broken = "  - id: broken\n    match: { path: \"/x/{\" }\n    event: auth.login\n";
    std::fs::write(&file, config(up.addr, dir.path(), broken)).unwrap();
    r.call(post.clone(), rl, "/v1/reload", Some(TOKEN_ALL))
        .await;
    std::fs::write(&file, config(up.addr, dir.path(), ROUTES)).unwrap();

    // The store stops answering reads: 503 wherever the document says so.
    store.set_reads_down(true);
    r.call(get.clone(), ev, "/v1/events", Some(TOKEN_ALL)).await;
    r.call(
        get.clone(),
        one,
        &format!("/v1/events/{real}"),
        Some(TOKEN_ALL),
    )
    .await;
    r.call(get.clone(), tok, "/v1/tokens/fp-a1", Some(TOKEN_ALL))
        .await;
    r.call(
        get.clone(),
        st,
        "/v1/stats?type_not=audit.*",
        Some(TOKEN_ALL),
    )
    .await;
    // An export has sent its 200 before the first page is read: the body breaks off instead.
    store.set_reads_down(false);

    let missing = r.unexercised();
    let report = format!(
        "responses that do not match the document:\n  {}\ndocumented but never answered:\n  {}",
        r.failures.join("\n  "),
        missing.join("\n  ")
    );
    assert!(r.failures.is_empty() && missing.is_empty(), "{report}");
    eprintln!(
        "{} (method, path, status) answered as documented, {} bodies to validate",
        r.seen.len(),
        r.bodies.len()
    );

    let tmp = tempfile::tempdir().unwrap();
    let (doc_file, bodies_file) = (
        tmp.path().join("openapi.json"),
        tmp.path().join("bodies.json"),
    );
    std::fs::write(&doc_file, DOCUMENT).unwrap();
    std::fs::write(&bodies_file, serde_json::to_vec(&r.bodies).unwrap()).unwrap();
    if let Some((ok, out)) = run_checker(&doc_file, Some(&bodies_file)) {
        assert!(ok, "response bodies against the document:\n{out}");
        eprintln!("{out}");
    }
    sc.stop().await;
}
