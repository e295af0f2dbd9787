//! Test fixtures go into a store the way the writer puts events there: appended to a hash chain,
//! one transaction per batch, so a trail seeded by a test still passes `verify`.

use async_trait::async_trait;
use authtrail::event::AuditEvent;
use authtrail::store::{Error, EventStore};

/// The chain fixtures are appended to.
pub const FIXTURE_CHAIN: &str = "fixture";

/// `append_fixtures` on every store.
#[async_trait]
pub trait AppendFixtures {
    /// Append `events` to [`FIXTURE_CHAIN`] in one transaction (not durable): events whose id is
    /// already stored are skipped. Returns how many rows were newly written.
    async fn append_fixtures(&self, events: &[AuditEvent]) -> Result<u64, Error>;
}

#[async_trait]
impl<S: EventStore + ?Sized> AppendFixtures for S {
    async fn append_fixtures(&self, events: &[AuditEvent]) -> Result<u64, Error> {
        Ok(self.append(FIXTURE_CHAIN, events, false).await?.inserted)
    }
}
