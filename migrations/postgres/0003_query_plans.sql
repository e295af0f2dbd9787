-- Query plans for the admin API's filters; see migrations/sqlite/0003_query_plans.sql.
CREATE INDEX events_outcome_seq ON events (outcome, seq, type);
CREATE INDEX events_ip ON events (ip);
