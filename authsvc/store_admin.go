package authsvc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Profile is the profile page of a user (auth.profiles).
type Profile struct {
	UserID     uuid.UUID `json:"user_id"`
	Email      string    `json:"email"`
	FullName   *string   `json:"full_name"`
	Phone      *string   `json:"phone"`
	JobTitle   *string   `json:"job_title"`
	Department *string   `json:"department"`
	Location   *string   `json:"location"`
	Bio        *string   `json:"bio"`
	AvatarURL  *string   `json:"avatar_url"`
	Timezone   *string   `json:"timezone"`
	Locale     *string   `json:"locale"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// profileFields are the editable columns, in the order of Profile's fields.
var profileFields = []string{"full_name", "phone", "job_title", "department", "location", "bio", "avatar_url", "timezone", "locale"}

// Profile loads a user's profile; a user without a row gets an empty one.
func (s *Store) Profile(ctx context.Context, userID uuid.UUID) (Profile, error) {
	return loadProfile(ctx, s.pool, userID)
}

func loadProfile(ctx context.Context, q querier, userID uuid.UUID) (Profile, error) {
	var p Profile
	err := q.QueryRow(ctx, `SELECT u.id, u.email, p.full_name, p.phone, p.job_title, p.department, p.location,
			p.bio, p.avatar_url, p.timezone, p.locale, COALESCE(p.updated_at, u.updated_at)
		FROM auth.users u LEFT JOIN auth.profiles p ON p.user_id = u.id WHERE u.id = $1`, userID).
		Scan(&p.UserID, &p.Email, &p.FullName, &p.Phone, &p.JobTitle, &p.Department, &p.Location, &p.Bio,
			&p.AvatarURL, &p.Timezone, &p.Locale, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, ErrNotFound
	}
	if err != nil {
		return p, fmt.Errorf("load profile: %w", err)
	}
	return p, nil
}

// UpdateProfile sets the given columns (validated names from profileFields;
// a nil value clears the field) and returns the result.
func (s *Store) UpdateProfile(ctx context.Context, userID uuid.UUID, set map[string]*string) (Profile, error) {
	cols := []string{"user_id"}
	vals := []any{userID}
	var updates []string
	for _, f := range profileFields {
		v, ok := set[f]
		if !ok {
			continue
		}
		cols = append(cols, f)
		vals = append(vals, v)
		updates = append(updates, fmt.Sprintf("%s = EXCLUDED.%s", f, f))
	}
	updates = append(updates, "updated_at = now()")
	ph := make([]string, len(cols))
	for i := range cols {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	var p Profile
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO auth.profiles (`+strings.Join(cols, ", ")+`) VALUES (`+strings.Join(ph, ", ")+`)
			ON CONFLICT (user_id) DO UPDATE SET `+strings.Join(updates, ", "), vals...); err != nil {
			return err
		}
		var err error
		p, err = loadProfile(ctx, tx, userID)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Profile{}, err
	}
	if err != nil {
		return Profile{}, fmt.Errorf("update profile: %w", err)
	}
	return p, nil
}

// ListUsers returns a page of users whose email contains search, and the
// total number of matches.
func (s *Store) ListUsers(ctx context.Context, search string, limit, offset int) ([]User, int, error) {
	pattern := "%" + escapeLike(NormaliseEmail(search)) + "%"
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM auth.users WHERE email LIKE $1`, pattern).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count users: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+userFrom+`WHERE u.email LIKE $1 ORDER BY u.created_at, u.id LIMIT $2 OFFSET $3`,
		pattern, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("list users: %w", err)
	}
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) { return scanUser(r) })
	if err != nil {
		return nil, 0, fmt.Errorf("list users: %w", err)
	}
	return users, total, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// UserUpdate is an admin's change to a user; nil fields stay as they are.
type UserUpdate struct {
	Role     *string
	IsActive *bool
}

// UpdateUser applies u, refusing to demote or deactivate the last active
// admin. The active admins are locked with the target, so two admins
// demoting each other at once cannot both succeed. A change of role or activity voids the
// user's earlier tokens: the cut-off is the clock once the row is locked,
// not now() (the transaction's start, maybe before a wait for the admins'
// locks), so it follows every session that began before the change.
func (s *Store) UpdateUser(ctx context.Context, id uuid.UUID, u UserUpdate) (User, error) {
	var out User
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The active admins and the target, locked in one pass in id
		// order, the order every transaction here locks users in (a
		// group's members, for its rename or deletion): locking the
		// admins first and then the target could deadlock with one.
		rows, _ := tx.Query(ctx, `SELECT id, role, is_active FROM auth.users
			WHERE (role = 'admin' AND is_active) OR id = $1 ORDER BY id FOR UPDATE`, id)
		locked, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
			ID     uuid.UUID
			Role   string
			Active bool
		}])
		if err != nil {
			return err
		}
		admins, found := 0, false
		var role string
		var active bool
		for _, l := range locked {
			if l.Role == "admin" && l.Active {
				admins++
			}
			if l.ID == id {
				found, role, active = true, l.Role, l.Active
			}
		}
		if !found {
			return ErrNotFound
		}
		newRole, newActive := role, active
		if u.Role != nil {
			newRole = *u.Role
		}
		if u.IsActive != nil {
			newActive = *u.IsActive
		}
		wasAdmin := role == "admin" && active
		staysAdmin := newRole == "admin" && newActive
		if wasAdmin && !staysAdmin && admins <= 1 {
			return ErrLastAdmin
		}
		if newRole != role || newActive != active {
			if _, err := tx.Exec(ctx, `UPDATE auth.users SET role = $2, is_active = $3, updated_at = now(),
				tokens_valid_after = clock_timestamp() WHERE id = $1`, id, newRole, newActive); err != nil {
				return err
			}
		}
		out, err = loadUser(ctx, tx, id)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrLastAdmin) {
			return User{}, err
		}
		return User{}, fmt.Errorf("update user: %w", err)
	}
	return out, nil
}

// SetAdmin makes the user with email an active admin with a new password
// hash, creating it if missing (the create-admin bootstrap command).
func (s *Store) SetAdmin(ctx context.Context, email, hash string) (created bool, err error) {
	tag, err := s.pool.Exec(ctx, `UPDATE auth.users SET role = 'admin', is_active = true, hashed_password = $2,
		updated_at = now(), tokens_valid_after = clock_timestamp() WHERE email = $1`, email, hash)
	if err != nil {
		return false, fmt.Errorf("promote admin: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return false, nil
	}
	if _, err := s.CreateUser(ctx, email, hash, "admin", nil); err != nil {
		return false, err
	}
	return true, nil
}

// Group is a named set of users.
type Group struct {
	ID          uuid.UUID     `json:"id"`
	Name        string        `json:"name"`
	Description string        `json:"description"`
	CreatedAt   time.Time     `json:"created_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
	MemberCount int           `json:"member_count"`
	Members     []GroupMember `json:"members,omitzero"` // in the detail ([] when empty), absent from lists
}

// GroupMember is a user as listed in a group's detail.
type GroupMember struct {
	UserID   uuid.UUID `json:"user_id"`
	Email    string    `json:"email"`
	FullName *string   `json:"full_name"`
	JoinedAt time.Time `json:"joined_at"`
}

const groupSelect = `SELECT g.id, g.name, g.description, g.created_at, g.updated_at,
	(SELECT count(*) FROM auth.group_memberships m WHERE m.group_id = g.id) FROM auth.groups g `

func scanGroup(row pgx.Row) (Group, error) {
	var g Group
	err := row.Scan(&g.ID, &g.Name, &g.Description, &g.CreatedAt, &g.UpdatedAt, &g.MemberCount)
	if errors.Is(err, pgx.ErrNoRows) {
		return g, ErrNotFound
	}
	return g, err
}

// ListGroups lists every group with its member count, by name.
func (s *Store) ListGroups(ctx context.Context) ([]Group, error) {
	rows, err := s.pool.Query(ctx, groupSelect+`ORDER BY lower(g.name)`)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Group, error) { return scanGroup(r) })
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return groups, nil
}

// groupNameKey is what two group names must not share: their case-folded
// NFKC form, so that "Équipe" and "équipe", "café" typed composed and
// decomposed, or "ops" in fullwidth letters name one group. PostgreSQL's
// lower() folds only ASCII in the C locale, so the unique index on
// lower(name) is a backstop, not the rule.
//
// strings.ToLower after the fold: x/text's fold swaps Cherokee upper and
// lower case instead of folding both one way (golang/go#46101), so "Ꭰ"
// and "ꭰ" would get two keys; lower-casing the folded form joins them,
// and makes the key its own key.
func groupNameKey(name string) string {
	return strings.ToLower(cases.Fold().String(norm.NFKC.String(name)))
}

// checkGroupName returns ErrGroupNameTaken when a group other than self
// has a name with name's key. Creates and renames take one transaction
// lock first, so two of them cannot both pass the check; nothing else
// takes it, so no other lock order is involved.
func checkGroupName(ctx context.Context, tx pgx.Tx, name string, self uuid.UUID) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('auth.groups.name'))`); err != nil {
		return err
	}
	rows, _ := tx.Query(ctx, `SELECT name FROM auth.groups WHERE id <> $1`, self)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	key := groupNameKey(name)
	for _, n := range names {
		if groupNameKey(n) == key {
			return ErrGroupNameTaken
		}
	}
	return nil
}

// CreateGroup makes a group.
func (s *Store) CreateGroup(ctx context.Context, name, description string) (Group, error) {
	id := uuid.New()
	var g Group
	err := s.inTx(ctx, "create group", func(tx pgx.Tx) error {
		if err := checkGroupName(ctx, tx, name, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO auth.groups (id, name, description) VALUES ($1, $2, $3)`, id, name, description)
		if isUniqueViolation(err, "groups_name_key") {
			return ErrGroupNameTaken
		}
		if err != nil {
			return err
		}
		g, err = loadGroup(ctx, tx, id)
		return err
	})
	return g, err
}

// Group loads a group with its members.
func (s *Store) Group(ctx context.Context, id uuid.UUID) (Group, error) {
	return loadGroup(ctx, s.pool, id)
}

func loadGroup(ctx context.Context, q querier, id uuid.UUID) (Group, error) {
	g, err := scanGroup(q.QueryRow(ctx, groupSelect+`WHERE g.id = $1`, id))
	if err != nil {
		return g, err
	}
	rows, err := q.Query(ctx, `SELECT u.id, u.email, p.full_name, m.joined_at FROM auth.group_memberships m
		JOIN auth.users u ON u.id = m.user_id LEFT JOIN auth.profiles p ON p.user_id = u.id
		WHERE m.group_id = $1 ORDER BY u.email`, id)
	if err != nil {
		return g, fmt.Errorf("load members: %w", err)
	}
	g.Members, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (GroupMember, error) {
		var m GroupMember
		err := r.Scan(&m.UserID, &m.Email, &m.FullName, &m.JoinedAt)
		return m, err
	})
	if err != nil {
		return g, fmt.Errorf("load members: %w", err)
	}
	if g.Members == nil {
		g.Members = []GroupMember{}
	}
	return g, nil
}

// UpdateGroup changes a group's name and/or description (nil = unchanged).
// Renaming changes the group names in members' future tokens, so their
// current tokens are voided.
func (s *Store) UpdateGroup(ctx context.Context, id uuid.UUID, name, description *string) (Group, error) {
	var g Group
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var oldName string
		err := tx.QueryRow(ctx, `SELECT name FROM auth.groups WHERE id = $1 FOR UPDATE`, id).Scan(&oldName)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if name != nil {
			if err := checkGroupName(ctx, tx, *name, id); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE auth.groups SET name = COALESCE($2, name), description = COALESCE($3, description),
			updated_at = now() WHERE id = $1`, id, name, description); err != nil {
			return err
		}
		if renamed := name != nil && *name != oldName; renamed {
			if err := s.voidMembersTokens(ctx, tx, id); err != nil {
				return err
			}
		}
		g, err = loadGroup(ctx, tx, id)
		return err
	})
	switch {
	case isUniqueViolation(err, "groups_name_key"):
		return Group{}, ErrGroupNameTaken
	case errors.Is(err, ErrNotFound):
		return Group{}, err
	case err != nil:
		return Group{}, fmt.Errorf("update group: %w", err)
	}
	return g, nil
}

func (s *Store) voidMembersTokens(ctx context.Context, tx pgx.Tx, groupID uuid.UUID) error {
	rows, _ := tx.Query(ctx, `SELECT id FROM auth.users
		WHERE id IN (SELECT user_id FROM auth.group_memberships WHERE group_id = $1) ORDER BY id FOR NO KEY UPDATE`, groupID)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return err
	}
	return voidTokens(ctx, tx, ids...)
}

// voidTokens sets the cut-off of users whose rows tx has locked (FOR NO KEY
// UPDATE, which a login's share lock waits for). It is the clock now, after
// the locks, not now(): a login may have begun and ended its session since
// the transaction started, with the claims the change alters.
func voidTokens(ctx context.Context, tx pgx.Tx, userIDs ...uuid.UUID) error {
	_, err := tx.Exec(ctx, `UPDATE auth.users SET tokens_valid_after = clock_timestamp() WHERE id = ANY($1)`, userIDs)
	return err
}

// DeleteGroup deletes a group; its memberships go with it.
func (s *Store) DeleteGroup(ctx context.Context, id uuid.UUID) error {
	return s.inTx(ctx, "delete group", func(tx pgx.Tx) error {
		// The group first, as a rename and AddMember lock it: a member
		// added meanwhile either is voided here or finds no group, and
		// the lock order (group, then users) is theirs.
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM auth.groups WHERE id = $1 FOR UPDATE`, id).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := s.voidMembersTokens(ctx, tx, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM auth.groups WHERE id = $1`, id)
		return err
	})
}

// AddMember adds a user to a group and returns the group.
func (s *Store) AddMember(ctx context.Context, groupID, userID uuid.UUID) (Group, error) {
	var g Group
	err := s.inTx(ctx, "add member", func(tx pgx.Tx) error {
		var groupExists, userExists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM auth.groups WHERE id = $1 FOR SHARE),
			EXISTS (SELECT 1 FROM auth.users WHERE id = $2 FOR NO KEY UPDATE)`, groupID, userID).Scan(&groupExists, &userExists); err != nil {
			return err
		}
		if !groupExists || !userExists {
			return ErrNotFound
		}
		tag, err := tx.Exec(ctx, `INSERT INTO auth.group_memberships (group_id, user_id) VALUES ($1, $2)
			ON CONFLICT DO NOTHING`, groupID, userID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrAlreadyMember
		}
		if err := voidTokens(ctx, tx, userID); err != nil {
			return err
		}
		g, err = loadGroup(ctx, tx, groupID)
		return err
	})
	return g, err
}

// RemoveMember removes a user from a group.
func (s *Store) RemoveMember(ctx context.Context, groupID, userID uuid.UUID) error {
	return s.inTx(ctx, "remove member", func(tx pgx.Tx) error {
		// The user's row first: a login reading the groups waits from here.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM auth.users WHERE id = $1 FOR NO KEY UPDATE`, userID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM auth.group_memberships WHERE group_id = $1 AND user_id = $2`, groupID, userID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return voidTokens(ctx, tx, userID)
	})
}

// inTx runs fn in a transaction, passing sentinel errors through unwrapped.
func (s *Store) inTx(ctx context.Context, what string, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, fn)
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrAlreadyMember) || errors.Is(err, ErrGroupNameTaken) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}
