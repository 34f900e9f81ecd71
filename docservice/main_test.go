package docservice

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse/internal/testdb"
)

var (
	testDB   *testdb.DB
	testPool *pgxpool.Pool
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(func() int {
		db, err := testdb.New("docservice")
		if err != nil {
			fmt.Fprintln(os.Stderr, "test database:", err)
			return 1
		}
		defer db.Drop()
		testDB = db
		if !testing.Verbose() {
			slog.SetDefault(quietLog()) // the request log of httpx.Middleware
		}
		testPool, err = OpenDB(context.Background(), db.URL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "open test database:", err)
			return 1
		}
		defer testPool.Close()
		return m.Run()
	}())
}

// env is one service on a real HTTP server, with its own storage and
// settings directories, on the package's database.
type env struct {
	t          *testing.T
	svc        *Service
	srv        *httptest.Server
	storageDir string
	configDir  string
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(t *testing.T) *env { return newEnvWith(t, testPool, t.TempDir()) }

func newEnvWith(t *testing.T, pool *pgxpool.Pool, storageDir string) *env {
	t.Helper()
	// Every env starts on empty storage, so its database starts empty
	// too: rows an earlier test (or an earlier -count run) left would
	// claim file names that storage does not have.
	if _, err := testPool.Exec(context.Background(),
		`TRUNCATE docs.document_events, docs.documents, docs.categories, docs.folder_moves CASCADE`); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, storageDir: storageDir, configDir: t.TempDir()}
	cfg := &Config{StorageDir: e.storageDir, AppConfigDir: e.configDir, WatchDir: t.TempDir()}
	settings, err := NewSettingsStore(e.configDir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	files, err := OpenFileStore(e.storageDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { files.Close() })
	e.svc = New(cfg, pool, files, settings, quietLog())
	e.srv = httptest.NewServer(e.svc.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// user is a caller as the edge would present it.
type user struct {
	id     uuid.UUID
	admin  bool
	groups []string
}

func newUser() user  { return user{id: uuid.New()} }
func newAdmin() user { return user{id: uuid.New(), admin: true} }

func (u user) set(h http.Header) {
	h.Set("X-User-Id", u.id.String())
	if u.admin {
		h.Set("X-User-Role", "admin")
	} else {
		h.Set("X-User-Role", "user")
	}
	if len(u.groups) > 0 {
		h.Set("X-User-Groups", strings.Join(u.groups, ","))
	}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v\n%s", r.status, err, r.body)
	}
	return m
}

func (e *env) do(u *user, method, path string, body io.Reader, hdr map[string]string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if u != nil {
		u.set(req.Header)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) doJSON(u *user, method, path string, v any) resp {
	e.t.Helper()
	var body io.Reader
	if v != nil {
		b, _ := json.Marshal(v)
		body = bytes.NewReader(b)
	}
	return e.do(u, method, path, body, map[string]string{"Content-Type": "application/json"})
}

// multipartBody builds an upload body: a "file" part named filename, then
// extra fields.
func multipartBody(t *testing.T, filename string, content []byte, fields map[string]string) (*bytes.Buffer, string) {
	return multipartBodyDisposition(t, `form-data; name="file"; filename="`+
		strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(filename)+`"`, content, fields)
}

// multipartBodyDisposition is multipartBody with the file part's
// Content-Disposition written by hand, so that any name, even one with
// NULs or in RFC 5987 form, reaches the server as a test wants it.
func multipartBodyDisposition(t *testing.T, disposition string, content []byte, fields map[string]string) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", disposition)
	h.Set("Content-Type", "application/pdf")
	w, err := mw.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

func (e *env) upload(u user, filename string, content []byte, fields map[string]string) resp {
	e.t.Helper()
	body, ct := multipartBody(e.t, filename, content, fields)
	return e.do(&u, "POST", "/api/documents", body, map[string]string{"Content-Type": ct})
}

// mustUpload uploads and expects 201, returning the document.
func (e *env) mustUpload(u user, filename string, content []byte, fields map[string]string) map[string]any {
	e.t.Helper()
	r := e.upload(u, filename, content, fields)
	if r.status != http.StatusCreated {
		e.t.Fatalf("upload %q: status %d: %s", filename, r.status, r.body)
	}
	return r.json(e.t)
}

// tempFiles lists what is left in the storage's temporary folder.
func (e *env) tempFiles() []string {
	entries, err := os.ReadDir(filepath.Join(e.storageDir, tmpDir))
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

// storedFiles lists every regular file under the storage dir, except
// temporary ones, relative and slash-separated.
func (e *env) storedFiles() []string {
	var out []string
	filepath.WalkDir(e.storageDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(e.storageDir, p)
		if d.IsDir() && rel == tmpDir {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

func sample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "pdfs", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// makePDF builds a small valid PDF with a title and n pages; pad adds a
// content stream of that many spaces (a valid, empty page content).
func makePDF(title string, pages int, pad int) []byte {
	return makePDFStream(title, pages, bytes.Repeat([]byte(" "), pad))
}

// makePDFStream is makePDF with the pages' content stream given: any
// bytes, as a stream's length is in its dictionary.
func makePDFStream(title string, pages int, stream []byte) []byte {
	kids := make([]string, pages)
	for i := range kids {
		kids[i] = fmt.Sprintf("%d 0 R", 4+i)
	}
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), pages),
		fmt.Sprintf("<< /Title (%s) /Producer (docservice tests) >>", title),
	}
	contents := 4 + pages
	for range pages {
		objs = append(objs, fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R >>", contents))
	}
	objs = append(objs, fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(stream), stream))
	return pdfObjects("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", " /Info 3 0 R", objs...)
}

// pdfObjects writes a PDF of the given numbered objects (from 1; object 1
// the catalog) after header, with a classic cross-reference table and a
// trailer holding /Size, /Root and the entries in trailer.
func pdfObjects(header, trailer string, objs ...string) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, trailer, xref)
	return b.Bytes()
}

// beforeInsert installs, for the test's duration, a BEFORE INSERT trigger
// named name on docs.table whose plpgsql body runs for every row (NEW is
// the row; it must RETURN NEW or raise).
func beforeInsert(t *testing.T, table, name, body string) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`CREATE FUNCTION docs.` + name + `() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ` + body + ` END $$`,
		`CREATE TRIGGER ` + name + ` BEFORE INSERT ON docs.` + table + ` FOR EACH ROW EXECUTE FUNCTION docs.` + name + `()`,
	} {
		if _, err := testPool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		testPool.Exec(ctx, `DROP TRIGGER `+name+` ON docs.`+table)
		testPool.Exec(ctx, `DROP FUNCTION docs.`+name+`()`)
	})
}
