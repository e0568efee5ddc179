package proxy

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

func TestAsyncPreemption(t *testing.T) {
	for godebug, want := range map[string]bool{
		"":                                  true,
		"madvdontneed=1":                    true,
		"asyncpreemptoff=0":                 true,
		"asyncpreemptoff=1":                 false,
		"madvdontneed=1, asyncpreemptoff=1": false,
		"gccheckmark=1":                     false,
		"asyncpreemptoff=10":                true,
	} {
		if got := asyncPreemption(godebug); got != want {
			t.Errorf("asyncPreemption(%q) = %v, want %v", godebug, got, want)
		}
	}
}

// A deadline set while a goroutine already waits on a socket the loop
// reports must end that wait: endClientSide sets the upstream reader's
// deadline after the client's Terminate, when the reader may already wait.
func TestOwnSocketDeadlineSetDuringWait(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close() // never writes: like PostgreSQL behind a partition
	r := newRawSock(c, false)
	done := make(chan struct{})
	r.ready, r.done, r.own = make(chan struct{}, 1), done, true
	res := make(chan error, 1)
	go func() {
		var buf [16]byte
		_, err := r.Read(buf[:])
		res <- err
	}()
	// Until the reader waits on ready: waiting is set, and a second
	// EAGAIN put it in wait.
	for !r.waiting.Load() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	r.setDeadline(time.Now().Add(100 * time.Millisecond))
	select {
	case err := <-res:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		close(done)
		t.Fatal("a Read already waiting ignored a deadline set after it began")
	}
}

// Both directions of a session that left the loop stop when both find
// nothing to read with nothing in flight, and the loop takes it back. When
// it leaves again by a hand-off, the direction that was being pumped goes on
// at once on the loop's goroutine: its first park must start over, not find
// the stop of the last return and end alone while the other direction waits
// for it for good (TestEnforceFollowsSetConfig hung that way).
func TestParkStartsOverWhenTheSessionLeavesAgain(t *testing.T) {
	s := &Session{srv: &Server{}, log: slog.Default(), leave: make(chan leaveMsg, 1)}
	s.cf.src, s.uf.src = &rawSock{ready: make(chan struct{}, 1)}, &rawSock{ready: make(chan struct{}, 1)}
	s.socks = [2][2]*rawSock{dirClient: {s.cf.src, nil}, dirUpstream: {s.uf.src, nil}}
	s.cf.keep = -1
	r := &runner{l: &loop{}}
	for round := 1; round <= 2; round++ {
		r.leave(s, leaveMsg{owner: dirClient, ended: -1})
		<-s.leave
		if s.park(dirClient, true) {
			t.Fatalf("round %d: the direction that left first stopped alone", round)
		}
		s.state.Add(1) // a statement in flight: no stop
		if s.park(dirUpstream, true) {
			t.Fatalf("round %d: stopped with a statement in flight", round)
		}
		// Its result wakes the server direction, which relays it.
		if s.park(dirUpstream, false) {
			t.Fatalf("round %d: the server direction stopped on waking", round)
		}
		s.state.Add(^uint64(0))
		if !s.park(dirUpstream, true) {
			t.Fatalf("round %d: both parked with nothing in flight, yet no stop", round)
		}
		select {
		case <-s.cf.src.ready: // the other direction is woken to stop too
		default:
			t.Fatalf("round %d: the waiting direction was not woken", round)
		}
		if !s.park(dirClient, false) {
			t.Fatalf("round %d: the woken direction did not stop", round)
		}
	}
}
