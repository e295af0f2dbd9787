//! The route map's rules, one test each, named after the rule.

use http::Method;

use super::*;
use crate::config::load_str;

fn map(routes: &str) -> RouteMap {
    let yaml = format!("upstream: http://127.0.0.1:9000\nroutes:\n{routes}");
    match load_str(&yaml, "test.yaml") {
        Ok(c) => c.routes,
        Err(e) => panic!("{e}"),
    }
}

fn route_for(map: &RouteMap, method: &str, host: Option<&str>, path: &str) -> Option<String> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let head = RequestHead {
        method: &method,
        host,
        path,
    };
    classify(map, &head).map(|m| m.route.id.clone())
}

fn params(map: &RouteMap, method: &str, path: &str) -> Vec<(String, String)> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let head = RequestHead {
        method: &method,
        host: None,
        path,
    };
    classify(map, &head).map(|m| m.params).unwrap_or_default()
}

#[test]
fn first_matching_route_wins() {
    let m = map(
        "  - { id: specific, match: { path: /v1/users/me }, event: account.update }\n\
         \x20 - { id: generic, match: { path: \"/v1/users/{id}\" }, event: account.update }\n",
    );
    assert_eq!(
        route_for(&m, "GET", None, "/v1/users/me").as_deref(),
        Some("specific")
    );
    assert_eq!(
        route_for(&m, "GET", None, "/v1/users/42").as_deref(),
        Some("generic")
    );
}

#[test]
fn param_matches_exactly_one_segment() {
    let m = map("  - { id: u, match: { path: \"/v1/users/{id}\" }, event: account.update }\n");
    assert_eq!(
        route_for(&m, "GET", None, "/v1/users/42").as_deref(),
        Some("u")
    );
    assert_eq!(route_for(&m, "GET", None, "/v1/users"), None);
    assert_eq!(route_for(&m, "GET", None, "/v1/users/42/roles"), None);
}

#[test]
fn params_are_named_and_percent_decoded() {
    let m = map(
        "  - { id: d, match: { path: \"/v1/apps/{app}/users/{user_id}/deactivate\" }, event: account.deactivate }\n",
    );
    assert_eq!(
        params(
            &m,
            "POST",
            "/v1/apps/app-alpha/users/alice%40example.com/deactivate"
        ),
        vec![
            ("app".to_string(), "app-alpha".to_string()),
            ("user_id".to_string(), "alice@example.com".to_string())
        ]
    );
}

#[test]
fn methods_restrict_and_any_method_when_absent() {
    let m = map(
        "  - { id: login, match: { method: POST, path: /v1/sessions }, event: auth.login }\n\
         \x20 - { id: logout, match: { method: [delete, POST], path: /v1/sessions/current }, event: auth.logout }\n\
         \x20 - { id: any, match: { path: /v1/me }, event: account.update }\n",
    );
    assert_eq!(
        route_for(&m, "POST", None, "/v1/sessions").as_deref(),
        Some("login")
    );
    assert_eq!(route_for(&m, "GET", None, "/v1/sessions"), None);
    assert_eq!(
        route_for(&m, "DELETE", None, "/v1/sessions/current").as_deref(),
        Some("logout")
    );
    assert_eq!(
        route_for(&m, "PATCH", None, "/v1/me").as_deref(),
        Some("any")
    );
}

#[test]
fn host_is_matched_without_port_and_case() {
    let m = map(
        "  - { id: a, match: { host: Auth.Example.com, path: /login }, event: auth.login }\n\
         \x20 - { id: b, match: { path: /login }, event: auth.login }\n",
    );
    assert_eq!(
        route_for(&m, "POST", Some("auth.example.COM:8443"), "/login").as_deref(),
        Some("a")
    );
    assert_eq!(
        route_for(&m, "POST", Some("other.example.com"), "/login").as_deref(),
        Some("b")
    );
    assert_eq!(route_for(&m, "POST", None, "/login").as_deref(), Some("b"));
}

#[test]
fn trailing_star_matches_the_rest() {
    let m = map("  - { id: admin, match: { path: \"/admin/*\" }, event: support.action }\n");
    assert_eq!(
        route_for(&m, "POST", None, "/admin/users/1/lock").as_deref(),
        Some("admin")
    );
    assert_eq!(
        route_for(&m, "POST", None, "/admin").as_deref(),
        Some("admin")
    );
    assert_eq!(route_for(&m, "POST", None, "/administrator"), None);
}

#[test]
fn odd_spellings_of_a_path_still_match() {
    let m = map("  - { id: login, match: { path: /v1/sessions }, event: auth.login }\n");
    for p in [
        "/v1/sessions/",
        "//v1//sessions",
        "/v1/./sessions",
        "/v1/x/../sessions",
        "/v1/%73essions",
        "/v1/sessions?next=/x",
    ] {
        assert_eq!(
            route_for(&m, "POST", None, p).as_deref(),
            Some("login"),
            "{p}"
        );
    }
}

#[test]
fn no_route_means_no_match() {
    let m = map("  - { id: login, match: { path: /v1/sessions }, event: auth.login }\n");
    assert_eq!(route_for(&m, "POST", None, "/v1/sessionsx"), None);
    assert_eq!(route_for(&m, "POST", None, "/"), None);
    assert_eq!(route_for(&m, "POST", None, ""), None);
}

#[test]
fn explain_says_why_earlier_routes_did_not_match() {
    let m = map(
        "  - { id: login, match: { method: POST, path: /v1/sessions }, event: auth.login }\n\
         \x20 - { id: user, match: { path: \"/v1/users/{id}\" }, event: account.update }\n\
         \x20 - { id: me, match: { path: /v1/me }, event: account.update }\n",
    );
    let method = Method::GET;
    let head = RequestHead {
        method: &method,
        host: None,
        path: "/v1/me",
    };
    let verdicts: Vec<(String, Verdict)> = explain(&m, &head, None)
        .into_iter()
        .map(|(r, v)| (r.id.clone(), v))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (
                "login".to_string(),
                Verdict::Method("method GET is not POST".to_string())
            ),
            (
                "user".to_string(),
                Verdict::Path("path has 2 segments, template needs 3".to_string())
            ),
            ("me".to_string(), Verdict::Matched(vec![])),
        ]
    );
}

#[test]
fn template_errors_are_specific() {
    let cases = [
        ("a/b", "must start with \"/\""),
        ("/a/{", "unclosed brace"),
        ("/a/{}", "empty parameter name"),
        (
            "/a/{x-y}",
            "parameter \"x-y\": names use letters, digits and \"_\"",
        ),
        ("/a/{x}/{x}", "parameter \"x\" appears twice"),
        (
            "/a/b{x}",
            "a parameter must be a whole segment, not part of \"b{x}\"",
        ),
        ("/a/*/b", "\"*\" is only allowed as the last segment"),
        ("/a?x=1", "query strings are not part of a path template"),
    ];
    for (raw, want) in cases {
        assert_eq!(
            PathTemplate::parse(raw).unwrap_err().to_string(),
            want,
            "{raw}"
        );
    }
}

#[test]
fn covers_detects_unreachable_templates() {
    let t = |s| PathTemplate::parse(s).unwrap();
    assert!(t("/v1/*").covers(&t("/v1/sessions")));
    assert!(t("/v1/{x}").covers(&t("/v1/sessions")));
    assert!(!t("/v1/sessions").covers(&t("/v1/{x}")));
    assert!(!t("/v1/{x}").covers(&t("/v1/*")));
    assert!(t("/v1/*").covers(&t("/v1/a/*")));
}

#[test]
fn outcome_exact_code_beats_class() {
    let rules = OutcomeRules {
        success: vec![StatusPattern::Class(2)],
        failure: vec![StatusPattern::Code(202), StatusPattern::Class(4)],
        ..OutcomeRules::default()
    };
    let s = |c| Some(http::StatusCode::from_u16(c).unwrap());
    assert_eq!(
        extract::decide_outcome(&rules, s(200), || true),
        crate::event::Outcome::Success
    );
    assert_eq!(
        extract::decide_outcome(&rules, s(202), || true),
        crate::event::Outcome::Failure
    );
    assert_eq!(
        extract::decide_outcome(&rules, s(503), || true),
        crate::event::Outcome::Error
    );
    assert_eq!(
        extract::decide_outcome(&rules, s(101), || true),
        crate::event::Outcome::Unknown
    );
    assert_eq!(
        extract::decide_outcome(&rules, None, || true),
        crate::event::Outcome::Error
    );
}

#[test]
fn success_if_turns_a_2xx_into_a_failure() {
    let rules = OutcomeRules {
        success_if: Some(BodyCondition {
            pointer: "/ok".into(),
            equals: Some(serde_json::json!(true)),
        }),
        ..OutcomeRules::default()
    };
    let ok = Some(http::StatusCode::OK);
    assert_eq!(
        extract::decide_outcome(&rules, ok, || true),
        crate::event::Outcome::Success
    );
    assert_eq!(
        extract::decide_outcome(&rules, ok, || false),
        crate::event::Outcome::Failure
    );
}

fn routing(map: &RouteMap, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let head = RequestHead {
        method: &method,
        host: None,
        path,
    };
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let query = path.split_once('?').map(|(_, q)| q);
    match route_request(map, &head, &h, query) {
        Routing::Unmapped => "unmapped".into(),
        Routing::Mapped(m) => format!("mapped {}", m.route.id),
        Routing::Ambiguous(a) => format!(
            "ambiguous {} via {} -> {}",
            a.resembles.route.id,
            a.label(),
            a.canonical_path
        ),
    }
}

const DEACTIVATE: &str = "  - { id: d, match: { method: POST, path: \"/v1/apps/{app}/users/{user_id}/deactivate\" }, event: account.deactivate }\n";

#[test]
fn a_target_an_upstream_may_read_as_a_route_is_ambiguous_never_unmapped() {
    let m = map(DEACTIVATE);
    let r = |method: &str, path: &str| routing(&m, method, path, &[]);
    assert_eq!(r("POST", "/v1/apps/a/users/u1/deactivate"), "mapped d");
    for (path, via) in [
        ("/v1/apps%2Fa%2Fusers/u1/deactivate", "encoded_separator"),
        (
            "/v1%2fapps%2fa%2fusers%2fu1%2fdeactivate",
            "encoded_separator",
        ),
        ("/v1/apps/a/users/u1/deactivate%2F", "encoded_separator"),
        ("/v1\\apps\\a\\users\\u1\\deactivate", "backslash"),
        ("/v1/apps/a/users/u1/deactivate%00.json", "nul"),
        ("/v1/apps/a/users/u1/deactivate;x=1", "matrix_params"),
        (
            "/v1/apps/a/users/u1/deactivate;jsessionid=abc",
            "matrix_params",
        ),
        ("/v1%252Fapps%252Fa/users/u1/deactivate", "double_encoding"),
        ("/V1/Apps/a/Users/u1/DEACTIVATE", "case"),
    ] {
        assert_eq!(
            r("POST", path),
            format!("ambiguous d via {via} -> /v1/apps/a/users/u1/deactivate"),
            "{path}"
        );
    }
    assert_eq!(
        r("post", "/v1/apps/a/users/u1/deactivate"),
        "ambiguous d via method_case -> /v1/apps/a/users/u1/deactivate"
    );
    assert_eq!(
        routing(
            &m,
            "GET",
            "/v1/apps/a/users/u1/deactivate",
            &[("x-http-method-override", "post")]
        ),
        "ambiguous d via method_override -> /v1/apps/a/users/u1/deactivate"
    );
    assert_eq!(
        r("GET", "/v1/apps/a/users/u1/deactivate?_method=POST"),
        "ambiguous d via method_override -> /v1/apps/a/users/u1/deactivate"
    );
    // Two tricks in one target.
    assert_eq!(
        r("POST", "/v1/apps%2Fa/users/u1/deactivate;x=1"),
        "ambiguous d via combined -> /v1/apps/a/users/u1/deactivate"
    );
    // `%2e%2e`: an upstream that resolves dots before decoding reads a path no route takes, so
    // the primary reading (which resolves it) stands.
    assert_eq!(
        r("POST", "/v1/apps/a/users/x/%2e%2e/u1/deactivate"),
        "mapped d"
    );
}

#[test]
fn same_route_other_parameters_is_ambiguous_and_no_route_changes_nothing() {
    let m = map(DEACTIVATE);
    let r = |path: &str| routing(&m, "POST", path, &[]);
    // The primary reading matches with user_id = "x/../../../b/users/u1"; the decoding upstream
    // acts on app b.
    assert_eq!(
        r("/v1/apps/a/users/x%2F..%2F..%2F..%2Fb%2Fusers%2Fu1/deactivate"),
        "ambiguous d via encoded_separator -> /v1/apps/b/users/u1/deactivate"
    );
    // A variant that matches nothing: the primary reading stands.
    assert_eq!(r("/v1/apps/a/users/u%2F1/deactivate"), "mapped d");
    // Capitals in a parameter value are no variant.
    assert_eq!(r("/v1/apps/A/users/U1/deactivate"), "mapped d");
    assert_eq!(r("/v2/other%2Fthing"), "unmapped");
}

#[test]
fn path_case_declares_how_the_upstream_routes() {
    let m = map(
        "  - { id: me, match: { path: /v1/users/me, path_case: sensitive }, event: account.update }\n\
         \x20 - { id: any, match: { path: \"/v1/users/{id}\" }, event: account.update }\n\
         \x20 - { id: login, match: { path: /Account/Login, path_case: insensitive }, event: auth.login }\n",
    );
    assert_eq!(routing(&m, "GET", "/v1/users/ME", &[]), "mapped any");
    assert_eq!(routing(&m, "POST", "/account/login", &[]), "mapped login");
    assert_eq!(routing(&m, "POST", "/ACCOUNT/LOGIN", &[]), "mapped login");
    let strict = map(
        "  - { id: me, match: { path: /v1/users/me }, event: account.update }\n\
         \x20 - { id: any, match: { path: \"/v1/users/{id}\" }, event: account.update }\n",
    );
    assert_eq!(
        routing(&strict, "GET", "/v1/users/ME", &[]),
        "ambiguous me via case -> /v1/users/me"
    );
}

#[test]
fn host_is_compared_without_port_trailing_dot_or_case() {
    let m = map("  - { id: h, match: { host: Admin.Example.Test, path: /x }, event: admin.op }\n");
    for host in [
        "admin.example.test",
        "ADMIN.example.test.",
        "admin.example.test.:8443",
    ] {
        let method = Method::GET;
        let head = RequestHead {
            method: &method,
            host: Some(host),
            path: "/x",
        };
        assert!(classify(&m, &head).is_some(), "{host}");
    }
}

#[test]
fn source_labels_lowercase_header_names_only() {
    use crate::identity::TokenLocation;
    let claim = |token| Source::Claim {
        claim: "Sub".into(),
        token,
        keys: None,
    };
    let cases = [
        (Source::Header("X-User".into()), "header:x-user"),
        (Source::Path("User_ID".into()), "path:User_ID"),
        (Source::RequestBody("/User".into()), "request_body:/User"),
        (
            Source::ResponseHeader {
                name: "Location".into(),
                param: Some("State".into()),
            },
            "response_header:location?State",
        ),
        (
            Source::ResponseHeader {
                name: "X-App".into(),
                param: None,
            },
            "response_header:x-app",
        ),
        (claim(TokenLocation::Bearer), "claim:Sub@bearer"),
        (
            claim(TokenLocation::Header("X-Token".into())),
            "claim:Sub@header:x-token",
        ),
        (
            Source::Lineage {
                of: LineageOf::App,
                token: TokenLocation::Form("Refresh".into()),
            },
            "lineage:app@form:Refresh",
        ),
    ];
    for (source, label) in cases {
        assert_eq!(source.label(), label);
    }
}
