//! Pages read partition by partition, shared by both SQL stores: which partitions a page can
//! reach and in what order to read them, and when to stop. Each partition is read with the plan
//! of a single table, newest seqs first for a descending page (oldest first for an ascending
//! one); a page is done once it holds its limit and the next partition's seqs cannot reach into
//! it. Events arrive in nearly time order, so a dense page is read from one or two day
//! partitions however many the trail has. This module runs no statement: the stores read.

use super::query::{ceil_millis, effective_limit, SeqBound};
use super::Query;
use crate::event::AuditEvent;

/// One partition: a table holding the events whose time is in `[from_ms, to_ms)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Partition {
    pub name: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Bounds on the seqs it holds (`None`: it holds no row). Kept by the writer; may be wider
    /// than the rows (a deletion, a reserve), never narrower.
    pub seqs: Option<(i64, i64)>,
}

impl Partition {
    pub fn holds(&self, time_ms: i64) -> bool {
        self.from_ms <= time_ms && time_ms < self.to_ms
    }

    /// Whether an event in `[since, until)` (each bound optional) may be in this partition.
    pub fn overlaps(&self, since_ms: Option<i64>, until_ms: Option<i64>) -> bool {
        since_ms.is_none_or(|s| self.to_ms > s) && until_ms.is_none_or(|u| self.from_ms < u)
    }
}

/// `q`'s time window in Unix ms, as the query builder bounds it.
pub(crate) fn window_ms(q: &Query) -> (Option<i64>, Option<i64>) {
    (q.since.map(ceil_millis), q.until.map(ceil_millis))
}

/// The index of the partition holding `time_ms` among `parts` (sorted by `from_ms`, disjoint).
pub(crate) fn find_index(parts: &[Partition], time_ms: i64) -> Option<usize> {
    parts
        .partition_point(|p| p.from_ms <= time_ms)
        .checked_sub(1)
        .filter(|&i| parts[i].holds(time_ms))
}

/// The partitions of `parts` that may hold a row of `q`'s page (its window, cursor and
/// `seq_bound`), with their seq bounds, in the order a page reads them.
pub(crate) fn candidates<'a>(
    parts: &'a [Partition],
    q: &Query,
    seq_bound: Option<SeqBound>,
) -> Vec<(&'a Partition, (i64, i64))> {
    let (since, until) = window_ms(q);
    let mut found: Vec<(&Partition, (i64, i64))> = parts
        .iter()
        .filter(|p| p.overlaps(since, until))
        .filter_map(|p| p.seqs.map(|s| (p, s)))
        .filter(|(_, (lo, hi))| {
            q.after_seq.is_none_or(|a| *hi > a) && q.before_seq.is_none_or(|b| *lo < b)
        })
        .filter(|(_, (lo, hi))| seq_bound.is_none_or(|b| b.reaches(*lo, *hi)))
        .collect();
    if q.ascending {
        found.sort_by_key(|(_, (lo, _))| *lo);
    } else {
        found.sort_by_key(|(_, (_, hi))| std::cmp::Reverse(*hi));
    }
    found
}

/// A page being filled from partitions.
pub(crate) struct Page {
    events: Vec<AuditEvent>,
    limit: usize,
    ascending: bool,
}

impl Page {
    pub fn new(q: &Query) -> Page {
        Page {
            events: Vec::new(),
            limit: effective_limit(q) as usize,
            ascending: q.ascending,
        }
    }

    /// Whether a partition whose seqs lie in `lo..=hi` can still add to the page (false once
    /// the page is full and every seq there is past its last event).
    pub fn reaches(&self, lo: i64, hi: i64) -> bool {
        if self.events.len() < self.limit {
            return true;
        }
        let edge = self.events[self.limit - 1].seq.unwrap_or(0);
        if self.ascending {
            lo <= edge
        } else {
            hi >= edge
        }
    }

    /// Add the rows of one read (in page order and cut to the limit; a row already in the page,
    /// read again by a wider range, is kept once).
    pub fn add(&mut self, rows: impl IntoIterator<Item = AuditEvent>) {
        self.events.extend(rows);
        if self.ascending {
            self.events.sort_by_key(|e| e.seq);
        } else {
            self.events.sort_by_key(|e| std::cmp::Reverse(e.seq));
        }
        self.events.dedup_by_key(|e| e.seq);
        self.events.truncate(self.limit);
    }

    pub fn into_events(self) -> Vec<AuditEvent> {
        self.events
    }
}

/// The time ranges to read `candidates` in (in their order): the first alone, then groups that
/// double in size, each group as the one range from its earliest partition to its latest. A
/// dense page is done after the first read; a sparse one (a rare filter, nothing at all)
/// reads 31 partitions in 5 statements instead of 31, where a store that prunes by time at
/// plan time (PostgreSQL) plans each group's partitions alone. A range may span partitions
/// that are not in the group: what it reads there is real matches, and the page keeps each once.
pub(crate) fn doubling_ranges(candidates: &[(&Partition, (i64, i64))]) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut i = 0;
    let mut width = 1;
    while i < candidates.len() {
        let group = &candidates[i..(i + width).min(candidates.len())];
        groups.push(Group {
            from_ms: group
                .iter()
                .map(|(p, _)| p.from_ms)
                .min()
                .unwrap_or(i64::MIN),
            to_ms: group.iter().map(|(p, _)| p.to_ms).max().unwrap_or(i64::MAX),
            lo: group
                .iter()
                .map(|(_, (lo, _))| *lo)
                .min()
                .unwrap_or(i64::MIN),
            hi: group
                .iter()
                .map(|(_, (_, hi))| *hi)
                .max()
                .unwrap_or(i64::MAX),
        });
        i += group.len();
        width *= 2;
    }
    groups
}

/// One read of [`doubling_ranges`]: a time range and the bounds of the seqs it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub from_ms: i64,
    pub to_ms: i64,
    pub lo: i64,
    pub hi: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(from_ms: i64, seqs: Option<(i64, i64)>) -> Partition {
        Partition {
            name: format!("p{from_ms}"),
            from_ms,
            to_ms: from_ms + 10,
            seqs,
        }
    }

    fn event(seq: i64) -> AuditEvent {
        let mut e: AuditEvent = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::now_v7(),
            "time": "2025-01-01T00:00:00Z",
            "type": "auth.login",
            "stage": "completed",
            "outcome": "success",
            "actor": {"kind": "user", "verified": false},
            "source": {},
            "http": {"method": "POST", "path": "/login", "route": "login", "duration_ms": 1, "request_id": "r"}
        }))
        .expect("a minimal event");
        e.seq = Some(seq);
        e
    }

    #[test]
    fn candidates_leave_out_empty_and_unreachable_partitions_and_order_by_seq() {
        let parts = [
            part(0, Some((1, 10))),
            part(10, None),
            part(20, Some((11, 30))),
            // A late event put seq 40 in the oldest time range's neighbour.
            part(30, Some((31, 40))),
        ];
        let names = |q: &Query, b| {
            candidates(&parts, q, b)
                .iter()
                .map(|(p, _)| p.from_ms)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&Query::default(), None), [30, 20, 0]);
        let up = Query {
            ascending: true,
            after_seq: Some(10),
            ..Query::default()
        };
        assert_eq!(names(&up, None), [20, 30]);
        assert_eq!(names(&up, Some(SeqBound::AtMost(25))), [20]);
        let down = Query {
            before_seq: Some(12),
            ..Query::default()
        };
        assert_eq!(names(&down, None), [20, 0]);
        assert_eq!(names(&Query::default(), Some(SeqBound::Above(30))), [30]);
    }

    #[test]
    fn a_full_page_stops_at_the_first_partition_that_cannot_reach_it() {
        let q = Query {
            limit: 2,
            ..Query::default()
        };
        let mut page = Page::new(&q);
        assert!(page.reaches(1, 2), "an empty page reads anything");
        page.add([event(30), event(29)]);
        assert!(
            page.reaches(20, 29),
            "29 may be beaten by nothing, but is reached"
        );
        assert!(!page.reaches(1, 28));
        // A wider range read again keeps each event once, newest first.
        page.add([event(30), event(28)]);
        let seqs: Vec<_> = page.into_events().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [Some(30), Some(29)]);
    }

    #[test]
    fn ranges_double_and_span_their_partitions() {
        let parts: Vec<Partition> = (0..7).map(|i| part(i * 10, Some((i, i)))).collect();
        let mut cands: Vec<(&Partition, (i64, i64))> =
            parts.iter().map(|p| (p, p.seqs.unwrap())).collect();
        cands.reverse();
        let groups = doubling_ranges(&cands);
        let spans: Vec<_> = groups.iter().map(|g| (g.from_ms, g.to_ms)).collect();
        assert_eq!(spans, [(60, 70), (40, 60), (0, 40)]);
        assert_eq!((groups[2].lo, groups[2].hi), (0, 3));
        assert!(doubling_ranges(&[]).is_empty());
    }
}
