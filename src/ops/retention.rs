//! Retention: how long events are kept, per event type and app, with a default and a legal hold
//! per app, and the purge that enforces it — a background task on the sidecar, or
//! `authtrail purge` (which can also only show what would go).
//!
//! A purge walks each hash chain in position order (pages of [`SCAN_PAGE`] links), picks the
//! links its policy says are due, and hands them to the store in batches of `batch`
//! ([`EventStore::purge_links`]), one transaction each. The store seals every batch with a signed
//! checkpoint: a run that continues the chain's purged prefix moves the `purge` boundary, any
//! other run becomes a gap of a `retention` checkpoint recording the hash of its last link, so
//! `verify` bridges it and still checks every link that remains. A link whose content no longer
//! matches its hash is never purged (that would launder tampering): it stays for `verify` to
//! report. A walk stops at the first page in which every event is younger than the longest keep,
//! so a run reads little more than what it deletes (and what a legal hold or a longer rule keeps).
//! Events without a chain link (never written by a sidecar) are not touched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::event::{self, Actor, ActorKind, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage};
use crate::pipeline::tap::type_matches;
use crate::pipeline::Pipeline;
use crate::store::chain::{canonical_body, link_hash};
use crate::store::{self, EventStore, PurgeLink, Signer, StoredRow, TypeFilter};

/// Links read per page of a chain walk.
pub const SCAN_PAGE: u32 = 2_000;
/// The longest the first run waits after start.
const FIRST_RUN_MAX: Duration = Duration::from_secs(30);

/// How long an event is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Forever,
    For(Duration),
}

impl Keep {
    /// `400d`, `12h`, ... or `forever`.
    pub fn parse(s: &str) -> Result<Keep, String> {
        if s.trim() == "forever" {
            return Ok(Keep::Forever);
        }
        crate::units::parse_duration(s).map(Keep::For).map_err(|_| {
            format!("invalid keep \"{s}\": expected a duration such as 90d, or forever")
        })
    }

    /// Events older than this (Unix ms) are due at `now_ms`; `None` for forever.
    fn cutoff(self, now_ms: i64) -> Option<i64> {
        match self {
            Keep::Forever => None,
            Keep::For(d) => {
                Some(now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
            }
        }
    }
}

/// One `retention.rules` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Any type when `None`.
    pub event_type: Option<TypeFilter>,
    /// Any app (or none) when `None`.
    pub app: Option<String>,
    pub keep: Keep,
}

/// A checked `retention:` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// For events no rule matches.
    pub default: Keep,
    /// The first that matches an event decides.
    pub rules: Vec<Rule>,
    /// Apps never purged.
    pub legal_hold: Vec<String>,
    /// Between two background runs.
    pub interval: Duration,
    /// Most links deleted in one transaction.
    pub batch: usize,
}

impl Policy {
    /// How long an event of `event_type` and `app` is kept.
    pub fn keep(&self, event_type: &str, app: Option<&str>) -> Keep {
        if app.is_some_and(|a| self.legal_hold.iter().any(|h| h == a)) {
            return Keep::Forever;
        }
        self.rules
            .iter()
            .find(|r| {
                r.event_type
                    .as_ref()
                    .is_none_or(|t| type_matches(t, event_type))
                    && r.app.as_deref().is_none_or(|a| Some(a) == app)
            })
            .map_or(self.default, |r| r.keep)
    }

    /// Whether an event is due for purging at `now_ms`.
    pub fn due(&self, event_type: &str, app: Option<&str>, time_ms: i64, now_ms: i64) -> bool {
        self.keep(event_type, app)
            .cutoff(now_ms)
            .is_some_and(|c| time_ms < c)
    }

    /// The latest cutoff of any rule or the default: nothing at or after it is ever due.
    fn max_cutoff(&self, now_ms: i64) -> Option<i64> {
        self.rules
            .iter()
            .map(|r| r.keep)
            .chain([self.default])
            .filter_map(|k| k.cutoff(now_ms))
            .max()
    }
}

/// Events purged (or, in a dry run, due) of one app and type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: u64,
    /// Unix milliseconds.
    pub oldest_ms: i64,
    pub newest_ms: i64,
}

/// What one purge run did (or would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Events deleted (0 in a dry run).
    pub deleted: u64,
    /// Events due, by (app, type).
    pub due: BTreeMap<(Option<String>, String), Tally>,
    /// Chains that lost links.
    pub chains: usize,
    /// Signed checkpoints written.
    pub checkpoints: usize,
    /// Due links kept because their content no longer matches their hash.
    pub tampered: u64,
    /// Partitions dropped whole (every event in them due).
    pub partitions: u64,
}

impl Summary {
    pub fn due_total(&self) -> u64 {
        self.due.values().map(|t| t.count).sum()
    }
}

/// Whether a stored link still hashes to what it claims.
fn link_intact(chain: &str, row: &StoredRow) -> bool {
    let Ok(body) = serde_json::from_str::<Value>(&row.body) else {
        return false;
    };
    let (Some(prev), Some(hash), Some(n)) = (
        body.pointer("/chain/prev_hash").and_then(Value::as_str),
        body.pointer("/chain/hash").and_then(Value::as_str),
        row.columns.chain_n,
    ) else {
        return false;
    };
    row.columns.chain_hash.as_deref() == Some(hash)
        && canonical_body(&row.body).is_ok_and(|c| link_hash(chain, n, prev, &c) == hash)
}

/// Purge what `policy` says is due at `now` (or, with `dry_run` or without a `signer`, only
/// count it). Stops at the first store error, with what it did so far in the error's summary.
pub async fn purge(
    store: &dyn EventStore,
    policy: &Policy,
    signer: Option<&Signer>,
    now: OffsetDateTime,
    dry_run: bool,
) -> Result<Summary, (store::Error, Summary)> {
    let now_ms = event::unix_millis(now);
    let mut summary = Summary::default();
    let Some(max_cutoff) = policy.max_cutoff(now_ms) else {
        return Ok(summary);
    };
    let signer = if dry_run { None } else { signer };
    let mut touched_chains: BTreeSet<String> = BTreeSet::new();
    if let Some(signer) = signer {
        drop_due_partitions(
            store,
            policy,
            signer,
            now_ms,
            max_cutoff,
            &mut summary,
            &mut touched_chains,
        )
        .await?;
    }
    let chains = match store.chains().await {
        Ok(c) => c,
        Err(e) => return Err((e, summary)),
    };
    for chain in chains {
        let mut pending: Vec<PurgeLink> = Vec::new();
        let mut touched = false;
        let mut after = 0;
        loop {
            let rows = match store.chain_rows(&chain, after, SCAN_PAGE).await {
                Ok(r) => r,
                Err(e) => return Err((e, summary)),
            };
            let Some(last) = rows.last() else { break };
            after = last.columns.chain_n.unwrap_or(after);
            let mut any_old = false;
            for row in &rows {
                let c = &row.columns;
                any_old |= c.time_ms < max_cutoff;
                if !policy.due(&c.event_type, c.app.as_deref(), c.time_ms, now_ms) {
                    continue;
                }
                if !link_intact(&chain, row) {
                    summary.tampered += 1;
                    tracing::warn!(chain = %chain, n = c.chain_n, event_id = %c.id, "retention kept an event whose content does not match its hash (see verify)");
                    continue;
                }
                tally(&mut summary.due, c);
                if let Some(signer) = signer {
                    pending.push(PurgeLink {
                        n: c.chain_n.unwrap_or(0),
                        id: c.id.clone(),
                        hash: c.chain_hash.clone().unwrap_or_default(),
                        time_ms: c.time_ms,
                    });
                    if pending.len() >= policy.batch.max(1) {
                        flush(
                            store,
                            &chain,
                            &mut pending,
                            signer,
                            &mut summary,
                            &mut touched,
                        )
                        .await?;
                    }
                }
            }
            // Within a chain, event times follow link order (to within request durations and
            // spool replays): a page with nothing older than the longest keep ends the walk.
            if !any_old {
                break;
            }
        }
        if let Some(signer) = signer {
            flush(
                store,
                &chain,
                &mut pending,
                signer,
                &mut summary,
                &mut touched,
            )
            .await?;
        }
        if touched {
            touched_chains.insert(chain);
        }
        summary.chains = touched_chains.len();
    }
    summary.chains = touched_chains.len();
    Ok(summary)
}

/// Drop each partition of the store in which every event is due, linked and intact: one
/// `DROP TABLE` instead of a delete per event, sealed by the same signed checkpoints. A
/// partition with anything else (an event kept by a longer rule or a legal hold, one without a
/// link, one whose content no longer matches its hash) is left to the walk, which purges what is
/// due in it event by event; so is one the store refuses to drop (an event of that day stored
/// since it was read).
async fn drop_due_partitions(
    store: &dyn EventStore,
    policy: &Policy,
    signer: &Signer,
    now_ms: i64,
    max_cutoff: i64,
    summary: &mut Summary,
    touched_chains: &mut BTreeSet<String>,
) -> Result<(), (store::Error, Summary)> {
    let parts = match store.partitions().await {
        Ok(p) => p,
        Err(e) => return Err((e, summary.clone())),
    };
    // Every event of a partition is older than its end: past the latest cutoff, none is due.
    for part in parts.iter().filter(|p| p.to_ms <= max_cutoff) {
        let mut links: BTreeMap<String, Vec<PurgeLink>> = BTreeMap::new();
        let mut due: BTreeMap<(Option<String>, String), Tally> = BTreeMap::new();
        let mut after = i64::MIN;
        let whole = 'rows: loop {
            let rows = match store.partition_rows(&part.name, after, SCAN_PAGE).await {
                Ok(r) => r,
                Err(e) => return Err((e, summary.clone())),
            };
            let Some(last) = rows.last() else {
                break 'rows true;
            };
            after = last.seq;
            for row in &rows {
                let c = &row.columns;
                let Some(chain) = c.chain_instance.as_deref() else {
                    break 'rows false;
                };
                if !policy.due(&c.event_type, c.app.as_deref(), c.time_ms, now_ms)
                    || !link_intact(chain, row)
                {
                    break 'rows false;
                }
                links.entry(chain.to_string()).or_default().push(PurgeLink {
                    n: c.chain_n.unwrap_or(0),
                    id: c.id.clone(),
                    hash: c.chain_hash.clone().unwrap_or_default(),
                    time_ms: c.time_ms,
                });
                tally(&mut due, c);
            }
        };
        if !whole || links.is_empty() {
            continue;
        }
        match store.drop_partition(&part.name, &links, signer).await {
            Ok(report) => {
                summary.deleted += report.deleted;
                summary.checkpoints += report.boundaries.len();
                summary.partitions += 1;
                for (key, t) in due {
                    let into = summary.due.entry(key).or_insert(Tally {
                        count: 0,
                        oldest_ms: t.oldest_ms,
                        newest_ms: t.newest_ms,
                    });
                    into.count += t.count;
                    into.oldest_ms = into.oldest_ms.min(t.oldest_ms);
                    into.newest_ms = into.newest_ms.max(t.newest_ms);
                }
                touched_chains.extend(links.into_keys());
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!(partition = %part.name, error = %e, "retention: partition not dropped whole; its due events are purged one by one");
            }
        }
    }
    Ok(())
}

/// Count a due event of `c`'s app and type.
fn tally(due: &mut BTreeMap<(Option<String>, String), Tally>, c: &store::Columns) {
    let t = due
        .entry((c.app.clone(), c.event_type.clone()))
        .or_insert(Tally {
            count: 0,
            oldest_ms: c.time_ms,
            newest_ms: c.time_ms,
        });
    t.count += 1;
    t.oldest_ms = t.oldest_ms.min(c.time_ms);
    t.newest_ms = t.newest_ms.max(c.time_ms);
}

async fn flush(
    store: &dyn EventStore,
    chain: &str,
    pending: &mut Vec<PurgeLink>,
    signer: &Signer,
    summary: &mut Summary,
    touched: &mut bool,
) -> Result<(), (store::Error, Summary)> {
    if pending.is_empty() {
        return Ok(());
    }
    match store.purge_links(chain, pending, signer).await {
        Ok(report) => {
            summary.deleted += report.deleted;
            summary.checkpoints += report.boundaries.len();
            *touched = true;
            pending.clear();
            // Give the writer the store between batches.
            tokio::task::yield_now().await;
            Ok(())
        }
        Err(e) => Err((e, summary.clone())),
    }
}

/// The `audit.purge` event of a run (`error`: why it stopped early).
pub fn purge_event(summary: &Summary, policy: &Policy, error: Option<&str>) -> AuditEvent {
    let mut details = Map::new();
    details.insert("deleted".into(), summary.deleted.into());
    details.insert("chains".into(), summary.chains.into());
    details.insert("checkpoints".into(), summary.checkpoints.into());
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    for ((_, t), tally) in &summary.due {
        *by_type.entry(t).or_default() += tally.count;
    }
    details.insert(
        "by_type".into(),
        serde_json::to_value(&by_type).unwrap_or(Value::Null),
    );
    if let Some(oldest) = summary.due.values().map(|t| t.oldest_ms).min() {
        details.insert("oldest_ms".into(), oldest.into());
    }
    if let Some(newest) = summary.due.values().map(|t| t.newest_ms).max() {
        details.insert("newest_ms".into(), newest.into());
    }
    if !policy.legal_hold.is_empty() {
        details.insert("legal_hold".into(), policy.legal_hold.clone().into());
    }
    if summary.tampered > 0 {
        details.insert("kept_tampered".into(), summary.tampered.into());
    }
    if summary.partitions > 0 {
        details.insert("partitions_dropped".into(), summary.partitions.into());
    }
    AuditEvent {
        id: Uuid::now_v7(),
        seq: None,
        time: event::now_millis(),
        event_type: "audit.purge".to_string(),
        stage: Stage::Completed,
        outcome: if error.is_some() {
            Outcome::Error
        } else {
            Outcome::Success
        },
        reason: error.map(|_| "store_error".to_string()),
        app: None,
        actor: Actor {
            id: Some("authtrail".to_string()),
            kind: ActorKind::Service,
            display: None,
            verified: true,
            source: Some("retention".to_string()),
        },
        app_conflict: None,
        target: None,
        tokens: Vec::new(),
        source: ClientInfo {
            ip: None,
            user_agent: None,
        },
        http: HttpInfo {
            method: String::new(),
            path: String::new(),
            route: "retention".to_string(),
            status: None,
            duration_ms: 0,
            request_id: Uuid::now_v7().simple().to_string(),
            body_truncated: false,
        },
        details,
        chain: None,
    }
}

/// What the background purge did, for the metrics.
#[derive(Debug, Default)]
pub struct RetentionStats {
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub purged: AtomicU64,
    /// Unix milliseconds of the last finished run (0: none yet).
    pub last_run_ms: AtomicI64,
}

/// The background purge: a first run soon after start, then every `policy.interval`, until
/// `stop` turns true. Each run that deletes something (or fails) records an `audit.purge` event.
pub fn spawn(
    store: Arc<dyn EventStore>,
    policy: Policy,
    signer: Signer,
    pipeline: Pipeline,
    stats: Arc<RetentionStats>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = policy.interval.min(FIRST_RUN_MAX);
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            wait = policy.interval;
            let now = OffsetDateTime::now_utc();
            let result = tokio::select! {
                r = purge(store.as_ref(), &policy, Some(&signer), now, false) => r,
                _ = stop.changed() => return,
            };
            stats.runs.fetch_add(1, Ordering::Relaxed);
            stats
                .last_run_ms
                .store(event::unix_millis(now), Ordering::Relaxed);
            match result {
                Ok(summary) => {
                    stats.purged.fetch_add(summary.deleted, Ordering::Relaxed);
                    if summary.deleted > 0 {
                        tracing::info!(
                            deleted = summary.deleted,
                            chains = summary.chains,
                            checkpoints = summary.checkpoints,
                            "retention purge"
                        );
                        pipeline.submit(purge_event(&summary, &policy, None));
                    } else {
                        tracing::debug!("retention purge: nothing due");
                    }
                }
                Err((e, summary)) => {
                    stats.purged.fetch_add(summary.deleted, Ordering::Relaxed);
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, deleted = summary.deleted, "retention purge stopped early; the next run goes on");
                    pipeline.submit(purge_event(&summary, &policy, Some(&e.to_string())));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            default: Keep::For(Duration::from_secs(400 * 86_400)),
            rules: vec![
                Rule {
                    event_type: Some(TypeFilter::Exact("auth.login".into())),
                    app: Some("app-a".into()),
                    keep: Keep::For(Duration::from_secs(7 * 86_400)),
                },
                Rule {
                    event_type: Some(TypeFilter::Prefix("auth.".into())),
                    app: None,
                    keep: Keep::For(Duration::from_secs(90 * 86_400)),
                },
                Rule {
                    event_type: Some(TypeFilter::Exact("account.delete".into())),
                    app: None,
                    keep: Keep::Forever,
                },
            ],
            legal_hold: vec!["app-x".into()],
            interval: Duration::from_secs(3600),
            batch: 1000,
        }
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn first_matching_rule_decides_then_the_default() {
        let p = policy();
        let now = 1_000 * DAY;
        assert!(p.due("auth.login", Some("app-a"), now - 8 * DAY, now));
        assert!(!p.due("auth.login", Some("app-b"), now - 8 * DAY, now));
        assert!(p.due("auth.login", Some("app-b"), now - 91 * DAY, now));
        assert!(p.due("auth.logout", None, now - 91 * DAY, now));
        assert!(!p.due("token.refresh", None, now - 91 * DAY, now));
        assert!(p.due("token.refresh", None, now - 401 * DAY, now));
        assert!(!p.due("account.delete", None, now - 900 * DAY, now));
    }

    #[test]
    fn legal_hold_beats_every_rule() {
        let p = policy();
        let now = 1_000 * DAY;
        assert!(!p.due("auth.login", Some("app-x"), 0, now));
        assert_eq!(p.keep("token.refresh", Some("app-x")), Keep::Forever);
    }

    #[test]
    fn keep_parses_durations_and_forever() {
        assert_eq!(Keep::parse("forever").unwrap(), Keep::Forever);
        assert_eq!(
            Keep::parse("90d").unwrap(),
            Keep::For(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(
            Keep::parse("soon").unwrap_err(),
            "invalid keep \"soon\": expected a duration such as 90d, or forever"
        );
    }

    #[test]
    fn max_cutoff_is_the_shortest_keep() {
        let p = policy();
        assert_eq!(p.max_cutoff(1_000 * DAY), Some(993 * DAY));
        let forever = Policy {
            default: Keep::Forever,
            rules: vec![],
            ..policy()
        };
        assert_eq!(forever.max_cutoff(1_000 * DAY), None);
    }
}
