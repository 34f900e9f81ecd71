package docservice

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func docID(m map[string]any) string { return m["id"].(string) }

func (e *env) mustCategory(u user, name string, parent string) map[string]any {
	e.t.Helper()
	body := map[string]any{"name": name}
	if parent != "" {
		body["parent_id"] = parent
	}
	r := e.doJSON(&u, "POST", "/api/documents/categories", body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create category %q: %d %s", name, r.status, r.body)
	}
	return r.json(e.t)
}

func filenames(t *testing.T, r resp) []string {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	var names []string
	for _, it := range r.json(t)["items"].([]any) {
		names = append(names, it.(map[string]any)["filename"].(string))
	}
	return names
}

func TestListSearchSortPaginate(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	cat := e.mustCategory(u, "List "+u.id.String()[:8], "")
	for i, n := range []string{"delta", "alpha", "charlie", "bravo", "echo"} {
		fields := map[string]string{}
		if i%2 == 0 {
			fields["category_id"] = docID(cat)
		}
		e.mustUpload(u, n+".pdf", makePDF("Title "+strings.ToUpper(n), 1, i*100), fields)
	}
	e.mustUpload(newUser(), "alpha.pdf", makePDF("someone else's", 1, 0), nil)

	all := filenames(t, e.do(&u, "GET", "/api/documents", nil, nil))
	if want := []string{"echo.pdf", "bravo.pdf", "charlie.pdf", "alpha.pdf", "delta.pdf"}; !slices.Equal(all, want) {
		t.Fatalf("default order (newest first): %v, want %v", all, want)
	}
	if got := filenames(t, e.do(&u, "GET", "/api/documents?sort=filename", nil, nil)); !slices.IsSorted(got) || len(got) != 5 {
		t.Fatalf("sort=filename: %v", got)
	}
	if got := filenames(t, e.do(&u, "GET", "/api/documents?sort=-size&limit=2", nil, nil)); !slices.Equal(got, []string{"echo.pdf", "bravo.pdf"}) {
		t.Fatalf("sort=-size&limit=2: %v", got)
	}
	r := e.do(&u, "GET", "/api/documents?sort=filename&limit=2&offset=2", nil, nil)
	if got := filenames(t, r); !slices.Equal(got, []string{"charlie.pdf", "delta.pdf"}) {
		t.Fatalf("page 2: %v", got)
	}
	if m := r.json(t); m["total"] != 5.0 || m["limit"] != 2.0 || m["offset"] != 2.0 {
		t.Fatalf("page 2 envelope: %s", r.body)
	}
	if got := filenames(t, e.do(&u, "GET", "/api/documents?search=ALPH", nil, nil)); !slices.Equal(got, []string{"alpha.pdf"}) {
		t.Fatalf("search by name: %v", got)
	}
	if got := filenames(t, e.do(&u, "GET", "/api/documents?search=title%20char", nil, nil)); !slices.Equal(got, []string{"charlie.pdf"}) {
		t.Fatalf("search by title: %v", got)
	}
	if got := filenames(t, e.do(&u, "GET", "/api/documents?search=%25", nil, nil)); len(got) != 0 {
		t.Fatalf("search for a literal %%: %v", got)
	}
	if got := filenames(t, e.do(&u, "GET", "/api/documents?sort=filename&category_id="+docID(cat), nil, nil)); !slices.Equal(got, []string{"charlie.pdf", "delta.pdf", "echo.pdf"}) {
		t.Fatalf("category filter: %v", got)
	}
	if got := filenames(t, e.do(&u, "GET", "/api/documents?sort=filename&category_id=none", nil, nil)); !slices.Equal(got, []string{"alpha.pdf", "bravo.pdf"}) {
		t.Fatalf("uncategorised filter: %v", got)
	}
	// A search PostgreSQL cannot take as text (NUL, invalid UTF-8) gave 500.
	for _, bad := range []string{"limit=0", "limit=201", "offset=-1", "sort=owner_id", "category_id=x", "archived=maybe",
		"search=a%00b", "search=%FF"} {
		if r := e.do(&u, "GET", "/api/documents?"+bad, nil, nil); r.status != http.StatusBadRequest {
			t.Errorf("%s: status %d", bad, r.status)
		}
	}
}

func TestAccess(t *testing.T) {
	e := newEnv(t)
	owner, other, admin := newUser(), newUser(), newAdmin()
	d := e.mustUpload(owner, "mine.pdf", makePDF("mine", 1, 0), nil)
	id := docID(d)

	if r := e.do(nil, "GET", "/api/documents", nil, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("no X-User-Id: %d", r.status)
	}
	if r := e.do(nil, "GET", "/api/documents", nil, map[string]string{"X-User-Id": "not-a-uuid"}); r.status != http.StatusUnauthorized {
		t.Fatalf("bad X-User-Id: %d", r.status)
	}
	body, ct := multipartBody(t, "x.pdf", makePDF("anon", 1, 0), nil)
	if r := e.do(nil, "POST", "/api/documents", body, map[string]string{"Content-Type": ct}); r.status != http.StatusUnauthorized {
		t.Fatalf("anonymous upload: %d", r.status)
	}
	// Other users' documents do not exist for them.
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/documents/" + id}, {"GET", "/api/documents/" + id + "/file"},
		{"PATCH", "/api/documents/" + id}, {"DELETE", "/api/documents/" + id},
		{"POST", "/api/documents/" + id + "/restore"}, {"GET", "/api/documents/" + id + "/history"},
	} {
		r := e.doJSON(&other, c.method, c.path, map[string]any{"filename": "stolen"})
		if r.status != http.StatusNotFound {
			t.Errorf("other user %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if n := listTotal(t, e, other, ""); n != 0 {
		t.Fatalf("other user lists %d documents", n)
	}
	// An admin sees everything.
	if r := e.do(&admin, "GET", "/api/documents/"+id, nil, nil); r.status != 200 {
		t.Fatalf("admin get: %d", r.status)
	}
	found := false
	for _, n := range filenames(t, e.do(&admin, "GET", "/api/documents?limit=200&search=mine", nil, nil)) {
		found = found || n == "mine.pdf"
	}
	if !found {
		t.Fatal("admin's listing misses the user's document")
	}
	if r := e.do(&owner, "GET", "/api/documents/not-a-uuid", nil, nil); r.status != http.StatusBadRequest {
		t.Fatalf("malformed id: %d", r.status)
	}
}

func TestDownload(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	content := sample(t, "multi-page-digital.pdf")
	d := e.mustUpload(u, "Rechnung März \"Q1\".pdf", content, nil)
	path := "/api/documents/" + docID(d) + "/file"

	r := e.do(&u, "GET", path, nil, nil)
	if r.status != 200 || !bytes.Equal(r.body, content) {
		t.Fatalf("download: %d, %d bytes", r.status, len(r.body))
	}
	if ct := r.header.Get("Content-Type"); ct != "application/pdf" {
		t.Errorf("Content-Type %q", ct)
	}
	cd := r.header.Get("Content-Disposition")
	if cd != `attachment; filename="Rechnung M_rz Q1.pdf"; filename*=UTF-8''Rechnung%20M%C3%A4rz%20Q1.pdf` {
		t.Errorf("Content-Disposition %q", cd)
	}
	etag := r.header.Get("ETag")
	if etag != `"`+d["sha256"].(string)+`"` {
		t.Errorf("ETag %q", etag)
	}
	if r.header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("Accept-Ranges %q", r.header.Get("Accept-Ranges"))
	}
	r = e.do(&u, "GET", path, nil, map[string]string{"Range": "bytes=100-199"})
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, content[100:200]) {
		t.Fatalf("range: %d, %d bytes", r.status, len(r.body))
	}
	if cr := r.header.Get("Content-Range"); cr != fmt.Sprintf("bytes 100-199/%d", len(content)) {
		t.Errorf("Content-Range %q", cr)
	}
	ranges := func(n int) string { return "bytes=" + strings.Repeat("0-0,", n-1) + "0-0" }
	r = e.do(&u, "GET", path, nil, map[string]string{"Range": ranges(maxRanges)})
	if r.status != http.StatusPartialContent || !strings.HasPrefix(r.header.Get("Content-Type"), "multipart/byteranges") {
		t.Fatalf("%d ranges: %d %s", maxRanges, r.status, r.header.Get("Content-Type"))
	}
	r = e.do(&u, "GET", path, nil, map[string]string{"Range": ranges(maxRanges + 1)})
	if r.status != http.StatusRequestedRangeNotSatisfiable || !strings.Contains(string(r.body), `"detail":"at most`) ||
		r.header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(content)) {
		t.Fatalf("%d ranges: %d %s (Content-Range %q)", maxRanges+1, r.status, r.body, r.header.Get("Content-Range"))
	}
	n := len(content)
	for _, c := range []struct {
		rng, ifRange string
		status       int
		body         []byte
		contentRange string
	}{
		// A zero-length suffix is unsatisfiable: net/http answered 206
		// with an empty body and "bytes n-(n-1)/n".
		{"bytes=-0", "", 416, nil, fmt.Sprintf("bytes */%d", n)},
		{"bytes=-00", "", 416, nil, fmt.Sprintf("bytes */%d", n)},
		{"bytes=-0, 100-199", "", 206, content[100:200], fmt.Sprintf("bytes 100-199/%d", n)},
		// Positions past int64 (net/http: 416): the end, or past it.
		{"bytes=10-99999999999999999999", "", 206, content[10:], fmt.Sprintf("bytes 10-%d/%d", n-1, n)},
		{"bytes=-99999999999999999999", "", 206, content, fmt.Sprintf("bytes 0-%d/%d", n-1, n)},
		{"bytes=99999999999999999999-", "", 416, nil, fmt.Sprintf("bytes */%d", n)},
		// If-Range naming another version: the whole file, even for a
		// Range that would be refused.
		{ranges(maxRanges + 1), `"0000"`, 200, content, ""},
		{ranges(maxRanges + 1), etag, 416, nil, fmt.Sprintf("bytes */%d", n)},
		{"bytes=100-199", "W/" + etag, 200, content, ""},
		{"bytes=100-199", etag, 206, content[100:200], fmt.Sprintf("bytes 100-199/%d", n)},
		{"bytes=100-199", "Sat, 01 Jan 2000 00:00:00 GMT", 200, content, ""},
	} {
		h := map[string]string{"Range": c.rng}
		if c.ifRange != "" {
			h["If-Range"] = c.ifRange
		}
		r = e.do(&u, "GET", path, nil, h)
		if r.status != c.status || (c.body != nil && !bytes.Equal(r.body, c.body)) ||
			r.header.Get("Content-Range") != c.contentRange {
			t.Errorf("Range %.40q If-Range %q: %d, %d bytes, Content-Range %q; want %d, %d bytes, %q",
				c.rng, c.ifRange, r.status, len(r.body), r.header.Get("Content-Range"), c.status, len(c.body), c.contentRange)
		}
		if c.status == 416 && (r.header.Get("Content-Type") != "application/json" || !strings.Contains(string(r.body), `"detail":"`) ||
			r.header.Get("Content-Disposition") != "") {
			t.Errorf("Range %.40q: 416 as %q %s (Content-Disposition %q), want {\"detail\"} JSON",
				c.rng, r.header.Get("Content-Type"), r.body, r.header.Get("Content-Disposition"))
		}
	}
	// A failed If-Match: 412, in the same JSON shape.
	r = e.do(&u, "GET", path, nil, map[string]string{"If-Match": `"0000"`})
	if r.status != http.StatusPreconditionFailed || r.header.Get("Content-Type") != "application/json" ||
		!strings.Contains(string(r.body), `"detail":"`) {
		t.Errorf("If-Match another version: %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	r = e.do(&u, "GET", path, nil, map[string]string{"If-None-Match": etag})
	if r.status != http.StatusNotModified || len(r.body) != 0 {
		t.Fatalf("If-None-Match: %d", r.status)
	}
	r = e.do(&u, "GET", path+"?disposition=inline", nil, nil)
	if !strings.HasPrefix(r.header.Get("Content-Disposition"), "inline;") {
		t.Errorf("inline: %q", r.header.Get("Content-Disposition"))
	}
}

func TestRenameAndMove(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	a := e.mustUpload(u, "a.pdf", makePDF("a", 1, 0), nil)
	b := e.mustUpload(u, "b.pdf", makePDF("b", 1, 0), nil)
	bContent, _ := os.ReadFile(filepath.Join(e.storageDir, "b.pdf"))

	// Rename onto an existing name: suffix, never overwrite.
	r := e.doJSON(&u, "PATCH", "/api/documents/"+docID(b), map[string]any{"filename": "a"})
	if r.status != 200 || r.json(t)["filename"] != "a (2).pdf" {
		t.Fatalf("rename onto a.pdf: %d %s", r.status, r.body)
	}
	if got := e.storedFiles(); !slices.Equal(got, []string{"a (2).pdf", "a.pdf"}) {
		t.Fatalf("files after rename: %v", got)
	}
	if got, _ := os.ReadFile(filepath.Join(e.storageDir, "a (2).pdf")); !bytes.Equal(got, bContent) {
		t.Fatal("renamed file's content changed")
	}
	// Renaming "a (2)" to the taken "a" again keeps its own name (it
	// became "a (3)") and records no move.
	r = e.doJSON(&u, "PATCH", "/api/documents/"+docID(b), map[string]any{"filename": "a"})
	if r.status != 200 || r.json(t)["filename"] != "a (2).pdf" {
		t.Fatalf("rename a (2) onto a.pdf again: %d %s", r.status, r.body)
	}
	if got := e.storedFiles(); !slices.Equal(got, []string{"a (2).pdf", "a.pdf"}) {
		t.Fatalf("files after the second rename: %v", got)
	}
	if got, _ := os.ReadFile(filepath.Join(e.storageDir, "a (2).pdf")); !bytes.Equal(got, bContent) {
		t.Fatal("file changed by a rename to its own name")
	}
	if h := e.do(&u, "GET", "/api/documents/"+docID(b)+"/history", nil, nil); strings.Count(string(h.body), `"move"`) != 1 {
		t.Fatalf("history after renaming to its own name: %s", h.body)
	}
	// Move both into a category; the second collides there too.
	cat := e.mustCategory(u, "Move "+u.id.String()[:8], "")
	catPath := cat["path"].(string)
	r = e.doJSON(&u, "PATCH", "/api/documents/"+docID(a), map[string]any{"category_id": docID(cat), "title": "Renamed title"})
	if m := r.json(t); r.status != 200 || m["category_id"] != docID(cat) || m["title"] != "Renamed title" || m["filename"] != "a.pdf" {
		t.Fatalf("move a: %d %s", r.status, r.body)
	}
	r = e.doJSON(&u, "PATCH", "/api/documents/"+docID(b), map[string]any{"category_id": docID(cat), "filename": "a.pdf"})
	if m := r.json(t); r.status != 200 || m["filename"] != "a (2).pdf" || m["category_path"] != catPath {
		t.Fatalf("move b: %d %s", r.status, r.body)
	}
	if got := e.storedFiles(); !slices.Equal(got, []string{catPath + "/a (2).pdf", catPath + "/a.pdf"}) {
		t.Fatalf("files after move: %v", got)
	}
	// Back to the top (category_id null); title cleared with null.
	r = e.doJSON(&u, "PATCH", "/api/documents/"+docID(a), map[string]any{"category_id": nil, "title": nil})
	if m := r.json(t); r.status != 200 || m["category_id"] != nil || m["title"] != nil {
		t.Fatalf("move to top: %d %s", r.status, r.body)
	}
	// The download still works from the new place.
	if r := e.do(&u, "GET", "/api/documents/"+docID(b)+"/file", nil, nil); r.status != 200 || !bytes.Equal(r.body, bContent) {
		t.Fatalf("download after move: %d", r.status)
	}
	// Bad input.
	for _, body := range []map[string]any{{"filename": ""}, {"category_id": "nope"}, {"category_id": "6a1f3f9c-5a0e-4e4e-9a53-2f8f3f2b1a11"}} {
		if r := e.doJSON(&u, "PATCH", "/api/documents/"+docID(a), body); r.status != http.StatusBadRequest {
			t.Errorf("PATCH %v: %d %s", body, r.status, r.body)
		}
	}
	// A traversal attempt in a rename stays a plain name in the same folder.
	r = e.doJSON(&u, "PATCH", "/api/documents/"+docID(a), map[string]any{"filename": "../../../outside.pdf"})
	if m := r.json(t); r.status != 200 || strings.ContainsAny(m["filename"].(string), `/\`) {
		t.Fatalf("traversal rename: %d %s", r.status, r.body)
	}
	h := e.do(&u, "GET", "/api/documents/"+docID(b)+"/history", nil, nil)
	if h.status != 200 || !strings.Contains(string(h.body), `"move"`) || !strings.Contains(string(h.body), `"upload"`) {
		t.Fatalf("history: %d %s", h.status, h.body)
	}
}

func TestArchiveRestore(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	d := e.mustUpload(u, "keep.pdf", makePDF("keep", 1, 0), nil)
	id := docID(d)
	if r := e.do(&u, "DELETE", "/api/documents/"+id, nil, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := e.do(&u, "DELETE", "/api/documents/"+id, nil, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete again: %d %s", r.status, r.body)
	}
	if _, err := os.Stat(filepath.Join(e.storageDir, "keep.pdf")); err != nil {
		t.Fatalf("archiving touched the file: %v", err)
	}
	if n := listTotal(t, e, u, ""); n != 0 {
		t.Fatalf("archived document listed by default (%d)", n)
	}
	if n := listTotal(t, e, u, "?archived=true"); n != 1 {
		t.Fatalf("archived=true lists %d", n)
	}
	r := e.do(&u, "GET", "/api/documents/"+id, nil, nil)
	if m := r.json(t); r.status != 200 || m["archived"] != true || m["archived_at"] == nil {
		t.Fatalf("get archived: %d %s", r.status, r.body)
	}
	// Uploading the same content again reports the archived document.
	if r := e.upload(u, "again.pdf", makePDF("keep", 1, 0), nil); r.status != 200 || r.json(t)["archived"] != true {
		t.Fatalf("re-upload of archived content: %d %s", r.status, r.body)
	}
	r = e.do(&u, "POST", "/api/documents/"+id+"/restore", nil, nil)
	if m := r.json(t); r.status != 200 || m["archived"] != false {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	if n := listTotal(t, e, u, ""); n != 1 {
		t.Fatalf("restored document not listed (%d)", n)
	}
}

func TestCategories(t *testing.T) {
	e := newEnv(t)
	creator, other, admin := newUser(), newUser(), newAdmin()
	manager := user{id: newUser().id, groups: []string{"staff", AdminGroup}}
	tag := creator.id.String()[:8]

	fin := e.mustCategory(creator, "Finance "+tag, "")
	inv := e.mustCategory(creator, "Invoices", docID(fin))
	if inv["path"] != "Finance "+tag+"/Invoices" {
		t.Fatalf("nested path: %v", inv["path"])
	}
	// Same folder name (any case) at the same level: 409.
	if r := e.doJSON(&other, "POST", "/api/documents/categories", map[string]any{"name": "finance " + strings.ToUpper(tag)}); r.status != http.StatusConflict {
		t.Fatalf("duplicate name: %d %s", r.status, r.body)
	}
	// The same name in another Unicode spelling (decomposed é): 409 too.
	e.mustCategory(creator, "Caf\u00e9 "+tag, "")
	if r := e.doJSON(&other, "POST", "/api/documents/categories", map[string]any{"name": "Cafe\u0301 " + tag}); r.status != http.StatusConflict {
		t.Fatalf("decomposed duplicate name: %d %s", r.status, r.body)
	}
	// Also when a dropped character kept the accent from composing.
	if r := e.doJSON(&other, "POST", "/api/documents/categories", map[string]any{"name": "Cafe\u200b\u0301 " + tag}); r.status != http.StatusConflict {
		t.Fatalf("decomposed duplicate name behind a zero-width space: %d %s", r.status, r.body)
	}
	for _, bad := range []map[string]any{{"name": ""}, {"name": "a/b"}, {"name": `..`}, {"name": "x.pdf"}, {"name": "Report.PDF  "}, {"name": "x", "parent_id": "6a1f3f9c-5a0e-4e4e-9a53-2f8f3f2b1a11"}} {
		if r := e.doJSON(&creator, "POST", "/api/documents/categories", bad); r.status != http.StatusBadRequest {
			t.Errorf("create %v: %d %s", bad, r.status, r.body)
		}
	}
	// Every user sees the global tree.
	r := e.do(&other, "GET", "/api/documents/categories", nil, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"Finance `+tag+`/Invoices"`) {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	// Files follow a rename of their folder's parent.
	d := e.mustUpload(other, "bill.pdf", makePDF("bill", 1, 0), map[string]string{"category_id": docID(inv)})
	if r := e.doJSON(&other, "PATCH", "/api/documents/categories/"+docID(fin), map[string]any{"name": "Stolen"}); r.status != http.StatusForbidden {
		t.Fatalf("non-creator rename: %d", r.status)
	}
	r = e.doJSON(&creator, "PATCH", "/api/documents/categories/"+docID(fin), map[string]any{"name": "Money " + tag})
	if r.status != 200 || r.json(t)["path"] != "Money "+tag {
		t.Fatalf("rename: %d %s", r.status, r.body)
	}
	if got := e.storedFiles(); !slices.Equal(got, []string{"Money " + tag + "/Invoices/bill.pdf"}) {
		t.Fatalf("files after category rename: %v", got)
	}
	r = e.do(&other, "GET", "/api/documents/"+docID(d), nil, nil)
	if r.json(t)["category_path"] != "Money "+tag+"/Invoices" {
		t.Fatalf("document after rename: %s", r.body)
	}
	if r := e.do(&other, "GET", "/api/documents/"+docID(d)+"/file", nil, nil); r.status != 200 {
		t.Fatalf("download after category rename: %d", r.status)
	}
	// Move Invoices to the top, then under itself (refused).
	r = e.doJSON(&manager, "PATCH", "/api/documents/categories/"+docID(inv), map[string]any{"parent_id": nil, "name": "Invoices " + tag})
	if r.status != 200 || r.json(t)["path"] != "Invoices "+tag {
		t.Fatalf("manager moves to top: %d %s", r.status, r.body)
	}
	if r := e.doJSON(&admin, "PATCH", "/api/documents/categories/"+docID(fin), map[string]any{"parent_id": docID(fin)}); r.status != http.StatusBadRequest {
		t.Fatalf("into itself: %d %s", r.status, r.body)
	}
	if r := e.doJSON(&admin, "PATCH", "/api/documents/categories/"+docID(fin), map[string]any{"name": "a.pdf"}); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), "must not end in .pdf") {
		t.Fatalf("rename to a document-like name: %d %s", r.status, r.body)
	}
	// A folder that exists on disk but is no category blocks a rename onto it.
	os.MkdirAll(filepath.Join(e.storageDir, "Squatter "+tag), 0o750)
	os.WriteFile(filepath.Join(e.storageDir, "Squatter "+tag, "hand-made.pdf"), []byte("x"), 0o640)
	if r := e.doJSON(&admin, "PATCH", "/api/documents/categories/"+docID(inv), map[string]any{"name": "Squatter " + tag}); r.status != http.StatusConflict {
		t.Fatalf("rename onto an existing folder: %d %s", r.status, r.body)
	}
	if _, err := os.Stat(filepath.Join(e.storageDir, "Squatter "+tag, "hand-made.pdf")); err != nil {
		t.Fatal("hand-made file lost")
	}
	// Non-empty (even archived documents): 409. Empty: 204, folder gone.
	if r := e.do(&admin, "DELETE", "/api/documents/categories/"+docID(inv), nil, nil); r.status != http.StatusConflict {
		t.Fatalf("delete non-empty: %d %s", r.status, r.body)
	}
	e.do(&other, "DELETE", "/api/documents/"+docID(d), nil, nil)
	if r := e.do(&admin, "DELETE", "/api/documents/categories/"+docID(inv), nil, nil); r.status != http.StatusConflict {
		t.Fatalf("delete with an archived document: %d %s", r.status, r.body)
	}
	e.doJSON(&other, "PATCH", "/api/documents/"+docID(d), map[string]any{"category_id": nil})
	if r := e.do(&other, "DELETE", "/api/documents/categories/"+docID(inv), nil, nil); r.status != http.StatusForbidden {
		t.Fatalf("non-creator delete: %d", r.status)
	}
	if r := e.do(&creator, "DELETE", "/api/documents/categories/"+docID(inv), nil, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete empty: %d %s", r.status, r.body)
	}
	if _, err := os.Stat(filepath.Join(e.storageDir, "Invoices "+tag)); !os.IsNotExist(err) {
		t.Fatalf("empty folder kept: %v", err)
	}
	if r := e.do(&creator, "DELETE", "/api/documents/categories/"+docID(inv), nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("delete twice: %d", r.status)
	}
	// A stray file in an otherwise empty category's folder keeps it.
	stray := e.mustCategory(creator, "Stray "+tag, "")
	os.MkdirAll(filepath.Join(e.storageDir, "Stray "+tag), 0o750)
	os.WriteFile(filepath.Join(e.storageDir, "Stray "+tag, "mine.txt"), []byte("keep me"), 0o640)
	if r := e.do(&creator, "DELETE", "/api/documents/categories/"+docID(stray), nil, nil); r.status != http.StatusConflict {
		t.Fatalf("delete with a stray file: %d %s", r.status, r.body)
	}
	if _, err := os.Stat(filepath.Join(e.storageDir, "Stray "+tag, "mine.txt")); err != nil {
		t.Fatal("stray file lost")
	}
}

// A symlink planted in the tree cannot lead a document out of it.
func TestSymlinkEscape(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	outside := t.TempDir()
	tag := u.id.String()[:8]
	cat := e.mustCategory(u, "Link "+tag, "")
	if err := os.Symlink(outside, filepath.Join(e.storageDir, "Link "+tag)); err != nil {
		t.Fatal(err)
	}
	r := e.upload(u, "escape.pdf", makePDF("escape", 1, 0), map[string]string{"category_id": docID(cat)})
	if r.status < 500 {
		t.Fatalf("upload through a symlink out of the tree: %d %s", r.status, r.body)
	}
	if entries, _ := os.ReadDir(outside); len(entries) > 0 {
		t.Fatalf("file written outside the tree: %v", entries)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// A stored file swapped for a symlink out of the tree is never served, and
// a move into a folder swapped for such a symlink writes nothing outside:
// every path goes through the tree's os.Root.
func TestSymlinkEscapeOnDownloadAndMove(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.pdf")
	if err := os.WriteFile(secret, []byte("%PDF-1.7 not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	tag := u.id.String()[:8]

	d := e.mustUpload(u, "swapped-"+tag+".pdf", makePDF("swapped", 1, 0), nil)
	stored := filepath.Join(e.storageDir, d["filename"].(string))
	if err := os.Remove(stored); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, stored); err != nil {
		t.Fatal(err)
	}
	r := e.do(&u, "GET", "/api/documents/"+docID(d)+"/file", nil, nil)
	if r.status < 400 || strings.Contains(string(r.body), "not yours") {
		t.Fatalf("download through a symlink out of the tree: %d %q", r.status, r.body)
	}

	moved := e.mustUpload(u, "mover-"+tag+".pdf", makePDF("mover", 1, 0), nil)
	cat := e.mustCategory(u, "Away "+tag, "")
	folder := filepath.Join(e.storageDir, "Away "+tag)
	_ = os.Remove(folder) // created empty, or not yet
	if err := os.Symlink(outside, folder); err != nil {
		t.Fatal(err)
	}
	r = e.doJSON(&u, "PATCH", "/api/documents/"+docID(moved), map[string]any{"category_id": docID(cat)})
	if r.status < 400 {
		t.Fatalf("move into a symlink out of the tree: %d %s", r.status, r.body)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Fatalf("written outside the tree: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(e.storageDir, moved["filename"].(string))); err != nil {
		t.Fatalf("the document's file after the refused move: %v", err)
	}
	if r := e.do(&u, "GET", "/api/documents/"+docID(moved), nil, nil); r.status != 200 || r.json(t)["category_id"] != nil {
		t.Fatalf("the document after the refused move: %d %s", r.status, r.body)
	}
}

func TestContentDisposition(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{`a"b\c é;.pdf`, `attachment; filename="a_b_c _;.pdf"; filename*=UTF-8''a%22b%5Cc%20%C3%A9%3B.pdf`},
		// Some clients percent-decode the plain filename: "%2e%2e%2f"
		// would turn into "../".
		{`100% %2e%2e%2fx.pdf`, `attachment; filename="100_ _2e_2e_2fx.pdf"; filename*=UTF-8''100%25%20%252e%252e%252fx.pdf`},
	} {
		if got := contentDisposition("attachment", c.name); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	if r := e.do(&u, "GET", "/api/nothing", nil, nil); r.status != http.StatusNotFound || !strings.Contains(string(r.body), `"detail"`) {
		t.Fatalf("unknown path: %d %s", r.status, r.body)
	}
	if r := e.do(&u, "PUT", "/api/documents", nil, nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") == "" {
		t.Fatalf("wrong method: %d %v", r.status, r.header)
	}
}

// A title set by PATCH is tidied as an upload's own title is: control
// characters out (PostgreSQL refuses NUL in text). Before, a NUL gave 500.
func TestPatchTitleControlCharacters(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	d := e.mustUpload(u, "t.pdf", makePDF("t", 1, 0), nil)
	r := e.doJSON(&u, "PATCH", "/api/documents/"+docID(d), map[string]any{"title": "a\u0000b\nc\u007f"})
	if m := r.json(t); r.status != 200 || m["title"] != "ab c" {
		t.Fatalf("title with NUL: %d %s", r.status, r.body)
	}
	r = e.doJSON(&u, "PATCH", "/api/documents/"+docID(d), map[string]any{"title": "\u0000\u0001"})
	if m := r.json(t); r.status != 200 || m["title"] != nil {
		t.Fatalf("title of control characters only: %d %s", r.status, r.body)
	}
}

// A category path is bounded: a deep tree of long names made a path too
// long for PostgreSQL's index (from about 2 700 bytes), and creating or
// moving a category there gave 500.
func TestCategoryPathTooLong(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	// Names that do not compress, as PostgreSQL would otherwise squeeze
	// the index entry under its limit.
	name := func() string { return strings.ReplaceAll(uuid.NewString()+uuid.NewString()+uuid.NewString(), "-", "") }
	chain := func(levels int) (top, leaf string) {
		parent := ""
		for range levels {
			c := e.mustCategory(u, name(), parent)
			if top == "" {
				top = docID(c)
			}
			parent = docID(c)
		}
		return top, parent
	}
	_, deep := chain(MaxCategoryPathBytes / 97) // 96-byte names and a slash
	r := e.doJSON(&u, "POST", "/api/documents/categories", map[string]any{"name": name(), "parent_id": deep})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "path") {
		t.Errorf("create beyond the path limit: %d %.200s", r.status, r.body)
	}
	// Moving a tree under another: its deepest path counts.
	top, leaf := chain(MaxCategoryPathBytes / 97)
	e.mustUpload(u, "deep.pdf", makePDF("deep", 1, 0), map[string]string{"category_id": leaf})
	before := e.storedFiles()
	r = e.doJSON(&u, "PATCH", "/api/documents/categories/"+top, map[string]any{"parent_id": deep})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "path") {
		t.Fatalf("move beyond the path limit: %d %s", r.status, r.body)
	}
	if got := e.storedFiles(); !slices.Equal(got, before) {
		t.Fatalf("files changed: %v", got)
	}
}

// A category created under a sub-category while an ancestor is renamed
// gets the renamed path. Before, the creation locked only its parent row,
// so the rename's update of the descendants' paths, which had already
// begun, missed the new row: its path kept the old name, and its
// documents went to a folder outside the renamed tree.
func TestCategoryCreatedDuringAncestorRename(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	ctx := context.Background()
	top := e.mustCategory(u, "Old", "")
	sub := e.mustCategory(u, "Sub", docID(top))
	// A trigger holds the creation of "Slow" open after its parent is locked.
	beforeInsert(t, "categories", "test_slow_category", `IF NEW.name = 'Slow' THEN PERFORM pg_sleep(1); END IF; RETURN NEW;`)
	created := make(chan resp, 1)
	go func() {
		created <- e.doJSON(&u, "POST", "/api/documents/categories", map[string]any{"name": "Slow", "parent_id": docID(sub)})
	}()
	time.Sleep(300 * time.Millisecond)
	if r := e.doJSON(&u, "PATCH", "/api/documents/categories/"+docID(top), map[string]any{"name": "New"}); r.status != 200 {
		t.Fatalf("rename: %d %s", r.status, r.body)
	}
	r := <-created
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	slow := docID(r.json(t))
	var path string
	if err := testPool.QueryRow(ctx, `SELECT path FROM docs.categories WHERE id = $1`, slow).Scan(&path); err != nil {
		t.Fatal(err)
	}
	if path != "New/Sub/Slow" {
		t.Fatalf("path of the category created during the rename: %q", path)
	}
	e.mustUpload(u, "in-slow.pdf", makePDF("in slow", 1, 0), map[string]string{"category_id": slow})
	if got := e.storedFiles(); !slices.Equal(got, []string{"New/Sub/Slow/in-slow.pdf"}) {
		t.Fatalf("files: %v", got)
	}
}

// Two renames of one document in a row: the first one's removal of its old
// name may run after the second has committed and removed the first's new
// name. The first rename still succeeded, and no extra name is left.
func TestRenameFinishedAfterALaterRename(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	d := e.mustUpload(u, "zero.pdf", makePDF("zero", 1, 0), nil)
	id := uuid.MustParse(docID(d))
	release := make(chan struct{})
	slow := func(oldRel, dir, name string, reserved func(string) (bool, error)) (string, func(string) error, func() error, error) {
		used, finish, undo, err := e.svc.moveFile(oldRel, dir, name, reserved)
		return used, func(keep string) error { <-release; return finish(keep) }, undo, err
	}
	first := make(chan error, 1)
	go func() {
		one := "one.pdf"
		_, err := e.svc.store.UpdateDocument(context.Background(), Visibility{UserID: u.id}, u.id, id,
			DocumentChange{Filename: &one}, slow)
		first <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r := e.do(&u, "GET", "/api/documents/"+docID(d), nil, nil)
		if r.json(t)["filename"] == "one.pdf" {
			break // the first rename has committed and waits to finish
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first rename never committed: %s", r.body)
		}
	}
	if r := e.doJSON(&u, "PATCH", "/api/documents/"+docID(d), map[string]any{"filename": "two"}); r.status != 200 {
		t.Fatalf("second rename: %d %s", r.status, r.body)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first rename, finished last: %v", err)
	}
	if got := e.storedFiles(); !slices.Equal(got, []string{"two.pdf"}) {
		t.Fatalf("files: %v", got)
	}
}

// A watched-folder document that watch.visibility shows to every user can
// be read by them, but changed (renamed, moved, archived, restored) only
// by an admin: 403 for the others, and nothing changes.
func TestWatchedDocumentsReadOnlyForViewers(t *testing.T) {
	e := newEnv(t)
	viewer, admin := newUser(), newAdmin()
	d := e.mustUpload(admin, "watched.pdf", makePDF("watched", 1, 0), nil)
	id := docID(d)
	if _, err := testPool.Exec(context.Background(), `UPDATE docs.documents SET source = 'watch', owner_id = NULL WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	changes := []struct{ method, path string }{
		{"PATCH", "/api/documents/" + id}, {"DELETE", "/api/documents/" + id}, {"POST", "/api/documents/" + id + "/restore"},
	}
	// Hidden (the default, admins only): 404 for everything.
	for _, c := range append(changes, struct{ method, path string }{"GET", "/api/documents/" + id}) {
		if r := e.doJSON(&viewer, c.method, c.path, map[string]any{"filename": "renamed"}); r.status != http.StatusNotFound {
			t.Errorf("hidden, %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if _, err := e.svc.settings.Patch(map[string]any{"watch": map[string]any{"visibility": "everyone"}}); err != nil {
		t.Fatal(err)
	}
	if r := e.do(&viewer, "GET", "/api/documents/"+id+"/file", nil, nil); r.status != 200 {
		t.Fatalf("viewer download: %d", r.status)
	}
	for _, c := range changes {
		r := e.doJSON(&viewer, c.method, c.path, map[string]any{"filename": "renamed", "title": "Mine now"})
		if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "only an admin") {
			t.Errorf("viewer %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	r := e.do(&viewer, "GET", "/api/documents/"+id, nil, nil)
	if m := r.json(t); r.status != 200 || m["filename"] != "watched.pdf" || m["title"] != "watched" || m["archived"] != false {
		t.Fatalf("after the viewer's attempts: %d %s", r.status, r.body)
	}
	if r := e.doJSON(&admin, "PATCH", "/api/documents/"+id, map[string]any{"filename": "renamed"}); r.status != 200 {
		t.Fatalf("admin rename: %d %s", r.status, r.body)
	}
}

// More concurrent category renames than the pool has connections all
// finish, and other requests are served meanwhile (found in review: each
// rename held one connection and waited for a second, so as many renames
// as the pool's size froze every request needing the database).
func TestConcurrentCategoryRenamesDoNotExhaustThePool(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	n := int(testPool.Config().MaxConns) + 4
	ids := make([]string, n)
	for i := range ids {
		ids[i] = docID(e.mustCategory(u, fmt.Sprintf("cat%d", i), ""))
	}
	client := &http.Client{Timeout: 20 * time.Second}
	send := func(method, path string, body any) (int, error) {
		b, _ := json.Marshal(body)
		req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(b))
		if err != nil {
			return 0, err
		}
		u.set(req.Header)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode, nil
	}
	type result struct {
		i      int
		status int
		err    error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	for i, id := range ids {
		go func() {
			<-start
			st, err := send("PATCH", "/api/documents/categories/"+id, map[string]any{"name": fmt.Sprintf("renamed%d", i)})
			results <- result{i, st, err}
		}()
	}
	close(start)
	// Another user's listing is served while the renames run.
	other := newUser()
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/documents", nil)
	other.set(req.Header)
	if res, err := client.Do(req); err != nil {
		t.Errorf("listing during the renames: %v", err)
	} else {
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("listing during the renames: %d", res.StatusCode)
		}
	}
	for range n {
		r := <-results
		if r.err != nil || r.status != 200 {
			t.Errorf("rename %d: %d %v", r.i, r.status, r.err)
		}
	}
	var renamed int
	if err := testPool.QueryRow(context.Background(),
		`SELECT count(*) FROM docs.categories WHERE name LIKE 'renamed%'`).Scan(&renamed); err != nil {
		t.Fatal(err)
	}
	if renamed != n {
		t.Errorf("%d of %d categories renamed", renamed, n)
	}
}

// A user who is not a manager may have created maxCategoriesPerUser
// categories, the tree holds maxCategories; past either, 409 with a code,
// also when the creations arrive at once (found in review: one account
// made 20 000, and every user's listing grew with them).
func TestCategoriesBounded(t *testing.T) {
	e := newEnv(t)
	setVar(t, &maxCategoriesPerUser, 3)
	setVar(t, &maxCategories, 5)
	u, admin := newUser(), newAdmin()

	// Six at once: exactly three are made. Each insert is slowed, so that
	// without the per-user lock all six would count none made yet.
	beforeInsert(t, "categories", "test_slow_category_insert", `PERFORM pg_sleep(0.05); RETURN NEW;`)
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	for i := range statuses {
		wg.Go(func() {
			b, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("c%d", i)})
			req, _ := http.NewRequest("POST", e.srv.URL+"/api/documents/categories", bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			u.set(req.Header)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			res.Body.Close()
			statuses[i] = res.StatusCode
		})
	}
	wg.Wait()
	slices.Sort(statuses)
	if want := []int{201, 201, 201, 409, 409, 409}; !slices.Equal(statuses, want) {
		t.Fatalf("six creations at once with room for three: %v, want %v", statuses, want)
	}
	r := e.doJSON(&u, "POST", "/api/documents/categories", map[string]any{"name": "more"})
	if m := r.json(t); r.status != 409 || m["code"] != "too_many_categories" {
		t.Fatalf("a fourth: %d %s", r.status, r.body)
	}
	// Another user may create until the tree holds maxCategories.
	other := newUser()
	e.mustCategory(other, "o1", "")
	last := e.mustCategory(other, "o2", "")
	if r := e.doJSON(&other, "POST", "/api/documents/categories", map[string]any{"name": "o3"}); r.status != 409 {
		t.Fatalf("past the tree's bound: %d %s", r.status, r.body)
	}
	// A manager is bound by neither number: users who filled the tree
	// cannot lock managers out.
	e.mustCategory(admin, "a1", "")
	// Deleting one makes room again for the others.
	if r := e.do(&other, "DELETE", "/api/documents/categories/"+docID(last), nil, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := e.doJSON(&other, "POST", "/api/documents/categories", map[string]any{"name": "o3"}); r.status != 409 {
		t.Fatalf("with the manager's category the tree is still full: %d %s", r.status, r.body)
	}
	var n int
	if err := testPool.QueryRow(context.Background(), `SELECT count(*) FROM docs.categories`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Fatalf("%d categories, want 5", n)
	}
}

// Bodies that would change nothing, or name an id badly, get a 400 that
// says which field, and change nothing. Before, a PATCH of nothing but
// misspelt fields ({"name": ...} for "filename") answered 200 without a
// change, and a malformed UUID answered "malformed JSON body".
func TestChangeBodiesSayWhatIsWrong(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	cat := e.mustCategory(u, "C", "")["id"].(string)
	doc := docID(e.mustUpload(u, "a.pdf", makePDF("a", 1, 0), map[string]string{"category_id": cat}))
	for _, c := range []struct {
		method, path string
		body         map[string]any
		field        string // "": a 400 saying nothing would change
	}{
		{"PATCH", "/api/documents/" + doc, map[string]any{"name": "b.pdf"}, ""},
		{"PATCH", "/api/documents/" + doc, map[string]any{}, ""},
		{"PATCH", "/api/documents/" + doc, map[string]any{"category_id": "nope"}, "category_id"},
		{"PATCH", "/api/documents/" + doc, map[string]any{"category_id": 5}, "category_id"},
		{"PATCH", "/api/documents/" + doc, map[string]any{"filename": "b.pdf", "category_id": "nope"}, "category_id"},
		{"PATCH", "/api/documents/categories/" + cat, map[string]any{"nme": "D"}, ""},
		{"PATCH", "/api/documents/categories/" + cat, map[string]any{"parent_id": "nope"}, "parent_id"},
		{"PATCH", "/api/documents/categories/" + cat, map[string]any{"name": "D", "parent_id": "nope"}, "parent_id"},
		{"POST", "/api/documents/categories", map[string]any{"name": "E", "parent_id": "nope"}, "parent_id"},
	} {
		r := e.doJSON(&u, c.method, c.path, c.body)
		what := fmt.Sprintf("%s %s %v", c.method, c.path, c.body)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", what, r.status, r.body)
			continue
		}
		m := r.json(t)
		if c.field == "" {
			if !strings.Contains(m["detail"].(string), "nothing to change") {
				t.Errorf("%s: %s", what, r.body)
			}
			continue
		}
		errs, _ := m["errors"].([]any)
		if len(errs) != 1 || errs[0].(map[string]any)["field"] != c.field {
			t.Errorf("%s: %s, want an error for %s", what, r.body, c.field)
		}
	}
	// Nothing changed.
	if d := e.do(&u, "GET", "/api/documents/"+doc, nil, nil).json(t); d["filename"] != "a.pdf" || d["category_id"] != cat {
		t.Fatalf("document changed: %v", d)
	}
	if got := e.storedFiles(); !slices.Equal(got, []string{"C/a.pdf"}) {
		t.Fatalf("files: %v", got)
	}
	var cats []map[string]any
	if r := e.do(&u, "GET", "/api/documents/categories", nil, nil); json.Unmarshal(r.body, &cats) != nil || len(cats) != 1 || cats[0]["name"] != "C" {
		t.Fatalf("categories: %s", r.body)
	}
	// A category's "name": null leaves its name, as it always did.
	if r := e.doJSON(&u, "PATCH", "/api/documents/categories/"+cat, map[string]any{"name": nil}); r.status != 200 || r.json(t)["name"] != "C" {
		t.Fatalf(`category "name": null: %d %s`, r.status, r.body)
	}
	// null still means "no category" / "top level".
	if r := e.doJSON(&u, "PATCH", "/api/documents/"+doc, map[string]any{"category_id": nil}); r.status != 200 || r.json(t)["category_id"] != nil {
		t.Fatalf("category_id null: %d %s", r.status, r.body)
	}
}

// Names are stored composed (NFC); a query typed decomposed finds them.
func TestSearchFindsEitherSpellingOfAnAccent(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	e.mustUpload(u, "caf\u00e9 menu.pdf", makePDF("menu", 1, 0), nil)
	e.mustUpload(u, "cafe menu.pdf", makePDF("other", 1, 0), nil)
	for _, q := range []string{"caf\u00e9", "cafe\u0301"} {
		if got := filenames(t, e.do(&u, "GET", "/api/documents?search="+url.QueryEscape(q), nil, nil)); !slices.Equal(got, []string{"caf\u00e9 menu.pdf"}) {
			t.Errorf("search %+q: %v", q, got)
		}
	}
}

// Document names in one folder are unique with their ASCII letters
// compared case-blind, as category names are: on ext4 "Report.pdf" and
// "report.pdf" were two files, which a copy of the tree to NTFS or APFS
// would make one (found in review, also between two users' documents in
// one category). Concurrent uploads take turns for the name.
func TestDocumentNamesAreCaseBlindInAFolder(t *testing.T) {
	e := newEnv(t)
	u, v := newUser(), newUser()
	shared := e.mustCategory(u, "Shared", "")["id"].(string)
	name := func(m map[string]any) string { return m["filename"].(string) }
	e.mustUpload(u, "Report.pdf", makePDF("r1", 1, 0), nil)
	if got := name(e.mustUpload(u, "report.pdf", makePDF("r2", 1, 0), nil)); got != "report (2).pdf" {
		t.Errorf("second report: %q", got)
	}
	e.mustUpload(u, "Memo.pdf", makePDF("m1", 1, 0), map[string]string{"category_id": shared})
	if got := name(e.mustUpload(v, "memo.pdf", makePDF("m2", 1, 0), map[string]string{"category_id": shared})); got != "memo (2).pdf" {
		t.Errorf("another user's memo: %q", got)
	}
	x := docID(e.mustUpload(u, "x.pdf", makePDF("x", 1, 0), nil))
	if r := e.doJSON(&u, "PATCH", "/api/documents/"+x, map[string]any{"filename": "REPORT.pdf"}); r.status != 200 || name(r.json(t)) != "REPORT (3).pdf" {
		t.Errorf("rename onto a name taken in another case: %d %s", r.status, r.body)
	}
	// A document may change the case of its own name.
	if r := e.doJSON(&u, "PATCH", "/api/documents/"+x, map[string]any{"filename": "report (3).pdf"}); r.status != 200 || name(r.json(t)) != "report (3).pdf" {
		t.Errorf("case-only rename of itself: %d %s", r.status, r.body)
	}
	var wg sync.WaitGroup
	for i, n := range []string{"Case.pdf", "CASE.pdf", "case.pdf", "cAse.pdf", "caSe.pdf", "casE.pdf"} {
		wg.Go(func() {
			if r := e.upload(u, n, makePDF(fmt.Sprintf("case %d", i), 1, 0), nil); r.status != 201 {
				t.Errorf("upload %s: %d %s", n, r.status, r.body)
			}
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for _, f := range e.storedFiles() {
		if other, ok := seen[strings.ToLower(f)]; ok {
			t.Errorf("%q and %q differ only in case", other, f)
		}
		seen[strings.ToLower(f)] = f
	}
	if len(seen) != 11 {
		t.Errorf("files: %v", e.storedFiles())
	}
}
