//go:build !linux

package proxy

import (
	"errors"
	"log/slog"
)

// Event loops are implemented on Linux only (loop_linux.go); elsewhere every
// session relays with goroutines.
type loop struct{}

type runner struct{ retired bool }

func newLoop(*slog.Logger, bool, *Server, int) (*loop, error) {
	return nil, errors.New("event loops need Linux")
}

func (*loop) add(*Session) bool     { return false }
func (*loop) requestLeave(*Session) {}
func (*loop) stop()                 {}
func (*runner) handOff(*Session)    {}
func (*loop) release(*Session)      {}
func (*loop) rejoin(*Session) bool  { return false }
func (*Session) parkOff()           {}
