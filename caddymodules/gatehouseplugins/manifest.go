package gatehouseplugins

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// ManifestVersion is the only manifest version this edge understands.
const ManifestVersion = 1

// MaxManifestBytes bounds a manifest fetched from a service: settings
// schemas are small, and the edge keeps every manifest in memory.
const MaxManifestBytes = 256 << 10

// manifestSchemaJSON is the published JSON Schema of manifest version 1
// (docs/plugins.md links to this file).
//
//go:embed manifest.v1.schema.json
var manifestSchemaJSON []byte

const manifestSchemaURL = "https://gatehouse.invalid/schemas/plugin-manifest.v1.schema.json"

// manifestSchema is compiled once; a schema that does not compile is a bug
// in this package, caught by its tests. prefixSchema is its rule for one
// route prefix, which the operator's pinned prefixes follow too.
var manifestSchema, prefixSchema = func() (*jsonschema.Schema, *jsonschema.Schema) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(manifestSchemaJSON))
	if err != nil {
		panic(fmt.Sprintf("manifest schema: %v", err))
	}
	c := newCompiler()
	if err := c.AddResource(manifestSchemaURL, doc); err != nil {
		panic(fmt.Sprintf("manifest schema: %v", err))
	}
	return c.MustCompile(manifestSchemaURL), c.MustCompile(manifestSchemaURL + "#/properties/routes/items/properties/prefix")
}()

// Manifest is a plugin manifest, version 1 (DESIGN.md, "Plugin contract").
type Manifest struct {
	ManifestVersion int       `json:"manifest_version"`
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	Version         string    `json:"version"`
	Description     string    `json:"description,omitempty"`
	Icon            string    `json:"icon,omitempty"`
	Access          Access    `json:"access"`
	Settings        *Settings `json:"settings,omitempty"`
	Routes          []Route   `json:"routes,omitempty"`
}

// Access says who may see a plugin and manage its settings.
type Access struct {
	AllowSuperuser bool     `json:"allow_superuser"`
	RequiredGroups []string `json:"required_groups"`
}

// Settings carries the settings schema and rendering hints, verbatim.
type Settings struct {
	Schema   json.RawMessage `json:"schema"`
	UISchema json.RawMessage `json:"ui_schema,omitempty"`
}

// Route access rules.
const (
	RouteAccessAuthenticated = "authenticated"
	RouteAccessPlugin        = "plugin"
)

// Route is an API prefix the edge sends to the plugin's service.
type Route struct {
	Prefix string `json:"prefix"`
	// Access is RouteAccessAuthenticated or RouteAccessPlugin; ParseManifest
	// fills in the default (plugin: deny unless the plugin's access allows).
	Access string `json:"access"`
	// ForwardCredentials lets the client's Authorization header and token
	// cookie through to the service.
	ForwardCredentials bool `json:"forward_credentials,omitempty"`
}

// ReservedPrefixes belong to the platform: no manifest route may equal,
// contain or lie under one of them. All of /api/settings is the platform's
// (the seed's /api/settings/ai and /api/settings/documents/limits), not
// only the AI settings.
var ReservedPrefixes = []string{
	"/api/auth", "/api/users", "/api/admin", "/api/profile", "/api/settings",
	"/api/plugins", "/api/services", "/internal",
}

// ManifestError is why a fetched manifest was refused. Its text is shown to
// admins in /api/services, so it names the rule broken, never the document.
type ManifestError struct{ Reason string }

func (e *ManifestError) Error() string { return e.Reason }

func refuse(format string, args ...any) error {
	return &ManifestError{Reason: fmt.Sprintf(format, args...)}
}

// ParseManifest reads a manifest response body (at most MaxManifestBytes
// of it) served with contentType, and returns it if it is a valid version 1
// manifest whose settings schema compiles. Every refusal is a
// *ManifestError.
func ParseManifest(contentType string, body io.Reader) (*Manifest, error) {
	if !isJSON(contentType) {
		return nil, refuse("manifest Content-Type is %q, want application/json", contentType)
	}
	raw, err := io.ReadAll(io.LimitReader(body, MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if len(raw) > MaxManifestBytes {
		return nil, refuse("manifest larger than %d KiB", MaxManifestBytes>>10)
	}

	// The version first, so that a future manifest is refused for what it
	// is rather than for the fields this edge does not know.
	var head struct {
		ManifestVersion json.RawMessage `json:"manifest_version"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, refuse("manifest is not a JSON object: %v", err)
	}
	if v := string(head.ManifestVersion); v != "1" {
		if v == "" {
			return nil, refuse("manifest has no manifest_version")
		}
		return nil, refuse("unsupported manifest_version %s: this edge speaks version %d", v, ManifestVersion)
	}

	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, refuse("manifest is not valid JSON: %v", err)
	}
	if err := manifestSchema.Validate(doc); err != nil {
		return nil, refuse("manifest does not match the version 1 schema: %s", schemaErrorText(err))
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, refuse("manifest: %v", err)
	}
	for i := range m.Routes {
		if m.Routes[i].Access == "" {
			m.Routes[i].Access = RouteAccessPlugin
		}
	}
	if err := checkRoutes(m.Routes); err != nil {
		return nil, err
	}
	if m.Settings != nil {
		if err := compileSettingsSchema(m.Settings.Schema); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// checkRoutes refuses route prefixes that shadow the platform's or each
// other.
func checkRoutes(routes []Route) error {
	prefixes := make([]string, len(routes))
	for i, r := range routes {
		prefixes[i] = r.Prefix
	}
	return checkPrefixes("route", "routes", prefixes)
}

// checkPrefixes refuses prefixes that shadow the platform's or each other;
// one and many name them in the reason ("route", "routes").
func checkPrefixes(one, many string, prefixes []string) error {
	for i, p := range prefixes {
		for _, res := range ReservedPrefixes {
			if overlaps(p, res) {
				return refuse("%s %s overlaps the reserved prefix %s", one, p, res)
			}
		}
		for _, o := range prefixes[:i] {
			if overlaps(p, o) {
				return refuse("%s %s and %s overlap", many, o, p)
			}
		}
	}
	return nil
}

// overlaps reports whether one prefix equals the other or lies under it,
// i.e. whether some path would match both.
func overlaps(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// compileSettingsSchema compiles a plugin's settings schema the way
// generic form renderers read it (draft-07 unless it says otherwise), so a
// broken schema is caught here rather than in a browser.
func compileSettingsSchema(schema json.RawMessage) error {
	if tooDeep(schema, MaxSettingsSchemaDepth) {
		return refuse("settings.schema nests deeper than %d levels", MaxSettingsSchemaDepth)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return refuse("settings.schema is not valid JSON: %v", err)
	}
	// An absolute location, so that errors name no path of the edge.
	const loc = "https://gatehouse.invalid/plugin-settings.schema.json"
	c := newCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	if err := c.AddResource(loc, doc); err != nil {
		return refuse("settings.schema: %s", schemaErrorText(err))
	}
	if _, err := c.Compile(loc); err != nil {
		return refuse("settings.schema does not compile: %s", schemaErrorText(err))
	}
	return nil
}

// MaxSettingsSchemaDepth bounds how deeply a settings schema's JSON nests
// (objects and arrays). Compiling a schema costs far more than linear time
// in its depth: 2000 levels of "properties" (42 KB) took minutes, during
// which the round of checks, every other service's state and a reload
// (App.Stop waits for the round) waited. A form renderer's schema needs a
// few levels; 64 is 32 levels of "properties".
const MaxSettingsSchemaDepth = 64

// tooDeep reports whether the JSON in raw nests objects and arrays deeper
// than limit. It reads tokens, without building the document, and stops
// at the first one too deep; invalid JSON is left to the parser that
// follows. Numbers are read as json.Number, as that parser reads them: as
// float64, a 1e400 was an error here that ended the scan, and the deep
// schema behind it was compiled all the same (found in review).
func tooDeep(raw []byte, limit int) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if depth++; depth > limit {
				return true
			}
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// newCompiler returns a compiler that loads nothing: a schema fetched from
// a plugin must not make the edge read its files ("$ref":
// "file:///etc/...") or call other hosts.
func newCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	return c
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external reference %q refused", url)
}

// schemaErrorText flattens a validation error into one line, short enough
// for /api/services.
func schemaErrorText(err error) string {
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		var parts []string
		for _, leaf := range leaves(ve) {
			loc := "/" + strings.Join(leaf.InstanceLocation, "/")
			msg := leaf.ErrorKind.LocalizedString(english)
			if _, ok := leaf.ErrorKind.(*kind.Pattern); ok && len(leaf.InstanceLocation) > 0 &&
				leaf.InstanceLocation[len(leaf.InstanceLocation)-1] == "prefix" {
				// The regular expression alone does not say what to fix.
				msg += " (" + prefixRule + ")"
			}
			parts = append(parts, loc+": "+msg)
			if len(parts) == 5 {
				break
			}
		}
		return strings.Join(parts, "; ")
	}
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

var english = message.NewPrinter(language.English)

// prefixRule says in words what the schema's prefix pattern allows.
const prefixRule = "want a lower-case path under /api/ such as /api/notes: segments of a-z, 0-9, '.', '_', '~' and '-', none empty, no trailing slash"

func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// isJSON accepts application/json and any application/*+json type.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}
