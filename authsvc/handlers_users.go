package authsvc

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

type meResponse struct {
	User
	Groups []string `json:"groups"`
}

func (s *Service) getMe(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	groups := p.Groups
	if groups == nil {
		groups = []string{}
	}
	httpx.WriteJSON(w, http.StatusOK, meResponse{User: p.User, Groups: groups})
	return nil
}

// MaxAppIDs bounds a user's pinned apps.
const MaxAppIDs = 50

var slugRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$`)

type preferences struct {
	AppIDs []string `json:"app_ids"`
}

func (s *Service) getPreferences(w http.ResponseWriter, r *http.Request) error {
	ids, err := s.store.Preferences(r.Context(), principal(r).ID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, preferences{AppIDs: ids})
	return nil
}

func (s *Service) patchPreferences(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		AppIDs *[]string `json:"app_ids"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
		return err
	}
	if req.AppIDs == nil {
		return httpx.Invalid([]httpx.FieldError{{Field: "app_ids", Message: "is required"}})
	}
	ids, err := cleanAppIDs(*req.AppIDs)
	if err != nil {
		return err
	}
	if err := s.store.SetPreferences(r.Context(), principal(r).ID, ids); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, preferences{AppIDs: ids})
	return nil
}

// cleanAppIDs validates app ids as safe slugs and drops repeats, keeping
// the first occurrence's position (the order is the dashboard's order).
func cleanAppIDs(in []string) ([]string, error) {
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	var fields []httpx.FieldError
	for i, id := range in {
		if !slugRE.MatchString(id) {
			fields = append(fields, httpx.FieldError{Field: fmt.Sprintf("app_ids[%d]", i),
				Message: "must be a slug: lower-case letters, digits, '-' or '_', 1 to 64 characters"})
			continue
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if len(fields) > 0 {
		return nil, httpx.Invalid(fields)
	}
	if len(out) > MaxAppIDs {
		return nil, httpx.Invalid([]httpx.FieldError{{Field: "app_ids", Message: fmt.Sprintf("at most %d apps may be pinned", MaxAppIDs)}})
	}
	return out, nil
}

func (s *Service) getProfile(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.Profile(r.Context(), principal(r).ID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, p)
	return nil
}

var (
	phoneRE  = regexp.MustCompile(`^\+?[0-9][0-9 ().-]{5,30}$`)
	localeRE = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$`)
)

// profileLimits are the maximum lengths, in characters, of the text fields.
var profileLimits = map[string]int{
	"full_name": 200, "phone": 32, "job_title": 100, "department": 100, "location": 100,
	"bio": 2000, "avatar_url": 2048, "timezone": 64, "locale": 35,
}

// putProfile updates the profile. A field left out stays as it is; a field
// sent as null or "" is cleared (the seed's partial-update behaviour), so
// the SPA may send back the whole object it read.
func (s *Service) putProfile(w http.ResponseWriter, r *http.Request) error {
	var req map[string]any
	if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
		return err
	}
	set := map[string]*string{}
	var fields []httpx.FieldError
	for _, name := range profileFields {
		raw, ok := req[name]
		if !ok {
			continue
		}
		if raw == nil {
			set[name] = nil
			continue
		}
		str, isStr := raw.(string)
		if !isStr {
			fields = append(fields, httpx.FieldError{Field: name, Message: "must be a string or null"})
			continue
		}
		v, fe := validateProfileField(name, str)
		if fe != nil {
			fields = append(fields, *fe)
			continue
		}
		set[name] = v
	}
	if len(fields) > 0 {
		return httpx.Invalid(fields)
	}
	p, err := s.store.UpdateProfile(r.Context(), principal(r).ID, set)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, p)
	return nil
}

func validateProfileField(name, raw string) (*string, *httpx.FieldError) {
	v, fe := optionalText(name, &raw, profileLimits[name])
	if fe != nil || v == nil {
		return v, fe
	}
	bad := func(msg string) (*string, *httpx.FieldError) {
		return nil, &httpx.FieldError{Field: name, Message: msg}
	}
	switch name {
	case "phone":
		digits := 0
		for _, c := range *v {
			if c >= '0' && c <= '9' {
				digits++
			}
		}
		if !phoneRE.MatchString(*v) || digits < 6 || digits > 15 {
			return bad("must be a phone number: digits with optional +, spaces, dashes, dots or parentheses (6 to 15 digits)")
		}
	case "avatar_url":
		u, err := url.Parse(*v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return bad("must be an http(s) URL")
		}
	case "timezone":
		if _, err := time.LoadLocation(*v); err != nil || *v == "Local" {
			return bad("must be an IANA time zone such as Europe/Paris")
		}
	case "locale":
		if !localeRE.MatchString(*v) {
			return bad("must be a language tag such as en or pt-BR")
		}
	}
	return v, nil
}

// optionalText trims a free-text field and checks it: at most max
// characters, no control characters except newlines and tabs in bio-like
// text. An empty result is nil (the field is cleared).
func optionalText(name string, in *string, max int) (*string, *httpx.FieldError) {
	if in == nil {
		return nil, nil
	}
	v := strings.TrimSpace(*in)
	if v == "" {
		return nil, nil
	}
	if !utf8.ValidString(v) {
		return nil, &httpx.FieldError{Field: name, Message: "must be valid UTF-8"}
	}
	if n := utf8.RuneCountInString(v); n > max {
		return nil, &httpx.FieldError{Field: name, Message: fmt.Sprintf("must be at most %d characters", max)}
	}
	for _, c := range v {
		if unicode.IsControl(c) && !(name == "bio" && (c == '\n' || c == '\r' || c == '\t')) {
			return nil, &httpx.FieldError{Field: name, Message: "must not contain control characters"}
		}
	}
	return &v, nil
}
