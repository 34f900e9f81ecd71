package authsvc

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

// Pagination bounds of list endpoints.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)

// pathID parses the UUID in path value name; a malformed one is a 400,
// never a 500 or a database round trip.
func pathID(r *http.Request, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue(name))
	if err != nil {
		return uuid.Nil, httpx.Errorf(http.StatusBadRequest, "%s must be a UUID", name)
	}
	return id, nil
}

func intParam(r *http.Request, name string, def, min, max int) (int, *httpx.FieldError) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		return 0, &httpx.FieldError{Field: name, Message: fmt.Sprintf("must be an integer from %d to %d", min, max)}
	}
	return n, nil
}

func (s *Service) listUsers(w http.ResponseWriter, r *http.Request) error {
	var fields []httpx.FieldError
	limit, fe := intParam(r, "limit", DefaultPageLimit, 1, MaxPageLimit)
	if fe != nil {
		fields = append(fields, *fe)
	}
	offset, fe := intParam(r, "offset", 0, 0, 1<<31-1)
	if fe != nil {
		fields = append(fields, *fe)
	}
	search := r.URL.Query().Get("search")
	switch {
	case len(search) > 254:
		fields = append(fields, httpx.FieldError{Field: "search", Message: "must be at most 254 bytes"})
	case !validText(search):
		fields = append(fields, httpx.FieldError{Field: "search", Message: "must be UTF-8 text without NUL characters"})
	}
	if len(fields) > 0 {
		return httpx.Invalid(fields)
	}
	users, total, err := s.store.ListUsers(r.Context(), search, limit, offset)
	if err != nil {
		return err
	}
	if users == nil {
		users = []User{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"items": users, "total": total, "limit": limit, "offset": offset})
	return nil
}

func (s *Service) patchUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req struct {
		Role     *string `json:"role"`
		IsActive *bool   `json:"is_active"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
		return err
	}
	if req.Role != nil && *req.Role != "user" && *req.Role != "admin" {
		return httpx.Invalid([]httpx.FieldError{{Field: "role", Message: `must be "user" or "admin"`}})
	}
	u, err := s.store.UpdateUser(r.Context(), id, UserUpdate{Role: req.Role, IsActive: req.IsActive})
	switch {
	case errors.Is(err, ErrNotFound):
		return httpx.Errorf(http.StatusNotFound, "user not found")
	case errors.Is(err, ErrLastAdmin):
		return &httpx.Error{Status: http.StatusConflict, Code: "last_admin",
			Detail: "the last active admin cannot be demoted or deactivated; make another user admin first"}
	case err != nil:
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, u)
	return nil
}

func (s *Service) listGroups(w http.ResponseWriter, r *http.Request) error {
	groups, err := s.store.ListGroups(r.Context())
	if err != nil {
		return err
	}
	if groups == nil {
		groups = []Group{}
	}
	httpx.WriteJSON(w, http.StatusOK, groups)
	return nil
}

type groupRequest struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

// validate checks the request; for a create, name is required.
func (g *groupRequest) validate(create bool) error {
	var fields []httpx.FieldError
	if g.Name != nil || create {
		name, fe := optionalText("name", g.Name, 100)
		switch {
		case fe != nil:
			fields = append(fields, *fe)
		case name == nil:
			fields = append(fields, httpx.FieldError{Field: "name", Message: "is required"})
		case strings.IndexFunc(*name, func(r rune) bool { return unicode.Is(unicode.Cf, r) }) >= 0:
			// Zero-width and bidi characters would make two names look
			// alike that access rules, compared exactly, tell apart.
			fields = append(fields, httpx.FieldError{Field: "name", Message: "must not contain invisible formatting characters"})
		default:
			n := norm.NFC.String(*name)
			g.Name = &n
		}
	}
	if g.Description != nil {
		d, fe := optionalText("description", g.Description, 1000)
		if fe != nil {
			fields = append(fields, *fe)
		} else {
			empty := ""
			if d == nil {
				d = &empty
			}
			g.Description = d
		}
	}
	if len(fields) > 0 {
		return httpx.Invalid(fields)
	}
	return nil
}

var errGroupNameTaken = &httpx.Error{Status: http.StatusConflict, Detail: "a group with this name already exists", Code: "group_name_taken"}
var errGroupNotFound = httpx.Errorf(http.StatusNotFound, "group not found")

func (s *Service) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req groupRequest
	if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
		return err
	}
	if err := req.validate(true); err != nil {
		return err
	}
	desc := ""
	if req.Description != nil {
		desc = *req.Description
	}
	g, err := s.store.CreateGroup(r.Context(), *req.Name, desc)
	if errors.Is(err, ErrGroupNameTaken) {
		return errGroupNameTaken
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, g)
	return nil
}

func (s *Service) getGroup(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	g, err := s.store.Group(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		return errGroupNotFound
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, g)
	return nil
}

func (s *Service) patchGroup(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req groupRequest
	if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
		return err
	}
	if err := req.validate(false); err != nil {
		return err
	}
	g, err := s.store.UpdateGroup(r.Context(), id, req.Name, req.Description)
	switch {
	case errors.Is(err, ErrNotFound):
		return errGroupNotFound
	case errors.Is(err, ErrGroupNameTaken):
		return errGroupNameTaken
	case err != nil:
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, g)
	return nil
}

func (s *Service) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if err := s.store.DeleteGroup(r.Context(), id); errors.Is(err, ErrNotFound) {
		return errGroupNotFound
	} else if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func memberIDs(r *http.Request) (uuid.UUID, uuid.UUID, error) {
	gid, err := pathID(r, "id")
	if err != nil {
		return gid, gid, err
	}
	uid, err := pathID(r, "user_id")
	return gid, uid, err
}

func (s *Service) addMember(w http.ResponseWriter, r *http.Request) error {
	gid, uid, err := memberIDs(r)
	if err != nil {
		return err
	}
	g, err := s.store.AddMember(r.Context(), gid, uid)
	switch {
	case errors.Is(err, ErrNotFound):
		return httpx.Errorf(http.StatusNotFound, "group or user not found")
	case errors.Is(err, ErrAlreadyMember):
		return &httpx.Error{Status: http.StatusConflict, Detail: "user is already a member of this group", Code: "already_member"}
	case err != nil:
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, g)
	return nil
}

func (s *Service) removeMember(w http.ResponseWriter, r *http.Request) error {
	gid, uid, err := memberIDs(r)
	if err != nil {
		return err
	}
	if err := s.store.RemoveMember(r.Context(), gid, uid); errors.Is(err, ErrNotFound) {
		return httpx.Errorf(http.StatusNotFound, "membership not found")
	} else if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
