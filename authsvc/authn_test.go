package authsvc

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

// claimsFor are valid claims for u in the shared service; tests spoil one.
func claimsFor(u User, sid uuid.UUID) *accesstoken.Claims {
	now := time.Now()
	return &accesstoken.Claims{
		Issuer: "gatehouse-test", Subject: u.ID.String(), Audience: jwt.Audience{"gatehouse-test-aud"},
		Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute)), NotBefore: jwt.NewNumericDate(now),
		IssuedAt: jwt.NewNumericDate(now), ID: uuid.NewString(), SessionID: sid.String(), Role: u.Role,
	}
}

func TestAuthenticationRefusals(t *testing.T) {
	ctx := context.Background()
	u := newUser(t, "user")
	_, _, sid, err := env.svc.store.OpenSession(ctx, u.ID, time.Now().Add(time.Hour), "", "")
	if err != nil {
		t.Fatal(err)
	}
	other := newUser(t, "user")
	_, _, otherSID, err := env.svc.store.OpenSession(ctx, other.ID, time.Now().Add(time.Hour), "", "")
	if err != nil {
		t.Fatal(err)
	}
	good := signClaims(t, env.svc.signer, claimsFor(u, sid))
	env.get(t, "/api/users/me", good).expect(t, http.StatusOK)

	spoil := func(f func(c *accesstoken.Claims)) string {
		c := claimsFor(u, sid)
		f(c)
		return signClaims(t, env.svc.signer, c)
	}
	foreign := otherSigner(t)
	tests := []struct {
		name   string
		header []string // Authorization header values
		path   string   // default /api/users/me
		detail string
	}{
		{"no token", nil, "", "not authenticated"},
		{"empty bearer", []string{"Bearer "}, "", "not authenticated"},
		{"basic scheme", []string{"Basic dXNlcjpwYXNz"}, "", "not authenticated"},
		{"token without scheme", []string{good}, "", "not authenticated"},
		{"garbage", []string{"Bearer not.a.jwt"}, "", "invalid token"},
		{"garbage without dots", []string{"Bearer abcdef"}, "", "invalid token"},
		{"tampered payload", []string{"Bearer " + tamper(good)}, "", "invalid token"},
		{"another key", []string{"Bearer " + signClaims(t, foreign, claimsFor(u, sid))}, "", "invalid token"},
		{"expired", []string{"Bearer " + spoil(func(c *accesstoken.Claims) {
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
			c.NotBefore = c.IssuedAt
			c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		})}, "", "invalid token"},
		{"not yet valid", []string{"Bearer " + spoil(func(c *accesstoken.Claims) {
			c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
		})}, "", "invalid token"},
		{"wrong issuer", []string{"Bearer " + spoil(func(c *accesstoken.Claims) { c.Issuer = "someone-else" })}, "", "invalid token"},
		{"wrong audience", []string{"Bearer " + spoil(func(c *accesstoken.Claims) { c.Audience = jwt.Audience{"other-aud"} })}, "", "invalid token"},
		{"subject not a uuid", []string{"Bearer " + spoil(func(c *accesstoken.Claims) { c.Subject = "admin" })}, "", "invalid token"},
		{"unknown subject", []string{"Bearer " + spoil(func(c *accesstoken.Claims) { c.Subject = uuid.NewString() })}, "", "invalid token"},
		{"sid not a uuid", []string{"Bearer " + spoil(func(c *accesstoken.Claims) { c.SessionID = "x" })}, "", "invalid token"},
		{"unknown sid", []string{"Bearer " + spoil(func(c *accesstoken.Claims) { c.SessionID = uuid.NewString() })}, "", "session has ended"},
		{"another user's sid", []string{"Bearer " + spoil(func(c *accesstoken.Claims) { c.SessionID = otherSID.String() })}, "", "session has ended"},
		{"no iat", []string{"Bearer " + spoil(func(c *accesstoken.Claims) { c.IssuedAt = nil })}, "", "revoked"},
		{"two Authorization headers", []string{"Bearer " + good, "Bearer " + good}, "", "invalid token"},
		{"token only in the query string", nil, "/api/users/me?access_token=" + good, "not authenticated"},
		{"token as another query name", nil, "/api/users/me?token=" + good, "not authenticated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/api/users/me"
			}
			h := http.Header{}
			for _, v := range tt.header {
				h.Add("Authorization", v)
			}
			r := env.do(t, req{Method: http.MethodGet, Path: path, Header: h})
			r.expectError(t, http.StatusUnauthorized, tt.detail)
			wa := r.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, "Bearer") {
				t.Errorf("WWW-Authenticate %q", wa)
			}
			if tt.detail != "not authenticated" && wa != `Bearer error="invalid_token"` {
				t.Errorf("WWW-Authenticate %q, want the invalid_token error", wa)
			}
			if strings.Contains(string(r.Body), u.Email) {
				t.Errorf("refusal leaks the user: %s", r.Body)
			}
		})
	}
	// The good token still works: nothing above changed the account.
	env.get(t, "/api/users/me", good).expect(t, http.StatusOK)
}

// tamper flips the role in a token's payload, keeping its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = strings.Replace(parts[1], parts[1][10:14], "AAAA", 1)
	return strings.Join(parts, ".")
}

func TestAuthenticationFollowsDatabase(t *testing.T) {
	ctx := context.Background()
	t.Run("deactivated user", func(t *testing.T) {
		u := newUser(t, "user")
		tok := env.token(t, u)
		env.get(t, "/api/users/me", tok).expect(t, http.StatusOK)
		exec(t, `UPDATE auth.users SET is_active = false WHERE id = $1`, u.ID)
		env.get(t, "/api/users/me", tok).expectError(t, http.StatusUnauthorized, "disabled")
	})
	t.Run("revoked session", func(t *testing.T) {
		u := newUser(t, "user")
		tok := env.token(t, u)
		other := env.token(t, u)
		env.get(t, "/api/users/me", tok).expect(t, http.StatusOK)
		sid := decodeSegment(t, tok, 1)["sid"]
		exec(t, `UPDATE auth.sessions SET revoked_at = now() WHERE id = $1`, sid)
		env.get(t, "/api/users/me", tok).expectError(t, http.StatusUnauthorized, "session has ended")
		// Only that session ends.
		env.get(t, "/api/users/me", other).expect(t, http.StatusOK)
	})
	t.Run("deleted session", func(t *testing.T) {
		u := newUser(t, "user")
		tok := env.token(t, u)
		exec(t, `DELETE FROM auth.sessions WHERE id = $1`, decodeSegment(t, tok, 1)["sid"])
		env.get(t, "/api/users/me", tok).expectError(t, http.StatusUnauthorized, "session has ended")
	})
	t.Run("deleted user", func(t *testing.T) {
		u := newUser(t, "user")
		tok := env.token(t, u)
		exec(t, `DELETE FROM auth.users WHERE id = $1`, u.ID)
		env.get(t, "/api/users/me", tok).expectError(t, http.StatusUnauthorized, "invalid token")
	})
	t.Run("token issued before tokens_valid_after", func(t *testing.T) {
		u := newUser(t, "user")
		tok := env.token(t, u)
		env.get(t, "/api/users/me", tok).expect(t, http.StatusOK)
		exec(t, `UPDATE auth.users SET tokens_valid_after = now() + interval '2 seconds' WHERE id = $1`, u.ID)
		env.get(t, "/api/users/me", tok).expectError(t, http.StatusUnauthorized, "revoked")
	})
	t.Run("cut-off in the second the token was issued", func(t *testing.T) {
		// iat has whole seconds: a token issued a moment before the
		// cut-off, in the same second, must be void too, and a token
		// issued after it must not be.
		for range 3 {
			u := newUser(t, "user")
			before := env.token(t, u)
			exec(t, `UPDATE auth.users SET tokens_valid_after = now() WHERE id = $1`, u.ID)
			after := env.token(t, u)
			env.get(t, "/api/users/me", before).expectError(t, http.StatusUnauthorized, "revoked")
			env.get(t, "/api/users/me", after).expect(t, http.StatusOK)
		}
	})
	t.Run("admin changes void earlier tokens at once", func(t *testing.T) {
		admin := newUser(t, "admin")
		adminTok := env.token(t, admin)
		u := newUser(t, "user")
		tok := env.token(t, u)
		env.do(t, req{Method: http.MethodPatch, Path: "/api/admin/users/" + u.ID.String(), Token: adminTok,
			Body: map[string]any{"role": "admin"}}).expect(t, http.StatusOK)
		env.get(t, "/api/users/me", tok).expectError(t, http.StatusUnauthorized, "revoked")
		// A new login gets a token that works, with the new role.
		fresh := env.login(t, u.Email, fixturePassword)
		if role := decodeSegment(t, fresh, 1)["role"]; role != "admin" {
			t.Errorf("role claim %v after promotion", role)
		}
		env.get(t, "/api/admin/users?limit=1", fresh).expect(t, http.StatusOK)
	})
	t.Run("role comes from the database, not the token", func(t *testing.T) {
		u := newUser(t, "user")
		tok := env.token(t, u) // role claim "user"
		env.get(t, "/api/admin/users", tok).expectError(t, http.StatusForbidden, "admin")
		exec(t, `UPDATE auth.users SET role = 'admin' WHERE id = $1`, u.ID)
		env.get(t, "/api/admin/users?limit=1", tok).expect(t, http.StatusOK)
		r := env.get(t, "/api/users/me", tok).expect(t, http.StatusOK)
		if m := r.JSON(t); m["role"] != "admin" || m["is_superuser"] != true {
			t.Errorf("/me %v, want the database's role", m)
		}

		a := newUser(t, "admin")
		adminTok := env.token(t, a) // role claim "admin"
		env.get(t, "/api/admin/users?limit=1", adminTok).expect(t, http.StatusOK)
		exec(t, `UPDATE auth.users SET role = 'user' WHERE id = $1`, a.ID)
		env.get(t, "/api/admin/users", adminTok).expectError(t, http.StatusForbidden, "admin")
	})
	t.Run("a forged admin role claim gives nothing", func(t *testing.T) {
		u := newUser(t, "user")
		_, _, sid, err := env.svc.store.OpenSession(ctx, u.ID, time.Now().Add(time.Hour), "", "")
		if err != nil {
			t.Fatal(err)
		}
		c := claimsFor(u, sid)
		c.Role = "admin"
		env.get(t, "/api/admin/users", signClaims(t, env.svc.signer, c)).expect(t, http.StatusForbidden)
	})
}

func TestIssuedBeforeCutoff(t *testing.T) {
	cutoff := time.Date(2030, 1, 2, 3, 4, 5, 500_000_000, time.UTC) // 03:04:05.5
	at := func(sec int, ns int) time.Time { return time.Date(2030, 1, 2, 3, 4, sec, ns, time.UTC) }
	tests := []struct {
		name    string
		iat     *jwt.NumericDate
		session time.Time
		want    bool
	}{
		{"no iat", nil, at(6, 0), true},
		{"earlier second", jwt.NewNumericDate(at(4, 0)), at(4, 0), true},
		{"later second", jwt.NewNumericDate(at(6, 0)), at(6, 0), false},
		// A login between two changes within one second: iat is the first
		// cut-off rounded up, the second change's cut-off is later.
		{"later second, session before the cut-off", jwt.NewNumericDate(at(6, 0)), at(5, 200_000_000), true},
		{"earlier second, session after the cut-off", jwt.NewNumericDate(at(4, 0)), at(5, 700_000_000), false},
		{"same second, session before the cut-off", jwt.NewNumericDate(at(5, 0)), at(5, 200_000_000), true},
		{"same second, session after the cut-off", jwt.NewNumericDate(at(5, 0)), at(5, 700_000_000), false},
		{"same second, session at the cut-off", jwt.NewNumericDate(at(5, 0)), cutoff, false},
		{"same second, no session", jwt.NewNumericDate(at(5, 0)), time.Time{}, true},
		{"earlier second, no session", jwt.NewNumericDate(at(4, 0)), time.Time{}, true},
		{"later second, no session", jwt.NewNumericDate(at(6, 0)), time.Time{}, false},
	}
	for _, tt := range tests {
		if got := issuedBeforeCutoff(tt.iat, tt.session, cutoff); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	// The column's default cut-off voids nothing.
	if issuedBeforeCutoff(jwt.NewNumericDate(at(5, 0)), time.Time{}, time.Unix(0, 0)) {
		t.Error("a token without a session is void under the default cut-off")
	}
}
