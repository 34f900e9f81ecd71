package main

import (
	"maps"
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
		Networks    []string          `yaml:"networks"`
	} `yaml:"services"`
	Volumes  map[string]any `yaml:"volumes"`
	Networks map[string]any `yaml:"networks"`
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
// (compose's environment over the image's ENV) pass their own
// configuration checks, and every directory they write is a volume; only
// Caddy publishes ports, and Caddy shares no network with the database;
// Caddy's upstreams and the database URL name the services and ports they
// run on; every variable is one its reader documents; the images hold the
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
	dockerfile := read("Dockerfile")
	// The services' image's ENV (its last stage's): what a container gets
	// unless compose's environment says otherwise.
	imageEnv := map[string]string{}
	if m := regexp.MustCompile(`(?m)^ENV (.*)$`).FindAllStringSubmatch(dockerfile, -1); m != nil {
		for _, kv := range strings.Fields(m[len(m)-1][1]) {
			k, v, _ := strings.Cut(kv, "=")
			imageEnv[k] = v
		}
	}
	envOf := func(svc string) map[string]string {
		out := map[string]string{}
		if svc == "authsvc" || svc == "docservice" {
			maps.Copy(out, imageEnv)
		}
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
	authCfg, err := authsvc.LoadConfig(getenv(auth))
	if err != nil {
		t.Errorf("authsvc's environment: %v", err)
	}
	docCfg, err := docservice.LoadConfig(getenv(doc))
	if err != nil {
		t.Errorf("docservice's environment: %v", err)
	}
	// Each directory a service writes (or watches) is in a volume, not in
	// the container's own layer, which a new image would replace; the
	// settings directory is one volume both services share.
	volumeAt := func(svc, dir string) string {
		for _, v := range c.Services[svc].Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && (dir == parts[1] || strings.HasPrefix(dir, parts[1]+"/")) {
				return parts[0]
			}
		}
		t.Errorf("%s's %s is in no volume: it would be lost with the container", svc, dir)
		return ""
	}
	if authCfg != nil && docCfg != nil {
		volumeAt("authsvc", authCfg.DataDir)
		volumeAt("authsvc", authCfg.PrivateKeyFile)
		volumeAt("docservice", docCfg.StorageDir)
		volumeAt("docservice", docCfg.WatchDir)
		if a, d := volumeAt("authsvc", authCfg.AppConfigDir), volumeAt("docservice", docCfg.AppConfigDir); a != d {
			t.Errorf("APP_CONFIG_DIR: authsvc's volume %q, docservice's %q; the settings must be shared", a, d)
		}
	}

	for name, svc := range c.Services {
		if len(svc.Ports) > 0 && name != "caddy" {
			t.Errorf("%s publishes ports %v: only the edge may be reachable from outside", name, svc.Ports)
		}
		if len(svc.Networks) == 0 {
			t.Errorf("%s is on compose's default network, which every service shares", name)
		}
	}
	shares := func(a, b string) bool {
		return slices.ContainsFunc(c.Services[a].Networks, func(n string) bool { return slices.Contains(c.Services[b].Networks, n) })
	}
	if shares("caddy", "db") {
		t.Error("caddy shares a network with the database")
	}
	for _, svc := range []string{"authsvc", "docservice"} {
		if !shares("caddy", svc) || !shares(svc, "db") {
			t.Errorf("%s must share a network with caddy and one with db: %v", svc, c.Services[svc].Networks)
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
		if !regexp.MustCompile(`\{\$` + k + `[:}]`).MatchString(caddyfile) {
			t.Errorf("caddy's %s is not a variable of the Caddyfile", k)
		}
	}

	// The images: the services' one builds the commands compose runs and
	// owns the directories mounted as volumes; Caddy's is xcaddy.Dockerfile.
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
	for _, p := range []string{".data", "bin", ".git", ".env"} {
		if !slices.Contains(ignored, p) {
			t.Errorf(".dockerignore lacks %s: the build context would carry it into the image", p)
		}
	}
}
