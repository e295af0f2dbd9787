//! The ory-kratos preset (config/presets/ory-kratos.yaml) against Ory Kratos' documented
//! exchanges: a stand-in that answers as the Kratos v1 public and admin APIs are documented to
//! (https://www.ory.sh/docs/kratos/reference/api, the self-service flow pages, the UI message
//! ids of https://www.ory.sh/docs/kratos/concepts/ui-messages) — flows submitted to
//! `/self-service/<kind>?flow=<id>` with `method` in the body, 200 `{session_token: "ory_st_…",
//! session: {identity: {id, traits}}}` for native apps, 400 with `ui.messages[{id: 4000006}]`,
//! 403 `{"error": {"id": "session_refresh_required"}}`, browser form posts answered with 303s
//! and the `ory_kratos_session` cookie, `/sessions/whoami`, logout for apps and browsers, and
//! `/admin/identities`. Not a live Kratos: its exchanges written from the documents. Every
//! event's type, outcome, reason, actor, app and target are asserted, and no secret (password,
//! session token, cookie, logout token, recovery code) reaches the store or the logs.

mod support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use authtrail::event::{ActorKind, Outcome};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use support::events::{actor, app, lineage, summary, target};
use support::harness::{self, contains, send, Reply};
use tokio::net::TcpListener;

/// One expected event: (request id, type, outcome, reason, actor, target).
type Row<'a> = (
    &'a str,
    &'a str,
    Outcome,
    Option<&'a str>,
    (Option<&'a str>, bool, Option<&'a str>),
    Option<(&'a str, &'a str, &'a str)>,
);

const ALICE: &str = "9f1d2c3b-4a5e-4f60-8172-a3b4c5d6e7f8";
const BOB: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const NOBODY: &str = "00000000-0000-4000-8000-000000000000";
const ALICE_PW: &str = "alice-kratos-pw-Rt62!";
const BOB_PW: &str = "bob-kratos-pw-Wq48!";
const UI: &str = "http://127.0.0.1:9/ui";
const LOGOUT_TOKEN: &str = "logout-token-Ze5v0Qm2Ls8c";

#[derive(Clone, Default)]
struct Kratos {
    /// Active sessions: token or cookie value → identity.
    sessions: Arc<Mutex<HashMap<String, String>>>,
    /// Identities that exist (by traits.email → id).
    identities: Arc<Mutex<HashMap<String, String>>>,
    /// Session tokens whose privileged window is over.
    stale: Arc<Mutex<HashSet<String>>>,
    secrets: Arc<Mutex<Vec<String>>>,
}

fn identity(id: &str, email: &str, state: &str) -> Value {
    json!({
        "id": id, "schema_id": "default", "schema_url": "http://127.0.0.1:4433/schemas/ZGVmYXVsdA",
        "state": state, "traits": { "email": email },
        "verifiable_addresses": [{ "value": email, "verified": true, "via": "email", "status": "completed" }],
        "recovery_addresses": [{ "value": email, "via": "email" }],
        "metadata_public": null, "created_at": "2026-01-05T10:00:00Z", "updated_at": "2026-01-05T10:00:00Z",
        "organization_id": null,
    })
}

fn session(id: &str, email: &str) -> Value {
    json!({
        "id": uuid::Uuid::now_v7().to_string(), "active": true,
        "expires_at": "2026-01-06T10:00:00Z", "authenticated_at": "2026-01-05T10:00:00Z",
        "authenticator_assurance_level": "aal1",
        "authentication_methods": [{ "method": "password", "aal": "aal1", "completed_at": "2026-01-05T10:00:00Z" }],
        "issued_at": "2026-01-05T10:00:00Z", "identity": identity(id, email, "active"),
        "devices": [{ "id": uuid::Uuid::now_v7().to_string(), "ip_address": "127.0.0.1", "user_agent": "test" }],
    })
}

/// A flow as Kratos answers it (state and messages vary).
fn flow(kind: &str, id: &str, state: &str, messages: Value) -> Value {
    json!({
        "id": id, "type": "api", "expires_at": "2026-01-05T11:00:00Z", "issued_at": "2026-01-05T10:00:00Z",
        "request_url": format!("http://127.0.0.1:4433/self-service/{kind}/api"),
        "ui": { "action": format!("http://127.0.0.1:4433/self-service/{kind}?flow={id}"), "method": "POST",
                "nodes": [], "messages": messages },
        "state": state,
    })
}

fn reply(status: StatusCode, body: Option<Value>) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(status);
    if body.is_some() {
        b = b.header("content-type", "application/json; charset=utf-8");
    }
    b.body(Full::new(Bytes::from(
        body.map(|v| v.to_string()).unwrap_or_default(),
    )))
    .unwrap()
}

fn error(status: StatusCode, id: &str, reason: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        Some(json!({ "error": {
            "id": id, "code": status.as_u16(), "status": status.canonical_reason().unwrap_or(""),
            "reason": reason, "message": "The request could not be authorized",
        }})),
    )
}

fn see_other(location: &str, cookie: Option<String>) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", location);
    if let Some(c) = cookie {
        b = b.header("set-cookie", c);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

async fn handle(k: Kratos, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let method = req.method().clone();
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let token = h("x-session-token");
    let cookie = h("cookie").and_then(|c| {
        c.split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(n, _)| *n == "ory_kratos_session")
            .map(|(_, v)| v.to_string())
    });
    let is_form =
        h("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let b: Value = if is_form {
        Value::Object(
            form_urlencoded::parse(&body)
                .into_owned()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let s = |f: &str| b[f].as_str().unwrap_or("").to_string();
    let who = token
        .as_ref()
        .or(cookie.as_ref())
        .and_then(|t| k.sessions.lock().unwrap().get(t).cloned());
    let flow_id = query.get("flow").cloned().unwrap_or_default();
    let email_of = |id: &str| {
        k.identities
            .lock()
            .unwrap()
            .iter()
            .find(|(_, v)| v.as_str() == id)
            .map(|(e, _)| e.clone())
            .unwrap_or_default()
    };
    let resp = match (method.as_str(), path.as_str()) {
        ("POST", "/self-service/login") => {
            let id = k.identities.lock().unwrap().get(&s("identifier")).cloned();
            let ok = id.is_some() && [ALICE_PW, BOB_PW].contains(&s("password").as_str());
            match (ok, is_form) {
                (true, false) => {
                    let id = id.unwrap();
                    let t = format!("ory_st_{}", uuid::Uuid::now_v7().simple());
                    k.secrets.lock().unwrap().push(t.clone());
                    k.sessions.lock().unwrap().insert(t.clone(), id.clone());
                    reply(
                        StatusCode::OK,
                        Some(
                            json!({ "session_token": t, "session": session(&id, &s("identifier")) }),
                        ),
                    )
                }
                (true, true) => {
                    let id = id.unwrap();
                    let c = format!("MTc{}", uuid::Uuid::now_v7().simple());
                    k.secrets.lock().unwrap().push(c.clone());
                    k.sessions.lock().unwrap().insert(c.clone(), id);
                    see_other(&format!("{UI}/welcome"), Some(format!("ory_kratos_session={c}; Path=/; Expires=Tue, 06 Jan 2026 10:00:00 GMT; Max-Age=86400; HttpOnly; SameSite=Lax")))
                }
                (false, false) => reply(
                    StatusCode::BAD_REQUEST,
                    Some(flow(
                        "login",
                        &flow_id,
                        "choose_method",
                        json!([{ "id": 4000006, "text": "The provided credentials are invalid, check for spelling mistakes in your password or username, email address, or phone number.", "type": "error", "context": {} }]),
                    )),
                ),
                (false, true) => see_other(&format!("{UI}/login?flow={flow_id}"), None),
            }
        }
        ("POST", "/self-service/registration") => {
            let email = b["traits"]["email"].as_str().unwrap_or("").to_string();
            if k.identities.lock().unwrap().contains_key(&email) {
                reply(
                    StatusCode::BAD_REQUEST,
                    Some(flow(
                        "registration",
                        &flow_id,
                        "choose_method",
                        json!([{ "id": 4000007, "text": "An account with the same identifier (email, phone, username, ...) exists already.", "type": "error", "context": {} }]),
                    )),
                )
            } else {
                k.identities
                    .lock()
                    .unwrap()
                    .insert(email.clone(), BOB.into());
                let t = format!("ory_st_{}", uuid::Uuid::now_v7().simple());
                k.secrets.lock().unwrap().push(t.clone());
                k.sessions.lock().unwrap().insert(t.clone(), BOB.into());
                reply(
                    StatusCode::OK,
                    Some(
                        json!({ "identity": identity(BOB, &email, "active"), "session_token": t, "session": session(BOB, &email), "continue_with": [] }),
                    ),
                )
            }
        }
        ("POST", "/self-service/settings") => match &who {
            None => error(
                StatusCode::UNAUTHORIZED,
                "session_inactive",
                "No active session was found in this request.",
            ),
            Some(_)
                if token
                    .as_ref()
                    .is_some_and(|t| k.stale.lock().unwrap().contains(t))
                    && s("method") == "password" =>
            {
                reply(
                    StatusCode::FORBIDDEN,
                    Some(
                        json!({ "error": { "id": "session_refresh_required", "code": 403, "status": "Forbidden", "reason": "The login session is too old and thus not allowed to update these fields. Please re-authenticate.", "message": "The requested action was forbidden" }, "redirect_browser_to": "http://127.0.0.1:4433/self-service/login/browser?refresh=true" }),
                    ),
                )
            }
            Some(id) => {
                let email = b["traits"]["email"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| email_of(id));
                let mut f = flow(
                    "settings",
                    &flow_id,
                    "success",
                    json!([{ "id": 1050001, "text": "Your changes have been saved!", "type": "success" }]),
                );
                f["identity"] = identity(id, &email, "active");
                reply(StatusCode::OK, Some(f))
            }
        },
        ("GET", "/sessions/whoami") => match &who {
            Some(id) => reply(StatusCode::OK, Some(session(id, &email_of(id)))),
            None => error(
                StatusCode::UNAUTHORIZED,
                "session_inactive",
                "No active session was found in this request.",
            ),
        },
        ("DELETE", "/self-service/logout/api") => {
            let t = s("session_token");
            if k.sessions.lock().unwrap().remove(&t).is_some() {
                reply(StatusCode::NO_CONTENT, None)
            } else {
                error(
                    StatusCode::FORBIDDEN,
                    "session_inactive",
                    "The session is not active.",
                )
            }
        }
        ("GET", "/self-service/logout")
            if query.get("token").map(String::as_str) == Some(LOGOUT_TOKEN) =>
        {
            if let Some(c) = &cookie {
                k.sessions.lock().unwrap().remove(c);
            }
            see_other(
                &format!("{UI}/login"),
                Some("ory_kratos_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax".into()),
            )
        }
        ("POST", "/admin/identities") => {
            let email = b["traits"]["email"].as_str().unwrap_or("").to_string();
            let id = uuid::Uuid::now_v7().to_string();
            k.identities
                .lock()
                .unwrap()
                .insert(email.clone(), id.clone());
            reply(StatusCode::CREATED, Some(identity(&id, &email, "active")))
        }
        (m, p) if p.starts_with("/admin/identities/") => {
            let rest = &p["/admin/identities/".len()..];
            let (id, sub) = rest.split_once('/').unwrap_or((rest, ""));
            let exists = k.identities.lock().unwrap().values().any(|v| v == id);
            match (m, sub, exists) {
                (_, _, false) => reply(
                    StatusCode::NOT_FOUND,
                    Some(
                        json!({ "error": { "code": 404, "status": "Not Found", "message": "Unable to locate the resource" } }),
                    ),
                ),
                ("PUT", "", true) => reply(
                    StatusCode::OK,
                    Some(identity(id, &email_of(id), &s("state"))),
                ),
                ("DELETE", "sessions", true) => {
                    k.sessions.lock().unwrap().retain(|_, v| v != id);
                    reply(StatusCode::NO_CONTENT, None)
                }
                ("DELETE", "", true) => reply(StatusCode::NO_CONTENT, None),
                _ => reply(StatusCode::OK, Some(identity(id, &email_of(id), "active"))),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            Some(
                json!({ "error": { "code": 404, "status": "Not Found", "message": "Not Found" } }),
            ),
        ),
    };
    Ok(resp)
}

#[tokio::test]
async fn the_ory_kratos_preset_follows_flows_session_tokens_and_cookies() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let k = Kratos::default();
    k.identities
        .lock()
        .unwrap()
        .insert("alice@example.com".into(), ALICE.into());
    support::serve::spawn(listener, k.clone(), handle);
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("kratos.db");
    for (key, v) in [
        ("KRATOS_UPSTREAM", format!("http://{up}")),
        (
            "FINGERPRINT_KEY",
            "kratos-preset-fingerprint-key".to_string(),
        ),
        ("AUTHTRAIL_STORE", format!("sqlite://{}", db.display())),
    ] {
        std::env::set_var(key, v);
    }
    let cfg = authtrail::config::load_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/presets/ory-kratos.yaml"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db.clone(), tmp).await;
    let call = |id: &'static str,
                method: Method,
                path: &str,
                body: Option<Value>,
                extra: Vec<(&'static str, String)>| {
        let url = sc.url(path);
        async move {
            let mut h: Vec<(&str, &str)> =
                vec![("x-request-id", id), ("accept", "application/json")];
            if body.is_some() {
                h.push(("content-type", "application/json"));
            }
            for (n, v) in &extra {
                h.push((n, v.as_str()));
            }
            let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
            send(method, &url, &h, body).await.unwrap()
        }
    };
    let form = |id: &'static str, path: &str, fields: Vec<(&'static str, &'static str)>| {
        let url = sc.url(path);
        async move {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            let h = [
                ("x-request-id", id),
                ("accept", "text/html"),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            send(Method::POST, &url, &h, Bytes::from(body))
                .await
                .unwrap()
        }
    };
    let st = |r: &Reply| r.json()["session_token"].as_str().unwrap().to_string();
    let login = |pw: &str| json!({ "method": "password", "identifier": "alice@example.com", "password": pw });
    let f1 = "6a0b7e2c-2f4d-4c1a-9e8b-7d6c5b4a3f21";

    // An API flow (unmapped: creating a flow is no event), then its submissions.
    let r = call(
        "xx-create-flow",
        Method::GET,
        "/self-service/login/api",
        None,
        vec![],
    )
    .await;
    assert_eq!(
        r.status, 404,
        "the stand-in does not create flows; the sidecar forwards it unmapped"
    );
    let r = call(
        "00-login-wrong",
        Method::POST,
        &format!("/self-service/login?flow={f1}"),
        Some(login("wrong-pw-Jj27")),
        vec![],
    )
    .await;
    assert_eq!(r.json()["ui"]["messages"][0]["id"], 4000006);
    let r = call(
        "01-login",
        Method::POST,
        &format!("/self-service/login?flow={f1}"),
        Some(login(ALICE_PW)),
        vec![],
    )
    .await;
    let t1 = st(&r);
    assert!(t1.starts_with("ory_st_"));
    let xst = |t: &str| vec![("x-session-token", t.to_string())];
    let r = call("02-whoami", Method::GET, "/sessions/whoami", None, xst(&t1)).await;
    assert_eq!(r.json()["identity"]["id"], ALICE);
    k.stale.lock().unwrap().insert(t1.clone());
    let r = call(
        "03-settings-password-stale",
        Method::POST,
        "/self-service/settings?flow=s1",
        Some(json!({ "method": "password", "password": "alice-new-pw-Vv31" })),
        xst(&t1),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        "04-settings-profile",
        Method::POST,
        "/self-service/settings?flow=s1",
        Some(json!({ "method": "profile", "traits": { "email": "alice@example.com" } })),
        xst(&t1),
    )
    .await;
    assert_eq!(r.json()["state"], "success");
    let reg = |email: &str| json!({ "method": "password", "traits": { "email": email }, "password": BOB_PW });
    let r = call(
        "05-register",
        Method::POST,
        "/self-service/registration?flow=r1",
        Some(reg("bob@example.com")),
        vec![],
    )
    .await;
    assert_eq!(r.json()["identity"]["id"], BOB);
    let t_bob = st(&r);
    let r = call(
        "06-register-taken",
        Method::POST,
        "/self-service/registration?flow=r1",
        Some(reg("bob@example.com")),
        vec![],
    )
    .await;
    assert_eq!(r.status, 400);
    // The browser: a form login that fails (303 back to the UI) and one that succeeds (cookie).
    let bf = vec![
        ("method", "password"),
        ("identifier", "alice@example.com"),
        ("password", "wrong-pw-Jj27"),
        ("csrf_token", "csrf-token-value-1"),
    ];
    let r = form(
        "07-browser-login-wrong",
        &format!("/self-service/login?flow={f1}"),
        bf,
    )
    .await;
    assert_eq!(r.headers["location"], format!("{UI}/login?flow={f1}"));
    let bf = vec![
        ("method", "password"),
        ("identifier", "alice@example.com"),
        ("password", ALICE_PW),
        ("csrf_token", "csrf-token-value-1"),
    ];
    let r = form(
        "08-browser-login",
        &format!("/self-service/login?flow={f1}"),
        bf,
    )
    .await;
    assert_eq!(r.status, 303);
    let set = r.headers["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let r = call(
        "09-whoami-cookie",
        Method::GET,
        "/sessions/whoami",
        None,
        vec![("cookie", cookie.clone())],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        "10-browser-logout",
        Method::GET,
        &format!("/self-service/logout?token={LOGOUT_TOKEN}"),
        None,
        vec![("cookie", cookie.clone())],
    )
    .await;
    assert_eq!(r.status, 303);
    let r = call(
        "11-whoami-cookie-after",
        Method::GET,
        "/sessions/whoami",
        None,
        vec![("cookie", cookie.clone())],
    )
    .await;
    assert_eq!(r.status, 401);
    // The native app signs out; its token after that.
    let r = call(
        "12-logout-api",
        Method::DELETE,
        "/self-service/logout/api",
        Some(json!({ "session_token": t1 })),
        vec![],
    )
    .await;
    assert_eq!(r.status, 204);
    let r = call(
        "13-whoami-after-logout",
        Method::GET,
        "/sessions/whoami",
        None,
        xst(&t1),
    )
    .await;
    assert_eq!(r.json()["error"]["id"], "session_inactive");
    // The admin API.
    let r = call(
        "14-admin-create",
        Method::POST,
        "/admin/identities",
        Some(json!({ "schema_id": "default", "traits": { "email": "carol@example.com" } })),
        vec![],
    )
    .await;
    assert_eq!(r.status, 201);
    let carol = r.json()["id"].as_str().unwrap().to_string();
    let r = call("15-admin-deactivate", Method::PUT, &format!("/admin/identities/{BOB}"), Some(json!({ "schema_id": "default", "traits": { "email": "bob@example.com" }, "state": "inactive" })), vec![]).await;
    assert_eq!(r.json()["state"], "inactive");
    let r = call(
        "16-admin-delete-unknown",
        Method::DELETE,
        &format!("/admin/identities/{NOBODY}"),
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(
        "17-admin-revoke-sessions",
        Method::DELETE,
        &format!("/admin/identities/{BOB}/sessions"),
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status, 204);
    let r = call(
        "18-whoami-bob-revoked",
        Method::GET,
        "/sessions/whoami",
        None,
        xst(&t_bob),
    )
    .await;
    assert_eq!(r.status, 401);
    sc.stop().await;

    let evs = sc.events().await;
    let dump: String = evs.iter().map(|e| summary(e) + "\n").collect();
    eprintln!("{dump}");
    assert_eq!(evs.len(), 19, "the flow creation is unmapped:\n{dump}");
    let ev = |id: &str| {
        evs.iter()
            .find(|e| e.http.request_id == id)
            .unwrap_or_else(|| panic!("{id}:\n{dump}"))
    };
    type Who<'a> = (Option<&'a str>, bool, Option<&'a str>);
    let (l01, l05, l08) = (
        lineage(ev("01-login")),
        lineage(ev("05-register")),
        lineage(ev("08-browser-login")),
    );
    let typed: Who = (
        Some("alice@example.com"),
        false,
        Some("request_body:/identifier"),
    );
    let said = |id, src| -> Who { (Some(id), false, Some(src)) };
    let by01: Who = (Some(ALICE), false, Some(l01.as_str()));
    let admin_api: Who = (Some("admin-api"), false, Some("const"));
    let user = |id, src| Some(("user", id, src));
    #[rustfmt::skip]
    let want: Vec<Row> = vec![
        ("00-login-wrong", "auth.login", Outcome::Failure, Some("invalid_credentials"), typed, None),
        ("01-login", "auth.login", Outcome::Success, None, said(ALICE, "response_body:/session/identity/id"), None),
        ("02-whoami", "session.read", Outcome::Success, None, said(ALICE, "response_body:/identity/id"), None),
        ("03-settings-password-stale", "password.change", Outcome::Failure, Some("session_refresh_required"), by01, user(ALICE, l01.as_str())),
        ("04-settings-profile", "account.update", Outcome::Success, None, said(ALICE, "response_body:/identity/id"), user(ALICE, "response_body:/identity/id")),
        ("05-register", "account.register", Outcome::Success, None, said(BOB, "response_body:/identity/id"), user(BOB, "response_body:/identity/id")),
        ("06-register-taken", "account.register", Outcome::Failure, Some("identifier_taken"), said("bob@example.com", "request_body:/traits/email"), user("bob@example.com", "request_body:/traits/email")),
        ("07-browser-login-wrong", "auth.login", Outcome::Failure, Some("form_error"), typed, None),
        ("08-browser-login", "auth.login", Outcome::Success, None, typed, None),
        ("09-whoami-cookie", "session.read", Outcome::Success, None, said(ALICE, "response_body:/identity/id"), None),
        ("10-browser-logout", "auth.logout", Outcome::Success, None, said("alice@example.com", "session:ory_kratos_session"), None),
        ("11-whoami-cookie-after", "session.read", Outcome::Failure, Some("session_inactive"), (None, false, None), None),
        ("12-logout-api", "auth.logout", Outcome::Success, None, by01, None),
        ("13-whoami-after-logout", "session.read", Outcome::Failure, Some("session_inactive"), by01, None),
        ("14-admin-create", "account.create", Outcome::Success, None, admin_api, user(carol.as_str(), "response_body:/id")),
        ("15-admin-deactivate", "account.deactivate", Outcome::Success, None, admin_api, user(BOB, "path:id")),
        ("16-admin-delete-unknown", "account.delete", Outcome::Failure, Some("not_found"), admin_api, user(NOBODY, "path:id")),
        ("17-admin-revoke-sessions", "session.revoke", Outcome::Success, None, admin_api, user(BOB, "path:id")),
        ("18-whoami-bob-revoked", "session.read", Outcome::Failure, Some("session_inactive"), (Some(BOB), false, Some(l05.as_str())), None),
    ];
    for (id, ty, outcome, reason, who, tgt) in &want {
        let e = ev(id);
        assert_eq!(
            (e.event_type.as_str(), e.outcome, e.reason.as_deref()),
            (*ty, *outcome, *reason),
            "{}",
            summary(e)
        );
        assert_eq!(actor(e), *who, "{}", summary(e));
        assert_eq!(target(e), *tgt, "{}", summary(e));
        assert_eq!(app(e).map(|a| a.0), Some("kratos"), "{}", summary(e));
        if id.contains("-admin-") {
            assert_eq!(e.actor.kind, ActorKind::Admin);
        }
    }
    let _ = l08;
    // What was typed and how; the message ids behind the reasons.
    assert_eq!(ev("00-login-wrong").details["reason_text"], "4000006");
    assert_eq!(
        ev("00-login-wrong").details["identifier"],
        "alice@example.com"
    );
    assert_eq!(ev("01-login").details["aal"], "aal1");
    assert_eq!(ev("07-browser-login-wrong").details["reason_text"], f1);
    // The browser session: bound at the form login, ended by the logout, unknown after.
    assert!(ev("08-browser-login")
        .tokens
        .iter()
        .any(|t| t.kind == "session" && t.source == "set_cookie:ory_kratos_session"));
    assert_eq!(ev("10-browser-logout").details["session_ended"], true);
    assert_eq!(
        ev("11-whoami-cookie-after").details["lineage"]["cookie:ory_kratos_session"]["ended"],
        "logout"
    );
    // The session token: issued by the login, presented at the logout.
    let issued = &ev("01-login").tokens[0];
    assert_eq!(
        ev("12-logout-api").tokens[0].fingerprint,
        issued.fingerprint
    );

    let store = harness::store_bytes(&db);
    let logs = harness::captured_logs();
    let mut secrets = k.secrets.lock().unwrap().clone();
    secrets.extend(
        [
            ALICE_PW,
            BOB_PW,
            "wrong-pw-Jj27",
            "alice-new-pw-Vv31",
            LOGOUT_TOKEN,
            "csrf-token-value-1",
        ]
        .map(String::from),
    );
    for s in &secrets {
        assert!(!contains(&store, s), "{s:.24}… is in the store");
        assert!(!logs.contains(s.as_str()), "{s:.24}… is in the logs");
    }
}
