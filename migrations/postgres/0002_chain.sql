-- Tamper evidence; see migrations/sqlite/0002_chain.sql.
ALTER TABLE events ADD COLUMN chain_instance TEXT COLLATE "C";
ALTER TABLE events ADD COLUMN chain_n BIGINT;
ALTER TABLE events ADD COLUMN chain_hash TEXT;

CREATE UNIQUE INDEX events_chain ON events (chain_instance, chain_n);

CREATE TABLE checkpoints (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance   TEXT COLLATE "C" NOT NULL,
    to_n       BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    body       TEXT   NOT NULL
);
CREATE INDEX checkpoints_chain ON checkpoints (instance, to_n);
