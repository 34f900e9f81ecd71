// Package loadgen is a small closed-loop HTTP load generator for the
// benchmarks behind `make bench`: N workers, each sending its next request
// as soon as the previous answer is read, over keep-alive connections, for
// a duration or a number of requests. It reports throughput, latency
// percentiles and errors; it never decides pass or fail.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a run. At least one of Duration and Requests is set;
// the run ends at whichever comes first.
type Options struct {
	// Concurrency is the number of workers (and connections). Default 1.
	Concurrency int
	// Duration bounds the run's length.
	Duration time.Duration
	// Requests bounds the number of requests sent.
	Requests int
	// Request builds request number i (0, 1, 2, ... across all workers).
	Request func(i int) (*http.Request, error)
	// Check judges a response whose body has been read; default: any 2xx
	// is a success.
	Check func(resp *http.Response) error
	// Client sends the requests; default: a keep-alive client with one
	// idle connection per worker and no timeout beyond ctx.
	Client *http.Client
}

// Result is what a run measured.
type Result struct {
	Requests   int           // requests completed (successful or not)
	Errors     int           // transport errors and failed checks
	FirstError error         // the first of them, for the report
	Elapsed    time.Duration // wall time of the run
	RPS        float64       // Requests / Elapsed
	P50        time.Duration // latency percentiles over all requests
	P90        time.Duration
	P99        time.Duration
	Max        time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("%d req in %v: %.0f req/s, p50 %v, p90 %v, p99 %v, max %v, %d errors",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.RPS,
		r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		r.Max.Round(time.Microsecond), r.Errors)
}

// Run sends load as o says until o's bound is reached or ctx is done.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Request == nil {
		return Result{}, errors.New("loadgen: Options.Request is required")
	}
	if o.Duration <= 0 && o.Requests <= 0 {
		return Result{}, errors.New("loadgen: set Options.Duration or Options.Requests")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Check == nil {
		o.Check = func(resp *http.Response) error {
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}
	}
	client := o.Client
	if client == nil {
		tr := &http.Transport{
			MaxIdleConns:        o.Concurrency,
			MaxIdleConnsPerHost: o.Concurrency,
			IdleConnTimeout:     90 * time.Second,
		}
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	var (
		next     atomic.Int64
		errCount atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		errCount.Add(1)
		errOnce.Do(func() { firstErr = err })
	}
	lat := make([][]time.Duration, o.Concurrency)
	start := time.Now()
	for w := range o.Concurrency {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if o.Requests > 0 && i >= o.Requests {
					break
				}
				req, err := o.Request(i)
				if err != nil {
					fail(fmt.Errorf("build request %d: %w", i, err))
					continue
				}
				t0 := time.Now()
				resp, err := client.Do(req.WithContext(ctx))
				if err != nil {
					if ctx.Err() != nil {
						break // the run ended mid-request; not the server's fault
					}
					fail(err)
					mine = append(mine, time.Since(t0))
					continue
				}
				// Read the whole body so the connection is reused.
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if err != nil && ctx.Err() != nil {
					break
				}
				mine = append(mine, d)
				if err == nil {
					err = o.Check(resp)
				}
				if err != nil {
					fail(err)
				}
			}
			lat[w] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	all := slices.Concat(lat...)
	slices.Sort(all)
	res := Result{
		Requests:   len(all),
		Errors:     int(errCount.Load()),
		FirstError: firstErr,
		Elapsed:    elapsed,
	}
	if elapsed > 0 {
		res.RPS = float64(len(all)) / elapsed.Seconds()
	}
	if len(all) > 0 {
		pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
		res.P50, res.P90, res.P99, res.Max = pct(0.50), pct(0.90), pct(0.99), all[len(all)-1]
	}
	return res, nil
}

// Median is the run with the median throughput among rs (non-empty); its
// latencies go with it, so a row of figures stays one real run.
func Median(rs []Result) Result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Result) int {
		switch {
		case a.RPS < b.RPS:
			return -1
		case a.RPS > b.RPS:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}
