package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzEventLoop sends a client stream, split into writes at arbitrary
// points, through a real proxy over TCP whose sessions the event loop relays
// (with io_uring, with read(2) and write(2), and with a guard's hooks; and
// the guarded one on the goroutine relay), to a scripted server that
// answers each Query and Sync. FuzzFramer and
// FuzzGuardedClient drive the goroutine relay's functions directly; this is
// the path plain sockets take in production.
//
// Whatever the input, the session must end within seconds of the client's
// end of stream (no hang); without hooks, the server must receive a prefix
// of what the client sent, followed at most by lockguard's own Terminate;
// and the client must receive whole messages, any error among them from
// lockguard and FATAL.
func FuzzEventLoop(f *testing.F) {
	seed := func(msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte { return encode(f, msgs...) }
	f.Add(seed(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "inject"}, &pgproto3.Terminate{}), []byte{0, 3, 7}, uint8(0))
	f.Add(seed(&pgproto3.Parse{Name: "s1", Query: "SELECT $1"}, &pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("x")}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Flush{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "refuse"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}), []byte{1, 40}, uint8(1))
	f.Add(seed(&pgproto3.Query{String: "hold"}, &pgproto3.CopyData{Data: bytes.Repeat([]byte("row\n"), 5000)}, &pgproto3.CopyDone{}), []byte{200, 255}, uint8(2))
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff}, []byte{}, uint8(0))
	f.Add([]byte{'P', 0, 0, 0, 5, 'x', 'S', 0, 0, 0, 4}, []byte{0}, uint8(2))
	f.Add(seed(&pgproto3.Query{String: "inject"}, &pgproto3.Parse{Query: "hold"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Query{String: "refuse"}), []byte{9, 30}, uint8(3))
	// A Terminate after a batch held for the guard, with no Sync.
	f.Add([]byte("P\x00\x00\x00\x1370\x002200010000\x007B\x00\x00\x00\t10\x00\x000X\x00\x00\x00\x04P\x00\x00\x00\x0eCAZfc878 \x00"), []byte{65, 48}, uint8(2))

	fs := newAnsweringServer(f)
	hooks := &Hooks{Batch: func(_ context.Context, _ *Session, b *Batch) *Verdict { return fuzzVerdict(b) }}
	type target struct {
		srv    *Server
		addr   string
		loop   bool // the event loop relays its sessions
		guard  bool
		prefix bool // the server receives a prefix of the client's stream
	}
	// Plain with io_uring, plain with read and write, guarded, and guarded
	// on the goroutine relay for comparison.
	var targets [4]target
	for i := range targets {
		srv, addr := startServerWith(f, fs.addr(), func(c *Config) {
			c.EventLoops = 1
			c.NoIOUring = i == 1
			if i >= 2 {
				c.Hooks = hooks
			}
			if i == 3 {
				c.EventLoops = 0
			}
		})
		targets[i] = target{srv: srv, addr: addr, loop: i != 3, guard: i >= 2, prefix: i < 2}
	}
	// The sessions must be the loop's: where it cannot run, this is not
	// the test it claims to be.
	for i, tg := range targets {
		app := fmt.Sprint("check-", i)
		c := startedClient(f, tg.addr, app)
		if tg.loop {
			waitInLoop(f, tg.srv, 2*time.Second)
		}
		c.Close()
		if _, ok := fs.received(app, 10*time.Second); !ok {
			f.Fatalf("the proxy kept its server connection open after the client closed: %+v", tg.srv.Stats())
		}
	}

	var seq atomic.Uint64 // names each input's session

	f.Fuzz(func(t *testing.T, data, sizes []byte, mode uint8) {
		tg := targets[int(mode)%len(targets)]
		app := fmt.Sprint("fuzz-", seq.Add(1))
		c := startedClient(t, tg.addr, app)
		defer c.Close()
		received := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(c)
			received <- b
		}()
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for rest, i := data, 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(sizes) && int(sizes[i])+1 < n {
				n = int(sizes[i]) + 1
			}
			if _, err := c.Write(rest[:n]); err != nil {
				break // the proxy ended the session (a protocol error)
			}
			rest = rest[n:]
		}
		c.(*net.TCPConn).CloseWrite()

		var got []byte
		select {
		case got = <-received:
		case <-time.After(4 * time.Second):
			t.Fatalf("the proxy did not end the session within 4 s of the client's end of stream (%d bytes sent): %+v", len(data), tg.srv.Stats())
		}
		sent, ok := fs.received(app, 4*time.Second)
		if !ok {
			t.Fatalf("the proxy did not close its server connection within 4 s of the client's")
		}
		if tg.prefix {
			relayed := sent
			if !bytes.HasPrefix(data, relayed) {
				relayed = bytes.TrimSuffix(sent, terminateMsg[:])
			}
			if !bytes.HasPrefix(data, relayed) {
				t.Fatalf("the server received %d bytes that are not a prefix of the client's %d (then a Terminate at most)", len(sent), len(data))
			}
		}
		for len(got) > 0 {
			if len(got) < 5 {
				t.Fatalf("the client received a partial message at the end: %q", got)
			}
			n := int(binary.BigEndian.Uint32(got[1:5]))
			if n < 4 || 1+n > len(got) {
				t.Fatalf("the client received a broken message: type %q, length %d, %d bytes left", got[0], n, len(got))
			}
			msg := got[:1+n]
			got = got[1+n:]
			switch msg[0] {
			case 'C', 'Z':
			case 'E', 'N':
				var e pgproto3.ErrorResponse
				if err := e.Decode(msg[5:]); err != nil {
					t.Fatalf("the client received an undecodable error: %v", err)
				}
				if !bytes.HasPrefix([]byte(e.Message), []byte("lockguard")) {
					t.Fatalf("the client received an error that is not lockguard's: %+v", e)
				}
				if msg[0] == 'E' && !tg.guard && e.Severity != "FATAL" {
					t.Fatalf("the client received a non-FATAL error from the plain relay: %+v", e)
				}
			default:
				if !tg.guard {
					t.Fatalf("the client received a %q the server never sent", msg[0])
				}
			}
		}
	})
}

// TestInjectionAfterTheRestOfAStreamedMessage: the rest of a streamed
// message that arrives in one read with a Query the hook decides belongs
// before anything lockguard injects ahead of that Query. FuzzEventLoop
// found lockguard's statements sent inside the message: the server then
// reads them as its body (a CopyData's rows) and loses the framing.
func TestInjectionAfterTheRestOfAStreamedMessage(t *testing.T) {
	fs := newAnsweringServer(t)
	hooks := &Hooks{Batch: func(_ context.Context, _ *Session, b *Batch) *Verdict { return fuzzVerdict(b) }}
	for _, loops := range []int{0, 1} {
		srv, addr := startServerWith(t, fs.addr(), func(c *Config) { c.Hooks, c.EventLoops = hooks, loops })
		app := fmt.Sprint("streamed-rest-", loops)
		c := startedClient(t, addr, app)
		streamed := []byte("d\x00\x00\x00\x0dS7BC929Xy") // CopyData, 9 bytes of body
		then := encode(t, &pgproto3.Query{String: "inject"}, &pgproto3.Terminate{})
		for _, part := range [][]byte{streamed[:len(streamed)-1], append(streamed[len(streamed)-1:], then...)} {
			if _, err := c.Write(part); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // two reads
		}
		sent, ok := fs.received(app, 4*time.Second)
		c.Close()
		if !ok {
			t.Fatalf("event loops %d: the server connection stayed open: %+v", loops, srv.Stats())
		}
		if !bytes.HasPrefix(sent, streamed) {
			t.Errorf("event loops %d: the server received %q, want it to start with the whole streamed message %q", loops, sent, streamed)
		}
	}
}
