//! OAuth answers that travel in redirects and sessions that live in cookies, end to end through
//! the sidecar: an `error=` in a `Location` is the failure and its reason, a redirect's URL is
//! stored with its code masked, a session cookie is recorded by fingerprint — and neither the
//! code nor the cookie reaches the store or the logs.

mod support;

use authtrail::event::Outcome;
use bytes::Bytes;
use hyper::Method;
use support::harness::{self, contains, send};
use support::upstream;

const CODE: &str = "SplxlOBeZQQYbYS6WxSbIA-authz-code";
const SESSION: &str = "s%3Asession-cookie-value-7c1d";

const EXTRA: &str = "trust:\n  fingerprint_key: redirects-fingerprint-key-0123\n";

const ROUTES: &str = r#"  - id: authorize
    match: { method: GET, path: /redirect }
    event: oauth.authorize
    actor: { request_cookie: _session }
    capture:
      redirect: { response_header: Location }
      state: { response_header: Location, query: state }
  - id: logout
    match: { method: POST, path: /echo-headers }
    event: auth.logout
    target: { kind: session, from: { request_cookie: _session } }
"#;

fn to(location: &str) -> String {
    let enc: String = form_urlencoded::byte_serialize(location.as_bytes()).collect();
    format!("/redirect?to={enc}")
}

#[tokio::test]
async fn oauth_redirects_and_session_cookies_are_recorded_without_their_secrets() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, EXTRA, ROUTES).await;
    let cookie = format!("theme=dark; _session={SESSION}");

    let denied = "https://client.example/cb?error=access_denied&error_description=The+user+said+no&state=st-1";
    let granted = format!("https://client.example/cb?code={CODE}&state=st-2");
    let implicit = "https://client.example/cb#state=st-3&error=consent_required";
    // Spring Security's failed form login: the parameter with no value.
    let bare = "/login?error";
    for location in [denied, granted.as_str(), implicit, bare] {
        let r = send(
            Method::GET,
            &sc.url(&to(location)),
            &[("cookie", &cookie)],
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(
            r.headers["location"].to_str().unwrap(),
            location,
            "the redirect reaches the client untouched"
        );
    }
    let r = send(
        Method::POST,
        &sc.url("/echo-headers"),
        &[("cookie", &cookie)],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        contains(&r.body, SESSION),
        "the cookie reaches the upstream untouched"
    );
    sc.stop().await;

    let evs = sc.events().await;
    assert_eq!(evs.len(), 5, "{evs:#?}");
    let print = authtrail::identity::Fingerprinter::new(b"redirects-fingerprint-key-0123")
        .fingerprint(SESSION);
    let (d, g, i, b, out) = (&evs[0], &evs[1], &evs[2], &evs[3], &evs[4]);

    assert_eq!(
        (d.outcome, d.reason.as_deref()),
        (Outcome::Failure, Some("access_denied"))
    );
    assert_eq!(d.details["state"], "st-1");
    assert_eq!(d.actor.id.as_deref(), Some(print.as_str()));
    assert_eq!(d.actor.source.as_deref(), Some("request_cookie:_session"));
    assert!(!d.actor.verified, "a cookie fingerprint is no proof of who");

    assert_eq!((g.outcome, g.reason.as_deref()), (Outcome::Success, None));
    assert_eq!(
        g.details["redirect"],
        "https://client.example/cb?code={code}&state=st-2"
    );
    assert_eq!(g.details["state"], "st-2");

    assert_eq!(
        (i.outcome, i.reason.as_deref()),
        (Outcome::Failure, Some("consent_required")),
        "an error in the fragment"
    );

    assert_eq!(
        (b.outcome, b.reason.as_deref()),
        (Outcome::Failure, Some("error")),
        "a bare `error` parameter: the parameter's name is the reason"
    );

    let target = out.target.as_ref().expect("the session ended");
    assert_eq!(
        (
            target.kind.as_str(),
            target.id.as_str(),
            target.source.as_str()
        ),
        ("session", print.as_str(), "request_cookie:_session")
    );

    let store = harness::store_bytes(&sc.db);
    let logs = harness::captured_logs();
    for secret in [CODE, SESSION, "session-cookie-value-7c1d"] {
        assert!(!contains(&store, secret), "{secret} in the store");
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}
