package gatehouseauth

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are process-wide: counters keep counting across config reloads
// (which is what Prometheus expects of a counter), and the JWKS fetcher,
// shared across reloads too, has one place to count. Each config's
// registry gets them registered at provision time.
var metrics = struct {
	verifications *prometheus.CounterVec
	cacheHits     prometheus.Counter
	failures      *prometheus.CounterVec
	jwksRefreshes *prometheus.CounterVec
	// revocationRefreshes and revocationEntries follow authsvc's feed.
	revocationRefreshes *prometheus.CounterVec
	revocationEntries   prometheus.Gauge
	revocationsReadAt   prometheus.Gauge
	verifyOK            prometheus.Counter
	verifyRejected      prometheus.Counter
	// tunnelsClosed counts upgraded connections the edge ended.
	tunnelsClosed *prometheus.CounterVec
}{
	verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "auth", Name: "verifications_total",
		Help: "Tokens verified with RSA (cache misses), by result (ok, rejected).",
	}, []string{"result"}),
	cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "auth", Name: "cache_hits_total",
		Help: "Requests authenticated from the verified-token cache.",
	}),
	failures: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "auth", Name: "failures_total",
		Help: "Requests refused, by reason (missing_token, ambiguous_token, no_keys, no_revocations, revoked, or the verifier's reason).",
	}, []string{"reason"}),
	jwksRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "auth", Name: "jwks_refreshes_total",
		Help: "JWKS fetches, by trigger (startup, periodic, unknown_kid) and result (ok, not_modified, error).",
	}, []string{"trigger", "result"}),
	revocationRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "auth", Name: "revocation_refreshes_total",
		Help: "Revocation feed fetches, by result (ok, not_modified, error).",
	}, []string{"result"}),
	revocationEntries: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "gatehouse", Subsystem: "auth", Name: "revocation_entries",
		Help: "Entries (user cut-offs and ended sessions) in the last revocation list loaded.",
	}),
	revocationsReadAt: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "gatehouse", Subsystem: "auth", Name: "revocations_read_timestamp_seconds",
		Help: "When the revocation feed last answered with a list (200 or 304), in Unix seconds: alert when it falls behind time().",
	}),
	tunnelsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "auth", Name: "tunnels_closed_total",
		Help: "Upgraded connections (WebSocket) the edge closed because their token expired or was revoked, by reason (expired, revoked).",
	}, []string{"reason"}),
}

func init() {
	// Resolve the labels the hot path uses once, so counting a request is
	// an atomic add rather than a label lookup.
	metrics.verifyOK = metrics.verifications.WithLabelValues("ok")
	metrics.verifyRejected = metrics.verifications.WithLabelValues("rejected")
}

// registerMetrics adds our collectors to a config's registry. A registry
// that already holds them (two gatehouse_auth handlers in one config) is
// fine; anything else registered under our names is a real conflict.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.verifications, metrics.cacheHits, metrics.failures, metrics.jwksRefreshes,
		metrics.revocationRefreshes, metrics.revocationEntries, metrics.revocationsReadAt, metrics.tunnelsClosed} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) && are.ExistingCollector == c {
				continue
			}
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}
