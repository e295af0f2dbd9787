//! Identity by lineage and browser sessions, end to end through the sidecar in front of an
//! OAuth-style server that hands out opaque refresh tokens (rotated, with reuse detection),
//! authorization codes in redirects and a session cookie: every later request that presents one
//! of them names the user it was issued to — through rotation, code reuse, revocation, a
//! restart of the sidecar, and a second sidecar on one PostgreSQL trail — and a logout ends a
//! session. No token, code, cookie or password reaches the store or the logs.

mod support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use authtrail::event::{Outcome, TokenRole};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use support::events::{actor as who, lineage as lineage_of};
use support::harness::{self, contains, send};
use tokio::net::TcpListener;

// ---- the upstream: an OAuth-style server ----------------------------------------------------

#[derive(Clone, Default)]
struct Provider {
    /// Active refresh tokens → user.
    refresh: Arc<Mutex<HashMap<String, String>>>,
    /// Refresh tokens already rotated or revoked (a second use is reuse).
    spent: Arc<Mutex<HashSet<String>>>,
    /// Unused authorization codes → user.
    codes: Arc<Mutex<HashMap<String, String>>>,
    /// Live sessions → user.
    sessions: Arc<Mutex<HashMap<String, String>>>,
    /// Every secret handed out or accepted, for the scan.
    secrets: Arc<Mutex<Vec<String>>>,
}

fn new_secret(p: &Provider, prefix: &str) -> String {
    let s = format!("{prefix}-{}", uuid::Uuid::now_v7().simple());
    p.secrets.lock().unwrap().push(s.clone());
    s
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn tokens_for(p: &Provider, user: &str) -> serde_json::Value {
    let rt = new_secret(p, "rt");
    p.refresh.lock().unwrap().insert(rt.clone(), user.into());
    json!({ "access_token": new_secret(p, "at"), "refresh_token": rt, "token_type": "Bearer" })
}

fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    let h = req.headers().get("cookie")?.to_str().ok()?;
    h.split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

async fn handle(p: Provider, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let sid = cookie(&req, "sid");
    let cookie_ia = cookie(&req, "ia");
    let user_of_session = sid
        .as_ref()
        .and_then(|s| p.sessions.lock().unwrap().get(s).cloned());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let bad = |e: &str| reply(StatusCode::BAD_REQUEST, json!({ "error": e }));
    let resp = match path.as_str() {
        "/login" => {
            let user = form.get("username").cloned().unwrap_or_default();
            if form.get("password") == Some(&format!("pw-{user}")) {
                let sid = new_secret(&p, "sid");
                p.sessions.lock().unwrap().insert(sid.clone(), user.clone());
                let mut r = reply(StatusCode::OK, tokens_for(&p, &user));
                r.headers_mut().insert(
                    "set-cookie",
                    format!("sid={sid}; Path=/; HttpOnly; Max-Age=3600")
                        .parse()
                        .unwrap(),
                );
                r
            } else {
                reply(
                    StatusCode::UNAUTHORIZED,
                    json!({ "error": "invalid_grant" }),
                )
            }
        }
        "/token" => match form.get("grant_type").map(String::as_str) {
            Some("refresh_token") => {
                let rt = form.get("refresh_token").cloned().unwrap_or_default();
                let user = p.refresh.lock().unwrap().remove(&rt);
                match user {
                    Some(user) => {
                        p.spent.lock().unwrap().insert(rt);
                        reply(StatusCode::OK, tokens_for(&p, &user))
                    }
                    None => bad("invalid_grant"),
                }
            }
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                let user = p.codes.lock().unwrap().remove(&code);
                match user {
                    Some(user) => reply(StatusCode::OK, tokens_for(&p, &user)),
                    None => bad("invalid_grant"),
                }
            }
            _ => bad("unsupported_grant_type"),
        },
        "/authorize" => {
            let state = q.get("state").cloned().unwrap_or_default();
            let location = match user_of_session {
                Some(user) => {
                    let code = new_secret(&p, "code");
                    p.codes.lock().unwrap().insert(code.clone(), user);
                    format!("https://client.example/cb?code={code}&state={state}")
                }
                None => format!("https://client.example/cb?error=login_required&state={state}"),
            };
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", location)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        "/revoke" => {
            // RFC 7009: 200 whether or not the token was known.
            let t = form.get("token").cloned().unwrap_or_default();
            if p.refresh.lock().unwrap().remove(&t).is_some() {
                p.spent.lock().unwrap().insert(t);
            }
            reply(StatusCode::OK, json!({}))
        }
        // A pre-login interaction cookie, kept through the login (as OIDC providers do).
        "/interaction" => {
            let ia = new_secret(&p, "ia");
            let mut r = reply(StatusCode::OK, json!({}));
            r.headers_mut()
                .insert("set-cookie", format!("ia={ia}; Path=/").parse().unwrap());
            r
        }
        "/consent" => match cookie_ia {
            Some(_) => reply(StatusCode::OK, json!({ "consented": true })),
            None => reply(
                StatusCode::BAD_REQUEST,
                json!({ "error": "no_interaction" }),
            ),
        },
        "/account" => match user_of_session {
            Some(user) => reply(StatusCode::OK, json!({ "user": user })),
            None => reply(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "login_required" }),
            ),
        },
        "/logout" => {
            if let Some(s) = &sid {
                p.sessions.lock().unwrap().remove(s);
            }
            let mut r = reply(StatusCode::OK, json!({}));
            r.headers_mut()
                .insert("set-cookie", "sid=; Path=/; Max-Age=0".parse().unwrap());
            r
        }
        _ => reply(StatusCode::NOT_FOUND, json!({ "error": "not_found" })),
    };
    Ok(resp)
}

async fn provider() -> (Provider, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let p = Provider::default();
    support::serve::spawn(listener, p.clone(), handle);
    (p, addr)
}

// ---- the map --------------------------------------------------------------------------------

const EXTRA: &str = "trust:\n  fingerprint_key: lineage-fingerprint-key-0123\n  lineage_cache: 1000\ndefaults:\n  session: { cookies: [sid, ia] }\n";

const ROUTES: &str = r#"  - id: login
    match: { method: POST, path: /login }
    event: auth.login
    actor: { form: username }
    app: { const: app-web }
    tokens: { issued: [/access_token, /refresh_token] }
  - id: refresh
    match: { method: POST, path: /token, body: { /grant_type: refresh_token } }
    event: token.refresh
    outcome: { reason: /error }
    tokens: { presented: [/refresh_token], issued: [/access_token, /refresh_token] }
  - id: code
    match: { method: POST, path: /token, body: { /grant_type: authorization_code } }
    event: token.exchange
    outcome: { reason: /error }
    tokens: { presented: [/code], issued: [/access_token, /refresh_token] }
  - id: authorize
    match: { method: GET, path: /authorize }
    event: oauth.authorize
    tokens: { redirect: [code] }
  - id: revoke
    match: { method: POST, path: /revoke }
    event: token.revoke
    tokens: { presented: [/token] }
    target: { kind: user, from: { lineage: actor, form: token } }
  - id: account
    match: { method: GET, path: /account }
    event: account.read
  - id: interaction
    match: { method: GET, path: /interaction }
    event: oauth.interaction
  - id: consent
    match: { method: POST, path: /consent }
    event: oauth.consent
  - id: logout
    match: { method: POST, path: /logout }
    event: auth.logout
"#;

fn routes() -> String {
    ROUTES.to_string()
}

// ---- the client -----------------------------------------------------------------------------

async fn form(
    sc: &harness::Sidecar,
    path: &str,
    fields: &[(&str, &str)],
    sid: Option<&str>,
) -> harness::Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    // `ia=…` is sent as it is; anything else is the session id.
    let cookie = sid.map(|s| {
        if s.starts_with("ia=") {
            s.to_string()
        } else {
            format!("theme=dark; sid={s}")
        }
    });
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(c) = &cookie {
        h.push(("cookie", c));
    }
    send(Method::POST, &sc.url(path), &h, Bytes::from(body))
        .await
        .unwrap()
}

async fn get(sc: &harness::Sidecar, path: &str, sid: Option<&str>) -> harness::Reply {
    let cookie = sid.map(|s| format!("sid={s}"));
    let h: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    send(Method::GET, &sc.url(path), &h, Bytes::new())
        .await
        .unwrap()
}

async fn refresh(sc: &harness::Sidecar, rt: &str) -> harness::Reply {
    let fields = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    form(sc, "/token", &fields, None).await
}

async fn exchange(sc: &harness::Sidecar, code: &str) -> harness::Reply {
    let fields = [("grant_type", "authorization_code"), ("code", code)];
    form(sc, "/token", &fields, None).await
}

fn set_cookie_sid(r: &harness::Reply) -> String {
    let v = r.headers["set-cookie"].to_str().unwrap();
    v.split(';')
        .next()
        .unwrap()
        .strip_prefix("sid=")
        .unwrap()
        .to_string()
}

fn code_of(r: &harness::Reply) -> String {
    let loc = r.headers["location"].to_str().unwrap();
    let q = loc.split_once('?').unwrap().1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned()
}

fn scan(db: &std::path::Path, p: &Provider) {
    let store = harness::store_bytes(db);
    let logs = harness::captured_logs();
    let secrets = p.secrets.lock().unwrap().clone();
    assert!(secrets.len() > 10, "the scan has secrets to look for");
    for s in secrets
        .iter()
        .map(String::as_str)
        .chain(["pw-alice", "pw-bob"])
    {
        assert!(!contains(&store, s), "{s} is in the store");
        assert!(!logs.contains(s), "{s} is in the logs");
    }
}

#[tokio::test]
async fn tokens_codes_and_sessions_name_the_user_they_were_issued_to() {
    let (p, up) = provider().await;
    let mut sc = harness::start(up, EXTRA, &routes()).await;

    // The interaction cookie is set before anyone is known, and presented to the login.
    let ia = get(&sc, "/interaction", None).await;
    let ia = ia.headers["set-cookie"].to_str().unwrap();
    let ia = ia.split(';').next().unwrap().to_string();
    let login = form(
        &sc,
        "/login",
        &[("username", "alice"), ("password", "pw-alice")],
        Some(&ia),
    )
    .await;
    assert_eq!(login.status, 200);
    let sid = set_cookie_sid(&login);
    let rt1 = login.json()["refresh_token"].as_str().unwrap().to_string();
    let r = refresh(&sc, &rt1).await;
    assert_eq!(r.status, 200);
    let rt2 = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = refresh(&sc, &rt2).await;
    assert_eq!(r.status, 200);
    let rt3 = r.json()["refresh_token"].as_str().unwrap().to_string();
    // Reuse of a rotated token, and a token nobody issued.
    let r = refresh(&sc, &rt1).await;
    assert_eq!(r.status, 400);
    let r = refresh(&sc, "rt-made-up-by-mallory").await;
    assert_eq!(r.status, 400);
    // The browser flow: a code in a redirect, exchanged, then replayed.
    let a = get(&sc, "/authorize?client_id=web&state=s1", Some(&sid)).await;
    assert_eq!(a.status, 302);
    let code = code_of(&a);
    let r = exchange(&sc, &code).await;
    assert_eq!(r.status, 200);
    let r = exchange(&sc, &code).await;
    assert_eq!(r.status, 400);
    // Revocation names the owner; the session reads the account, logs out, and is then no one.
    assert_eq!(
        form(&sc, "/revoke", &[("token", &rt3)], None).await.status,
        200
    );
    assert_eq!(get(&sc, "/account", Some(&sid)).await.status, 200);
    assert_eq!(form(&sc, "/consent", &[], Some(&ia)).await.status, 200);
    assert_eq!(form(&sc, "/logout", &[], Some(&sid)).await.status, 200);
    assert_eq!(get(&sc, "/account", Some(&sid)).await.status, 401);
    // Bob logs in: his session and refresh token outlive the sidecar.
    let bob = form(
        &sc,
        "/login",
        &[("username", "bob"), ("password", "pw-bob")],
        None,
    )
    .await;
    let bob_sid = set_cookie_sid(&bob);
    let bob_rt = bob.json()["refresh_token"].as_str().unwrap().to_string();
    sc.stop().await;

    let evs = sc.events().await;
    assert_eq!(evs.len(), 15, "{evs:#?}");
    let [interaction, login_ev, r1, r2, reuse, forged, authz, exch, replay, revoke, account, consent, logout, after, bob_ev] =
        &evs[..]
    else {
        unreachable!()
    };
    assert_eq!(who(interaction), (None, false, None));
    assert_eq!(who(login_ev), (Some("alice"), false, Some("form:username")));
    assert_eq!(login_ev.details["session_bound"], json!(true));
    assert_eq!(who(consent), (Some("alice"), false, Some("session:ia")));
    let kinds: Vec<(&str, TokenRole)> = login_ev
        .tokens
        .iter()
        .map(|t| (t.kind.as_str(), t.role))
        .collect();
    assert_eq!(
        kinds,
        [
            ("session", TokenRole::Presented),
            ("access", TokenRole::Issued),
            ("refresh", TokenRole::Issued),
            ("session", TokenRole::Issued)
        ]
    );
    let session_exp = login_ev.tokens[3]
        .exp
        .expect("Max-Age gives the session an expiry");
    assert!((session_exp - login_ev.time.unix_timestamp() - 3600).abs() <= 5);

    // Rotation: each link names alice through the event that issued the token it presented,
    // as (un)verified as the login was.
    assert_eq!(
        who(r1),
        (Some("alice"), false, Some(lineage_of(login_ev).as_str()))
    );
    assert_eq!(
        who(r2),
        (Some("alice"), false, Some(lineage_of(r1).as_str()))
    );
    assert_eq!(r2.app.as_ref().map(|a| a.value.as_str()), Some("app-web"));
    assert_eq!(
        (reuse.outcome, reuse.reason.as_deref()),
        (Outcome::Failure, Some("invalid_grant"))
    );
    assert_eq!(
        who(reuse),
        (Some("alice"), false, Some(lineage_of(login_ev).as_str()))
    );
    assert_eq!(who(forged), (None, false, None), "never issued: no one");
    assert_eq!(
        forged.details["lineage"]["request_body:/refresh_token"],
        json!({ "found": false })
    );

    // The code: issued in the redirect to the session's user, inherited by its exchange and
    // its replay.
    assert_eq!(who(authz), (Some("alice"), false, Some("session:sid")));
    assert!(authz
        .tokens
        .iter()
        .any(|t| t.kind == "code" && t.role == TokenRole::Issued && t.source == "location:code"));
    assert_eq!(
        who(exch),
        (Some("alice"), false, Some(lineage_of(authz).as_str()))
    );
    assert_eq!(replay.outcome, Outcome::Failure);
    assert_eq!(
        who(replay),
        (Some("alice"), false, Some(lineage_of(authz).as_str()))
    );

    // Revocation: the token's owner is the actor and the target.
    assert_eq!(who(revoke).0, Some("alice"));
    let target = revoke.target.as_ref().expect("the owner as target");
    assert_eq!(
        (target.kind.as_str(), target.id.as_str()),
        ("user", "alice")
    );
    assert_eq!(target.source, lineage_of(r2));

    // The session: bound at login, ended by the logout.
    assert_eq!(who(account), (Some("alice"), false, Some("session:sid")));
    assert_eq!(who(logout), (Some("alice"), false, Some("session:sid")));
    assert_eq!(logout.details["session_ended"], json!(true));
    assert_eq!(after.outcome, Outcome::Failure);
    assert_eq!(
        who(after),
        (None, false, None),
        "a logged-out session names no one"
    );
    assert_eq!(
        after.details["lineage"]["cookie:sid"]["ended"],
        json!("logout")
    );
    assert_eq!(who(bob_ev).0, Some("bob"));

    // A new sidecar on the same trail: the store answers what memory no longer holds.
    let cfg = authtrail::config::load_str(
        &harness::config_yaml(up, &sc.db, EXTRA, &routes()),
        "test.yaml",
    )
    .unwrap();
    let db = sc.db.clone();
    let mut again = harness::start_config(cfg, db.clone(), tempfile::tempdir().unwrap()).await;
    assert_eq!(get(&again, "/account", Some(&bob_sid)).await.status, 200);
    assert_eq!(get(&again, "/account", Some(&sid)).await.status, 401);
    assert_eq!(form(&again, "/consent", &[], Some(&ia)).await.status, 200);
    let r = refresh(&again, &bob_rt).await;
    assert_eq!(r.status, 200);
    again.stop().await;
    let evs = again.events().await;
    let [.., bob_account, alice_after, alice_consent, bob_refresh] = &evs[..] else {
        unreachable!()
    };
    assert_eq!(who(bob_account), (Some("bob"), false, Some("session:sid")));
    assert_eq!(
        who(alice_consent),
        (Some("alice"), false, Some("session:ia")),
        "bound at the login, read from the store"
    );
    assert_eq!(
        who(alice_after),
        (None, false, None),
        "still logged out after a restart"
    );
    assert_eq!(
        alice_after.details["lineage"]["cookie:sid"]["ended"],
        json!("logout")
    );
    assert_eq!(
        who(bob_refresh),
        (Some("bob"), false, Some(lineage_of(bob_ev).as_str()))
    );

    scan(&db, &p);
    drop(sc);
}

#[tokio::test]
async fn a_second_sidecar_on_one_postgres_trail_knows_what_the_first_issued() {
    let Some(url) = support::pg::url() else {
        return;
    };
    let schema = support::pg::schema(&url).await;
    let (p, up) = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &'static str| {
        let yaml = format!(
            "upstream: http://{up}\nstore:\n  url: \"{}\"\n  flush_interval: 20ms\n  instance_id: {name}\n  spool: {{ dir: {} }}\n{EXTRA}routes:\n{}",
            schema.store_url(),
            dir.path().join(name).display(),
            routes()
        );
        let cfg = authtrail::config::load_str(&yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
        harness::start_config(
            cfg,
            dir.path().join("unused.db"),
            tempfile::tempdir().unwrap(),
        )
    };
    let mut a = start("sidecar-a").await;
    let mut b = start("sidecar-b").await;

    let login = form(
        &a,
        "/login",
        &[("username", "carol"), ("password", "pw-carol")],
        None,
    )
    .await;
    assert_eq!(login.status, 200);
    let rt = login.json()["refresh_token"].as_str().unwrap().to_string();
    let sid = set_cookie_sid(&login);
    // The login must be stored before the other sidecar can find it: stop A (it flushes).
    a.stop().await;
    let r = refresh(&b, &rt).await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&b, "/account", Some(&sid)).await.status, 200);
    b.stop().await;

    let store = authtrail::store::postgres::PostgresStore::connect(schema.options())
        .await
        .unwrap();
    use authtrail::store::EventStore;
    let evs = store
        .query(&authtrail::store::Query {
            ascending: true,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(evs.len(), 3, "{evs:#?}");
    assert_eq!(
        who(&evs[1]),
        (Some("carol"), false, Some(lineage_of(&evs[0]).as_str()))
    );
    assert_eq!(who(&evs[2]), (Some("carol"), false, Some("session:sid")));
    let _ = p;
}
