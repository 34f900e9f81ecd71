package authsvc

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(envMap(map[string]string{"DATABASE_URL": "postgres://u:p@db:5432/gatehouse"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		DatabaseURL: "postgres://u:p@db:5432/gatehouse", Addr: "127.0.0.1:8000",
		PrivateKeyFile: filepath.Join(".data", "keys", "jwt-private.pem"), Issuer: "gatehouse", Audience: "gatehouse",
		AccessTokenTTL: 15 * time.Minute, DataDir: "./.data", AppConfigDir: filepath.Join(".data", "config"),
		HashConcurrency: max(1, runtime.GOMAXPROCS(0)-1), GenerateKeyIfNone: true, AttemptsPerMinute: 10,
	}
	if *cfg != want {
		t.Errorf("defaults\n got %+v\nwant %+v", *cfg, want)
	}
}

func TestLoadConfigValues(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(key, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(envMap(map[string]string{
		"DATABASE_URL": " postgresql://db/x ", "AUTHSVC_ADDR": "0.0.0.0:9000", "JWT_PRIVATE_KEY_FILE": key,
		"JWT_ISSUER": "https://auth.example.com", "JWT_AUDIENCE": "api", "ACCESS_TOKEN_TTL": "1h30m",
		"DATA_DIR": dir, "PASSWORD_HASH_CONCURRENCY": "4",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgresql://db/x" || cfg.Addr != "0.0.0.0:9000" || cfg.PrivateKeyFile != key || cfg.GenerateKeyIfNone ||
		cfg.Issuer != "https://auth.example.com" || cfg.Audience != "api" || cfg.AccessTokenTTL != 90*time.Minute ||
		cfg.AppConfigDir != filepath.Join(dir, "config") || cfg.HashConcurrency != 4 {
		t.Errorf("config %+v", *cfg)
	}
	cfg, err = LoadConfig(envMap(map[string]string{"DATABASE_URL": "postgres://db/x", "APP_CONFIG_DIR": "/etc/gh", "ACCESS_TOKEN_TTL": "24h"}))
	if err != nil || cfg.AppConfigDir != "/etc/gh" || cfg.AccessTokenTTL != 24*time.Hour {
		t.Errorf("config %+v, %v", cfg, err)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://db/x"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string // each a variable the error must name
	}{
		{"missing DATABASE_URL", map[string]string{}, []string{"DATABASE_URL: is required"}},
		{"blank DATABASE_URL", with("DATABASE_URL", "   "), []string{"DATABASE_URL: is required"}},
		{"DATABASE_URL not postgres", with("DATABASE_URL", "mysql://db/x"), []string{"DATABASE_URL: must be a postgres:// URL"}},
		{"bad ACCESS_TOKEN_TTL", with("ACCESS_TOKEN_TTL", "15"), []string{"ACCESS_TOKEN_TTL:"}},
		{"word ACCESS_TOKEN_TTL", with("ACCESS_TOKEN_TTL", "forever"), []string{"ACCESS_TOKEN_TTL:"}},
		{"TTL too short", with("ACCESS_TOKEN_TTL", "30s"), []string{"ACCESS_TOKEN_TTL:", "outside"}},
		{"TTL too long", with("ACCESS_TOKEN_TTL", "25h"), []string{"ACCESS_TOKEN_TTL:", "outside"}},
		{"negative TTL", with("ACCESS_TOKEN_TTL", "-5m"), []string{"ACCESS_TOKEN_TTL:"}},
		{"AUTHSVC_ADDR without port", with("AUTHSVC_ADDR", "localhost"), []string{"AUTHSVC_ADDR:"}},
		{"AUTHSVC_ADDR garbage", with("AUTHSVC_ADDR", "a:b:c"), []string{"AUTHSVC_ADDR:"}},
		{"missing key file", with("JWT_PRIVATE_KEY_FILE", "/nonexistent/key.pem"), []string{"JWT_PRIVATE_KEY_FILE:", "keygen"}},
		{"PASSWORD_HASH_CONCURRENCY word", with("PASSWORD_HASH_CONCURRENCY", "many"), []string{"PASSWORD_HASH_CONCURRENCY:"}},
		{"PASSWORD_HASH_CONCURRENCY zero", with("PASSWORD_HASH_CONCURRENCY", "0"), []string{"PASSWORD_HASH_CONCURRENCY:"}},
		{"PASSWORD_HASH_CONCURRENCY huge", with("PASSWORD_HASH_CONCURRENCY", "1000"), []string{"PASSWORD_HASH_CONCURRENCY:"}},
		{"all problems at once", map[string]string{"ACCESS_TOKEN_TTL": "x", "AUTHSVC_ADDR": "x", "PASSWORD_HASH_CONCURRENCY": "-1"},
			[]string{"DATABASE_URL:", "ACCESS_TOKEN_TTL:", "AUTHSVC_ADDR:", "PASSWORD_HASH_CONCURRENCY:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(envMap(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// Only the variables at fault are named.
			for _, v := range []string{"DATABASE_URL", "ACCESS_TOKEN_TTL", "AUTHSVC_ADDR", "JWT_PRIVATE_KEY_FILE", "PASSWORD_HASH_CONCURRENCY"} {
				named := false
				for _, w := range tt.want {
					named = named || strings.HasPrefix(w, v)
				}
				if !named && strings.Contains(err.Error(), v+":") {
					t.Errorf("error %q blames %s too", err, v)
				}
			}
		})
	}
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}
