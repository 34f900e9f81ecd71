-- +goose Up
-- Sessions long expired are deleted now and then (authsvc.Store.
-- DeleteExpiredSessions); find them by their expiry.
CREATE INDEX sessions_expires ON auth.sessions (expires_at);

-- +goose Down
DROP INDEX auth.sessions_expires;
