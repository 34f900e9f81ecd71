package migrations

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/gatehouse/gatehouse/internal/migrate"
	"github.com/gatehouse/gatehouse/internal/testdb"
)

// upTo is the auth migrations up to and including version n.
func upTo(t *testing.T, n int) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	files, err := fs.Glob(FS, "auth/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		var v int
		if _, err := fmt.Sscanf(strings.TrimPrefix(f, "auth/"), "%d", &v); err != nil {
			t.Fatal(err)
		}
		if v <= n {
			b, _ := fs.ReadFile(FS, f)
			m[f] = &fstest.MapFile{Data: b}
		}
	}
	return m
}

// Emails stored before authsvc put them in normal form C are converted;
// two accounts differing only in that form stop the migration, named.
func TestAuthEmailsToNFC(t *testing.T) {
	for _, c := range []struct {
		name    string
		emails  []string
		want    []string
		refused bool
	}{
		{"converted", []string{"jose\u0301@example.com", "ada@example.com"}, []string{"ada@example.com", "jos\u00e9@example.com"}, false},
		{"clash", []string{"jose\u0301@example.com", "jos\u00e9@example.com"}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, err := testdb.New("migrations")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Drop()
			ctx := context.Background()
			pool, err := migrate.Open(ctx, db.URL, upTo(t, 2), "auth")
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			for _, e := range c.emails {
				if _, err := pool.Exec(ctx, `INSERT INTO auth.users (id, email, hashed_password, role) VALUES (gen_random_uuid(), $1, 'x', 'user')`, e); err != nil {
					t.Fatal(err)
				}
			}
			err = migrate.Up(ctx, pool, FS, "auth")
			if c.refused {
				if err == nil || !strings.Contains(err.Error(), "differ only in Unicode form") {
					t.Fatalf("clash not refused: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rows, _ := pool.Query(ctx, `SELECT email FROM auth.users ORDER BY email`)
			var got []string
			for rows.Next() {
				var e string
				_ = rows.Scan(&e)
				got = append(got, e)
			}
			if rows.Err() != nil || strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("emails %q, want %q (%v)", got, c.want, rows.Err())
			}
		})
	}
}
