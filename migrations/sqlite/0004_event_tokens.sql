-- A token's events, found by fingerprint or jti without reading every body: one row per key
-- (each token's fingerprint, and its jti when it has one) and event. Triggers keep it in step
-- with `events` whoever writes (pipeline, `generate`, imports) and whatever a purge deletes; the
-- event body stays the one source of truth. Existing events are indexed here once.
CREATE TABLE event_tokens (
    key TEXT    NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
CREATE INDEX event_tokens_seq ON event_tokens (seq);

CREATE TRIGGER event_tokens_insert AFTER INSERT ON events
WHEN instr(NEW.body, '"tokens":[') > 0
BEGIN
    INSERT OR IGNORE INTO event_tokens (key, seq)
    SELECT k.key, NEW.seq FROM (
        SELECT t.value ->> 'fingerprint' AS key FROM json_each(NEW.body, '$.tokens') AS t
        UNION ALL
        SELECT t.value ->> 'jti' FROM json_each(NEW.body, '$.tokens') AS t
    ) AS k
    WHERE k.key IS NOT NULL;
END;

CREATE TRIGGER event_tokens_delete AFTER DELETE ON events
BEGIN
    DELETE FROM event_tokens WHERE seq = OLD.seq;
END;

INSERT OR IGNORE INTO event_tokens (key, seq)
SELECT k.key, k.seq FROM (
    SELECT t.value ->> 'fingerprint' AS key, e.seq AS seq
    FROM events AS e, json_each(e.body, '$.tokens') AS t
    WHERE instr(e.body, '"tokens":[') > 0
    UNION ALL
    SELECT t.value ->> 'jti', e.seq
    FROM events AS e, json_each(e.body, '$.tokens') AS t
    WHERE instr(e.body, '"tokens":[') > 0
) AS k
WHERE k.key IS NOT NULL;
