-- The audit trail. `body` is the whole event as JSON (without seq) and is what queries return;
-- the other columns are copies of the fields queries filter on.
--
-- seq is the sync cursor: AUTOINCREMENT so a seq is never reused, even after the newest rows are
-- deleted (a purge must not let a cursor see new events under an old number).
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    time_ms     INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    stage       TEXT,
    outcome     TEXT    NOT NULL,
    reason      TEXT,
    app         TEXT,
    actor_id    TEXT,
    target_kind TEXT,
    target_id   TEXT,
    route       TEXT,
    status      INTEGER,
    ip          TEXT,
    request_id  TEXT,
    body        TEXT    NOT NULL
);

-- Results come back in seq order and are paged by a seq cursor, so the indexes put seq right after
-- the equality columns: a query filtering on them walks the index already in seq order, seeks
-- straight to the cursor and stops after `limit` rows; no sort, however large the match. time_ms
-- rides along so time bounds are checked in the index, without reading the row.
--
-- No index leads with time_ms: a time range would then be read in time order and sorted by seq,
-- all of it, on every page (a week of a busy trail is millions of rows). Without one, a time
-- window walks the table newest first and stops at `limit`, which is immediate for recent windows
-- and a bounded scan for old ones.
CREATE INDEX events_app    ON events (app, seq, time_ms);
CREATE INDEX events_actor  ON events (actor_id, seq, time_ms);
CREATE INDEX events_target ON events (target_id, seq, time_ms);
CREATE INDEX events_type   ON events (type, seq, time_ms);

-- "Failed logins": an outcome of one type, in seq order; an outcome of a type prefix, as a range.
CREATE INDEX events_outcome_type ON events (outcome, type);

-- Correlate with the auth server's own logs.
CREATE INDEX events_request_id ON events (request_id);
