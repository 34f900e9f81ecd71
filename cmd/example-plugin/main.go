// Command example-plugin is the smallest complete Gatehouse plugin, the one
// docs/plugins.md walks through: a feature service that describes itself
// with a manifest, keeps settings (one of them a secret) behind the
// manifest's access rule, and serves /api/hello to any signed-in user. It
// uses the standard library only, as a plugin outside this repository
// would, and caddymodules' tests run it behind the edge exactly as the
// documentation registers it.
//
//	go run ./cmd/example-plugin -addr 127.0.0.1:8090
//
// and in the Caddyfile's gatehouse_plugins block:
//
//	service hello http://127.0.0.1:8090 {
//		prefix /api/hello
//	}
package main

import (
	"encoding/json"
	"flag"
	"log"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

const manifest = `{
  "manifest_version": 1, "id": "hello", "name": "Hello", "version": "0.1.0",
  "description": "Greets signed-in users", "icon": "smile",
  "access": {"allow_superuser": true, "required_groups": ["hello-admin"]},
  "settings": {"schema": {
    "type": "object", "additionalProperties": false,
    "properties": {
      "greeting": {"$ref": "#/definitions/line", "default": "Hello"},
      "api_key": {"type": "string", "writeOnly": true, "maxLength": 200}
    },
    "definitions": {"line": {"type": "string", "minLength": 1, "maxLength": 40}}
  }},
  "routes": [{"prefix": "/api/hello", "access": "authenticated"}]
}`

const defaultGreeting = "Hello"

// settings is the plugin's state; a real plugin keeps it in a file
// (written atomically) or a database.
type settings struct {
	mu       sync.Mutex
	greeting string
	apiKey   string
}

// view is what GET /plugin/settings shows: the secret only as is_set.
func (s *settings) view() map[string]any {
	return map[string]any{"greeting": s.greeting, "api_key": map[string]bool{"is_set": s.apiKey != ""}}
}

type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "private address to listen on (never publish it: the edge's X-User-* headers are trusted here)")
	flag.Parse()
	log.Printf("example plugin on http://%s", *addr)
	log.Fatal(http.ListenAndServe(*addr, newHandler()))
}

func newHandler() http.Handler {
	s := &settings{greeting: defaultGreeting}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /plugin/manifest", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(manifest))
	})
	mux.HandleFunc("GET /plugin/settings", func(w http.ResponseWriter, r *http.Request) {
		if !mayManage(r) {
			writeDetail(w, http.StatusNotFound, "not found")
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, http.StatusOK, s.view())
	})
	mux.HandleFunc("PATCH /plugin/settings", func(w http.ResponseWriter, r *http.Request) {
		if !mayManage(r) {
			writeDetail(w, http.StatusNotFound, "not found")
			return
		}
		var patch map[string]json.RawMessage
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&patch); err != nil || patch == nil {
			writeDetail(w, http.StatusBadRequest, "expected a JSON object (a merge patch of the settings)")
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		// The merge patch (RFC 7396) applied to a copy, checked whole,
		// then kept: an invalid patch changes nothing.
		greeting, apiKey := s.greeting, s.apiKey
		var errs []fieldError
		for _, k := range slices.Sorted(maps.Keys(patch)) { // errors in a stable order
			v := patch[k]
			switch k {
			case "greeting":
				var val any
				_ = json.Unmarshal(v, &val)
				switch val := val.(type) {
				case nil:
					greeting = defaultGreeting // null: back to the default
				case string:
					if n := utf8.RuneCountInString(val); n < 1 || n > 40 { // JSON Schema counts characters
						errs = append(errs, fieldError{k, "must be 1 to 40 characters"})
					} else {
						greeting = val
					}
				default:
					errs = append(errs, fieldError{k, "must be a string or null"})
				}
			case "api_key":
				var val any
				_ = json.Unmarshal(v, &val) // v is valid JSON: it came from a decoded object
				switch val := val.(type) {
				case nil:
					apiKey = "" // null: removed
				case string:
					if utf8.RuneCountInString(val) > 200 {
						errs = append(errs, fieldError{k, "must be at most 200 characters"})
					} else {
						apiKey = val
					}
				case map[string]any:
					// GET's own {"is_set": ...} sent back by a form
					// keeps the stored value; nothing else may come.
					if _, ok := val["is_set"].(bool); !ok || len(val) != 1 {
						errs = append(errs, fieldError{k, `must be a string, null, or {"is_set": ...} as GET shows it`})
					}
				default:
					errs = append(errs, fieldError{k, "must be a string or null"})
				}
			default:
				errs = append(errs, fieldError{k, "unknown setting"})
			}
		}
		if len(errs) > 0 {
			msgs := make([]string, len(errs))
			for i, e := range errs {
				msgs[i] = e.Field + ": " + e.Message
			}
			writeJSON(w, http.StatusBadRequest, map[string]any{"detail": strings.Join(msgs, "; "), "errors": errs})
			return
		}
		s.greeting, s.apiKey = greeting, apiKey
		writeJSON(w, http.StatusOK, s.view())
	})
	mux.HandleFunc("GET /api/hello", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"message": s.greeting + ", " + r.Header.Get("X-User-Id")})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeDetail(w, http.StatusNotFound, "not found")
	})
	return mux
}

// mayManage is the manifest's access rule, checked here too (the edge
// already did): an admin, or a member of hello-admin.
func mayManage(r *http.Request) bool {
	if r.Header.Get("X-User-Role") == "admin" {
		return true
	}
	for _, enc := range strings.Split(r.Header.Get("X-User-Groups"), ",") {
		if enc == "" {
			continue // a user without groups gets an empty header
		}
		if name, err := url.PathUnescape(enc); err == nil && name == "hello-admin" {
			return true
		}
	}
	return false
}

// writeJSON always labels the answer: Go would otherwise guess a type
// (text/html for markup) before the edge could label it.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("write answer: %v", err)
	}
}

func writeDetail(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]string{"detail": detail})
}
