package proxy

import (
	"errors"
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
