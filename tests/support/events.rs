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
