package main

import "testing"

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
