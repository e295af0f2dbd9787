//! Properties, checked on generated inputs (proptest; case counts kept small for 2 cores):
//! - route matching agrees with a naive reference matcher written here from the documented rules
//!   (docs/configuration.md, "Matching");
//! - the canonical event encoding the hash chain covers round-trips: through JSON, through its
//!   own text, through a `jsonb`-style rewrite, and through a real SQLite store;
//! - a cursor walk over a store (ascending with `after_seq`, descending with `before_seq`)
//!   returns every event exactly once, also when events commit between pages and batches are
//!   replayed.

use std::collections::HashSet;
use std::net::IpAddr;

use authtrail::classify::{self, PathTemplate, RequestHead, Route, RouteMap};
use authtrail::event::{
    Actor, ActorKind, Attributed, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target,
    TokenRef, TokenRole,
};
use authtrail::store::chain::{canonical, canonical_body, canonical_event, link_hash};
use authtrail::store::sqlite::SqliteStore;
use authtrail::store::{verify, EventStore, Query};
use http::Method;
use proptest::prelude::*;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Route matching against a naive reference.

/// One template segment as the generator writes it.
#[derive(Clone, Debug)]
enum Seg {
    Lit(&'static str),
    Param,
}

#[derive(Clone, Debug)]
struct RouteSpec {
    methods: Vec<&'static str>,
    host: Option<&'static str>,
    segs: Vec<Seg>,
    tail: bool,
}

impl RouteSpec {
    fn template(&self) -> String {
        let mut parts: Vec<String> = self
            .segs
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Seg::Lit(l) => (*l).to_string(),
                Seg::Param => format!("{{p{i}}}"),
            })
            .collect();
        if self.tail {
            parts.push("*".into());
        }
        format!("/{}", parts.join("/"))
    }
}

/// Literals as written in templates and in paths: `%61` is `a` once decoded.
const WORDS: &[&str] = &["v1", "users", "a", "%61", "sessions", "u-1"];
const PATH_NOISE: &[&str] = &["", ".", "..", "%2e", "%2E%2e", "x y", "%2F", "%zz", "%"];

fn route_spec() -> impl Strategy<Value = RouteSpec> {
    let seg = prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(Seg::Lit),
        1 => Just(Seg::Param),
    ];
    (
        proptest::sample::subsequence(vec!["GET", "POST", "DELETE"], 0..=2),
        proptest::option::weighted(
            0.3,
            proptest::sample::select(vec!["auth.example.com", "other.example"]),
        ),
        proptest::collection::vec(seg, 0..4),
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(methods, host, segs, tail)| RouteSpec {
            methods,
            host,
            segs,
            tail,
        })
}

fn request_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(WORDS),
        1 => proptest::sample::select(PATH_NOISE),
    ];
    (
        proptest::bool::weighted(0.2),
        proptest::collection::vec(piece, 0..6),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.2, proptest::sample::select(vec!["q=1", "a=/../v1", ""])),
    )
        .prop_map(|(double, pieces, trailing, query)| {
            let mut p = if double {
                "//".to_string()
            } else {
                "/".to_string()
            };
            p.push_str(&pieces.join("/"));
            if trailing {
                p.push('/');
            }
            if let Some(q) = query {
                p.push('?');
                p.push_str(q);
            }
            p
        })
}

/// `%XX` decoded byte-wise, anything else kept; invalid UTF-8 replaced.
fn naive_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 3 <= b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The documented reading of a path (docs/configuration.md): query dropped, segments
/// percent-decoded, empty and `.` segments skipped, `..` removes the previous one.
fn naive_segments(path: &str) -> Vec<String> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let mut out: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let seg = naive_decode(raw);
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg == ".." {
            out.pop();
            continue;
        }
        out.push(seg);
    }
    out
}

fn naive_host(h: &str) -> String {
    let h = match h.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or("").to_string(),
        None => match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
            _ => h.to_string(),
        },
    };
    h.to_ascii_lowercase()
}

/// First matching route (index) and its parameters, the slow and obvious way.
fn naive_classify(
    specs: &[RouteSpec],
    method: &str,
    host: Option<&str>,
    path: &str,
) -> Option<(usize, Vec<(String, String)>)> {
    let segs = naive_segments(path);
    'routes: for (index, spec) in specs.iter().enumerate() {
        if !spec.methods.is_empty() && !spec.methods.contains(&method) {
            continue;
        }
        if let Some(want) = spec.host {
            if host.map(naive_host).as_deref() != Some(want) {
                continue;
            }
        }
        let fits = if spec.tail {
            segs.len() >= spec.segs.len()
        } else {
            segs.len() == spec.segs.len()
        };
        if !fits {
            continue;
        }
        let mut params = Vec::new();
        for (i, (t, s)) in spec.segs.iter().zip(&segs).enumerate() {
            match t {
                Seg::Lit(l) if naive_decode(l) == *s => {}
                Seg::Lit(_) => continue 'routes,
                Seg::Param => params.push((format!("p{i}"), s.clone())),
            }
        }
        return Some((index, params));
    }
    None
}

/// A compiled route to clone: everything but method, host and path comes from here.
fn base_route() -> Route {
    let cfg = authtrail::config::load_str(
        "upstream: http://127.0.0.1:9\nroutes:\n  - id: base\n    match: { path: /base }\n    event: auth.login\n",
        "prop.yaml",
    )
    .unwrap();
    Route::clone(&cfg.routes.routes[0])
}

fn compile(specs: &[RouteSpec]) -> RouteMap {
    let base = base_route();
    RouteMap {
        routes: specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut r = base.clone();
                r.id = format!("r{i}");
                r.methods = s
                    .methods
                    .iter()
                    .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                    .collect();
                r.host = s.host.map(str::to_string);
                r.path = PathTemplate::parse(&s.template()).unwrap();
                std::sync::Arc::new(r)
            })
            .collect(),
        ..RouteMap::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn route_matching_agrees_with_a_naive_matcher(
        specs in proptest::collection::vec(route_spec(), 1..6),
        method in proptest::sample::select(vec!["GET", "POST", "DELETE", "PUT"]),
        host in proptest::option::of(proptest::sample::select(
            vec!["auth.example.com", "AUTH.Example.com:8443", "other.example", "[::1]:80"])),
        paths in proptest::collection::vec(request_path(), 1..8),
    ) {
        let map = compile(&specs);
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        for path in &paths {
            prop_assert_eq!(classify::normalize(path), naive_segments(path), "normalize {}", path);
            let head = RequestHead { method: &m, host, path };
            let got = classify::classify(&map, &head).map(|m| (m.index, m.params));
            let want = naive_classify(&specs, method, host, path);
            prop_assert_eq!(got, want, "{} {:?} {}", method, host, path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The canonical event encoding.

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Finite floats only (JSON has no others), integral ones included: 1e18, -3.0, 0.0.
        prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
            Just(1e18),
            Just(-0.0),
            Just(1.7e19),
        ]
        .prop_map(Value::from),
        text(8).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(text(6), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn attributed() -> impl Strategy<Value = Attributed> {
    (text(10), text(10), any::<bool>()).prop_map(|(value, source, verified)| Attributed {
        value,
        source,
        verified,
    })
}

fn token_ref() -> impl Strategy<Value = TokenRef> {
    (
        any::<bool>(),
        text(6),
        text(12),
        "[0-9a-f]{64}",
        proptest::option::of(text(8)),
        proptest::option::of(text(8)),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i64>()),
        any::<bool>(),
        proptest::option::of(text(8)),
    )
        .prop_map(
            |(issued, kind, source, fingerprint, jti, sub, iat, exp, verified, invalid)| TokenRef {
                role: if issued {
                    TokenRole::Issued
                } else {
                    TokenRole::Presented
                },
                kind,
                source,
                fingerprint,
                jti,
                sub,
                app: None,
                iat,
                exp,
                verified,
                invalid,
            },
        )
}

fn event() -> impl Strategy<Value = AuditEvent> {
    let who = (
        proptest::option::of(text(12)),
        proptest::sample::select(vec![
            ActorKind::User,
            ActorKind::Admin,
            ActorKind::Service,
            ActorKind::Anonymous,
        ]),
        proptest::option::of(text(12)),
        any::<bool>(),
        proptest::option::of(text(12)),
        proptest::option::of((text(6), text(12), proptest::option::of(text(12)), text(8))),
    );
    let what = (
        any::<u128>(),
        // Millisecond times from 1970 to 9999.
        0i64..253_402_300_799_000,
        "[a-z]{1,6}(\\.[a-z]{1,6}){0,2}",
        any::<bool>(),
        proptest::sample::select(vec![
            Outcome::Success,
            Outcome::Failure,
            Outcome::Error,
            Outcome::Unknown,
        ]),
        proptest::option::of(text(12)),
        proptest::option::of(attributed()),
        proptest::option::of(proptest::collection::vec(attributed(), 1..3)),
    );
    let how = (
        proptest::collection::vec(token_ref(), 0..3),
        proptest::option::of(any::<[u8; 16]>().prop_map(|b| IpAddr::from(b).to_canonical())),
        proptest::option::of(text(16)),
        (
            text(6),
            text(24),
            text(8),
            proptest::option::of(any::<u16>()),
            any::<u64>(),
            text(12),
            any::<bool>(),
        ),
        proptest::collection::btree_map(text(8), json_value(), 0..4),
    );
    (what, who, how).prop_map(
        |(
            (id, ms, event_type, attempt, outcome, reason, app, app_conflict),
            (actor_id, kind, display, verified, actor_source, target),
            (
                tokens,
                ip,
                user_agent,
                (method, path, route, status, duration_ms, request_id, body_truncated),
                details,
            ),
        )| AuditEvent {
            id: Uuid::from_u128(id),
            seq: None,
            time: OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
            event_type,
            stage: if attempt {
                Stage::Attempt
            } else {
                Stage::Completed
            },
            outcome,
            reason,
            app,
            actor: Actor {
                id: actor_id,
                kind,
                display,
                verified,
                source: actor_source,
            },
            app_conflict,
            target: target.map(|(kind, id, display, source)| Target {
                kind,
                id,
                display,
                source,
            }),
            tokens,
            source: ClientInfo { ip, user_agent },
            http: HttpInfo {
                method,
                path,
                route,
                status,
                duration_ms,
                request_id,
                body_truncated,
            },
            details: details.into_iter().collect::<Map<String, Value>>(),
            chain: None,
        },
    )
}

/// What PostgreSQL's `jsonb` may hand back for a body: keys in another order, whitespace, and
/// integral floats written as integers.
fn jsonb_like(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| b.len().cmp(&a.len()).then(b.cmp(a)));
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}: {}", Value::from(k.as_str()), jsonb_like(&map[k])))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        Value::Array(items) => format!(
            "[ {} ]",
            items.iter().map(jsonb_like).collect::<Vec<_>>().join(", ")
        ),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap();
            if f.fract() == 0.0 && f.abs() < 1e19 {
                format!("{}", f as i128)
            } else {
                n.to_string()
            }
        }
        other => other.to_string(),
    }
}

fn with_details(mut e: AuditEvent, details: Map<String, Value>) -> AuditEvent {
    e.details = details;
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_canonical_event_encoding_round_trips(e in event()) {
        let c = canonical_event(&e).unwrap();

        // JSON out and back in: the same event, the same encoding.
        let json = serde_json::to_string(&e).unwrap();
        // The fields are declared in the order of their JSON names, so serde_json writes the
        // canonical encoding itself (what the store's encoder relies on), unless details hold
        // an integral float.
        if canonical(&Value::Object(e.details.clone())) == serde_json::to_string(&e.details).unwrap() {
            prop_assert_eq!(&json, &c);
        }
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(canonical_event(&back).unwrap(), c.clone());

        // The canonical text is itself an event, whose encoding is the same text; only
        // integral floats in details come back as integers.
        let reread: AuditEvent = serde_json::from_str(&c).unwrap();
        prop_assert_eq!(canonical_event(&reread).unwrap(), c.clone());
        prop_assert_eq!(
            canonical(&Value::Object(reread.details.clone())),
            canonical(&Value::Object(e.details.clone()))
        );
        prop_assert_eq!(with_details(reread, e.details.clone()), e.clone());

        // A stored body (with seq and chain) and a jsonb-style rewrite of it hash the same.
        let mut stored = e.clone();
        stored.seq = Some(7);
        stored.chain = Some(authtrail::event::ChainLink {
            instance: "i".into(),
            n: 1,
            prev_hash: "0".repeat(64),
            hash: "1".repeat(64),
        });
        let body = serde_json::to_string(&stored).unwrap();
        prop_assert_eq!(canonical_body(&body).unwrap(), c.clone());
        let rewritten = jsonb_like(&serde_json::from_str(&body).unwrap());
        prop_assert_eq!(canonical_body(&rewritten).unwrap(), c.clone());
        prop_assert_eq!(
            link_hash("i", 1, &"0".repeat(64), &canonical_body(&rewritten).unwrap()),
            link_hash("i", 1, &"0".repeat(64), &c)
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// Through a real store: every stored body hashes to its link, and `verify` passes.
    #[test]
    fn stored_events_keep_their_canonical_encoding(events in proptest::collection::vec(event(), 1..6)) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap()).await.unwrap();
            let mut unique: Vec<AuditEvent> = Vec::new();
            for e in &events {
                if !unique.iter().any(|u| u.id == e.id) {
                    unique.push(e.clone());
                }
            }
            store.append("prop", &events, false).await.unwrap();
            let rows = store.chain_rows("prop", 0, 100).await.unwrap();
            assert_eq!(rows.len(), unique.len());
            for (row, e) in rows.iter().zip(&unique) {
                assert_eq!(canonical_body(&row.body).unwrap(), canonical_event(e).unwrap());
                let stored: AuditEvent = serde_json::from_str(&row.body).unwrap();
                let link = stored.chain.clone().unwrap();
                assert_eq!(link.hash, link_hash("prop", link.n, &link.prev_hash, &canonical_event(e).unwrap()));
            }
            let report = verify::verify(&store, &verify::Options::default()).await.unwrap();
            assert!(report.ok(), "{:?}", report.problems);
            store.close().await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Cursor walks.

fn simple_event(i: u32, app: Option<&str>) -> AuditEvent {
    let mut e = AuditEvent {
        id: Uuid::now_v7(),
        seq: None,
        time: authtrail::event::now_millis(),
        event_type: "auth.login".into(),
        stage: Stage::Completed,
        outcome: Outcome::Success,
        reason: None,
        app: None,
        actor: Actor::anonymous(),
        app_conflict: None,
        target: None,
        tokens: Vec::new(),
        source: ClientInfo::default(),
        http: HttpInfo {
            method: "POST".into(),
            path: "/v1/sessions".into(),
            route: "login".into(),
            status: Some(200),
            duration_ms: 1,
            request_id: format!("r-{i}"),
            body_truncated: false,
        },
        details: Map::new(),
        chain: None,
    };
    e.app = app.map(|a| Attributed {
        value: a.into(),
        source: "header:x-app-id".into(),
        verified: false,
    });
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_cursor_walk_returns_every_event_exactly_once(
        apps in proptest::collection::vec(proptest::option::of(proptest::sample::select(vec!["a", "b"])), 0..40),
        batch in 1usize..8,
        limit in 1u32..9,
        late in proptest::collection::vec(proptest::collection::vec(proptest::option::of(proptest::sample::select(vec!["a", "b"])), 0..5), 0..4),
        replay in any::<bool>(),
        only_app_a in any::<bool>(),
    ) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap()).await.unwrap();
            let mut n = 0u32;
            let mut all: Vec<AuditEvent> = apps.iter().map(|a| { n += 1; simple_event(n, *a) }).collect();
            for chunk in all.chunks(batch) {
                store.append("walk", chunk, false).await.unwrap();
                if replay {
                    // A replayed batch (spool after a crash) stores nothing twice.
                    assert_eq!(store.append("walk", chunk, false).await.unwrap().inserted, 0);
                }
            }
            // Batches that commit while the walk is under way, one after each early page.
            let late: Vec<Vec<AuditEvent>> = late
                .iter()
                .map(|b| b.iter().map(|a| { n += 1; simple_event(n, *a) }).collect())
                .collect();
            all.extend(late.iter().flatten().cloned());
            let mut pending = late.into_iter();
            let q = Query {
                app: only_app_a.then(|| "a".to_string()),
                ..Query::default()
            };
            let mut walked: Vec<AuditEvent> = Vec::new();
            let mut after = None;
            let mut pages = 0;
            loop {
                let page = store
                    .query(&Query { ascending: true, after_seq: after, limit, ..q.clone() })
                    .await
                    .unwrap();
                assert!(page.len() <= limit as usize);
                pages += 1;
                assert!(pages < 10_000, "the walk does not end");
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                let empty = page.is_empty();
                walked.extend(page);
                match pending.next() {
                    Some(b) => {
                        store.append("walk", &b, false).await.unwrap();
                    }
                    None if empty => break,
                    None => {}
                }
            }

            let want: Vec<Uuid> = all
                .iter()
                .filter(|e| !only_app_a || e.app.as_ref().is_some_and(|a| a.value == "a"))
                .map(|e| e.id)
                .collect();
            let got: Vec<Uuid> = walked.iter().map(|e| e.id).collect();
            assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len(), "an event came twice");
            assert_eq!(&got, &want, "every event once, in commit order");
            let seqs: Vec<i64> = walked.iter().map(|e| e.seq.unwrap()).collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]));

            // Backwards with before_seq: the same events, newest first.
            let mut back = Vec::new();
            let mut before = None;
            loop {
                let page = store
                    .query(&Query { before_seq: before, limit, ..q.clone() })
                    .await
                    .unwrap();
                if page.is_empty() {
                    break;
                }
                before = page.last().and_then(|e| e.seq);
                back.extend(page.into_iter().map(|e| e.id));
            }
            back.reverse();
            assert_eq!(back, want);
            store.close().await;
        });
    }
}

/// Found by `the_canonical_event_encoding_round_trips`: without serde_json's `float_roundtrip`,
/// `-4.7734493617742726e52` reads back one unit in the last place off, so a captured float in
/// `details` changed the body's hash when `verify` re-read it: a false tamper alarm.
#[test]
fn a_float_in_details_reads_back_exactly_and_verifies() {
    let v = Value::from(-4.7734493617742726e52_f64);
    let again: Value = serde_json::from_str(&v.to_string()).unwrap();
    assert_eq!(again, v, "a float survives a second parse");

    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap())
            .await
            .unwrap();
        let mut e = simple_event(1, Some("a"));
        e.details.insert("amount".into(), v);
        store.append("float", &[e], false).await.unwrap();
        let report = verify::verify(&store, &verify::Options::default())
            .await
            .unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        store.close().await;
    });
}
