//! The OCSF 1.3 mapping of an audit event, shared by the admin export (`format=ocsf`) and the
//! stream sinks (`format: ocsf`).

use serde_json::{json, Value};

use super::{rfc3339_millis, unix_millis, ActorKind, AuditEvent, Outcome};

/// The OCSF schema version the `ocsf` format follows.
pub const OCSF_VERSION: &str = "1.3.0";

/// The OCSF class and activity of an event type: (class_uid, activity_id, activity_name).
///
/// Authentication (3002): sign-in, sign-out, token issue and refresh, MFA, token checks.
/// Account Change (3001): what happens to an account — registration, password, state, roles,
/// linked providers. API Activity (6003): everything else (providers, app settings, support
/// and admin actions, access decisions, audit reads), with CRUD activities where they fit.
pub fn ocsf_class(event_type: &str) -> (u32, u32, &'static str) {
    match event_type {
        "auth.login" => (3002, 1, "Logon"),
        "auth.logout" => (3002, 2, "Logoff"),
        "token.issue" => (3002, 3, "Authentication Ticket"),
        "token.refresh" => (3002, 5, "Service Ticket Renew"),
        "auth.mfa.challenge" | "auth.mfa.verify" => (3002, 6, "Preauth"),
        "token.revoke" | "token.verify" | "token.invalid" => (3002, 99, "Other"),
        "account.register" => (3001, 1, "Create"),
        "account.reactivate" => (3001, 2, "Enable"),
        "password.change" => (3001, 3, "Password Change"),
        "password.reset.complete" => (3001, 4, "Password Reset"),
        "account.deactivate" => (3001, 5, "Disable"),
        "account.delete" => (3001, 6, "Delete"),
        "admin.role.grant" => (3001, 7, "Attach Policy"),
        "admin.role.revoke" => (3001, 8, "Detach Policy"),
        "account.lock" => (3001, 9, "Lock"),
        "password.reset.request"
        | "email.verify.request"
        | "email.verify.complete"
        | "account.update"
        | "provider.link"
        | "provider.unlink" => (3001, 99, "Other"),
        "provider.add" => (6003, 1, "Create"),
        "audit.query" | "audit.export" => (6003, 2, "Read"),
        "provider.update" | "app.settings.update" | "app.key.rotate" => (6003, 3, "Update"),
        "provider.remove" | "audit.purge" => (6003, 4, "Delete"),
        t if t.starts_with("auth.") => (3002, 99, "Other"),
        t if t.starts_with("account.") || t.starts_with("password.") => (3001, 99, "Other"),
        _ => (6003, 99, "Other"),
    }
}

fn class_name(class_uid: u32) -> &'static str {
    match class_uid {
        3002 => "Authentication",
        3001 => "Account Change",
        _ => "API Activity",
    }
}

fn category(class_uid: u32) -> (u32, &'static str) {
    match class_uid / 1000 {
        3 => (3, "Identity & Access Management"),
        _ => (6, "Application Activity"),
    }
}

/// An OCSF `user` object (at least one of `uid`, `name`).
fn ocsf_user(uid: Option<&str>, name: Option<&str>, type_id: u32) -> Value {
    let type_name = match type_id {
        1 => "User",
        2 => "Admin",
        3 => "System",
        _ => "Unknown",
    };
    let mut u = json!({ "type_id": type_id, "type": type_name });
    match (uid, name) {
        (None, None) => u["name"] = json!("unknown"),
        (uid, name) => {
            if let Some(uid) = uid {
                u["uid"] = json!(uid);
            }
            if let Some(name) = name {
                u["name"] = json!(name);
            }
        }
    }
    u
}

/// `e` as an OCSF 1.3 event of the class [`ocsf_class`] picks, with the base event's required
/// fields (`activity_id`, `category_uid`, `class_uid`, `metadata.product`, `metadata.version`,
/// `severity_id`, `time`, `type_uid`) and the class's own (`user` for 3002 and 3001; `actor`,
/// `api.operation` and `src_endpoint` for 6003). What OCSF has no place for goes in `unmapped`.
pub fn to_ocsf(e: &AuditEvent) -> Value {
    let (class_uid, activity_id, activity_name) = ocsf_class(&e.event_type);
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
    let actor_type = match e.actor.kind {
        ActorKind::User => 1,
        ActorKind::Admin => 2,
        ActorKind::Service => 3,
        ActorKind::Anonymous => 0,
    };
    let actor_user = ocsf_user(
        e.actor.id.as_deref(),
        e.actor.display.as_deref(),
        actor_type,
    );
    let target_user = e
        .target
        .as_ref()
        .filter(|t| t.kind == "user")
        .map(|t| ocsf_user(Some(&t.id), t.display.as_deref(), 1));
    let src_endpoint = match e.source.ip {
        Some(ip) => json!({ "ip": ip.to_string() }),
        None => json!({ "name": "unknown" }),
    };
    let mut http_request = json!({
        "http_method": e.http.method,
        "url": { "path": e.http.path },
        "uid": e.http.request_id,
    });
    if let Some(ua) = &e.source.user_agent {
        http_request["user_agent"] = json!(ua);
    }
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
        "actor": { "user": actor_user.clone() },
        "src_endpoint": src_endpoint,
        "http_request": http_request,
        "unmapped": {
            "type": e.event_type,
            "stage": e.stage,
            "outcome": e.outcome,
            "route": e.http.route,
            "app": e.app,
            "actor": e.actor,
            "target": e.target,
            "tokens": e.tokens,
            "details": e.details,
        },
    });
    if let Some(reason) = &e.reason {
        v["status_detail"] = json!(reason);
    }
    if let Some(code) = e.http.status {
        v["status_code"] = json!(code.to_string());
        v["http_response"] = json!({ "code": code });
    }
    if let Some(seq) = e.seq {
        v["metadata"]["sequence"] = json!(seq);
    }
    if let Some(app) = &e.app {
        v["metadata"]["tenant_uid"] = json!(app.value);
    }
    match class_uid {
        3002 => {
            // The user authenticating: the actor, or failing that the account acted on.
            let user = if e.actor.id.is_some() {
                actor_user
            } else {
                target_user.unwrap_or(actor_user)
            };
            v["user"] = user;
            if e.event_type.starts_with("auth.mfa.") {
                v["is_mfa"] = json!(true);
            }
        }
        3001 => {
            // The account changed: the target user, else the actor acting on their own account.
            v["user"] = target_user.unwrap_or(actor_user);
        }
        _ => {
            v["api"] = json!({
                "operation": e.event_type,
                "request": { "uid": e.http.request_id },
            });
            if let Some(t) = &e.target {
                let mut r = json!({ "uid": t.id, "type": t.kind });
                if let Some(d) = &t.display {
                    r["name"] = json!(d);
                }
                v["resources"] = json!([r]);
            }
        }
    }
    v
}
