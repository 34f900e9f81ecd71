package gatehouseauth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestTokenCacheBoundedAndExpiring(t *testing.T) {
	now := time.Now()
	c := newTokenCache(320)
	for i := range 5000 {
		k := tokenKey(fmt.Sprint("token-", i))
		c.put(&k, &cacheEntry{id: identity{userID: fmt.Sprint(i)}, deadline: now.Add(time.Minute)}, now)
	}
	if n := c.len(); n > 320 {
		t.Fatalf("cache holds %d entries, bound is 320", n)
	}
	k := tokenKey("fresh")
	c.put(&k, &cacheEntry{id: identity{userID: "fresh"}, deadline: now.Add(time.Minute)}, now)
	if e, ok := c.get(&k, now); !ok || e.id.userID != "fresh" {
		t.Fatal("fresh entry missing")
	}
	if _, ok := c.get(&k, now.Add(time.Minute+time.Nanosecond)); ok {
		t.Fatal("entry served past its deadline")
	}
	if _, ok := c.get(&k, now); ok {
		t.Fatal("expired entry not removed")
	}
}

// Expired entries are evicted before live ones.
func TestTokenCachePrefersEvictingExpired(t *testing.T) {
	now := time.Now()
	c := newTokenCache(cacheShards) // one entry per shard
	keys := map[byte][32]byte{}
	for i := 0; len(keys) < cacheShards; i++ {
		k := tokenKey(fmt.Sprint("a", i))
		if _, ok := keys[k[0]&(cacheShards-1)]; ok {
			continue
		}
		keys[k[0]&(cacheShards-1)] = k
		c.put(&k, &cacheEntry{deadline: now.Add(-time.Second)}, now) // already dead
	}
	for i := 0; i < 200; i++ {
		k := tokenKey(fmt.Sprint("b", i))
		c.put(&k, &cacheEntry{deadline: now.Add(time.Hour)}, now)
		if _, ok := c.get(&k, now); !ok {
			t.Fatal("live entry just stored is missing")
		}
	}
}

func BenchmarkTokenCacheParallel(b *testing.B) {
	now := time.Now()
	c := newTokenCache(DefaultCacheSize)
	toks := make([]string, 1000)
	for i := range toks {
		toks[i] = fmt.Sprintf("eyJhbGciOiJSUzI1NiJ9.%0800d.sig", i)
		k := tokenKey(toks[i])
		c.put(&k, &cacheEntry{deadline: now.Add(time.Hour)}, now)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := tokenKey(toks[i%len(toks)])
			if _, ok := c.get(&k, now); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}

func TestTokenCacheConcurrent(t *testing.T) {
	now := time.Now()
	c := newTokenCache(100)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := tokenKey(fmt.Sprint(w, "-", i%150))
				if _, ok := c.get(&k, now); !ok {
					c.put(&k, &cacheEntry{deadline: now.Add(time.Minute)}, now)
				}
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > 100 {
		t.Fatalf("len = %d", n)
	}
}
