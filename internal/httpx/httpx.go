// Package httpx holds what every Gatehouse upstream does the same way at the
// HTTP layer: the {"detail": ...} error shape, JSON bodies with size limits,
// request ids, and the middleware that recovers panics and logs requests.
// It owns no routes and no business rules.
package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// MaxJSONBody is the default limit on a JSON request body.
const MaxJSONBody = 64 << 10

// Error is an error with a public message and an HTTP status. The cause,
// if any, is logged but never sent to the client.
type Error struct {
	Status int
	Detail string
	Code   string // optional machine-readable code
	Errors []FieldError
	Cause  error
	// RetryAfter, when above 0, is sent as Retry-After (seconds): the
	// refusal is about load, and the same request may succeed later.
	RetryAfter int
}

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.Detail, e.Cause)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Detail)
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf makes an *Error with a formatted public detail.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Detail: fmt.Sprintf(format, args...)}
}

// Invalid makes a 400 listing the invalid fields; the detail joins them.
func Invalid(fields []FieldError) *Error {
	msgs := make([]string, len(fields))
	for i, f := range fields {
		msgs[i] = f.Field + ": " + f.Message
	}
	return &Error{Status: http.StatusBadRequest, Detail: strings.Join(msgs, "; "), Errors: fields}
}

// HandlerFunc is an http handler that returns its error for WriteError.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handle adapts h to http.Handler, rendering a returned error in one place.
func Handle(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			WriteError(w, r, err)
		}
	})
}

// WriteError renders err as {"detail": ...}. Errors that are not *Error are
// internal: the client gets a 500 with the request id, the log gets the cause.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var he *Error
	if !errors.As(err, &he) {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			he = Errorf(http.StatusRequestEntityTooLarge, "request body too large (limit %d bytes)", mbe.Limit)
		case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
			// The client went away; nobody reads the answer.
			he = &Error{Status: 499, Detail: "client closed request", Cause: err}
		default:
			he = &Error{Status: http.StatusInternalServerError, Cause: err}
		}
	}
	id := RequestID(r.Context())
	body := map[string]any{"detail": he.Detail}
	if he.Status >= 500 {
		if he.Detail == "" {
			he.Detail = "internal server error"
		}
		body["detail"] = he.Detail + " (request id " + id + ")"
		body["request_id"] = id
		slog.ErrorContext(r.Context(), "request failed", "request_id", id, "method", r.Method,
			"path", r.URL.Path, "status", he.Status, "err", err)
	} else if he.Cause != nil {
		slog.DebugContext(r.Context(), "request refused", "request_id", id, "status", he.Status, "err", he.Cause)
	}
	if he.Code != "" {
		body["code"] = he.Code
	}
	if len(he.Errors) > 0 {
		body["errors"] = he.Errors
	}
	if he.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(he.RetryAfter))
	}
	WriteJSON(w, he.Status, body)
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"detail":"internal server error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// DecodeJSON reads a JSON object body (at most limit bytes, MaxJSONBody when
// 0) into dst. Unknown fields are ignored, as the FastAPI service did, so the
// SPA may send whole objects back.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any, limit int64) error {
	if limit <= 0 {
		limit = MaxJSONBody
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return Errorf(http.StatusUnsupportedMediaType, "expected a JSON body (Content-Type: application/json)")
		}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	if err := dec.Decode(dst); err != nil {
		var mbe *http.MaxBytesError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return Errorf(http.StatusRequestEntityTooLarge, "request body too large (limit %d bytes)", mbe.Limit)
		case errors.Is(err, io.EOF):
			return Errorf(http.StatusBadRequest, "request body is empty; expected a JSON object")
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The server's read timeout: the client sent too slowly.
			return Errorf(http.StatusRequestTimeout, "request body not received in time")
		case errors.As(err, &ute):
			field := ute.Field
			if field == "" {
				return Errorf(http.StatusBadRequest, "expected a JSON object")
			}
			return Invalid([]FieldError{{Field: field, Message: "must be of type " + jsonType(ute.Type.Kind().String())}})
		default:
			return &Error{Status: http.StatusBadRequest, Detail: "malformed JSON body", Cause: err}
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Errorf(http.StatusRequestEntityTooLarge, "request body too large (limit %d bytes)", mbe.Limit)
		}
		return Errorf(http.StatusBadRequest, "malformed JSON body: trailing data after the object")
	}
	return nil
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "map", "struct", "ptr":
		return "object"
	default:
		return "number"
	}
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	quietKey
)

// Quiet marks h's successful requests as routine: Middleware logs them at
// debug level instead of info. For what machines poll every second or so
// (the edge's revocation feed, health checks), which would otherwise bury
// the log; failures are still logged at info or above.
func Quiet(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if q, ok := r.Context().Value(quietKey).(*bool); ok {
			*q = true
		}
		h.ServeHTTP(w, r)
	})
}

// RequestID is the id of the request in ctx ("" outside a request).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// Middleware gives every request an id (the edge's X-Request-Id when it is a
// sane token, else a new one), echoes it in the response, recovers panics
// into a 500, and logs one line per request.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !saneID(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		quiet := new(bool)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		r = r.WithContext(context.WithValue(ctx, quietKey, quiet))
		w.Header().Set("X-Request-Id", id)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				if !rec.wrote {
					WriteError(rec, r, fmt.Errorf("panic: %v", p))
				} else {
					slog.ErrorContext(r.Context(), "panic after response started", "request_id", id, "panic", p)
				}
			}
			level := slog.LevelInfo
			if *quiet && rec.status < 400 {
				level = slog.LevelDebug
			}
			slog.Log(r.Context(), level, "request", "request_id", id, "method", r.Method, "path", r.URL.Path,
				"status", rec.status, "duration_ms", float64(time.Since(start).Microseconds())/1000)
		}()
		next.ServeHTTP(rec, r)
	})
}

func saneID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Routes serves mux, answering requests that match no route in the JSON
// error shape: 404, or 405 with Allow when the path exists for other
// methods. (A "/" catch-all route would turn every 405 into a 404.)
func Routes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		h, _ := mux.Handler(r)
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", probe.header.Get("Allow"))
			WriteError(w, r, Errorf(http.StatusMethodNotAllowed, "method %s not allowed here", r.Method))
		case http.StatusNotFound, 0:
			WriteError(w, r, Errorf(http.StatusNotFound, "not found"))
		default:
			// A redirect the mux made (e.g. to a cleaned path): pass it on.
			for k, v := range probe.header {
				w.Header()[k] = v
			}
			w.WriteHeader(probe.status)
		}
	})
}

// statusProbe records what the mux's own fallback handler would answer.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }
func (p *statusProbe) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *statusProbe) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}

// Serve serves srv on ln until ctx is cancelled, then shuts down
// gracefully, giving open requests up to 10 seconds.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// Health answers 200 {"status": "ok"}: the process is up.
func Health(w http.ResponseWriter, r *http.Request) error {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// Ready answers 200 when db answers a ping within 2 seconds, else 503.
func Ready(db interface{ Ping(context.Context) error }) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := db.Ping(ctx); err != nil {
			return &Error{Status: http.StatusServiceUnavailable, Detail: "database unreachable", Cause: err}
		}
		return Health(w, r)
	}
}
