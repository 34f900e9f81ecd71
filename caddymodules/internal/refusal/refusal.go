// Package refusal answers the edge's own refusals (401, 403, 404, 503, ...)
// in the JSON error shape every Gatehouse error has, {"detail": "..."}.
//
// The modules return their refusals as Caddy handler errors so that a
// site's handle_errors decides the response. A site without handle_errors
// would then send the status with an empty body, which no client (the SPA
// reads "detail") can show; there the refusal writes the JSON itself.
package refusal

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

// Message is a refusal's text for the client: fixed, free of anything
// internal (the reason goes to metrics and the log instead), and free of
// quotes and backslashes, so that handle_errors can put {err.message} into
// JSON as it is.
type Message string

func (m Message) Error() string { return string(m) }

// Respond refuses r with status and msg. When r's server has error routes
// (handle_errors), it returns the Caddy handler error for them to answer
// ({err.message} is msg). When the server has none, it writes
// {"detail": msg} and returns nil. Outside a Caddy server (no server in the
// request's context) it returns the error: the caller answers.
//
// Headers the refusal needs (WWW-Authenticate, Retry-After, Allow) are set
// on w before the call; both ways keep them.
//
// A refused request's body is not wanted, and the answer goes out before
// it: Go's server, finding the body wrapped (Caddy wraps it to count and
// time it), would read up to 256 KiB of it before sending anything, so a
// client that waits for the answer first (Expect: 100-continue, a slow
// upload, one that sent only part) got none until it sent that much or
// timed out (found in review). With Connection: close the server skips
// that read; the connection ends after the answer.
func Respond(w http.ResponseWriter, r *http.Request, status int, msg Message) error {
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil || (srv.Errors != nil && len(srv.Errors.Routes) > 0) {
		return caddyhttp.Error(status, msg)
	}
	Write(w, status, msg)
	return nil
}

// Write writes the refusal {"detail": msg} itself, for a caller that cannot
// hand Caddy an error: one that replaces an answer already on its way, such
// as the plugin gateway's guard of a plugin's answer.
func Write(w http.ResponseWriter, status int, msg Message) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	httpx.WriteJSON(w, status, struct {
		Detail Message `json:"detail"`
	}{msg})
}
