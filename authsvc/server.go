// Package authsvc is the accounts service behind the edge: registration,
// login and access tokens, the current user, profiles, and the admin API for
// users and groups, on PostgreSQL (schema auth). It checks every bearer token
// itself, with the edge's rules, and loads the user from the database on
// each request, so role and is_active never come from a stale token.
//
// It must never trust X-User-* headers: it sits behind the edge but verifies
// identities on its own.
package authsvc

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
	"github.com/gatehouse/gatehouse/internal/httpx"
	"github.com/gatehouse/gatehouse/internal/settingsfile"
)

// Service holds authsvc's dependencies.
type Service struct {
	cfg      *Config
	store    *Store
	pool     *pgxpool.Pool
	hasher   *Hasher
	signer   *accesstoken.Signer
	verifier *accesstoken.Verifier
	jwks     []byte // the published key set, encoded once
	ai       *settingsfile.Store[AISettings]
	aiClient *http.Client
	now      func() time.Time
	log      *slog.Logger
	// loginAttempts and registrations limit those per client address
	// (AUTH_RATE_LIMIT); nil: no limit.
	loginAttempts, registrations *attemptLimiter
}

// New assembles the service. The pool must point at a migrated database.
func New(cfg *Config, pool *pgxpool.Pool, key *rsa.PrivateKey, log *slog.Logger) (*Service, error) {
	signer, err := accesstoken.NewSigner(key)
	if err != nil {
		return nil, err
	}
	jwk, err := accesstoken.PublicJWK(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return nil, fmt.Errorf("encode jwks: %w", err)
	}
	hasher, err := NewHasher(cfg.HashConcurrency, 10*time.Second)
	if err != nil {
		return nil, err
	}
	ai, err := NewAISettingsStore(cfg.AppConfigDir, log)
	if err != nil {
		return nil, err
	}
	verifyKey := accesstoken.RSAKey(&key.PublicKey)
	kid := signer.KeyID()
	s := &Service{
		cfg: cfg, store: NewStore(pool), pool: pool, hasher: hasher, signer: signer, jwks: jwks,
		ai: ai, aiClient: newAIClient(), now: time.Now, log: log,
		loginAttempts: newAttemptLimiter(cfg.AttemptsPerMinute, time.Now),
		registrations: newAttemptLimiter(cfg.AttemptsPerMinute, time.Now),
		verifier: &accesstoken.Verifier{
			Issuer: cfg.Issuer, Audience: cfg.Audience,
			Keys: func(k string) (*accesstoken.Key, error) {
				if k == kid {
					return verifyKey, nil
				}
				return nil, nil
			},
		},
	}
	return s, nil
}

// Handler is the service's whole HTTP surface; every route is listed here.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	h := s.handle
	user, admin := s.requireUser, s.requireAdmin

	mux.Handle("GET /health", httpx.Quiet(h(httpx.Health)))
	mux.Handle("GET /ready", httpx.Quiet(h(httpx.Ready(s.pool))))
	mux.Handle("GET /.well-known/jwks.json", h(s.getJWKS))

	mux.Handle("POST /api/auth/register", h(s.register))
	mux.Handle("POST /api/auth/login", h(s.login))
	mux.Handle("POST /api/auth/logout", user(s.logout))

	// Private: for the edge only, which never routes /internal/*.
	mux.Handle("GET /internal/revocations", httpx.Quiet(h(s.getRevocations)))

	mux.Handle("GET /api/users/me", user(s.getMe))
	mux.Handle("GET /api/users/me/preferences", user(s.getPreferences))
	mux.Handle("PATCH /api/users/me/preferences", user(s.patchPreferences))

	mux.Handle("GET /api/profile", user(s.getProfile))
	mux.Handle("PUT /api/profile", user(s.putProfile))

	mux.Handle("GET /api/admin/users", admin(s.listUsers))
	mux.Handle("PATCH /api/admin/users/{id}", admin(s.patchUser))

	mux.Handle("GET /api/admin/groups", admin(s.listGroups))
	mux.Handle("POST /api/admin/groups", admin(s.createGroup))
	mux.Handle("GET /api/admin/groups/{id}", admin(s.getGroup))
	mux.Handle("PATCH /api/admin/groups/{id}", admin(s.patchGroup))
	mux.Handle("DELETE /api/admin/groups/{id}", admin(s.deleteGroup))
	mux.Handle("POST /api/admin/groups/{id}/members/{user_id}", admin(s.addMember))
	mux.Handle("DELETE /api/admin/groups/{id}/members/{user_id}", admin(s.removeMember))

	// The platform's AI provider (ai.json in APP_CONFIG_DIR), which feature
	// services read; the seed's /api/settings/ai.
	mux.Handle("GET /api/settings/ai", admin(s.getAISettings))
	mux.Handle("PATCH /api/settings/ai", admin(s.patchAISettings))
	mux.Handle("POST /api/settings/ai/test", admin(s.testAISettings))

	return httpx.Middleware(httpx.Routes(mux))
}

func (s *Service) getJWKS(w http.ResponseWriter, r *http.Request) error {
	// Keys change only on rotation; the edge refreshes on an unknown kid.
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(s.jwks)
	return err
}

// handle adapts h like httpx.Handle, and answers 503 instead of 500 when an
// unexplained error comes with an unreachable database, so the client
// knows to retry. Only failing requests pay for the ping. A change is said
// to be unsaved only when no connection could be had: every handler's
// change is its last database step (results are read inside its
// transaction), so that failure came before it. A connection lost on the
// way leaves the outcome unknown, even after a COMMIT was sent.
func (s *Service) handle(h httpx.HandlerFunc) http.Handler {
	return httpx.Handle(func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		var he *httpx.Error
		var pgErr *pgconn.PgError
		if err == nil || errors.As(err, &he) || errors.As(err, &pgErr) || r.Context().Err() != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Second)
		defer cancel()
		if s.pool.Ping(ctx) != nil {
			w.Header().Set("Retry-After", "5")
			detail := "database unavailable; nothing was changed, try again later"
			if !readOnly(r.Method) && !neverSent(err) {
				detail = "database connection lost; the change may or may not have been saved: check before trying again"
			}
			return &httpx.Error{Status: http.StatusServiceUnavailable, Detail: detail, Cause: err}
		}
		return err
	})
}

func readOnly(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// neverSent reports whether err came before the database got anything: no
// connection from the pool. Not pgconn.SafeToRetry: it calls "conn
// closed" safe when the connection died after a COMMIT was written.
func neverSent(err error) bool {
	var connectErr *pgconn.ConnectError
	return errors.As(err, &connectErr) || errors.Is(err, puddle.ErrClosedPool)
}
