-- The audit trail, PostgreSQL edition of migrations/sqlite/0001_events.sql: same columns, same
-- indexes, same queries. `body` is the whole event as JSON (without seq).
--
-- seq is the sync cursor, an identity that is never reused. Appends take a transaction-scoped
-- advisory lock before they draw seq values (see src/store/postgres.rs), so seq order is commit
-- order even with many writers: a reader that has seen seq N has already seen every seq below it.
--
-- Text columns that are range-compared (type prefixes) or sorted use the "C" collation: bytewise,
-- like SQLite, whatever the database's default collation is.
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    time_ms     BIGINT NOT NULL,
    type        TEXT COLLATE "C" NOT NULL,
    stage       TEXT,
    outcome     TEXT COLLATE "C" NOT NULL,
    reason      TEXT,
    app         TEXT COLLATE "C",
    actor_id    TEXT COLLATE "C",
    target_kind TEXT,
    target_id   TEXT COLLATE "C",
    route       TEXT COLLATE "C",
    status      BIGINT,
    ip          TEXT,
    request_id  TEXT COLLATE "C",
    body        JSONB NOT NULL
);

-- See migrations/sqlite/0001_events.sql for why each index has this shape.
CREATE INDEX events_app    ON events (app, seq, time_ms);
CREATE INDEX events_actor  ON events (actor_id, seq, time_ms);
CREATE INDEX events_target ON events (target_id, seq, time_ms);
CREATE INDEX events_type   ON events (type, seq, time_ms);
CREATE INDEX events_outcome_type ON events (outcome, type);
CREATE INDEX events_request_id ON events (request_id);
