// Package cookie removes the edge's access-token cookie from a request's
// Cookie headers, so that an upstream not meant to hold the user's
// credentials (docservice, plugins) never receives it. gatehouse_auth and
// the plugin gateway share it so that both drop exactly the same thing.
package cookie

import (
	"net/http"
	"strings"
)

// Remove drops every cookie called name from the request's Cookie
// headers (HTTP/2 may split them over several), keeping the others; a
// header left empty goes. Names compare exactly, as net/http reads them.
func Remove(h http.Header, name string) {
	vals := h["Cookie"]
	if len(vals) == 0 {
		return
	}
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		var kept []string
		for part := range strings.SplitSeq(v, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			if n, _, _ := strings.Cut(p, "="); strings.TrimSpace(n) == name {
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, "; "))
		}
	}
	if len(out) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = out
}
