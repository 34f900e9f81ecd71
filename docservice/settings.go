package docservice

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/gatehouse/gatehouse/internal/httpx"
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

// settingsSnapshot is one loaded version of the file.
type settingsSnapshot struct {
	stored    map[string]any // what the file holds: only values set explicitly
	effective map[string]any // defaults merged with stored
	typed     Settings
	stamp     fileStamp
}

// fileStamp identifies a version of the file cheaply: another process
// replacing it (atomically, by rename) changes the inode; an in-place edit
// changes mtime or size.
type fileStamp struct {
	exists bool
	ino    uint64
	mtime  time.Time
	size   int64
}

// SettingsStore keeps doc-service.json: validated against the schema,
// written atomically, and re-read when another process changes it, so a
// change applies without a restart.
type SettingsStore struct {
	path      string
	schema    *jsonschema.Schema
	schemaDoc map[string]any
	defaults  map[string]any
	writeOnly [][]string // paths of writeOnly properties
	log       *slog.Logger
	mu        sync.Mutex // serialises reloads and writes in this process
	cur       atomic.Pointer[settingsSnapshot]
}

// NewSettingsStore loads dir/doc-service.json (defaults when missing). An
// invalid file is an error at start: the operator must fix it.
func NewSettingsStore(dir string, log *slog.Logger) (*SettingsStore, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(settingsSchemaJSON))
	if err != nil {
		return nil, fmt.Errorf("settings schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.RegisterFormat(&jsonschema.Format{Name: "path-glob", Validate: validateGlob})
	c.AssertFormat()
	const url = "doc-service-settings.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("settings schema: %w", err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("settings schema: %w", err)
	}
	root := doc.(map[string]any)
	s := &SettingsStore{
		path: filepath.Join(dir, SettingsFile), schema: sch, schemaDoc: root,
		defaults: schemaDefaults(root), writeOnly: writeOnlyPaths(root, nil), log: log,
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("APP_CONFIG_DIR: %w", err)
	}
	s.removeStaleTemps(time.Now().Add(-settingsTempIdle))
	snap, err := s.load()
	if err != nil {
		return nil, fmt.Errorf("APP_CONFIG_DIR: %s: %w", s.path, err)
	}
	s.cur.Store(snap)
	return s, nil
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

// SchemaJSON is the settings schema as published in the manifest.
func (s *SettingsStore) SchemaJSON() json.RawMessage { return settingsSchemaJSON }

// Current returns the effective settings. It re-reads the file when another
// process changed it: one stat per call, a read only when it changed.
func (s *SettingsStore) Current() Settings { return s.snapshot().typed }

func (s *SettingsStore) snapshot() *settingsSnapshot {
	st, err := stampOf(s.path)
	if err != nil || st == s.cur.Load().stamp {
		return s.cur.Load()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st2, err := stampOf(s.path); err == nil && st2 != s.cur.Load().stamp {
		snap, err := s.load()
		if err != nil {
			// Keep serving the last good settings; an operator's typo must
			// not take the service down.
			s.log.Error("settings file changed but is invalid; keeping the previous settings",
				"file", s.path, "err", err)
			bad := *s.cur.Load()
			bad.stamp = st2 // do not retry until it changes again
			s.cur.Store(&bad)
		} else {
			s.log.Info("settings reloaded", "file", s.path)
			s.cur.Store(snap)
		}
	}
	return s.cur.Load()
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{exists: true, ino: inode(fi), mtime: fi.ModTime(), size: fi.Size()}, nil
}

// load reads and validates the file; the caller holds mu (or is NewSettingsStore).
func (s *SettingsStore) load() (*settingsSnapshot, error) {
	st, err := stampOf(s.path)
	if err != nil {
		return nil, err
	}
	stored := map[string]any{}
	if st.exists {
		b, err := os.ReadFile(s.path)
		if err != nil {
			return nil, err
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("not a JSON object")
		}
		stored = m
	}
	return s.snapshotOf(stored, st)
}

func (s *SettingsStore) snapshotOf(stored map[string]any, st fileStamp) (*settingsSnapshot, error) {
	eff := mergePatch(deepCopy(s.defaults), stored).(map[string]any)
	if fields := s.validate(eff); len(fields) > 0 {
		return nil, httpx.Invalid(fields)
	}
	b, err := json.Marshal(eff)
	if err != nil {
		return nil, err
	}
	snap := &settingsSnapshot{stored: stored, effective: eff, stamp: st}
	if err := json.Unmarshal(b, &snap.typed); err != nil {
		return nil, fmt.Errorf("decode settings: %w", err)
	}
	return snap, nil
}

// validate returns the schema violations of v, one per failing location.
func (s *SettingsStore) validate(v any) []httpx.FieldError {
	err := s.schema.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []httpx.FieldError{{Field: "settings", Message: err.Error()}}
	}
	var out []httpx.FieldError
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			field := strings.Join(e.InstanceLocation, ".")
			if field == "" {
				field = "settings"
			}
			out = append(out, httpx.FieldError{Field: field, Message: leafMessage(e)})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

// leafMessage is the library's message for one failure, without the
// location prefix it adds.
func leafMessage(e *jsonschema.ValidationError) string {
	u := e.BasicOutput()
	for _, eu := range append([]jsonschema.OutputUnit{*u}, u.Errors...) {
		if eu.Error != nil {
			return eu.Error.String()
		}
	}
	return e.Error()
}

// Public returns the effective settings as GET shows them: writeOnly values
// replaced by {"is_set": bool}.
func (s *SettingsStore) Public() map[string]any {
	eff := deepCopy(s.snapshot().effective).(map[string]any)
	for _, p := range s.writeOnly {
		parent, key := walkTo(eff, p)
		if parent == nil {
			continue
		}
		v, ok := parent[key]
		set := ok && v != nil && v != ""
		parent[key] = map[string]any{"is_set": set}
	}
	return eff
}

// Patch applies an RFC 7396 merge patch, validates the result, persists it
// atomically and returns the new public view. A writeOnly field sent back as
// {"is_set": ...} (what GET shows) is left unchanged.
func (s *SettingsStore) Patch(patch map[string]any) (map[string]any, error) {
	patch = deepCopy(patch).(map[string]any)
	for _, p := range s.writeOnly {
		if parent, key := walkTo(patch, p); parent != nil {
			// Only that echo: any other object is left for the schema
			// to refuse, not dropped in silence.
			if m, isObj := parent[key].(map[string]any); isObj && len(m) == 1 {
				if _, isBool := m["is_set"].(bool); isBool {
					delete(parent, key)
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Start from the file as it is now, not from a possibly stale cache:
	// another process may have changed it.
	base, err := s.load()
	if err != nil {
		base = s.cur.Load()
	}
	stored, _ := mergePatch(deepCopy(base.stored), patch).(map[string]any)
	pruneEmpty(stored)
	snap, err := s.snapshotOf(stored, fileStamp{})
	if err != nil {
		return nil, err
	}
	if err := s.write(stored); err != nil {
		return nil, err
	}
	snap.stamp, _ = stampOf(s.path)
	s.cur.Store(snap)
	return s.Public(), nil
}

// settingsTempIdle is how long a temporary settings file may go unchanged
// before start-up takes it for a crashed write's leftover. A write takes
// milliseconds; another instance sharing APP_CONFIG_DIR may be in one.
const settingsTempIdle = time.Minute

// removeStaleTemps removes the temporary files of writes that never reached
// their rename (a crash between write's CreateTemp and Rename) and that were
// last changed before cutoff. They never hold the live settings, only
// clutter (and possibly an AI API key), so failing to remove one is logged,
// not fatal.
func (s *SettingsStore) removeStaleTemps(cutoff time.Time) {
	dir := filepath.Dir(s.path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		s.log.Warn("list APP_CONFIG_DIR for stale temporary files", "dir", dir, "err", err)
		return
	}
	prefix := settingsTempPrefix()
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove a crashed settings write's temporary file", "file", name, "err", err)
			continue
		}
		s.log.Info("removed a crashed settings write's temporary file", "file", name)
	}
}

// settingsTempPrefix names write's temporary files (os.CreateTemp adds a
// random suffix).
func settingsTempPrefix() string { return "." + SettingsFile + ".tmp-" }

// write replaces the file atomically: temp file in the same directory,
// fsync, rename, then fsync the directory so the rename survives a crash.
func (s *SettingsStore) write(stored map[string]any) error {
	b, err := json.MarshalIndent(stored, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	f, err := os.CreateTemp(dir, settingsTempPrefix()+"*")
	if err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write settings: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write settings: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write settings: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// mergePatch applies patch to target per RFC 7396 (target may be modified).
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
		} else {
			tm[k] = mergePatch(tm[k], v)
		}
	}
	return tm
}

// pruneEmpty drops objects left empty by a patch, so the file holds only
// what was set explicitly.
func pruneEmpty(m map[string]any) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			pruneEmpty(sub)
			if len(sub) == 0 {
				delete(m, k)
			}
		}
	}
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		return slices.Clone(v)
	default:
		return v
	}
}

// walkTo returns the object holding the last element of path, if present.
func walkTo(m map[string]any, path []string) (map[string]any, string) {
	for _, k := range path[:len(path)-1] {
		sub, ok := m[k].(map[string]any)
		if !ok {
			return nil, ""
		}
		m = sub
	}
	return m, path[len(path)-1]
}

// schemaDefaults collects "default" values from an object schema's
// properties, recursing into nested objects: the schema is the one source
// of defaults.
func schemaDefaults(sch map[string]any) map[string]any {
	out := map[string]any{}
	props, _ := sch["properties"].(map[string]any)
	for name, p := range props {
		ps, _ := p.(map[string]any)
		if ps["type"] == "object" {
			out[name] = schemaDefaults(ps)
		} else if d, ok := ps["default"]; ok {
			out[name] = deepCopy(d)
		}
	}
	return out
}

// writeOnlyPaths lists the property paths marked writeOnly.
func writeOnlyPaths(sch map[string]any, prefix []string) [][]string {
	var out [][]string
	props, _ := sch["properties"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(props)) {
		ps, _ := props[name].(map[string]any)
		p := append(slices.Clone(prefix), name)
		if wo, _ := ps["writeOnly"].(bool); wo {
			out = append(out, p)
		}
		if ps["type"] == "object" {
			out = append(out, writeOnlyPaths(ps, p)...)
		}
	}
	return out
}
