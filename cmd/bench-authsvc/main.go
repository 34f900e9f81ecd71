// Command bench-authsvc measures authsvc alone (`make bench-authsvc`): login
// throughput and latency at a few concurrencies, GET /api/users/me
// throughput, and /api/users/me latency while a login flood runs, each next
// to a baseline measured in the same run (GET /health: the HTTP stack with
// no database or hashing). It prints figures; it never passes or fails.
//
// authsvc runs as its own process (bin/authsvc, built by `make build`) on a
// fresh database of the private cluster, or of DATABASE_URL's server.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/benchutil"
	"github.com/gatehouse/gatehouse/internal/loadgen"
)

func main() {
	dur := flag.Duration("duration", 5*time.Second, "length of each measurement")
	users := flag.Int("users", 64, "accounts to create for the login runs")
	flag.Parse()
	if err := run(*dur, *users); err != nil {
		fmt.Fprintln(os.Stderr, "bench-authsvc:", err)
		os.Exit(1)
	}
}

const password = "Bench#Passw0rd"

func run(dur time.Duration, nUsers int) error {
	ctx := context.Background()
	dbURL, cleanupDB, err := benchutil.Database("bench_authsvc")
	if err != nil {
		return err
	}
	defer cleanupDB()

	tmp, err := os.MkdirTemp("", "bench-authsvc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	addr, err := benchutil.FreeAddr()
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join("bin", "authsvc"), "serve")
	// AUTH_RATE_LIMIT=0: every login here comes from one address, and
	// what is measured is the password hashing, not the per-address limit
	// that would turn most of them into 429s.
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "AUTHSVC_ADDR="+addr, "DATA_DIR="+tmp, "AUTH_RATE_LIMIT=0")
	logf, _ := os.Create(filepath.Join(tmp, "authsvc.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start bin/authsvc (run `make build` first): %w", err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	base := "http://" + addr
	if err := benchutil.WaitHTTP(base+"/health", nil, 30*time.Second); err != nil {
		return err
	}

	emails := make([]string, nUsers)
	for i := range emails {
		emails[i] = fmt.Sprintf("bench%d@example.com", i)
		body := fmt.Sprintf(`{"email":%q,"password":%q}`, emails[i], password)
		resp, err := http.Post(base+"/api/auth/register", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("register: %s", resp.Status)
		}
	}
	token, err := login(base, emails[0])
	if err != nil {
		return err
	}

	health := func(int) (*http.Request, error) { return http.NewRequest("GET", base+"/health", nil) }
	me := func(int) (*http.Request, error) {
		r, err := http.NewRequest("GET", base+"/api/users/me", nil)
		if err == nil {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return r, err
	}
	loginReq := func(i int) (*http.Request, error) {
		form := url.Values{"username": {emails[i%len(emails)]}, "password": {password}}
		r, err := http.NewRequest("POST", base+"/api/auth/login", strings.NewReader(form.Encode()))
		if err == nil {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return r, err
	}

	fmt.Printf("authsvc benchmark: %d s per run, GOMAXPROCS of the machine, authsvc as a separate process\n", int(dur.Seconds()))
	fmt.Println("command: make bench-authsvc   (go run ./cmd/bench-authsvc -duration", dur, ")")
	fmt.Printf("\n%-34s %6s %10s %9s %9s %9s %7s\n", "run", "conc", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors")
	show := func(name string, conc int, fn func(int) (*http.Request, error)) loadgen.Result {
		r, err := loadgen.Run(ctx, loadgen.Options{Concurrency: conc, Duration: dur, Request: fn})
		if err != nil {
			fmt.Fprintln(os.Stderr, name+":", err)
		}
		printRow(name, conc, r)
		return r
	}
	for _, c := range []int{1, 8, 32} {
		show("GET /health (baseline)", c, health)
	}
	for _, c := range []int{1, 8, 32} {
		show("GET /api/users/me", c, me)
	}
	for _, c := range []int{1, 4, 16} {
		show("POST /api/auth/login", c, loginReq)
	}

	// Starvation check: /api/users/me at concurrency 4 alone, then while 32
	// clients flood the login endpoint.
	alone := show("GET /api/users/me alone", 4, me)
	var wg sync.WaitGroup
	floodCtx, stopFlood := context.WithCancel(ctx)
	var flood loadgen.Result
	wg.Add(1)
	go func() {
		defer wg.Done()
		flood, _ = loadgen.Run(floodCtx, loadgen.Options{Concurrency: 32, Duration: dur + 2*time.Second, Request: loginReq})
	}()
	time.Sleep(time.Second)
	during := show("GET /api/users/me during flood", 4, me)
	stopFlood()
	wg.Wait()
	printRow("POST /api/auth/login (the flood)", 32, flood)
	fmt.Printf("\n/api/users/me p99 during a 32-client login flood: %.1f ms vs %.1f ms alone (x%.1f); throughput %.0f vs %.0f req/s\n",
		ms(during.P99), ms(alone.P99), ms(during.P99)/max(ms(alone.P99), 0.001), during.RPS, alone.RPS)
	return nil
}

func printRow(name string, conc int, r loadgen.Result) {
	fmt.Printf("%-34s %6d %10.0f %9.2f %9.2f %9.2f %7d\n", name, conc, r.RPS, ms(r.P50), ms(r.P90), ms(r.P99), r.Errors)
	if r.FirstError != nil {
		fmt.Printf("    first error: %v\n", r.FirstError)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func login(base, email string) (string, error) {
	form := url.Values{"username": {email}, "password": {password}}
	resp, err := http.PostForm(base+"/api/auth/login", form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("login: %s %v", resp.Status, err)
	}
	return tok.AccessToken, nil
}
