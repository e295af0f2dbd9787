//! Reading events in assertions: who acted, in which app, on what (as comparable tuples), and
//! the small encodings the auth-server tests send.

use authtrail::event::AuditEvent;
use base64::Engine;

/// (id, verified, source) of an event's actor.
pub fn actor(e: &AuditEvent) -> (Option<&str>, bool, Option<&str>) {
    (
        e.actor.id.as_deref(),
        e.actor.verified,
        e.actor.source.as_deref(),
    )
}

/// (value, verified, source) of an event's app.
pub fn app(e: &AuditEvent) -> Option<(&str, bool, &str)> {
    e.app
        .as_ref()
        .map(|a| (a.value.as_str(), a.verified, a.source.as_str()))
}

/// (kind, id, source) of an event's target.
pub fn target(e: &AuditEvent) -> Option<(&str, &str, &str)> {
    e.target
        .as_ref()
        .map(|t| (t.kind.as_str(), t.id.as_str(), t.source.as_str()))
}

/// The source a value inherited from event `e` carries: `lineage:<e's id>`.
pub fn lineage(e: &AuditEvent) -> String {
    format!("lineage:{}", e.id)
}

/// `Authorization: Basic` for an OAuth client.
pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// One line per event for an assertion's message: request id, type, outcome, reason, who, app,
/// target, tokens and details.
pub fn summary(e: &AuditEvent) -> String {
    format!(
        "{:<26} {:<22} {:<8} {:<26} actor={:?} kind={:?} app={:?} target={:?} tokens={:?} details={}",
        e.http.request_id,
        e.event_type,
        e.outcome.as_str(),
        e.reason.as_deref().unwrap_or("-"),
        actor(e),
        e.actor.kind,
        app(e),
        target(e),
        e.tokens
            .iter()
            .map(|t| format!("{:?}/{}/{}/v={}/{:?}", t.role, t.kind, t.source, t.verified, t.invalid))
            .collect::<Vec<_>>(),
        serde_json::Value::Object(e.details.clone())
    )
}

/// Now, in Unix seconds (for the claims the stand-in servers sign).
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
