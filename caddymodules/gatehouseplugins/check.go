package gatehouseplugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// State is one immutable picture of every service, replaced as a whole
// after each round of checks, so a request reads it without locks and
// never sees half a round.
type State struct {
	Services []*ServiceStatus // in configuration order
	byID     map[string]*ServiceStatus
	routes   []routeEntry // longest prefix first
}

// ServiceStatus is what the edge knows about one service.
type ServiceStatus struct {
	ID  string
	URL string

	Checked   bool      // a check has completed
	Healthy   bool      // the latest /health answered 200 in time
	CheckedAt time.Time // when the latest check started
	Latency   time.Duration
	LastError string // why the latest check failed; "" when healthy

	// Manifest is the last manifest accepted; it outlives the service
	// going down, so the UI can show the plugin as unavailable.
	Manifest *Manifest
	// ManifestError is why the latest manifest fetched was refused; ""
	// when it was accepted (or none has been fetched).
	ManifestError string
}

type routeEntry struct {
	Route
	service *ServiceStatus
}

// Service returns the status of a registered service, or nil.
func (s *State) Service(id string) *ServiceStatus { return s.byID[id] }

// route returns the declared route p falls under, or nil. p must be
// canonical; a prefix matches itself and what lies under it, never a
// longer name (/api/docs is not /api/docsx).
func (s *State) route(p string) *routeEntry {
	for i := range s.routes {
		r := &s.routes[i]
		if strings.HasPrefix(p, r.Prefix) && (len(p) == len(r.Prefix) || p[len(r.Prefix)] == '/') {
			return r
		}
	}
	return nil
}

// checkResult is the outcome of checking one service.
type checkResult struct {
	skip        bool // not checked this time: its status stays as it is
	started     time.Time
	latency     time.Duration
	healthErr   error
	manifest    *Manifest
	manifestErr error // nil with a nil manifest: not fetched
}

// Tick checks every service once, concurrently so that one slow service
// cannot delay the others, and publishes the new state. The loop calls it
// every interval; tests call it directly.
func (a *App) Tick(ctx context.Context) {
	defer func() {
		if v := recover(); v != nil {
			a.logger.Error("plugin check panicked; keeping the previous state", zap.Any("panic", v))
		}
	}()
	results := make([]checkResult, len(a.Services))
	var wg sync.WaitGroup
	for i, svc := range a.Services {
		wg.Go(func() { results[i] = a.checkOne(ctx, svc) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // stopping: a round cut short says nothing about the services
	}
	a.publish(results)
}

// publish merges results (one per service, in configuration order) into
// the latest state.
func (a *App) publish(results []checkResult) {
	a.publishMu.Lock()
	defer a.publishMu.Unlock()
	a.state.Store(a.merge(a.state.Load(), results))
}

// MinRecheckGap is the least time between two checks of one service on
// demand (Recheck), however many requests ask.
const MinRecheckGap = time.Second

// recheck is one service's check on demand: one at a time, one per
// MinRecheckGap.
type recheck struct {
	svc     ServiceConfig
	mu      sync.Mutex
	running chan struct{} // closed once the running check is published; nil when none runs
	last    time.Time     // when the last one started
}

// Recheck checks service id now, between rounds, and returns the state
// after it: a request for a service that is down, or whose manifest the
// edge does not have yet, finds it as soon as it is back instead of up to
// an interval later. A check already running is waited for rather than
// repeated, and none starts within MinRecheckGap of the last, so a flood
// of requests costs the service one check a second. The wait ends with
// ctx; the check itself runs on and is published.
func (a *App) Recheck(ctx context.Context, id string) *State {
	rc := a.rechecks[id]
	if rc == nil {
		return a.State()
	}
	rc.mu.Lock()
	done := rc.running
	if done == nil {
		if now := a.now(); now.Sub(rc.last) >= MinRecheckGap && a.inFlight.start() {
			rc.last = now
			done = make(chan struct{})
			rc.running = done
			go a.runRecheck(rc, done)
		}
	}
	rc.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	return a.State()
}

func (a *App) runRecheck(rc *recheck, done chan struct{}) {
	defer a.inFlight.done()
	defer func() {
		if v := recover(); v != nil {
			a.logger.Error("plugin check panicked; keeping the previous state", zap.Any("panic", v))
		}
		rc.mu.Lock()
		rc.running = nil
		rc.mu.Unlock()
		close(done)
	}()
	res := a.checkOne(a.runCtx, rc.svc)
	if a.runCtx.Err() != nil {
		return
	}
	results := make([]checkResult, len(a.Services))
	for i, s := range a.Services {
		if s.ID == rc.svc.ID {
			results[i] = res
		} else {
			results[i].skip = true
		}
	}
	a.publish(results)
}

func (a *App) checkOne(ctx context.Context, svc ServiceConfig) checkResult {
	res := checkResult{started: a.now()}
	base := strings.TrimSuffix(svc.URL, "/")
	resp, err := a.get(ctx, base+"/health")
	res.latency = a.now().Sub(res.started)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("health: status %d", resp.StatusCode)
		}
	}
	if err != nil {
		res.healthErr = err
		return res
	}

	m, err := a.fetchManifest(ctx, base)
	if err == nil && m.ID != svc.ID {
		err = refuse("manifest id %q is not the registered service id %q", m.ID, svc.ID)
	}
	if err != nil {
		res.manifestErr = err
		return res
	}
	res.manifest = m
	return res
}

// fetchManifest GETs and parses the manifest of the service at base.
func (a *App) fetchManifest(ctx context.Context, base string) (*Manifest, error) {
	resp, err := a.get(ctx, base+"/plugin/manifest")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("manifest: status %d", resp.StatusCode)
	}
	return ParseManifest(resp.Header.Get("Content-Type"), resp.Body)
}

func (a *App) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "gatehouse-edge")
	return a.client.Do(req)
}

// merge builds the next state from the previous one and a round of
// results. A manifest must first keep to what the operator configured
// (admit: pinned prefixes, credential forwarding). Beyond that, route
// prefixes are first come, first served: every prefix an accepted manifest
// holds stays its owner's; a new manifest that claims a held prefix is
// refused and its service keeps its previous manifest.
func (a *App) merge(prev *State, results []checkResult) *State {
	next := &State{byID: make(map[string]*ServiceStatus, len(a.Services))}
	claims := map[string]string{} // prefix → service id
	for _, old := range prev.Services {
		if old.Manifest != nil {
			for _, r := range old.Manifest.Routes {
				claims[r.Prefix] = old.ID
			}
		}
	}
	for i, svc := range a.Services {
		res := results[i]
		st := &ServiceStatus{ID: svc.ID, URL: svc.URL}
		if old := prev.byID[svc.ID]; old != nil {
			*st = *old
		}
		// A round's result older than a check on demand published while
		// the round ran says nothing new.
		if res.skip || (st.Checked && res.started.Before(st.CheckedAt)) {
			next.add(st)
			continue
		}
		wasHealthy, hadChecked := st.Healthy, st.Checked
		st.Checked, st.CheckedAt, st.Latency = true, res.started, res.latency
		st.Healthy = res.healthErr == nil
		st.LastError = ""
		if res.healthErr != nil {
			st.LastError = errorText(res.healthErr)
		}
		if st.Healthy != wasHealthy || !hadChecked {
			if st.Healthy {
				a.logger.Info("plugin service healthy", zap.String("service", svc.ID), zap.Duration("latency", res.latency))
			} else {
				a.logger.Warn("plugin service unhealthy", zap.String("service", svc.ID), zap.String("error", st.LastError))
			}
		}

		manifestErr := res.manifestErr
		if res.manifest != nil {
			if err := a.admit(svc, res.manifest); err != nil {
				manifestErr = err
			} else if owner, prefix := claimedByOther(claims, res.manifest, svc.ID); owner != "" {
				manifestErr = refuse("route %s is claimed by plugin %s", prefix, owner)
			} else {
				for p, id := range claims {
					if id == svc.ID {
						delete(claims, p)
					}
				}
				for _, r := range res.manifest.Routes {
					claims[r.Prefix] = svc.ID
				}
				st.Manifest, st.ManifestError = res.manifest, ""
			}
		}
		if manifestErr != nil {
			msg := errorText(manifestErr)
			if msg != st.ManifestError {
				a.logger.Warn("plugin manifest refused; keeping the last good one",
					zap.String("service", svc.ID), zap.String("reason", msg), zap.Bool("has_manifest", st.Manifest != nil))
			}
			st.ManifestError = msg
		}
		next.add(st)
	}
	sort.Slice(next.routes, func(i, j int) bool { return len(next.routes[i].Prefix) > len(next.routes[j].Prefix) })
	return next
}

// add appends a service's status and its manifest's routes.
func (s *State) add(st *ServiceStatus) {
	s.Services = append(s.Services, st)
	s.byID[st.ID] = st
	if st.Manifest != nil {
		for _, r := range st.Manifest.Routes {
			s.routes = append(s.routes, routeEntry{Route: r, service: st})
		}
	}
}

// claimedByOther returns the owner and prefix of the first route of m that
// overlaps a prefix held by another service.
func claimedByOther(claims map[string]string, m *Manifest, self string) (owner, prefix string) {
	for _, r := range m.Routes {
		for p, id := range claims {
			if id != self && overlaps(r.Prefix, p) {
				return id, r.Prefix
			}
		}
	}
	return "", ""
}

// errorText is an error as admins see it in /api/services: a refusal's
// reason, or a transport error without Go's "Get \"url\":" wrapping.
func errorText(err error) string {
	var me *ManifestError
	if errors.As(err, &me) {
		return me.Reason
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
		return "timed out"
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil && strings.HasPrefix(err.Error(), "Get ") {
			return inner.Error()
		}
	}
	return err.Error()
}
