// Command bench-docservice measures docservice's upload path (`make
// bench-docservice`): a 1 GiB PDF uploaded directly to docservice and
// through Caddy, each next to a `cp` (and a `cp` + fsync) of the same file
// on the same disk and an upload to a server that discards the body, with
// the CPU time and peak memory (VmHWM) of docservice and Caddy, and the
// same upload through Caddy to the discarding server (the edge's floor); then
// documents small enough for the full pdfcpu parse (15 MiB, many pages
// and objects, see documents.go), one, three in a row and four at once,
// where that parse rather than the upload path sets docservice's peak
// memory (-rows big or docs runs one half). It prints
// figures; it never passes or fails. Targets (issue 5): peak RSS under
// 64 MiB each, throughput at least half of cp's; both ratios (to cp and to
// cp + fsync) are printed, README.md says which one the target is judged by.
//
// The file is a real PDF (one page whose content stream is ~1 GiB of
// spaces), so it goes through every step an upload takes: multipart
// streaming, SHA-256, fsync, the structural check (for a file this large,
// the bounded trailer/xref check), link into place and the database row.
// The client sends it as a browser or curl does (multipart, with a
// Content-Length), the file part with sendfile(2), so the client is not
// what limits the figures. Each row is the median of -runs uploads.
//
// docservice is built from this checkout (or -docservice) and runs as its
// own process on a fresh database of the private cluster, or of
// DATABASE_URL's server. The edge rows use bin/caddy (the Gatehouse Caddy
// build) set up as the repository's Caddyfile sets up /api/*: gatehouse_auth
// (keys from a JWKS file the bench signs tokens for, instead of authsvc's
// URL) and the plugin gateway's manifest routes; they are skipped with a
// message when bin/caddy does not exist. Everything is written under
// .data/bench-docservice (at most about three copies of the file at once)
// and removed at the end.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/internal/benchutil"
	"github.com/gatehouse/gatehouse/internal/formdata"
)

func main() {
	sizeMB := flag.Int("size-mb", 1024, "size of the uploaded PDF in MiB")
	caddyBin := flag.String("caddy", filepath.Join("bin", "caddy"), "the Caddy binary for the edge row")
	keep := flag.Bool("keep", false, "keep .data/bench-docservice afterwards (for inspection)")
	docBin := flag.String("docservice", "", "the docservice binary to measure (default: built from this checkout)")
	runs := flag.Int("runs", 3, "uploads (document rows: batches) per row (the row shows the median)")
	docMB := flag.Int("doc-mb", 15, "size of each PDF of the document rows in MiB (files up to 16 MiB get the full pdfcpu parse)")
	rows := flag.String("rows", "all", "which rows: all, big (the large upload) or docs (the document rows)")
	flag.Parse()
	if *rows != "all" && *rows != "big" && *rows != "docs" {
		fmt.Fprintln(os.Stderr, "bench-docservice: -rows must be all, big or docs")
		os.Exit(2)
	}
	if err := run(int64(*sizeMB)<<20, int64(*docMB)<<20, *rows, *caddyBin, *docBin, max(*runs, 1), *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench-docservice:", err)
		os.Exit(1)
	}
}

func run(size, docSize int64, rows, caddyBin, docBin string, runs int, keep bool) error {
	work, err := filepath.Abs(filepath.Join(".data", "bench-docservice"))
	if err != nil {
		return err
	}
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o750); err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}

	dbURL, cleanupDB, err := benchutil.Database("bench_docservice")
	if err != nil {
		return err
	}
	defer cleanupDB()
	bin := docBin
	if bin == "" {
		if bin, err = buildDocservice(work); err != nil {
			return err
		}
	}
	ds := &docservice{bin: bin, dbURL: dbURL, work: work}
	limitMB := max(size, docSize)>>20 + 16
	if err := ds.configure(limitMB); err != nil {
		return err
	}
	if rows != "docs" {
		if err := bigRows(ds, size, caddyBin, runs); err != nil {
			return err
		}
	}
	if rows != "big" {
		if err := docRows(ds, docSize, runs); err != nil {
			return err
		}
	}
	fmt.Printf(`
Uploads: median of %d; cp: best of 3. CPU is the process's user + system
time per upload (mean), RSS its peak (VmHWM) over the row's uploads;
client is the bench's own CPU (with the discarding server in it, when that
is the upstream). CPU cap: the MB/s those CPU times allow on %d cores even
if they overlapped perfectly; a row near its cap is bound by CPU.
Targets (issue 5): peak RSS < 64 MiB each; throughput ≥ 50%% of cp. An upload
fsyncs the file and its folder before it is recorded, so "cp + fsync" is the
like-for-like copy; which of the two ratios the target is judged by is
decided in README.md (performance).
`, runs, runtime.NumCPU())
	return nil
}

// docservice starts docservice processes of one binary on one database
// and storage tree.
type docservice struct {
	bin, dbURL, work string
	n                int // processes started, for log names
}

func (d *docservice) storage() string   { return filepath.Join(d.work, "storage") }
func (d *docservice) configDir() string { return filepath.Join(d.work, "config") }

// configure sets the upload limit every process gets.
func (d *docservice) configure(limitMB int64) error {
	if err := os.MkdirAll(d.configDir(), 0o750); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.configDir(), "doc-service.json"),
		[]byte(fmt.Sprintf(`{"max_pdf_size_mb": %d}`, limitMB)), 0o600)
}

// start runs a new docservice process and waits until it serves; stop
// ends it.
func (d *docservice) start() (cmd *exec.Cmd, addr string, stop func(), err error) {
	addr, err = benchutil.FreeAddr()
	if err != nil {
		return nil, "", nil, err
	}
	d.n++
	cmd = exec.Command(d.bin, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+d.dbURL, "DOCSERVICE_ADDR="+addr, "DATA_DIR="+d.work,
		"STORAGE_DIR="+d.storage(), "APP_CONFIG_DIR="+d.configDir(), "WATCH_DIR="+filepath.Join(d.work, "watch"))
	logf, _ := os.Create(filepath.Join(d.work, fmt.Sprintf("docservice-%d.log", d.n)))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, "", nil, fmt.Errorf("start docservice: %w", err)
	}
	stop = func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait(); logf.Close() }
	if err := benchutil.WaitHTTP("http://"+addr+"/health", nil, 30*time.Second); err != nil {
		stop()
		return nil, "", nil, fmt.Errorf("docservice: %w (log: %s)", err, logf.Name())
	}
	return cmd, addr, stop, nil
}

// printHeader and printRow lay out the table every row goes into.
func printHeader() {
	fmt.Printf("\n%-44s %7s %6s %7s %7s %9s %9s %9s %8s\n", "path", "time", "MB/s", "client", "doc CPU", "doc RSS",
		"Caddy CPU", "Caddy RSS", "CPU cap")
}

// printRow prints a row. Its CPU cap is the throughput the row's
// processes' CPU time per upload (client, docservice, Caddy) would allow
// if they overlapped perfectly on this machine's cores: a row near its
// cap is bound by CPU, not by waiting.
func printRow(name string, bytes int64, d time.Duration, client, doc, caddy procUse) {
	cpuCap := ""
	if total := client.cpu + doc.cpu + caddy.cpu; client.cpu > 0 {
		cpuCap = fmt.Sprintf("%.0f", float64(bytes)/1e6/(total.Seconds()/float64(runtime.NumCPU())))
	}
	fmt.Printf("%-44s %6.2fs %6.0f %7s %7s %9s %9s %9s %8s\n", name, d.Seconds(), float64(bytes)/1e6/d.Seconds(),
		client.cpuString(), doc.cpuString(), doc.rssString(), caddy.cpuString(), caddy.rssString(), cpuCap)
}

// bigRows measures one large upload, directly and through Caddy, next to
// cp, cp + fsync and the HTTP floor.
func bigRows(ds *docservice, size int64, caddyBin string, runs int) error {
	work := ds.work
	src := filepath.Join(work, "source.pdf")
	fmt.Printf("docservice upload benchmark: a %d MiB PDF, files under %s\n", size>>20, work)
	if err := writeBigPDF(src, size); err != nil {
		return fmt.Errorf("generate the PDF: %w", err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	size = fi.Size()

	// Baselines, best of three: cp, and cp followed by fsync (docservice
	// fsyncs before it names a file, so that is the like-for-like figure).
	cpTime, err := bestOf(3, func() (time.Duration, error) { return timeCp(src, filepath.Join(work, "cp-copy.pdf"), false) })
	if err != nil {
		return err
	}
	cpSyncTime, err := bestOf(3, func() (time.Duration, error) { return timeCp(src, filepath.Join(work, "cp-copy.pdf"), true) })
	if err != nil {
		return err
	}
	// The floor of any HTTP upload on this machine: the same request to a
	// server that reads the body and throws it away.
	discardAddr, stopDiscard, err := discardServer()
	if err != nil {
		return err
	}
	defer stopDiscard()
	floorTime, floorUse, err := uploads(runs, "http://"+discardAddr, "/", src, size, anonymous, "")
	if err != nil {
		return fmt.Errorf("upload to the discarding server: %w", err)
	}

	doc, docAddr, stopDoc, err := ds.start()
	if err != nil {
		return err
	}
	defer stopDoc()
	storage := ds.storage()

	printHeader()
	row := func(name string, d time.Duration, use []procUse) {
		use = append(use, procUse{}, procUse{}, procUse{})
		printRow(name, size, d, use[0], use[1], use[2])
	}
	row("cp (same disk)", cpTime, nil)
	row("cp + fsync (same disk)", cpSyncTime, nil)
	// The discarding server runs in the bench's process: its client
	// column is client and server.
	row("HTTP upload to a discarding server", floorTime, floorUse)

	// Direct.
	// docservice reads the caller from X-User-Id, as the edge sets it.
	asUser := func() (string, error) { return "X-User-Id: " + uuid.NewString() + "\r\n", nil }
	directTime, directUse, err := uploads(runs, "http://"+docAddr, "/api/documents", src, size, asUser, storage,
		doc.Process.Pid)
	if err != nil {
		return fmt.Errorf("direct upload: %w", err)
	}
	row("POST /api/documents, direct", directTime, directUse)

	// Through the edge.
	var edgeTime, edgeFloorTime time.Duration
	if _, err := os.Stat(caddyBin); err != nil {
		fmt.Printf("%-40s skipped: %s not found (build it with `make build` once cmd/caddy is in place)\n",
			"POST /api/documents, via Caddy", caddyBin)
	} else {
		edgeAddr, err := benchutil.FreeAddr()
		if err != nil {
			return err
		}
		// The edge as the repository's Caddyfile sets it up for
		// /api/*: gatehouse_auth checks a token signed by the bench's
		// key (a JWKS file instead of authsvc's URL; token checks cost
		// per request, not per byte), and the plugin gateway routes by
		// manifest, to docservice and to the discarding server (whose
		// manifest claims /api/discard). Each upload is a new user.
		issuer, err := benchutil.NewIssuer(work)
		if err != nil {
			return err
		}
		withToken := func() (string, error) {
			token, err := issuer.TokenFor(uuid.NewString(), uuid.NewString())
			return "Authorization: Bearer " + token + "\r\n", err
		}
		caddyfile := filepath.Join(work, "Caddyfile")
		conf := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	gatehouse_plugins {
		service doc-service http://%s {
			prefix /api/documents
		}
		service discard http://%s
	}
}
http://%s {
	gatehouse_auth {
		strip_only
	}
	handle /api/* {
		gatehouse_auth {
			jwks_file %s
			issuer gatehouse
			audience gatehouse
		}
		gatehouse_plugin_gateway
		respond "no manifest route" 500
	}
}
`, docAddr, discardAddr, edgeAddr, issuer.JWKSPath)
		if err := os.WriteFile(caddyfile, []byte(conf), 0o600); err != nil {
			return err
		}
		caddy := exec.Command(caddyBin, "run", "--config", caddyfile, "--adapter", "caddyfile")
		clog, _ := os.Create(filepath.Join(work, "caddy.log"))
		caddy.Stdout, caddy.Stderr = clog, clog
		caddy.Env = append(os.Environ(), "HOME="+work, "XDG_DATA_HOME="+work, "XDG_CONFIG_HOME="+work)
		if err := caddy.Start(); err != nil {
			return fmt.Errorf("start caddy: %w", err)
		}
		defer func() { _ = caddy.Process.Signal(os.Interrupt); _ = caddy.Wait() }()
		for _, path := range []string{"/api/documents", "/api/discard"} {
			header, err := withToken()
			if err != nil {
				return err
			}
			auth := http.Header{"Authorization": {strings.TrimSuffix(strings.TrimPrefix(header, "Authorization: "), "\r\n")}}
			if err := benchutil.WaitHTTP("http://"+edgeAddr+path, auth, 30*time.Second); err != nil {
				return fmt.Errorf("caddy: %w (log: %s)", err, clog.Name())
			}
		}
		var edgeFloorUse []procUse
		edgeFloorTime, edgeFloorUse, err = uploads(runs, "http://"+edgeAddr, "/api/discard", src, size, withToken, "",
			caddy.Process.Pid)
		if err != nil {
			return fmt.Errorf("upload via caddy to the discarding server: %w", err)
		}
		row("HTTP upload via Caddy to a discarding server", edgeFloorTime,
			[]procUse{edgeFloorUse[0], {}, edgeFloorUse[1]})
		var edgeUse []procUse
		edgeTime, edgeUse, err = uploads(runs, "http://"+edgeAddr, "/api/documents", src, size, withToken, storage,
			doc.Process.Pid, caddy.Process.Pid)
		if err != nil {
			return fmt.Errorf("upload via caddy: %w", err)
		}
		row("POST /api/documents, via Caddy", edgeTime, edgeUse)
	}

	ratios := func(name string, d, floor time.Duration) {
		fmt.Printf("%-16s %4.0f%% of cp's throughput, %4.0f%% of cp + fsync's, %4.0f%% of its HTTP floor's\n", name+":",
			100*cpTime.Seconds()/d.Seconds(), 100*cpSyncTime.Seconds()/d.Seconds(), 100*floor.Seconds()/d.Seconds())
	}
	fmt.Println()
	ratios("direct", directTime, floorTime)
	if edgeTime > 0 {
		ratios("via Caddy", edgeTime, edgeFloorTime)
		ratios("floor via Caddy", edgeFloorTime, floorTime)
	}
	return nil
}

// procUse is what a process used over a row's uploads.
type procUse struct {
	cpu   time.Duration // per upload
	rssKB int64         // peak
}

func (u procUse) cpuString() string {
	if u.cpu == 0 && u.rssKB == 0 {
		return ""
	}
	return fmt.Sprintf("%.2fs", u.cpu.Seconds())
}

func (u procUse) rssString() string {
	if u.rssKB == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f MiB", float64(u.rssKB)/1024)
}

// uploads uploads src to base + path runs times, each with the header
// lines caller makes (a new user each time, so no upload is a duplicate of
// the one before), removing what lands in storage (if not ""), and returns
// the median time and what the bench (the client) and each of pids used,
// in that order.
func uploads(runs int, base, path, src string, size int64, caller func() (string, error), storage string,
	pids ...int) (time.Duration, []procUse, error) {
	pids = append([]int{os.Getpid()}, pids...)
	cpu0 := make([]time.Duration, len(pids))
	for i, pid := range pids {
		resetPeak(pid)
		cpu0[i] = cpuTime(pid)
	}
	var times []time.Duration
	var clientCPU time.Duration
	for range runs {
		header, err := caller()
		if err != nil {
			return 0, nil, err
		}
		self0 := cpuTime(pids[0])
		d, err := upload(base, path, src, size, header)
		clientCPU += cpuTime(pids[0]) - self0 // not removeStored's unlinking below
		if err != nil {
			return 0, nil, err
		}
		times = append(times, d)
		if storage != "" {
			_ = removeStored(storage)
		}
	}
	use := make([]procUse, len(pids))
	for i, pid := range pids {
		use[i] = procUse{cpu: (cpuTime(pid) - cpu0[i]) / time.Duration(runs), rssKB: peakRSSKB(pid)}
	}
	use[0] = procUse{cpu: clientCPU / time.Duration(runs)} // its memory holds nothing of interest
	slices.Sort(times)
	return times[len(times)/2], use, nil
}

// writeBigPDF writes a valid one-page PDF of about size bytes whose content
// stream is spaces (a valid, empty page description).
func writeBigPDF(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var offs []int64
	var pos int64
	w := func(s string) error {
		n, err := io.WriteString(f, s)
		pos += int64(n)
		return err
	}
	obj := func(s string) error {
		offs = append(offs, pos)
		return w(fmt.Sprintf("%d 0 obj\n%s\nendobj\n", len(offs), s))
	}
	streamLen := size - 600
	if err := w("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"); err != nil {
		return err
	}
	obj("<< /Type /Catalog /Pages 2 0 R >>")
	obj("<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
	obj("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>")
	offs = append(offs, pos)
	if err := w(fmt.Sprintf("4 0 obj\n<< /Length %d >>\nstream\n", streamLen)); err != nil {
		return err
	}
	buf := bytes.Repeat([]byte(" "), 1<<20)
	for left := streamLen; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		pos += n
		left -= n
	}
	if err := w("\nendstream\nendobj\n"); err != nil {
		return err
	}
	obj("<< /Title (docservice benchmark) >>")
	xref := pos
	var b strings.Builder
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R /Info 5 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offs)+1, xref)
	if err := w(b.String()); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func bestOf(n int, f func() (time.Duration, error)) (time.Duration, error) {
	var best time.Duration
	for range n {
		d, err := f()
		if err != nil {
			return 0, err
		}
		if best == 0 || d < best {
			best = d
		}
	}
	return best, nil
}

// discardManifest makes the discarding server a plugin behind the edge.
const discardManifest = `{"manifest_version": 1, "id": "discard", "name": "Discard", "version": "1.0.0",
	"access": {"allow_superuser": true},
	"routes": [{"prefix": "/api/discard", "access": "authenticated"}]}`

// anonymous adds no header lines: the discarding server asks for none.
func anonymous() (string, error) { return "", nil }

// discardServer serves, in the bench's process, what an upload costs
// without docservice: it reads the body as docservice does (formdata,
// 1 MiB reads) and throws the file away. Loopback TCP, HTTP and multipart
// framing; no disk, no hashing.
func discardServer() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/plugin/manifest":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, discardManifest)
			return
		case r.Method == http.MethodGet:
			return // 200: up
		case strings.HasPrefix(r.URL.Path, "/api/") && r.Header.Get("X-User-Id") == "":
			http.Error(w, "the guard did not run", http.StatusInternalServerError)
			return
		}
		boundary, err := formdata.Boundary(r.Header.Get("Content-Type"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
			return
		}
		mr := formdata.NewReader(r.Body, boundary, 1<<20)
		buf := make([]byte, 1<<20)
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{p}, buf); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		w.WriteHeader(http.StatusCreated)
	})}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func timeCp(src, dst string, fsync bool) (time.Duration, error) {
	_ = os.Remove(dst)
	defer os.Remove(dst)
	start := time.Now()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp: %v %s", err, out)
	}
	if fsync {
		f, err := os.OpenFile(dst, os.O_RDWR, 0)
		if err != nil {
			return 0, err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// upload sends src as a multipart upload with a Content-Length, the way a
// browser or curl sends a file, and waits for the answer. The file part
// goes with sendfile(2): the benchmark measures the server, so the client
// must not be what limits it (net/http's client copies a request body in
// 32 KiB writes).
func upload(base, path, src string, size int64, header string) (time.Duration, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	boundary := "bench-" + uuid.NewString()
	head := "--" + boundary + "\r\n" +
		`Content-Disposition: form-data; name="file"; filename="benchmark.pdf"` + "\r\n" +
		"Content-Type: application/pdf\r\n\r\n"
	tail := "\r\n--" + boundary + "--\r\n"
	host := strings.TrimPrefix(base, "http://")
	var req strings.Builder
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	fmt.Fprintf(&req, "Content-Type: multipart/form-data; boundary=%s\r\n", boundary)
	fmt.Fprintf(&req, "Content-Length: %d\r\n", int64(len(head))+size+int64(len(tail)))
	req.WriteString(header + "\r\n" + head)

	start := time.Now()
	conn, err := net.Dial("tcp", host)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	// A server that answers early (413, 415) stops reading: the answer
	// is read while the body is still being sent.
	type answer struct {
		res  *http.Response
		body []byte
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			got <- answer{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		got <- answer{res, b, err}
	}()
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return 0, err
	}
	// *net.TCPConn's ReadFrom of an *os.File is sendfile(2).
	if n, err := io.Copy(conn, f); err != nil || n != size {
		a := <-got
		if a.err == nil && a.res.StatusCode != http.StatusCreated {
			return 0, fmt.Errorf("%s: %s", a.res.Status, a.body)
		}
		return 0, fmt.Errorf("send the file: %d of %d bytes: %v", n, size, err)
	}
	if _, err := io.WriteString(conn, tail); err != nil {
		return 0, err
	}
	a := <-got
	d := time.Since(start)
	if a.err != nil {
		return 0, a.err
	}
	if a.res.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("%s: %s", a.res.Status, a.body)
	}
	return d, nil
}

// removeStored deletes the uploaded copies between runs (the benchmark's
// own files; this keeps its disk use to about three copies of the file).
func removeStored(storage string) error {
	entries, err := os.ReadDir(storage)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".pdf") {
			_ = os.Remove(filepath.Join(storage, e.Name()))
		}
	}
	return nil
}

// resetPeak resets a process's VmHWM (Linux ≥ 4.0), so that peakRSS reports
// the peak of the run that follows.
func resetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSSKB is a process's VmHWM in KiB, 0 when unknown.
func peakRSSKB(pid int) int64 { return procStatusKB(pid, "VmHWM:") }

// rssKB is a process's VmRSS in KiB, 0 when unknown.
func rssKB(pid int) int64 { return procStatusKB(pid, "VmRSS:") }

// procStatusKB reads a field in kB of /proc/<pid>/status.
func procStatusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// cpuTime is a process's user + system time so far (Linux), 0 when unknown.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	// USER_HZ is 100 on every Linux Go supports.
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// buildDocservice builds docservice from this checkout, so the figures are
// those of the code beside the bench, never of a stale bin/docservice.
func buildDocservice(work string) (string, error) {
	out := filepath.Join(work, "docservice")
	if b, err := exec.Command("go", "build", "-o", out, "./cmd/docservice").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build docservice: %v %s", err, b)
	}
	return out, nil
}
