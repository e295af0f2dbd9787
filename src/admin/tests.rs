//! Unit tests of the admin module's pure parts: parameters, cursors, CSV cells, the OCSF mapping
//! and the OpenAPI document. The HTTP behaviour is tested end to end in tests/admin_api.rs.

use serde_json::Value;
use time::macros::datetime;

use super::export::{csv_cell, CSV_COLUMNS};
use super::filter::{Cursor, Order, Params};
use super::*;
use crate::event::ocsf::{ocsf_class, to_ocsf};
use crate::event::{
    Actor, ActorKind, Attributed, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target,
};
use crate::store::TypeFilter;

const NOW: time::OffsetDateTime = datetime!(2025-06-01 12:00:00 UTC);

fn parse(q: &str) -> Result<Params, Error> {
    Params::from_query_string(Some(q), true, &["format"], 1000, NOW)
}

fn message(r: Result<Params, Error>) -> String {
    match r {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_filter_parses() {
    let p = parse(
        "app=a&actor=alice&target=u1&type=auth.*&outcome=failure&route=login&request_id=r1\
         &ip=192.0.2.7&token=fp1&since=24h&until=2025-06-01T11:00:00Z&q=Alice%20S",
    )
    .unwrap();
    let f = &p.filters;
    assert_eq!(f.app.as_deref(), Some("a"));
    assert_eq!(f.actor.as_deref(), Some("alice"));
    assert_eq!(f.target.as_deref(), Some("u1"));
    assert_eq!(f.event_type, Some(TypeFilter::Prefix("auth.".into())));
    assert_eq!(f.outcome, Some(Outcome::Failure));
    assert_eq!(f.route.as_deref(), Some("login"));
    assert_eq!(f.request_id.as_deref(), Some("r1"));
    assert_eq!(f.ip, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(f.token.as_deref(), Some("fp1"));
    assert_eq!(f.since, Some(datetime!(2025-05-31 12:00:00 UTC)));
    assert_eq!(f.until, Some(datetime!(2025-06-01 11:00:00 UTC)));
    assert_eq!(f.search.as_deref(), Some("Alice S"));
    let q = f.to_query(Some(vec!["a".into()]));
    assert_eq!(q.apps_scope, Some(vec!["a".to_string()]));
    assert_eq!(q.token.as_deref(), Some("fp1"));
}

#[test]
fn empty_values_mean_any() {
    let p = parse("app=&outcome=&ip=&since=&q=%20").unwrap();
    assert_eq!(p.filters, filter::Filters::default());
}

#[test]
fn bad_parameters_are_named_with_their_value() {
    assert_eq!(
        message(parse("outcome=maybe")),
        "invalid outcome \"maybe\": expected success, failure, error or unknown"
    );
    assert_eq!(
        message(parse("ip=10.0.0")),
        "invalid ip \"10.0.0\": expected an IP address"
    );
    assert_eq!(
        message(parse("since=yesterday")),
        "invalid since \"yesterday\": expected a duration like 24h or an RFC 3339 time"
    );
    assert_eq!(
        message(parse("limit=0")),
        "invalid limit \"0\": expected a number from 1 to 1000"
    );
    assert_eq!(
        message(parse("limit=1001")),
        "invalid limit \"1001\": expected a number from 1 to 1000"
    );
    assert_eq!(
        message(parse("order=up")),
        "invalid order \"up\": expected asc or desc"
    );
    assert_eq!(
        message(parse("colour=red")),
        "unknown query parameter \"colour\""
    );
    assert_eq!(
        message(parse("app=a&app=b")),
        "query parameter \"app\" given more than once"
    );
}

#[test]
fn paging_parameters_only_where_allowed() {
    let r = Params::from_query_string(Some("limit=5"), false, &[], 1000, NOW);
    assert_eq!(message(r), "unknown query parameter \"limit\"");
}

#[test]
fn cursor_round_trips_and_is_checked() {
    let c = Cursor {
        order: Order::Asc,
        seq: 42,
    };
    let text = c.encode();
    assert!(!text.contains("42"), "the cursor is opaque: {text}");
    assert_eq!(Cursor::decode(&text, Order::Asc).unwrap(), c);
    assert_eq!(
        Cursor::decode(&text, Order::Desc).unwrap_err().to_string(),
        format!("invalid cursor \"{text}\": it pages order=asc")
    );
    assert_eq!(
        Cursor::decode("bm9wZQ", Order::Asc)
            .unwrap_err()
            .to_string(),
        "invalid cursor \"bm9wZQ\": not a cursor this server issued"
    );
}

#[test]
fn link_query_keeps_filters_and_replaces_the_cursor() {
    let p = parse("app=a%20b&cursor=old&limit=5").unwrap();
    let next = Cursor {
        order: Order::Desc,
        seq: 7,
    };
    assert_eq!(
        p.with_cursor(&next),
        format!("app=a+b&limit=5&cursor={}", next.encode())
    );
}

#[test]
fn csv_cells_are_quoted_and_neutralised() {
    assert_eq!(csv_cell("plain"), "plain");
    assert_eq!(csv_cell("a,b"), "\"a,b\"");
    assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
    assert_eq!(csv_cell("=1+1"), "'=1+1");
    assert_eq!(csv_cell("+49 30"), "'+49 30");
    assert_eq!(csv_cell("-2"), "'-2");
    assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
    assert_eq!(
        csv_cell("=HYPERLINK(\"x\",\"y\")"),
        "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
    );
    assert_eq!(csv_cell(" padded"), "\" padded\"");
    assert_eq!(csv_cell(""), "");
}

#[test]
fn csv_has_a_fixed_header() {
    assert_eq!(CSV_COLUMNS[0], "seq");
    assert!(CSV_COLUMNS.contains(&"details"));
}

fn event(event_type: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::now_v7(),
        seq: Some(9),
        time: NOW,
        event_type: event_type.into(),
        stage: Stage::Completed,
        outcome,
        reason: Some("invalid_credentials".into()),
        app: Some(Attributed {
            value: "app-a".into(),
            source: "header:x-app-id".into(),
            verified: false,
        }),
        actor: Actor {
            id: Some("alice".into()),
            kind: ActorKind::User,
            display: Some("Alice".into()),
            verified: false,
            source: Some("request_body:/username".into()),
        },
        app_conflict: None,
        target: Some(Target {
            kind: "user".into(),
            id: "u-bob".into(),
            display: None,
            source: "path:user_id".into(),
        }),
        tokens: Vec::new(),
        source: ClientInfo {
            ip: Some("192.0.2.7".parse().unwrap()),
            user_agent: Some("curl/8".into()),
        },
        http: HttpInfo {
            method: "POST".into(),
            path: "/v1/sessions".into(),
            route: "login".into(),
            status: Some(401),
            duration_ms: 12,
            request_id: "req-1".into(),
            body_truncated: false,
        },
        details: serde_json::Map::new(),
        chain: None,
    }
}

fn has(v: &Value, pointer: &str) -> bool {
    v.pointer(pointer).is_some_and(|x| !x.is_null())
}

#[test]
fn ocsf_classes_follow_the_taxonomy() {
    assert_eq!(ocsf_class("auth.login"), (3002, 1, "Logon"));
    assert_eq!(ocsf_class("auth.logout"), (3002, 2, "Logoff"));
    assert_eq!(ocsf_class("token.refresh"), (3002, 99, "Token Refresh"));
    assert_eq!(ocsf_class("token.issue"), (3002, 99, "Token Issue"));
    assert_eq!(ocsf_class("auth.mfa.verify"), (3002, 99, "MFA Verify"));
    assert_eq!(ocsf_class("account.deactivate"), (3001, 5, "Disable"));
    assert_eq!(
        ocsf_class("password.reset.complete"),
        (3001, 4, "Password Reset")
    );
    assert_eq!(ocsf_class("provider.add"), (6003, 1, "Create"));
    assert_eq!(ocsf_class("audit.query"), (6003, 2, "Read"));
    // A type the table does not know: activity 99, named after itself.
    assert_eq!(ocsf_class("custom.thing"), (6003, 99, "custom.thing"));
    assert_eq!(ocsf_class("auth.custom"), (3002, 99, "auth.custom"));
    assert_eq!(ocsf_class("account.merge"), (3001, 99, "account.merge"));
}

#[test]
fn ocsf_events_have_their_class_required_fields() {
    let base = [
        "/activity_id",
        "/category_uid",
        "/class_uid",
        "/severity_id",
        "/time",
        "/type_uid",
        "/metadata/version",
        "/metadata/product/name",
        "/metadata/product/vendor_name",
    ];
    let cases: [(&str, u64, &[&str]); 3] = [
        ("auth.login", 3002, &["/user/uid", "/service/name"]),
        ("account.deactivate", 3001, &["/user/uid"]),
        (
            "provider.update",
            6003,
            &["/actor/user/uid", "/api/operation", "/src_endpoint/ip"],
        ),
    ];
    for (t, class, required) in cases {
        let v = to_ocsf(&event(t, Outcome::Failure));
        assert_eq!(v["class_uid"], class, "{t}");
        assert_eq!(v["category_uid"], class / 1000, "{t}");
        assert_eq!(
            v["type_uid"].as_u64().unwrap(),
            class * 100 + v["activity_id"].as_u64().unwrap()
        );
        for p in base.iter().chain(required) {
            assert!(has(&v, p), "{t}: missing {p} in {v}");
        }
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["status_detail"], "invalid_credentials");
        assert_eq!(v["status_code"], "401");
        assert_eq!(v["time"], crate::event::unix_millis(NOW));
        // OCSF 1.3.0 defines no http_response for these classes.
        assert!(v.get("http_response").is_none(), "{t}: {v}");
    }
    // The account an event is about is its user (the target when it is an account); the
    // actor is who acted.
    for t in ["account.deactivate", "auth.login"] {
        let v = to_ocsf(&event(t, Outcome::Success));
        assert_eq!(v["user"]["uid"], "u-bob", "{t}");
        assert_eq!(v["actor"]["user"]["uid"], "alice", "{t}");
    }
    let mut e = event("auth.login", Outcome::Success);
    e.target = None;
    let v = to_ocsf(&e);
    assert_eq!(v["user"]["uid"], "alice");
    assert_eq!(v["user"]["name"], "Alice");
}

#[test]
fn ocsf_invents_no_user_for_anonymous_actors() {
    // An anonymous sign-in names no account: API Activity, with no actor.user.
    let mut e = event("auth.login", Outcome::Failure);
    e.actor = Actor::anonymous();
    e.target = None;
    e.source.ip = None;
    let v = to_ocsf(&e);
    assert_eq!(v["class_uid"], 6003);
    assert_eq!(v["activity_id"], 99);
    assert_eq!(v["activity_name"], "Logon");
    assert!(v.get("user").is_none(), "{v}");
    assert!(v["actor"].get("user").is_none(), "{v}");
    assert_eq!(v["actor"]["session"]["is_remote"], true);
    // With an account as target, the account is the user, and there is no actor.user.
    let mut e = event("auth.login", Outcome::Failure);
    e.actor = Actor::anonymous();
    let v = to_ocsf(&e);
    assert_eq!(v["class_uid"], 3002);
    assert_eq!(v["user"]["uid"], "u-bob");
    assert!(v.get("actor").is_none(), "{v}");
    // API Activity requires a src_endpoint: unknown without an address.
    let mut e = event("support.action", Outcome::Success);
    e.source.ip = None;
    let v = to_ocsf(&e);
    assert_eq!(v["src_endpoint"]["name"], "unknown");
    assert_eq!(v["src_endpoint"]["type_id"], 0);
}

#[test]
fn openapi_document_parses_and_names_every_route() {
    let doc: Value = serde_json::from_str(openapi::DOCUMENT).unwrap();
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().unwrap();
    // Every /v1 route of the router, read from its source, with its method.
    let mut routes = 0;
    for line in include_str!("../admin.rs").lines() {
        let Some(rest) = line.trim().strip_prefix(".route(\"/v1/") else {
            continue;
        };
        let (path, handler) = rest.split_once('"').unwrap();
        let method = if handler.contains("post(") {
            "post"
        } else {
            "get"
        };
        let path = format!("/v1/{path}");
        assert!(
            doc["paths"][path.as_str()][method].is_object(),
            "{method} {path} is not documented"
        );
        routes += 1;
    }
    assert!(routes >= 9, "the router's routes were read ({routes})");
    assert_eq!(
        paths.len(),
        routes,
        "documented paths the router does not serve"
    );
    // whoami answers with every permission a credential can hold.
    let permissions = &doc["paths"]["/v1/whoami"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["properties"]["permissions"]["items"]["enum"];
    assert_eq!(
        permissions,
        &serde_json::json!(["read", "export", "reload"])
    );
    // Every filter the API accepts is a documented parameter.
    let params = doc["components"]["parameters"].as_object().unwrap();
    for f in filter::FILTER_PARAMS {
        assert!(params.contains_key(*f), "filter {f} is not documented");
    }
    for f in filter::EXCLUDE_PARAMS {
        assert!(params.contains_key(*f), "exclusion {f} is not documented");
    }
}

#[test]
fn every_error_has_a_status_and_reason() {
    let cases = [
        (
            Error::Unauthorized { presented: false },
            401,
            "unauthorized",
        ),
        (
            Error::Forbidden {
                credential: "c".into(),
                permission: "export",
            },
            403,
            "forbidden",
        ),
        (Error::NotFound("event"), 404, "not_found"),
        (Error::invalid("limit", "0", "x"), 400, "bad_request"),
        (Error::UnknownParam("x".into()), 400, "bad_request"),
        (Error::DuplicateParam("x".into()), 400, "bad_request"),
        (
            Error::Store(crate::store::Error::UnsupportedUrl("x".into())),
            503,
            "store_unavailable",
        ),
    ];
    for (e, status, reason) in cases {
        assert_eq!(e.status().as_u16(), status, "{e}");
        assert_eq!(e.reason(), reason);
    }
    assert_eq!(
        Error::Forbidden {
            credential: "support".into(),
            permission: "export"
        }
        .to_string(),
        "credential \"support\" lacks the export permission"
    );
}
