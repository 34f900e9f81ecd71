-- +goose NO TRANSACTION
-- +goose Up
-- A new name is checked against the folder's names with their ASCII
-- letters compared case-blind (docservice nameReserved), once per
-- candidate name: find them by folder and lower-cased name. Not unique:
-- names that differ only in case from before this check stay as they are.
-- Built CONCURRENTLY, so that running instances keep taking uploads while
-- it builds; a build cut short leaves an invalid index, dropped first so
-- that the next start builds it again.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'docs' AND c.relname = 'documents_folder_lower_name' AND NOT i.indisvalid) THEN
        DROP INDEX docs.documents_folder_lower_name;
    END IF;
END $$;
-- +goose StatementEnd
CREATE INDEX CONCURRENTLY IF NOT EXISTS documents_folder_lower_name ON docs.documents (category_id, lower(filename));

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS docs.documents_folder_lower_name;
