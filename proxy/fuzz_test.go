package proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// chunkConn returns data in the chunk sizes given, then io.EOF, and records
// what is written.
type chunkConn struct {
	data   []byte
	sizes  []byte
	i      int
	output bytes.Buffer
}

func (c *chunkConn) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)]) + 1
		c.i++
	}
	n = min(n, len(c.data), len(b))
	copy(b, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}
func (c *chunkConn) Write(b []byte) (int, error)      { return c.output.Write(b) }
func (c *chunkConn) Close() error                     { return nil }
func (c *chunkConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *chunkConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzFramer feeds a client stream, split at arbitrary points, through the
// client side of the relay. It must never panic, and what reaches the server
// must be exactly a prefix of what the client sent.
func FuzzFramer(f *testing.F) {
	seed := func(msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte { return encode(f, msgs...) }
	f.Add(seed(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{}), []byte{0, 3, 7})
	f.Add(seed(&pgproto3.Parse{Name: "s1", Query: "SELECT $1"}, &pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("x")}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}), []byte{1})
	f.Add(seed(&pgproto3.CopyData{Data: bytes.Repeat([]byte("row\n"), 5000)}, &pgproto3.CopyDone{}), []byte{200, 255})
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff}, []byte{})
	f.Add([]byte{'P', 0, 0, 0, 5, 'x'}, []byte{0})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		cl := &chunkConn{data: append([]byte(nil), data...), sizes: sizes}
		up := &chunkConn{}
		s, _, _ := testSession(nil, nil)
		s.client, s.upstream = cl, up
		s.cf.limit = 16 << 10
		for i := 0; i < 1<<16; i++ {
			if err := s.pumpClient(); err != nil {
				break
			}
		}
		if !bytes.HasPrefix(data, up.output.Bytes()) {
			t.Fatalf("relayed bytes are not a prefix of the input")
		}
	})
}

// FuzzStartupPacket: the startup packet reader and parameter parser never
// panic and never accept an out-of-range length.
func FuzzStartupPacket(f *testing.F) {
	f.Add(encode(f, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u", "database": "d"}}))
	f.Add(encode(f, &pgproto3.SSLRequest{}))
	f.Add(encode(f, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}))
	f.Add([]byte{0, 0, 0, 8, 0, 3, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		pkt, err := readStartupPacket(bytes.NewReader(data))
		if err != nil {
			return
		}
		if n := int(binary.BigEndian.Uint32(pkt)); n != len(pkt) || n < 8 || n > maxStartupLen {
			t.Fatalf("accepted a packet of %d bytes claiming %d", len(pkt), n)
		}
		if be32(pkt[4:])>>16 == protoMajor3 {
			_, _ = startupParams(pkt[8:])
		}
	})
}

// FuzzAuthMessages: the SASL helpers never panic.
func FuzzAuthMessages(f *testing.F) {
	f.Add(encode(f, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}}))
	f.Add([]byte("SCRAM-SHA-256\x00\x00\x00\x00\x20y,,n=,r=abc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= 9 {
			// The framer hands over whole messages whose length field is
			// right; the body is the fuzzer's.
			msg := append([]byte(nil), data...)
			msg[0] = 'R'
			binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
			out := stripChannelBinding(msg)
			if int(be32(out[1:])) != len(out)-1 {
				t.Fatalf("rewritten message length field %d for %d bytes", be32(out[1:]), len(out))
			}
			if !bytes.Equal(out, msg) { // rewritten: the list parsed
				for rest := out[9:]; len(rest) > 0 && rest[0] != 0; {
					mech, r, ok := cstring(rest)
					if !ok {
						t.Fatalf("rewritten list is not terminated: %q", out)
					}
					if string(mech) == "SCRAM-SHA-256-PLUS" {
						t.Fatalf("PLUS still offered after rewriting: %q", out)
					}
					rest = r
				}
			}
		}
		_ = clientWantsBinding(data)
	})
}
