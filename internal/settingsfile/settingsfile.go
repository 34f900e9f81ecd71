// Package settingsfile keeps a service's settings in one JSON file under
// APP_CONFIG_DIR: validated against a JSON Schema (santhosh-tekuri/jsonschema,
// draft-07) whose "default"s are the defaults, changed by RFC 7396 merge
// patches, written atomically (temporary file, fsync, rename, fsync of the
// folder), and re-read when another process replaces it, so a change
// applies without a restart. Properties marked writeOnly (API keys) are
// shown as {"is_set": bool}.
package settingsfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

// snapshot is one loaded version of the file.
type snapshot[T any] struct {
	stored    map[string]any // what the file holds: only values set explicitly
	effective map[string]any // defaults merged with stored
	typed     T
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

// Store keeps one settings file: validated against its schema, written
// atomically, and re-read when another process changes it, so a change
// applies without a restart.
type Store[T any] struct {
	path       string
	schema     *jsonschema.Schema
	schemaJSON []byte
	defaults   map[string]any
	writeOnly  [][]string // paths of writeOnly properties
	log        *slog.Logger
	mu         sync.Mutex // serialises reloads and writes in this process
	cur        atomic.Pointer[snapshot[T]]
}

// New loads dir/file (defaults when missing), validated against
// schemaJSON (draft-07; formats adds named formats, which are asserted).
// An invalid file is an error at start: the operator must fix it. T is the
// typed view of the effective settings (decoded from their JSON).
func New[T any](dir, file string, schemaJSON []byte, formats []*jsonschema.Format, log *slog.Logger) (*Store[T], error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("settings schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	for _, f := range formats {
		c.RegisterFormat(f)
	}
	c.AssertFormat()
	url := file + ".schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("settings schema: %w", err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("settings schema: %w", err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("settings schema: not an object schema")
	}
	s := &Store[T]{
		path: filepath.Join(dir, file), schema: sch, schemaJSON: schemaJSON,
		defaults: schemaDefaults(root), writeOnly: writeOnlyPaths(root, nil), log: log,
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("APP_CONFIG_DIR: %w", err)
	}
	s.removeStaleTemps(time.Now().Add(-TempIdle))
	snap, err := s.load()
	if err != nil {
		return nil, fmt.Errorf("APP_CONFIG_DIR: %s: %w", s.path, err)
	}
	s.cur.Store(snap)
	return s, nil
}

// SchemaJSON is the schema the store validates with.
func (s *Store[T]) SchemaJSON() json.RawMessage { return s.schemaJSON }

// Current returns the effective settings. It re-reads the file when another
// process changed it: one stat per call, a read only when it changed.
func (s *Store[T]) Current() T { return s.snapshot().typed }

func (s *Store[T]) snapshot() *snapshot[T] {
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

// load reads and validates the file; the caller holds mu (or is New).
func (s *Store[T]) load() (*snapshot[T], error) {
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

func (s *Store[T]) snapshotOf(stored map[string]any, st fileStamp) (*snapshot[T], error) {
	eff := mergePatch(deepCopy(s.defaults), stored).(map[string]any)
	if fields := s.validate(eff); len(fields) > 0 {
		return nil, httpx.Invalid(fields)
	}
	b, err := json.Marshal(eff)
	if err != nil {
		return nil, err
	}
	snap := &snapshot[T]{stored: stored, effective: eff, stamp: st}
	if err := json.Unmarshal(b, &snap.typed); err != nil {
		return nil, fmt.Errorf("decode settings: %w", err)
	}
	return snap, nil
}

// validate returns the schema violations of v, one per failing location.
func (s *Store[T]) validate(v any) []httpx.FieldError {
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
func (s *Store[T]) Public() map[string]any {
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
// atomically and returns the new public view; its errors are the client's
// answers (httpx.Error). A writeOnly field sent back as
// {"is_set": ...} (what GET shows) is left unchanged.
func (s *Store[T]) Patch(patch map[string]any) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stored, snap, err := s.merge(patch)
	if err != nil {
		return nil, answer(err)
	}
	if err := s.write(stored); err != nil {
		return nil, answer(err)
	}
	snap.stamp, _ = stampOf(s.path)
	s.cur.Store(snap)
	return s.Public(), nil
}

// Preview returns the effective settings patch would make, without
// saving them: for a rule that depends on the result (a default a null
// restores, say) rather than on the patch's shape.
func (s *Store[T]) Preview(patch map[string]any) (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, snap, err := s.merge(patch)
	if err != nil {
		var zero T
		return zero, answer(err)
	}
	return snap.typed, nil
}

// merge applies patch to the file as it is now and validates the result;
// the caller holds mu.
func (s *Store[T]) merge(patch map[string]any) (map[string]any, *snapshot[T], error) {
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
	// Start from the file as it is now, not from a possibly stale cache:
	// another process may have changed it.
	base, err := s.load()
	if err != nil {
		base = s.cur.Load()
	}
	stored, _ := mergePatch(deepCopy(base.stored), patch).(map[string]any)
	pruneEmpty(stored)
	snap, err := s.snapshotOf(stored, fileStamp{})
	return stored, snap, err
}

// answer is the client's answer to a failed Patch: the schema's field
// errors as they are (400), anything else "could not save" (500).
func answer(err error) error {
	var he *httpx.Error
	if errors.As(err, &he) {
		return he
	}
	return &httpx.Error{Status: http.StatusInternalServerError, Detail: "could not save the settings", Cause: err}
}

// ReadPatch reads a request's body as a merge patch of the settings (RFC
// 7396; Content-Type application/merge-patch+json or application/json):
// a JSON object, within httpx.DecodeJSON's limits.
func ReadPatch(w http.ResponseWriter, r *http.Request) (map[string]any, error) {
	var patch any
	if err := httpx.DecodeJSON(w, r, &patch, 0); err != nil {
		return nil, err
	}
	m, ok := patch.(map[string]any)
	if !ok {
		return nil, httpx.Errorf(http.StatusBadRequest, "expected a JSON object (a merge patch of the settings)")
	}
	return m, nil
}

// TempIdle is how long a temporary settings file may go unchanged before
// start-up takes it for a crashed write's leftover. A write takes
// milliseconds; another instance sharing APP_CONFIG_DIR may be in one.
const TempIdle = time.Minute

// removeStaleTemps removes the temporary files of writes that never reached
// their rename (a crash between write's CreateTemp and Rename) and that were
// last changed before cutoff. They never hold the live settings, only
// clutter (and possibly an AI API key), so failing to remove one is logged,
// not fatal.
func (s *Store[T]) removeStaleTemps(cutoff time.Time) {
	dir := filepath.Dir(s.path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		s.log.Warn("list APP_CONFIG_DIR for stale temporary files", "dir", dir, "err", err)
		return
	}
	prefix := s.tempPrefix()
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

// tempPrefix names write's temporary files (os.CreateTemp adds a random
// suffix).
func (s *Store[T]) tempPrefix() string { return "." + filepath.Base(s.path) + ".tmp-" }

// write replaces the file atomically: temp file in the same directory,
// fsync, rename, then fsync the directory so the rename survives a crash.
func (s *Store[T]) write(stored map[string]any) error {
	b, err := json.MarshalIndent(stored, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	f, err := os.CreateTemp(dir, s.tempPrefix()+"*")
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
