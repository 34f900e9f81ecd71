package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make run refuses a TLS mode Caddy would accept but could not serve.
func TestCheckTLSMode(t *testing.T) {
	for _, tt := range []struct {
		mode, addr string
		ok         bool
	}{
		{"", ":8080", true},
		{"auto", "gatehouse.example.com", true},
		{"internal", "gatehouse.lan", true},
		{"internal", "gatehouse.localhost:8443", true},
		{"internal", "https://gatehouse.lan:8443", true},
		{"internal", ":8080", false},
		{"internal", ":443", false},
		{"internal", "http://gatehouse.lan", false},
		{"interal", "gatehouse.lan", false},
	} {
		if err := checkTLSMode(tt.mode, tt.addr); (err == nil) != tt.ok {
			t.Errorf("GATEHOUSE_TLS=%q GATEHOUSE_SITE_ADDRESS=%q: %v, want ok=%v", tt.mode, tt.addr, err, tt.ok)
		}
	}
}

// help (and -h) prints the commands and exits 0; an unknown command says
// where to find them and exits 1.
func TestHelp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "gatehouse-dev")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, arg := range []string{"-h", "--help", "help"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "create-admin --email E") || !strings.Contains(string(out), "db-stop") {
			t.Errorf("%s: %v\n%s", arg, err, out)
		}
	}
	out, err := exec.Command(bin, "frobnicate").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "gatehouse-dev help lists them") {
		t.Errorf("unknown command: %v\n%s", err, out)
	}
}
