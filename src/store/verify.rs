//! `verify`: re-check a stored trail against its hash chains and signed checkpoints, and name
//! the first event that was edited, deleted, inserted or reordered. Read-only: it never writes,
//! and it reports through [`Report`] rather than logging event contents.
//!
//! Per chain it walks the links in position order and checks that each body hashes to its
//! link, each link names its predecessor's hash, positions have no holes or repeats, seq order
//! agrees with link order, and the indexed columns agree with the body. Checkpoints must carry a
//! valid signature by a trusted key, and the links they pin must still be there with the same
//! hash, count and time range. Links a purge deleted are bridged only by a trusted checkpoint:
//! a `purge` boundary (the chain starts after it) or a `retention` gap (the walk goes on from the
//! hash it recorded for the gap's last link). What it cannot see: an attacker with write access who recomputes
//! every hash after the newest checkpoint can rewrite that tail undetected; checkpoints (and the
//! log line each one writes) bound that window.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use time::OffsetDateTime;

use super::chain::{canonical_body, link_hash, Checkpoint, CheckpointKind, GENESIS};
use super::{Columns, Error, EventStore, StoredRow};
use crate::event::{unix_millis, AuditEvent};

/// Rows read per page.
const PAGE: u32 = 2_000;
/// Events without a chain link reported at most (the count is still exact up to this).
const MAX_UNCHAINED: u32 = 1_000;

/// What `verify` checks against.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Hex Ed25519 public keys whose checkpoints are trusted. Empty: signatures are checked
    /// against the key each checkpoint names, which proves nothing about who signed it.
    pub trusted_keys: Vec<String>,
    /// Start each chain at its newest checkpoint older than this, instead of its beginning.
    pub since: Option<OffsetDateTime>,
}

/// What kind of damage a problem shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// An event's content or columns changed after it was written.
    Edited,
    /// Links are missing from the middle of a chain.
    Deleted,
    /// A row that the writer did not write: a repeated position, a broken link, no link at all.
    Inserted,
    /// Seq order disagrees with link order.
    Reordered,
    /// The chain ends before a link a checkpoint pinned.
    Truncated,
    /// A checkpoint is unreadable, forged, untrusted, or disagrees with the chain.
    Checkpoint,
    /// A stored body is not an event any more.
    Unreadable,
}

/// One finding, naming the event (by id, chain position and seq) where one is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub chain: Option<String>,
    pub n: Option<i64>,
    /// The event the problem is found at.
    pub event: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub chains: usize,
    /// Events checked (chained and not).
    pub events: u64,
    pub checkpoints: usize,
    /// In the order found: per chain, in link order.
    pub problems: Vec<Problem>,
    /// Not failures, but worth saying (e.g. no trusted key configured).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as `verify` prints it: a summary line, then each problem and warning.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}: {} chains, {} events, {} checkpoints",
            if self.ok() { "ok" } else { "FAILED" },
            self.chains,
            self.events,
            self.checkpoints
        );
        if !self.ok() {
            out.push_str(&format!(", {} problems", self.problems.len()));
        }
        out.push('\n');
        for p in &self.problems {
            out.push_str("  ");
            out.push_str(&p.message);
            out.push('\n');
        }
        for w in &self.warnings {
            out.push_str("  warning: ");
            out.push_str(w);
            out.push('\n');
        }
        out
    }
}

fn describe(id: &str, chain: &str, n: i64, seq: i64) -> String {
    format!("event {id} (chain \"{chain}\" #{n}, seq {seq})")
}

/// Running count and time range of one checkpoint's segment during the walk.
struct Tally {
    cp: Checkpoint,
    count: i64,
    min: Option<i64>,
    max: Option<i64>,
    /// Every link of the segment was walked (none purged or skipped by `since`).
    whole: bool,
    head_seen: Option<String>,
}

/// Check every chain and checkpoint in `store`.
pub async fn verify(store: &dyn EventStore, opts: &Options) -> Result<Report, Error> {
    let mut report = Report::default();
    if opts.trusted_keys.is_empty() {
        report.warnings.push(
            "no trusted checkpoint key configured (store.checkpoint): signatures are checked \
             against the key each checkpoint names, which does not prove who signed it"
                .to_string(),
        );
    }
    let trusted: BTreeSet<String> = opts
        .trusted_keys
        .iter()
        .map(|k| k.trim().to_ascii_lowercase())
        .collect();

    // Checkpoints, by chain, trusted ones only.
    let mut by_chain: BTreeMap<String, Vec<Checkpoint>> = BTreeMap::new();
    for (row_id, body) in store.checkpoints().await? {
        report.checkpoints += 1;
        let cp: Checkpoint = match serde_json::from_str(&body) {
            Ok(cp) => cp,
            Err(e) => {
                report.problems.push(Problem {
                    kind: ProblemKind::Checkpoint,
                    chain: None,
                    n: None,
                    event: None,
                    message: format!("checkpoint row {row_id} is unreadable: {e}"),
                });
                continue;
            }
        };
        let name = format!(
            "{} checkpoint row {row_id} (chain \"{}\" #{})",
            cp.kind.as_str(),
            cp.instance,
            cp.to_n
        );
        let problem = if !cp.signature_valid() {
            Some(format!(
                "{name} has an invalid signature: it was edited or forged"
            ))
        } else if !trusted.is_empty() && !trusted.contains(&cp.public_key) {
            Some(format!(
                "{name} is signed by an untrusted key {}",
                cp.public_key
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            report.problems.push(Problem {
                kind: ProblemKind::Checkpoint,
                chain: Some(cp.instance.clone()),
                n: Some(cp.to_n),
                event: Some(cp.head_id.clone()),
                message,
            });
            continue;
        }
        by_chain.entry(cp.instance.clone()).or_default().push(cp);
    }

    let mut chains: BTreeSet<String> = store.chains().await?.into_iter().collect();
    chains.extend(by_chain.keys().cloned());
    report.chains = chains.len();
    for chain in &chains {
        let cps = by_chain.remove(chain).unwrap_or_default();
        verify_chain(store, chain, cps, opts.since, &mut report).await?;
    }

    let unchained = store.unchained_rows(MAX_UNCHAINED + 1).await?;
    for row in unchained.iter().take(MAX_UNCHAINED as usize) {
        report.events += 1;
        report.problems.push(Problem {
            kind: ProblemKind::Inserted,
            chain: None,
            n: None,
            event: Some(row.columns.id.clone()),
            message: format!(
                "event {} (seq {}) has no chain link: it was inserted outside the writer",
                row.columns.id, row.seq
            ),
        });
    }
    if unchained.len() > MAX_UNCHAINED as usize {
        report.warnings.push(format!(
            "more than {MAX_UNCHAINED} events without a chain link; only the first are listed"
        ));
    }
    Ok(report)
}

async fn verify_chain(
    store: &dyn EventStore,
    chain: &str,
    mut cps: Vec<Checkpoint>,
    since: Option<OffsetDateTime>,
    report: &mut Report,
) -> Result<(), Error> {
    cps.sort_by_key(|c| (c.to_n, c.from_n));
    let problem = |kind, n, event: Option<&str>, message: String| Problem {
        kind,
        chain: Some(chain.to_string()),
        n,
        event: event.map(str::to_string),
        message,
    };

    // Runs of links a retention purge deleted from inside the chain, by their last position:
    // (first position - 1, hash of the last link, when the purge happened).
    let gaps: BTreeMap<i64, (i64, String, i64)> = cps
        .iter()
        .filter(|c| c.kind == CheckpointKind::Retention)
        .flat_map(|c| {
            c.gaps
                .iter()
                .map(|g| (g.to_n, (g.from_n, g.hash.clone(), c.created_ms)))
        })
        .collect();

    // Where the stored chain starts: after the newest purge boundary, or at its beginning.
    let boundary = cps
        .iter()
        .filter(|c| c.kind == CheckpointKind::Purge)
        .max_by_key(|c| c.to_n);
    let (mut start_n, mut start_hash) = boundary
        .map(|b| (b.to_n, b.head_hash.clone()))
        .unwrap_or((0, GENESIS.to_string()));
    if let Some(since) = since {
        let since_ms = unix_millis(since);
        if let Some(cp) = cps
            .iter()
            .filter(|c| c.kind != CheckpointKind::Retention)
            .filter(|c| c.to_n > start_n && c.last_time_ms.is_some_and(|t| t < since_ms))
            .max_by_key(|c| c.to_n)
        {
            start_n = cp.to_n;
            start_hash = cp.head_hash.clone();
        }
    }

    // Periodic and shutdown checkpoints are checked against the walk. Their counts only when no
    // link of their segment was purged after they were signed.
    let mut tallies: Vec<Tally> = cps
        .iter()
        .filter(|c| !matches!(c.kind, CheckpointKind::Purge | CheckpointKind::Retention))
        .map(|c| Tally {
            cp: c.clone(),
            count: 0,
            min: None,
            max: None,
            whole: c.from_n >= start_n
                && !gaps.iter().any(|(to, (from, _, created))| {
                    *created >= c.created_ms && *from < c.to_n && *to > c.from_n
                }),
            head_seen: None,
        })
        .collect();

    let mut expected = start_n + 1;
    let mut prev_hash = start_hash;
    let mut prev: Option<(i64, String)> = None; // (seq, id) of the previous link
    let mut last_n = start_n;
    let mut after = start_n;
    loop {
        let rows = store.chain_rows(chain, after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.columns.chain_n.unwrap_or(after);
        for row in &rows {
            report.events += 1;
            let n = row.columns.chain_n.unwrap_or(0);
            let id = row.columns.id.as_str();
            let who = describe(id, chain, n, row.seq);

            let event: AuditEvent = match serde_json::from_str(&row.body) {
                Ok(e) => e,
                Err(e) => {
                    report.problems.push(problem(
                        ProblemKind::Unreadable,
                        Some(n),
                        Some(id),
                        format!("{who} is unreadable: {e}"),
                    ));
                    continue;
                }
            };
            if let Some((col, stored, body)) = row.columns.first_difference(&Columns::of(&event)) {
                report.problems.push(problem(
                    ProblemKind::Edited,
                    Some(n),
                    Some(id),
                    format!("{who} was edited: column {col} holds {stored}, its body says {body}"),
                ));
            }
            let Some(link) = event.chain.as_ref() else {
                report.problems.push(problem(
                    ProblemKind::Edited,
                    Some(n),
                    Some(id),
                    format!("{who} was edited: its body lost its chain link"),
                ));
                continue;
            };
            let content_ok = canonical_body(&row.body)
                .map(|c| link_hash(chain, n, &link.prev_hash, &c) == link.hash)
                .unwrap_or(false);
            if !content_ok {
                report.problems.push(problem(
                    ProblemKind::Edited,
                    Some(n),
                    Some(id),
                    format!("{who} was edited: its content does not match its hash"),
                ));
            }

            // Links a retention purge deleted: go on from the hash it recorded for the last one.
            while n > expected {
                match gap_at(&gaps, expected) {
                    Some((to, hash)) if to < n => {
                        expected = to + 1;
                        prev_hash = hash.to_string();
                    }
                    _ => break,
                }
            }
            if n < expected {
                let holder = prev.as_ref().map_or("another event", |(_, id)| id.as_str());
                report.problems.push(problem(
                    ProblemKind::Inserted,
                    Some(n),
                    Some(id),
                    format!("{who} was inserted: position #{n} is already held by {holder}"),
                ));
                continue;
            }
            if n > expected {
                let missing = if n == expected + 1 {
                    format!("#{expected} is missing")
                } else {
                    format!("#{expected}..#{} are missing", n - 1)
                };
                report.problems.push(problem(
                    ProblemKind::Deleted,
                    Some(expected),
                    Some(id),
                    format!(
                        "chain \"{chain}\": {missing} (deleted): {who} follows #{}",
                        expected - 1
                    ),
                ));
            } else if link.prev_hash != prev_hash {
                report.problems.push(problem(
                    ProblemKind::Inserted,
                    Some(n),
                    Some(id),
                    format!(
                        "{who} does not link to #{}: the event before it was replaced, or this one \
                         was inserted",
                        n - 1
                    ),
                ));
            }
            if let Some((prev_seq, prev_id)) = &prev {
                if row.seq < *prev_seq {
                    report.problems.push(problem(
                        ProblemKind::Reordered,
                        Some(n),
                        Some(id),
                        format!(
                            "{who} is out of order: it is stored before #{} (event {prev_id}, \
                             seq {prev_seq})",
                            n - 1
                        ),
                    ));
                }
            }

            for t in tallies.iter_mut() {
                if n > t.cp.from_n && n <= t.cp.to_n {
                    t.count += 1;
                    t.min = Some(
                        t.min
                            .map_or(row.columns.time_ms, |m| m.min(row.columns.time_ms)),
                    );
                    t.max = Some(
                        t.max
                            .map_or(row.columns.time_ms, |m| m.max(row.columns.time_ms)),
                    );
                    if n == t.cp.to_n {
                        t.head_seen = Some(link.hash.clone());
                    }
                }
            }
            expected = n + 1;
            prev_hash = link.hash.clone();
            prev = Some((row.seq, id.to_string()));
            last_n = n;
        }
    }

    // A purged tail: the chain's last links were deleted by retention.
    while let Some((to, _)) = gap_at(&gaps, expected) {
        expected = to + 1;
        last_n = to;
    }

    // Checkpoints against what was walked.
    let mut truncated = false;
    for t in &tallies {
        let cp = &t.cp;
        let name = format!(
            "{} checkpoint of chain \"{chain}\" at #{}",
            cp.kind.as_str(),
            cp.to_n
        );
        if cp.to_n <= start_n {
            continue;
        }
        if cp.to_n > last_n {
            if !truncated {
                truncated = true;
                let top = tallies.iter().map(|t| t.cp.to_n).max().unwrap_or(cp.to_n);
                report.problems.push(problem(
                    ProblemKind::Truncated,
                    Some(last_n + 1),
                    Some(&cp.head_id),
                    format!(
                        "chain \"{chain}\" was truncated: it ends at #{last_n}, but a {name} \
                         pinned event {} there; #{}..#{top} are missing",
                        cp.head_id,
                        last_n + 1
                    ),
                ));
            }
            continue;
        }
        match &t.head_seen {
            // The pinned link was purged by retention: the purge's own checkpoint stands for it.
            None if gap_at(&gaps, cp.to_n).is_some() => {}
            Some(h) if *h == cp.head_hash => {}
            Some(_) => report.problems.push(problem(
                ProblemKind::Checkpoint,
                Some(cp.to_n),
                Some(&cp.head_id),
                format!(
                    "{name} pinned another hash for event {}: the chain up to it was rewritten",
                    cp.head_id
                ),
            )),
            None => report.problems.push(problem(
                ProblemKind::Deleted,
                Some(cp.to_n),
                Some(&cp.head_id),
                format!("{name}: the event it pinned ({}) is missing", cp.head_id),
            )),
        }
        if t.whole && (t.count, t.min, t.max) != (cp.count, cp.first_time_ms, cp.last_time_ms) {
            report.problems.push(problem(
                ProblemKind::Checkpoint,
                Some(cp.to_n),
                Some(&cp.head_id),
                format!(
                    "{name} counted {} events from #{} to #{} (times {:?}..{:?}); the store has {} \
                     ({:?}..{:?})",
                    cp.count,
                    cp.from_n + 1,
                    cp.to_n,
                    cp.first_time_ms,
                    cp.last_time_ms,
                    t.count,
                    t.min,
                    t.max
                ),
            ));
        }
    }
    Ok(())
}

/// The retention gap holding position `n`: its last position and the hash of that link.
fn gap_at(gaps: &BTreeMap<i64, (i64, String, i64)>, n: i64) -> Option<(i64, &str)> {
    gaps.range(n..)
        .next()
        .filter(|(_, (from, _, _))| *from < n)
        .map(|(to, (_, hash, _))| (*to, hash.as_str()))
}

/// Rows of a chain for tests and tools that want to look at what `verify` reads.
pub async fn all_chain_rows(store: &dyn EventStore, chain: &str) -> Result<Vec<StoredRow>, Error> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let rows = store.chain_rows(chain, after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.columns.chain_n.unwrap_or(after);
        out.extend(rows);
    }
    Ok(out)
}
