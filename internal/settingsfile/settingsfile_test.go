package settingsfile

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

const testSchema = `{
  "type": "object", "additionalProperties": false,
  "properties": {
    "n":   {"type": "integer", "minimum": 1, "default": 3},
    "key": {"type": "string", "writeOnly": true}
  }
}`

type testSettings struct {
	N   int    `json:"n"`
	Key string `json:"key"`
}

// Patch's errors are the client's answers: 400 with the schema's fields,
// 500 "could not save" when the file cannot be written; a failed patch
// changes nothing.
func TestPatchAnswers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "config")
	s, err := New[testSettings](dir, "t.json", []byte(testSchema), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Current(); got.N != 3 {
		t.Errorf("default %+v", got)
	}
	out, err := s.Patch(map[string]any{"n": 5.0, "key": "secret"})
	if err != nil || s.Current().N != 5 || out["key"].(map[string]any)["is_set"] != true {
		t.Fatalf("patch: %v %v %+v", out, err, s.Current())
	}
	var he *httpx.Error
	if _, err := s.Patch(map[string]any{"n": 0.0}); !errors.As(err, &he) || he.Status != http.StatusBadRequest {
		t.Errorf("invalid patch: %v", err)
	}
	// A directory where the file was: no write can replace it.
	path := filepath.Join(dir, "t.json")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Patch(map[string]any{"n": 6.0}); !errors.As(err, &he) || he.Status != http.StatusInternalServerError ||
		!strings.Contains(he.Detail, "could not save") {
		t.Errorf("unwritable: %v", err)
	}
	if got := s.Current(); got.N != 5 || got.Key != "secret" {
		t.Errorf("a failed patch changed the settings: %+v", got)
	}
}

func TestReadPatch(t *testing.T) {
	for body, status := range map[string]int{`{"n": 2}`: 0, `[1]`: http.StatusBadRequest, `"x"`: http.StatusBadRequest, `{`: http.StatusBadRequest} {
		r := httptest.NewRequest("PATCH", "/settings", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/merge-patch+json")
		m, err := ReadPatch(httptest.NewRecorder(), r)
		var he *httpx.Error
		switch {
		case status == 0 && (err != nil || m["n"] != 2.0):
			t.Errorf("%s: %v %v", body, m, err)
		case status != 0 && (!errors.As(err, &he) || he.Status != status):
			t.Errorf("%s: %v, want %d", body, err, status)
		}
	}
}

// Preview shows what a patch would make, defaults restored by null
// included, and saves nothing.
func TestPreview(t *testing.T) {
	dir := t.TempDir()
	s, err := New[testSettings](dir, "t.json", []byte(testSchema), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Patch(map[string]any{"n": 5.0}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Preview(map[string]any{"n": nil, "key": "k"}); err != nil || got.N != 3 || got.Key != "k" {
		t.Errorf("preview %+v %v", got, err)
	}
	var he *httpx.Error
	if _, err := s.Preview(map[string]any{"n": 0.0}); !errors.As(err, &he) || he.Status != http.StatusBadRequest {
		t.Errorf("invalid preview: %v", err)
	}
	if got := s.Current(); got.N != 5 || got.Key != "" {
		t.Errorf("a preview changed the settings: %+v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "t.json")); strings.Contains(string(b), `"k"`) {
		t.Errorf("a preview was written: %s", b)
	}
}
