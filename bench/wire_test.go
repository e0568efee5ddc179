package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// This file holds the two ends the relay benchmarks put lockguard between:
// a scripted PostgreSQL (fakeUpstream) and a raw protocol client (wireClient).
// Both work on raw bytes with buffers reused across round trips, so that the
// allocations a benchmark reports are lockguard's own.

// encode concatenates encoded protocol messages.
func encode(tb testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

// Canned server responses.
var (
	rowDesc = mustEncode(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}})
	oneRow      = mustEncode(&pgproto3.DataRow{Values: [][]byte{[]byte("4242")}})
	selectOne   = mustEncode(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	readyIdle   = mustEncode(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	readyInTx   = mustEncode(&pgproto3.ReadyForQuery{TxStatus: 'T'})
	beginTag    = mustEncode(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")})
	commitTag   = mustEncode(&pgproto3.CommandComplete{CommandTag: []byte("COMMIT")})
	parseDone   = mustEncode(&pgproto3.ParseComplete{})
	bindDone    = mustEncode(&pgproto3.BindComplete{})
	copyIn      = mustEncode(&pgproto3.CopyInResponse{OverallFormat: 0})
	copyDoneTag = mustEncode(&pgproto3.CommandComplete{CommandTag: []byte("COPY 0")})
	// streamRow is one DataRow of a result stream: 8 columns, ~120 bytes,
	// the size of a typical row of an application's table.
	streamRow = mustEncode(&pgproto3.DataRow{Values: [][]byte{
		[]byte("1234567"), []byte("alice@example.com"), []byte("Alice Example"), []byte("2026-11-25 21:00:00+00"),
		[]byte("t"), []byte("42.50"), []byte("active"), []byte("a note of about thirty bytes..")}})
)

// streamRows is how many DataRows answer the STREAM query.
const streamRows = 1000

func mustEncode(m interface{ Encode([]byte) ([]byte, error) }) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// fakeUpstream is a scripted PostgreSQL on 127.0.0.1: it accepts any startup
// with AuthenticationOk, and answers
//
//   - Query "COPY…" with CopyInResponse, then CopyDone with COPY 0 and Z;
//   - Query "STREAM" with streamRows DataRows, C and Z;
//   - Query "BEGIN" and "END" with C and Z, the Z saying whether a
//     transaction block is open;
//   - any other Query with RowDescription, one DataRow, C and Z;
//   - Parse with ParseComplete, Bind with BindComplete, Execute with one
//     DataRow and C, and Sync with Z.
//
// Answers to messages read together leave in one write.
type fakeUpstream struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[net.Conn]struct{}
}

func startFakeUpstream(tb testing.TB) *fakeUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f := &fakeUpstream{ln: ln, conn: make(map[net.Conn]struct{})}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conn[c] = struct{}{}
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				_ = serveFake(c)
				c.Close()
			}()
		}
	}()
	tb.Cleanup(f.close)
	return f
}

func (f *fakeUpstream) addr() string { return f.ln.Addr().String() }

func (f *fakeUpstream) close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conn {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func serveFake(c net.Conn) error {
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	// Startup: SSLRequest is refused, the StartupMessage accepted.
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		if n < 8 || n > 10000 {
			return errors.New("bad startup length")
		}
		if _, err := r.Discard(n - 8); err != nil {
			return err
		}
		if binary.BigEndian.Uint32(hdr[4:]) == 80877103 { // SSLRequest
			if _, err := c.Write([]byte{'N'}); err != nil {
				return err
			}
			continue
		}
		break
	}
	w.Write(mustEncode(&pgproto3.AuthenticationOk{}))
	w.Write(mustEncode(&pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}}))
	w.Write(readyIdle)
	if err := w.Flush(); err != nil {
		return err
	}
	ready := readyIdle
	body := make([]byte, 0, 64<<10)
	hdr := make([]byte, 5) // not a local array: io.ReadFull would move it to the heap on every call
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		switch hdr[0] {
		case 'd': // CopyData: consumed
			if _, err := r.Discard(n); err != nil {
				return err
			}
		case 'Q':
			if cap(body) < n {
				body = make([]byte, n)
			}
			body = body[:n]
			if _, err := io.ReadFull(r, body); err != nil {
				return err
			}
			switch q := body; {
			case len(q) >= 4 && string(q[:4]) == "COPY":
				w.Write(copyIn)
			case len(q) >= 5 && string(q[:5]) == "BEGIN":
				ready = readyInTx
				w.Write(beginTag)
				w.Write(ready)
			case len(q) >= 3 && string(q[:3]) == "END":
				ready = readyIdle
				w.Write(commitTag)
				w.Write(ready)
			case len(q) >= 6 && string(q[:6]) == "STREAM":
				w.Write(rowDesc)
				for range streamRows {
					w.Write(streamRow)
				}
				w.Write(selectOne)
				w.Write(ready)
			default:
				w.Write(rowDesc)
				w.Write(oneRow)
				w.Write(selectOne)
				w.Write(ready)
			}
		case 'P', 'B', 'E':
			if _, err := r.Discard(n); err != nil {
				return err
			}
			switch hdr[0] {
			case 'P':
				w.Write(parseDone)
			case 'B':
				w.Write(bindDone)
			case 'E':
				w.Write(oneRow)
				w.Write(selectOne)
			}
		case 'S':
			w.Write(ready)
		case 'c': // CopyDone
			w.Write(copyDoneTag)
			w.Write(ready)
		case 'X':
			w.Flush()
			return nil
		default: // Parse, Bind, Describe, Flush…: no answer of their own here
			if _, err := r.Discard(n); err != nil {
				return err
			}
		}
		if r.Buffered() == 0 && w.Buffered() > 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

// wireClient is a protocol client on raw bytes: it sends prepared requests
// and reads responses up to a number of ReadyForQuery, without allocating.
type wireClient struct {
	c   net.Conn
	r   *bufio.Reader
	hdr []byte
}

// dialWire connects to addr and completes a trust startup as user; the
// connection is closed when the test ends.
func dialWire(tb testing.TB, addr, user, database string) *wireClient {
	wc, err := connectWire(addr, user, database)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(wc.close)
	return wc
}

// connectWire connects to addr and completes a trust startup as user.
func connectWire(addr, user, database string) (*wireClient, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	startup := mustEncode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": user, "database": database}})
	if _, err := c.Write(startup); err != nil {
		c.Close()
		return nil, err
	}
	wc := &wireClient{c: c, r: bufio.NewReaderSize(c, 64<<10), hdr: make([]byte, 5)}
	if err := wc.await(1); err != nil {
		c.Close()
		return nil, fmt.Errorf("startup: %w", err)
	}
	return wc, nil
}

// close sends Terminate and closes the connection.
func (wc *wireClient) close() {
	_, _ = wc.c.Write([]byte{'X', 0, 0, 0, 4})
	wc.c.Close()
}

// roundTrip sends req and reads responses until the n-th ReadyForQuery.
func (wc *wireClient) roundTrip(req []byte, n int) error {
	if _, err := wc.c.Write(req); err != nil {
		return err
	}
	return wc.await(n)
}

// errServer reports an ErrorResponse; it is a fixed value so that reporting
// it does not allocate on the benchmark path.
var errServer = errors.New("server answered with an ErrorResponse")

// await reads messages until n ReadyForQuery messages have arrived. An
// ErrorResponse (other than one during startup) is an error.
func (wc *wireClient) await(n int) error {
	failed := false
	hdr := wc.hdr
	for n > 0 {
		if _, err := io.ReadFull(wc.r, hdr); err != nil {
			return err
		}
		l := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if l < 0 {
			return fmt.Errorf("bad message length %d", l)
		}
		if _, err := wc.r.Discard(l); err != nil {
			return err
		}
		switch hdr[0] {
		case 'Z':
			n--
		case 'E':
			failed = true
		}
	}
	if failed {
		return errServer
	}
	return nil
}
