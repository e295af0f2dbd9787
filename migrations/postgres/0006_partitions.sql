-- Time partitions (issue 14): `events` becomes a table partitioned by range of `time_ms`, one
-- partition per UTC day, `events_YYYYMMDD` holding [that day's 00:00, the next day's 00:00) in
-- Unix milliseconds. Each partition has its own copy of every index, so the indexes an append
-- touches (the random keys: id, actor, target, ip, request id, the token GIN) stay the size of
-- one day instead of the whole trail's, and retention can later drop whole days.
--
-- Partitions are created by the store on demand, before an append writes into a day that has
-- none (and today's and tomorrow's at open): see `PostgresStore::ensure_partitions` in
-- src/store/postgres.rs. There is no DEFAULT partition (why: same place).
--
-- The rows stored before this migration stay where they are: the old table is renamed
-- `events_legacy` and attached as the partition of everything before the UTC day after its
-- newest event (FROM (MINVALUE)), or of nothing (TO (0): event times are Unix ms >= 0) when it
-- is empty. Its indexes are kept and become its partitions' copies of the new ones; only the
-- two unique ones (which must now include time_ms) and the chain index are built again.
--
-- What changes in the schema:
-- * seq is a column with a plain sequence default (an identity column cannot be a partition
--   before PostgreSQL 17, and the legacy table must be one), still owned by events.seq so
--   `pg_get_serial_sequence('events', 'seq')` names it, still CACHE 1 (see postgres.rs: the
--   high-water mark needs values handed out in order), continuing after the old identity.
-- * A unique constraint on a partitioned table must include the partition key: the primary key
--   is (seq, time_ms) and the id's (id, time_ms). Appends insert with
--   `ON CONFLICT (id, time_ms) DO NOTHING`, which is still exact de-duplication: an event's
--   time never changes, so a replayed event always lands in the same partition as the first
--   copy. seq is drawn from one sequence, so it is unique anyway.
-- * The chain index (chain_instance, chain_n) is no longer unique (it could only be with
--   time_ms in it, which would not stop a fork across days). One writer per chain position is
--   guaranteed by the chain's advisory lock, which every append, checkpoint and purge takes
--   before it reads the head; and `verify` reports a position held twice (a forked or inserted
--   row) whatever the indexes say.
LOCK TABLE events IN ACCESS EXCLUSIVE MODE;

ALTER TABLE events RENAME TO events_legacy;
ALTER TABLE events_legacy RENAME CONSTRAINT events_pkey TO events_legacy_pkey;
ALTER TABLE events_legacy RENAME CONSTRAINT events_id_key TO events_legacy_id_key;
ALTER INDEX events_app RENAME TO events_legacy_app;
ALTER INDEX events_actor RENAME TO events_legacy_actor;
ALTER INDEX events_target RENAME TO events_legacy_target;
ALTER INDEX events_type RENAME TO events_legacy_type;
ALTER INDEX events_outcome_type RENAME TO events_legacy_outcome_type;
ALTER INDEX events_request_id RENAME TO events_legacy_request_id;
ALTER INDEX events_chain RENAME TO events_legacy_chain;
ALTER INDEX events_outcome_seq RENAME TO events_legacy_outcome_seq;
ALTER INDEX events_ip RENAME TO events_legacy_ip;
ALTER INDEX events_tokens RENAME TO events_legacy_tokens;
ALTER INDEX events_time RENAME TO events_legacy_time;

-- The new sequence goes on from the identity's last value (never reusing a seq, even one whose
-- event was purged), or starts at 1 when no seq was ever handed out.
CREATE SEQUENCE events_seq_next AS BIGINT CACHE 1;
DO $$
DECLARE
    old_seq  regclass := pg_get_serial_sequence('events_legacy', 'seq')::regclass;
    last_seq BIGINT;
    max_seq  BIGINT;
BEGIN
    last_seq := pg_sequence_last_value(old_seq);
    SELECT max(seq) INTO max_seq FROM events_legacy;
    last_seq := GREATEST(last_seq, max_seq);
    IF last_seq IS NULL THEN
        PERFORM setval('events_seq_next', 1, false);
    ELSE
        PERFORM setval('events_seq_next', last_seq, true);
    END IF;
END
$$;
ALTER TABLE events_legacy ALTER COLUMN seq DROP IDENTITY;
ALTER SEQUENCE events_seq_next RENAME TO events_seq_seq;

-- Same columns, types, collations and order as the old table (0001 + 0002's chain columns).
CREATE TABLE events (
    seq         BIGINT NOT NULL DEFAULT nextval('events_seq_seq'),
    id          TEXT COLLATE "C" NOT NULL,
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
    body        JSONB NOT NULL,
    chain_instance TEXT COLLATE "C",
    chain_n     BIGINT,
    chain_hash  TEXT,
    CONSTRAINT events_pkey PRIMARY KEY (seq, time_ms),
    CONSTRAINT events_id_key UNIQUE (id, time_ms)
) PARTITION BY RANGE (time_ms);
ALTER SEQUENCE events_seq_seq OWNED BY events.seq;

-- Every index of 0001-0005, now one per partition (same names on the parent).
CREATE INDEX events_app    ON events (app, seq, time_ms);
CREATE INDEX events_actor  ON events (actor_id, seq, time_ms);
CREATE INDEX events_target ON events (target_id, seq, time_ms);
CREATE INDEX events_type   ON events (type, seq, time_ms);
CREATE INDEX events_outcome_type ON events (outcome, type);
CREATE INDEX events_request_id ON events (request_id);
CREATE INDEX events_chain ON events (chain_instance, chain_n);
CREATE INDEX events_outcome_seq ON events (outcome, seq, type);
CREATE INDEX events_ip ON events (ip);
CREATE INDEX events_tokens ON events USING gin ((body -> 'tokens') jsonb_path_ops);
CREATE INDEX events_time ON events (time_ms, type, outcome, app);

-- The old rows: everything before the UTC day after the newest one. Attaching reuses the
-- indexes above that the old table already has, and builds the three whose shape changed (the
-- old ones go first: a partition cannot have a primary key of its own).
ALTER TABLE events_legacy DROP CONSTRAINT events_legacy_pkey;
ALTER TABLE events_legacy DROP CONSTRAINT events_legacy_id_key;
DROP INDEX events_legacy_chain;
DO $$
DECLARE
    day   CONSTANT BIGINT := 86400000;
    upper BIGINT;
BEGIN
    SELECT (max(time_ms) / day + 1) * day INTO upper FROM events_legacy;
    -- Times are Unix ms >= 0; an empty table covers nothing of them.
    upper := GREATEST(COALESCE(upper, 0), 0);
    EXECUTE format(
        'ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) TO (%s)',
        upper);
END
$$;

ANALYZE events;
