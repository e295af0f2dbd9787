-- A token's events, found by fingerprint or jti: a GIN index over each event's token list, so
-- `body -> 'tokens' @> '[{"fingerprint": ...}]'` is an index lookup, not a scan of every body.
-- (SQLite keeps a side table instead; see migrations/sqlite/0004_event_tokens.sql.)
CREATE INDEX events_tokens ON events USING gin ((body -> 'tokens') jsonb_path_ops);
-- Statistics for the new expression now: without them the planner cannot tell a token is rare
-- and keeps scanning, until autovacuum gets round to this table.
ANALYZE events;
