//! A token's life: every event that presented or issued it, followed through rotation — the
//! tokens an exchange issued in return for a presented one, the tokens issued beside it, and the
//! refresh token it was rotated from — so login → refresh → refresh → logout reads as one story.
//! Built only on [`EventStore::query`] with the `token` filter, so every backend shares it.

use std::collections::{BTreeMap, HashSet};

use super::{Error, EventStore, Query};
use crate::event::{AuditEvent, TokenRole};

/// Most events one life may hold, and most tokens followed.
pub const MAX_EVENTS: usize = 1_000;
pub const MAX_TOKENS: usize = 200;

/// Events of `token`'s life (by fingerprint or jti), oldest first, within `apps_scope`.
pub async fn token_life(
    store: &dyn EventStore,
    token: &str,
    apps_scope: Option<Vec<String>>,
) -> Result<Vec<AuditEvent>, Error> {
    let mut events: BTreeMap<i64, AuditEvent> = BTreeMap::new();
    let mut followed: HashSet<String> = HashSet::new();
    let mut frontier = vec![token.to_string()];
    while let Some(t) = frontier.pop() {
        if !followed.insert(t.clone()) || followed.len() > MAX_TOKENS {
            continue;
        }
        let q = Query {
            token: Some(t.clone()),
            apps_scope: apps_scope.clone(),
            ascending: true,
            limit: MAX_EVENTS as u32,
            ..Query::default()
        };
        for ev in store.query(&q).await? {
            let Some(seq) = ev.seq else { continue };
            let Some(me) = ev
                .tokens
                .iter()
                .find(|r| r.fingerprint == t || r.jti.as_deref() == Some(t.as_str()))
            else {
                continue;
            };
            for other in &ev.tokens {
                let linked = match (me.role, other.role) {
                    // What an exchange issued in return for the token.
                    (TokenRole::Presented, TokenRole::Issued) => true,
                    // Issued together (an access and a refresh token of one grant).
                    (TokenRole::Issued, TokenRole::Issued) => true,
                    // The refresh token this one was rotated from.
                    (TokenRole::Issued, TokenRole::Presented) => other.kind == "refresh",
                    (TokenRole::Presented, TokenRole::Presented) => false,
                };
                if linked && !followed.contains(&other.fingerprint) {
                    frontier.push(other.fingerprint.clone());
                }
            }
            events.entry(seq).or_insert(ev);
            if events.len() >= MAX_EVENTS {
                return Ok(events.into_values().collect());
            }
        }
    }
    Ok(events.into_values().collect())
}
