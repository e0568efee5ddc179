package pgmonitor

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockguard/lockguard/internal/lockedbuf"
)

// TestCancelBusPayload: a notification ends the wait of the session whose
// key it was made for, under the same secret, while fresh; not another
// session's, not under another secret, not once stale or from too far
// ahead, not when malformed. It carries no key.
func TestCancelBusPayload(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	key := []byte{0, 0, 0x30, 0x39, 1, 2, 3, 4} // pid 12345, secret 01020304
	other := []byte{0, 0, 0x30, 0x39, 1, 2, 3, 5}
	bus := func(secret string, at time.Time, cancelled *[][]byte) *CancelBus {
		return &CancelBus{Secret: []byte(secret), Now: func() time.Time { return at },
			Cancel: func(match func([]byte) bool) int {
				n := 0
				for _, k := range [][]byte{other, key} {
					if match(k) {
						*cancelled = append(*cancelled, k)
						n++
					}
				}
				return n
			}}
	}
	var none [][]byte
	p := bus("shared-secret-0123", now, &none).payload(key)
	if strings.Contains(p, "3039") || strings.Contains(p, "01020304") {
		t.Fatalf("payload %q shows the key", p)
	}
	for _, c := range []struct {
		name, secret, payload string
		at                    time.Time
		want                  int
	}{
		{"same secret, fresh", "shared-secret-0123", p, now.Add(2 * time.Second), 1},
		{"clock 20 s behind", "shared-secret-0123", p, now.Add(-20 * time.Second), 1},
		{"another secret", "shared-secret-0124", p, now, 0},
		{"stale", "shared-secret-0123", p, now.Add(31 * time.Second), 0},
		{"from the future", "shared-secret-0123", p, now.Add(-31 * time.Second), 0},
		{"time changed", "shared-secret-0123", strings.Replace(p, "1800000000", "1800000001", 1), now, 0},
		{"other version", "shared-secret-0123", "v2" + p[2:], now, 0},
		{"truncated", "shared-secret-0123", p[:len(p)-2], now, 0},
		{"empty", "shared-secret-0123", "", now, 0},
		{"not hex", "shared-secret-0123", "v1 1800000000 zz", now, 0},
	} {
		var got [][]byte
		if n := bus(c.secret, c.at, &got).Deliver(c.payload); n != c.want || len(got) != c.want {
			t.Errorf("%s: Deliver = %d (cancelled %x), want %d", c.name, n, got, c.want)
		} else if c.want == 1 && !bytes.Equal(got[0], key) {
			t.Errorf("%s: cancelled %x, want the session with key %x", c.name, got[0], key)
		}
	}
}

// TestCancelBusPublishIsBounded: with PostgreSQL not answering, at most
// maxSending notifications are in flight; the rest are dropped at once,
// and logged, instead of each holding a goroutine.
func TestCancelBusPublishIsBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // never answered
			mu.Unlock()
		}
	}()
	pool, err := pgxpool.New(context.Background(), "postgres://x@"+ln.Addr().String()+"/x?sslmode=disable&pool_max_conns=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	logged := &lockedBuffer{}
	b := &CancelBus{Pool: pool, Secret: []byte("shared-secret-0123"), Logger: slog.New(slog.NewTextHandler(logged, nil))}
	for range maxSending + 4 {
		b.Publish([]byte{0, 0, 0, 1, 1, 2, 3, 4})
	}
	if n := b.sending.Load(); n != maxSending {
		t.Fatalf("%d notifications in flight, want %d", n, maxSending)
	}
	if c := strings.Count(logged.String(), "too many cancel requests"); c != 4 {
		t.Fatalf("%d dropped notifications logged, want 4:\n%s", c, logged.String())
	}
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	for b.sending.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications still in flight 10 s later", b.sending.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a buffer a writer and a reader may use at once.
type lockedBuffer = lockedbuf.Buffer
