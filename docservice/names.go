package docservice

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxNameBytes bounds one file or folder name. Most file systems allow 255
// bytes per component; 200 leaves room for a collision suffix (" (123)")
// and for tools that append their own extensions.
const MaxNameBytes = 200

// SanitizeName makes s safe as one path component on every file system the
// tree may live on or be copied to (ext4, APFS, NTFS, SMB shares): no
// separators or characters Windows refuses, no control characters, no
// leading dots (hidden files, "..") or spaces, no trailing dots or spaces
// (Windows strips them, so two names would collide), no reserved device
// names, at most MaxNameBytes of UTF-8 in Unicode normal form C. It never
// returns "": fallback is
// used when nothing is left.
func SanitizeName(s, fallback string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\t':
			b.WriteByte(' ')
		case r == utf8.RuneError, unicode.IsControl(r):
			// Invalid UTF-8 and control characters (NUL, newlines, DEL).
			continue
		case strings.ContainsRune(`/\:*?"<>|`, r), unicode.IsSpace(r):
			b.WriteByte(' ') // separators, Windows' refusals, exotic spaces
		case unicode.Is(unicode.Cf, r):
			// Format characters (bidi overrides, zero-width) can make a
			// name display as another one ("invoice\u202Efdp.exe").
			continue
		default:
			b.WriteRune(r)
		}
	}
	// One spelling per name: "é" typed on one system and decomposed
	// ("e" + U+0301) on another must be the same name here, or two
	// categories or files would look the same (and be the same on a
	// normalisation-insensitive file system such as APFS). Composed after
	// the characters above are dropped: one between "e" and U+0301 (a
	// zero-width space, a NUL) kept the two apart.
	name := strings.Join(strings.Fields(norm.NFC.String(b.String())), " ")
	name = strings.TrimLeft(name, ". ")
	name = truncateUTF8(name, MaxNameBytes)
	name = strings.TrimRight(name, ". ")
	if name == "" {
		return fallback
	}
	if isReservedWindowsName(name) {
		// Within the limit still: "CON." and 196 more bytes.
		name = strings.TrimRight(truncateUTF8("_"+name, MaxNameBytes), ". ")
	}
	return name
}

// SanitizePDFName makes an uploaded file name into the stored one: the
// sanitised stem plus ".pdf", MaxNameBytes in all.
func SanitizePDFName(s string) string {
	// The extension is looked for before sanitising (".pdf" alone is no
	// name) and, if not found, after it: what the sanitising drops after
	// the extension ("x.pdf\u200b") must not hide it and make "x.pdf.pdf".
	// Trailing dots and spaces go first ("x.pdf.").
	s = strings.TrimRight(strings.TrimSpace(s), ". ")
	cut := len(s) >= 4 && strings.EqualFold(s[len(s)-4:], ".pdf")
	if cut {
		s = s[:len(s)-4]
	}
	stem := SanitizeName(truncateUTF8(s, 4*MaxNameBytes), "")
	if !cut && len(stem) >= 4 && strings.EqualFold(stem[len(stem)-4:], ".pdf") {
		stem = stem[:len(stem)-4]
	}
	stem = strings.TrimRight(truncateUTF8(stem, MaxNameBytes-len(".pdf")), ". ")
	if stem == "" {
		stem = "document"
	}
	if isReservedWindowsName(stem) {
		stem = "_" + stem
	}
	return stem + ".pdf"
}

// withSuffix turns "name.pdf" into "name (n).pdf", keeping the result within
// MaxNameBytes + the suffix room SanitizeName left.
func withSuffix(name string, n int) string {
	stem, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		stem, ext = name[:i], name[i:]
	}
	return stem + " (" + strconv.Itoa(n) + ")" + ext
}

// truncateUTF8 cuts s to at most n bytes at a rune boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// isReservedWindowsName reports device names Windows refuses as a file name
// whatever the extension: CON, PRN, AUX, NUL, COM0-9, LPT0-9 (also with the
// superscript digits Windows treats the same way), as Microsoft's "Naming
// Files, Paths, and Namespaces" lists them.
func isReservedWindowsName(name string) bool {
	base := name
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	base = strings.ToUpper(strings.TrimRight(base, " "))
	switch base {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if len(base) >= 4 && (strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT")) {
		switch base[3:] {
		case "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³":
			return true
		}
	}
	return false
}
