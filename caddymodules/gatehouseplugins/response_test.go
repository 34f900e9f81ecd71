package gatehouseplugins

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func guardedRecorder() (*httptest.ResponseRecorder, *pluginResponse) {
	return guardedRecorderWith([2]string{"gh_token", ""})
}

// guardedRecorderWith guards with the token cookie names given: the
// gateway's token_cookie, then gatehouse_auth's cookie.
func guardedRecorderWith(cookies [2]string) (*httptest.ResponseRecorder, *pluginResponse) {
	g := &Gateway{TokenCookie: cookies[0], logger: nopLogger()}
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "http://edge.test/api/evil/page", nil)
	return rec, g.guardResponse(rec, r, "evil", evilRoutes, cookies)
}

var evilRoutes = []Route{{Prefix: "/api/evil"}, {Prefix: "/api/evil-public"}}

// A plugin's redirect reaches the client only within the plugin's own
// routes, in the platform's origin: a browser's fetch follows 307 and 308
// with the user's method, body and Authorization. 304 is no redirect.
func TestResponseGuardRedirects(t *testing.T) {
	for _, tc := range []struct {
		code     int
		location string // "" for none
		pass     bool
	}{
		{307, "/api/evil/next", true},
		{302, "next", true}, // relative to /api/evil/page
		{308, "http://edge.test/api/evil-public/x?y=1", true},
		{301, "/api/evil", true},
		{304, "", true},
		{307, "/api/admin/users/00000000-0000-0000-0000-00000000beef", false},
		{308, "../admin/users/1", false},
		{307, "/api/evil/../admin/users/1", false},
		{307, "/api/evil/%2e%2e/admin/users/1", false}, // a dot segment to a browser
		{307, "/api/evilx", false},
		{307, "//other.test/api/evil/x", false},
		{307, "https://edge.test/api/evil/x", false}, // another origin: the scheme differs
		{307, "http://other.test/api/evil/x", false},
		{307, "/\\other.test/api/evil/x", false}, // "//other.test" to a browser
		{307, " /api/admin", false},
		{307, "/api/evil//x", false},
		{300, "", false},
		{303, "", false},
	} {
		rec, w := guardedRecorder()
		if tc.location != "" {
			w.Header().Set("Location", tc.location)
		}
		w.Header().Set("Set-Cookie", "theme=dark")
		w.WriteHeader(tc.code)
		_, _ = w.Write([]byte("plugin body"))
		res := rec.Result()
		if tc.pass {
			if res.StatusCode != tc.code || res.Header.Get("Location") != tc.location {
				t.Errorf("%d %q: got %d Location %q, want it passed", tc.code, tc.location, res.StatusCode, res.Header.Get("Location"))
			}
			continue
		}
		if res.StatusCode != http.StatusBadGateway || res.Header.Get("Location") != "" || res.Header.Get("Set-Cookie") != "" {
			t.Errorf("%d %q: got %d Location %q Set-Cookie %q, want 502 without the plugin's headers",
				tc.code, tc.location, res.StatusCode, res.Header.Get("Location"), res.Header.Get("Set-Cookie"))
		}
		if body := rec.Body.String(); body != `{"detail":"`+string(errBadRedirect)+`"}`+"\n" {
			t.Errorf("%d %q: body %q", tc.code, tc.location, body)
		}
	}
}

// What a plugin's answer may not carry into the platform's origin, each in
// the spellings a browser would still act on; the token cookie named by the
// gateway's token_cookie or by gatehouse_auth's cookie alike.
func TestResponseGuardHeaders(t *testing.T) {
	for _, cookies := range [][2]string{{"gh_token", ""}, {"", "gh_token"}, {"other", "gh_token"}} {
		t.Run(cookies[0]+","+cookies[1], func(t *testing.T) { testResponseGuardHeaders(t, cookies) })
	}
}

func testResponseGuardHeaders(t *testing.T, cookies [2]string) {
	rec, w := guardedRecorderWith(cookies)
	h := w.Header()
	for _, c := range []string{
		"gh_token=forged; Path=/",
		" gh_token =forged2; Path=/",
		"=gh_token=forged3; Path=/api", // nameless: sent back as "gh_token=forged3"
		" =gh_token=forged4",
		"= gh_token=forged5",
		"gh_token",                           // nameless too: no '='
		"gh_token; Path=/; Max-Age=31536000", // no '=' before the first ';'
		"gh_token;=x",
		" ; gh_token=forged6",
		"theme=dark; Path=/api/evil",
		"gh_token_pref=1", // another name that merely starts alike
	} {
		h.Add("Set-Cookie", c)
	}
	h.Set("Clear-Site-Data", `"cookies", "storage"`)
	h.Set("X-Content-Type-Options", "sniff")
	w.WriteHeader(http.StatusOK)
	res := rec.Result()
	if got, want := res.Header.Values("Set-Cookie"), []string{"theme=dark; Path=/api/evil", "gh_token_pref=1"}; !slices.Equal(got, want) {
		t.Errorf("Set-Cookie reaching the client: %q, want %q", got, want)
	}
	if got := res.Header.Get("Clear-Site-Data"); got != "" {
		t.Errorf("Clear-Site-Data %q reached the client", got)
	}
	if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q", got)
	}
	if got := res.Header.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("an untyped answer is labelled %q", got)
	}
}

// A typed answer keeps its type; bodiless answers get none.
func TestResponseGuardContentType(t *testing.T) {
	for _, tc := range []struct {
		code      int
		set, want string
	}{
		{200, "application/json", "application/json"},
		{200, "", "application/octet-stream"},
		{204, "", ""},
		{304, "", ""},
	} {
		rec, w := guardedRecorder()
		if tc.set != "" {
			w.Header().Set("Content-Type", tc.set)
		}
		w.WriteHeader(tc.code)
		if got := rec.Result().Header.Get("Content-Type"); got != tc.want {
			t.Errorf("%d with %q: Content-Type %q, want %q", tc.code, tc.set, got, tc.want)
		}
	}
}

// Cookies cannot come as trailers, announced or not.
func TestResponseGuardTrailers(t *testing.T) {
	rec, w := guardedRecorder()
	w.Header().Set("Trailer", "Set-Cookie, X-Checksum")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("x"))
	w.Header().Add("Set-Cookie", "gh_token=forged; Path=/")
	w.Header().Set("X-Checksum", "abc")
	w.Header().Add(http.TrailerPrefix+"Set-Cookie", "gh_token=forged2; Path=/")
	w.Header().Add(http.TrailerPrefix+"set-cookie", "gh_token=forged3; Path=/")
	w.Header().Add(http.TrailerPrefix+"X-Other", "1")
	w.finish()
	res := rec.Result()
	if got := res.Trailer.Values("Set-Cookie"); len(got) != 0 {
		t.Errorf("trailer Set-Cookie reached the client: %q", got)
	}
	if got := res.Trailer.Get("X-Checksum"); got != "abc" {
		t.Errorf("announced trailer X-Checksum = %q", got)
	}
	if got := res.Trailer.Get("X-Other"); got != "1" {
		t.Errorf("unannounced trailer X-Other = %q", got)
	}
}

// Every answer but a PDF runs sandboxed, a plugin's own policy kept; a 304
// changes neither the stored answer's policy nor its type.
func TestResponseGuardSandbox(t *testing.T) {
	for _, tc := range []struct {
		code        int
		types       []string
		csp         string // the plugin's own
		wantSandbox bool
	}{
		{200, []string{"text/html; charset=utf-8"}, "", true},
		{200, []string{"application/json"}, "", true},
		{200, nil, "", true}, // labelled application/octet-stream
		{404, []string{"text/html"}, "", true},
		{200, []string{"text/html"}, "default-src 'self'", true},
		{200, []string{"application/pdf"}, "", false},
		{206, []string{"Application/PDF"}, "", false},
		{200, []string{"application/pdf", "text/html"}, "", true}, // HTML to a browser
		{200, []string{"application/pdf, text/html"}, "", true},
		{304, []string{"text/html"}, "default-src *", false},
	} {
		rec, w := guardedRecorder()
		for _, ct := range tc.types {
			w.Header().Add("Content-Type", ct)
		}
		if tc.csp != "" {
			w.Header().Set("Content-Security-Policy", tc.csp)
		}
		w.Header().Set("Service-Worker-Allowed", "/")
		w.WriteHeader(tc.code)
		h := rec.Result().Header
		got := h.Values("Content-Security-Policy")
		if tc.wantSandbox != slices.Contains(got, "sandbox") {
			t.Errorf("%d %q: Content-Security-Policy %q, sandbox wanted: %t", tc.code, tc.types, got, tc.wantSandbox)
		}
		if tc.code != 304 && tc.csp != "" && !slices.Contains(got, tc.csp) {
			t.Errorf("%d %q: the plugin's own policy %q lost: %q", tc.code, tc.types, tc.csp, got)
		}
		if tc.code == 304 && (len(got) != 0 || h.Get("Content-Type") != "") {
			t.Errorf("304: Content-Security-Policy %q, Content-Type %q reach the stored answer", got, h.Get("Content-Type"))
		}
		if v := h.Get("Service-Worker-Allowed"); v != "" {
			t.Errorf("%d: Service-Worker-Allowed %q", tc.code, v)
		}
	}
}

// Clear-Site-Data goes whatever its values, an empty first line included.
func TestResponseGuardClearSiteData(t *testing.T) {
	rec, w := guardedRecorder()
	w.Header()["Clear-Site-Data"] = []string{"", `"cookies", "storage"`}
	w.WriteHeader(http.StatusOK)
	if got := rec.Result().Header.Values("Clear-Site-Data"); len(got) != 0 {
		t.Errorf("Clear-Site-Data %q reached the client", got)
	}
}
