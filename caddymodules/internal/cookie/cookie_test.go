package cookie

import (
	"net/http"
	"slices"
	"testing"
)

func TestRemove(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want []string // nil: header removed
	}{
		{[]string{"at=x"}, nil},
		{[]string{"at=x; b=2"}, []string{"b=2"}},
		{[]string{"a=1;at=x;  c=3"}, []string{"a=1; c=3"}},
		{[]string{"at=x", "a=1"}, []string{"a=1"}},
		{[]string{"AT=x; atx=1; at"}, []string{"AT=x; atx=1"}},
		{[]string{"a=1"}, []string{"a=1"}},
		// Others are passed on as sent, even those net/http would not
		// parse (a plugin may read them its own way).
		{[]string{`at=x; odd="a b"; é=1`}, []string{`odd="a b"; é=1`}},
	} {
		h := http.Header{"Cookie": tt.in}
		Remove(h, "at")
		got, ok := h["Cookie"]
		if tt.want == nil && ok || !slices.Equal(got, tt.want) {
			t.Errorf("%q: %q (present %v), want %q", tt.in, got, ok, tt.want)
		}
	}
}
