//! The admin API end to end: a sidecar on 127.0.0.1:0 with admin credentials, events in its real
//! SQLite store, requests over real sockets. Filters, paging under concurrent inserts, tenant
//! isolation on every endpoint, 401/403, exports, and the audit trail of the reads themselves.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use authtrail::event::Outcome;
use authtrail::store::EventStore;
use hyper::StatusCode;
use serde_json::Value;
use support::admin::{
    self, fixture, get, labels, t0, FIXTURE_LABELS, TOKEN_ALL, TOKEN_ALPHA, TOKEN_BETA,
    TOKEN_EXPORTER,
};
use support::fixtures::AppendFixtures;
use support::harness::Sidecar;
use support::store_conformance::sample_event;
use support::upstream;
use time::format_description::well_known::Rfc3339;

/// A sidecar with the fixture stored; returns it, its store and the fixture's start time.
async fn seeded() -> (Sidecar, Arc<dyn EventStore>, time::OffsetDateTime) {
    let up = upstream::spawn().await;
    let (sc, store) = admin::start(up.addr).await;
    let t0 = t0();
    store.append_fixtures(&fixture(t0)).await.unwrap();
    (sc, store, t0)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Labels of `GET /v1/events?{query}` as the all-seeing credential, oldest first.
async fn select(sc: &Sidecar, query: &str) -> Vec<String> {
    let r = get(
        sc,
        &format!("/v1/events?order=asc&{query}"),
        Some(TOKEN_ALL),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{query}: {}",
        String::from_utf8_lossy(&r.body)
    );
    labels(&r.json())
}

fn want(ls: &[&str]) -> Vec<String> {
    ls.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_filter_selects_exactly_its_events() {
    let (sc, _store, t0) = seeded().await;
    let at = |min: i64| {
        enc(&(t0 + time::Duration::minutes(min))
            .format(&Rfc3339)
            .unwrap())
    };

    assert_eq!(select(&sc, "").await, want(&FIXTURE_LABELS));
    assert_eq!(
        select(&sc, "app=app-b").await,
        want(&["b-login-ok", "b-login-fail", "b-mfa"])
    );
    assert_eq!(
        select(&sc, "actor=alice").await,
        want(&["a-login-ok", "a-login-fail", "a-refresh"])
    );
    assert_eq!(select(&sc, "target=bob").await, want(&["a-deact"]));
    assert_eq!(
        select(&sc, "type=auth.login").await,
        want(&[
            "a-login-ok",
            "a-login-fail",
            "a-login-fail-bob",
            "b-login-ok",
            "b-login-fail",
            "n-anon"
        ])
    );
    assert_eq!(
        select(&sc, "type=auth.*&outcome=failure").await,
        want(&["a-login-fail", "a-login-fail-bob", "b-login-fail", "b-mfa"])
    );
    assert_eq!(select(&sc, "outcome=error").await, want(&["n-anon"]));
    assert_eq!(select(&sc, "route=mfa").await, want(&["b-mfa"]));
    assert_eq!(
        select(&sc, "request_id=a-refresh").await,
        want(&["a-refresh"])
    );
    assert_eq!(
        select(&sc, "ip=192.0.2.1").await,
        want(&["a-login-ok", "a-login-fail", "a-refresh"])
    );
    // A token by fingerprint and by jti: the events that issued or presented it.
    assert_eq!(
        select(&sc, "token=fp-a1").await,
        want(&["a-login-ok", "a-refresh"])
    );
    assert_eq!(select(&sc, "token=jti-a2").await, want(&["a-refresh"]));
    // since is inclusive, until exclusive.
    assert_eq!(
        select(&sc, &format!("since={}&until={}", at(3), at(5))).await,
        want(&["a-refresh", "a-deact"])
    );
    // Relative times count back from now: the fixture is 2 hours old.
    assert_eq!(select(&sc, "since=1h").await, Vec::<String>::new());
    assert_eq!(
        select(&sc, "since=3h&type=auth.mfa.*").await,
        want(&["b-mfa"])
    );
    // q: ids, display names (case-insensitive) and details.
    assert_eq!(select(&sc, "q=anders").await, want(&["a-login-ok"]));
    assert_eq!(select(&sc, "q=the%20builder").await, want(&["a-deact"]));
    assert_eq!(select(&sc, "q=OFFBOARDING").await, want(&["a-deact"]));
    assert_eq!(
        select(&sc, "q=b-login").await,
        want(&["b-login-ok", "b-login-fail"])
    );
    assert_eq!(select(&sc, "q=100%25").await, Vec::<String>::new());
    let all = get(&sc, "/v1/events?type=account.*", Some(TOKEN_ALL))
        .await
        .json();
    let id = all["events"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(select(&sc, &format!("q={id}")).await, want(&["a-deact"]));
    // Combinations that share the index paths: app + actor + time range; type + outcome + app.
    assert_eq!(
        select(
            &sc,
            &format!("app=app-a&actor=alice&since={}&until={}", at(1), at(4))
        )
        .await,
        want(&["a-login-fail", "a-refresh"])
    );
    assert_eq!(
        select(&sc, "app=app-b&type=auth.login&outcome=failure").await,
        want(&["b-login-fail"])
    );
    assert_eq!(
        select(&sc, "token=fp-a1&actor=alice&outcome=success&ip=192.0.2.1").await,
        want(&["a-login-ok", "a-refresh"])
    );
    // Empty values mean "any", as the viewer's form sends them.
    assert_eq!(select(&sc, "app=&outcome=&q=").await, want(&FIXTURE_LABELS));
}

#[tokio::test]
async fn bad_parameters_are_400_with_the_parameter_named() {
    let (sc, _store, _) = seeded().await;
    let cases = [
        (
            "/v1/events?outcome=maybe",
            "invalid outcome \"maybe\": expected success, failure, error or unknown",
        ),
        (
            "/v1/events?limit=1001",
            "invalid limit \"1001\": expected a number from 1 to 1000",
        ),
        (
            "/v1/events?since=soon",
            "invalid since \"soon\": expected a duration like 24h or an RFC 3339 time",
        ),
        (
            "/v1/events?ip=300.1.1.1",
            "invalid ip \"300.1.1.1\": expected an IP address",
        ),
        (
            "/v1/events?colour=red",
            "unknown query parameter \"colour\"",
        ),
        (
            "/v1/events?app=a&app=b",
            "query parameter \"app\" given more than once",
        ),
        (
            "/v1/events?cursor=zzz",
            "invalid cursor \"zzz\": not a cursor this server issued",
        ),
        (
            "/v1/events/not-a-uuid",
            "invalid event id \"not-a-uuid\": expected a UUID",
        ),
        (
            "/v1/stats?bucket=1m&since=7d",
            "invalid bucket \"1m\": 10080 buckets between since and until, at most 1000",
        ),
        (
            "/v1/export?format=xml",
            "invalid format \"xml\": expected ndjson, csv or ocsf",
        ),
    ];
    for (path, message) in cases {
        let r = get(&sc, path, Some(TOKEN_ALL)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        let body = r.json();
        assert_eq!(body["error"], "bad_request", "{path}");
        assert_eq!(body["message"], message, "{path}");
    }
}

#[tokio::test]
async fn limit_defaults_to_100_and_order_to_newest_first() {
    let up = upstream::spawn().await;
    let (sc, store) = admin::start(up.addr).await;
    let t0 = t0();
    let events: Vec<_> = (0..150)
        .map(|i| {
            sample_event(
                &format!("e{i:03}"),
                "auth.login",
                Some("app-a"),
                Some("u"),
                Outcome::Success,
                t0 + time::Duration::seconds(i),
            )
        })
        .collect();
    store.append_fixtures(&events).await.unwrap();

    let page = get(&sc, "/v1/events?app=app-a", Some(TOKEN_ALL))
        .await
        .json();
    let ls = labels(&page);
    assert_eq!(ls.len(), 100);
    assert_eq!(ls[0], "e149");
    assert_eq!(page["limit"], 100);
    assert_eq!(page["order"], "desc");
    let page = get(
        &sc,
        "/v1/events?app=app-a&order=asc&limit=3",
        Some(TOKEN_ALL),
    )
    .await
    .json();
    assert_eq!(labels(&page), want(&["e000", "e001", "e002"]));
    let page = get(&sc, "/v1/events?app=app-a&limit=1000", Some(TOKEN_ALL))
        .await
        .json();
    assert_eq!(labels(&page).len(), 150);
    assert!(
        page["next_cursor"].is_null(),
        "a short newest-first page is the last"
    );
}

#[tokio::test]
async fn cursor_pages_follow_the_link_header_to_the_end() {
    let up = upstream::spawn().await;
    let (sc, store) = admin::start(up.addr).await;
    let t0 = t0();
    let events: Vec<_> = (0..95)
        .map(|i| {
            sample_event(
                &format!("e{i:03}"),
                "token.refresh",
                Some("app-a"),
                Some("u"),
                Outcome::Success,
                t0 + time::Duration::seconds(i),
            )
        })
        .collect();
    store.append_fixtures(&events).await.unwrap();

    let mut path = "/v1/events?type=token.refresh&limit=10".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = get(&sc, &path, Some(TOKEN_ALL)).await;
        assert_eq!(r.status, StatusCode::OK);
        let page = r.json();
        seen.extend(labels(&page));
        pages += 1;
        let Some(cursor) = page["next_cursor"].as_str() else {
            assert!(r.headers.get("link").is_none());
            break;
        };
        let link = r.headers["link"].to_str().unwrap();
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        assert!(link.contains(&format!("cursor={cursor}")), "{link}");
        assert!(link.contains("type=token.refresh"), "{link}");
        path = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string();
    }
    let expected: Vec<String> = (0..95).rev().map(|i| format!("e{i:03}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 10);

    // A cursor issued for one order is refused for the other.
    let page = get(&sc, "/v1/events?limit=5", Some(TOKEN_ALL)).await.json();
    let c = page["next_cursor"].as_str().unwrap();
    let r = get(
        &sc,
        &format!("/v1/events?order=asc&cursor={c}"),
        Some(TOKEN_ALL),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["message"],
        format!("invalid cursor \"{c}\": it pages order=desc")
    );
}

#[tokio::test]
async fn polling_with_the_cursor_never_skips_or_repeats_during_inserts() {
    let up = upstream::spawn().await;
    let (sc, store) = admin::start(up.addr).await;
    let t0 = t0();
    const TOTAL: usize = 600;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut i = 0;
            while i < TOTAL {
                let n = 1 + (i * 7) % 13;
                let batch: Vec<_> = (i..(i + n).min(TOTAL))
                    .map(|k| {
                        sample_event(
                            &format!("p{k:04}"),
                            "auth.login",
                            Some(if k % 2 == 0 { "app-a" } else { "app-b" }),
                            Some("poller"),
                            Outcome::Success,
                            t0 + time::Duration::milliseconds(k as i64),
                        )
                    })
                    .collect();
                store.append_fixtures(&batch).await.unwrap();
                written.extend(batch.iter().map(|e| e.http.request_id.clone()));
                i += n;
                tokio::time::sleep(Duration::from_millis((i % 3) as u64)).await;
            }
            written
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut seqs: Vec<i64> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut idle_after_writer = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/events?actor=poller&order=asc&limit=25&cursor={c}"),
            None => "/v1/events?actor=poller&order=asc&limit=25".to_string(),
        };
        let page = get(&sc, &path, Some(TOKEN_ALL)).await.json();
        let events = page["events"].as_array().unwrap();
        for e in events {
            seen.push(e["http"]["request_id"].as_str().unwrap().to_string());
            seqs.push(e["seq"].as_i64().unwrap());
        }
        // An ascending page always hands back a cursor, even an empty one.
        cursor = Some(
            page["next_cursor"]
                .as_str()
                .expect("asc pages always have a cursor")
                .to_string(),
        );
        if events.is_empty() {
            if writer.is_finished() {
                idle_after_writer += 1;
                if idle_after_writer == 2 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let written = writer.await.unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs go strictly up");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event seen twice");
    assert_eq!(seen, written, "every event seen, in commit order");
}

/// Event ids of the fixture, by label (as the all-seeing credential reads them).
async fn ids(sc: &Sidecar) -> std::collections::HashMap<String, String> {
    let page = get(sc, "/v1/events?limit=1000", Some(TOKEN_ALL))
        .await
        .json();
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["http"]["request_id"].as_str().unwrap().to_string(),
                e["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_credential_sees_only_its_apps_on_every_endpoint() {
    let (sc, _store, _) = seeded().await;
    let ids = ids(&sc).await;

    // List: own app only, whatever the filters ask for.
    let alpha = labels(
        &get(&sc, "/v1/events?order=asc", Some(TOKEN_ALPHA))
            .await
            .json(),
    );
    assert_eq!(
        alpha,
        want(&[
            "a-login-ok",
            "a-login-fail",
            "a-login-fail-bob",
            "a-refresh",
            "a-deact"
        ])
    );
    let beta = labels(
        &get(&sc, "/v1/events?order=asc", Some(TOKEN_BETA))
            .await
            .json(),
    );
    assert_eq!(beta, want(&["b-login-ok", "b-login-fail", "b-mfa"]));
    let r = get(&sc, "/v1/events?app=app-b", Some(TOKEN_ALPHA)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(labels(&r.json()), Vec::<String>::new());
    // The all-seeing credential sees app-less events too; scoped ones never.
    let all = labels(
        &get(&sc, "/v1/events?order=asc", Some(TOKEN_ALL))
            .await
            .json(),
    );
    assert_eq!(all, want(&FIXTURE_LABELS));
    let anon = labels(
        &get(&sc, "/v1/events?outcome=error", Some(TOKEN_ALPHA))
            .await
            .json(),
    );
    assert!(anon.is_empty());

    // Get: another app's event is answered exactly like a missing one.
    let own = get(
        &sc,
        &format!("/v1/events/{}", ids["a-deact"]),
        Some(TOKEN_ALPHA),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.json()["http"]["request_id"], "a-deact");
    let other = get(
        &sc,
        &format!("/v1/events/{}", ids["b-mfa"]),
        Some(TOKEN_ALPHA),
    )
    .await;
    let missing = get(
        &sc,
        &format!("/v1/events/{}", uuid::Uuid::now_v7()),
        Some(TOKEN_ALPHA),
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(other.body, missing.body);
    let anon = get(
        &sc,
        &format!("/v1/events/{}", ids["n-anon"]),
        Some(TOKEN_BETA),
    )
    .await;
    assert_eq!(anon.status, StatusCode::NOT_FOUND);

    // A token's life: another app's token is a missing token.
    let r = get(&sc, "/v1/tokens/fp-b1", Some(TOKEN_ALPHA)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body,
        get(&sc, "/v1/tokens/fp-nope", Some(TOKEN_ALPHA)).await.body
    );
    assert_eq!(
        get(&sc, "/v1/tokens/fp-b1", Some(TOKEN_BETA)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&sc, "/v1/tokens/fp-a1", Some(TOKEN_ALPHA)).await.status,
        StatusCode::OK
    );

    // Stats: counts of own app only.
    let stats = get(&sc, "/v1/stats?since=1d", Some(TOKEN_BETA))
        .await
        .json();
    let apps: HashSet<&str> = stats["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["app"].as_str().unwrap_or("<none>"))
        .collect();
    assert_eq!(apps, HashSet::from(["app-b"]));
    assert_eq!(stats["total"], 3);

    // Export: own app only (beta may export).
    let r = get(&sc, "/v1/export?format=ndjson", Some(TOKEN_BETA)).await;
    assert_eq!(r.status, StatusCode::OK);
    let lines: Vec<Value> = String::from_utf8(r.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|e| e["app"]["value"] == "app-b"));

    // Coverage counters are sidecar-wide: a scoped credential sees none of them.
    let cov = get(&sc, "/v1/coverage", Some(TOKEN_ALPHA)).await.json();
    assert_eq!(cov["scope"], "apps");
    assert_eq!(cov["unmapped"], serde_json::json!([]));
    assert_eq!(cov["routes"], serde_json::json!([]));
    let cov = get(&sc, "/v1/coverage", Some(TOKEN_ALL)).await.json();
    assert_eq!(cov["scope"], "all");
    assert_eq!(cov["routes"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn no_valid_credential_is_401_and_a_missing_permission_403() {
    let (sc, _store, _) = seeded().await;
    let endpoints = [
        "/v1/events",
        "/v1/events/0190f5d2-0000-7000-8000-000000000000",
        "/v1/tokens/fp-a1",
        "/v1/stats",
        "/v1/coverage",
        "/v1/export",
    ];
    for path in endpoints {
        let r = get(&sc, path, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"authtrail\"");
        assert_eq!(r.json()["error"], "unauthorized");
        let r = get(&sc, path, Some("tok-all-8f2d1c6e9c")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            r.headers["www-authenticate"],
            "Bearer realm=\"authtrail\", error=\"invalid_token\""
        );
        assert_eq!(r.json()["message"], "missing or invalid admin credential");
        // The hash itself is not a credential.
        let hash = authtrail::admin::auth::token_sha256_hex(TOKEN_ALL);
        assert_eq!(
            get(&sc, path, Some(&hash)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Read-only may not export; export-only may not read.
    let r = get(&sc, "/v1/export", Some(TOKEN_ALPHA)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["message"],
        "credential \"support-alpha\" lacks the export permission"
    );
    for path in &endpoints[..5] {
        let r = get(&sc, path, Some(TOKEN_EXPORTER)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            r.json()["message"],
            "credential \"siem\" lacks the read permission"
        );
    }
    assert_eq!(
        get(&sc, "/v1/export", Some(TOKEN_EXPORTER)).await.status,
        StatusCode::OK
    );
    // Who am I: the credential's name, scope and permissions, never its hash.
    assert_eq!(
        get(&sc, "/v1/whoami", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let me = get(&sc, "/v1/whoami", Some(TOKEN_ALPHA)).await;
    assert_eq!(
        me.json(),
        serde_json::json!({"name": "support-alpha", "apps": ["app-a"], "permissions": ["read"]})
    );
    // What needs no credential: health, the API description, the viewer's files.
    for path in [
        "/healthz",
        "/readyz",
        "/v1/openapi.json",
        "/ui",
        "/ui/app.js",
        "/ui/app.css",
    ] {
        assert_eq!(get(&sc, path, None).await.status, StatusCode::OK, "{path}");
    }
    assert_eq!(
        get(&sc, "/v1/nope", Some(TOKEN_ALL)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn config_takes_hashes_never_tokens() {
    let base = "upstream: http://127.0.0.1:9000\n";
    let hash = authtrail::admin::auth::token_sha256_hex(TOKEN_ALL);
    let ok = format!(
        "{base}admin:\n  credentials:\n    - {{ name: sec, token_sha256: {}, apps: [\"*\"], permissions: [read] }}\n",
        hash.to_uppercase()
    );
    let cfg = authtrail::config::load_str(&ok, "a.yaml").unwrap();
    assert_eq!(cfg.admin_credentials.len(), 1);
    // The token itself (or anything that is not 64 hex digits) is refused, and never echoed.
    let bad = format!(
        "{base}admin:\n  credentials:\n    - {{ name: sec, token_sha256: {TOKEN_ALL}, apps: [app-a, \"*\"], permissions: [read, write] }}\n    - {{ name: sec, token_sha256: {hash}, apps: [], permissions: [] }}\n"
    );
    let err = authtrail::config::load_str(&bad, "a.yaml")
        .unwrap_err()
        .to_string();
    assert!(!err.contains(TOKEN_ALL), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "a.yaml:4:34: admin.credentials[0].token_sha256: expected the SHA-256 of the token as 64 hex digits (printf %s \"$TOKEN\" | sha256sum), never the token itself",
            "a.yaml:4:60: admin.credentials[0].apps: \"*\" already means every app: list no other app beside it",
            "a.yaml:4:87: admin.credentials[0].permissions[1]: unknown permission \"write\": expected read, export or reload",
            "a.yaml:5:15: admin.credentials[1].name: duplicate credential name \"sec\"",
            "a.yaml:5:106: admin.credentials[1].apps: app scope must not be empty: list apps or use [\"*\"]",
            "a.yaml:5:123: admin.credentials[1].permissions: permissions must not be empty: use read, export or reload",
        ]
    );
}

#[tokio::test]
async fn one_event_and_a_tokens_life() {
    let (sc, _store, _) = seeded().await;
    let ids = ids(&sc).await;
    let e = get(
        &sc,
        &format!("/v1/events/{}", ids["a-refresh"]),
        Some(TOKEN_ALL),
    )
    .await
    .json();
    assert_eq!(e["type"], "token.refresh");
    assert_eq!(e["app"]["value"], "app-a");
    assert_eq!(e["tokens"][0]["fingerprint"], "fp-a1");
    assert!(e["seq"].as_i64().unwrap() > 0);

    let life = get(&sc, "/v1/tokens/jti-a1", Some(TOKEN_ALL)).await.json();
    assert_eq!(life["token"], "jti-a1");
    assert_eq!(
        labels(&life),
        want(&["a-login-ok", "a-refresh"]),
        "oldest first"
    );
    assert_eq!(
        life["summary"]["fingerprints"],
        serde_json::json!(["fp-a1"])
    );
    assert_eq!(life["summary"]["apps"], serde_json::json!(["app-a"]));
    assert_eq!(life["summary"]["revoked"], false);
    let r = get(&sc, "/v1/tokens/jti-a1?token=x", Some(TOKEN_ALL)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stats_count_by_bucket_type_outcome_and_app() {
    let (sc, _store, t0) = seeded().await;
    let since = enc(&t0.format(&Rfc3339).unwrap());
    let until = enc(&(t0 + time::Duration::minutes(10)).format(&Rfc3339).unwrap());
    let s = get(
        &sc,
        &format!("/v1/stats?since={since}&until={until}&bucket=5m&type=auth.login"),
        Some(TOKEN_ALL),
    )
    .await
    .json();
    assert_eq!(s["bucket_ms"], 300_000);
    assert_eq!(s["total"], 6);
    let rows: Vec<(String, String, String, u64)> = s["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["app"].as_str().unwrap_or("-").to_string(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let count = |o: &str, app: &str| -> u64 {
        rows.iter()
            .filter(|r| r.1 == o && r.2 == app)
            .map(|r| r.3)
            .sum()
    };
    assert_eq!(count("success", "app-a"), 1);
    assert_eq!(count("failure", "app-a"), 2);
    assert_eq!(count("success", "app-b"), 1);
    assert_eq!(count("failure", "app-b"), 1);
    assert_eq!(count("error", "-"), 1);
    // Buckets are aligned and ordered.
    let buckets: Vec<&str> = s["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bucket"].as_str().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    assert!(buckets.iter().all(|b| b.ends_with(":00.000Z")));

    // `group` keeps only the named columns besides the bucket, summing over the rest.
    let g = get(
        &sc,
        &format!("/v1/stats?since={since}&until={until}&bucket=10m&type=auth.login&group=outcome"),
        Some(TOKEN_ALL),
    )
    .await
    .json();
    assert_eq!(g["group"], serde_json::json!(["outcome"]));
    assert_eq!(g["total"], 6);
    let outcomes: Vec<(String, u64)> = g["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r.get("type").is_none() && r.get("app").is_none(), "{r}");
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let sum = |o: &str| -> u64 { outcomes.iter().filter(|r| r.0 == o).map(|r| r.1).sum() };
    assert_eq!((sum("success"), sum("failure"), sum("error")), (2, 3, 1));
    // One row per bucket and outcome.
    assert!(outcomes.len() <= 2 * 3, "{outcomes:?}");
    let g = get(
        &sc,
        &format!("/v1/stats?since={since}&until={until}&bucket=10m&group=type,app"),
        Some(TOKEN_ALL),
    )
    .await
    .json();
    assert_eq!(g["group"], serde_json::json!(["type", "app"]));
    assert!(g["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("outcome").is_none() && r.get("type").is_some()));
    assert_eq!(s["group"], serde_json::json!(["type", "outcome", "app"]));
    let r = get(&sc, "/v1/stats?group=type,actor", Some(TOKEN_ALL)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["message"],
        "invalid group \"type,actor\": expected a comma-separated list of type, outcome and app"
    );
}

#[tokio::test]
async fn exclusions_leave_events_out_of_pages_the_tail_and_stats() {
    let (sc, store, t0) = seeded().await;
    let all = want(&FIXTURE_LABELS);
    let without = |gone: &[&str]| -> Vec<String> {
        all.iter()
            .filter(|l| !gone.contains(&l.as_str()))
            .cloned()
            .collect()
    };
    // The viewer's default: its own reads left out, nothing else.
    let page = get(
        &sc,
        "/v1/events?order=asc&type_not=audit.*",
        Some(TOKEN_ALL),
    )
    .await
    .json();
    assert!(page["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| !e["type"].as_str().unwrap().starts_with("audit.")));
    assert_eq!(labels(&page), all);
    for (query, gone) in [
        (
            "actor_not=alice",
            &["a-login-ok", "a-login-fail", "a-refresh"][..],
        ),
        (
            "actor_not=alice,bob",
            &[
                "a-login-ok",
                "a-login-fail",
                "a-refresh",
                "a-login-fail-bob",
            ],
        ),
        (
            "type_not=auth.*,token.refresh",
            &[
                "a-login-ok",
                "a-login-fail",
                "a-login-fail-bob",
                "a-refresh",
                "b-login-ok",
                "b-login-fail",
                "b-mfa",
                "n-anon",
            ],
        ),
        (
            "app_not=app-b&ip_not=203.0.113.5",
            &["b-login-ok", "b-login-fail", "b-mfa", "n-anon"],
        ),
        ("target_not=bob", &["a-deact"]),
        ("route_not=refresh,mfa", &["a-refresh", "b-mfa"]),
        ("request_id_not=b-mfa", &["b-mfa"]),
        (
            "reason_not=invalid_credentials",
            &["a-login-fail", "a-login-fail-bob", "b-login-fail", "b-mfa"],
        ),
        (
            "app=app-a&actor_not=alice",
            &[
                "a-login-ok",
                "a-login-fail",
                "a-refresh",
                "b-login-ok",
                "b-login-fail",
                "b-mfa",
                "n-anon",
            ],
        ),
    ] {
        assert_eq!(select(&sc, query).await, without(gone), "{query}");
    }

    // Paging newest first under an exclusion: every page cut by the cursor, none repeated.
    let mut seen = Vec::new();
    let mut url = "/v1/events?type_not=audit.*&actor_not=alice&limit=2".to_string();
    for _ in 0..20 {
        let page = get(&sc, &url, Some(TOKEN_ALL)).await.json();
        assert!(page["events"].as_array().unwrap().len() <= 2);
        seen.extend(labels(&page));
        match page["next_cursor"].as_str() {
            Some(c) => {
                url = format!("/v1/events?type_not=audit.*&actor_not=alice&limit=2&cursor={c}")
            }
            None => break,
        }
    }
    let mut expect = without(&["a-login-ok", "a-login-fail", "a-refresh"]);
    expect.reverse();
    assert_eq!(seen, expect);

    // The newest page says where to follow from; the tail then gets exactly what came after.
    let first = get(&sc, "/v1/events?type_not=audit.*&limit=3", Some(TOKEN_ALL))
        .await
        .json();
    let tail = first["tail_cursor"]
        .as_str()
        .expect("tail_cursor")
        .to_string();
    assert!(
        get(
            &sc,
            &format!(
                "/v1/events?type_not=audit.*&limit=3&cursor={}",
                first["next_cursor"].as_str().unwrap()
            ),
            Some(TOKEN_ALL)
        )
        .await
        .json()
        .get("tail_cursor")
        .is_none(),
        "only the newest page has a tail cursor"
    );
    let fresh = sample_event(
        "fresh",
        "auth.login",
        Some("app-a"),
        Some("dave"),
        Outcome::Success,
        t0 + time::Duration::minutes(20),
    );
    store.append_fixtures(&[fresh]).await.unwrap();
    let next = get(
        &sc,
        &format!("/v1/events?order=asc&type_not=audit.*&cursor={tail}"),
        Some(TOKEN_ALL),
    )
    .await
    .json();
    assert_eq!(labels(&next), want(&["fresh"]));
    assert_eq!(next["events"].as_array().unwrap().len(), 1);
    let again = get(
        &sc,
        &format!(
            "/v1/events?order=asc&type_not=audit.*&cursor={}",
            next["next_cursor"].as_str().unwrap()
        ),
        Some(TOKEN_ALL),
    )
    .await
    .json();
    assert!(again["events"].as_array().unwrap().is_empty());

    // Stats leave the same events out, in the store's aggregate whatever is excluded.
    let since = enc(&t0.format(&Rfc3339).unwrap());
    let until = enc(&(t0 + time::Duration::minutes(10)).format(&Rfc3339).unwrap());
    for (query, total) in [
        ("type=auth.login", 6),
        ("type=auth.login&app_not=app-a", 3),
        ("type_not=auth.*,audit.*", 2),
        ("type=auth.login&actor_not=carol", 4),
        ("type=auth.login&actor_not=carol&app_not=app-a", 1),
    ] {
        let st = get(
            &sc,
            &format!("/v1/stats?since={since}&until={until}&bucket=5m&{query}"),
            Some(TOKEN_ALL),
        )
        .await
        .json();
        assert_eq!(st["total"], total, "{query}: {st}");
    }

    // Bad values are 400 naming the parameter; exports do not take exclusions.
    for (path, name) in [
        ("/v1/events?ip_not=not-an-ip", "ip_not"),
        ("/v1/stats?ip_not=1.2.3.4,nope", "ip_not"),
    ] {
        let r = get(&sc, path, Some(TOKEN_ALL)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            r.json()["message"].as_str().unwrap().contains(name),
            "{path}"
        );
    }
    let r = get(&sc, "/v1/export?type_not=audit.*", Some(TOKEN_ALL)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn coverage_shows_unmapped_traffic_and_routes_without_any() {
    let up = upstream::spawn().await;
    let (sc, _store) = admin::start(up.addr).await;
    let _ = support::harness::post_json(&sc.url("/v1/sessions"), serde_json::json!({}), &[]).await;
    let _ = support::harness::send(
        hyper::Method::GET,
        &sc.url("/v1/users/12345/profile"),
        &[],
        bytes::Bytes::new(),
    )
    .await
    .unwrap();
    let cov = get(&sc, "/v1/coverage", Some(TOKEN_ALL)).await.json();
    assert_eq!(cov["unmapped"][0]["method"], "GET");
    assert_eq!(cov["unmapped"][0]["path"], "/v1/users/{}/profile");
    assert_eq!(cov["unmapped"][0]["count"], 1);
    assert!(cov["unmapped"][0]["last_seen"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(cov["routes"][0]["id"], "login");
    assert_eq!(cov["routes"][0]["hits"], 1);
    assert_eq!(cov["routes_without_traffic"], serde_json::json!(["logout"]));
    let r = get(&sc, "/v1/coverage?x=1", Some(TOKEN_ALL)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// A minimal RFC 4180 reader: rows of cells, quotes and doubled quotes handled.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        cell.is_empty() && row.is_empty(),
        "CSV ends with a line break"
    );
    rows
}

#[tokio::test]
async fn exports_parse_in_every_format() {
    let (sc, store, _) = seeded().await;

    // NDJSON: one event per line, oldest first.
    let r = get(&sc, "/v1/export?app=app-a", Some(TOKEN_ALL)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    assert!(r.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("authtrail-events.ndjson"));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    let ls: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["http"]["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ls,
        want(&[
            "a-login-ok",
            "a-login-fail",
            "a-login-fail-bob",
            "a-refresh",
            "a-deact"
        ])
    );

    // CSV: a header, RFC 4180 quoting, formulas neutralised.
    let r = get(&sc, "/v1/export?format=csv&app=app-a", Some(TOKEN_ALL)).await;
    assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
    let rows = parse_csv(std::str::from_utf8(&r.body).unwrap());
    let header = &rows[0];
    assert_eq!(header[..4], ["seq", "id", "time", "type"]);
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let deact = rows
        .iter()
        .find(|r| r[col("request_id")] == "a-deact")
        .unwrap();
    assert_eq!(deact[col("target_display")], "Bob \"the builder\", Brown");
    assert_eq!(deact[col("actor_id")], "admin1");
    let details: Value = serde_json::from_str(&deact[col("details")]).unwrap();
    assert_eq!(details["note"], "=HYPERLINK(\"http://x\")\noffboarding");
    let ok = rows
        .iter()
        .find(|r| r[col("request_id")] == "a-login-ok")
        .unwrap();
    assert_eq!(ok[col("tokens")], "fp-a1");
    assert_eq!(ok[col("outcome")], "success");

    // A cell starting with a formula character is prefixed with a quote.
    let t = t0();
    let mut evil = sample_event(
        "=cmd|' /C calc'!A0",
        "auth.login",
        Some("app-c"),
        Some("@SUM(1+1)"),
        Outcome::Failure,
        t,
    );
    evil.actor.display = Some("-2+3".into());
    let provider = sample_event(
        "provider",
        "provider.update",
        Some("app-c"),
        Some("admin1"),
        Outcome::Success,
        t,
    );
    store.append_fixtures(&[evil, provider]).await.unwrap();
    let r = get(&sc, "/v1/export?format=csv&app=app-c", Some(TOKEN_ALL)).await;
    let rows = parse_csv(std::str::from_utf8(&r.body).unwrap());
    assert_eq!(rows[1][col("request_id")], "'=cmd|' /C calc'!A0");
    assert_eq!(rows[1][col("actor_id")], "'@SUM(1+1)");
    assert_eq!(rows[1][col("actor_display")], "'-2+3");

    // OCSF: every record valid OCSF 1.3.0, each class with its required fields.
    let r = get(&sc, "/v1/export?format=ocsf&order=asc", Some(TOKEN_ALL)).await;
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut classes = HashSet::new();
    for e in &events {
        support::ocsf::assert_valid(e);
        for f in [
            "activity_id",
            "category_uid",
            "class_uid",
            "severity_id",
            "time",
            "type_uid",
        ] {
            assert!(e[f].is_number(), "{f} in {e}");
        }
        assert_eq!(e["metadata"]["version"], "1.3.0");
        assert_eq!(e["metadata"]["product"]["name"], "authtrail");
        let class = e["class_uid"].as_u64().unwrap();
        assert_eq!(
            e["type_uid"].as_u64().unwrap(),
            class * 100 + e["activity_id"].as_u64().unwrap()
        );
        match class {
            3002 | 3001 => {
                assert!(
                    e["user"]["uid"].is_string() || e["user"]["name"].is_string(),
                    "{e}"
                );
            }
            6003 => {
                assert!(e["actor"].is_object(), "{e}");
                assert!(e["api"]["operation"].is_string(), "{e}");
                assert!(
                    e["src_endpoint"]["ip"].is_string() || e["src_endpoint"]["name"].is_string()
                );
            }
            other => panic!("unexpected class {other}"),
        }
        classes.insert(class);
    }
    // Logins are Authentication, the deactivation Account Change, a provider update API Activity.
    assert!(
        classes.contains(&3002) && classes.contains(&3001) && classes.contains(&6003),
        "{classes:?}"
    );
    let deact = events
        .iter()
        .find(|e| e["metadata"]["event_code"] == "account.deactivate")
        .unwrap();
    assert_eq!(deact["class_uid"], 3001);
    assert_eq!(deact["activity_id"], 5);
    assert_eq!(deact["user"]["uid"], "bob");
}

#[tokio::test]
async fn export_streams_large_trails_and_respects_limit() {
    let up = upstream::spawn().await;
    let (sc, store) = admin::start(up.addr).await;
    let t0 = t0();
    for chunk in 0..6 {
        let batch: Vec<_> = (0..1000)
            .map(|i| {
                sample_event(
                    &format!("x{chunk}-{i}"),
                    "auth.login",
                    Some("app-x"),
                    Some("u"),
                    Outcome::Success,
                    t0 + time::Duration::milliseconds(chunk * 1000 + i),
                )
            })
            .collect();
        store.append_fixtures(&batch).await.unwrap();
    }
    let r = get(&sc, "/v1/export?app=app-x", Some(TOKEN_ALL)).await;
    assert!(
        r.headers.get("content-length").is_none(),
        "streamed, not buffered"
    );
    assert_eq!(r.headers["transfer-encoding"], "chunked");
    let lines: Vec<&str> = std::str::from_utf8(&r.body).unwrap().lines().collect();
    assert_eq!(lines.len(), 6000);
    let seqs: Vec<i64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let r = get(
        &sc,
        "/v1/export?app=app-x&limit=1234&order=desc&format=csv",
        Some(TOKEN_ALL),
    )
    .await;
    assert_eq!(std::str::from_utf8(&r.body).unwrap().lines().count(), 1235);
}

/// The audit.* events, newest first, as the all-seeing credential reads them.
async fn audit_events(sc: &Sidecar, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let page = get(sc, "/v1/events?type=audit.*&limit=1000", Some(TOKEN_ALL))
            .await
            .json();
        let evs = page["events"].as_array().unwrap().clone();
        if evs.len() >= n {
            return evs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} audit events were recorded");
}

#[tokio::test]
async fn admin_reads_are_recorded_as_audit_events() {
    let (sc, _store, _) = seeded().await;
    let r = get(
        &sc,
        "/v1/events?app=app-a&outcome=failure",
        Some(TOKEN_ALPHA),
    )
    .await;
    assert_eq!(labels(&r.json()).len(), 2);
    let r = get(&sc, "/v1/export?format=csv&type=auth.*", Some(TOKEN_BETA)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&sc, "/v1/export", Some(TOKEN_ALPHA)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Three reads, plus the polling reads of audit_events itself (by "security").
    let evs = audit_events(&sc, 3).await;
    let by = |cred: &str, ty: &str| -> Vec<&Value> {
        evs.iter()
            .filter(|e| e["actor"]["id"] == cred && e["type"] == ty)
            .collect()
    };
    let q = by("support-alpha", "audit.query");
    assert_eq!(q.len(), 1);
    let q = q[0];
    assert_eq!(q["outcome"], "success");
    assert_eq!(q["actor"]["kind"], "admin");
    assert_eq!(q["details"]["credential"], "support-alpha");
    assert_eq!(q["details"]["endpoint"], "/v1/events");
    assert_eq!(
        q["details"]["filters"],
        serde_json::json!({"app": "app-a", "outcome": "failure"})
    );
    assert_eq!(q["details"]["result_count"], 2);
    assert_eq!(q["http"]["route"], "admin:/v1/events");
    assert_eq!(q["http"]["status"], 200);
    assert_eq!(q["source"]["ip"], "127.0.0.1");
    assert_eq!(q["source"]["user_agent"], "admin-test/1.0");
    assert!(q.get("app").is_none(), "audit events belong to no app");

    let x = by("support-beta", "audit.export");
    assert_eq!(x.len(), 1);
    assert_eq!(x[0]["outcome"], "success");
    assert_eq!(x[0]["details"]["result_count"], 3);
    assert_eq!(x[0]["details"]["filters"]["format"], "csv");

    let denied = by("support-alpha", "audit.export");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["outcome"], "failure");
    assert_eq!(denied[0]["reason"], "forbidden");
    assert_eq!(denied[0]["http"]["status"], 403);

    // Scoped credentials never see the audit trail of the admin surface.
    let page = get(&sc, "/v1/events?type=audit.*", Some(TOKEN_ALPHA))
        .await
        .json();
    assert_eq!(page["events"], serde_json::json!([]));
}

#[tokio::test]
async fn the_cli_runs_the_same_query_code() {
    let (mut sc, _store, _) = seeded().await;
    let cfg_path = sc.dir.path().join("cli.yaml");
    std::fs::write(
        &cfg_path,
        format!(
            "upstream: http://127.0.0.1:9\nstore:\n  url: sqlite://{}\n",
            sc.db.display()
        ),
    )
    .unwrap();
    let api = labels(
        &get(
            &sc,
            "/v1/events?type=auth.*&outcome=failure&ip=192.0.2.2",
            Some(TOKEN_ALL),
        )
        .await
        .json(),
    );
    let api_csv = get(&sc, "/v1/export?format=csv&app=app-b", Some(TOKEN_ALL))
        .await
        .body;
    sc.stop().await;

    let bin = env!("CARGO_BIN_EXE_authtrail");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let cfg = cfg_path.to_str().unwrap();
    let out = run(&[
        "query",
        "--config",
        cfg,
        "--json",
        "--type",
        "auth.*",
        "--outcome",
        "failure",
        "--ip",
        "192.0.2.2",
    ]);
    let cli: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["http"]["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(cli, api);
    let out = run(&[
        "query", "--config", cfg, "--json", "--token", "fp-a1", "--asc",
    ]);
    assert_eq!(out.lines().count(), 2);
    let out = run(&[
        "export", "--config", cfg, "--format", "csv", "--app", "app-b",
    ]);
    assert_eq!(out.as_bytes(), &api_csv[..]);

    let out = std::process::Command::new(bin)
        .args(["query", "--config", cfg, "--since", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "authtrail: invalid since \"soon\": expected a duration like 24h or an RFC 3339 time"
    );
}

#[tokio::test]
async fn a_logout_that_consumes_the_refresh_chain_revokes_it() {
    let (sc, store, t0) = seeded().await;
    // The refresh token a-refresh issued (fp-a2), presented to a logout.
    let mut presented = fixture(t0)[3].tokens[1].clone();
    assert_eq!(presented.fingerprint, "fp-a2");
    presented.role = authtrail::event::TokenRole::Presented;
    let logout = |label: &str, outcome, minute| {
        let at = t0 + time::Duration::minutes(minute);
        let mut e = sample_event(
            label,
            "auth.logout",
            Some("app-a"),
            Some("alice"),
            outcome,
            at,
        );
        e.tokens.push(presented.clone());
        e
    };
    // A refused logout ends nothing.
    store
        .append_fixtures(&[logout("a-logout-fail", Outcome::Failure, 20)])
        .await
        .unwrap();
    let life = get(&sc, "/v1/tokens/jti-a1", Some(TOKEN_ALL)).await.json();
    assert_eq!(
        labels(&life),
        want(&["a-login-ok", "a-refresh", "a-logout-fail"])
    );
    assert_eq!(life["summary"]["revoked"], false);
    // A successful one consumes the chain's last token: the whole life is revoked.
    store
        .append_fixtures(&[logout("a-logout", Outcome::Success, 21)])
        .await
        .unwrap();
    for key in ["jti-a1", "fp-a2"] {
        let life = get(&sc, &format!("/v1/tokens/{key}"), Some(TOKEN_ALL))
            .await
            .json();
        assert_eq!(
            labels(&life),
            want(&["a-login-ok", "a-refresh", "a-logout-fail", "a-logout"]),
            "{key}"
        );
        assert_eq!(life["summary"]["revoked"], true, "{key}");
    }
}
