package docservice

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Every real-world sample gets what its README says a user expects.
func TestUploadSamples(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	type want struct {
		status    int
		pages     int // 0: unknown (null)
		title     string
		encrypted bool
	}
	cases := map[string]want{
		"simple.pdf":                    {201, 1, "", false},
		"multi-page-digital.pdf":        {201, 3, "", false},
		"multi-page-images-no-text.pdf": {201, 3, "", false},
		"tagged-no-text.pdf":            {201, 1, "", false},
		"rtl-text.pdf":                  {201, 1, "rtl-test", false},
		"junk-before-header.pdf":        {201, 2, "Enscript Output", false},
		"invalid.pdf":                   {201, -1, "", false}, // repairable: accepted, page count as far as readable
		"signed.pdf":                    {201, 1, "", false},
		"with-form.pdf":                 {201, 1, "", false},
		"html-rendered.pdf":             {201, 2, "", false},
		"encrypted.pdf":                 {201, 0, "", true},
		"password-is-test.pdf":          {201, 0, "", true},
		"truncated.pdf":                 {415, 0, "", false},
		"not-a-pdf.pdf":                 {415, 0, "", false},
	}
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			content := sample(t, name)
			r := e.upload(u, name, content, nil)
			if r.status != w.status {
				t.Fatalf("status %d, want %d: %s", r.status, w.status, r.body)
			}
			m := r.json(t)
			if w.status != 201 {
				if d, _ := m["detail"].(string); d == "" {
					t.Fatalf("refusal without a detail: %s", r.body)
				}
				return
			}
			if m["filename"] != name || m["original_filename"] != name || m["source"] != "upload" ||
				m["archived"] != false || m["duplicate"] != false || m["size"] != float64(len(content)) {
				t.Fatalf("document: %s", r.body)
			}
			switch pc := m["page_count"]; {
			case w.pages > 0 && pc != float64(w.pages):
				t.Errorf("page_count %v, want %d", pc, w.pages)
			case w.pages == 0 && pc != nil:
				t.Errorf("page_count %v, want null", pc)
			}
			if w.title != "" && m["title"] != w.title {
				t.Errorf("title %v, want %q", m["title"], w.title)
			}
			if m["encrypted"] != w.encrypted {
				t.Errorf("encrypted %v, want %v", m["encrypted"], w.encrypted)
			}
			// Stored byte for byte (a signature stays valid).
			onDisk, err := os.ReadFile(filepath.Join(e.storageDir, name))
			if err != nil || !bytes.Equal(onDisk, content) {
				t.Fatalf("stored file differs from the upload (err %v)", err)
			}
		})
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestUploadRefusals(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	cases := []struct {
		name    string
		content []byte
		status  int
	}{
		{"empty.pdf", nil, http.StatusBadRequest},
		{"text.pdf", []byte("hello, this is not a PDF at all\n"), http.StatusUnsupportedMediaType},
		{"late-header.pdf", append(bytes.Repeat([]byte("x"), 2000), makePDF("late", 1, 0)...), http.StatusUnsupportedMediaType},
		{"header-only.pdf", []byte("%PDF-1.7\n"), http.StatusUnsupportedMediaType},
	}
	for _, c := range cases {
		r := e.upload(u, c.name, c.content, nil)
		if r.status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, r.status, c.status, r.body)
		}
	}
	// No file part; not multipart at all.
	body, ct := multipartBody(t, "x.pdf", nil, nil)
	_ = body
	r := e.do(&u, "POST", "/api/documents", strings.NewReader("--x--\r\n"), map[string]string{"Content-Type": `multipart/form-data; boundary=x`})
	if r.status != http.StatusBadRequest {
		t.Errorf("no file part: status %d: %s", r.status, r.body)
	}
	r = e.do(&u, "POST", "/api/documents", strings.NewReader("%PDF-1.4"), map[string]string{"Content-Type": "application/pdf"})
	if r.status != http.StatusUnsupportedMediaType {
		t.Errorf("raw body: status %d: %s (ct %s)", r.status, r.body, ct)
	}
	r = e.upload(u, "x.pdf", makePDF("cat", 1, 0), map[string]string{"category_id": "not-a-uuid"})
	if r.status != http.StatusBadRequest {
		t.Errorf("bad category_id: status %d: %s", r.status, r.body)
	}
	r = e.upload(u, "x.pdf", makePDF("cat", 1, 0), map[string]string{"category_id": "6a1f3f9c-5a0e-4e4e-9a53-2f8f3f2b1a11"})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "category") {
		t.Errorf("unknown category_id: status %d: %s", r.status, r.body)
	}
	// category_id twice (a bad value, then an empty one meaning "top
	// level"): refused, not the last one taken.
	twice := "--b\r\nContent-Disposition: form-data; name=\"category_id\"\r\n\r\nnot-a-uuid\r\n" +
		"--b\r\nContent-Disposition: form-data; name=\"category_id\"\r\n\r\n\r\n" +
		"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.pdf\"\r\nContent-Type: application/pdf\r\n\r\n" +
		string(makePDF("twice", 1, 0)) + "\r\n--b--\r\n"
	r = e.do(&u, "POST", "/api/documents", strings.NewReader(twice), map[string]string{"Content-Type": "multipart/form-data; boundary=b"})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "more than once") {
		t.Errorf("category_id twice: status %d: %s", r.status, r.body)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if files := e.storedFiles(); len(files) > 0 {
		t.Fatalf("files stored by refused uploads: %v", files)
	}
	if n := listTotal(t, e, u, ""); n != 0 {
		t.Fatalf("%d documents recorded by refused uploads", n)
	}
}

func listTotal(t *testing.T, e *env, u user, query string) int {
	t.Helper()
	r := e.do(&u, "GET", "/api/documents"+query, nil, nil)
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	return int(r.json(t)["total"].(float64))
}

// Names from clients never escape the tree nor break a file system.
func TestUploadHostileNames(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	cases := map[string]string{
		"../../etc/passwd.pdf":            "passwd.pdf",
		`..\..\x.pdf`:                     "x.pdf",
		"/etc/absolute.pdf":               "absolute.pdf",
		`C:\Windows\system32\drive.pdf`:   "drive.pdf",
		"CON.pdf":                         "_CON.pdf",
		"lpt1.PDF":                        "_lpt1.pdf",
		"..pdf":                           "",
		"   .hidden.pdf":                  "hidden.pdf",
		"trailing. . .pdf":                "trailing.pdf",
		"a:b*c?d<e>f|g.pdf":               "a b c d e f g.pdf",
		strings.Repeat("é", 300) + ".pdf": "",
		"":                                "",
	}
	i := 0
	for name, want := range cases {
		i++
		r := e.upload(u, name, makePDF(fmt.Sprintf("hostile %d", i), 1, 0), nil)
		if r.status != http.StatusCreated {
			t.Errorf("%q: status %d: %s", name, r.status, r.body)
			continue
		}
		got := r.json(t)["filename"].(string)
		if want != "" && got != want {
			t.Errorf("%q stored as %q, want %q", name, got, want)
		}
		if len(got) > MaxNameBytes || !utf8.ValidString(got) || strings.ContainsAny(got, "/\\\x00:*?\"<>|") ||
			strings.HasPrefix(got, ".") || !strings.HasSuffix(got, ".pdf") {
			t.Errorf("%q stored as unsafe %q", name, got)
		}
		if _, err := os.Stat(filepath.Join(e.storageDir, got)); err != nil {
			t.Errorf("%q: stored file %q not at the top of the tree: %v", name, got, err)
		}
	}
	// RFC 5987 names may carry any byte, NUL and newline included.
	for i, raw := range []string{"nul%00byte.pdf", "new%0Aline.pdf", "%2E%2E%2F%2E%2E%2Fesc.pdf", "%E2%80%AEfdp.exe.pdf"} {
		body, ct := multipartBodyDisposition(t, `form-data; name="file"; filename*=UTF-8''`+raw,
			makePDF(fmt.Sprintf("encoded %d", i), 1, 0), nil)
		r := e.do(&u, "POST", "/api/documents", body, map[string]string{"Content-Type": ct})
		if r.status != http.StatusCreated {
			t.Errorf("%q: status %d: %s", raw, r.status, r.body)
			continue
		}
		got := r.json(t)["filename"].(string)
		if want := []string{"nulbyte.pdf", "newline.pdf", "esc.pdf", "fdp.exe.pdf"}[i]; got != want {
			t.Errorf("%q stored as %q, want %q", raw, got, want)
		}
	}
	// A raw NUL in a part header is malformed multipart: refused, not stored.
	body, ct := multipartBodyDisposition(t, "form-data; name=\"file\"; filename=\"a\x00b.pdf\"", makePDF("raw nul", 1, 0), nil)
	if r := e.do(&u, "POST", "/api/documents", body, map[string]string{"Content-Type": ct}); r.status != http.StatusCreated &&
		r.status != http.StatusBadRequest {
		t.Errorf("raw NUL: status %d: %s", r.status, r.body)
	}
	// Nothing anywhere but in the tree's top folder.
	for _, f := range e.storedFiles() {
		if strings.Contains(f, "/") {
			t.Errorf("file stored in a sub-folder: %s", f)
		}
	}
}

// Two users (or one, twice at once) uploading the same name both keep
// their file: the second gets a suffix, never an overwrite.
func TestConcurrentUploadsSameName(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	const n = 6
	var wg sync.WaitGroup
	names := make([]string, n)
	errs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, ct := multipartBody(t, "report.pdf", makePDF(fmt.Sprintf("version %d", i), 1, 0), nil)
			req, _ := http.NewRequest("POST", e.srv.URL+"/api/documents", body)
			req.Header.Set("Content-Type", ct)
			u.set(req.Header)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err.Error()
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != 201 {
				errs[i] = fmt.Sprintf("%d %s", res.StatusCode, b)
				return
			}
			names[i] = resp{body: b}.json(t)["filename"].(string)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != "" {
			t.Fatalf("upload %d: %s", i, errs[i])
		}
		if seen[names[i]] {
			t.Fatalf("two uploads stored as %q", names[i])
		}
		seen[names[i]] = true
	}
	if !seen["report.pdf"] || !seen["report (2).pdf"] || !seen[fmt.Sprintf("report (%d).pdf", n)] {
		t.Fatalf("names: %v", names)
	}
	if got := len(e.storedFiles()); got != n {
		t.Fatalf("%d files stored, want %d", got, n)
	}
}

func TestDuplicateContent(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	pdf := makePDF("dup", 1, 0)
	first := e.mustUpload(u, "a.pdf", pdf, nil)
	r := e.upload(u, "b.pdf", pdf, nil)
	if r.status != http.StatusOK {
		t.Fatalf("duplicate: status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	if m["duplicate"] != true || m["id"] != first["id"] || m["filename"] != "a.pdf" {
		t.Fatalf("duplicate answer: %s", r.body)
	}
	// Another user's copy is their own document.
	other := e.mustUpload(newUser(), "a.pdf", pdf, nil)
	if other["id"] == first["id"] || other["filename"] != "a (2).pdf" {
		t.Fatalf("other user's upload: %v", other)
	}
	if files := e.storedFiles(); len(files) != 2 {
		t.Fatalf("files: %v", files)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// The same content sent several times at once by one owner ends as one
// document: one upload creates it, the others are told it is a duplicate
// (found before the insert, or by the unique index when they race), and no
// extra file or temporary file is left.
func TestDuplicateContentConcurrent(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	pdf := makePDF("dup at once", 2, 0)
	const n = 6
	results := make([]resp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.upload(u, fmt.Sprintf("same-%d.pdf", i), pdf, nil)
		}()
	}
	wg.Wait()
	created, ids := 0, map[any]bool{}
	for _, r := range results {
		m := r.json(t)
		switch r.status {
		case http.StatusCreated:
			created++
		case http.StatusOK:
			if m["duplicate"] != true {
				t.Errorf("200 without duplicate: %s", r.body)
			}
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		ids[m["id"]] = true
	}
	if created != 1 || len(ids) != 1 {
		t.Fatalf("%d created, %d distinct ids; want 1 and 1", created, len(ids))
	}
	if files := e.storedFiles(); len(files) != 1 {
		t.Fatalf("files: %v", files)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func setLimitMB(t *testing.T, e *env, mb int) {
	t.Helper()
	admin := newAdmin()
	r := e.doJSON(&admin, "PATCH", "/api/settings/documents/limits", map[string]any{"max_pdf_size_mb": mb})
	if r.status != 200 {
		t.Fatalf("set limit: %d %s", r.status, r.body)
	}
}

// bigPDFHead is n bytes that start like a PDF.
func bigPDFHead(n int) []byte {
	b := bytes.Repeat([]byte(" "), n)
	copy(b, "%PDF-1.4\n")
	return b
}

func TestUploadTooLarge(t *testing.T) {
	e := newEnv(t)
	setLimitMB(t, e, 1)
	u := newUser()
	content := bigPDFHead(3 << 20)

	// With Content-Length: refused before the body is read.
	r := e.upload(u, "big.pdf", content, nil)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("with length: status %d: %s", r.status, r.body)
	}
	// Chunked (no length): refused once 1 MiB has passed.
	body, ct := multipartBody(t, "big.pdf", content, nil)
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/documents", io.MultiReader(body)) // hides the length
	req.Header.Set("Content-Type", ct)
	u.set(req.Header)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("chunked: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "1 MB") {
		t.Fatalf("chunked: status %d: %s", res.StatusCode, b)
	}
	if res.Header.Get("Connection") != "close" && !res.Close {
		t.Errorf("connection kept open after refusing an upload mid-body")
	}
	// Exactly at the limit is fine.
	ok := makePDF("at limit", 1, (1<<20)-600)
	if len(ok) > 1<<20 {
		t.Fatalf("test PDF too big: %d", len(ok))
	}
	e.mustUpload(u, "fits.pdf", ok, nil)
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if files := e.storedFiles(); len(files) != 1 {
		t.Fatalf("files: %v", files)
	}
}

// A client that goes away mid-upload leaves nothing behind.
func TestTruncatedUpload(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	body, ct := multipartBody(t, "cut.pdf", makePDF("cut", 1, 200<<10), nil)
	full := body.Bytes()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/documents HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\nX-User-Id: %s\r\n\r\n",
		ct, len(full), u.id)
	conn.Write(full[:len(full)/2])
	// The cut comes once the temporary file exists, so that its removal
	// is what the test sees.
	for start := time.Now(); len(e.tempFiles()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("no temporary file while the body was half sent")
		}
	}
	conn.Close()

	deadline := time.Now().Add(5 * time.Second)
	for len(e.tempFiles()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if files := e.storedFiles(); len(files) > 0 {
		t.Fatalf("files stored: %v", files)
	}
	if n := listTotal(t, e, u, ""); n != 0 {
		t.Fatalf("%d documents recorded", n)
	}
}

func openTestStore(t *testing.T, dir string) *FileStore {
	t.Helper()
	fs, err := OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}

// A temporary upload file is removed as soon as no process holds its lock
// (its writer crashed), however recent; a live upload's never, however idle;
// other files in the folder once idle.
func TestCleanTemp(t *testing.T) {
	dir := t.TempDir()
	fs := openTestStore(t, dir)
	tmp := filepath.Join(dir, tmpDir)
	past := time.Now().Add(-time.Hour)
	write := func(name string, old bool) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte("%PDF-partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if old {
			if err := os.Chtimes(p, past, past); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	crashed := write("upload-crashed.part", false) // written a moment ago, writer gone
	creatingNew := write("creating-0123", false)   // between create and lock
	creatingOld := write("creating-4567", true)
	stray := write("stray", true)
	f, live, release, err := fs.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("%PDF-1.7 live"); err != nil {
		t.Fatal(err)
	}
	f.Close() // the claim must outlive the descriptor that wrote the bytes
	livePath := filepath.Join(dir, filepath.FromSlash(live))

	n, err := fs.CleanTemp(tempIdle)
	if err != nil || n != 3 {
		t.Fatalf("removed %d, err %v; want 3", n, err)
	}
	for _, p := range []string{crashed, creatingOld, stray} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s kept", filepath.Base(p))
		}
	}
	for _, p := range []string{creatingNew, livePath} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed", filepath.Base(p))
		}
	}
	// A live upload's file stays however long it sits (a slow check, a
	// database wait), and goes once its claim ends.
	if err := os.Chtimes(livePath, past, past); err != nil {
		t.Fatal(err)
	}
	if n, err := fs.CleanTemp(tempIdle); err != nil || n != 0 {
		t.Fatalf("removed %d, err %v while the upload is live", n, err)
	}
	release()
	if n, err := fs.CleanTemp(tempIdle); err != nil || n != 1 {
		t.Fatalf("removed %d, err %v after release; want 1", n, err)
	}
}

// Across processes: another process's upload in progress is left alone,
// and once that process is killed mid-upload its file goes at once.
func TestCleanTempOtherProcess(t *testing.T) {
	dir := t.TempDir()
	fs := openTestStore(t, dir)
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperUploadInProgress$")
	helper.Env = append(os.Environ(), "DOCSERVICE_HELPER_STORAGE="+dir)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	name := strings.TrimSpace(line)
	if err != nil || !strings.HasPrefix(name, tmpDir+"/upload-") {
		t.Fatalf("helper said %q, %v", line, err)
	}
	p := filepath.Join(dir, filepath.FromSlash(name))
	if n, err := fs.CleanTemp(tempIdle); err != nil || n != 0 {
		t.Fatalf("removed %d, err %v while another process writes", n, err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("live file: %v", err)
	}
	if err := helper.Process.Kill(); err != nil { // a crash: no cleanup of its own
		t.Fatal(err)
	}
	_ = helper.Wait()
	if n, err := fs.CleanTemp(tempIdle); err != nil || n != 1 {
		t.Fatalf("removed %d, err %v after the writer was killed; want 1", n, err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("a killed upload's file kept")
	}
}

// TestHelperUploadInProgress is the other process of
// TestCleanTempOtherProcess: it starts a temporary upload file, names it,
// and waits to be killed.
func TestHelperUploadInProgress(t *testing.T) {
	dir := os.Getenv("DOCSERVICE_HELPER_STORAGE")
	if dir == "" {
		t.Skip("run by TestCleanTempOtherProcess")
	}
	f, name, _, err := openTestStore(t, dir).CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("%PDF-1.7 half")
	f.Close()
	runtime.GC() // the claim must not depend on a Go value staying reachable
	fmt.Println(name)
	time.Sleep(time.Minute)
	os.Exit(1)
}

// Run cleans the temporary files of a crashed predecessor before it
// serves, even when the crash was a moment ago.
func TestRunCleansTempAtStart(t *testing.T) {
	base := t.TempDir()
	cfg := &Config{
		DatabaseURL:  testPool.Config().ConnString(),
		Addr:         "127.0.0.1:0",
		DataDir:      base,
		StorageDir:   filepath.Join(base, "documents"),
		WatchDir:     filepath.Join(base, "watch"),
		AppConfigDir: filepath.Join(base, "config"),
	}
	if err := os.MkdirAll(filepath.Join(cfg.StorageDir, tmpDir), 0o700); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(cfg.StorageDir, tmpDir, "upload-0011223344556677.part")
	if err := os.WriteFile(leftover, []byte("%PDF-1.7 cut short"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, quietLog(), ready) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not start")
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("a crashed upload's temporary file survived the start: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

// An upload waits for the parse slot while another parse runs, gives up
// when its client does (nothing kept), and goes through once the slot is
// free.
func TestUploadWaitsForParseSlot(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	pdf := makePDF("Waiting", 3, 10)
	e.uploadGivesUpWhileFull(t, u, pdf, e.svc.parseSlots, "parse slot")
	d := e.mustUpload(u, "waiting.pdf", pdf, nil)
	if d["page_count"] != float64(3) {
		t.Fatalf("page_count = %v", d["page_count"])
	}
	if len(e.svc.parseSlots) != 0 {
		t.Fatal("the upload kept its parse slot")
	}
}

// uploadGivesUpWhileFull takes every slot of s, sends pdf with a client
// that gives up after 300 ms, checks that the upload waited, gave up with
// its client and kept nothing, and frees the slots again.
func (e *env) uploadGivesUpWhileFull(t *testing.T, u user, pdf []byte, s slots, what string) {
	t.Helper()
	for range cap(s) {
		s <- struct{}{}
	}
	body, ct := multipartBody(t, "waiting.pdf", pdf, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/api/documents", body)
	req.Header.Set("Content-Type", ct)
	u.set(req.Header)
	if res, err := e.srv.Client().Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("upload answered %d while every %s was taken", res.StatusCode, what)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(e.tempFiles()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("the waiting upload did not give up with its client: temporary files %v", left)
	}
	if files := e.storedFiles(); len(files) > 0 {
		t.Fatalf("files stored: %v", files)
	}
	for range cap(s) {
		<-s
	}
}

// The server's read timeout ends a JSON body sent too slowly (408), while
// an upload that takes longer than it, data flowing, still lands: every
// read of an upload extends the deadline.
func TestReadTimeoutSparesFlowingUploads(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	const timeout = 500 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(e.svc.Handler(), timeout)
	go srv.Serve(ln)
	defer srv.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/documents/categories HTTP/1.1\r\nHost: x\r\nX-User-Id: %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"na", u.id)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled JSON body: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"detail":"request body not received in time"`) {
		t.Fatalf("stalled JSON body: %d %s", res.StatusCode, body)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("answered after %v", waited)
	}

	pdf := makePDF("Slow", 2, 8<<20)
	whole, ct := multipartBody(t, "slow.pdf", pdf, nil)
	pr, pw := io.Pipe()
	go func() {
		b := whole.Bytes()
		for i := 0; i < 4; i++ { // four pieces, 300 ms apart: 900 ms in all
			piece := b[len(b)*i/4 : len(b)*(i+1)/4]
			if _, err := pw.Write(piece); err != nil {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/api/documents", pr)
	req.ContentLength = int64(whole.Len())
	req.Header.Set("Content-Type", ct)
	u.set(req.Header)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("slow upload: %v", err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("upload taking longer than the read timeout: %d %s", res.StatusCode, body)
	}

	// A download read slowly, for longer than the read timeout (which
	// also ends the request's context), arrives whole.
	var d map[string]any
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest("GET", "http://"+ln.Addr().String()+"/api/documents/"+docID(d)+"/file", nil)
	u.set(req.Header)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got bytes.Buffer
	start = time.Now()
	for {
		n, err := io.CopyN(&got, res.Body, 256<<10)
		if err != nil || n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !bytes.Equal(got.Bytes(), pdf) || time.Since(start) < 2*timeout {
		t.Fatalf("slow download: %d of %d bytes in %v", got.Len(), len(pdf), time.Since(start))
	}
}
