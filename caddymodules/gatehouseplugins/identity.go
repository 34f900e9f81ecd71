package gatehouseplugins

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// identity is the verified user, as gatehouse_auth left it in the
// request's placeholders.
type identity struct {
	userID, role, groups string // groups: percent-encoded names joined by ','
}

// identityFrom reads the placeholders gatehouse_auth sets after verifying a
// token. They live in the request's replacer, which a client cannot write
// (unlike headers), so their absence means "not authenticated" however the
// handlers were ordered.
func identityFrom(r *http.Request) (identity, bool) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return identity{}, false
	}
	str := func(k string) string {
		v, _ := repl.Get(k)
		s, _ := v.(string)
		return s
	}
	id := identity{userID: str("http.auth.user.id"), role: str("http.auth.user.role"), groups: str("http.auth.user.groups")}
	return id, id.userID != "" && id.role != ""
}

// tokenCookieFrom returns the name of the cookie gatehouse_auth read
// tokens from on this request (its cookie option), or "".
func tokenCookieFrom(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	v, _ := repl.Get("http.auth.token_cookie") // gatehouseauth.PlaceholderTokenCookie
	s, _ := v.(string)
	return s
}

func (id identity) isAdmin() bool { return id.role == "admin" }

// inGroup reports whether the user is a member of group.
func (id identity) inGroup(group string) bool {
	for enc := range strings.SplitSeq(id.groups, ",") {
		if enc == "" {
			continue
		}
		name, err := url.PathUnescape(enc)
		if err == nil && name == group {
			return true
		}
	}
	return false
}

// setHeaders sets X-User-* from the identity, replacing whatever a later
// handler (request_header) may have done since gatehouse_auth.
func (id identity) setHeaders(h http.Header) {
	vals := []string{id.userID, id.role, id.groups}
	h["X-User-Id"] = vals[0:1:1]
	h["X-User-Role"] = vals[1:2:2]
	h["X-User-Groups"] = vals[2:3:3]
}

// allows is the plugin access rule: an admin when allow_superuser, or a
// member of any required group. Deny by default.
func (a Access) allows(id identity) bool {
	if a.AllowSuperuser && id.isAdmin() {
		return true
	}
	return slices.ContainsFunc(a.RequiredGroups, id.inGroup)
}

// accessible returns the service of plugin pluginID if it has an accepted
// manifest that id may access, else nil: callers answer 404 either way, so
// a plugin's existence is not revealed to those who may not use it.
func accessible(st *State, pluginID string, id identity) *ServiceStatus {
	svc := st.Service(pluginID)
	if svc == nil || svc.Manifest == nil || !svc.Manifest.Access.allows(id) {
		return nil
	}
	return svc
}
