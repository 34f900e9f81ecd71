-- +goose Up
-- Accounts. Emails are stored normalised (trimmed, lower-case) and unique.
CREATE TABLE auth.users (
    id                 uuid PRIMARY KEY,
    email              text NOT NULL,
    hashed_password    text NOT NULL,
    role               text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    is_active          boolean NOT NULL DEFAULT true,
    dashboard_app_ids  jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- Access tokens issued before this instant are void (password change,
    -- deactivation, role change); the edge follows it through the revocation feed.
    tokens_valid_after timestamptz NOT NULL DEFAULT '1970-01-01 00:00:00+00',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_normalised CHECK (email = lower(btrim(email)) AND email <> '')
);
CREATE UNIQUE INDEX users_email_key ON auth.users (email);
CREATE INDEX users_active_admins ON auth.users (id) WHERE role = 'admin' AND is_active;

CREATE TABLE auth.profiles (
    user_id     uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    full_name   text,
    phone       text,
    job_title   text,
    department  text,
    location    text,
    bio         text,
    avatar_url  text,
    timezone    text,
    locale      text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth.groups (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Names are unique regardless of case: "Editors" and "editors" would be
-- indistinguishable in an access rule.
CREATE UNIQUE INDEX groups_name_key ON auth.groups (lower(name));

CREATE TABLE auth.group_memberships (
    group_id  uuid NOT NULL REFERENCES auth.groups (id) ON DELETE CASCADE,
    user_id   uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_memberships_user ON auth.group_memberships (user_id);

-- One row per login: the sid claim of its access tokens. Refresh tokens and
-- logout will hang off it; revoked_at voids every token of the session.
CREATE TABLE auth.sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    user_agent   text NOT NULL DEFAULT '',
    remote_addr  text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON auth.sessions (user_id);

-- +goose Down
DROP TABLE auth.sessions;
DROP TABLE auth.group_memberships;
DROP TABLE auth.groups;
DROP TABLE auth.profiles;
DROP TABLE auth.users;
