package authsvc

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/envconfig"
)

// Config is authsvc's configuration, read from the environment.
type Config struct {
	DatabaseURL     string        // DATABASE_URL (required)
	Addr            string        // AUTHSVC_ADDR, default 127.0.0.1:8000
	PrivateKeyFile  string        // JWT_PRIVATE_KEY_FILE, default DATA_DIR/keys/jwt-private.pem (generated when missing)
	Issuer          string        // JWT_ISSUER, default gatehouse
	Audience        string        // JWT_AUDIENCE, default gatehouse
	AccessTokenTTL  time.Duration // ACCESS_TOKEN_TTL, default 15m
	DataDir         string        // DATA_DIR, default ./.data
	AppConfigDir    string        // APP_CONFIG_DIR, default DATA_DIR/config
	HashConcurrency int           // PASSWORD_HASH_CONCURRENCY, default max(1, GOMAXPROCS-1)
	// AttemptsPerMinute is AUTH_RATE_LIMIT: logins, and registrations
	// apart, per client address and minute (a burst of as many, refilled
	// evenly); default 10, 0 for none. The zero Config has none, so tests
	// that log in often are not slowed.
	AttemptsPerMinute int
	GenerateKeyIfNone bool // true when JWT_PRIVATE_KEY_FILE is unset
}

// LoadConfig reads and validates the configuration; every message names the
// variable at fault, and all problems are reported at once.
func LoadConfig(getenv func(string) string) (*Config, error) {
	env := envconfig.New(getenv)
	bad, get := env.Bad, env.String
	c := &Config{
		DatabaseURL: env.DatabaseURL(),
		Addr:        env.Addr("AUTHSVC_ADDR", "127.0.0.1:8000"),
		Issuer:      get("JWT_ISSUER", "gatehouse"),
		Audience:    get("JWT_AUDIENCE", "gatehouse"),
		DataDir:     get("DATA_DIR", "./.data"),
	}
	c.AppConfigDir = get("APP_CONFIG_DIR", filepath.Join(c.DataDir, "config"))
	c.PrivateKeyFile = get("JWT_PRIVATE_KEY_FILE", "")
	if c.PrivateKeyFile == "" {
		c.PrivateKeyFile = filepath.Join(c.DataDir, "keys", "jwt-private.pem")
		c.GenerateKeyIfNone = true
	} else if _, err := os.Stat(c.PrivateKeyFile); err != nil {
		bad("JWT_PRIVATE_KEY_FILE", "%v (create one with `authsvc keygen -out FILE`)", err)
	}
	ttl := get("ACCESS_TOKEN_TTL", "15m")
	if d, err := time.ParseDuration(ttl); err != nil {
		bad("ACCESS_TOKEN_TTL", "%q is not a duration like 15m or 1h", ttl)
	} else if d < time.Minute || d > 24*time.Hour {
		bad("ACCESS_TOKEN_TTL", "%s is outside 1m..24h", d)
	} else {
		c.AccessTokenTTL = d
	}
	c.HashConcurrency = max(1, runtime.GOMAXPROCS(0)-1)
	if v := get("PASSWORD_HASH_CONCURRENCY", ""); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 256 {
			bad("PASSWORD_HASH_CONCURRENCY", "%q must be an integer in 1..256", v)
		} else {
			c.HashConcurrency = n
		}
	}
	c.AttemptsPerMinute = 10
	if v := get("AUTH_RATE_LIMIT", ""); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100_000 {
			bad("AUTH_RATE_LIMIT", "%q must be an integer in 0..100000 (attempts per client address and minute; 0: no limit)", v)
		} else {
			c.AttemptsPerMinute = n
		}
	}
	if c.Issuer == "" {
		bad("JWT_ISSUER", "must not be empty")
	}
	return c, env.Err()
}
