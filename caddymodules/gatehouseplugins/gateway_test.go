package gatehouseplugins

import (
	"net/http"
	"net/url"
	"testing"
)

// stateWith is a state with one healthy service per manifest, in order.
func stateWith(t *testing.T, manifests ...*Manifest) *State {
	a := &App{}
	for _, m := range manifests {
		a.Services = append(a.Services, ServiceConfig{ID: m.ID, URL: "http://127.0.0.1:1"})
	}
	a.setup()
	results := make([]checkResult, len(manifests))
	for i, m := range manifests {
		results[i] = checkResult{manifest: m}
	}
	a.logger = nopLogger()
	return a.merge(a.State(), results)
}

func TestGatewayPathReadings(t *testing.T) {
	st := stateWith(t,
		&Manifest{ID: "docs", Routes: []Route{{Prefix: "/api/documents", Access: RouteAccessAuthenticated}}},
		&Manifest{ID: "secret", Routes: []Route{{Prefix: "/api/secret", Access: RouteAccessPlugin}}},
	)
	cases := []struct {
		target string
		want   string // "docs", "secret", "own", "next" or "400"
	}{
		{"/api/documents", "docs"},
		{"/api/documents/", "docs"},
		{"/api/documents/7/file", "docs"},
		{"/api/documents%2f7", "400"},
		{"/api/documentsX", "next"},
		{"/api/DOCUMENTS/7", "next"}, // the plugin's own router is case-sensitive too
		{"/api/users/me", "next"},
		{"/api/services", "own"},
		{"/api/plugins/docs/settings", "own"},
		{"/api/documents/../secret/x", "400"},
		{"/api/documents/%2e%2e/secret/x", "400"},
		{"/api/documents/%252e%252e/secret/x", "400"},
		{"/api/documents/..%2fsecret", "400"},
		{"/api/documents/..%252fsecret", "400"},
		{"/api/documents/..%5csecret", "400"},
		{"/api/documents/..\\secret", "400"},
		{"/api/documents//7", "400"},
		{"//api/secret/x", "400"},
		{"/api/./secret/x", "400"},
		{"/api/x/../secret", "400"},
		// ";parameters" on a dot segment: servlet containers cut them off
		// before resolving "..", so these are readings of /api/secret.
		{"/api/documents/..;/secret/x", "400"},
		{"/api/documents/..;x/secret/x", "400"},
		{"/api/documents/..%3b/secret/x", "400"},
		{"/api/documents/.;/7", "400"},
		{"/api/x/y/..;/..;/secret", "400"},
		{"/api/documents/7;v=1", "docs"}, // a parameter elsewhere is just part of a segment
		{"/api/x/%2e%2e/secret", "400"},
		{"/api/x/%252e%252e/secret", "400"},
		{"/api/x/%25252e%25252e/secret", "400"},
		{"/api/auth/../plugins", "400"},
		{"/api/users/../auth/login", "next"}, // odd, but nothing of ours
		{"/api/users/%252e%252e/x", "next"},
		{"/api/documents/100%25 done.pdf", "docs"}, // a literal %, not an escape
		{"/api/documents/a%00b", "400"},
		// Overlong UTF-8: '.', '/' and '\' to lenient decoders.
		{"/api/documents/%c0%ae%c0%ae/secret/x", "400"},
		{"/api/x/%c0%ae%c0%ae/secret/x", "400"},
		{"/api/x/%e0%80%ae%e0%80%ae/secret/x", "400"},
		{"/api/x/..%c0%afsecret", "400"},
		{"/api/x/..%c1%9csecret", "400"},
		{"/api/x%c0%af..%c0%afsecret", "400"},
		{"/api/x/%f8%80%80%80%ae%f8%80%80%80%ae/secret/x", "400"}, // 5- and 6-byte forms
		{"/api/x/%fc%80%80%80%80%ae%fc%80%80%80%80%ae/secret/x", "400"},
		{"/api/x/..%f8%80%80%80%afsecret", "400"},
		{"/api/x/..%fc%80%80%80%80%afsecret", "400"},
		{"/api/x/..%c1%1csecret", "400"}, // a sloppy '\'
		// '\' as an ordinary character, as most servers take it: the
		// dots before it still resolve.
		{`/api/x/../secret/z\..\..`, "400"},
		{`/api/x/%2e%2e/secret/z%5c..%5c..`, "400"},
		{`/api/x/%c0%ae%c0%ae/secret/z\..\..`, "400"},
		{"/api/documents/caf%e9", "400"},         // Latin-1, not UTF-8: refused on our prefixes ...
		{"/api/users/caf%e9", "next"},            // ... and left to others elsewhere
		{"/api/documents/caf%c3%a9", "docs"},     // valid UTF-8 is canonical
		{"/api/documents/%e2%80%ae.pdf", "docs"}, // valid, however odd (U+202E)
	}
	for _, tc := range cases {
		t.Run(tc.target, func(t *testing.T) {
			r, err := http.NewRequest("GET", "http://edge"+tc.target, nil)
			if err != nil {
				// net/url refuses some spellings outright; the
				// HTTP server would too.
				r = &http.Request{URL: mustParseRequestURI(t, tc.target)}
			}
			canon, ok := canonicalPath(r.URL)
			got := "next"
			if !ok {
				for _, p := range readings(r.URL) {
					if classify(st, p, noPins).kind != kindNone {
						got = "400"
					}
				}
			} else {
				switch tg := classify(st, canon, noPins); tg.kind {
				case kindNone:
				case kindRoute:
					got = tg.route.service.ID
				default:
					got = "own"
				}
			}
			if got != tc.want {
				t.Errorf("%s → %s, want %s (canonical %q, ok %v)", tc.target, got, tc.want, canon, ok)
			}
		})
	}
}

func TestAccessRule(t *testing.T) {
	admin := identity{userID: "u", role: "admin"}
	member := identity{userID: "u", role: "user", groups: "other,doc-service-admin"}
	encoded := identity{userID: "u", role: "user", groups: "team%20a%2Cb"}
	nobody := identity{userID: "u", role: "user"}
	cases := []struct {
		name   string
		access Access
		id     identity
		want   bool
	}{
		{"admin with allow_superuser", Access{AllowSuperuser: true}, admin, true},
		{"admin without allow_superuser", Access{RequiredGroups: []string{"g"}}, admin, false},
		{"member of a required group", Access{RequiredGroups: []string{"x", "doc-service-admin"}}, member, true},
		{"group name with a comma and a space", Access{RequiredGroups: []string{"team a,b"}}, encoded, true},
		{"encoded name is not the group", Access{RequiredGroups: []string{"team%20a%2Cb"}}, encoded, false},
		{"half of a comma name", Access{RequiredGroups: []string{"team a"}}, encoded, false},
		{"not a member", Access{AllowSuperuser: true, RequiredGroups: []string{"g"}}, nobody, false},
		{"empty access denies admins", Access{}, admin, false},
		{"empty access denies members", Access{}, member, false},
	}
	for _, tc := range cases {
		if got := tc.access.allows(tc.id); got != tc.want {
			t.Errorf("%s: allows = %v", tc.name, got)
		}
	}
}

func mustParseRequestURI(t *testing.T, s string) *url.URL {
	u, err := url.ParseRequestURI(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return u
}

func noPins(string) string { return "" }
