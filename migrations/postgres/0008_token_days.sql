-- A token's events, found by day (issue 14): `event_tokens(day, key, seq)` holds each event's
-- token keys (every token's fingerprint, and its jti when it has one), hashed
-- (`hashtextextended(key, 0)`, the function PostgreSQL's hash partitioning keeps stable), under
-- the UTC day of the event's time. It replaces the GIN index of 0004 on `body -> 'tokens'`.
--
-- Why: with `events` partitioned by day (0006) the GIN index is one index per partition, and a
-- token's page had to probe every day's (a page over 31 days planned its GIN scans five times,
-- in doubling ranges: ~5.9 ms at 10M events for a token of three events, against 0.25 ms on one
-- table). Here one b-tree answers which days hold a token: `day = ANY(days) AND key = hash` is
-- one descent per day of `day_seqs` in one index of one table, so nothing is planned per
-- partition, and the page then reads only the days holding the token's events (0.8 ms).
--
-- Why hashed: 8 bytes instead of a 64-character fingerprint, so the table and its key take
-- ~140 MB per million events instead of ~230 MB. A hash may collide; every reader also checks
-- the event's body for the token (as the GIN index's hashed `jsonb_path_ops` entries did).
--
-- Why keyed by day first: appends insert today's keys, so the part of the index they touch is
-- today's (cache-sized, as each day's partition of `events` is); keyed by token first, every
-- insert would land on a random leaf of an index the size of the whole trail, which is what
-- made appends slow as a single table filled. A retention drop of a day deletes that day's range.
--
-- Kept by statement triggers on `events` in the writing transaction (as `day_seqs` is, 0007):
-- every insert, update and delete through `events`, whoever runs it (this version's appends, a
-- sidecar of the previous version during a rolling upgrade, a replay, a hand edit), so an event
-- and its keys commit together. Rows written straight into a partition table bypass them. The
-- price: appends ~10% slower than with the GIN index (1M events into a fresh store: ~20,700
-- events/s against ~23,200), the trigger's reading of each body's tokens included.
--
-- Appends wait from here to the end of the migration (`SHARE ROW EXCLUSIVE` on `events`: reads
-- go on): an event appended between the filling below and the triggers' creation would have no
-- keys. About a minute at 10M events here; on a large trail, run it in a quiet hour (sidecars'
-- events wait in their queues and spools meanwhile).
LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE event_tokens (
    day BIGINT NOT NULL,
    key BIGINT NOT NULL,
    seq BIGINT NOT NULL
);

-- An event's rows of event_tokens: the one definition the filling below and every trigger use.
-- A plain SQL function, so PostgreSQL inlines it into each statement.
CREATE FUNCTION authtrail_token_keys(event_time_ms BIGINT, event_seq BIGINT, event_body JSONB)
RETURNS TABLE (day BIGINT, key BIGINT, seq BIGINT) LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT event_time_ms / 86400000, hashtextextended(k.key, 0), event_seq
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(event_body -> 'tokens') = 'array'
                                   THEN event_body -> 'tokens' END) AS t(token)
    CROSS JOIN LATERAL (VALUES (t.token ->> 'fingerprint'), (t.token ->> 'jti')) AS k(key)
    WHERE k.key IS NOT NULL
$$;

-- The events stored so far. Filled before its key exists, which then is built by one sort.
INSERT INTO event_tokens (day, key, seq)
SELECT k.day, k.key, k.seq FROM events e
CROSS JOIN LATERAL authtrail_token_keys(e.time_ms, e.seq, e.body) AS k;

ALTER TABLE event_tokens ADD PRIMARY KEY (day, key, seq);

-- The keys of the rows an INSERT added (`new_rows`, its transition table).
CREATE FUNCTION authtrail_token_keys_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_tokens (day, key, seq)
    SELECT k.day, k.key, k.seq FROM new_rows e
    CROSS JOIN LATERAL authtrail_token_keys(e.time_ms, e.seq, e.body) AS k
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- The keys of the rows a DELETE removed go.
CREATE FUNCTION authtrail_token_keys_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM event_tokens t
    USING old_rows e CROSS JOIN LATERAL authtrail_token_keys(e.time_ms, e.seq, e.body) AS k
    WHERE t.day = k.day AND t.key = k.key AND t.seq = k.seq;
    RETURN NULL;
END
$$;

-- An update (by hand: the store never updates an event) may change a body's tokens, its time or
-- its seq: the old rows' keys go, then the new rows' come. (A transition table is visible only
-- in its trigger's own function, hence the two statements again.)
CREATE FUNCTION authtrail_token_keys_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM event_tokens t
    USING old_rows e CROSS JOIN LATERAL authtrail_token_keys(e.time_ms, e.seq, e.body) AS k
    WHERE t.day = k.day AND t.key = k.key AND t.seq = k.seq;
    INSERT INTO event_tokens (day, key, seq)
    SELECT k.day, k.key, k.seq FROM new_rows e
    CROSS JOIN LATERAL authtrail_token_keys(e.time_ms, e.seq, e.body) AS k
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_token_keys_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION authtrail_token_keys_insert();
CREATE TRIGGER events_token_keys_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION authtrail_token_keys_delete();
CREATE TRIGGER events_token_keys_update AFTER UPDATE ON events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION authtrail_token_keys_update();

-- Migration 0007 filled `day_seqs` before creating its trigger and without such a lock, so an
-- event another sidecar appended in between may lie outside its day's bound. Widened now, from
-- every stored event, while no append runs (2 s at 10M events).
INSERT INTO day_seqs (day, lo_seq, hi_seq)
SELECT time_ms / 86400000, min(seq), max(seq) FROM events GROUP BY 1
ON CONFLICT (day) DO UPDATE
    SET lo_seq = LEAST(day_seqs.lo_seq, EXCLUDED.lo_seq),
        hi_seq = GREATEST(day_seqs.hi_seq, EXCLUDED.hi_seq);

-- The GIN index's job is done by event_tokens now; an index every append maintains for nothing.
DROP INDEX IF EXISTS events_tokens;

ANALYZE event_tokens;
