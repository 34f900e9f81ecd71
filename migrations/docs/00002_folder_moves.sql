-- A category rename moves its folder with rename(2) inside the transaction
-- that changes the rows: a crash between the two leaves the folder where
-- the committed rows do not look for it. Each such move is written here
-- (and committed) before the folder moves, and removed once the
-- transaction's outcome is known; docservice's start-up settles whatever a
-- crash left: the folder goes where the committed rows say.

-- +goose Up
CREATE TABLE docs.folder_moves (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    category_id uuid NOT NULL,
    old_path    text NOT NULL,
    new_path    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE docs.folder_moves;
