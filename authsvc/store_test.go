package authsvc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/internal/migrate"
	"github.com/gatehouse/gatehouse/internal/testdb"
	"github.com/gatehouse/gatehouse/migrations"
)

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	versions := func() (n int, max int64) {
		t.Helper()
		if err := testPool.QueryRow(ctx, `SELECT count(*), max(version_id) FROM auth.goose_db_version`).Scan(&n, &max); err != nil {
			t.Fatal(err)
		}
		return n, max
	}
	n0, v0 := versions()
	if v0 < 1 {
		t.Fatalf("no migration recorded (max version %d)", v0)
	}
	u := newUser(t, "user")
	if err := migrate.Up(ctx, testPool, migrations.FS, "auth"); err != nil {
		t.Fatal(err)
	}
	pool, err := OpenDB(ctx, testDB.URL)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	if n, v := versions(); n != n0 || v != v0 {
		t.Errorf("re-applying changed the version table: %d rows max %d, was %d rows max %d", n, v, n0, v0)
	}
	if _, err := env.svc.store.UserByID(ctx, u.ID); err != nil {
		t.Errorf("data lost by a re-run: %v", err)
	}
}

func TestMigrationsConcurrentOnFreshDatabase(t *testing.T) {
	db, err := testdb.New("authsvc_migrate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Drop(); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			pool, err := OpenDB(ctx, db.URL)
			if err == nil {
				pool.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("OpenDB %d: %v", i, err)
		}
	}
	pool, err := OpenDB(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var applied int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM auth.goose_db_version WHERE version_id > 0`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	files, err := fs.Glob(migrations.FS, "auth/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no auth migrations: %v", err)
	}
	if applied != len(files) {
		t.Errorf("%d migrations recorded, want each of the %d applied once", applied, len(files))
	}
	// The schema works.
	if _, err := NewStore(pool).CreateUser(ctx, "fresh@example.com", fixtureHash, "user", nil); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDBUnreachable(t *testing.T) {
	_, err := OpenDB(context.Background(), "postgres://u:p@127.0.0.1:1/db?sslmode=disable&connect_timeout=1")
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("unreachable database: %v", err)
	}
	if _, err := OpenDB(context.Background(), "postgres://%zz"); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("unparsable URL: %v", err)
	}
}

func TestStoreSentinels(t *testing.T) {
	ctx := context.Background()
	s := env.svc.store
	u := newUser(t, "user")
	if _, err := s.CreateUser(ctx, u.Email, fixtureHash, "user", nil); !errors.Is(err, ErrEmailTaken) {
		t.Errorf("duplicate email: %v", err)
	}
	missing := u.ID
	missing[0] ^= 0xff
	if _, err := s.UserByID(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByID unknown: %v", err)
	}
	if _, err := s.UserByEmail(ctx, "nobody@example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByEmail unknown: %v", err)
	}
	if _, err := s.Preferences(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Preferences unknown: %v", err)
	}
	if err := s.SetPreferences(ctx, missing, []string{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPreferences unknown: %v", err)
	}
	if _, err := s.Profile(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Profile unknown: %v", err)
	}
	if _, err := s.UpdateUser(ctx, missing, UserUpdate{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateUser unknown: %v", err)
	}
	if _, err := s.Group(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Group unknown: %v", err)
	}
	// A user without a profile row still has an (empty) profile.
	exec(t, `DELETE FROM auth.profiles WHERE user_id = $1`, u.ID)
	p, err := s.Profile(ctx, u.ID)
	if err != nil || p.FullName != nil || p.Email != u.Email {
		t.Errorf("profile without a row: %+v %v", p, err)
	}
	name := "Back"
	if p, err := s.UpdateProfile(ctx, u.ID, map[string]*string{"full_name": &name}); err != nil || p.FullName == nil || *p.FullName != name {
		t.Errorf("UpdateProfile creating the row: %+v %v", p, err)
	}
}

func TestCreateAdmin(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.DatabaseURL = testDB.URL
	email := uniqueEmail("boot")

	created, err := CreateAdmin(ctx, cfg, "  "+strings.ToUpper(email)+" ", "Admin-Pass-1!")
	if err != nil || !created {
		t.Fatalf("CreateAdmin: created %v, %v", created, err)
	}
	u, err := env.svc.store.UserByEmail(ctx, email)
	if err != nil || u.Role != "admin" || !u.IsActive {
		t.Fatalf("created %+v, %v", u, err)
	}
	tok := env.login(t, email, "Admin-Pass-1!")
	env.get(t, "/api/admin/users?limit=1", tok).expect(t, 200)

	// An existing, inactive user is promoted, reactivated and given the
	// new password; its old tokens are void.
	existing := newUser(t, "user")
	oldTok := env.token(t, existing)
	exec(t, `UPDATE auth.users SET is_active = false WHERE id = $1`, existing.ID)
	created, err = CreateAdmin(ctx, cfg, existing.Email, "New-Admin-Pass-2!")
	if err != nil || created {
		t.Fatalf("CreateAdmin on an existing user: created %v, %v", created, err)
	}
	u, err = env.svc.store.UserByID(ctx, existing.ID)
	if err != nil || u.Role != "admin" || !u.IsActive {
		t.Errorf("after promotion %+v, %v", u, err)
	}
	env.get(t, "/api/users/me", oldTok).expect(t, 401)
	env.login(t, existing.Email, "New-Admin-Pass-2!")

	for _, tc := range []struct{ email, pw, want string }{
		{"not-an-email", "Admin-Pass-1!", "--email"},
		{"", "Admin-Pass-1!", "--email"},
		{uniqueEmail("weak"), "weak", "password: must be at least 8"},
		{uniqueEmail("weak"), "Admin-Test-1!", `password: must not contain "test"`},
	} {
		if _, err := CreateAdmin(ctx, cfg, tc.email, tc.pw); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CreateAdmin(%q, %q): %v, want an error containing %q", tc.email, tc.pw, err, tc.want)
		}
	}
	if _, err := env.svc.store.UserByEmail(ctx, "not-an-email"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused CreateAdmin stored a user: %v", err)
	}
}

// A CONCURRENTLY build cut short leaves an invalid index; the migration
// run again at the next start drops it and builds it anew, instead of
// keeping it under IF NOT EXISTS and recording itself done (found in
// review).
func TestSessionsIndexRebuiltAfterAnInterruptedBuild(t *testing.T) {
	ctx := context.Background()
	db, err := testdb.New("authsvc_index")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Drop(); err != nil {
			t.Error(err)
		}
	})
	pool, err := OpenDB(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	valid := func() (exists, ok bool) {
		t.Helper()
		err := pool.QueryRow(ctx, `SELECT true, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'auth' AND c.relname = 'sessions_expires'`).Scan(&exists, &ok)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return exists, ok
	}
	if exists, ok := valid(); !exists || !ok {
		t.Fatalf("after migrating: index exists %v, valid %v", exists, ok)
	}

	// Cut a build short: an open snapshot holds its last phase, the
	// statement times out, the invalid index stays, and the migration is
	// not recorded, as when an instance is killed during the build.
	if _, err := pool.Exec(ctx, `DROP INDEX auth.sessions_expires`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM auth.goose_db_version WHERE version_id = 4`); err != nil {
		t.Fatal(err)
	}
	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `SELECT count(*) FROM auth.users`); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SET statement_timeout = '500ms'`); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `CREATE INDEX CONCURRENTLY sessions_expires ON auth.sessions (expires_at)`)
	if !strings.Contains(fmt.Sprint(err), "statement timeout") {
		t.Fatalf("the build was not cut short by its timeout (%v); the test proves nothing", err)
	}
	_, _ = conn.Exec(ctx, `RESET statement_timeout`)
	conn.Release()
	_ = holder.Rollback(ctx)
	if exists, ok := valid(); !exists || ok {
		t.Fatalf("after the cut-short build: index exists %v, valid %v; want an invalid one", exists, ok)
	}

	if err := migrate.Up(ctx, pool, migrations.FS, "auth"); err != nil {
		t.Fatal(err)
	}
	if exists, ok := valid(); !exists || !ok {
		t.Fatalf("after migrating again: index exists %v, valid %v", exists, ok)
	}
}
