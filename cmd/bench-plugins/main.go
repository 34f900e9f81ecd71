// Command bench-plugins measures what routing by manifest costs at the
// edge: it builds Gatehouse's Caddy and starts it with two sites in front
// of the same tiny upstream, both behind gatehouse_auth (keys from a JWKS
// file): one with a static reverse_proxy, one where gatehouse_plugin_gateway
// sends the request to the upstream because its manifest declares the
// prefix. It loads them in rotation with internal/loadgen and prints median
// throughput and latency and their ratio (target: manifest route >= 95% of
// the static one). It prints figures, never pass or fail.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/benchutil"
	"github.com/gatehouse/gatehouse/internal/loadgen"
)

// manifest is what the upstream serves: one route, any signed-in user.
const manifest = `{"manifest_version": 1, "id": "bench", "name": "Bench", "version": "1.0.0",
	"access": {"allow_superuser": true},
	"routes": [{"prefix": "/api/bench", "access": "authenticated"}]}`

func main() {
	rounds := flag.Int("rounds", 6, "alternating rounds of static and manifest-routed load; medians are reported")
	duration := flag.Duration("duration", 3*time.Second, "length of each load run")
	concurrency := flag.Int("concurrency", 16, "concurrent client connections")
	caddyPath := flag.String("caddy", "", "Caddy binary to use (default: build ./cmd/caddy into a temporary directory)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench-plugins: ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *rounds, *duration, *concurrency, *caddyPath); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, rounds int, duration time.Duration, concurrency int, caddyPath string) error {
	tmp, err := os.MkdirTemp("", "bench-plugins-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if caddyPath == "" {
		log.Printf("building ./cmd/caddy")
		if caddyPath, err = benchutil.BuildCaddy(ctx, tmp); err != nil {
			return err
		}
	}
	issuer, err := benchutil.NewIssuer(tmp)
	if err != nil {
		return err
	}
	jwksPath := issuer.JWKSPath
	token, err := issuer.Token("bench")
	if err != nil {
		return err
	}

	// The upstream: a plugin as small as one gets, so the figures are
	// about the edge.
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			_, _ = io.WriteString(w, "ok\n")
			return
		case "/plugin/manifest":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, manifest)
			return
		}
		if r.Header.Get("X-User-Id") == "" {
			w.WriteHeader(http.StatusInternalServerError) // the guard did not run
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})}
	go up.Serve(upLn)
	defer up.Close()

	ports, err := benchutil.FreePorts(3)
	if err != nil {
		return err
	}
	staticPort, manifestPort, adminPort := ports[0], ports[1], ports[2]
	auth := fmt.Sprintf(`gatehouse_auth {
		jwks_file %s
		issuer gatehouse
		audience gatehouse
	}`, jwksPath)
	// The static site drops Authorization too, so both send the upstream
	// the same request.
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%s
	log {
		level ERROR
	}
	gatehouse_plugins {
		service bench http://%s
	}
}
:%s {
	%s
	reverse_proxy %s {
		header_up -Authorization
	}
}
:%s {
	%s
	gatehouse_plugin_gateway
	respond "no manifest route" 500
}
`, adminPort, upLn.Addr(), staticPort, auth, upLn.Addr(), manifestPort, auth)
	cfgPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		return err
	}
	caddy := exec.Command(caddyPath, "run", "--config", cfgPath, "--adapter", "caddyfile")
	caddy.Env = append(os.Environ(), "HOME="+tmp, "XDG_DATA_HOME="+tmp, "XDG_CONFIG_HOME="+tmp)
	caddyLog, _ := os.Create(filepath.Join(tmp, "caddy.log"))
	caddy.Stdout, caddy.Stderr = caddyLog, caddyLog
	if err := caddy.Start(); err != nil {
		return err
	}
	defer func() {
		_ = caddy.Process.Signal(os.Interrupt)
		_ = caddy.Wait()
	}()
	if err := benchutil.WaitHTTP("http://127.0.0.1:"+manifestPort+"/api/bench/x", http.Header{"Authorization": {"Bearer " + token}}, 30*time.Second); err != nil {
		logData, _ := os.ReadFile(caddyLog.Name())
		return fmt.Errorf("manifest route not up: %w\n%s", err, logData)
	}

	load := func(port string, requests int) (loadgen.Result, error) {
		url := "http://127.0.0.1:" + port + "/api/bench/items/42"
		o := loadgen.Options{
			Concurrency: concurrency,
			Request: func(int) (*http.Request, error) {
				req, err := http.NewRequest(http.MethodGet, url, nil)
				if err == nil {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				return req, err
			},
			Check: func(resp *http.Response) error {
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			},
		}
		if requests > 0 {
			o.Requests = requests
		} else {
			o.Duration = duration
		}
		res, err := loadgen.Run(ctx, o)
		if err == nil && res.Errors > 0 {
			err = fmt.Errorf("%d errors, first: %v", res.Errors, res.FirstError)
		}
		return res, err
	}
	for _, p := range []string{staticPort, manifestPort} {
		if _, err := load(p, 2000); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}

	var static, routed []loadgen.Result
	for r := range rounds {
		// Alternate the order, so drift on a shared machine hits both alike.
		order := []string{"static", "manifest"}
		if r%2 == 1 {
			order = []string{"manifest", "static"}
		}
		for _, which := range order {
			port := staticPort
			if which == "manifest" {
				port = manifestPort
			}
			res, err := load(port, 0)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", which, r+1, err)
			}
			if which == "manifest" {
				routed = append(routed, res)
			} else {
				static = append(static, res)
			}
			log.Printf("round %d %-8s %v", r+1, which, res)
		}
	}

	s, m := loadgen.Median(static), loadgen.Median(routed)
	ratios := make([]float64, len(static))
	for i := range static {
		ratios[i] = routed[i].RPS / static[i].RPS
	}
	slices.Sort(ratios)
	fmt.Println()
	fmt.Printf("Plugin routing benchmark: %d rounds x %v per variant, %d connections, GOMAXPROCS=%d, %d CPUs (load generator, Caddy and upstream share them)\n",
		rounds, duration, concurrency, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Printf("%-52s %10s %10s %10s\n", "", "req/s", "p50", "p99")
	row := func(name string, r loadgen.Result) {
		fmt.Printf("%-52s %10.0f %10v %10v\n", name, r.RPS, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	}
	row("gatehouse_auth + static reverse_proxy (median)", s)
	row("gatehouse_auth + manifest route (median)", m)
	fmt.Printf("manifest / static: %.1f%% (ratio of medians), %.1f%% (median of per-round ratios); target >= 95%%\n",
		100*m.RPS/s.RPS, 100*ratios[len(ratios)/2])
	args := strings.Join(os.Args[1:], " ")
	fmt.Printf("command: go run ./cmd/bench-plugins %s\n", args)
	return nil
}
