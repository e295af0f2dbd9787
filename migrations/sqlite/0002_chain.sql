-- Tamper evidence. Every appended event is a link of its writer's hash chain: the link is also in
-- the body (`chain`), these columns copy what the writer and `verify` look up. Events inserted
-- before this migration have no link (verify reports them).
ALTER TABLE events ADD COLUMN chain_instance TEXT;
ALTER TABLE events ADD COLUMN chain_n INTEGER;
ALTER TABLE events ADD COLUMN chain_hash TEXT;

-- One event per chain position: a chain cannot fork. Also the head lookup of every append
-- (newest link of a chain) and verify's walk in link order.
CREATE UNIQUE INDEX events_chain ON events (chain_instance, chain_n);

-- Signed checkpoints: a chain's head, count and time range at one moment, and the boundaries
-- that purges leave. `body` is the whole checkpoint as JSON, signature included.
CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    instance   TEXT    NOT NULL,
    to_n       INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    body       TEXT    NOT NULL
);
CREATE INDEX checkpoints_chain ON checkpoints (instance, to_n);
