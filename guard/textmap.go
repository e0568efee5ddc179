package guard

import (
	"strings"
	"sync"
)

// textMap keeps values by text, bounded by the number of entries (maxLen)
// and the bytes of their texts (maxBytes): an entry that would pass either
// bound empties the map first, and a text longer than maxBytes/8 is never
// kept (its value is derived each time). It is safe for concurrent use; a
// nil *textMap keeps nothing.
type textMap[V any] struct {
	maxLen, maxBytes int

	mu    sync.Mutex
	m     map[string]V
	bytes int // the length of m's keys
}

func (t *textMap[V]) get(text string) (V, bool) {
	var v V
	if t == nil {
		return v, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[text]
	return v, ok
}

// put keeps v for a copy of text.
func (t *textMap[V]) put(text string, v V) {
	if t == nil || len(text) > t.maxBytes/8 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= t.maxLen || t.bytes+len(text) > t.maxBytes {
		t.m, t.bytes = make(map[string]V), 0
	}
	if _, ok := t.m[text]; !ok {
		t.bytes += len(text)
	}
	t.m[strings.Clone(text)] = v
}

// purge forgets every entry.
func (t *textMap[V]) purge() {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.m, t.bytes = nil, 0
	t.mu.Unlock()
}
