package docservice

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Orphans lists what is in the document tree that no row accounts for:
// files no document names and folders no category names, as paths
// relative to STORAGE_DIR (a stray folder's contents are not listed). They
// are invisible to users, and a crash between linking a file into place and
// its COMMIT, or between a move's COMMIT and the removal of the old name,
// leaves one; so does a file copied in by hand. The no-remove policy keeps
// them: this only reports them, for an operator to look at.
//
// Each folder is read under the tree lock, taken exclusively, so no upload
// or move is placing a file in it meanwhile; what a move leaves to remove
// after its COMMIT is gone a moment later, so the tree is read twice,
// with pause between, and only what both reads found is reported.
func (s *Store) Orphans(ctx context.Context, files *FileStore, pause func(context.Context) error) ([]string, error) {
	first, err := s.orphans(ctx, files)
	if err != nil || len(first) == 0 {
		return nil, err
	}
	if err := pause(ctx); err != nil {
		return nil, err
	}
	second, err := s.orphans(ctx, files)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(first, func(p string) bool { _, found := slices.BinarySearch(second, p); return !found }), nil
}

// orphans is one read of the tree for Orphans, sorted.
func (s *Store) orphans(ctx context.Context, files *FileStore) ([]string, error) {
	type folder struct {
		id   *uuid.UUID
		path string
	}
	folders := []folder{{path: ""}}
	rows, err := s.pool.Query(ctx, `SELECT id, path FROM docs.categories`)
	if err != nil {
		return nil, dbErr(err)
	}
	categories := map[string]bool{}
	for rows.Next() {
		var f folder
		var id uuid.UUID
		if err := rows.Scan(&id, &f.path); err != nil {
			rows.Close()
			return nil, dbErr(err)
		}
		f.id = &id
		folders = append(folders, f)
		categories[f.path] = true
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(err)
	}
	var found []string
	for _, f := range folders {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, treeLockID); err != nil {
				return err
			}
			entries, err := files.ReadDir(f.path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a category whose folder is not made yet, or was renamed meanwhile
			} else if err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT filename FROM docs.documents WHERE category_id IS NOT DISTINCT FROM $1`, f.id)
			if err != nil {
				return err
			}
			names, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			recorded := make(map[string]bool, len(names))
			for _, n := range names {
				recorded[n] = true
			}
			for _, e := range entries {
				p := path.Join(f.path, e.Name())
				switch {
				case f.path == "" && e.Name() == tmpDir:
				case e.IsDir() && categories[p]:
				case !e.IsDir() && recorded[e.Name()]:
				default:
					found = append(found, p)
				}
			}
			return nil
		})
		if err != nil {
			return nil, dbErr(err)
		}
	}
	slices.Sort(found)
	return found, nil
}

// maxOrphansLogged bounds the warnings one report logs; the count says
// how many there are in all.
const maxOrphansLogged = 100

// reportOrphans logs what Orphans finds, once, in the background of a
// start: nothing is removed.
func reportOrphans(ctx context.Context, store *Store, files *FileStore, log *slog.Logger) {
	found, err := store.Orphans(ctx, files, func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
			return nil
		}
	})
	switch {
	case errors.Is(err, context.Canceled):
	case err != nil:
		log.Warn("could not check STORAGE_DIR for files without a document", "err", err)
	case len(found) > 0:
		for _, p := range found[:min(len(found), maxOrphansLogged)] {
			log.Warn("in STORAGE_DIR but no document or category names it; kept (no-remove policy)", "path", p)
		}
		log.Warn("STORAGE_DIR holds files or folders without a document or category; see the warnings above",
			"count", len(found))
	}
}
