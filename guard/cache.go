package guard

import (
	"hash/maphash"
	"slices"
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
	// bytes is what the ring's entries cost (entryCost), at most maxBytes.
	bytes, maxBytes int
	_               [24]byte // keep shards on separate cache lines
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

// cacheBytes bounds what the cache keeps, counted by entryCost: without it,
// the entry bound alone let a stream of large texts that are not plain
// reads and writes (a bulk INSERT whose values hold a ';', every statement
// while a lock hazard exists) keep each one, about 1.6 MB of memory per
// 1 MB text, up to the entry bound. A text too large for its shard's share
// is analysed every time it is seen, which large texts, unique by their
// data, are anyway.
const cacheBytes = 64 << 20

// entryOverhead is about what an entry and its analysis cost besides the
// key's bytes.
const entryOverhead = 512

func entryCost(key string) int { return len(key) + entryOverhead }

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
		c.shards[i].maxBytes = cacheBytes / n
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
	cost := entryCost(key)
	if cost > sh.maxBytes {
		return
	}
	e := &cacheEntry{key: key, hash: h, gen: c.gen.Load(), a: a}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[h]; old != nil {
		// Same key analysed twice concurrently, or a hash collision: the
		// new entry replaces it.
		sh.remove(c, slices.Index(sh.ring, old))
	}
	// CLOCK: the hand skips, and clears, referenced entries and evicts the
	// first unreferenced one, until the new entry fits.
	for len(sh.ring) > 0 && (len(sh.ring) >= sh.max || sh.bytes+cost > sh.maxBytes) {
		if victim := sh.ring[sh.hand]; victim.ref.Load() {
			victim.ref.Store(false)
			sh.hand = (sh.hand + 1) % len(sh.ring)
			continue
		}
		sh.remove(c, sh.hand)
	}
	c.slot(h).Store(e)
	sh.ring = append(sh.ring, e)
	sh.m[h] = e
	sh.bytes += cost
}

// remove drops the ring's entry i (the last entry takes its place); the
// shard's lock is held.
func (sh *cacheShard) remove(c *cache, i int) {
	victim := sh.ring[i]
	delete(sh.m, victim.hash)
	c.slot(victim.hash).CompareAndSwap(victim, nil)
	sh.bytes -= entryCost(victim.key)
	last := len(sh.ring) - 1
	sh.ring[i] = sh.ring[last]
	sh.ring[last] = nil
	sh.ring = sh.ring[:last]
	if sh.hand >= len(sh.ring) {
		sh.hand = 0
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
		sh.hand, sh.bytes = 0, 0
		sh.mu.Unlock()
	}
}

func (c *cache) bytes() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += sh.bytes
		sh.mu.RUnlock()
	}
	return n
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
