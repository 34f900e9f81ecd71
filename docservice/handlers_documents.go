package docservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

// visibility is the access rule for p under the current settings.
func (s *Service) visibility(p *Principal) Visibility {
	st := s.settings.Current()
	return Visibility{UserID: p.ID, All: p.Admin, WatchedToo: st.WatchedVisibleTo(p)}
}

// changeAccess is who may rename, move, archive or restore a document: its
// owner and admins. Seeing a watched-folder document (watch.visibility)
// does not let a user change it for everybody.
func changeAccess(p *Principal) Visibility {
	return Visibility{UserID: p.ID, All: p.Admin}
}

// changeError is storeError for a change refused by changeAccess: a
// document the caller may see but not change is 403, not 404.
func (s *Service) changeError(r *http.Request, p *Principal, id uuid.UUID, err error) error {
	if errors.Is(err, ErrNotFound) && !strings.HasPrefix(err.Error(), "category") {
		if _, gerr := s.store.GetDocument(r.Context(), s.visibility(p), id); gerr == nil {
			return httpx.Errorf(http.StatusForbidden, "only an admin can change a document from the watched folder")
		}
	}
	return storeError(err, "document")
}

func pathID(r *http.Request, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue(name))
	if err != nil {
		return id, httpx.Errorf(http.StatusBadRequest, "%s must be a UUID", name)
	}
	return id, nil
}

// storeError maps the storage layer's sentinels and failures to answers.
func storeError(err error, what string) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, ErrNotFound):
		return httpx.Errorf(http.StatusNotFound, "%s not found", what)
	case errors.Is(err, errCommitUnknown):
		return &httpx.Error{Status: http.StatusServiceUnavailable, Detail: "database connection lost while saving; the change may have been saved, check before trying again", Cause: err}
	case errors.Is(err, ErrBusy):
		return &httpx.Error{Status: http.StatusServiceUnavailable, Detail: "the " + what + " is being changed; try again in a moment", RetryAfter: 1, Cause: err}
	case errors.Is(err, ErrDBUnavailable):
		return &httpx.Error{Status: http.StatusServiceUnavailable, Detail: "database unavailable; nothing was changed, try again later", Cause: err}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return &httpx.Error{Status: http.StatusInsufficientStorage, Detail: "not enough storage space; nothing was stored", Cause: err}
	case errors.As(err, &errno) && errno == syscall.EROFS:
		return &httpx.Error{Status: http.StatusInsufficientStorage, Detail: "document storage is read-only; nothing was stored", Cause: err}
	}
	return err
}

func (s *Service) getDocument(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	d, err := s.store.GetDocument(r.Context(), s.visibility(principal(r)), id)
	if err != nil {
		return storeError(err, "document")
	}
	httpx.WriteJSON(w, http.StatusOK, d)
	return nil
}

// listPage is the answer of GET /api/documents.
type listPage struct {
	Items  []Document `json:"items"`
	Total  int64      `json:"total"`
	Limit  int        `json:"limit"`
	Offset int        `json:"offset"`
}

func (s *Service) listDocuments(w http.ResponseWriter, r *http.Request) error {
	q, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	docs, total, err := s.store.ListDocuments(r.Context(), s.visibility(principal(r)), q)
	if err != nil {
		return storeError(err, "document")
	}
	if docs == nil {
		docs = []Document{}
	}
	httpx.WriteJSON(w, http.StatusOK, listPage{Items: docs, Total: total, Limit: q.Limit, Offset: q.Offset})
	return nil
}

func parseListQuery(v url.Values) (ListQuery, error) {
	q := ListQuery{Limit: 50, Search: strings.TrimSpace(v.Get("search")), Archived: "false"}
	var fields []httpx.FieldError
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 200 {
			fields = append(fields, httpx.FieldError{Field: "limit", Message: "must be an integer in 1..200"})
		}
		q.Limit = n
	}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			fields = append(fields, httpx.FieldError{Field: "offset", Message: "must be a non-negative integer"})
		}
		q.Offset = n
	}
	switch c := v.Get("category_id"); c {
	case "":
	case "none", "null":
		q.Uncategorised = true
	default:
		id, err := uuid.Parse(c)
		if err != nil {
			fields = append(fields, httpx.FieldError{Field: "category_id", Message: `must be a UUID or "none"`})
		}
		q.CategoryID = &id
	}
	if s := v.Get("archived"); s != "" {
		if s != "true" && s != "false" && s != "any" {
			fields = append(fields, httpx.FieldError{Field: "archived", Message: "must be true, false or any"})
		}
		q.Archived = s
	}
	if s := v.Get("source"); s != "" {
		if s != "upload" && s != "watch" {
			fields = append(fields, httpx.FieldError{Field: "source", Message: "must be upload or watch"})
		}
		q.Source = s
	}
	if s := v.Get("sort"); s != "" {
		if _, ok := sortColumns[strings.TrimPrefix(s, "-")]; !ok {
			fields = append(fields, httpx.FieldError{Field: "sort",
				Message: "must be one of created_at, updated_at, filename, title, size, page_count (prefix - for descending)"})
		}
		q.Sort = s
	}
	if len(q.Search) > 200 {
		fields = append(fields, httpx.FieldError{Field: "search", Message: "must be at most 200 bytes"})
	} else if !utf8.ValidString(q.Search) || strings.ContainsRune(q.Search, 0) {
		// PostgreSQL takes neither as text; no name or title holds them.
		fields = append(fields, httpx.FieldError{Field: "search", Message: "must be UTF-8 text without NUL"})
	}
	if len(fields) > 0 {
		return q, httpx.Invalid(fields)
	}
	// Names are stored in normal form C: a decomposed "é" in the query
	// must find them.
	q.Search = norm.NFC.String(q.Search)
	return q, nil
}

// optional is a JSON field that distinguishes absent from null.
type optional[T any] struct {
	Set   bool
	Value *T
}

func (o *optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		return nil
	}
	return json.Unmarshal(b, &o.Value)
}

// idField reads an optional UUID field of a request body. Such fields are
// decoded as strings: a malformed UUID fails inside the JSON decoder
// without the field's name, as "malformed JSON body".
func idField(field string, v optional[string]) (set bool, id *uuid.UUID, fe *httpx.FieldError) {
	if !v.Set || v.Value == nil {
		return v.Set, nil, nil
	}
	parsed, err := uuid.Parse(*v.Value)
	if err != nil {
		return true, nil, &httpx.FieldError{Field: field, Message: "must be a category id (a UUID) or null"}
	}
	return true, &parsed, nil
}

// nothingToChange refuses a PATCH whose body sets none of the fields it
// knows. Unknown fields are ignored, as the FastAPI service did (a client
// may send back a whole object), but a body of nothing but unknown or
// misspelt ones ({"name": ...} for "filename") would otherwise answer 200
// and change nothing.
func nothingToChange(fields ...string) error {
	return httpx.Errorf(http.StatusBadRequest, "nothing to change: the body sets none of %s", strings.Join(fields, ", "))
}

func (s *Service) patchDocument(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req struct {
		Filename   optional[string] `json:"filename"`
		Title      optional[string] `json:"title"`
		CategoryID optional[string] `json:"category_id"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
		return err
	}
	if !req.Filename.Set && !req.Title.Set && !req.CategoryID.Set {
		return nothingToChange("filename", "title", "category_id")
	}
	var ch DocumentChange
	var fields []httpx.FieldError
	if req.Filename.Set {
		if req.Filename.Value == nil || strings.TrimSpace(*req.Filename.Value) == "" {
			fields = append(fields, httpx.FieldError{Field: "filename", Message: "must be a non-empty string"})
		} else {
			n := SanitizePDFName(*req.Filename.Value)
			ch.Filename = &n
		}
	}
	if req.Title.Set {
		if req.Title.Value == nil || strings.TrimSpace(cleanTitle(*req.Title.Value)) == "" {
			ch.ClearTitle = true
		} else if t := strings.TrimSpace(cleanTitle(*req.Title.Value)); len(t) > maxTitleBytes {
			fields = append(fields, httpx.FieldError{Field: "title", Message: "must be at most 500 bytes"})
		} else {
			ch.Title = &t
		}
	}
	if set, cat, fe := idField("category_id", req.CategoryID); fe != nil {
		fields = append(fields, *fe)
	} else {
		ch.CategorySet, ch.CategoryID = set, cat
	}
	if len(fields) > 0 {
		return httpx.Invalid(fields)
	}
	p := principal(r)
	d, err := s.store.UpdateDocument(r.Context(), changeAccess(p), p.ID, id, ch, s.moveFile)
	if err != nil {
		if errors.Is(err, ErrNotFound) && strings.HasPrefix(err.Error(), "category") {
			return httpx.Invalid([]httpx.FieldError{{Field: "category_id", Message: "no such category"}})
		}
		return s.changeError(r, p, id, err)
	}
	httpx.WriteJSON(w, http.StatusOK, d)
	return nil
}

// moveFile is the Mover of a document rename or move: link the new name
// (never over an existing file), and only once the row names it, unlink
// the old one.
func (s *Service) moveFile(oldRel, dir, name string, reserved func(string) (bool, error)) (string, func(string) error, func() error, error) {
	used, err := s.files.LinkNew(oldRel, dir, name, reserved)
	if err != nil {
		return "", nil, nil, &fileError{err}
	}
	newRel := joinPath(dir, used)
	if newRel == oldRel {
		// The name it has already (every other candidate was taken).
		return used, func(string) error { return nil }, func() error { return nil }, nil
	}
	finish := func(keep string) error { return s.files.Unlink(oldRel, keep) }
	undo := func() error { return s.files.Unlink(newRel, oldRel) }
	return used, finish, undo, nil
}

func (s *Service) archiveDocument(w http.ResponseWriter, r *http.Request) error {
	return s.setArchived(w, r, true)
}

func (s *Service) restoreDocument(w http.ResponseWriter, r *http.Request) error {
	return s.setArchived(w, r, false)
}

func (s *Service) setArchived(w http.ResponseWriter, r *http.Request, archived bool) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	p := principal(r)
	d, err := s.store.SetArchived(r.Context(), changeAccess(p), p.ID, id, archived)
	if err != nil {
		return s.changeError(r, p, id, err)
	}
	if archived {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	httpx.WriteJSON(w, http.StatusOK, d)
	return nil
}

func (s *Service) documentHistory(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if _, err := s.store.GetDocument(r.Context(), s.visibility(principal(r)), id); err != nil {
		return storeError(err, "document")
	}
	evs, err := s.store.History(r.Context(), id)
	if err != nil {
		return storeError(err, "document")
	}
	if evs == nil {
		evs = []Event{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"items": evs})
	return nil
}

// maxRanges bounds the ranges one download request may ask for.
const maxRanges = 32

// downloadDocument streams the stored PDF with Range, If-None-Match and
// If-Modified-Since support (http.ServeContent); the ETag is the content's
// SHA-256, which never changes for a document.
func (s *Service) downloadDocument(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	// The file is opened while the document cannot move (HoldDocument),
	// so it is this document's file; once open, it stays so whatever
	// renames follow.
	var d Document
	var f *os.File
	var openErr error
	if err := s.store.HoldDocument(r.Context(), s.visibility(principal(r)), id, func(held Document) {
		if s.beforeOpen != nil {
			s.beforeOpen()
		}
		d = held
		f, openErr = s.files.Open(d.RelPath())
	}); err != nil {
		if f != nil {
			f.Close()
		}
		return storeError(err, "document")
	}
	err = openErr
	if errors.Is(err, fs.ErrNotExist) {
		// Only a hand edit of the tree can do this; say so loudly.
		s.log.Error("a document's file is missing from STORAGE_DIR", "document", d.ID, "path", d.RelPath(),
			"request_id", httpx.RequestID(r.Context()))
		return httpx.Errorf(http.StatusGone, "the stored file is missing; an operator has been told")
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("document %s: %s is not a regular file", d.ID, d.RelPath())
	}
	etag := `"` + d.SHA256 + `"`
	if rng := r.Header.Get("Range"); rng != "" {
		if !ifRangeHolds(r, etag, fi.ModTime()) {
			r.Header.Del("Range") // the whole file, whatever it asked
		} else if strings.Count(rng, ",") >= maxRanges {
			// Each range of a multipart/byteranges answer costs a part
			// header of about 100 bytes: a Range of thousands of "0-0"
			// would make a small request a large answer. Readers ask
			// for a few at a time.
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", fi.Size()))
			return httpx.Errorf(http.StatusRequestedRangeNotSatisfiable, "at most %d ranges per request", maxRanges)
		} else {
			r.Header.Set("Range", tidyRange(rng, fi.Size()))
		}
	}
	disposition := "attachment"
	if r.URL.Query().Get("disposition") == "inline" {
		disposition = "inline"
	}
	h := w.Header()
	h.Set("Content-Type", "application/pdf")
	h.Set("Content-Disposition", contentDisposition(disposition, d.Filename))
	h.Set("ETag", etag)
	h.Set("Cache-Control", "private, no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	jw := &jsonErrors{ResponseWriter: w}
	http.ServeContent(jw, r, d.Filename, fi.ModTime(), f)
	jw.finish()
	return nil
}

// contentDisposition builds an RFC 6266 header: an ASCII fallback filename
// for old clients and the exact name as RFC 5987 filename*.
func contentDisposition(kind, name string) string {
	var ascii strings.Builder
	for _, r := range name {
		switch {
		case r == '"' || r == '\\' || r == '%':
			// '%': some clients percent-decode this plain filename.
			ascii.WriteByte('_')
		case r >= 0x20 && r < 0x7f:
			ascii.WriteRune(r)
		default:
			ascii.WriteByte('_')
		}
	}
	return fmt.Sprintf(`%s; filename="%s"; filename*=UTF-8''%s`, kind, ascii.String(), rfc5987Escape(name))
}

// rfc5987Escape percent-encodes everything but RFC 5987's attr-char.
func rfc5987Escape(s string) string {
	const attrChar = "!#$&+-.^_`|~"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(attrChar, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
