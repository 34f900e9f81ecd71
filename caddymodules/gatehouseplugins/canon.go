package gatehouseplugins

import (
	"net/url"
	"path"
	"strings"
	"unicode/utf8"
)

// canonicalPath returns the path the gateway matches u against, and
// whether u is already spelled that way. A path is canonical when it has
// no dot segments, no empty segments, no backslash or control character,
// no encoded '/' or '\', nothing left percent-encoded after one round of
// decoding (double encoding), and nothing but valid UTF-8: an overlong
// encoding (%c0%ae for '.', %c0%af for '/') is a dot or a slash to some
// lenient decoders and a plain byte to us.
//
// The gateway refuses a request whose spelling is not canonical when any
// reading of it lands on a plugin or the gateway's own API: the upstream,
// or a proxy after us, could resolve such a spelling differently from the
// edge, which is how a path reaches another plugin or skips an access
// rule. Browsers and HTTP libraries send canonical paths, so only odd
// clients are refused.
func canonicalPath(u *url.URL) (string, bool) {
	p := u.Path
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	ok := c == u.Path && !strings.Contains(u.Path, "\\") && !hasEscape(u.Path) && !hasControl(u.Path) &&
		!hasParamDotSegment(u.Path) && utf8.ValidString(u.Path)
	if ok && u.RawPath != "" {
		raw := strings.ToLower(u.RawPath)
		ok = !strings.Contains(raw, "%2f") && !strings.Contains(raw, "%5c")
	}
	return c, ok
}

// readings returns every path a non-canonical u could be taken for: the
// path as it is, then decoded again up to three times, and each of those
// cleaned with backslashes as ordinary characters or as slashes, with
// overlong UTF-8 read strictly or leniently, and with ";parameters" kept or
// cut: every way some server behind us might resolve it.
func readings(u *url.URL) []string {
	out := []string{u.Path}
	p := u.Path
	for range 4 {
		variants := []string{p}
		if l := lenientUTF8(p); l != p {
			variants = append(variants, l)
		}
		for _, v := range variants { // the one or two above; range reads the slice once
			if strings.Contains(v, "\\") {
				variants = append(variants, strings.ReplaceAll(v, "\\", "/"))
			}
		}
		for _, q := range variants {
			if q == "" || q[0] != '/' {
				q = "/" + q
			}
			out = append(out, path.Clean(q), path.Clean(stripParams(q)))
		}
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			break
		}
		p = d
	}
	return out
}

// lenientUTF8 reads p as a lenient (pre-RFC 3629) decoder would: at each
// byte that does not start valid UTF-8, a lead byte 0xC0–0xFD takes the low
// bits of the one to five bytes after it, whatever they are, and a result
// of '.', '/' or '\' is read as that character. That covers every overlong
// spelling (%c0%ae, %e0%80%ae, ... %fc%80%80%80%80%ae) and the sloppier
// %c1%1c. Valid UTF-8 is left alone.
func lenientUTF8(p string) string {
	if utf8.ValidString(p) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); {
		c := p[i]
		n := 0 // bytes after the lead byte
		switch {
		case c >= 0xc0 && c <= 0xdf:
			n = 1
		case c >= 0xe0 && c <= 0xef:
			n = 2
		case c >= 0xf0 && c <= 0xf7:
			n = 3
		case c >= 0xf8 && c <= 0xfb:
			n = 4
		case c >= 0xfc && c <= 0xfd:
			n = 5
		}
		if r, size := utf8.DecodeRuneInString(p[i:]); n > 0 && i+n < len(p) && r == utf8.RuneError && size == 1 {
			v := uint32(c) & (0x3f >> n)
			for k := 1; k <= n; k++ {
				v = v<<6 | uint32(p[i+k]&0x3f)
			}
			if v == '.' || v == '/' || v == '\\' {
				b.WriteByte(byte(v))
				i += 1 + n
				continue
			}
		}
		b.WriteByte(c)
		i++
	}
	return b.String()
}

// hasParamDotSegment reports a segment that is a dot segment once its
// ";parameters" are cut off ("..;x", ".;"): servlet containers and others
// strip path parameters before resolving dot segments, so "/a/..;/b"
// reaches "/b" there while path.Clean keeps it under "/a".
func hasParamDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if before, _, cut := strings.Cut(seg, ";"); cut && (before == "." || before == "..") {
			return true
		}
	}
	return false
}

// stripParams cuts the ";parameters" off every segment of p.
func stripParams(p string) string {
	if !strings.Contains(p, ";") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		segs[i], _, _ = strings.Cut(seg, ";")
	}
	return strings.Join(segs, "/")
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// hasEscape reports whether s still holds a %XX escape: a path decoded
// once that would decode again.
func hasEscape(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0 && i+2 < len(s); {
		if isHex(s[i+1]) && isHex(s[i+2]) {
			return true
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
