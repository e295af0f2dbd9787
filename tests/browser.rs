//! The viewer in a real browser: headless Chromium driven over WebDriver (chromedriver, spoken to
//! with plain HTTP + JSON on 127.0.0.1). Real failed logins go through the sidecar to the demo
//! auth server; the test signs in to `/ui`, filters to failed logins, opens one and checks its
//! fields, checks that a value full of markup is shown as text, and that a credential scoped to
//! one app cannot see another app's events (list and timeline). A second test covers the analyst's
//! tools (docs/viewer.md): the timeline's bars and drag-to-zoom, the trail's own reads hidden by
//! default, pivots (click filters, shift-click excludes), identity badges and app conflicts, a
//! token's life from its row, all events of one request, URL state across a reload and
//! back/forward, the live tail (once each, and behind a counter when paused), keys and the UTC
//! toggle. With `AUTHTRAIL_VIEWER_SCREENSHOT=PATH` it also saves a screenshot there.
//!
//! Needs Debian's `chromium` and `chromium-driver` (installed by `.ci/run`). Without them the test
//! prints a skip notice, unless `CI` is set, where it fails instead.

mod support;

use std::io::Write;
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authtrail::event::Outcome;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use support::admin::{self, TOKEN_ALL, TOKEN_ALPHA};
use support::fixtures::AppendFixtures;
use support::harness::{self, post_json, send};
use support::store_conformance::sample_event;

const ROUTES: &str = r#"  - id: login
    match: { method: POST, path: /v1/sessions }
    event: auth.login
    actor: [ { response_body: /user/id }, { request_body: /username } ]
    app: [ { response_body: /user/app }, { header: X-App-Id } ]
    outcome: { success: [2xx], failure: [4xx], reason: /error }
"#;
const WAIT: Duration = Duration::from_secs(20);
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(env: &str, names: &[&str]) -> Option<String> {
    if let Ok(p) = std::env::var(env) {
        return std::path::Path::new(&p).is_file().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/bin", "/usr/lib/chromium"]) {
        for n in names {
            let p = std::path::Path::new(dir).join(n);
            if p.is_file() {
                return Some(p.display().to_string());
            }
        }
    }
    None
}

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver command: its `value`, or the WebDriver error (`error` code, whole answer).
async fn try_call(
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, (String, String)> {
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let r = send(
        method.clone(),
        url,
        &[("content-type", "application/json")],
        body,
    )
    .await
    .unwrap_or_else(|e| panic!("webdriver {method} {url}: {e}"));
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if r.status.is_success() {
        Ok(v["value"].clone())
    } else {
        let code = v["value"]["error"].as_str().unwrap_or("").to_string();
        Err((code, format!("webdriver {method} {url}: {} {v}", r.status)))
    }
}

async fn call(method: Method, url: &str, body: Option<Value>) -> Value {
    try_call(method, url, body)
        .await
        .unwrap_or_else(|(_, msg)| panic!("{msg}"))
}

/// WebDriver errors that only mean "not yet": the page is still rendering (an element hidden
/// until a fetch answers, or replaced by a re-render). Element commands retry on them until
/// `WAIT` runs out; any other error fails at once.
const NOT_YET: &[&str] = &[
    "no such element",
    "element not interactable",
    "stale element reference",
    "element click intercepted",
];

struct Session {
    url: String,
}

impl Session {
    async fn start(driver: &Driver, chromium: &str, profile: &std::path::Path) -> Session {
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1400,900",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }},
        });
        let v = call(
            Method::POST,
            &format!("{}/session", driver.base),
            Some(caps),
        )
        .await;
        let id = v["sessionId"].as_str().expect("session id").to_string();
        Session {
            url: format!("{}/session/{id}", driver.base),
        }
    }

    async fn go(&self, url: &str) {
        call(
            Method::POST,
            &format!("{}/url", self.url),
            Some(json!({ "url": url })),
        )
        .await;
    }

    /// Run `steps` (element commands against the element `css` finds, found afresh each try)
    /// until they all succeed, retrying while the page is not ready for them (`NOT_YET`).
    async fn on_element(&self, css: &str, steps: &[(&str, Value)]) {
        let start = Instant::now();
        'retry: loop {
            let mut last = match try_call(
                Method::POST,
                &format!("{}/element", self.url),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            {
                Ok(v) => {
                    let el = v[ELEMENT].as_str().expect("element id").to_string();
                    let mut failed = None;
                    for (cmd, body) in steps {
                        let url = format!("{}/element/{el}/{cmd}", self.url);
                        if let Err(e) = try_call(Method::POST, &url, Some(body.clone())).await {
                            failed = Some(e);
                            break;
                        }
                    }
                    match failed {
                        None => break 'retry,
                        Some(e) => e,
                    }
                }
                Err(e) => e,
            };
            if !NOT_YET.contains(&last.0.as_str()) || start.elapsed() >= WAIT {
                last.1.insert_str(0, &format!("{css}: "));
                panic!("{}", last.1);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.on_element(css, &[("click", json!({}))]).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.on_element(
            css,
            &[("clear", json!({})), ("value", json!({ "text": text }))],
        )
        .await;
    }

    async fn js(&self, script: &str) -> Value {
        call(
            Method::POST,
            &format!("{}/execute/sync", self.url),
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Poll `script` until it returns something other than null/false, or fail with `what`.
    /// A script error counts as "not yet" too (the page may be reloading), until `WAIT` runs out.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let last = match try_call(
                Method::POST,
                &format!("{}/execute/sync", self.url),
                Some(json!({ "script": script, "args": [] })),
            )
            .await
            {
                Ok(v) if !(v.is_null() || v == Value::Bool(false)) => return v,
                Ok(v) => v.to_string(),
                Err((code, msg)) if code == "javascript error" => msg,
                Err((_, msg)) => panic!("waiting for {what}: {msg}"),
            };
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what} (last: {last})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shift-click the first element `css` finds (WebDriver has no modifier on a plain click).
    async fn shift_click(&self, css: &str) {
        let script = format!(
            "const e = document.querySelector({css:?}); if (!e) return false; \
             e.dispatchEvent(new MouseEvent('click', {{ bubbles: true, cancelable: true, shiftKey: true }})); return true;"
        );
        self.wait_for(&format!("{css} to shift-click"), &script)
            .await;
    }

    /// Mark every row shown now, so a wait can tell a re-rendered list from the old one.
    async fn mark_rows(&self) {
        self.js("document.querySelectorAll('#events-table tbody tr').forEach(r => r.dataset.stale = '1'); return true;")
            .await;
    }

    /// A PNG of the window.
    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = call(Method::GET, &format!("{}/screenshot", self.url), None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot data"))
            .expect("screenshot base64")
    }

    async fn end(self) {
        call(Method::DELETE, &self.url, None).await;
    }
}

/// The rows of the events table: `{id, type, outcome, app, actor, reason, actor_verified}` each.
/// A cell's value is its pivot's text (badges beside it are not part of it).
const ROWS: &str =
    "const v = (r, c) => { const td = r.querySelector(`[data-col=${c}]`); const p = td.querySelector('.pivot'); return (p || td).textContent; }; \
    return Array.from(document.querySelectorAll('#events-table tbody tr')).map(r => ({ \
    id: r.dataset.id, type: v(r, 'type'), outcome: v(r, 'outcome'), app: v(r, 'app'), \
    actor: v(r, 'actor'), reason: v(r, 'reason'), \
    actor_verified: (r.querySelector('[data-col=actor] .id') || {dataset: {}}).dataset.verified || null }));";

async fn start_driver(chromedriver: &str) -> Driver {
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let start = Instant::now();
    loop {
        if let Ok(r) = send(
            Method::GET,
            &format!("{}/status", driver.base),
            &[],
            Bytes::new(),
        )
        .await
        {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            if r.status == StatusCode::OK && v["value"]["ready"] == true {
                return driver;
            }
        }
        assert!(start.elapsed() < WAIT, "chromedriver did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One browser at a time: the tests of this file run in parallel threads otherwise, and two
/// Chromiums on a small CI machine make every wait slower.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// chromedriver and chromium, or `None` after printing a skip notice (a failure under `CI`).
fn browser_programs(test: &str) -> Option<(String, String)> {
    let chromedriver = find_program("CHROMEDRIVER", &["chromedriver"]);
    let chromium = find_program(
        "CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let (Some(chromedriver), Some(chromium)) = (chromedriver, chromium) else {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but chromium / chromedriver are missing: install chromium and chromium-driver");
        }
        // Written to the stderr handle itself, not through eprintln!, so the test harness does
        // not capture it: a skip must be visible in a normal `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {test}: chromium and chromedriver not found (apt-get install chromium \
             chromium-driver, or set CHROMIUM / CHROMEDRIVER) ***\n"
        );
        return None;
    };
    Some((chromedriver, chromium))
}

#[tokio::test]
async fn the_viewer_shows_failed_logins_and_keeps_tenants_apart() {
    let Some((chromedriver, chromium)) =
        browser_programs("the_viewer_shows_failed_logins_and_keeps_tenants_apart")
    else {
        return;
    };
    let _one = BROWSER.lock().await;

    // Real traffic: failed logins in two apps and one success, through the sidecar.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = support::demo_auth::spawn(l, b"browser-test-secret-4c1d".to_vec());
    let sc = harness::start(auth.addr, &admin::credentials_yaml(), ROUTES).await;
    let login = |user: &'static str, pw: &'static str, app: &'static str| {
        let url = sc.url("/v1/sessions");
        async move {
            post_json(
                &url,
                json!({ "username": user, "password": pw }),
                &[("x-app-id", app)],
            )
            .await
        }
    };
    assert_eq!(
        login("alice", "not-her-password", "app-a").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login("mallory", "guess-1", "app-b").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login("alice", "alice-pw-7Qx!", "app-a").await.status,
        StatusCode::OK
    );
    let stored = sc.wait_events(3).await;
    let alice_fail = stored
        .iter()
        .find(|e| e.outcome == Outcome::Failure && e.actor.id.as_deref() == Some("alice"))
        .expect("alice's failed login")
        .clone();
    // A value full of markup, to show the page renders data as text.
    let store = authtrail::store::open(&format!("sqlite://{}", sc.db.display()))
        .await
        .unwrap();
    let markup = "<img src=x onerror=\"document.title='pwned'\">";
    let mut hostile = sample_event(
        "hostile",
        "auth.login",
        Some("app-a"),
        Some(markup),
        Outcome::Failure,
        authtrail::event::now_millis(),
    );
    hostile.reason = Some("<b>bold</b>".into());
    store.append_fixtures(&[hostile]).await.unwrap();

    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let s = Session::start(&driver, &chromium, profile.path()).await;
    let ui = format!("http://{}/ui", sc.admin);

    // Sign in with the all-seeing credential.
    s.go(&ui).await;
    s.type_into("#token-input", TOKEN_ALL).await;
    s.click("#signin-btn").await;
    s.wait_for("the events table", "return !document.getElementById('app').hidden && document.querySelectorAll('#events-table tbody tr').length > 0").await;

    // Filter to failed logins.
    s.click("#failed-logins-btn").await;
    let rows = s
        .wait_for(
            "only failed logins",
            &format!("const rows = (function(){{ {ROWS} }})(); return rows.length === 3 && rows.every(r => r.type === 'auth.login' && r.outcome === 'failure') ? rows : null;"),
        )
        .await;
    let rows = rows.as_array().unwrap();
    let apps: Vec<&str> = rows.iter().map(|r| r["app"].as_str().unwrap()).collect();
    assert!(
        apps.contains(&"app-a") && apps.contains(&"app-b"),
        "{rows:?}"
    );
    // The hostile row shows its markup as text, and made no element of it.
    let hostile_row = rows
        .iter()
        .find(|r| r["actor"] == markup)
        .expect("hostile row shows raw text");
    assert_eq!(hostile_row["reason"], "<b>bold</b>");
    assert_eq!(
        s.js("return document.querySelectorAll('#events-table img, #events-table b').length")
            .await,
        0
    );
    assert_eq!(s.js("return document.title").await, "authtrail");

    // Open alice's failed login and check its fields.
    s.click(&format!("tr[data-id='{}']", alice_fail.id)).await;
    let detail = s
        .wait_for(
            "the event detail",
            "const d = document.getElementById('detail'); if (d.hidden) return null; \
             const f = n => { const e = d.querySelector(`[data-field='${n}']`); return e ? e.textContent : null; }; \
             return { title: document.getElementById('detail-title').textContent, type: f('type'), \
                      outcome: f('outcome'), actor: f('actor'), app: f('app'), reason: f('reason'), \
                      status: f('status'), id: f('event id'), json: document.getElementById('detail-json').textContent };",
        )
        .await;
    assert_eq!(detail["title"], "auth.login");
    assert_eq!(detail["type"], "auth.login");
    assert_eq!(detail["outcome"], "failure");
    assert!(
        detail["actor"].as_str().unwrap().starts_with("alice"),
        "{detail}"
    );
    assert!(
        detail["app"].as_str().unwrap().starts_with("app-a"),
        "{detail}"
    );
    assert_eq!(detail["reason"], alice_fail.reason.clone().unwrap());
    assert_eq!(detail["status"], "401");
    assert_eq!(detail["id"], alice_fail.id.to_string());
    let whole: Value = serde_json::from_str(detail["json"].as_str().unwrap()).unwrap();
    assert_eq!(whole["id"], alice_fail.id.to_string());
    assert_eq!(whole["http"]["request_id"], alice_fail.http.request_id);

    // Sign out, sign in as support for app-a only: app-b's events are nowhere.
    s.click("#signout-btn").await;
    s.wait_for(
        "the sign-in form",
        "return !document.getElementById('signin').hidden",
    )
    .await;
    s.type_into("#token-input", TOKEN_ALPHA).await;
    s.click("#signin-btn").await;
    s.wait_for(
        "the viewer for support-alpha",
        "const w = document.getElementById('who'); return !document.getElementById('app').hidden && !w.hidden && w.textContent.startsWith('support-alpha');",
    )
    .await;
    // The timeline counts only app-a's events too: alice's failed login and the hostile one
    // (her successful login names app-alpha in the answer, a conflict).
    let sum = s
        .wait_for(
            "app-a's timeline",
            "const bars = Array.from(document.querySelectorAll('#tl-svg rect.bar')); \
             return bars.length > 0 ? bars.reduce((n, b) => n + Number(b.dataset.count), 0) : null;",
        )
        .await;
    let visible = stored
        .iter()
        .filter(|e| e.app.as_ref().is_some_and(|a| a.value == "app-a"))
        .count()
        + 1;
    assert_eq!(sum, visible, "{stored:?}");
    s.click("#failed-logins-btn").await;
    let rows = s
        .wait_for(
            "app-a's failed logins",
            &format!(
                "const rows = (function(){{ {ROWS} }})(); return rows.length === 2 ? rows : null;"
            ),
        )
        .await;
    let who = s
        .js("const w = document.getElementById('who'); return w.hidden ? null : w.textContent;")
        .await;
    assert_eq!(who, "support-alpha · app-a");
    // No export permission: no export links.
    assert_eq!(
        s.js("return document.querySelector('.exports').hidden")
            .await,
        true
    );
    assert!(
        rows.as_array().unwrap().iter().all(|r| r["app"] == "app-a"),
        "{rows}"
    );
    s.type_into("input[name=app]", "app-b").await;
    s.click("#apply-btn").await;
    s.wait_for(
        "an empty result for app-b",
        "return document.querySelectorAll('#events-table tbody tr').length === 0 && document.getElementById('status').textContent === 'No events match.'",
    )
    .await;
    // A wrong token is refused at sign-in.
    s.click("#signout-btn").await;
    s.type_into("#token-input", "not-a-token").await;
    s.click("#signin-btn").await;
    let err = s
        .wait_for("the sign-in error", "const e = document.getElementById('signin-error'); return e.hidden ? null : e.textContent;")
        .await;
    assert_eq!(err, "That token was not accepted.");
    s.end().await;
}

/// The rows of a list rendered after [`Session::mark_rows`], once there is one (`null` before).
fn fresh_rows(condition: &str) -> String {
    format!(
        "if (document.querySelector('#events-table tbody tr[data-stale]') || document.getElementById('status').textContent === 'Loading…') return null; \
         const rows = (function(){{ {ROWS} }})(); return ({condition}) ? rows : null;"
    )
}

#[tokio::test]
async fn the_viewer_draws_a_timeline_pivots_follows_live_and_keeps_its_url() {
    let Some((chromedriver, chromium)) =
        browser_programs("the_viewer_draws_a_timeline_pivots_follows_live_and_keeps_its_url")
    else {
        return;
    };
    let _one = BROWSER.lock().await;

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = support::demo_auth::spawn(l, b"browser-test-secret-4c1d".to_vec());
    let sc = harness::start(auth.addr, &admin::credentials_yaml(), ROUTES).await;
    let login = |user: &'static str, pw: &'static str, app: &'static str| {
        let url = sc.url("/v1/sessions");
        async move {
            post_json(
                &url,
                json!({ "username": user, "password": pw }),
                &[("x-app-id", app)],
            )
            .await
            .status
        }
    };
    assert_eq!(
        login("alice", "not-her-password", "app-a").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login("mallory", "guess-1", "app-b").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login("alice", "alice-pw-7Qx!", "app-a").await,
        StatusCode::OK
    );
    let stored = sc.wait_events(3).await;
    let alice_fail = stored
        .iter()
        .find(|e| e.outcome == Outcome::Failure && e.actor.id.as_deref() == Some("alice"))
        .expect("alice's failed login")
        .clone();
    // A day of history for the timeline: verified actors (jwt:sub), every outcome, and one event
    // whose app sources disagreed.
    let store = authtrail::store::open(&format!("sqlite://{}", sc.db.display()))
        .await
        .unwrap();
    let now = authtrail::event::now_millis();
    let outcomes = [
        Outcome::Success,
        Outcome::Success,
        Outcome::Failure,
        Outcome::Success,
        Outcome::Error,
    ];
    let mut history = Vec::new();
    for i in 0..40i64 {
        let outcome = outcomes[i as usize % outcomes.len()];
        let (app, actor) = if i % 3 == 0 {
            ("app-b", "dave")
        } else {
            ("app-a", "carol")
        };
        let t = now - time::Duration::minutes(35 * i + 7);
        history.push(sample_event(
            &format!("h{i}"),
            if i % 4 == 0 {
                "token.refresh"
            } else {
                "auth.login"
            },
            Some(app),
            Some(actor),
            outcome,
            t,
        ));
    }
    let mut conflicted = sample_event(
        "conflict",
        "auth.login",
        Some("app-a"),
        Some("erin"),
        Outcome::Success,
        now - time::Duration::minutes(3),
    );
    conflicted.app_conflict = Some(vec![authtrail::event::Attributed {
        value: "app-b".into(),
        source: "jwt:aud".into(),
        verified: true,
    }]);
    conflicted.tokens.push(authtrail::event::TokenRef {
        role: authtrail::event::TokenRole::Issued,
        kind: "refresh".into(),
        source: "response_body:/refresh_token".into(),
        fingerprint: "fp-erin-1".into(),
        jti: Some("jti-erin-1".into()),
        sub: Some("erin".into()),
        app: None,
        iat: None,
        exp: None,
        verified: true,
        invalid: None,
    });
    history.push(conflicted.clone());
    store.append_fixtures(&history).await.unwrap();
    let in_window = 3 + history.len();

    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let s = Session::start(&driver, &chromium, profile.path()).await;
    let ui = format!("http://{}/ui", sc.admin);
    s.go(&ui).await;
    s.type_into("#token-input", TOKEN_ALL).await;
    s.click("#signin-btn").await;
    s.wait_for("the events table", "return !document.getElementById('app').hidden && document.querySelectorAll('#events-table tbody tr').length > 0").await;

    // 1. The timeline: stacked bars by outcome whose counts add up to the window's events
    //    (the viewer's own reads left out).
    let bars = s
        .wait_for(
            "the histogram's bars",
            &format!(
                "const bars = Array.from(document.querySelectorAll('#tl-svg rect.bar')); \
                 const sum = bars.reduce((n, b) => n + Number(b.dataset.count), 0); \
                 return sum === {in_window} ? bars.map(b => b.dataset.outcome) : null;"
            ),
        )
        .await;
    let bars: Vec<&str> = bars
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    for o in ["success", "failure", "error"] {
        assert!(bars.contains(&o), "no {o} bar in {bars:?}");
    }

    // 4. Identity at a glance: a claimed actor (from the request body) and a verified one
    //    (jwt:sub) look different, and the disagreeing app is flagged.
    let rows = s.js(ROWS).await;
    let rows = rows.as_array().unwrap();
    let claimed = rows
        .iter()
        .find(|r| r["id"] == alice_fail.id.to_string())
        .expect("alice's failed login listed");
    assert_eq!(claimed["actor_verified"], "false", "{claimed}");
    let verified = rows
        .iter()
        .find(|r| r["actor"] == "carol")
        .expect("carol listed");
    assert_eq!(verified["actor_verified"], "true", "{verified}");
    let tip = s
        .js(&format!(
            "const r = document.querySelector(\"tr[data-id='{}']\"); const c = r && r.querySelector('[data-conflict]'); return c ? c.title : null;",
            conflicted.id
        ))
        .await;
    assert!(
        tip.as_str().is_some_and(|t| t.contains("app-b (jwt:aud)")),
        "{tip}"
    );

    // 3. Every token opens its life: from the row's token button.
    s.click(&format!(
        "tr[data-id='{}'] button.tok[data-token='jti-erin-1']",
        conflicted.id
    ))
    .await;
    s.wait_for(
        "erin's token life",
        "return !document.getElementById('token-life').hidden && document.getElementById('token-key').textContent === 'jti-erin-1' \
         && document.querySelectorAll('#token-events li').length === 1;",
    )
    .await;
    s.click("#token-close").await;

    // 2. The viewer's own reads are there, but hidden unless asked for.
    let start = Instant::now();
    loop {
        let page = admin::get(&sc, "/v1/events?type=audit.*&limit=1", Some(TOKEN_ALL))
            .await
            .json();
        if page["events"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        assert!(start.elapsed() < WAIT, "no audit.* events recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.mark_rows().await;
    s.click("#apply-btn").await;
    s.wait_for(
        "the list without audit reads",
        &fresh_rows("rows.length > 0 && rows.every(r => !r.type.startsWith('audit.'))"),
    )
    .await;
    s.mark_rows().await;
    s.click("#show-audit").await;
    s.wait_for(
        "audit reads once shown",
        &fresh_rows("rows.some(r => r.type.startsWith('audit.'))"),
    )
    .await;
    s.mark_rows().await;
    s.click("#show-audit").await;
    s.wait_for(
        "audit reads hidden again",
        &fresh_rows("rows.length > 0 && rows.every(r => !r.type.startsWith('audit.'))"),
    )
    .await;

    // 3. Pivots: click an actor to filter on it; shift-click an app to exclude it.
    s.mark_rows().await;
    s.click("#events-table tbody tr [data-col=actor] .pivot[data-value='mallory']")
        .await;
    s.wait_for(
        "mallory's events only",
        &fresh_rows("rows.length > 0 && rows.every(r => r.actor === 'mallory') && document.querySelector('input[name=actor]').value === 'mallory' && location.hash.includes('actor=mallory')"),
    )
    .await;
    s.mark_rows().await;
    s.click("#reset-btn").await;
    s.wait_for("the whole list again", &fresh_rows("rows.length > 3"))
        .await;
    s.mark_rows().await;
    s.shift_click("#events-table tbody tr [data-col=app] .pivot[data-value='app-b']")
        .await;
    s.wait_for(
        "every app but app-b",
        &fresh_rows("rows.length > 0 && rows.every(r => r.app !== 'app-b') && document.querySelector(\"#excludes [data-exclude=app][data-value='app-b']\") !== null && location.hash.includes('app_not=app-b')"),
    )
    .await;
    s.mark_rows().await;
    s.click("#events-table tbody tr [data-col=actor] .pivot[data-value='alice']")
        .await;
    let alices = s
        .wait_for(
            "alice's events, app-b still excluded",
            &fresh_rows(&format!(
                "rows.length > 0 && rows.every(r => r.actor === 'alice' && r.app !== 'app-b') && rows.some(r => r.id === '{}')",
                alice_fail.id
            )),
        )
        .await;
    let alices = alices.as_array().unwrap().len();

    // 6. URL state: open an event, reload, and the same filters, exclusion and event are back;
    //    back and forward walk the history.
    s.click(&format!("tr[data-id='{}']", alice_fail.id)).await;
    let open_detail = format!(
        "const d = document.getElementById('detail'); return !d.hidden && d.dataset.event === '{}' && location.hash.includes('event={}');",
        alice_fail.id, alice_fail.id
    );
    s.wait_for("the event detail", &open_detail).await;
    s.js("setTimeout(() => location.reload(), 0); return true;")
        .await;
    s.wait_for(
        "the reloaded page",
        &format!(
            "const d = document.getElementById('detail'); return d && !d.hidden && d.dataset.event === '{}' \
             && document.querySelector('input[name=actor]').value === 'alice' \
             && document.querySelector(\"#excludes [data-exclude=app][data-value='app-b']\") !== null \
             && document.querySelectorAll('#events-table tbody tr').length === {alices} \
             && document.querySelectorAll('#tl-svg rect.bar').length > 0;",
            alice_fail.id
        ),
    )
    .await;
    s.js("history.back(); return true;").await;
    s.wait_for(
        "back: the list without the event",
        &format!("const d = document.getElementById('detail'); return d && d.hidden && !location.hash.includes('event=') && location.hash.includes('actor=alice') && document.querySelectorAll('#events-table tbody tr').length === {alices};"),
    )
    .await;
    s.js("history.forward(); return true;").await;
    s.wait_for("forward: the event again", &open_detail).await;

    // 3. All events of one request: only its request id is kept as a filter.
    s.mark_rows().await;
    s.click("#whole-request-btn").await;
    s.wait_for(
        "the request's events",
        &fresh_rows(&format!(
            "rows.length > 0 && rows.some(r => r.id === '{}') && document.querySelector('input[name=request_id]').value === '{}' \
             && document.querySelector('input[name=actor]').value === '' && document.getElementById('excludes').hidden",
            alice_fail.id, alice_fail.http.request_id
        )),
    )
    .await;

    // 7. Times name their zone; the toggle switches to UTC and is kept in the URL.
    s.click("#tz-btn").await;
    s.wait_for(
        "times in UTC",
        "const t = document.querySelector('#events-table tbody tr .abs'); \
         return location.hash.includes('tz=utc') && t && t.textContent.endsWith(' UTC') && document.getElementById('tz-btn').textContent.startsWith('Times: UTC');",
    )
    .await;

    // 5. Live tail: new events arrive on top, once each; paused, they wait behind a counter.
    s.mark_rows().await;
    s.click("#reset-btn").await;
    s.wait_for("the whole list again", &fresh_rows("rows.length > 3"))
        .await;
    s.click("#live-btn").await;
    s.wait_for(
        "following live",
        "return document.body.dataset.live === 'on';",
    )
    .await;
    assert_eq!(
        login("bob", "bob-guess-1", "app-a").await,
        StatusCode::UNAUTHORIZED
    );
    s.wait_for(
        "bob's failed login on top",
        &format!("const rows = (function(){{ {ROWS} }})(); return rows.length > 0 && rows[0].actor === 'bob' && rows.filter(r => r.actor === 'bob').length === 1 && new Set(rows.map(r => r.id)).size === rows.length;"),
    )
    .await;
    s.click("#pause-btn").await;
    assert_eq!(
        login("bob", "bob-guess-2", "app-a").await,
        StatusCode::UNAUTHORIZED
    );
    s.wait_for(
        "the new-events counter",
        "const b = document.getElementById('new-events-btn'); return !b.hidden && b.dataset.count === '1';",
    )
    .await;
    let bobs = s
        .js(&format!("const rows = (function(){{ {ROWS} }})(); return rows.filter(r => r.actor === 'bob').length;"))
        .await;
    assert_eq!(bobs, 1, "a paused tail shows nothing new");
    s.click("#new-events-btn").await;
    s.wait_for(
        "both of bob's failed logins, once each",
        &format!("const rows = (function(){{ {ROWS} }})(); return rows.filter(r => r.actor === 'bob').length === 2 && new Set(rows.map(r => r.id)).size === rows.length && document.getElementById('new-events-btn').hidden;"),
    )
    .await;
    s.click("#live-btn").await;

    // Keys: j / k move through the list, Enter opens the row, / goes to the search field.
    s.js("const k = key => document.dispatchEvent(new KeyboardEvent('keydown', { key, bubbles: true })); \
          k('j'); k('j'); k('j'); k('k'); return true;")
        .await;
    let second = s
        .wait_for(
            "the key cursor on the second row",
            "const rows = document.querySelectorAll('#events-table tbody tr'); return rows[1].classList.contains('cursor') ? rows[1].dataset.id : null;",
        )
        .await;
    s.js("document.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true })); return true;")
        .await;
    s.wait_for(
        "Enter opens the row",
        &format!("const d = document.getElementById('detail'); return !d.hidden && d.dataset.event === {second};"),
    )
    .await;
    s.js("document.dispatchEvent(new KeyboardEvent('keydown', { key: '/', bubbles: true })); return true;")
        .await;
    s.wait_for(
        "/ focuses search",
        "return document.activeElement === document.querySelector('input[name=q]');",
    )
    .await;

    // 1. Drag across the timeline's middle to its 90% mark: the window becomes that span, with
    //    finer bars.
    s.mark_rows().await;
    s.js("const svg = document.getElementById('tl-svg'); const r = svg.getBoundingClientRect(); \
          const at = f => ({ bubbles: true, clientX: r.left + f * r.width, clientY: r.top + r.height / 2 }); \
          svg.dispatchEvent(new MouseEvent('mousedown', at(0.5))); \
          window.dispatchEvent(new MouseEvent('mousemove', at(0.7))); \
          window.dispatchEvent(new MouseEvent('mouseup', at(0.9))); return true;")
        .await;
    let span = s
        .wait_for(
            "the zoomed window",
            "const f = document.getElementById('filters'); const a = Date.parse(f.querySelector('[name=since]').value), \
             b = Date.parse(f.querySelector('[name=until]').value); \
             const bars = document.querySelectorAll('#tl-svg rect.bar'); \
             return location.hash.includes('since=') && location.hash.includes('until=') && bars.length > 0 \
               && bars[0].dataset.bucketMs === '600000' ? (b - a) / 1000 : null;",
        )
        .await;
    let span = span.as_f64().unwrap();
    assert!(
        (span - 0.4 * 86_400.0).abs() < 0.02 * 86_400.0,
        "zoomed to {span} s"
    );
    s.wait_for(
        "the list within the zoomed window",
        &fresh_rows("rows.every(r => r.actor !== 'bob')"),
    )
    .await;

    // The screenshot for docs/viewer.md, when asked for (AUTHTRAIL_VIEWER_SCREENSHOT=path).
    if let Some(path) = std::env::var_os("AUTHTRAIL_VIEWER_SCREENSHOT") {
        s.mark_rows().await;
        s.click("#reset-btn").await;
        s.wait_for("the whole list again", &fresh_rows("rows.length > 3"))
            .await;
        // carol's actor page, with one of her failed logins open.
        s.mark_rows().await;
        s.click("#events-table tbody tr [data-col=actor] .pivot[data-value='carol']")
            .await;
        let failed = s
            .wait_for(
                "carol's actor page",
                &format!(
                    "if (document.querySelector('#events-table tbody tr[data-stale]')) return null; \
                     const rows = (function(){{ {ROWS} }})(); const p = document.getElementById('actor-page'); \
                     return rows.length > 0 && !p.hidden && p.dataset.actor === 'carol' ? (rows.find(r => r.outcome === 'failure') || null) : null;"
                ),
            )
            .await;
        let failed = failed["id"].as_str().expect("a failed login of carol's");
        s.click(&format!("tr[data-id='{failed}']")).await;
        s.wait_for(
            "the event detail",
            &format!("return document.getElementById('detail').dataset.event === '{failed}';"),
        )
        .await;
        s.js("window.scrollTo(0, 0); return true;").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&path, s.screenshot().await).expect("write the screenshot");
    }
    s.end().await;
}

/// The rows of the actor page's summary: `{type, total, success, failure, error, unknown}` each.
const ACTOR_SUMMARY: &str =
    "const page = document.getElementById('actor-page'); if (page.hidden) return null; \
     return { actor: page.dataset.actor, total: Number(page.dataset.total), meta: document.getElementById('actor-meta').textContent, \
       rows: Array.from(page.querySelectorAll('tbody tr')).map(r => { \
         const n = o => Number(r.querySelector(`[data-outcome=${o}]`).dataset.count); \
         return { type: r.dataset.type, total: Number(r.querySelector('td.num').dataset.count), \
           success: n('success'), failure: n('failure'), error: n('error'), unknown: n('unknown') }; }) };";

#[tokio::test]
async fn the_viewer_has_an_actor_page_saved_views_and_a_column_chooser() {
    let Some((chromedriver, chromium)) =
        browser_programs("the_viewer_has_an_actor_page_saved_views_and_a_column_chooser")
    else {
        return;
    };
    let _one = BROWSER.lock().await;

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = support::demo_auth::spawn(l, b"browser-test-secret-4c1d".to_vec());
    let sc = harness::start(auth.addr, &admin::credentials_yaml(), ROUTES).await;
    let store = authtrail::store::open(&format!("sqlite://{}", sc.db.display()))
        .await
        .unwrap();
    let now = authtrail::event::now_millis();
    // carol: six events in app-a (3 logins, 2 failed, 1 refresh) and a failed one in app-b;
    // dave two logins; erin one update of a token target with a very long id.
    let plan: [(&str, &str, &str, Outcome); 9] = [
        ("carol", "app-a", "auth.login", Outcome::Success),
        ("carol", "app-a", "auth.login", Outcome::Failure),
        ("carol", "app-a", "auth.login", Outcome::Success),
        ("carol", "app-a", "token.refresh", Outcome::Success),
        ("carol", "app-a", "auth.login", Outcome::Failure),
        ("carol", "app-a", "auth.login", Outcome::Success),
        ("carol", "app-b", "auth.login", Outcome::Error),
        ("dave", "app-a", "auth.login", Outcome::Success),
        ("dave", "app-b", "auth.login", Outcome::Success),
    ];
    let mut events: Vec<_> = plan
        .iter()
        .zip(0i64..)
        .map(|(&(actor, app, ty, outcome), i)| {
            sample_event(
                &format!("p{i}"),
                ty,
                Some(app),
                Some(actor),
                outcome,
                now - time::Duration::minutes(40 * i + 5),
            )
        })
        .collect();
    let long_id = format!("tok_{}", "9f3a7c2e".repeat(40));
    let mut long = sample_event(
        "long-target",
        "token.revoke",
        Some("app-a"),
        Some("erin"),
        Outcome::Success,
        now - time::Duration::minutes(2),
    );
    long.target = Some(authtrail::event::Target {
        kind: "token".into(),
        id: long_id.clone(),
        display: None,
        source: "request_body:/token".into(),
    });
    long.source.ip = Some("203.0.113.77".parse().unwrap());
    events.push(long.clone());
    store.append_fixtures(&events).await.unwrap();

    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let s = Session::start(&driver, &chromium, profile.path()).await;
    let ui = format!("http://{}/ui", sc.admin);
    s.go(&ui).await;
    s.type_into("#token-input", TOKEN_ALL).await;
    s.click("#signin-btn").await;
    s.wait_for(
        "the events table",
        "return document.querySelectorAll('#events-table tbody tr').length === 10;",
    )
    .await;
    let first_render = s
        .wait_for(
            "the first-render mark",
            "return document.body.dataset.firstRenderMs || null;",
        )
        .await;
    assert!(
        first_render
            .as_str()
            .is_some_and(|v| v.parse::<u64>().is_ok())
            && s.js("return performance.getEntriesByName('authtrail:first-render').length;")
                .await
                == 1,
        "{first_render}"
    );

    // The actor page: from an actor value, a per-type and outcome summary of the window and the
    // actor's events below it.
    s.mark_rows().await;
    s.click("#events-table tbody tr [data-col=actor] .pivot[data-value='carol']")
        .await;
    let summary = s
        .wait_for(
            "carol's actor page",
            &format!(
                "const rows = (function(){{ {ROWS} }})(); \
                 if (document.querySelector('#events-table tbody tr[data-stale]') || rows.length !== 7 || !rows.every(r => r.actor === 'carol')) return null; \
                 const a = (function(){{ {ACTOR_SUMMARY} }})(); return a && a.actor === 'carol' && a.total === 7 ? a : null;"
            ),
        )
        .await;
    assert_eq!(
        summary["rows"],
        json!([
            { "type": "auth.login", "total": 6, "success": 3, "failure": 2, "error": 1, "unknown": 0 },
            { "type": "token.refresh", "total": 1, "success": 1, "failure": 0, "error": 0, "unknown": 0 },
        ]),
        "{summary}"
    );
    let meta = summary["meta"].as_str().unwrap();
    assert!(
        meta.contains("app-a (6)") && meta.contains("app-b (1)"),
        "{meta}"
    );
    // From the detail pane too, and a type of the summary narrows the list, actor kept.
    s.mark_rows().await;
    s.click("#actor-summary [data-summary-type='token.refresh']")
        .await;
    s.wait_for(
        "carol's refreshes",
        &fresh_rows(
            "rows.length === 1 && rows[0].type === 'token.refresh' && rows[0].actor === 'carol' \
             && document.getElementById('actor-page').dataset.total === '1' && location.hash.includes('actor=carol')",
        ),
    )
    .await;
    // URL state: a reload gives the same actor page.
    s.js("setTimeout(() => location.reload(), 0); return true;")
        .await;
    s.wait_for(
        "the actor page after a reload",
        "const p = document.getElementById('actor-page'); return p && !p.hidden && p.dataset.actor === 'carol' && p.dataset.total === '1' \
         && document.querySelector('input[name=type]').value === 'token.refresh' && document.querySelectorAll('#events-table tbody tr').length === 1;",
    )
    .await;
    s.mark_rows().await;
    s.click("#actor-close").await;
    s.wait_for(
        "the actor page closed",
        &fresh_rows(
            "rows.length > 0 && document.getElementById('actor-page').hidden && document.querySelector('input[name=actor]').value === ''",
        ),
    )
    .await;
    // Every actor value opens it: the detail pane's actor.
    s.mark_rows().await;
    s.click("#reset-btn").await;
    s.wait_for("the whole list", &fresh_rows("rows.length === 10"))
        .await;
    s.click(&format!("tr[data-id='{}']", events[7].id)).await;
    s.click("#detail [data-field=actor] .pivot[data-value='dave']")
        .await;
    s.wait_for(
        "dave's actor page from the detail pane",
        &format!(
            "const a = (function(){{ {ACTOR_SUMMARY} }})(); return a && a.actor === 'dave' && a.total === 2;"
        ),
    )
    .await;

    // A long token target is cut in the list (Status and IP stay in view at 1400 px), whole on
    // hover and in the detail pane.
    s.mark_rows().await;
    s.click("#reset-btn").await;
    s.wait_for("the whole list", &fresh_rows("rows.length === 10"))
        .await;
    let fits = s
        .js(&format!(
            "const r = document.querySelector(\"tr[data-id='{}']\"); const list = document.querySelector('.list').getBoundingClientRect(); \
             const right = c => r.querySelector(`[data-col=${{c}}]`).getBoundingClientRect().right; \
             const t = r.querySelector('[data-col=target] .pivot'); \
             return {{ width: window.innerWidth, list: list.right, status: right('status'), ip: right('ip'), \
               title: t.title, cut: t.scrollWidth > t.clientWidth }};",
            long.id
        ))
        .await;
    let width = fits["width"].as_f64().unwrap();
    assert!((1300.0..=1400.0).contains(&width), "{fits}");
    for col in ["status", "ip"] {
        let right = fits[col].as_f64().unwrap();
        assert!(
            right <= fits["list"].as_f64().unwrap() + 1.0 && right <= width,
            "{col} off screen: {fits}"
        );
    }
    assert_eq!(fits["cut"], true, "{fits}");
    assert!(fits["title"].as_str().unwrap().contains(&long_id), "{fits}");
    s.click(&format!("tr[data-id='{}']", long.id)).await;
    let whole = s
        .wait_for(
            "the long target in the detail pane",
            &format!(
                "const d = document.getElementById('detail'); if (d.hidden || d.dataset.event !== '{}') return null; \
                 const p = d.querySelector('[data-field=target] .pivot'); \
                 return {{ text: p.textContent, cut: p.scrollWidth > p.clientWidth + 1 }};",
                long.id
            ),
        )
        .await;
    assert!(
        whole["text"].as_str().unwrap().contains(&long_id) && whole["cut"] == false,
        "{whole}"
    );
    s.click("#detail-close").await;

    // Saved views: filters, an exclusion, the type prefix and UTC, named and applied after a
    // reload; the token is never in localStorage.
    s.mark_rows().await;
    s.shift_click("#events-table tbody tr [data-col=app] .pivot[data-value='app-b']")
        .await;
    s.wait_for(
        "app-b excluded",
        &fresh_rows("rows.length > 0 && rows.every(r => r.app !== 'app-b')"),
    )
    .await;
    s.mark_rows().await;
    s.type_into("input[name=type]", "auth.*").await;
    s.click("#apply-btn").await;
    s.wait_for(
        "app-b excluded, logins only",
        &fresh_rows(
            "rows.length === 6 && rows.every(r => r.app !== 'app-b' && r.type === 'auth.login')",
        ),
    )
    .await;
    s.click("#tz-btn").await;
    s.click("#views summary").await;
    s.type_into("#view-name", "logins, not app-b").await;
    s.click("#view-save").await;
    let stored = s
        .wait_for(
            "the saved view",
            "return document.querySelector(\"[data-apply-view='logins, not app-b']\") ? JSON.stringify(localStorage) : null;",
        )
        .await;
    let stored = stored.as_str().unwrap();
    assert!(
        stored.contains("app_not=app-b")
            && stored.contains("tz=utc")
            && !stored.contains(TOKEN_ALL),
        "{stored}"
    );
    s.mark_rows().await;
    s.click("#reset-btn").await;
    s.wait_for("the whole list", &fresh_rows("rows.length === 10"))
        .await;
    s.js("setTimeout(() => location.reload(), 0); return true;")
        .await;
    s.wait_for(
        "the reloaded, reset page",
        "return document.querySelectorAll('#events-table tbody tr').length === 10 && document.querySelector('input[name=type]').value === '';",
    )
    .await;
    s.mark_rows().await;
    s.click("#views summary").await;
    s.click("[data-apply-view='logins, not app-b']").await;
    s.wait_for(
        "the saved view applied",
        &fresh_rows(
            "rows.length === 6 && rows.every(r => r.app !== 'app-b' && r.type === 'auth.login') \
             && document.querySelector('input[name=type]').value === 'auth.*' \
             && document.querySelector(\"#excludes [data-exclude=app][data-value='app-b']\") !== null \
             && location.hash.includes('tz=utc')",
        ),
    )
    .await;
    s.click("#views summary").await;
    s.click("[data-delete-view='logins, not app-b']").await;
    s.wait_for(
        "the view deleted",
        "return !document.querySelector('[data-apply-view]') && !(localStorage.getItem('authtrail.views') || '').includes('app-b');",
    )
    .await;
    s.click("#views summary").await;

    // The column chooser: a hidden column stays hidden after a reload.
    s.click("#columns summary").await;
    s.click("#columns input[data-column=target]").await;
    let hidden = "const th = document.querySelector('#events-table th[data-col=target]'); \
                  const td = document.querySelector('#events-table tbody td[data-col=target]'); \
                  return th.offsetParent === null && td && td.offsetParent === null \
                    && !document.querySelector('#columns input[data-column=target]').checked \
                    && document.querySelector('#events-table th[data-col=ip]').offsetParent !== null;";
    s.wait_for("the target column hidden", hidden).await;
    s.js("setTimeout(() => location.reload(), 0); return true;")
        .await;
    s.wait_for(
        "the reloaded table",
        "return document.querySelectorAll('#events-table tbody tr').length > 0;",
    )
    .await;
    s.wait_for("the target column still hidden", hidden).await;
    s.click("#columns summary").await;
    s.click("#columns input[data-column=target]").await;
    s.wait_for(
        "the target column back",
        "return document.querySelector('#events-table th[data-col=target]').offsetParent !== null;",
    )
    .await;

    // A credential scoped to app-a sees only carol's app-a events on her actor page.
    s.click("#signout-btn").await;
    s.type_into("#token-input", TOKEN_ALPHA).await;
    s.click("#signin-btn").await;
    s.wait_for(
        "the scoped list",
        "return !document.getElementById('app').hidden && document.querySelectorAll('#events-table tbody tr').length > 0;",
    )
    .await;
    s.mark_rows().await;
    s.click("#reset-btn").await;
    s.wait_for(
        "the scoped list",
        &fresh_rows("rows.length === 8 && rows.every(r => r.app === 'app-a')"),
    )
    .await;
    s.click("#events-table tbody tr [data-col=actor] .pivot[data-value='carol']")
        .await;
    let scoped = s
        .wait_for(
            "carol's scoped actor page",
            &format!(
                "const a = (function(){{ {ACTOR_SUMMARY} }})(); return a && a.actor === 'carol' && a.total === 6 ? a : null;"
            ),
        )
        .await;
    let meta = scoped["meta"].as_str().unwrap();
    assert!(
        meta.contains("app-a (6)") && !meta.contains("app-b"),
        "{meta}"
    );
    assert!(
        !scoped["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["error"] != 0),
        "{scoped}"
    );
    s.end().await;
}
