package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
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
	c, _ := tcpPair(t) // the peer never writes: like PostgreSQL behind a partition
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

// TestTakeBackReadsToTheEndOfStream: a session that left the loop (here for
// a guard's hold) goes back to it when both directions found nothing to
// read. Bytes and the client's end of stream that arrive between the last
// read and the loop's taking it back raise their one epoll event while no
// one waits. The loop read each socket once when it took the session back;
// a short read left the end of stream unread with no event to come, and
// the session (and its PostgreSQL backend) stayed open for good. Found by
// FuzzEventLoop: within 50 sessions of this kind, every time.
func TestTakeBackReadsToTheEndOfStream(t *testing.T) {
	for _, uring := range []bool{true, false} {
		t.Run(map[bool]string{true: "io-uring", false: "read-write"}[uring], func(t *testing.T) {
			fs := newAnsweringServer(t)
			srv, addr := startServerWith(t, fs.addr(), func(c *Config) {
				c.EventLoops = 1
				c.NoIOUring = !uring
				c.Hooks = &Hooks{Batch: func(_ context.Context, _ *Session, b *Batch) *Verdict {
					// A hold that lets the batch through: the session
					// leaves the loop for it.
					return &Verdict{Hold: func(context.Context) *Error { return nil }}
				}}
			})
			data := encode(t, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.CopyData{Data: bytes.Repeat([]byte("row\n"), 5000)}, &pgproto3.CopyDone{})
			for i := range 100 {
				app := fmt.Sprint("takeback-", i)
				c := startedClient(t, addr, app)
				ended := make(chan error, 1)
				go func() {
					_, err := io.ReadAll(c)
					ended <- err
				}()
				for _, part := range [][]byte{data[:201], data[201:457], data[457:]} {
					if _, err := c.Write(part); err != nil {
						t.Fatal(err)
					}
				}
				c.(*net.TCPConn).CloseWrite()
				select {
				case err := <-ended:
					if err != nil {
						t.Fatalf("session %d: %v", i, err)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("session %d did not end within 5 s of the client's end of stream: %+v", i, srv.Stats())
				}
				c.Close()
				if _, ok := fs.received(app, 5*time.Second); !ok {
					t.Fatalf("session %d: the server connection stayed open", i)
				}
			}
			if st := srv.Stats(); st.LeftLoop < 100 || st.BackInLoop == 0 {
				t.Fatalf("sessions left the loop %d times and came back %d times: the test did not do what it is for", st.LeftLoop, st.BackInLoop)
			}
		})
	}
}

// waitInLoop waits up to d for srv's one session to be in an event loop,
// and fails the test if it is not.
func waitInLoop(t testing.TB, srv *Server, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); srv.Stats().InLoop != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the session is not in the event loop after %v: %+v", d, srv.Stats())
		}
	}
}
