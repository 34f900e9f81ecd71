package authsvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

// The revocation feed tells the edge which unexpired access tokens are
// void, so that a deactivation, a role, group or password change, or a
// logout takes effect there within a poll, not at token expiry. It is a
// snapshot, not a log: every entry that can still void a live token, every
// time. A missed poll, an edge restart or a reload loses nothing, and the
// feed needs no cursor whose ordering could skip a late commit.
//
// Wire format (docs/edge.md):
//
//	{"users":    [{"user_id": "<uuid>", "not_before": <unix seconds>}],
//	 "sessions": [{"session_id": "<uuid>"}]}
//
// A token of user_id whose iat is before not_before is void; so is every
// token whose sid is listed: sessions ended by logout, and sessions that
// began before their user's cut-off within the second before it. iat has
// whole seconds; the session list settles what they cannot: a login
// between two changes within one second (its iat is the first cut-off
// rounded up, which the second cut-off rounds up to as well). A session
// that began earlier has an iat (its start, or an older cut-off, rounded)
// before the cut-off's second, so not_before voids it without a listing:
// a user with thousands of live sessions costs the feed one entry when an
// admin changes the account, not thousands.

// revocationMargin keeps entries a little past the last expiry they
// concern: the edge accepts tokens up to the verifier's leeway after exp,
// and its clock may run behind ours.
const revocationMargin = accesstoken.DefaultLeeway + time.Minute

// maxTokenLifetime bounds how far back a cut-off can matter: the longest
// ACCESS_TOKEN_TTL the configuration accepts.
const maxTokenLifetime = 24 * time.Hour

type userRevocation struct {
	UserID    uuid.UUID `json:"user_id"`
	NotBefore int64     `json:"not_before"`
}

type sessionRevocation struct {
	SessionID uuid.UUID `json:"session_id"`
}

type revocationFeed struct {
	Users    []userRevocation    `json:"users"`
	Sessions []sessionRevocation `json:"sessions"`
}

// Revocations lists the cut-offs and ended sessions that may still void a
// live token. A cut-off stays while the user has a session that began
// before it and has not expired (every token belongs to a session, and
// expires with it), whatever ACCESS_TOKEN_TTL was when it was issued.
// not_before is the cut-off rounded up to a whole second, the resolution
// of iat; login issues tokens no earlier than it (see issuedAt).
func (s *Store) Revocations(ctx context.Context) (revocationFeed, error) {
	feed := revocationFeed{Users: []userRevocation{}, Sessions: []sessionRevocation{}}
	margin := revocationMargin.Seconds()
	rows, err := s.pool.Query(ctx, `
		SELECT u.id, ceil(extract(epoch FROM u.tokens_valid_after))::bigint
		FROM auth.users u
		WHERE u.tokens_valid_after > now() - make_interval(secs => $1)
		  AND EXISTS (SELECT 1 FROM auth.sessions s
		              WHERE s.user_id = u.id AND s.created_at < u.tokens_valid_after
		                AND s.expires_at > now() - make_interval(secs => $2))
		ORDER BY u.id`, (maxTokenLifetime + revocationMargin).Seconds(), margin)
	if err != nil {
		return feed, fmt.Errorf("revocations: %w", err)
	}
	for rows.Next() {
		var u userRevocation
		if err := rows.Scan(&u.UserID, &u.NotBefore); err != nil {
			rows.Close()
			return feed, fmt.Errorf("revocations: %w", err)
		}
		feed.Users = append(feed.Users, u)
	}
	if err := rows.Err(); err != nil {
		return feed, fmt.Errorf("revocations: %w", err)
	}
	// Two index lookups: ended sessions (sessions_revoked), and the
	// sessions of users with a recent cut-off that began in the second
	// before it (users_tokens_valid_after, then sessions_user). The window
	// is a whole second wider than the rounding needs.
	rows, err = s.pool.Query(ctx, `
		SELECT id FROM auth.sessions
		WHERE revoked_at IS NOT NULL AND expires_at > now() - make_interval(secs => $1)
		UNION
		SELECT s.id FROM auth.users u JOIN auth.sessions s ON s.user_id = u.id
		WHERE u.tokens_valid_after > now() - make_interval(secs => $2)
		  AND s.created_at < u.tokens_valid_after
		  AND s.created_at >= date_trunc('second', u.tokens_valid_after) - interval '1 second'
		  AND s.expires_at > now() - make_interval(secs => $1)
		ORDER BY id`, margin, (maxTokenLifetime + revocationMargin).Seconds())
	if err != nil {
		return feed, fmt.Errorf("revocations: %w", err)
	}
	for rows.Next() {
		var e sessionRevocation
		if err := rows.Scan(&e.SessionID); err != nil {
			rows.Close()
			return feed, fmt.Errorf("revocations: %w", err)
		}
		feed.Sessions = append(feed.Sessions, e)
	}
	return feed, rows.Err()
}

// EndSession revokes a session (logout): every token of it is void, here
// at once and at the edge within a poll. Ending an ended session is a
// no-op.
func (s *Store) EndSession(ctx context.Context, userID, sessionID uuid.UUID) error {
	_, err := s.pool.Exec(ctx, `UPDATE auth.sessions SET revoked_at = now()
		WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL`, sessionID, userID)
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// getRevocations serves the feed. It is answered on authsvc's private
// address only: the edge never routes /internal/*. The body is sorted, so
// its hash is a stable ETag and an unchanged list costs the edge a 304.
func (s *Service) getRevocations(w http.ResponseWriter, r *http.Request) error {
	feed, err := s.store.Revocations(r.Context())
	if err != nil {
		return err
	}
	body, err := json.Marshal(feed)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(body)
	return err
}

// logout ends the session of the token it is called with.
func (s *Service) logout(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	if p.SessionID != nil {
		if err := s.store.EndSession(r.Context(), p.ID, *p.SessionID); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// issuedAt is the iat of a token issued at now to a user whose cut-off is
// cutoff. iat has whole seconds and the edge voids tokens whose iat is
// before the cut-off rounded up; a token issued within the cut-off's own
// second, after it, is therefore stamped with the next second, so that it
// is not mistaken for one issued before.
func issuedAt(now, cutoff time.Time) time.Time {
	if c := cutoff.Truncate(time.Second); c.Before(cutoff) {
		cutoff = c.Add(time.Second)
	}
	if cutoff.After(now) {
		return cutoff
	}
	return now
}
