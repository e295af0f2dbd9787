-- Query plans for the admin API's filters; measured in BENCHMARKS.md ("Query speed").
--
-- An outcome walked in seq order, with the type beside it: "failures of auth.*" reads the newest
-- failures and checks each one's type in the index, stopping at `limit` without a sort. (The
-- (outcome, type) index stays: an exact type with an outcome is an equality on both, already in
-- seq order there.)
CREATE INDEX events_outcome_seq ON events (outcome, seq, type);

-- Everything one client address did, newest first (rows of one key are in seq order).
CREATE INDEX events_ip ON events (ip);
