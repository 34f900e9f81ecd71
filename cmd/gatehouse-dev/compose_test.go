package main

import (
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/authsvc"
	"github.com/gatehouse/gatehouse/docservice"
)

// composeFile is the part of compose.yaml the test reads.
type composeFile struct {
	Services map[string]struct {
		Build       any               `yaml:"build"`
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

var interpolation = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)(?::([-?])([^}]*))?\}`)

// interpolate expands ${VAR}, ${VAR:-default} and ${VAR:?message} as
// docker compose does, from env; a missing required variable fails.
func interpolate(t *testing.T, s string, env map[string]string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		p := interpolation.FindStringSubmatch(m)
		if v := env[p[1]]; v != "" {
			return v
		}
		switch p[2] {
		case "-":
			return p[3]
		case "?":
			t.Errorf("%s is required: %s", p[1], p[3])
		}
		return ""
	})
}

// compose.yaml runs the stack in containers. No Docker engine runs here,
// so this checks what can be checked without one: the services' settings
// pass their own configuration checks; only Caddy publishes ports; Caddy's
// upstreams and the database URL name the services and ports they run
// on; every variable is one its reader documents; the images hold the
// commands, the directories mounted as volumes, and nothing of .data.
func TestComposeFile(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("../../" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var c composeFile
	if err := yaml.Unmarshal([]byte(read("compose.yaml")), &c); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"POSTGRES_PASSWORD": "s3cret"}
	envOf := func(svc string) map[string]string {
		out := map[string]string{}
		for k, v := range c.Services[svc].Environment {
			out[k] = interpolate(t, v, env)
		}
		return out
	}
	for _, name := range []string{"db", "authsvc", "docservice", "caddy"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("no %s service", name)
		}
	}

	auth, doc, edge, db := envOf("authsvc"), envOf("docservice"), envOf("caddy"), envOf("db")
	getenv := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if _, err := authsvc.LoadConfig(getenv(auth)); err != nil {
		t.Errorf("authsvc's environment: %v", err)
	}
	if _, err := docservice.LoadConfig(getenv(doc)); err != nil {
		t.Errorf("docservice's environment: %v", err)
	}

	for name, svc := range c.Services {
		if len(svc.Ports) > 0 && name != "caddy" {
			t.Errorf("%s publishes ports %v: only the edge may be reachable from outside", name, svc.Ports)
		}
	}
	port := func(addr string) string {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("%q: %v", addr, err)
		}
		return p
	}
	if want := "authsvc:" + port(auth["AUTHSVC_ADDR"]); edge["AUTHSVC_UPSTREAM"] != want {
		t.Errorf("caddy's AUTHSVC_UPSTREAM %q, want %q", edge["AUTHSVC_UPSTREAM"], want)
	}
	if want := "docservice:" + port(doc["DOCSERVICE_ADDR"]); edge["DOCSERVICE_UPSTREAM"] != want {
		t.Errorf("caddy's DOCSERVICE_UPSTREAM %q, want %q", edge["DOCSERVICE_UPSTREAM"], want)
	}
	for _, svc := range []map[string]string{auth, doc} {
		u, err := url.Parse(svc["DATABASE_URL"])
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := u.User.Password()
		if u.Hostname() != "db" || u.Port() != "5432" || u.User.Username() != db["POSTGRES_USER"] || pw != env["POSTGRES_PASSWORD"] ||
			strings.TrimPrefix(u.Path, "/") != db["POSTGRES_DB"] {
			t.Errorf("DATABASE_URL %q does not name the db service's server, user, password and database", svc["DATABASE_URL"])
		}
	}
	for _, v := range []string{"JWT_ISSUER", "JWT_AUDIENCE"} {
		if auth[v] != edge[v] {
			t.Errorf("%s: authsvc %q, caddy %q: the edge would refuse every token", v, auth[v], edge[v])
		}
	}

	// Every variable is one its reader reads: the README's table for the
	// services, the Caddyfile's {$VAR} for the edge.
	documented := map[string][]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| ([a-z, ]+) \\|").FindAllStringSubmatch(read("README.md"), -1) {
		documented[m[1]] = strings.Split(m[2], ", ")
	}
	for _, svc := range []string{"authsvc", "docservice"} {
		for k := range c.Services[svc].Environment {
			if users := documented[k]; !slices.Contains(users, svc) && !slices.Contains(users, "all") {
				t.Errorf("%s's %s is not among its variables in README.md's Configuration", svc, k)
			}
		}
	}
	caddyfile := read("Caddyfile")
	for k := range c.Services["caddy"].Environment {
		if !strings.Contains(caddyfile, "{$"+k) && !strings.Contains(caddyfile, "_{$"+k) {
			t.Errorf("caddy's %s is not a variable of the Caddyfile", k)
		}
	}

	// The images: the services' one builds the commands compose runs and
	// owns the directories mounted as volumes; Caddy's is xcaddy.Dockerfile.
	dockerfile := read("Dockerfile")
	build := regexp.MustCompile(`(?m)^RUN CGO_ENABLED=0 go build .*$`).FindString(dockerfile)
	// Directories made under /out/root in the build stage, which the final
	// stage copies to / for the user that runs the services.
	var owned []string
	if m := regexp.MustCompile(`(?m)^RUN mkdir -p (/out/root/.*)$`).FindStringSubmatch(dockerfile); m != nil {
		owned = strings.Fields(m[1])
	}
	if !strings.Contains(dockerfile, "COPY --from=build --chown=65532:65532 /out/root/ /") || !strings.Contains(dockerfile, "USER 65532:65532") {
		t.Error("the services' image does not hand /out/root to the user it runs as")
	}
	for _, svc := range []string{"authsvc", "docservice"} {
		s := c.Services[svc]
		if s.Build != "." || s.Image != "gatehouse-services" {
			t.Errorf("%s: build %v, image %q; want the services' Dockerfile", svc, s.Build, s.Image)
		}
		if len(s.Command) < 2 || !strings.HasPrefix(s.Command[0], "/usr/local/bin/") ||
			!strings.Contains(build, "./cmd/"+strings.TrimPrefix(s.Command[0], "/usr/local/bin/")) {
			t.Errorf("%s runs %v, which the Dockerfile's build (%q) does not make", svc, s.Command, build)
		}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("%s: volume %q", svc, v)
				continue
			}
			if _, ok := c.Volumes[parts[0]]; !ok {
				t.Errorf("%s mounts the undeclared volume %q", svc, parts[0])
			}
			if !slices.Contains(owned, "/out/root"+parts[1]) {
				t.Errorf("%s mounts a volume at %s, which the image does not create for its user (%v)", svc, parts[1], owned)
			}
		}
	}
	if b, ok := c.Services["caddy"].Build.(map[string]any); !ok || b["dockerfile"] != "xcaddy.Dockerfile" {
		t.Errorf("caddy's build %v, want xcaddy.Dockerfile", c.Services["caddy"].Build)
	}
	ignored := strings.Fields(read(".dockerignore"))
	for _, p := range []string{".data", "bin", ".git"} {
		if !slices.Contains(ignored, p) {
			t.Errorf(".dockerignore lacks %s: the build context would carry it into the image", p)
		}
	}
}
