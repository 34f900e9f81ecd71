package docservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors of the storage layer; handlers map them to statuses.
var (
	ErrNotFound      = errors.New("not found")
	ErrDuplicate     = errors.New("duplicate content")
	ErrNameTaken     = errors.New("name taken")
	ErrNotEmpty      = errors.New("category not empty")
	ErrInvalidMove   = errors.New("invalid category move")
	ErrPathTooLong   = errors.New("category path too long")
	ErrDBUnavailable = errors.New("database unavailable")
	ErrTooMany       = errors.New("too many categories")
	ErrBusy          = errors.New("busy")
)

// treeLockID is the advisory lock that orders folder changes: placing or
// moving a document and creating a category take it shared, renaming or
// deleting a category takes it exclusively, so a file is never linked into
// a folder that is being moved away, nor a category made under one
// (across every docservice instance).
const treeLockID int64 = 0x646f6373_74726565 // "docstree"

// Store is docservice's storage layer: plain SQL on the docs schema.
type Store struct {
	pool *pgxpool.Pool
	// moveTurn lets one category move at a time hold two of the pool's
	// connections (UpdateCategory). Moves take the tree lock exclusively,
	// so they run one at a time anyway; without this, as many moves as
	// the pool has connections each held one and waited for a second for
	// ever, and every request needing the database waited with them
	// (found in review: 4 concurrent renames on a 2-core machine).
	moveTurn chan struct{}
}

// NewStore wraps pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool, moveTurn: make(chan struct{}, 1)} }

// Document is a stored PDF's metadata.
type Document struct {
	ID               uuid.UUID  `json:"id"`
	OwnerID          *uuid.UUID `json:"owner_id"`
	CategoryID       *uuid.UUID `json:"category_id"`
	CategoryPath     *string    `json:"category_path"`
	Filename         string     `json:"filename"`
	OriginalFilename *string    `json:"original_filename"`
	Title            *string    `json:"title"`
	Size             int64      `json:"size"`
	SHA256           string     `json:"sha256"`
	PageCount        *int       `json:"page_count"`
	Encrypted        bool       `json:"encrypted"`
	Source           string     `json:"source"`
	Archived         bool       `json:"archived"`
	ArchivedAt       *time.Time `json:"archived_at"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
}

// RelPath is the file's path inside STORAGE_DIR.
func (d *Document) RelPath() string {
	if d.CategoryPath == nil {
		return d.Filename
	}
	return *d.CategoryPath + "/" + d.Filename
}

// Category is a folder of documents; nested categories are nested folders.
type Category struct {
	ID            uuid.UUID  `json:"id"`
	ParentID      *uuid.UUID `json:"parent_id"`
	Name          string     `json:"name"`
	Path          string     `json:"path"`
	CreatedBy     *uuid.UUID `json:"created_by"`
	DocumentCount int64      `json:"document_count"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

const docColumns = `d.id, d.owner_id, d.category_id, c.path, d.filename, d.original_filename, d.title, d.size,
	d.sha256, d.page_count, d.encrypted, d.source, d.archived_at IS NOT NULL, d.archived_at, d.created_at, d.updated_at`

const docFrom = ` FROM docs.documents d LEFT JOIN docs.categories c ON c.id = d.category_id `

func scanDocument(row pgx.Row) (Document, error) {
	var d Document
	err := row.Scan(&d.ID, &d.OwnerID, &d.CategoryID, &d.CategoryPath, &d.Filename, &d.OriginalFilename, &d.Title,
		&d.Size, &d.SHA256, &d.PageCount, &d.Encrypted, &d.Source, &d.Archived, &d.ArchivedAt, &d.CreatedAt, &d.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, ErrNotFound
	}
	return d, dbErr(err)
}

// fileError marks a file-system failure inside a transaction, so that it
// is not mistaken for a database one.
type fileError struct{ err error }

func (e *fileError) Error() string { return e.err.Error() }
func (e *fileError) Unwrap() error { return e.err }

// dbErr marks errors that are not answers from PostgreSQL (no connection,
// connection lost, timeouts) as ErrDBUnavailable, which handlers turn into
// 503: nothing was written, the client may retry. The service's own
// sentinels, file-system errors and PostgreSQL's answers pass unchanged.
func dbErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	for _, s := range []error{ErrNotFound, ErrDuplicate, ErrNameTaken, ErrNotEmpty, ErrInvalidMove, ErrPathTooLong, ErrTargetExists, ErrTooMany,
		ErrDBUnavailable, pgx.ErrNoRows, pgx.ErrTooManyRows} {
		if errors.Is(err, s) {
			return err
		}
	}
	var fe *fileError
	if errors.As(err, &fe) {
		return err
	}
	// The server's own refusals to serve (connection trouble, too many
	// connections or another lack of resources, shutting down or starting
	// up) are the database being unavailable too; other server errors are
	// about the statement.
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !unavailableCode(pgErr.Code) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrDBUnavailable, err)
}

// unavailableCode reports SQLSTATEs that mean the server cannot serve now:
// classes 08 (connection exception), 53 (insufficient resources) and 57P
// (operator intervention: shutdown, starting up).
func unavailableCode(code string) bool {
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "57P")
}

func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (constraint == "" || pgErr.ConstraintName == constraint)
}

// Visibility is who is asking, for the access rule of every read.
type Visibility struct {
	UserID     uuid.UUID
	All        bool // admins see every document
	WatchedToo bool // documents from the watched folder are visible to this user
}

// visibleSQL is the access rule; $1 user, $2 all, $3 watched.
const visibleSQL = `($2 OR d.owner_id = $1 OR ($3 AND d.source = 'watch'))`

// GetDocument loads a document the caller may see (ErrNotFound otherwise:
// other users' documents do not reveal their existence).
func (s *Store) GetDocument(ctx context.Context, v Visibility, id uuid.UUID) (Document, error) {
	return scanDocument(s.pool.QueryRow(ctx, `SELECT `+docColumns+docFrom+` WHERE d.id = $4 AND `+visibleSQL,
		v.UserID, v.All, v.WatchedToo, id))
}

// GetDocumentSettled is GetDocument once the changes under way are done:
// it reads the row as HoldDocument does, so it waits for a category rename
// (which holds the tree lock exclusively while its folder moves) and for a
// rename or move of this document to commit, for at most 2 s (ErrBusy).
func (s *Store) GetDocumentSettled(ctx context.Context, v Visibility, id uuid.UUID) (d Document, err error) {
	err = s.HoldDocument(ctx, v, id, func(got Document) { d = got })
	return d, err
}

// HoldDocument loads a document the caller may see and calls use with it
// while the document cannot move: the tree lock is held shared, so no
// category rename is under way or starts, and the row FOR SHARE, so the
// document is not renamed or moved (UpdateDocument locks it FOR UPDATE).
// While use runs, the path the row names holds this document's file and
// no other: a download that opens it there cannot get the file of another
// document that took a name this one had just freed. (Found in review:
// reading the row, then opening its path unlocked, served another user's
// PDF to 4 of 34 000 downloads raced against renames and uploads.)
func (s *Store) HoldDocument(ctx context.Context, v Visibility, id uuid.UUID, use func(Document)) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A download holds a pooled connection while it waits; a move
		// held up behind a queue of uploads into its folder must not let
		// downloads of its document take the whole pool (found in review:
		// six of them made /ready fail). They give up with 503 instead.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, treeLockID); err != nil {
			return err
		}
		if err := lockDocumentRow(ctx, tx, id, "FOR SHARE"); err != nil {
			return err
		}
		d, err := scanDocument(tx.QueryRow(ctx, `SELECT `+docColumns+docFrom+` WHERE d.id = $4 AND `+visibleSQL,
			v.UserID, v.All, v.WatchedToo, id))
		if err != nil {
			return err
		}
		use(d)
		return nil
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
		return fmt.Errorf("%w: the document is being moved: %w", ErrBusy, err)
	}
	return dbErr(err)
}

// lockDocumentRow locks a document's row (FOR SHARE or FOR UPDATE) in a
// statement of its own, before the row is read with its category. A
// statement that joins the category and locks the document, and waits
// for the lock, reads the document again after the wait but keeps the
// category row it joined before (PostgreSQL's EvalPlanQual re-check): a
// document moved meanwhile came out with no folder, and a download opened
// the top folder's file of the same name, another user's (found in
// review), while a second change of it worked from the wrong path. The
// read that follows is a statement of its own, so it sees the committed
// move whole.
func lockDocumentRow(ctx context.Context, tx pgx.Tx, id uuid.UUID, mode string) error {
	_, err := tx.Exec(ctx, `SELECT 1 FROM docs.documents WHERE id = $1 `+mode, id)
	return err
}

// FindBySHA256 returns owner's document with this content, if any.
func (s *Store) FindBySHA256(ctx context.Context, owner uuid.UUID, sum string) (Document, error) {
	return scanDocument(s.pool.QueryRow(ctx, `SELECT `+docColumns+docFrom+` WHERE d.owner_id = $1 AND d.sha256 = $2`,
		owner, sum))
}

// ListQuery selects and orders a page of documents.
type ListQuery struct {
	CategoryID    *uuid.UUID
	Uncategorised bool
	Search        string
	Archived      string // "false" (default), "true", "any"
	Source        string // "" or upload|watch
	Sort          string // a key of sortColumns, optionally prefixed by "-"
	Limit, Offset int
}

var sortColumns = map[string]string{
	"created_at": "d.created_at",
	"updated_at": "d.updated_at",
	"filename":   "lower(d.filename)",
	"title":      "lower(coalesce(d.title, d.filename))",
	"size":       "d.size",
	"page_count": "d.page_count",
}

// ListDocuments returns one page and the total matching.
func (s *Store) ListDocuments(ctx context.Context, v Visibility, q ListQuery) ([]Document, int64, error) {
	where := []string{visibleSQL}
	args := []any{v.UserID, v.All, v.WatchedToo}
	arg := func(x any) string {
		args = append(args, x)
		return fmt.Sprintf("$%d", len(args))
	}
	switch q.Archived {
	case "true":
		where = append(where, "d.archived_at IS NOT NULL")
	case "any":
	default:
		where = append(where, "d.archived_at IS NULL")
	}
	if q.Uncategorised {
		where = append(where, "d.category_id IS NULL")
	} else if q.CategoryID != nil {
		where = append(where, "d.category_id = "+arg(*q.CategoryID))
	}
	if q.Source != "" {
		where = append(where, "d.source = "+arg(q.Source))
	}
	if q.Search != "" {
		p := "%" + likeEscape(q.Search) + "%"
		a := arg(p)
		where = append(where, "(d.filename ILIKE "+a+" OR d.title ILIKE "+a+" OR d.original_filename ILIKE "+a+")")
	}
	order := "d.created_at DESC"
	if q.Sort != "" {
		key, desc := strings.CutPrefix(q.Sort, "-")
		col := sortColumns[key]
		dir := " ASC NULLS LAST"
		if desc {
			dir = " DESC NULLS LAST"
		}
		order = col + dir
	}
	cond := strings.Join(where, " AND ")
	var total int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*)`+docFrom+` WHERE `+cond, args...).Scan(&total); err != nil {
		return nil, 0, dbErr(err)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+docColumns+docFrom+` WHERE `+cond+
		` ORDER BY `+order+`, d.id LIMIT `+arg(q.Limit)+` OFFSET `+arg(q.Offset), args...)
	if err != nil {
		return nil, 0, dbErr(err)
	}
	docs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Document, error) { return scanDocument(r) })
	if err != nil {
		return nil, 0, dbErr(err)
	}
	return docs, total, nil
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// NewDocument is an upload about to be recorded.
type NewDocument struct {
	OwnerID          uuid.UUID
	CategoryID       *uuid.UUID
	OriginalFilename string
	Title            *string
	Size             int64
	SHA256           string
	PageCount        *int
	Encrypted        bool
}

// Placer gives the finished upload its name in folder dir and returns the
// name used; undo removes that name again if the row cannot be committed.
// reserved reports names that a row holds in dir (see nameReserved).
type Placer func(dir string, reserved func(string) (bool, error)) (name string, undo func() error, err error)

// nameReserved reports whether a document row other than self already
// holds name in category cat, its ASCII letters compared case-blind. The
// file system is asked too (a link over an existing name fails), but it
// cannot answer for a row whose file someone removed by hand, nor for
// case: on ext4 "Report.pdf" and "report.pdf" are two files, which a
// copy of the tree to NTFS or APFS would make one (found in review: two
// users' "Memo.pdf" and "memo.pdf" in one category). Category names are
// compared the same way.
//
// The rows cannot enforce that between two transactions (the unique key
// is byte for byte), so the first question takes the folder's lock, and
// placements in one folder take turns from there to their commit.
func nameReserved(ctx context.Context, tx pgx.Tx, cat *uuid.UUID, self uuid.UUID) func(string) (bool, error) {
	locked := false
	return func(name string) (bool, error) {
		if !locked {
			if err := lockFolder(ctx, tx, cat); err != nil {
				return false, dbErr(err)
			}
			locked = true
		}
		var taken bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM docs.documents
			WHERE `+inFolder(cat)+` AND lower(filename) = lower($2) AND id <> $3)`, cat, name, self).Scan(&taken)
		return taken, dbErr(err)
	}
}

// lockFolder takes folder cat's lock (nil: the top folder) until tx ends:
// placements in one folder take turns with it from choosing a name to
// their commit, and the orphan check waits for them with it.
func lockFolder(ctx context.Context, tx pgx.Tx, cat *uuid.UUID) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('docs.folder:' || coalesce($1::uuid::text, ''), 0))`, cat)
	return err
}

// inFolder is the SQL condition "in folder cat", cat being $1 (NULL for
// the top folder), spelt so that the indexes on (category_id, ...) serve
// it: IS NOT DISTINCT FROM uses none.
func inFolder(cat *uuid.UUID) string {
	if cat == nil {
		return `category_id IS NULL AND $1::uuid IS NULL`
	}
	return `category_id = $1`
}

// CreateDocument records an upload: in one transaction it locks the
// category's folder (shared), lets place link the file into it, and
// inserts the row. If anything after placing fails, the placed name is
// removed again, so there is never a row without its file nor a placed
// file without its row (short of a crash between link and commit, which
// leaves a complete file without a row, never a partial one).
func (s *Store) CreateDocument(ctx context.Context, nd NewDocument, place Placer) (Document, error) {
	id := uuid.New()
	var undo func() error
	var doc Document
	ran, err := s.runTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, treeLockID); err != nil {
			return err
		}
		dir := ""
		if nd.CategoryID != nil {
			if err := tx.QueryRow(ctx, `SELECT path FROM docs.categories WHERE id = $1 FOR SHARE`, *nd.CategoryID).
				Scan(&dir); errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("category: %w", ErrNotFound)
			} else if err != nil {
				return err
			}
		}
		name, u, err := place(dir, nameReserved(ctx, tx, nd.CategoryID, id))
		if err != nil {
			return err
		}
		undo = u
		if _, err := tx.Exec(ctx, `INSERT INTO docs.documents
			(id, owner_id, category_id, filename, original_filename, title, size, sha256, page_count, encrypted, source)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'upload')`,
			id, nd.OwnerID, nd.CategoryID, name, nd.OriginalFilename, nd.Title, nd.Size, nd.SHA256, nd.PageCount,
			nd.Encrypted); err != nil {
			if isUniqueViolation(err, "documents_owner_sha256_key") {
				return ErrDuplicate
			}
			return err
		}
		if err := addEvent(ctx, tx, id, &nd.OwnerID, "upload", map[string]any{"filename": name,
			"path": joinPath(dir, name)}); err != nil {
			return err
		}
		// Read back before the COMMIT: once it has landed, the answer is
		// the document, even if the database goes away right after.
		doc, err = scanDocument(tx.QueryRow(ctx, `SELECT `+docColumns+docFrom+` WHERE d.id = $1`, id))
		return err
	})
	if err != nil && ran {
		// The row may be there: then the placed file is its file.
		switch yes, known := s.landed(ctx, `SELECT EXISTS (SELECT 1 FROM docs.documents WHERE id = $1)`, id); {
		case yes:
			err = nil
		case !known:
			undo = nil
			err = errors.Join(err, errCommitUnknown)
		}
	}
	if err != nil {
		if undo != nil {
			if uerr := undo(); uerr != nil {
				err = errors.Join(err, fmt.Errorf("undo placement: %w", uerr))
			}
		}
		return Document{}, dbErr(err)
	}
	return doc, nil
}

// runTx runs fn in a transaction, like pgx.BeginFunc. ran reports that fn
// succeeded: an error with ran set is the COMMIT's own, whose outcome is
// unknown (the server may have committed before the connection dropped or
// the request was cancelled), so file changes made for it must not simply
// be undone: see landed.
func (s *Store) runTx(ctx context.Context, fn func(pgx.Tx) error) (ran bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		ran = true
		return nil
	})
	return ran, err
}

// commitCheckTimeout bounds how long landed keeps asking (a variable for
// the tests of a database that never comes back).
var commitCheckTimeout = 5 * time.Second

// landed asks, after a COMMIT whose outcome is unknown, whether its change
// is in the database: query selects one boolean. It uses a context of its
// own (the request's may be what was cancelled) and retries for up to
// commitCheckTimeout while the database does not answer. known is false
// when it never did.
func (s *Store) landed(ctx context.Context, query string, args ...any) (yes, known bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitCheckTimeout)
	defer cancel()
	for {
		if err := s.pool.QueryRow(ctx, query, args...).Scan(&yes); err == nil {
			return yes, true
		}
		select {
		case <-ctx.Done():
			return false, false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// errCommitUnknown marks a failure whose COMMIT may or may not have taken
// effect: the files are left so that both outcomes have theirs.
var errCommitUnknown = errors.New("the outcome of the commit is unknown; files left as they are for either outcome")

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func addEvent(ctx context.Context, tx pgx.Tx, doc uuid.UUID, actor *uuid.UUID, action string, details map[string]any) error {
	b, err := json.Marshal(details)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO docs.document_events (document_id, actor_id, action, details) VALUES ($1, $2, $3, $4)`,
		doc, actor, action, b)
	return err
}

// DocumentChange is a PATCH of a document.
type DocumentChange struct {
	Filename    *string    // new stored name (sanitised, ".pdf")
	Title       *string    // nil: unchanged
	ClearTitle  bool       // title: null
	CategorySet bool       // category_id was sent
	CategoryID  *uuid.UUID // nil with CategorySet: move to the top folder
}

// Mover links the file at oldRel into dir under name (suffix on
// collision, on disk or in reserved), returning the name used, a finish
// that removes the old name once the row is committed (if it is another
// name of the file at keep), and an undo for failure.
type Mover func(oldRel, dir, name string, reserved func(string) (bool, error)) (used string, finish func(keep string) error, undo func() error, err error)

// UpdateDocument renames and/or moves a document, and sets its title. The
// row is locked for the whole change, so concurrent changes of one
// document apply one after the other.
func (s *Store) UpdateDocument(ctx context.Context, v Visibility, actor uuid.UUID, id uuid.UUID, ch DocumentChange, move Mover) (Document, error) {
	var finish func(keep string) error
	var undo func() error
	var newRel string // the file's name once the row is committed
	var newCat *uuid.UUID
	var newName string
	var newTitle *string
	var out Document
	ran, err := s.runTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, treeLockID); err != nil {
			return err
		}
		if err := lockDocumentRow(ctx, tx, id, "FOR UPDATE"); err != nil {
			return err
		}
		cur, err := scanDocument(tx.QueryRow(ctx, `SELECT `+docColumns+docFrom+` WHERE d.id = $4 AND `+visibleSQL,
			v.UserID, v.All, v.WatchedToo, id))
		if err != nil {
			return err
		}
		var newDir string
		newCat = cur.CategoryID
		if cur.CategoryPath != nil {
			newDir = *cur.CategoryPath
		}
		if ch.CategorySet {
			newCat, newDir = ch.CategoryID, ""
			if ch.CategoryID != nil {
				if err := tx.QueryRow(ctx, `SELECT path FROM docs.categories WHERE id = $1 FOR SHARE`, *ch.CategoryID).
					Scan(&newDir); errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("category: %w", ErrNotFound)
				} else if err != nil {
					return err
				}
			}
		}
		newName = cur.Filename
		if ch.Filename != nil {
			newName = *ch.Filename
		}
		details := map[string]any{}
		sameCat := (newCat == nil && cur.CategoryID == nil) || (newCat != nil && cur.CategoryID != nil && *newCat == *cur.CategoryID)
		if !sameCat || newName != cur.Filename {
			used, f, u, err := move(cur.RelPath(), newDir, newName, nameReserved(ctx, tx, newCat, id))
			if err != nil {
				return err
			}
			finish, undo, newName = f, u, used
			if newRel = joinPath(newDir, used); newRel != cur.RelPath() {
				details["from"], details["to"] = cur.RelPath(), newRel
			}
		}
		newTitle = cur.Title
		if ch.ClearTitle {
			newTitle = nil
		} else if ch.Title != nil {
			newTitle = ch.Title
		}
		if _, err := tx.Exec(ctx, `UPDATE docs.documents SET category_id = $2, filename = $3, title = $4, updated_at = now()
			WHERE id = $1`, id, newCat, newName, newTitle); err != nil {
			return err
		}
		action := "update"
		if len(details) > 0 {
			action = "move"
		}
		if err := addEvent(ctx, tx, id, &actor, action, details); err != nil {
			return err
		}
		// The answer is read in the transaction: nothing but removing the
		// old name follows the commit.
		out, err = scanDocument(tx.QueryRow(ctx, `SELECT `+docColumns+docFrom+` WHERE d.id = $1`, id))
		return err
	})
	if err != nil && ran {
		// The COMMIT's own failure. With a move, both names of the file
		// exist until finish or undo: whichever the row names, it has its
		// file.
		switch yes, known := s.landed(ctx, `SELECT category_id IS NOT DISTINCT FROM $2 AND filename = $3
			AND title IS NOT DISTINCT FROM $4 FROM docs.documents WHERE id = $1`, id, newCat, newName, newTitle); {
		case yes:
			err = nil
		case !known:
			undo, finish = nil, nil
			err = errors.Join(err, errCommitUnknown)
		}
	}
	if err != nil {
		if undo != nil {
			if uerr := undo(); uerr != nil {
				err = errors.Join(err, fmt.Errorf("undo move: %w", uerr))
			}
		}
		return Document{}, dbErr(err)
	}
	if finish != nil {
		// The row now names the new path; the old name is a second link to
		// the same file. Failing to remove it leaves a harmless extra name.
		err := finish(newRel)
		if errors.Is(err, fs.ErrNotExist) {
			// A later rename of the document, committed meanwhile, may
			// have moved the file on from newRel: keep where it is now.
			if d, gerr := s.GetDocumentSettled(ctx, v, id); gerr == nil && d.RelPath() != newRel {
				err = finish(d.RelPath())
			}
		}
		if err != nil {
			return Document{}, fmt.Errorf("remove old name: %w", err)
		}
	}
	return out, nil
}

// SetArchived archives (DELETE) or restores a document. The file is never
// touched: archiving only hides the document from default listings.
func (s *Store) SetArchived(ctx context.Context, v Visibility, actor, id uuid.UUID, archived bool) (Document, error) {
	var d Document
	ran, err := s.runTx(ctx, func(tx pgx.Tx) error {
		var was bool
		err := tx.QueryRow(ctx, `SELECT d.archived_at IS NOT NULL FROM docs.documents d WHERE d.id = $4 AND `+visibleSQL+
			` FOR UPDATE`, v.UserID, v.All, v.WatchedToo, id).Scan(&was)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if was != archived { // else idempotent
			q := `UPDATE docs.documents SET archived_at = NULL, updated_at = now() WHERE id = $1`
			action := "restore"
			if archived {
				q = `UPDATE docs.documents SET archived_at = now(), updated_at = now() WHERE id = $1`
				action = "archive"
			}
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
			if err := addEvent(ctx, tx, id, &actor, action, map[string]any{}); err != nil {
				return err
			}
		}
		// Read in the transaction: the commit is the last step.
		d, err = scanDocument(tx.QueryRow(ctx, `SELECT `+docColumns+docFrom+` WHERE d.id = $1`, id))
		return err
	})
	if err != nil && ran {
		switch yes, known := s.landed(ctx, `SELECT (archived_at IS NOT NULL) = $2 FROM docs.documents WHERE id = $1`, id, archived); {
		case yes:
			err = nil
		case !known:
			err = errors.Join(err, errCommitUnknown)
		}
	}
	if err != nil {
		return Document{}, dbErr(err)
	}
	return d, nil
}

// Event is one entry of a document's history.
type Event struct {
	Action  string          `json:"action"`
	ActorID *uuid.UUID      `json:"actor_id"`
	Details json.RawMessage `json:"details"`
	At      time.Time       `json:"at"`
}

// History lists a document's events, oldest first.
func (s *Store) History(ctx context.Context, id uuid.UUID) ([]Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT action, actor_id, details, at FROM docs.document_events
		WHERE document_id = $1 ORDER BY at, id`, id)
	if err != nil {
		return nil, dbErr(err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		err := r.Scan(&e.Action, &e.ActorID, &e.Details, &e.At)
		return e, err
	})
	return evs, dbErr(err)
}
