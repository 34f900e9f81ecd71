package gatehouseplugins

import "time"

// serviceView is one entry of GET /api/services. Admins also get the
// reasons (which can name private addresses); users get the state only.
type serviceView struct {
	ID            string     `json:"id"`
	Name          string     `json:"name"`   // the manifest's, else the id (no manifest yet)
	Status        string     `json:"status"` // "healthy", "unhealthy" or "unknown" (not checked yet)
	Healthy       bool       `json:"healthy"`
	CheckedAt     *time.Time `json:"checked_at"`
	LatencyMS     *float64   `json:"latency_ms"`
	URL           string     `json:"url,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	ManifestError string     `json:"manifest_error,omitempty"`
}

func servicesView(st *State, id identity) []serviceView {
	out := make([]serviceView, 0, len(st.Services))
	for _, s := range st.Services {
		v := serviceView{ID: s.ID, Name: s.ID, Status: "unknown", Healthy: s.Healthy}
		if s.Manifest != nil {
			v.Name = s.Manifest.Name
		}
		if s.Checked {
			v.Status = "unhealthy"
			if s.Healthy {
				v.Status = "healthy"
			}
			at := s.CheckedAt.UTC()
			ms := float64(s.Latency.Microseconds()) / 1000
			v.CheckedAt, v.LatencyMS = &at, &ms
		}
		if id.isAdmin() {
			v.URL, v.LastError, v.ManifestError = s.URL, s.LastError, s.ManifestError
		}
		out = append(out, v)
	}
	return out
}

// pluginView is one entry of GET /api/plugins: enough for the Extensions
// list; the full manifest is at /api/plugins/{id}/manifest.
type pluginView struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	Icon        string `json:"icon,omitempty"`
	Healthy     bool   `json:"healthy"`
	HasSettings bool   `json:"has_settings"`
}

func pluginsView(st *State, id identity) []pluginView {
	out := []pluginView{}
	for _, s := range st.Services {
		m := s.Manifest
		if m == nil || !m.Access.allows(id) {
			continue
		}
		out = append(out, pluginView{
			ID: m.ID, Name: m.Name, Version: m.Version, Description: m.Description, Icon: m.Icon,
			Healthy: s.Healthy, HasSettings: m.Settings != nil,
		})
	}
	return out
}
