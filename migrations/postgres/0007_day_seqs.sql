-- The seqs each UTC day of event time holds (issue 14): what lets a page read only the day
-- partitions that can reach it, newest first, and stop, instead of planning and opening every
-- partition of `events` for each page (31 partitions x 13 indexes: ~2 ms of planning and a
-- Merge Append over 31 index scans for the newest 100 failed logins).
--
-- `day_seqs(day, lo_seq, hi_seq)`: every event whose `time_ms` falls on `day` (Unix ms / 86400000)
-- has lo_seq <= seq <= hi_seq. A bound, not an exact range: hi_seq is raised past the newest
-- seq by a reserve, so today's row is written once per 10,000 events rather than by every
-- append (a row written by every append would serialise the fleet's appends on it, the global
-- lock the high-water mark of 0006 removed). A day without a row holds no event.
--
-- Kept by the trigger below, for every INSERT and UPDATE through `events` (the store's appends,
-- a replay, a hand edit), in the writing transaction: an event and the bound covering it become
-- visible together, so a reader that sees an event also sees a bound that covers it. The
-- trigger first reads the row without a lock; only a day whose bound must move is updated (its
-- row lock then held to the commit, which is why the bound moves by a reserve). Rows written
-- straight into a partition table, not through `events`, bypass it.
CREATE TABLE day_seqs (
    day    BIGINT PRIMARY KEY,
    lo_seq BIGINT NOT NULL,
    hi_seq BIGINT NOT NULL
);

INSERT INTO day_seqs (day, lo_seq, hi_seq)
SELECT time_ms / 86400000, min(seq), max(seq) FROM events GROUP BY 1;

CREATE FUNCTION authtrail_day_seqs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    reserve CONSTANT BIGINT := 10000;
    r RECORD;
BEGIN
    -- In day order, so two appends that both move two days lock them in the same order.
    FOR r IN SELECT time_ms / 86400000 AS day, min(seq) AS lo, max(seq) AS hi
             FROM new_rows GROUP BY 1 ORDER BY 1 LOOP
        PERFORM 1 FROM day_seqs WHERE day = r.day AND lo_seq <= r.lo AND hi_seq >= r.hi;
        CONTINUE WHEN FOUND;
        INSERT INTO day_seqs (day, lo_seq, hi_seq) VALUES (r.day, r.lo, r.hi + reserve)
            ON CONFLICT (day) DO NOTHING;
        UPDATE day_seqs
            SET lo_seq = LEAST(lo_seq, r.lo),
                hi_seq = GREATEST(hi_seq, r.hi + reserve)
            WHERE day = r.day AND (lo_seq > r.lo OR hi_seq < r.hi);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_day_seqs_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authtrail_day_seqs();
CREATE TRIGGER events_day_seqs_update AFTER UPDATE ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authtrail_day_seqs();
