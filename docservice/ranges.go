package docservice

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Range header is answered by http.ServeContent; what is here mends what
// it gets wrong: the request before it sees it, its refusals after.

// ifRangeHolds reports whether a request's Range applies: it has no If-Range,
// or its If-Range names the current representation (the strong ETag, or
// the file's modification time to the second). Otherwise the whole file is
// the answer (RFC 9110 §13.1.5), so no limit on ranges applies either.
func ifRangeHolds(r *http.Request, etag string, modtime time.Time) bool {
	ir := r.Header.Get("If-Range")
	switch {
	case ir == "":
		return true
	case strings.HasPrefix(ir, `"`):
		return ir == etag
	}
	t, err := http.ParseTime(ir)
	return err == nil && modtime.Truncate(time.Second).Equal(t)
}

// tidyRange rewrites the byte ranges ServeContent misreads, keeping the
// others as they were:
//   - a zero-length suffix ("-0") is unsatisfiable (RFC 9110 §14.1.3);
//     ServeContent answered 206 with an empty body and the impossible
//     Content-Range "bytes size-(size-1)/size";
//   - a last position too large for int64 means "to the end" like any
//     last position past the end; ServeContent refused the request (416);
//   - a suffix length too large for int64 is the whole file;
//   - a first position too large for int64 is past the end.
//
// An unsatisfiable range is spelled "size-", which ServeContent skips, and
// answers 416 with "bytes */size" when no range is left.
func tidyRange(h string, size int64) string {
	const unit = "bytes="
	if !strings.HasPrefix(h, unit) {
		return h
	}
	specs := strings.Split(h[len(unit):], ",")
	past := strconv.FormatInt(size, 10) + "-"
	changed := false
	for i, spec := range specs {
		first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		if !ok || (first == "" && last == "") || !digitsOrEmpty(first) || !digitsOrEmpty(last) {
			continue // malformed: ServeContent refuses it as before
		}
		switch {
		case first == "" && strings.Trim(last, "0") == "":
			specs[i] = past
		case first == "" && !fitsInt64(last):
			specs[i] = "0-" // a suffix longer than the file is all of it
		case first != "" && !fitsInt64(first):
			specs[i] = past
		case first != "" && last != "" && !fitsInt64(last):
			specs[i] = first + "-"
		default:
			continue
		}
		changed = true
	}
	if !changed {
		return h
	}
	return unit + strings.Join(specs, ",")
}

func digitsOrEmpty(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func fitsInt64(digits string) bool {
	_, err := strconv.ParseInt(digits, 10, 64)
	return err == nil
}

// jsonErrors gives http.ServeContent's refusals (416 for a Range it cannot
// serve, 412 for a failed If-Match) the {"detail": ...} shape of every
// other answer instead of plain text, and drops Content-Disposition from
// them: a browser would save the error as the PDF.
type jsonErrors struct {
	http.ResponseWriter
	failed int // the refusal's status
	said   bool
}

func (w *jsonErrors) WriteHeader(code int) {
	if code >= 400 {
		w.failed = code
		w.Header().Set("Content-Type", "application/json")
		w.Header().Del("Content-Disposition")
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write sends a refusal's message (http.Error writes it in one call) as
// JSON, anything else as it is.
func (w *jsonErrors) Write(p []byte) (int, error) {
	if w.failed == 0 {
		return w.ResponseWriter.Write(p)
	}
	w.said = true
	b, err := json.Marshal(map[string]string{"detail": strings.TrimSpace(string(p))})
	if err != nil {
		return 0, err
	}
	if _, err := w.ResponseWriter.Write(append(b, '\n')); err != nil {
		return 0, err
	}
	return len(p), nil
}

// finish gives a refusal that came without a message (412 for a failed
// If-Match or If-Unmodified-Since) one.
func (w *jsonErrors) finish() {
	if w.failed != 0 && !w.said {
		_, _ = w.Write([]byte(strings.ToLower(http.StatusText(w.failed))))
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *jsonErrors) Unwrap() http.ResponseWriter { return w.ResponseWriter }
