package gatehouseauth

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("gatehouse_auth", parseCaddyfile)
	// Before request_header, which comes before every proxying or
	// responding directive (reverse_proxy, file_server, respond, handle):
	// identity headers are stripped and set before a user's request_header
	// can look at them, and long before any upstream sees the request.
	httpcaddyfile.RegisterDirectiveOrder("gatehouse_auth", httpcaddyfile.Before, "request_header")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var a Handler
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return &a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gatehouse_auth [<matcher>] {
//		jwks_url  <url>          # or: jwks_file <path>
//		issuer    <iss>
//		audience  <aud>
//		cookie    <name>         # optional second token source
//		algorithms <alg...>      # token algorithms allowed; default RS256
//		strip_header <name...>   # optional, repeatable; "X-Tenant-*" is a prefix
//		allow_preflight          # let CORS preflights through without a token
//		forward_token            # keep the token on the request for the upstream
//		cache_size <n>           # verified tokens remembered; default 10000, 0 disables
//		jwks_refresh_interval <duration>      # default 5m
//		jwks_unknown_kid_interval <duration>  # default 10s
//		jwks_timeout <duration>               # default 10s
//		revocations_url <url>                 # authsvc's revocation feed
//		revocations_interval <duration>       # default 1s
//		revocations_max_age <duration>        # default none: keep the last list while the feed fails
//	}
//
//	gatehouse_auth [<matcher>] {
//		strip_only               # only remove identity headers
//		strip_header <name...>
//	}
func (a *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] && opt != "strip_header" {
			return d.Errf("%s specified more than once", opt)
		}
		seen[opt] = true
		switch opt {
		case "jwks_url", "jwks_file", "issuer", "audience", "cookie", "revocations_url":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch opt {
			case "jwks_url":
				a.JWKSURL = v
			case "jwks_file":
				a.JWKSFile = v
			case "issuer":
				a.Issuer = v
			case "audience":
				a.Audience = v
			case "cookie":
				a.Cookie = v
			case "revocations_url":
				a.RevocationsURL = v
			}
		case "algorithms":
			algs := d.RemainingArgs()
			if len(algs) == 0 {
				return d.ArgErr()
			}
			if _, err := accesstoken.ParseAlgorithms(algs); err != nil {
				return d.Errf("algorithms: %v", err)
			}
			a.Algorithms = algs
		case "strip_header":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			a.StripHeaders = append(a.StripHeaders, names...)
		case "strip_only", "allow_preflight", "forward_token":
			if d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "strip_only":
				a.StripOnly = true
			case "allow_preflight":
				a.AllowPreflight = true
			default:
				a.ForwardToken = true
			}
		case "cache_size":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("cache_size: want a non-negative integer, got %q", v)
			}
			a.CacheSize = &n
		case "jwks_refresh_interval", "jwks_unknown_kid_interval", "jwks_timeout", "revocations_interval", "revocations_max_age":
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
			switch opt {
			case "jwks_refresh_interval":
				a.JWKSRefreshInterval = caddy.Duration(dur)
			case "jwks_unknown_kid_interval":
				a.JWKSUnknownKIDInterval = caddy.Duration(dur)
			case "jwks_timeout":
				a.JWKSTimeout = caddy.Duration(dur)
			case "revocations_interval":
				a.RevocationsInterval = caddy.Duration(dur)
			case "revocations_max_age":
				a.RevocationsMaxAge = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized gatehouse_auth option %q", opt)
		}
	}
	if a.JWKSURL != "" && a.JWKSFile != "" {
		return d.Err("jwks_url and jwks_file are mutually exclusive")
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
