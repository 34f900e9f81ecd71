package docservice

import "testing"

func TestTidyRange(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"bytes=0-99", "bytes=0-99"},
		{"bytes=-0", "bytes=1000-"},
		{"bytes= -0 ,5-9", "bytes=1000-,5-9"},
		{"bytes=-99999999999999999999", "bytes=0-"},
		{"bytes=7-99999999999999999999", "bytes=7-"},
		{"bytes=99999999999999999999-", "bytes=1000-"},
		{"bytes=99999999999999999999-100000000000000000000", "bytes=1000-"},
		// Malformed or other units: left for ServeContent to refuse.
		{"bytes=x-0", "bytes=x-0"},
		{"bytes=-", "bytes=-"},
		{"bytes=-0x", "bytes=-0x"},
		{"items=-0", "items=-0"},
		{"", ""},
	} {
		if got := tidyRange(c.in, 1000); got != c.want {
			t.Errorf("tidyRange(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
