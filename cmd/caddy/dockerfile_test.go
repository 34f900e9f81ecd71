package main

import (
	"os"
	"regexp"
	"testing"
)

// xcaddy.Dockerfile, the Makefile's xcaddy-build and go.mod name one Caddy
// version, so the image is the Caddy that `make xcaddy-build` (run by CI)
// and the tests built.
func TestDockerfileCaddyVersion(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("../../" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	gomod := regexp.MustCompile(`(?m)^\s*github\.com/caddyserver/caddy/v2 v(\S+)$`).FindStringSubmatch(read("go.mod"))
	mk := regexp.MustCompile(`(?m)^CADDY_VERSION \?= v(\S+)$`).FindStringSubmatch(read("Makefile"))
	if gomod == nil || mk == nil {
		t.Fatalf("version not found: go.mod %v, Makefile %v", gomod, mk)
	}
	if gomod[1] != mk[1] {
		t.Errorf("go.mod has Caddy %s, the Makefile builds %s", gomod[1], mk[1])
	}
	froms := regexp.MustCompile(`(?m)^FROM caddy:(\S+)`).FindAllStringSubmatch(read("xcaddy.Dockerfile"), -1)
	want := []string{gomod[1] + "-builder", gomod[1]}
	if len(froms) != len(want) {
		t.Fatalf("FROM lines %v, want caddy:%v", froms, want)
	}
	for i, f := range froms {
		if f[1] != want[i] {
			t.Errorf("FROM caddy:%s, want caddy:%s (go.mod's Caddy)", f[1], want[i])
		}
	}
}
