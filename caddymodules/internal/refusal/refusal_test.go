package refusal

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestRespond(t *testing.T) {
	withErrorRoutes := &caddyhttp.Server{Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{{}}}}
	tests := []struct {
		name     string
		srv      *caddyhttp.Server // in the request's context; nil: none
		wantErr  bool              // the handler error for handle_errors; else the JSON written
		wantBody string
	}{
		{"site with handle_errors", withErrorRoutes, true, ""},
		{"site without handle_errors", &caddyhttp.Server{}, false, `{"detail":"Not authenticated"}` + "\n"},
		{"error config without routes", &caddyhttp.Server{Errors: &caddyhttp.HTTPErrorConfig{}}, false, `{"detail":"Not authenticated"}` + "\n"},
		{"outside a Caddy server", nil, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/x", nil)
			if tc.srv != nil {
				r = r.WithContext(context.WithValue(r.Context(), caddyhttp.ServerCtxKey, tc.srv))
			}
			w := httptest.NewRecorder()
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			err := Respond(w, r, http.StatusUnauthorized, "Not authenticated")
			if tc.wantErr {
				var he caddyhttp.HandlerError
				if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized || he.Err.Error() != "Not authenticated" {
					t.Fatalf("err = %#v, want a 401 handler error with the message", err)
				}
				if w.Body.Len() != 0 || w.Code != http.StatusOK && w.Code != 0 {
					t.Fatalf("wrote %d %q; handle_errors writes the response", w.Code, w.Body)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want nil (the refusal is written)", err)
			}
			if w.Code != http.StatusUnauthorized || w.Body.String() != tc.wantBody ||
				w.Header().Get("Content-Type") != "application/json" ||
				w.Header().Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
				t.Fatalf("wrote %d %q %v", w.Code, w.Body, w.Header())
			}
		})
	}
}
