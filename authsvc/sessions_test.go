package authsvc

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Sessions that expired before the cut-off go, in batches, however many
// there are; live ones and recently expired ones stay, and the tokens of
// the live ones keep working.
func TestDeleteExpiredSessions(t *testing.T) {
	ctx := context.Background()
	u := newUser(t, "user")
	tok := env.token(t, u)
	old := sessionSweepBatch*2 + 1 // three batches
	if _, err := testPool.Exec(ctx, `INSERT INTO auth.sessions (id, user_id, created_at, expires_at)
		SELECT gen_random_uuid(), $1, now() - interval '3 days', now() - interval '2 days' FROM generate_series(1, $2)`,
		u.ID, old); err != nil {
		t.Fatal(err)
	}
	recent := uuid.New()
	if _, err := testPool.Exec(ctx, `INSERT INTO auth.sessions (id, user_id, created_at, expires_at)
		VALUES ($1, $2, now() - interval '2 hours', now() - interval '1 hour')`, recent, u.ID); err != nil {
		t.Fatal(err)
	}
	count := func() (n int) {
		t.Helper()
		if err := testPool.QueryRow(ctx, `SELECT count(*) FROM auth.sessions WHERE user_id = $1`, u.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	n, err := env.svc.store.DeleteExpiredSessions(ctx, time.Now().Add(-sessionRetention))
	if err != nil {
		t.Fatal(err)
	}
	if n < int64(old) {
		t.Fatalf("deleted %d, want at least the %d expired two days ago", n, old)
	}
	if got := count(); got != before-old {
		t.Fatalf("%d sessions left, want %d (the live one and the one expired an hour ago)", got, before-old)
	}
	var kept bool
	if err := testPool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM auth.sessions WHERE id = $1)`, recent).Scan(&kept); err != nil || !kept {
		t.Fatalf("the session expired an hour ago is gone: %v", err)
	}
	if r := env.get(t, "/api/users/me", tok); r.Status != 200 {
		t.Fatalf("a live session's token after the sweep: %d %s", r.Status, r.Body)
	}
}

// The sweep runs at once when started and ends with its context.
func TestSweepSessions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	u := newUser(t, "user")
	old := uuid.New()
	if _, err := testPool.Exec(ctx, `INSERT INTO auth.sessions (id, user_id, created_at, expires_at)
		VALUES ($1, $2, now() - interval '3 days', now() - interval '2 days')`, old, u.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); sweepSessions(ctx, env.svc.store, slog.Default()) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left bool
		if err := testPool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM auth.sessions WHERE id = $1)`, old).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if !left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweep did not delete a session expired two days ago")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the sweep did not end with its context")
	}
}
