package docservice

import (
	"net/http"

	"github.com/gatehouse/gatehouse/internal/httpx"
	"github.com/gatehouse/gatehouse/internal/settingsfile"
)

func (s *Service) getSettings(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, s.settings.Public())
	return nil
}

// patchSettings applies a JSON merge patch (RFC 7396; Content-Type
// application/merge-patch+json or application/json). The merged result
// must validate against the schema, unknown keys included, or nothing
// changes.
func (s *Service) patchSettings(w http.ResponseWriter, r *http.Request) error {
	m, err := settingsfile.ReadPatch(w, r)
	if err != nil {
		return err
	}
	out, err := s.settings.Patch(m)
	if err != nil {
		return err
	}
	s.log.Info("settings changed", "by", principal(r).ID, "request_id", httpx.RequestID(r.Context()))
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// limits is the seed's view of the upload limit.
type limits struct {
	MaxPDFSizeMB int64 `json:"max_pdf_size_mb"`
}

func (s *Service) getLimits(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, limits{MaxPDFSizeMB: s.settings.Current().MaxPDFSizeMB})
	return nil
}

// patchLimits writes max_pdf_size_mb through the same validation and file
// as PATCH /plugin/settings.
func (s *Service) patchLimits(w http.ResponseWriter, r *http.Request) error {
	var body map[string]any
	if err := httpx.DecodeJSON(w, r, &body, 0); err != nil {
		return err
	}
	var fields []httpx.FieldError
	for k := range body {
		if k != "max_pdf_size_mb" {
			fields = append(fields, httpx.FieldError{Field: k, Message: "unknown field (only max_pdf_size_mb)"})
		}
	}
	v, ok := body["max_pdf_size_mb"]
	if !ok || v == nil {
		fields = append(fields, httpx.FieldError{Field: "max_pdf_size_mb", Message: "is required"})
	}
	if len(fields) > 0 {
		return httpx.Invalid(fields)
	}
	if _, err := s.settings.Patch(map[string]any{"max_pdf_size_mb": v}); err != nil {
		return err
	}
	return s.getLimits(w, r)
}
