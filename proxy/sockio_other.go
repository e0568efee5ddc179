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

func (s *Session) kickSockets()                   {}
func (s *Session) sendQueued()                    {}
func (r *rawSock) owes() bool                     { return false }
func (r *rawSock) settleRest() error              { return nil }
func (r *rawSock) writeNow(p []byte) (int, error) { return r.Write(p) }
func (r *rawSock) setDeadline(t time.Time)        {}
func (s *Session) clientGone() bool               { return false }
