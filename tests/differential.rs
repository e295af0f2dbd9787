//! Differential test (issue 12): a corpus of request variants — encoded slashes, dot segments,
//! case, matrix parameters, absolute-form targets, HTTP/2, method and host spellings, bodies
//! past `inspect_limit`, other encodings and duplicated fields — sent through authtrail in
//! front of three real upstream stacks, each with its own native routing: Flask/Werkzeug
//! (python child process), express (node child process) and axum (in this process). Each
//! upstream logs which handler ran for which `X-Request-Id`; the test reads that log from the
//! upstream itself and checks, for every variant × upstream:
//!
//! - a mapped handler that ran has an event of its route with the same request id;
//! - a handler behind an enforcing requirement never ran (the requests carry no valid token),
//!   and the legitimate form of such a route is refused with an `access.denied` event.
//!
//! Every violation is collected and reported once, as a table. The python and node packages
//! are installed by `.ci/run` (pinned: `tests/differential/requirements.txt`,
//! `tests/differential/node/package-lock.json`); without them the test prints a skip notice,
//! and fails when `CI=true`.

mod support;

#[path = "differential/corpus.rs"]
mod corpus;
#[path = "differential/upstreams.rs"]
mod upstreams;
#[path = "differential/wire.rs"]
mod wire;

use std::collections::HashMap;
use std::fmt::Write as _;

use authtrail::event::AuditEvent;
use corpus::{Variant, Wire};
use support::harness;
use upstreams::{AxumUpstream, ChildUpstream, Upstream};
use wire::Answer;

/// Below the corpus' padding (`corpus::PAD`), so padded bodies are truncated for inspection.
const EXTRA: &str = r#"inspect_limit: 16KiB
keys:
  main:
    secret: differential-test-secret-0042
requirements:
  admin-token:
    claims: { role: admin }
"#;

const ROUTES: &str = r#"  - id: deactivate-user
    match: { method: POST, path: "/v1/apps/{app}/users/{user_id}/deactivate" }
    event: account.deactivate
    actor_kind: admin
    app: { path: app }
    target: { kind: user, from: { path: user_id } }
    require: { use: admin-token, mode: enforce }
  - id: admin-users-delete
    match: { method: POST, path: /v1/admin/users, host: admin.example.test, body: { /op: delete } }
    event: account.delete
    actor_kind: admin
    target: { kind: user, from: { request_body: /user } }
    require: { use: admin-token, mode: enforce }
  - id: login
    match: { method: POST, path: /v1/login }
    event: auth.login
    actor: { request_body: /username }
  - id: token-password
    match: { method: POST, path: /oauth/token, body: { /grant_type: password } }
    event: auth.login
    actor: { form: username }
  - id: token-client-credentials
    match: { method: POST, path: /oauth/token, body: { /grant_type: client_credentials } }
    event: token.issue
    actor: { form: client_id }
    actor_kind: service
"#;

/// An upstream handler that a route of [`ROUTES`] describes.
struct Mapped {
    handler: &'static str,
    route: &'static str,
    event: &'static str,
    enforce: bool,
}

const MAPPED: &[Mapped] = &[
    Mapped {
        handler: "deactivate",
        route: "deactivate-user",
        event: "account.deactivate",
        enforce: true,
    },
    Mapped {
        handler: "admin_users_delete",
        route: "admin-users-delete",
        event: "account.delete",
        enforce: true,
    },
    Mapped {
        handler: "login",
        route: "login",
        event: "auth.login",
        enforce: false,
    },
    Mapped {
        handler: "token_password",
        route: "token-password",
        event: "auth.login",
        enforce: false,
    },
    Mapped {
        handler: "token_client_credentials",
        route: "token-client-credentials",
        event: "token.issue",
        enforce: false,
    },
];

fn mapped(handler: &str) -> Option<&'static Mapped> {
    MAPPED.iter().find(|m| m.handler == handler)
}

async fn send(addr: std::net::SocketAddr, v: &Variant, rid: &str) -> Answer {
    match v.wire {
        Wire::H1 => wire::raw(addr, &v.h1_head(rid), &v.body, None).await,
        Wire::H1Slow => wire::raw(addr, &v.h1_head(rid), &v.body, Some(8 * 1024)).await,
        Wire::H2 => {
            let mut headers = vec![("x-request-id".to_string(), rid.to_string())];
            headers.extend(v.headers.iter().cloned());
            wire::h2(
                addr,
                &v.method,
                &v.host,
                &v.target,
                &headers,
                v.body.clone(),
            )
            .await
        }
    }
}

/// One variant sent through authtrail to one upstream, and what came of it.
struct Outcome {
    variant: String,
    upstream: &'static str,
    answer: Answer,
    /// Handlers the upstream ran for this request id (empty: it never saw the request).
    handlers: Vec<String>,
    /// Events recorded with this request id, as `type@route`.
    events: Vec<String>,
    problems: Vec<String>,
}

fn judge(v: &Variant, handlers: &[String], events: &[&AuditEvent]) -> Vec<String> {
    let mut problems = Vec::new();
    // An event whose body could not be inspected names every route of its method and path it
    // may be (`details.body_uninspected.routes`): it is that route's event, flagged.
    let has = |route: &str, ty: &str| {
        events.iter().any(|e| {
            let flagged_for = e
                .details
                .get("body_uninspected")
                .and_then(|b| b["routes"].as_array())
                .is_some_and(|rs| rs.iter().any(|r| r == route));
            flagged_for || (e.http.route == route && e.event_type == ty)
        })
    };
    for h in handlers {
        let Some(m) = mapped(h) else { continue };
        if !has(m.route, m.event) {
            problems.push(format!(
                "{h} ran with no {} event of route {}",
                m.event, m.route
            ));
        }
        if m.enforce {
            let evaluated = has(m.route, "access.denied") || has(m.route, "access.would_deny");
            problems.push(format!(
                "protected {h} ran without a valid token ({})",
                if evaluated {
                    "after an access event"
                } else {
                    "the requirement was never evaluated"
                }
            ));
        }
    }
    if let Some(expect) = v.control {
        let m = mapped(expect).expect("controls name mapped handlers");
        if m.enforce {
            if !has(m.route, "access.denied") {
                problems.push(format!(
                    "control: no access.denied event of route {}",
                    m.route
                ));
            }
        } else if !handlers.iter().any(|h| h == expect) {
            problems.push(format!("control: the upstream did not run {expect}"));
        }
    }
    problems
}

/// The upstream's own routing of the legitimate forms, sent to it directly: if it does not run
/// the expected handler, the differential says nothing, so the harness is broken.
async fn check_upstream_routes(name: &str, up: &Upstream, corpus: &[Variant]) {
    let mut sent = Vec::new();
    for (i, v) in corpus.iter().enumerate() {
        let (Some(expect), Wire::H1) = (v.control, v.wire) else {
            continue;
        };
        let rid = format!("direct-{name}-{i:03}");
        let a = send(up.addr(), v, &rid).await;
        sent.push((v, expect, rid, a));
    }
    let runs = up.runs();
    let mut broken = String::new();
    for (v, expect, rid, a) in &sent {
        if !runs.iter().any(|(h, r)| h == expect && r == rid) {
            let _ = writeln!(
                broken,
                "  {} sent directly: expected handler {expect}, got {} {:?}",
                v.name, a.status, a.note
            );
        }
    }
    if !broken.is_empty() {
        let stderr = match up {
            Upstream::Child(c) => c.stderr_text(),
            Upstream::Axum(_) => String::new(),
        };
        panic!("the {name} upstream does not route the legitimate forms:\n{broken}{stderr}");
    }
}

async fn run_upstream(name: &'static str, up: &Upstream, corpus: &[Variant]) -> Vec<Outcome> {
    check_upstream_routes(name, up, corpus).await;
    let mut sc = harness::start(up.addr(), EXTRA, ROUTES).await;
    let mut answers = Vec::with_capacity(corpus.len());
    for (i, v) in corpus.iter().enumerate() {
        let rid = format!("{name}-{i:03}");
        answers.push((rid.clone(), send(sc.addr, v, &rid).await));
    }
    // Drain and flush, then read everything that was recorded.
    sc.stop().await;
    let events = sc.events().await;
    let mut by_rid: HashMap<&str, Vec<&AuditEvent>> = HashMap::new();
    for e in &events {
        by_rid
            .entry(e.http.request_id.as_str())
            .or_default()
            .push(e);
    }
    let mut runs: HashMap<String, Vec<String>> = HashMap::new();
    for (h, rid) in up.runs() {
        runs.entry(rid).or_default().push(h);
    }
    let mut outcomes: Vec<Outcome> = corpus
        .iter()
        .zip(answers)
        .map(|(v, (rid, answer))| {
            let handlers = runs.remove(&rid).unwrap_or_default();
            let evs = by_rid.remove(rid.as_str()).unwrap_or_default();
            let problems = judge(v, &handlers, &evs);
            Outcome {
                variant: v.name.clone(),
                upstream: name,
                answer,
                handlers,
                events: evs
                    .iter()
                    .map(|e| format!("{}@{}", e.event_type, e.http.route))
                    .collect(),
                problems,
            }
        })
        .collect();
    // A run under a request id that no variant sent means the id was lost or replaced on the
    // way: the differential could no longer tell which variant ran what.
    let mut strays: Vec<(String, Vec<String>)> = runs
        .into_iter()
        .filter(|(rid, _)| !rid.starts_with(&format!("direct-{name}-")))
        .collect();
    strays.sort();
    for (rid, handlers) in strays {
        outcomes.push(Outcome {
            variant: format!("(request id {rid:?})"),
            upstream: name,
            answer: Answer {
                status: 0,
                note: String::new(),
            },
            problems: vec![format!(
                "the upstream ran {} under a request id no variant sent",
                handlers.join(",")
            )],
            handlers,
            events: Vec::new(),
        });
    }
    outcomes
}

fn cell(s: &str, width: usize) -> String {
    let s: String = s.chars().take(width).collect();
    format!("{s:<width$}")
}

fn table(bad: &[&Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} | {} | {} | {} | {} | violation",
        cell("variant", 52),
        cell("upstream", 8),
        cell("status", 6),
        cell("handler run", 24),
        cell("events recorded", 40),
    );
    let _ = writeln!(out, "{}", "-".repeat(170));
    for o in bad {
        let handlers = if o.handlers.is_empty() {
            "-".to_string()
        } else {
            o.handlers.join(",")
        };
        let events = if o.events.is_empty() {
            "-".to_string()
        } else {
            o.events.join(",")
        };
        let status = match o.answer.status {
            0 => format!("- ({})", o.answer.note),
            s => s.to_string(),
        };
        let _ = writeln!(
            out,
            "{} | {} | {} | {} | {} | {}",
            cell(&o.variant, 52),
            cell(o.upstream, 8),
            cell(&status, 6),
            cell(&handlers, 24),
            cell(&events, 40),
            o.problems.join("; ")
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_variant_that_runs_a_mapped_handler_is_audited_and_enforced() {
    let missing = upstreams::missing();
    if !missing.is_empty() {
        let msg = format!(
            "the differential upstreams are not installed (run the install steps of .ci/run):\n  {}",
            missing.join("\n  ")
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        let bar = "!".repeat(78);
        eprintln!("\n{bar}\nSKIPPED tests/differential.rs: {msg}\n{bar}\n");
        return;
    }
    let corpus = corpus::corpus();
    let mut names: Vec<&str> = corpus.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), corpus.len(), "variant names are unique");
    assert!(corpus.len() >= 200, "only {} variants", corpus.len());

    let mut outcomes = Vec::new();
    for name in ["flask", "express", "axum"] {
        let up = match name {
            "flask" => Upstream::Child(ChildUpstream::flask()),
            "express" => Upstream::Child(ChildUpstream::express()),
            _ => Upstream::Axum(AxumUpstream::spawn().await),
        };
        outcomes.extend(run_upstream(name, &up, &corpus).await);
    }

    let handler_runs: usize = outcomes
        .iter()
        .map(|o| o.handlers.iter().filter(|h| mapped(h).is_some()).count())
        .sum();
    // Refused by authtrail: an access.denied or request.rejected event, or its ambiguous_path
    // answer. Other requests that ran no handler were refused by an HTTP parser (authtrail's
    // or the upstream's) or routed by the upstream to no handler at all.
    let refused =
        outcomes
            .iter()
            .filter(|o| {
                o.handlers.is_empty()
                    && (o.events.iter().any(|e| {
                        e.starts_with("access.denied@") || e.starts_with("request.rejected@")
                    }) || o.answer.note.contains("ambiguous_path"))
            })
            .count();
    let no_handler = outcomes.iter().filter(|o| o.handlers.is_empty()).count() - refused;
    let bad: Vec<&Outcome> = outcomes.iter().filter(|o| !o.problems.is_empty()).collect();
    if std::env::var_os("AUTHTRAIL_DIFFERENTIAL_ALL").is_some() {
        let all: Vec<&Outcome> = outcomes.iter().collect();
        println!("every variant x upstream:\n{}", table(&all));
    }
    let held = outcomes.iter().filter(|o| o.problems.is_empty()).count();
    let tried = corpus.len() * 3;
    println!(
        "differential: {} variants x 3 upstreams = {} tried; mapped handler runs: {handler_runs}; refused by authtrail: {refused}; no handler otherwise: {no_handler}; held: {held}; violations: {}",
        corpus.len(),
        tried,
        bad.len()
    );
    if !bad.is_empty() {
        let mut failing: Vec<(String, Vec<&str>)> = Vec::new();
        for o in &bad {
            match failing.iter_mut().find(|(n, _)| *n == o.variant) {
                Some((_, ups)) => ups.push(o.upstream),
                None => failing.push((o.variant.clone(), vec![o.upstream])),
            }
        }
        let list: String = failing
            .iter()
            .map(|(n, ups)| format!("  {n} [{}]\n", ups.join(", ")))
            .collect();
        panic!(
            "{} of {} variant x upstream runs violate the audit/enforcement contract:\n\n{}\nfailing variants ({}):\n{list}",
            bad.len(),
            tried,
            table(&bad),
            failing.len()
        );
    }
}
