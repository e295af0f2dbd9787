-- Time windows without a full scan: `/v1/stats`, retention's purge by age and window counts
-- (an index-only scan once the table is vacuumed). See migrations/sqlite/0005_time_index.sql.
CREATE INDEX events_time ON events (time_ms, type, outcome, app);
ANALYZE events;
