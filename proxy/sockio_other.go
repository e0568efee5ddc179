//go:build !linux

package proxy

import "net"

// rawSock is the net.Conn itself where raw socket I/O is not implemented
// (see sockio_linux.go); newRawSock always returns nil there.
type rawSock struct{ net.Conn }

func newRawSock(net.Conn, bool) *rawSock { return nil }
