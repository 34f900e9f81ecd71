package authsvc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/text/unicode/norm"
)

// Sentinel errors of the storage layer; handlers map them to statuses.
var (
	ErrNotFound       = errors.New("not found")
	ErrEmailTaken     = errors.New("email already registered")
	ErrGroupNameTaken = errors.New("group name already taken")
	ErrAlreadyMember  = errors.New("already a member")
	ErrLastAdmin      = errors.New("last active admin")
)

// Store is authsvc's storage layer: plain SQL on the auth schema.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewStore wraps pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool, now: time.Now} }

// User is an account with the profile name the API shows next to it.
type User struct {
	ID              uuid.UUID `json:"id"`
	Email           string    `json:"email"`
	FullName        *string   `json:"full_name"`
	Role            string    `json:"role"`
	IsActive        bool      `json:"is_active"`
	IsSuperuser     bool      `json:"is_superuser"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	HashedPassword  string    `json:"-"`
	TokensNotBefore time.Time `json:"-"`
	// sessionStart is set by OpenSession: when the session began, by the
	// database clock that also stamps cut-offs.
	sessionStart time.Time
}

const userColumns = `u.id, u.email, p.full_name, u.role, u.is_active, u.role = 'admin', u.created_at, u.updated_at,
	u.hashed_password, u.tokens_valid_after`

const userFrom = ` FROM auth.users u LEFT JOIN auth.profiles p ON p.user_id = u.id `

func scanUser(row pgx.Row) (User, error) {
	var u User
	var tva time.Time
	err := row.Scan(&u.ID, &u.Email, &u.FullName, &u.Role, &u.IsActive, &u.IsSuperuser, &u.CreatedAt, &u.UpdatedAt,
		&u.HashedPassword, &tva)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, ErrNotFound
	}
	u.TokensNotBefore = tva
	return u, err
}

func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (constraint == "" || pgErr.ConstraintName == constraint)
}

// NormaliseEmail trims and lower-cases an email and puts it in Unicode
// normal form C (RFC 6532 section 3.1), the form stored and compared: an
// accented address typed composed or decomposed is one account.
func NormaliseEmail(s string) string { return norm.NFC.String(strings.ToLower(strings.TrimSpace(s))) }

// CreateUser inserts a user and its profile in one transaction.
func (s *Store) CreateUser(ctx context.Context, email, hash, role string, fullName *string) (User, error) {
	id := uuid.New()
	var u User
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO auth.users (id, email, hashed_password, role) VALUES ($1, $2, $3, $4)`,
			id, email, hash, role); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO auth.profiles (user_id, full_name) VALUES ($1, $2)`, id, fullName); err != nil {
			return err
		}
		var err error
		u, err = loadUser(ctx, tx, id)
		return err
	})
	if isUniqueViolation(err, "users_email_key") {
		return User{}, ErrEmailTaken
	}
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// UserByID loads one user.
func (s *Store) UserByID(ctx context.Context, id uuid.UUID) (User, error) {
	return loadUser(ctx, s.pool, id)
}

// querier is what reads need: the pool, or a transaction whose change the
// read reports, so that the commit is the change's last step (a failure
// after it would otherwise answer "nothing changed" for a saved change).
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func loadUser(ctx context.Context, q querier, id uuid.UUID) (User, error) {
	return scanUser(q.QueryRow(ctx, `SELECT `+userColumns+userFrom+`WHERE u.id = $1`, id))
}

// UserByEmail loads one user by normalised email.
func (s *Store) UserByEmail(ctx context.Context, email string) (User, error) {
	return scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+userFrom+`WHERE u.email = $1`, email))
}

// Principal is the user behind a request, loaded fresh for every request.
type Principal struct {
	User
	// SessionID is the token's sid (nil for a token without one).
	SessionID      *uuid.UUID
	SessionRevoked bool
	// SessionStart is when the token's session began (zero without one),
	// stamped by the database clock that also stamps TokensNotBefore.
	SessionStart time.Time
	// Groups are the names of the user's groups now, sorted.
	Groups []string
}

// LoadPrincipal loads the user, their groups and whether the token's
// session is revoked, in one round trip (it runs on every authenticated
// request). A token without a session id has no session to check.
func (s *Store) LoadPrincipal(ctx context.Context, userID uuid.UUID, sessionID *uuid.UUID) (Principal, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+userColumns+`,
		COALESCE((SELECT s.revoked_at IS NOT NULL OR s.user_id <> u.id FROM auth.sessions s WHERE s.id = $2), $2 IS NOT NULL),
		(SELECT s.created_at FROM auth.sessions s WHERE s.id = $2 AND s.user_id = u.id),
		ARRAY(SELECT g.name FROM auth.groups g JOIN auth.group_memberships m ON m.group_id = g.id
			WHERE m.user_id = u.id ORDER BY g.name)
		`+userFrom+`WHERE u.id = $1`, userID, sessionID)
	var p Principal
	var tva time.Time
	var start *time.Time
	err := row.Scan(&p.ID, &p.Email, &p.FullName, &p.Role, &p.IsActive, &p.IsSuperuser, &p.CreatedAt, &p.UpdatedAt,
		&p.HashedPassword, &tva, &p.SessionRevoked, &start, &p.Groups)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, ErrNotFound
	}
	p.TokensNotBefore = tva
	p.SessionID = sessionID
	if start != nil {
		p.SessionStart = *start
	}
	return p, err
}

// OpenSession records a login of an account whose password was just
// checked, and returns the account as it is when the session begins, with
// its groups: what the session's tokens claim. The user's row is read
// under a share lock, so a concurrent change of role, activity or groups
// either commits first and is read here, or waits for the session and then
// voids it. An inactive account gets no session (uuid.Nil).
func (s *Store) OpenSession(ctx context.Context, userID uuid.UUID, expires time.Time, userAgent, remoteAddr string) (User, []string, uuid.UUID, error) {
	var u User
	var groups []string
	id := uuid.New()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+userFrom+`WHERE u.id = $1 FOR SHARE OF u`, userID))
		if err != nil || !u.IsActive {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT g.name FROM auth.groups g JOIN auth.group_memberships m ON m.group_id = g.id
			WHERE m.user_id = $1 ORDER BY g.name`, userID)
		if groups, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		// The session begins now, after the share lock, by the clock that
		// stamps cut-offs: a change that committed while this login waited
		// for the lock stamped its cut-off before this instant (and this
		// login read its claims); a change still to come waits for this
		// lock and stamps after it. now() would be the transaction's
		// start, before any wait.
		return tx.QueryRow(ctx, `INSERT INTO auth.sessions (id, user_id, created_at, expires_at, user_agent, remote_addr)
			VALUES ($1, $2, clock_timestamp(), $3, $4, $5) RETURNING created_at`,
			id, userID, expires, truncate(userAgent, 512), truncate(remoteAddr, 128)).Scan(&u.sessionStart)
	})
	if errors.Is(err, ErrNotFound) {
		return User{}, nil, uuid.Nil, err
	}
	if err != nil {
		return User{}, nil, uuid.Nil, fmt.Errorf("open session: %w", err)
	}
	if !u.IsActive {
		id = uuid.Nil
	}
	return u, groups, id, nil
}

// truncate makes s valid UTF-8 of at most n bytes, cut on a rune boundary:
// request headers may carry any bytes, and PostgreSQL text refuses what is
// not UTF-8 (a failed login otherwise).
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Preferences returns the user's pinned app ids.
func (s *Store) Preferences(ctx context.Context, userID uuid.UUID) ([]string, error) {
	var ids []string
	err := s.pool.QueryRow(ctx, `SELECT dashboard_app_ids FROM auth.users WHERE id = $1`, userID).Scan(&ids)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, err
}

// SetPreferences replaces the user's pinned app ids.
func (s *Store) SetPreferences(ctx context.Context, userID uuid.UUID, ids []string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE auth.users SET dashboard_app_ids = $2, updated_at = now() WHERE id = $1`, userID, ids)
	if err != nil {
		return fmt.Errorf("set preferences: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
