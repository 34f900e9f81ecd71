package docservice

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// MaxCategoryPathBytes bounds a category's path (its names joined by "/").
// PostgreSQL's index on lower(path) takes at most about 2 700 bytes, and
// the path plus a file name must stay well within PATH_MAX (4 096) for the
// tools that read the tree: ten levels of 200-byte names.
const MaxCategoryPathBytes = 2000

// Every user may create categories, and every user lists them all, so
// their number is bounded (found in review: one account made 20 000 in 20
// s, after which every listing was 12.7 MB). Variables, for the tests.
var (
	// maxCategoriesPerUser is how many a user who is not a manager may
	// have created (and not deleted).
	maxCategoriesPerUser = 1000
	// maxCategories is how many the tree may hold for a user who is not a
	// manager to create one more.
	maxCategories = 10000
)

const catColumns = `c.id, c.parent_id, c.name, c.path, c.created_by,
	(SELECT count(*) FROM docs.documents d WHERE d.category_id = c.id), c.created_at, c.updated_at`

func scanCategory(row pgx.Row) (Category, error) {
	var c Category
	err := row.Scan(&c.ID, &c.ParentID, &c.Name, &c.Path, &c.CreatedBy, &c.DocumentCount, &c.CreatedAt, &c.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	return c, dbErr(err)
}

// ListCategories returns every category, ordered by path (a tree walk).
func (s *Store) ListCategories(ctx context.Context) ([]Category, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+catColumns+` FROM docs.categories c ORDER BY lower(c.path)`)
	if err != nil {
		return nil, dbErr(err)
	}
	cats, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Category, error) { return scanCategory(r) })
	return cats, dbErr(err)
}

// GetCategory loads one category.
func (s *Store) GetCategory(ctx context.Context, id uuid.UUID) (Category, error) {
	return scanCategory(s.pool.QueryRow(ctx, `SELECT `+catColumns+` FROM docs.categories c WHERE c.id = $1`, id))
}

// CreateCategory adds a category named name (sanitised) under parent. Its
// folder is created on first use. ErrNameTaken when the folder path is
// already a category's (case-insensitively); ErrTooMany when the tree, or
// the actor unless a manager, has as many as allowed.
func (s *Store) CreateCategory(ctx context.Context, actor uuid.UUID, manager bool, parent *uuid.UUID, name string) (Category, error) {
	id := uuid.New()
	var c Category
	ran, err := s.runTx(ctx, func(tx pgx.Tx) error {
		// Shared, as a rename of an ancestor (exclusive) rewrites the
		// paths below it in one statement, which would miss this row.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, treeLockID); err != nil {
			return err
		}
		// One user's creations are counted one at a time (their own
		// lock), so concurrent ones cannot all pass the last free place;
		// the tree's bound may be passed by as many as create at once.
		var mine, all int
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('docs.categories.created_by:' || $1::text, 0))`,
			actor); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM docs.categories WHERE created_by = $1),
			(SELECT count(*) FROM docs.categories)`, actor).Scan(&mine, &all); err != nil {
			return err
		}
		// Managers are bound by neither: accounts that anyone may
		// register could otherwise fill the tree and lock them out too.
		if !manager && (all >= maxCategories || mine >= maxCategoriesPerUser) {
			return ErrTooMany
		}
		p := name
		if parent != nil {
			var pp string
			if err := tx.QueryRow(ctx, `SELECT path FROM docs.categories WHERE id = $1 FOR SHARE`, *parent).
				Scan(&pp); errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("parent: %w", ErrNotFound)
			} else if err != nil {
				return err
			}
			p = pp + "/" + name
		}
		if len(p) > MaxCategoryPathBytes {
			return ErrPathTooLong
		}
		_, err := tx.Exec(ctx, `INSERT INTO docs.categories (id, parent_id, name, path, created_by) VALUES ($1, $2, $3, $4, $5)`,
			id, parent, name, p, actor)
		if isUniqueViolation(err, "categories_path_key") {
			return ErrNameTaken
		}
		if err != nil {
			return err
		}
		// Read in the transaction: the commit is the last step, so a
		// failure after it cannot be answered "nothing was changed".
		c, err = scanCategory(tx.QueryRow(ctx, `SELECT `+catColumns+` FROM docs.categories c WHERE c.id = $1`, id))
		return err
	})
	if err != nil && ran {
		// The COMMIT's own failure: the category may exist.
		switch yes, known := s.landed(ctx, `SELECT EXISTS (SELECT 1 FROM docs.categories WHERE id = $1)`, id); {
		case yes:
			err = nil
		case !known:
			err = errors.Join(err, errCommitUnknown)
		}
	}
	if err != nil {
		return Category{}, dbErr(err)
	}
	return c, nil
}

// FolderMover moves a category's folder from oldPath to newPath.
type FolderMover func(oldPath, newPath string) error

// UpdateCategory renames and/or re-parents a category. The folder moves
// with one rename(2) while the tree lock is held exclusively; descendants'
// paths follow in the same transaction. If the transaction then fails, the
// folder is moved back.
func (s *Store) UpdateCategory(ctx context.Context, id uuid.UUID, name *string, parentSet bool, parent *uuid.UUID,
	move FolderMover) (Category, error) {
	var undo func() error
	var movedTo string // the folder's new path, once moved
	// The move journal is written on a connection of its own, taken
	// before the tree lock: waiting for one while holding the lock could
	// wait for requests that wait for the lock. Only the move whose turn
	// it is holds it while it waits for the transaction's (see moveTurn).
	select {
	case s.moveTurn <- struct{}{}:
		defer func() { <-s.moveTurn }()
	case <-ctx.Done():
		return Category{}, dbErr(ctx.Err())
	}
	jc, err := s.pool.Acquire(ctx)
	if err != nil {
		return Category{}, dbErr(err)
	}
	defer jc.Release()
	var journalID int64
	var out Category
	ran, err := s.runTx(ctx, func(tx pgx.Tx) (err error) {
		// Whichever way the change succeeds, its answer is read in the
		// transaction: the commit is the change's last step.
		defer func() {
			if err == nil {
				out, err = scanCategory(tx.QueryRow(ctx, `SELECT `+catColumns+` FROM docs.categories c WHERE c.id = $1`, id))
			}
		}()
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, treeLockID); err != nil {
			return err
		}
		if err := settleFolderMoves(ctx, tx, move); err != nil {
			return err
		}
		cur, err := scanCategory(tx.QueryRow(ctx, `SELECT `+catColumns+` FROM docs.categories c WHERE c.id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		newName, newParent := cur.Name, cur.ParentID
		if name != nil {
			newName = *name
		}
		if parentSet {
			newParent = parent
		}
		newPath := newName
		if newParent != nil {
			if *newParent == id {
				return ErrInvalidMove
			}
			var pp string
			if err := tx.QueryRow(ctx, `SELECT path FROM docs.categories WHERE id = $1`, *newParent).
				Scan(&pp); errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("parent: %w", ErrNotFound)
			} else if err != nil {
				return err
			}
			if strings.HasPrefix(strings.ToLower(pp)+"/", strings.ToLower(cur.Path)+"/") {
				return ErrInvalidMove // into itself or a descendant
			}
			newPath = pp + "/" + newName
		}
		if newPath == cur.Path {
			if newName != cur.Name || !sameID(newParent, cur.ParentID) {
				_, err := tx.Exec(ctx, `UPDATE docs.categories SET name = $2, parent_id = $3, updated_at = now() WHERE id = $1`,
					id, newName, newParent)
				return err
			}
			return nil
		}
		// Its sub-categories' paths grow as much as its own.
		var deepest int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(octet_length(path)), 0) FROM docs.categories WHERE path LIKE $1 ESCAPE '\'`,
			likeEscape(cur.Path)+"/%").Scan(&deepest); err != nil {
			return err
		}
		if len(newPath) > MaxCategoryPathBytes || deepest-len(cur.Path)+len(newPath) > MaxCategoryPathBytes {
			return ErrPathTooLong
		}
		var taken bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM docs.categories WHERE lower(path) = lower($1) AND id <> $2)`,
			newPath, id).Scan(&taken); err != nil {
			return err
		}
		if taken {
			return ErrNameTaken
		}
		if _, err := tx.Exec(ctx, `UPDATE docs.categories SET name = $2, parent_id = $3, path = $4, updated_at = now()
			WHERE id = $1`, id, newName, newParent, newPath); err != nil {
			if isUniqueViolation(err, "categories_path_key") {
				return ErrNameTaken
			}
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE docs.categories SET path = $2 || substr(path, length($1) + 1), updated_at = now()
			WHERE path LIKE $3 ESCAPE '\'`, cur.Path, newPath, likeEscape(cur.Path)+"/%"); err != nil {
			if isUniqueViolation(err, "categories_path_key") {
				return ErrNameTaken
			}
			return err
		}
		// Committed before the folder moves, so that a crash from here on
		// leaves a note for start-up (SettleFolderMoves).
		if err := jc.QueryRow(ctx, `INSERT INTO docs.folder_moves (category_id, old_path, new_path)
			VALUES ($1, $2, $3) RETURNING id`, id, cur.Path, newPath).Scan(&journalID); err != nil {
			return err
		}
		if err := move(cur.Path, newPath); err != nil {
			return err
		}
		undo = func() error { return move(newPath, cur.Path) }
		movedTo = newPath
		return nil
	})
	settled := true // the folder is where the rows say (or will be, after undo)
	if err != nil && ran && undo != nil {
		// The folder is at its new path; keep it there if the rows say so.
		// If the database cannot tell, it stays: moving it back would be
		// as likely wrong.
		switch yes, known := s.landed(ctx, `SELECT path = $2 FROM docs.categories WHERE id = $1`, id, movedTo); {
		case yes:
			err = nil
		case !known:
			undo, settled = nil, false
			err = errors.Join(err, errCommitUnknown)
		}
	}
	if err != nil && undo != nil {
		if uerr := undo(); uerr != nil {
			settled = false
			err = errors.Join(err, fmt.Errorf("move folder back: %w", uerr))
		}
	}
	if journalID != 0 && settled {
		// A note left behind is harmless: settling it finds nothing to do.
		_, _ = jc.Exec(context.WithoutCancel(ctx), `DELETE FROM docs.folder_moves WHERE id = $1`, journalID)
	}
	if err != nil {
		return Category{}, dbErr(err)
	}
	return out, nil
}

// SettleFolderMoves finishes what a crash interrupted: each folder a
// category rename was moving goes where the committed rows say (its new
// path if the rename committed, else back to its old one). Run calls it at
// start; every category rename calls it first too.
func (s *Store) SettleFolderMoves(ctx context.Context, move FolderMover) error {
	return dbErr(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, treeLockID); err != nil {
			return err
		}
		return settleFolderMoves(ctx, tx, move)
	}))
}

// settleFolderMoves is SettleFolderMoves inside tx, which holds the tree
// lock exclusively (so no rename is under way).
func settleFolderMoves(ctx context.Context, tx pgx.Tx, move FolderMover) error {
	type note struct {
		id       int64
		old, new string
		cur      *string // the category's committed path; nil: deleted since
	}
	rows, err := tx.Query(ctx, `SELECT m.id, m.old_path, m.new_path, c.path
		FROM docs.folder_moves m LEFT JOIN docs.categories c ON c.id = m.category_id ORDER BY m.id`)
	if err != nil {
		return err
	}
	notes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (n note, err error) {
		return n, r.Scan(&n.id, &n.old, &n.new, &n.cur)
	})
	if err != nil {
		return err
	}
	for _, n := range notes {
		var err error
		switch {
		case n.cur != nil && *n.cur == n.new:
			err = move(n.old, n.new) // a no-op when old is gone
		case n.cur != nil && *n.cur == n.old:
			err = move(n.new, n.old)
		}
		// ErrTargetExists: the folder the rows name is there already.
		if err != nil && !errors.Is(err, ErrTargetExists) {
			return fmt.Errorf("settle the move of folder %q to %q: %w", n.old, n.new, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM docs.folder_moves WHERE id = $1`, n.id); err != nil {
			return err
		}
	}
	return nil
}

func sameID(a, b *uuid.UUID) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// DeleteCategory removes an empty category: ErrNotEmpty when it holds a
// document (archived ones included: their files are still in the folder)
// or a sub-category. removeDir removes the folder if it is empty on disk.
func (s *Store) DeleteCategory(ctx context.Context, id uuid.UUID, removeDir func(path string) error) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, treeLockID); err != nil {
			return err
		}
		var path string
		var docs, children int64
		err := tx.QueryRow(ctx, `SELECT c.path,
				(SELECT count(*) FROM docs.documents d WHERE d.category_id = c.id),
				(SELECT count(*) FROM docs.categories k WHERE k.parent_id = c.id)
			FROM docs.categories c WHERE c.id = $1 FOR UPDATE`, id).Scan(&path, &docs, &children)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if docs > 0 || children > 0 {
			return fmt.Errorf("%w: %d documents, %d sub-categories", ErrNotEmpty, docs, children)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM docs.categories WHERE id = $1`, id); err != nil {
			return err
		}
		// Last, so a failure above leaves the folder alone; if the commit
		// then fails, the folder is simply made again on next use.
		return removeDir(path)
	})
	return dbErr(err)
}
