package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type decoded struct {
	Name  string   `json:"name"`
	Count int      `json:"count"`
	On    bool     `json:"on"`
	Tags  []string `json:"tags"`
	Inner struct {
		X int `json:"x"`
	} `json:"inner"`
}

// serveDecode runs DecodeJSON behind a real server and renders its error.
func serveDecode(t *testing.T, limit int64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Middleware(Handle(func(w http.ResponseWriter, r *http.Request) error {
		var d decoded
		if err := DecodeJSON(w, r, &d, limit); err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, d)
		return nil
	})))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, ctype, body string) (int, map[string]any) {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("status %d: body %q is not a JSON object", res.StatusCode, b)
	}
	return res.StatusCode, m
}

func TestDecodeJSON(t *testing.T) {
	srv := serveDecode(t, 0)
	small := serveDecode(t, 32)
	tests := []struct {
		name   string
		srv    *httptest.Server
		ctype  string
		body   string
		status int
		detail string // substring of the detail on errors
		field  string // the field named in errors[0], if any
	}{
		{"object", srv, "application/json", `{"name": "a", "count": 2, "on": true, "tags": ["x"]}`, 200, "", ""},
		{"charset parameter", srv, "application/json; charset=utf-8", `{"name": "a"}`, 200, "", ""},
		{"+json type", srv, "application/merge-patch+json", `{"name": "a"}`, 200, "", ""},
		{"no content type", srv, "", `{"name": "a"}`, 200, "", ""},
		{"unknown fields ignored", srv, "application/json", `{"name": "a", "other": {"deep": [1]}}`, 200, "", ""},
		{"trailing whitespace", srv, "application/json", "{\"name\": \"a\"}\n\n  \t", 200, "", ""},
		{"null body", srv, "application/json", `null`, 200, "", ""},
		{"text/plain", srv, "text/plain", `{"name": "a"}`, 415, "application/json", ""},
		{"form", srv, "application/x-www-form-urlencoded", `name=a`, 415, "", ""},
		{"unparsable content type", srv, "application/json; =", `{}`, 415, "", ""},
		{"empty", srv, "application/json", ``, 400, "empty", ""},
		{"whitespace only", srv, "application/json", "  \n", 400, "empty", ""},
		{"malformed", srv, "application/json", `{"name": }`, 400, "malformed JSON", ""},
		{"truncated", srv, "application/json", `{"name": "a"`, 400, "malformed JSON", ""},
		{"trailing object", srv, "application/json", `{"name": "a"}{"name": "b"}`, 400, "trailing data", ""},
		{"trailing garbage", srv, "application/json", `{"name": "a"} x`, 400, "trailing data", ""},
		{"array", srv, "application/json", `[1, 2]`, 400, "expected a JSON object", ""},
		{"string", srv, "application/json", `"x"`, 400, "expected a JSON object", ""},
		{"number", srv, "application/json", `5`, 400, "expected a JSON object", ""},
		{"string for string field ok, number for string", srv, "application/json", `{"name": 5}`, 400, "name: must be of type string", "name"},
		{"string for number", srv, "application/json", `{"count": "5"}`, 400, "count: must be of type number", "count"},
		{"number for bool", srv, "application/json", `{"on": 1}`, 400, "on: must be of type boolean", "on"},
		{"object for array", srv, "application/json", `{"tags": {}}`, 400, "tags: must be of type array", "tags"},
		{"nested field", srv, "application/json", `{"inner": {"x": "y"}}`, 400, "inner.x", "inner.x"},
		{"over the limit", small, "application/json", `{"name": "` + strings.Repeat("a", 100) + `"}`, 413, "too large (limit 32 bytes)", ""},
		{"padding over the limit", small, "application/json", `{"name": "a"}` + strings.Repeat(" ", 100), 413, "too large", ""},
		{"at the limit", small, "application/json", `{"name": "` + strings.Repeat("a", 20) + `"}`, 200, "", ""},
		{"default limit is 64 KiB", srv, "application/json", `{"name": "` + strings.Repeat("a", MaxJSONBody) + `"}`, 413, "65536", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, m := post(t, tt.srv.URL, tt.ctype, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %v", status, tt.status, m)
			}
			if status == 200 {
				return
			}
			d, _ := m["detail"].(string)
			if !strings.Contains(d, tt.detail) {
				t.Errorf("detail %q, want it to contain %q", d, tt.detail)
			}
			if tt.field != "" {
				errs, _ := m["errors"].([]any)
				if len(errs) != 1 || errs[0].(map[string]any)["field"] != tt.field {
					t.Errorf("errors %v, want one naming %q", m["errors"], tt.field)
				}
			}
		})
	}
	// The decoded value reaches the handler.
	status, m := post(t, srv.URL, "application/json", `{"name": "n", "count": 3, "on": true, "tags": ["a", "b"], "inner": {"x": 7}}`)
	if status != 200 || m["name"] != "n" || m["count"] != 3.0 || m["on"] != true || m["inner"].(map[string]any)["x"] != 7.0 {
		t.Errorf("decoded %v", m)
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		body   map[string]any // exact body, with "RID" standing for the request id
	}{
		{"public error", Errorf(404, "user %s not found", "x"), 404, map[string]any{"detail": "user x not found"}},
		{"with code", &Error{Status: 409, Detail: "taken", Code: "email_taken"}, 409, map[string]any{"detail": "taken", "code": "email_taken"}},
		{"public error with a cause", &Error{Status: 401, Detail: "invalid token", Cause: errors.New("secret reason")}, 401,
			map[string]any{"detail": "invalid token"}},
		{"wrapped public error", fmt.Errorf("context: %w", Errorf(403, "forbidden")), 403, map[string]any{"detail": "forbidden"}},
		{"field errors", Invalid([]FieldError{{"a", "is required"}, {"b[2]", "is bad"}}), 400, map[string]any{
			"detail": "a: is required; b[2]: is bad",
			"errors": []any{map[string]any{"field": "a", "message": "is required"}, map[string]any{"field": "b[2]", "message": "is bad"}}}},
		{"internal error", errors.New("pq: password authentication failed for user admin"), 500,
			map[string]any{"detail": "internal server error (request id RID)", "request_id": "RID"}},
		{"public 5xx", &Error{Status: 503, Detail: "database unreachable", Cause: errors.New("dial tcp 10.0.0.5:5432")}, 503,
			map[string]any{"detail": "database unreachable (request id RID)", "request_id": "RID"}},
		{"5xx without detail", &Error{Status: 502, Cause: errors.New("upstream said no")}, 502,
			map[string]any{"detail": "internal server error (request id RID)", "request_id": "RID"}},
		{"body too large", fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 10}), 413, map[string]any{"detail": "request body too large (limit 10 bytes)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(Middleware(Handle(func(w http.ResponseWriter, r *http.Request) error { return tt.err })))
			defer srv.Close()
			res, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != tt.status {
				t.Errorf("status %d, want %d", res.StatusCode, tt.status)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			raw, _ := io.ReadAll(res.Body)
			rid := res.Header.Get("X-Request-Id")
			want, _ := json.Marshal(tt.body)
			wantStr := strings.ReplaceAll(string(want), "RID", rid)
			var got, exp any
			_ = json.Unmarshal(raw, &got)
			_ = json.Unmarshal([]byte(wantStr), &exp)
			if fmt.Sprint(got) != fmt.Sprint(exp) {
				t.Errorf("body %s\n want %s", raw, wantStr)
			}
			for _, secret := range []string{"password authentication", "10.0.0.5", "upstream said", "secret reason"} {
				if strings.Contains(string(raw), secret) {
					t.Errorf("body leaks %q: %s", secret, raw)
				}
			}
		})
	}
}

func TestWriteErrorClientGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	WriteError(w, r, fmt.Errorf("query: %w", context.Canceled))
	if w.Code != 499 {
		t.Errorf("status %d, want 499 when the client went away", w.Code)
	}
	// A cancellation that is not the client's is a server error.
	w = httptest.NewRecorder()
	WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), context.Canceled)
	if w.Code != 500 {
		t.Errorf("status %d, want 500", w.Code)
	}
}

func TestMiddlewareRequestID(t *testing.T) {
	var seen string
	srv := httptest.NewServer(Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = RequestID(r.Context())
	})))
	defer srv.Close()
	get := func(id string) string {
		t.Helper()
		r, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if id != "" {
			r.Header.Set("X-Request-Id", id)
		}
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("X-Request-Id"); got != seen {
			t.Errorf("response id %q, handler saw %q", got, seen)
		}
		return seen
	}
	a, b := get(""), get("")
	if len(a) != 16 || a == b {
		t.Errorf("generated ids %q and %q, want distinct 16-hex ids", a, b)
	}
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"abc-DEF_123", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"with space", false},
		{"semi;colon", false},
		{"ünïcode", false},
	} {
		got := get(tc.sent)
		if (got == tc.sent) != tc.kept {
			t.Errorf("sent %q, request id %q; kept %v, want %v", tc.sent, got, got == tc.sent, tc.kept)
		}
	}
	if RequestID(context.Background()) != "" {
		t.Error("RequestID outside a request is not empty")
	}
}

func TestMiddlewareRecoversPanics(t *testing.T) {
	srv := httptest.NewServer(Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("database password is hunter2")
		case "/late":
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte("partial"))
			panic("after the header")
		case "/abort":
			panic(http.ErrAbortHandler)
		}
	})))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/panic")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 500 || strings.Contains(string(b), "hunter2") || !strings.Contains(string(b), res.Header.Get("X-Request-Id")) {
		t.Errorf("panic: %d %s", res.StatusCode, b)
	}
	// The server survives and keeps serving.
	res, err = http.Get(srv.URL + "/late")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted || string(b) != "partial" {
		t.Errorf("panic after the response started: %d %q", res.StatusCode, b)
	}
	// http.ErrAbortHandler still aborts the response.
	if res, err := http.Get(srv.URL + "/abort"); err == nil {
		res.Body.Close()
		t.Errorf("ErrAbortHandler answered %d, want an aborted connection", res.StatusCode)
	}
}

func TestWriteJSON(t *testing.T) {
	w := httptest.NewRecorder()
	WriteJSON(w, http.StatusCreated, map[string]int{"a": 1})
	if w.Code != 201 || w.Body.String() != "{\"a\":1}\n" || w.Header().Get("Content-Length") != "8" {
		t.Errorf("%d %q length %q", w.Code, w.Body.String(), w.Header().Get("Content-Length"))
	}
	w = httptest.NewRecorder()
	WriteJSON(w, http.StatusOK, map[string]any{"f": func() {}})
	if w.Code != 500 || !strings.Contains(w.Body.String(), "internal server error") {
		t.Errorf("unencodable value: %d %q", w.Code, w.Body.String())
	}
}

func TestInvalid(t *testing.T) {
	e := Invalid([]FieldError{{Field: "x", Message: "bad"}})
	if e.Status != 400 || e.Detail != "x: bad" || len(e.Errors) != 1 {
		t.Errorf("%+v", e)
	}
	cause := errors.New("root")
	if err := (&Error{Status: 500, Cause: cause}); !errors.Is(err, cause) || !strings.Contains(err.Error(), "root") {
		t.Errorf("Error does not wrap its cause: %v", err)
	}
}

// Quiet requests that succeed are logged at debug level; when they fail,
// and for every other request, at info or above.
func TestQuietLogging(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(prev)

	mux := http.NewServeMux()
	mux.Handle("GET /poll", Quiet(Handle(func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Query().Get("fail") != "" {
			return Errorf(http.StatusServiceUnavailable, "down")
		}
		return nil
	})))
	mux.Handle("GET /other", Handle(func(w http.ResponseWriter, r *http.Request) error { return nil }))
	srv := httptest.NewServer(Middleware(mux))
	defer srv.Close()
	for path, want := range map[string]string{"/poll": "level=DEBUG", "/poll?fail=1": "level=INFO", "/other": "level=INFO"} {
		buf.Reset()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		var line string
		for l := range strings.SplitSeq(buf.String(), "\n") {
			if strings.Contains(l, "msg=request ") {
				line = l
			}
		}
		if !strings.HasPrefix(strings.SplitN(line, " ", 2)[1], want) {
			t.Errorf("%s logged %q, want %s", path, line, want)
		}
	}
}
