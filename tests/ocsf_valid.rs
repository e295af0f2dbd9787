//! The `ocsf` format is valid OCSF 1.3.0: every event type authtrail knows — the taxonomy of
//! docs/events.md, every type the presets and examples map, the types authtrail writes itself,
//! and custom types of each prefix — in several shapes (identified, anonymous, with and without
//! tokens, target, address, response; every outcome) is rendered by `to_ocsf`, the function the
//! export and the sinks use, and validated against the vendored schema extract
//! (tests/ocsf/schema-1.3.0.json) by `support::ocsf`.

mod support;

use std::collections::BTreeSet;

use authtrail::event::ocsf::{ocsf_class, to_ocsf, OCSF_VERSION};
use authtrail::event::{
    Actor, ActorKind, Attributed, AuditEvent, ChainLink, ClientInfo, HttpInfo, Outcome, Stage,
    Target, TokenRef, TokenRole,
};
use serde_json::{json, Value};
use support::ocsf::{assert_valid, schema};
use time::macros::datetime;

/// Every event type the project knows. `every_known_type_is_covered` keeps this list honest
/// against the mapping, the presets, the example configs and docs/events.md.
const TYPES: &[&str] = &[
    // Authentication.
    "auth.login",
    "auth.logout",
    "auth.logout.request",
    "auth.mfa.challenge",
    "auth.mfa.verify",
    "auth.otp.request",
    "token.issue",
    "token.refresh",
    "token.exchange",
    "token.revoke",
    "token.verify",
    "token.invalid",
    "oauth.authorize",
    "oauth.interaction",
    "oauth.consent",
    "oauth.consent.deny",
    "session.revoke",
    // Account change.
    "account.register",
    "account.create",
    "account.reactivate",
    "account.deactivate",
    "account.delete",
    "account.lock",
    "auth.mfa.enroll",
    "auth.mfa.unenroll",
    "account.invite",
    "account.update",
    "account.verify",
    "account.password_reset",
    "password.change",
    "password.reset",
    "password.reset_request",
    "password.reset.request",
    "password.reset.complete",
    "auth.password_reset.request",
    "auth.password_reset.open",
    "auth.password_reset.confirm",
    "email.verify",
    "email.verify.request",
    "email.verify.complete",
    "admin.role.grant",
    "admin.role.revoke",
    "provider.link",
    "provider.unlink",
    // API activity.
    "account.read",
    "session.read",
    "app.client.register",
    "admin.link.generate",
    "provider.add",
    "provider.update",
    "provider.remove",
    "app.settings.update",
    "app.key.rotate",
    "audit.query",
    "audit.export",
    "audit.purge",
    "alert.fired",
    "access.denied",
    "access.would_deny",
    "request.rejected",
    "support.action",
    "support.impersonate",
    // Custom types: each default arm of the mapping.
    "auth.custom_step",
    "token.introspect",
    "oauth.device",
    "session.extend",
    "account.merge",
    "password.expire",
    "email.change",
    "custom.thing",
    "admin.op",
    "x",
];

const T0: time::OffsetDateTime = datetime!(2025-06-01 12:00:00.123 UTC);

fn token(role: TokenRole, kind: &str, fingerprint: &str) -> TokenRef {
    TokenRef {
        role,
        kind: kind.into(),
        source: match role {
            TokenRole::Presented => "bearer".into(),
            TokenRole::Issued => format!("response_body:/{kind}_token"),
        },
        fingerprint: fingerprint.into(),
        jti: Some("jti-1".into()),
        sub: Some("u-alice".into()),
        app: Some("app-a".into()),
        iat: Some(1_748_779_200),
        exp: Some(1_748_782_800),
        verified: role == TokenRole::Issued,
        invalid: None,
    }
}

fn user_target(kind: &str, id: &str, display: Option<&str>) -> Target {
    Target {
        kind: kind.into(),
        id: id.into(),
        display: display.map(String::from),
        source: "path:user_id".into(),
    }
}

/// An identified user, an app, a user target, presented and issued tokens, an address, a
/// response: everything present.
fn full(t: &str) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::now_v7(),
        seq: Some(42),
        time: T0,
        event_type: t.into(),
        stage: Stage::Completed,
        outcome: Outcome::Success,
        reason: None,
        app: Some(Attributed {
            value: "app-a".into(),
            source: "claim:app_id@bearer".into(),
            verified: true,
        }),
        actor: Actor {
            id: Some("u-alice".into()),
            kind: ActorKind::User,
            display: Some("alice".into()),
            verified: true,
            source: Some("claim:sub@bearer".into()),
        },
        app_conflict: Some(vec![
            Attributed {
                value: "app-a".into(),
                source: "claim:app_id@bearer".into(),
                verified: true,
            },
            Attributed {
                value: "app-b".into(),
                source: "header:x-app-id".into(),
                verified: false,
            },
        ]),
        target: Some(user_target("user", "u-bob", Some("bob@example.com"))),
        tokens: vec![
            token(TokenRole::Presented, "refresh", &"a1".repeat(32)),
            token(TokenRole::Issued, "access", &"b2".repeat(32)),
        ],
        source: ClientInfo {
            ip: Some("192.0.2.7".parse().unwrap()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        },
        http: HttpInfo {
            method: "POST".into(),
            path: "/v1/things/u-bob".into(),
            route: "things".into(),
            status: Some(200),
            duration_ms: 12,
            request_id: "req-full".into(),
            body_truncated: true,
        },
        details: serde_json::from_value(json!({ "client": "web", "lineage": { "found": false } }))
            .unwrap(),
        chain: Some(ChainLink {
            instance: "sidecar-1".into(),
            n: 7,
            prev_hash: "0".repeat(64),
            hash: "f".repeat(64),
        }),
    }
}

/// Nobody identified, nothing presented, no address, no user agent: a refused request.
fn anonymous_failure(t: &str) -> AuditEvent {
    let mut e = full(t);
    e.seq = None;
    e.actor = Actor::anonymous();
    e.app = None;
    e.app_conflict = None;
    e.target = None;
    e.tokens = Vec::new();
    e.source = ClientInfo::default();
    e.outcome = Outcome::Failure;
    e.reason = Some("invalid_credentials".into());
    e.http.method = "PATCH".into();
    e.http.status = Some(401);
    e.http.body_truncated = false;
    e.details = Default::default();
    e.chain = None;
    e
}

/// Anonymous, but with a presented token that failed verification, an account named by its
/// email, an IPv6 client, and an upstream error.
fn anonymous_with_token(t: &str) -> AuditEvent {
    let mut e = anonymous_failure(t);
    let mut presented = token(TokenRole::Presented, "access", &"c3".repeat(32));
    presented.invalid = Some("expired".into());
    e.tokens = vec![presented];
    e.target = Some(user_target("email", "bob@example.com", None));
    e.source.ip = Some("2001:db8::7".parse().unwrap());
    e.source.user_agent = Some("curl/8.5.0".into());
    e.outcome = Outcome::Error;
    e.reason = Some("upstream_timeout".into());
    e.http.method = "GET".into();
    e.http.status = Some(504);
    e
}

/// An admin acting on something that is not an account; no response (an attempt).
fn admin_on_resource(t: &str) -> AuditEvent {
    let mut e = full(t);
    e.stage = Stage::Attempt;
    e.outcome = Outcome::Unknown;
    e.actor = Actor {
        id: Some("root".into()),
        kind: ActorKind::Admin,
        display: None,
        verified: true,
        source: Some("claim:preferred_username@admin".into()),
    };
    e.target = Some(Target {
        kind: "provider".into(),
        id: "github".into(),
        display: Some("GitHub".into()),
        source: "path:provider".into(),
    });
    e.tokens = vec![token(TokenRole::Presented, "access", &"d4".repeat(32))];
    e.http.method = "DELETE".into();
    e.http.status = None;
    e
}

/// What authtrail writes itself (retention, alerts): a service actor, no HTTP exchange, no
/// address; a sequence number past 32 bits.
fn internal(t: &str) -> AuditEvent {
    let mut e = anonymous_failure(t);
    e.seq = Some(i64::from(i32::MAX) + 1);
    e.actor = Actor {
        id: Some("authtrail".into()),
        kind: ActorKind::Service,
        display: None,
        verified: true,
        source: Some("retention".into()),
    };
    e.outcome = Outcome::Success;
    e.reason = None;
    e.http = HttpInfo {
        method: String::new(),
        path: String::new(),
        route: "retention".into(),
        status: None,
        duration_ms: 0,
        request_id: "0196f3a0c2d47e3a9f1b2c3d4e5f6a7b".into(),
        body_truncated: false,
    };
    e
}

/// An actor known only by a display name, a Django-style user reference as target, a GET.
fn display_only(t: &str) -> AuditEvent {
    let mut e = anonymous_with_token(t);
    e.actor = Actor {
        id: None,
        kind: ActorKind::User,
        display: Some("carol".into()),
        verified: false,
        source: Some("form:username".into()),
    };
    e.target = Some(user_target("user_ref", "MQ", None));
    e.tokens = Vec::new();
    e.outcome = Outcome::Failure;
    e.http.status = Some(403);
    e
}

/// Nothing at all: anonymous, no route, no request line, no address, no user agent.
fn bare(t: &str) -> AuditEvent {
    let mut e = anonymous_failure(t);
    e.http = HttpInfo {
        method: String::new(),
        path: String::new(),
        route: String::new(),
        status: None,
        duration_ms: 0,
        request_id: String::new(),
        body_truncated: false,
    };
    e.reason = None;
    e.outcome = Outcome::Unknown;
    e
}

type Shape = fn(&str) -> AuditEvent;

const SHAPES: &[(&str, Shape)] = &[
    ("full", full),
    ("anonymous_failure", anonymous_failure),
    ("anonymous_with_token", anonymous_with_token),
    ("admin_on_resource", admin_on_resource),
    ("internal", internal),
    ("display_only", display_only),
    ("bare", bare),
];

fn every_record() -> Vec<(String, AuditEvent, Value)> {
    let mut out = Vec::new();
    for t in TYPES {
        for (shape, make) in SHAPES {
            let e = make(t);
            let v = to_ocsf(&e);
            out.push((format!("{t} ({shape})"), e, v));
        }
    }
    out
}

#[test]
fn every_event_type_in_every_shape_is_valid_ocsf() {
    let mut failures = Vec::new();
    let mut n = 0;
    for (label, _, v) in every_record() {
        n += 1;
        let errors = schema().validate(&v);
        if !errors.is_empty() {
            failures.push(format!("{label}:\n    {}", errors.join("\n    ")));
        }
    }
    assert_eq!(n, TYPES.len() * SHAPES.len());
    assert!(
        failures.is_empty(),
        "{} of {n} records are not valid OCSF {}:\n{}",
        failures.len(),
        schema().version(),
        failures.join("\n")
    );
}

#[test]
fn records_keep_the_audit_facts() {
    for (label, e, v) in every_record() {
        let class = v["class_uid"].as_u64().unwrap();
        assert_eq!(v["category_uid"].as_u64(), Some(class / 1000), "{label}");
        assert_eq!(v["metadata"]["version"], OCSF_VERSION, "{label}");
        assert_eq!(v["metadata"]["product"]["name"], "authtrail", "{label}");
        assert_eq!(v["metadata"]["uid"], e.id.to_string(), "{label}");
        assert_eq!(v["metadata"]["event_code"], e.event_type, "{label}");
        assert_eq!(v["time"], authtrail::event::unix_millis(e.time), "{label}");
        let status = match e.outcome {
            Outcome::Success => 1,
            Outcome::Failure => 2,
            Outcome::Error => 99,
            Outcome::Unknown => 0,
        };
        assert_eq!(v["status_id"], status, "{label}");
        assert_eq!(
            v.get("status_detail").and_then(Value::as_str),
            e.reason.as_deref(),
            "{label}"
        );
        match e.http.status {
            Some(s) => assert_eq!(v["status_code"], s.to_string(), "{label}"),
            None => assert!(v.get("status_code").is_none(), "{label}"),
        }
        if let Some(app) = &e.app {
            assert_eq!(v["metadata"]["tenant_uid"], app.value, "{label}");
        }
        if let Some(ip) = e.source.ip {
            assert_eq!(v["src_endpoint"]["ip"], ip.to_string(), "{label}");
        }
        if !e.http.request_id.is_empty() {
            assert_eq!(
                v["metadata"]["correlation_uid"], e.http.request_id,
                "{label}"
            );
        }
        // Who acted, when known, as the actor's user.
        if let Some(id) = &e.actor.id {
            assert_eq!(v["actor"]["user"]["uid"], *id, "{label}");
        }
        // A presented token is the actor's session credential (the authentication's session in
        // 3002), by fingerprint.
        if let Some(t) = e.tokens.iter().find(|t| t.role == TokenRole::Presented) {
            let credential = if class == 3002 {
                &v["session"]["credential_uid"]
            } else {
                &v["actor"]["session"]["credential_uid"]
            };
            assert_eq!(*credential, t.fingerprint, "{label}");
        }
        // The rest, with its provenance, under unmapped.
        assert_eq!(v["unmapped"]["type"], e.event_type, "{label}");
        assert_eq!(
            v["unmapped"]["actor"],
            serde_json::to_value(&e.actor).unwrap(),
            "{label}"
        );
        assert_eq!(
            v["unmapped"]["tokens"].as_array().map_or(0, Vec::len),
            e.tokens.len(),
            "{label}"
        );
        if class == 6003 {
            assert_eq!(v["api"]["operation"], e.event_type, "{label}");
        }
    }
}

#[test]
fn no_user_is_invented() {
    for (label, e, v) in every_record() {
        let text = v.to_string();
        for u in [&v["user"], &v["actor"]["user"]] {
            for k in ["name", "uid"] {
                assert_ne!(u[k], "unknown", "{label}: invented user in {text}");
            }
        }
        let identified = e.actor.id.is_some() || e.actor.display.is_some();
        if !identified {
            assert!(v["actor"].get("user").is_none(), "{label}: {text}");
        }
        // The user of an account change or an authentication is the account the event is
        // about: the target when it names an account, else the identified actor. Without
        // either, the event is API Activity, never a made-up user.
        let account_target = e
            .target
            .as_ref()
            .is_some_and(|t| ["user", "user_ref", "email"].contains(&t.kind.as_str()));
        if matches!(v["class_uid"].as_u64(), Some(3001 | 3002)) {
            assert!(account_target || identified, "{label}: {text}");
            let user = &v["user"];
            match &e.target {
                Some(t) if account_target => {
                    let id = if t.kind == "email" {
                        &user["name"]
                    } else {
                        &user["uid"]
                    };
                    assert_eq!(*id, t.id, "{label}");
                }
                _ => assert_eq!(v["user"], v["actor"]["user"], "{label}"),
            }
        } else if ocsf_class(&e.event_type).0 != 6003 {
            assert!(!account_target && !identified, "{label}: {text}");
        }
    }
}

#[test]
fn activities_mean_what_happened() {
    // (type, class, activity_id, activity_name) for an identified actor.
    let want: &[(&str, u64, u64, &str)] = &[
        ("auth.login", 3002, 1, "Logon"),
        ("auth.logout", 3002, 2, "Logoff"),
        ("session.revoke", 3002, 2, "Logoff"),
        ("token.issue", 3002, 99, "Token Issue"),
        ("token.refresh", 3002, 99, "Token Refresh"),
        ("token.exchange", 3002, 99, "Token Exchange"),
        ("token.revoke", 3002, 99, "Token Revoke"),
        ("auth.mfa.challenge", 3002, 99, "MFA Challenge"),
        ("auth.mfa.verify", 3002, 99, "MFA Verify"),
        ("oauth.consent", 3002, 99, "OAuth Consent"),
        ("account.register", 3001, 1, "Create"),
        ("account.reactivate", 3001, 2, "Enable"),
        ("password.change", 3001, 3, "Password Change"),
        ("password.reset.complete", 3001, 4, "Password Reset"),
        ("account.deactivate", 3001, 5, "Disable"),
        ("account.delete", 3001, 6, "Delete"),
        ("admin.role.grant", 3001, 7, "Attach Policy"),
        ("admin.role.revoke", 3001, 8, "Detach Policy"),
        ("account.lock", 3001, 9, "Lock"),
        ("password.reset.request", 3001, 99, "Password Reset Request"),
        ("account.update", 3001, 99, "Account Update"),
        ("provider.link", 3001, 99, "Provider Link"),
        ("account.read", 6003, 2, "Read"),
        ("provider.add", 6003, 1, "Create"),
        ("provider.update", 6003, 3, "Update"),
        ("audit.purge", 6003, 4, "Delete"),
        ("access.denied", 6003, 99, "Access Denied"),
        ("custom.thing", 6003, 99, "custom.thing"),
        ("auth.custom_step", 3002, 99, "auth.custom_step"),
        ("account.merge", 3001, 99, "account.merge"),
    ];
    for (t, class, activity, name) in want {
        let v = to_ocsf(&full(t));
        let got = (
            v["class_uid"].as_u64().unwrap(),
            v["activity_id"].as_u64().unwrap(),
            v["activity_name"].as_str().unwrap(),
        );
        assert_eq!(got, (*class, *activity, *name), "{t}");
        assert_eq!(
            ocsf_class(t),
            (*class as u32, *activity as u32, *name),
            "{t}"
        );
        assert_eq!(
            v["type_name"],
            format!("{}: {name}", v["class_name"].as_str().unwrap()),
            "{t}"
        );
    }
    // No Kerberos activities, no bare "Other": an activity OCSF lacks is 99 and named.
    for (label, _, v) in every_record() {
        assert_ne!(v["activity_name"], "Other", "{label}");
        if v["class_uid"] == 3002 {
            assert!(
                ![3, 4, 5, 6].contains(&v["activity_id"].as_u64().unwrap()),
                "{label}: a Kerberos activity"
            );
        }
    }
    // An authentication nobody can be named for is API Activity with the same activity name.
    let v = to_ocsf(&anonymous_failure("auth.login"));
    assert_eq!(
        (&v["class_uid"], &v["activity_id"], &v["activity_name"]),
        (&json!(6003), &json!(99), &json!("Logon"))
    );
    let v = to_ocsf(&anonymous_failure("account.register"));
    assert_eq!(
        (&v["class_uid"], &v["activity_id"], &v["activity_name"]),
        (&json!(6003), &json!(1), &json!("Create"))
    );
    // MFA steps say so.
    assert_eq!(to_ocsf(&full("auth.mfa.verify"))["is_mfa"], true);
}

/// The files that name event types: the mapping itself, the presets, the example configs and
/// the docs. Each type they name is in `TYPES`.
#[test]
fn every_known_type_is_covered() {
    let root = env!("CARGO_MANIFEST_DIR");
    let known: BTreeSet<&str> = TYPES.iter().copied().collect();
    let mut missing = BTreeSet::new();
    // The explicit arms of ocsf_class.
    let src = std::fs::read_to_string(format!("{root}/src/event/ocsf.rs")).unwrap();
    let body = src
        .split("pub fn ocsf_class")
        .nth(1)
        .and_then(|s| s.split("\n}\n").next())
        .unwrap();
    let quoted = regex::Regex::new(r#""([a-z_]+(?:\.[a-z_]+)+)""#).unwrap();
    for c in quoted.captures_iter(body) {
        let t = c.get(1).unwrap().as_str();
        if !known.contains(t) {
            missing.insert(format!("{t} (src/event/ocsf.rs)"));
        }
    }
    // `event:` of every route of the shipped configs, the examples and the docs.
    let event = regex::Regex::new(r"\bevent:\s*([a-z_]+(?:\.[a-z_]+)+)\b").unwrap();
    let mut files = vec![std::path::PathBuf::from(format!("{root}/README.md"))];
    for (dir, ext) in [
        ("config", "yaml"),
        ("config/presets", "yaml"),
        ("examples/kubernetes", "yaml"),
        ("docs", "md"),
    ] {
        for f in std::fs::read_dir(format!("{root}/{dir}"))
            .unwrap()
            .flatten()
        {
            let p = f.path();
            if p.extension().is_some_and(|x| x == ext) {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 10, "{files:?}");
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        for c in event.captures_iter(&text) {
            let t = c.get(1).unwrap().as_str();
            if !known.contains(t) {
                missing.insert(format!("{t} ({})", p.display()));
            }
        }
    }
    // The OCSF table of docs/events.md.
    let docs = std::fs::read_to_string(format!("{root}/docs/events.md")).unwrap();
    let row = regex::Regex::new(r"(?m)^\| `([a-z_]+(?:\.[a-z_]+)+)`").unwrap();
    let mut documented = 0;
    for c in row.captures_iter(&docs) {
        documented += 1;
        let t = c.get(1).unwrap().as_str();
        if !known.contains(t) {
            missing.insert(format!("{t} (docs/events.md)"));
        }
    }
    assert!(documented >= 40, "docs/events.md maps {documented} types");
    assert!(missing.is_empty(), "types not in TYPES: {missing:?}");
}

/// The validator is not vacuous: each rule catches what breaks it.
#[test]
fn the_validator_rejects_what_ocsf_forbids() {
    let good = to_ocsf(&full("auth.login"));
    assert_valid(&good);
    let broken = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        schema().validate(&v)
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "http_response",
            broken(&|v| v["http_response"] = json!({ "code": 200 })),
        ),
        ("class_uid", broken(&|v| v["class_uid"] = json!(3999))),
        (
            "user",
            broken(&|v| {
                v.as_object_mut().unwrap().remove("user");
            }),
        ),
        ("activity_id", broken(&|v| v["activity_id"] = json!(7))),
        (
            "activity_name",
            broken(&|v| {
                v["activity_id"] = json!(99);
                v["type_uid"] = json!(300299);
                v["activity_name"] = json!("Other");
            }),
        ),
        (
            "activity_name",
            broken(&|v| v["activity_name"] = json!("Login")),
        ),
        ("type_uid", broken(&|v| v["type_uid"] = json!(300202))),
        ("severity_id", broken(&|v| v["severity_id"] = json!(7))),
        (
            "time",
            broken(&|v| v["time"] = json!("2025-06-01T12:00:00Z")),
        ),
        ("status_code", broken(&|v| v["status_code"] = json!(200))),
        (
            "user",
            broken(&|v| v["user"] = json!({ "type_id": 0, "type": "Unknown" })),
        ),
        ("user.type_id", broken(&|v| v["user"]["type_id"] = json!(5))),
        ("user.uid", broken(&|v| v["user"]["uid"] = json!(7))),
        (
            "http_request.http_method",
            broken(&|v| v["http_request"]["http_method"] = json!("PATCH")),
        ),
        (
            "src_endpoint.ip",
            broken(&|v| v["src_endpoint"]["ip"] = json!("not-an-ip")),
        ),
        (
            "metadata.version",
            broken(&|v| v["metadata"]["version"] = Value::Null),
        ),
        (
            "cloud",
            broken(&|v| v["cloud"] = json!({ "provider": "AWS" })),
        ),
        (
            "the record",
            broken(&|v| {
                v.as_object_mut().unwrap().remove("service");
            }),
        ),
        (
            "session.expiration_time",
            broken(&|v| v["session"]["expiration_time"] = json!(1.5)),
        ),
    ];
    for (path, errors) in cases {
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "breaking {path} went unnoticed: {errors:?}"
        );
    }
    // Unmapped takes anything.
    let mut v = good.clone();
    v["unmapped"]["anything"] = json!({ "http_response": { "code": 200 } });
    assert_valid(&v);
}
