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
//!
//! Cutting the tail together with the checkpoints after it: each chain's checkpoints are numbered
//! and linked (`checkpoint_n`, `prev_checkpoint`), so a deleted one in the middle is a gap; the
//! writer signs one at least every `checkpoint.interval`, so with `max_checkpoint_age` a newest
//! checkpoint older than that is reported; and with a `witness` (checkpoints published outside
//! the store) every witnessed checkpoint must still be stored and its chain reach what it pinned.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use time::OffsetDateTime;

use super::chain::{canonical_body, link_hash, Checkpoint, CheckpointKind, GENESIS};
use super::{Columns, Error, EventStore, StoredRow};
use crate::event::{unix_millis, AuditEvent, ChainLink};

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
    /// Each chain's newest trusted checkpoint must be younger than this (the writer signs one at
    /// least every `checkpoint.interval`); `None`: not checked.
    pub max_checkpoint_age: Option<std::time::Duration>,
    /// What "now" is for `max_checkpoint_age`; `None`: the clock.
    pub now: Option<OffsetDateTime>,
    /// Checkpoints published outside the store (a witness file, a sink's output): each must be
    /// stored, and its chain must reach the link it pinned.
    pub witness: Option<Witness>,
}

/// Checkpoints read from a witness file, with the line each came from.
#[derive(Clone, Debug, Default)]
pub struct Witness {
    /// The file, for messages.
    pub source: String,
    pub checkpoints: Vec<(usize, Checkpoint)>,
    /// Lines that could not be read (a torn last line after a crash, say).
    pub unreadable: Vec<(usize, String)>,
}

impl Witness {
    /// Read `text` (JSON lines): checkpoint records are kept, other JSON lines (events, when the
    /// file is a sink's output) skipped, anything else listed as unreadable.
    pub fn parse(source: &str, text: &str) -> Witness {
        let mut w = Witness {
            source: source.to_string(),
            ..Witness::default()
        };
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => match Checkpoint::from_record(&v) {
                    Some(Ok(cp)) => w.checkpoints.push((line_no, cp)),
                    Some(Err(e)) => w.unreadable.push((line_no, e.to_string())),
                    None => {}
                },
                Err(e) => w.unreadable.push((line_no, e.to_string())),
            }
        }
        w
    }

    /// Read the witness file at `path`.
    pub fn read(path: &std::path::Path) -> std::io::Result<Witness> {
        let text = std::fs::read_to_string(path)?;
        Ok(Witness::parse(&path.display().to_string(), &text))
    }
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
    /// A chain's newest checkpoint is older than `max_checkpoint_age` (or it has none): its tail
    /// may have been cut together with the checkpoints after it.
    Stale,
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
    let problem_of = |kind, cp: &Checkpoint, message: String| Problem {
        kind,
        chain: Some(cp.instance.clone()),
        n: Some(cp.to_n),
        event: Some(cp.head_id.clone()).filter(|id| !id.is_empty()),
        message,
    };
    let trust = |cp: &Checkpoint| -> Option<String> {
        if !cp.signature_valid() {
            Some("has an invalid signature: it was edited or forged".to_string())
        } else if !trusted.is_empty() && !trusted.contains(&cp.public_key) {
            Some(format!("is signed by an untrusted key {}", cp.public_key))
        } else {
            None
        }
    };

    // Checkpoints, by chain, trusted ones only; every readable one (trusted or not) for the
    // numbering and the witness.
    let mut by_chain: BTreeMap<String, Vec<Checkpoint>> = BTreeMap::new();
    let mut readable: BTreeMap<String, Vec<(Checkpoint, bool)>> = BTreeMap::new();
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
        let why = trust(&cp);
        readable
            .entry(cp.instance.clone())
            .or_default()
            .push((cp.clone(), why.is_none()));
        if let Some(why) = why {
            report.problems.push(Problem {
                kind: ProblemKind::Checkpoint,
                chain: Some(cp.instance.clone()),
                n: Some(cp.to_n),
                event: Some(cp.head_id.clone()),
                message: format!("{name} {why}"),
            });
            continue;
        }
        by_chain.entry(cp.instance.clone()).or_default().push(cp);
    }

    // Numbered checkpoints: a hole in a chain's numbers is a deleted checkpoint row.
    for (chain, cps) in &mut readable {
        check_numbering(chain, cps, &mut report);
    }

    let newest: BTreeMap<String, Checkpoint> = by_chain
        .iter()
        .filter_map(|(chain, cps)| {
            // The writer's own when there are any: a purge (possibly run elsewhere) says nothing
            // about the writer's tail. A chain only ever purged is as fresh as its newest purge.
            let writer = |c: &&Checkpoint| {
                matches!(
                    c.kind,
                    CheckpointKind::Periodic | CheckpointKind::Heartbeat | CheckpointKind::Shutdown
                )
            };
            let key = |c: &&Checkpoint| (c.created_ms, c.checkpoint_n);
            let cp = cps
                .iter()
                .filter(writer)
                .max_by_key(key)
                .or_else(|| cps.iter().max_by_key(key))?;
            Some((chain.clone(), cp.clone()))
        })
        .collect();
    let mut chains: BTreeSet<String> = store.chains().await?.into_iter().collect();
    chains.extend(by_chain.keys().cloned());
    if let Some(w) = &opts.witness {
        chains.extend(w.checkpoints.iter().map(|(_, cp)| cp.instance.clone()));
    }
    report.chains = chains.len();
    let mut ends: BTreeMap<String, ChainEnd> = BTreeMap::new();
    for chain in &chains {
        let cps = by_chain.remove(chain).unwrap_or_default();
        let end = verify_chain(store, chain, cps, opts.since, &mut report).await?;
        ends.insert(chain.clone(), end);
    }

    if let Some(max_age) = opts.max_checkpoint_age {
        let now = opts.now.unwrap_or_else(OffsetDateTime::now_utc);
        let now_ms = unix_millis(now);
        let max_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let age = |ms: i64| human(now_ms.saturating_sub(ms));
        for chain in &chains {
            match newest.get(chain) {
                Some(cp) if now_ms.saturating_sub(cp.created_ms) > max_ms => {
                    report.problems.push(problem_of(
                        ProblemKind::Stale,
                        cp,
                        format!(
                            "chain \"{chain}\" is stale: its newest checkpoint, the {}, is {} old, \
                             older than the {} allowed: events and checkpoints after it may have \
                             been cut (or its sidecar has not run since; see --max-checkpoint-age)",
                            cp.describe(),
                            age(cp.created_ms),
                            human(max_ms)
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    let end = &ends[chain];
                    let old = end
                        .newest_time_ms
                        .is_none_or(|t| now_ms.saturating_sub(t) > max_ms);
                    if old {
                        report.problems.push(Problem {
                            kind: ProblemKind::Stale,
                            chain: Some(chain.clone()),
                            n: Some(end.last_n),
                            event: None,
                            message: format!(
                                "chain \"{chain}\" is stale: it has no trusted checkpoint, though \
                                 one is expected every {}: its checkpoints may have been deleted",
                                human(max_ms)
                            ),
                        });
                    }
                }
            }
        }
        if chains.is_empty() {
            report.warnings.push(
                "the trail holds no chain and no checkpoint: a trail deleted whole is only \
                 detected against a witness (--witness)"
                    .to_string(),
            );
        }
    }

    if let Some(w) = &opts.witness {
        check_witness(store, w, &readable, &ends, &trust, &mut report).await?;
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

/// `ms` milliseconds for messages: `90s`, `12m 5s`, `3h 2m`, `2d 4h`.
fn human(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m {}s", s / 60, s % 60),
        7200..=172_799 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Where the walk of one chain ended.
#[derive(Clone, Debug, Default)]
struct ChainEnd {
    /// The newest position walked (or bridged by a purge).
    last_n: i64,
    /// The newest event time walked.
    newest_time_ms: Option<i64>,
}

/// Report holes in a chain's checkpoint numbers, repeats, and links to a previous checkpoint
/// that is not the one stored. `cps`: every readable checkpoint of the chain, with whether it
/// is trusted. Checkpoints signed before numbering (none) are left out.
fn check_numbering(chain: &str, cps: &mut [(Checkpoint, bool)], report: &mut Report) {
    cps.sort_by_key(|(c, _)| (c.checkpoint_n, c.created_ms));
    let mut prev: Option<&(Checkpoint, bool)> = None;
    for entry in cps.iter().filter(|(c, _)| c.checkpoint_n.is_some()) {
        let (cp, ok) = entry;
        let n = cp.checkpoint_n.unwrap_or(0);
        let expected = prev.map_or(1, |(p, _)| p.checkpoint_n.unwrap_or(0) + 1);
        let problem = |kind, message| Problem {
            kind,
            chain: Some(chain.to_string()),
            n: Some(cp.to_n),
            event: Some(cp.head_id.clone()).filter(|id| !id.is_empty()),
            message,
        };
        if n > expected {
            let missing = if n == expected + 1 {
                format!("checkpoint #{expected} is")
            } else {
                format!("checkpoints #{expected}..#{} are", n - 1)
            };
            let after = prev.map_or("the chain's start".to_string(), |(p, _)| {
                format!("the {}", p.describe())
            });
            report.problems.push(problem(
                ProblemKind::Deleted,
                format!(
                    "chain \"{chain}\": {missing} missing (deleted): the {} follows {after}",
                    cp.describe()
                ),
            ));
        } else if n < expected {
            report.problems.push(problem(
                ProblemKind::Checkpoint,
                format!(
                    "chain \"{chain}\": two checkpoints are numbered #{n}: the {} was inserted",
                    cp.describe()
                ),
            ));
            continue;
        } else if let Some((p, p_ok)) = prev {
            if *ok && *p_ok && cp.prev_checkpoint.as_deref() != Some(p.digest().as_str()) {
                report.problems.push(problem(
                    ProblemKind::Checkpoint,
                    format!(
                        "chain \"{chain}\": the {} does not link to the {}: a checkpoint between \
                         them was replaced",
                        cp.describe(),
                        p.describe()
                    ),
                ));
            }
        }
        prev = Some(entry);
    }
}

/// Each witnessed checkpoint must be stored as it was published, and its chain must reach the
/// link it pinned with the same hash.
async fn check_witness(
    store: &dyn EventStore,
    w: &Witness,
    readable: &BTreeMap<String, Vec<(Checkpoint, bool)>>,
    ends: &BTreeMap<String, ChainEnd>,
    trust: &dyn Fn(&Checkpoint) -> Option<String>,
    report: &mut Report,
) -> Result<(), Error> {
    let src = &w.source;
    for (line, why) in &w.unreadable {
        report.warnings.push(format!(
            "witness {src} line {line} is unreadable, skipped: {why}"
        ));
    }
    if w.checkpoints.is_empty() {
        report
            .warnings
            .push(format!("witness {src} holds no checkpoint"));
    }
    let stored_by_signature: BTreeMap<(&str, &str), &Checkpoint> = readable
        .values()
        .flatten()
        .map(|(c, _)| ((c.instance.as_str(), c.signature.as_str()), c))
        .collect();
    // The newest witnessed checkpoint per chain that the chain does not reach: one problem each.
    let mut cut: BTreeMap<&str, &Checkpoint> = BTreeMap::new();
    for (line, cp) in &w.checkpoints {
        let chain = cp.instance.as_str();
        let name = format!("{} (witness {src} line {line})", cp.describe());
        let problem = |kind, message| Problem {
            kind,
            chain: Some(chain.to_string()),
            n: Some(cp.to_n),
            event: Some(cp.head_id.clone()).filter(|id| !id.is_empty()),
            message,
        };
        if let Some(why) = trust(cp) {
            report.problems.push(problem(
                ProblemKind::Checkpoint,
                format!("the witnessed {name} {why}"),
            ));
            continue;
        }
        let stored = stored_by_signature
            .get(&(chain, cp.signature.as_str()))
            .is_some_and(|c| *c == cp);
        if !stored {
            report.problems.push(problem(
                ProblemKind::Deleted,
                format!("the witnessed {name} is not in the store: it was deleted or replaced"),
            ));
        }
        let last_n = ends.get(chain).map_or(0, |e| e.last_n);
        if cp.to_n > last_n {
            let newest = cut.entry(chain).or_insert(cp);
            if cp.to_n > newest.to_n {
                *newest = cp;
            }
            continue;
        }
        if cp.to_n == 0 {
            continue;
        }
        // The pinned link, when it is still stored (a purge may have deleted it: the walk
        // checked that it was bridged).
        let rows = store.chain_rows(chain, cp.to_n - 1, 1).await?;
        let Some(row) = rows.first().filter(|r| r.columns.chain_n == Some(cp.to_n)) else {
            continue;
        };
        if row.columns.chain_hash.as_deref() != Some(cp.head_hash.as_str()) {
            report.problems.push(problem(
                ProblemKind::Checkpoint,
                format!(
                    "the witnessed {name} pinned another hash for #{} (event {}): the chain up to \
                     it was rewritten",
                    cp.to_n, cp.head_id
                ),
            ));
        }
    }
    for (chain, cp) in cut {
        let last_n = ends.get(chain).map_or(0, |e| e.last_n);
        let gone = if cp.to_n == last_n + 1 {
            format!("event #{} is gone", cp.to_n)
        } else {
            format!("events #{}..#{} are gone", last_n + 1, cp.to_n)
        };
        report.problems.push(Problem {
            kind: ProblemKind::Truncated,
            chain: Some(chain.to_string()),
            n: Some(last_n + 1),
            event: Some(cp.head_id.clone()),
            message: format!(
                "chain \"{chain}\" was cut: the witness {src} holds the {}, which pinned event {} \
                 at #{}, but the stored chain ends at #{last_n}: {gone}",
                cp.describe(),
                cp.head_id,
                cp.to_n
            ),
        });
    }
    Ok(())
}

/// Walk one chain in position order (from its purge boundary, or from its newest checkpoint
/// before `since`), check every link, then check its checkpoints against what the walk saw.
async fn verify_chain(
    store: &dyn EventStore,
    chain: &str,
    cps: Vec<Checkpoint>,
    since: Option<OffsetDateTime>,
    report: &mut Report,
) -> Result<ChainEnd, Error> {
    let mut walk = ChainWalk::start(chain, cps, since);
    let mut after = walk.start_n;
    loop {
        let rows = store.chain_rows(chain, after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.columns.chain_n.unwrap_or(after);
        for row in &rows {
            walk.link(row, report);
        }
    }
    Ok(walk.finish(report))
}

/// Runs of links a retention purge deleted from inside a chain, by their last position:
/// (first position - 1, hash of the last link, when the purge happened).
type Gaps = BTreeMap<i64, (i64, String, i64)>;

/// The gaps the chain's `retention` checkpoints recorded.
fn retention_gaps(cps: &[Checkpoint]) -> Gaps {
    cps.iter()
        .filter(|c| c.kind == CheckpointKind::Retention)
        .flat_map(|c| {
            c.gaps
                .iter()
                .map(|g| (g.to_n, (g.from_n, g.hash.clone(), c.created_ms)))
        })
        .collect()
}

/// Where the walk starts: (position, hash) of the link before the first one it checks. After
/// the newest purge boundary, or at the chain's beginning; with `since`, after the newest
/// checkpoint whose segment ended before it, when that is further.
fn walk_start(cps: &[Checkpoint], since: Option<OffsetDateTime>) -> (i64, String) {
    let boundary = cps
        .iter()
        .filter(|c| c.kind == CheckpointKind::Purge)
        .max_by_key(|c| c.to_n);
    let (start_n, start_hash) = boundary
        .map(|b| (b.to_n, b.head_hash.clone()))
        .unwrap_or((0, GENESIS.to_string()));
    let Some(since) = since else {
        return (start_n, start_hash);
    };
    let since_ms = unix_millis(since);
    cps.iter()
        .filter(|c| c.kind != CheckpointKind::Retention)
        .filter(|c| c.to_n > start_n && c.last_time_ms.is_some_and(|t| t < since_ms))
        .max_by_key(|c| c.to_n)
        .map_or((start_n, start_hash), |cp| (cp.to_n, cp.head_hash.clone()))
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

/// The tallies of a chain's periodic, heartbeat and shutdown checkpoints, filled in as the walk
/// passes through their segments. The walk visits positions in increasing order: a sweep over
/// the segments (by start), and the checkpoints by the position they pin, keep it linear in
/// links plus checkpoints.
struct Tallies {
    list: Vec<Tally>,
    /// Indexes into `list` by segment start.
    by_start: Vec<usize>,
    /// Indexes into `list` by the position their checkpoint pins.
    by_head: BTreeMap<i64, Vec<usize>>,
    /// The next of `by_start` not yet entered.
    next_start: usize,
    /// The segments holding the current position.
    active: Vec<usize>,
}

impl Tallies {
    /// Empty tallies for the writer's checkpoints in `cps`. A count is only checked when no
    /// link of its segment was purged after it was signed (or skipped by the walk's start).
    fn new(cps: &[Checkpoint], start_n: i64, gaps: &Gaps) -> Tallies {
        let list: Vec<Tally> = cps
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
        let mut by_start: Vec<usize> = (0..list.len()).collect();
        by_start.sort_by_key(|&i| list[i].cp.from_n);
        let mut by_head: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, t) in list.iter().enumerate() {
            by_head.entry(t.cp.to_n).or_default().push(i);
        }
        Tallies {
            list,
            by_start,
            by_head,
            next_start: 0,
            active: Vec::new(),
        }
    }

    /// Link `n` with `hash`, at `time_ms`, was walked: note it where a checkpoint pins `n`, and
    /// count it in every segment that holds it.
    fn count(&mut self, n: i64, hash: &str, time_ms: i64) {
        if let Some(pinned) = self.by_head.get(&n) {
            for &i in pinned {
                self.list[i].head_seen = Some(hash.to_string());
            }
        }
        while self.next_start < self.by_start.len()
            && self.list[self.by_start[self.next_start]].cp.from_n < n
        {
            self.active.push(self.by_start[self.next_start]);
            self.next_start += 1;
        }
        let list = &self.list;
        self.active.retain(|&i| list[i].cp.to_n >= n);
        for &i in &self.active {
            let t = &mut self.list[i];
            t.count += 1;
            t.min = Some(t.min.map_or(time_ms, |m| m.min(time_ms)));
            t.max = Some(t.max.map_or(time_ms, |m| m.max(time_ms)));
        }
    }
}

/// The state of one chain's walk: where the next link must continue from, and what was seen.
struct ChainWalk<'a> {
    chain: &'a str,
    gaps: Gaps,
    tallies: Tallies,
    /// The position the walk started after.
    start_n: i64,
    /// The position the next link must hold, and the hash it must name as its predecessor.
    expected: i64,
    prev_hash: String,
    /// (seq, id) of the previous link walked.
    prev: Option<(i64, String)>,
    /// The newest position walked (or bridged by a retention gap).
    last_n: i64,
    newest_time_ms: Option<i64>,
}

impl<'a> ChainWalk<'a> {
    fn start(chain: &'a str, mut cps: Vec<Checkpoint>, since: Option<OffsetDateTime>) -> Self {
        cps.sort_by_key(|c| (c.to_n, c.from_n));
        let gaps = retention_gaps(&cps);
        let (start_n, start_hash) = walk_start(&cps, since);
        let tallies = Tallies::new(&cps, start_n, &gaps);
        ChainWalk {
            chain,
            gaps,
            tallies,
            start_n,
            expected: start_n + 1,
            prev_hash: start_hash,
            prev: None,
            last_n: start_n,
            newest_time_ms: None,
        }
    }

    fn problem(&self, kind: ProblemKind, n: Option<i64>, event: &str, message: String) -> Problem {
        Problem {
            kind,
            chain: Some(self.chain.to_string()),
            n,
            event: Some(event.to_string()),
            message,
        }
    }

    /// Check the next stored row of the chain (rows come by position, then seq).
    fn link(&mut self, row: &StoredRow, report: &mut Report) {
        report.events += 1;
        let n = row.columns.chain_n.unwrap_or(0);
        let id = row.columns.id.as_str();
        let who = describe(id, self.chain, n, row.seq);
        let Some(link) = self.check_content(row, n, &who, report) else {
            return;
        };
        self.bridge_gaps_before(n);
        if !self.check_position(row, n, &link, &who, report) {
            return;
        }
        self.check_seq_order(row, n, &who, report);
        self.newest_time_ms = self.newest_time_ms.max(Some(row.columns.time_ms));
        self.tallies.count(n, &link.hash, row.columns.time_ms);
        self.expected = n + 1;
        self.prev_hash = link.hash;
        self.prev = Some((row.seq, id.to_string()));
        self.last_n = n;
    }

    /// The row's body is an event, its columns agree with it, and it hashes to its link. `None`
    /// when there is no link to go on with (unreadable, or the link is gone from the body).
    fn check_content(
        &self,
        row: &StoredRow,
        n: i64,
        who: &str,
        report: &mut Report,
    ) -> Option<ChainLink> {
        let id = row.columns.id.as_str();
        let event: AuditEvent = match serde_json::from_str(&row.body) {
            Ok(e) => e,
            Err(e) => {
                report.problems.push(self.problem(
                    ProblemKind::Unreadable,
                    Some(n),
                    id,
                    format!("{who} is unreadable: {e}"),
                ));
                return None;
            }
        };
        if let Some((col, stored, body)) = row.columns.first_difference(&Columns::of(&event)) {
            report.problems.push(self.problem(
                ProblemKind::Edited,
                Some(n),
                id,
                format!("{who} was edited: column {col} holds {stored}, its body says {body}"),
            ));
        }
        let Some(link) = event.chain else {
            report.problems.push(self.problem(
                ProblemKind::Edited,
                Some(n),
                id,
                format!("{who} was edited: its body lost its chain link"),
            ));
            return None;
        };
        let content_ok = canonical_body(&row.body)
            .map(|c| link_hash(self.chain, n, &link.prev_hash, &c) == link.hash)
            .unwrap_or(false);
        if !content_ok {
            report.problems.push(self.problem(
                ProblemKind::Edited,
                Some(n),
                id,
                format!("{who} was edited: its content does not match its hash"),
            ));
        }
        Some(link)
    }

    /// Links a retention purge deleted before position `n`: go on from the hash it recorded for
    /// the last one.
    fn bridge_gaps_before(&mut self, n: i64) {
        while n > self.expected {
            match gap_at(&self.gaps, self.expected) {
                Some((to, hash)) if to < n => {
                    self.expected = to + 1;
                    self.prev_hash = hash.to_string();
                }
                _ => break,
            }
        }
    }

    /// The link holds the expected position and names the previous link's hash. False when the
    /// position was already walked: the row is reported and the walk goes on without it.
    fn check_position(
        &self,
        row: &StoredRow,
        n: i64,
        link: &ChainLink,
        who: &str,
        report: &mut Report,
    ) -> bool {
        let id = row.columns.id.as_str();
        let expected = self.expected;
        if n < expected {
            let holder = self
                .prev
                .as_ref()
                .map_or("another event", |(_, id)| id.as_str());
            report.problems.push(self.problem(
                ProblemKind::Inserted,
                Some(n),
                id,
                format!("{who} was inserted: position #{n} is already held by {holder}"),
            ));
            return false;
        }
        if n > expected {
            let missing = if n == expected + 1 {
                format!("#{expected} is missing")
            } else {
                format!("#{expected}..#{} are missing", n - 1)
            };
            report.problems.push(self.problem(
                ProblemKind::Deleted,
                Some(expected),
                id,
                format!(
                    "chain \"{}\": {missing} (deleted): {who} follows #{}",
                    self.chain,
                    expected - 1
                ),
            ));
        } else if link.prev_hash != self.prev_hash {
            report.problems.push(self.problem(
                ProblemKind::Inserted,
                Some(n),
                id,
                format!(
                    "{who} does not link to #{}: the event before it was replaced, or this one \
                     was inserted",
                    n - 1
                ),
            ));
        }
        true
    }

    /// Seq order agrees with link order.
    fn check_seq_order(&self, row: &StoredRow, n: i64, who: &str, report: &mut Report) {
        if let Some((prev_seq, prev_id)) = &self.prev {
            if row.seq < *prev_seq {
                report.problems.push(self.problem(
                    ProblemKind::Reordered,
                    Some(n),
                    &row.columns.id,
                    format!(
                        "{who} is out of order: it is stored before #{} (event {prev_id}, \
                         seq {prev_seq})",
                        n - 1
                    ),
                ));
            }
        }
    }

    /// The walk is over: bridge a purged tail, check the checkpoints, say where the chain ends.
    fn finish(mut self, report: &mut Report) -> ChainEnd {
        // A purged tail: the chain's last links were deleted by retention.
        while let Some((to, _)) = gap_at(&self.gaps, self.expected) {
            self.expected = to + 1;
            self.last_n = to;
        }
        self.check_checkpoints(report);
        ChainEnd {
            last_n: self.last_n,
            newest_time_ms: self.newest_time_ms,
        }
    }

    /// Each checkpoint against what was walked: the chain reaches the link it pinned, with the
    /// same hash, and its segment holds the count and time range it signed.
    fn check_checkpoints(&self, report: &mut Report) {
        let (chain, start_n, last_n) = (self.chain, self.start_n, self.last_n);
        let tallies = &self.tallies.list;
        let mut truncated = false;
        for t in tallies {
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
                    report.problems.push(self.problem(
                        ProblemKind::Truncated,
                        Some(last_n + 1),
                        &cp.head_id,
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
                // The pinned link was purged by retention: the purge's own checkpoint stands for
                // it.
                None if gap_at(&self.gaps, cp.to_n).is_some() => {}
                Some(h) if *h == cp.head_hash => {}
                Some(_) => report.problems.push(self.problem(
                    ProblemKind::Checkpoint,
                    Some(cp.to_n),
                    &cp.head_id,
                    format!(
                        "{name} pinned another hash for event {}: the chain up to it was \
                         rewritten",
                        cp.head_id
                    ),
                )),
                None => report.problems.push(self.problem(
                    ProblemKind::Deleted,
                    Some(cp.to_n),
                    &cp.head_id,
                    format!("{name}: the event it pinned ({}) is missing", cp.head_id),
                )),
            }
            if t.whole && (t.count, t.min, t.max) != (cp.count, cp.first_time_ms, cp.last_time_ms) {
                report.problems.push(self.problem(
                    ProblemKind::Checkpoint,
                    Some(cp.to_n),
                    &cp.head_id,
                    format!(
                        "{name} counted {} events from #{} to #{} (times {:?}..{:?}); the store \
                         has {} ({:?}..{:?})",
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
    }
}

/// The retention gap holding position `n`: its last position and the hash of that link.
fn gap_at(gaps: &Gaps, n: i64) -> Option<(i64, &str)> {
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
