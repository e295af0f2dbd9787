-- A token's keys are written by the writer itself (src/store/sqlite.rs, `insert_rows`): the
-- encoder already has each event's fingerprints and jtis, so the insert trigger no longer parses
-- every body's JSON again (nor scans it for `"tokens":[`). Everything that appends goes through
-- that path (the pipeline, `generate`, replay of the spool). The delete trigger stays: a purge
-- still removes the keys of the events it deletes.
DROP TRIGGER IF EXISTS event_tokens_insert;
