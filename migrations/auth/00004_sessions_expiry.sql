-- +goose NO TRANSACTION
-- +goose Up
-- Sessions long expired are deleted now and then (authsvc.Store.
-- DeleteExpiredSessions); find them by their expiry. Built CONCURRENTLY:
-- the table gains a row per login and may be large by the time this runs,
-- and a plain CREATE INDEX would hold logins (session inserts) of the
-- instances still running until it is built. A build cut short (the
-- instance killed meanwhile) leaves an invalid index of that name, which
-- IF NOT EXISTS would keep: it is dropped first, so the next start builds
-- it again.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'auth' AND c.relname = 'sessions_expires' AND NOT i.indisvalid) THEN
        DROP INDEX auth.sessions_expires;
    END IF;
END $$;
-- +goose StatementEnd
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_expires ON auth.sessions (expires_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS auth.sessions_expires;
