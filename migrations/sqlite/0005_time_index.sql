-- Time windows without a full scan: `/v1/stats` (counts by bucket × type × outcome × app over a
-- window), retention's purge by age and `count`/`MIN`/`MAX` of a window read this index alone
-- (it covers every column they touch). Pages keep walking in seq order: their time bounds are
-- written `+time_ms` so the planner does not start from here and sort (src/store/sqlite.rs).
CREATE INDEX events_time ON events (time_ms, type, outcome, app);
