-- +goose NO TRANSACTION
-- +goose Up
-- Sessions long expired are deleted now and then (authsvc.Store.
-- DeleteExpiredSessions); find them by their expiry. Built CONCURRENTLY:
-- the table gains a row per login and may be large by the time this runs,
-- and a plain CREATE INDEX would hold logins (session inserts) of the
-- instances still running until it is built. A build cut short leaves an
-- invalid index that IF NOT EXISTS keeps: drop it and start again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_expires ON auth.sessions (expires_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS auth.sessions_expires;
