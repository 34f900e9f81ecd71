package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunRequests(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%10 == 0 {
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	seen := make([]atomic.Bool, 100)
	res, err := Run(context.Background(), Options{
		Concurrency: 4,
		Requests:    100,
		Request: func(i int) (*http.Request, error) {
			seen[i].Store(true)
			return http.NewRequest("GET", srv.URL, nil)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || hits.Load() != 100 {
		t.Fatalf("requests = %d, server hits = %d", res.Requests, hits.Load())
	}
	if res.Errors != 10 || res.FirstError == nil {
		t.Fatalf("errors = %d (%v), want 10", res.Errors, res.FirstError)
	}
	for i := range seen {
		if !seen[i].Load() {
			t.Fatalf("request %d never built", i)
		}
	}
	if res.RPS <= 0 || res.P50 <= 0 || res.P50 > res.P90 || res.P90 > res.P99 || res.P99 > res.Max {
		t.Fatalf("implausible result: %+v", res)
	}
}

func TestRunDuration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	res, err := Run(context.Background(), Options{
		Concurrency: 2,
		Duration:    200 * time.Millisecond,
		Request:     func(int) (*http.Request, error) { return http.NewRequest("GET", srv.URL, nil) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.Elapsed > 2*time.Second {
		t.Fatalf("result: %+v", res)
	}
}

func TestRunOptionsErrors(t *testing.T) {
	if _, err := Run(context.Background(), Options{Requests: 1}); err == nil {
		t.Error("missing Request accepted")
	}
	if _, err := Run(context.Background(), Options{Request: func(int) (*http.Request, error) { return nil, nil }}); err == nil {
		t.Error("unbounded run accepted")
	}
}
