package authsvc

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/httpx"
	"github.com/gatehouse/gatehouse/internal/settingsfile"
)

// AISettingsFile is the platform's AI provider settings in APP_CONFIG_DIR
// (the seed's /api/settings/ai). Feature services read it there; only
// authsvc writes it.
const AISettingsFile = "ai.json"

//go:embed ai.schema.json
var aiSchemaJSON []byte

// AISettings is the typed view of ai.json.
type AISettings struct {
	BaseURL        string `json:"base_url"`
	Model          string `json:"model"`
	APIKey         string `json:"api_key"`
	TimeoutSeconds int    `json:"timeout_seconds"`
}

// NewAISettingsStore loads dir/ai.json (defaults when missing).
func NewAISettingsStore(dir string, log *slog.Logger) (*settingsfile.Store[AISettings], error) {
	return settingsfile.New[AISettings](dir, AISettingsFile, aiSchemaJSON, nil, log)
}

// getAISettings answers the settings with the API key masked as
// {"is_set": bool}.
func (s *Service) getAISettings(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, s.ai.Public())
	return nil
}

// patchAISettings applies a JSON merge patch (RFC 7396): null clears a
// field (back to its default), {"is_set": ...} as GET shows the key leaves
// it unchanged. The result must validate, unknown keys included, or
// nothing changes.
func (s *Service) patchAISettings(w http.ResponseWriter, r *http.Request) error {
	m, err := settingsfile.ReadPatch(w, r)
	if err != nil {
		return err
	}
	// The stored key goes only to the origin it was given for: a base_url
	// pointing elsewhere (null included: it restores the default) clears
	// it unless the same patch sets one, or anyone with an admin's token
	// could send it to a server of theirs (GET never shows it). An invalid
	// patch is left for Patch to refuse.
	if next, err := s.ai.Preview(m); err == nil && origin(next.BaseURL) != origin(s.ai.Current().BaseURL) {
		if _, given := m["api_key"].(string); !given {
			m["api_key"] = nil
		}
	}
	out, err := s.ai.Patch(m)
	if err != nil {
		return err
	}
	s.log.Info("AI settings changed", "by", principal(r).ID, "request_id", httpx.RequestID(r.Context()))
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// aiTestResult is a successful connection test.
type aiTestResult struct {
	OK        bool   `json:"ok"`
	Model     string `json:"model"`
	LatencyMS int64  `json:"latency_ms"`
	Reply     string `json:"reply"`
}

// maxProviderAnswer bounds what is read of the provider's answer.
const maxProviderAnswer = 1 << 20

// testAISettings makes one minimal chat completion with the saved
// settings (the seed's connection test): 200 with the model that answered
// and the time it took, or 502 with what went wrong.
func (s *Service) testAISettings(w http.ResponseWriter, r *http.Request) error {
	cfg := s.ai.Current()
	timeout := time.Duration(cfg.TimeoutSeconds) * time.Second
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	// The call may take longer than the server's write timeout (60 s);
	// the answer must still reach the client.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 10*time.Second))
	body, _ := json.Marshal(map[string]any{
		"model":    cfg.Model,
		"messages": []map[string]string{{"role": "user", "content": "Reply with the single word OK."}},
	})
	url := strings.TrimSuffix(cfg.BaseURL, "/") + "/chat/completions"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return providerError("the base URL cannot be used: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	start := time.Now()
	resp, err := s.aiClient.Do(req)
	if err != nil {
		if ctx.Err() != nil && r.Context().Err() == nil {
			return providerError("the AI provider did not answer within %d s", cfg.TimeoutSeconds)
		}
		return providerError("could not reach the AI provider: %v", errors.Unwrap(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderAnswer))
	latency := time.Since(start)
	if err != nil {
		return providerError("the AI provider's answer broke off: %v", err)
	}
	var answer struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	decodeErr := json.Unmarshal(raw, &answer)
	if resp.StatusCode/100 != 2 {
		msg := ""
		if decodeErr == nil && answer.Error != nil {
			// Not every server masks the key it refuses, and this text
			// goes to the client and the log.
			text := answer.Error.Message
			if cfg.APIKey != "" {
				text = strings.ReplaceAll(text, cfg.APIKey, "[api_key]")
			}
			msg = ": " + clip(text, 300)
		}
		return providerError("the AI provider answered %s%s", resp.Status, msg)
	}
	if decodeErr != nil || len(answer.Choices) == 0 {
		return providerError("the AI provider's answer is not a chat completion")
	}
	model := answer.Model
	if model == "" {
		model = cfg.Model
	}
	httpx.WriteJSON(w, http.StatusOK, aiTestResult{OK: true, Model: clip(model, 200), LatencyMS: latency.Milliseconds(),
		Reply: clip(answer.Choices[0].Message.Content, 200)})
	return nil
}

// origin is a URL's scheme and host (with port), lower-cased: where a
// bearer key would go.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// providerError is a failed connection test: the provider's fault (or its
// settings'), not authsvc's, so 502.
func providerError(format string, args ...any) error {
	return &httpx.Error{Status: http.StatusBadGateway, Detail: fmt.Sprintf(format, args...), Code: "ai_provider"}
}

// clip shortens s to at most n bytes, on a rune boundary, as valid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// newAIClient is the client of the connection test: no redirects, so the
// bearer key goes only where the settings say (HTTPS_PROXY and friends are
// honoured, as a provider on the internet may need them).
func newAIClient() *http.Client {
	return &http.Client{
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
