-- Time partitions (src/store/sqlite/partitions.rs): events are kept in one table per UTC day, so
-- the indexes an append writes stay the size of a day. `events` becomes a view over them, which
-- the store rebuilds whenever it adds a partition; every query keeps its SQL.
--
-- The partitions, by event time: a partition holds the events whose time_ms is in
-- [from_ms, to_ms). min_seq and max_seq bound the seqs it has held (NULL: none yet), kept by the
-- writer: a page in seq order reads the partitions in seq order and stops when the next one
-- cannot hold a row of the page.
CREATE TABLE partitions (
    name    TEXT    PRIMARY KEY,
    from_ms INTEGER NOT NULL,
    to_ms   INTEGER NOT NULL,
    min_seq INTEGER,
    max_seq INTEGER
);

-- seq is one sequence over every partition, handed out by the writer from here. `last` only
-- grows: a seq is never reused, even after the newest rows are deleted (AUTOINCREMENT's promise).
CREATE TABLE seq_counter (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    last INTEGER NOT NULL
);
INSERT INTO seq_counter (one, last)
SELECT 1, max(
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
    coalesce((SELECT max(seq) FROM events), 0)
);

-- The trail written before partitions becomes one: it holds every time up to the end of the UTC
-- day of its newest event (later days get their own). Its indexes keep their names; its token
-- keys table and their trigger move with it. An empty one is dropped by the store at open.
ALTER TABLE events RENAME TO events_legacy;
ALTER TABLE event_tokens RENAME TO events_legacy_tokens;
INSERT INTO partitions (name, from_ms, to_ms, min_seq, max_seq)
SELECT 'events_legacy', -9223372036854775808,
       coalesce((max(time_ms) / 86400000 + 1) * 86400000, 0), min(seq), max(seq)
FROM events_legacy;
