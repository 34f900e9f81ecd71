package docservice

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// What the edge polls (health, the manifest) is logged at debug level when
// it succeeds; other requests at info.
func TestPollsLoggedAtDebug(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(prev)

	e := newEnv(t)
	u := newUser()
	for _, c := range []struct {
		user *user
		path string
		want string
	}{
		{nil, "/health", "level=DEBUG"},
		{nil, "/plugin/manifest", "level=DEBUG"},
		{&u, "/api/documents", "level=INFO"},
	} {
		buf.Reset()
		if r := e.do(c.user, "GET", c.path, nil, nil); r.status != http.StatusOK {
			t.Fatalf("%s: %d", c.path, r.status)
		}
		var line string
		for l := range strings.SplitSeq(buf.String(), "\n") {
			if strings.Contains(l, "msg=request ") {
				line = l
			}
		}
		if !strings.Contains(line, c.want) {
			t.Errorf("%s logged %q, want %s", c.path, line, c.want)
		}
	}
}
