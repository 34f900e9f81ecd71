package authsvc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

func TestRegister(t *testing.T) {
	local := uniqueEmail("ada")
	r := env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: map[string]any{
		"email":    "  " + strings.ToUpper(local[:1]) + local[1:strings.Index(local, "@")] + "@Example.COM ",
		"password": "Str0ng-Passw0rd!", "full_name": "  Ada Lovelace ",
	}}).expect(t, http.StatusCreated)
	var u map[string]any
	r.Decode(t, &u)
	if u["email"] != local {
		t.Errorf("email %q, want the normalised %q", u["email"], local)
	}
	if u["full_name"] != "Ada Lovelace" || u["role"] != "user" || u["is_active"] != true || u["is_superuser"] != false {
		t.Errorf("user %v", u)
	}
	if _, err := uuid.Parse(u["id"].(string)); err != nil {
		t.Errorf("id %v: %v", u["id"], err)
	}
	for _, secret := range []string{"hashed_password", "password", "argon2id", "HashedPassword"} {
		if strings.Contains(string(r.Body), secret) {
			t.Errorf("response leaks %q: %s", secret, r.Body)
		}
	}
	// The stored hash is Argon2id, and logging in with the password works.
	var stored string
	if err := testPool.QueryRow(context.Background(), `SELECT hashed_password FROM auth.users WHERE email = $1`, local).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("stored hash %q", stored)
	}
	env.login(t, local, "Str0ng-Passw0rd!")

	// The same address in another case, with spaces, is a duplicate.
	env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: map[string]any{
		"email": " " + strings.ToUpper(local) + " ", "password": "An0ther-Passw0rd!",
	}}).expectError(t, http.StatusConflict, "already exists")
}

// An address with accents has one stored form, NFC, whichever form the
// keyboard or a paste produced: "josé" typed decomposed (e + U+0301) is the
// same account, not a second one that looks identical in every list.
func TestRegisterEmailUnicodeForms(t *testing.T) {
	at := uniqueEmail("")
	composed, decomposed := "jos\u00e9"+at, "jose\u0301"+at
	r := env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: map[string]any{
		"email": decomposed, "password": "Str0ng-Passw0rd!",
	}}).expect(t, http.StatusCreated)
	var u map[string]any
	r.Decode(t, &u)
	if u["email"] != composed {
		t.Errorf("email %+q, want the NFC form %+q", u["email"], composed)
	}
	env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: map[string]any{
		"email": strings.ToUpper(composed), "password": "An0ther-Passw0rd!",
	}}).expectError(t, http.StatusConflict, "already exists")
	env.login(t, composed, "Str0ng-Passw0rd!")
	env.login(t, decomposed, "Str0ng-Passw0rd!")
}

// A password is the same whichever Unicode form the keyboard sends: "é" as
// one code point or as "e" and a combining accent.
func TestPasswordUnicodeForms(t *testing.T) {
	composed, decomposed := "Caf\u00e9-Cr\u00e8me!", "Cafe\u0301-Cre\u0300me!"
	for _, tt := range []struct{ register, login string }{
		{decomposed, composed},
		{composed, decomposed},
	} {
		email := uniqueEmail("cafe")
		env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: map[string]any{
			"email": email, "password": tt.register,
		}}).expect(t, http.StatusCreated)
		env.login(t, email, tt.login)
		env.login(t, email, tt.register)
	}
	// The length limit counts characters in NFC too: 130 code points as
	// sent, 66 characters.
	email := uniqueEmail("cafe")
	long := "A!" + strings.Repeat("e\u0301", 64)
	env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: map[string]any{
		"email": email, "password": long,
	}}).expect(t, http.StatusCreated)
	env.login(t, email, long)

	// A hash stored before passwords were normalised holds the code points
	// as typed: the same code points still log in.
	u := newUser(t, "user")
	legacy, err := env.svc.hasher.hash([]byte(decomposed))
	if err != nil {
		t.Fatal(err)
	}
	exec(t, `UPDATE auth.users SET hashed_password = $2 WHERE id = $1`, u.ID, legacy)
	env.login(t, u.Email, decomposed)
	// Nor is such a password too long because NFC lengthens it: U+0958
	// becomes two code points, 122 typed are 242 in NFC (found in review).
	lengthened := "A!" + strings.Repeat("\u0958", 120)
	if legacy, err = env.svc.hasher.hash([]byte(lengthened)); err != nil {
		t.Fatal(err)
	}
	exec(t, `UPDATE auth.users SET hashed_password = $2 WHERE id = $1`, u.ID, legacy)
	env.login(t, u.Email, lengthened)
}

func TestRegisterValidation(t *testing.T) {
	okEmail := func() string { return uniqueEmail("val") }
	long := strings.Repeat("Aa1!", 32) + "x" // 129 characters
	tests := []struct {
		name   string
		body   any
		status int
		parts  []string // each must appear in the detail
		absent []string // none may appear in the detail
	}{
		{"too short", map[string]any{"email": okEmail(), "password": "Ab1!"}, 400,
			[]string{"password: must be at least 8 characters long"}, []string{"uppercase", "special"}},
		{"no uppercase", map[string]any{"email": okEmail(), "password": "lowercase-only-1"}, 400,
			[]string{"password: must contain an uppercase letter"}, []string{"special", "at least"}},
		{"no special character", map[string]any{"email": okEmail(), "password": "NoSpecial123"}, 400,
			[]string{"password: must contain a special character"}, []string{"uppercase"}},
		{"contains test in any case", map[string]any{"email": okEmail(), "password": "My-TeSt-Password!"}, 400,
			[]string{`password: must not contain "test"`}, []string{"uppercase", "special"}},
		{"over 128 characters", map[string]any{"email": okEmail(), "password": long}, 400,
			[]string{"password: must be at most 128 characters long"}, nil},
		{"several rules at once", map[string]any{"email": okEmail(), "password": "test"}, 400,
			[]string{"at least 8", "uppercase letter", "special character", `"test"`}, nil},
		{"missing password", map[string]any{"email": okEmail()}, 400, []string{"password: must be at least 8"}, nil},
		{"email and password both bad", map[string]any{"email": "nope", "password": "x"}, 400,
			[]string{"email: must be a valid email address", "password:"}, nil},
		{"full_name too long", map[string]any{"email": okEmail(), "password": "Str0ng-Passw0rd!", "full_name": strings.Repeat("n", 201)},
			400, []string{"full_name: must be at most 200 characters"}, nil},
		{"full_name with control character", map[string]any{"email": okEmail(), "password": "Str0ng-Passw0rd!", "full_name": "a\x07b"},
			400, []string{"full_name: must not contain control characters"}, nil},
		{"wrong type for email", `{"email": 42, "password": "Str0ng-Passw0rd!"}`, 400, []string{"email", "string"}, nil},
		{"wrong type for full_name", `{"email": "x@example.com", "password": "Str0ng-Passw0rd!", "full_name": ["a"]}`, 400,
			[]string{"full_name", "string"}, nil},
		{"malformed JSON", `{"email": "a@example.com", "password": `, 400, []string{"malformed JSON"}, nil},
		{"trailing data", `{"email": "a@example.com"} {"x": 1}`, 400, []string{"trailing data"}, nil},
		{"empty body", "", 400, []string{"empty"}, nil},
		{"array body", `[]`, 400, []string{"JSON object"}, nil},
	}
	for _, bad := range []string{"", "plain", "a@b", "a@@example.com", "Ada <ada@example.com>", "a b@example.com",
		"ada@.example.com", "ada@example.com.", "@example.com", "ada@", strings.Repeat("a", 250) + "@example.com"} {
		tests = append(tests, struct {
			name   string
			body   any
			status int
			parts  []string
			absent []string
		}{"invalid email " + bad[:min(len(bad), 30)], map[string]any{"email": bad, "password": "Str0ng-Passw0rd!"}, 400,
			[]string{"email: must be a valid email address"}, []string{"password"}})
	}
	before := env.svc.hasher.verifications.Load()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: tt.body})
			r.expectError(t, tt.status, tt.parts...)
			d := r.Detail(t)
			for _, a := range tt.absent {
				if strings.Contains(d, a) {
					t.Errorf("detail %q mentions %q", d, a)
				}
			}
			if tt.status == 400 && strings.Contains(tt.name, "rule") {
				if errs, _ := r.JSON(t)["errors"].([]any); len(errs) != 4 {
					t.Errorf("errors %v, want one per broken rule", r.JSON(t)["errors"])
				}
			}
		})
	}
	if n := env.svc.hasher.verifications.Load(); n != before {
		t.Errorf("invalid registrations ran %d password checks", n-before)
	}
	var count int
	if err := testPool.QueryRow(context.Background(), `SELECT count(*) FROM auth.users WHERE email LIKE 'val-%'`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 0 {
		t.Errorf("%d invalid registrations were stored", count)
	}
}

func TestRegisterTransport(t *testing.T) {
	valid := `{"email": "transport@example.com", "password": "Str0ng-Passw0rd!"}`
	t.Run("wrong content type", func(t *testing.T) {
		env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: valid, ContentType: "text/plain"}).
			expectError(t, http.StatusUnsupportedMediaType, "application/json")
		env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register",
			Body: url.Values{"email": {"a@example.com"}, "password": {"Str0ng-Passw0rd!"}}}).
			expectError(t, http.StatusUnsupportedMediaType)
	})
	t.Run("body over 64 KiB", func(t *testing.T) {
		big := `{"email": "big@example.com", "password": "Str0ng-Passw0rd!", "full_name": "` + strings.Repeat("x", 70<<10) + `"}`
		env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: big}).
			expectError(t, http.StatusRequestEntityTooLarge, "too large")
		// Padding after a valid object counts too.
		env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Body: valid + strings.Repeat(" ", 70<<10)}).
			expectError(t, http.StatusRequestEntityTooLarge, "too large")
	})
	t.Run("wrong method", func(t *testing.T) {
		env.do(t, req{Method: http.MethodGet, Path: "/api/auth/register"}).
			expectError(t, http.StatusMethodNotAllowed, "not allowed")
	})
}

func TestLogin(t *testing.T) {
	u := newUser(t, "user")
	g, err := env.svc.store.CreateGroup(context.Background(), "login-editors-"+uuid.NewString()[:6], "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.svc.store.AddMember(context.Background(), g.ID, u.ID); err != nil {
		t.Fatal(err)
	}
	jwks := env.get(t, "/.well-known/jwks.json", "").expect(t, http.StatusOK)
	var set jose.JSONWebKeySet
	jwks.Decode(t, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("jwks has %d keys", len(set.Keys))
	}

	for _, tc := range []struct {
		name  string
		body  any
		ctype string
	}{
		{"form", url.Values{"username": {" " + strings.ToUpper(u.Email) + " "}, "password": {fixturePassword}, "grant_type": {"password"}, "scope": {""}}, ""},
		{"form with charset, as browsers send it", url.Values{"username": {u.Email}, "password": {fixturePassword}},
			"application/x-www-form-urlencoded;charset=UTF-8"},
		{"json username", map[string]string{"username": u.Email, "password": fixturePassword}, ""},
		{"json email", map[string]string{"email": u.Email, "password": fixturePassword}, "application/json; charset=utf-8"},
		{"multipart, as a browser's FormData sends it", "------b\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n" + u.Email +
			"\r\n------b\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n" + fixturePassword + "\r\n------b--\r\n",
			"multipart/form-data; boundary=----b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now().Truncate(time.Second)
			r := env.do(t, req{Method: http.MethodPost, Path: "/api/auth/login", Body: tc.body, ContentType: tc.ctype,
				Header: http.Header{"User-Agent": {"login-test/1.0"}}}).expect(t, http.StatusOK)
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			var tr map[string]any
			r.Decode(t, &tr)
			if tr["token_type"] != "bearer" || tr["expires_in"] != float64(15*60) {
				t.Errorf("token response %v", tr)
			}
			tok, _ := tr["access_token"].(string)

			// Header.
			hdr := decodeSegment(t, tok, 0)
			if hdr["alg"] != "RS256" || hdr["typ"] != "at+jwt" || hdr["kid"] != set.Keys[0].KeyID {
				t.Errorf("header %v; jwks kid %q", hdr, set.Keys[0].KeyID)
			}
			// Signature, with the published key.
			parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
			if err != nil {
				t.Fatal(err)
			}
			var c accesstoken.Claims
			if err := parsed.Claims(set.Keys[0].Key, &c); err != nil {
				t.Fatalf("the JWKS key does not verify the token: %v", err)
			}
			if c.Issuer != "gatehouse-test" || len(c.Audience) != 1 || c.Audience[0] != "gatehouse-test-aud" {
				t.Errorf("iss %q aud %v", c.Issuer, c.Audience)
			}
			if c.Subject != u.ID.String() || c.Role != "user" {
				t.Errorf("sub %q role %q, want %s user", c.Subject, c.Role, u.ID)
			}
			if len(c.Groups) != 1 || c.Groups[0] != g.Name {
				t.Errorf("groups %v, want [%s]", c.Groups, g.Name)
			}
			nbf, iat := c.NotBefore.Time(), c.IssuedAt.Time()
			if nbf.Before(start) || nbf.After(time.Now()) {
				t.Errorf("nbf %v, login started %v", nbf, start)
			}
			// iat is nbf, or the next second when the user's cut-off (which
			// AddMember just moved) falls in the login's second: see issuedAt.
			if d := iat.Sub(nbf); d != 0 && d != time.Second {
				t.Errorf("iat %v nbf %v", iat, nbf)
			}
			if d := c.Expiry.Time().Sub(nbf); d != 15*time.Minute {
				t.Errorf("exp - nbf = %v, want the TTL 15m", d)
			}
			if _, err := uuid.Parse(c.ID); err != nil {
				t.Errorf("jti %q: %v", c.ID, err)
			}
			// The sid names this user's session row.
			var owner uuid.UUID
			var ua string
			var expires time.Time
			if err := testPool.QueryRow(context.Background(), `SELECT user_id, user_agent, expires_at FROM auth.sessions WHERE id = $1`,
				c.SessionID).Scan(&owner, &ua, &expires); err != nil {
				t.Fatalf("session %q: %v", c.SessionID, err)
			}
			if owner != u.ID || ua != "login-test/1.0" || expires.Sub(c.Expiry.Time()).Abs() > time.Second {
				t.Errorf("session owner %s ua %q expires %v; token exp %v", owner, ua, expires, c.Expiry.Time())
			}
			// And the token works.
			env.get(t, "/api/users/me", tok).expect(t, http.StatusOK)
		})
	}
}

func TestLoginTokenIDsAreUnique(t *testing.T) {
	u := newUser(t, "user")
	a, b := env.login(t, u.Email, fixturePassword), env.login(t, u.Email, fixturePassword)
	ca, cb := decodeSegment(t, a, 1), decodeSegment(t, b, 1)
	if ca["jti"] == cb["jti"] || ca["sid"] == cb["sid"] {
		t.Errorf("two logins share jti or sid: %v %v", ca, cb)
	}
}

func TestLoginFailures(t *testing.T) {
	u := newUser(t, "user")
	inactive := newUser(t, "user")
	exec(t, `UPDATE auth.users SET is_active = false WHERE id = $1`, inactive.ID)
	form := func(user, pw string) url.Values { return url.Values{"username": {user}, "password": {pw}} }
	tests := []struct {
		name       string
		body       any
		ctype      string
		status     int
		detail     string
		hashChecks int64 // password verifications the attempt must run
	}{
		{"wrong password", form(u.Email, "Wrong-Pass-1!"), "", 401, "incorrect email or password", 1},
		{"unknown email", form(uniqueEmail("ghost"), fixturePassword), "", 401, "incorrect email or password", 1},
		{"wrong password as JSON", map[string]string{"username": u.Email, "password": "nope"}, "", 401, "incorrect email or password", 1},
		{"over-long password", form(u.Email, fixturePassword+strings.Repeat("x", 200)), "", 401, "incorrect email or password", 1},
		{"NUL in the username", form("a\x00b@example.com", fixturePassword), "", 401, "incorrect email or password", 1},
		{"username not UTF-8", form("\xff\xfe@example.com", fixturePassword), "", 401, "incorrect email or password", 1},
		{"NUL in a JSON username", `{"username": "x\u0000@example.com", "password": "x"}`, "", 401, "incorrect email or password", 1},
		// A password NFC changes is tried both ways (as hashed now, and as
		// hashes made before normalisation hold it), for unknown accounts too.
		{"wrong decomposed password", form(u.Email, "Cafe\u0301-1!"), "", 401, "incorrect email or password", 2},
		{"unknown email, decomposed password", form(uniqueEmail("ghost"), "Cafe\u0301-1!"), "", 401, "incorrect email or password", 2},
		{"inactive account, right password", form(inactive.Email, fixturePassword), "", 403, "disabled", 1},
		{"inactive account, wrong password", form(inactive.Email, "Wrong-Pass-1!"), "", 401, "incorrect email or password", 1},
		{"grant_type other than password", url.Values{"username": {u.Email}, "password": {fixturePassword}, "grant_type": {"client_credentials"}},
			"", 400, "grant_type", 0},
		{"missing password", url.Values{"username": {u.Email}}, "", 400, "password: is required", 0},
		{"missing username", url.Values{"password": {fixturePassword}}, "", 400, "username: is required", 0},
		{"missing both", url.Values{}, "", 400, "username: is required; password: is required", 0},
		{"blank username", form("   ", fixturePassword), "", 400, "username: is required", 0},
		{"missing JSON fields", map[string]string{}, "", 400, "username: is required", 0},
		{"malformed JSON", `{"username": `, "", 400, "malformed JSON", 0},
		{"wrong JSON type", `{"username": "a@example.com", "password": 12345678}`, "", 400, "password", 0},
		{"text/plain", "username=a&password=b", "text/plain", 415, "x-www-form-urlencoded", 0},
		{"no content type", "username=a&password=b", "-", 415, "x-www-form-urlencoded", 0},
		{"multipart without fields", "--x--\r\n", "multipart/form-data; boundary=x", 400, "username: is required", 0},
		{"multipart without boundary", "--x--\r\n", "multipart/form-data", 400, "malformed form body", 0},
		{"multipart, wrong password", "--x\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n" + u.Email +
			"\r\n--x\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nWrong-Pass-1!\r\n--x--\r\n",
			"multipart/form-data; boundary=x", 401, "incorrect email or password", 1},
		{"form over 64 KiB", form(u.Email, strings.Repeat("x", 70<<10)), "", 413, "too large", 0},
		{"multipart over 64 KiB", "--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\n\r\n" +
			strings.Repeat("x", 70<<10) + "\r\n--x--\r\n", "multipart/form-data; boundary=x", 413, "too large", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := env.svc.hasher.verifications.Load()
			r := env.do(t, req{Method: http.MethodPost, Path: "/api/auth/login", Body: tt.body, ContentType: tt.ctype})
			r.expectError(t, tt.status, tt.detail)
			if _, ok := r.JSON(t)["access_token"]; ok {
				t.Error("a failed login returned a token")
			}
			if n := env.svc.hasher.verifications.Load() - before; n != tt.hashChecks {
				t.Errorf("%d password verifications, want %d", n, tt.hashChecks)
			}
			if tt.status == 401 && r.Detail(t) != "incorrect email or password" {
				t.Errorf("401 detail %q differs from the other credential failures", r.Detail(t))
			}
		})
	}
}

func TestLoginHasherBusy(t *testing.T) {
	e := newEnv(t, testPool, testConfig())
	h, err := NewHasher(1, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.hasher = h
	h.slots <- struct{}{} // a sign-in that never finishes
	r := e.do(t, req{Method: http.MethodPost, Path: "/api/auth/login",
		Body: url.Values{"username": {"a@example.com"}, "password": {"x"}}})
	r.expectError(t, http.StatusServiceUnavailable, "too many sign-ins", "request id")
	if r.JSON(t)["code"] != "busy" {
		t.Errorf("body %s, want code busy", r.Body)
	}
	<-h.slots
	e.do(t, req{Method: http.MethodPost, Path: "/api/auth/login",
		Body: url.Values{"username": {"a@example.com"}, "password": {"x"}}}).expect(t, http.StatusUnauthorized)
}

func TestJWKS(t *testing.T) {
	r := env.get(t, "/.well-known/jwks.json", "").expect(t, http.StatusOK)
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "public") || !strings.Contains(cc, "max-age=") {
		t.Errorf("Cache-Control %q", cc)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	r.Decode(t, &raw)
	if len(raw.Keys) != 1 {
		t.Fatalf("keys %v", raw.Keys)
	}
	k := raw.Keys[0]
	if k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" || k["kid"] != env.svc.signer.KeyID() {
		t.Errorf("key %v", k)
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if _, ok := k[private]; ok {
			t.Errorf("JWKS publishes the private member %q", private)
		}
	}
	var set jose.JSONWebKeySet
	r.Decode(t, &set)
	pub, ok := set.Keys[0].Key.(*rsa.PublicKey)
	if !ok || pub.N.Cmp(testKey.N) != 0 || pub.E != testKey.E {
		t.Fatalf("published key %T is not the signing key", set.Keys[0].Key)
	}
	// The published key verifies a token the service issues.
	tok := env.token(t, newUser(t, "user"))
	v := &accesstoken.Verifier{Issuer: "gatehouse-test", Audience: "gatehouse-test-aud",
		Keys: func(kid string) (*accesstoken.Key, error) {
			if kid == k["kid"] {
				return accesstoken.RSAKey(pub), nil
			}
			return nil, nil
		}}
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("verify with the JWKS key: %v", err)
	}
}

// decodeSegment decodes the header (0) or the claims (1) of a JWT without
// verifying it.
func decodeSegment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// otherKey is a second signing key, for tokens the service must refuse.
func otherSigner(t *testing.T) *accesstoken.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := accesstoken.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Request headers may carry any bytes; what login stores of them must not
// make PostgreSQL refuse the session (a 500 instead of a token).
func TestLoginStoresOddUserAgents(t *testing.T) {
	u := newUser(t, "user")
	for _, ua := range []string{
		strings.Repeat("a", 511) + "é", // cut at 512 bytes mid-rune
		"agent \xff\xfe bytes",         // not UTF-8 at all
		strings.Repeat("x", 5000),
	} {
		r := env.do(t, req{Method: http.MethodPost, Path: "/api/auth/login", Header: http.Header{"User-Agent": {ua}},
			Body: url.Values{"username": {u.Email}, "password": {fixturePassword}}})
		r.expect(t, http.StatusOK)
		var tr tokenResponse
		r.Decode(t, &tr)
		var stored string
		if err := testPool.QueryRow(context.Background(), `SELECT user_agent FROM auth.sessions WHERE id = $1`,
			decodeSegment(t, tr.AccessToken, 1)["sid"]).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if len(stored) > 512 || !strings.HasPrefix(ua, stored[:min(len(stored), 5)]) {
			t.Errorf("stored user agent %.40q (%d bytes) for %.40q", stored, len(stored), ua)
		}
	}
}

func TestRegisterConcurrentDuplicates(t *testing.T) {
	email := uniqueEmail("race")
	statuses := make(chan int, 2)
	done := make(chan struct{})
	for range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			r := env.do(t, req{Method: http.MethodPost, Path: "/api/auth/register",
				Body: map[string]any{"email": email, "password": "Str0ng-Passw0rd!"}})
			statuses <- r.Status
		}()
	}
	<-done
	<-done
	a, b := <-statuses, <-statuses
	if !(a == 201 && b == 409 || a == 409 && b == 201) {
		t.Errorf("two registrations of one email at once: %d and %d, want 201 and 409", a, b)
	}
}

// Login checks the password first and issues the token after: the account
// may change in between (a password check can wait seconds for a hasher
// slot). The token must carry the account as it is when the session
// begins, or a demoted, deactivated or regrouped user gets a token whose
// stale claims the edge accepts: no session of theirs predates the
// change's cut-off, so the revocation feed does not list them.
func TestLoginClaimsFollowChangesDuringThePasswordCheck(t *testing.T) {
	cfg := testConfig()
	cfg.HashConcurrency = 1
	e := newEnv(t, testPool, cfg)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		role   string
		change func(t *testing.T, u User) string // returns a group the token must name, if any
		status int
		role2  string
	}{
		{"demoted", "admin", func(t *testing.T, u User) string {
			newUser(t, "admin") // not the last admin
			role := "user"
			if _, err := e.svc.store.UpdateUser(ctx, u.ID, UserUpdate{Role: &role}); err != nil {
				t.Fatal(err)
			}
			return ""
		}, http.StatusOK, "user"},
		{"deactivated", "user", func(t *testing.T, u User) string {
			off := false
			if _, err := e.svc.store.UpdateUser(ctx, u.ID, UserUpdate{IsActive: &off}); err != nil {
				t.Fatal(err)
			}
			return ""
		}, http.StatusForbidden, ""},
		{"added to a group", "user", func(t *testing.T, u User) string {
			g, err := e.svc.store.CreateGroup(ctx, "mid-login-"+uuid.NewString()[:6], "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.store.AddMember(ctx, g.ID, u.ID); err != nil {
				t.Fatal(err)
			}
			return g.Name
		}, http.StatusOK, "user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUser(t, tc.role)
			// Hold the only hasher slot, so the login waits in its
			// password check after it has read the account.
			if err := e.svc.hasher.acquire(ctx); err != nil {
				t.Fatal(err)
			}
			var release sync.Once
			defer release.Do(e.svc.hasher.release)
			got := e.loginInBackground(u)
			time.Sleep(300 * time.Millisecond)
			group := tc.change(t, u)
			// A token issued in the change's second is caught by the iat
			// rule anyway; make the stale one look fresh.
			time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
			release.Do(e.svc.hasher.release)
			r := (<-got).expect(t, tc.status)
			if tc.status != http.StatusOK {
				return
			}
			var tr tokenResponse
			r.Decode(t, &tr)
			c := decodeSegment(t, tr.AccessToken, 1)
			if c["role"] != tc.role2 {
				t.Errorf("role claim %v, want %s", c["role"], tc.role2)
			}
			if group != "" {
				if gs, _ := c["groups"].([]any); len(gs) != 1 || gs[0] != group {
					t.Errorf("groups claim %v, want [%s]", c["groups"], group)
				}
			}
		})
	}
}
