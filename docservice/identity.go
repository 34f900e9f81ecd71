package docservice

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

// AdminGroup is the group whose members manage docservice (its settings and
// every category) without being platform admins; the manifest names it.
const AdminGroup = "doc-service-admin"

// Principal is the caller as the edge identified it.
type Principal struct {
	ID     uuid.UUID
	Admin  bool     // X-User-Role: admin (the seed's superuser)
	Groups []string // X-User-Groups, decoded
}

// Manager reports whether p may manage the plugin: its settings, and
// categories it did not create. Mirrors the manifest's access rule.
func (p *Principal) Manager() bool {
	return p.Admin || slices.Contains(p.Groups, AdminGroup)
}

// InGroup reports membership of group name.
func (p *Principal) InGroup(name string) bool { return slices.Contains(p.Groups, name) }

type principalKey struct{}

func principal(r *http.Request) *Principal {
	p, _ := r.Context().Value(principalKey{}).(*Principal)
	return p
}

// Trust boundary: docservice does not verify tokens. It listens on a private
// address that only the edge (Caddy with gatehouse_auth) can reach; the edge
// deletes every client-sent identity header and sets X-User-Id, X-User-Role
// and X-User-Groups from a verified access token. Anyone who can reach
// DOCSERVICE_ADDR directly can therefore act as any user: never publish it.
//
// identify reads those headers; a request without a valid X-User-Id is 401.
func identify(r *http.Request) (*Principal, error) {
	ids := r.Header.Values("X-User-Id")
	if len(ids) != 1 {
		// None, or several: the edge sets exactly one.
		return nil, httpx.Errorf(http.StatusUnauthorized, "not authenticated")
	}
	id, err := uuid.Parse(strings.TrimSpace(ids[0]))
	if err != nil {
		return nil, &httpx.Error{Status: http.StatusUnauthorized, Detail: "not authenticated", Cause: err}
	}
	p := &Principal{ID: id, Admin: strings.TrimSpace(r.Header.Get("X-User-Role")) == "admin"}
	for _, v := range r.Header.Values("X-User-Groups") {
		for g := range strings.SplitSeq(v, ",") {
			g = strings.TrimSpace(g)
			if g == "" {
				continue
			}
			if dec, err := url.PathUnescape(g); err == nil {
				g = dec
			}
			p.Groups = append(p.Groups, g)
		}
	}
	return p, nil
}

// requireUser guards h: 401 unless the edge identified the caller.
func requireUser(h httpx.HandlerFunc) http.Handler {
	return httpx.Handle(func(w http.ResponseWriter, r *http.Request) error {
		p, err := identify(r)
		if err != nil {
			return err
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// requireManager guards h: 401 as requireUser, then 403 unless the caller is
// an admin or in AdminGroup (deny by default, whatever the edge checked).
func requireManager(h httpx.HandlerFunc) http.Handler {
	return requireUser(func(w http.ResponseWriter, r *http.Request) error {
		if !principal(r).Manager() {
			return httpx.Errorf(http.StatusForbidden, "doc-service administration requires the admin role or membership of %s", AdminGroup)
		}
		return h(w, r)
	})
}

// requireAdmin guards h: 401 as requireUser, then 403 unless X-User-Role is
// admin (the seed's /api/settings/documents/limits rule).
func requireAdmin(h httpx.HandlerFunc) http.Handler {
	return requireUser(func(w http.ResponseWriter, r *http.Request) error {
		if !principal(r).Admin {
			return httpx.Errorf(http.StatusForbidden, "admin privileges required")
		}
		return h(w, r)
	})
}
