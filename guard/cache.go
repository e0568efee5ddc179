package guard

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// cache is a bounded map from cache key (see cacheKey) to analysis, split into
// shards so that concurrent sessions rarely share a lock. Eviction is CLOCK
// (second chance): a hit sets the entry's referenced bit, and the hand skips,
// and clears, referenced entries before evicting one.
//
// In front of the shards, a direct-mapped table of entries answers most hits
// without a lock: one maphash of the key, one atomic load and a string
// comparison. A miss there takes the shard's read lock and map, and puts
// what it finds in the table. The shards alone decide what is cached and
// what is evicted; the table only points at recent entries. No allocation
// either way.
type cache struct {
	seed   maphash.Seed
	shards []cacheShard
	mask   uint64
	front  []atomic.Pointer[cacheEntry]
	fmask  uint64
	// gen counts purges. An entry of an earlier generation in the table is
	// ignored: a lookup that raced with a purge may have put it back.
	gen atomic.Uint64
}

type cacheShard struct {
	mu   sync.RWMutex
	m    map[uint64]*cacheEntry
	ring []*cacheEntry // CLOCK ring, len ≤ max
	hand int
	max  int
	_    [40]byte // keep shards on separate cache lines
}

type cacheEntry struct {
	key  string
	hash uint64
	gen  uint64
	a    *Analysis
	ref  atomic.Bool
}

// maxFront bounds the lock-free table (8 bytes a slot).
const maxFront = 1 << 16

func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	n := 1
	for n < 16 && n*64 < size {
		n *= 2
	}
	c := &cache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n), mask: uint64(n - 1)}
	f := 1
	for f < 2*size && f < maxFront {
		f *= 2
	}
	c.front, c.fmask = make([]atomic.Pointer[cacheEntry], f), uint64(f-1)
	per := (size + n - 1) / n
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*cacheEntry, per)
		c.shards[i].max = per
	}
	return c
}

// slot returns the table slot of hash h; its high bits, as the low ones
// pick the shard.
func (c *cache) slot(h uint64) *atomic.Pointer[cacheEntry] {
	return &c.front[(h>>32)&c.fmask]
}

// lookup returns the cached analysis of sql, or nil with sql's cache key
// and its hash for put.
func (c *cache) lookup(sql string) (*Analysis, string, uint64) {
	key, exact, quick := keyCandidate(sql)
	an, h := c.get(key)
	if an != nil && (!quick || an.Err == nil) {
		return an, key, h // see keyCandidate
	}
	if quick && !plainPrefix(key) {
		// The "/*" may be inside a literal or a line comment.
		key = lexedKey(sql)
		an, h = c.get(key)
		return an, key, h
	}
	if an != nil || exact {
		return an, key, h
	}
	if k := finishKey(key); len(k) != len(key) {
		key = k
		an, h = c.get(key)
	}
	return an, key, h
}

func (c *cache) get(key string) (*Analysis, uint64) {
	h := maphash.String(c.seed, key)
	fs := c.slot(h)
	e := fs.Load()
	if e == nil || e.hash != h || e.key != key || e.gen != c.gen.Load() {
		sh := &c.shards[h&c.mask]
		sh.mu.RLock()
		e = sh.m[h]
		sh.mu.RUnlock()
		if e == nil || e.key != key {
			return nil, h
		}
		fs.Store(e)
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e.a, h
}

func (c *cache) put(key string, h uint64, a *Analysis) {
	sh := &c.shards[h&c.mask]
	e := &cacheEntry{key: key, hash: h, gen: c.gen.Load(), a: a}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c.slot(h).Store(e)
	if old := sh.m[h]; old != nil {
		// Same key analysed twice concurrently, or a hash collision: replace
		// the entry in place in the ring.
		for i, r := range sh.ring {
			if r == old {
				sh.ring[i] = e
				break
			}
		}
		sh.m[h] = e
		return
	}
	if len(sh.ring) < sh.max {
		sh.ring = append(sh.ring, e)
		sh.m[h] = e
		return
	}
	for {
		victim := sh.ring[sh.hand]
		if victim.ref.Load() {
			victim.ref.Store(false)
			sh.hand = (sh.hand + 1) % len(sh.ring)
			continue
		}
		delete(sh.m, victim.hash)
		c.slot(victim.hash).CompareAndSwap(victim, nil)
		sh.ring[sh.hand] = e
		sh.m[h] = e
		sh.hand = (sh.hand + 1) % len(sh.ring)
		return
	}
}

func (c *cache) purge() {
	c.gen.Add(1)
	for i := range c.front {
		c.front[i].Store(nil)
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		clear(sh.ring)
		sh.ring = sh.ring[:0]
		sh.hand = 0
		sh.mu.Unlock()
	}
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
