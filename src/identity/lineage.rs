//! Identity by lineage: a token, code or session cookie the trail saw *issued* names, when it is
//! presented later, the actor and app of the event that issued it. This names the user behind
//! an opaque refresh token, an authorization code, a token being revoked, every link of a
//! rotation chain, and a browser session.
//!
//! Issuances are remembered in a bounded in-memory index as the proxy builds their events, so
//! the next request finds them before their event is even stored; a miss asks the store's token
//! index (`Query::token`), which answers across restarts and across sidecars that share one
//! PostgreSQL trail. Session bindings end: at a logout (an event that presented the cookie with
//! `details.session_ended`) and when the cookie expires. Only fingerprints are held, never a
//! token or a cookie.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::event::{AuditEvent, Outcome, TokenRole};
use crate::store::{EventStore, Query};

/// Most events the store lookup reads for one fingerprint (its issuance and the logouts after).
const STORE_LOOKUP_LIMIT: u32 = 200;

/// How long a store lookup may hold up a request: past it the lineage is `Unavailable`.
pub const STORE_LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);

/// How long "the store has never seen it issued" is believed before the store is asked again
/// (another sidecar's issuance becomes visible once its writer commits).
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(5);

/// Who an issuing event named: its actor and app, as verified as they were there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuance {
    /// The event that issued the token, code or cookie.
    pub event: Uuid,
    pub actor: Option<String>,
    pub actor_verified: bool,
    pub app: Option<String>,
    pub app_verified: bool,
    /// Unix seconds after which a session binding no longer holds (a cookie's `Max-Age` or
    /// `Expires`); tokens keep their lineage after they expire.
    pub expires: Option<i64>,
}

impl Issuance {
    /// The issuance an event records for what it issued: `None` unless it succeeded. One that
    /// names no one still links a later use to the event that issued it.
    pub fn of(ev: &AuditEvent, expires: Option<i64>) -> Option<Issuance> {
        if ev.outcome != Outcome::Success {
            return None;
        }
        Some(Issuance {
            event: ev.id,
            actor: ev.actor.id.clone(),
            actor_verified: ev.actor.verified,
            app: ev.app.as_ref().map(|a| a.value.clone()),
            app_verified: ev.app.as_ref().is_some_and(|a| a.verified),
            expires,
        })
    }
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lineage {
    /// Issued by this event.
    Found(Arc<Issuance>),
    /// The trail never saw it issued (or the issuing event was purged).
    NotFound,
    /// A session binding that ended: `logout` or `expired`.
    Ended { event: Uuid, why: &'static str },
    /// The store could not be asked.
    Unavailable,
}

#[derive(Clone, Debug)]
enum Entry {
    Issued(Arc<Issuance>),
    Ended {
        event: Uuid,
    },
    /// The store had no issuance for it; asked again after this instant.
    Unknown {
        until: Instant,
    },
}

/// The bounded index of issuances, in front of the store's token index.
pub struct LineageIndex {
    capacity: usize,
    inner: Mutex<Bounded>,
    store: Option<Arc<dyn EventStore>>,
}

impl std::fmt::Debug for LineageIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineageIndex")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// A map that forgets its oldest insertions past `capacity`.
#[derive(Default)]
struct Bounded {
    map: HashMap<String, Entry>,
    order: VecDeque<String>,
}

impl LineageIndex {
    /// An index of at most `capacity` fingerprints (0: none in memory, the store only),
    /// backed by `store` when given.
    pub fn new(capacity: usize, store: Option<Arc<dyn EventStore>>) -> LineageIndex {
        LineageIndex {
            capacity,
            inner: Mutex::new(Bounded::default()),
            store,
        }
    }

    /// How many fingerprints are held in memory.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bounded> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put(&self, fingerprint: &str, entry: Entry) {
        self.put_unless(fingerprint, entry, |_| false);
    }

    /// [`put`](Self::put), unless `keep` says the entry held now must stay (checked under the
    /// same lock).
    fn put_unless(&self, fingerprint: &str, entry: Entry, keep: impl FnOnce(&Entry) -> bool) {
        if self.capacity == 0 || fingerprint.is_empty() {
            return;
        }
        let mut b = self.lock();
        if b.map.get(fingerprint).is_some_and(keep) {
            return;
        }
        if b.map.insert(fingerprint.to_string(), entry).is_none() {
            b.order.push_back(fingerprint.to_string());
        }
        while b.map.len() > self.capacity {
            let Some(old) = b.order.pop_front() else {
                break;
            };
            b.map.remove(&old);
        }
    }

    /// `fingerprint` was issued (or bound) by `issuance`'s event. An issuance that names no
    /// actor never replaces one that does (a response setting the same cookie again).
    pub fn remember(&self, fingerprint: &str, issuance: Issuance) {
        let anonymous = issuance.actor.is_none();
        self.put_unless(fingerprint, Entry::Issued(Arc::new(issuance)), |held| {
            anonymous && matches!(held, Entry::Issued(i) if i.actor.is_some())
        });
    }

    /// The session bound to `fingerprint` ended at event `by` (a logout).
    pub fn end(&self, fingerprint: &str, by: Uuid) {
        self.put(fingerprint, Entry::Ended { event: by });
    }

    /// Who issued `fingerprint`: from memory, else from the store. `session`: a session cookie,
    /// whose binding ends at a logout or at its expiry (`now`, Unix seconds).
    pub async fn lookup(&self, fingerprint: &str, session: bool, now: i64) -> Lineage {
        let cached = self
            .lock()
            .map
            .get(fingerprint)
            .filter(|e| !matches!(e, Entry::Unknown { until } if *until <= Instant::now()))
            .cloned();
        let entry = match cached {
            Some(e) => Some(e),
            None => {
                let asked = tokio::time::timeout(
                    STORE_LOOKUP_TIMEOUT,
                    self.ask_store(fingerprint, session),
                );
                match asked.await {
                    Ok(Ok(Some(e))) => {
                        self.put(fingerprint, e.clone());
                        Some(e)
                    }
                    Ok(Ok(None)) => {
                        if self.store.is_some() {
                            let until = Instant::now() + NOT_FOUND_TTL;
                            self.put(fingerprint, Entry::Unknown { until });
                        }
                        None
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "lineage lookup: the store could not be asked");
                        return Lineage::Unavailable;
                    }
                    Err(_) => {
                        tracing::warn!(
                            timeout_ms = STORE_LOOKUP_TIMEOUT.as_millis() as u64,
                            "lineage lookup: the store did not answer in time"
                        );
                        return Lineage::Unavailable;
                    }
                }
            }
        };
        match entry {
            None | Some(Entry::Unknown { .. }) => Lineage::NotFound,
            Some(Entry::Ended { event }) if session => Lineage::Ended {
                event,
                why: "logout",
            },
            // A logout ends a session, not the lineage of a token.
            Some(Entry::Ended { .. }) => Lineage::NotFound,
            Some(Entry::Issued(i)) => match i.expires {
                Some(exp) if session && exp <= now => Lineage::Ended {
                    event: i.event,
                    why: "expired",
                },
                _ => Lineage::Found(i),
            },
        }
    }

    /// The issuing event of `fingerprint` in the store, and for a session the logout that ended
    /// it after.
    async fn ask_store(
        &self,
        fingerprint: &str,
        session: bool,
    ) -> Result<Option<Entry>, crate::store::Error> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let q = Query {
            token: Some(fingerprint.to_string()),
            ascending: true,
            limit: STORE_LOOKUP_LIMIT,
            ..Query::default()
        };
        let events = store.query(&q).await?;
        let holds = |ev: &AuditEvent, role: TokenRole| {
            ev.tokens
                .iter()
                .any(|t| t.fingerprint == fingerprint && t.role == role)
        };
        let flag = |ev: &AuditEvent, key: &str| {
            ev.details.get(key) == Some(&serde_json::Value::Bool(true))
        };
        // In trail order, as memory saw them: an issuance, a binding at a login
        // (`session_bound`), a logout (`session_ended`). A token keeps its first issuance; a
        // session ends up with its latest binding that names someone, unless a logout came after.
        let mut state: Option<Entry> = None;
        for ev in &events {
            if ev.outcome != Outcome::Success {
                continue;
            }
            let issued = holds(ev, TokenRole::Issued);
            let bound = session && holds(ev, TokenRole::Presented) && flag(ev, "session_bound");
            if issued || bound {
                let expires = ev
                    .tokens
                    .iter()
                    .find(|t| t.fingerprint == fingerprint && t.role == TokenRole::Issued)
                    .and_then(|t| t.exp);
                let Some(i) = Issuance::of(ev, expires) else {
                    continue;
                };
                let replace = match &state {
                    None | Some(Entry::Ended { .. }) | Some(Entry::Unknown { .. }) => true,
                    Some(Entry::Issued(old)) => {
                        session && (i.actor.is_some() || old.actor.is_none())
                    }
                };
                if replace {
                    state = Some(Entry::Issued(Arc::new(i)));
                }
            } else if session && holds(ev, TokenRole::Presented) && flag(ev, "session_ended") {
                state = Some(Entry::Ended { event: ev.id });
            }
        }
        Ok(state)
    }
}

impl Lineage {
    /// How the event records the lookup in `details.lineage`.
    pub fn describe(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Lineage::Found(i) => json!({ "event": i.event.to_string() }),
            Lineage::NotFound => json!({ "found": false }),
            Lineage::Ended { event, why } => {
                json!({ "found": false, "ended": why, "event": event.to_string() })
            }
            Lineage::Unavailable => json!({ "found": false, "error": "store_unavailable" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuance(actor: &str, expires: Option<i64>) -> Issuance {
        Issuance {
            event: Uuid::now_v7(),
            actor: Some(actor.into()),
            actor_verified: true,
            app: Some("app-a".into()),
            app_verified: true,
            expires,
        }
    }

    #[tokio::test]
    async fn the_index_forgets_its_oldest_past_capacity() {
        let idx = LineageIndex::new(2, None);
        idx.remember("a", issuance("u-a", None));
        idx.remember("b", issuance("u-b", None));
        idx.remember("c", issuance("u-c", None));
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup("a", false, 0).await, Lineage::NotFound);
        assert!(
            matches!(idx.lookup("c", false, 0).await, Lineage::Found(i) if i.actor.as_deref() == Some("u-c"))
        );
    }

    #[tokio::test]
    async fn sessions_end_at_logout_and_expiry_tokens_do_not() {
        let idx = LineageIndex::new(10, None);
        idx.remember("s", issuance("u-1", Some(100)));
        assert!(matches!(idx.lookup("s", true, 99).await, Lineage::Found(_)));
        assert!(matches!(
            idx.lookup("s", true, 100).await,
            Lineage::Ended { why: "expired", .. }
        ));
        // A token keeps its lineage after it expires: who it was issued to does not change.
        assert!(matches!(
            idx.lookup("s", false, 1_000).await,
            Lineage::Found(_)
        ));
        let logout = Uuid::now_v7();
        idx.end("s", logout);
        assert_eq!(
            idx.lookup("s", true, 0).await,
            Lineage::Ended {
                event: logout,
                why: "logout"
            }
        );
    }

    #[tokio::test]
    async fn a_store_miss_is_remembered_briefly_and_an_issuance_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::store::open(&url).await.unwrap();
        let idx = LineageIndex::new(10, Some(store));
        assert_eq!(idx.lookup("fp", false, 0).await, Lineage::NotFound);
        assert_eq!(idx.len(), 1, "the miss is cached");
        idx.remember("fp", issuance("u-1", None));
        assert!(matches!(
            idx.lookup("fp", false, 0).await,
            Lineage::Found(_)
        ));
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let idx = LineageIndex::new(0, None);
        idx.remember("a", issuance("u-a", None));
        assert!(idx.is_empty());
    }
}
