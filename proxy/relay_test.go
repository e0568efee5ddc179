package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// replayConn is a net.Conn whose reads return data over and over, as an
// endless stream, and whose writes are discarded. data must hold whole
// messages.
type replayConn struct {
	data    []byte
	off     int
	written int
}

func (c *replayConn) Read(b []byte) (int, error) {
	n := copy(b, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

func (c *replayConn) Write(b []byte) (int, error)      { c.written += len(b); return len(b), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }

func encode(t testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// testSession returns a session past startup whose client sends clientData
// on every read and whose server sends serverData on every read.
func testSession(clientData, serverData []byte) (*Session, *replayConn, *replayConn) {
	cl := &replayConn{data: clientData}
	up := &replayConn{data: serverData}
	cfg := &Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s := newSession(New(cfg), cfg, cl)
	s.upstream = up
	s.cf.init(cfg.maxMessageSize(), pgMaxMessage)
	s.uf.init(1<<30, 1<<30)
	s.txStatus.Store('I')
	return s, cl, up
}

// Round trips that the relay must forward without allocating: a simple query,
// a prepared-statement execution, and a result stream.
var allocCases = []struct {
	name           string
	client, server func(t testing.TB) []byte
}{
	{"simple query",
		func(t testing.TB) []byte {
			return encode(t, &pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 42"})
		},
		func(t testing.TB) []byte {
			return encode(t, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4}}},
				&pgproto3.DataRow{Values: [][]byte{[]byte("0")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
				&pgproto3.ReadyForQuery{TxStatus: 'I'})
		}},
	{"prepared execute",
		func(t testing.TB) []byte {
			return encode(t, &pgproto3.Bind{PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("42")}},
				&pgproto3.Execute{}, &pgproto3.Sync{})
		},
		func(t testing.TB) []byte {
			return encode(t, &pgproto3.BindComplete{}, &pgproto3.DataRow{Values: [][]byte{[]byte("0")}},
				&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
		}},
	{"unnamed parse bind execute",
		func(t testing.TB) []byte {
			return encode(t, &pgproto3.Parse{Query: "SELECT $1::int"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("42")}},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
		},
		func(t testing.TB) []byte {
			return encode(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
				&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("int4"), DataTypeOID: 23, DataTypeSize: 4}}},
				&pgproto3.DataRow{Values: [][]byte{[]byte("42")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
				&pgproto3.ReadyForQuery{TxStatus: 'I'})
		}},
}

// TestRelayAllocations asserts that relaying a round trip allocates nothing
// in steady state.
func TestRelayAllocations(t *testing.T) {
	for _, tc := range allocCases {
		t.Run(tc.name, func(t *testing.T) {
			s, cl, up := testSession(tc.client(t), tc.server(t))
			s.ext.stmts = map[string]string{"P0_1": "P0_1"}
			roundTrip := func() {
				if err := s.pumpClient(); err != nil {
					t.Fatal(err)
				}
				if _, err := s.pumpUpstream(); err != nil {
					t.Fatal(err)
				}
			}
			roundTrip()
			if allocs := testing.AllocsPerRun(1000, roundTrip); allocs != 0 {
				t.Fatalf("%v allocations per round trip, want 0", allocs)
			}
			if up.written == 0 || cl.written == 0 || s.InFlight() != 0 {
				t.Fatalf("relay did not forward: upstream %d bytes, client %d bytes, in flight %d", up.written, cl.written, s.InFlight())
			}
		})
	}
}

func BenchmarkRelay(b *testing.B) {
	for _, tc := range allocCases {
		b.Run(tc.name, func(b *testing.B) {
			s, _, _ := testSession(tc.client(b), tc.server(b))
			s.ext.stmts = map[string]string{"P0_1": "P0_1"}
			b.ReportAllocs()
			for b.Loop() {
				if err := s.pumpClient(); err != nil {
					b.Fatal(err)
				}
				if _, err := s.pumpUpstream(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRelayStream relays large streamed messages (CopyData and DataRow
// bigger than the buffer) in one direction.
func BenchmarkRelayStream(b *testing.B) {
	for _, size := range []int{100, 8 << 10, 64 << 10} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			var data []byte
			for len(data) < 64<<10 {
				data, _ = (&pgproto3.CopyData{Data: make([]byte, size)}).Encode(data)
			}
			s, _, _ := testSession(nil, data)
			b.ReportAllocs()
			b.SetBytes(int64(bufSize))
			for b.Loop() {
				if _, err := s.pumpUpstream(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLargeMessageGrowsAsBytesArrive: a header announcing a large message
// reserves nothing; the buffer grows with the bytes that actually arrive, and
// the message is relayed whole once complete.
func TestLargeMessageGrowsAsBytesArrive(t *testing.T) {
	const size = 4 << 20 // the Query message's length field
	msg := bytes.Repeat([]byte{'x'}, 1+size)
	msg[0] = 'Q'
	binary.BigEndian.PutUint32(msg[1:], size)
	msg[len(msg)-1] = 0
	cl := &chunkConn{data: msg[:headerLen+100]}
	up := &chunkConn{}
	s, _, _ := testSession(nil, nil)
	s.client, s.upstream = cl, up
	if err := s.pumpClient(); err != nil {
		t.Fatal(err)
	}
	if len(s.cf.buf) != bufSize {
		t.Fatalf("a header announcing %d bytes made the buffer %d bytes before they arrived, want %d", size, len(s.cf.buf), bufSize)
	}
	cl.data = msg[headerLen+100:]
	for len(cl.data) > 0 {
		if err := s.pumpClient(); err != nil {
			t.Fatal(err)
		}
		received := len(msg) - len(cl.data)
		if limit := max(2*received, bufSize); len(s.cf.buf) > limit {
			t.Fatalf("after %d bytes the buffer holds %d bytes, want at most %d", received, len(s.cf.buf), limit)
		}
	}
	if !bytes.Equal(up.output.Bytes(), msg) {
		t.Fatalf("upstream got %d bytes, want the %d-byte message", up.output.Len(), len(msg))
	}
	// Once relayed, the buffer returns to the pooled 8 KiB one (after at
	// most one read in the bulk buffer, if the last reads were large).
	for range 2 {
		cl.data = encode(t, &pgproto3.Sync{})
		if err := s.pumpClient(); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.cf.buf) != bufSize {
		t.Fatalf("buffer of %d bytes kept after the large message, want %d", len(s.cf.buf), bufSize)
	}
}

// TestUnnamedTextBufferShrinks: a session remembers the text of its unnamed
// statement for later batches that execute it; after a large one, a small
// one must not leave the large buffer held for the session's life.
func TestUnnamedTextBufferShrinks(t *testing.T) {
	big := "SELECT '" + strings.Repeat("x", 4<<20) + "'"
	s, _, _ := testSession(nil, nil)
	s.client = &chunkConn{data: encode(t,
		&pgproto3.Parse{Query: big}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})}
	s.upstream = &chunkConn{}
	var seen []string
	s.cfg.Hooks = &Hooks{Batch: func(_ context.Context, _ *Session, b *Batch) *Verdict {
		for _, st := range b.Stmts {
			seen = append(seen, string(st.SQL[:min(len(st.SQL), 8)]))
		}
		return nil
	}}
	for s.pumpClientGuarded() == nil {
	}
	if string(s.unnamedSQL) != "SELECT 1" || cap(s.unnamedSQL) > keepUnnamed {
		t.Errorf("unnamed statement %.20q with a buffer of %d bytes, want SELECT 1 in at most %d", s.unnamedSQL, cap(s.unnamedSQL), keepUnnamed)
	}
	// The last batch binds the unnamed statement parsed before: the guard
	// still sees its text.
	if want := []string{"SELECT '", "SELECT 1", "SELECT 1"}; !slices.Equal(seen, want) {
		t.Errorf("the guard saw %q, want %q", seen, want)
	}
}
