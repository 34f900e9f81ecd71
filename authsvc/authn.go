package authsvc

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

type principalKey struct{}

// principal is the authenticated user of a request behind requireUser.
func principal(r *http.Request) *Principal {
	p, _ := r.Context().Value(principalKey{}).(*Principal)
	return p
}

func unauthorized(detail string, cause error) *httpx.Error {
	return &httpx.Error{Status: http.StatusUnauthorized, Detail: detail, Cause: cause}
}

// authenticate verifies the bearer token and loads its user from the
// database: a deactivated user, a revoked session or a token issued before
// the user's cut-off is refused even while the token has not expired.
func (s *Service) authenticate(r *http.Request) (*Principal, error) {
	tok, err := bearerToken(r)
	if err != nil {
		return nil, err
	}
	claims, err := s.verifier.Verify(tok)
	if err != nil {
		return nil, unauthorized("invalid token", err)
	}
	uid, err := uuid.Parse(claims.Subject)
	if err != nil {
		return nil, unauthorized("invalid token", err)
	}
	var sid *uuid.UUID
	if claims.SessionID != "" {
		id, err := uuid.Parse(claims.SessionID)
		if err != nil {
			return nil, unauthorized("invalid token", err)
		}
		sid = &id
	}
	p, err := s.store.LoadPrincipal(r.Context(), uid, sid)
	if errors.Is(err, ErrNotFound) {
		return nil, unauthorized("invalid token", err)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case !p.IsActive:
		return nil, unauthorized("account is disabled", nil)
	case p.SessionRevoked:
		return nil, unauthorized("session has ended; sign in again", nil)
	case issuedBeforeCutoff(claims.IssuedAt, p.SessionStart, p.TokensNotBefore):
		return nil, unauthorized("token has been revoked; sign in again", nil)
	}
	return &p, nil
}

// issuedBeforeCutoff reports whether a token predates the user's cut-off
// (tokens_valid_after). A token's session begins when it is issued (login
// is the only issuer), stamped in microseconds by the database clock that
// stamps cut-offs, so the session decides, as the revocation feed's session
// list does at the edge. iat has whole seconds and may be rounded up to the
// second after a cut-off (issuedAt): a login between two changes within one
// second carries the first rounded cut-off, which the second one rounds to
// as well. Only a token without a session is judged by iat: void unless
// issued in a later second than the cut-off.
func issuedBeforeCutoff(iat *jwt.NumericDate, sessionStart, cutoff time.Time) bool {
	switch {
	case iat == nil:
		return true
	case !sessionStart.IsZero():
		return sessionStart.Before(cutoff)
	default:
		return !iat.Time().After(cutoff.Truncate(time.Second))
	}
}

// bearerToken takes the token from the one Authorization header; never from
// the query string. Two Authorization headers are refused as ambiguous.
func bearerToken(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", unauthorized("not authenticated", nil)
	}
	if len(vals) > 1 {
		return "", unauthorized("invalid token", errors.New("several Authorization headers"))
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", unauthorized("not authenticated", nil)
	}
	return strings.TrimSpace(tok), nil
}

// requireUser guards h: 401 unless the request carries a valid token of an
// active user.
func (s *Service) requireUser(h httpx.HandlerFunc) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		p, err := s.authenticate(r)
		if err != nil {
			var he *httpx.Error
			if errors.As(err, &he) && he.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				if he.Detail == "not authenticated" {
					w.Header().Set("WWW-Authenticate", "Bearer")
				}
			}
			return err
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// requireAdmin guards h: 401 as requireUser, then 403 unless the user's
// current role (from the database) is admin.
func (s *Service) requireAdmin(h httpx.HandlerFunc) http.Handler {
	return s.requireUser(func(w http.ResponseWriter, r *http.Request) error {
		if principal(r).Role != "admin" {
			return httpx.Errorf(http.StatusForbidden, "admin privileges required")
		}
		return h(w, r)
	})
}
