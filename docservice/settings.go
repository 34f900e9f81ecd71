package docservice

import (
	_ "embed"
	"errors"
	"log/slog"
	"path"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/gatehouse/gatehouse/internal/settingsfile"
)

// SettingsFile is the name of docservice's settings in APP_CONFIG_DIR.
const SettingsFile = "doc-service.json"

// settingsSchemaJSON is the one schema used for validation and published in
// the manifest, so the two can never disagree.
//
//go:embed settings.schema.json
var settingsSchemaJSON []byte

// Settings is the typed view of the effective settings (defaults + file).
type Settings struct {
	MaxPDFSizeMB int64         `json:"max_pdf_size_mb"`
	Watch        WatchSettings `json:"watch"`
	AI           AISettings    `json:"ai"`
}

// WatchSettings configures the watched-folder ingest (a later issue uses them).
type WatchSettings struct {
	Enabled               bool     `json:"enabled"`
	StabilityDelaySeconds int      `json:"stability_delay_seconds"`
	PollIntervalSeconds   int      `json:"poll_interval_seconds"`
	IgnorePatterns        []string `json:"ignore_patterns"`
	Visibility            string   `json:"visibility"` // admins | group | everyone
	VisibilityGroup       string   `json:"visibility_group"`
}

// AISettings configures AI-suggested names and categories.
type AISettings struct {
	Enabled         bool   `json:"enabled"`
	SuggestCategory bool   `json:"suggest_category"`
	SuggestFilename bool   `json:"suggest_filename"`
	Model           string `json:"model"`
	APIKey          string `json:"api_key"`
	MaxTextChars    int    `json:"max_text_chars"`
	Language        string `json:"language"`
}

// MaxPDFBytes is the upload limit in bytes.
func (s Settings) MaxPDFBytes() int64 { return s.MaxPDFSizeMB << 20 }

// WatchedVisibleTo reports whether p may see documents from the watched folder.
func (s Settings) WatchedVisibleTo(p *Principal) bool {
	switch {
	case p.Admin:
		return true
	case s.Watch.Visibility == "everyone":
		return true
	case s.Watch.Visibility == "group":
		return s.Watch.VisibilityGroup != "" && p.InGroup(s.Watch.VisibilityGroup)
	}
	return false
}

// SettingsStore keeps doc-service.json (internal/settingsfile).
type SettingsStore = settingsfile.Store[Settings]

// settingsTempIdle is how old a crashed write's temporary file must be
// before start-up removes it.
const settingsTempIdle = settingsfile.TempIdle

// NewSettingsStore loads dir/doc-service.json (defaults when missing). An
// invalid file is an error at start: the operator must fix it.
func NewSettingsStore(dir string, log *slog.Logger) (*SettingsStore, error) {
	return settingsfile.New[Settings](dir, SettingsFile, settingsSchemaJSON,
		[]*jsonschema.Format{{Name: "path-glob", Validate: validateGlob}}, log)
}

// validateGlob is the schema's "path-glob" format: a pattern path.Match
// takes. A malformed one ("[") would match nothing, silently.
func validateGlob(v any) error {
	p, ok := v.(string)
	if !ok {
		return nil // the type keyword reports it
	}
	if _, err := path.Match(p, ""); err != nil {
		return errors.New("not a valid shell pattern (path.Match)")
	}
	return nil
}
