// Package lockedbuf has a buffer that one goroutine may write (a logger, a
// tracer, a process's output) while another reads it, for tests.
package lockedbuf

import (
	"strings"
	"sync"
)

// Buffer is a strings.Builder safe for a writer and a reader at once. The
// zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
