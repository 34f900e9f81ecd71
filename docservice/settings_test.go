package docservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSettings(t *testing.T) {
	e := newEnv(t)
	admin := newAdmin()
	groupAdmin := user{id: newUser().id, groups: []string{"doc%2Dservice%2Dadmin"}} // percent-encoded by the edge
	plain := user{id: newUser().id, groups: []string{"staff"}}

	r := e.do(&admin, "GET", "/plugin/settings", nil, nil)
	m := r.json(t)
	if r.status != 200 || m["max_pdf_size_mb"] != 50.0 || m["watch"].(map[string]any)["enabled"] != false ||
		m["ai"].(map[string]any)["api_key"].(map[string]any)["is_set"] != false {
		t.Fatalf("defaults: %d %s", r.status, r.body)
	}
	// Deny by default.
	if r := e.do(&plain, "GET", "/plugin/settings", nil, nil); r.status != http.StatusForbidden {
		t.Fatalf("plain user GET: %d", r.status)
	}
	if r := e.doJSON(&plain, "PATCH", "/plugin/settings", map[string]any{"max_pdf_size_mb": 1}); r.status != http.StatusForbidden {
		t.Fatalf("plain user PATCH: %d", r.status)
	}
	if r := e.do(nil, "GET", "/plugin/settings", nil, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("anonymous GET: %d", r.status)
	}
	// A merge patch from a doc-service-admin member.
	patch := `{"max_pdf_size_mb": 20, "watch": {"enabled": true, "ignore_patterns": ["*.tmp"]}, "ai": {"api_key": "sk-secret"}}`
	r = e.do(&groupAdmin, "PATCH", "/plugin/settings", strings.NewReader(patch), map[string]string{"Content-Type": "application/merge-patch+json"})
	m = r.json(t)
	w := m["watch"].(map[string]any)
	if r.status != 200 || m["max_pdf_size_mb"] != 20.0 || w["enabled"] != true || w["poll_interval_seconds"] != 30.0 ||
		strings.Contains(string(r.body), "sk-secret") || m["ai"].(map[string]any)["api_key"].(map[string]any)["is_set"] != true {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	// Applied at once, for everybody reading it.
	if got := e.svc.settings.Current(); got.MaxPDFSizeMB != 20 || got.AI.APIKey != "sk-secret" || !got.Watch.Enabled {
		t.Fatalf("current: %+v", got)
	}
	if r := e.do(&admin, "GET", "/api/settings/documents/limits", nil, nil); r.json(t)["max_pdf_size_mb"] != 20.0 {
		t.Fatalf("limits after patch: %s", r.body)
	}
	// Sending back what GET showed keeps the secret; null resets to the default.
	r = e.do(&admin, "GET", "/plugin/settings", nil, nil)
	r = e.do(&admin, "PATCH", "/plugin/settings", bytes.NewReader(r.body), map[string]string{"Content-Type": "application/json"})
	if r.status != 200 || e.svc.settings.Current().AI.APIKey != "sk-secret" {
		t.Fatalf("round trip: %d %s", r.status, r.body)
	}
	r = e.doJSON(&admin, "PATCH", "/plugin/settings", map[string]any{"max_pdf_size_mb": nil, "ai": map[string]any{"api_key": nil}})
	if m := r.json(t); r.status != 200 || m["max_pdf_size_mb"] != 50.0 || e.svc.settings.Current().AI.APIKey != "" {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	// Invalid values and unknown keys change nothing.
	before, _ := os.ReadFile(filepath.Join(e.configDir, SettingsFile))
	for _, bad := range []string{
		`{"max_pdf_size_mb": 0}`, `{"max_pdf_size_mb": "big"}`, `{"max_pdf_size_mb": 1.5}`,
		`{"unknown": true}`, `{"watch": {"enabled": true, "typo": 1}}`, `{"watch": {"visibility": "nobody"}}`,
		`{"watch": {"ignore_patterns": "*.tmp"}}`, `{"ai": {"max_text_chars": 10}}`,
		`{"watch": {"ignore_patterns": ["*.tmp", "["]}}`, `{"watch": {"ignore_patterns": ["a\\"]}}`,
		`{"ai": {"api_key": {"is_set": false, "value": "x"}}}`, `{"ai": {"api_key": {"foo": 1}}}`, `{"ai": {"api_key": {"is_set": "yes"}}}`,
		`{"ai": {"language": "en_US"}}`, `{"ai": {"language": "-"}}`, `{"ai": {"language": "de CH"}}`,
	} {
		r := e.do(&admin, "PATCH", "/plugin/settings", strings.NewReader(bad), map[string]string{"Content-Type": "application/merge-patch+json"})
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
			continue
		}
		if errs, _ := r.json(t)["errors"].([]any); len(errs) == 0 {
			t.Errorf("%s: no field errors: %s", bad, r.body)
		}
	}
	r = e.do(&admin, "PATCH", "/plugin/settings", strings.NewReader(`{"watch": {"ignore_patterns": ["ok*", "[z-"]}}`), nil)
	if fe := r.json(t)["errors"].([]any)[0].(map[string]any); fe["field"] != "watch.ignore_patterns.1" || !strings.Contains(fe["message"].(string), "path.Match") {
		t.Errorf("bad pattern error: %s", r.body)
	}
	if after, _ := os.ReadFile(filepath.Join(e.configDir, SettingsFile)); !bytes.Equal(before, after) {
		t.Fatal("a refused patch changed the file")
	}
	r = e.doJSON(&admin, "PATCH", "/plugin/settings", map[string]any{
		"watch": map[string]any{"ignore_patterns": []string{"[a-z]*.pdf", `\*`}}, "ai": map[string]any{"language": "de-CH"}})
	if r.status != 200 {
		t.Errorf("good pattern and language: %d %s", r.status, r.body)
	}
	before, _ = os.ReadFile(filepath.Join(e.configDir, SettingsFile))
	r = e.do(&admin, "PATCH", "/plugin/settings", strings.NewReader(`{"watch": {"typo": 1}}`), nil)
	if fe := r.json(t)["errors"].([]any)[0].(map[string]any); fe["field"] != "watch" || !strings.Contains(fe["message"].(string), "typo") {
		t.Errorf("unknown nested key error: %s", r.body)
	}
	if r := e.do(&admin, "PATCH", "/plugin/settings", strings.NewReader(`[1]`), nil); r.status != http.StatusBadRequest {
		t.Errorf("array patch: %d", r.status)
	}
	if r := e.do(&admin, "PATCH", "/plugin/settings", strings.NewReader(`{}`), map[string]string{"Content-Type": "text/plain"}); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d", r.status)
	}
	after, _ := os.ReadFile(filepath.Join(e.configDir, SettingsFile))
	if !bytes.Equal(before, after) {
		t.Fatal("a refused patch changed the file")
	}
	fi, err := os.Stat(filepath.Join(e.configDir, SettingsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("settings file mode: %v %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(e.configDir, ".*tmp*")); len(left) > 0 {
		t.Fatalf("temporary settings files left: %v", left)
	}
}

// Another process (authsvc, an operator) changing the file is picked up.
func TestSettingsReloadFromFile(t *testing.T) {
	e := newEnv(t)
	admin := newAdmin()
	path := filepath.Join(e.configDir, SettingsFile)
	write := func(s string) {
		tmp := path + ".new"
		os.WriteFile(tmp, []byte(s), 0o600)
		os.Rename(tmp, path)
	}
	write(`{"max_pdf_size_mb": 7}`)
	if r := e.do(&admin, "GET", "/api/settings/documents/limits", nil, nil); r.json(t)["max_pdf_size_mb"] != 7.0 {
		t.Fatalf("after external write: %s", r.body)
	}
	// A broken file keeps the last good settings.
	write(`{"max_pdf_size_mb": "lots"`)
	if got := e.svc.settings.Current().MaxPDFSizeMB; got != 7 {
		t.Fatalf("after a broken write: %d", got)
	}
	// In-place edit (same inode): picked up by mtime/size.
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(path, []byte(`{"max_pdf_size_mb": 9}`), 0o600)
	if got := e.svc.settings.Current().MaxPDFSizeMB; got != 9 {
		t.Fatalf("after an in-place edit: %d", got)
	}
	// The upload limit follows at once.
	e.do(&admin, "PATCH", "/api/settings/documents/limits", strings.NewReader(`{"max_pdf_size_mb": 1}`), nil)
	if r := e.upload(newUser(), "big.pdf", bigPDFHead(2<<20), nil); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload over the new limit: %d", r.status)
	}
	var stored map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &stored); err != nil || stored["max_pdf_size_mb"] != 1.0 {
		t.Fatalf("file: %s", b)
	}
}

func TestLimitsEndpoints(t *testing.T) {
	e := newEnv(t)
	admin, groupAdmin := newAdmin(), user{id: newUser().id, groups: []string{AdminGroup}}
	if r := e.do(&groupAdmin, "GET", "/api/settings/documents/limits", nil, nil); r.status != http.StatusForbidden {
		t.Fatalf("non-admin GET limits: %d", r.status)
	}
	r := e.doJSON(&admin, "PATCH", "/api/settings/documents/limits", map[string]any{"max_pdf_size_mb": 123})
	if r.status != 200 || r.json(t)["max_pdf_size_mb"] != 123.0 {
		t.Fatalf("PATCH limits: %d %s", r.status, r.body)
	}
	if got := e.svc.settings.Public()["max_pdf_size_mb"]; got != json.Number("123") && got != 123.0 {
		t.Fatalf("plugin settings after limits PATCH: %v (%T)", got, got)
	}
	// Only an admin changes it: a user, the plugin's own admin group and an
	// anonymous caller are refused, and the value stays.
	plain := newUser()
	for _, c := range []struct {
		who    string
		u      *user
		status int
	}{{"user", &plain, http.StatusForbidden}, {"doc-service-admin", &groupAdmin, http.StatusForbidden}, {"anonymous", nil, http.StatusUnauthorized}} {
		if r := e.doJSON(c.u, "PATCH", "/api/settings/documents/limits", map[string]any{"max_pdf_size_mb": 1}); r.status != c.status {
			t.Errorf("%s PATCH limits: %d %s, want %d", c.who, r.status, r.body, c.status)
		}
		if c.u == nil {
			if r := e.do(nil, "GET", "/api/settings/documents/limits", nil, nil); r.status != http.StatusUnauthorized {
				t.Errorf("anonymous GET limits: %d", r.status)
			}
		}
	}
	if got := e.svc.settings.Current().MaxPDFBytes(); got != 123<<20 {
		t.Fatalf("limit after refused PATCHes: %d bytes, want 123 MiB", got)
	}
	for _, bad := range []map[string]any{{"max_pdf_size_mb": -1}, {"max_pdf_size_mb": nil}, {}, {"max_pdf_size_mb": 5, "other": 1}} {
		if r := e.doJSON(&admin, "PATCH", "/api/settings/documents/limits", bad); r.status != http.StatusBadRequest {
			t.Errorf("PATCH limits %v: %d %s", bad, r.status, r.body)
		}
	}
}

func TestManifest(t *testing.T) {
	e := newEnv(t)
	r := e.do(nil, "GET", "/plugin/manifest", nil, nil)
	if r.status != 200 {
		t.Fatalf("manifest: %d", r.status)
	}
	var m struct {
		ManifestVersion int    `json:"manifest_version"`
		ID              string `json:"id"`
		Access          struct {
			AllowSuperuser bool     `json:"allow_superuser"`
			RequiredGroups []string `json:"required_groups"`
		} `json:"access"`
		Settings struct {
			Schema   json.RawMessage `json:"schema"`
			UISchema map[string]any  `json:"ui_schema"`
		} `json:"settings"`
		Routes      []struct{ Prefix, Access string } `json:"routes"`
		Name        string                            `json:"name"`
		Version     string                            `json:"version"`
		Description string                            `json:"description"`
		Icon        string                            `json:"icon"`
	}
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	if m.ManifestVersion != 1 || m.ID != "doc-service" || m.Name == "" || !m.Access.AllowSuperuser ||
		len(m.Access.RequiredGroups) != 1 || m.Access.RequiredGroups[0] != AdminGroup ||
		len(m.Routes) != 1 || m.Routes[0].Prefix != "/api/documents" || m.Routes[0].Access != "authenticated" ||
		m.Version != Version || m.Version == "" || m.Description != "Upload, watch and organise PDF documents" ||
		m.Icon == "" {
		t.Fatalf("manifest: %s", r.body)
	}
	var a, b any
	json.Unmarshal(m.Settings.Schema, &a)
	json.Unmarshal(settingsSchemaJSON, &b)
	if ab, _ := json.Marshal(a); !bytes.Equal(ab, mustMarshal(b)) {
		t.Fatal("the manifest's schema is not the validation schema")
	}
	if !strings.Contains(string(m.Settings.Schema), `"additionalProperties":false`) &&
		!strings.Contains(string(m.Settings.Schema), `"additionalProperties": false`) {
		t.Fatal("schema allows unknown keys")
	}
	if r := e.do(nil, "GET", "/health", nil, nil); r.status != 200 {
		t.Fatalf("health: %d", r.status)
	}
}

func mustMarshal(v any) []byte { b, _ := json.Marshal(v); return b }

// additionalProperties is false on every object of the schema.
func TestSchemaClosed(t *testing.T) {
	var sch map[string]any
	json.Unmarshal(settingsSchemaJSON, &sch)
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		if s["type"] == "object" && s["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties is not false", path)
		}
		props, _ := s["properties"].(map[string]any)
		for k, v := range props {
			walk(path+"."+k, v.(map[string]any))
		}
	}
	walk("settings", sch)
}

// A crash between a settings write's CreateTemp and its Rename leaves a
// temporary file (possibly holding an AI API key). The next start removes
// it, but not one another instance may be writing right now, nor anything
// else in APP_CONFIG_DIR; the live settings are untouched.
func TestSettingsStartRemovesCrashedWrites(t *testing.T) {
	dir := t.TempDir()
	put := func(name, body string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	put(SettingsFile, `{"max_pdf_size_mb": 7}`, time.Hour)
	crashed := put("."+SettingsFile+".tmp-123", `{"max_pdf_size_mb": 3, "ai": {"api_key": "sk-`, 2*settingsTempIdle)
	inFlight := put("."+SettingsFile+".tmp-456", `{"max_pdf_size_mb": 4}`, 0)
	other := put("."+SettingsFile+".bak", `{}`, time.Hour)

	s, err := NewSettingsStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Current().MaxPDFSizeMB; got != 7 {
		t.Fatalf("settings after start: max_pdf_size_mb %d, want 7 (the live file's)", got)
	}
	if _, err := os.Stat(crashed); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the crashed write's temporary file is still there: %v", err)
	}
	for _, p := range []string{inFlight, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}

	// A write leaves no temporary file of its own behind.
	if _, err := s.Patch(map[string]any{"max_pdf_size_mb": 8.0}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"." + SettingsFile + ".bak", "." + SettingsFile + ".tmp-456", SettingsFile}
	if !slices.Equal(names, want) {
		t.Fatalf("APP_CONFIG_DIR after a write: %q, want %q", names, want)
	}
}
