package main

import (
	"bufio"
	"cmp"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/benchutil"
	"github.com/gatehouse/gatehouse/internal/loadgen"
)

// errNoValgrind skips the instruction counts on a machine without valgrind.
var errNoValgrind = errors.New("valgrind is not installed (apt-get install valgrind)")

// countInstructions counts the instructions Caddy executes per request of
// each variant: a second bench Caddy, with the same sites, runs under
// valgrind's callgrind; for each variant in turn the counters are zeroed,
// n requests are sent one after another on a kept connection, and the
// counters are dumped. Throughput on this shared two-core machine varies by
// ±15 % between slices; these counts vary by a few per cent (Go's
// scheduler does more or less work depending on when the next request
// arrives), and they split the edge's cost by what a variant changes.
// They leave out what instructions do not show (the kernel's work, cache
// misses, waiting), which the throughput rounds include. It returns, per variant, one count per
// round (A B B A order, as the throughput rounds).
func countInstructions(ctx context.Context, tmp, caddyPath, upAddr, jwksPath, token string, variants []variant, n, rounds int) (map[string][]instructionCount, error) {
	for _, tool := range []string{"valgrind", "callgrind_control"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, errNoValgrind
		}
	}
	dir := filepath.Join(tmp, "callgrind")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := benchutil.FreePorts(5)
	if err != nil {
		return nil, err
	}
	sites, adminPort := ports[:4], ports[4]
	// The key set and the revocation feed are loaded at start, so every
	// guarded request still checks both. Their refreshes run on wall-clock
	// timers, and under valgrind a request takes a hundred times longer, so
	// at their usual intervals they would weigh a hundred times more per
	// request than they do in the throughput rounds: here they wait an hour.
	cfg := benchCaddyfile(upAddr, jwksPath, adminPort, sites, "\n\t\trevocations_interval 1h\n\t\tjwks_refresh_interval 1h")
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	symbols, err := symbolTable(caddyPath)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "callgrind.out")
	// Costs per instruction address (--dump-instr), written out in full
	// (--compress-pos=no), so that the SHA-256 blocks can be told apart.
	args := []string{"valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
		"--dump-instr=yes", "--compress-pos=no",
		caddyPath, "run", "--config", cfgPath, "--adapter", "caddyfile"}
	// callgrind stops on an internal assertion when Go's runtime preempts
	// goroutines with signals, hence asyncpreemptoff. valgrind runs one
	// thread at a time anyway; with one P the runtime does not hand work
	// between threads through it, and a slice takes seconds, not minutes.
	// Both variants of every pair run under the same settings.
	cmd, stop, err := startCaddy(args, []string{"GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1"}, dir, sites, 3*time.Minute)
	if err != nil {
		return nil, err
	}
	defer stop()
	pid := strconv.Itoa(cmd.Process.Pid)
	control := func(arg string) error {
		if b, err := exec.CommandContext(ctx, "callgrind_control", arg, pid).CombinedOutput(); err != nil {
			return fmt.Errorf("callgrind_control %s: %w: %s", arg, err, b)
		}
		return nil
	}
	// collect runs Go's garbage collector in Caddy (the admin endpoint's
	// heap profile does so first), so that every counted slice starts
	// with the same heap and the collections inside it fall at the same
	// points for the same requests.
	collect := func() error {
		resp, err := http.Get("http://127.0.0.1:" + adminPort + "/debug/pprof/heap?gc=1")
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("heap profile: %s", resp.Status)
		}
		return err
	}
	send := func(v variant, n int) error {
		res, err := loadgen.Run(ctx, loadgen.Options{Concurrency: 1, Requests: n, Request: v.requests(sites, []string{token})})
		if err == nil && res.Errors > 0 {
			err = fmt.Errorf("%d errors, first: %v", res.Errors, res.FirstError)
		}
		if err == nil && res.Requests != n {
			err = fmt.Errorf("%d of %d requests sent", res.Requests, n)
		}
		return err
	}
	// Warm every path: connections, the token cache, Go's runtime.
	for _, v := range variants {
		if err := send(v, 300); err != nil {
			return nil, fmt.Errorf("warm-up under valgrind, %s: %w", v.name, err)
		}
	}
	counts := map[string][]instructionCount{}
	dumps := 0
	for r := range rounds {
		var line strings.Builder
		fmt.Fprintf(&line, "instructions, round %d:", r+1)
		for _, v := range roundOrder(variants, r) {
			if err := collect(); err != nil {
				return nil, err
			}
			if err := control("-z"); err != nil {
				return nil, err
			}
			if err := send(v, n); err != nil {
				return nil, fmt.Errorf("%s under valgrind: %w", v.name, err)
			}
			if err := control("-d"); err != nil {
				return nil, err
			}
			dumps++
			total, inSHA, byPackage, err := readCallgrindDump(fmt.Sprintf("%s.%d", out, dumps), symbols)
			if err != nil {
				return nil, err
			}
			c := instructionCount{float64(total) / float64(n), float64(inSHA) / float64(n), map[string]float64{}}
			for pkg, cost := range byPackage {
				c.byPackage[pkg] = float64(cost) / float64(n)
			}
			counts[v.name] = append(counts[v.name], c)
			fmt.Fprintf(&line, " %s %.0f (SHA-256 %.0f)", v.name, c.all, c.sha)
		}
		log.Print(line.String())
	}
	return counts, nil
}

// An instructionCount is what a slice counted per request: all of Caddy's
// instructions, those in the SHA-256 block functions, and all of them by
// Go package. Go hashes with the CPU's SHA extensions where it has them;
// valgrind does not emulate them, so under it Go runs its AVX2 code, many
// times the instructions (the token's hash for the cache: some 24 000 per
// request under valgrind; natively 0.6 µs, 850 bytes with sha256.Sum256
// here). The report gives both.
type instructionCount struct {
	all, sha  float64
	byPackage map[string]float64
}

// A symbol is a function's code, [start, end), with its Go package.
type symbol struct {
	start, end uint64
	pkg        string
	sha        bool // a SHA-256 block function
}

// symbolTable reads the binary's functions, sorted by address.
func symbolTable(binary string) ([]symbol, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("%s: %w (a stripped binary cannot be counted by function)", binary, err)
	}
	var table []symbol
	shas := 0
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 {
			continue
		}
		sha := strings.Contains(s.Name, "/sha256.block")
		if sha {
			shas++
		}
		table = append(table, symbol{s.Value, s.Value + s.Size, goPackage(s.Name), sha})
	}
	if shas == 0 {
		return nil, fmt.Errorf("no SHA-256 block functions among %s's symbols", binary)
	}
	slices.SortFunc(table, func(a, b symbol) int { return cmp.Compare(a.start, b.start) })
	return table, nil
}

// goPackage is the package of a Go symbol name: "net/http" for
// "net/http.Header.writeSubset", "internal/runtime/maps" for
// "internal/runtime/maps.(*Iter).Next"; assembly without a package
// ("aeshashbody") is the runtime's.
func goPackage(name string) string {
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i] // type parameters may hold other packages' names
	}
	slash := strings.LastIndexByte(name, '/')
	dot := strings.IndexByte(name[slash+1:], '.')
	if dot < 0 {
		return "runtime"
	}
	return name[:slash+1+dot]
}

// lookup finds the symbol holding addr.
func lookup(table []symbol, addr uint64) *symbol {
	i, _ := slices.BinarySearchFunc(table, addr, func(s symbol, a uint64) int { return cmp.Compare(s.start, a+1) })
	if i == 0 || addr >= table[i-1].end {
		return nil
	}
	return &table[i-1]
}

// readCallgrindDump counts a dump's instructions: in all, in the SHA-256
// blocks, and by package. It waits for the totals line: callgrind may
// still be writing the dump when callgrind_control returns.
func readCallgrindDump(path string, table []symbol) (total, sha uint64, byPackage map[string]uint64, err error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		total, sha, byPackage, err = parseCallgrindDump(path, table)
		if err == nil || time.Now().After(deadline) {
			return total, sha, byPackage, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parseCallgrindDump reads cost lines, "address line cost" (from
// --dump-instr=yes --compress-pos=no); the line after each "calls=" line
// is the cost of that call, callee included, and is skipped.
func parseCallgrindDump(path string, table []symbol) (total, sha uint64, byPackage map[string]uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, nil, err
	}
	defer f.Close()
	byPackage = map[string]uint64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	skip := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case skip:
			skip = false
		case strings.HasPrefix(line, "calls="):
			skip = true
		case strings.HasPrefix(line, "0x"):
			fields := strings.Fields(line)
			if len(fields) < 2 {
				return 0, 0, nil, fmt.Errorf("%s: unexpected cost line %q", path, line)
			}
			addr, err1 := strconv.ParseUint(fields[0][2:], 16, 64)
			cost, err2 := strconv.ParseUint(fields[len(fields)-1], 10, 64)
			if err1 != nil || err2 != nil {
				return 0, 0, nil, fmt.Errorf("%s: unexpected cost line %q", path, line)
			}
			pkg := "(outside Caddy's binary: libc, vDSO)"
			if s := lookup(table, addr); s != nil {
				pkg = s.pkg
				if s.sha {
					sha += cost
				}
			}
			byPackage[pkg] += cost
		case strings.HasPrefix(line, "totals:"):
			total, err = strconv.ParseUint(strings.Fields(strings.TrimPrefix(line, "totals:"))[0], 10, 64)
			return total, sha, byPackage, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, nil, err
	}
	return 0, 0, nil, fmt.Errorf("no totals line in %s", path)
}

// printInstructions reports the counts: per variant the medians over the
// rounds, and for each comparison the ratio b / a of the medians (what
// the throughput ratio a / b would be if Caddy's instructions alone set
// the pace) with the lowest and highest of the per-round ratios, counted
// in full and without the SHA-256 blocks.
func printInstructions(counts map[string][]instructionCount, variants []variant, labels map[string]string, n, rounds int) {
	fmt.Printf("\nInstructions Caddy executes per request (valgrind callgrind; %d rounds of %d requests per variant on one kept connection).\n", rounds, n)
	fmt.Println("User space only: the kernel's part of a request (socket reads and writes, much the same for every variant) is")
	fmt.Println("not counted, so these ratios lie further from 100% than throughput's; they show where the cost is, not the target.")
	fmt.Println("Under valgrind Go's SHA-256 runs its AVX2 code (valgrind lacks the CPU's SHA extensions): hashing the token for")
	fmt.Println("the cache counts many times its native instructions, so each figure is also given without the SHA-256 blocks.")
	median := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	pick := func(cs []instructionCount, withSHA bool) []float64 {
		out := make([]float64, len(cs))
		for i, c := range cs {
			out[i] = c.all
			if !withSHA {
				out[i] -= c.sha
			}
		}
		return out
	}
	fmt.Printf("%-58s %10s %10s\n", "", "all", "no SHA-256")
	for _, v := range variants {
		fmt.Printf("%-58s %10.0f %10.0f\n", labels[v.name], median(pick(counts[v.name], true)), median(pick(counts[v.name], false)))
	}
	for _, c := range comparisons {
		var parts []string
		for _, withSHA := range []bool{true, false} {
			a, b := pick(counts[c.a], withSHA), pick(counts[c.b], withSHA)
			perRound := make([]float64, len(a))
			for i := range a {
				perRound[i] = 100 * b[i] / a[i]
			}
			parts = append(parts, fmt.Sprintf("%5.1f%% (rounds %5.1f%% to %5.1f%%)", 100*median(b)/median(a), slices.Min(perRound), slices.Max(perRound)))
		}
		fmt.Printf("%-34s by instructions %s, without SHA-256 %s: %s\n", c.a+" / "+c.b+":", parts[0], parts[1],
			strings.Replace(c.what, "target >= 95%", "the target's pair (the target is on throughput)", 1))
	}
	// Where the differences are, by Go package: per round the difference
	// of the two variants' counts, then the median over the rounds.
	// Garbage collection falls into some slices and not others, so
	// "runtime" moves most from round to round.
	for _, c := range comparisons {
		if !c.breakdown {
			continue
		}
		a, b := counts[c.a], counts[c.b]
		pkgs := map[string]bool{}
		for i := range a {
			for pkg := range a[i].byPackage {
				pkgs[pkg] = true
			}
			for pkg := range b[i].byPackage {
				pkgs[pkg] = true
			}
		}
		type diff struct {
			pkg string
			d   float64
		}
		var diffs []diff
		allDiffs := make([]float64, len(a))
		for i := range a {
			allDiffs[i] = a[i].all - b[i].all
		}
		for pkg := range pkgs {
			ds := make([]float64, len(a))
			for i := range a {
				ds[i] = a[i].byPackage[pkg] - b[i].byPackage[pkg]
			}
			diffs = append(diffs, diff{pkg, median(ds)})
		}
		slices.SortFunc(diffs, func(x, y diff) int { return cmp.Compare(math.Abs(y.d), math.Abs(x.d)) })
		fmt.Printf("%s minus %s, instructions per request (median of rounds): %+.0f; by package:\n", c.a, c.b, median(allDiffs))
		for _, d := range diffs[:min(len(diffs), 12)] {
			fmt.Printf("  %+9.0f  %s\n", d.d, d.pkg)
		}
	}
}
