-- A token's events, found by fingerprint or jti without reading every body: one row per key
-- (each token's fingerprint, and its jti when it has one) and event. Triggers keep it in step
-- with `events` whoever writes (the pipeline, `generate`, an import) and whatever a purge
-- deletes; the event body stays the one source of truth. Existing events are indexed here once.
--
-- `"tokens":[` is how serde_json writes a non-empty token list (an empty one is left out), so
-- the check skips the JSON parse for events without tokens.
CREATE TABLE event_tokens (
    key TEXT    NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;

CREATE TRIGGER event_tokens_insert AFTER INSERT ON events
WHEN instr(NEW.body, '"tokens":[') > 0
BEGIN
    INSERT OR IGNORE INTO event_tokens (key, seq)
    SELECT k.value, NEW.seq
    FROM json_each(NEW.body, '$.tokens') AS t,
         json_each(json_array(t.value ->> 'fingerprint', t.value ->> 'jti')) AS k
    WHERE k.value IS NOT NULL;
END;

CREATE TRIGGER event_tokens_delete AFTER DELETE ON events
WHEN instr(OLD.body, '"tokens":[') > 0
BEGIN
    DELETE FROM event_tokens
    WHERE seq = OLD.seq
      AND key IN (
        SELECT k.value
        FROM json_each(OLD.body, '$.tokens') AS t,
             json_each(json_array(t.value ->> 'fingerprint', t.value ->> 'jti')) AS k
      );
END;

INSERT OR IGNORE INTO event_tokens (key, seq)
SELECT k.value, e.seq
FROM events AS e,
     json_each(e.body, '$.tokens') AS t,
     json_each(json_array(t.value ->> 'fingerprint', t.value ->> 'jti')) AS k
WHERE instr(e.body, '"tokens":[') > 0 AND k.value IS NOT NULL;
