//go:build !linux

package proxy

import (
	"net"
	"time"
)

// rawSock is the net.Conn itself where raw socket I/O is not implemented
// (see sockio_linux.go); newRawSock always returns nil there.
type rawSock struct {
	net.Conn
	nowait bool
	onWait func()
}

func newRawSock(net.Conn, bool) *rawSock { return nil }

func (s *Session) kickSockets()            {}
func (r *rawSock) setDeadline(t time.Time) {}
