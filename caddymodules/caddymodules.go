// Package caddymodules registers Gatehouse's Caddy modules: importing it
// (as cmd/caddy does, and as `xcaddy build --with
// github.com/gatehouse/gatehouse/caddymodules` does) adds them to a Caddy
// build. It holds no code of its own; each module lives in a subpackage.
package caddymodules

import (
	// gatehouse_auth: verify access tokens, strip and set X-User-* headers.
	_ "github.com/gatehouse/gatehouse/caddymodules/gatehouseauth"
	// gatehouse_plugins app and gatehouse_plugin_gateway: the plugin
	// registry, /api/services, /api/plugins and manifest-declared routes.
	_ "github.com/gatehouse/gatehouse/caddymodules/gatehouseplugins"
)
