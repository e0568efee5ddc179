package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/internal/enforce"
	"github.com/lockguard/lockguard/proxy"
	"github.com/lockguard/lockguard/telemetry"
)

// The relay benchmarks put an in-process lockguard (proxy.Server, over real
// loopback TCP sockets, so every syscall and goroutine wake-up of a session
// counts) between a raw client and a scripted upstream (wire_test.go), with
// the guard off ("plain") and on ("guarded": the default policy's analysis,
// admission check and protection, as `lockguard serve` installs them). One
// op is one round trip; allocs/op are the whole process's, so 0 means that
// neither direction of the relay allocates per message.

// startProxy serves lockguard in front of upstream on 127.0.0.1:0 and returns
// its address. guarded installs the guard.
func startProxy(tb testing.TB, upstream string, guarded bool) string {
	cfg := &proxy.Config{
		Upstream:   proxy.Upstream{Address: upstream, SSLMode: proxy.SSLDisable},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		EventLoops: 1, // the binary's default
	}
	if guarded {
		cfg.Hooks = newGuard(&guard.Board{}).Hooks()
	}
	srv := proxy.New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// newGuard is the guard `lockguard serve` installs with its defaults (no
// monitor connection, no telemetry), publishing hazards on board.
func newGuard(board *guard.Board) *enforce.Guard {
	// Telemetry as lockguard serve sets it up by default: metrics on,
	// spans only for what the guard acts on (no exporter configured).
	obs, err := telemetry.Setup(context.Background(), telemetry.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		panic(err)
	}
	return &enforce.Guard{
		Analyzer:    guard.NewAnalyzer(nil, 10000),
		Policy:      guard.DefaultPolicy(),
		LockTimeout: enforce.DefaultLockTimeout,
		Backoff:     guard.DefaultBackoff,
		Admission:   &enforce.Admission{Board: board, HoldBudget: 25 * time.Millisecond},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Telemetry:   &enforce.Telemetry{Provider: obs, Events: telemetry.NewEvents(0), Host: "127.0.0.1", Port: 5432},
	}
}

// relayCase is one kind of traffic: req is sent per op and answered by ready
// ReadyForQuery messages (0 for COPY data, which gets no answer).
type relayCase struct {
	name  string
	setup func(tb testing.TB, wc *wireClient) // before the timed loop
	req   func(tb testing.TB) []byte
	ready int
	// script, when set instead of req, is a sequence of requests sent one
	// after another, each answered by ready ReadyForQuery messages.
	script func(tb testing.TB) [][]byte
	bytes  int64 // bytes per op for MB/s, 0 for none
}

const copyChunk = 64 << 10

var relayCases = []relayCase{
	{name: "small-query", ready: 1,
		req: func(tb testing.TB) []byte {
			return encode(tb, &pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 42"})
		}},
	{name: "tpcb-like-tx", ready: 1,
		// pgbench's tpcb-like transaction in -M simple: seven statements,
		// one round trip each.
		script: func(tb testing.TB) [][]byte {
			var out [][]byte
			for _, q := range []string{"BEGIN",
				"UPDATE pgbench_accounts SET abalance = abalance + -2718 WHERE aid = 93152",
				"SELECT abalance FROM pgbench_accounts WHERE aid = 93152",
				"UPDATE pgbench_tellers SET tbalance = tbalance + -2718 WHERE tid = 37",
				"UPDATE pgbench_branches SET bbalance = bbalance + -2718 WHERE bid = 4",
				"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (37, 4, 93152, -2718, CURRENT_TIMESTAMP)",
				"END"} {
				out = append(out, encode(tb, &pgproto3.Query{String: q}))
			}
			return out
		}},
	{name: "prepared", ready: 1,
		setup: func(tb testing.TB, wc *wireClient) {
			// Prepare P0_1 as pgbench -M prepared does.
			req := encode(tb, &pgproto3.Parse{Name: "P0_1", Query: "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
				&pgproto3.Sync{})
			if err := wc.roundTrip(req, 1); err != nil {
				tb.Fatal(err)
			}
		},
		req: func(tb testing.TB) []byte {
			return encode(tb, &pgproto3.Bind{PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("42")}},
				&pgproto3.Execute{}, &pgproto3.Sync{})
		}},
	{name: "pipeline-10", ready: 10,
		setup: func(tb testing.TB, wc *wireClient) {
			req := encode(tb, &pgproto3.Parse{Name: "P0_1", Query: "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
				&pgproto3.Sync{})
			if err := wc.roundTrip(req, 1); err != nil {
				tb.Fatal(err)
			}
		},
		req: func(tb testing.TB) []byte {
			var b []byte
			for range 10 {
				b = append(b, encode(tb, &pgproto3.Bind{PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("42")}},
					&pgproto3.Execute{}, &pgproto3.Sync{})...)
			}
			return b
		}},
	{name: "copy-chunk-64KiB", ready: 0, bytes: copyChunk + 5,
		setup: func(tb testing.TB, wc *wireClient) {
			req := encode(tb, &pgproto3.Query{String: "COPY pgbench_history FROM STDIN"})
			if _, err := wc.c.Write(req); err != nil {
				tb.Fatal(err)
			}
			// CopyInResponse: the client may now send CopyData.
			var hdr [5]byte
			if _, err := io.ReadFull(wc.r, hdr[:]); err != nil || hdr[0] != 'G' {
				tb.Fatalf("COPY: %q %v", hdr[0], err)
			}
			if _, err := wc.r.Discard(int(hdr[4]) - 4); err != nil {
				tb.Fatal(err)
			}
		},
		req: func(tb testing.TB) []byte {
			return encode(tb, &pgproto3.CopyData{Data: make([]byte, copyChunk)})
		}},
	{name: "datarow-stream-1000", ready: 1, bytes: int64(streamRows * len(streamRow)),
		req: func(tb testing.TB) []byte {
			return encode(tb, &pgproto3.Query{String: "STREAM"})
		}},
}

// relayOp returns one op of tc on wc.
func relayOp(tb testing.TB, wc *wireClient, tc relayCase) func() {
	if tc.script != nil {
		script := tc.script(tb)
		return func() {
			for _, req := range script {
				if err := wc.roundTrip(req, tc.ready); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	req := tc.req(tb)
	if tc.setup != nil {
		tc.setup(tb, wc)
	}
	return func() {
		var err error
		if tc.ready == 0 {
			_, err = wc.c.Write(req)
		} else {
			err = wc.roundTrip(req, tc.ready)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkRelay is a client round trip through lockguard to a scripted
// upstream: a small query, a prepared execution, a pipeline of 10, a COPY
// chunk of 64 KiB (one way) and a result of 1,000 DataRows.
func BenchmarkRelay(b *testing.B) {
	up := startFakeUpstream(b)
	for _, mode := range []struct {
		name    string
		guarded bool
	}{{"plain", false}, {"guarded", true}} {
		addr := startProxy(b, up.addr(), mode.guarded)
		for _, tc := range relayCases {
			b.Run(mode.name+"/"+tc.name, func(b *testing.B) {
				wc := dialWire(b, addr, "bench", "bench")
				op := relayOp(b, wc, tc)
				op() // warm: buffers, analysis cache, prepared statement names
				if tc.bytes > 0 {
					b.SetBytes(tc.bytes)
				}
				b.ReportAllocs()
				for b.Loop() {
					op()
				}
			})
		}
	}
}

// TestRelayAllocationsEndToEnd asserts that, in steady state, a round trip
// of every kind through lockguard allocates nothing anywhere in the process:
// not in either relay goroutine, with the guard off or on.
//
// Relaying allocates nothing: the guarded relay's plan is built on the
// stack and copied into a reused one only when needed, a statement prepared
// earlier is shown to the guard without a copy, and the guard's decided path
// (BEGIN and END take it: the transaction is followed from their results)
// reuses the session's Verdict, observation and the analysis's statement
// list.
func TestRelayAllocationsEndToEnd(t *testing.T) {
	up := startFakeUpstream(t)
	for _, guarded := range []bool{false, true} {
		addr := startProxy(t, up.addr(), guarded)
		for _, tc := range relayCases {
			name := tc.name
			if guarded {
				name = "guarded/" + name
			}
			t.Run(name, func(t *testing.T) {
				wc := dialWire(t, addr, "bench", "bench")
				op := relayOp(t, wc, tc)
				for range 20 {
					op() // grow every buffer to its steady size
				}
				n := testing.AllocsPerRun(200, op)
				if n != 0 {
					t.Fatalf("%v allocations per %s round trip, want 0", n, tc.name)
				}
			})
		}
	}
}
