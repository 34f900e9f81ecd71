package docservice

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

// Version is docservice's version as the manifest reports it.
const Version = "1.0.0"

// fullParsesAtOnce is how many uploads may run the full pdfcpu parse at
// the same time; the others wait (as long as their client does). Each
// parse may hold up to fullCheckBudget: with two at a time, four 15 MiB
// scanned documents uploaded together took docservice to 62–64 MiB RSS,
// with one 52–53 MiB (bench-docservice), and a parse takes about 0.1 s.
const fullParsesAtOnce = 1

// Service holds docservice's dependencies.
type Service struct {
	cfg      *Config
	store    *Store
	pool     *pgxpool.Pool
	files    *FileStore
	settings *SettingsStore
	log      *slog.Logger
	// parseSlots lets fullParsesAtOnce full PDF parses run at a time.
	parseSlots parseSlots
	// chunkSlots counts the upload chunks in use (uploadChunks at most).
	chunkSlots slots
	// bodyBuffers lends uploads their read buffers.
	bodyBuffers *bodyBufferPool
	// uploads counts the uploads in progress (maxUploadsPerUser, maxUploads).
	uploads uploadGate
	// wrapTemp, when set, wraps the writer of an upload's temporary file
	// (tests inject write failures such as a full disk through it).
	wrapTemp func(w writerSyncer) writerSyncer
	// beforeOpen, when set, runs between a download's reading of the row
	// and its opening of the file (tests race renames against it).
	beforeOpen func()
}

// New assembles the service. The pool must point at a migrated database.
func New(cfg *Config, pool *pgxpool.Pool, files *FileStore, settings *SettingsStore, log *slog.Logger) *Service {
	return &Service{cfg: cfg, store: NewStore(pool), pool: pool, files: files, settings: settings, log: log,
		parseSlots: newParseSlots(fullParsesAtOnce), chunkSlots: make(slots, uploadChunks),
		bodyBuffers: newBodyBufferPool()}
}

// Handler is the service's whole HTTP surface; every route is listed here.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	h := httpx.Handle
	user, manager, admin := requireUser, requireManager, requireAdmin

	// Quiet: the edge polls /health and /plugin/manifest, whose
	// successes are logged at debug level rather than bury the log.
	mux.Handle("GET /health", httpx.Quiet(h(httpx.Health)))
	mux.Handle("GET /ready", h(httpx.Ready(s.pool)))

	// The plugin contract (private: the edge calls these after its own
	// access check, and docservice checks again).
	mux.Handle("GET /plugin/manifest", httpx.Quiet(h(s.getManifest)))
	mux.Handle("GET /plugin/settings", manager(s.getSettings))
	mux.Handle("PATCH /plugin/settings", manager(s.patchSettings))

	mux.Handle("GET /api/documents", user(s.listDocuments))
	mux.Handle("POST /api/documents", user(s.uploadDocument))
	mux.Handle("GET /api/documents/{id}", user(s.getDocument))
	mux.Handle("PATCH /api/documents/{id}", user(s.patchDocument))
	mux.Handle("DELETE /api/documents/{id}", user(s.archiveDocument))
	mux.Handle("POST /api/documents/{id}/restore", user(s.restoreDocument))
	mux.Handle("GET /api/documents/{id}/file", user(s.downloadDocument))
	mux.Handle("GET /api/documents/{id}/history", user(s.documentHistory))

	// More specific than /api/documents/{id}: the mux prefers these.
	mux.Handle("GET /api/documents/categories", user(s.listCategories))
	mux.Handle("POST /api/documents/categories", user(s.createCategory))
	mux.Handle("PATCH /api/documents/categories/{id}", user(s.patchCategory))
	mux.Handle("DELETE /api/documents/categories/{id}", user(s.deleteCategory))

	// The seed's limits endpoints: the same setting as max_pdf_size_mb.
	mux.Handle("GET /api/settings/documents/limits", admin(s.getLimits))
	mux.Handle("PATCH /api/settings/documents/limits", admin(s.patchLimits))

	// Anything else is a JSON 404, or 405 with Allow.
	return httpx.Middleware(httpx.Routes(mux))
}

// Manifest is the plugin manifest, version 1 (DESIGN.md, "Plugin contract").
type Manifest struct {
	ManifestVersion int              `json:"manifest_version"`
	ID              string           `json:"id"`
	Name            string           `json:"name"`
	Version         string           `json:"version"`
	Description     string           `json:"description"`
	Icon            string           `json:"icon"`
	Access          ManifestAccess   `json:"access"`
	Settings        ManifestSettings `json:"settings"`
	Routes          []ManifestRoute  `json:"routes"`
}

// ManifestAccess says who may see the plugin and manage its settings.
type ManifestAccess struct {
	AllowSuperuser bool     `json:"allow_superuser"`
	RequiredGroups []string `json:"required_groups"`
}

// ManifestSettings carries the settings schema and rendering hints.
type ManifestSettings struct {
	Schema   json.RawMessage `json:"schema"`
	UISchema json.RawMessage `json:"ui_schema"`
}

// ManifestRoute is an API prefix the edge sends to this service.
type ManifestRoute struct {
	Prefix string `json:"prefix"`
	Access string `json:"access"`
}

// uiSchema gives generic form renderers (react-jsonschema-form style) the
// hints the schema cannot: order, secret inputs, help.
const uiSchema = `{
  "ui:order": ["max_pdf_size_mb", "watch", "ai"],
  "watch": {
    "ui:order": ["enabled", "stability_delay_seconds", "poll_interval_seconds", "ignore_patterns", "visibility", "visibility_group"]
  },
  "ai": {
    "ui:order": ["enabled", "suggest_category", "suggest_filename", "model", "language", "max_text_chars", "api_key"],
    "api_key": { "ui:widget": "password", "ui:help": "Leave empty to use the platform's AI settings." }
  }
}`

func (s *Service) manifest() Manifest {
	return Manifest{
		ManifestVersion: 1,
		ID:              "doc-service",
		Name:            "Documents",
		Version:         Version,
		Description:     "Upload, watch and organise PDF documents",
		Icon:            "file-text",
		Access:          ManifestAccess{AllowSuperuser: true, RequiredGroups: []string{AdminGroup}},
		Settings:        ManifestSettings{Schema: s.settings.SchemaJSON(), UISchema: json.RawMessage(uiSchema)},
		Routes:          []ManifestRoute{{Prefix: "/api/documents", Access: "authenticated"}},
	}
}

func (s *Service) getManifest(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, s.manifest())
	return nil
}
