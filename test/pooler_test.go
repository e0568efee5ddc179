package test

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// pidRewriter relays TCP connections to PostgreSQL and replaces the backend
// pid in BackendKeyData with one of its own, as PgBouncer does in every
// pool mode. It returns its address.
func pidRewriter(t *testing.T, fakePID uint32) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", pg.Addr())
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				// Server messages: type byte, int32 length; the startup
				// packet's answers end at the first ReadyForQuery.
				hdr := make([]byte, 5)
				for {
					if _, err := io.ReadFull(u, hdr); err != nil {
						return
					}
					body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
					if _, err := io.ReadFull(u, body); err != nil {
						return
					}
					if hdr[0] == 'K' && len(body) >= 4 {
						binary.BigEndian.PutUint32(body, fakePID)
					}
					if _, err := c.Write(append(hdr, body...)); err != nil {
						return
					}
					if hdr[0] == 'Z' {
						break
					}
				}
				io.Copy(c, u)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestPoolerUpstreamIsReported: behind a pooler, the backend pid a session
// gets is the pooler's, not its backend's, and lockguard shed statements
// behind their own transaction's locks (seen with PgBouncer in transaction
// mode: `BEGIN; LOCK TABLE t …; SELECT … FROM t` was shed naming the
// session's own backend). lockguard cannot work there; it logs an error
// that says so and what to do. With PostgreSQL itself upstream it does not.
func TestPoolerUpstreamIsReported(t *testing.T) {
	const msg = "the upstream's backend pid is no backend of the server monitor-dsn reaches"
	for _, c := range []struct {
		name     string
		upstream string
		want     bool
	}{
		{"pooler", pidRewriter(t, 2502404163), true},
		{"PostgreSQL", pg.Addr(), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := startBinary(t, "--upstream", c.upstream, "--upstream-sslmode", "disable", "--monitor-dsn", directDSN())
			conn := connect(t, p.dsn())
			if _, err := conn.Exec(ctxT(t, 10*time.Second), "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			if c.want {
				waitFor(t, 10*time.Second, func() bool { return strings.Contains(p.out.String(), msg) })
				return
			}
			time.Sleep(500 * time.Millisecond) // the check runs in the background
			if strings.Contains(p.out.String(), msg) {
				t.Fatalf("reported a pooler with PostgreSQL upstream:\n%s", p.out)
			}
		})
	}
}
