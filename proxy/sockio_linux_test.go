package proxy

import (
	"net"
	"testing"
	"time"
)

// TestClientGone: bytes the client sent and lockguard has not read are not
// a hang-up; the client's close is, with those bytes still unread.
func TestClientGone(t *testing.T) {
	peer, c := tcpPair(t)
	s := &Session{client: c}
	if s.clientGone() {
		t.Fatal("an open, quiet connection taken for gone")
	}
	if _, err := peer.Write([]byte("Q\x00\x00\x00\x05")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if s.clientGone() {
		t.Fatal("a connection with unread bytes taken for gone")
	}
	peer.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !s.clientGone() {
		if time.Now().After(deadline) {
			t.Fatal("the client's close not seen within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if (&Session{client: wrapped{c}}).clientGone() {
		t.Fatal("a connection without a descriptor taken for gone")
	}
}

// wrapped hides its connection's descriptor.
type wrapped struct{ net.Conn }

// tcpPair returns both ends of a loopback TCP connection, the dialled one
// first; they are closed when the test ends.
func tcpPair(t *testing.T) (dialled, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialled, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialled.Close() })
	accepted, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close() })
	return dialled, accepted
}
