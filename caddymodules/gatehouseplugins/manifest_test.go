package gatehouseplugins

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// manifestJSON is a valid manifest with kv applied on top (nil deletes).
func manifestJSON(t testing.TB, kv ...any) string {
	m := map[string]any{
		"manifest_version": 1,
		"id":               "doc-service",
		"name":             "Documents",
		"version":          "1.0.0",
		"description":      "Upload, watch and organise PDF documents",
		"icon":             "file-text",
		"access":           map[string]any{"allow_superuser": true, "required_groups": []string{"doc-service-admin"}},
		"settings":         map[string]any{"schema": map[string]any{"type": "object", "properties": map[string]any{}}, "ui_schema": map[string]any{}},
		"routes":           []any{map[string]any{"prefix": "/api/documents", "access": "authenticated"}},
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func settingsWith(schema string) map[string]any {
	return map[string]any{"schema": json.RawMessage(schema)}
}

func routes(prefixes ...string) []any {
	var out []any
	for _, p := range prefixes {
		out = append(out, map[string]any{"prefix": p})
	}
	return out
}

func TestParseManifest(t *testing.T) {
	docSchema, err := os.ReadFile("../../docservice/settings.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	const refSchema = `{
		"$schema": "http://json-schema.org/draft-07/schema#",
		"type": "object",
		"definitions": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
		"properties": {"port": {"$ref": "#/definitions/port"}, "backup": {"$ref": "#/definitions/port"}}
	}`
	const defsSchema = `{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"type": "object",
		"$defs": {"name": {"type": "string", "pattern": "^[a-z]+$"}},
		"properties": {"name": {"$ref": "#/$defs/name"}}
	}`

	cases := []struct {
		name        string
		contentType string
		body        string
		wantErr     string // substring of the refusal; "" means valid
	}{
		{"valid", "application/json", manifestJSON(t), ""},
		{"valid with charset", "application/json; charset=utf-8", manifestJSON(t), ""},
		{"valid +json type", "application/vnd.gatehouse.manifest+json", manifestJSON(t), ""},
		{"docservice's real settings schema", "application/json", manifestJSON(t, "settings", settingsWith(string(docSchema))), ""},
		{"draft-07 definitions and $ref", "application/json", manifestJSON(t, "settings", settingsWith(refSchema)), ""},
		{"2020-12 $defs and $ref", "application/json", manifestJSON(t, "settings", settingsWith(defsSchema)), ""},
		{"no settings, no routes", "application/json", manifestJSON(t, "settings", nil, "routes", nil), ""},
		{"Go zero values (null slices, empty icon)", "application/json", manifestJSON(t, "icon", "", "description", "",
			"access", map[string]any{"allow_superuser": true, "required_groups": nil}, "settings", map[string]any{"schema": map[string]any{}, "ui_schema": nil}), ""},
		{"route access defaults to plugin", "application/json", manifestJSON(t, "routes", routes("/api/reports")), ""},

		{"wrong content type", "text/html", manifestJSON(t), "Content-Type"},
		{"no content type", "", manifestJSON(t), "Content-Type"},
		{"huge manifest", "application/json", manifestJSON(t, "description", strings.Repeat("x", MaxManifestBytes)), "larger than 256 KiB"},
		{"not JSON", "application/json", "<html>", "not a JSON object"},
		{"JSON array", "application/json", "[1]", "not a JSON object"},
		{"future manifest_version", "application/json", manifestJSON(t, "manifest_version", 2, "extra_v2_field", true), "unsupported manifest_version 2"},
		{"manifest_version as a string", "application/json", manifestJSON(t, "manifest_version", "1"), `unsupported manifest_version "1"`},
		{"no manifest_version", "application/json", manifestJSON(t, "manifest_version", nil), "no manifest_version"},
		{"missing id", "application/json", manifestJSON(t, "id", nil), "id"},
		{"id with a slash", "application/json", manifestJSON(t, "id", "../admin"), "/id"},
		{"missing access", "application/json", manifestJSON(t, "access", nil), "access"},
		{"unknown field", "application/json", manifestJSON(t, "homepage", "x"), "homepage"},
		{"required_groups not a list", "application/json", manifestJSON(t, "access", map[string]any{"required_groups": "admins"}), "/access/required_groups"},
		{"settings schema not an object", "application/json", manifestJSON(t, "settings", settingsWith(`"object"`)), "/settings/schema"},
		{"settings schema with a bad type", "application/json", manifestJSON(t, "settings", settingsWith(`{"type": "objekt"}`)), "/settings/schema/type"},
		{"settings schema of an array", "application/json", manifestJSON(t, "settings", settingsWith(`{"type": "array"}`)), "/settings/schema/type"},
		{"settings schema with a bad nested type", "application/json", manifestJSON(t, "settings", settingsWith(`{"type": "object", "properties": {"a": {"type": "objekt"}}}`)), "does not compile"},
		{"settings schema with a dangling $ref", "application/json", manifestJSON(t, "settings", settingsWith(`{"properties": {"a": {"$ref": "#/definitions/nope"}}}`)), "does not compile"},
		{"settings schema reading a local file", "application/json", manifestJSON(t, "settings", settingsWith(`{"$ref": "file:///etc/passwd"}`)), "does not compile"},
		{"settings schema fetching a URL", "application/json", manifestJSON(t, "settings", settingsWith(`{"$ref": "http://127.0.0.1:1/schema.json"}`)), "does not compile"},
		{"settings schema with a bad pattern", "application/json", manifestJSON(t, "settings", settingsWith(`{"properties": {"a": {"type": "string", "pattern": "("}}}`)), "does not compile"},
		{"reserved prefix", "application/json", manifestJSON(t, "routes", routes("/api/auth")), "reserved prefix /api/auth"},
		{"under a reserved prefix", "application/json", manifestJSON(t, "routes", routes("/api/admin/plugins")), "reserved prefix /api/admin"},
		{"the platform's settings", "application/json", manifestJSON(t, "routes", routes("/api/settings")), "reserved prefix /api/settings"},
		{"the seed's document limits", "application/json", manifestJSON(t, "routes", routes("/api/settings/documents")), "reserved prefix /api/settings"},
		{"the plugin API", "application/json", manifestJSON(t, "routes", routes("/api/plugins")), "reserved prefix /api/plugins"},
		{"outside /api", "application/json", manifestJSON(t, "routes", routes("/internal/feed")), "/routes/0/prefix"},
		{"all of /api", "application/json", manifestJSON(t, "routes", routes("/api")), "/routes/0/prefix"},
		{"dot segment", "application/json", manifestJSON(t, "routes", routes("/api/x/../auth")), "/routes/0/prefix"},
		{"encoded slash", "application/json", manifestJSON(t, "routes", routes("/api/x%2fy")), "/routes/0/prefix"},
		{"upper case", "application/json", manifestJSON(t, "routes", routes("/api/Auth")), "/routes/0/prefix"},
		{"trailing slash", "application/json", manifestJSON(t, "routes", routes("/api/x/")), "/routes/0/prefix: '/api/x/' does not match pattern '^/api(/[a-z0-9][a-z0-9._~-]*)+$' (want a lower-case path under /api/ such as /api/notes"},
		{"own routes overlapping", "application/json", manifestJSON(t, "routes", routes("/api/x", "/api/x/y")), "routes /api/x and /api/x/y overlap"},
		{"unknown route access", "application/json", manifestJSON(t, "routes", []any{map[string]any{"prefix": "/api/x", "access": "public"}}), "/routes/0/access"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest(tc.contentType, strings.NewReader(tc.body))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if m.ID != "doc-service" || m.ManifestVersion != 1 {
					t.Fatalf("parsed %+v", m)
				}
				for _, r := range m.Routes {
					if r.Access != RouteAccessAuthenticated && r.Access != RouteAccessPlugin {
						t.Errorf("route %s access %q", r.Prefix, r.Access)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want a refusal containing %q", tc.wantErr)
			}
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Errorf("error %T is not a *ManifestError", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseManifestDefaults(t *testing.T) {
	m, err := ParseManifest("application/json", strings.NewReader(manifestJSON(t, "routes", []any{
		map[string]any{"prefix": "/api/reports"},
		map[string]any{"prefix": "/api/reports-public", "access": "authenticated", "forward_credentials": true},
	})))
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{{"/api/reports", RouteAccessPlugin, false}, {"/api/reports-public", RouteAccessAuthenticated, true}}
	if len(m.Routes) != 2 || m.Routes[0] != want[0] || m.Routes[1] != want[1] {
		t.Fatalf("routes = %+v, want %+v", m.Routes, want)
	}
	// The settings schema and ui_schema travel verbatim to the UI.
	if !strings.Contains(string(m.Settings.Schema), `"type":"object"`) || string(m.Settings.UISchema) != "{}" {
		t.Errorf("settings = %s / %s", m.Settings.Schema, m.Settings.UISchema)
	}
}

func TestOverlaps(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"/api/docs", "/api/docs", true},
		{"/api/docs", "/api/docs/x", true},
		{"/api/docs/x", "/api/docs", true},
		{"/api/docs", "/api/docsx", false},
		{"/api/docs-a", "/api/docs", false},
		{"/api/a", "/api/b", false},
	}
	for _, tc := range cases {
		if got := overlaps(tc.a, tc.b); got != tc.want {
			t.Errorf("overlaps(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

// nestedSchema is a settings schema of levels nested "properties", each
// two levels of JSON.
func nestedSchema(levels int) string {
	return strings.Repeat(`{"properties": {"a": `, levels) + `{"type": "string"}` + strings.Repeat("}}", levels)
}

// A deeply nested settings schema is refused before it is compiled, which
// would take minutes; one of a form's depth still compiles.
func TestParseManifestSettingsSchemaDepth(t *testing.T) {
	start := time.Now()
	_, err := ParseManifest("application/json", strings.NewReader(manifestJSON(t, "settings", settingsWith(nestedSchema(2000)))))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a 2000-level schema took %v to refuse", took)
	}
	var me *ManifestError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "settings.schema nests deeper than 64 levels") {
		t.Errorf("a 2000-level schema: %v", err)
	}
	// 31 levels of properties and the string's object: 63 levels of JSON.
	if _, err := ParseManifest("application/json", strings.NewReader(manifestJSON(t, "settings", settingsWith(nestedSchema(31))))); err != nil {
		t.Errorf("a 31-level schema: %v", err)
	}
	if _, err := ParseManifest("application/json", strings.NewReader(manifestJSON(t, "settings", settingsWith(nestedSchema(32))))); err == nil {
		t.Errorf("a 32-level schema (65 levels of JSON) accepted")
	}
	// A number too large for a float64 before the nesting: the scan reads
	// numbers as the schema parser does, and still counts the depth
	// (found in review: 1e400 ended it, and 2000 levels took 31 s).
	for _, prefix := range []string{`{"default": 1e400, `, `{"default": [1e400, 1E-400, 123456789012345678901234567890], `} {
		start := time.Now()
		schema := prefix + strings.TrimPrefix(nestedSchema(600), "{")
		_, err := ParseManifest("application/json", strings.NewReader(manifestJSON(t, "settings", settingsWith(schema))))
		if !errors.As(err, &me) || !strings.Contains(err.Error(), "nests deeper than 64 levels") {
			t.Errorf("a 600-level schema after %s: %v (took %v)", prefix, err, time.Since(start))
		}
	}
}
