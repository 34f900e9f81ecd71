// Package docservice is Gatehouse's document service and its first plugin:
// it stores users' PDF documents under STORAGE_DIR (a folder tree a person
// can browse: <category path>/<file name>.pdf), keeps their metadata,
// checksums and history in PostgreSQL (schema docs), manages categories
// (folders), and serves the plugin contract: /health, /plugin/manifest and
// /plugin/settings, whose values live in APP_CONFIG_DIR/doc-service.json.
//
// It owns: the docs schema, the tree under STORAGE_DIR, doc-service.json.
//
// It must never delete or overwrite a user's file. Uploads are written to a
// temporary file and given their final name with link(2), which refuses an
// existing target; renames and moves link the new name before dropping the
// old one; deleting a document archives it; a category that holds
// documents cannot be deleted. WATCH_DIR is read-only to it.
//
// Trust boundary: it does not verify access tokens. It trusts the
// X-User-Id, X-User-Role and X-User-Groups headers, which only the edge can
// set (it strips any copy a client sends), so DOCSERVICE_ADDR must be
// reachable by the edge alone. See identify.
package docservice
