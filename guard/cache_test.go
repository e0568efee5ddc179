package guard

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

const (
	benchSelect    = "SELECT id, email, name FROM users WHERE id = $1"
	benchCommented = "SELECT id, email, name FROM users WHERE id = $1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',controller='users'*/"
	benchAlter     = "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID"
)

func TestCacheHit(t *testing.T) {
	a := NewAnalyzer(nil, 128)
	first := a.Analyze(benchSelect)
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	for _, sql := range []string{
		benchSelect,
		benchCommented,
		"/* app */ " + benchSelect,
		"-- query: GetUser\n" + benchSelect + "  -- trailing\n",
		"  " + benchSelect + "\n",
	} {
		if got := a.Analyze(sql); got != first {
			t.Errorf("Analyze(%q) missed the cache", sql)
		}
	}
	if a.CacheLen() != 1 {
		t.Errorf("CacheLen = %d, want 1", a.CacheLen())
	}
	if a.Analyze(benchSelect+" AND true") == first {
		t.Error("a different statement hit the cached analysis")
	}
	a.Purge()
	if a.CacheLen() != 0 {
		t.Errorf("CacheLen after Purge = %d", a.CacheLen())
	}
	if a.Analyze(benchSelect) == first {
		t.Error("Purge kept the analysis")
	}
}

// A cache hit must not allocate: it runs for every statement on the wire.
func TestCacheHitAllocs(t *testing.T) {
	a := NewAnalyzer(fixture(), 1024)
	for _, sql := range []string{benchSelect, benchCommented, benchAlter} {
		a.Analyze(sql)
		if n := testing.AllocsPerRun(1000, func() { a.Analyze(sql) }); n != 0 {
			t.Errorf("cache hit for %.30q… allocates %v times per run", sql, n)
		}
	}
}

func TestCacheBounded(t *testing.T) {
	const size = 100
	a := NewAnalyzer(nil, size)
	hot := fmt.Sprintf("SELECT %d", -1)
	hotA := a.Analyze(hot)
	for i := 0; i < 10*size; i++ {
		a.Analyze(fmt.Sprintf("SELECT %d", i))
		a.Analyze(hot) // keeps its referenced bit set
		if n := a.CacheLen(); n > size+16 {
			t.Fatalf("cache grew to %d entries, bound %d", n, size)
		}
	}
	if a.Analyze(hot) != hotA {
		t.Error("CLOCK evicted an entry that was hit between every insertion")
	}
	// Disabled cache.
	b := NewAnalyzer(nil, 0)
	if first, second := b.Analyze(hot), b.Analyze(hot); first == second {
		t.Error("cacheSize 0 must not cache")
	}
	var zero Analyzer
	if zero.Analyze(hot).Err != nil || zero.CacheLen() != 0 {
		t.Error("zero Analyzer must work without a cache")
	}
}

func TestCacheConcurrent(t *testing.T) {
	a := NewAnalyzer(fixture(), 64)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				sql := fmt.Sprintf("SELECT * FROM users WHERE id = %d", (i*7+g)%100)
				an := a.Analyze(sql)
				if an.Err != nil || len(an.Statements) != 1 || an.Statements[0].Locks[0].Rel.Name != "users" {
					t.Errorf("bad analysis for %s", sql)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func BenchmarkAnalyzeCacheHit(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"select", benchSelect},
		{"sqlcommenter", benchCommented},
		{"alter", benchAlter},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := NewAnalyzer(fixture(), 4096)
			a.Analyze(bc.sql)
			b.ReportAllocs()
			for b.Loop() {
				a.Analyze(bc.sql)
			}
		})
	}
}

func BenchmarkAnalyzeCacheHitParallel(b *testing.B) {
	a := NewAnalyzer(fixture(), 4096)
	queries := make([]string, 256)
	for i := range queries {
		queries[i] = fmt.Sprintf("SELECT * FROM users WHERE id = %d /*traceparent='00-%032d-01'*/", i, i)
		a.Analyze(queries[i])
	}
	b.ReportAllocs()
	var seq atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(97))
		for pb.Next() {
			a.Analyze(queries[i&255])
			i++
		}
	})
}

// BenchmarkAnalyzeMiss is the cost of a statement never seen before: parse
// (libpg_query through cgo, then protobuf decoding) and mapping.
func BenchmarkAnalyzeMiss(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"select", benchSelect},
		{"join", "SELECT u.id, o.amount FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id IN (SELECT user_id FROM ledger) FOR UPDATE OF u"},
		{"insert", "INSERT INTO orders (id, user_id, amount) VALUES ($1, $2, $3)"},
		{"alter", benchAlter},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := NewAnalyzer(fixture(), 0)
			b.ReportAllocs()
			for b.Loop() {
				a.Analyze(bc.sql)
			}
		})
	}
}

func BenchmarkFirstKeyword(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		QuickClass("/* app */ SELECT id FROM users WHERE id = $1")
	}
}

// The guard's decided path lists an analysis's statements for every BEGIN
// and COMMIT: an analysis made by the Analyzer hands out one list, made
// with it, that appending cannot write into.
func TestStatementPtrsShared(t *testing.T) {
	a := NewAnalyzer(nil, 16)
	an := a.Analyze("SELECT 1; BEGIN; UPDATE t SET a = 1")
	p := an.StatementPtrs()
	if len(p) != 3 || cap(p) != 3 {
		t.Fatalf("len %d cap %d, want 3 and 3", len(p), cap(p))
	}
	for i := range p {
		if p[i] != &an.Statements[i] {
			t.Fatalf("pointer %d is not to statement %d", i, i)
		}
	}
	if q := an.StatementPtrs(); &q[0] != &p[0] {
		t.Fatal("a second call made a new list")
	}
	if n := testing.AllocsPerRun(100, func() { _ = an.StatementPtrs() }); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
	if q := append(p, nil); &q[0] == &p[0] {
		t.Fatal("appending wrote into the shared list")
	}
	// An Analysis built by hand gets a fresh list.
	own := &Analysis{Statements: []Statement{{Class: ClassRead}}}
	if q := own.StatementPtrs(); len(q) != 1 || q[0] != &own.Statements[0] {
		t.Fatalf("hand-built analysis: %v", q)
	}
}

// A lookup that raced with a purge can put the entry it found back into the
// lock-free table after the purge cleared it; that entry must not answer.
func TestCachePurgeIgnoresStaleTableEntry(t *testing.T) {
	c := newCache(64)
	an := &Analysis{SQL: "SELECT 1"}
	_, h := c.get("SELECT 1")
	c.put("SELECT 1", h, an)
	if got, _ := c.get("SELECT 1"); got != an {
		t.Fatal("no hit after put")
	}
	stale := c.slot(h).Load()
	if stale == nil {
		t.Fatal("put left the table empty")
	}
	c.purge()
	c.slot(h).Store(stale) // what the racing lookup does
	if got, _ := c.get("SELECT 1"); got != nil {
		t.Fatal("a purged analysis answered from the table")
	}
	// Evicting an entry takes it out of the table too: here by a key whose
	// slot differs, so that nothing overwrites the evicted one's slot.
	c2 := newCache(1)
	_, h1 := c2.get("a")
	c2.put("a", h1, an)
	for i := 0; ; i++ {
		k := fmt.Sprint("b", i)
		if _, hk := c2.get(k); c2.slot(hk) != c2.slot(h1) {
			c2.put(k, hk, &Analysis{})
			break
		}
	}
	if got, _ := c2.get("a"); got == an {
		t.Fatal("an evicted analysis answered from the table")
	}
}

// TestCacheBoundedBytes: large texts count by their size, not as one entry
// each. Unique 1 MiB keys, far fewer than the entry bound, must not keep
// more than cacheBytes; the shards' byte counts must match what they hold;
// a key larger than a shard's share is never cached; recent keys still hit.
func TestCacheBoundedBytes(t *testing.T) {
	c := newCache(10000)
	base := strings.Repeat("x", 1<<20)
	var last string
	for i := range 2 * cacheBytes >> 20 {
		key := fmt.Sprint("INSERT INTO t VALUES ('", i, ";") + base + "')"
		_, h := c.get(key)
		c.put(key, h, &Analysis{})
		last = key
	}
	held, keys := 0, 0
	for i := range c.shards {
		sh := &c.shards[i]
		sum := 0
		for _, e := range sh.ring {
			sum += entryCost(e.key)
			keys += len(e.key)
		}
		if sum != sh.bytes || sh.bytes > sh.maxBytes || len(sh.ring) != len(sh.m) {
			t.Errorf("shard %d: counts %d bytes, holds %d in %d entries (map %d), share %d", i, sh.bytes, sum, len(sh.ring), len(sh.m), sh.maxBytes)
		}
		held += sh.bytes
	}
	if held > cacheBytes || keys == 0 {
		t.Errorf("the cache holds %d bytes of keys (%d counted), bound %d", keys, held, cacheBytes)
	}
	if an, _ := c.get(last); an == nil {
		t.Error("the last key put was evicted")
	}
	huge := "SELECT '" + strings.Repeat("y", cacheBytes/len(c.shards)) + "'"
	_, h := c.get(huge)
	c.put(huge, h, &Analysis{})
	if an, _ := c.get(huge); an != nil {
		t.Error("a key larger than its shard's share was cached")
	}
}

// TestFactsCacheBoundedBytes: the facts of DDL statements are cached by
// text too, and large texts must not pile up there either.
func TestFactsCacheBoundedBytes(t *testing.T) {
	a := NewAnalyzer(nil, 0)
	body := strings.Repeat("z", 1<<20)
	for i := range 2 * factsCacheBytes >> 20 {
		an := a.Analyze(fmt.Sprint("COMMENT ON TABLE t IS '", i, body, "'"))
		if an.Err != nil || len(an.Statements) != 1 {
			t.Fatalf("analysis: %v", an.Err)
		}
		factsFor(an, &an.Statements[0])
	}
	checkTextBytes(t, "facts", &facts.byText, factsCacheBytes)
}

// checkTextBytes fails unless the texts m keeps add up to what it counted,
// at most bound bytes and at least 1 MiB (large texts were kept).
func checkTextBytes[V any](t *testing.T, what string, m *textMap[V], bound int) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	sum := 0
	for k := range m.m {
		sum += len(k)
	}
	if sum != m.bytes || sum > bound || sum < 1<<20 {
		t.Errorf("%s keep %d bytes of text (%d counted), bound %d", what, sum, m.bytes, bound)
	}
}
