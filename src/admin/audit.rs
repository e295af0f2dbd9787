//! Audited auditors: every admin read becomes an `audit.query` (or `audit.export`) event in the
//! trail it read, naming the credential, the filters and how many events it returned. Events go
//! through [`Pipeline::submit`](crate::pipeline::Pipeline::submit) like the proxy's, so a read
//! never waits on the store's writer.
//!
//! The events carry no app: they belong to the operator of the trail, so only credentials that
//! see every app (`apps: ["*"]`) can read them back.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::auth::Caller;
use super::{AdminState, Error};
use crate::event::{Actor, ActorKind, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target};

/// Which audit event a read produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Query,
    Export,
}

impl Kind {
    fn event_type(self) -> &'static str {
        match self {
            Kind::Query => "audit.query",
            Kind::Export => "audit.export",
        }
    }
}

/// What one admin read did, for its audit event.
pub struct Read<'a> {
    pub kind: Kind,
    /// The endpoint as routed, e.g. `/v1/events/{id}`; stored as the event's route.
    pub endpoint: &'static str,
    /// The concrete path (no query string).
    pub path: &'a str,
    /// The query parameters as sent.
    pub filters: Value,
    /// Events returned (or rows, for stats and coverage).
    pub result_count: Option<u64>,
    /// What was read, for reads of one thing (an event, a token).
    pub target: Option<Target>,
}

/// How a read ended: its outcome, reason and HTTP status.
pub struct Ending {
    pub outcome: Outcome,
    pub reason: Option<&'static str>,
    pub status: u16,
}

impl Ending {
    /// The ending of a request answered with `result` (a status, or the error it failed with).
    pub fn of(result: Result<u16, &Error>) -> Ending {
        match result {
            Ok(status) => Ending {
                outcome: Outcome::Success,
                reason: None,
                status,
            },
            Err(e @ Error::Store(_)) => Ending {
                outcome: Outcome::Error,
                reason: Some(e.reason()),
                status: e.status().as_u16(),
            },
            Err(e) => Ending {
                outcome: Outcome::Failure,
                reason: Some(e.reason()),
                status: e.status().as_u16(),
            },
        }
    }
}

/// Submit the audit event of `read` by `caller`, which ended as `ending` says.
pub fn record(state: &AdminState, caller: &Caller, read: Read<'_>, ending: Ending) {
    let Ending {
        outcome,
        reason,
        status,
    } = ending;
    let mut details = Map::new();
    details.insert("credential".into(), caller.credential.name.clone().into());
    details.insert("endpoint".into(), read.endpoint.into());
    details.insert("filters".into(), read.filters);
    if let Some(n) = read.result_count {
        details.insert("result_count".into(), n.into());
    }
    let event = AuditEvent {
        id: Uuid::now_v7(),
        seq: None,
        time: caller.time,
        event_type: read.kind.event_type().to_string(),
        stage: Stage::Completed,
        outcome,
        reason: reason.map(str::to_string),
        app: None,
        actor: Actor {
            id: Some(caller.credential.name.clone()),
            kind: ActorKind::Admin,
            display: None,
            verified: true,
            source: Some("admin_credential".to_string()),
        },
        app_conflict: None,
        target: read.target,
        tokens: Vec::new(),
        source: ClientInfo {
            ip: caller.ip,
            user_agent: caller.user_agent.clone(),
        },
        http: HttpInfo {
            method: "GET".to_string(),
            path: read.path.to_string(),
            route: format!("admin:{}", read.endpoint),
            status: Some(status),
            duration_ms: caller.started.elapsed().as_millis() as u64,
            request_id: caller.request_id.clone(),
            body_truncated: false,
        },
        details,
        chain: None,
    };
    state.pipeline.submit(event);
}
