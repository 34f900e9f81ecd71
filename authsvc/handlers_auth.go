package authsvc

import (
	"errors"
	"mime"
	"net/http"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
	"github.com/gatehouse/gatehouse/internal/httpx"
)

// validText reports whether s can be stored in or compared with a
// PostgreSQL text value: valid UTF-8 without NUL. JSON bodies are already
// valid UTF-8, but query strings, forms and headers may carry any bytes.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// validateEmail returns the normalised address or a field error.
func validateEmail(raw string) (string, *httpx.FieldError) {
	email := NormaliseEmail(raw)
	bad := &httpx.FieldError{Field: "email", Message: "must be a valid email address"}
	if email == "" || len(email) > 254 {
		return "", bad
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return "", bad
	}
	_, domain, _ := strings.Cut(email, "@")
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", bad
	}
	return email, nil
}

type registerRequest struct {
	Email    string  `json:"email"`
	Password string  `json:"password"`
	FullName *string `json:"full_name"`
}

func (s *Service) register(w http.ResponseWriter, r *http.Request) error {
	if err := attempt(s.registrations, r); err != nil {
		return err
	}
	var req registerRequest
	if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
		return err
	}
	var fields []httpx.FieldError
	email, fe := validateEmail(req.Email)
	if fe != nil {
		fields = append(fields, *fe)
	}
	for _, v := range CheckPasswordPolicy(req.Password) {
		fields = append(fields, httpx.FieldError{Field: "password", Message: v})
	}
	fullName, fe := optionalText("full_name", req.FullName, 200)
	if fe != nil {
		fields = append(fields, *fe)
	}
	if len(fields) > 0 {
		return httpx.Invalid(fields)
	}
	hash, err := s.hasher.Hash(r.Context(), req.Password)
	if err != nil {
		return err
	}
	u, err := s.store.CreateUser(r.Context(), email, hash, "user", fullName)
	if errors.Is(err, ErrEmailTaken) {
		return &httpx.Error{Status: http.StatusConflict, Detail: "an account with this email already exists", Code: "email_taken"}
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, u)
	return nil
}

// loginCredentials reads the OAuth2 password-flow form (as FastAPI's
// OAuth2PasswordRequestForm does) or the same fields as JSON.
func loginCredentials(w http.ResponseWriter, r *http.Request) (username, password string, err error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data":
		// FastAPI's OAuth2PasswordRequestForm took both; a browser's
		// FormData is sent as multipart.
		r.Body = http.MaxBytesReader(w, r.Body, httpx.MaxJSONBody)
		var err error
		if mt == "multipart/form-data" {
			// Everything in memory: the body is at most MaxJSONBody.
			err = r.ParseMultipartForm(httpx.MaxJSONBody)
			if r.MultipartForm != nil {
				defer r.MultipartForm.RemoveAll()
			}
		} else {
			err = r.ParseForm()
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return "", "", httpx.Errorf(http.StatusRequestEntityTooLarge, "request body too large")
			}
			return "", "", httpx.Errorf(http.StatusBadRequest, "malformed form body")
		}
		if gt := r.PostForm.Get("grant_type"); gt != "" && gt != "password" {
			return "", "", httpx.Errorf(http.StatusBadRequest, `grant_type must be "password"`)
		}
		username, password = r.PostForm.Get("username"), r.PostForm.Get("password")
	case "application/json":
		var req struct {
			Username string `json:"username"`
			Email    string `json:"email"`
			Password string `json:"password"`
		}
		if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
			return "", "", err
		}
		username, password = req.Username, req.Password
		if username == "" {
			username = req.Email
		}
	default:
		return "", "", httpx.Errorf(http.StatusUnsupportedMediaType,
			"send username and password as application/x-www-form-urlencoded or multipart/form-data (OAuth2 password flow), or JSON")
	}
	var fields []httpx.FieldError
	if strings.TrimSpace(username) == "" {
		fields = append(fields, httpx.FieldError{Field: "username", Message: "is required"})
	}
	if password == "" {
		fields = append(fields, httpx.FieldError{Field: "password", Message: "is required"})
	}
	if len(fields) > 0 {
		return "", "", httpx.Invalid(fields)
	}
	return username, password, nil
}

var (
	errBadCredentials = &httpx.Error{Status: http.StatusUnauthorized, Detail: "incorrect email or password"}
	errDisabled       = httpx.Errorf(http.StatusForbidden, "account is disabled")
)

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

func (s *Service) login(w http.ResponseWriter, r *http.Request) error {
	if err := attempt(s.loginAttempts, r); err != nil {
		return err
	}
	username, password, err := loginCredentials(w, r)
	if err != nil {
		return err
	}
	// A username PostgreSQL could not compare (not UTF-8, or with NUL) names
	// no account; it gets the unknown account's answer, not a 500.
	var u User
	if validText(username) {
		u, err = s.store.UserByEmail(r.Context(), NormaliseEmail(username))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	hash := u.HashedPassword
	if utf8.RuneCountInString(password) > MaxPasswordLen && utf8.RuneCountInString(norm.NFC.String(password)) > MaxPasswordLen {
		// No stored password is this long, in NFC (as the policy counts
		// now) or as typed (as it counted before; NFC lengthens a few
		// characters, such as U+0958), so it cannot match; it is still
		// hashed (cut to the cap) to take the same time as a wrong one.
		hash, password = "", password[:MaxPasswordLen]
	}
	// Unknown accounts are checked against a dummy hash: same work, same
	// answer, so the response does not tell whether the account exists.
	ok, err := s.hasher.Verify(r.Context(), hash, password)
	if err != nil {
		return err
	}
	if !ok {
		return errBadCredentials
	}
	// The password check may have waited seconds for a hasher slot: the
	// claims (and whether the account is active) come from the account as
	// the session begins, not as it was read above. iat is the session's
	// start by the database's clock, the one cut-offs are stamped with, so
	// that a skewed clock here cannot date a token after a change it
	// predates.
	now := s.now()
	exp := now.Add(s.cfg.AccessTokenTTL)
	host := ""
	if a := clientIP(r); a.IsValid() {
		host = a.String()
	}
	u, groups, sid, err := s.store.OpenSession(r.Context(), u.ID, exp, r.UserAgent(), host)
	if errors.Is(err, ErrNotFound) {
		return errBadCredentials
	}
	if err != nil {
		return err
	}
	if !u.IsActive {
		return errDisabled
	}
	tok, err := s.signer.Sign(&accesstoken.Claims{
		Issuer:    s.cfg.Issuer,
		Subject:   u.ID.String(),
		Audience:  jwt.Audience{s.cfg.Audience},
		Expiry:    jwt.NewNumericDate(exp),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(issuedAt(u.sessionStart, u.TokensNotBefore)),
		ID:        uuid.NewString(),
		SessionID: sid.String(),
		Role:      u.Role,
		Groups:    groups,
	})
	if err != nil {
		return err
	}
	// Token responses must not be cached (RFC 6749 section 5.1).
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, tokenResponse{AccessToken: tok, TokenType: "bearer", ExpiresIn: int(s.cfg.AccessTokenTTL.Seconds())})
	return nil
}
