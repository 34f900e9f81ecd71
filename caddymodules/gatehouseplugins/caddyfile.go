package gatehouseplugins

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("gatehouse_plugins", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("gatehouse_plugin_gateway", parseGateway)
	// After gatehouse_auth (which sits before request_header) and after
	// request_header, encode and intercept, so an operator's header rules
	// and compression apply to plugin responses too; before handle, so
	// manifest routes win over the site's static routes for their prefixes.
	httpcaddyfile.RegisterDirectiveOrder("gatehouse_plugin_gateway", httpcaddyfile.Before, "handle")
}

// parseGlobalOption parses the gatehouse_plugins global option into the
// app's config. Syntax:
//
//	{
//		gatehouse_plugins {
//			service  <id> <url> [{        # repeatable; e.g. doc-service http://127.0.0.1:8001
//				prefix <prefix...>       # repeatable: the only prefixes its manifest may route,
//				                         # and no other service may; e.g. /api/documents
//				forward_credentials      # its routes may ask for the caller's token
//			}]
//			interval <duration>   # between checks; default 30s
//			timeout  <duration>   # per request of a check; default 5s
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("gatehouse_plugins specified more than once")
	}
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "gatehouse_plugins", Value: caddyconfig.JSON(a, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the global option's tokens.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "service":
			var s ServiceConfig
			if !d.AllArgs(&s.ID, &s.URL) {
				return d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch sub := d.Val(); sub {
				case "prefix":
					args := d.RemainingArgs()
					if len(args) == 0 {
						return d.ArgErr()
					}
					s.Prefixes = append(s.Prefixes, args...)
				case "forward_credentials":
					if d.NextArg() {
						return d.ArgErr()
					}
					s.ForwardCredentials = true
				default:
					return d.Errf("unrecognized option %q of service %s", sub, s.ID)
				}
			}
			a.Services = append(a.Services, s)
		case "interval", "timeout":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			if dur <= 0 {
				return d.Errf("%s: must be positive, got %s", opt, v)
			}
			if opt == "interval" {
				a.Interval = caddy.Duration(dur)
			} else {
				a.Timeout = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized gatehouse_plugins option %q", opt)
		}
	}
	return nil
}

func parseGateway(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var g Gateway
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return &g, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gatehouse_plugin_gateway [<matcher>] {
//		token_cookie <name>   # one more access-token cookie plugins must not see
//	}
//
// gatehouse_auth's own cookie is dropped without it; the option is for a
// token cookie gatehouse_auth does not read.
func (g *Gateway) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "token_cookie":
			if !d.AllArgs(&g.TokenCookie) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized gatehouse_plugin_gateway option %q", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Gateway)(nil)
)
