// Command bench-edge measures what gatehouse_auth costs at the edge, in one
// run: it builds Gatehouse's Caddy, starts it with four sites in front of
// the same tiny upstream (plain reverse_proxy; the same, with a client that
// also sends the X-User-* headers; the same behind gatehouse_auth with keys
// from a JWKS file and a revocation feed of 2,000 entries; the same with
// forward_token), loads them with internal/loadgen in rounds of
// fixed-size slices on kept connections, in A B B A order (the plain and
// guarded sites also with a browser's request headers), and prints median
// throughput and latency, the ratios with their quartiles, Caddy's CPU
// time per request, and the cost of a cache miss (every request a new
// valid token). With valgrind installed it also counts the instructions
// Caddy executes per request of each variant (instructions.go), a figure
// the machine's noise does not move.
// It prints figures, never pass or fail (`make bench-edge`).
package main

import (
	"bytes"
	"context"
	"crypto/rsa"
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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
	"github.com/gatehouse/gatehouse/internal/benchutil"
	"github.com/gatehouse/gatehouse/internal/loadgen"
)

func main() {
	rounds := flag.Int("rounds", 80, "rounds of load on every variant; medians are reported")
	requests := flag.Int("requests", 4000, "requests per variant and round (a slice)")
	flag.DurationVar(&profileDuration, "cpuprofile-duration", 5*time.Second, "length of each profiled run")
	concurrency := flag.Int("concurrency", 16, "concurrent client connections")
	misses := flag.Int("miss-tokens", 4000, "distinct tokens for the cache-miss run")
	caddyPath := flag.String("caddy", "", "Caddy binary to use (default: build ./cmd/caddy into a temporary directory)")
	flag.IntVar(&pinCaddy, "pin-caddy", -1, "run Caddy on this CPU only (with taskset), so that the load generator and the upstream, run on the other CPUs, do not take its time; -1: no pinning")
	flag.StringVar(&profilePath, "cpuprofile", "", "write Caddy's CPU profile during each profiled variant's first run to this file, suffixed with the variant's name (inspect with go tool pprof; compare with -diff_base)")
	flag.IntVar(&instructionRequests, "instructions", 1000, "requests per variant and round whose instructions in Caddy are counted under valgrind's callgrind (0: no counts)")
	flag.IntVar(&instructionRounds, "instruction-rounds", 3, "rounds of instruction counts")
	flag.StringVar(&profileVariants, "cpuprofile-variants", "plain,guarded", "comma-separated variants that -cpuprofile profiles")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench-edge: ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *rounds, *requests, *concurrency, *misses, *caddyPath); err != nil {
		log.Fatal(err)
	}
}

var (
	profilePath, profileVariants string
	profileDuration              time.Duration
	pinCaddy                     = -1
	instructionRequests          int
	instructionRounds            int
)

// profileCaddy fetches a CPU profile from Caddy's admin endpoint.
func profileCaddy(admin string, d time.Duration, path string) <-chan error {
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, int(d.Seconds())))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return done
}

func run(ctx context.Context, rounds, slice, concurrency, misses int, caddyPath string) error {
	tmp, err := os.MkdirTemp("", "bench-edge-")
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

	// Keys and tokens, as authsvc would issue them.
	issuer, err := benchutil.NewIssuer(tmp)
	if err != nil {
		return err
	}
	key, jwksPath := issuer.Key, issuer.JWKSPath
	mint := func(i int) (string, error) { return issuer.Token(fmt.Sprintf("bench-%d", i)) }
	token, err := mint(-1)
	if err != nil {
		return err
	}
	log.Printf("signing %d distinct tokens for the cache-miss run", misses)
	missTokens, err := mintMany(misses, mint)
	if err != nil {
		return err
	}

	// The upstream: as small as an HTTP service gets, so the figures are
	// about the edge.
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// It also serves the guarded route's revocation feed, with as many
	// entries as a busy day of logouts and account changes might leave
	// (none of them the bench token's), so the guarded figure includes the
	// per-request revocation check.
	feed := revocationFeed(1000)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/internal/revocations" {
			w.Header().Set("ETag", `"bench"`)
			if r.Header.Get("If-None-Match") == `"bench"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			_, _ = w.Write(feed)
			return
		}
		if r.Header.Get("X-User-Id") == "" && r.Host == "guarded" {
			w.WriteHeader(http.StatusInternalServerError) // the guard did not run
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})}
	go up.Serve(upLn)
	defer up.Close()

	ports, err := benchutil.FreePorts(5)
	if err != nil {
		return err
	}
	sites, adminPort := ports[:4], ports[4]
	upAddr := upLn.Addr().String()
	cfgPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(benchCaddyfile(upAddr, jwksPath, adminPort, sites, "")), 0o600); err != nil {
		return err
	}
	caddyArgs := []string{caddyPath, "run", "--config", cfgPath, "--adapter", "caddyfile"}
	if pinCaddy >= 0 {
		caddyArgs = append([]string{"taskset", "-c", strconv.Itoa(pinCaddy)}, caddyArgs...)
	}
	// taskset execs Caddy in place, so the pid stays Caddy's (processCPU).
	caddy, stopCaddy, err := startCaddy(caddyArgs, nil, tmp, sites, 30*time.Second)
	if err != nil {
		return err
	}
	defer stopCaddy()

	// Caddy's own CPU time and requests served, per variant: what the edge
	// costs per request, apart from the load generator and the upstream
	// sharing the cores.
	caddyCPU, caddyRequests := map[string]time.Duration{}, map[string]int{}
	// Each variant keeps its client, and so its keep-alive connections,
	// across rounds: a slice measures requests, not connection set-up.
	clients := map[string]*http.Client{}
	client := func(name string) *http.Client {
		if clients[name] == nil {
			clients[name] = &http.Client{Transport: &http.Transport{
				MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency, IdleConnTimeout: time.Hour}}
		}
		return clients[name]
	}
	// identity is what gatehouse_auth sets for the bench token; the
	// plain+identity variant has the client send it, so that its upstream
	// request carries the same headers as the guarded route's.
	identity := http.Header{
		"X-User-Id":     {benchutil.BenchUserID},
		"X-User-Role":   {"user"},
		"X-User-Groups": {"doc-service-admin"},
	}
	// load sends a number of requests on the variant's connections, or,
	// with requests 0, runs for a duration on new ones.
	load := func(v variant, tokens []string, requests int, duration time.Duration) (loadgen.Result, error) {
		o := loadgen.Options{
			Concurrency: concurrency,
			Client:      client(v.name),
			Request:     v.requests(sites, tokens),
		}
		if requests > 0 {
			o.Requests = requests
		} else {
			// A run that ends on a deadline drops the requests in flight,
			// and their connections with them.
			o.Duration, o.Client = duration, nil
		}
		cpu0 := processCPU(caddy.Process.Pid)
		res, err := loadgen.Run(ctx, o)
		caddyCPU[v.name] += processCPU(caddy.Process.Pid) - cpu0
		caddyRequests[v.name] += res.Requests
		if err == nil && res.Errors > 0 {
			err = fmt.Errorf("%d errors, first: %v", res.Errors, res.FirstError)
		}
		return res, err
	}

	// Variants of the same route. plain and guarded get the same client
	// request (token included, Go's minimal client headers): guarded/plain
	// is the whole price. plain+identity is plain reverse_proxy whose
	// client also sends the three X-User-* headers, so its upstream request
	// carries the headers the guarded route sends: guarded/that is what
	// stripping, verifying and setting cost, apart from carrying three more
	// headers through Caddy and the upstream. forward is the guarded route
	// with forward_token (the token also goes upstream, as on the
	// repository's authsvc route). The browser pair repeats plain and
	// guarded with the headers a browser sends with an SPA's API call.
	// The order puts each compared pair side by side (see the rounds).
	variants := []variant{
		{"plain", sitePlain, nil},
		{"guarded", siteGuarded, nil},
		{"forward", siteForward, nil},
		{"plain+identity", siteIdentity, identity},
		{"plain, browser", sitePlain, browserHeaders},
		{"guarded, browser", siteGuarded, browserHeaders},
	}
	// Warm every path (connections, the token cache, Go's runtime).
	for _, v := range variants {
		if _, err := load(v, []string{token}, 2000, 0); err != nil {
			return fmt.Errorf("warm-up %s: %w", v.name, err)
		}
	}
	clear(caddyCPU)
	clear(caddyRequests)
	log.Printf("%d rounds of %d requests per variant", rounds, slice)
	results := map[string][]loadgen.Result{}
	for r := range rounds {
		var line strings.Builder
		fmt.Fprintf(&line, "round %2d:", r+1)
		for _, v := range roundOrder(variants, r) {
			res, err := load(v, []string{token}, slice, 0)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", v.name, r+1, err)
			}
			results[v.name] = append(results[v.name], res)
			fmt.Fprintf(&line, " %s %.0f/s", v.name, res.RPS)
		}
		log.Print(line.String())
	}
	cpuPerRequest := map[string]time.Duration{}
	for name, n := range caddyRequests {
		cpuPerRequest[name] = caddyCPU[name] / time.Duration(max(n, 1))
	}
	// Profiles come from runs of their own, outside the figures.
	for _, v := range variants {
		if profilePath == "" || !slices.Contains(strings.Split(profileVariants, ","), v.name) {
			continue
		}
		path := profilePath + "." + strings.NewReplacer(", ", "-", "+", "-").Replace(v.name)
		prof := profileCaddy("127.0.0.1:"+adminPort, max(profileDuration-time.Second, time.Second), path)
		if _, err := load(v, []string{token}, 0, profileDuration); err != nil {
			return fmt.Errorf("profiled run %s: %w", v.name, err)
		}
		if err := <-prof; err != nil {
			log.Printf("cpu profile: %v", err)
		} else {
			log.Printf("wrote Caddy's CPU profile for %s to %s", v.name, path)
		}
	}
	missRes, err := load(variants[1], missTokens, len(missTokens), 0)
	if err != nil {
		return fmt.Errorf("cache-miss run: %w", err)
	}
	log.Printf("cache-miss run   %v", missRes)
	verifyCost := measureVerify(key, token)
	var instructions map[string][]instructionCount
	if instructionRequests > 0 {
		log.Printf("counting Caddy's instructions per request under valgrind")
		instructions, err = countInstructions(ctx, tmp, caddyPath, upAddr, jwksPath, token, variants, instructionRequests, instructionRounds)
		if err != nil {
			// The throughput figures stand without them.
			log.Printf("instruction counts skipped: %v", err)
		}
	}

	fmt.Println()
	placement := "load generator, Caddy and upstream share the CPUs"
	if pinCaddy >= 0 {
		placement = fmt.Sprintf("Caddy alone on CPU %d, load generator and upstream on the %d other(s)", pinCaddy, runtime.NumCPU())
	}
	fmt.Printf("Edge benchmark: %d rounds x %d requests per variant, %d connections (%s)\n",
		rounds, slice, concurrency, placement)
	fmt.Printf("%-58s %10s %10s %10s %12s\n", "", "req/s", "p50", "p99", "Caddy CPU")
	row := func(name string, res loadgen.Result, cpu time.Duration) {
		c := "-"
		if cpu > 0 {
			c = fmt.Sprintf("%.1fµs", float64(cpu)/float64(time.Microsecond))
		}
		fmt.Printf("%-58s %10.0f %10v %10v %12s\n", name, res.RPS, res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), c)
	}
	labels := map[string]string{
		"plain":            "plain reverse_proxy",
		"plain+identity":   "plain reverse_proxy, client also sends X-User-*",
		"guarded":          "gatehouse_auth, cached token",
		"forward":          "gatehouse_auth forward_token, cached token",
		"plain, browser":   "plain reverse_proxy, browser headers",
		"guarded, browser": "gatehouse_auth, cached token, browser headers",
	}
	for _, v := range variants {
		row(labels[v.name]+" (median)", loadgen.Median(results[v.name]), cpuPerRequest[v.name])
	}
	row("gatehouse_auth, every token new (misses)", missRes, 0)
	// Rounds are paired (the variants run back to back), so the median of
	// per-round ratios is less exposed to drift than the ratio of medians.
	ratio := func(a, b string) (ofMedians, perRound, q1, q3 float64) {
		ra, rb := results[a], results[b]
		ratios := make([]float64, len(ra))
		for i := range ra {
			ratios[i] = 100 * ra[i].RPS / rb[i].RPS
		}
		slices.Sort(ratios)
		n := len(ratios)
		return 100 * loadgen.Median(ra).RPS / loadgen.Median(rb).RPS, ratios[n/2], ratios[n/4], ratios[(3*n)/4]
	}
	for _, c := range comparisons {
		m, pr, q1, q3 := ratio(c.a, c.b)
		// Caddy's CPU per request, inverted, is what the throughput ratio
		// would be if Caddy's CPU alone set the pace.
		cpu := 100 * float64(cpuPerRequest[c.b]) / float64(cpuPerRequest[c.a])
		fmt.Printf("%-34s %5.1f%% median of per-round ratios (quartiles %5.1f%%, %5.1f%%), %5.1f%% ratio of medians, %5.1f%% by Caddy CPU per request: %s\n",
			c.a+" / "+c.b+":", pr, q1, q3, m, cpu, c.what)
	}
	fmt.Printf("cache-miss throughput vs cached: %.1f%%; RSA-2048 verification alone: %v per token (in-process, one core)\n",
		100*missRes.RPS/loadgen.Median(results["guarded"]).RPS, verifyCost.Round(time.Microsecond))
	if instructions != nil {
		printInstructions(instructions, variants, labels, instructionRequests, instructionRounds)
	}
	fmt.Printf("command: %s\n", commandLine())
	return nil
}

// browserHeaders are what a browser sends with an SPA's API call (besides
// the token), so that one pair of variants sees a realistic header count.
var browserHeaders = http.Header{
	"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"},
	"Accept":          {"application/json, text/plain, */*"},
	"Accept-Language": {"en-GB,en;q=0.7,de;q=0.3"},
	"Accept-Encoding": {"gzip, deflate, br, zstd"},
	"Referer":         {"https://gatehouse.example.com/documents"},
	"Sec-Fetch-Dest":  {"empty"},
	"Sec-Fetch-Mode":  {"cors"},
	"Sec-Fetch-Site":  {"same-origin"},
	"Priority":        {"u=0"},
	"Cookie":          {"theme=dark; sidebar=collapsed"},
}

// revocationFeed is a feed document with n user cut-offs and n ended
// sessions.
func revocationFeed(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"users":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"user_id":"00000000-0000-4000-8000-%012d","not_before":%d}`, i, time.Now().Unix())
	}
	b.WriteString(`],"sessions":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"session_id":"00000000-0000-4000-9000-%012d"}`, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// mintMany signs n tokens on all cores: RSA signing is the slow part of
// preparing the cache-miss run.
func mintMany(n int, mint func(int) (string, error)) ([]string, error) {
	out := make([]string, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				tok, err := mint(i)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				out[i] = tok
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

// measureVerify is the verifier's cost per token without HTTP around it.
func measureVerify(key *rsa.PrivateKey, token string) time.Duration {
	v := &accesstoken.Verifier{Issuer: "gatehouse", Audience: "gatehouse",
		Keys: func(string) (*accesstoken.Key, error) { return accesstoken.RSAKey(&key.PublicKey), nil }}
	const n = 500
	start := time.Now()
	for range n {
		if _, err := v.Verify(token); err != nil {
			log.Fatalf("verify: %v", err)
		}
	}
	return time.Since(start) / n
}

// processCPU is the user+system CPU time a process has used so far, from
// /proc/PID/stat (clock ticks, 100 per second on Linux).
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// startCaddy runs a bench Caddy (args: the command line, env: more
// variables, its home and log in dir) and waits until every site port
// accepts connections; stop interrupts it and waits for it to exit.
func startCaddy(args, env []string, dir string, sites []string, wait time.Duration) (cmd *exec.Cmd, stop func(), err error) {
	cmd = exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), env...), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	logFile, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, nil, err
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		logFile.Close()
	}
	for _, p := range sites {
		if err := benchutil.WaitTCP("127.0.0.1:"+p, wait); err != nil {
			stop()
			logData, _ := os.ReadFile(logFile.Name())
			return nil, nil, fmt.Errorf("%s did not start: %w\n%s", strings.Join(args, " "), err, logData)
		}
	}
	return cmd, stop, nil
}

func commandLine() string {
	cmd := "bench-edge " + strings.Join(os.Args[1:], " ")
	if pinCaddy >= 0 {
		cmd = "taskset -c <the other CPUs> " + cmd
	}
	return cmd + "   (make bench-edge runs it pinned; go run ./cmd/bench-edge runs it unpinned)"
}

// comparisons are the ratios the bench reports, a over b.
// The instruction counts break the marked ones down by Go package.
var comparisons = []struct {
	a, b, what string
	breakdown  bool
}{
	{"guarded", "plain", "target >= 95%", true},
	{"guarded, browser", "plain, browser", "the same with a browser's request headers", false},
	{"forward", "plain", "forward_token: the token goes upstream too", false},
	{"guarded", "plain+identity", "same upstream headers: the guard's own cost", true},
	{"plain+identity", "plain", "what three more headers through Caddy and the upstream cost", true},
}

// The sites of a bench Caddy, in the order benchCaddyfile gives them ports.
const (
	sitePlain    = iota // plain reverse_proxy
	siteIdentity        // the same again, for the client that sends X-User-*
	siteGuarded         // gatehouse_auth, then the same reverse_proxy
	siteForward         // the same with forward_token
)

// benchCaddyfile is the configuration of a bench Caddy: the four sites on
// the given ports in front of the upstream at upAddr. guardExtra is added
// to both gatehouse_auth blocks.
func benchCaddyfile(upAddr, jwksPath, adminPort string, sites []string, guardExtra string) string {
	plainSite := func(port string) string {
		return fmt.Sprintf(":%s {\n\treverse_proxy %s {\n\t\theader_up Host plain\n\t}\n}\n", port, upAddr)
	}
	guardedSite := func(port, extra string) string {
		return fmt.Sprintf(`:%s {
	gatehouse_auth {
		jwks_file %s
		issuer gatehouse
		audience gatehouse
		revocations_url http://%s/internal/revocations%s
	}
	reverse_proxy %s {
		header_up Host guarded
	}
}
`, port, jwksPath, upAddr, extra+guardExtra, upAddr)
	}
	return fmt.Sprintf("{\n\tadmin 127.0.0.1:%s\n\tlog {\n\t\tlevel ERROR\n\t}\n}\n", adminPort) +
		plainSite(sites[sitePlain]) + plainSite(sites[siteIdentity]) +
		guardedSite(sites[siteGuarded], "") + guardedSite(sites[siteForward], "\n\t\tforward_token")
}

// roundOrder is the variants in the order round r runs them: as given in
// even rounds and reversed in odd ones (A B B A ...), so that the pairs
// compared (plain and guarded first) run back to back, and drift on a
// shared machine favours neither side of a pair over the whole run.
func roundOrder(variants []variant, r int) []variant {
	if r%2 == 0 {
		return variants
	}
	reversed := slices.Clone(variants)
	slices.Reverse(reversed)
	return reversed
}

// A variant is one way of sending the same request: to one of the sites,
// with headers besides the token.
type variant struct {
	name  string
	site  int
	extra http.Header
}

// requests builds the variant's requests for a Caddy whose sites listen on
// the given ports, request i carrying token i (round robin).
func (v variant) requests(sites []string, tokens []string) func(i int) (*http.Request, error) {
	url := "http://127.0.0.1:" + sites[v.site] + "/"
	return func(i int) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
		for k, vals := range v.extra {
			req.Header[k] = vals
		}
		return req, nil
	}
}
