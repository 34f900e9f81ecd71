package authsvc

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Every login adds a session row, and nothing else removes one: left alone
// the table grows with every sign-in for ever (found in review: a login
// flood adds about 2 GB a day). A session whose tokens expired long ago
// matters to nobody: its tokens are refused for their exp alone, and the
// revocation feed skips sessions expired more than revocationMargin ago.
const (
	// sessionRetention is how long a session is kept after it expired.
	sessionRetention = 24 * time.Hour
	// sessionSweepEvery is how often expired sessions are looked for.
	sessionSweepEvery = time.Hour
	// sessionSweepBatch bounds one DELETE, so a large backlog is removed
	// in short transactions that never hold many row locks at once.
	sessionSweepBatch = 5000
)

// DeleteExpiredSessions deletes the sessions that expired before cutoff and
// returns how many.
func (s *Store) DeleteExpiredSessions(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM auth.sessions WHERE id IN (
			SELECT id FROM auth.sessions WHERE expires_at < $1 LIMIT $2)`, cutoff, sessionSweepBatch)
		if err != nil {
			return total, fmt.Errorf("delete expired sessions: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < sessionSweepBatch {
			return total, nil
		}
	}
}

// sweepSessions deletes long-expired sessions at start and then every
// sessionSweepEvery, until ctx ends.
func sweepSessions(ctx context.Context, store *Store, log *slog.Logger) {
	t := time.NewTicker(sessionSweepEvery)
	defer t.Stop()
	for {
		n, err := store.DeleteExpiredSessions(ctx, time.Now().Add(-sessionRetention))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("session sweep failed; trying again later", "err", err)
		case n > 0:
			log.Info("deleted long-expired sessions", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
