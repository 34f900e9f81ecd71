// Command bench-docservice measures docservice's upload path (`make
// bench-docservice`): a 1 GiB PDF uploaded directly to docservice and
// through Caddy, each next to a `cp` of the same file on the same disk, with
// the peak memory (VmHWM) of docservice and Caddy. It prints figures; it
// never passes or fails. Targets (issue 5): peak RSS under 64 MiB each,
// throughput at least half of cp's.
//
// The file is a real PDF (one page whose content stream is ~1 GiB of
// spaces), so it goes through every step an upload takes: multipart
// streaming, SHA-256, fsync, the structural check (for a file this large,
// the bounded trailer/xref check), link into place and the database row.
//
// docservice runs as its own process (bin/docservice, or built into a
// temporary directory when missing) on a fresh database of the private
// cluster, or of DATABASE_URL's server. The edge row uses bin/caddy (the
// Gatehouse Caddy build) with a plain reverse_proxy site: token checks cost
// per request, not per byte, and need authsvc; the row is skipped with a
// message when bin/caddy does not exist. Everything is written under
// .data/bench-docservice (at most about three copies of the file at once)
// and removed at the end.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/internal/benchutil"
)

func main() {
	sizeMB := flag.Int("size-mb", 1024, "size of the uploaded PDF in MiB")
	caddyBin := flag.String("caddy", filepath.Join("bin", "caddy"), "the Caddy binary for the edge row")
	keep := flag.Bool("keep", false, "keep .data/bench-docservice afterwards (for inspection)")
	flag.Parse()
	if err := run(int64(*sizeMB)<<20, *caddyBin, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench-docservice:", err)
		os.Exit(1)
	}
}

func run(size int64, caddyBin string, keep bool) error {
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
	floorTime, err := discardFloor(src, size)
	if err != nil {
		return err
	}

	dbURL, cleanupDB, err := benchutil.Database("bench_docservice")
	if err != nil {
		return err
	}
	defer cleanupDB()

	bin, err := docserviceBinary(work)
	if err != nil {
		return err
	}
	docAddr, err := benchutil.FreeAddr()
	if err != nil {
		return err
	}
	cfgDir := filepath.Join(work, "config")
	_ = os.MkdirAll(cfgDir, 0o750)
	limitMB := size>>20 + 16
	if err := os.WriteFile(filepath.Join(cfgDir, "doc-service.json"),
		[]byte(fmt.Sprintf(`{"max_pdf_size_mb": %d}`, limitMB)), 0o600); err != nil {
		return err
	}
	storage := filepath.Join(work, "storage")
	doc := exec.Command(bin, "serve")
	doc.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "DOCSERVICE_ADDR="+docAddr, "DATA_DIR="+work,
		"STORAGE_DIR="+storage, "APP_CONFIG_DIR="+cfgDir, "WATCH_DIR="+filepath.Join(work, "watch"))
	logf, _ := os.Create(filepath.Join(work, "docservice.log"))
	doc.Stdout, doc.Stderr = logf, logf
	if err := doc.Start(); err != nil {
		return fmt.Errorf("start docservice: %w", err)
	}
	defer func() { _ = doc.Process.Signal(os.Interrupt); _ = doc.Wait() }()
	if err := benchutil.WaitHTTP("http://"+docAddr+"/health", nil, 30*time.Second); err != nil {
		return fmt.Errorf("docservice: %w (log: %s)", err, logf.Name())
	}

	fmt.Printf("\n%-34s %10s %12s %16s %14s\n", "path", "time", "MB/s", "docservice RSS", "Caddy RSS")
	row := func(name string, d time.Duration, docRSS, caddyRSS string) {
		fmt.Printf("%-34s %9.2fs %12.0f %16s %14s\n", name, d.Seconds(), float64(size)/1e6/d.Seconds(), docRSS, caddyRSS)
	}
	row("cp (same disk)", cpTime, "", "")
	row("cp + fsync (same disk)", cpSyncTime, "", "")
	row("HTTP upload to a discarding server", floorTime, "", "")

	// Direct.
	resetPeak(doc.Process.Pid)
	d, err := upload("http://"+docAddr, src, size, uuid.NewString())
	if err != nil {
		return fmt.Errorf("direct upload: %w", err)
	}
	row("POST /api/documents, direct", d, peakRSS(doc.Process.Pid), "")
	_ = removeStored(storage)
	directTime := d

	// Through the edge.
	var edgeTime time.Duration
	if _, err := os.Stat(caddyBin); err != nil {
		fmt.Printf("%-34s skipped: %s not found (build it with `make build` once cmd/caddy is in place)\n",
			"POST /api/documents, via Caddy", caddyBin)
	} else {
		edgeAddr, err := benchutil.FreeAddr()
		if err != nil {
			return err
		}
		caddyfile := filepath.Join(work, "Caddyfile")
		// The edge would set X-User-Id from a verified token; here a fixed
		// user is set the same way (header_up), after the same proxying.
		user := uuid.NewString()
		conf := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
}
http://%s {
	request_body {
		max_size 0
	}
	reverse_proxy %s {
		header_up X-User-Id %s
	}
}
`, edgeAddr, docAddr, user)
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
		if err := benchutil.WaitHTTP("http://"+edgeAddr+"/health", nil, 30*time.Second); err != nil {
			return fmt.Errorf("caddy: %w (log: %s)", err, clog.Name())
		}
		resetPeak(doc.Process.Pid)
		resetPeak(caddy.Process.Pid)
		d, err := upload("http://"+edgeAddr, src, size, "")
		if err != nil {
			return fmt.Errorf("upload via caddy: %w", err)
		}
		row("POST /api/documents, via Caddy", d, peakRSS(doc.Process.Pid), peakRSS(caddy.Process.Pid))
		_ = removeStored(storage)
		edgeTime = d
	}

	fmt.Printf("\ndirect: %.0f%% of cp's throughput, %.0f%% of cp+fsync's, %.0f%% of the HTTP floor's",
		100*cpTime.Seconds()/directTime.Seconds(), 100*cpSyncTime.Seconds()/directTime.Seconds(),
		100*floorTime.Seconds()/directTime.Seconds())
	if edgeTime > 0 {
		fmt.Printf("; via Caddy: %.0f%% of cp's, %.0f%% of cp+fsync's", 100*cpTime.Seconds()/edgeTime.Seconds(),
			100*cpSyncTime.Seconds()/edgeTime.Seconds())
	}
	fmt.Println()
	fmt.Println("RSS is each process's peak (VmHWM) during that upload; targets: < 64 MiB each, throughput ≥ 50% of cp.")
	return nil
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

// discardFloor uploads src to an in-process server that only reads the
// body: loopback TCP, HTTP and multipart framing, no disk, no hashing.
func discardFloor(src string, size int64) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mr, err := r.MultipartReader()
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			_, _ = io.Copy(io.Discard, p)
		}
		w.WriteHeader(http.StatusCreated)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	return upload("http://"+ln.Addr().String(), src, size, "")
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

// upload streams src as a multipart upload with a known Content-Length,
// the way a browser sends a file.
func upload(base, src string, size int64, userID string) (time.Duration, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", `form-data; name="file"; filename="benchmark.pdf"`)
	h.Set("Content-Type", "application/pdf")
	if _, err := mw.CreatePart(h); err != nil {
		return 0, err
	}
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	body := io.MultiReader(&head, f, strings.NewReader(tail))
	req, err := http.NewRequest("POST", base+"/api/documents", body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = int64(head.Len()) + size + int64(len(tail))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if userID != "" {
		req.Header.Set("X-User-Id", userID)
	}
	client := &http.Client{Transport: &http.Transport{WriteBufferSize: 256 << 10, DisableCompression: true}}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	d := time.Since(start)
	if res.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("%s: %s", res.Status, b)
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

func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "n/a"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return "n/a"
			}
			return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		}
	}
	return "n/a"
}

// docserviceBinary is bin/docservice, or a fresh build when it is missing.
func docserviceBinary(work string) (string, error) {
	if p, err := filepath.Abs(filepath.Join("bin", "docservice")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	out := filepath.Join(work, "docservice")
	if b, err := exec.Command("go", "build", "-o", out, "./cmd/docservice").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build docservice: %v %s", err, b)
	}
	return out, nil
}
