package authsvc

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeProvider is an OpenAI-compatible server: POST /v1/chat/completions
// with a bearer key, answered in the chat completion wire format.
type fakeProvider struct {
	*httptest.Server
	mu   sync.Mutex
	got  []map[string]any // request bodies
	auth []string         // Authorization headers
	// answer overrides the normal completion: status and body.
	status int
	body   string
	delay  time.Duration
}

func newFakeProvider(t *testing.T) *fakeProvider {
	t.Helper()
	p := &fakeProvider{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		p.mu.Lock()
		p.got = append(p.got, body)
		p.auth = append(p.auth, r.Header.Get("Authorization"))
		status, answer, delay := p.status, p.body, p.delay
		p.mu.Unlock()
		time.Sleep(delay)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, `{"error": {"message": "no such route"}}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if status != 0 {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, answer)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-123", "object": "chat.completion", "created": time.Now().Unix(), "model": body["model"].(string) + "-2026-01-01",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": "OK"}}},
			"usage": map[string]any{"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
		})
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *fakeProvider) set(status int, body string, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.body, p.delay = status, body, delay
}

// aiEnv is a service with an APP_CONFIG_DIR of its own.
func aiEnv(t *testing.T) (*testEnv, string, string) {
	t.Helper()
	cfg := testConfig()
	cfg.AppConfigDir = t.TempDir()
	e := newEnv(t, testPool, cfg)
	return e, cfg.AppConfigDir, e.token(t, newUser(t, "admin"))
}

func TestAISettings(t *testing.T) {
	e, dir, tok := aiEnv(t)
	userTok := e.token(t, newUser(t, "user"))
	get := func() map[string]any { return e.get(t, "/api/settings/ai", tok).expect(t, http.StatusOK).JSON(t) }

	// Defaults, the key masked.
	m := get()
	if m["base_url"] != "https://api.openai.com/v1" || m["model"] != "gpt-4o-mini" || m["timeout_seconds"] != 60.0 {
		t.Errorf("defaults %v", m)
	}
	if k, _ := m["api_key"].(map[string]any); k == nil || k["is_set"] != false {
		t.Errorf("api_key %v, want {is_set: false}", m["api_key"])
	}

	// Admins only, like the seed's admin settings.
	for _, rq := range []req{
		{Method: "GET", Path: "/api/settings/ai", Token: userTok},
		{Method: "PATCH", Path: "/api/settings/ai", Token: userTok, Body: map[string]any{"model": "x"}},
		{Method: "POST", Path: "/api/settings/ai/test", Token: userTok},
	} {
		e.do(t, rq).expectError(t, http.StatusForbidden)
	}
	e.do(t, req{Method: "GET", Path: "/api/settings/ai"}).expectError(t, http.StatusUnauthorized)

	// A merge patch; the key never comes back.
	r := e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: map[string]any{
		"base_url": "http://127.0.0.1:11434/v1", "model": "llama3.2", "api_key": "sk-secret-123", "timeout_seconds": 5,
	}}).expect(t, http.StatusOK)
	if strings.Contains(string(r.Body), "sk-secret") {
		t.Errorf("PATCH answer shows the key: %s", r.Body)
	}
	m = get()
	if m["model"] != "llama3.2" || m["base_url"] != "http://127.0.0.1:11434/v1" || m["api_key"].(map[string]any)["is_set"] != true {
		t.Errorf("after PATCH %v", m)
	}
	// Stored for the feature services, readable by the owner only.
	path := filepath.Join(dir, AISettingsFile)
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), `"sk-secret-123"`) {
		t.Fatalf("ai.json: %s %v", b, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ai.json mode %v %v", st.Mode().Perm(), err)
	}
	// GET's own answer sent back keeps the key; null resets a field.
	m["model"] = nil
	e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: m}).expect(t, http.StatusOK)
	if got := e.svc.ai.Current(); got.APIKey != "sk-secret-123" || got.Model != "gpt-4o-mini" {
		t.Errorf("after echo: %+v", got)
	}

	bad := []struct {
		name string
		body any
		want string
	}{
		{"unknown key", map[string]any{"provider": "openai"}, "provider"},
		{"not a URL", map[string]any{"base_url": "api.openai.com"}, "base_url"},
		{"file URL", map[string]any{"base_url": "file:///etc/passwd"}, "base_url"},
		{"user info in the URL", map[string]any{"base_url": "https://user:pw@example.com/v1"}, "base_url"},
		{"query in the URL", map[string]any{"base_url": "https://example.com/v1?x=1"}, "base_url"},
		{"empty model", map[string]any{"model": ""}, "model"},
		{"timeout too long", map[string]any{"timeout_seconds": 3600}, "timeout_seconds"},
		{"timeout not an integer", map[string]any{"timeout_seconds": 1.5}, "timeout_seconds"},
		{"key with a newline", map[string]any{"api_key": "sk-1\nX-Injected: 1"}, "api_key"},
		{"key as an object", map[string]any{"api_key": map[string]any{"value": "x"}}, "api_key"},
		{"not an object", []any{1}, "JSON object"},
	}
	for _, tc := range bad {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: tc.body}).expectError(t, http.StatusBadRequest, tc.want)
		})
	}
	// Nothing of those reached the file.
	if got := e.svc.ai.Current(); got.APIKey != "sk-secret-123" || got.BaseURL != "http://127.0.0.1:11434/v1" || got.TimeoutSeconds != 5 {
		t.Errorf("a refused patch changed the settings: %+v", got)
	}

	// The key goes only to the origin it was given for: another base_url
	// path keeps it, another host clears it unless the patch sets one.
	keySet := func() bool { return e.svc.ai.Current().APIKey != "" }
	e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: map[string]any{"base_url": "http://127.0.0.1:11434/api/v1"}}).expect(t, http.StatusOK)
	if !keySet() {
		t.Error("a new path on the same origin cleared the key")
	}
	echo := get()
	echo["base_url"] = "https://collector.example/v1" // what GET shows, key echo included
	if r := e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: echo}).expect(t, http.StatusOK); r.JSON(t)["api_key"].(map[string]any)["is_set"] != false || keySet() {
		t.Errorf("a base_url on another host kept the key: %s", r.Body)
	}
	e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: map[string]any{
		"base_url": "http://127.0.0.1:11434/v1", "api_key": "sk-secret-123"}}).expect(t, http.StatusOK)
	if !keySet() {
		t.Error("a key given with the new origin was dropped")
	}
	// null resets base_url to its default, another origin too.
	e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: map[string]any{"base_url": nil}}).expect(t, http.StatusOK)
	if got := e.svc.ai.Current(); got.BaseURL != "https://api.openai.com/v1" || got.APIKey != "" {
		t.Errorf("base_url reset to its default kept the key: %+v", got)
	}
	e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: map[string]any{
		"base_url": "http://127.0.0.1:11434/v1", "api_key": "sk-secret-123"}}).expect(t, http.StatusOK)

	// Another authsvc sharing APP_CONFIG_DIR sees the change without a
	// restart; a key cleared with null is gone.
	cfg := testConfig()
	cfg.AppConfigDir = dir
	other := newEnv(t, testPool, cfg)
	e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: map[string]any{"api_key": nil}}).expect(t, http.StatusOK)
	if got := other.svc.ai.Current(); got.APIKey != "" || got.BaseURL != "http://127.0.0.1:11434/v1" {
		t.Errorf("the other instance sees %+v", got)
	}
}

func TestAISettingsConnectionTest(t *testing.T) {
	e, _, tok := aiEnv(t)
	p := newFakeProvider(t)
	patch := func(body map[string]any) {
		t.Helper()
		e.do(t, req{Method: "PATCH", Path: "/api/settings/ai", Token: tok, Body: body}).expect(t, http.StatusOK)
	}
	test := func() *response {
		return e.do(t, req{Method: "POST", Path: "/api/settings/ai/test", Token: tok})
	}
	patch(map[string]any{"base_url": p.URL + "/v1/", "model": "gpt-test", "api_key": "sk-live-abc", "timeout_seconds": 1})

	m := test().expect(t, http.StatusOK).JSON(t)
	if m["ok"] != true || m["model"] != "gpt-test-2026-01-01" || m["reply"] != "OK" {
		t.Errorf("test answer %v", m)
	}
	if _, ok := m["latency_ms"].(float64); !ok {
		t.Errorf("latency_ms %v", m["latency_ms"])
	}
	p.mu.Lock()
	if len(p.got) != 1 || p.got[0]["model"] != "gpt-test" || p.auth[0] != "Bearer sk-live-abc" {
		t.Errorf("provider got %v with %q", p.got, p.auth)
	}
	msgs, _ := p.got[0]["messages"].([]any)
	p.mu.Unlock()
	if len(msgs) != 1 {
		t.Errorf("messages %v", msgs)
	}

	// The provider's refusals, in its own words; never a 500.
	p.set(http.StatusUnauthorized, `{"error": {"message": "Incorrect API key provided: sk-live-abc.", "type": "invalid_request_error", "code": "invalid_api_key"}}`, 0)
	// A server that repeats the key it refused does not get it shown
	// (found in review: it reached the answer and the log).
	if r := test().expectError(t, http.StatusBadGateway, "401", "Incorrect API key provided: [api_key]"); strings.Contains(string(r.Body), "sk-live-abc") {
		t.Errorf("the 502 shows the key: %s", r.Body)
	}
	p.set(http.StatusOK, `{"object": "list", "data": []}`, 0)
	test().expectError(t, http.StatusBadGateway, "not a chat completion")
	p.set(http.StatusOK, `<html>login</html>`, 0)
	test().expectError(t, http.StatusBadGateway, "not a chat completion")
	p.set(http.StatusFound, ``, 0) // a redirect is not followed with the key
	test().expectError(t, http.StatusBadGateway, "302")
	p.set(0, "", 1500*time.Millisecond)
	start := time.Now()
	test().expectError(t, http.StatusBadGateway, "did not answer within 1 s")
	if d := time.Since(start); d > 1400*time.Millisecond {
		t.Errorf("the test took %v; the timeout is 1 s", d)
	}
	p.set(0, "", 0)

	// Nothing listening there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	patch(map[string]any{"base_url": "http://" + addr + "/v1"})
	test().expectError(t, http.StatusBadGateway, "could not reach the AI provider")

	// A call longer than the server's write timeout still gets its answer
	// (found in review: the connection closed with none). Here the
	// timeout is 1 s, the call's 2 s.
	patch(map[string]any{"base_url": p.URL + "/v1", "api_key": "sk-live-abc", "timeout_seconds": 2})
	p.set(0, "", 3*time.Second)
	srv := &http.Server{Handler: e.svc.Handler(), WriteTimeout: time.Second}
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	rq, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/api/settings/ai/test", nil)
	rq.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatalf("no answer past the write timeout: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "did not answer within 2 s") {
		t.Errorf("past the write timeout: %d %s", resp.StatusCode, b)
	}
	p.set(0, "", 0)

	// No key set: none is sent (a local server needs none).
	patch(map[string]any{"base_url": p.URL + "/v1", "api_key": nil})
	test().expect(t, http.StatusOK)
	p.mu.Lock()
	if last := p.auth[len(p.auth)-1]; last != "" {
		t.Errorf("Authorization %q sent without a key", last)
	}
	p.mu.Unlock()
}
