package docservice

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Range header is answered by http.ServeContent; the two functions here
// mend what it gets wrong, before it sees the request.

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
	changed := false
	for i, spec := range specs {
		first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		if !ok || (first == "" && last == "") || !digitsOrEmpty(first) || !digitsOrEmpty(last) {
			continue // malformed: ServeContent refuses it as before
		}
		past := strconv.FormatInt(size, 10) + "-"
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
