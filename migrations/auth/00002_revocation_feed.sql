-- +goose Up
-- The revocation feed (GET /internal/revocations) reads recent cut-offs and
-- ended sessions every second for every edge; keep both lookups on an index.
CREATE INDEX users_tokens_valid_after ON auth.users (tokens_valid_after);
CREATE INDEX sessions_revoked ON auth.sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
DROP INDEX auth.sessions_revoked;
DROP INDEX auth.users_tokens_valid_after;
