//! The event both store benchmarks write (`store_bench`, `fleet_bench`): included by path.

use authtrail::event::{
    Actor, ActorKind, Attributed, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage,
};

/// A realistic event: ~700 bytes of JSON, like a login with app, actor, target and details.
pub fn event(i: usize) -> AuditEvent {
    let mut details = serde_json::Map::new();
    details.insert("client".into(), format!("web-{}", i % 7).into());
    AuditEvent {
        id: uuid::Uuid::now_v7(),
        seq: None,
        time: authtrail::event::now_millis(),
        event_type: "auth.login".into(),
        stage: Stage::Completed,
        outcome: if i % 5 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        reason: (i % 5 == 0).then(|| "invalid_credentials".to_string()),
        app: Some(Attributed {
            value: format!("app-{}", i % 20),
            source: "header:x-app-id".into(),
            verified: false,
        }),
        actor: Actor {
            id: Some(format!("user-{}", i % 5000)),
            kind: ActorKind::User,
            display: Some(format!("user{}@example.com", i % 5000)),
            verified: true,
            source: Some("jwt:sub".into()),
        },
        app_conflict: None,
        target: None,
        tokens: Vec::new(),
        source: ClientInfo {
            ip: Some(std::net::IpAddr::from([
                10,
                0,
                (i / 256 % 256) as u8,
                (i % 256) as u8,
            ])),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench/1.0".into()),
        },
        http: HttpInfo {
            method: "POST".into(),
            path: "/v1/sessions".into(),
            route: "login".into(),
            status: Some(if i % 5 == 0 { 401 } else { 200 }),
            duration_ms: 12,
            request_id: format!("req-{i}"),
            body_truncated: false,
        },
        details,
        chain: None,
    }
}
