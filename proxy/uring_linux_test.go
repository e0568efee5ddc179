package proxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestRingShortSendKeepsOrder: a client that stops reading makes one of the
// event loop's queued sends come back short. What is left must reach the
// client before anything relayed after it, the session must leave the loop,
// and every message must arrive whole and in order once the client reads.
func TestRingShortSendKeepsOrder(t *testing.T) {
	// One session makes one send per round: with ringMinOps 1 it goes
	// through io_uring, with 2 through sendto(2).
	for _, minOps := range []int{1, 2} {
		t.Run(fmt.Sprintf("ringMinOps=%d", minOps), func(t *testing.T) {
			old := ringMinOps
			ringMinOps = minOps
			defer func() { ringMinOps = old }()
			testShortSendKeepsOrder(t)
		})
	}
}

func testShortSendKeepsOrder(t *testing.T) {
	const rows, width, perWrite = 20000, 1000, 4
	fs := newFakeServer(t)
	fs.scripts <- func(c net.Conn) {
		be := acceptStartup(t, c)
		if be == nil {
			return
		}
		if _, err := be.Receive(); err != nil { // the Query
			t.Error(err)
			return
		}
		// Rows in small writes with pauses, so that lockguard reads them
		// in small pieces and queues each on its ring.
		var buf []byte
		for i := range rows {
			v := make([]byte, width)
			binary.BigEndian.PutUint32(v, uint32(i))
			buf, _ = (&pgproto3.DataRow{Values: [][]byte{v}}).Encode(buf)
			if (i+1)%perWrite == 0 {
				if _, err := c.Write(buf); err != nil {
					t.Error(err)
					return
				}
				buf = buf[:0]
				time.Sleep(50 * time.Microsecond)
			}
		}
		buf, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 20000")}).Encode(buf)
		buf, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(buf)
		if _, err := c.Write(buf); err != nil {
			t.Error(err)
		}
		io.Copy(io.Discard, c)
	}
	srv, addr := startServerWith(t, fs.ln.Addr().String(), func(c *Config) { c.EventLoops = 1 })

	// A small receive buffer, set before the connection is made so that
	// the window stays small.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	untilReady(t, fe)
	waitInLoop(t, srv, 5*time.Second)
	if srv.loops[0].ring == nil {
		t.Skip("io_uring is not available here: the loop writes with write(2)")
	}
	fe.Send(&pgproto3.Query{String: "SELECT rows"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	// Not reading: the socket fills and a queued send comes back short.
	deadline := time.Now().Add(10 * time.Second)
	for srv.loopIO.short.Load() == 0 || srv.Stats().LeftLoop == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no short send made the session leave the loop: short sends %d, %+v", srv.loopIO.short.Load(), srv.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; ; i++ {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %d rows: %v", i, err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if len(m.Values) != 1 || len(m.Values[0]) != width {
				t.Fatalf("row %d is malformed", i)
			}
			if got := binary.BigEndian.Uint32(m.Values[0]); got != uint32(i) {
				t.Fatalf("row %d arrived as row %d", got, i)
			}
		case *pgproto3.CommandComplete:
			if i != rows {
				t.Fatalf("%d rows before CommandComplete, want %d", i, rows)
			}
		case *pgproto3.ReadyForQuery:
			if i != rows+1 {
				t.Fatalf("ReadyForQuery after %d messages", i)
			}
			return
		default:
			t.Fatalf("unexpected %T after %d rows", msg, i)
		}
	}
}
