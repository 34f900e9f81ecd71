package docservice

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Orphan is something in the document tree that no row accounts for: a
// file no document names, a folder no category names, or a category's
// folder that cannot be read (Err set: a file or a symlink out of the tree
// where the folder should be).
type Orphan struct {
	Path string // relative to STORAGE_DIR
	Err  error
}

// Orphans finds what is in the document tree that no row accounts for, as
// paths relative to STORAGE_DIR (a stray folder's contents are not
// listed). They are invisible to users: a crash between linking a file
// into place and its COMMIT, or between a move's COMMIT and the removal
// of the old name, leaves one; so does a file copied in by hand. The
// no-remove policy keeps them: this only finds them, for an operator.
//
// The tree is read without locks, a folder at a time and its entries
// orphanBatch at a time, so that neither memory nor any lock grows with a
// folder's size. What looks unaccounted for is then checked again, after
// pause, one entry at a time under the tree lock (shared: no category is
// renamed meanwhile) and the folder's lock (no upload or move is placing
// a name in it meanwhile); only what that check confirms is returned, at
// most maxOrphans (more reports whether there were others).
func (s *Store) Orphans(ctx context.Context, files *FileStore, pause func(context.Context) error) (found []Orphan, more bool, err error) {
	suspects, more, err := s.orphanSuspects(ctx, files)
	if err != nil || len(suspects) == 0 {
		return nil, more, err
	}
	if err := pause(ctx); err != nil {
		return nil, more, err
	}
	for _, o := range suspects {
		if o.Err != nil {
			found = append(found, o)
			continue
		}
		yes, err := s.confirmOrphan(ctx, files, o.Path)
		if err != nil {
			return nil, more, dbErr(err)
		}
		if yes {
			found = append(found, o)
		}
	}
	slices.SortFunc(found, func(a, b Orphan) int { return strings.Compare(a.Path, b.Path) })
	return found, more, nil
}

// maxOrphans bounds the entries Orphans collects and checks.
const maxOrphans = 1000

// orphanBatch is how many entries of a folder are read and looked up at a
// time.
const orphanBatch = 1024

// orphanSuspects is Orphans' first, unlocked read of the tree.
func (s *Store) orphanSuspects(ctx context.Context, files *FileStore) (suspects []Orphan, more bool, err error) {
	type folder struct {
		id   *uuid.UUID
		path string
	}
	folders := []folder{{path: ""}}
	categories := map[string]bool{} // at most maxCategories
	rows, err := s.pool.Query(ctx, `SELECT id, path FROM docs.categories`)
	if err != nil {
		return nil, false, dbErr(err)
	}
	for rows.Next() {
		var id uuid.UUID
		var p string
		if err := rows.Scan(&id, &p); err != nil {
			rows.Close()
			return nil, false, dbErr(err)
		}
		folders = append(folders, folder{&id, p})
		categories[p] = true
	}
	if err := rows.Err(); err != nil {
		return nil, false, dbErr(err)
	}
	add := func(o Orphan) {
		if len(suspects) < maxOrphans {
			suspects = append(suspects, o)
		} else {
			more = true
		}
	}
	for _, f := range folders {
		var qerr error // the database's, apart from the folder's own
		err := files.ReadDirBatches(f.path, orphanBatch, func(entries []fs.DirEntry) error {
			var names []string
			for _, e := range entries {
				p := path.Join(f.path, e.Name())
				switch {
				case f.path == "" && e.Name() == tmpDir:
				case categories[p]:
					// Read as the category's folder (whatever is there
					// instead of one is reported then).
				case e.IsDir():
					add(Orphan{Path: p})
				default:
					names = append(names, e.Name())
				}
			}
			if len(names) == 0 {
				return nil
			}
			rows, err := s.pool.Query(ctx, `SELECT filename FROM docs.documents
				WHERE `+inFolder(f.id)+` AND filename = ANY($2)`, f.id, names)
			if err != nil {
				qerr = dbErr(err)
				return qerr
			}
			recorded := make(map[string]bool, len(names))
			var name string
			if _, err := pgx.ForEachRow(rows, []any{&name}, func() error { recorded[name] = true; return nil }); err != nil {
				qerr = dbErr(err)
				return qerr
			}
			for _, n := range names {
				if !recorded[n] {
					add(Orphan{Path: path.Join(f.path, n)})
				}
			}
			return nil
		})
		switch {
		case qerr != nil:
			return nil, more, qerr
		case f.path == "" && err != nil:
			return nil, more, err // the tree itself cannot be read
		case errors.Is(err, fs.ErrNotExist):
			// A category whose folder is not made yet, or that was
			// renamed meanwhile: its new folder is read under its new
			// name, or checked again.
		case err != nil:
			add(Orphan{Path: f.path, Err: err})
		}
	}
	return suspects, more, nil
}

// confirmOrphan checks again, under the tree lock (shared) and the
// folder's lock, that nothing accounts for rel: that it is still there,
// and that no category (a folder) or document (a file) names it.
func (s *Store) confirmOrphan(ctx context.Context, files *FileStore, rel string) (yes bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, treeLockID); err != nil {
			return err
		}
		fi, err := files.Stat(rel)
		if err != nil {
			return nil // gone: a move's old name, removed after its COMMIT
		}
		if fi.IsDir() {
			return tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM docs.categories WHERE path = $1)`, rel).Scan(&yes)
		}
		dir, name := path.Split(rel)
		var cat *uuid.UUID
		if dir = path.Clean(dir); dir != "." {
			var id uuid.UUID
			if err := tx.QueryRow(ctx, `SELECT id FROM docs.categories WHERE path = $1`, dir).Scan(&id); errors.Is(err, pgx.ErrNoRows) {
				return nil // its folder is no category's now: that folder is the stray
			} else if err != nil {
				return err
			}
			cat = &id
		}
		// Uploads and moves hold this lock from choosing a name in the
		// folder to their COMMIT (nameReserved).
		if err := lockFolder(ctx, tx, cat); err != nil {
			return err
		}
		if _, err := files.Stat(rel); err != nil {
			return nil
		}
		return tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM docs.documents
			WHERE `+inFolder(cat)+` AND filename = $2)`, cat, name).Scan(&yes)
	})
	return yes, err
}

// maxOrphansLogged bounds the warnings one report logs; the count says
// how many there are in all.
const maxOrphansLogged = 100

// reportOrphans logs what Orphans finds, once, in the background of a
// start: nothing is removed.
func reportOrphans(ctx context.Context, store *Store, files *FileStore, log *slog.Logger) {
	found, more, err := store.Orphans(ctx, files, func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
			return nil
		}
	})
	switch {
	case errors.Is(err, context.Canceled):
		return
	case err != nil:
		log.Warn("could not check STORAGE_DIR for files without a document", "err", err)
		return
	}
	for _, o := range found[:min(len(found), maxOrphansLogged)] {
		if o.Err != nil {
			log.Warn("a category's folder in STORAGE_DIR cannot be read", "path", o.Path, "err", o.Err)
		} else {
			log.Warn("in STORAGE_DIR but no document or category names it; kept (no-remove policy)", "path", o.Path)
		}
	}
	if len(found) > 0 || more {
		log.Warn("STORAGE_DIR holds files or folders without a document or category; see the warnings above",
			"count", len(found), "more_unchecked", more)
	}
}
