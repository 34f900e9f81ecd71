-- docservice's schema: categories (a tree of folders under STORAGE_DIR),
-- documents (metadata of the PDFs stored there) and their history.
-- A document's file lives at <category path>/<filename>, so renaming a
-- category changes one row per category, never one per document.

-- +goose Up
CREATE TABLE docs.categories (
    id          uuid PRIMARY KEY,
    parent_id   uuid REFERENCES docs.categories (id) ON DELETE RESTRICT,
    name        text NOT NULL CHECK (name <> '' AND position('/' IN name) = 0),
    -- Folder path relative to STORAGE_DIR: the sanitised names from the
    -- root, joined by '/'. Kept in step with the tree by the service.
    path        text NOT NULL CHECK (path <> ''),
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Case-insensitive: two folders differing only in case collide on macOS
-- and Windows file systems, where the tree may be copied or shared.
CREATE UNIQUE INDEX categories_path_key ON docs.categories (lower(path));
CREATE INDEX categories_parent_idx ON docs.categories (parent_id);

CREATE TABLE docs.documents (
    id                uuid PRIMARY KEY,
    -- NULL for documents ingested from the watched folder without an owner.
    owner_id          uuid,
    category_id       uuid REFERENCES docs.categories (id) ON DELETE RESTRICT,
    -- The file's name on disk inside its category folder (sanitised, unique).
    filename          text NOT NULL CHECK (filename <> '' AND position('/' IN filename) = 0),
    original_filename text,
    title             text,
    size              bigint NOT NULL CHECK (size >= 0),
    sha256            text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    page_count        integer,
    encrypted         boolean NOT NULL DEFAULT false,
    source            text NOT NULL CHECK (source IN ('upload', 'watch')),
    archived_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- One row per file on disk. The file system is the arbiter of collisions
-- (link(2) refuses a taken name; case-insensitively where the file system
-- is); this index only catches a mismatch rather than two rows sharing a file.
CREATE UNIQUE INDEX documents_location_key ON docs.documents (category_id, filename) NULLS NOT DISTINCT;
-- Duplicate content for the same owner is reported, never stored twice.
CREATE UNIQUE INDEX documents_owner_sha256_key ON docs.documents (owner_id, sha256) WHERE owner_id IS NOT NULL;
CREATE INDEX documents_owner_created_idx ON docs.documents (owner_id, created_at DESC);
CREATE INDEX documents_category_idx ON docs.documents (category_id);

-- What happened to each document and who did it (upload, rename, move,
-- archive, restore): the history DESIGN.md keeps in PostgreSQL.
CREATE TABLE docs.document_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES docs.documents (id) ON DELETE CASCADE,
    actor_id    uuid,
    action      text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX document_events_document_idx ON docs.document_events (document_id, at);

-- +goose Down
DROP TABLE docs.document_events;
DROP TABLE docs.documents;
DROP TABLE docs.categories;
