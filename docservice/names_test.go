package docservice

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestSanitizeName(t *testing.T) {
	cases := map[string]string{
		"Invoice 2024":          "Invoice 2024",
		"../..":                 "fallback",
		"..":                    "fallback",
		".hidden":               "hidden",
		"  spaced  out  ":       "spaced out",
		"trailing...":           "trailing",
		"a/b\\c:d*e?f\"g<h>i|j": "a b c d e f g h i j",
		"tab\there":             "tab here",
		"ctl\x00\x01\x1f\x7f":   "ctl",
		"CON":                   "_CON",
		"con.txt":               "_con.txt",
		"COM1.tar.gz":           "_COM1.tar.gz",
		"LPT9":                  "_LPT9",
		"COM10":                 "COM10",
		"CONSOLE":               "CONSOLE",
		"bad\xffutf8":           "badutf8",
		"":                      "fallback",
		"\u202eevil":            "evil",
		"Ünïcødé ok":            "Ünïcødé ok",
		"Cafe\u0301":            "Caf\u00e9", // decomposed é: one spelling (NFC)
		// Characters dropped between a letter and its accent leave the
		// decomposed spelling, which must be composed too.
		"Cafe\u200b\u0301": "Caf\u00e9",
		"Cafe\x00\u0301":   "Caf\u00e9",
		"COM0.pdf":         "_COM0.pdf",
		"lpt0":             "_lpt0",
	}
	for in, want := range cases {
		if got := SanitizeName(in, "fallback"); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("日本", 200)
	got := SanitizeName(long, "x")
	if len(got) > MaxNameBytes || !utf8.ValidString(got) || got == "" {
		t.Errorf("long name: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func TestSanitizePDFName(t *testing.T) {
	cases := map[string]string{
		"report.pdf":  "report.pdf",
		"report.PDF":  "report.pdf",
		"report":      "report.pdf",
		"report.txt":  "report.txt.pdf",
		".pdf":        "document.pdf",
		"nul.pdf":     "_nul.pdf",
		"x.pdf.pdf":   "x.pdf.pdf",
		"  a . pdf  ": "a . pdf.pdf",
		// What sanitising drops after the extension does not hide it.
		"x.pdf.":      "x.pdf",
		"x.pdf . ":    "x.pdf",
		"x.pdf\u200b": "x.pdf",
		"x.PDF\x00":   "x.pdf",
		"CON.pdf.":    "_CON.pdf",
		"\u202e.pdf":  "document.pdf",
	}
	for in, want := range cases {
		if got := SanitizePDFName(in); got != want {
			t.Errorf("SanitizePDFName(%q) = %q, want %q", in, got, want)
		}
	}
	got := SanitizePDFName(strings.Repeat("é", 500) + ".pdf")
	if len(got) > MaxNameBytes || !strings.HasSuffix(got, ".pdf") || !utf8.ValidString(got) {
		t.Errorf("long: %q (%d bytes)", got, len(got))
	}
	if got := withSuffix("a.pdf", 3); got != "a (3).pdf" {
		t.Errorf("withSuffix: %q", got)
	}
}

func TestLoadConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := LoadConfig(env(map[string]string{"DATABASE_URL": "postgres://x@h/db", "DATA_DIR": "/srv/gh"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8001" || c.StorageDir != "/srv/gh/documents" || c.WatchDir != "/srv/gh/watch" || c.AppConfigDir != "/srv/gh/config" {
		t.Fatalf("defaults: %+v", c)
	}
	// Each variable set wins over DATA_DIR's default.
	c, err = LoadConfig(env(map[string]string{"DATABASE_URL": "postgres://x@h/db", "DATA_DIR": "/srv/gh",
		"DOCSERVICE_ADDR": "0.0.0.0:9001", "STORAGE_DIR": "/mnt/docs", "WATCH_DIR": "/mnt/scans",
		"APP_CONFIG_DIR": "/etc/gatehouse"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != "postgres://x@h/db" || c.Addr != "0.0.0.0:9001" || c.StorageDir != "/mnt/docs" ||
		c.WatchDir != "/mnt/scans" || c.AppConfigDir != "/etc/gatehouse" {
		t.Fatalf("explicit values: %+v", c)
	}
	_, err = LoadConfig(env(map[string]string{"DOCSERVICE_ADDR": "nonsense", "STORAGE_DIR": "/a", "WATCH_DIR": "/a/in"}))
	for _, name := range []string{"DATABASE_URL", "DOCSERVICE_ADDR", "WATCH_DIR"} {
		if err == nil || !strings.Contains(err.Error(), name+":") {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// Whatever a client sends, a stored name is one safe path component, and
// sanitising it again changes nothing (one spelling per name).
func FuzzSanitizeName(f *testing.F) {
	for _, s := range []string{"a.pdf", "../../x", "CON.txt", "Cafe\u200b\u0301", " .. ", "a\x00b", "é" + strings.Repeat("x", 300),
		"CON." + strings.Repeat("x", 300), "com¹." + strings.Repeat("é", 150)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, name := range []string{SanitizeName(s, "fallback"), SanitizePDFName(s)} {
			switch {
			case !utf8.ValidString(name), name == "", name == ".", name == "..":
				t.Fatalf("%q → %q", s, name)
			case len(name) > MaxNameBytes:
				t.Fatalf("%q → %q: %d bytes", s, name, len(name))
			case strings.ContainsAny(name, "/\\:*?\"<>|\x00"), strings.IndexFunc(name, unicode.IsControl) >= 0:
				t.Fatalf("%q → %q: a separator or control character", s, name)
			case strings.HasPrefix(name, ".") || strings.HasPrefix(name, " ") ||
				strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
				t.Fatalf("%q → %q: leading or trailing dot or space", s, name)
			case isReservedWindowsName(name):
				t.Fatalf("%q → %q: a Windows device name", s, name)
			case !norm.NFC.IsNormalString(name):
				t.Fatalf("%q → %q: not in normal form C", s, name)
			}
		}
		if once := SanitizeName(s, "fallback"); SanitizeName(once, "other") != once {
			t.Fatalf("%q → %q → %q", s, once, SanitizeName(once, "other"))
		}
		if once := SanitizePDFName(s); SanitizePDFName(once) != once {
			t.Fatalf("%q → %q → %q", s, once, SanitizePDFName(once))
		}
	})
}
