//! The OCSF 1.3.0 mapping of an audit event, shared by the admin export (`format=ocsf`) and the
//! stream sinks (`format: ocsf`). Every record is valid OCSF 1.3.0 — `tests/ocsf_valid.rs`
//! checks each event type in many shapes against the schema — and the table of
//! docs/events.md#ocsf lists the classes and activities.
//!
//! Only attributes the class defines are set; everything else the event holds (provenance of
//! actor, app and target, tokens, details, stage, route, …) is kept under `unmapped`. Nothing is
//! invented: an anonymous actor has no `actor.user`, and an authentication or account change
//! that names no account is written as API Activity (both classes require a `user`).

use serde_json::{json, Map, Value};

use super::{
    rfc3339_millis, unix_millis, Actor, ActorKind, AuditEvent, Outcome, Target, TokenRef, TokenRole,
};

/// The OCSF schema version the `ocsf` format follows.
pub const OCSF_VERSION: &str = "1.3.0";

const ACCOUNT_CHANGE: u32 = 3001;
const AUTHENTICATION: u32 = 3002;
const API_ACTIVITY: u32 = 6003;

/// The HTTP methods OCSF 1.3.0 enumerates for `http_request.http_method` (`PATCH` came later:
/// it goes to `unmapped.http_method`).
const HTTP_METHODS: [&str; 8] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "TRACE",
];

/// The OCSF class and activity of an event type: (class_uid, activity_id, activity_name).
///
/// Authentication (3002): sign-in and sign-out, the OAuth token and authorization steps, MFA.
/// Account Change (3001): what happens to an account — creation, password, state, roles,
/// email verification, linked providers. API Activity (6003): everything else (account reads,
/// providers, app settings, support and admin actions, access decisions, audit reads), with
/// CRUD activities where they fit.
///
/// An activity OCSF has no value for is `99` (Other) with the source's activity as its name;
/// a type this table does not know keeps its own name (`custom.thing`). [`to_ocsf`] writes an
/// Authentication or Account Change event that names no account as API Activity instead.
pub fn ocsf_class(event_type: &str) -> (u32, u32, &str) {
    match event_type {
        "auth.login" => (AUTHENTICATION, 1, "Logon"),
        "auth.logout" | "session.revoke" => (AUTHENTICATION, 2, "Logoff"),
        "auth.logout.request" => (AUTHENTICATION, 99, "Logout Request"),
        "auth.mfa.challenge" => (AUTHENTICATION, 99, "MFA Challenge"),
        "auth.mfa.verify" => (AUTHENTICATION, 99, "MFA Verify"),
        "auth.otp.request" => (AUTHENTICATION, 99, "OTP Request"),
        "token.issue" => (AUTHENTICATION, 99, "Token Issue"),
        "token.refresh" => (AUTHENTICATION, 99, "Token Refresh"),
        "token.exchange" => (AUTHENTICATION, 99, "Token Exchange"),
        "token.revoke" => (AUTHENTICATION, 99, "Token Revoke"),
        "token.verify" => (AUTHENTICATION, 99, "Token Verify"),
        "token.invalid" => (AUTHENTICATION, 99, "Token Invalid"),
        "oauth.authorize" => (AUTHENTICATION, 99, "OAuth Authorize"),
        "oauth.interaction" => (AUTHENTICATION, 99, "OAuth Interaction"),
        "oauth.consent" => (AUTHENTICATION, 99, "OAuth Consent"),
        "oauth.consent.deny" => (AUTHENTICATION, 99, "OAuth Consent Deny"),
        "account.register" | "account.create" => (ACCOUNT_CHANGE, 1, "Create"),
        "account.reactivate" => (ACCOUNT_CHANGE, 2, "Enable"),
        "password.change" => (ACCOUNT_CHANGE, 3, "Password Change"),
        "password.reset"
        | "password.reset.complete"
        | "auth.password_reset.confirm"
        | "account.password_reset" => (ACCOUNT_CHANGE, 4, "Password Reset"),
        "account.deactivate" => (ACCOUNT_CHANGE, 5, "Disable"),
        "account.delete" => (ACCOUNT_CHANGE, 6, "Delete"),
        "admin.role.grant" => (ACCOUNT_CHANGE, 7, "Attach Policy"),
        "admin.role.revoke" => (ACCOUNT_CHANGE, 8, "Detach Policy"),
        "account.lock" => (ACCOUNT_CHANGE, 9, "Lock"),
        "auth.mfa.enroll" => (ACCOUNT_CHANGE, 10, "MFA Factor Enable"),
        "auth.mfa.unenroll" => (ACCOUNT_CHANGE, 11, "MFA Factor Disable"),
        "account.invite" => (ACCOUNT_CHANGE, 99, "Account Invite"),
        "password.reset.request" | "password.reset_request" | "auth.password_reset.request" => {
            (ACCOUNT_CHANGE, 99, "Password Reset Request")
        }
        "auth.password_reset.open" => (ACCOUNT_CHANGE, 99, "Password Reset Link Open"),
        "account.update" => (ACCOUNT_CHANGE, 99, "Account Update"),
        "account.verify" => (ACCOUNT_CHANGE, 99, "Account Verify"),
        "email.verify" => (ACCOUNT_CHANGE, 99, "Email Verify"),
        "email.verify.request" => (ACCOUNT_CHANGE, 99, "Email Verify Request"),
        "email.verify.complete" => (ACCOUNT_CHANGE, 99, "Email Verify Complete"),
        "provider.link" => (ACCOUNT_CHANGE, 99, "Provider Link"),
        "provider.unlink" => (ACCOUNT_CHANGE, 99, "Provider Unlink"),
        "provider.add" | "app.client.register" => (API_ACTIVITY, 1, "Create"),
        "account.read" | "session.read" | "audit.query" | "audit.export" => {
            (API_ACTIVITY, 2, "Read")
        }
        "provider.update" | "app.settings.update" | "app.key.rotate" => (API_ACTIVITY, 3, "Update"),
        "provider.remove" | "audit.purge" => (API_ACTIVITY, 4, "Delete"),
        "access.denied" => (API_ACTIVITY, 99, "Access Denied"),
        "access.would_deny" => (API_ACTIVITY, 99, "Access Would Deny"),
        "request.rejected" => (API_ACTIVITY, 99, "Request Rejected"),
        "alert.fired" => (API_ACTIVITY, 99, "Alert Fired"),
        "support.action" => (API_ACTIVITY, 99, "Support Action"),
        "support.impersonate" => (API_ACTIVITY, 99, "Support Impersonate"),
        "admin.link.generate" => (API_ACTIVITY, 99, "Admin Link Generate"),
        t if ["auth.", "token.", "oauth.", "session."]
            .iter()
            .any(|p| t.starts_with(p)) =>
        {
            (AUTHENTICATION, 99, t)
        }
        t if ["account.", "password.", "email."]
            .iter()
            .any(|p| t.starts_with(p)) =>
        {
            (ACCOUNT_CHANGE, 99, t)
        }
        t => (API_ACTIVITY, 99, t),
    }
}

fn class_name(class_uid: u32) -> &'static str {
    match class_uid {
        AUTHENTICATION => "Authentication",
        ACCOUNT_CHANGE => "Account Change",
        _ => "API Activity",
    }
}

fn category(class_uid: u32) -> (u32, &'static str) {
    match class_uid / 1000 {
        3 => (3, "Identity & Access Management"),
        _ => (6, "Application Activity"),
    }
}

/// The API Activity activity of a name: its CRUD value when it is one, else 99 (Other).
fn api_activity(name: &str) -> u32 {
    match name {
        "Create" => 1,
        "Read" => 2,
        "Update" => 3,
        "Delete" => 4,
        _ => 99,
    }
}

fn nonempty(s: &str) -> Option<&str> {
    (!s.trim().is_empty()).then_some(s)
}

/// The OCSF `user` of an identified actor (an id or a display name); `None` for an anonymous
/// or unidentified one — no name is made up for it.
fn actor_user(a: &Actor) -> Option<Value> {
    let uid = a.id.as_deref().and_then(nonempty);
    let name = a.display.as_deref().and_then(nonempty);
    if uid.is_none() && name.is_none() {
        return None;
    }
    let (type_id, type_name) = match a.kind {
        ActorKind::User => (1, "User"),
        ActorKind::Admin => (2, "Admin"),
        ActorKind::Service => (99, "Service"),
        ActorKind::Anonymous => (0, "Unknown"),
    };
    let mut u = json!({ "type_id": type_id, "type": type_name });
    if let Some(uid) = uid {
        u["uid"] = json!(uid);
    }
    if let Some(name) = name {
        u["name"] = json!(name);
    }
    Some(u)
}

/// The OCSF `user` of a target that is an account: `user`, `account` and `user_ref` targets by
/// id (`uid`), `email` and `username` targets by the name typed (`name`). Other targets
/// (sessions, providers, …) are no user.
fn target_user(t: &Target) -> Option<Value> {
    let id = nonempty(&t.id)?;
    let mut u = Map::new();
    match t.kind.as_str() {
        "user" | "account" | "user_ref" => {
            u.insert("uid".into(), json!(id));
            if let Some(d) = t.display.as_deref().and_then(nonempty) {
                u.insert("name".into(), json!(d));
            }
        }
        "email" | "username" => {
            u.insert("name".into(), json!(id));
        }
        _ => return None,
    }
    Some(Value::Object(u))
}

/// The credential the client presented: the first presented token (by fingerprint).
fn presented(e: &AuditEvent) -> Option<&TokenRef> {
    token(e, TokenRole::Presented)
}

fn token(e: &AuditEvent, role: TokenRole) -> Option<&TokenRef> {
    e.tokens
        .iter()
        .find(|t| t.role == role && nonempty(&t.fingerprint).is_some())
}

/// The `actor`: the identified actor as its `user`, the credential it presented as its
/// `session` (by fingerprint). When the class requires an actor and neither is known, the
/// actor is what it is — an unidentified client session (`session.is_remote`).
fn actor(e: &AuditEvent, with_session: bool, required: bool) -> Option<Value> {
    let mut a = Map::new();
    if let Some(u) = actor_user(&e.actor) {
        a.insert("user".into(), u);
    }
    if with_session {
        if let Some(t) = presented(e) {
            a.insert("session".into(), json!({ "credential_uid": t.fingerprint }));
        }
    }
    if a.is_empty() && required {
        a.insert("session".into(), json!({ "is_remote": true }));
    }
    (!a.is_empty()).then_some(Value::Object(a))
}

/// The `src_endpoint`: the client address; without one, the service that acted (authtrail's
/// own events: retention, alerts). When the class requires it and neither is known, it is
/// carried as unknown, as OCSF asks of a required attribute the source lacks.
fn src_endpoint(e: &AuditEvent, required: bool) -> Option<Value> {
    if let Some(ip) = e.source.ip {
        return Some(json!({ "ip": ip.to_string() }));
    }
    if e.actor.kind == ActorKind::Service {
        if let Some(id) = e.actor.id.as_deref().and_then(nonempty) {
            return Some(json!({ "svc_name": id }));
        }
    }
    required.then(|| json!({ "name": "unknown", "type_id": 0, "type": "Unknown" }))
}

/// The `http_request`, and a method OCSF 1.3.0 does not enumerate (for `unmapped`). `None` for
/// an event with no HTTP exchange (authtrail's own).
fn http_request(e: &AuditEvent) -> (Option<Value>, Option<&str>) {
    let method = nonempty(&e.http.method);
    let path = nonempty(&e.http.path);
    if method.is_none() && path.is_none() {
        return (None, None);
    }
    let mut r = Map::new();
    let mut unmapped_method = None;
    if let Some(m) = method {
        if HTTP_METHODS.contains(&m) {
            r.insert("http_method".into(), json!(m));
        } else {
            unmapped_method = Some(m);
        }
    }
    if let Some(p) = path {
        r.insert("url".into(), json!({ "path": p }));
    }
    if let Some(id) = nonempty(&e.http.request_id) {
        r.insert("uid".into(), json!(id));
    }
    if let Some(ua) = e.source.user_agent.as_deref().and_then(nonempty) {
        r.insert("user_agent".into(), json!(ua));
    }
    (Some(Value::Object(r)), unmapped_method)
}

/// `e` as an OCSF 1.3.0 event of the class [`ocsf_class`] picks, with the base event's required
/// attributes (`activity_id`, `category_uid`, `class_uid`, `metadata.product`,
/// `metadata.version`, `severity_id`, `time`, `type_uid`) and the class's own: `user` and
/// `service` for Authentication, `user` for Account Change, `actor`, `api` and `src_endpoint`
/// for API Activity. What OCSF has no place for goes in `unmapped`.
pub fn to_ocsf(e: &AuditEvent) -> Value {
    let (class_uid, activity_id, activity_name) = ocsf_class(&e.event_type);
    // The account the event is about: the target when it is an account, else the actor.
    let user = e
        .target
        .as_ref()
        .and_then(target_user)
        .or_else(|| actor_user(&e.actor));
    let service = nonempty(&e.http.route).map(|r| json!({ "name": r }));
    let (class_uid, activity_id) = match (class_uid, &user, &service) {
        (ACCOUNT_CHANGE, Some(_), _) | (AUTHENTICATION, Some(_), Some(_)) => {
            (class_uid, activity_id)
        }
        (ACCOUNT_CHANGE | AUTHENTICATION, _, _) => (API_ACTIVITY, api_activity(activity_name)),
        _ => (class_uid, activity_id),
    };
    let (category_uid, category_name) = category(class_uid);
    let class_name = class_name(class_uid);
    let (status_id, status) = match e.outcome {
        Outcome::Success => (1, "Success"),
        Outcome::Failure => (2, "Failure"),
        Outcome::Error => (99, "Error"),
        Outcome::Unknown => (0, "Unknown"),
    };
    let (severity_id, severity) = match e.outcome {
        Outcome::Failure | Outcome::Error => (2, "Low"),
        Outcome::Success | Outcome::Unknown => (1, "Informational"),
    };
    let mut message = format!("{} {}", e.event_type, e.outcome);
    if let Some(r) = &e.reason {
        message.push_str(&format!(" ({r})"));
    }
    let mut v = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": u64::from(class_uid) * 100 + u64::from(activity_id),
        "type_name": format!("{class_name}: {activity_name}"),
        "time": unix_millis(e.time),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "message": message,
        "duration": e.http.duration_ms,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "authtrail",
                "vendor_name": "authtrail",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": e.id.to_string(),
            "event_code": e.event_type,
            "original_time": rfc3339_millis::format(e.time),
            "log_name": "authtrail",
        },
    });
    let mut unmapped = Map::new();
    unmapped.insert("type".into(), json!(e.event_type));
    unmapped.insert("stage".into(), json!(e.stage));
    unmapped.insert("outcome".into(), json!(e.outcome));
    unmapped.insert("route".into(), json!(e.http.route));
    unmapped.insert("actor".into(), json!(e.actor));
    if let Some(app) = &e.app {
        unmapped.insert("app".into(), json!(app));
        v["metadata"]["tenant_uid"] = json!(app.value);
    }
    if let Some(c) = &e.app_conflict {
        unmapped.insert("app_conflict".into(), json!(c));
    }
    if let Some(t) = &e.target {
        unmapped.insert("target".into(), json!(t));
    }
    if !e.tokens.is_empty() {
        unmapped.insert("tokens".into(), json!(e.tokens));
    }
    if !e.details.is_empty() {
        unmapped.insert("details".into(), json!(e.details));
    }
    if e.http.body_truncated {
        unmapped.insert("body_truncated".into(), json!(true));
    }
    if let Some(chain) = &e.chain {
        unmapped.insert("chain".into(), json!(chain));
    }
    if let Some(seq) = e.seq {
        // `metadata.sequence` is a 32-bit integer in OCSF.
        match i32::try_from(seq) {
            Ok(s) => v["metadata"]["sequence"] = json!(s),
            Err(_) => {
                unmapped.insert("seq".into(), json!(seq));
            }
        }
    }
    if let Some(id) = nonempty(&e.http.request_id) {
        v["metadata"]["correlation_uid"] = json!(id);
    }
    if let Some(reason) = &e.reason {
        v["status_detail"] = json!(reason);
    }
    if let Some(code) = e.http.status {
        v["status_code"] = json!(code.to_string());
    }
    let (request, unmapped_method) = http_request(e);
    if let Some(r) = request {
        v["http_request"] = r;
    }
    if let Some(m) = unmapped_method {
        unmapped.insert("http_method".into(), json!(m));
    }
    let required = class_uid == API_ACTIVITY;
    if let Some(src) = src_endpoint(e, required) {
        v["src_endpoint"] = src;
    }
    match class_uid {
        AUTHENTICATION => {
            // The account authenticating (or signed out, or whose token this is); the actor
            // when someone else acted; the credential presented, else the one issued.
            v["user"] = user.unwrap_or_default();
            v["service"] = service.unwrap_or_default();
            if let Some(a) = actor(e, false, false) {
                v["actor"] = a;
            }
            if let Some(t) = presented(e).or_else(|| token(e, TokenRole::Issued)) {
                v["session"] = json!({ "credential_uid": t.fingerprint });
            }
            if e.event_type.starts_with("auth.mfa.") {
                v["is_mfa"] = json!(true);
            }
        }
        ACCOUNT_CHANGE => {
            // The account changed; who changed it.
            v["user"] = user.unwrap_or_default();
            if let Some(a) = actor(e, true, false) {
                v["actor"] = a;
            }
        }
        _ => {
            v["actor"] = actor(e, true, true).unwrap_or_default();
            let mut api = json!({ "operation": e.event_type });
            if let Some(id) = nonempty(&e.http.request_id) {
                api["request"] = json!({ "uid": id });
            }
            if let Some(code) = e.http.status {
                api["response"] = json!({ "code": code });
            }
            v["api"] = api;
            if let Some(t) = e.target.as_ref().filter(|t| nonempty(&t.id).is_some()) {
                let mut r = json!({ "uid": t.id, "type": t.kind });
                if let Some(d) = t.display.as_deref().and_then(nonempty) {
                    r["name"] = json!(d);
                }
                v["resources"] = json!([r]);
            }
        }
    }
    v["unmapped"] = Value::Object(unmapped);
    v
}
