// Command caddy is Gatehouse's Caddy build: Caddy's standard modules plus
// caddymodules. It is what xcaddy.Dockerfile builds too, so `bin/caddy`
// behaves like the container image.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard distribution.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// Gatehouse's modules.
	_ "github.com/gatehouse/gatehouse/caddymodules"
)

func main() {
	caddycmd.Main()
}
